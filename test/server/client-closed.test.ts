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
/** Authentications of the token "slow" begun so far. */
let slowAuthStarted = 0;
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
  const identity = { ...fakeSource, authenticate: async (c: Parameters<typeof fakeSource.authenticate>[0]) => (c.bearer === 'slow' ? (slowAuthStarted++, await sleep(300), fakeSource.authenticate({ ...c, bearer: 'alice' })) : fakeSource.authenticate(c)) };
  t = await testApp(testConfig(up.url), { logger: pino({ level: 'info' }, sink), identity });
  base = await t.app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Sends a query and closes the connection, before the answer, once `leaveWhen()`
 * says the gateway is where the test wants it to be (authenticating, waiting for
 * the upstream): an event, not a fixed delay, which a loaded machine outruns.
 */
function abandonedQuery(leaveWhen: () => boolean, token = 'alice', gateway = base, path = '/prometheus/api/v1/query?query=up'): Promise<void> {
  return new Promise((resolve) => {
    const req = request(`${gateway}${path}`, { headers: { authorization: `Bearer ${token}` } });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.end();
    const deadline = Date.now() + 10_000;
    const poll = (): void => {
      if (leaveWhen() || Date.now() > deadline) req.destroy();
      else setTimeout(poll, 5);
    };
    poll();
  });
}

/** Once the upstream has seen `n` requests in all. */
const upstreamSaw = (n: number) => () => up.requests.length >= n;
/** Once another authentication of "slow" has begun. */
const authenticatingSlow = () => {
  const before = slowAuthStarted;
  return () => slowAuthStarted > before;
};
const poll = { timeout: 10_000, interval: 20 };

describe('a client that closes the connection before the answer', () => {
  it('is recorded as 499 in metrics and audit, and logged without an error', async () => {
    up.delayMs = 300;
    await abandonedQuery(upstreamSaw(1));
    // The upstream answers after the client left; the gateway finishes the request then.
    await expect.poll(() => t.metrics.registry.metrics(), poll).toMatch(/status="499"/);
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
    await abandonedQuery(authenticatingSlow(), 'slow');
    await expect.poll(() => t.metrics.registry.metrics(), poll).toMatch(/lbac_gateway_requests_total\{upstream="metrics",endpoint="query",status="499",decision="none"\} 1/);
    expect(up.requests).toEqual([]);
    expect(t.audit.slice(before)).toEqual([]);
    expect(logLines.filter((l) => (l['level'] as number) >= 40)).toEqual([]);
  });

  it('cancels the upstream request it was waiting for: the upstream sees its connection close (Prometheus then stops the query)', async () => {
    let closedUnanswered: (v: boolean) => void = () => undefined;
    const closedBeforeAnswer = new Promise<boolean>((r) => (closedUnanswered = r));
    let arrived = false;
    // Never answers by itself, as a long query would not for a while.
    const slow = createServer((_req, res) => {
      arrived = true;
      res.on('close', () => closedUnanswered(!res.writableFinished));
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const other = await testApp(testConfig(`http://127.0.0.1:${(slow.address() as AddressInfo).port}`));
    try {
      const url = await other.app.listen({ port: 0, host: '127.0.0.1' });
      await abandonedQuery(() => arrived, 'alice', url);
      const seen = await Promise.race([closedBeforeAnswer, sleep(5000).then(() => 'still open')]);
      expect(seen).toBe(true);
      await expect.poll(() => other.metrics.registry.metrics(), poll).toMatch(/lbac_gateway_requests_total\{upstream="metrics",endpoint="query",status="499",decision="allow"\} 1/);
    } finally {
      await other.app.close();
      slow.closeAllConnections();
      await new Promise((r) => slow.close(r));
    }
  });

  it('leaving while being authenticated holds no concurrency slot (maxConcurrent: 2): later requests are answered', async () => {
    up.delayMs = 0;
    const begun = slowAuthStarted;
    await Promise.all([0, 1, 2].map(() => abandonedQuery(() => slowAuthStarted >= begun + 3, 'slow')));
    // Each leaves during its 0.3 s authentication; a slot it had taken would be freed only when it ends.
    await sleep(500);
    const r = await fetch(`${base}/prometheus/api/v1/query?query=up`, { headers: { authorization: 'Bearer alice' } });
    expect(r.status).toBe(200);
  });

  it('is not forwarded when it leaves while the gateway asks the upstream for what to filter by (metadata lookup)', async () => {
    up.requests.splice(0);
    up.delayMs = 300;
    await abandonedQuery(upstreamSaw(1), 'alice', base, '/prometheus/api/v1/metadata');
    await expect.poll(() => logLines.some((l) => l['code'] === 'client_closed' && l['upstreamCancelled'] === false), poll).toBe(true);
    // The lookup's answer (0.3 s later) leads to no forwarded request.
    await sleep(500);
    expect(up.requests.map((r) => r.path)).toEqual(['/api/v1/label/__name__/values']);
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
    let tailAuthStarted = 0;
    const slowAuth = { ...fakeSource, authenticate: async (c: Parameters<typeof fakeSource.authenticate>[0]) => (tailAuthStarted++, await sleep(300), fakeSource.authenticate({ ...c, bearer: 'alice' })) };
    const tail = await testApp(config, { identity: slowAuth });
    try {
      const port = Number(new URL(await tail.app.listen({ port: 0, host: '127.0.0.1' })).port);
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.write(
        `GET /loki/loki/api/v1/tail?query=${encodeURIComponent('{app="api"}')} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer slow\r\n` +
          'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      );
      await expect.poll(() => tailAuthStarted, poll).toBe(1);
      socket.end(); // a normal close (FIN): the upgrading socket is not read, so it is not destroyed
      // Gone before the gateway decided anything: no decision (so no audit line), no upstream tail.
      await expect.poll(() => tail.metrics.registry.metrics(), poll).toMatch(/lbac_gateway_requests_total\{upstream="logs",endpoint="tail",status="499",decision="none"\} 1/);
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
