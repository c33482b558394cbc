// Loki live tail: what a browser on another site, a credential that ends while the tail is
// open, and the client's own frames can do to it. In process, against a ws stand-in for Loki.
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { parseConfig } from '../../src/config/load.ts';
import { serverSchema, upstreamSchema } from '../../src/config/schema.ts';
import type { IdentitySource } from '../../src/identity/source.ts';
import type { Subject } from '../../src/policy/decision.ts';
import { GatewayError } from '../../src/errors.ts';
import { clientHandshakeProblem, crossOriginProblem, msUntilExpiry } from '../../src/server/plugins/websocket.ts';
import { testApp, type TestApp } from './helpers.ts';

/** Subjects by bearer token; `auth` is the kind of credential that named them. */
const subject = (auth: string, claims: Record<string, unknown> = {}): Subject => ({ sub: `u-${auth}`, username: `u-${auth}`, groups: ['team-a'], roles: [], auth, claims });
const people = new Map<string, Subject>([
  ['basic', subject('basic')],
  ['mtls', subject('mtls')],
  ['jwt', subject('jwt', { exp: Math.floor(Date.now() / 1000) + 3600 })],
]);
/** Tokens the (fake) provider can no longer be asked about. */
const unreachable = new Set<string>();
const source: IdentitySource = {
  name: 'fake',
  authenticate: async (c) => {
    if (c.bearer !== undefined && unreachable.has(c.bearer)) throw new GatewayError('identity_unavailable', 'provider down');
    return c.bearer === undefined ? undefined : people.get(c.bearer);
  },
};

let wss: WebSocketServer;
let t: TestApp;
let base: string;
let host: string;
const upgrades: IncomingHttpHeaders[] = [];
const upstreamSockets: WebSocket[] = [];
const upstreamReceived: string[] = [];

/** The gateway config of these tests: one Loki upstream (the stand-in above), team-a; `extra` is added to the upstream's entry. */
function tailConfig(extra = '') {
  return parseConfig(
    `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: logs, kind: loki, url: "http://127.0.0.1:${(wss.address() as AddressInfo).port}", mount: /loki-gw, timeoutMs: 2000, version: "3.6.0"${extra} }
identity:
  providers:
    - type: apikey
      keys: [{ name: unused, hash: "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" }]
teams:
  team-a: { groups: [team-a], selectors: [{ namespace: "~team-a-.*" }], headers: { X-Scope-OrgID: tenant-a } }
`,
    { env: {} },
  );
}

beforeAll(async () => {
  wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  wss.on('connection', (ws, req) => {
    upgrades.push(req.headers);
    upstreamSockets.push(ws);
    ws.on('message', (d) => upstreamReceived.push(String(d)));
  });
  await new Promise((r) => wss.once('listening', r));
  const config = tailConfig();
  t = await testApp(config, { identity: source });
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  host = `127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  base = `ws://${host}`;
});
afterAll(async () => {
  await t.app.close();
  for (const ws of upstreamSockets) ws.terminate();
  await new Promise((r) => wss.close(r));
});
beforeEach(() => {
  upgrades.length = 0;
  upstreamReceived.length = 0;
});

const TAIL = `/loki-gw/loki/api/v1/tail?query=${encodeURIComponent('{app="api"}')}`;

/** Open a tail (on `at`, default the shared app); resolves with the open socket or the HTTP status of the refusal. */
function open(token: string, headers: Record<string, string> = {}, options: WebSocket.ClientOptions = {}, at = base): Promise<WebSocket | number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(at + TAIL, { ...options, headers: { authorization: `Bearer ${token}`, ...headers } });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.once('error', reject);
  });
}
const closed = (ws: WebSocket) => new Promise<[number, string]>((resolve) => ws.once('close', (code, reason) => resolve([code, reason.toString('utf8')])));

