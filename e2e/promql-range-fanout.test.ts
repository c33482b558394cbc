// An instant query that is only a range selector (`up[5m]`: raw samples, as
// Grafana's Explore and ad-hoc API users ask) under a policy of several groups.
// An "or" of range vectors is not PromQL, so the gateway asks the real
// Prometheus once per group, at one evaluation time, and merges the matrices;
// the answer must be exactly the tenant's series of the unrestricted answer,
// in Prometheus' order, with overlapping groups' shared series once.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTeamsOpenMetrics, seedEndSeconds } from './fixtures/seed.ts';
import { startCountingProxy, type CountingProxy } from './harness/counting-proxy.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';

type Labels = Record<string, string>;
interface MatrixSeries {
  metric: Labels;
  values: [number, string][];
}

// Team A's namespaces, plus every `api` job: team A's api series are in both groups.
const allowed = (l: Labels): boolean => /^team-a-.*$/.test(l['namespace'] ?? '') || l['job'] === 'api';

let prom: PrometheusInstance;
let proxy: CountingProxy;
let gw: GatewayInstance;
let idp: TestIssuer;
let evalTime: number;
let auth: Record<string, string>;

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }) });
  proxy = await startCountingProxy({ upstream: prom.url });
  idp = await createTestIssuer({ issuer: 'https://idp.fanout', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: proxy.url, mount: '/' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway' }] },
      teams: { overlap: { groups: ['overlap'], selectors: [{ namespace: '~team-a-.*' }, { job: 'api' }], headers: { 'X-Scope-OrgID': 'tenant-o' } } },
    },
  });
  auth = { authorization: `Bearer ${await idp.mint({ sub: 'u-overlap', groups: ['overlap'] }, { expiresIn: '1h' })}` };
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await proxy?.stop();
  await prom?.stop();
  idp?.cleanup();
});

beforeEach(() => proxy.clear());

/** The unrestricted answer, straight from Prometheus (already sorted by labels), cut to what the tenant may see. */
async function reference(query: string, time: string): Promise<MatrixSeries[]> {
  const r = await promGet<{ resultType: string; result: MatrixSeries[] }>(prom.url, '/api/v1/query', { query, time });
  expect(r.body.data?.resultType).toBe('matrix');
  return r.body.data!.result.filter((s) => allowed(s.metric));
}

describe('a bare range selector in an instant query, several groups', () => {
  it.each(['up[5m]', 'http_requests_total{code="500"}[2m] offset 1m', '({job=~"api|web"}[5m] @ ' + 'end())'])(
    '%s: exactly the tenant\'s series of the unrestricted answer, each once, in Prometheus\' order',
    async (query) => {
      const time = String(evalTime);
      const r = await promGet<{ resultType: string; result: MatrixSeries[] }>(gw.url, '/api/v1/query', { query, time }, auth);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const expected = await reference(query, time);
      expect(new Set(expected.map((s) => s.metric['namespace'])).size).toBeGreaterThan(1);
      expect(r.body.data).toEqual({ resultType: 'matrix', result: expected });
      // One request per group reached Prometheus, each enforced by its own group only.
      const parts = proxy.requests.filter((x) => x.path === '/api/v1/query');
      expect(parts.map((x) => x.params.get('time'))).toEqual([time, time]);
      const sent = parts.map((x) => x.params.get('query') ?? '');
      expect(sent.filter((q) => q.includes('namespace=~"team-a-.*"') && !q.includes('job="api"'))).toHaveLength(1);
      expect(sent.filter((q) => q.includes('job="api"') && !q.includes('team-a'))).toHaveLength(1);
    },
  );

  it('without `time`, every part is evaluated at the same instant (the gateway\'s now)', async () => {
    const before = Date.now() / 1000;
    const r = await promGet<{ resultType: string; result: MatrixSeries[] }>(gw.url, '/api/v1/query', { query: 'up[10m]' }, auth);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const times = proxy.requests.filter((x) => x.path === '/api/v1/query').map((x) => Number(x.params.get('time')));
    expect(times).toHaveLength(2);
    expect(times[0]).toBe(times[1]);
    expect(times[0]).toBeGreaterThanOrEqual(Math.floor(before));
    expect(r.body.data?.result.every((s) => allowed(s.metric))).toBe(true);
  });

  it('a form POST (as Grafana sends) is answered the same way', async () => {
    const time = String(evalTime);
    const res = await fetch(`${gw.url}/api/v1/query`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query: 'up[5m]', time }).toString(),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { result: MatrixSeries[] } };
    expect(body.data.result).toEqual(await reference('up[5m]', time));
    // Team A's api series are in both groups' answers, and in the merged one once each.
    const shared = body.data.result.filter((s) => s.metric['namespace'] === 'team-a-backend' && s.metric['job'] === 'api');
    expect(shared.length).toBeGreaterThan(0);
    expect(new Set(shared.map((s) => s.metric['instance'])).size).toBe(shared.length);
  });

  it('`limit` cuts the merged answer where Prometheus cuts its sorted result, with its warning', async () => {
    const time = String(evalTime);
    const r = await promGet<{ resultType: string; result: MatrixSeries[] }>(gw.url, '/api/v1/query', { query: 'up[5m]', time, limit: '3' }, auth);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const expected = await reference('up[5m]', time);
    expect(expected.length).toBeGreaterThan(3);
    expect(r.body.data?.result).toEqual(expected.slice(0, 3));
    expect((r.body as { warnings?: string[] }).warnings).toContain('results truncated due to limit');
  });

  it('a part Prometheus refuses is relayed as Prometheus wrote it', async () => {
    const r = await promGet(gw.url, '/api/v1/query', { query: 'up[5m]', time: String(evalTime), limit: '-1' }, auth);
    expect(r.status).toBe(400);
    expect(r.body.status).toBe('error');
    expect(r.body.errorType).toBe('bad_data');
  });

  it('every part carries the policy\'s tenant header and none of the client\'s tenant, policy or credential headers', async () => {
    const spoof = { ...auth, 'X-Scope-OrgID': 'tenant-b', 'X-Prom-Label-Policy': 'tenant-b:%7B%7D', Cookie: 'session=x' };
    const r = await promGet(gw.url, '/api/v1/query', { query: 'up[5m]', time: String(evalTime) }, spoof);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const parts = proxy.requests.filter((x) => x.path === '/api/v1/query');
    expect(parts).toHaveLength(2);
    for (const part of parts) {
      expect(part.headers['x-scope-orgid']).toBe('tenant-o');
      expect(part.headers['x-prom-label-policy']).toBeUndefined();
      expect(part.headers['authorization']).toBeUndefined();
      expect(part.headers['cookie']).toBeUndefined();
    }
  });

  it('a range query of a range selector is still refused (Prometheus has no range query of raw samples), nothing forwarded', async () => {
    const r = await promGet(gw.url, '/api/v1/query_range', { query: 'up[5m]', start: String(evalTime - 600), end: String(evalTime), step: '60' }, auth);
    expect(r.status).toBe(400);
    expect(r.body.errorType).toBe('bad_data');
    expect(proxy.requests).toHaveLength(0);
  });
});
