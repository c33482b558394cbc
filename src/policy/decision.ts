/**
 * The decision contract (docs: ARCHITECTURE.md, "The decision contract"): what
 * the gateway hands the policy, and strict validation of what comes back.
 *
 * Pure: no I/O. Whatever the policy returns goes through `validateDecision`
 * before anything acts on it; a malformed decision is a `policy_error` (500
 * with a log line naming the bad field), never an allow.
 */
import { GatewayError } from '../errors.ts';
import { BAD_HEADER_VALUE_CHAR, BAD_HEADER_VALUE_TEXT, FORBIDDEN_POLICY_HEADERS, HEADER_NAME, isEmptyHeaderValue } from '../util/header-name.ts';
import { checkMatcherRegex, isMatchOp, matcherKey, MATCH_OPS } from '../rewrite/matcher.ts';
import type { Matcher, MatcherGroup, SelectorPolicy } from '../rewrite/matcher.ts';

export type BackendKind = 'prometheus' | 'loki' | 'tempo';

/** Who is asking, as identity/ resolved it. */
export interface Subject {
  sub: string;
  username?: string;
  email?: string;
  readonly groups: readonly string[];
  readonly roles: readonly string[];
  issuer?: string;
  /** How the subject was authenticated: jwt, introspection, userinfo, grafana, apikey, … */
  auth: string;
  /**
   * The source vouches that `username` names one holder who cannot choose it
   * (static credentials, client certificates, providers with
   * `claims.trustUsername`), so team and admin `users` entries may match it.
   * Absent: they match `sub` only.
   */
  usernameTrusted?: boolean;
  /** All verified claims, for custom policies. */
  claims: Record<string, unknown>;
  /** Grafana organisation id, when the identity is a Grafana ID token (`aud: org:<id>`). */
  grafanaOrg?: number;
}

/** What is being asked for. */
export interface RequestInfo {
  /** Name of the configured upstream. */
  upstream: string;
  kind: BackendKind;
  /** Route-table name (e.g. `query_range`), not the raw path. */
  endpoint: string;
  method: string;
  path: string;
  /**
   * The team the client asked to act as (header `X-Lbac-Team`), when it did:
   * the default policy then grants that team alone (a member of teams on
   * different tenants picks one per request, e.g. one Grafana datasource per
   * team). Absent when the client named none.
   */
  team?: string;
}

export interface DecisionInput {
  subject: Subject;
  request: RequestInfo;
}

export interface Decision {
  readonly allow: boolean;
  readonly reason: string;
  /** Forward without rewriting (admins). Only ever true when `allow` is. */
  readonly unrestricted: boolean;
  /** DNF: OR of AND-groups. Non-empty when allowed and not unrestricted; empty otherwise. */
  readonly selectors: SelectorPolicy;
  /** Headers the gateway sets upstream (e.g. X-Scope-OrgID). Empty when denied. */
  readonly headers: Readonly<Record<string, string>>;
}

const DECISION_KEYS = ['allow', 'reason', 'unrestricted', 'selectors', 'headers'] as const;
const MATCHER_KEYS = ['name', 'op', 'value'] as const;

export const FAIL_CLOSED_REASON = 'policy allowed without selectors (fail closed)';

/**
 * How large a decision may be; a larger one is malformed (`policy_error`),
 * checked before the parts beyond the bound are looked at. A policy that
 * returns 100 000 groups took about 0.3 s of validation per request (and
 * the rewritten query would be as large); real ones return a handful.
 * `maxStringBytes`: the UTF-8 bytes of every matcher name and value, header
 * name and value and the reason, together.
 */
export const DECISION_LIMITS = Object.freeze({
  maxGroups: 1024,
  maxMatchersPerGroup: 64,
  maxHeaders: 64,
  maxStringBytes: 256 * 1024,
});

/** What is left of DECISION_LIMITS.maxStringBytes while one decision is validated. */
interface ByteCount {
  left: number;
}

function spend(count: ByteCount, text: string, where: string): void {
  count.left -= Buffer.byteLength(text, 'utf8');
  if (count.left < 0) fail(`the decision's names, values and reason take more than ${DECISION_LIMITS.maxStringBytes} bytes (at ${where})`);
}

