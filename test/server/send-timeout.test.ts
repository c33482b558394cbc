// server.sendTimeoutMs: a client that stops reading its answer is disconnected, so it does not hold
// the upstream connection and its concurrency slot for good; one that reads is served whole.
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { testApp, TEST_IDENTITY_AND_TEAMS, type TestApp } from './helpers.ts';

let up: Server;
let t: TestApp;
let port = 0;
let upstreamClosed = 0;
/** Bytes each upstream answer streams (JSON-ish padding: the route relays it unfiltered). */
const ANSWER_BYTES = 64 * 1024 * 1024;

beforeAll(async () => {
  up = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    let sent = 0;
    const pump = (): void => {
      while (sent < ANSWER_BYTES) {
        sent += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    res.on('close', () => void (upstreamClosed += 1));
    pump();
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(up.address() as AddressInfo).port}`;
  const config = parseConfig(
    `
server:
  loadShedding: { enabled: false }
  sendTimeoutMs: 1000
upstreams:
  - { name: metrics, kind: prometheus, url: "${url}", mount: /prometheus, maxConcurrent: 1 }
${TEST_IDENTITY_AND_TEAMS}`,
    { env: {} },
  );
  t = await testApp(config);
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  port = (t.app.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await t?.app.close();
  up?.closeAllConnections();
  await new Promise<void>((r) => up.close(() => r()));
});

const until = async (cond: () => boolean, ms: number) => {
  for (const end = Date.now() + ms; !cond() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
};

describe('server.sendTimeoutMs', () => {
  it('disconnects a client that stopped reading: the upstream request is cancelled and the slot comes back', async () => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    s.pause(); // reads nothing: the answer backs up into the gateway, then the upstream
    s.write('GET /prometheus/api/v1/query?query=up HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n\r\n');
    await until(() => (t.metrics.inflight.get('metrics') ?? 0) === 1, 10_000);
    expect(t.metrics.inflight.get('metrics')).toBe(1);
    // Cut off after ≈ 1 s without progress (bounded wait, not a timing assertion).
    // (The paused client sees its end only once it reads again.)
    await until(() => (t.metrics.inflight.get('metrics') ?? 0) === 0 && upstreamClosed === 1, 8000);
    expect({ inflight: t.metrics.inflight.get('metrics') ?? 0, upstreamClosed, gatewayConnections: await new Promise((r) => t.app.server.getConnections((_e, n) => r(n))) }).toEqual({ inflight: 0, upstreamClosed: 1, gatewayConnections: 0 });
    s.destroy();
  }, 15_000);

  it('serves a client that reads the whole answer, and keeps its connection for the next request', async () => {
    const s = connect(port, '127.0.0.1');
    let got = 0;
    let answers = 0;
    s.on('data', (c: Buffer) => {
      got += c.length;
      answers += (c.toString('latin1').match(/HTTP\/1\.1 200 /g) ?? []).length;
    });
    const ask = () => s.write('GET /prometheus/api/v1/query?query=up HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n\r\n');
    ask();
    await until(() => got >= ANSWER_BYTES, 10_000);
    expect(got).toBeGreaterThanOrEqual(ANSWER_BYTES);
    // Idle longer than sendTimeoutMs between answers: the keep-alive timeout applies there, not this one.
    await new Promise((r) => setTimeout(r, 1500));
    expect(s.destroyed).toBe(false);
    ask();
    await until(() => answers === 2, 10_000);
    expect(answers).toBe(2);
    s.destroy();
  }, 20_000);
});
