// scripts/test-summary.ts (the last step of make test): the closing "N passed, N failed" line
// counts vitest's JSON report plus opa test, and the lines just above it name each failed test
// and each suite that failed to load (CI keeps only the end of the output).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { repoRoot } from '../../e2e/harness/tools.ts';

function summarise(report: unknown, opa: string | undefined) {
  const dir = tempDir('lbac-test-summary-');
  const json = join(dir, 'vitest.json');
  const txt = join(dir, 'opa.txt');
  writeFileSync(json, JSON.stringify(report));
  if (opa !== undefined) writeFileSync(txt, opa);
  const r = spawnSync(process.execPath, [join(repoRoot, 'scripts/test-summary.ts'), json, txt], { cwd: repoRoot, encoding: 'utf8' });
  const lastLine = r.stdout.trimEnd().split('\n').at(-1);
  return { status: r.status, lastLine, stderr: r.stderr };
}

const passing = {
  numPassedTests: 2,
  numFailedTests: 0,
  numTotalTestSuites: 1,
  testResults: [
    {
      status: 'passed',
      name: join(repoRoot, 'test/a.test.ts'),
      assertionResults: [
        { status: 'passed', fullName: 'a one' },
        { status: 'passed', fullName: 'a two' },
      ],
    },
  ],
};

describe('scripts/test-summary.ts', () => {
  it('adds opa test to vitest and exits 0 when nothing failed', () => {
    const r = summarise(passing, 'opa test: 5 passed, 0 failed\n');
    expect(r.lastLine).toBe('7 passed, 0 failed');
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('names each failed test with its file and the first line of its message', () => {
    const report = {
      ...passing,
      numPassedTests: 1,
      numFailedTests: 1,
      testResults: [
        {
          status: 'failed',
          name: join(repoRoot, 'e2e/b.test.ts'),
          assertionResults: [
            { status: 'passed', fullName: 'b fine' },
            { status: 'failed', fullName: 'b reload waits', failureMessages: ['\nAssertionError: expected 503 to be 200\n    at e2e/b.test.ts:10:3'] },
          ],
        },
      ],
    };
    const r = summarise(report, 'opa test: 5 passed, 0 failed\n');
    expect(r.lastLine).toBe('6 passed, 1 failed');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('[test] failed: e2e/b.test.ts > b reload waits: AssertionError: expected 503 to be 200');
    expect(r.stderr).not.toContain('at e2e/b.test.ts:10:3');
  });

  it('counts a suite that failed outside any test (a hook, an import) and names it', () => {
    const report = {
      ...passing,
      testResults: [
        ...passing.testResults,
        { status: 'failed', name: join(repoRoot, 'e2e/c.test.ts'), message: 'Error: ENOTEMPTY: directory not empty, rmdir', assertionResults: [] },
      ],
    };
    const r = summarise(report, 'opa test: 5 passed, 0 failed\n');
    expect(r.lastLine).toBe('7 passed, 1 failed');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('[test] suite failed: e2e/c.test.ts: Error: ENOTEMPTY: directory not empty, rmdir');
  });

  it('names at most 40, then says how many more', () => {
    const many = Array.from({ length: 45 }, (_, i) => ({ status: 'failed', fullName: `t${i}`, failureMessages: [`Error: e${i}`] }));
    const report = { ...passing, numPassedTests: 0, numFailedTests: 45, testResults: [{ status: 'failed', name: join(repoRoot, 'test/d.test.ts'), assertionResults: many }] };
    const r = summarise(report, 'opa test: 5 passed, 0 failed\n');
    expect(r.lastLine).toBe('5 passed, 45 failed');
    expect(r.stderr).toContain('[test] failed: test/d.test.ts > t39: Error: e39');
    expect(r.stderr).not.toContain('t40:');
    expect(r.stderr).toContain('[test] … and 5 more');
  });

  it('fails when opa test did not report its count', () => {
    const r = summarise(passing, 'something else\n');
    expect(r.lastLine).toBe('2 passed, 1 failed');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('opa test did not report');
  });
});
