import { QueryError } from '../errors.ts';
import { isWellFormedUnicode } from './lezer.ts';
import { checkMatcherRegex, isMatchOp, type Matcher, type SelectorPolicy } from './matcher.ts';

/**
 * What the three rewriters share about turning a policy into their prepared
 * form: the shape checks, the per-matcher validation, and a bounded memo keyed
 * by the policy's *content* (name/op/value of every matcher) — not object
 * identity, so a caller that mutates a policy array between calls is never
 * served a stale preparation.
 */
export type PolicyErrorFactory = (message: string) => QueryError;

export function policyErrorFor(language: string): PolicyErrorFactory {
  return (message) => new QueryError(language, message, 'policy_error');
}

/** One policy matcher, checked: non-empty well-formed name, a known operator, a well-formed string value. */
export function validatePolicyMatcher(m: unknown, policyError: PolicyErrorFactory): Matcher {
  if (typeof m !== 'object' || m === null) throw policyError('policy matcher must be an object');
  const { name, op, value } = m as Record<string, unknown>;
  if (typeof name !== 'string' || name === '') throw policyError('policy matcher name must be a non-empty string');
  if (!isWellFormedUnicode(name)) throw policyError('policy matcher name is not valid Unicode');
  if (!isMatchOp(op)) throw policyError(`policy matcher for ${JSON.stringify(name)} has invalid operator ${JSON.stringify(op)}`);
  if (typeof value !== 'string') throw policyError(`policy matcher value for ${JSON.stringify(name)} must be a string`);
  if (!isWellFormedUnicode(value)) throw policyError(`policy matcher value for ${JSON.stringify(name)} is not valid Unicode`);
  return { name, op, value };
}

const PREPARED_MAX = 512;

/**
 * Wraps a language's `build(policy)` in the shared shape checks and the
 * content-keyed memo (bounded; cleared when full).
 */
export function memoizedPreparation<P>(build: (policy: SelectorPolicy) => P, policyError: PolicyErrorFactory): (policy: SelectorPolicy) => P {
  const prepared = new Map<string, P>();
  // Decisions are deeply frozen (src/policy/decision.ts): such a policy cannot change, so
  // its preparation is also found by identity, without building the content key per request.
  const byIdentity = new WeakMap<object, P>();
  return (policy) => {
    if (!Array.isArray(policy) || policy.length === 0) throw policyError('policy has no selector groups (nothing would be visible)');
    // Only deeply frozen policies are stored by identity, and freezing cannot be undone.
    const hit = byIdentity.get(policy);
    if (hit !== undefined) return hit;
    const frozen = deeplyFrozen(policy);
    // The key is built from exactly the fields the builders read.
    let text = '';
    for (const g of policy as readonly unknown[]) {
      if (!Array.isArray(g)) throw policyError('policy group must be an array of matchers');
      text += '[';
      for (const m of g as readonly unknown[]) {
        if (typeof m !== 'object' || m === null) throw policyError('policy matcher must be an object');
        const { name, op, value } = m as Record<string, unknown>;
        text += `${JSON.stringify([typeof name === 'string' ? name : null, typeof op === 'string' ? op : null, typeof value === 'string' ? value : null])},`;
      }
      text += ']';
    }
    let p = prepared.get(text);
    if (p === undefined) {
      p = build(policy);
      if (prepared.size >= PREPARED_MAX) prepared.clear();
      prepared.set(text, p);
    }
    if (frozen) byIdentity.set(policy, p);
    return p;
  };
}

/** The policy array, its groups and their matchers are all frozen (so is every string in them). */
function deeplyFrozen(policy: readonly unknown[]): boolean {
  if (!Object.isFrozen(policy)) return false;
  for (const g of policy) {
    if (!Array.isArray(g) || !Object.isFrozen(g)) return false;
    for (const m of g as readonly unknown[]) if (typeof m !== 'object' || m === null || !Object.isFrozen(m)) return false;
  }
  return true;
}

/** A policy group as a rewriter splices it: its matchers and each one's text in the rewriter's language. */
export interface PreparedGroup {
  readonly matchers: readonly Matcher[];
  /** The rewriter's rendering of `matchers[i]`. */
  readonly texts: readonly string[];
}

