// bench/lib/fleet.ts startBenchGateway: a benchmark's gateway writes an audit line per request to its
// log (hundreds of MB per run); the log must be gone once the gateway has stopped, however it stopped.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { GatewayInstance, StartGatewayOptions } from '../../e2e/harness/gateway.ts';
import { startBenchGateway } from '../../bench/lib/fleet.ts';

const dir = mkdtempSync(join(tmpdir(), 'bench-fleet-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in for the harness's startGateway: a real log file, and a stop that records its call (and may fail). */
function fakeStart(name: string, stopFails: boolean, calls: string[]) {
  return async (opts: StartGatewayOptions): Promise<GatewayInstance> => {
    const logFile = join(dir, `${name}.log`);
    writeFileSync(logFile, 'an audit line\n');
    calls.push(`start ${JSON.stringify(opts.config)}`);
    return {
      url: 'http://127.0.0.1:1',
      port: 1,
      configFile: join(dir, 'config.yaml'),
      logFile,
      pid: 1,
      stop: async () => {
        calls.push('stop');
        if (stopFails) throw new Error('would not stop');
      },
      exited: new Promise(() => undefined),
      tail: () => '',
    } as unknown as GatewayInstance;
  };
}

describe('startBenchGateway', () => {
  it('starts with the given options and removes the log after stopping', async () => {
    const calls: string[] = [];
    const gw = await startBenchGateway({ config: { server: { workers: 1 } } }, fakeStart('ok', false, calls));
    expect(gw.url).toBe('http://127.0.0.1:1');
    expect(existsSync(gw.logFile)).toBe(true);
    await gw.stop();
    expect(calls).toEqual(['start {"server":{"workers":1}}', 'stop']);
    expect(existsSync(gw.logFile)).toBe(false);
  });

  it('removes the log when stopping fails, and still reports the failure', async () => {
    const calls: string[] = [];
    const gw = await startBenchGateway({ config: {} }, fakeStart('fails', true, calls));
    await expect(gw.stop()).rejects.toThrow('would not stop');
    expect(existsSync(gw.logFile)).toBe(false);
  });
});
