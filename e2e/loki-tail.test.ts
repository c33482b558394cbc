// Loki live tail (`/loki/api/v1/tail`, WebSocket) through the real gateway
// process. The upstream is a canned stand-in that accepts WebSocket upgrades and
// records them (real Loki cannot run on these machines: docs/operations.md).
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startCannedUpstream, type CannedRequest, type CannedUpstream } from './harness/canned-upstream.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { freePort } from './harness/ports.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';

let loki: CannedUpstream;
let gw: GatewayInstance;
let idp: TestIssuer;
const tok: Record<string, string> = {};
/** What the canned Loki does with each tail connection (set per test). */
let onTail: (ws: WebSocket, request: CannedRequest) => void = () => undefined;
/** Which tail upgrades the canned Loki refuses, and how (set per test). */
let refuseTail: (request: CannedRequest) => [number, string, string] | undefined = () => undefined;

const TAIL_MESSAGE = JSON.stringify({ streams: [{ stream: { namespace: 'team-a-web', app: 'api' }, values: [['1700000000000000000', 'GET /health 200']] }], dropped_entries: null });

const config = (lokiUrl: string) => ({
  server: { logLevel: 'warn', shutdownDelayMs: 0 },
  upstreams: [{ name: 'logs', kind: 'loki', url: lokiUrl, mount: '/loki' }],
  identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
  admins: { groups: ['admins'] },
  teams: {
    'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }], headers: { 'X-Scope-OrgID': 'tenant-a' } },
    'team-dnf': { groups: ['dnf'], selectors: [{ namespace: 'x' }, { app: 'y' }] },
    // Two teams no one selector covers, whose streams are disjoint (cluster eu or us).
    'team-eu': { groups: ['eu'], selectors: [{ cluster: 'eu', namespace: 'a' }], headers: { 'X-Scope-OrgID': 'tenant-a' } },
    'team-us': { groups: ['us'], selectors: [{ cluster: 'us', namespace: 'b' }], headers: { 'X-Scope-OrgID': 'tenant-a' } },
  },
});

beforeAll(async () => {
  loki = await startCannedUpstream(() => [200, 'application/json', '{}'], { websocket: (ws, r) => onTail(ws, r), refuseUpgrade: (r) => refuseTail(r) });
  idp = await createTestIssuer({ issuer: 'https://idp.tail', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({ config: config(loki.url) });
  tok['alice'] = await idp.mint({ sub: 'alice', groups: ['team-a'] });
  tok['dana'] = await idp.mint({ sub: 'dana', groups: ['dnf'] });
  tok['erin'] = await idp.mint({ sub: 'erin', groups: ['eu', 'us'] });
  tok['nobody'] = await idp.mint({ sub: 'nobody', groups: ['no-team'] });
}, 60_000);

afterAll(async () => {
  if (process.env['LBAC_TAIL_DEBUG'] === '1') console.log(gw?.tail(400));
  await gw?.stop();
  await loki?.stop();
});

beforeEach(() => {
  loki.clear();
  onTail = () => undefined;
  refuseTail = () => undefined;
});

const tailPath = (query: string, extra = '') => `/loki/loki/api/v1/tail?query=${encodeURIComponent(query)}${extra}`;

/**
 * Messages each client received, in order, and who waits for the next one. Listening starts
 * when the socket is created: a first frame can arrive in the same packet as the handshake,
 * before the code awaiting `openTail` could attach a listener.
 */
const inboxes = new WeakMap<WebSocket, { queue: string[]; waiting: ((m: string) => void)[] }>();

/** Open a tail as a client; resolves on open, rejects with the HTTP refusal (status + body). */
function openTail(base: string, path: string, headers: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base.replace(/^http/, 'ws') + path, { headers });
    const inbox = { queue: [] as string[], waiting: [] as ((m: string) => void)[] };
    inboxes.set(ws, inbox);
    ws.on('message', (d) => {
      const m = d.toString('utf8');
      const w = inbox.waiting.shift();
      if (w !== undefined) w(m);
      else inbox.queue.push(m);
    });
    ws.once('open', () => resolve(ws));
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, body, contentType: res.headers['content-type'] })));
    });
    ws.once('error', reject);
  });
}

