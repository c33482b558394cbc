// JSON summaries the e2e suites leave in e2e/results/ for `make e2e-report`
// (scripts/e2e-report.ts). The isolation oracle and the parity suite write
// their own, richer files; the bypass suites, whose rows are vitest tests,
// summarise their task results with writeBypassSummary() in an afterAll hook.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunnerTask, RunnerTestFile, RunnerTestSuite } from 'vitest';
import { repoRoot } from './tools.ts';

export const resultsDir: string = join(repoRoot, 'e2e', 'results');

/** Writes e2e/results/<name>.json (pretty-printed, trailing newline). */
export function writeResult(name: string, data: unknown): string {
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

/** One describe group of a bypass suite: attack rows run and their outcome. */
export interface BypassGroup {
  /** The describe path below the file, e.g. "bypass attempts against Prometheus … > parameters". */
  group: string;
  backend: string;
  rows: number;
  /** Rows whose oracle held (status as expected, nothing unenforced forwarded, no foreign data). */
  blocked: number;
  /** Failed rows other than an unexpected status: the oracle found something (counted as leaks). */
  leaks: number;
  /** Failed rows with an unexpected HTTP status (or an error outside the oracle). */
  mismatches: number;
  /** Rows skipped or not run (e.g. a failed beforeAll). */
  notRun: number;
  failures: { group: string; row: string; kind: 'leak' | 'mismatch'; error: string }[];
}

export interface BypassMeta {
  /** File name under e2e/results/ (without .json). */
  suite: string;
  /** The backend attacked, or a function of the describe group (a file covering several backends). */
  backend: string | ((group: string) => string);
  /** Who the attacks run as (the policy every row is checked against). */
  tenant: string;
}

export interface BypassSummary {
  suite: string;
  /** Who the attacks run as (the policy every row is checked against). */
  tenant: string;
  date: string;
  total: { rows: number; blocked: number; leaks: number; mismatches: number; notRun: number };
  groups: BypassGroup[];
}

function tests(task: RunnerTask, path: string[], out: { path: string[]; task: RunnerTask }[]): void {
  if (task.type === 'suite') for (const t of task.tasks) tests(t, [...path, task.name], out);
  else out.push({ path, task });
}

/**
 * Counts the tests of a bypass file by their describe group. A failed row is
 * a "mismatch" when the first error is the suites' status assertion (its
 * message starts with "<row name>: HTTP "), otherwise a "leak": the oracle
 * (or a row's own check) found unenforced or foreign data — counted
 * conservatively as a leak.
 */
export function summarizeBypass(file: Readonly<RunnerTestFile | RunnerTestSuite>, meta: BypassMeta): BypassSummary {
  const all: { path: string[]; task: RunnerTask }[] = [];
  for (const t of file.tasks) tests(t, [], all);
  const groups = new Map<string, BypassGroup>();
  for (const { path, task } of all) {
    const name = path.join(' > ') || '(top level)';
    let g = groups.get(name);
    if (g === undefined) {
      g = { group: name, backend: typeof meta.backend === 'string' ? meta.backend : meta.backend(name), rows: 0, blocked: 0, leaks: 0, mismatches: 0, notRun: 0, failures: [] };
      groups.set(name, g);
    }
    g.rows++;
    const state = task.result?.state;
    if (state === 'pass') g.blocked++;
    else if (state === 'fail') {
      const error = task.result?.errors?.[0]?.message ?? '';
      const kind = error.startsWith(`${task.name}: HTTP `) ? 'mismatch' : 'leak';
      if (kind === 'leak') g.leaks++;
      else g.mismatches++;
      g.failures.push({ group: name, row: task.name, kind, error: error.slice(0, 500) });
    } else g.notRun++;
  }
  const list = [...groups.values()];
  const sum = (k: 'rows' | 'blocked' | 'leaks' | 'mismatches' | 'notRun'): number => list.reduce((a, g) => a + g[k], 0);
  return {
    suite: meta.suite,
    tenant: meta.tenant,
    date: new Date().toISOString(),
    total: { rows: sum('rows'), blocked: sum('blocked'), leaks: sum('leaks'), mismatches: sum('mismatches'), notRun: sum('notRun') },
    groups: list,
  };
}

/** summarizeBypass + writeResult(meta.suite); for a bypass file's top-level afterAll. */
export function writeBypassSummary(file: Readonly<RunnerTestFile | RunnerTestSuite>, meta: BypassMeta): BypassSummary {
  const summary = summarizeBypass(file, meta);
  writeResult(meta.suite, summary);
  return summary;
}
