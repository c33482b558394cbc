// policyEnforcement: header — a Loki upstream that enforces the policy itself
// (Loki ≥ 3.7 label-based access control): the gateway forwards queries as sent
// and puts the policy in X-Prom-Label-Policy, once per tenant of the decision's
// X-Scope-OrgID. Against a recording Loki stand-in (Loki is AGPL: no binary here).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startCannedUpstream, type CannedUpstream } from './harness/canned-upstream.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';
import { lokiAnswer } from './fixtures/grafana/answers.ts';

let loki: CannedUpstream;
let gw: GatewayInstance;
let idp: TestIssuer;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  loki = await startCannedUpstream(lokiAnswer);
  idp = await createTestIssuer({ issuer: 'https://idp.label-policy', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [
        { name: 'logs', kind: 'loki', url: loki.url, mount: '/loki', policyEnforcement: 'header' },
        { name: 'logs-rewrite', kind: 'loki', url: loki.url, mount: '/loki-rewrite' },
      ],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      admins: { groups: ['admins'] },
      teams: {
        // Two alternatives (DNF): the rewrite mode splits log queries, and refuses what it cannot split exactly.
        'team-a': {
          groups: ['team-a'],
          selectors: [{ namespace: '~team-a-.*' }, { namespace: 'shared', app: 'api' }],
          headers: { 'X-Scope-OrgID': 'tenant-a|tenant-shared' },
        },
        'team-n': { groups: ['team-n'], selectors: [{ namespace: 'n' }] },
        'team-n-tenant': { groups: ['team-n-tenant'], selectors: [{ namespace: 'n' }], headers: { 'X-Scope-OrgID': 'tenant-n' } },
      },
    },
  });
  for (const [who, groups] of [['alice', ['team-a']], ['nina', ['team-n']], ['nina-t', ['team-n-tenant']], ['root', ['admins']]] as const) {
    tokens[who] = await idp.mint({ sub: `u-${who}`, groups: [...groups] });
  }
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await loki?.stop();
  idp?.cleanup();
});

beforeEach(() => loki.clear());

