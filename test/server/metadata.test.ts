// /api/v1/metadata: the gateway first asks the upstream which metric names the
// policy can see (an enforced label-values lookup with the request's tenant
// header), then filters the metadata answer to those names.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { filterMetadata } from '../../src/backends/filters.ts';
import { METADATA_LOOKBACK_SECONDS } from '../../src/backends/prometheus.ts';
import { startUpstream, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

const METADATA = { status: 'success', data: { a_total: [{ type: 'counter', help: 'A', unit: '' }], b_total: [{ type: 'gauge', help: 'B', unit: '' }] } };

let up: Upstream;
let t: TestApp;
let lookupStatus = 200;

beforeAll(async () => {
  up = await startUpstream();
  up.answer = (path) =>
    path === '/api/v1/label/__name__/values'
      ? [lookupStatus, JSON.stringify({ status: 'success', data: ['a_total', 'up'] })]
      : path === '/api/v1/metadata'
        ? [200, JSON.stringify(METADATA)]
        : undefined;
  t = await testApp(testConfig(up.url));
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});
beforeEach(() => {
  up.requests.splice(0);
  lookupStatus = 200;
});

const get = (who: string, query = '') => t.app.inject({ url: `/prometheus/api/v1/metadata${query}`, headers: { authorization: `Bearer ${who}`, 'x-scope-orgid': 'spoofed' } });

describe('/api/v1/metadata', () => {
  it('looks up the visible metric names with the policy as match[] and the policy tenant, then filters', async () => {
    const before = Math.floor(Date.now() / 1000);
    const r = await get('alice', '?limit=10');
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
    expect(main!.params.get('limit')).toBe('10');
    expect(main!.headers['x-scope-orgid']).toBe('tenant-a');
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

  it('the filter keeps nothing when either answer has an unexpected shape', () => {
    const ctx = { policy: [], pathParams: {} };
    expect(filterMetadata(METADATA, { ...ctx, lookup: { status: 'error' } })).toEqual({ status: 'success', data: {} });
    expect(filterMetadata(METADATA, { ...ctx, lookup: { status: 'success', data: 'a_total' } })).toEqual({ status: 'success', data: {} });
    expect(filterMetadata({ status: 'error' }, { ...ctx, lookup: { status: 'success', data: ['a_total'] } })).toEqual({ status: 'success', data: {} });
  });
});
