// Functions of Prometheus 3.16 that lezer-promql's latest release does not
// know (`integral`, experimental): the rewriter reads them through a stand-in
// of the same length and call syntax, and forwards the real name. Checked by
// a real Prometheus with experimental functions enabled: it parses every
// rewrite, every selector in its AST carries the policy, and the answers are
// exactly the allowed series of the unrestricted answer.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryError } from '../src/errors.ts';
import type { SelectorPolicy } from '../src/rewrite/matcher.ts';
import { rewritePromQL } from '../src/rewrite/promql.ts';
import { evalMatcher } from '../test/rewrite/matcher-oracle.ts';
import { buildTeamsOpenMetrics, seedEndSeconds } from './fixtures/seed.ts';
import { astSelectors, promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';

type Labels = Record<string, string>;

const POLICIES: Readonly<Record<string, SelectorPolicy>> = {
  'one group': [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]],
  // Overlapping groups that do not merge: the `or` form per range function.
  'two groups': [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }], [{ name: 'job', op: '=', value: 'api' }]],
};

// Per-series results that keep the policy's labels, so the reference is the unrestricted answer filtered by them.
const QUERIES = [
  'integral(http_requests_total[10m])',
  'integral(http_requests_total{code="500"}[10m], 0)',
  'integral (node_memory_bytes[5m] offset 1m)',
  'integral(rate(http_requests_total[5m])[30m:1m])',
  'http_requests_total / ignoring(code, method) group_left integral(up[10m])',
];

let prom: PrometheusInstance;
let evalTime: number;

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }), extraArgs: ['--enable-feature=promql-experimental-functions'] });
}, 120_000);
afterAll(async () => {
  await prom?.stop();
});

const allowed = (policy: SelectorPolicy, l: Labels): boolean => policy.some((g) => g.every((m) => evalMatcher(m, l[m.name] ?? '')));

async function instant(q: string): Promise<{ metric: Labels; value: [number, string] }[]> {
  const r = await promGet<{ result: { metric: Labels; value: [number, string] }[] }>(prom.url, '/api/v1/query', { query: q, time: String(evalTime) });
  expect(r.status, `${q}: ${JSON.stringify(r.body)}`).toBe(200);
  const key = (s: { metric: Labels }) => JSON.stringify(Object.entries(s.metric).sort());
  return r.body.data!.result.sort((a, b) => key(a).localeCompare(key(b)));
}

describe('integral() (newer than the Lezer grammar) on Prometheus 3.16 with experimental functions', () => {
  it('the grammar gap is real: lezer-promql alone does not parse it, Prometheus does', async () => {
    const { parser } = await import('@prometheus-io/lezer-promql');
    expect(() => parser.configure({ strict: true }).parse('integral(up[5m])')).toThrow();
    const p = await promGet(prom.url, '/api/v1/parse_query', { query: 'integral(up[5m])' });
    expect(p.status).toBe(200);
  });

  it('every corpus query with its range functions renamed to integral(): accepted where Prometheus accepts, every selector enforced, nothing repaired', async () => {
    // Both PromQL corpora; each range function call renamed (all, every other one, or wrapped: often invalid).
    const corpus = ['promql.jsonl', 'promql-realworld.jsonl'].flatMap((f) =>
      readFileSync(new URL(`./corpus/${f}`, import.meta.url), 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => (JSON.parse(l) as { q: string }).q),
    );
    const FNS = /\b(rate|irate|increase|delta|deriv|sum_over_time|avg_over_time|max_over_time|changes|resets)(\s*)\(/g;
    const variants = new Set<string>();
    for (const q of corpus) {
      if (q.search(FNS) < 0) continue;
      let i = 0;
      variants.add(q.replace(FNS, 'integral$2('));
      variants.add(q.replace(FNS, (m, _f, sp: string) => (i++ % 2 === 0 ? `integral${sp}(` : m)));
      variants.add(q.replace(FNS, (_m, f: string, sp: string) => `integral${sp}(${f}(`).replace(/\]\)/g, ']))'));
    }
    expect(variants.size).toBeGreaterThan(1500);
    const policy = POLICIES['one group'] as SelectorPolicy;
    const parses = async (q: string) => {
      const r = await promGet(prom.url, '/api/v1/parse_query', { query: q });
      return { ok: r.status === 200, data: r.body.data };
    };
    const problems: string[] = [];
    let checked = 0;
    for (const q of variants) {
      const original = await parses(q);
      let out: string;
      try {
        out = rewritePromQL(q, policy);
      } catch (e) {
        if (!(e instanceof QueryError)) throw e;
        if (original.ok) problems.push(`refused although Prometheus parses it: ${JSON.stringify(q)}: ${e.message}`);
        continue;
      }
      const rewritten = await parses(out);
      if (!original.ok) {
        if (rewritten.ok) problems.push(`Prometheus refuses the original but parses the rewrite: ${JSON.stringify(q)}`);
        continue;
      }
      if (!rewritten.ok) {
        problems.push(`Prometheus cannot parse the rewrite: ${JSON.stringify(out)}`);
        continue;
      }
      checked++;
      for (const s of astSelectors(rewritten.data)) {
        if (!s.matchers.some((m) => m.name === 'namespace' && m.type === '=~' && m.value === 'team-a-.*')) problems.push(`unenforced selector in ${JSON.stringify(out)}`);
      }
    }
    expect(problems).toEqual([]);
    expect(checked).toBeGreaterThan(1000);
  }, 300_000);

  for (const [name, policy] of Object.entries(POLICIES)) {
    it.each(QUERIES)(`${name}: %s is rewritten, parsed by Prometheus with every selector enforced, and answers the allowed series`, async (q) => {
      const out = rewritePromQL(q, policy);
      expect(out).toContain('integral');
      const p = await promGet(prom.url, '/api/v1/parse_query', { query: out });
      expect(p.status, JSON.stringify(p.body)).toBe(200);
      const sels = astSelectors(p.body.data);
      expect(sels.length).toBeGreaterThan(0);
      for (const s of sels) {
        const carried = policy.some((g) => g.every((m) => s.matchers.some((x) => x.name === m.name && x.value === m.value && x.type === m.op)));
        expect(carried, `${out}: ${JSON.stringify(s.matchers)}`).toBe(true);
      }
      const expected = (await instant(q)).filter((s) => allowed(policy, s.metric));
      expect(expected.length, 'the reference is not empty').toBeGreaterThan(0);
      expect(await instant(out)).toEqual(expected);
    });
  }
});