const auth = (user: string) => ({ authorization: `Bearer ${tok[user]}` });
const nextMessage = (ws: WebSocket) =>
  new Promise<string>((resolve) => {
    const inbox = inboxes.get(ws);
    if (inbox === undefined) return ws.once('message', (d) => resolve(d.toString('utf8')));
    const m = inbox.queue.shift();
    if (m !== undefined) resolve(m);
    else inbox.waiting.push(resolve);
  });
const closed = (ws: WebSocket) => new Promise<[number, string]>((resolve) => ws.once('close', (code, reason) => resolve([code, reason.toString('utf8')])));
const refusal = async (p: Promise<WebSocket>) => {
  try {
    const ws = await p;
    ws.terminate();
  } catch (e) {
    return e as { status: number; body: string; contentType: string };
  }
  throw new Error('the upgrade was accepted');
};

describe('Loki live tail (WebSocket)', () => {
  it('the upgrade reaches Loki with the rewritten query and the policy\'s tenant, no client credentials or spoofs; messages flow to the client', async () => {
    const upstreamSide = new Promise<WebSocket>((resolve) => (onTail = (ws) => (ws.send(TAIL_MESSAGE), resolve(ws))));
    const client = await openTail(gw.url, tailPath('{app="api"} |= "error"', '&delay_for=2&limit=30&start=1700000000000000000'), {
      ...auth('alice'),
      'X-Scope-OrgID': 'tenant-b',
      'X-Prom-Label-Policy': 'tenant-b:{}',
      'X-Grafana-Id': 'x',
    });
    const first = nextMessage(client);
    await upstreamSide;
    expect(await first).toBe(TAIL_MESSAGE);
    const r = loki.requests.at(-1)!;
    expect(r.upgrade).toBe(true);
    expect(r.path).toBe('/loki/api/v1/tail');
    expect(r.params.get('query')).toBe('{app="api", namespace=~"team-a-.*"} |= "error"');
    expect(r.params.getAll('query')).toHaveLength(1);
    expect([r.params.get('delay_for'), r.params.get('limit'), r.params.get('start')]).toEqual(['2', '30', '1700000000000000000']);
    expect(r.headers['x-scope-orgid']).toBe('tenant-a');
    expect(r.headers['authorization']).toBeUndefined();
    expect(r.headers['x-prom-label-policy']).toBeUndefined();
    expect(r.headers['x-grafana-id']).toBeUndefined();
    // A second message arrives too; client messages are dropped, not relayed (Loki reads none).
    const second = nextMessage(client);
    for (const ws of loki.sockets) ws.send('{"streams":[]}');
    expect(await second).toBe('{"streams":[]}');
    client.close();
  });

  it('upstream closing closes the client (code and reason relayed)', async () => {
    const upstreamSide = new Promise<WebSocket>((resolve) => (onTail = resolve));
    const client = await openTail(gw.url, tailPath('{app="api"}'), auth('alice'));
    const up = await upstreamSide;
    const done = closed(client);
    up.close(4000, 'tail ended');
    expect(await done).toEqual([4000, 'tail ended']);
  });

  it('an upstream that drops the connection closes the client with 1011', async () => {
    const upstreamSide = new Promise<WebSocket>((resolve) => (onTail = resolve));
    const client = await openTail(gw.url, tailPath('{app="api"}'), auth('alice'));
    const up = await upstreamSide;
    const done = closed(client);
    up.terminate();
    expect((await done)[0]).toBe(1011);
  });

  it('client closing closes the upstream', async () => {
    const upstreamSide = new Promise<WebSocket>((resolve) => (onTail = resolve));
    const client = await openTail(gw.url, tailPath('{app="api"}'), auth('alice'));
    const up = await upstreamSide;
    const done = closed(up);
    client.close(1000, 'bye');
    expect(await done).toEqual([1000, 'bye']);
    // The tail's audit record is written when it ends (status 101, the rewritten query).
    await expect.poll(() => gw.tail(200).split('\n').filter((l) => l.includes('Decision Log') && l.includes('"tail"') && l.includes('101')).length, { timeout: 15_000 }).toBeGreaterThan(0);
  });

  it('client messages are dropped, not relayed to Loki', async () => {
    const received: string[] = [];
    const upstreamSide = new Promise<WebSocket>((resolve) => (onTail = (ws) => (ws.on('message', (d) => received.push(String(d))), resolve(ws))));
    const client = await openTail(gw.url, tailPath('{app="api"}'), auth('alice'));
    const up = await upstreamSide;
    client.send('{"query":"{namespace=~\\".+\\"}"}');
    // A round trip through the upstream after the client's message: anything relayed would be there by now.
    const echo = nextMessage(client);
    up.send('ping');
    await echo;
    expect(received).toEqual([]);
    client.close();
  });

  it('no token → 401 in Loki\'s format, no upgrade, nothing reaches Loki', async () => {
    const e = await refusal(openTail(gw.url, tailPath('{app="api"}'), {}));
    expect(e.status).toBe(401);
    expect(JSON.parse(e.body)).toMatchObject({ status: 'error', errorType: 'unauthorized' });
    expect(loki.requests).toHaveLength(0);
  });

  it('bad LogQL → 400 bad_data and no upstream connection', async () => {
    const e = await refusal(openTail(gw.url, tailPath('{app="api"'), auth('alice')));
    expect(e.status).toBe(400);
    expect(e.contentType).toMatch(/^application\/json/);
    expect(JSON.parse(e.body)).toMatchObject({ status: 'error', errorType: 'bad_data' });
    expect(loki.requests).toHaveLength(0);
  });

  it('a metric query, a missing query and a repeated query → 400, nothing forwarded', async () => {
    expect((await refusal(openTail(gw.url, tailPath('count_over_time({app="api"}[5m])'), auth('alice')))).status).toBe(400);
    expect((await refusal(openTail(gw.url, '/loki/loki/api/v1/tail', auth('alice')))).status).toBe(400);
    expect((await refusal(openTail(gw.url, `${tailPath('{app="api"}')}&query=${encodeURIComponent('{namespace="team-b-api"}')}`, auth('alice')))).status).toBe(400);
    expect(loki.requests).toHaveLength(0);
  });

  it('a user without a team → 403, nothing forwarded', async () => {
    const e = await refusal(openTail(gw.url, tailPath('{app="api"}'), auth('nobody')));
    expect(e.status).toBe(403);
    expect(JSON.parse(e.body)).toMatchObject({ status: 'error', errorType: 'forbidden' });
    expect(loki.requests).toHaveLength(0);
  });

  it('a multi-alternative policy whose alternatives can select the same streams is refused, not widened', async () => {
    // {namespace="x"} or {app="y"}: a stream can be in both, and one tail per alternative would repeat its lines.
    const e = await refusal(openTail(gw.url, tailPath('{job="j"}'), auth('dana')));
    expect(e.status).toBe(400);
    expect(e.body).toContain('return those streams twice');
    expect(loki.requests).toHaveLength(0);
  });

  it('disjoint alternatives one selector cannot express: one upstream tail per alternative, each relayed; either ending ends the tail', async () => {
    const sides = new Map<string, WebSocket>();
    const both = new Promise<void>((resolve) => {
      onTail = (ws, r) => {
        sides.set(r.params.get('query') ?? '', ws);
        if (sides.size === 2) resolve();
      };
    });
    const EU = '{app="api", cluster="eu", namespace="a"} |= "x"';
    const US = '{app="api", cluster="us", namespace="b"} |= "x"';
    const client = await openTail(gw.url, tailPath('{app="api"} |= "x"', '&limit=30'), { ...auth('erin'), 'X-Scope-OrgID': 'spoofed' });
    await both;
    const ups = loki.requests.filter((r) => r.upgrade === true);
    expect(ups.map((r) => r.params.getAll('query')).sort()).toEqual([[EU], [US]]);
    for (const r of ups) expect([r.params.get('limit'), r.headers['x-scope-orgid'], r.headers['authorization']]).toEqual(['30', 'tenant-a', undefined]);
    // Each part's messages reach the client as they come.
    const first = nextMessage(client);
    sides.get(US)!.send('{"streams":["us"]}');
    expect(await first).toBe('{"streams":["us"]}');
    const second = nextMessage(client);
    sides.get(EU)!.send('{"streams":["eu"]}');
    expect(await second).toBe('{"streams":["eu"]}');
    // One part ending ends the tail: the client gets its code, the other part is closed.
    const clientDone = closed(client);
    const otherDone = closed(sides.get(US)!);
    sides.get(EU)!.close(4000, 'tail ended');
    expect(await clientDone).toEqual([4000, 'tail ended']);
    expect((await otherDone)[0]).toBe(1000);
  });

  it('disjoint alternatives: the client leaving closes every part; one part refused → the refusal, no upgrade, the other part closed', async () => {
    const sides: WebSocket[] = [];
    const both = new Promise<void>((resolve) => (onTail = (ws) => (sides.push(ws), sides.length === 2 && resolve())));
    const client = await openTail(gw.url, tailPath('{app="api"}'), auth('erin'));
    await both;
    const partsDone = sides.map(closed);
    client.close(1000, 'bye');
    expect((await Promise.all(partsDone)).map(([code]) => code)).toEqual([1000, 1000]);

    loki.clear();
    const accepted: WebSocket[] = [];
    onTail = (ws) => accepted.push(ws);
    refuseTail = (r) => ((r.params.get('query') ?? '').includes('cluster="us"') ? [400, 'text/plain; charset=utf-8', 'too many tails'] : undefined);
    const e = await refusal(openTail(gw.url, tailPath('{app="api"}'), auth('erin')));
    expect([e.status, e.body]).toEqual([400, 'too many tails']);
    expect(loki.requests.filter((r) => r.upgrade === true)).toHaveLength(2);
    // The part that was accepted is not left open.
    await expect.poll(() => accepted.every((ws) => ws.readyState === WebSocket.CLOSED), { timeout: 15_000 }).toBe(true);
  });

  it('an upgrade whose handshake the client side would fail (no key, bad key, old version) → 400 before any upstream tail starts', async () => {
    // A raw socket: HTTP clients refuse to send such handshakes themselves.
    const u = new URL(gw.url);
    const upgrade = (extra: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const lines = Object.entries({ host: u.host, ...auth('alice'), connection: 'Upgrade', upgrade: 'websocket', ...extra }).map(([k, v]) => `${k}: ${v}\r\n`);
        const s = connect(Number(u.port), u.hostname, () => s.write(`GET ${tailPath('{app="api"}')} HTTP/1.1\r\n${lines.join('')}\r\n`));
        let got = '';
        s.on('data', (c: Buffer) => {
          got += c.toString('latin1');
          const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
          if (m !== null) {
            s.destroy();
            resolve(Number(m[1]));
          }
        });
        s.on('error', reject);
      });
    expect(await upgrade({ 'sec-websocket-version': '13' })).toBe(400);
    expect(await upgrade({ 'sec-websocket-version': '13', 'sec-websocket-key': 'not-a-key' })).toBe(400);
    expect(await upgrade({ 'sec-websocket-version': '8', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' })).toBe(400);
    // Node reports any Upgrade as an upgrade: one that is not to websocket is refused before the upstream tail opens.
    const valid = { 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' };
    expect(await upgrade({ ...valid, upgrade: 'h2c' })).toBe(400);
    expect(await upgrade({ ...valid, connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c' })).toBe(400);
    expect(loki.requests).toHaveLength(0);
  });

  it('a plain GET (no upgrade) → 400, and an upgrade on an HTTP route is refused; nothing forwarded', async () => {
    const res = await fetch(`${gw.url}${tailPath('{app="api"}')}`, { headers: auth('alice') });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ status: 'error', errorType: 'bad_data' });
    const e = await refusal(openTail(gw.url, `/loki/loki/api/v1/query?query=${encodeURIComponent('{app="api"}')}`, auth('alice')));
    expect(e.status).toBe(400);
    expect(loki.requests).toHaveLength(0);
  });
});

describe('Loki live tail: shutdown', () => {
  it('a graceful shutdown closes open tails with 1001', async () => {
    const own = await startGateway({ config: config(loki.url) });
    try {
      const upstreamSide = new Promise<WebSocket>((resolve) => (onTail = resolve));
      const client = await openTail(own.url, tailPath('{app="api"}'), auth('alice'));
      const up = await upstreamSide;
      const clientClosed = closed(client);
      const upstreamClosed = closed(up);
      process.kill(own.pid, 'SIGTERM');
      expect((await clientClosed)[0]).toBe(1001);
      expect((await upstreamClosed)[0]).toBe(1001);
      expect((await own.exited).code).toBe(0);
    } finally {
      await own.stop();
    }
  }, 30_000);
});

describe('Loki live tail: a tail ends when its grant may no longer hold', () => {
  it('at the token\'s exp: 1008, the upstream closed', async () => {
    const upstreamSide = new Promise<WebSocket>((resolve) => (onTail = resolve));
    const short = await idp.mint({ sub: 'alice', groups: ['team-a'] }, { expiresIn: 4 });
    const client = await openTail(gw.url, tailPath('{app="api"}'), { authorization: `Bearer ${short}` });
    const up = await upstreamSide;
    const [clientClosed, upstreamClosed] = [closed(client), closed(up)];
    up.send(TAIL_MESSAGE);
    expect(JSON.parse(await nextMessage(client))).toMatchObject({ streams: [{ stream: { namespace: 'team-a-web' } }] });
    expect(await clientClosed).toEqual([1008, 'credentials expired']);
    expect((await upstreamClosed)[0]).toBe(1000);
  }, 15_000);

  it('a config reload ends every open tail with 1012 (decided again when the client reconnects)', async () => {
    const own = await startGateway({ config: config(loki.url) });
    try {
      const upstreamSide = new Promise<WebSocket>((resolve) => (onTail = resolve));
      const client = await openTail(own.url, tailPath('{app="api"}'), auth('alice'));
      await upstreamSide;
      const clientClosed = closed(client);
      // The team loses its grant: the open tail must not keep relaying under the old decision.
      const running = parse(readFileSync(own.configFile, 'utf8')) as { teams: Record<string, unknown> };
      delete running.teams['team-a'];
      writeFileSync(own.configFile, stringify(running));
      process.kill(own.pid, 'SIGHUP');
      // The reload activates a new policy engine (its swap comes first): either reason, code 1012.
      expect(await clientClosed).toEqual([1012, expect.stringMatching(/^(policy|configuration) changed; reconnect$/)]);
      expect((await refusal(openTail(own.url, tailPath('{app="api"}'), auth('alice')))).status).toBe(403);
    } finally {
      await own.stop();
    }
  }, 30_000);
});

describe('Loki live tail: an upstream that refuses or is down', () => {
  it('the upstream\'s HTTP refusal passes through; an unreachable upstream → 502; the client is never upgraded', async () => {
    const refusing = await startCannedUpstream(() => [400, 'text/plain; charset=utf-8', 'parse error at line 1']);
    const deadPort = await freePort();
    const cfg = config(loki.url) as Record<string, unknown>;
    cfg['upstreams'] = [
      { name: 'refusing', kind: 'loki', url: refusing.url, mount: '/loki' },
      { name: 'down', kind: 'loki', url: `http://127.0.0.1:${deadPort}`, mount: '/down' },
    ];
    const own = await startGateway({ config: cfg });
    try {
      const e = await refusal(openTail(own.url, tailPath('{app="api"}'), auth('alice')));
      expect([e.status, e.body]).toEqual([400, 'parse error at line 1']);
      // The refusing upstream saw the enforced upgrade request.
      expect(refusing.requests.map((r) => [r.upgrade, r.params.get('query'), r.headers['x-scope-orgid']])).toEqual([[true, '{app="api", namespace=~"team-a-.*"}', 'tenant-a']]);
      const down = await refusal(openTail(own.url, `/down/loki/api/v1/tail?query=${encodeURIComponent('{app="api"}')}`, auth('alice')));
      expect(down.status).toBe(502);
      expect(JSON.parse(down.body)).toMatchObject({ status: 'error', errorType: 'unavailable' });
    } finally {
      await own.stop();
      await refusing.stop();
    }
  }, 30_000);
});
