// info() under a policy, checked against the real Prometheus: the rewritten
// query on all the data must answer what the query as written answers on the
// team's data alone (a second Prometheus holding only the series the policy
// allows), or be refused (rewrite_unsupported).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryError } from '../src/errors.ts';
import type { SelectorPolicy } from '../src/rewrite/matcher.ts';
import { rewritePromQL } from '../src/rewrite/promql.ts';
import { evalMatcher } from '../test/rewrite/matcher-oracle.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';

type Labels = Record<string, string>;

const SERIES: readonly Labels[] = [
  { __name__: 'up', job: 'j1', instance: 'i1', namespace: 'a' },
  { __name__: 'up', job: 'j2', instance: 'i2', namespace: 'a' },
  { __name__: 'target_info', job: 'j1', instance: 'i1', namespace: 'a', k8s: 'c1' },
  // Another team's info series for the team's second target.
  { __name__: 'target_info', job: 'j2', instance: 'i2', namespace: 'b', k8s: 'c2' },
  { __name__: 'team_a_x', job: 'j1', instance: 'i1', namespace: 'a' },
  { __name__: 'team_a_x', job: 'j2', instance: 'i2', namespace: 'a' },
  // Not an info metric, with a label an info metric could add.
  { __name__: 'team_a_meta', job: 'j1', instance: 'i1', namespace: 'a', k8s: 'zz' },
  { __name__: 'team_a_build_info', job: 'j2', instance: 'i2', namespace: 'a', k8s: 'bb' },
];

const POLICIES: Readonly<Record<string, SelectorPolicy>> = {
  namespace: [[{ name: 'namespace', op: '=', value: 'a' }]],
  name: [[{ name: '__name__', op: '=~', value: 'team_a_.*' }]],
  'name and namespace': [[{ name: '__name__', op: '=~', value: 'team_a_.*' }, { name: 'namespace', op: '=', value: 'a' }]],
};

const CASES: readonly [string, string][] = [
  ['namespace', 'info(up, {k8s=~".+"})'],
  ['namespace', 'info(sum by (instance, job) (up), {k8s=~".+"})'],
  // Every data-label matcher matches the empty string, the policy's on the same label does not: refused.
  ['namespace', 'info(up, {__name__="target_info", namespace!="b"})'],
  ['namespace', 'info(up, {namespace=~".*"})'],
  // A policy on __name__: the info metric stays target_info (or .+_info), not every metric the team reads.
  ['name', 'info(team_a_x, {k8s=~".+"})'],
  ['name', 'info(sum by (instance, job) (team_a_x), {k8s=~".+"})'],
  ['name', 'info(sum by (instance, job) (team_a_x), {__name__!="build_info", k8s=~".+"})'],
  ['name', 'info(sum by (instance, job) (team_a_x), {__name__=~"team_a_.+", k8s=~".+"})'],
  ['name and namespace', 'info(sum by (instance, job) (team_a_x), {k8s=~".+"})'],
  ['name and namespace', 'info(team_a_x, {__name__!="x_info", k8s=~".+"})'],
];

function openMetrics(series: readonly Labels[], end: number): string {
  const byName = new Map<string, Labels[]>();
  for (const s of series) byName.set(s['__name__'] as string, [...(byName.get(s['__name__'] as string) ?? []), s]);
  const lines: string[] = [];
  for (const [name, list] of byName) {
    lines.push(`# TYPE ${name} gauge`);
    for (const s of list) {
      const labels = Object.entries(s).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}="${v}"`).join(',');
      for (let t = end - 600; t <= end; t += 60) lines.push(`${name}{${labels}} 1 ${t}`);
    }
  }
  return `${lines.join('\n')}\n# EOF\n`;
}

const allowed = (policy: SelectorPolicy, l: Labels): boolean => policy.some((g) => g.every((m) => evalMatcher(m, l[m.name] ?? '')));
const end = Math.floor(Date.now() / 60_000) * 60;
const args = ['--enable-feature=promql-experimental-functions'];
let all: PrometheusInstance;
const teams: Record<string, PrometheusInstance> = {};

beforeAll(async () => {
  all = await startPrometheus({ openMetrics: openMetrics(SERIES, end), extraArgs: args });
  for (const [name, policy] of Object.entries(POLICIES)) {
    teams[name] = await startPrometheus({ openMetrics: openMetrics(SERIES.filter((s) => allowed(policy, s)), end), extraArgs: args });
  }
}, 240_000);
afterAll(async () => {
  await all?.stop();
  for (const p of Object.values(teams)) await p.stop();
});

async function answer(prom: PrometheusInstance, query: string): Promise<unknown> {
  const r = await promGet<{ result: { metric: Labels }[] }>(prom.url, '/api/v1/query', { query, time: String(end) });
  if (r.status !== 200) return { status: r.status, body: r.body };
  return r.body.data!.result.map((s) => JSON.stringify(Object.entries(s.metric).sort())).sort();
}

describe('info() under a policy, against Prometheus on the team\'s data alone', () => {
  it.each(CASES)('%s: %s', async (policyName, query) => {
    let rewritten: string;
    try {
      rewritten = rewritePromQL(query, POLICIES[policyName] as SelectorPolicy);
    } catch (e) {
      expect(e).toBeInstanceOf(QueryError);
      expect((e as QueryError).code).toBe('rewrite_unsupported');
      // Refused only where the answer would differ.
      expect(query).toMatch(/namespace!="b"|namespace=~"\.\*"/);
      return;
    }
    const want = await answer(teams[policyName] as PrometheusInstance, query);
    expect(await answer(all, rewritten), rewritten).toEqual(want);
  });
});
