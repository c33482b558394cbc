// A client that goes away while the gateway waits for the upstream (Grafana
// cancels a panel's query on refresh or navigation) is not a gateway failure:
// no error-level log with a stack, and status 499 ("client closed request", as
// nginx records it) in the metrics and the audit line instead of a 500.
import { createServer, request } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { parseConfig } from '../../src/config/load.ts';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { fakeSource, startUpstream, TEST_IDENTITY_AND_TEAMS, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let t: TestApp;
let base: string;
const logLines: Record<string, unknown>[] = [];

beforeAll(async () => {
  up = await startUpstream();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  // Authentication takes a while for the token "slow" (an identity provider that answers late).
  const identity = { ...fakeSource, authenticate: async (c: Parameters<typeof fakeSource.authenticate>[0]) => (c.bearer === 'slow' ? (await sleep(300), fakeSource.authenticate({ ...c, bearer: 'alice' })) : fakeSource.authenticate(c)) };
  t = await testApp(testConfig(up.url), { logger: pino({ level: 'info' }, sink), identity });
  base = await t.app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends a query and closes the connection after `closeAfterMs`, before the answer. */
function abandonedQuery(closeAfterMs: number, token = 'alice', gateway = base, path = '/prometheus/api/v1/query?query=up'): Promise<void> {
  return new Promise((resolve) => {
    const req = request(`${gateway}${path}`, { headers: { authorization: `Bearer ${token}` } });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.end();
    setTimeout(() => req.destroy(), closeAfterMs);
  });
}

describe('a client that closes the connection before the answer', () => {
  it('is recorded as 499 in metrics and audit, and logged without an error', async () => {
    up.delayMs = 300;
    await abandonedQuery(80);
    // The upstream answers after the client left; the gateway finishes the request then.
    await sleep(600);
    expect(up.requests.map((r) => r.path)).toEqual(['/api/v1/query']);
    const text = await t.metrics.registry.metrics();
    expect(text).toMatch(/lbac_gateway_requests_total\{upstream="metrics",endpoint="query",status="499",decision="allow"\} 1/);
    expect(text).not.toMatch(/lbac_gateway_requests_total\{[^}]*status="500"/);
    const audited = t.audit.filter((l) => l['type'] === 'lbac-gateway/decision_logs');
    expect(audited.map((l) => (l['response'] as { status: number }).status)).toEqual([499]);
    expect(logLines.filter((l) => (l['level'] as number) >= 40)).toEqual([]);
    expect(logLines.some((l) => l['code'] === 'client_closed' && l['level'] === 30)).toBe(true);
  });

  it('is not forwarded when it leaves while being authenticated', async () => {
    up.requests.splice(0);
    up.delayMs = 0;
    const before = t.audit.length;
    await abandonedQuery(80, 'slow');
    await sleep(600);
    expect(up.requests).toEqual([]);
    expect(await t.metrics.registry.metrics()).toMatch(/lbac_gateway_requests_total\{upstream="metrics",endpoint="query",status="499",decision="none"\} 1/);
    expect(t.audit.slice(before)).toEqual([]);
    expect(logLines.filter((l) => (l['level'] as number) >= 40)).toEqual([]);
  });

  it('cancels the upstream request it was waiting for: the upstream sees its connection close (Prometheus then stops the query)', async () => {
    let closedUnanswered: (v: boolean) => void = () => undefined;
    const upstreamSaw = new Promise<boolean>((r) => (closedUnanswered = r));
    // Never answers by itself, as a long query would not for a while.
    const slow = createServer((_req, res) => res.on('close', () => closedUnanswered(!res.writableFinished)));
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const other = await testApp(testConfig(`http://127.0.0.1:${(slow.address() as AddressInfo).port}`));
    try {
      const url = await other.app.listen({ port: 0, host: '127.0.0.1' });
      await abandonedQuery(80, 'alice', url);
      const seen = await Promise.race([upstreamSaw, sleep(2000).then(() => 'still open')]);
      expect(seen).toBe(true);
      await sleep(50);
      expect(await other.metrics.registry.metrics()).toMatch(/lbac_gateway_requests_total\{upstream="metrics",endpoint="query",status="499",decision="allow"\} 1/);
    } finally {
      await other.app.close();
      slow.closeAllConnections();
      await new Promise((r) => slow.close(r));
    }
  });

  it('leaving while being authenticated holds no concurrency slot (maxConcurrent: 2): later requests are answered', async () => {
    up.delayMs = 0;
    await Promise.all([abandonedQuery(80, 'slow'), abandonedQuery(80, 'slow'), abandonedQuery(80, 'slow')]);
    await sleep(500);
    const r = await fetch(`${base}/prometheus/api/v1/query?query=up`, { headers: { authorization: 'Bearer alice' } });
    expect(r.status).toBe(200);
  });

  it('is not forwarded when it leaves while the gateway asks the upstream for what to filter by (metadata lookup)', async () => {
    up.requests.splice(0);
    up.delayMs = 300;
    await abandonedQuery(80, 'alice', base, '/prometheus/api/v1/metadata');
    await sleep(700);
    expect(up.requests.map((r) => r.path)).toEqual(['/api/v1/label/__name__/values']);
    expect(logLines.some((l) => l['code'] === 'client_closed' && l['upstreamCancelled'] === false)).toBe(true);
  });

  it('a Loki live tail whose client leaves while being authenticated is recorded as 499, and no upstream tail is opened', async () => {
    const server = createServer((_req, res) => res.end());
    const wss = new WebSocketServer({ server });
    let opened = 0;
    let closed = 0;
    wss.on('connection', (ws) => {
      opened++;
      ws.on('close', () => closed++);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const config = parseConfig(
      `server:\n  loadShedding: { enabled: false }\nupstreams:\n  - { name: logs, kind: loki, url: "http://127.0.0.1:${(server.address() as AddressInfo).port}", mount: /loki }\n${TEST_IDENTITY_AND_TEAMS}`,
      { env: {} },
    );
    const slowAuth = { ...fakeSource, authenticate: async (c: Parameters<typeof fakeSource.authenticate>[0]) => (await sleep(300), fakeSource.authenticate({ ...c, bearer: 'alice' })) };
    const tail = await testApp(config, { identity: slowAuth });
    try {
      const port = Number(new URL(await tail.app.listen({ port: 0, host: '127.0.0.1' })).port);
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.write(
        `GET /loki/loki/api/v1/tail?query=${encodeURIComponent('{app="api"}')} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer slow\r\n` +
          'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      );
      await sleep(80);
      socket.end(); // a normal close (FIN): the upgrading socket is not read, so it is not destroyed
      await sleep(800);
      // Gone before the gateway decided anything: no decision (so no audit line), no upstream tail.
      expect(await tail.metrics.registry.metrics()).toMatch(/lbac_gateway_requests_total\{upstream="logs",endpoint="tail",status="499",decision="none"\} 1/);
      expect(tail.audit).toEqual([]);
      expect([opened, closed]).toEqual([0, 0]);
    } finally {
      await tail.app.close();
      wss.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
