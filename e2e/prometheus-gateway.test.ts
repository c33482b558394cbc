// The walking skeleton end to end: a real Prometheus seeded with several teams'
// data, a counting proxy recording what Prometheus receives, a real JWT issuer,
// and the gateway started through its CLI.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startCountingProxy, type CountingProxy } from './harness/counting-proxy.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';
import { rawRequest } from './harness/http.ts';
import { buildTeamsOpenMetrics, seedEndSeconds, TEAM_NAMESPACES, NAMESPACES } from './fixtures/seed.ts';

// Rules whose labels name a team's namespace, one without labels, and alerts that fire at once.
const RULES = `groups:
  - name: team-a
    rules:
      - alert: TeamAUp
        expr: up{namespace="team-a-frontend"} >= 0
        labels: { namespace: team-a-frontend, severity: info }
  - name: team-b
    rules:
      - alert: TeamBUp
        expr: up{namespace="team-b-api"} >= 0
        labels: { namespace: team-b-api, severity: info }
  - name: shared
    rules:
      - record: namespace:http_requests:rate5m
        expr: sum by (namespace) (rate(http_requests_total[5m]))
`;

let prom: PrometheusInstance;
let proxy: CountingProxy;
let gw: GatewayInstance;
let idp: TestIssuer;
let base: string;
let evalTime: number;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }), ruleFiles: { 'teams.yml': RULES }, evaluationInterval: '1s' });
  proxy = await startCountingProxy({ upstream: prom.url });
  idp = await createTestIssuer({ issuer: 'https://idp.e2e', audience: 'lbac-gateway', alg: 'RS256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: proxy.url, mount: '/prometheus' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway' }] },
      admins: { groups: ['admins'], headers: { 'X-Scope-OrgID': 'tenant-a|tenant-b' } },
      teams: {
        'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }], headers: { 'X-Scope-OrgID': 'tenant-a' } },
        'team-b': { groups: ['team-b'], selectors: [{ namespace: ['team-b-api', 'team-b-db'] }], headers: { 'X-Scope-OrgID': 'tenant-b' } },
      },
    },
  });
  base = `${gw.url}/prometheus`;
  tokens['alice'] = await idp.mint({ sub: 'u-alice', preferred_username: 'alice', groups: ['team-a'] });
  tokens['bob'] = await idp.mint({ sub: 'u-bob', preferred_username: 'bob', groups: ['team-b'] });
  tokens['carol'] = await idp.mint({ sub: 'u-carol', preferred_username: 'carol', groups: ['admins'] });
  tokens['mallory'] = await idp.mint({ sub: 'u-mallory', preferred_username: 'mallory', groups: ['nobody'] });
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await proxy?.stop();
  await prom?.stop();
});

beforeEach(() => proxy.clear());

const bearer = (user: string) => ({ authorization: `Bearer ${tokens[user]}` });

async function namespacesOf(user: string, query: string): Promise<string[]> {
  const { status, body } = await promGet<{ result: { metric: Record<string, string> }[] }>(base, '/api/v1/query', { query, time: String(evalTime) }, bearer(user));
  expect(status, JSON.stringify(body)).toBe(200);
  return [...new Set(body.data!.result.map((r) => r.metric['namespace'] ?? ''))].sort();
}

