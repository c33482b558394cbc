/**
 * Parser parity on the TraceQL corpus (e2e/corpus/traceql.jsonl:
 * {"q", "valid", "note"}, `valid` = Tempo's parser accepts the query, from
 * Tempo's documentation and its published valid/invalid example queries).
 *
 * Reports, for the gateway (project grammar + lexical checks, through the
 * rewriter) and for @grafana/lezer-traceql 1.0.0: accepted-valid,
 * rejected-valid, accepted-invalid, rejected-invalid. Fails when the gateway
 * disagrees with the corpus, or when any accepted query comes out with a
 * filter or a pipeline the independent oracle finds unenforced.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parser as officialParser } from '@grafana/lezer-traceql';
import { describe, expect, it } from 'vitest';
import { QueryError } from '../../src/errors.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { rewriteTraceQL } from '../../src/rewrite/traceql.ts';
import type { Tok } from './traceql-oracle.ts';
import { filterEnforced, filterText, oracleAnalyze } from './traceql-oracle.ts';

interface Row {
  readonly q: string;
  readonly valid: boolean;
  readonly note: string;
}

const rows: Row[] = readFileSync(join(import.meta.dirname, '..', '..', 'e2e', 'corpus', 'traceql.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as Row);

const POLICY: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=', value: 'team-a' }]];
const DNF: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=', value: 'team-a' }], [{ name: 'span.tenant', op: '=~', value: 'a|b' }]];

const T = (k: Tok['k'], v: string): Tok => ({ k, v, from: 0, to: 0 });
const SINGLE = [T('field', 'resource.k8s.namespace.name'), T('op', '='), T('str', 'team-a')];
const DNF_ALONE = [T('op', '('), ...SINGLE, T('op', ')'), T('op', '||'), T('op', '('), T('field', 'span.tenant'), T('op', '=~'), T('str', '^(?s:a|b)$'), T('op', ')')];
const DNF_CLAUSE = [T('op', '('), ...DNF_ALONE, T('op', ')')];

interface Tally {
  acceptedValid: number;
  rejectedValid: string[];
  acceptedInvalid: string[];
  rejectedInvalid: number;
  refused: string[];
}

const tally = (): Tally => ({ acceptedValid: 0, rejectedValid: [], acceptedInvalid: [], rejectedInvalid: 0, refused: [] });

function record(t: Tally, r: Row, accepted: boolean): void {
  if (r.valid && accepted) t.acceptedValid++;
  else if (r.valid) t.rejectedValid.push(r.q);
  else if (accepted) t.acceptedInvalid.push(r.q);
  else t.rejectedInvalid++;
}

function summary(name: string, t: Tally): string {
  return `${name}: accepted-valid ${t.acceptedValid}, rejected-valid ${t.rejectedValid.length}, accepted-invalid ${t.acceptedInvalid.length}, rejected-invalid ${t.rejectedInvalid}`;
}

describe('TraceQL parser parity corpus', () => {
  it('has at least 80 queries, both valid and invalid', () => {
    expect(rows.length).toBeGreaterThanOrEqual(80);
    expect(rows.filter((r) => r.valid).length).toBeGreaterThan(40);
    expect(rows.filter((r) => !r.valid).length).toBeGreaterThan(30);
  });

  it('gateway: agrees with Tempo on every corpus query, and every accepted query is fully enforced', () => {
    const ours = tally();
    const official = tally();
    const strictOfficial = officialParser.configure({ strict: true });
    for (const r of rows) {
      // Official grammar (measurement only).
      let ok = r.q.trim() !== '';
      if (ok) {
        try {
          strictOfficial.parse(r.q);
        } catch {
          ok = false;
        }
      }
      record(official, r, ok);
      // The gateway.
      let out: string | null = null;
      let outDnf: string | null = null;
      try {
        out = rewriteTraceQL(r.q, POLICY);
        outDnf = rewriteTraceQL(r.q, DNF);
      } catch (e) {
        if (!(e instanceof QueryError)) throw e;
        if (e.code === 'rewrite_unsupported') {
          // Parsed, then deliberately refused (e.g. parent attributes): counts as accepted by the parser.
          ours.refused.push(r.q);
          record(ours, r, true);
          continue;
        }
        expect(['bad_query', 'query_too_large']).toContain(e.code);
      }
      record(ours, r, out !== null);
      for (const [o, clause, alone] of [
        [out, SINGLE, SINGLE],
        [outDnf, DNF_CLAUSE, DNF_ALONE],
      ] as const) {
        if (o === null) continue;
        const res = oracleAnalyze(o);
        for (const f of res.filters) {
          if (!filterEnforced(res, f, clause, alone)) throw new Error(`unenforced filter ${filterText(o, res, f)} in ${JSON.stringify(o)} (from ${JSON.stringify(r.q)})`);
        }
        expect(res.badHead, `pipeline without a leading filter in ${JSON.stringify(o)}`).toBe(false);
      }
    }
    console.log(`TraceQL corpus (${rows.length} queries)\n  ${summary('gateway (project grammar)', ours)}\n  ${summary('@grafana/lezer-traceql 1.0.0', official)}`);
    console.log(`  refused after parsing (rewrite_unsupported): ${ours.refused.map((q) => JSON.stringify(q)).join(', ') || 'none'}`);
    console.log(`  official rejected-valid:\n    ${official.rejectedValid.map((q) => JSON.stringify(q)).join('\n    ')}`);
    console.log(`  official accepted-invalid:\n    ${official.acceptedInvalid.map((q) => JSON.stringify(q)).join('\n    ')}`);
    expect(ours.rejectedValid).toEqual([]);
    expect(ours.acceptedInvalid).toEqual([]);
  });
});
