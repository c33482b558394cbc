// bench/lib/warm-up.ts: the load that brings a benchmark target to its steady
// state reaches the target, the whole mix of requests, for the time asked.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { BenchRequest } from '../../bench/lib/mix.ts';
import { warmUp } from '../../bench/lib/warm-up.ts';

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  server = undefined;
});

/** A server counting requests per method and path. */
async function counting(): Promise<{ url: string; seen: Map<string, number> }> {
  const seen = new Map<string, number>();
  server = createServer((req, res) => {
    const key = `${req.method} ${req.url}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`, seen };
}

const mix: BenchRequest[] = [
  { method: 'GET', path: '/a', headers: {} },
  { method: 'POST', path: '/b', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'query=up' },
];

describe('warmUp', () => {
  it('loads the target with every request of the mix for the seconds asked', async () => {
    const { url, seen } = await counting();
    const started = performance.now();
    await warmUp(url, mix, 1, 4);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(seen.get('GET /a') ?? 0).toBeGreaterThan(50);
    expect(seen.get('POST /b') ?? 0).toBeGreaterThan(50);
  });

  it('sends nothing for zero seconds', async () => {
    const { url, seen } = await counting();
    await warmUp(url, mix, 0);
    expect(seen.size).toBe(0);
  });

  it('does not fail when the target is down (the measurement after it counts the errors)', async () => {
    await expect(warmUp('http://127.0.0.1:1', mix, 1)).resolves.toBeUndefined();
  });
});
