// `make bench-rewrite` (bench/rewrite.ts) still runs and reports what
// docs/performance.md reads from it: every language's cold, cached and parse
// rows over the same queries. Two calls per query only: this checks the
// harness, not the figures (timings are compared only where they differ by
// two orders of magnitude: a cache hit against a cold rewrite).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'bench-rewrite-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Row {
  language: string;
  policy: string;
  mode: string;
  group: string;
  stats: { n: number; queries: number; p50_us: number; p99_us: number };
}

describe('bench/rewrite.ts', () => {
  it('writes cold, cached and parse rows for every language and real-world group', async () => {
    const out = join(dir, 'rewrite.json');
    await promisify(execFile)(process.execPath, [join(root, 'bench', 'rewrite.ts')], {
      cwd: root,
      env: { ...process.env, BENCH_REPS_COLD: '2', BENCH_REPS_CACHED: '2', BENCH_WARMUP: '1', BENCH_OUT: out },
      maxBuffer: 16 * 1024 * 1024,
    });
    const report = JSON.parse(readFileSync(out, 'utf8')) as { rows: Row[]; skipped: string[] };
    expect(report.skipped).toEqual([]);
    const find = (language: string, group: string, mode: string, policy = 'single'): Row | undefined =>
      report.rows.find((r) => r.language === language && r.group === group && r.mode === mode && r.policy === policy);
    for (const [language, group] of [
      ['promql', 'all'],
      ['promql', 'real-world'],
      ['logql', 'all'],
      ['logql', 'real-world'],
      ['traceql', 'all'],
      ['traceql', 'real-world'],
    ] as const) {
      const cold = find(language, group, 'cold');
      const cached = find(language, group, 'cached');
      const parse = find(language, group, 'parse');
      expect(cold, `${language} ${group} cold`).toBeDefined();
      expect(cached, `${language} ${group} cached`).toBeDefined();
      expect(parse, `${language} ${group} parse`).toBeDefined();
      // Every accepted query is timed in every mode.
      expect(cold!.stats.queries).toBeGreaterThan(0);
      expect(parse!.stats.queries).toBe(cold!.stats.queries);
      expect(cached!.stats.queries).toBe(cold!.stats.queries);
      expect(cold!.stats.p50_us).toBeGreaterThan(0);
      expect(parse!.stats.p50_us).toBeGreaterThan(0);
      expect(cached!.stats.p50_us).toBeLessThan(cold!.stats.p50_us);
    }
    // The parse floor is measured once per corpus, not per policy.
    expect(find('promql', 'all', 'parse', 'dnf2')).toBeUndefined();
    expect(find('promql', 'all', 'cold', 'dnf2')).toBeDefined();
  }, 120_000);
});
