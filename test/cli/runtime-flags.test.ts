// The gateway runs without V8's allocation-site pretenuring (src/cli/runtime-flags.ts), set by
// bin/lbac-gateway.js before any of its code runs. V8's cachedDataVersionTag hashes the flags in
// effect, so a process that applied them reads the same tag as `node <flags>` started with them.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RUNTIME_V8_FLAGS } from '../../src/cli/runtime-flags.ts';

const root = join(import.meta.dirname, '..', '..');
const PRINT_TAG = 'import v8 from "node:v8"; console.log(v8.cachedDataVersionTag());';
/** A preload that prints the flag hash when the process exits (after whatever it ran applied). */
const TAG_AT_EXIT = `data:text/javascript,${encodeURIComponent('import v8 from "node:v8"; process.on("exit", () => process.stderr.write(`TAG ${v8.cachedDataVersionTag()}\\n`));')}`;

function run(args: string[], env: Record<string, string> = {}): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, args, { env: { ...process.env, LBAC_V8_PRETENURING: '', ...env }, encoding: 'utf8', timeout: 30_000 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

const tagOf = (nodeArgs: string[], script: string): string => run([...nodeArgs, '--input-type=module', '-e', script]).stdout.trim();

describe('runtime V8 flags', () => {
  const plain = tagOf([], PRINT_TAG);
  const flagged = tagOf([...RUNTIME_V8_FLAGS], PRINT_TAG);

  it('applyRuntimeFlags puts the process in the state `node --no-allocation-site-pretenuring` starts in', () => {
    expect(plain).toMatch(/^\d+$/);
    expect(flagged).not.toBe(plain);
    const module = JSON.stringify(pathToFileURL(join(root, 'src', 'cli', 'runtime-flags.ts')).href);
    const applied = (env: string) => tagOf([], `import { applyRuntimeFlags } from ${module}; applyRuntimeFlags(${env}); ${PRINT_TAG}`);
    expect(applied('{}')).toBe(flagged);
    // LBAC_V8_PRETENURING=1 keeps V8's default (benchmark comparisons).
    expect(applied('{ LBAC_V8_PRETENURING: "1" }')).toBe(plain);
  });

  it('bin/lbac-gateway.js applies them before the gateway runs, unless LBAC_V8_PRETENURING=1', () => {
    const bin = join(root, 'bin', 'lbac-gateway.js');
    const tagAtExit = (env: Record<string, string>): string => {
      const r = run(['--import', TAG_AT_EXIT, bin, '--help'], env);
      return /TAG (\d+)/.exec(r.stderr)?.[1] ?? `no tag (exit ${r.status}): ${r.stderr}`;
    };
    expect(tagAtExit({})).toBe(flagged);
    expect(tagAtExit({ LBAC_V8_PRETENURING: '1' })).toBe(plain);
  });
});
