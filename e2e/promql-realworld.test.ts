// Real-world PromQL (e2e/corpus/promql-realworld.jsonl: alert and recording
// rules and dashboard panels from public mixins, with Grafana's template
// variables substituted as Grafana sends them) through the rewriter, checked
// by the real Prometheus: it parses every original; it parses every rewritten
// query and, in the AST it returns, every selector carries one whole policy
// group. No query the gateway writes itself, so this is where a real
// dashboard the rewriter mishandles shows up.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryError } from '../src/errors.ts';
import type { SelectorPolicy } from '../src/rewrite/matcher.ts';
import { rewritePromQL } from '../src/rewrite/promql.ts';
import { astSelectors, promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';

interface Entry {
  readonly q: string;
  readonly src: string;
}

const corpus: Entry[] = readFileSync(new URL('./corpus/promql-realworld.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as Entry);

const POLICIES: Readonly<Record<string, SelectorPolicy>> = {
  'ns-regex': [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]],
  'utf8-quoted': [[{ name: 'k8s.namespace.name', op: '=', value: 'we"ird\\ns é' }, { name: 'job', op: '!=', value: 'x' }]],
  dnf: [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }], [{ name: 'namespace', op: '=', value: 'platform' }, { name: 'job', op: '=', value: 'api' }]],
};


let prom: PrometheusInstance;
const parse = async (q: string): Promise<{ ok: boolean; error: string; data: unknown }> => {
  const r = await promGet(prom.url, '/api/v1/parse_query', { query: q });
  return { ok: r.status === 200 && r.body.status === 'success', error: r.body.error ?? '', data: r.body.data };
};

beforeAll(async () => {
  prom = await startPrometheus({ openMetrics: '# EOF\n' });
}, 120_000);
afterAll(async () => {
  await prom?.stop();
});

describe('real-world PromQL through the rewriter, checked by Prometheus', () => {
  it('the corpus: over 1 000 distinct queries, every one of which Prometheus parses', async () => {
    expect(corpus.length).toBeGreaterThan(1000);
    expect(new Set(corpus.map((e) => e.q)).size).toBe(corpus.length);
    const rejected: string[] = [];
    for (const { q } of corpus) if (!(await parse(q)).ok) rejected.push(q);
    expect(rejected).toEqual([]);
  }, 300_000);

  it.each(Object.keys(POLICIES))('policy %s: every query rewritten, parsed by Prometheus, every selector enforced', async (name) => {
    const policy = POLICIES[name] as SelectorPolicy;
    const problems: string[] = [];
    let selectors = 0;
    for (const { q, src } of corpus) {
      let out: string;
      try {
        out = rewritePromQL(q, policy);
      } catch (e) {
        if (!(e instanceof QueryError)) throw e;
        problems.push(`refused (${e.code}: ${e.message}): ${JSON.stringify(q)} [${src}]`);
        continue;
      }
      const p = await parse(out);
      if (!p.ok) {
        problems.push(`Prometheus cannot parse the rewrite (${p.error}): ${JSON.stringify(out)} [${src}]`);
        continue;
      }
      for (const { matchers: ms } of astSelectors(p.data)) {
        selectors++;
        const ok = policy.some((g) => g.every((m) => ms.some((pm) => pm.name === m.name && pm.type === m.op && pm.value === m.value)));
        if (!ok) problems.push(`unenforced selector ${JSON.stringify(ms)} in ${JSON.stringify(out)} [${src}]`);
      }
    }
    expect(problems).toEqual([]);
    expect(selectors).toBeGreaterThan(corpus.length);
  }, 300_000);
});