describe('isolation on real Prometheus data', () => {
  it('the same query gives each team only its namespaces', async () => {
    const q = 'sum by (namespace) (rate(http_requests_total[5m]))';
    expect(await namespacesOf('alice', q)).toEqual([...TEAM_NAMESPACES['team-a']].sort());
    expect(await namespacesOf('bob', q)).toEqual([...TEAM_NAMESPACES['team-b']].sort());
    expect(await namespacesOf('carol', q)).toEqual([...NAMESPACES].sort());
  });

  it('enforces selectors that try to name another team, with user matchers kept', async () => {
    expect(await namespacesOf('alice', 'up{namespace="team-b-api"}')).toEqual([]);
    expect(await namespacesOf('alice', '{__name__=~".+", namespace=~"team-b.*"}')).toEqual([]);
    expect(await namespacesOf('alice', 'up or vector(1)')).toEqual(['', ...TEAM_NAMESPACES['team-a']].sort());
  });

  it('label_replace cannot forge visibility: the data is filtered before the function runs', async () => {
    const ns = await namespacesOf('alice', 'label_replace(up{namespace="team-b-api"}, "namespace", "team-a-frontend", "", "")');
    expect(ns).toEqual([]);
  });

  it('POST form bodies (Grafana default) are rewritten the same way', async () => {
    const form = new URLSearchParams({ query: 'count by (namespace) (up)', start: String(evalTime - 600), end: String(evalTime), step: '60' });
    const res = await fetch(`${base}/api/v1/query_range`, { method: 'POST', headers: { ...bearer('bob'), 'content-type': 'application/x-www-form-urlencoded' }, body: form });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { resultType: string; result: { metric: Record<string, string> }[] } };
    expect(body.data.resultType).toBe('matrix');
    expect(body.data.result.map((r) => r.metric['namespace']).sort()).toEqual([...TEAM_NAMESPACES['team-b']].sort());
    const seen = proxy.requests.at(-1)!;
    expect(seen.method).toBe('POST');
    expect(seen.params.get('query')).toBe('count by (namespace) (up{namespace=~"team-b-api|team-b-db"})');
  });

  it('series, labels and label values only reveal allowed series', async () => {
    const series = await promGet<Record<string, string>[]>(base, '/api/v1/series', { 'match[]': 'up', start: String(evalTime - 300), end: String(evalTime) }, bearer('alice'));
    expect(series.status).toBe(200);
    expect(new Set(series.body.data!.map((s) => s['namespace']))).toEqual(new Set(TEAM_NAMESPACES['team-a']));
    const values = await promGet<string[]>(base, '/api/v1/label/namespace/values', { start: String(evalTime - 300), end: String(evalTime) }, bearer('bob'));
    expect(values.status).toBe(200);
    expect(values.body.data!.sort()).toEqual([...TEAM_NAMESPACES['team-b']].sort());
    const labels = await promGet<string[]>(base, '/api/v1/labels', { 'match[]': '{job="api"}', start: String(evalTime - 300), end: String(evalTime) }, bearer('bob'));
    expect(labels.status).toBe(200);
    expect(labels.body.data).toContain('namespace');
    expect(proxy.requests.at(-1)!.params.getAll('match[]')).toEqual(['{job="api",namespace=~"team-b-api|team-b-db"}']);
    const noMatch = await promGet(base, '/api/v1/series', {}, bearer('alice'));
    expect(noMatch.status).toBe(400);
  });

  it('buildinfo is forwarded for Grafana health checks', async () => {
    const r = await promGet<{ version: string }>(base, '/api/v1/status/buildinfo', {}, bearer('alice'));
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('success');
  });
});

describe('what Grafana\'s Prometheus datasource sends (docs/grafana.md)', () => {
  it('health check: POST query 1+1 and buildinfo both succeed for a team user', async () => {
    const res = await fetch(`${base}/api/v1/query`, { method: 'POST', headers: { ...bearer('bob'), 'content-type': 'application/x-www-form-urlencoded' }, body: `query=1%2B1&time=${evalTime}` });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'success', data: { resultType: 'scalar', result: [evalTime, '2'] } });
  });

  it('metric browser: __name__ values are the metrics the team has series of; dropdown values are its own', async () => {
    const names = await promGet<string[]>(base, '/api/v1/label/__name__/values', { start: String(evalTime - 600), end: String(evalTime) }, bearer('alice'));
    expect(names.status).toBe(200);
    expect(names.body.data).toContain('up');
    expect(proxy.requests.at(-1)!.params.getAll('match[]')).toEqual(['{namespace=~"team-a-.*"}']);
    const inst = await promGet<string[]>(base, '/api/v1/label/instance/values', { 'match[]': 'up', start: String(evalTime - 600), end: String(evalTime) }, bearer('alice'));
    expect(inst.body.data!.length).toBeGreaterThan(0);
    expect(inst.body.data!.every((i) => /team-a-/.test(i))).toBe(true);
  });
});

