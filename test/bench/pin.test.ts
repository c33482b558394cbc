// bench/lib/pin.ts: what `make bench-latency` relies on to give the load
// generator a CPU of its own: the plan, and that pinning a process reaches its
// threads and its children and what they start afterwards (the orchestrator is
// pinned first, so the servers it starts inherit the servers' CPUs).
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { allowedCpus, cpusOf, pinningPlan, pinTree, processTree } from '../../bench/lib/pin.ts';
import { eventually } from '../../e2e/harness/eventually.ts';

const linux = process.platform === 'linux';
const canPin = linux && pinningPlan('generator') !== undefined;
const started: ChildProcess[] = [];
afterEach(() => {
  // The whole tree: a parent killed with SIGKILL cannot end its children, which outlived every test run.
  for (const c of started.splice(0)) {
    for (const pid of c.pid === undefined ? [] : processTree(c.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
  }
});

/** A node process that starts a child of its own, and later (on 'go' on stdin) another. */
function parentWithChild(): ChildProcess {
  const script = `
    const { spawn } = require('node:child_process');
    const kids = [spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })];
    process.stdin.on('data', () => kids.push(spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })));
    process.on('SIGTERM', () => { for (const k of kids) k.kill('SIGKILL'); process.exit(0); });
    setInterval(() => {}, 1000);`;
  const c = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'ignore', 'inherit'] });
  started.push(c);
  return c;
}

describe('bench/lib/pin.ts', () => {
  it.skipIf(!linux)('reads the CPUs this process may use, as many as Node counts', () => {
    const cpus = allowedCpus();
    expect(cpus.length).toBe(availableParallelism());
    expect(new Set(cpus).size).toBe(cpus.length);
  });

  it('pins nothing when asked not to', () => {
    expect(pinningPlan('off')).toBeUndefined();
  });

  it.skipIf(!canPin)('gives the generator the first CPU and the servers the others', () => {
    const cpus = allowedCpus();
    const plan = pinningPlan('generator')!;
    expect(plan.generator).toBe(String(cpus[0]));
    expect(plan.servers.split(',').map(Number)).toEqual(cpus.slice(1));
  });

  it.skipIf(!canPin)('moves a process, its threads and its children, and what it starts later inherits it', async () => {
    const cpu = pinningPlan('generator')!.generator;
    const parent = parentWithChild();
    expect(await eventually(() => processTree(parent.pid!).length === 2)).toBe(true);
    const tree = processTree(parent.pid!);
    expect(tree[0]).toBe(parent.pid);
    for (const pid of tree) expect(cpusOf(pid)).not.toBe(cpu);
    pinTree(parent.pid!, cpu);
    for (const pid of processTree(parent.pid!)) expect(cpusOf(pid)).toBe(cpu);
    parent.stdin!.write('go\n');
    expect(await eventually(() => processTree(parent.pid!).length === 3)).toBe(true);
    for (const pid of processTree(parent.pid!)) expect(cpusOf(pid)).toBe(cpu);
  });
});
