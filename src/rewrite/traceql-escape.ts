/**
 * TraceQL names and values: how a policy matcher's name maps to a Tempo
 * field, and how a matcher is written as TraceQL so that Tempo reads back
 * exactly that field, operator and value.
 *
 * Matcher names (policies, `--matcher`) are Tempo fields in canonical form:
 *
 *   resource.<key>  span.<key>  event.<key>  link.<key>  instrumentation.<key>
 *   .<key>          (unscoped attribute: span or resource)
 *   name statusMessage rootName rootServiceName          (string intrinsics)
 *   span:name span:statusMessage span:id span:parentID trace:id trace:rootName
 *   trace:rootService event:name link:traceID link:spanID instrumentation:name
 *   instrumentation:version                               (scoped string intrinsics)
 *
 * `<key>` is the raw attribute key: everything after the scope's first dot,
 * taken literally (`resource.k8s.namespace.name` is the resource attribute
 * `k8s.namespace.name`; `span.my key` is the span attribute `my key`). When
 * the key contains characters TraceQL cannot take bare, it is written with
 * Tempo's quoted-attribute syntax (`span."my key"`, escapes `\"` and `\\`).
 * `parent.` attributes, enum/number intrinsics (`status`, `kind`,
 * `duration`, …) and anything else are refused: a string matcher cannot
 * express them, or (parent) they read another span than the one filtered.
 *
 * Values are always Go double-quoted strings (Tempo unquotes them with
 * strconv.Unquote). `=~`/`!~` values are Go (RE2) regular expressions,
 * fully anchored by Tempo.
 */
import { QueryError } from '../errors.ts';
import { isWellFormedUnicode, quoteGoString } from './lezer.ts';
import type { Matcher } from './matcher.ts';
import { checkMatcherRegex, isMatchOp } from './matcher.ts';

const LANG = 'traceql';

export type AttributeScope = 'resource' | 'span' | 'event' | 'link' | 'instrumentation';

/** A Tempo field a matcher can constrain. */
export type TraceQLField =
  | { readonly kind: 'attribute'; readonly scope: AttributeScope | null; readonly key: string }
  | { readonly kind: 'intrinsic'; readonly name: string };

export const ATTRIBUTE_SCOPES: readonly AttributeScope[] = ['resource', 'span', 'event', 'link', 'instrumentation'];

/** Intrinsics whose values are strings, in their canonical spelling. */
export const STRING_INTRINSICS: ReadonlySet<string> = new Set([
  'name',
  'statusMessage',
  'rootName',
  'rootServiceName',
  'span:name',
  'span:statusMessage',
  'span:id',
  'span:parentID',
  'trace:id',
  'trace:rootName',
  'trace:rootService',
  'event:name',
  'link:traceID',
  'link:spanID',
  'instrumentation:name',
  'instrumentation:version',
]);

/** Canonical name of a field (the form used in policies and for comparisons). */
export function fieldKey(f: TraceQLField): string {
  if (f.kind === 'intrinsic') return f.name;
  return f.scope === null ? `.${f.key}` : `${f.scope}.${f.key}`;
}

function policyError(message: string): QueryError {
  return new QueryError(LANG, message, 'policy_error');
}

/**
 * The Tempo field a canonical matcher name denotes. Throws QueryError
 * (policy_error) for names TraceQL matchers cannot enforce.
 */
