/**
 * TraceQL from public, permissively licensed sources
 * (e2e/corpus/traceql-realworld.jsonl; sources and licences in
 * e2e/corpus/README.md) through the rewriter under a one-group and a
 * two-group policy: every query is rewritten but the listed ones Tempo rejects
 * too (refused as bad_query), every
 * filter of every rewrite is enforced and every pipeline is led by a filter
 * (independent oracle, test/rewrite/traceql-oracle.ts), and rewriting is
 * idempotent (as in traceql.property.test.ts, for both policies).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { QueryError } from '../../src/errors.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { rewriteTraceQL } from '../../src/rewrite/traceql.ts';
import type { Tok } from './traceql-oracle.ts';
import { filterEnforced, filterText, oracleAnalyze } from './traceql-oracle.ts';

interface Entry {
  readonly q: string;
  readonly src: string;
}

const corpus: Entry[] = readFileSync(new URL('../../e2e/corpus/traceql-realworld.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as Entry);

const ONE: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=', value: 'team-a' }]];
const DNF: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=', value: 'team-a' }], [{ name: 'span.tenant', op: '=~', value: 'a|b' }]];

const T = (k: Tok['k'], v: string): Tok => ({ k, v, from: 0, to: 0 });
const SINGLE = [T('field', 'resource.k8s.namespace.name'), T('op', '='), T('str', 'team-a')];
const DNF_ALONE = [T('op', '('), ...SINGLE, T('op', ')'), T('op', '||'), T('op', '('), T('field', 'span.tenant'), T('op', '=~'), T('str', '^(?s:a|b)$'), T('op', ')')];
const DNF_CLAUSE = [T('op', '('), ...DNF_ALONE, T('op', ')')];

/**
 * Listed, reasoned refusals. grafana/mcp-grafana's TraceQL notes (tools/tempo.go) write
 * by() after a spanset aggregate; Tempo's grammar (pkg/traceql/expr.y) has no such form:
 * aggregate is count()/min/max/avg/sum(…) only, by(…) is a pipeline stage of its own or
 * follows a metrics function (rate(), count_over_time(), …), and a bare aggregate needs a
 * comparison. Tempo answers a parse error too, so these refusals are Tempo's own.
 */
const TEMPO_REJECTS = 'Tempo rejects it as well: by(…) after a spanset aggregate is not TraceQL';
const EXCLUSIONS: ReadonlyMap<string, string> = new Map([
  ['{ } | count() by(resource.service.name) > 10', TEMPO_REJECTS],
  ['{ } | avg(duration) by(span.http.method)', TEMPO_REJECTS],
  ['{ } | count() by(resource.service.name) | coalesce() | count() > 3', TEMPO_REJECTS],
]);

describe('real-world TraceQL through the rewriter', () => {
  it('the corpus: distinct queries, each naming its source file', () => {
    expect(corpus.length).toBeGreaterThan(100);
    expect(new Set(corpus.map((e) => e.q)).size).toBe(corpus.length);
    for (const e of corpus) expect(e.src).toMatch(/^[\w.-]+\/[\w.-]+:\S+$/);
  });

  it.each([
    ['one-group', ONE, SINGLE, SINGLE],
    ['two-group (DNF)', DNF, DNF_CLAUSE, DNF_ALONE],
  ] as const)('%s policy: every query rewritten, every filter enforced, idempotent', (_name, policy, clause, alone) => {
    const refused: string[] = [];
    const problems: string[] = [];
    let filters = 0;
    for (const { q, src } of corpus) {
      let out: string;
      try {
        out = rewriteTraceQL(q, policy);
      } catch (e) {
        if (!(e instanceof QueryError)) throw e;
        if (!EXCLUSIONS.has(q) || e.code !== 'bad_query') refused.push(`${e.code}: ${e.message}\n    ${JSON.stringify(q)} [${src}]`);
        continue;
      }
      if (EXCLUSIONS.has(q)) problems.push(`listed as refused but rewritten: ${JSON.stringify(q)}`);
      const res = oracleAnalyze(out);
      for (const f of res.filters) {
        filters++;
        if (!filterEnforced(res, f, clause, alone)) problems.push(`unenforced filter ${filterText(out, res, f)} in ${JSON.stringify(out)} [${src}]`);
      }
      if (res.badHead) problems.push(`pipeline without a leading filter in ${JSON.stringify(out)} [${src}]`);
      if (rewriteTraceQL(out, policy) !== out) problems.push(`not idempotent: ${JSON.stringify(q)}`);
    }
    expect(refused).toEqual([]);
    expect(problems).toEqual([]);
    expect(filters).toBeGreaterThan(corpus.length);
  });
});