describe('cross-site WebSocket hijacking', () => {
  // A page on any site can open a WebSocket to the gateway; the browser attaches cached Basic
  // credentials, a TLS client certificate and cookies (which a proxy in front may turn into a
  // bearer token) on its own, and WebSockets have no CORS.
  it('a cross-origin upgrade → 403 whatever the credential (Basic, client certificate, a bearer a proxy added), no upstream tail', async () => {
    for (const who of ['basic', 'mtls', 'jwt']) {
      for (const origin of ['https://evil.example', 'null', `http://${host}.evil.example`, 'not a url']) {
        expect([who, origin, await open(who, { origin })]).toEqual([who, origin, 403]);
      }
    }
    expect(upgrades).toHaveLength(0);
  });

  it('a cross-origin refusal is audited like every refused request: the decision, status 403, error forbidden', async () => {
    t.audit.length = 0;
    expect(await open('jwt', { origin: 'https://evil.example' })).toBe(403);
    await expect.poll(() => t.audit.length).toBe(1);
    expect(t.audit[0]).toMatchObject({
      type: 'lbac-gateway/decision_logs',
      input: { subject: { sub: 'u-jwt' }, request: { upstream: 'logs', endpoint: 'tail' } },
      result: { allow: true },
      response: { status: 403, error: 'forbidden' },
    });
    expect(upgrades).toHaveLength(0);
  });

  it('the same credentials without an Origin (not a browser; Grafana\'s data source proxy removes it) or from the gateway\'s own origin are served', async () => {
    for (const [who, headers] of [['basic', {}], ['mtls', {}], ['jwt', {}], ['basic', { origin: `http://${host}` }], ['jwt', { origin: `HTTP://${host.toUpperCase()}` }]] as const) {
      const ws = await open(who, headers);
      expect(ws).toBeInstanceOf(WebSocket);
      const done = closed(ws as WebSocket);
      (ws as WebSocket).close();
      await done;
    }
    expect(upgrades).toHaveLength(5);
  });

  it('the gateway\'s own origin is its Host under the scheme of the connection: over TLS only https:', () => {
    const headers = (origin: string) => ({ host: 'gw.example', origin });
    expect(crossOriginProblem(headers('https://gw.example'), true)).toBeUndefined();
    expect(crossOriginProblem(headers('https://gw.example:443'), true)).toBeUndefined();
    expect(crossOriginProblem(headers('http://gw.example'), true)).toMatch(/cross-origin/);
    // Plain HTTP: either (a TLS proxy in front serves the page as https:).
    expect(crossOriginProblem(headers('http://gw.example'), false)).toBeUndefined();
    expect(crossOriginProblem(headers('https://gw.example'), false)).toBeUndefined();
    expect(crossOriginProblem(headers('https://evil.example'), false)).toMatch(/cross-origin/);
  });
});

describe('a tail ends when its credential does', () => {
  it('a client certificate\'s notAfter ends the tail (1008), as a token\'s exp does', async () => {
    const notAfter = new Date(Math.ceil((Date.now() + 2500) / 1000) * 1000);
    // As Node reports it (X509Certificate.validTo): "Nov 27 09:00:00 2026 GMT".
    const validTo = `${notAfter.toUTCString().slice(8, 11)} ${notAfter.getUTCDate()} ${notAfter.toISOString().slice(11, 19)} ${notAfter.getUTCFullYear()} GMT`;
    people.set('mtls-short', subject('mtls', { notAfter: validTo }));
    const ws = (await open('mtls-short')) as WebSocket;
    expect(ws).toBeInstanceOf(WebSocket);
    const outcome = await Promise.race([closed(ws), new Promise<string>((r) => setTimeout(() => r('still open'), 8000))]);
    ws.terminate();
    expect(outcome).toEqual([1008, 'credentials expired']);
  }, 15_000);

  it('a credential already past its end (a certificate\'s notAfter; a token\'s exp within the clock tolerance the source allows) gets 401, and Loki is not contacted', async () => {
    people.set('mtls-past', subject('mtls', { notAfter: 'Jan  1 00:00:00 2020 GMT' }));
    people.set('jwt-tolerated', subject('jwt', { exp: Math.floor(Date.now() / 1000) - 5 }));
    expect(await open('mtls-past')).toBe(401);
    expect(await open('jwt-tolerated')).toBe(401);
    expect(upgrades).toHaveLength(0);
  });
});

