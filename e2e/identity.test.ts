// Every identity source end to end: a real oidc-provider (discovery, JWKS,
// introspection, userinfo, client_credentials), a stand-in Grafana serving its
// signing keys, the gateway started through its CLI, and a real Prometheus
// behind a counting proxy. Each source's subject must reach the policy and
// yield that team's data; every attack must be a 401 that forwards nothing.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startCountingProxy, type CountingProxy } from './harness/counting-proxy.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { eventually } from './harness/eventually.ts';
import { GATEWAY_CLIENT, JWT_AUDIENCE, OPAQUE_RESOURCE, startIdp, type TestIdp } from './harness/idp.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';
import { buildTeamsOpenMetrics, seedEndSeconds, TEAM_NAMESPACES } from './fixtures/seed.ts';
import { hashSecret } from '../src/identity/secrets.ts';

let prom: PrometheusInstance;
let proxy: CountingProxy;
let gw: GatewayInstance;
let idp: TestIdp;
let grafana: TestIssuer;
let grafanaServer: Server;
let grafanaUrl: string;
let attacker: Server;
let attackerHits = 0;
let attackerUrl: string;
let base: string;
let evalTime: number;
const API_KEY = 'lbac_e2e-api-key-0123456789abcdefghijklmnopqrstu';

function listen(s: Server): Promise<string> {
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)));
}

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }) });
  proxy = await startCountingProxy({ upstream: prom.url });
  idp = await startIdp();
  idp.setAccount('u-dora', { preferred_username: 'dora', groups: ['team-b'] }); // groups only via userinfo
  grafana = await createTestIssuer({ issuer: 'placeholder', audience: 'org:1', alg: 'ES256' });
  grafanaServer = createServer((req, res) => {
    if (req.url === '/api/signing-keys/keys') res.setHeader('content-type', 'application/json').end(readFileSync(grafana.jwksPath));
    else res.writeHead(404).end();
  });
  grafanaUrl = await listen(grafanaServer);
  // An attacker's JWKS server: jku/x5u headers point here; it must never be contacted.
  const foreign = await createTestIssuer({ issuer: idp.issuer, audience: JWT_AUDIENCE, alg: 'RS256', kid: 'evil' });
  attacker = createServer((_req, res) => {
    attackerHits++;
    res.setHeader('content-type', 'application/json').end(readFileSync(foreign.jwksPath));
  });
  attackerUrl = await listen(attacker);
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: proxy.url, mount: '/prometheus' }],
      identity: {
        providers: [
          { type: 'grafana', url: `${grafanaUrl}/`, orgs: [1] },
          { type: 'oidc', issuer: idp.issuer, audience: JWT_AUDIENCE, jwks: { cooldownSeconds: 1 }, maxTokenBytes: 4096 },
          { type: 'introspection', issuer: idp.issuer, clientId: GATEWAY_CLIENT.id, clientSecret: '${IDP_CLIENT_SECRET}', userinfo: {} },
          { type: 'apikey', keys: [{ name: 'ci-bot', hash: await hashSecret(API_KEY, { N: 1024 }), subject: { groups: ['team-a'] } }] },
          { type: 'basic', users: [{ username: 'erin', hash: await hashSecret('erin-password', { N: 1024 }), subject: { groups: ['team-b'] } }] },
        ],
      },
      teams: {
        // Grafana users are listed by their fixed id (sub "user:<id>"): a Grafana login can be edited by its owner.
        'team-a': { groups: ['team-a'], users: ['user:1'], selectors: [{ namespace: '~team-a-.*' }] },
        'team-b': { groups: ['team-b'], users: ['batch-job'], selectors: [{ namespace: ['team-b-api', 'team-b-db'] }] },
      },
    },
    env: { IDP_CLIENT_SECRET: GATEWAY_CLIENT.secret },
  });
  base = `${gw.url}/prometheus`;
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await proxy?.stop();
  await prom?.stop();
  await idp?.stop();
  grafanaServer?.close();
  attacker?.close();
  grafana?.cleanup();
});

beforeEach(() => proxy.clear());

const A = [...TEAM_NAMESPACES['team-a']].sort();
const B = [...TEAM_NAMESPACES['team-b']].sort();

async function namespaces(headers: Record<string, string>): Promise<string[]> {
  const { status, body } = await promGet<{ result: { metric: Record<string, string> }[] }>(base, '/api/v1/query', { query: 'count by (namespace) (up)', time: String(evalTime) }, headers);
  expect(status, JSON.stringify(body)).toBe(200);
  return [...new Set(body.data!.result.map((r) => r.metric['namespace'] ?? ''))].sort();
}
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

async function refused(headers: Record<string, string>, want = 401): Promise<void> {
  const res = await fetch(`${base}/api/v1/query?query=up`, { headers });
  expect(res.status).toBe(want);
  if (want === 401) expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
  expect(proxy.count()).toBe(0);
}

