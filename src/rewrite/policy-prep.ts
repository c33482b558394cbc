import { QueryError } from '../errors.ts';
import { isWellFormedUnicode } from './lezer.ts';
import { isMatchOp, type Matcher, type SelectorPolicy } from './matcher.ts';

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
  return (policy) => {
    if (!Array.isArray(policy) || policy.length === 0) throw policyError('policy has no selector groups (nothing would be visible)');
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
    const hit = prepared.get(text);
    if (hit !== undefined) return hit;
    const p = build(policy);
    if (prepared.size >= PREPARED_MAX) prepared.clear();
    prepared.set(text, p);
    return p;
  };
}
