/**
 * Shared by the LogQL and TraceQL lexical-differential tests
 * (logql.lexclasses.test.ts, traceql.lexclasses.test.ts): a rewrite's outcome,
 * the per-class table runner, the exact-outcome helpers, and the fuzz that
 * splices adversarial fragments into valid queries. Each language supplies its
 * rewriter and its own `expectSafe` (refused, or enforced as the backend's
 * lexer reads the output).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QueryError } from '../../src/errors.ts';

export type Outcome = { ok: true; out: string } | { ok: false; code: string };

/** The rewrite's output, or the QueryError code it refused with; any other error is a bug and propagates. */
export function attempt(rewrite: () => string): Outcome {
  try {
    return { ok: true, out: rewrite() };
  } catch (e) {
    if (e instanceof QueryError) return { ok: false, code: e.code };
    throw e;
  }
}

/** One test per token class: every query is safe, and at least one is accepted (the class is not simply refused). */
export function describeClasses(title: string, classes: readonly [string, readonly string[]][], expectSafe: (q: string) => Outcome): void {
  describe(title, () => {
    for (const [cls, qs] of classes) {
      it(cls, () => {
        let accepted = 0;
        for (const q of qs) if (expectSafe(q).ok) accepted++;
        expect(accepted).toBeGreaterThan(0);
      });
    }
  });
}

/** `out(q)`: the rewrite, failing the test when it is refused; `refused(q)`: whether it is. */
export function exactOutcomes(run: (q: string) => Outcome): { out: (q: string) => string; refused: (q: string) => boolean } {
  return {
    out: (q) => {
      const r = run(q);
      if (!r.ok) throw new Error(`refused (${r.code}): ${q}`);
      return r.out;
    },
    refused: (q) => !run(q).ok,
  };
}

/**
 * 2 500 queries made from `seeds` by inserting 1–3 runs of `fragments` (and
 * deleting up to two characters) at arbitrary places: each must be safe;
 * returns how many were accepted, so a caller can check the fuzz reached the rewriter.
 */
export function spliceFuzz(seeds: readonly string[], fragments: readonly string[], expectSafe: (q: string) => Outcome): number {
  let accepted = 0;
  const edit = fc.tuple(fc.nat(), fc.array(fc.constantFrom(...fragments), { minLength: 1, maxLength: 3 }), fc.nat(2));
  fc.assert(
    fc.property(fc.constantFrom(...seeds), fc.array(edit, { minLength: 1, maxLength: 3 }), (seed, edits) => {
      let q = seed;
      for (const [pos, frags, del] of edits) {
        const at = pos % (q.length + 1);
        q = q.slice(0, at) + frags.join('') + q.slice(at + del);
      }
      if (expectSafe(q).ok) accepted++;
    }),
    { numRuns: 2500 },
  );
  return accepted;
}

/**
 * 1 500 queries from `queries` (a generator of valid-looking queries built
 * from tricky tokens), four in five with one of `fragments` inserted at an
 * arbitrary place: each must be safe; returns how many were accepted.
 */
export function structuredFuzz(queries: fc.Arbitrary<string>, fragments: readonly string[], expectSafe: (q: string) => Outcome): number {
  let accepted = 0;
  fc.assert(
    fc.property(queries, fc.option(fc.tuple(fc.nat(), fc.constantFrom(...fragments)), { freq: 4 }), (q0, ins) => {
      let q = q0;
      if (ins !== null) {
        const at = ins[0] % (q.length + 1);
        q = q.slice(0, at) + ins[1] + q.slice(at);
      }
      if (expectSafe(q).ok) accepted++;
    }),
    { numRuns: 1500 },
  );
  return accepted;
}
