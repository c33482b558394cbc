// Loki under a policy one stream selector cannot express (a user in two teams whose
// selectors differ in more than one label): label names and values, and log queries, are
// asked once per alternative and merged (RouteSpec.fanOut), instead of being refused.
// Every upstream request carries one whole alternative.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import type { IdentitySource } from '../../src/identity/source.ts';
import type { Subject } from '../../src/policy/decision.ts';
import { startUpstream, testApp, type TestApp, type Upstream } from './helpers.ts';

const subject = (sub: string, groups: string[]): Subject => ({ sub, username: sub, groups, roles: [], auth: 'fake', claims: {} });
const PEOPLE: Record<string, Subject> = {
  both: subject('u-both', ['eu-a', 'us-b']),
  one: subject('u-one', ['eu-a']),
  overlap: subject('u-overlap', ['ov-1', 'ov-2']),
  admin: subject('u-admin', ['admins']),
};
const people: IdentitySource = { name: 'fake', authenticate: async (c) => (c.bearer === undefined ? undefined : PEOPLE[c.bearer]) };

const G1 = 'cluster="eu", namespace="a"';
const G2 = 'cluster="us", namespace="b"';
// What the stub "stores": label names and namespace values per alternative, with overlaps.
const NAMES: Record<string, string[]> = { [G1]: ['app', 'cluster', 'namespace', 'é'], [G2]: ['app', 'cluster', 'job', 'namespace', 'z'] };
const NAMESPACES: Record<string, string[]> = { [G1]: ['a'], [G2]: ['b'] };

let up: Upstream;
let t: TestApp;
const alternativeOf = (q: string | null): string => {
  for (const g of [G1, G2]) if (q !== null && q.includes(g)) return g;
  return '';
};

beforeAll(async () => {
  up = await startUpstream();
  up.answer = (path, params) => {
    const g = alternativeOf(params.get('query'));
    if (params.get('start') === 'bad') return [400, 'invalid start'];
    if (params.get('start') === 'boom') return [500, 'boom'];
    // A cache in front of Loki answering an error status with a stored answer (another tenant's names).
    if (params.get('start') === 'stored') return [404, JSON.stringify({ status: 'success', data: ['other-tenant-label'] })];
    // Over half of the 64 MiB one filtered answer may hold: too much for one of two parts.
    if (params.get('start') === 'huge') return [200, JSON.stringify({ status: 'success', data: ['x'.repeat(33 * 1024 * 1024)] })];
    if (path === '/loki/api/v1/labels') return [200, JSON.stringify({ status: 'success', data: NAMES[g] ?? [] })];
    if (path === '/loki/api/v1/label/namespace/values') return [200, JSON.stringify({ status: 'success', data: [...(NAMESPACES[g] ?? []), 'other-tenant'] })];
    if (path === '/loki/api/v1/label/app/values') return [200, JSON.stringify({ status: 'success', data: g === G1 ? ['api', 'web'] : ['api', 'db'] })];
    if (path === '/loki/api/v1/index/stats') {
      return [200, JSON.stringify(g === G1 ? { streams: 2, chunks: 5, bytes: 1000, entries: 40 } : g === G2 ? { streams: 1, chunks: 2, bytes: 300, entries: 7 } : {})];
    }
    if (path === '/loki/api/v1/index/volume') {
      // Volume by service: "api" runs in both alternatives, "web" and "db" in one each.
      const rows = g === G1 ? [['api', '700'], ['web', '300']] : g === G2 ? [['db', '900'], ['api', '250']] : [];
      const result = rows.map(([service, bytes]) => ({ metric: { service_name: service }, value: [1700000000, bytes] }));
      return [200, JSON.stringify({ status: 'success', data: { resultType: 'vector', result } })];
    }
    if (path === '/loki/api/v1/query_range' || path === '/loki/api/v1/query') {
      // Loki's answer for one alternative: its entries, newest first, at most `limit`.
      const stream = g === G1 ? { app: 'api', cluster: 'eu', namespace: 'a' } : { app: 'api', cluster: 'us', namespace: 'b' };
      const values = (g === G1 ? [['3000', 'eu 3'], ['1000', 'eu 1']] : [['2000', 'us 2'], ['500', 'us 0.5']]).slice(0, Number(params.get('limit') ?? '100'));
      return [200, JSON.stringify({ status: 'success', data: { resultType: 'streams', result: [{ stream, values }], stats: { summary: { totalLinesProcessed: 2 } } } })];
    }
    return undefined;
  };
  const config = parseConfig(
    `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: logs, kind: loki, url: "${up.url}", mount: /loki-gw, timeoutMs: 1500, version: "3.6.0" }
identity:
  providers:
    - type: apikey
      keys: [{ name: unused, hash: "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" }]
admins: { groups: [admins] }
teams:
  eu-a: { groups: [eu-a], selectors: [{ cluster: eu, namespace: a }], headers: { X-Scope-OrgID: tenant-1 } }
  us-b: { groups: [us-b], selectors: [{ cluster: us, namespace: b }], headers: { X-Scope-OrgID: tenant-1 } }
  ov-1: { groups: [ov-1], selectors: [{ namespace: a, team: t }], headers: { X-Scope-OrgID: tenant-1 } }
  ov-2: { groups: [ov-2], selectors: [{ cluster: us }], headers: { X-Scope-OrgID: tenant-1 } }
`,
    { env: {} },
  );
  t = await testApp(config, { identity: people });
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});

