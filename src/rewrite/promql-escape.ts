/**
 * Rendering matchers as PromQL text. Values are always emitted as
 * double-quoted strings with Go-style escapes, so nothing a policy contains
 * can terminate the string or the selector (`"}` injection, newlines, …).
 */
import { QueryError } from '../errors.ts';
import type { Matcher } from './matcher.ts';
import { isMatchOp } from './matcher.ts';
import { isWellFormedUnicode } from './lezer.ts';

const LEGACY_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** `[a-zA-Z_][a-zA-Z0-9_]*`: may be written unquoted in a PromQL label matcher. */
export function isLegacyLabelName(name: string): boolean {
  return LEGACY_NAME.test(name);
}

// Characters that are escaped: backslash, double quote, C0 controls, DEL, C1
// controls and the Unicode line/paragraph separators (harmless to Prometheus,
// but escaping keeps logs and terminals honest).
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const ESCAPE_ALL = /["\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

function escapeChar(ch: string): string {
  switch (ch) {
    case '"':
      return '\\"';
    case '\\':
      return '\\\\';
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    case '\u0007':
      return '\\a';
    case '\b':
      return '\\b';
    case '\f':
      return '\\f';
    case '\v':
      return '\\v';
    default: {
      const c = ch.charCodeAt(0);
      return c < 0x80 ? `\\x${c.toString(16).padStart(2, '0')}` : `\\u${c.toString(16).padStart(4, '0')}`;
    }
  }
}

/**
 * A double-quoted PromQL string literal whose value is exactly `value`.
 * Throws for strings with unpaired surrogates (not representable in UTF-8).
 */
export function quotePromQLString(value: string): string {
  if (!isWellFormedUnicode(value)) {
    throw new QueryError('promql', 'matcher value is not valid Unicode (unpaired surrogate)', 'policy_error');
  }
  if (!NEEDS_ESCAPE.test(value)) return `"${value}"`;
  return `"${value.replace(ESCAPE_ALL, escapeChar)}"`;
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
