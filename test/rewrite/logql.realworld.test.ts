/**
 * Real-world LogQL (e2e/corpus/logql-realworld.jsonl: dashboard panels and
 * rules from public, permissively licensed repositories, Grafana's template
 * variables substituted as Grafana sends them, plus the valid cases of
 * Grafana's LogQL editor grammar tests; sources and licences in
 * e2e/corpus/README.md) through the rewriter under a one-group and a
 * two-group policy. Every query is rewritten, except the listed, reasoned
 * exclusions below; every selector of every rewrite carries a whole policy
 * group (independent oracle, test/rewrite/logql-oracle.ts); single-group
 * rewrites are idempotent.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { QueryError } from '../../src/errors.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { rewriteLogQL } from '../../src/rewrite/logql.ts';
import { carries, oracleSelectors } from './logql-oracle.ts';

interface Entry {
  readonly q: string;
  readonly src: string;
}

const corpus: Entry[] = readFileSync(new URL('../../e2e/corpus/logql-realworld.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as Entry);

const ONE: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'team-a' }]];
const DNF: SelectorPolicy = [
  [
    { name: 'namespace', op: '=', value: 'team-a' },
    { name: 'secret', op: '!=', value: 'true' },
  ],
  [{ name: 'namespace', op: '=', value: 'team-b' }],
];

interface Exclusion {
  readonly reason: string;
  readonly code: 'bad_query' | 'rewrite_unsupported';
  /** Under which policies the refusal is expected. */
  readonly policies: readonly ('one' | 'dnf')[];
  readonly applies: (q: string) => boolean;
}

// A log query (not a metric query): its outermost expression is a stream selector.
const isLogQuery = (q: string): boolean => q.trimStart().startsWith('{');

const EXCLUSIONS: readonly Exclusion[] = [
  {
    // grafana/jsonnet-libs microsoft-iis-logs.json: the logs panel ends in "[ ]". Loki's
    // lexer reads "[" as the start of a range and needs a duration before "]": Loki
    // answers a parse error too, so the refusal is Loki's own.
    reason: 'Loki rejects it as well: "[ ]" is not a range (no duration)',
    code: 'bad_query',
    policies: ['one', 'dnf'],
    applies: (q) => /\n\[ \]\n$/.test(q),
  },
  {
    // docs/rewriting-logql.md, "Several alternatives (DNF)": a log query can name one
    // stream selector only, and Loki has no "or" between log queries.
    reason: 'a log query under a policy with several alternatives that the selector can match (by design; policyEnforcement: header lifts it)',
    code: 'rewrite_unsupported',
    policies: ['dnf'],
    applies: isLogQuery,
  },
  {
    // docs/rewriting-logql.md, "Several alternatives (DNF)": quantile_over_time() by (path|host)
    // keeps labels on which the two alternatives are not provably disjoint, so an "or" of
    // per-alternative queries could merge or drop series.
    reason: 'quantile_over_time() by (…) with alternatives not provably disjoint on a kept label (by design)',
    code: 'rewrite_unsupported',
    policies: ['dnf'],
    applies: (q) => q.startsWith('quantile_over_time('),
  },
];

function run(name: 'one' | 'dnf', policy: SelectorPolicy) {
  const unexpected: string[] = [];
  const unenforced: string[] = [];
  const notIdempotent: string[] = [];
  const excluded = new Map<Exclusion, number>();
  let rewritten = 0;
  let selectors = 0;
  for (const { q, src } of corpus) {
    let out: string;
    try {
      out = rewriteLogQL(q, policy);
    } catch (e) {
      if (!(e instanceof QueryError)) throw e;
      const ex = EXCLUSIONS.find((x) => x.policies.includes(name) && x.code === e.code && x.applies(q));
      if (ex === undefined) unexpected.push(`${e.code}: ${e.message}\n    ${JSON.stringify(q)} [${src}]`);
      else excluded.set(ex, (excluded.get(ex) ?? 0) + 1);
      continue;
    }
    rewritten++;
    for (const s of oracleSelectors(out)) {
      selectors++;
      if (!policy.some((g) => g.every((m) => carries(s, m)))) unenforced.push(`${JSON.stringify(q.slice(s.from, s.to))} in ${JSON.stringify(out)} [${src}]`);
    }
    if (policy.length === 1 && rewriteLogQL(out, policy) !== out) notIdempotent.push(JSON.stringify(q));
  }
  return { unexpected, unenforced, notIdempotent, excluded, rewritten, selectors };
}

describe('real-world LogQL through the rewriter', () => {
  it('the corpus: over 100 distinct queries, each naming its source file', () => {
    expect(corpus.length).toBeGreaterThan(100);
    expect(new Set(corpus.map((e) => e.q)).size).toBe(corpus.length);
    for (const e of corpus) expect(e.src).toMatch(/^[\w.-]+\/[\w.-]+:\S+$/);
  });

  it('one-group policy: every query rewritten (but the one Loki rejects too), every selector enforced, idempotent', () => {
    const r = run('one', ONE);
    expect(r.unexpected).toEqual([]);
    expect(r.unenforced).toEqual([]);
    expect(r.notIdempotent).toEqual([]);
    expect(r.rewritten).toBe(corpus.length - 1);
    expect(r.selectors).toBeGreaterThan(r.rewritten);
  });

  it('two-group (DNF) policy: rewritten exactly or refused for a listed reason, never unenforced', () => {
    const r = run('dnf', DNF);
    expect(r.unexpected).toEqual([]);
    expect(r.unenforced).toEqual([]);
    // every metric query but the quantile_over_time() ones is rewritten (and the log queries
    // whose selector can match one alternative only, e.g. namespace="loki" matches neither)
    const metric = corpus.filter((e) => !isLogQuery(e.q) && !e.q.startsWith('quantile_over_time(')).length;
    expect(r.rewritten).toBeGreaterThanOrEqual(metric);
    expect(r.excluded.get(EXCLUSIONS[2] as Exclusion)).toBe(2);
  });
});
