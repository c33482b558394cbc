/**
 * Parser parity on a corpus of realistic LogQL (dashboards, alert rules,
 * Explore), each line marked valid or invalid according to Loki's documented
 * syntax and its parser's rules (e2e/corpus/logql.jsonl). Loki
 * itself cannot run on this machine, so the reference is the documentation.
 *
 * Fails when any accepted query (valid or not) comes out with a selector
 * that does not carry the policy — as read by the independent oracle — and
 * pins the parity figures so that a regression is noticed.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { QueryError } from '../../src/errors.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { rewriteLogQL } from '../../src/rewrite/logql.ts';
import { carries, oracleSelectors } from './logql-oracle.ts';

interface Entry {
  readonly q: string;
  readonly valid: boolean;
  readonly note: string;
}

const corpus: Entry[] = readFileSync(new URL('../../e2e/corpus/logql.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as Entry);

const POLICY: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'team-a' }]];

describe('LogQL corpus parity', () => {
  it('has at least 120 realistic queries', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(120);
    expect(new Set(corpus.map((e) => e.q)).size).toBe(corpus.length);
  });

  it('accepted queries are always enforced; parity figures', () => {
    const counts = { acceptedValid: 0, rejectedValid: 0, acceptedInvalid: 0, rejectedInvalid: 0 };
    const rejectedValid: string[] = [];
    const acceptedInvalid: string[] = [];
    const unenforced: string[] = [];
    for (const e of corpus) {
      let out: string | null = null;
      try {
        out = rewriteLogQL(e.q, POLICY);
      } catch (err) {
        if (!(err instanceof QueryError)) throw err;
        expect(['bad_query', 'rewrite_unsupported']).toContain(err.code);
      }
      if (out === null) {
        if (e.valid) {
          counts.rejectedValid++;
          rejectedValid.push(`${JSON.stringify(e.q)} (${e.note})`);
        } else counts.rejectedInvalid++;
        continue;
      }
      if (e.valid) counts.acceptedValid++;
      else {
        counts.acceptedInvalid++;
        acceptedInvalid.push(`${JSON.stringify(e.q)} (${e.note})`);
      }
      let ok = true;
      try {
        for (const s of oracleSelectors(out)) if (!carries(s, { name: 'namespace', op: '=', value: 'team-a' })) ok = false;
      } catch {
        ok = false;
      }
      if (!ok) unenforced.push(`${JSON.stringify(e.q)} → ${JSON.stringify(out)}`);
    }
    console.log(
      `LogQL corpus: ${corpus.length} queries; valid: ${counts.acceptedValid} accepted, ${counts.rejectedValid} rejected; invalid: ${counts.acceptedInvalid} accepted, ${counts.rejectedInvalid} rejected\n` +
        `  rejected valid:\n    ${rejectedValid.join('\n    ')}\n  accepted invalid:\n    ${acceptedInvalid.join('\n    ') || '(none)'}`,
    );
    expect(unenforced).toEqual([]);
    // Pinned parity: raise the bar when a gap is closed.
    expect(counts.acceptedInvalid).toBe(0);
    expect(counts.rejectedValid).toBeLessThanOrEqual(2);
  });

  it('multi-group policy: every query is rewritten exactly or refused, never left unenforced', () => {
    const dnf: SelectorPolicy = [
      [
        { name: 'namespace', op: '=', value: 'team-a' },
        { name: 'secret', op: '!=', value: 'true' },
      ],
      [{ name: 'namespace', op: '=', value: 'team-b' }],
    ];
    let rewritten = 0;
    for (const e of corpus) {
      let out: string;
      try {
        out = rewriteLogQL(e.q, dnf);
      } catch (err) {
        if (!(err instanceof QueryError)) throw err;
        expect(['bad_query', 'rewrite_unsupported']).toContain(err.code);
        continue;
      }
      rewritten++;
      for (const s of oracleSelectors(out)) expect(dnf.some((g) => g.every((m) => carries(s, m)))).toBe(true);
    }
    expect(rewritten).toBeGreaterThan(20);
  });
});
