// Loki and Tempo route tables through the real gateway process. The backends
// here are canned stand-ins that record what they receive (real Loki and Tempo
// cannot run on these machines: docs/operations.md); the rewriting itself is
// covered by test/rewrite and its corpora.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startCannedUpstream, type CannedUpstream } from './harness/canned-upstream.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';

let loki: CannedUpstream;
let tempo: CannedUpstream;
let gw: GatewayInstance;
let idp: TestIssuer;
const tok: Record<string, string> = {};

const json = (body: unknown): [number, string, string] => [200, 'application/json', JSON.stringify(body)];

beforeAll(async () => {
  loki = await startCannedUpstream((path) =>
    path.includes('/label/') ? json({ status: 'success', data: ['team-a-web', 'team-b-api'] }) : json({ status: 'success', data: { resultType: 'streams', result: [] } }),
  );
  tempo = await startCannedUpstream((path) =>
    path.includes('/values')
      ? json({ tagValues: [{ type: 'string', value: 'team-a-web' }, { type: 'string', value: 'team-b-api' }] })
      : json({ traces: [], metrics: {} }),
  );
  idp = await createTestIssuer({ issuer: 'https://idp.routes', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [
        { name: 'logs', kind: 'loki', url: loki.url, mount: '/loki' },
        { name: 'traces', kind: 'tempo', url: tempo.url, mount: '/tempo' },
      ],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      // Tempo filters on attributes: map label names per backend kind.
      policy: { attributes: { tempo: { namespace: 'resource.k8s.namespace.name', cluster: 'resource.k8s.cluster.name' } } },
      teams: {
        'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }], headers: { 'X-Scope-OrgID': 'tenant-a' } },
        'team-dnf': { groups: ['dnf'], selectors: [{ namespace: 'x' }, { namespace: 'y', cluster: 'z' }] },
      },
    },
  });
  tok['alice'] = await idp.mint({ sub: 'alice', groups: ['team-a'] });
  tok['dana'] = await idp.mint({ sub: 'dana', groups: ['dnf'] });
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await loki?.stop();
  await tempo?.stop();
});

beforeEach(() => {
  loki.clear();
  tempo.clear();
});