describe('a tail\'s credentials are judged again while it is open', () => {
  // An introspected token revoked at the provider: HTTP requests are refused once the
  // source's cache expires; a tail decided at its upgrade must not go on for hours.
  it('every server.tail.recheckIntervalMs: revoked → 1008; the subject changed (groups) → 1012; provider unreachable → 1013; unchanged → stays open', async () => {
    const cfg = tailConfig();
    // Below the setting's lower bound (1 s), so the test is quick: set after validation.
    cfg.server.tail.recheckIntervalMs = 150;
    const own = await testApp(cfg, { identity: source });
    await own.app.listen({ port: 0, host: '127.0.0.1' });
    const at = `ws://127.0.0.1:${(own.app.server.address() as AddressInfo).port}`;
    try {
      const outcome = async (token: string, change: () => void) => {
        people.set(token, subject('introspection'));
        const ws = (await open(token, {}, {}, at)) as WebSocket;
        expect(ws).toBeInstanceOf(WebSocket);
        const done = closed(ws);
        // Several checks pass while nothing changes.
        const early = await Promise.race([done, new Promise<string>((r) => setTimeout(() => r('open'), 600))]);
        change();
        const late = await Promise.race([done, new Promise<string>((r) => setTimeout(() => r('still open'), 3000))]);
        ws.terminate();
        return [early, late];
      };
      expect(await outcome('revoked', () => people.delete('revoked'))).toEqual(['open', [1008, 'credentials no longer accepted']]);
      expect(await outcome('moved', () => people.set('moved', { ...subject('introspection'), groups: ['team-b'] }))).toEqual(['open', [1012, 'identity changed; reconnect']]);
      expect(await outcome('down', () => unreachable.add('down'))).toEqual(['open', [1013, 'identity provider unavailable; reconnect later']]);
      expect(await outcome('same', () => people.set('same', subject('introspection')))).toEqual(['open', 'still open']);
    } finally {
      await own.app.close();
    }
  }, 20_000);

  it('the default interval is 60 s, and the setting is bounded (1 s to 1 h)', async () => {
    expect(tailConfig().server.tail).toEqual({ maxPerSubject: 4, recheckIntervalMs: 60_000 });
    expect(t.app.websocketTails.recheckIntervalMs).toBe(60_000);
    const withTail = (tail: string) => parseConfig(`upstreams: [{ name: logs, kind: loki, url: "http://127.0.0.1:9" }]\nidentity: { providers: [{ type: jwt, jwksUrl: "https://idp/j", issuer: i, audience: a }] }\nserver: { tail: ${tail} }\n`, { env: {} });
    expect(withTail('{ recheckIntervalMs: 5000, maxPerSubject: 1 }').server.tail).toEqual({ maxPerSubject: 1, recheckIntervalMs: 5000 });
    for (const bad of ['{ recheckIntervalMs: 999 }', '{ recheckIntervalMs: 3600001 }', '{ maxPerSubject: 0 }']) expect(() => withTail(bad), bad).toThrow();
  });
});

