// A tail is decided before its upstream handshake completes: a policy or configuration change
// in that window (closeRelays, what server/index.ts runs on a swap or reload) must still close
// it once it becomes a relay, or it would relay under the replaced decision.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { parseConfig } from '../../src/config/load.ts';
import type { IdentitySource } from '../../src/identity/source.ts';
import type { Subject } from '../../src/policy/decision.ts';
import { closeRelays } from '../../src/server/plugins/websocket.ts';
import { testApp, type TestApp } from './helpers.ts';

const one: Subject = { sub: 'u-one', username: 'u-one', groups: ['eu-a'], roles: [], auth: 'fake', claims: {} };
// "slow": a credential whose check takes 300 ms (a scrypt-hashed API key, an introspection call).
let authenticating = 0;
const people: IdentitySource = {
  name: 'fake',
  authenticate: async (c) => {
    if (c.bearer === 'slow') {
      authenticating++;
      await new Promise((r) => setTimeout(r, 300));
      return one;
    }
    return c.bearer === 'one' ? one : undefined;
  },
};
let wss: WebSocketServer;
let t: TestApp;
let base: string;
let handshakes = 0;

beforeAll(async () => {
  // A Loki stand-in whose tail handshake takes 300 ms.
  wss = new WebSocketServer({ port: 0, host: '127.0.0.1', verifyClient: (_info, cb) => { handshakes++; setTimeout(() => cb(true), 300); } });
  await new Promise((r) => wss.once('listening', r));
  const lokiUrl = `http://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  const config = parseConfig(
    `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: logs, kind: loki, url: "${lokiUrl}", mount: /loki-gw, timeoutMs: 2000, version: "3.6.0" }
identity:
  providers:
    - type: apikey
      keys: [{ name: unused, hash: "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" }]
teams:
  eu-a: { groups: [eu-a], selectors: [{ cluster: eu }], headers: { X-Scope-OrgID: tenant-1 } }
`,
    { env: {} },
  );
  t = await testApp(config, { identity: people });
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  base = `ws://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await t.app.close();
  await new Promise((r) => wss.close(r));
});

it('a tail whose upstream handshake was in flight during a policy swap is closed too', async () => {
  const client = new WebSocket(`${base}/loki-gw/loki/api/v1/tail?query=${encodeURIComponent('{app="api"}')}`, { headers: { authorization: 'Bearer one' } });
  const closed = new Promise<number>((r) => client.on('close', (code) => r(code)));
  client.on('error', () => undefined);
  while (handshakes === 0) await new Promise((r) => setTimeout(r, 5));
  // The decision was made; the policy changes now (server/index.ts: holder.onSwap → closeRelays).
  closeRelays(t.app, 1012, 'policy changed; reconnect');
  const outcome = await Promise.race([closed, new Promise<string>((r) => setTimeout(() => r(`still open (readyState ${client.readyState})`), 10_000))]);
  client.terminate();
  expect(outcome).toBe(1012);
});

it('a tail whose credential was being checked during a reload or swap is closed once it relays', async () => {
  // Authenticated by the identity providers in place before the change (a key the reload removed),
  // then decided and opened after it: closeRelays ran before this tail existed, so only the state
  // it was authenticated under can tell that it must go.
  const before = handshakes;
  const client = new WebSocket(`${base}/loki-gw/loki/api/v1/tail?query=${encodeURIComponent('{app="api"}')}`, { headers: { authorization: 'Bearer slow' } });
  const closed = new Promise<number>((r) => client.on('close', (code) => r(code)));
  client.on('error', () => undefined);
  while (authenticating === 0) await new Promise((r) => setTimeout(r, 5));
  closeRelays(t.app, 1012, 'configuration changed; reconnect');
  const outcome = await Promise.race([closed, new Promise<string>((r) => setTimeout(() => r(`still open (readyState ${client.readyState})`), 10_000))]);
  client.terminate();
  expect(handshakes).toBeGreaterThan(before);
  expect(outcome).toBe(1012);
});