const get = (path: string, user = 'alice', headers: Record<string, string> = {}) => fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${tok[user]}`, ...headers } });

describe('Loki routes', () => {
  it('query_range: the LogQL query is rewritten and the tenant header is the policy\'s', async () => {
    const q = encodeURIComponent('sum by (level) (count_over_time({app="api"} |= "error" | json [5m]))');
    const res = await get(`/loki/loki/api/v1/query_range?query=${q}&start=1&end=2`, 'alice', { 'X-Scope-OrgID': 'tenant-b' });
    expect(res.status).toBe(200);
    const r = loki.requests.at(-1)!;
    expect(r.path).toBe('/loki/api/v1/query_range');
    expect(r.params.get('query')).toBe('sum by (level) (count_over_time({app="api", namespace=~"team-a-.*"} |= "error" | json [5m]))');
    expect(r.headers['x-scope-orgid']).toBe('tenant-a');
  });

  it('labels and label values without a query get the policy selector; values are filtered', async () => {
    expect((await get('/loki/loki/api/v1/labels?start=1')).status).toBe(200);
    expect(loki.requests.at(-1)!.params.get('query')).toBe('{namespace=~"team-a-.*"}');
    const res = await get('/loki/loki/api/v1/label/namespace/values');
    expect(await res.json()).toEqual({ status: 'success', data: ['team-a-web'] });
    expect(loki.requests.at(-1)!.params.get('query')).toBe('{namespace=~"team-a-.*"}');
  });

  it('series match[], index stats/volume, patterns and detected_* carry the policy', async () => {
    await get(`/loki/loki/api/v1/series?match[]=${encodeURIComponent('{app="api"}')}`);
    expect(loki.requests.at(-1)!.params.getAll('match[]')).toEqual(['{app="api", namespace=~"team-a-.*"}']);
    for (const ep of ['index/stats', 'index/volume', 'index/volume_range', 'patterns', 'detected_fields', 'detected_labels', 'detected_field/level/values']) {
      const res = await get(`/loki/loki/api/v1/${ep}?query=${encodeURIComponent('{app="api"}')}`);
      expect(res.status, ep).toBe(200);
      expect(loki.requests.at(-1)!.params.get('query'), ep).toBe('{app="api", namespace=~"team-a-.*"}');
    }
  });

  it('a bad LogQL query → 400 in Loki\'s format, nothing forwarded; unknown paths and tail → 404', async () => {
    const res = await get(`/loki/loki/api/v1/query?query=${encodeURIComponent('{app="api"')}`);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ status: 'error', errorType: 'bad_data' });
    expect((await get('/loki/loki/api/v1/tail?query={a="b"}')).status).toBe(404);
    expect((await get('/loki/loki/api/v1/push')).status).toBe(404);
    expect(loki.requests).toHaveLength(0);
  });

  it('a multi-alternative policy cannot be one stream selector: refused, not widened', async () => {
    const res = await get('/loki/loki/api/v1/labels', 'dana');
    expect(res.status).toBe(400);
    expect(loki.requests).toHaveLength(0);
  });
});

describe('Tempo routes', () => {
  it('search: q is rewritten; a missing q searches only allowed spans; legacy tags are refused', async () => {
    await get(`/tempo/api/search?q=${encodeURIComponent('{ span.http.method = "GET" }')}&limit=20`);
    expect(tempo.requests.at(-1)!.params.get('q')).toBe('{ (span.http.method = "GET") && resource.k8s.namespace.name =~ "team-a-.*" }');
    expect(tempo.requests.at(-1)!.params.get('limit')).toBe('20');
    await get('/tempo/api/search');
    expect(tempo.requests.at(-1)!.params.get('q')).toBe('{ resource.k8s.namespace.name =~ "team-a-.*" }');
    const legacy = await get('/tempo/api/search?tags=service.name%3Dapi');
    expect(legacy.status).toBe(400);
    expect(legacy.headers.get('content-type')).toMatch(/^text\/plain/);
  });

  it('DNF policies are exact in TraceQL: alternatives become || inside the filter', async () => {
    await get(`/tempo/api/metrics/query_range?q=${encodeURIComponent('{ } | rate()')}`, 'dana');
    const q = tempo.requests.at(-1)!.params.get('q')!;
    expect(q).toBe('{ (resource.k8s.cluster.name = "z" && resource.k8s.namespace.name = "y") || (resource.k8s.namespace.name = "x") } | rate()');
  });

  it('tag values are scoped by q and filtered by the policy', async () => {
    const res = await get('/tempo/api/v2/search/tag/resource.k8s.namespace.name/values');
    expect(await res.json()).toEqual({ tagValues: [{ type: 'string', value: 'team-a-web' }] });
    expect(tempo.requests.at(-1)!.params.get('q')).toBe('{ resource.k8s.namespace.name =~ "team-a-.*" }');
  });

  it('tag APIs: a half-typed q (autocomplete) falls back to the policy alone; v1 unscoped tag values are filtered too', async () => {
    await get(`/tempo/api/v2/search/tags?q=${encodeURIComponent('{ span.http.method = ')}`);
    expect(tempo.requests.at(-1)!.params.get('q')).toBe('{ resource.k8s.namespace.name =~ "team-a-.*" }');
    const v1 = await get('/tempo/api/search/tag/k8s.namespace.name/values');
    expect(await v1.json()).toEqual({ tagValues: [{ type: 'string', value: 'team-a-web' }] });
  });

  it('metrics need q; trace by id is not served (404) until spans can be filtered', async () => {
    const noQ = await get('/tempo/api/metrics/query_range');
    expect(noQ.status).toBe(400);
    expect((await get('/tempo/api/v2/traces/0123456789abcdef0123456789abcdef')).status).toBe(404);
    expect(tempo.requests).toHaveLength(0);
  });
});
