// Parser differential under mutation: every corpus query (hand-written and
// real-world) with line breaks, tabs and comments (some holding `}`, `{` and
// quotes) inserted at token boundaries, given to the real Prometheus and to the
// gateway. A comment or line break is where a parser that reads differently
// from Prometheus would hide a selector. Seeded, so a failure reproduces.
//   - Prometheus accepts it → the gateway accepts it (no broken query);
//   - the gateway accepts it → Prometheus parses the rewrite, and every
//     selector in the AST it returns carries the policy (no leak).
// The gateway may accept what Prometheus refuses (e.g. a comment inside `[5m]`):
// the rewrite is forwarded and Prometheus refuses it, as it refuses the original.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryError } from '../src/errors.ts';
import type { SelectorPolicy } from '../src/rewrite/matcher.ts';
import { rewritePromQL } from '../src/rewrite/promql.ts';
import { astSelectors, promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';

const queries = ['promql.jsonl', 'promql-realworld.jsonl'].flatMap((f) =>
  readFileSync(new URL(`./corpus/${f}`, import.meta.url), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => (JSON.parse(l) as { q: string }).q),
);

const INSERTS = ['\n', ' # c\n', '\t', '\r\n', ' #}{"\n', '\n#x\n  ', '  '];
const BOUNDARY = /[\s(){}[\],=!~<>+\-*/^%@:]/;

/** A small deterministic generator (LCG), so the mutants are the same on every run. */
function rng(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
}

/** `q` with two inserts at token boundaries outside string literals. */
function mutate(q: string, next: (n: number) => number): string {
  const spans = q.split(/("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)/);
  const at: number[] = [];
  let offset = 0;
  spans.forEach((span, i) => {
    if (i % 2 === 0) {
      for (let k = 0; k <= span.length; k++) if (BOUNDARY.test(span[k - 1] ?? ' ') || BOUNDARY.test(span[k] ?? ' ')) at.push(offset + k);
    }
    offset += span.length;
  });
  const picks = [at[next(at.length)] as number, at[next(at.length)] as number].sort((a, b) => b - a);
  let out = q;
  for (const p of picks) out = out.slice(0, p) + (INSERTS[next(INSERTS.length)] as string) + out.slice(p);
  return out;
}

const POLICY: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'team-a' }]];

let prom: PrometheusInstance;
beforeAll(async () => {
  prom = await startPrometheus({ openMetrics: '# EOF\n' });
}, 120_000);
afterAll(async () => {
  await prom?.stop();
});

describe('PromQL under comment and line-break mutations, against the real Prometheus', () => {
  it('no query Prometheus accepts is refused, no rewrite it cannot parse, no selector without the policy', async () => {
    const next = rng(20261126);
    const counts = { mutants: 0, bothAccept: 0, gatewayOnly: 0, neither: 0 };
    const problems: string[] = [];
    for (const q of queries) {
      const v = mutate(q, next);
      counts.mutants++;
      const original = await promGet(prom.url, '/api/v1/parse_query', { query: v });
      let out: string | null = null;
      try {
        out = rewritePromQL(v, POLICY);
      } catch (e) {
        if (!(e instanceof QueryError)) throw e;
        if (original.status === 200) problems.push(`refused (${e.message}) though Prometheus parses ${JSON.stringify(v)}`);
        else counts.neither++;
        continue;
      }
      if (original.status === 200) counts.bothAccept++;
      else counts.gatewayOnly++;
      const rewritten = await promGet(prom.url, '/api/v1/parse_query', { query: out });
      if (rewritten.status !== 200) {
        if (original.status === 200) problems.push(`Prometheus cannot parse the rewrite ${JSON.stringify(out)} of ${JSON.stringify(v)}`);
        continue;
      }
      for (const s of astSelectors(rewritten.body.data)) {
        if (!s.matchers.some((m) => m.name === 'namespace' && m.type === '=' && m.value === 'team-a')) {
          problems.push(`unenforced selector ${JSON.stringify(s.matchers)} in ${JSON.stringify(out)} (from ${JSON.stringify(v)})`);
        }
      }
    }
    expect(problems).toEqual([]);
    // The mutants are mostly still valid PromQL: the check above ran on many.
    expect(counts.bothAccept).toBeGreaterThan(counts.mutants * 0.7);
  }, 600_000);
});
