// A multi-group policy whose groups constrain the metric name (Grafana
// Enterprise Metrics' LBAC example: `{__name__="sensitive_total", secret!="true"}`
// or `{__name__!="sensitive_total"}`), and selectors over several metric
// names. PromQL's `or` matches series on their labels without the name, so
// `s{G1} or s{G2}` drops a series of G2 whose labels, but not whose name,
// equal a series of G1. The rewrite carries the name in a label across the
// `or`; the real Prometheus answers it, and the answer must be exactly the
// series the tenant may see.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SelectorPolicy } from '../src/rewrite/matcher.ts';
import { rewritePromQL } from '../src/rewrite/promql.ts';
import { evalMatcher } from '../test/rewrite/matcher-oracle.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';

// G1: the sensitive metric without secrets; G2: every other metric.
const POLICY: SelectorPolicy = [
  [
    { name: '__name__', op: '=', value: 'sensitive_total' },
    { name: 'secret', op: '!=', value: 'true' },
  ],
  [{ name: '__name__', op: '!=', value: 'sensitive_total' }],
];

// Same labels, different names: the G2 series other_total{…} has the labels of the G1 series sensitive_total{…}.
const SERIES = [
  'sensitive_total{app="pay",secret="false"}',
  'sensitive_total{app="pay",secret="true"}',
  'other_total{app="pay",secret="false"}',
  'other_total{app="web",secret="true"}',
  'third_total{app="pay",secret="false"}',
];

const NOW = Math.floor(Date.now() / 1000 / 60) * 60;
let prom: PrometheusInstance;

beforeAll(async () => {
  const lines: string[] = [];
  for (const family of ['sensitive_total', 'other_total', 'third_total']) {
    lines.push(`# TYPE ${family.replace(/_total$/, '')} counter`);
    SERIES.filter((s) => s.startsWith(`${family}{`)).forEach((s, i) => {
      for (let t = NOW - 600; t <= NOW; t += 60) lines.push(`${s} ${i + 1} ${t}`);
    });
  }
  lines.push('# EOF');
  prom = await startPrometheus({ openMetrics: `${lines.join('\n')}\n` });
}, 120_000);
afterAll(async () => {
  await prom?.stop();
});

type Labels = Record<string, string>;
const instant = async (q: string): Promise<Labels[]> => {
  const r = await promGet<{ result: { metric: Labels }[] }>(prom.url, '/api/v1/query', { query: q, time: String(NOW) });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.data!.result.map((x) => x.metric).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
};
const allowed = (l: Labels): boolean => POLICY.some((g) => g.every((m) => evalMatcher(m, l[m.name] ?? '')));

describe('several groups that constrain the metric name, selectors over several names', () => {
  it.each(['{app="pay"}', '{__name__=~".+_total"}', '{secret=~"true|false"} offset 0s'])('%s: exactly the series the tenant may see, from the real Prometheus', async (q) => {
    const out = rewritePromQL(q, POLICY);
    const expected = (await instant(q)).filter(allowed);
    expect(expected.length).toBeGreaterThan(1);
    expect(await instant(out)).toEqual(expected);
    // The plain `or` of the per-group selectors loses the series whose labels repeat across names.
    const plain = out.replace(/^label_replace\(\((.*)\), "__lbac_metric_name__", "", "", ""\)$/s, '$1').replace(/label_replace\((.*?), "__lbac_metric_name__", "\$1", "__name__", "\(\.\+\)"\)/g, '$1');
    if (q === '{app="pay"}') expect((await instant(`(${plain})`)).length).toBeLessThan(expected.length);
  });

  it('inside an aggregation by name', async () => {
    const q = 'count by (__name__) ({app=~".+"})';
    const out = rewritePromQL(q, POLICY);
    const r = await promGet<{ result: { metric: Labels; value: [number, string] }[] }>(prom.url, '/api/v1/query', { query: out, time: String(NOW) });
    const counts = Object.fromEntries(r.body.data!.result.map((x) => [x.metric['__name__'], x.value[1]]));
    expect(counts).toEqual({ sensitive_total: '1', other_total: '2', third_total: '1' });
  });
});