/** A text rewriter's view of a policy (PromQL, LogQL): validated, normalised, merged where exact. */
export interface PreparedGroups {
  /**
   * The groups to enforce: the policy's own, or the one group they merge into
   * when all differ only in one positive matcher on the same label (mergeGroups).
   */
  readonly groups: readonly PreparedGroup[];
  /**
   * The policy's own groups after validation, de-duplication and removal of
   * groups that are supersets of others. A selector that already carries all
   * matchers of one of these is inside the policy and is left alone. Equal to
   * `groups` unless a merge happened.
   */
  readonly alternatives: readonly PreparedGroup[];
  /** Unambiguous canonical key, for caches. */
  readonly key: string;
  /** Longest joined `texts` of any group; bounds output size. */
  readonly maxGroupText: number;
}

/** One AND-group after normalisation: its checked items (in first-seen order) and their matcher keys. */
export interface NormalisedGroup<T> {
  readonly items: T[];
  readonly keys: Set<string>;
}

/** `[name, op, value]` as a string: identical matchers have identical keys. */
export function matcherKeyOf(m: Matcher): string {
  return JSON.stringify([m.name, m.op, m.value]);
}

/**
 * Validate every matcher (`check`), de-duplicate matchers within a group, and
 * drop any group whose matcher set contains another group's: it selects a subset
 * of that group's data, so the OR is unchanged. Exact, and it turns accidental
 * multi-group policies into single-group ones. For equal sets the first is kept.
 */
export function normaliseGroups<T>(
  policy: SelectorPolicy,
  check: (raw: unknown) => T,
  matcherOf: (item: T) => Matcher,
  policyError: PolicyErrorFactory,
): NormalisedGroup<T>[] {
  const groups: NormalisedGroup<T>[] = [];
  for (const g of policy as readonly (readonly unknown[])[]) {
    if (!Array.isArray(g) || g.length === 0) {
      throw policyError('policy has an empty selector group (that would be unrestricted; use "unrestricted" instead)');
    }
    const keys = new Set<string>();
    const items: T[] = [];
    for (const raw of g) {
      const item = check(raw);
      const k = matcherKeyOf(matcherOf(item));
      if (keys.has(k)) continue;
      keys.add(k);
      items.push(item);
    }
    groups.push({ items, keys });
  }
  return groups.filter(
    (g, i) =>
      !groups.some((h, j) => {
        if (j === i || h.keys.size > g.keys.size) return false;
        for (const k of h.keys) if (!g.keys.has(k)) return false;
        return h.keys.size < g.keys.size || j < i;
      }),
  );
}

/** Go's regexp.QuoteMeta: a regex matching exactly `s`. */
export function quoteMeta(s: string): string {
  return s.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}

/**
 * One group equivalent to all of `groups`, when they share all matchers but
 * one and the differing matchers are positive (`=`, `=~`) and on the same
 * label L: `(C ∧ L=v1) ∨ (C ∧ L=~r2)` is exactly
 * `C ∧ L=~"(?:QuoteMeta(v1))|(?:r2)"`. Prometheus and Loki anchor a regex
 * matcher as `^(?s:re)$` and see a missing label as "" for every operator,
 * so the equivalence holds for empty values too (property-tested against
 * both forms). Each regex must be valid on its own and inside a group
 * (checkMatcherRegex), so every alternative is a closed group. Null when the
 * groups do not have that shape. Not for TraceQL, whose filters have `||`
 * and whose regex semantics differ.
 *
 * The common case is a user in two teams that each own a namespace: one
 * group instead of an OR of two, so every query a single group can rewrite
 * works, not only those with an exact multi-group form.
 */
export function mergeGroups(groups: readonly (readonly Matcher[])[]): Matcher[] | null {
  if (groups.length < 2) return null;
  const keySets = groups.map((g) => new Set(g.map(matcherKeyOf)));
  const first = groups[0] as readonly Matcher[];
  const common = first.filter((m) => keySets.every((s) => s.has(matcherKeyOf(m))));
  const commonKeys = new Set(common.map(matcherKeyOf));
  let label: string | null = null;
  const alts: string[] = [];
  for (const g of groups) {
    const diff = g.filter((m) => !commonKeys.has(matcherKeyOf(m)));
    if (diff.length !== 1) return null;
    const d = diff[0] as Matcher;
    if (label === null) label = d.name;
    else if (label !== d.name) return null;
    if (d.op === '=') alts.push(quoteMeta(d.value));
    else if (d.op === '=~' && compiles(d.value)) alts.push(d.value);
    else return null;
  }
  if (label === null) return null;
  const value = alts.map((a) => `(?:${a})`).join('|');
  return compiles(value) ? [...common, { name: label, op: '=~', value }] : null;
}

function compiles(re: string): boolean {
  try {
    checkMatcherRegex(re);
    return true;
  } catch {
    return false;
  }
}
