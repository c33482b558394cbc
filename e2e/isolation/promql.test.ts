// Isolation oracle, PromQL slice (issue 8): for every corpus query and every
// tenant T, the answer through the real gateway (as T, against a Prometheus
// holding every tenant's data) must equal the answer of a "reference"
// Prometheus holding only T's data (same series, same timestamps) to the
// ORIGINAL query. Instant queries at a fixed evaluation time and range
// queries over the last hour. Prints counts and writes
// e2e/results/isolation-promql.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTeamsOpenMetrics, NAMESPACES, seedEndSeconds } from '../fixtures/seed.ts';
import { startGateway, type GatewayInstance } from '../harness/gateway.ts';
import { promGet, startPrometheus, type PrometheusInstance } from '../harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from '../harness/tokens.ts';
import { GatewayError } from '../../src/errors.ts';
import { rewritePromQL, rewritePromQLPerGroup } from '../../src/rewrite/promql.ts';
import { buildFilteredOpenMetrics, describeAnswer, loadCorpus, namespacesIn, sameAnswer, toAnswer, type Answer } from './corpus.ts';
import { TENANTS } from './tenants.ts';

interface Exclusion {
  q: string;
  tenants: readonly string[];
  mode?: 'instant' | 'range';
  /** Nondeterministic (ties): may match on a given run without being stale. */
  mayMatch?: boolean;
  reason: string;
}

const here = dirname(fileURLToPath(import.meta.url));
const exclusions = (JSON.parse(readFileSync(join(here, 'promql-exclusions.json'), 'utf8')) as { entries: Exclusion[] }).entries;
const corpus = loadCorpus();

// The corpus has experimental functions (info(), limitk, …): evaluated, not refused by both sides.
const EXPERIMENTAL = ['--enable-feature=promql-experimental-functions'];

let full: PrometheusInstance;
const refs = new Map<string, PrometheusInstance>();
let gw: GatewayInstance;
let idp: TestIssuer;
let evalTime: number;
const tokens = new Map<string, string>();

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  const starts: Promise<unknown>[] = [startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }), extraArgs: EXPERIMENTAL }).then((p) => (full = p))];
  for (const t of TENANTS) starts.push(startPrometheus({ openMetrics: buildFilteredOpenMetrics({ now, keep: t.keep }), extraArgs: EXPERIMENTAL }).then((p) => refs.set(t.name, p)));
  await Promise.all(starts);
  idp = await createTestIssuer({ issuer: 'https://idp.isolation', audience: 'lbac-gateway', alg: 'ES256' });
  const teams: Record<string, unknown> = {};
  for (const t of TENANTS) teams[t.name] = { groups: [t.name], selectors: t.selectors };
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: full.url, mount: '/prometheus' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway' }] },
      teams,
    },
  });
  for (const t of TENANTS) tokens.set(t.name, await idp.mint({ sub: `u-${t.name}`, preferred_username: t.name, groups: [t.name] }, { expiresIn: '2h' }));
}, 240_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([full?.stop(), ...[...refs.values()].map((p) => p.stop())]);
  idp?.cleanup();
});

type Mode = 'instant' | 'range';

function params(mode: Mode, q: string): Record<string, string> {
  return mode === 'instant'
    ? { query: q, time: String(evalTime) }
    : { query: q, start: String(evalTime - 3600), end: String(evalTime), step: '300' };
}

async function ask(base: string, mode: Mode, q: string, headers: Record<string, string> = {}): Promise<Answer> {
  const r = await promGet(base, mode === 'instant' ? '/api/v1/query' : '/api/v1/query_range', params(mode, q), headers);
  return toAnswer(r.status, r.body);
}