function fail(message: string, details?: Record<string, unknown>): never {
  throw new GatewayError('policy_error', `invalid policy decision: ${message}`, details === undefined ? undefined : { details });
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x) as unknown;
  return proto === Object.prototype || proto === null;
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'array';
  return typeof x;
}

function checkKeys(obj: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) fail(`${where} has unknown field ${JSON.stringify(key)} (allowed: ${allowed.join(', ')})`);
  }
}

/**
 * Unwraps what the policy returned. Accepted, and nothing else:
 *  - the opa-wasm result set, `[{ "result": <decision> }]` (exactly one result;
 *    `[]` means the entrypoint was undefined), as `LoadedPolicy.evaluate` returns it;
 *  - the bare decision object, e.g. from `opa eval` output already unwrapped or
 *    from a test.
 * The OPA REST API's `{"result": …}` envelope is NOT accepted: unwrap it first.
 */
function unwrap(raw: unknown): unknown {
  if (!Array.isArray(raw)) return raw;
  if (raw.length === 0) fail('the policy returned no result (is the entrypoint defined for this input?)');
  if (raw.length > 1) fail(`the policy returned ${raw.length} results, expected exactly one`);
  const only: unknown = raw[0];
  if (!isPlainObject(only) || !('result' in only)) fail('the result set entry has no "result" field');
  checkKeys(only, ['result'], 'the result set entry');
  return only['result'];
}

function validateMatcher(raw: unknown, where: string, count: ByteCount): Matcher {
  if (!isPlainObject(raw)) fail(`${where} must be an object {name, op, value}, got ${describe(raw)}`);
  checkKeys(raw, MATCHER_KEYS, where);
  const { name, op, value } = raw;
  if (typeof name !== 'string' || name === '') fail(`${where}.name must be a non-empty string`);
  if (name.includes('\u0000')) fail(`${where}.name must not contain NUL`);
  if (!isMatchOp(op)) fail(`${where}.op must be one of ${MATCH_OPS.join(' ')}, got ${JSON.stringify(op) ?? 'undefined'}`);
  if (typeof value !== 'string') fail(`${where}.value must be a string, got ${describe(value)}`);
  spend(count, name, `${where}.name`);
  spend(count, value, `${where}.value`);
  if (op === '=~' || op === '!~') checkRegex(value, where);
  return Object.freeze({ name, op, value });
}

/**
 * Regexes already known to compile. Decisions are validated on every request and
 * policies return the same few regexes, so compiling each time would be waste.
 * Bounded; only valid patterns are remembered.
 */
const validRegexes = new Set<string>();
const VALID_REGEX_MEMO_MAX = 1024;

