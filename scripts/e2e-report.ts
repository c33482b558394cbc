// `make e2e-report`: one table over the JSON results the e2e suites leave in
// e2e/results/ — backend × tenant × endpoint/mode: queries run, matches,
// leaks, mismatches — printed, and written to e2e/results/report.md and
// report.json. It only reads results (never starts a backend); a missing
// result file is named with the suite and the make target that writes it.
//
//   node scripts/e2e-report.ts [--since FILE] [--strict] [--dir DIR]
//
// --since FILE: results older than FILE's mtime are marked stale (`make test`
//   passes a stamp it touches before vitest, so results a failed or skipped
//   suite left from an earlier run are not mistaken for this run's).
// --strict: exit 1 on any leak, mismatch, missing or stale result. Without it
//   the exit code is 0 (the suites themselves fail on leaks and mismatches);
//   2 on unreadable results.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BypassSummary } from '../e2e/harness/results.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface ReportRow {
  suite: string;
  backend: string;
  tenant: string;
  endpoint: string;
  run: number;
  matches: number;
  leaks: number;
  mismatches: number;
  notes: string;
}

export interface SourceInfo {
  suite: string;
  file: string;
  /** The test file that writes it. */
  writer: string;
  status: 'ok' | 'missing' | 'stale' | 'unreadable';
  date?: string;
  error?: string;
}

export interface Report {
  date: string;
  sources: SourceInfo[];
  rows: ReportRow[];
  total: { run: number; matches: number; leaks: number; mismatches: number };
  /** Individual leaks / mismatches the suites recorded (first 50). */
  findings: string[];
}

interface Source {
  suite: string;
  file: string;
  writer: string;
  rows(data: unknown): { rows: ReportRow[]; findings: string[]; date?: string };
}

// ---- the suites' result shapes (only what the report reads) ----------------

interface IsolationResult {
  date: string;
  counts: { tenant: string; mode: 'instant' | 'range'; run: number; matches: number; mismatches: number; excluded: number; leaks: number; gatewayRefused: number }[];
  leaks: { tenant: string; mode: string; q: string; namespaces: string[] }[];
  mismatches: { tenant: string; mode: string; q: string }[];
}

interface ParityResult {
  date: string;
  rows: {
    policy: string;
    total: number;
    backendAcceptsGatewayRejects: number;
    backendRejectsRewrittenAccepted: number;
    rewrittenUnparseable: number;
    leaks: number;
  }[];
  problems: string[];
}

const plural = (n: number, word: string): string => `${n} ${word}`;
const notes = (parts: [number, string][]): string =>
  parts
    .filter(([n]) => n > 0)
    .map(([n, w]) => plural(n, w))
    .join(', ');

export const SOURCES: readonly Source[] = [
  {
    suite: 'isolation-promql',
    file: 'isolation-promql.json',
    writer: 'e2e/isolation/promql.test.ts',
    rows(data) {
      const d = data as IsolationResult;
      return {
        date: d.date,
        rows: d.counts.map((c) => ({
          suite: 'isolation oracle',
          backend: 'prometheus',
          tenant: c.tenant,
          endpoint: c.mode === 'instant' ? 'query (instant)' : 'query_range',
          run: c.run,
          matches: c.matches,
          leaks: c.leaks,
          mismatches: c.mismatches,
          notes: notes([
            [c.excluded, 'excluded (listed differences)'],
            [c.gatewayRefused, 'refused by the gateway (not run)'],
          ]),
        })),
        findings: [
          ...d.leaks.map((l) => `LEAK isolation [${l.tenant}/${l.mode}] ${JSON.stringify(l.q)}: ${l.namespaces.join(', ')}`),
          ...d.mismatches.map((m) => `MISMATCH isolation [${m.tenant}/${m.mode}] ${JSON.stringify(m.q)}`),
        ],
      };
    },
  },
  {
    suite: 'promql-parity',
    file: 'promql-parity.json',
    writer: 'e2e/promql-parity.test.ts',
    rows(data) {
      const d = data as ParityResult;
      return {
        date: d.date,
        rows: d.rows.map((r) => {
          // Queries (not selectors) with a selector Prometheus sees without the policy.
          const leakLines = new Set(d.problems.filter((p) => p.startsWith(`[${r.policy}] `) && p.includes(': LEAK: ')).map((p) => p.split(':')[0]));
          const leaks = Math.max(leakLines.size, r.leaks > 0 ? 1 : 0);
          const mismatches = r.rewrittenUnparseable + r.backendRejectsRewrittenAccepted;
          const refused = r.backendAcceptsGatewayRejects;
          return {
            suite: 'parser parity',
            backend: 'prometheus (parse_query)',
            tenant: `policy ${r.policy}`,
            endpoint: 'rewritten query, every selector',
            run: r.total,
            matches: Math.max(0, r.total - leaks - mismatches - refused),
            leaks,
            mismatches,
            notes: notes([
              [refused, 'refused by the gateway, accepted by Prometheus (allowlisted or no exact DNF rewrite)'],
              [r.leaks, 'unenforced selectors'],
            ]),
          };
        }),
        findings: d.problems.map((p) => `parity ${p}`),
      };
    },
  },
  ...(['prometheus', 'loki-tempo'] as const).map(
    (name): Source => ({
      suite: `bypass-${name}`,
      file: `bypass-${name}.json`,
      writer: `e2e/bypass/${name}.test.ts`,
      rows(data) {
        const d = data as BypassSummary;
        return {
          date: d.date,
          rows: d.groups.map((g) => {
            const parts = g.group.split(' > ');
            return {
              suite: 'bypass',
              backend: g.backend,
              tenant: d.tenant,
              endpoint: parts.length > 1 ? parts.slice(1).join(' > ') : '(rows outside a sub-group)',
              run: g.rows - g.notRun,
              matches: g.blocked,
              leaks: g.leaks,
              mismatches: g.mismatches,
              notes: notes([[g.notRun, 'rows not run']]),
            };
          }),
          findings: d.groups.flatMap((g) => g.failures.map((f) => `${f.kind === 'leak' ? 'LEAK' : 'MISMATCH'} bypass [${g.backend}] ${f.row}: ${(f.error.startsWith(`${f.row}: `) ? f.error.slice(f.row.length + 2) : f.error).split('\n')[0]?.slice(0, 200) ?? ''}`)),
        };
      },
    }),
  ),
];

