// `make e2e-report` (scripts/e2e-report.ts) over fixture results, and the
// bypass suites' task summaries (e2e/harness/results.ts).
import { execFileSync } from 'node:child_process';
import { readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RunnerTestFile } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { summarizeBypass } from '../../e2e/harness/results.ts';
import { repoRoot } from '../../e2e/harness/tools.ts';
import { buildReport, renderMarkdown, renderText } from '../../scripts/e2e-report.ts';

const tmp = (): string => tempDir('lbac-e2e-report-');

const isolation = {
  date: '2026-01-01T00:00:00.000Z',
  counts: [
    { tenant: 'team-a', mode: 'instant', queries: 10, gatewayRefused: 1, run: 9, matches: 8, bothErrors: 0, mismatches: 0, excluded: 1, leaks: 0 },
    { tenant: 'team-b', mode: 'range', queries: 10, gatewayRefused: 0, run: 10, matches: 8, bothErrors: 0, mismatches: 1, excluded: 0, leaks: 1 },
  ],
  leaks: [{ tenant: 'team-b', mode: 'range', q: 'up', namespaces: ['team-a-x'] }],
  mismatches: [{ tenant: 'team-b', mode: 'range', q: 'up' }],
};

/** A vitest file task tree, as the afterAll hook receives it. */
function fakeFile(): RunnerTestFile {
  const test = (name: string, state: string, message?: string) => ({ type: 'test', name, result: { state, ...(message !== undefined ? { errors: [{ message }] } : {}) } });
  return {
    type: 'suite',
    name: 'e2e/bypass/x.test.ts',
    tasks: [
      {
        type: 'suite',
        name: 'bypass attempts against Prometheus',
        tasks: [
          { type: 'suite', name: 'paths', tasks: [test('path //x', 'pass'), test('path /y', 'fail', 'path /y: HTTP 200 {}: expected [ 404 ] to include 200')] },
          { type: 'suite', name: 'headers', tasks: [test('spoofed', 'fail', 'spoofed: expected [ \'leak: team-b-api\' ] to deeply equal []'), test('skipped', 'skip')] },
          test('still healthy', 'pass'),
        ],
      },
    ],
  } as unknown as RunnerTestFile;
}

describe('bypass summaries', () => {
  it('counts rows per describe group; an unexpected status is a mismatch, any other failure a leak', () => {
    const s = summarizeBypass(fakeFile(), { suite: 'bypass-x', backend: 'prometheus', tenant: 'team-a' });
    expect(s.total).toEqual({ rows: 5, blocked: 2, leaks: 1, mismatches: 1, notRun: 1 });
    const byGroup = Object.fromEntries(s.groups.map((g) => [g.group, g]));
    expect(byGroup['bypass attempts against Prometheus > paths']).toMatchObject({ rows: 2, blocked: 1, mismatches: 1, leaks: 0 });
    expect(byGroup['bypass attempts against Prometheus > headers']).toMatchObject({ rows: 2, blocked: 0, leaks: 1, notRun: 1 });
    expect(byGroup['bypass attempts against Prometheus']).toMatchObject({ rows: 1, blocked: 1 });
    expect(s.groups.flatMap((g) => g.failures.map((f) => [f.row, f.kind]))).toEqual([
      ['path /y', 'mismatch'],
      ['spoofed', 'leak'],
    ]);
  });

  it('a backend function splits one file by group', () => {
    const s = summarizeBypass(fakeFile(), { suite: 'bypass-x', backend: (g) => (g.endsWith('paths') ? 'loki' : 'tempo'), tenant: 'team-a' });
    expect(s.groups.map((g) => [g.group.split(' > ').at(-1), g.backend])).toEqual([
      ['paths', 'loki'],
      ['headers', 'tempo'],
      ['bypass attempts against Prometheus', 'tempo'],
    ]);
  });
});

describe('the report', () => {
  it('one row per backend × tenant × endpoint/mode, with totals and findings', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'isolation-promql.json'), JSON.stringify(isolation));
    writeFileSync(join(dir, 'bypass-prometheus.json'), JSON.stringify(summarizeBypass(fakeFile(), { suite: 'bypass-prometheus', backend: 'prometheus', tenant: 'team-a' })));
    const r = buildReport(dir);
    expect(r.rows.map((x) => [x.suite, x.backend, x.tenant, x.endpoint, x.run, x.matches, x.leaks, x.mismatches])).toEqual([
      ['isolation oracle', 'prometheus', 'team-a', 'query (instant)', 9, 8, 0, 0],
      ['isolation oracle', 'prometheus', 'team-b', 'query_range', 10, 8, 1, 1],
      ['bypass', 'prometheus', 'team-a', 'paths', 2, 1, 0, 1],
      ['bypass', 'prometheus', 'team-a', 'headers', 1, 0, 1, 0],
      ['bypass', 'prometheus', 'team-a', '(rows outside a sub-group)', 1, 1, 0, 0],
    ]);
    expect(r.total).toEqual({ run: 23, matches: 18, leaks: 2, mismatches: 2 });
    expect(r.rows[0]?.notes).toBe('1 excluded (listed differences), 1 refused by the gateway (not run)');
    expect(r.findings.some((f) => f.startsWith('LEAK isolation [team-b/range] "up"'))).toBe(true);
    expect(r.findings.some((f) => f.startsWith('LEAK bypass [prometheus] spoofed: expected'))).toBe(true);
    const text = renderText(r);
    expect(text).toMatch(/^total\s+23\s+18\s+2\s+2$/m);
    expect(renderMarkdown(r)).toContain('| isolation oracle | prometheus | team-b | query_range | 10 | 8 | 1 | 1 |');
  });

  it('names the suite and the make target for a missing result, and marks results older than --since stale', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'isolation-promql.json'), JSON.stringify(isolation));
    utimesSync(join(dir, 'isolation-promql.json'), new Date(1_000_000), new Date(1_000_000));
    const r = buildReport(dir, { since: Date.now() - 60_000 });
    const status = Object.fromEntries(r.sources.map((s) => [s.suite, s.status]));
    expect(status).toEqual({ 'isolation-promql': 'stale', 'promql-parity': 'missing', 'bypass-prometheus': 'missing', 'bypass-loki-tempo': 'missing' });
    const text = renderText(r);
    expect(text).toMatch(/promql-parity\.json is MISSING: `make test-e2e` \(or `make test`\) writes it — suite e2e\/promql-parity\.test\.ts/);
    expect(text).toMatch(/isolation-promql\.json is STALE/);
  });

  it('the CLI writes report.md and report.json; exit 0 by default, 1 with --strict when something is missing', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'isolation-promql.json'), JSON.stringify({ ...isolation, counts: [isolation.counts[0]], leaks: [], mismatches: [] }));
    const script = join(repoRoot, 'scripts', 'e2e-report.ts');
    const out = execFileSync(process.execPath, [script, '--dir', dir], { encoding: 'utf8' });
    expect(out).toMatch(/\[e2e-report\] 9 run, 8 matches, 0 leaks, 0 mismatches/);
    expect(readFileSync(join(dir, 'report.md'), 'utf8')).toMatch(/^# e2e isolation report/);
    expect(JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'))).toMatchObject({ total: { run: 9, matches: 8, leaks: 0, mismatches: 0 } });
    let code = 0;
    try {
      execFileSync(process.execPath, [script, '--dir', dir, '--strict'], { encoding: 'utf8' });
    } catch (err) {
      code = (err as { status: number }).status;
    }
    expect(code).toBe(1);
  });
});
