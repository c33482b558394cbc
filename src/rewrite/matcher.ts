/**
 * The one matcher model shared by the PromQL, LogQL and TraceQL rewriters and by
 * the policy decision contract.
 *
 * A `Matcher` is a label (or, for Tempo, attribute) name, an operator and a value.
 * `=~`/`!~` values are RE2 regular expressions; for PromQL/LogQL they are fully
 * anchored by the backend. A `MatcherGroup` is ANDed; a `SelectorPolicy` is a
 * disjunction (OR) of groups — disjunctive normal form, as in GEM LBAC.
 */
import { RE2JS } from 're2js';
import { RegexCache } from './regex-cache.ts';
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

// ---- Evaluating matchers against label sets (response filtering) ----------

/**
 * Throws (RE2's error) unless a matcher's regex value compiles on its own and
 * inside a group. Backends wrap the value (`^(?s:re)$`) and value lists join it
 * (`a|(?:re)`): a value valid only as written (`x)|(.*`) or only once wrapped,
 * or an unterminated `\Q` that swallows the wrapper's parenthesis, would change
 * meaning there, e.g. into "anything".
 */
export function checkMatcherRegex(value: string): void {
  RE2JS.compile(value);
  RE2JS.compile(`(?:${value})`);
}

const regexCache = new RegexCache<RegExpLike>();
/** What the compiled-matcher cache holds (for tests). */
export const matcherRegexCache: { readonly size: number; readonly cost: number } = regexCache;
interface RegExpLike {
  matches(input: string): boolean;
}

/**
 * RE2, fully anchored, `.` matching a newline: `^(?s:re)$`, as Prometheus'
 * `labels.NewFastRegexMatcher` compiles it (Loki and Tempo use the same
 * matcher). Bounded cache.
 */
function anchored(re: string): RegExpLike {
  return regexCache.get(re, compileAnchored);
}

function compileAnchored(re: string): RegExpLike {
  const p = RE2JS.compile(`^(?s:${re})$`);
  return { matches: (s: string) => p.matches(s) };
}

/** Does one matcher hold for a value? A missing label is the empty string, as in PromQL. (One value: matcherTest for many.) */
export function matcherMatches(m: Matcher, value: string | undefined): boolean {
  return matcherTest(m)(value);
}

/**
 * A label set is visible under a policy when every matcher of at least one group holds.
 * Only the set's own labels count: a label set parsed from JSON inherits `constructor`,
 * `toString`, `__proto__`…, which are no labels (a missing label is the empty string).
 */
export function policyMatchesLabels(policy: SelectorPolicy, labels: Readonly<Record<string, string>>): boolean {
  return policyLabelsTest(policy)(labels);
}

/**
 * One matcher as a test of values, its regex resolved once: for a loop over an
 * answer's values, series or spans. Through the shared cache alone, a policy
 * regex too large to keep there was compiled again for every value.
 */
export function matcherTest(m: Matcher): (value: string | undefined) => boolean {
  switch (m.op) {
    case '=':
      return (v) => (v ?? '') === m.value;
    case '!=':
      return (v) => (v ?? '') !== m.value;
    case '=~': {
      const re = anchored(m.value);
      return (v) => re.matches(v ?? '');
    }
    case '!~': {
      const re = anchored(m.value);
      return (v) => !re.matches(v ?? '');
    }
  }
}

/** `policyMatchesLabels` for many label sets (an answer's rules or alerts): the policy's regexes resolved once. */
export function policyLabelsTest(policy: SelectorPolicy): (labels: Readonly<Record<string, string>>) => boolean {
  const groups = policy.map((group) => group.map((m) => ({ name: m.name, test: matcherTest(m) })));
  return (labels) => groups.some((group) => group.every((m) => m.test(Object.hasOwn(labels, m.name) ? labels[m.name] : undefined)));
}

/**
 * Could a series with label `name` = `value` be visible? Only the group's
 * matchers on `name` can be judged from one value; the others are left to the
 * query-side enforcement (match[]), so they do not exclude the value here.
 */
export function policyAllowsValue(policy: SelectorPolicy, name: string, value: string): boolean {
  return policyValueTest(policy, name)(value);
}

/** `policyAllowsValue` for many values of one label (an answer's label values): the policy's regexes resolved once. */
export function policyValueTest(policy: SelectorPolicy, name: string): (value: string) => boolean {
  const groups = policy.map((group) => group.filter((m) => m.name === name).map(matcherTest));
  return (value) => groups.some((tests) => tests.every((test) => test(value)));
}

/**
 * Whether the policy restricts the values of label `name` at all: every group
 * has a matcher on it. Otherwise a group without one allows every value, and
 * `policyAllowsValue(policy, name, v)` is true for all `v` (property-tested).
 */
export function policyConstrainsLabel(policy: SelectorPolicy, name: string): boolean {
  return policy.every((group) => group.some((m) => m.name === name));
}