/** Runs `fn` over `items` with at most `n` in flight. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) {
        const item = items[i++] as T;
        await fn(item);
      }
    }),
  );
}

interface Counts {
  tenant: string;
  mode: Mode;
  queries: number;
  gatewayRefused: number;
  run: number;
  matches: number;
  bothErrors: number;
  mismatches: number;
  excluded: number;
  leaks: number;
}

describe('PromQL isolation oracle: gateway(full) == reference(tenant only)', () => {
  it('every accepted corpus query answers exactly as the tenant-only reference, with no other tenant\'s namespace', async () => {
    const counts: Counts[] = [];
    const mismatches: { tenant: string; mode: Mode; q: string; gateway: string; reference: string }[] = [];
    const leaks: { tenant: string; mode: Mode; q: string; namespaces: string[] }[] = [];
    const refused: { tenant: string; q: string; code: string }[] = [];
    const excludedHits = new Set<Exclusion>();
    for (const t of TENANTS) {
      const ref = refs.get(t.name) as PrometheusInstance;
      const headers = { authorization: `Bearer ${tokens.get(t.name) as string}` };
      for (const mode of ['instant', 'range'] as const) {
        const c: Counts = { tenant: t.name, mode, queries: corpus.length, gatewayRefused: 0, run: 0, matches: 0, bothErrors: 0, mismatches: 0, excluded: 0, leaks: 0 };
        await pool(corpus, 8, async ({ q }) => {
          // The gateway refuses what it cannot rewrite (parse errors, no exact DNF form): not run.
          // An instant query that is only a range selector is asked once per group and merged.
          try {
            if (mode === 'instant') rewritePromQLPerGroup(q, t.policy);
            else rewritePromQL(q, t.policy);
          } catch (err) {
            if (!(err instanceof GatewayError)) throw err;
            if (mode === 'instant') refused.push({ tenant: t.name, q, code: err.code });
            c.gatewayRefused++;
            return;
          }
          c.run++;
          const [g, r] = await Promise.all([ask(`${gw.url}/prometheus`, mode, q, headers), ask(ref.url, mode, q)]);
          // A leak: a namespace outside the tenant's that the reference answer
          // does not have (label_replace/label_join may legitimately write any
          // namespace value onto the tenant's own series; the reference shows it too).
          const refNs = new Set(namespacesIn(r));
          const foreign = namespacesIn(g).filter((ns) => !t.namespaces.includes(ns) && !refNs.has(ns));
          if (foreign.length > 0) {
            c.leaks++;
            leaks.push({ tenant: t.name, mode, q, namespaces: foreign });
          }
          if (sameAnswer(g, r)) {
            c.matches++;
            if (g.kind === 'error') c.bothErrors++;
            return;
          }
          const ex = exclusions.find((e) => e.q === q && (e.tenants.includes('*') || e.tenants.includes(t.name)) && (e.mode === undefined || e.mode === mode));
          if (ex !== undefined) {
            excludedHits.add(ex);
            c.excluded++;
            return;
          }
          c.mismatches++;
          mismatches.push({ tenant: t.name, mode, q, gateway: describeAnswer(g), reference: describeAnswer(r) });
        });
        counts.push(c);
      }
    }
    console.table(counts);
    const total = counts.reduce(
      (a, c) => ({ run: a.run + c.run, matches: a.matches + c.matches, mismatches: a.mismatches + c.mismatches, excluded: a.excluded + c.excluded, leaks: a.leaks + c.leaks }),
      { run: 0, matches: 0, mismatches: 0, excluded: 0, leaks: 0 },
    );
    console.log(`isolation-promql: ${total.run} queries run, ${total.matches} matches, ${total.mismatches} mismatches, ${total.excluded} excluded, ${total.leaks} leaks`);
    for (const m of mismatches) console.log(`MISMATCH [${m.tenant}/${m.mode}] ${JSON.stringify(m.q)}\n  gateway:   ${m.gateway}\n  reference: ${m.reference}`);
    const stale = exclusions.filter((e) => e.mayMatch !== true && !excludedHits.has(e));
    mkdirSync(join(here, '..', 'results'), { recursive: true });
    writeFileSync(
      join(here, '..', 'results', 'isolation-promql.json'),
      `${JSON.stringify({ date: new Date().toISOString(), evalTime, corpus: corpus.length, namespaces: NAMESPACES, total, counts, leaks, mismatches, refused, exclusions: exclusions.map((e) => ({ ...e, hit: excludedHits.has(e) })) }, null, 2)}\n`,
    );
    expect(leaks).toEqual([]);
    expect(mismatches).toEqual([]);
    expect(stale.map((e) => e.q), 'exclusions that no longer differ: remove them').toEqual([]);
    for (const c of counts) expect(c.run).toBeGreaterThan(300);
  }, 600_000);
});