describe('Grafana endpoints beyond queries', () => {
  type RulesBody = { groups: { name: string; rules: { name: string; alerts?: { labels: Record<string, string> }[] }[] }[] };
  it('rules and alerts are filtered to what the policy allows', async () => {
    // Wait until Prometheus itself reports alerts of both alerting rules (each group
    // evaluates at its own offset within the interval, so one may come later).
    const alertNames = async (): Promise<Set<string>> => {
      const direct = await promGet<{ alerts: { labels: Record<string, string> }[] }>(prom.url, '/api/v1/alerts');
      return new Set((direct.body.data?.alerts ?? []).map((x) => x.labels['alertname'] ?? ''));
    };
    let names = await alertNames();
    for (let i = 0; i < 150 && !(names.has('TeamAUp') && names.has('TeamBUp')); i++) {
      await new Promise((r) => setTimeout(r, 200));
      names = await alertNames();
    }
    expect([...names].sort(), 'Prometheus never reported both alerts').toEqual(expect.arrayContaining(['TeamAUp', 'TeamBUp']));
    const a = await promGet<RulesBody>(base, '/api/v1/rules', {}, bearer('alice'));
    expect(a.status).toBe(200);
    expect(a.body.data!.groups.map((g) => g.name)).toEqual(['team-a']);
    expect(a.body.data!.groups[0]!.rules[0]!.alerts!.every((x) => x.labels['namespace'] === 'team-a-frontend')).toBe(true);
    const b = await promGet<RulesBody>(base, '/api/v1/rules', { type: 'alert' }, bearer('bob'));
    expect(b.body.data!.groups.map((g) => g.name)).toEqual(['team-b']);
    // exclude_alerts is not forwarded for a restricted user (the rule's state is computed from the alerts she may see), and the answer still has none.
    const ex = await promGet<RulesBody>(base, '/api/v1/rules', { exclude_alerts: 'true' }, bearer('alice'));
    expect(ex.status).toBe(200);
    expect(proxy.requests.at(-1)!.params.get('exclude_alerts')).toBeNull();
    const exRules = ex.body.data!.groups.flatMap((g) => g.rules) as { type?: string; alerts?: unknown }[];
    expect(exRules.filter((r) => r.type === 'alerting').length).toBeGreaterThan(0);
    for (const r of exRules) if (r.type === 'alerting') expect(r.alerts).toBeNull();
    const exAdmin = await promGet<RulesBody>(base, '/api/v1/rules', { exclude_alerts: 'true' }, bearer('carol'));
    expect(exAdmin.status).toBe(200);
    expect(proxy.requests.at(-1)!.params.get('exclude_alerts')).toBe('true');
    const c = await promGet<RulesBody>(base, '/api/v1/rules', {}, bearer('carol'));
    expect(c.body.data!.groups.map((g) => g.name).sort()).toEqual(['shared', 'team-a', 'team-b']);
    const alerts = await promGet<{ alerts: { labels: Record<string, string> }[] }>(base, '/api/v1/alerts', {}, bearer('alice'));
    expect(alerts.status).toBe(200);
    expect(alerts.body.data!.alerts.length).toBeGreaterThan(0);
    expect(alerts.body.data!.alerts.every((x) => x.labels['namespace'] === 'team-a-frontend')).toBe(true);
  });

  it('query_exemplars rewrites its query; format_query formats the text as written', async () => {
    const ex = await promGet(base, '/api/v1/query_exemplars', { query: 'http_requests_total', start: String(evalTime - 300), end: String(evalTime) }, bearer('alice'));
    expect(ex.status).toBe(200);
    expect(proxy.requests.at(-1)!.params.get('query')).toBe('http_requests_total{namespace=~"team-a-.*"}');
    const f = await promGet<string>(base, '/api/v1/format_query', { query: 'sum(rate(x[5m]))by(job)' }, bearer('alice'));
    expect(f.status).toBe(200);
    expect(f.body.data).toBe('sum by (job) (rate(x[5m]))');
  });
});

describe('headers', () => {
  it('a spoofed X-Scope-OrgID / X-Prom-Label-Policy is replaced by the policy value; Authorization is not forwarded', async () => {
    const r = await promGet(base, '/api/v1/query', { query: 'up', time: String(evalTime) }, { ...bearer('alice'), 'X-Scope-OrgID': 'tenant-b', 'X-Prom-Label-Policy': 'tenant-b:{}' });
    expect(r.status).toBe(200);
    const seen = proxy.requests.at(-1)!;
    expect(seen.headers['x-scope-orgid']).toBe('tenant-a');
    expect(seen.headers['x-prom-label-policy']).toBeUndefined();
    expect(seen.headers['authorization']).toBeUndefined();
  });
});

