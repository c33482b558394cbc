// The claims-driven mode of the default policy end to end: JWTs whose own
// `namespaces` / `labels` claims are the selectors, the gateway started through
// its CLI with `policy.claimsMode`, and a real Prometheus behind a counting
// proxy. Values with RE2 metacharacters must match themselves only, against
// Prometheus' own regex engine; tokens carrying neither claim are refused.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startCountingProxy, type CountingProxy } from './harness/counting-proxy.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';
import { buildTeamsOpenMetrics, seedEndSeconds, TEAM_NAMESPACES } from './fixtures/seed.ts';

// Extra series whose namespaces contain regex metacharacters, next to look-alikes
// an unescaped regex would also match ("a.b" vs "aXb", "c|d" vs "c" and "d").
const PROBE_NAMESPACES = ['a.b', 'aXb', 'c|d', 'c', 'd', 'e(f)+', 'eff', '^g$', 'g'];

function probeOpenMetrics(evalTime: number): string {
  const lines = ['# HELP claims_probe Series with metacharacter namespaces.', '# TYPE claims_probe gauge'];
  for (const ns of PROBE_NAMESPACES) {
    const labels = `{namespace="${ns.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}",app="probe"}`;
    for (let t = evalTime - 60; t <= evalTime; t += 15) lines.push(`claims_probe${labels} 1 ${t}`);
  }
  return lines.join('\n');
}

let prom: PrometheusInstance;
let proxy: CountingProxy;
let gw: GatewayInstance;
let idp: TestIssuer;
let base: string;
let evalTime: number;

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  const seed = buildTeamsOpenMetrics({ now }).replace(/# EOF\n$/, '');
  prom = await startPrometheus({ openMetrics: `${seed}${probeOpenMetrics(evalTime)}\n# EOF\n` });
  proxy = await startCountingProxy({ upstream: prom.url });
  idp = await createTestIssuer({ issuer: 'https://idp.claims.e2e', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: proxy.url, mount: '/prometheus' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway' }] },
      admins: { groups: ['admins'] },
      // A team the claims mode ignores (no teamsFallback): membership alone grants nothing.
      teams: { 'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }] } },
      policy: { claimsMode: { enabled: true, namespacesClaim: 'namespaces', labelsClaim: 'labels', namespaceLabel: 'namespace' } },
    },
  });
  base = `${gw.url}/prometheus`;
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await proxy?.stop();
  await prom?.stop();
  idp?.cleanup();
});

beforeEach(() => proxy.clear());

const mint = (claims: Record<string, unknown>) => idp.mint({ sub: 'u-claims', ...claims });

async function series(claims: Record<string, unknown>, query: string, by: string[]): Promise<string[]> {
  const { status, body } = await promGet<{ result: { metric: Record<string, string> }[] }>(
    base,
    '/api/v1/query',
    { query, time: String(evalTime) },
    { authorization: `Bearer ${await mint(claims)}` },
  );
  expect(status, JSON.stringify(body)).toBe(200);
  return [...new Set(body.data!.result.map((r) => by.map((l) => r.metric[l] ?? '').join('/')))].sort();
}

describe('claims-driven mode through the gateway and Prometheus', () => {
  it('a namespaces claim limits the token to those namespaces', async () => {
    expect(await series({ namespaces: ['team-a-frontend', 'team-b-db'] }, 'count by (namespace) (up)', ['namespace'])).toEqual(['team-a-frontend', 'team-b-db']);
    // What Prometheus received carries the alternation the claim became.
    const q = proxy.requests.find((r) => r.path === '/api/v1/query')?.params.get('query') ?? '';
    expect(q).toContain('namespace=~"team-a-frontend|team-b-db"');
  });

  it('a labels claim is an AND-group of matchers', async () => {
    expect(await series({ labels: { job: 'api' } }, 'count by (namespace, job) (up)', ['namespace', 'job'])).toEqual(['platform/api', 'team-a-backend/api', 'team-b-api/api']);
    expect(await series({ labels: { job: ['api', 'worker'], namespace: 'team-a-backend' } }, 'count by (namespace, job) (up)', ['namespace', 'job'])).toEqual([
      'team-a-backend/api',
      'team-a-backend/worker',
    ]);
  });

  it('namespaces and labels together are ANDed', async () => {
    expect(
      await series({ namespaces: ['team-a-backend', 'team-b-api', 'platform'], labels: { job: 'api' } }, 'count by (namespace, job) (up)', ['namespace', 'job']),
    ).toEqual(['platform/api', 'team-a-backend/api', 'team-b-api/api']);
    expect(await series({ namespaces: [...TEAM_NAMESPACES['team-b']], labels: { job: 'web' } }, 'count by (namespace) (up)', ['namespace'])).toEqual([]);
  });

  it('values with regex metacharacters match themselves only (RE2 quoting)', async () => {
    expect(await series({ namespaces: ['a.b', 'c|d', 'e(f)+', '^g$'] }, 'count by (namespace) (claims_probe)', ['namespace'])).toEqual(['^g$', 'a.b', 'c|d', 'e(f)+']);
    expect(await series({ namespaces: ['a.b'] }, 'count by (namespace) (claims_probe)', ['namespace'])).toEqual(['a.b']);
    expect(await series({ labels: { namespace: ['c|d', 'g'] } }, 'count by (namespace) (claims_probe)', ['namespace'])).toEqual(['c|d', 'g']);
  });

  it('a token carrying neither claim is refused (403), even for a team member; nothing is forwarded', async () => {
    for (const claims of [{}, { groups: ['team-a'] }, { namespaces: [] }, { namespaces: ['team-a-frontend'], labels: { job: '' } }, { labels: { 'bad-name': 'x' } }]) {
      const res = await fetch(`${base}/api/v1/query?query=up`, { headers: { authorization: `Bearer ${await mint(claims)}` } });
      expect(res.status, JSON.stringify(claims)).toBe(403);
    }
    expect(proxy.count()).toBe(0);
  });

  it('admins stay unrestricted', async () => {
    expect((await series({ groups: ['admins'] }, 'count by (namespace) (up)', ['namespace'])).length).toBe(5);
  });

  it('an invalid token is still a 401 before any policy', async () => {
    const res = await fetch(`${base}/api/v1/query?query=up`, { headers: { authorization: `Bearer ${await idp.mint({ namespaces: ['a'] }, { expiresIn: -600 })}` } });
    expect(res.status).toBe(401);
    expect(proxy.count()).toBe(0);
  });
});