describe('each identity source end to end', () => {
  it('OIDC JWT access token (keys via discovery) with a groups claim', async () => {
    expect(await namespaces(bearer(await idp.mintAccessToken({ sub: 'u-alice', claims: { groups: ['team-a'] } })))).toEqual(A);
  });
  it('client_credentials JWT: the machine client is the subject', async () => {
    expect(await namespaces(bearer(await idp.clientCredentials()))).toEqual(B);
  });
  it('opaque token via introspection, groups via userinfo', async () => {
    expect(await namespaces(bearer(await idp.mintAccessToken({ sub: 'u-dora', format: 'opaque' })))).toEqual(B);
  });
  it('opaque client_credentials token via introspection', async () => {
    expect(await namespaces(bearer(await idp.clientCredentials(OPAQUE_RESOURCE)))).toEqual(B);
  });
  it('Grafana ID token (X-Grafana-Id)', async () => {
    const t = await grafana.mint({ sub: 'user:1', username: 'grafana-alice' }, { issuer: `${grafanaUrl}/`, audience: 'org:1' });
    expect(await namespaces({ 'x-grafana-id': t })).toEqual(A);
  });
  it('Grafana ID token of another user who took a listed login gets nothing', async () => {
    const t = await grafana.mint({ sub: 'user:7', username: 'user:1', login: 'user:1' }, { issuer: `${grafanaUrl}/`, audience: 'org:1' });
    await refused({ 'x-grafana-id': t }, 403);
  });
  it('OIDC token whose preferred_username is a listed user id gets nothing', async () => {
    await refused(bearer(await idp.mintAccessToken({ sub: 'u-mallory', claims: { preferred_username: 'batch-job' } })), 403);
  });
  it('static API key', async () => {
    expect(await namespaces(bearer(API_KEY))).toEqual(A);
  });
  it('basic-auth user', async () => {
    expect(await namespaces({ authorization: `Basic ${Buffer.from('erin:erin-password').toString('base64')}` })).toEqual(B);
  });
  it('401s offer Basic next to Bearer because a basic source is configured', async () => {
    const res = await fetch(`${base}/api/v1/query?query=up`, { headers: { authorization: `Basic ${Buffer.from('erin:wrong').toString('base64')}` } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="lbac-gateway", error="invalid_token", Basic realm="lbac-gateway"');
    const none = await fetch(`${base}/api/v1/query?query=up`);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="lbac-gateway", Basic realm="lbac-gateway"');
  });
});

describe('key rotation at the provider while the gateway runs', () => {
  it('a token signed with a new key is accepted after one JWKS refetch', async () => {
    await namespaces(bearer(await idp.mintAccessToken({ sub: 'u-alice', claims: { groups: ['team-a'] } })));
    const oldKid = idp.currentKid;
    idp.resetCounts();
    await idp.rotateKeys();
    await new Promise((r) => setTimeout(r, 1100)); // past the configured 1 s cooldown
    for (let i = 0; i < 3; i++) expect(await namespaces(bearer(await idp.mintAccessToken({ sub: `u-r${i}`, claims: { groups: ['team-b'] } })))).toEqual(B);
    expect(idp.requests.jwks).toBe(1);
    await idp.retireKey(oldKid);
  });
});

describe('attack suite → 401, nothing forwarded', () => {
  const now = () => Math.floor(Date.now() / 1000);
  const cases: [string, () => Promise<Record<string, string>>][] = [
    ['alg none', async () => bearer(await idp.sign({ sub: 'x', groups: ['team-a'] }, { alg: 'none' }))],
    ['HS256 signed with the RSA public key', async () => bearer(await idp.sign({ sub: 'x', groups: ['team-a'] }, { alg: 'HS256' }))],
    ['expired', async () => bearer(await idp.sign({ sub: 'x', groups: ['team-a'], exp: now() - 600 }))],
    ['nbf in the future', async () => bearer(await idp.sign({ sub: 'x', groups: ['team-a'], nbf: now() + 600 }))],
    ['wrong iss', async () => bearer(await idp.sign({ sub: 'x', groups: ['team-a'], iss: 'https://evil.example' }))],
    ['wrong aud', async () => bearer(await idp.sign({ sub: 'x', groups: ['team-a'], aud: 'other-api' }))],
    ['unknown kid with jku → attacker JWKS', async () => bearer(await idp.sign({ sub: 'x', groups: ['team-a'] }, { key: 'foreign', kid: 'evil', header: { jku: `${attackerUrl}/jwks.json` } }))],
    ['unknown kid with x5u → attacker', async () => bearer(await idp.sign({ sub: 'x', groups: ['team-a'] }, { key: 'foreign', kid: 'evil', header: { x5u: `${attackerUrl}/cert.pem` } }))],
    ['another issuer’s key with the provider’s kid', async () => bearer(await idp.sign({ sub: 'x', groups: ['team-a'] }, { key: 'foreign' }))],
    ['tampered payload', async () => {
      const [h, , s] = (await idp.mintAccessToken({ sub: 'x', claims: { groups: ['nobody'] } })).split('.');
      return bearer(`${h}.${Buffer.from(JSON.stringify({ sub: 'x', groups: ['team-a'], iss: idp.issuer, aud: JWT_AUDIENCE, exp: now() + 600 })).toString('base64url')}.${s}`);
    }],
    ['oversized token (over identity maxTokenBytes)', async () => bearer(`${'a'.repeat(6_000)}.${'b'.repeat(10)}.c`)],
    ['inactive opaque token (introspection active:false)', async () => bearer('this-token-was-never-issued-0123456789')],
    ['wrong API key', async () => bearer('lbac_not-the-key')],
    ['wrong basic password', async () => ({ authorization: `Basic ${Buffer.from('erin:nope').toString('base64')}` })],
    ['Grafana ID token for another org', async () => ({ 'x-grafana-id': await grafana.mint({ sub: 'user:1', username: 'grafana-alice' }, { issuer: `${grafanaUrl}/`, audience: 'org:2' }) })],
    ['Grafana ID token from another Grafana', async () => ({ 'x-grafana-id': await grafana.mint({ sub: 'user:1', username: 'grafana-alice' }, { issuer: 'https://other-grafana/', audience: 'org:1' }) })],
  ];
  it.each(cases)('%s', async (_name, make) => {
    await refused(await make());
  });
  it('a token beyond the HTTP header limit is refused before identity (431), nothing forwarded', async () => {
    await refused(bearer(`${'a'.repeat(20_000)}.b.c`), 431);
  });
  it('the attacker JWKS was never contacted', () => {
    expect(attackerHits).toBe(0);
  });

  it('a valid token in a query parameter is not accepted', async () => {
    const t = await idp.mintAccessToken({ sub: 'u-alice', claims: { groups: ['team-a'] } });
    for (const p of ['access_token', 'token', 'id_token']) {
      const res = await fetch(`${base}/api/v1/query?query=up&${p}=${t}`);
      expect(res.status).toBe(401);
    }
    expect(proxy.count()).toBe(0);
  });

  it.each([
    ['Bearer'],
    ['Bearer  '],
    ['Bearer a b'],
    ['Token abc'],
    ['Basic !!!'],
    ['Basic bm8tY29sb24='],
    ['Bearer abc, Bearer def'],
  ])('malformed Authorization %j', async (h) => {
    await refused({ authorization: h });
  });
});

describe('identity provider unreachable → 503, never anonymous', () => {
  it('introspection of a new token while the provider is down', async () => {
    const t = await idp.mintAccessToken({ sub: 'u-dora', format: 'opaque' });
    idp.setAvailable(false);
    try {
      const res = await fetch(`${base}/api/v1/query?query=up`, { headers: bearer(t) });
      expect(res.status).toBe(503);
      expect(proxy.count()).toBe(0);
    } finally {
      idp.setAvailable(true);
    }
    expect(await namespaces(bearer(t))).toEqual(B);
  });

  it('a gateway started while the provider is down answers 503 with a log line, then recovers', async () => {
    idp.setAvailable(false);
    let gw2: GatewayInstance | undefined;
    try {
      gw2 = await startGateway({
        config: {
          server: { logLevel: 'info' },
          upstreams: [{ name: 'metrics', kind: 'prometheus', url: proxy.url, mount: '/prometheus' }],
          identity: { providers: [{ type: 'oidc', issuer: idp.issuer, audience: JWT_AUDIENCE, discoveryRetrySeconds: 1, timeoutMs: 1000 }] },
          teams: { 'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }] } },
        },
      });
      const t = await idp.mintAccessToken({ sub: 'u-alice', claims: { groups: ['team-a'] } });
      const res = await fetch(`${gw2.url}/prometheus/api/v1/query?query=up`, { headers: bearer(t) });
      expect(res.status).toBe(503);
      // The client learns that the provider failed, not where or why (that is in the log).
      const body = (await res.json()) as { error: string };
      expect(body.error).toBe('identity provider unavailable; retry later');
      expect(JSON.stringify(body)).not.toContain(new URL(idp.issuer).host);
      expect(proxy.count()).toBe(0);
      const logged = await eventually(() => /identity_unavailable/.test(gw2!.tail(50)) && gw2!.tail(50).includes(new URL(idp.issuer).host), 5_000);
      expect(logged, gw2.tail(50)).toBe(true);
      idp.setAvailable(true);
      // Discovery is retried after discoveryRetrySeconds (1 s); polled, since a loaded machine may take longer.
      let last = 0;
      const recovered = await eventually(async () => {
        last = (await fetch(`${gw2!.url}/prometheus/api/v1/query?query=up`, { headers: bearer(t) })).status;
        return last === 200;
      }, 15_000, 250);
      expect(recovered, `last status ${last}\n${gw2.tail(30)}`).toBe(true);
    } finally {
      idp.setAvailable(true);
      await gw2?.stop();
    }
  });
});
