// Prometheus 3.16 with `--enable-feature=promql-unquoted-utf8-names` reads
// unquoted dotted names (`http.server.duration`) as one metric name, so a
// keyword followed by a fraction (`bool.5`, `group_left.5`) is a *selector*
// to it, while lezer-promql (and Prometheus without the flag) reads the
// keyword and the number `.5`. The gateway would see no selector there and
// forward it without the policy. Checked against a real Prometheus with the
// flag, seeded with another team's series of exactly those names: such
// queries are refused; the same queries written with a space mean the same to
// both and are enforced; and over both corpora (and their numbers respelled
// as `.5` right after the preceding token), every rewrite Prometheus parses
// under the flag has every selector enforced.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryError } from '../src/errors.ts';
import type { SelectorPolicy } from '../src/rewrite/matcher.ts';
import { rewritePromQL } from '../src/rewrite/promql.ts';
import { buildTeamsOpenMetrics, seedEndSeconds } from './fixtures/seed.ts';
import { astSelectors, promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';

const POLICY: SelectorPolicy = [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]];
const enforced = (s: { matchers: { name: string; type: string; value: string }[] }): boolean =>
  s.matchers.some((m) => m.name === 'namespace' && m.type === '=~' && m.value === 'team-a-.*');

// Another team's series whose metric names are a keyword and a fraction.
const SHADOW_NAMES = ['bool.5', 'group_left.5', 'group_right.5e3'];

let prom: PrometheusInstance;
let evalTime: number;

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  const teams = buildTeamsOpenMetrics({ now }).replace(/# EOF\n$/, '');
  let shadow = '';
  for (const name of SHADOW_NAMES) {
    shadow += `# TYPE "${name}" gauge\n`;
    for (let t = evalTime - 600; t <= evalTime; t += 15) shadow += `{"${name}",namespace="team-b-api"} 7 ${t}\n`;
  }
  prom = await startPrometheus({ openMetrics: `${teams}${shadow}# EOF\n`, extraArgs: ['--enable-feature=promql-unquoted-utf8-names'] });
}, 120_000);
afterAll(async () => {
  await prom?.stop();
});

const parse = async (q: string) => {
  const r = await promGet(prom.url, '/api/v1/parse_query', { query: q });
  return { ok: r.status === 200, data: r.body.data };
};

const corpus = (): string[] =>
  ['promql.jsonl', 'promql-realworld.jsonl'].flatMap((f) =>
    readFileSync(new URL(`./corpus/${f}`, import.meta.url), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => (JSON.parse(l) as { q: string }).q),
  );

describe('Prometheus with unquoted UTF-8 names: a keyword and a fraction', () => {
  const MERGED = ['up > bool.5', 'vector(1) * on() group_left.5', 'up * on(job) group_right.5e3', 'sum by (job) (up) > bool.5', 'rate(http_requests_total[5m]) > bool.5'];

  it.each(MERGED)('%s: Prometheus reads a selector the grammar does not; the gateway refuses it', async (q) => {
    const p = await parse(q);
    expect(p.ok, 'Prometheus parses it').toBe(true);
    const names = astSelectors(p.data).flatMap((s) => s.matchers.filter((m) => m.name === '__name__').map((m) => m.value));
    expect(names.some((n) => SHADOW_NAMES.includes(n)), `the gap is real: ${JSON.stringify(names)}`).toBe(true);
    expect(() => rewritePromQL(q, POLICY)).toThrow(/right after a name/);
  });

  it('the merged name selects another team\'s series: asked directly, Prometheus answers it', async () => {
    const r = await promGet<{ result: { value: [number, string] }[] }>(prom.url, '/api/v1/query', { query: 'vector(1) * on() group_left.5', time: String(evalTime) });
    expect(r.status).toBe(200);
    expect(r.body.data!.result.map((s) => s.value[1])).toContain('7');
  });

  it.each(['up > bool .5', 'up > bool 0.5', 'up > bool 5', 'rate(http_requests_total[5m]) > bool 0.5'])('%s (with a space) means the same to both: enforced', async (q) => {
    const out = rewritePromQL(q, POLICY);
    const p = await parse(out);
    expect(p.ok).toBe(true);
    const sels = astSelectors(p.data);
    expect(sels.length).toBeGreaterThan(0);
    for (const s of sels) expect(enforced(s), `${out}: ${JSON.stringify(s.matchers)}`).toBe(true);
  });

  it('both corpora, and their numbers written as ".5" right after the token before: every rewrite Prometheus parses has every selector enforced', async () => {
    const variants = new Set<string>();
    for (const q of corpus()) {
      variants.add(q);
      // `> bool 0.5` → `> bool.5`, `> 0.9` → `>.9`, `* 100` → `*100`: no separator before a number.
      const tight = q.replace(/\s+0?(\.[0-9]|[1-9])/g, '$1');
      if (tight !== q) variants.add(tight);
    }
    expect(variants.size).toBeGreaterThan(2000);
    const problems: string[] = [];
    let checked = 0;
    for (const q of variants) {
      let out: string;
      try {
        out = rewritePromQL(q, POLICY);
      } catch (e) {
        if (!(e instanceof QueryError)) throw e;
        continue; // refused: nothing forwarded (false refusals are the mutation suite's subject)
      }
      const p = await parse(out);
      if (!p.ok) continue; // Prometheus refuses it: nothing evaluated
      checked++;
      for (const s of astSelectors(p.data)) if (!enforced(s)) problems.push(`${JSON.stringify(q)} → ${JSON.stringify(out)}: ${JSON.stringify(s.matchers)}`);
    }
    expect(problems).toEqual([]);
    expect(checked).toBeGreaterThan(1500);
  }, 300_000);
});