const get = (who: string, path: string) => t.app.inject({ url: `/loki-gw${path}`, headers: { authorization: `Bearer ${who}`, 'x-scope-orgid': 'spoofed' } });

describe('Loki under alternatives that one stream selector cannot express', () => {
  it('/labels without a query: one request per alternative, the union of the names in Go\'s order', async () => {
    up.requests.splice(0);
    const r = await get('both', '/loki/api/v1/labels?start=1&end=2');
    expect(r.statusCode).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ status: 'success', data: ['app', 'cluster', 'job', 'namespace', 'z', 'é'] });
    expect(up.requests.map((q) => q.params.get('query')).sort()).toEqual([`{${G1}}`, `{${G2}}`]);
    for (const q of up.requests) {
      expect(q.path).toBe('/loki/api/v1/labels');
      expect(q.params.getAll('query')).toHaveLength(1);
      expect([q.params.get('start'), q.params.get('end')]).toEqual(['1', '2']);
      expect(q.headers['x-scope-orgid']).toBe('tenant-1');
      expect(q.headers.authorization).toBeUndefined();
    }
  });

  it('/labels with a stream selector both alternatives can reach: the selector rewritten per alternative', async () => {
    up.requests.splice(0);
    const r = await get('both', `/loki/api/v1/labels?query=${encodeURIComponent('{app="api"}')}`);
    expect(r.statusCode).toBe(200);
    expect(up.requests.map((q) => q.params.get('query')).sort()).toEqual([`{app="api", ${G1}}`, `{app="api", ${G2}}`]);
    // A selector inside one alternative: one request, no fan-out.
    up.requests.splice(0);
    expect((await get('both', `/loki/api/v1/labels?query=${encodeURIComponent('{cluster="eu", namespace="a"}')}`)).statusCode).toBe(200);
    expect(up.requests.map((q) => q.params.get('query'))).toEqual(['{cluster="eu", namespace="a"}']);
  });

  it('label values: the union, then the policy\'s filter for a label it restricts', async () => {
    const ns = await get('both', '/loki/api/v1/label/namespace/values');
    expect(JSON.parse(ns.body)).toEqual({ status: 'success', data: ['a', 'b'] });
    const app = await get('both', '/loki/api/v1/label/app/values');
    expect(JSON.parse(app.body)).toEqual({ status: 'success', data: ['api', 'db', 'web'] });
  });

  it('a log query reaching both alternatives: one query each, merged into the newest `limit` entries of the union', async () => {
    up.requests.splice(0);
    const q = encodeURIComponent('{app="api"} |= "x"');
    const r = await get('both', `/loki/api/v1/query_range?query=${q}&limit=2&start=1&end=9&direction=backward`);
    expect(r.statusCode).toBe(200);
    const body = JSON.parse(r.body);
    expect(body.data.resultType).toBe('streams');
    expect(body.data.result).toEqual([
      { stream: { app: 'api', cluster: 'eu', namespace: 'a' }, values: [['3000', 'eu 3']] },
      { stream: { app: 'api', cluster: 'us', namespace: 'b' }, values: [['2000', 'us 2']] },
    ]);
    expect(body.data.stats).toEqual({ summary: { totalLinesProcessed: 4 } });
    expect(up.requests.map((x) => x.params.get('query')).sort()).toEqual([`{app="api", ${G1}} |= "x"`, `{app="api", ${G2}} |= "x"`]);
    for (const x of up.requests) expect([x.params.get('limit'), x.params.get('direction'), x.params.get('start'), x.params.get('end')]).toEqual(['2', 'backward', '1', '9']);
    // Oldest first: the other end of the union.
    const fwd = JSON.parse((await get('both', `/loki/api/v1/query_range?query=${q}&limit=1&direction=forward`)).body);
    expect(fwd.data.result.flatMap((x: { values: unknown[] }) => x.values)).toHaveLength(1);
  });

  it('metric queries are not fanned out: an exact "or" form where the alternatives are provably disjoint, else refused', async () => {
    const metric = encodeURIComponent('sum by (level) (count_over_time({app="api"}[1m]))');
    up.requests.splice(0);
    // cluster="eu" vs cluster="us": disjoint, and count_over_time keeps the stream labels.
    expect((await get('both', `/loki/api/v1/query_range?query=${metric}`)).statusCode).toBe(200);
    expect(up.requests.map((x) => x.params.get('query'))).toEqual([
      `sum by (level) ((count_over_time({app="api", ${G1}}[1m]) or count_over_time({app="api", ${G2}}[1m])))`,
    ]);
    // {namespace="a", team="t"} or {cluster="us"}: not provably disjoint, so an "or" could drop series.
    up.requests.splice(0);
    const r = await get('overlap', `/loki/api/v1/query_range?query=${metric}`);
    expect(r.statusCode).toBe(400);
    expect(r.body).toContain('not provably disjoint');
    expect(up.requests).toHaveLength(0);
    // Its log queries are fanned out: overlapping alternatives select a stream twice, merged once.
    expect((await get('overlap', `/loki/api/v1/query_range?query=${encodeURIComponent('{app="api"}')}`)).statusCode).toBe(200);
    expect(up.requests.map((x) => x.params.get('query')).sort()).toEqual(['{app="api", cluster="us"}', '{app="api", namespace="a", team="t"}']);
  });

  it('one alternative, or an admin: a single request as before', async () => {
    up.requests.splice(0);
    expect((await get('one', '/loki/api/v1/labels')).statusCode).toBe(200);
    expect(up.requests.map((q) => q.params.get('query'))).toEqual([`{${G1}}`]);
    up.requests.splice(0);
    expect((await get('admin', '/loki/api/v1/labels')).statusCode).toBe(200);
    expect(up.requests.map((q) => q.params.get('query'))).toEqual([null]);
  });

  it('index stats and volume: asked once per disjoint alternative and added up', async () => {
    up.requests.splice(0);
    const stats = await get('both', `/loki/api/v1/index/stats?query=${encodeURIComponent('{app="api"}')}&start=1&end=2`);
    expect(stats.statusCode).toBe(200);
    expect(stats.json()).toEqual({ streams: 3, chunks: 7, bytes: 1300, entries: 47 });
    expect(up.requests.map((q) => q.params.get('query')).sort()).toEqual([`{app="api", ${G1}}`, `{app="api", ${G2}}`]);
    expect(up.requests.every((q) => q.params.get('start') === '1' && q.headers['x-scope-orgid'] === 'tenant-1')).toBe(true);
    // Without a query: one selector per alternative.
    up.requests.splice(0);
    expect((await get('both', '/loki/api/v1/index/stats')).json()).toEqual({ streams: 3, chunks: 7, bytes: 1300, entries: 47 });
    expect(up.requests.map((q) => q.params.get('query')).sort()).toEqual([`{${G1}}`, `{${G2}}`]);

    up.requests.splice(0);
    const volume = await get('both', `/loki/api/v1/index/volume?query=${encodeURIComponent('{service_name=~".+"}')}&limit=3`);
    expect(volume.statusCode).toBe(200);
    expect(volume.json()).toEqual({
      status: 'success',
      data: {
        resultType: 'vector',
        result: [
          { metric: { service_name: 'api' }, value: [1700000000, '950'] },
          { metric: { service_name: 'db' }, value: [1700000000, '900'] },
          { metric: { service_name: 'web' }, value: [1700000000, '300'] },
        ],
      },
    });
    // Grouped by the client's own selector's labels in every part, not by the policy's.
    expect(up.requests.map((q) => q.params.get('targetLabels'))).toEqual(['service_name', 'service_name']);
    // The merged list is cut at limit; a part that itself reached the limit could have cut a series short: refused.
    expect((await get('both', `/loki/api/v1/index/volume?query=${encodeURIComponent('{service_name=~".+"}')}&limit=1`)).statusCode).toBe(400);
    const cut = await get('both', `/loki/api/v1/index/volume?query=${encodeURIComponent('{service_name=~".+"}')}&limit=2`);
    expect(cut.statusCode).toBe(400);
    expect(cut.body).toContain('raise limit');
    // Without limit: Loki's default of 100, which no part reached.
    expect((await get('both', `/loki/api/v1/index/volume?query=${encodeURIComponent('{service_name=~".+"}')}`)).json().data.result).toHaveLength(3);
  });

  it('index totals under alternatives that can select the same streams are refused; nothing reaches Loki', async () => {
    up.requests.splice(0);
    // {namespace="a", team="t"} and {cluster="us"}: a stream can carry both, and would be counted twice.
    const r = await get('overlap', '/loki/api/v1/index/stats');
    expect(r.statusCode).toBe(400);
    expect(r.body).toContain('return those streams twice');
    expect((await get('overlap', `/loki/api/v1/index/volume?query=${encodeURIComponent('{app="api"}')}&limit=10`)).statusCode).toBe(400);
    expect(up.requests).toHaveLength(0);
  });

  it('what cannot be split per alternative is still refused; nothing reaches Loki', async () => {
    up.requests.splice(0);
    // A log query as the selector: split like any log query.
    expect((await get('both', `/loki/api/v1/labels?query=${encodeURIComponent('{app="api"} |= "x"')}`)).statusCode).toBe(200);
    expect(up.requests.map((q) => q.params.get('query')).sort()).toEqual([`{app="api", ${G1}} |= "x"`, `{app="api", ${G2}} |= "x"`]);
    up.requests.splice(0);
    // A metric query whose pipeline drops the labels that tell the alternatives apart: no exact form.
    const r = await get('both', `/loki/api/v1/labels?query=${encodeURIComponent('sum(count_over_time({app="api"} | drop cluster, namespace [1m]))')}`);
    expect(r.statusCode).toBe(400);
    expect(r.body).toContain('not provably disjoint');
    // Logs Drilldown's per-stream aggregates that are not sums, with a selector both alternatives can match: refused in their own terms.
    for (const path of ['/loki/api/v1/index/volume_range', '/loki/api/v1/detected_fields', '/loki/api/v1/patterns']) {
      const agg = await get('both', `${path}?query=${encodeURIComponent('{app="api"}')}`);
      expect(agg.statusCode).toBe(400);
      expect(agg.body).toContain('only inside a metric query');
      expect(agg.body).not.toContain('log query');
    }
    expect(up.requests).toHaveLength(0);
  });

  it('an upstream refusal of the client\'s parameters is relayed; an upstream failure is 502, a part that times out 504', async () => {
    const bad = await get('both', '/loki/api/v1/labels?start=bad');
    expect([bad.statusCode, bad.body]).toEqual([400, 'invalid start']);
    // Only an error message is relayed: a part's error status with data in it is withheld.
    const stored = await get('both', '/loki/api/v1/labels?start=stored');
    expect(stored.statusCode).toBe(404);
    expect(stored.body).toContain('not an error message');
    expect(stored.body).not.toContain('other-tenant-label');
    const boom = await get('both', '/loki/api/v1/labels?start=boom');
    expect(boom.statusCode).toBe(502);
    expect(boom.body).not.toContain('boom');
    const huge = await get('both', '/loki/api/v1/labels?start=huge');
    expect(huge.statusCode).toBe(502);
    expect(huge.body).toContain('too large');
    up.delayMs = 3000;
    try {
      expect((await get('both', '/loki/api/v1/labels')).statusCode).toBe(504);
    } finally {
      up.delayMs = 0;
    }
  });
});
