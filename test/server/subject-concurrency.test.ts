// upstreams[].maxConcurrentPerSubject: one subject cannot hold every maxConcurrent slot of an
// upstream; the others are still served while it is at its own limit, and its slots come back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { startUpstream, testApp, TEST_IDENTITY_AND_TEAMS, SUBJECTS, type TestApp, type Upstream } from './helpers.ts';

describe('maxConcurrentPerSubject', () => {
  let up: Upstream;
  let t: TestApp;
  beforeAll(async () => {
    up = await startUpstream();
    up.answer = (path, params) => (path === '/api/v1/query' && params.get('query')?.endsWith('[5m]') === true ? [200, '{"status":"success","data":{"resultType":"matrix","result":[]}}'] : undefined);
    SUBJECTS['dave'] = { sub: 'u-dave', username: 'dave', groups: ['team-a'], roles: [], auth: 'fake', claims: {} };
    SUBJECTS['olga'] = { sub: 'u-olga', username: 'olga', groups: ['team-o'], roles: [], auth: 'fake', claims: {} };
    const config = parseConfig(
      `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: metrics, kind: prometheus, url: "${up.url}", mount: /prometheus, maxConcurrent: 6, maxConcurrentPerSubject: 2 }
${TEST_IDENTITY_AND_TEAMS}  team-o: { groups: [team-o], selectors: [{ namespace: "~team-a-.*" }, { job: api }, { app: web }] }
`,
      { env: {} },
    );
    t = await testApp(config);
  });
  afterAll(async () => {
    delete SUBJECTS['dave'];
    delete SUBJECTS['olga'];
    await t.app.close();
    await up.close();
  });

  const query = (who: string, q = 'up') => t.app.inject({ url: `/prometheus/api/v1/query?query=${encodeURIComponent(q)}`, headers: { authorization: `Bearer ${who}` } });

  it('refuses a subject its third request in flight with 503 + Retry-After, serves another subject meanwhile, and gives the slots back', async () => {
    up.delayMs = 300;
    const before = up.requests.length;
    const alice = [query('alice'), query('alice'), query('alice')];
    const dave = query('dave');
    const statuses = (await Promise.all(alice)).map((r) => r.statusCode).sort();
    expect(statuses).toEqual([200, 200, 503]);
    const refused = (await Promise.all(alice)).find((r) => r.statusCode === 503)!;
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.json()).toMatchObject({ status: 'error', errorType: 'unavailable' });
    expect((await dave).statusCode).toBe(200);
    // The refused request was never forwarded.
    expect(up.requests.length - before).toBe(3);
    const shed = (await t.metrics.shed.get()).values.find((v) => v.labels['reason'] === 'subject_concurrency');
    expect(shed?.value).toBe(1);
    // Audited, though never decided: who, what, and why it was shed.
    const line = t.audit.find((r) => (r['response'] as { status: number }).status === 503);
    expect(line).toMatchObject({ type: 'lbac-gateway/decision_logs', input: { subject: { sub: 'u-alice' }, request: { upstream: 'metrics', endpoint: 'query' } }, response: { status: 503, error: 'overloaded', shed: 'subject_concurrency' } });
    expect(line).not.toHaveProperty('result');
    up.delayMs = 0;
    expect(t.metrics.inflight.get('metrics') ?? 0).toBe(0);
    // Its slots came back.
    expect((await Promise.all([query('alice'), query('alice')])).map((r) => r.statusCode)).toEqual([200, 200]);
  });

  it('serves a lone request with more policy groups than the per-subject limit, and refuses one when the subject has another in flight', async () => {
    up.delayMs = 0;
    const before = up.requests.length;
    const lone = await query('olga', 'up[5m]');
    expect(lone.statusCode).toBe(200);
    expect(up.requests.length - before).toBe(3);
    up.delayMs = 300;
    const asked = up.requests.length;
    const first = query('olga');
    // Holding its slot once the upstream has it (an event, not a fixed delay).
    while (up.requests.length === asked) await new Promise((r) => setTimeout(r, 5));
    const fanned = await query('olga', 'up[5m]');
    expect({ status: fanned.statusCode, retryAfter: fanned.headers['retry-after'] }).toEqual({ status: 503, retryAfter: '1' });
    expect(fanned.body).toContain('per-subject limit');
    expect((await first).statusCode).toBe(200);
    up.delayMs = 0;
    expect(t.metrics.inflight.get('metrics') ?? 0).toBe(0);
  });
});
