/**
 * Policies as the LogQL rewriter uses them: validated, normalised, rendered
 * as LogQL matchers, reasoned about (which groups a selector can still
 * reach, which groups are provably disjoint), and encoded for Loki's own
 * `X-Prom-Label-Policy` header.
 *
 * Matcher semantics are Prometheus' (which Loki uses for stream selectors):
 * a missing label has the value "", `=~`/`!~` are RE2 expressions fully
 * anchored as `^(?s:…)$`. Regular expressions are evaluated with re2js
 * (RE2 semantics, as Go's regexp). These evaluations only ever serve to
 * drop a policy group that cannot match a selector, or to prove two groups
 * disjoint; both are used in a way that can at worst hide data, never add
 * any (see logql.ts).
 */
import { RE2JS } from 're2js';
import { RegexCache } from './regex-cache.ts';
import { QueryError } from '../errors.ts';
import { isWellFormedUnicode } from './lezer.ts';
import { LOKI_RESERVED_WORDS } from './logql-lexer.ts';
import { matcherKeyOf, memoizedPreparation, mergeGroups, normaliseGroups, policyErrorFor, validatePolicyMatcher, type PreparedGroup, type PreparedGroups } from './policy-prep.ts';
import type { MatchOp, Matcher, MatcherGroup, SelectorPolicy } from './matcher.ts';
import { isMatchOp } from './matcher.ts';
import { formatMatcher as formatPromQLMatcher, quotePromQLString } from './promql-escape.ts';

const LANG = 'logql';

/**
 * Words the official LogQL Lezer grammar (@grafana/lezer-logql 0.4.2)
 * refuses as a label name in a matcher (case-insensitively), on top of
 * Loki's own keywords.
 */
const LEZER_RESERVED_WORDS: ReadonlySet<string> = new Set(['vector', 'label_replace']);

const LEGACY_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * True when `name` can be written as a label name in a LogQL matcher that
 * both Loki and the gateway's parser read back as that name. LogQL (unlike
 * Prometheus 3) has no quoted label names.
 */
export function isLogQLLabelName(name: string): boolean {
  if (!LEGACY_NAME.test(name)) return false;
  const lower = name.toLowerCase();
  return !LOKI_RESERVED_WORDS.has(lower) && !LEZER_RESERVED_WORDS.has(lower);
}

/**
 * A double-quoted LogQL string literal whose value is exactly `value`
 * (Go escapes; Loki unquotes with Prometheus' strutil.Unquote, which reads
 * the same escapes as PromQL).
 */
export function quoteLogQLString(value: string): string {
  if (!isWellFormedUnicode(value)) throw new QueryError(LANG, 'matcher value is not valid Unicode (unpaired surrogate)', 'policy_error');
  return quotePromQLString(value);
}

/**
 * `name op "value"` in LogQL syntax, e.g. `namespace=~"a|b"`. Label names
 * that LogQL cannot express (not `[a-zA-Z_][a-zA-Z0-9_]*`, or a LogQL
 * keyword such as `by` or `json`) are refused with rewrite_unsupported.
 */
export function formatLogQLMatcher(m: Matcher): string {
  if (typeof m.name !== 'string' || m.name === '') throw new QueryError(LANG, 'matcher label name must be a non-empty string', 'policy_error');
  if (!isMatchOp(m.op)) throw new QueryError(LANG, `invalid matcher operator ${JSON.stringify(m.op)}`, 'policy_error');
  if (typeof m.value !== 'string') throw new QueryError(LANG, `matcher value for ${JSON.stringify(m.name)} must be a string`, 'policy_error');
  if (!isLogQLLabelName(m.name)) {
    throw new QueryError(
      LANG,
      `label name ${JSON.stringify(m.name)} cannot be written in a LogQL stream selector (LogQL label names are [a-zA-Z_][a-zA-Z0-9_]* and not a LogQL keyword)`,
      'rewrite_unsupported',
    );
  }
  return `${m.name}${m.op}${quoteLogQLString(m.value)}`;
}

// ---------------------------------------------------------------------------
// Regular expressions (RE2, anchored like Prometheus' matchers)
// ---------------------------------------------------------------------------

const anchored = new RegexCache<RE2JS | null>();
/** What the compiled-regex cache holds (for tests). */
export const logqlRegexCache: { readonly size: number; readonly cost: number } = anchored;

/** `^(?s:v)$` compiled, or null when it does not compile. */
function anchoredRegex(v: string): RE2JS | null {
  return anchored.get(v, compileAnchoredOrNull);
}

function compileAnchoredOrNull(v: string): RE2JS | null {
  try {
    return RE2JS.compile(`^(?s:${v})$`);
  } catch {
    return null;
  }
}

/** True when `v` is a valid matcher regex (as Prometheus compiles it). */
export function isValidMatcherRegex(v: string): boolean {
  return anchoredRegex(v) !== null;
}

/**
 * Does the matcher accept label value `s` ("" for a missing label)?
 * null when unknown (the matcher's value is not representable, or its regex
 * does not compile).
 */
