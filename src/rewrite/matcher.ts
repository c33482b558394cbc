/**
 * The one matcher model shared by the PromQL, LogQL and TraceQL rewriters and by
 * the policy decision contract.
 *
 * A `Matcher` is a label (or, for Tempo, attribute) name, an operator and a value.
 * `=~`/`!~` values are RE2 regular expressions; for PromQL/LogQL they are fully
 * anchored by the backend. A `MatcherGroup` is ANDed; a `SelectorPolicy` is a
 * disjunction (OR) of groups — disjunctive normal form, as in GEM LBAC.
 */
export const MATCH_OPS = ['=', '!=', '=~', '!~'] as const;
export type MatchOp = (typeof MATCH_OPS)[number];

export interface Matcher {
  readonly name: string;
  readonly op: MatchOp;
  readonly value: string;
}

/** Matchers that must all hold (AND). */
export type MatcherGroup = readonly Matcher[];

/** Alternatives of which at least one must hold (OR of ANDs). Never empty when enforced. */
export type SelectorPolicy = readonly MatcherGroup[];

export function isMatchOp(op: unknown): op is MatchOp {
  return typeof op === 'string' && (MATCH_OPS as readonly string[]).includes(op);
}

export function matcherEquals(a: Matcher, b: Matcher): boolean {
  return a.name === b.name && a.op === b.op && a.value === b.value;
}

/** Stable textual key for a matcher, used for de-duplication and cache keys. */
export function matcherKey(m: Matcher): string {
  return `${m.name}\u0000${m.op}\u0000${m.value}`;
}
