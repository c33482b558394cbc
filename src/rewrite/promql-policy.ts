/** A PromQL rewriter's view of a policy: validated, normalised, merged where exact, with each matcher's text. */
import type { Matcher, SelectorPolicy } from './matcher.ts';
import { formatMatcher } from './promql-escape.ts';
import { matcherKeyOf, memoizedPreparation, mergeGroups, normaliseGroups, policyErrorFor, validatePolicyMatcher, type PreparedGroup, type PreparedGroups } from './policy-prep.ts';

export type { PreparedGroup } from './policy-prep.ts';

export interface PreparedPolicy extends PreparedGroups {
  /** Whether `groups` is the one group that `alternatives` merged into. */
  readonly merged: boolean;
}

const policyError = policyErrorFor('promql');

function validateMatcher(m: unknown): Matcher {
  return validatePolicyMatcher(m, policyError);
}

export const preparePolicy: (policy: SelectorPolicy) => PreparedPolicy = memoizedPreparation((policy) => buildPolicy(policy), policyError);

function buildPolicy(policy: SelectorPolicy): PreparedPolicy {
  // Validated, de-duplicated, redundant groups dropped (policy-prep.ts).
  const kept = normaliseGroups(policy, validateMatcher, (m) => m, policyError).map((g) => ({ matchers: g.items, keys: g.keys }));
  const alternatives: PreparedGroup[] = kept.map((g) => prepareGroup(g.matchers));
  // Groups that differ only in one label's allowed values are one group with a regex (exact; policy-prep.ts).
  const merged = mergeGroups(kept.map((g) => g.matchers));
  const groups = merged === null ? alternatives : [prepareGroup(merged)];
  // Order-preserving: insertion order follows it.
  const key = JSON.stringify([kept.map((g) => [...g.keys]), merged === null ? null : merged.map(matcherKeyOf)]);
  const maxGroupText = Math.max(...[...groups, ...alternatives].map((g) => g.texts.join(',').length));
  return { groups, alternatives, merged: merged !== null, key, maxGroupText };
}

function prepareGroup(matchers: readonly Matcher[]): PreparedGroup {
  return { matchers, texts: matchers.map(formatMatcher) };
}
