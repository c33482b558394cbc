// Trace by id, restricted subjects: Tempo's error answers about a trace ("trace exceeds max size",
// "response larger than the max", a failed block read) would tell the team that a trace made only
// of other teams' spans exists, and how large it is. They are answered as the gateway's own
// "trace not found", like a trace without the team's spans; errors about Tempo's availability keep
// their status (with the gateway's text), and 400 (the request's form) is relayed.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { teamBOnlyTrace, traceJsonV1, traceJsonV2 } from '../backends/traces-fixtures.ts';
import { testApp, upstreamsConfig, type TestApp } from './helpers.ts';

let up: Server;
let gw: TestApp;
let closedPort: number;

// The trace id's last hex digits choose Tempo's answer: 200 with only team B's spans (…200), or that error status.
const SECRET = 'trace exceeds max size (max bytes: 5000000) payments-secret';
const ID = (status: number) => `abcdef0000000000000000000000${status.toString().padStart(4, '0')}`;

beforeAll(async () => {
  // Tempo's answers with its headers: a 200 as its API writes it, an error as Go's http.Error writes it.
  up = createHttpServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const status = Number(path.slice(-4));
    if (status === 2000) {
      // A trace of team B's spans too large for the gateway to filter (over MAX_FILTERED_BODY: 64 MiB).
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(1 << 20, 0x20);
      let left = 65;
      const more = (): void => {
        while (left > 0) {
          left--;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      res.on('error', () => {});
      more();
      return;
    }
    if (status === 200) {
      res.writeHead(200, { 'content-type': 'application/json', vary: 'Accept-Encoding' });
      res.end(JSON.stringify(path.startsWith('/api/v2/') ? traceJsonV2(teamBOnlyTrace) : traceJsonV1(teamBOnlyTrace)));
      return;
    }
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff', ...(status === 429 || status === 503 ? { 'retry-after': '7' } : {}) });
    res.end(SECRET);
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const upUrl = `http://127.0.0.1:${(up.address() as AddressInfo).port}`;
  // A port nothing listens on: Tempo unreachable.
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  gw = await testApp(upstreamsConfig(`{ name: traces, kind: tempo, url: "${upUrl}", mount: /tempo }`, `{ name: down, kind: tempo, url: "http://127.0.0.1:${closedPort}", mount: /down }`));
});
afterAll(async () => {
  await gw?.app.close();
  await new Promise<void>((r) => (up === undefined ? r() : up.close(() => r())));
});

const get = (who: string, url: string) => gw.app.inject({ url, headers: { authorization: `Bearer ${who}` } });
const ROUTES = ['/tempo/api/traces/', '/tempo/api/v2/traces/'];
/** The headers of an answer but those that differ per request or moment. */
const headersOf = (r: { headers: Record<string, unknown> }) => Object.fromEntries(Object.entries(r.headers).filter(([k]) => k !== 'date' && k !== 'x-request-id'));

describe('trace by id: Tempo\'s errors, restricted subjects', () => {
  it('an error that could be about the trace is the same answer as a trace without the team\'s spans', async () => {
    for (const route of ROUTES) {
      const none = await get('alice', route + ID(200));
      expect([none.statusCode, none.body]).toEqual([404, 'trace not found']);
      for (const status of [404, 422, 500, 401, 403, 413, 501]) {
        const r = await get('alice', route + ID(status));
        // Status, body and headers: none of Tempo's (X-Content-Type-Options on its errors, Vary on its 200s).
        expect([r.statusCode, headersOf(r), r.body], `${route} ${status}`).toEqual([none.statusCode, headersOf(none), none.body]);
      }
      expect(none.headers['vary']).toBeUndefined();
    }
  });
  it('a trace too large for the gateway to filter is the same answer as a missing one (its size tells nothing)', async () => {
    for (const route of ROUTES) {
      const none = await get('alice', route + ID(404));
      const big = await get('alice', route + ID(2000));
      expect([big.statusCode, headersOf(big), big.body], route).toEqual([none.statusCode, headersOf(none), none.body]);
    }
  });
  it('Tempo\'s availability stays visible (429, 502, 503 with their status, 504), in the gateway\'s words', async () => {
    for (const route of ROUTES) {
      for (const status of [429, 502, 503, 504]) {
        const r = await get('alice', route + ID(status));
        expect(r.statusCode, `${route} ${status}`).toBe(status);
        expect(r.headers['content-type']).toMatch(/^text\/plain/);
        expect(r.body).not.toContain('secret');
        expect(r.body).not.toContain('max size');
        // The gateway's own (every route's answer has it), not a sign of Tempo's answer.
        expect(r.headers['x-content-type-options']).toBe('nosniff');
        if (status === 429 || status === 503) expect(r.headers['retry-after']).toBe('7');
      }
    }
  });
  it('Tempo unreachable: 502', async () => {
    const r = await get('alice', `/down/api/traces/${ID(200)}`);
    expect(r.statusCode).toBe(502);
  });
  it('400 (the request\'s form: its range) is relayed as Tempo wrote it', async () => {
    const r = await get('alice', `/tempo/api/traces/${ID(400)}?start=2&end=1`);
    expect([r.statusCode, r.body]).toEqual([400, SECRET]);
  });
  it('admins get Tempo\'s answer as it wrote it', async () => {
    for (const status of [422, 500, 503]) {
      const r = await get('carol', `/tempo/api/v2/traces/${ID(status)}`);
      expect([r.statusCode, r.body]).toEqual([status, SECRET]);
    }
  });
});