/** Builds the report from the result files in `dir`. */
export function buildReport(dir: string, opts: { since?: number } = {}): Report {
  const sources: SourceInfo[] = [];
  const rows: ReportRow[] = [];
  const findings: string[] = [];
  for (const s of SOURCES) {
    const file = join(dir, s.file);
    const info: SourceInfo = { suite: s.suite, file: relative(root, file) || file, writer: s.writer, status: 'ok' };
    sources.push(info);
    if (!existsSync(file)) {
      info.status = 'missing';
      continue;
    }
    try {
      const out = s.rows(JSON.parse(readFileSync(file, 'utf8')) as unknown);
      if (out.date !== undefined) info.date = out.date;
      rows.push(...out.rows);
      findings.push(...out.findings);
      if (opts.since !== undefined && statSync(file).mtimeMs < opts.since) info.status = 'stale';
    } catch (err) {
      info.status = 'unreadable';
      info.error = err instanceof Error ? err.message : String(err);
    }
  }
  const total = rows.reduce(
    (a, r) => ({ run: a.run + r.run, matches: a.matches + r.matches, leaks: a.leaks + r.leaks, mismatches: a.mismatches + r.mismatches }),
    { run: 0, matches: 0, leaks: 0, mismatches: 0 },
  );
  return { date: new Date().toISOString(), sources, rows, total, findings: findings.slice(0, 50) };
}

const COLUMNS: readonly [keyof ReportRow, string][] = [
  ['suite', 'suite'],
  ['backend', 'backend'],
  ['tenant', 'tenant'],
  ['endpoint', 'endpoint / mode'],
  ['run', 'run'],
  ['matches', 'matches'],
  ['leaks', 'leaks'],
  ['mismatches', 'mismatches'],
  ['notes', 'notes'],
];

function cells(r: ReportRow): string[] {
  return COLUMNS.map(([k]) => String(r[k]));
}

function totalCells(t: Report['total']): string[] {
  return ['total', '', '', '', String(t.run), String(t.matches), String(t.leaks), String(t.mismatches), ''];
}

function sourceLine(s: SourceInfo): string {
  switch (s.status) {
    case 'ok':
      return `${s.file} (${s.writer}, ${s.date ?? 'undated'})`;
    case 'stale':
      return `${s.file} is STALE: written ${s.date ?? 'earlier'}, before this run (${s.writer} did not write it this time; see its output)`;
    case 'missing':
      return `${s.file} is MISSING: \`make test-e2e\` (or \`make test\`) writes it — suite ${s.writer} (alone: \`npx vitest run --project e2e ${s.writer}\`)`;
    case 'unreadable':
      return `${s.file} is UNREADABLE (${s.error ?? ''}): re-run ${s.writer}`;
  }
}

