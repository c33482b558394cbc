// /api/v1/metadata: the gateway first asks the upstream which metric names the
// policy can see (an enforced label-values lookup with the request's tenant
// header), then filters the metadata answer to those names.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { filterMetadata } from '../../src/backends/filters.ts';
import { METADATA_LOOKBACK_SECONDS } from '../../src/backends/prometheus.ts';
import { parseConfig } from '../../src/config/load.ts';
import { startUpstream, SUBJECTS, TEST_IDENTITY_AND_TEAMS, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

const METADATA = { status: 'success', data: { a_total: [{ type: 'counter', help: 'A', unit: '' }], b_total: [{ type: 'gauge', help: 'B', unit: '' }] } };

let up: Upstream;
let t: TestApp;
let lookupStatus = 200;

// A second member of team-a, and bob of team-b (another policy and tenant).
SUBJECTS['alice2'] = { ...SUBJECTS['alice']!, sub: 'u-alice2', username: 'alice2' };
SUBJECTS['bob'] = { sub: 'u-bob', username: 'bob', groups: ['team-b'], roles: [], auth: 'fake', claims: {} };
const TEAM_B = `  team-b: { groups: [team-b], selectors: [{ namespace: team-b }], headers: { X-Scope-OrgID: tenant-b } }\n`;

beforeAll(async () => {
  up = await startUpstream();
  up.answer = (path) =>
    path === '/api/v1/label/__name__/values'
      ? [
          lookupStatus,
          JSON.stringify(lookupStatus === 200 ? { status: 'success', data: ['a_total', 'up'] } : { status: 'error', errorType: 'unavailable', error: 'too busy for {namespace=~"team-a-.*"}' }),
        ]
      : path === '/api/v1/metadata'
        ? [200, JSON.stringify(METADATA)]
        : undefined;
});
afterAll(async () => {
  await up?.close();
});
// A new gateway per test: lookup answers are kept per gateway (below).
beforeEach(async () => {
  up.requests.splice(0);
  up.delayMs = 0;
  lookupStatus = 200;
  t = await testApp(testConfig(up.url, TEAM_B));
});
afterEach(async () => {
  await t?.app.close();
});

const get = (who: string, query = '') => t.app.inject({ url: `/prometheus/api/v1/metadata${query}`, headers: { authorization: `Bearer ${who}`, 'x-scope-orgid': 'spoofed' } });

describe('/api/v1/metadata', () => {
  it('looks up the visible metric names with the policy as match[] and the policy tenant, then filters', async () => {
    const before = Math.floor(Date.now() / 1000);
    const r = await get('alice', '?limit=1');
    expect(r.statusCode).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ status: 'success', data: { a_total: METADATA.data.a_total } });
    const [lookup, main] = up.requests;
    expect(lookup!.path).toBe('/api/v1/label/__name__/values');
    expect(lookup!.params.getAll('match[]')).toEqual(['{namespace=~"team-a-.*"}']);
    const start = Number(lookup!.params.get('start'));
    const end = Number(lookup!.params.get('end'));
    expect(end - start).toBe(METADATA_LOOKBACK_SECONDS);
    expect(end).toBeGreaterThanOrEqual(before);
    expect(lookup!.headers['x-scope-orgid']).toBe('tenant-a');
    expect(lookup!.headers['authorization']).toBeUndefined();
    expect(main!.path).toBe('/api/v1/metadata');
    // Held back: Prometheus would count other teams' metrics towards it (applied after the filter instead).
    expect(main!.params.get('limit')).toBeNull();
    expect(main!.headers['x-scope-orgid']).toBe('tenant-a');
  });

  it('limit applies to the visible metrics only (negative: no limit, as Prometheus reads it)', () => {
    const lookup = { status: 'success', data: ['a_total', 'b_total'] };
    const filtered = (limit?: string) => filterMetadata(METADATA, { policy: [], pathParams: {}, lookup, ...(limit === undefined ? {} : { held: { limit } }) }) as { data: Record<string, unknown> };
    expect(Object.keys(filtered().data)).toEqual(['a_total', 'b_total']);
    expect(Object.keys(filtered('1').data)).toEqual(['a_total']);
    expect(Object.keys(filtered('0').data)).toEqual([]);
    expect(Object.keys(filtered('-1').data)).toEqual(['a_total', 'b_total']);
  });

  it('a limit Prometheus would refuse is refused (400) and nothing is asked', async () => {
    const r = await get('alice', '?limit=ten');
    expect(r.statusCode).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ status: 'error', errorType: 'bad_data', error: 'limit must be a number' });
    expect(up.requests).toEqual([]);
  });

  it('admins get the upstream answer without a lookup', async () => {
    const r = await get('carol');
    expect(JSON.parse(r.body)).toEqual(METADATA);
    expect(up.requests.map((x) => x.path)).toEqual(['/api/v1/metadata']);
  });

  it('a failed lookup fails the request (502), never an unfiltered answer', async () => {
    lookupStatus = 500;
    const r = await get('alice');
    expect(r.statusCode).toBe(502);
    expect(r.body).not.toContain('b_total');
    expect(up.requests.map((x) => x.path)).toEqual(['/api/v1/label/__name__/values']);
  });

  it.each([
    [503, 503],
    [429, 429],
    [504, 504],
    [404, 502],
  ])('a lookup answered %i fails the request with %i: back-off statuses are kept, the lookup text is not relayed', async (upstreamStatus, clientStatus) => {
    lookupStatus = upstreamStatus;
    const r = await get('alice');
    expect(r.statusCode).toBe(clientStatus);
    const body = JSON.parse(r.body) as { status: string; errorType: string; error: string };
    expect(body.status).toBe('error');
    expect(body.error).toContain(`upstream answered ${upstreamStatus}`);
    // The lookup's match[] is the policy: neither it nor the metadata reaches the client.
    expect(r.body).not.toContain('team-a');
    expect(r.body).not.toContain('b_total');
    expect(up.requests.map((x) => x.path)).toEqual(['/api/v1/label/__name__/values']);
  });

  it('families are matched by all of their type\'s series: histogram, summary, OpenMetrics counter and info; no other type\'s names, nor part of them, match', () => {
    const entry = (type: string) => [{ type, help: `${type} help`, unit: '' }];
    const metadata = {
      status: 'success',
      data: {
        http_seconds: entry('histogram'),
        rpc_seconds: entry('summary'),
        requests: entry('counter'),
        build: entry('info'),
        queue: entry('gaugehistogram'),
        // Not visible: only names of another type's series are (a gauge "cpu_bucket" is not cpu's histogram).
        cpu: entry('histogram'),
        other_seconds: entry('histogram'),
        mixed: [...entry('gauge'), ...entry('histogram')],
        weird: [{ type: 'constructor', help: 'x', unit: '' }],
      },
    };
    const series = (family: string, ...suffixes: string[]) => suffixes.map((x) => family + x);
    const lookup = {
      status: 'success',
      data: [
        ...series('http_seconds', '_bucket', '_count', '_sum'),
        ...series('rpc_seconds', '_count', '_sum'),
        'requests_total',
        'build_info',
        ...series('queue', '_bucket', '_gcount', '_gsum'),
        'cpu_total',
        ...series('mixed', '_bucket', '_count', '_sum'),
        'weird_total',
        // Only part of a family's series: the caller's own gauges named so, not that family.
        'jobs_count',
        ...series('lat', '_count', '_sum'),
      ],
    };
    metadata.data = { ...metadata.data, jobs: entry('summary'), lat: entry('histogram') } as typeof metadata.data;
    const got = (filterMetadata(metadata, { policy: [], pathParams: {}, lookup }) as { data: Record<string, unknown> }).data;
    expect(Object.keys(got).sort()).toEqual(['build', 'http_seconds', 'mixed', 'queue', 'requests', 'rpc_seconds']);
    // Of a family with entries of several types, only those whose series are visible.
    expect(got['mixed']).toEqual(entry('histogram'));
  });

  it('the filter keeps nothing when either answer has an unexpected shape', () => {
    const ctx = { policy: [], pathParams: {} };
    expect(filterMetadata(METADATA, { ...ctx, lookup: { status: 'error' } })).toEqual({ status: 'success', data: {} });
    expect(filterMetadata(METADATA, { ...ctx, lookup: { status: 'success', data: 'a_total' } })).toEqual({ status: 'success', data: {} });
    expect(filterMetadata({ status: 'error' }, { ...ctx, lookup: { status: 'success', data: ['a_total'] } })).toEqual({ status: 'success', data: {} });
  });
});