const get = (path: string, who: string, headers: Record<string, string> = {}) =>
  fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${tokens[who]}`, ...headers } });

const QUERY = 'sum by (level) (count_over_time({app="api"} |= "error" [5m]))';

describe('policyEnforcement: header (Loki enforces X-Prom-Label-Policy)', () => {
  it('forwards the query as sent and the policy per tenant; a spoofed policy header is replaced', async () => {
    const res = await get(`/loki/loki/api/v1/query_range?query=${encodeURIComponent(QUERY)}&start=1&end=2&step=1`, 'alice', {
      'x-prom-label-policy': 'tenant-a:%7Bnamespace%3D~%22.%2B%22%7D',
      'x-scope-orgid': 'tenant-b',
    });
    expect(res.status).toBe(200);
    expect(loki.requests).toHaveLength(1);
    const r = loki.requests[0]!;
    expect(r.params.getAll('query')).toEqual([QUERY]);
    expect(r.headers['x-scope-orgid']).toBe('tenant-a|tenant-shared');
    const entries = String(r.headers['x-prom-label-policy']).split(',');
    const decoded = entries.map((e) => {
      const i = e.indexOf(':');
      return [e.slice(0, i), decodeURIComponent(e.slice(i + 1))];
    });
    // Every tenant gets every alternative (matchers in the decision's order: the policy sorts them).
    expect(decoded.map(([t, sel]) => `${t} ${sel}`).sort()).toEqual(
      ['tenant-a {app="api", namespace="shared"}', 'tenant-a {namespace=~"team-a-.*"}', 'tenant-shared {app="api", namespace="shared"}', 'tenant-shared {namespace=~"team-a-.*"}'].sort(),
    );
  });

  it('a restricted subject\'s POSTed query goes to Loki as GET, its parameters in the URL (Loki\'s aggregated-metric and volume access control read the URL only); an admin\'s POST stays a POST', async () => {
    const form = (who: string) =>
      fetch(`${gw.url}/loki/loki/api/v1/query_range`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tokens[who]}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ query: '{__aggregated_metric__="api"} | logfmt', start: '1', end: '2', limit: '10' }).toString(),
      });
    expect((await form('alice')).status).toBe(200);
    expect(loki.requests).toHaveLength(1);
    const r = loki.requests[0]!;
    expect(r.method).toBe('GET');
    // A GET's parameters are the URL's (the recording stand-in reads a body only for other methods, as Go's ParseForm).
    expect(r.params.get('query')).toBe('{__aggregated_metric__="api"} | logfmt');
    expect(r.params.get('limit')).toBe('10');
    expect(r.headers['content-type']).toBeUndefined();
    expect(r.headers['x-prom-label-policy']).toBeDefined();
    loki.clear();
    expect((await form('root')).status).toBe(200);
    expect(loki.requests[0]!.method).toBe('POST');
  });

  it('the rewriting upstream asks a log query once per alternative (each one enforced), and refuses what it cannot split exactly', async () => {
    const res = await get(`/loki-rewrite/loki/api/v1/query_range?query=${encodeURIComponent('{app="api"}')}&start=1&end=2`, 'alice');
    expect(res.status).toBe(200);
    expect(((await res.json()) as { data: { resultType: string } }).data.resultType).toBe('streams');
    expect(loki.requests.map((r) => r.params.get('query')).sort()).toEqual(['{app="api", namespace="shared"}', '{app="api", namespace=~"team-a-.*"}']);
    for (const r of loki.requests) expect(r.headers['x-prom-label-policy']).toBeUndefined();
    loki.clear();
    // A metric query whose pipeline drops the label that tells the alternatives apart: no exact "or".
    const refused = await get(`/loki-rewrite/loki/api/v1/query_range?query=${encodeURIComponent('sum(count_over_time({app="api"} | drop namespace [5m]))')}&start=1&end=2`, 'alice');
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { message: string }).message).toContain('policyEnforcement: header');
    expect(loki.requests).toHaveLength(0);
  });

  it('metadata requests carry the policy header; their answers are still filtered', async () => {
    const res = await get('/loki/loki/api/v1/label/namespace/values', 'alice');
    expect(res.status).toBe(200);
    expect(String(loki.requests[0]!.headers['x-prom-label-policy'])).toMatch(/^tenant-a:/);
    // Response filtering still applies as defence in depth.
    const values = ((await res.json()) as { data: string[] }).data;
    expect(values.every((v) => /^team-a-/.test(v) || v === 'shared')).toBe(true);
  });

  it("endpoints Loki's access control does not cover (label names, series, index stats, volume, patterns, detected_*) are rewritten as well", async () => {
    // Loki ≥ 3.7 enforces the header on queries, tail and label values; volume only under a single
    // alternative and not for aggregateBy=labels, so it is rewritten too.
    const cases: [string, string, (q: URLSearchParams) => string[]][] = [
      [`/loki/loki/api/v1/index/volume?query=${encodeURIComponent('{app="api"}')}&aggregateBy=labels&start=1&end=2`, 'volume', (q) => q.getAll('query')],
      ['/loki/loki/api/v1/labels?start=1&end=2', 'labels', (q) => q.getAll('query')],
      [`/loki/loki/api/v1/series?match[]=${encodeURIComponent('{app="api"}')}&start=1&end=2`, 'series', (q) => q.getAll('match[]')],
      [`/loki/loki/api/v1/index/stats?query=${encodeURIComponent('{app="api"}')}&start=1&end=2`, 'index stats', (q) => q.getAll('query')],
      [`/loki/loki/api/v1/patterns?query=${encodeURIComponent('{app="api"}')}&start=1&end=2`, 'patterns', (q) => q.getAll('query')],
      [`/loki/loki/api/v1/detected_labels?query=${encodeURIComponent('{app="api"}')}&start=1&end=2`, 'detected labels', (q) => q.getAll('query')],
    ];
    for (const [path, what, selectorsOf] of cases) {
      loki.clear();
      const res = await get(path, 'nina-t');
      expect(res.status, what).toBe(200);
      await res.arrayBuffer();
      expect(loki.requests.length, what).toBeGreaterThan(0);
      for (const r of loki.requests) {
        const selectors = selectorsOf(r.params);
        expect(selectors.length, what).toBeGreaterThan(0);
        for (const sel of selectors) expect(sel, what).toContain('namespace="n"');
        expect(String(r.headers['x-prom-label-policy']), what).toMatch(/^tenant-n:/);
      }
    }
    // volume_range likewise (the stand-in has no answer for it: only what is forwarded is read).
    loki.clear();
    await (await get(`/loki/loki/api/v1/index/volume_range?query=${encodeURIComponent('{app="api"}')}&start=1&end=2&step=60`, 'nina-t')).arrayBuffer();
    expect(loki.requests).toHaveLength(1);
    expect(loki.requests[0]!.params.get('query')).toContain('namespace="n"');
    // The query itself is still left to Loki.
    loki.clear();
    await (await get(`/loki/loki/api/v1/query_range?query=${encodeURIComponent(QUERY)}&start=1&end=2`, 'nina-t')).arrayBuffer();
    expect(loki.requests[0]!.params.get('query')).toBe(QUERY);
  });

  it("Loki's internal storeChunks is dropped for restricted subjects where Loki enforces the header too (query, query_range)", async () => {
    // A client's chunk list would make Loki read the chunks it names instead of those its index finds for the query.
    for (const ep of ['query', 'query_range']) {
      loki.clear();
      const res = await get(`/loki/loki/api/v1/${ep}?query=${encodeURIComponent(QUERY)}&storeChunks=CgQIARAC&start=1&end=2&step=1`, 'nina-t');
      expect(res.status).toBe(200);
      expect(loki.requests.map((r) => [r.params.get('query'), r.params.has('storeChunks')])).toEqual([[QUERY, false]]);
    }
    // Unrestricted subjects: forwarded as sent.
    loki.clear();
    await (await get(`/loki/loki/api/v1/query?query=${encodeURIComponent(QUERY)}&storeChunks=CgQIARAC`, 'root')).arrayBuffer();
    expect(loki.requests[0]!.params.get('storeChunks')).toBe('CgQIARAC');
  });

  it('fails closed when the decision names no tenant (Loki applies the header per tenant)', async () => {
    const res = await get(`/loki/loki/api/v1/query?query=${encodeURIComponent('{app="api"}')}`, 'nina');
    expect(res.status).toBe(500);
    expect(loki.requests).toHaveLength(0);
  });

  it('unrestricted decisions send no policy header', async () => {
    const res = await get(`/loki/loki/api/v1/query?query=${encodeURIComponent('{app="api"}')}`, 'root', { 'x-prom-label-policy': 'x:%7B%7D' });
    expect(res.status).toBe(200);
    expect(loki.requests[0]!.headers['x-prom-label-policy']).toBeUndefined();
  });
});