describe('live tails per subject (server.tail.maxPerSubject)', () => {
  it('one tail more than the limit → 429 before Loki is contacted, audited; other subjects unaffected; a closed tail frees its place', async () => {
    const cfg = tailConfig();
    cfg.server.tail.maxPerSubject = 2;
    const own = await testApp(cfg, { identity: source });
    await own.app.listen({ port: 0, host: '127.0.0.1' });
    const at = `ws://127.0.0.1:${(own.app.server.address() as AddressInfo).port}`;
    const held = () => [...own.app.websocketTails.held.values()].reduce((a, b) => a + b, 0);
    const sockets: WebSocket[] = [];
    try {
      for (let i = 0; i < 2; i++) sockets.push((await open('jwt', {}, {}, at)) as WebSocket);
      expect(sockets.every((ws) => ws instanceof WebSocket)).toBe(true);
      const before = upgrades.length;
      own.audit.length = 0;
      expect(await open('jwt', {}, {}, at)).toBe(429);
      expect(upgrades).toHaveLength(before);
      await expect.poll(() => own.audit.length).toBe(1);
      expect(own.audit[0]).toMatchObject({ input: { subject: { sub: 'u-jwt' }, request: { endpoint: 'tail' } }, response: { status: 429, error: 'too_many_requests' } });
      // Another subject has its own count.
      const other = (await open('basic', {}, {}, at)) as WebSocket;
      expect(other).toBeInstanceOf(WebSocket);
      sockets.push(other);
      expect(held()).toBe(3);
      // A tail that ends gives its place back.
      const done = closed(sockets[0]!);
      sockets[0]!.close();
      await done;
      await expect.poll(held, { timeout: 10_000 }).toBe(2);
      const again = (await open('jwt', {}, {}, at)) as WebSocket;
      expect(again).toBeInstanceOf(WebSocket);
      sockets.push(again);
      // Refused upgrades hold no place: a cross-origin one, and the 429 itself.
      expect(await open('jwt', { origin: 'https://evil.example' }, {}, at)).toBe(403);
      expect(await open('jwt', {}, {}, at)).toBe(429);
      expect(held()).toBe(3);
    } finally {
      for (const ws of sockets) ws.terminate();
      await expect.poll(held, { timeout: 10_000 }).toBe(0);
      await own.app.close();
    }
  });
});