describe('authentication', () => {
  const bad: [string, () => Promise<string>][] = [
    ['expired', () => idp.mint({ sub: 'x', groups: ['team-a'] }, { expiresIn: -600 })],
    ['wrong issuer', () => idp.mint({ sub: 'x', groups: ['team-a'] }, { issuer: 'https://evil' })],
    ['wrong audience', () => idp.mint({ sub: 'x', groups: ['team-a'] }, { audience: 'grafana' })],
    ['alg none', () => idp.mint({ sub: 'x', groups: ['team-a'] }, { alg: 'none' })],
    ['HS256 with the public key', () => idp.mint({ sub: 'x', groups: ['team-a'] }, { alg: 'HS256' })],
    ['foreign key', () => idp.mint({ sub: 'x', groups: ['team-a'] }, { key: 'foreign' })],
  ];
  it.each(bad)('%s token → 401 with WWW-Authenticate, nothing forwarded', async (_name, make) => {
    const res = await fetch(`${base}/api/v1/query?query=up`, { headers: { authorization: `Bearer ${await make()}` } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
    expect(await res.json()).toMatchObject({ status: 'error', errorType: 'unauthorized' });
    expect(proxy.count()).toBe(0);
  });

  it('no token → 401; a token in the query string is not accepted', async () => {
    const none = await fetch(`${base}/api/v1/query?query=up`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="lbac-gateway"');
    expect((await fetch(`${base}/api/v1/query?query=up&access_token=${tokens['alice']}`)).status).toBe(401);
    expect(proxy.count()).toBe(0);
  });

  it('a valid identity without a team is denied (403) and nothing is forwarded', async () => {
    const r = await promGet(base, '/api/v1/query', { query: 'up' }, bearer('mallory'));
    expect(r.status).toBe(403);
    expect(r.body).toMatchObject({ status: 'error', errorType: 'forbidden' });
    expect(proxy.count()).toBe(0);
  });
});

describe('bad input never reaches Prometheus', () => {
  it('an unparsable query → 400 bad_data, Prometheus never sees it', async () => {
    prom.clearQueryLog();
    const r = await promGet(base, '/api/v1/query', { query: 'sum(rate(up[5m])' }, bearer('alice'));
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ status: 'error', errorType: 'bad_data' });
    expect(proxy.count()).toBe(0);
    // Rule evaluations (the rules above run every second) are logged too: only API queries count.
    const apiQueries = (await prom.queryLog()).filter((e) => e.ruleGroup === undefined).map((e) => e.params.query);
    expect(apiQueries).toEqual([]);
  });

  it('a query given twice (URL and body) is ambiguous → 400', async () => {
    const res = await fetch(`${base}/api/v1/query?query=up`, {
      method: 'POST',
      headers: { ...bearer('alice'), 'content-type': 'application/x-www-form-urlencoded' },
      body: 'query=up%7Bnamespace%3D%22team-b-api%22%7D',
    });
    expect(res.status).toBe(400);
    expect(proxy.count()).toBe(0);
  });

  it('unknown paths → 404 and are not forwarded', async () => {
    // rawRequest: fetch would normalise dot segments before sending.
    const paths = ['/api/v1/admin/tsdb/delete_series', '/api/v1/query/', '//api/v1/query', '/api/v1/../v1/query', '/api/v1/%2e%2e/v1/query', '/api%2Fv1%2Fquery', '/API/V1/QUERY', '/federate', '/metrics'];
    for (const path of paths) {
      const res = await rawRequest(gw.url, `/prometheus${path}?query=up`, { headers: bearer('alice') });
      expect(res.status, path).toBe(404);
    }
    expect((await fetch(`${gw.url}/api/v1/query?query=up`, { headers: bearer('alice') })).status).toBe(404);
    expect(proxy.count()).toBe(0);
  });

  it('another method on a known path → 405 with Allow (as Prometheus answers), HEAD → 404; never forwarded', async () => {
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      const res = await fetch(`${base}/api/v1/query?query=up`, { method, headers: bearer('alice') });
      expect(res.status, method).toBe(405);
      expect(res.headers.get('allow'), method).toBe('GET, POST');
    }
    // Grafana falls back from POST to GET on a 405 (GET-only routes such as label values and buildinfo).
    for (const path of ['/api/v1/label/namespace/values', '/api/v1/status/buildinfo', '/api/v1/rules']) {
      const res = await fetch(`${base}${path}`, { method: 'POST', headers: { ...bearer('alice'), 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
      expect(res.status, path).toBe(405);
      expect(res.headers.get('allow'), path).toBe('GET');
      expect(await res.json(), path).toMatchObject({ status: 'error', errorType: 'bad_data' });
    }
    // Answered before the body is read (and before authentication and the concurrency limit).
    const json = await fetch(`${base}/api/v1/status/buildinfo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(json.status).toBe(405);
    expect((await fetch(`${base}/api/v1/query?query=up`, { method: 'HEAD', headers: bearer('alice') })).status).toBe(404);
    expect(proxy.count()).toBe(0);
  });

  it('hop-by-hop and framing headers from the client are not forwarded', async () => {
    const res = await rawRequest(gw.url, '/prometheus/api/v1/query?query=up', {
      headers: { ...bearer('alice'), 'proxy-authorization': 'Basic eDp5', te: 'trailers', 'x-custom': 'kept', cookie: 'session=secret' },
    });
    expect(res.status).toBe(200);
    const seen = proxy.requests.at(-1)!;
    expect(seen.headers['proxy-authorization']).toBeUndefined();
    expect(seen.headers['cookie']).toBeUndefined();
    expect(seen.headers['x-custom']).toBe('kept');
  });

  it('non-form POST bodies are refused', async () => {
    const res = await fetch(`${base}/api/v1/query`, { method: 'POST', headers: { ...bearer('alice'), 'content-type': 'application/json' }, body: '{"query":"up"}' });
    expect(res.status).toBe(415);
    expect(proxy.count()).toBe(0);
  });
});

describe('health', () => {
  it('/healthz and /readyz answer without credentials', async () => {
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${gw.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready' });
  });
});
