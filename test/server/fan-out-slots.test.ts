// Fanned-out requests (one upstream request per policy group) and upstreams[].maxConcurrent:
// the extra parts take slots, those slots always come back, and a policy with more groups
// than the limit is still served (at most the limit in all, parts queued in the pool).
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import type { IdentitySource } from '../../src/identity/source.ts';
import type { Subject } from '../../src/policy/decision.ts';
import { startUpstream, testApp, testConfig, SUBJECTS, type TestApp, type Upstream } from './helpers.ts';

describe('a client that leaves while the Loki version is asked', () => {
  const both: Subject = { sub: 'u-both', username: 'u-both', groups: ['eu-a', 'us-b'], roles: [], auth: 'fake', claims: {} };
  const people: IdentitySource = { name: 'fake', authenticate: async (c) => (c.bearer === 'both' ? both : undefined) };
  let up: Upstream;
  let t: TestApp;
  let base: string;
  beforeAll(async () => {
    up = await startUpstream();
    up.answer = (path) => {
      if (path === '/loki/api/v1/status/buildinfo') return [200, '{"version":"3.4.2","revision":"x","branch":"HEAD"}'];
      if (path === '/loki/api/v1/labels') return [200, '{"status":"success","data":["app"]}'];
      return undefined;
    };
    const config = parseConfig(
      `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: logs, kind: loki, url: "${up.url}", mount: /loki-gw, timeoutMs: 2000, maxConcurrent: 2 }
identity:
  providers:
    - type: apikey
      keys: [{ name: unused, hash: "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" }]
teams:
  eu-a: { groups: [eu-a], selectors: [{ cluster: eu, namespace: a }], headers: { X-Scope-OrgID: tenant-1 } }
  us-b: { groups: [us-b], selectors: [{ cluster: us, namespace: b }], headers: { X-Scope-OrgID: tenant-1 } }
`,
      { env: {} },
    );
    t = await testApp(config, { identity: people });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await t.app.close();
    await up.close();
  });

  it('takes no fan-out slot it would never give back', async () => {
    up.delayMs = 300; // buildinfo is slow
    const req = request(`${base}/loki-gw/loki/api/v1/labels`, { headers: { authorization: 'Bearer both' } });
    req.on('error', () => undefined);
    req.end();
    while (!up.requests.some((r) => r.path === '/loki/api/v1/status/buildinfo')) await new Promise((r) => setTimeout(r, 5));
    req.destroy(); // gone while the gateway waits for buildinfo
    await expect.poll(() => t.metrics.inflight.get('logs') ?? 0, { timeout: 10_000 }).toBe(0);
    up.delayMs = 0;
    // Both slots are free: the next fanned-out request (two parts) is served.
    expect((await fetch(`${base}/loki-gw/loki/api/v1/labels`, { headers: { authorization: 'Bearer both' } })).status).toBe(200);
  });
});

describe('more policy groups than maxConcurrent', () => {
  let up: Upstream;
  let t: TestApp;
  beforeAll(async () => {
    up = await startUpstream();
    up.answer = (path, params) => (path === '/api/v1/query' && params.get('query')?.endsWith('[5m]') === true ? [200, '{"status":"success","data":{"resultType":"matrix","result":[]}}'] : undefined);
    SUBJECTS['olga'] = { sub: 'u-olga', username: 'olga', groups: ['team-o'], roles: [], auth: 'fake', claims: {} };
    // testConfig: maxConcurrent 2; three groups that do not merge.
    t = await testApp(testConfig(up.url, '  team-o: { groups: [team-o], selectors: [{ namespace: "~team-a-.*" }, { job: api }, { app: web }] }\n'));
  });
  afterAll(async () => {
    delete SUBJECTS['olga'];
    await t.app.close();
    await up.close();
  });

  it('are served on an idle upstream (the request takes the whole limit, not more), and the slots come back', async () => {
    const r = await t.app.inject({ url: `/prometheus/api/v1/query?query=${encodeURIComponent('up[5m]')}`, headers: { authorization: 'Bearer olga' } });
    expect({ status: r.statusCode, retryAfter: r.headers['retry-after'] }).toEqual({ status: 200, retryAfter: undefined });
    expect(up.requests.filter((q) => q.path === '/api/v1/query')).toHaveLength(3);
    expect(t.metrics.inflight.get('metrics') ?? 0).toBe(0);
  });
});
