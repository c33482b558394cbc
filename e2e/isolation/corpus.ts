// Shared helpers for the PromQL corpus suites (parity, isolation oracle, bench):
// loading e2e/corpus/*.jsonl, filtering the seed's OpenMetrics text to a subset
// of series (a "reference" backend), and comparing Prometheus answers.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTeamsOpenMetrics } from '../fixtures/seed.ts';

export interface CorpusEntry {
  /** The query text, exactly as a user would send it. */
  q: string;
  tags: readonly string[];
  /** 1-based line in the corpus file. */
  line: number;
}

export const corpusDir: string = join(dirname(fileURLToPath(import.meta.url)), '..', 'corpus');

/**
 * Reads a JSONL corpus; blank lines are skipped. Three line shapes:
 * `{"q": "...", "tags": [...]}` (promql.jsonl) and `{"q": "...", "valid": bool,
 * "note": "..."}` (logql.jsonl, traceql.jsonl: read as tags `[]`, or
 * `["invalid"]` when `valid` is false); `{"q": "...", "src": "..."}`
 * (promql-realworld.jsonl: tags `[]`).
 */
export function loadCorpus(file: string = join(corpusDir, 'promql.jsonl')): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      if (text.trim() === '') return;
      const o = JSON.parse(text) as { q?: unknown; tags?: unknown; valid?: unknown; src?: unknown };
      const tags = Array.isArray(o.tags)
        ? o.tags
        : o.tags === undefined && typeof o.valid === 'boolean'
          ? o.valid
            ? []
            : ['invalid']
          : o.tags === undefined && o.valid === undefined && typeof o.src === 'string'
            ? []
            : undefined;
      if (typeof o.q !== 'string' || tags === undefined || !tags.every((t) => typeof t === 'string')) {
        throw new Error(`${file}:${i + 1}: expected {"q": string, "tags": string[]}, {"q": string, "valid": boolean} or {"q": string, "src": string}`);
      }
      out.push({ q: o.q, tags: tags as string[], line: i + 1 });
    });
  return out;
}

/** Parses the label set of one OpenMetrics sample line (seed values never contain quotes or backslashes). */
export function sampleLabels(line: string): Record<string, string> {
  const open = line.indexOf('{');
  const space = line.indexOf(' ');
  const name = line.slice(0, open === -1 || (space !== -1 && space < open) ? space : open);
  const labels: Record<string, string> = { __name__: name };
  if (open === -1 || (space !== -1 && space < open)) return labels;
  const close = line.indexOf('}', open);
  for (const m of line.slice(open + 1, close).matchAll(/([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"/g)) {
    labels[m[1] as string] = m[2] as string;
  }
  return labels;
}

/**
 * The seed's OpenMetrics text restricted to the series `keep` accepts (same
 * timestamps and values as the full seed; family headers are kept even when a
 * family ends up empty, which promtool accepts).
 */
export function buildFilteredOpenMetrics(opts: { now: number; keep: (labels: Readonly<Record<string, string>>) => boolean }): string {
  const full = buildTeamsOpenMetrics({ now: opts.now });
  const out: string[] = [];
  for (const line of full.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#') || opts.keep(sampleLabels(line))) out.push(line);
  }
  return `${out.join('\n')}\n`;
}

/** `{"q":...}` → `buildFilteredOpenMetrics` for the given namespaces only. */
export function buildNamespacesOpenMetrics(opts: { now: number; namespaces: readonly string[] }): string {
  const set = new Set(opts.namespaces);
  return buildFilteredOpenMetrics({ now: opts.now, keep: (l) => set.has(l['namespace'] ?? '') });
}

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

/** A Prometheus /api/v1/query answer reduced to what the oracle compares. */
export type Answer =
  | { kind: 'error'; errorType: string; error: string }
  | { kind: 'scalar' | 'string'; value: string }
  | { kind: 'vector' | 'matrix'; series: { labels: string; values: string[] }[] };

interface RawResult {
  resultType: string;
  result: unknown;
}

function labelKey(metric: Record<string, string>): string {
  return JSON.stringify(Object.entries(metric).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Normalises an HTTP status + body into an order-insensitive Answer. */
export function toAnswer(status: number, body: { status: string; data?: unknown; errorType?: string; error?: string }): Answer {
  if (status !== 200 || body.status !== 'success' || body.data === undefined) {
    return { kind: 'error', errorType: body.errorType ?? `http_${status}`, error: body.error ?? '' };
  }
  const data = body.data as RawResult;
  if (data.resultType === 'scalar' || data.resultType === 'string') {
    const [, v] = data.result as [number, string];
    return { kind: data.resultType, value: v };
  }
  const rows = data.result as { metric: Record<string, string>; value?: [number, string]; values?: [number, string][]; histogram?: unknown }[];
  const series = rows.map((r) => ({
    labels: labelKey(r.metric),
    values: r.value !== undefined ? [`${r.value[0]}=${r.value[1]}`] : (r.values ?? []).map(([t, v]) => `${t}=${v}`),
  }));
  series.sort((a, b) => (a.labels < b.labels ? -1 : a.labels > b.labels ? 1 : 0));
  return { kind: data.resultType === 'matrix' ? 'matrix' : 'vector', series };
}

function sameNumber(a: string, b: string): boolean {
  if (a === b) return true;
  const x = Number(a);
  const y = Number(b);
  if (Number.isNaN(x) && Number.isNaN(y)) return true;
  if (!Number.isFinite(x) || !Number.isFinite(y)) return x === y;
  return Math.abs(x - y) <= 1e-9 * Math.max(Math.abs(x), Math.abs(y));
}

function samePoint(a: string, b: string): boolean {
  const [ta, va] = a.split('=') as [string, string];
  const [tb, vb] = b.split('=') as [string, string];
  return ta === tb && sameNumber(va, vb);
}

/** Equality with a 1e-9 relative float tolerance; two errors are equal whatever their text. */
export function sameAnswer(a: Answer, b: Answer): boolean {
  if (a.kind === 'error' || b.kind === 'error') return a.kind === b.kind;
  if (a.kind !== b.kind) return false;
  if (!('series' in a) || !('series' in b)) {
    if ('series' in a || 'series' in b) return false;
    return a.kind === 'string' ? a.value === b.value : sameNumber(a.value, b.value);
  }
  if (a.series.length !== b.series.length) return false;
  return a.series.every((s, i) => {
    const t = b.series[i];
    return t !== undefined && s.labels === t.labels && s.values.length === t.values.length && s.values.every((v, j) => samePoint(v, t.values[j] as string));
  });
}

/** Every namespace label value in an answer's series. */
export function namespacesIn(a: Answer): string[] {
  if (!('series' in a)) return [];
  const out = new Set<string>();
  for (const s of a.series) {
    for (const [k, v] of JSON.parse(s.labels) as [string, string][]) if (k === 'namespace') out.add(v);
  }
  return [...out];
}

/** Short text of an answer for failure messages. */
export function describeAnswer(a: Answer): string {
  const s = JSON.stringify(a);
  return s.length > 600 ? `${s.slice(0, 597)}...` : s;
}