describe('refusals before the decision', () => {
  /** An upgrade request with these headers, sent raw; resolves with the status of the answer. */
  const rawUpgrade = (path: string, headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      // No agent: the gateway closes a refused upgrade's connection (Connection: close).
      const req = request({ agent: false, host: '127.0.0.1', port: Number(host.split(':')[1]), path, headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', ...headers } });
      req.once('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.once('upgrade', (_res, socket) => {
        socket.destroy();
        reject(new Error('upgraded'));
      });
      req.once('error', reject);
      req.end();
    });

  it('a malformed handshake (400) and an upgrade on a route that is no tail (400) are audited: who, what, the error; no decision', async () => {
    t.audit.length = 0;
    expect(await rawUpgrade(TAIL, { authorization: 'Bearer jwt', 'sec-websocket-key': 'not-a-key' })).toBe(400);
    expect(await rawUpgrade('/loki-gw/loki/api/v1/query?query=x', { authorization: 'Bearer jwt', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' })).toBe(400);
    await expect.poll(() => t.audit.length).toBe(2);
    expect(t.audit[0]).toMatchObject({
      type: 'lbac-gateway/decision_logs',
      input: { subject: { sub: 'u-jwt', auth: 'jwt' }, request: { upstream: 'logs', kind: 'loki', endpoint: 'tail', method: 'GET', path: '/loki-gw/loki/api/v1/tail' } },
      response: { status: 400, error: 'bad_query' },
    });
    // Refused before authentication: no subject.
    expect(t.audit[1]).toMatchObject({ input: { subject: null, request: { endpoint: 'query' } }, response: { status: 400, error: 'bad_query' } });
    for (const line of t.audit) expect(line).not.toHaveProperty('result');
    expect(upgrades).toHaveLength(0);
  });

  it('what ws itself would refuse (another Upgrade value next to websocket, malformed subprotocols) is refused before Loki is contacted', async () => {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    t.audit.length = 0;
    const refused: Record<string, string>[] = [
      { upgrade: 'h2c, websocket', 'sec-websocket-key': key },
      { upgrade: 'websocket, foo', 'sec-websocket-key': key },
      // (Node's parser trims a header value's ends: padding never reaches either check.)
      ...['a b', 'a,,b', 'a, a', 'a;b', 'a,', ''].map((p) => ({ 'sec-websocket-key': key, 'sec-websocket-protocol': p })),
    ];
    for (const headers of refused) expect([headers, await rawUpgrade(TAIL, { authorization: 'Bearer jwt', ...headers })]).toEqual([headers, 400]);
    expect(upgrades).toHaveLength(0);
    // Audited as the refusals they are, not as clients that left.
    await expect.poll(() => t.audit.length).toBe(refused.length);
    for (const line of t.audit) expect(line).toMatchObject({ response: { status: 400, error: 'bad_query' } });
    // Subprotocols ws accepts pass the check.
    const valid = { connection: 'Upgrade', upgrade: 'WebSocket', 'sec-websocket-version': '13', 'sec-websocket-key': key };
    for (const p of ['v1', 'a, b', 'a ,b', 'a,\tb', "!#$%&'*+-.^_`|~"]) expect([p, clientHandshakeProblem({ ...valid, 'sec-websocket-protocol': p })]).toEqual([p, undefined]);
    expect(clientHandshakeProblem(valid)).toBeUndefined();
  });
});

describe('the 429 of server.tail.maxPerSubject', () => {
  /** A refused upgrade's status, headers and body. */
  const refusal = (token: string, at: string) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const ws = new WebSocket(at + TAIL, { headers: { authorization: `Bearer ${token}` } });
      ws.once('open', () => reject(new Error('upgraded')));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      ws.once('error', reject);
    });

  it('says when to retry (Retry-After, as every 503 and 429 of the gateway) and is too_many_requests in Loki\'s error format', async () => {
    const cfg = tailConfig();
    cfg.server.tail.maxPerSubject = 1;
    const own = await testApp(cfg, { identity: source });
    await own.app.listen({ port: 0, host: '127.0.0.1' });
    const at = `ws://127.0.0.1:${(own.app.server.address() as AddressInfo).port}`;
    const ws = (await open('jwt', {}, {}, at)) as WebSocket;
    try {
      const r = await refusal('jwt', at);
      expect(r.status).toBe(429);
      expect(r.headers['retry-after']).toBe('5');
      expect(JSON.parse(r.body)).toEqual({
        code: 429,
        status: 'error',
        errorType: 'too_many_requests',
        message: expect.stringContaining('server.tail.maxPerSubject'),
        error: expect.stringContaining('server.tail.maxPerSubject'),
      });
    } finally {
      ws.terminate();
      await own.app.close();
    }
  });

  it('counts per issuer, kind of credential and sub, as its description says: the same sub under another kind of credential has its own count', async () => {
    const cfg = tailConfig();
    cfg.server.tail.maxPerSubject = 1;
    people.set('same-jwt', { ...subject('jwt'), sub: 'u-same' });
    people.set('same-key', { ...subject('apikey'), sub: 'u-same' });
    const own = await testApp(cfg, { identity: source });
    await own.app.listen({ port: 0, host: '127.0.0.1' });
    const at = `ws://127.0.0.1:${(own.app.server.address() as AddressInfo).port}`;
    const sockets: WebSocket[] = [];
    try {
      sockets.push((await open('same-jwt', {}, {}, at)) as WebSocket);
      const other = await open('same-key', {}, {}, at);
      expect(other).toBeInstanceOf(WebSocket);
      sockets.push(other as WebSocket);
      expect(await open('same-jwt', {}, {}, at)).toBe(429);
      const tail = serverSchema.shape.tail.unwrap().shape.maxPerSubject.description ?? '';
      const perSubject = upstreamSchema.shape.maxConcurrentPerSubject.description ?? '';
      for (const d of [tail, perSubject]) {
        expect(d).toContain('kind of credential');
        expect(d).not.toContain('(issuer and sub)');
      }
    } finally {
      for (const ws of sockets) ws.terminate();
      people.delete('same-jwt');
      people.delete('same-key');
      await own.app.close();
    }
  });
});

describe('msUntilExpiry', () => {
  it('reads exp and a client certificate\'s notAfter; one it cannot read is already expired, never unending', () => {
    const now = Date.parse('2026-11-27T09:00:00Z');
    expect(msUntilExpiry({ auth: 'jwt', claims: { exp: now / 1000 + 60 } }, now)).toBe(60_000);
    expect(msUntilExpiry({ auth: 'mtls', claims: { notAfter: 'Nov 27 09:01:00 2026 GMT' } }, now)).toBe(60_000);
    for (const claims of [{ exp: '9999999999' }, { exp: Number.NaN }, { exp: [1] }]) expect(msUntilExpiry({ auth: 'introspection', claims }, now)).toBe(0);
    expect(msUntilExpiry({ auth: 'mtls', claims: { notAfter: 'soon' } }, now)).toBe(0);
    // Credentials without an expiry (API keys, Basic): the tail ends on a reload that changes them (1012).
    expect(msUntilExpiry({ auth: 'basic', claims: { username: 'x' } }, now)).toBeUndefined();
    expect(msUntilExpiry(undefined, now)).toBeUndefined();
  });
});

describe('client frames', () => {
  it('binary frames and pings are not relayed; a frame over 64 KiB closes the tail (1009) and its upstream', async () => {
    const ws = (await open('jwt')) as WebSocket;
    await expect.poll(() => upstreamSockets.length).toBeGreaterThan(0);
    const up = upstreamSockets.at(-1)!;
    const upClosed = closed(up);
    ws.send(Buffer.from('{"query":"{}"}'), { binary: true });
    ws.ping('x');
    const pong = new Promise((r) => ws.once('pong', r));
    await pong;
    expect(upstreamReceived).toEqual([]);
    const done = closed(ws);
    ws.send('x'.repeat(64 * 1024 + 1));
    expect((await done)[0]).toBe(1009);
    expect((await upClosed)[0]).toBeGreaterThanOrEqual(1000);
    expect(upstreamReceived).toEqual([]);
  });

  it('permessage-deflate is not negotiated and the client\'s subprotocols and extensions never reach Loki', async () => {
    const ws = (await new Promise<WebSocket>((resolve, reject) => {
      const s = new WebSocket(base + TAIL, ['token.abc', 'base64.binary.k8s.io'], { headers: { authorization: 'Bearer jwt' }, perMessageDeflate: { clientMaxWindowBits: 15 } });
      s.once('open', () => resolve(s));
      s.once('error', reject);
    }));
    expect(ws.extensions).toBe('');
    const up = upgrades.at(-1)!;
    expect(up['sec-websocket-protocol']).toBeUndefined();
    expect(up['sec-websocket-extensions']).toBeUndefined();
    expect(up['authorization']).toBeUndefined();
    ws.close();
  });
});

describe('upgrades elsewhere, and the concurrency slot of a tail', () => {
  it('an upgrade on the health routes or an unknown path is never switched (no 101), nothing reaches Loki', async () => {
    for (const path of ['/healthz', '/readyz', '/nope', '/loki-gw/loki/api/v1/query_range?query=%7Bapp%3D%22api%22%7D']) {
      const r = await new Promise<number | string>((resolve) => {
        const ws = new WebSocket(base + path, { headers: { authorization: 'Bearer jwt' } });
        ws.once('open', () => (ws.terminate(), resolve('upgraded')));
        ws.once('unexpected-response', (_req, res) => (res.resume(), resolve(res.statusCode ?? 0)));
        ws.once('error', (e) => resolve(String(e)));
      });
      expect([path, r]).toEqual([path, expect.any(Number)]);
    }
    expect(upgrades).toHaveLength(0);
  });

  it('a tail holds its slot while open and gives it back when it ends; a refused upgrade holds none', async () => {
    const cfg = tailConfig(', maxConcurrent: 1');
    const own = await testApp(cfg, { identity: source });
    await own.app.listen({ port: 0, host: '127.0.0.1' });
    const url = `ws://127.0.0.1:${(own.app.server.address() as AddressInfo).port}${TAIL}`;
    const inflight = () => own.metrics.inflight.get('logs') ?? 0;
    try {
      const refused = await new Promise<number>((resolve) => {
        const ws = new WebSocket(url, { headers: { authorization: 'Bearer basic', origin: 'https://evil.example' } });
        ws.once('unexpected-response', (_req, res) => (res.resume(), resolve(res.statusCode ?? 0)));
        ws.once('open', () => (ws.terminate(), resolve(101)));
      });
      expect(refused).toBe(403);
      await expect.poll(inflight).toBe(0);
      const ws = await new Promise<WebSocket>((resolve, reject) => {
        const s = new WebSocket(url, { headers: { authorization: 'Bearer jwt' } });
        s.once('open', () => resolve(s));
        s.once('error', reject);
      });
      expect(inflight()).toBe(1);
      const done = closed(ws);
      ws.close();
      await done;
      await expect.poll(inflight, { timeout: 10_000 }).toBe(0);
    } finally {
      await own.app.close();
    }
  });
});

describe('a refused upgrade ends its connection, and says so', () => {
  // @fastify/websocket closes the connection of every upgrade that is answered with HTTP
  // instead of 101; an answer saying `Connection: keep-alive` let a keep-alive agent put the
  // socket back in its pool and send the next request on it: "socket hang up".
  it('401, 403, 400 (malformed handshake, a route that is no tail), 404: Connection: close, the whole body, and the agent\'s next request is served on a new connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const port = Number(host.split(':')[1]);
    const send = (path: string, headers: Record<string, string>) =>
      new Promise<{ status: number; connection: string | undefined; body: string; socketClosed: Promise<boolean> }>((resolve, reject) => {
        const req = request({ agent, host: '127.0.0.1', port, path, headers });
        req.once('response', (res) => {
          const socket = res.socket;
          // Closed by the server without an error (no reset) once answered.
          const socketClosed = new Promise<boolean>((r) => (socket.destroyed ? r(true) : socket.once('close', (hadError: boolean) => r(!hadError))));
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.once('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              connection: res.headers['connection'],
              body: Buffer.concat(chunks).toString('utf8'),
              socketClosed,
            }),
          );
        });
        req.once('upgrade', (_res, socket) => (socket.destroy(), reject(new Error('upgraded'))));
        req.once('error', reject);
        req.end();
      });
    const upgrade = { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' };
    try {
      for (const [path, headers, status] of [
        [TAIL, { ...upgrade, authorization: 'Bearer nobody' }, 401],
        [TAIL, { ...upgrade, authorization: 'Bearer jwt', origin: 'https://evil.example' }, 403],
        [TAIL, { ...upgrade, authorization: 'Bearer jwt', 'sec-websocket-key': 'short' }, 400],
        ['/loki-gw/loki/api/v1/query_range?query=%7Bapp%3D%22api%22%7D', { ...upgrade, authorization: 'Bearer jwt' }, 400],
        ['/healthz', { ...upgrade, authorization: 'Bearer jwt' }, 400],
        ['/nope', { ...upgrade, authorization: 'Bearer jwt' }, 404],
      ] as const) {
        const refused = await send(path, headers);
        expect([path, refused.status, refused.connection?.toLowerCase()]).toEqual([path, status, 'close']);
        expect(refused.body.length).toBeGreaterThan(0);
        // At once, on the same agent: it must not pick the refused upgrade's connection.
        const next = await send('/healthz', {});
        expect([path, next.status]).toEqual([path, 200]);
        expect(await refused.socketClosed).toBe(true);
      }
      expect(upgrades).toHaveLength(0);
    } finally {
      agent.destroy();
    }
  });
});
