/**
 * Rendering matchers as PromQL text. Values are always emitted as
 * double-quoted strings with Go-style escapes, so nothing a policy contains
 * can terminate the string or the selector (`"}` injection, newlines, …).
 */
import { QueryError } from '../errors.ts';
import type { Matcher } from './matcher.ts';
import { isMatchOp } from './matcher.ts';
import { isWellFormedUnicode, quoteGoString } from './lezer.ts';

const LEGACY_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** `[a-zA-Z_][a-zA-Z0-9_]*`: may be written unquoted in a PromQL label matcher. */
export function isLegacyLabelName(name: string): boolean {
  return LEGACY_NAME.test(name);
}


/**
 * A double-quoted PromQL string literal whose value is exactly `value`.
 * Throws for strings with unpaired surrogates (not representable in UTF-8).
 */
export function quotePromQLString(value: string): string {
  if (!isWellFormedUnicode(value)) {
    throw new QueryError('promql', 'matcher value is not valid Unicode (unpaired surrogate)', 'policy_error');
  }
  return quoteGoString(value);
}

/** A label name as written in a matcher: bare when legacy, else quoted (Prometheus 3 UTF-8 syntax). */
export function formatLabelName(name: string): string {
  return isLegacyLabelName(name) ? name : quotePromQLString(name);
}

/** `name op "value"` in PromQL syntax, e.g. `namespace=~"a|b"` or `"k8s.ns"="x"`. */
export function formatMatcher(m: Matcher): string {
  if (typeof m.name !== 'string' || m.name === '') {
    throw new QueryError('promql', 'matcher label name must be a non-empty string', 'policy_error');
  }
  if (!isMatchOp(m.op)) throw new QueryError('promql', `invalid matcher operator ${JSON.stringify(m.op)}`, 'policy_error');
  if (typeof m.value !== 'string') throw new QueryError('promql', `matcher value for ${JSON.stringify(m.name)} must be a string`, 'policy_error');
  return `${formatLabelName(m.name)}${m.op}${quotePromQLString(m.value)}`;
}