function checkRegex(value: string, where: string): void {
  if (validRegexes.has(value)) return;
  try {
    checkMatcherRegex(value);
  } catch (e) {
    fail(`${where}.value is not a valid RE2 regular expression ${JSON.stringify(value)}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (validRegexes.size >= VALID_REGEX_MEMO_MAX) validRegexes.clear();
  validRegexes.add(value);
}

function validateSelectors(raw: unknown, count: ByteCount): SelectorPolicy {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) fail(`selectors must be an array of matcher groups, got ${describe(raw)}`);
  if (raw.length > DECISION_LIMITS.maxGroups) fail(`selectors has ${raw.length} groups, more than ${DECISION_LIMITS.maxGroups}`);
  const groups: MatcherGroup[] = [];
  const seenGroups = new Set<string>();
  raw.forEach((group: unknown, i) => {
    const where = `selectors[${i}]`;
    if (!Array.isArray(group)) fail(`${where} must be an array of matchers, got ${describe(group)}`);
    // An empty AND-group would match everything: never a way to express "allow all".
    if (group.length === 0) fail(`${where} is empty (an empty group would match everything; use unrestricted)`);
    if (group.length > DECISION_LIMITS.maxMatchersPerGroup) fail(`${where} has ${group.length} matchers, more than ${DECISION_LIMITS.maxMatchersPerGroup}`);
    const matchers: Matcher[] = [];
    const seen = new Set<string>();
    group.forEach((m: unknown, j) => {
      const matcher = validateMatcher(m, `${where}[${j}]`, count);
      const key = matcherKey(matcher);
      if (!seen.has(key)) {
        seen.add(key);
        matchers.push(matcher);
      }
    });
    // Groups are ANDs, so order does not matter for identity: [a,b] == [b,a].
    const groupKey = [...seen].sort().join('\u0001');
    if (!seenGroups.has(groupKey)) {
      seenGroups.add(groupKey);
      groups.push(Object.freeze(matchers));
    }
  });
  return groups;
}

function validateHeaders(raw: unknown, count: ByteCount): Record<string, string> {
  if (raw === undefined) return {};
  if (!isPlainObject(raw)) fail(`headers must be an object of name → string value, got ${describe(raw)}`);
  const names = Object.keys(raw);
  if (names.length > DECISION_LIMITS.maxHeaders) fail(`headers has ${names.length} entries, more than ${DECISION_LIMITS.maxHeaders}`);
  const out: Record<string, string> = {};
  const seen = new Map<string, string>();
  for (const name of names) {
    const value = raw[name];
    spend(count, name, 'headers');
    if (!HEADER_NAME.test(name)) fail(`headers: ${JSON.stringify(name)} is not a valid HTTP header name`);
    const lower = name.toLowerCase();
    if (FORBIDDEN_POLICY_HEADERS.has(lower)) fail(`headers: the policy may not set ${JSON.stringify(name)}`);
    const previous = seen.get(lower);
    if (previous !== undefined) fail(`headers: ${JSON.stringify(previous)} and ${JSON.stringify(name)} are the same header (names are case-insensitive)`);
    seen.set(lower, name);
    if (typeof value !== 'string') fail(`headers[${JSON.stringify(name)}] must be a string, got ${describe(value)}`);
    spend(count, value, `headers[${JSON.stringify(name)}]`);
    if (BAD_HEADER_VALUE_CHAR.test(value)) fail(`headers[${JSON.stringify(name)}] contains ${BAD_HEADER_VALUE_TEXT}`);
    // As the teams config refuses it (isEmptyHeaderValue).
    if (isEmptyHeaderValue(value)) fail(`headers[${JSON.stringify(name)}] is empty`);
    out[name] = value;
  }
  return out;
}

/**
 * Validates and normalises a policy result (see `unwrap` for the accepted
 * shapes). Throws `GatewayError('policy_error')` naming the bad field.
 *
 * Normalisation: identical matchers within a group and identical groups
 * (ignoring matcher order) are de-duplicated, first occurrence kept; a deny
 * carries no selectors and no headers; an unrestricted allow carries no
 * selectors; an allow that is neither unrestricted nor has a selector is turned
 * into a deny (fail closed). The result is deeply frozen.
 */
export function validateDecision(raw: unknown): Decision {
  const d = unwrap(raw);
  if (!isPlainObject(d)) fail(`the decision must be an object, got ${describe(d)}`);
  checkKeys(d, DECISION_KEYS, 'the decision');
  if (typeof d['allow'] !== 'boolean') fail(`allow must be a boolean, got ${describe(d['allow'])}`);
  if (d['unrestricted'] !== undefined && typeof d['unrestricted'] !== 'boolean') fail(`unrestricted must be a boolean, got ${describe(d['unrestricted'])}`);
  if (d['reason'] !== undefined && typeof d['reason'] !== 'string') fail(`reason must be a string, got ${describe(d['reason'])}`);
  const count: ByteCount = { left: DECISION_LIMITS.maxStringBytes };
  if (typeof d['reason'] === 'string') spend(count, d['reason'], 'reason');
  // Everything is validated even for a deny: a malformed answer means a broken policy, and that should surface.
  const selectors = validateSelectors(d['selectors'], count);
  const headers = validateHeaders(d['headers'], count);
  const allow = d['allow'];
  const unrestricted = d['unrestricted'] === true;
  const reason = d['reason'] as string | undefined;

  if (!allow) return deny(reason ?? 'denied by policy');
  if (!unrestricted && selectors.length === 0) return deny(FAIL_CLOSED_REASON);
  return Object.freeze({
    allow: true,
    reason: reason ?? 'allowed by policy',
    unrestricted,
    selectors: Object.freeze(unrestricted ? [] : selectors),
    headers: Object.freeze(headers),
  });
}

function deny(reason: string): Decision {
  return Object.freeze({ allow: false, reason, unrestricted: false, selectors: Object.freeze([]), headers: Object.freeze({}) });
}