describe('/api/v1/metadata: lookup answers are reused for 30 s per policy and tenant', () => {
  const lookups = () => up.requests.filter((r) => r.path === '/api/v1/label/__name__/values');

  it('a second request under the same policy and tenant (another user) reuses the lookup', async () => {
    const first = await get('alice');
    const second = await get('alice2');
    expect(second.statusCode).toBe(200);
    expect(JSON.parse(second.body)).toEqual(JSON.parse(first.body));
    expect(JSON.parse(second.body)).toEqual({ status: 'success', data: { a_total: METADATA.data.a_total } });
    expect(lookups()).toHaveLength(1);
    expect(up.requests.filter((r) => r.path === '/api/v1/metadata')).toHaveLength(2);
  });

  it('the lookup carries only what the gateway controls (its answer is shared): no client header but the request id', async () => {
    await t.app.inject({ url: '/prometheus/api/v1/metadata', headers: { authorization: 'Bearer alice', 'x-grafana-org-id': '2', 'x-custom': 'c', 'x-request-id': 'req-1' } });
    const [lookup, main] = up.requests;
    expect(lookup!.headers['x-grafana-org-id']).toBeUndefined();
    expect(lookup!.headers['x-custom']).toBeUndefined();
    expect(lookup!.headers['x-request-id']).toBe('req-1');
    expect(lookup!.headers['x-scope-orgid']).toBe('tenant-a');
    expect(main!.headers['x-grafana-org-id']).toBe('2');
  });

  it('another policy and tenant asks for its own', async () => {
    await get('alice');
    await get('bob');
    expect(lookups().map((r) => [r.params.getAll('match[]'), r.headers['x-scope-orgid']])).toEqual([
      [['{namespace=~"team-a-.*"}'], 'tenant-a'],
      [['{namespace="team-b"}'], 'tenant-b'],
    ]);
  });

  it('requests at the same time share one lookup', async () => {
    up.delayMs = 50;
    // Two: the test upstream's maxConcurrent.
    const rs = await Promise.all(['alice', 'alice2'].map((who) => get(who)));
    expect(rs.map((r) => r.statusCode)).toEqual([200, 200]);
    expect(lookups()).toHaveLength(1);
  });

  it('a failed lookup is not kept: the next request asks again', async () => {
    lookupStatus = 500;
    expect((await get('alice')).statusCode).toBe(502);
    lookupStatus = 200;
    const r = await get('alice');
    expect(r.statusCode).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ status: 'success', data: { a_total: METADATA.data.a_total } });
    expect(lookups()).toHaveLength(2);
  });

  it('an upstream that gets the client\'s Authorization is asked every time (it may answer per user)', async () => {
    await t.app.close();
    const config = parseConfig(
      `server:\n  loadShedding: { enabled: false }\nupstreams:\n  - { name: metrics, kind: prometheus, url: "${up.url}", mount: /prometheus, forwardAuthorization: true }\n${TEST_IDENTITY_AND_TEAMS}`,
      { env: {} },
    );
    t = await testApp(config);
    await get('alice');
    await get('alice');
    expect(lookups().map((r) => r.headers['authorization'])).toEqual(['Bearer alice', 'Bearer alice']);
  });
});
