// scripts/vitest-run.sh (make test, test-unit, test-e2e): the run's temp files go under one
// directory of their own, removed when vitest passed and kept, and named, when it failed; the
// script exits with vitest's status and hands its arguments on. A stand-in `vitest` on PATH
// writes a file into the TMPDIR it was given and exits as told.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { repoRoot } from '../../e2e/harness/tools.ts';

function run(exitCode: number) {
  const root = tempDir('lbac-vitest-run-');
  const bin = join(root, 'bin');
  const tmp = join(root, 'tmp');
  for (const d of [bin, tmp]) mkdirSync(d);
  const fake = join(bin, 'vitest');
  writeFileSync(fake, `#!/usr/bin/env bash\necho "$TMPDIR" > "${root}/seen-tmpdir"\necho "$@" > "${root}/seen-args"\necho log > "$TMPDIR/e2e-process.log"\nexit ${exitCode}\n`);
  chmodSync(fake, 0o755);
  const r = spawnSync('bash', [join(repoRoot, 'scripts/vitest-run.sh'), '--project', 'unit'], {
    env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}`, TMPDIR: tmp },
    encoding: 'utf8',
  });
  const seen = readFileSync(join(root, 'seen-tmpdir'), 'utf8').trim();
  return { status: r.status, stdout: r.stdout, tmp, seen, args: readFileSync(join(root, 'seen-args'), 'utf8').trim() };
}

describe('scripts/vitest-run.sh', () => {
  it('runs vitest with its arguments in a fresh lbac-test.* directory under TMPDIR, removed when it passed', () => {
    const r = run(0);
    expect(r.status).toBe(0);
    expect(r.args).toBe('run --project unit');
    expect(r.seen.startsWith(join(r.tmp, 'lbac-test.'))).toBe(true);
    expect(existsSync(r.seen)).toBe(false);
    expect(readdirSync(r.tmp)).toEqual([]);
  });

  it('keeps the directory and names it when vitest failed, and exits with its status', () => {
    const r = run(3);
    expect(r.status).toBe(3);
    expect(readFileSync(join(r.seen, 'e2e-process.log'), 'utf8')).toBe('log\n');
    expect(r.stdout).toContain(`temp files and e2e process logs of this run: ${r.seen}`);
  });
});