export function matcherMatches(op: MatchOp, value: string | null, s: string): boolean | null {
  if (value === null) return null;
  switch (op) {
    case '=':
      return value === s;
    case '!=':
      return value !== s;
    case '=~':
    case '!~': {
      const r = anchoredRegex(value);
      if (r === null) return null;
      const m = r.matcher(s).find();
      return op === '=~' ? m : !m;
    }
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------
// Policy preparation
// ---------------------------------------------------------------------------

export type { PreparedGroup } from './policy-prep.ts';
/** LogQL's view of a policy (groups rendered by formatLogQLMatcher). */
export type PreparedPolicy = PreparedGroups;

const policyError = policyErrorFor(LANG);

function validateMatcher(raw: unknown): Matcher {
  const m = validatePolicyMatcher(raw, policyError);
  if ((m.op === '=~' || m.op === '!~') && !isValidMatcherRegex(m.value)) {
    throw policyError(`policy matcher for ${JSON.stringify(m.name)} has an invalid RE2 regular expression ${JSON.stringify(m.value)}`);
  }
  return m;
}

const keyOf = matcherKeyOf;

function prepareGroup(matchers: readonly Matcher[]): PreparedGroup {
  return { matchers, texts: matchers.map(formatLogQLMatcher) };
}

export const preparePolicy: (policy: SelectorPolicy) => PreparedPolicy = memoizedPreparation((policy) => buildPolicy(policy), policyError);

function buildPolicy(policy: SelectorPolicy): PreparedPolicy {
  // Validated, de-duplicated, groups containing another group dropped (policy-prep.ts).
  const kept = normaliseGroups(policy, validateMatcher, (m) => m, policyError).map((g) => ({ matchers: g.items, keys: g.keys }));
  const alternatives = kept.map((g) => prepareGroup(g.matchers));
  const merged = mergeGroups(kept.map((g) => g.matchers));
  const effective = merged === null ? alternatives : [prepareGroup(merged)];
  // Order-preserving: the rendered selectors follow the policy's matcher order, so two orders are two entries.
  const key = JSON.stringify([kept.map((g) => [...g.keys]), merged === null ? null : merged.map(keyOf)]);
  const maxGroupText = Math.max(...[...effective, ...alternatives].map((g) => g.texts.join(', ').length));
  return { groups: effective, alternatives, key, maxGroupText };
}

// ---------------------------------------------------------------------------
// Reasoning about selectors and groups
// ---------------------------------------------------------------------------

/** A matcher whose value may be unknown (a literal that is not valid UTF-8). */
export interface LooseMatcher {
  readonly name: string;
  readonly op: MatchOp;
  readonly value: string | null;
}

/**
 * True when no stream can satisfy both `selector` and `group`: some label
 * is pinned to a value by an `=` matcher (on either side) that another
 * matcher on that label rejects. Unknown values never prove anything.
 */
export function contradicts(selector: readonly LooseMatcher[], group: readonly Matcher[]): boolean {
  const all: LooseMatcher[] = [...selector, ...group];
  for (const pin of all) {
    if (pin.op !== '=' || pin.value === null) continue;
    for (const m of all) {
      if (m.name !== pin.name || m === pin) continue;
      if (matcherMatches(m.op, m.value, pin.value) === false) return true;
    }
  }
  return false;
}

/**
 * Labels L on which the two groups are provably disjoint *and* which every
 * stream of either group carries as a stream label: each group pins L to a
 * non-empty value (`=`) or to a regex that rejects "" and the other group's
 * pinned value. Two distinct streams, one from each group, then differ in L.
 */
export function distinguishingLabels(a: readonly Matcher[], b: readonly Matcher[]): string[] {
  const out: string[] = [];
  const names = new Set(a.map((m) => m.name));
  for (const name of names) {
    const pa = a.filter((m) => m.name === name);
    const pb = b.filter((m) => m.name === name);
    if (pb.length === 0) continue;
    const disjoint = (x: readonly Matcher[], y: readonly Matcher[]): boolean => {
      for (const eq of x) {
        if (eq.op !== '=' || eq.value === '') continue;
        for (const other of y) {
          if (other.op === '=' && other.value !== '' && other.value !== eq.value) return true;
          if (other.op === '=~' && matcherMatches('=~', other.value, '') === false && matcherMatches('=~', other.value, eq.value) === false) return true;
        }
      }
      return false;
    };
    if (disjoint(pa, pb) || disjoint(pb, pa)) out.push(name);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Loki's X-Prom-Label-Policy header
// ---------------------------------------------------------------------------

/** Loki/dskit tenant IDs: [a-zA-Z0-9!-_.*'()], at most 150 characters, not "." or "..". */
const TENANT_ID = /^[a-zA-Z0-9!\-_.*'()]{1,150}$/;

function percentEncode(s: string): string {
  let out = '';
  for (const b of new TextEncoder().encode(s)) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * The value of Loki's `X-Prom-Label-Policy` header for `tenant` (Loki ≥ 3.7
 * with `lbac.enabled`): one `<tenant>:<url-encoded selector>` per policy
 * group, comma-separated; Loki ORs the selectors of a tenant. Each selector
 * is `{m1, m2}` in Prometheus selector syntax (Loki parses it as a metric
 * selector), percent-encoded so that it contains no `,` or `:`.
 */
export function labelPolicyHeader(policy: SelectorPolicy, tenant: string): string {
  if (typeof tenant !== 'string' || !TENANT_ID.test(tenant) || tenant === '.' || tenant === '..') {
    throw policyError(`invalid tenant ID for X-Prom-Label-Policy: ${JSON.stringify(tenant)}`);
  }
  if (!Array.isArray(policy) || policy.length === 0) throw policyError('policy has no selector groups (nothing would be visible)');
  const values: string[] = [];
  for (const g of policy as readonly MatcherGroup[]) {
    if (!Array.isArray(g) || g.length === 0) throw policyError('policy has an empty selector group');
    const seen = new Set<string>();
    const parts: string[] = [];
    for (const raw of g) {
      const m = validateMatcher(raw);
      const k = keyOf(m);
      if (seen.has(k)) continue;
      seen.add(k);
      parts.push(formatPromQLMatcher(m));
    }
    values.push(`${tenant}:${percentEncode(`{${parts.join(', ')}}`)}`);
  }
  return [...new Set(values)].join(',');
}