/** The table as aligned plain text (terminal). */
export function renderText(r: Report): string {
  const head = COLUMNS.map(([, h]) => h);
  const body = [...r.rows.map(cells), totalCells(r.total)];
  const numeric = new Set([4, 5, 6, 7]);
  const width = head.map((h, i) => Math.max(h.length, ...body.map((row) => (i === head.length - 1 ? 0 : (row[i] ?? '').length))));
  const fmt = (row: string[]): string =>
    row
      .map((c, i) => (i === row.length - 1 ? c : numeric.has(i) ? c.padStart(width[i] ?? 0) : c.padEnd(width[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const lines = [`[e2e-report] isolation results (${r.date})`, fmt(head), fmt(head.map((_, i) => '-'.repeat(i === head.length - 1 ? 5 : (width[i] ?? 0))))];
  for (const row of body.slice(0, -1)) lines.push(fmt(row));
  lines.push(fmt(head.map((_, i) => '-'.repeat(i === head.length - 1 ? 5 : (width[i] ?? 0)))));
  lines.push(fmt(body.at(-1) as string[]));
  lines.push('sources:');
  for (const s of r.sources) lines.push(`  ${sourceLine(s)}`);
  if (r.findings.length > 0) {
    lines.push('findings:');
    for (const f of r.findings) lines.push(`  ${f}`);
  }
  lines.push(`[e2e-report] ${r.total.run} run, ${r.total.matches} matches, ${r.total.leaks} leaks, ${r.total.mismatches} mismatches; written to e2e/results/report.md and report.json`);
  return lines.join('\n');
}

const mdCell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The same as Markdown (e2e/results/report.md). */
export function renderMarkdown(r: Report): string {
  const out = [
    '# e2e isolation report',
    '',
    `Generated ${r.date} by \`make e2e-report\` from the JSON results in \`e2e/results/\`.`,
    '',
    `| ${COLUMNS.map(([, h]) => h).join(' | ')} |`,
    `|${COLUMNS.map(([k]) => (['run', 'matches', 'leaks', 'mismatches'].includes(k) ? '---:' : '---')).join('|')}|`,
    ...r.rows.map((row) => `| ${cells(row).map(mdCell).join(' | ')} |`),
    `| ${totalCells(r.total).map((c, i) => (i === 0 ? '**total**' : c === '' ? '' : `**${c}**`)).join(' | ')} |`,
    '',
    '- **isolation oracle**: a corpus query through the gateway as the tenant, against a Prometheus with every tenant\'s data, vs the same query against a Prometheus holding only that tenant\'s data. *matches*: same answer; *leaks*: another tenant\'s namespace in the gateway\'s answer; *mismatches*: any other difference.',
    '- **parser parity**: each corpus query rewritten under a policy and parsed by Prometheus. *leaks*: queries with a selector Prometheus sees without the policy; *mismatches*: rewritten text Prometheus cannot parse although it parses the original, or accepts although it rejects the original; refused queries are in the notes.',
    '- **bypass**: attack rows (one request each) sent as the tenant. *matches*: rows whose oracle held (expected status, nothing unenforced forwarded, no foreign data); *leaks*: rows whose oracle failed; *mismatches*: rows with an unexpected HTTP status.',
    '',
    '## Sources',
    '',
    ...r.sources.map((s) => `- ${sourceLine(s)}`),
  ];
  if (r.findings.length > 0) out.push('', '## Findings', '', ...r.findings.map((f) => `- ${mdCell(f)}`));
  return `${out.join('\n')}\n`;
}

function main(argv: readonly string[]): number {
  let dir = join(root, 'e2e', 'results');
  let since: number | undefined;
  let strict = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--strict') strict = true;
    else if (a === '--dir' && argv[i + 1] !== undefined) dir = argv[++i] as string;
    else if (a === '--since' && argv[i + 1] !== undefined) {
      const f = argv[++i] as string;
      since = existsSync(f) ? statSync(f).mtimeMs : undefined;
    } else {
      console.error(`usage: node scripts/e2e-report.ts [--since FILE] [--strict] [--dir DIR] (unknown argument ${a ?? ''})`);
      return 2;
    }
  }
  const report = buildReport(dir, since !== undefined ? { since } : {});
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(dir, 'report.md'), renderMarkdown(report));
  console.log(renderText(report));
  if (report.sources.some((s) => s.status === 'unreadable')) return 2;
  const incomplete = report.sources.some((s) => s.status !== 'ok');
  if (strict && (report.total.leaks > 0 || report.total.mismatches > 0 || incomplete)) return 1;
  return 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = main(process.argv.slice(2));
}
