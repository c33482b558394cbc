// Bundle mode with two workers: a worker replaced while the bundle service is down (nothing
// persisted) has no policy; it must not take connections its sibling can serve. It joins once
// the service is back. When no sibling listens any more, it listens anyway: the port answers
// 503 (no policy yet) instead of refusing connections.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from './harness/bundles.ts';
import { eventually } from './harness/eventually.ts';
import { startCannedUpstream, type CannedUpstream } from './harness/canned-upstream.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { rawRequest } from './harness/http.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';

let bundleServer: Server;
let serviceDown = false;
let upstream: CannedUpstream;
let idp: TestIssuer;
let gw: GatewayInstance;
let token: string;

const workerPids = (): number[] =>
  [...new Set(gw.tail(4000).split('\n').filter((l) => l.includes('"request completed"')).map((l) => (JSON.parse(l) as { pid: number }).pid))];

async function statuses(n: number): Promise<number[]> {
  const out: number[] = [];
  // A fresh connection each time, so the cluster spreads them over the workers that listen.
  for (let i = 0; i < n; i++) out.push((await rawRequest(gw.url, '/prometheus/api/v1/query?query=up', { headers: { authorization: `Bearer ${token}`, connection: 'close' } })).status);
  return out;
}

beforeAll(async () => {
  const bundle = readFileSync(await buildBundle({ revision: 'rev-1' }));
  bundleServer = createServer((_req, res) => {
    if (serviceDown) return void res.writeHead(503).end('down');
    res.writeHead(200, { 'content-type': 'application/gzip', etag: '"rev-1"' }).end(bundle);
  });
  await new Promise<void>((r) => bundleServer.listen(0, '127.0.0.1', r));
  const bundleUrl = `http://127.0.0.1:${(bundleServer.address() as AddressInfo).port}`;
  upstream = await startCannedUpstream(() => [200, 'application/json', '{"status":"success","data":{"resultType":"vector","result":[]}}']);
  idp = await createTestIssuer({ issuer: 'https://idp.workers-bundle', audience: 'lbac-gateway', alg: 'ES256' });
  token = await idp.mint({ sub: 'alice', groups: ['team-a'] });
  gw = await startGateway({
    config: {
      server: { logLevel: 'info', accessLog: true, workers: 2 },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: upstream.url, mount: '/prometheus' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      teams: { 'team-a': { groups: ['team-a'], selectors: [{ namespace: 'a' }] } },
      policy: { bundle: { url: bundleUrl, polling: { minDelaySeconds: 0.3, maxDelaySeconds: 0.6 } } },
    },
  });
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await upstream?.stop();
  bundleServer?.close();
  idp?.cleanup();
});

describe('bundle mode with two workers', () => {
  it('a worker replaced during a bundle outage waits for a policy instead of answering 503', async () => {
    // Both workers serve: the first workers listen at once and answer 503 until their first bundle
    // is active (as a single process does), so wait until every answer is 200.
    const deadline = Date.now() + 30_000;
    let warm: number[] = [];
    while ((workerPids().length < 2 || warm.some((s) => s !== 200)) && Date.now() < deadline) warm = await statuses(4);
    expect(warm).toEqual([200, 200, 200, 200]);
    const before = workerPids();
    expect(before).toHaveLength(2);
    serviceDown = true;
    process.kill(before[0]!, 'SIGKILL');
    // The replacement is forked within a second or two; meanwhile and after, every request is served.
    expect(await eventually(() => /waiting for a policy bundle before accepting connections/.test(gw.tail(200)), 20_000), gw.tail(30)).toBe(true);
    const during = await statuses(24);
    expect(during.filter((s) => s !== 200), gw.tail(30)).toEqual([]);
    // The service is back: the replacement gets the bundle and serves too.
    serviceDown = false;
    const back = Date.now() + 30_000;
    let joined = false;
    while (!joined && Date.now() < back) {
      expect((await statuses(4)).every((s) => s === 200)).toBe(true);
      joined = workerPids().some((p) => !before.includes(p));
    }
    expect(joined, gw.tail(30)).toBe(true);
  });

  it('when every serving worker is gone during the outage, the waiting ones listen and answer 503', async () => {
    const deadline = Date.now() + 30_000;
    let warm: number[] = [];
    while ((warm.length === 0 || warm.some((s) => s !== 200)) && Date.now() < deadline) warm = await statuses(4);
    expect(warm).toEqual([200, 200, 200, 200]);
    serviceDown = true;
    const serving = workerPids().slice(-2);
    // One dies: its replacement waits for a policy while the other serves.
    process.kill(serving[0]!, 'SIGKILL');
    const waits = Date.now() + 15_000;
    while (gw.tail(1_000_000).split('waiting for a policy bundle').length < 3 && Date.now() < waits) await new Promise((r) => setTimeout(r, 100));
    expect(gw.tail(1_000_000).split('waiting for a policy bundle').length, gw.tail(30)).toBe(3);
    // The other dies too: nothing that has a policy listens any more.
    process.kill(serving[1]!, 'SIGKILL');
    const answered: (number | string)[] = [];
    const until = Date.now() + 15_000;
    while (answered.filter((s) => s === 503).length < 4 && Date.now() < until) {
      answered.push(await rawRequest(gw.url, '/prometheus/api/v1/query?query=up', { headers: { authorization: `Bearer ${token}`, connection: 'close' } }).then((r) => r.status, (e: NodeJS.ErrnoException) => e.code ?? 'error'));
      await new Promise((r) => setTimeout(r, 50));
    }
    // Refused only in the moment between the exit and the waiting worker's listen.
    expect(answered.slice(-4), gw.tail(30)).toEqual([503, 503, 503, 503]);
    serviceDown = false;
    const back = Date.now() + 30_000;
    let ok: number[] = [];
    while ((ok.length === 0 || ok.some((s) => s !== 200)) && Date.now() < back) ok = await statuses(4);
    expect(ok, gw.tail(30)).toEqual([200, 200, 200, 200]);
  });
});
