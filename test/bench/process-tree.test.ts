// bench/lib/fleet.ts treeCpuMicros and contextSwitches, with pin.ts's processTree (make bench-cluster-cpu): a cluster's processes
// are found below its root, and each one's CPU is read on its own, so a busy child's time is not
// credited to its idle parent, nor lost.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { contextSwitches, treeCpuMicros } from '../../bench/lib/fleet.ts';
import { processTree } from '../../bench/lib/pin.ts';

const started: ChildProcess[] = [];
afterEach(() => {
  // Negative pid: the whole group (the parent and the children it spawned).
  for (const p of started.splice(0)) if (p.pid !== undefined) try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
});

// A parent that starts one child spinning on the CPU and one sleeping, then idles itself.
const PARENT = `
const { spawn } = require('node:child_process');
spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
setInterval(() => {}, 1000);
`;

describe('processTree and treeCpuMicros', () => {
  it('lists a process and its children, and reads the CPU of each alone', async () => {
    const parent = spawn(process.execPath, ['-e', PARENT], { stdio: 'ignore', detached: true });
    started.push(parent);
    const pid = parent.pid!;
    await expect.poll(() => processTree(pid).length).toBe(3);
    const pids = processTree(pid);
    expect(pids[0]).toBe(pid);
    // Past the children's start-up (a Node process's own start costs tens of ms of CPU).
    await new Promise((r) => setTimeout(r, 500));
    const before = treeCpuMicros(pids);
    const used = () => treeCpuMicros(pids).map((x, i) => x - before[i]!);
    // The spinning child gathers CPU time (0.1 s of it, however busy the machine), the other two hardly any.
    await expect.poll(() => Math.max(...used())).toBeGreaterThan(100_000);
    const after = used();
    const busiest = after.indexOf(Math.max(...after));
    expect(busiest).toBeGreaterThan(0);
    for (const [i, us] of after.entries()) if (i !== busiest) expect(us).toBeLessThan(after[busiest]! / 5);
  });

  it('reads a process that has gone as NaN, not as zero', () => {
    expect(treeCpuMicros([2 ** 22 + 12345])).toEqual([Number.NaN]);
    expect(contextSwitches(2 ** 22 + 12345)).toEqual({ voluntary: Number.NaN, involuntary: Number.NaN });
  });

  it('counts the context switches of a process that keeps going to sleep as voluntary', async () => {
    // A timer every 5 ms: each wait for it gives up the core (a voluntary switch).
    const sleeper = spawn(process.execPath, ['-e', 'setInterval(() => {}, 5)'], { stdio: 'ignore', detached: true });
    started.push(sleeper);
    const pid = sleeper.pid!;
    await new Promise((r) => setTimeout(r, 300));
    const before = contextSwitches(pid);
    await expect.poll(() => contextSwitches(pid).voluntary - before.voluntary).toBeGreaterThan(20);
    expect(contextSwitches(pid).involuntary).toBeGreaterThanOrEqual(before.involuntary);
  });
});
