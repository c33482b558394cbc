// A multi-group policy of more than 8 groups that do not merge: the rewrite
// joins the per-group forms in halves, `((U1 or … or U6) or (U7 or … or U12))`
// (joinBalanced in src/rewrite/promql-dnf.ts), so that no bracket level holds
// a chain longer than the parser builds. `or` and `and on()` are associative
// in what they keep; the real Prometheus must answer the nested form exactly
// as the flat `(U1 or U2 or … or U12)`. The groups overlap (a series in
// several groups), and values repeat (ties for topk and bottomk).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SelectorPolicy } from '../src/rewrite/matcher.ts';
import { rewritePromQL } from '../src/rewrite/promql.ts';
import { joinBalanced } from '../src/rewrite/promql-dnf.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';

const PODS = 6;
const ZONES = 4;
const K = 12;
// Group i: two pods, all zones but one; (i % 6, i % 4) is distinct for i < 12, and no two groups merge.
const POLICY: SelectorPolicy = Array.from({ length: K }, (_, i) => [
  { name: 'pod', op: '=~', value: `p${i % PODS}|p${(i + 1) % PODS}` },
  { name: 'zone', op: '!=', value: `z${i % ZONES}` },
]);
const groupText = (i: number): string => `pod=~"p${i % PODS}|p${(i + 1) % PODS}",zone!="z${i % ZONES}"`;

const NOW = Math.floor(Date.now() / 1000 / 60) * 60;
let prom: PrometheusInstance;

beforeAll(async () => {
  const lines: string[] = [];
  for (const family of ['x', 'y']) {
    lines.push(`# TYPE ${family} counter`);
    for (let p = 0; p < PODS; p++) {
      for (let z = 0; z < ZONES; z++) {
        if (family === 'y' && (p + z) % 2 === 1) continue;
        // Few distinct rates and values: ties for topk and across the groups.
        const step = 1 + ((p + z) % 3);
        for (let t = NOW - 600, v = p % 2; t <= NOW; t += 60, v += step) lines.push(`${family}_total{pod="p${p}",zone="z${z}"} ${v} ${t}`);
      }
    }
  }
  lines.push('# EOF');
  prom = await startPrometheus({ openMetrics: `${lines.join('\n')}\n` });
}, 120_000);
afterAll(async () => {
  await prom?.stop();
});

type Series = { metric: Record<string, string>; value?: [number, string]; values?: [number, string][] };
/**
 * The instant and the range answer, series sorted: Prometheus evaluates a
 * binary operator per step and collects its output series in a map, so their
 * order is not defined even for one and the same query. With `ties`, only the
 * samples (time and value) are compared: which of several equal values topk
 * keeps depends on that order.
 */
const answer = async (q: string, ties: boolean): Promise<unknown[]> => {
  const i = await promGet<{ result: Series[] }>(prom.url, '/api/v1/query', { query: q, time: String(NOW) });
  expect(i.status, JSON.stringify(i.body)).toBe(200);
  const r = await promGet<{ result: Series[] }>(prom.url, '/api/v1/query_range', { query: q, start: String(NOW - 300), end: String(NOW), step: '30' });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  const norm = (result: Series[]): unknown[] =>
    ties
      ? result.flatMap((x) => (x.value === undefined ? (x.values ?? []) : [x.value])).map((v) => JSON.stringify(v)).sort()
      : result.map((x) => JSON.stringify(x)).sort();
  return [norm(i.body.data!.result), norm(r.body.data!.result)];
};

const NAME = (s: string): string => `label_replace(${s}, "__lbac_metric_name__", "$1", "__name__", "(.+)")`;
const CASES: [query: string, op: string, form: (g: string) => string, nonEmpty: boolean][] = [
  ['x_total', ' or ', (g) => `x_total{${g}}`, true],
  ['rate(x_total[5m])', ' or ', (g) => `rate(x_total{${g}}[5m])`, true],
  ['topk(7, rate(x_total[5m]))', ' or ', (g) => `rate(x_total{${g}}[5m])`, true],
  ['bottomk(5, x_total offset 1m)', ' or ', (g) => `x_total{${g}} offset 1m`, true],
  ['sum by (zone) (increase(x_total[5m]))', ' or ', (g) => `increase(x_total{${g}}[5m])`, true],
  ['{__name__=~"x_total|y_total"}', ' or ', (g) => NAME(`{__name__=~"x_total|y_total",${g}}`), true],
  ['count by (__name__) ({__name__=~"x_total|y_total"})', ' or ', (g) => NAME(`{__name__=~"x_total|y_total",${g}}`), true],
  ['absent(x_total)', ' and on() ', (g) => `absent(x_total{${g}})`, false],
  ['absent(x_total{pod="p9"})', ' and on() ', (g) => `absent(x_total{pod="p9",${g}})`, true],
];

describe(`${K} groups that do not merge: the nested form answers exactly as the flat one`, () => {
  it.each(CASES)('%s', async (q, op, form, nonEmpty) => {
    const out = rewritePromQL(q, POLICY);
    const parts = Array.from({ length: K }, (_, i) => form(groupText(i)));
    const nested = joinBalanced(parts, op);
    expect(nested.startsWith('((')).toBe(true);
    expect(out).toContain(nested);
    const flat = out.replace(nested, `(${parts.join(op)})`);
    const ties = /^(topk|bottomk)/.test(q);
    const [a, b] = [await answer(out, ties), await answer(flat, ties)];
    expect(a).toEqual(b);
    expect((a[0] as unknown[]).length > 0).toBe(nonEmpty);
  });
});
