// Tempo's v2 tag values of an unscoped attribute (`.http.method`): Tempo's block
// readers ignore every condition of such a lookup ("mingled" conditions), so for
// restricted subjects the gateway asks for `resource.<key>` and `span.<key>`,
// each under the policy, merges the answers, and never forwards the unscoped tag.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { startUpstream, TEST_IDENTITY_AND_TEAMS, testApp, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let t: TestApp;

beforeAll(async () => {
  up = await startUpstream();
  up.answer = (path) =>
    path.endsWith('/values')
      ? [200, JSON.stringify({ tagValues: [{ type: 'string', value: path.includes('/resource.') ? 'from-resource' : path.includes('/span.') ? 'from-span' : 'unscoped' }], metrics: { inspectedBytes: '1' } })]
      : undefined;
  t = await testApp(
    parseConfig(
      `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: traces, kind: tempo, url: "${up.url}", mount: /tempo }
${TEST_IDENTITY_AND_TEAMS}`,
      { env: {} },
    ),
  );
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});
beforeEach(() => {
  up.requests.splice(0);
});

const get = (who: string, tag: string, query = '') => t.app.inject({ url: `/tempo/api/v2/search/tag/${encodeURIComponent(tag)}/values${query}`, headers: { authorization: `Bearer ${who}` } });

describe('v2 tag values of an unscoped attribute', () => {
  it('restricted: asked as resource.<key> and span.<key>, each with the policy, the answers merged', async () => {
    const r = await get('alice', '.http.method', '?limit=10&q=%7B%20.x%20%3D%20%22y%22%20%7D');
    expect(r.statusCode).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ tagValues: [{ type: 'string', value: 'from-resource' }, { type: 'string', value: 'from-span' }] });
    expect(up.requests.map((q) => q.path).sort()).toEqual(['/api/v2/search/tag/resource.http.method/values', '/api/v2/search/tag/span.http.method/values']);
    for (const q of up.requests) {
      // The client's unscoped condition is dropped too; only the policy is sent.
      expect(q.params.getAll('q')).toEqual(['{ resource.k8s.namespace.name =~ "^(?s:team-a-.*)$" }']);
      expect(q.params.get('limit')).toBe('10');
      expect(q.headers['x-scope-orgid']).toBe('tenant-a');
    }
  });

  it('odd entries in the parts are left out of the merge as from a single answer (200, not 502), and the policy filters the rest', async () => {
    const saved = up.answer;
    const odd = (path: string) =>
      path.includes('/resource.')
        ? { tagValues: [{ type: 'string', value: 'team-a-1' }, 'team-a-2', { value: 5 }, null, { type: 'string', value: 'team-b-1' }], metrics: { inspectedBytes: '1' } }
        : { tagValues: [{ type: 'string', value: 'team-a-1', extra: 'team-b-x' }, 'team-b-2'] };
    up.answer = (path) => (path.endsWith('/values') ? [200, JSON.stringify(odd(path))] : undefined);
    try {
      const merged = await get('alice', '.k8s.namespace.name');
      expect(merged.statusCode).toBe(200);
      expect(JSON.parse(merged.body)).toEqual({ tagValues: [{ type: 'string', value: 'team-a-1' }, 'team-a-2'] });
      // One answer alone is read the same way.
      const single = await get('alice', 'resource.k8s.namespace.name');
      expect(single.statusCode).toBe(200);
      expect(JSON.parse(single.body)).toEqual({ tagValues: [{ type: 'string', value: 'team-a-1' }, 'team-a-2'] });
    } finally {
      up.answer = saved;
    }
  });

  it('admins: forwarded as sent (no policy to lose)', async () => {
    const r = await get('carol', '.http.method');
    expect(r.statusCode).toBe(200);
    expect(up.requests.map((q) => q.path)).toEqual(['/api/v2/search/tag/.http.method/values']);
  });

  it('scoped tags are asked once, as sent', async () => {
    const r = await get('alice', 'span.http.method');
    expect(r.statusCode).toBe(200);
    expect(up.requests.map((q) => q.path)).toEqual(['/api/v2/search/tag/span.http.method/values']);
  });

  it('intrinsics Grafana\'s filter bar asks for (status, kind, duration) are asked once, with the policy in q, not refused with a 500', async () => {
    for (const tag of ['status', 'kind', 'duration', 'span:status', 'span:kind', 'span:duration', 'name']) {
      up.requests.splice(0);
      const r = await get('alice', tag);
      expect(r.statusCode, tag).toBe(200);
      expect(up.requests.map((q) => decodeURIComponent(q.path)), tag).toEqual([`/api/v2/search/tag/${tag}/values`]);
      expect(up.requests[0]!.params.get('q'), tag).toContain('team-a-');
    }
  });

  it('an intrinsic Tempo cannot filter by is refused for restricted subjects, with nothing forwarded', async () => {
    const r = await get('alice', 'span:parentID');
    expect(r.statusCode).toBe(400);
    expect(up.requests).toEqual([]);
    expect((await get('carol', 'span:parentID')).statusCode).toBe(200);
  });
});