export function parseFieldName(name: string): TraceQLField {
  if (typeof name !== 'string' || name === '') throw policyError('TraceQL matcher name must be a non-empty string');
  if (!isWellFormedUnicode(name)) throw policyError('TraceQL matcher name is not valid Unicode');
  if (name.includes('\u0000') || name.includes('\ufeff')) throw policyError(`TraceQL matcher name ${JSON.stringify(name)} contains a NUL or BOM character`);
  if (STRING_INTRINSICS.has(name)) return { kind: 'intrinsic', name };
  if (name.startsWith('.')) {
    const key = name.slice(1);
    if (key === '') throw policyError('TraceQL attribute name "." has no key');
    return { kind: 'attribute', scope: null, key };
  }
  if (name.startsWith('parent.')) {
    throw policyError(`TraceQL matcher ${JSON.stringify(name)}: parent attributes describe another span and cannot be enforced`);
  }
  const dot = name.indexOf('.');
  if (dot > 0) {
    const scope = name.slice(0, dot);
    const key = name.slice(dot + 1);
    if ((ATTRIBUTE_SCOPES as readonly string[]).includes(scope)) {
      if (key === '') throw policyError(`TraceQL attribute name ${JSON.stringify(name)} has no key`);
      return { kind: 'attribute', scope: scope as AttributeScope, key };
    }
  }
  throw policyError(
    `TraceQL matcher name ${JSON.stringify(name)} is not a Tempo attribute or string intrinsic; use a scoped attribute such as resource.${name} or span.${name}, an unscoped .${name}, or one of ${[...STRING_INTRINSICS].join(', ')}`,
  );
}

/** parseFieldName, or null for a name TraceQL matchers cannot enforce (for callers that only ask what a name is). */
export function fieldNameOrNull(name: string): TraceQLField | null {
  try {
    return parseFieldName(name);
  } catch {
    return null;
  }
}

// Keys written bare: a conservative subset of Tempo's attribute runes.
const BARE_KEY = /^[A-Za-z0-9_.\-/:]+$/;

/** A key in Tempo's quoted-attribute syntax: only `\"` and `\\` are escapes. */
function quoteAttributeKey(key: string): string {
  return `"${key.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** The TraceQL spelling of a field, e.g. `resource.k8s.namespace.name`, `span."my key"`, `span:name`. */
export function formatField(f: TraceQLField): string {
  if (f.kind === 'intrinsic') return f.name;
  // Unscoped keys starting with a digit would lex as a number (`.5`).
  const bare = BARE_KEY.test(f.key) && !(f.scope === null && /^[0-9]/.test(f.key));
  const key = bare ? f.key : quoteAttributeKey(f.key);
  return f.scope === null ? `.${key}` : `${f.scope}.${key}`;
}


/** A double-quoted TraceQL (Go) string literal whose value is exactly `value`. */
export function quoteTraceQLString(value: string): string {
  if (!isWellFormedUnicode(value)) throw policyError('TraceQL matcher value is not valid Unicode (unpaired surrogate)');
  return quoteGoString(value);
}

/** Validates a matcher (shape, name, RE2 syntax of regex values) and returns its field. */
export function checkMatcher(m: unknown): { readonly matcher: Matcher; readonly field: TraceQLField } {
  if (typeof m !== 'object' || m === null) throw policyError('policy matcher must be an object');
  const { name, op, value } = m as Record<string, unknown>;
  if (typeof name !== 'string' || name === '') throw policyError('policy matcher name must be a non-empty string');
  if (!isMatchOp(op)) throw policyError(`policy matcher for ${JSON.stringify(name)} has invalid operator ${JSON.stringify(op)}`);
  if (typeof value !== 'string') throw policyError(`policy matcher value for ${JSON.stringify(name)} must be a string`);
  if (!isWellFormedUnicode(value)) throw policyError(`policy matcher value for ${JSON.stringify(name)} is not valid Unicode`);
  const field = parseFieldName(name);
  if (op === '=~' || op === '!~') {
    try {
      // As written into queries (enforcedRegex) and as Tempo wraps it.
      checkMatcherRegex(value);
    } catch (e) {
      throw policyError(`policy matcher ${name}${op}${JSON.stringify(value)}: invalid RE2 regular expression (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  return { matcher: { name, op, value }, field };
}

/**
 * `field op "value"` in TraceQL, e.g. `resource.k8s.namespace.name = "a"`
 * (one space around the operator, the gateway's spelling everywhere).
 */
export function formatTraceQLMatcher(m: Matcher): string {
  const { matcher, field } = checkMatcher(m);
  return `${formatField(field)} ${matcher.op} ${quoteTraceQLString(matcher.value)}`;
}
