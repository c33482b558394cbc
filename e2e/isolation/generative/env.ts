// Backends + gateway for the generative isolation oracle: one Prometheus with
// every tenant's data, one reference Prometheus per tenant (its data only), the
// real gateway in front of the full one. Mirrors e2e/isolation/promql.test.ts
// (same tenants, same answers), with promql-experimental-functions enabled on
// every Prometheus so limitk/limit_ratio/sort_by_label/info/… are evaluated
// instead of erroring on both sides, and promql-binop-fill-modifiers so
// `a + fill(0) b` is too.
import { buildTeamsOpenMetrics, seedEndSeconds, seedSeries } from '../../fixtures/seed.ts';
import { startGateway, type GatewayInstance } from '../../harness/gateway.ts';
import { promGet, startPrometheus, type PrometheusInstance } from '../../harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from '../../harness/tokens.ts';
import { buildFilteredOpenMetrics, toAnswer, type Answer } from '../corpus.ts';
import { TENANTS, type Tenant } from '../tenants.ts';

export { TENANTS, type Tenant };

export type Mode = 'instant' | 'range';

export interface Env {
  evalTime: number;
  tenants: readonly Tenant[];
  /** Gateway as tenant. */
  gw(tenant: string, mode: Mode, q: string): Promise<{ status: number; answer: Answer }>;
  /** The tenant's reference Prometheus. */
  ref(tenant: string, mode: Mode, q: string): Promise<{ status: number; answer: Answer }>;
  /** The unrestricted Prometheus (every tenant's data), original query. */
  full(mode: Mode, q: string): Promise<{ status: number; answer: Answer }>;
  /** Label values (namespace/job/instance) of the series the tenant may see. */
  visible(tenant: string): ReadonlySet<string>;
  /** Same over all seeded series. */
  allValues: ReadonlySet<string>;
  stop(): Promise<void>;
}

// Fill modifiers on binary operators (`a + fill(0) b`) are behind their own flag in Prometheus 3.16.
const EXTRA = ['--enable-feature=promql-experimental-functions,promql-binop-fill-modifiers'];

export async function startEnv(names?: readonly string[]): Promise<Env> {
  const tenants = TENANTS.filter((t) => names === undefined || names.includes(t.name));
  const now = Math.floor(Date.now() / 1000);
  const evalTime = seedEndSeconds(now);
  let full!: PrometheusInstance;
  const refs = new Map<string, PrometheusInstance>();
  const starts: Promise<unknown>[] = [startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }), extraArgs: EXTRA }).then((p) => (full = p))];
  for (const t of tenants) starts.push(startPrometheus({ openMetrics: buildFilteredOpenMetrics({ now, keep: t.keep }), extraArgs: EXTRA }).then((p) => refs.set(t.name, p)));
  await Promise.all(starts);
  const idp: TestIssuer = await createTestIssuer({ issuer: 'https://idp.isolation', audience: 'lbac-gateway', alg: 'ES256' });
  const teams: Record<string, unknown> = {};
  for (const t of tenants) teams[t.name] = { groups: [t.name], selectors: t.selectors };
  const gwi: GatewayInstance = await startGateway({
    config: {
      server: { logLevel: 'error' },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: full.url, mount: '/prometheus' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway' }] },
      teams,
    },
  });
  const tokens = new Map<string, string>();
  for (const t of tenants) tokens.set(t.name, await idp.mint({ sub: `u-${t.name}`, preferred_username: t.name, groups: [t.name] }, { expiresIn: '2h' }));
  const params = (mode: Mode, q: string): Record<string, string> =>
    mode === 'instant' ? { query: q, time: String(evalTime) } : { query: q, start: String(evalTime - 3600), end: String(evalTime), step: '300' };
  const ask = async (base: string, mode: Mode, q: string, headers: Record<string, string> = {}) => {
    const r = await promGet(base, mode === 'instant' ? '/api/v1/query' : '/api/v1/query_range', params(mode, q), headers);
    return { status: r.status, answer: toAnswer(r.status, r.body as never) };
  };
  const visibleSets = new Map<string, Set<string>>();
  const allValues = new Set<string>();
  for (const s of seedSeries()) for (const k of ['namespace', 'job', 'instance']) if (s.labels[k] !== undefined) allValues.add(s.labels[k] as string);
  for (const t of tenants) {
    const set = new Set<string>();
    for (const s of seedSeries()) if (t.keep(s.labels)) for (const k of ['namespace', 'job', 'instance']) if (s.labels[k] !== undefined) set.add(s.labels[k] as string);
    visibleSets.set(t.name, set);
  }
  return {
    evalTime,
    tenants,
    gw: (tenant, mode, q) => ask(`${gwi.url}/prometheus`, mode, q, { authorization: `Bearer ${tokens.get(tenant) as string}` }),
    ref: (tenant, mode, q) => ask((refs.get(tenant) as PrometheusInstance).url, mode, q),
    full: (mode, q) => ask(full.url, mode, q),
    visible: (tenant) => visibleSets.get(tenant) as Set<string>,
    allValues,
    stop: async () => {
      await gwi.stop();
      await Promise.all([full.stop(), ...[...refs.values()].map((p) => p.stop())]);
      idp.cleanup();
    },
  };
}
