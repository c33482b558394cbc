/**
 * Merging the answers of one Prometheus instant query sent once per policy
 * group (RouteSpec.fanOut): a query that is only a range selector (`up[5m]`)
 * answers raw samples, `{"status":"success","data":{"resultType":"matrix",
 * "result":[{metric, values?, histograms?}…]}}`. The union's series are the
 * union of each group's series; a series two groups both reach comes back
 * from both with the same samples (one storage, one evaluation time) and is
 * kept once. Pure; no I/O.
 */
import { GatewayError } from '../errors.ts';
import { compareCodePoints } from './list-answers.ts';
import type { Params } from './form-params.ts';

interface MatrixSeries {
  readonly metric: Readonly<Record<string, string>>;
  readonly [field: string]: unknown;
}

export interface MatrixAnswer {
  readonly status: 'success';
  readonly data: { readonly resultType: 'matrix'; readonly result: MatrixSeries[] };
  readonly warnings?: string[];
  readonly infos?: string[];
}

/** Prometheus' warning when `limit` cut the result (web/api/v1 truncateResults). */
export const TRUNCATED_WARNING = 'results truncated due to limit';

const unreadable = (): GatewayError => new GatewayError('upstream_error', 'upstream answer could not be read');

/** The series' labels sorted by name, as Prometheus holds them. */
function sortedLabels(metric: Readonly<Record<string, string>>): [string, string][] {
  return Object.entries(metric).sort((a, b) => compareCodePoints(a[0], b[0]));
}

/** Prometheus' labels.Compare: name, then value, label by label; a prefix sorts first. */
export function compareLabelSets(a: readonly [string, string][], b: readonly [string, string][]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const [an, av] = a[i]!;
    const [bn, bv] = b[i]!;
    if (an !== bn) return compareCodePoints(an, bn);
    if (av !== bv) return compareCodePoints(av, bv);
  }
  return a.length - b.length;
}

function isSeries(s: unknown): s is MatrixSeries {
  if (s === null || typeof s !== 'object') return false;
  const metric = (s as { metric?: unknown }).metric;
  return metric !== null && typeof metric === 'object' && !Array.isArray(metric) && Object.values(metric).every((v) => typeof v === 'string');
}

function stringList(v: unknown): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw unreadable();
  return v as string[];
}

/**
 * The union of the parts' matrices, sorted as Prometheus sorts a matrix result
 * (labels.Compare), cut at the request's `limit` as Prometheus cuts it (each part
 * holds its own first `limit` series, so the union's first `limit` are among
 * them); warnings and infos once each. A part of another shape throws (→ 502).
 * Query statistics and cost estimates (`stats`, `cost`) are per evaluation and are not merged.
 */
export function mergeMatrixAnswers(answers: readonly unknown[], params: Params): MatrixAnswer {
  const bySet = new Map<string, { labels: [string, string][]; series: MatrixSeries }>();
  const warnings = new Set<string>();
  const infos = new Set<string>();
  for (const a of answers) {
    const answer = a as { status?: unknown; data?: { resultType?: unknown; result?: unknown }; warnings?: unknown; infos?: unknown } | null;
    if (answer?.status !== 'success' || answer.data?.resultType !== 'matrix' || !Array.isArray(answer.data.result)) throw unreadable();
    for (const s of answer.data.result as unknown[]) {
      if (!isSeries(s)) throw unreadable();
      const labels = sortedLabels(s.metric);
      const key = JSON.stringify(labels);
      if (!bySet.has(key)) bySet.set(key, { labels, series: s });
    }
    for (const w of stringList(answer.warnings)) warnings.add(w);
    for (const i of stringList(answer.infos)) infos.add(i);
  }
  let result = [...bySet.values()].sort((x, y) => compareLabelSets(x.labels, y.labels)).map((e) => e.series);
  // Prometheus reads `limit` with strconv.Atoi; a value it refuses never reaches a merge (the parts answered 400).
  const limit = Number(params.get('limit') ?? '');
  if (Number.isInteger(limit) && limit > 0 && result.length > limit) {
    result = result.slice(0, limit);
    warnings.add(TRUNCATED_WARNING);
  }
  return {
    status: 'success',
    data: { resultType: 'matrix', result },
    ...(warnings.size > 0 ? { warnings: [...warnings] } : {}),
    ...(infos.size > 0 ? { infos: [...infos] } : {}),
  };
}

/**
 * Parameters every part must share, fixed once before the parts are sent:
 * Prometheus evaluates an instant query without `time` at its own "now", which
 * would differ from part to part by the milliseconds between them.
 */
export function pinEvaluationTime(params: Params, nowMs: number): void {
  const time = params.get('time');
  if (time === null || time === '') params.set('time', (nowMs / 1000).toFixed(3));
}
