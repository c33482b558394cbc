// bench/passthrough.ts, the floor `make bench` compares the gateway with: with
// a worker count it runs that many serving processes under node:cluster, as the
// gateway's `server.workers` does (a two-worker gateway against a one-process
// floor overstated the ratio until session 20), relays the upstream's answer
// unchanged, and stops on SIGTERM with its workers.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { processTree } from '../../bench/lib/pin.ts';
import { freePort } from '../../e2e/harness/ports.ts';
import { startProcess, type RunningProcess } from '../../e2e/harness/process.ts';

const root = join(import.meta.dirname, '..', '..');
const running: RunningProcess[] = [];
afterEach(async () => {
  for (const p of running.splice(0).reverse()) await p.stop();
});

async function start(name: string, script: string, args: string[], readyPath: string): Promise<{ proc: RunningProcess; url: string }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = await startProcess({ name, cmd: process.execPath, args: [join(root, 'bench', script), String(port), ...args], readyUrl: `${url}${readyPath}` });
  running.push(proc);
  return { proc, url };
}

describe.skipIf(process.platform !== 'linux')('bench/passthrough.ts', () => {
  it.each([1, 2])('serves with %i process(es) and relays the upstream answer', async (workers) => {
    const stub = await start('pt-test-stub', 'stub-upstream.ts', [], '/api/v1/status/buildinfo');
    const pt = await start('pt-test', 'passthrough.ts', [stub.url, String(workers)], '/api/v1/status/buildinfo');
    const [direct, relayed] = await Promise.all([fetch(`${stub.url}/api/v1/label/namespace/values`), fetch(`${pt.url}/api/v1/label/namespace/values`)]);
    expect(relayed.status).toBe(200);
    expect(await relayed.text()).toBe(await direct.text());
    // One process, or a supervising primary and one serving child per worker.
    expect(processTree(pt.proc.pid).length).toBe(workers === 1 ? 1 : workers + 1);
  });

  it('ends its workers when it is stopped', async () => {
    const stub = await start('pt-test-stub', 'stub-upstream.ts', [], '/api/v1/status/buildinfo');
    const pt = await start('pt-test', 'passthrough.ts', [stub.url, '2'], '/api/v1/status/buildinfo');
    const tree = processTree(pt.proc.pid);
    expect(tree.length).toBe(3);
    await pt.proc.stop();
    const alive = (pid: number): boolean => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(tree.filter(alive)).toEqual([]);
  });
});
