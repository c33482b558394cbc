// mTLS end to end: the gateway listens with TLS (server.tls with a clientCA),
// a `type: mtls` identity source maps verified client certificates to
// subjects, and a real Prometheus answers behind a counting proxy. Only
// certificates that chain to clientCA identify anyone: no certificate, or one
// from another CA with the very same subject, is a 401 that forwards nothing.
import { request } from 'node:https';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestPki, type CertFiles, type TestPki } from './harness/certs.ts';
import { startCountingProxy, type CountingProxy } from './harness/counting-proxy.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { freePort } from './harness/ports.ts';
import { startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';
import { buildTeamsOpenMetrics, seedEndSeconds, TEAM_NAMESPACES } from './fixtures/seed.ts';

const SPIFFE_B = 'spiffe://example.org/ns/team-b/sa/exporter';

let prom: PrometheusInstance;
let proxy: CountingProxy;
let gw: GatewayInstance;
let pki: TestPki;
let foreignPki: TestPki;
let idp: TestIssuer;
let evalTime: number;
const certs: Record<string, CertFiles> = {};

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }) });
  proxy = await startCountingProxy({ upstream: prom.url });
  pki = createTestPki('/CN=lbac e2e client CA');
  foreignPki = createTestPki('/CN=lbac e2e client CA'); // same name, another key
  certs['server'] = pki.issue('server', { subject: '/CN=lbac-gateway', san: ['IP:127.0.0.1', 'DNS:localhost'], serverAuth: true });
  certs['alice'] = pki.issue('alice', { subject: '/O=example/OU=team-a/CN=alice', san: ['email:alice@example.com'] });
  certs['exporter'] = pki.issue('exporter', { subject: '/CN=exporter', san: [`URI:${SPIFFE_B}`, 'DNS:exporter.team-b.svc'] });
  certs['nobody'] = pki.issue('nobody', { subject: '/OU=contractors/CN=nobody' });
  certs['forged'] = foreignPki.issue('forged-alice', { subject: '/O=example/OU=team-a/CN=alice' });
  idp = await createTestIssuer({ issuer: 'https://idp.mtls.e2e', audience: 'lbac-gateway', alg: 'ES256' });
  const adminPort = await freePort();
  gw = await startGateway({
    scheme: 'https',
    readyUrl: `http://127.0.0.1:${adminPort}/readyz`,
    config: {
      server: { logLevel: 'warn', adminListen: `127.0.0.1:${adminPort}`, tls: { cert: certs['server'].cert, key: certs['server'].key, clientCA: pki.ca.cert } },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: proxy.url, mount: '/prometheus' }],
      identity: {
        providers: [
          { type: 'mtls', subjectFrom: ['uri', 'cn'], ouAsGroups: true, mapping: [{ subject: SPIFFE_B, groups: ['team-b'] }] },
          { type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway' },
        ],
      },
      teams: {
        'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }] },
        'team-b': { groups: ['team-b'], selectors: [{ namespace: ['team-b-api', 'team-b-db'] }] },
      },
    },
  });
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await proxy?.stop();
  await prom?.stop();
  pki?.cleanup();
  foreignPki?.cleanup();
  idp?.cleanup();
});

beforeEach(() => proxy.clear());

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** GET over HTTPS, trusting the test CA for the server, optionally presenting a client certificate. */
function get(path: string, opts: { client?: CertFiles; headers?: Record<string, string> } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${gw.url}${path}`,
      {
        ca: pki.ca.certPem,
        ...(opts.client === undefined ? {} : { cert: opts.client.certPem, key: opts.client.keyPem }),
        headers: opts.headers ?? {},
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function namespaces(opts: { client?: CertFiles; headers?: Record<string, string> }): Promise<string[]> {
  const q = new URLSearchParams({ query: 'count by (namespace) (up)', time: String(evalTime) });
  const res = await get(`/prometheus/api/v1/query?${q}`, opts);
  expect(res.status, res.body).toBe(200);
  const body = JSON.parse(res.body) as { data: { result: { metric: Record<string, string> }[] } };
  return [...new Set(body.data.result.map((r) => r.metric['namespace'] ?? ''))].sort();
}

describe('mTLS client certificates through the gateway', () => {
  it('the gateway URL is HTTPS', () => {
    expect(gw.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it('a certificate with OU=team-a gets team A (CN → sub, OU → groups)', async () => {
    expect(await namespaces({ client: certs['alice']! })).toEqual([...TEAM_NAMESPACES['team-a']].sort());
  });

  it('a workload certificate: SAN URI (SPIFFE id) → sub, mapping → groups', async () => {
    expect(await namespaces({ client: certs['exporter']! })).toEqual([...TEAM_NAMESPACES['team-b']].sort());
  });

  it('no client certificate → 401 with a Bearer challenge, nothing forwarded', async () => {
    const res = await get('/prometheus/api/v1/query?query=up');
    expect(res.status).toBe(401);
    expect(String(res.headers['www-authenticate'])).toMatch(/^Bearer realm="lbac-gateway"/);
    expect(JSON.parse(res.body)).toMatchObject({ status: 'error', errorType: 'unauthorized' });
    expect(proxy.count()).toBe(0);
  });

  it('a certificate from another CA with the same subject → 401, nothing forwarded', async () => {
    const res = await get('/prometheus/api/v1/query?query=up', { client: certs['forged']! });
    expect(res.status).toBe(401);
    expect(String(res.headers['www-authenticate'])).toContain('error="invalid_token"');
    expect(proxy.count()).toBe(0);
  });

  it('a verified certificate outside every team → 403', async () => {
    const res = await get('/prometheus/api/v1/query?query=up', { client: certs['nobody']! });
    expect(res.status).toBe(403);
    expect(proxy.count()).toBe(0);
  });

  it('bearer tokens still work over TLS without a client certificate', async () => {
    const token = await idp.mint({ sub: 'u-bob', groups: ['team-b'] });
    expect(await namespaces({ headers: { authorization: `Bearer ${token}` } })).toEqual([...TEAM_NAMESPACES['team-b']].sort());
  });
});
