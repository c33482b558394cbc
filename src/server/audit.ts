/**
 * The audit (decision) log record: pure, no I/O. One record per policy
 * decision, shaped like an OPA decision log entry where the concepts match
 * (`decision_id`, `path`, `input`, `result`, `metrics`, `erased`, `req_id`),
 * with the gateway's own additions (`query`, `response`, `revision`); one per
 * refused authentication (AUTH_AUDIT_TYPE); and one per other request to an
 * upstream route that ended without a decision (buildRefusalRecord: the same
 * type and schema as a decision's, without the decision's fields).
 * See docs/operations.md for the field-by-field mapping.
 *
 * Never in a record: tokens, Authorization / cookie / ID-token headers, the
 * subject's raw claims, or the values of policy-set headers (only their names).
 */
import { createHash } from 'node:crypto';
import { newId } from '../util/ids.ts';
import { TextMemo } from '../util/text-memo.ts';
import { TCHAR } from '../util/header-name.ts';
import type { AuditConfig } from '../config/schema.ts';
import type { Decision, Subject } from '../policy/decision.ts';
import type { LbacRequestState } from './request-state.ts';

export const AUDIT_TYPE = 'lbac-gateway/decision_logs';
/** Requests to an upstream route refused before any decision: credentials missing, invalid, or the IdP down. */
export const AUTH_AUDIT_TYPE = 'lbac-gateway/authentication';

export interface AuditContext {
  readonly requestId: string;
  readonly subject: Subject | null;
  readonly state: LbacRequestState;
  readonly status: number;
  readonly durationMs: number;
  /** The policy entrypoint (OPA: `path`). */
  readonly entrypoint: string;
  /** Short hash of the config data the policy decided with (teams/admins). */
  readonly dataRevision?: string | undefined;
  /** Wall-clock time of the decision; default now. */
  readonly time?: Date;
  readonly decisionId?: string;
}

export type AuditRecord = Record<string, unknown>;

const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

function queryBlock(state: LbacRequestState, hash: boolean): Record<string, unknown> | undefined {
  if (state.original === undefined) return undefined;
  // Unhashed, the request state's own parameter records go in as they are (serialised at once, never changed).
  const conv = (p: Record<string, string[]> | undefined) =>
    p === undefined || !hash ? p : Object.fromEntries(Object.entries(p).map(([k, vs]) => [k, vs.map(sha256)]));
  const out: Record<string, unknown> = { original: conv(state.original) };
  if (state.originalTruncated === true) out['original_truncated'] = true;
  if (state.rewritten !== undefined) out['rewritten'] = conv(state.rewritten);
  if (hash) out['hashed'] = 'sha256';
  return out;
}

const round = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : Math.round(ms * 1000) / 1000);

/** The subject as audited: never the raw claims. */
function auditedSubject(subject: Subject): Record<string, unknown> {
  return {
    sub: subject.sub,
    ...(subject.username === undefined ? {} : { username: subject.username }),
    ...(subject.usernameTrusted === true ? { username_trusted: true } : {}),
    groups: subject.groups,
    roles: subject.roles,
    auth: subject.auth,
    ...(subject.issuer === undefined ? {} : { issuer: subject.issuer }),
    ...(subject.grafanaOrg === undefined ? {} : { grafana_org: subject.grafanaOrg }),
  };
}

/** The decision as audited: the names of policy-set headers, never their values. */
function auditedResult(decision: Decision): Record<string, unknown> {
  return {
    allow: decision.allow,
    reason: decision.reason,
    unrestricted: decision.unrestricted,
    selectors: decision.selectors,
    headers: Object.keys(decision.headers),
  };
}

function responseBlock(ctx: Pick<AuditContext, 'status' | 'durationMs' | 'state'>): Record<string, unknown> {
  return {
    status: ctx.status,
    duration_ms: round(ctx.durationMs),
    ...(ctx.state.errorCode === undefined ? {} : { error: ctx.state.errorCode }),
    ...(ctx.state.shed === undefined ? {} : { shed: ctx.state.shed }),
  };
}

function metricsBlock(state: LbacRequestState): Record<string, unknown> {
  return {
    timer_identity_ms: round(state.timings.identity),
    timer_policy_ms: round(state.timings.policy),
    timer_rewrite_ms: round(state.timings.rewrite),
    timer_upstream_ms: round(state.timings.upstream),
  };
}

/** Builds the record, or undefined when no decision was made (nothing to audit). */
export function buildAuditRecord(ctx: AuditContext, config: Pick<AuditConfig, 'hashQueries' | 'redact'>): AuditRecord | undefined {
  const { state, subject } = ctx;
  const decision = state.decision;
  if (decision === undefined || state.request === undefined) return undefined;
  const query = queryBlock(state, config.hashQueries);
  // No `delete` on the record (it would turn it into a slow dictionary object for JSON.stringify).
  const record: AuditRecord = {
    type: AUDIT_TYPE,
    decision_id: ctx.decisionId ?? newId(),
    req_id: ctx.requestId,
    timestamp: (ctx.time ?? new Date()).toISOString(),
    path: ctx.entrypoint,
    revision: state.revision ?? null,
    ...(ctx.dataRevision === undefined ? {} : { data_revision: ctx.dataRevision }),
    input: { subject: subject === null ? null : auditedSubject(subject), request: { ...state.request } },
    result: auditedResult(decision),
    ...(query === undefined ? {} : { query }),
    response: responseBlock(ctx),
    metrics: metricsBlock(state),
  };
  return withRedactions(record, config.redact);
}

/**
 * JSON of what repeats from one request to the next (a subject from the token
 * cache, a decision from the decision cache), serialised once per object. Only
 * objects frozen all the way down are cached: their JSON cannot go stale.
 */
const subjectJsonCache = new WeakMap<Subject, string>();
const resultJsonCache = new WeakMap<Decision, string>();

function subjectJson(subject: Subject): string {
  const cached = subjectJsonCache.get(subject);
  if (cached !== undefined) return cached;
  const json = JSON.stringify(auditedSubject(subject));
  if (Object.isFrozen(subject) && Object.isFrozen(subject.groups) && Object.isFrozen(subject.roles)) subjectJsonCache.set(subject, json);
  return json;
}

/** The request's JSON; the gateway's request objects are frozen and shared per request shape, so kept by identity. */
const requestJsonCache = new WeakMap<object, string>();
function requestJson(request: NonNullable<LbacRequestState['request']>): string {
  const cached = requestJsonCache.get(request);
  if (cached !== undefined) return cached;
  const json = JSON.stringify({ ...request });
  if (Object.isFrozen(request)) requestJsonCache.set(request, json);
  return json;
}

function resultJson(decision: Decision): string {
  const cached = resultJsonCache.get(decision);
  if (cached !== undefined) return cached;
  const json = JSON.stringify(auditedResult(decision));
  const frozen =
    Object.isFrozen(decision) &&
    Object.isFrozen(decision.headers) &&
    Object.isFrozen(decision.selectors) &&
    decision.selectors.every((g) => Object.isFrozen(g) && g.every((m) => Object.isFrozen(m)));
  if (frozen) resultJsonCache.set(decision, json);
  return json;
}

/**
 * The decision's audit line, the same text as `auditLine(buildAuditRecord(…))`
 * (a property test holds them equal), built without the intermediate record:
 * the subject's and the decision's JSON come from the caches above, so a
 * request serialises only what is its own (ids, query, status, timings).
 * With `redact` paths it takes the record route.
 */
export function decisionAuditLine(ctx: AuditContext, config: Pick<AuditConfig, 'hashQueries' | 'redact'>, nowMs: number): string | undefined {
  if (config.redact.length > 0) {
    const record = buildAuditRecord(ctx, config);
    return record === undefined ? undefined : auditLine(record, new Date(nowMs));
  }
  const { state, subject } = ctx;
  const decision = state.decision;
  if (decision === undefined || state.request === undefined) return undefined;
  const str = JSON.stringify;
  const queryText = config.hashQueries ? queryJsonHashed(state) : queryJson(state);
  const iso = isoTime(nowMs);
  return (
    `{"level":30,"time":"${iso}","type":"${AUDIT_TYPE}","decision_id":${str(ctx.decisionId ?? newId())}` +
    `,"req_id":${str(ctx.requestId)},"timestamp":"${ctx.time === undefined ? iso : ctx.time.toISOString()}","path":${str(ctx.entrypoint)}` +
    `,"revision":${str(state.revision ?? null)}${ctx.dataRevision === undefined ? '' : `,"data_revision":${str(ctx.dataRevision)}`}` +
    `,"input":{"subject":${subject === null ? 'null' : subjectJson(subject)},"request":${requestJson(state.request)}}` +
    `,"result":${resultJson(decision)}${queryText === undefined ? '' : `,"query":${queryText}`}` +
    // responseBlock and metricsBlock, written out: keys in the same order, undefined ones left out.
    `,"response":{"status":${jsonNumber(ctx.status)},"duration_ms":${millisJson(ctx.durationMs)}${state.errorCode === undefined ? '' : `,"error":${str(state.errorCode)}`}${state.shed === undefined ? '' : `,"shed":${str(state.shed)}`}}` +
    `,"metrics":${metricsJson(state.timings)},"msg":"Decision Log"}`
  );
}

/** queryBlock's JSON, unhashed: written out, each text through jsonText (the same characters as JSON.stringify). */
function queryJson(state: LbacRequestState): string | undefined {
  if (state.original === undefined) return undefined;
  return `{"original":${paramsJson(state.original)}${state.originalTruncated === true ? ',"original_truncated":true' : ''}${state.rewritten === undefined ? '' : `,"rewritten":${paramsJson(state.rewritten)}`}}`;
}

function queryJsonHashed(state: LbacRequestState): string | undefined {
  const block = queryBlock(state, true);
  return block === undefined ? undefined : JSON.stringify(block);
}

function paramsJson(params: Record<string, string[]>): string {
  let out = '';
  // Object.keys: JSON.stringify's own order.
  for (const name of Object.keys(params)) {
    const values = params[name] as string[];
    let list = '';
    for (const v of values) list += (list === '' ? '' : ',') + jsonText(v);
    out += `${out === '' ? '' : ','}${jsonText(name)}:[${list}]`;
  }
  return `{${out}}`;
}

/** JSON.stringify of a string; a dashboard's query texts repeat, so long ones are kept (src/util/text-memo.ts). */
const jsonTexts = new TextMemo((s) => JSON.stringify(s));
const jsonText = (s: string): string => jsonTexts.get(s);

/** metricsBlock's JSON: the stages the request reached, in the block's key order (written out: no per-line arrays). */
function metricsJson(t: LbacRequestState['timings']): string {
  let out = '';
  if (t.identity !== undefined) out = `"timer_identity_ms":${millisJson(t.identity)}`;
  if (t.policy !== undefined) out += `${out === '' ? '' : ','}"timer_policy_ms":${millisJson(t.policy)}`;
  if (t.rewrite !== undefined) out += `${out === '' ? '' : ','}"timer_rewrite_ms":${millisJson(t.rewrite)}`;
  if (t.upstream !== undefined) out += `${out === '' ? '' : ','}"timer_upstream_ms":${millisJson(t.upstream)}`;
  return `{${out}}`;
}

/**
 * `round(ms)` as JSON.stringify writes it, from the integer count of
 * microseconds: for 0 < n < 1e15 the shortest decimal that JavaScript prints
 * for n / 1000 is n's digits with the point three places in (a property test
 * holds it to String). Printing doubles cost ≈ 0.4 µs each, five per line.
 */
export function millisJson(ms: number): string {
  const micros = Math.round(ms * 1000);
  if (!(micros > 0 && micros < 1e15)) return jsonNumber(micros / 1000);
  const whole = Math.floor(micros / 1000);
  const frac = micros - whole * 1000;
  if (frac === 0) return `${whole}`;
  if (frac % 100 === 0) return `${whole}.${frac / 100}`;
  if (frac % 10 === 0) return `${whole}.${frac < 100 ? '0' : ''}${frac / 10}`;
  return `${whole}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}`;
}

/** A number as JSON.stringify writes it (non-finite numbers become null). */
const jsonNumber = (n: number): string => (Number.isFinite(n) ? String(n) : 'null');

/** The second isoTime last formatted, and its text up to the milliseconds. */
let isoSecond = Number.NaN;
let isoPrefix = '';

/**
 * Date#toISOString of `ms`, formatting the date and time of day once per
 * second: it showed at ≈ 1 µs per line in the gateway's profile. Years
 * outside 0000–9999 (a longer, signed form) go to toISOString.
 */
export function isoTime(epochMs: number): string {
  const ms = Math.trunc(epochMs);
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    const full = new Date(ms).toISOString();
    if (full.length !== 24) return full;
    isoSecond = second;
    isoPrefix = full.slice(0, 20);
  }
  const milli = ms - second * 1000;
  return `${isoPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

/** The record with `paths` removed and listed in `erased` (OPA's); a copy, so nothing shared (the decision) is touched. */
function withRedactions(record: AuditRecord, paths: readonly string[]): AuditRecord {
  if (paths.length === 0) return record;
  const copy = structuredClone(record);
  const erased = redact(copy, paths);
  if (erased.length > 0) copy['erased'] = erased;
  return copy;
}

/** What every audit line of a request that got no decision records about it (refused authentications, refusals before a decision). */
interface UndecidedRequestContext {
  readonly requestId: string;
  readonly state: LbacRequestState;
  readonly status: number;
  readonly durationMs: number;
  readonly method: string;
  /** The request path without its query string (which may carry anything). */
  readonly path: string;
  readonly remoteAddress: string | undefined;
  readonly time?: Date;
}

export interface AuthAuditContext extends UndecidedRequestContext {
  /** The Authorization scheme the client used ("Bearer", "Basic", …), never its value. */
  readonly authorizationScheme: string | undefined;
}

/** HTTP authentication schemes (IANA registry, plus the common `ApiKey` and `Token`), by lower-case name. */
const AUTH_SCHEMES = new Map(
  ['Basic', 'Bearer', 'Digest', 'DPoP', 'GNAP', 'HOBA', 'Mutual', 'Negotiate', 'NTLM', 'OAuth', 'PrivateToken', 'SCRAM-SHA-1', 'SCRAM-SHA-256', 'vapid', 'AWS4-HMAC-SHA256', 'ApiKey', 'Token'].map((s) => [s.toLowerCase(), s]),
);

/** `<scheme> <credential>`: the scheme an RFC 9110 token. */
const AUTH_SCHEME_AND_CREDENTIAL = new RegExp(`^(${TCHAR}+) +\\S`);

/**
 * The scheme of an Authorization header, for the audit log: a known scheme
 * followed by credentials, in its registered spelling; "other" for anything
 * else (`Authorization: <key>` without a scheme would otherwise log the key);
 * undefined when there is no header.
 */
export function authorizationSchemeOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = (Array.isArray(header) ? header[0] : header)?.trim() ?? '';
  if (value === '') return undefined;
  const m = AUTH_SCHEME_AND_CREDENTIAL.exec(value);
  return (m === null ? undefined : AUTH_SCHEMES.get((m[1] as string).toLowerCase())) ?? 'other';
}

/**
 * The record for a request to an upstream route that authentication refused
 * (401) or could not judge (IdP unavailable, 503): undefined otherwise.
 */
export function buildAuthFailureRecord(ctx: AuthAuditContext, config: Pick<AuditConfig, 'redact'>): AuditRecord | undefined {
  const { state } = ctx;
  if (state.decision !== undefined || state.route === undefined) return undefined;
  if (state.identity !== 'rejected' && state.identity !== 'unavailable') return undefined;
  const record: AuditRecord = {
    type: AUTH_AUDIT_TYPE,
    req_id: ctx.requestId,
    timestamp: (ctx.time ?? new Date()).toISOString(),
    input: {
      request: { upstream: state.route.upstream, endpoint: state.route.endpoint, method: ctx.method, path: ctx.path },
      remote_address: ctx.remoteAddress ?? null,
      authorization_scheme: ctx.authorizationScheme ?? null,
    },
    result: { authenticated: false, reason: state.identity === 'unavailable' ? 'identity_unavailable' : (state.errorCode ?? 'unauthenticated') },
    response: { status: ctx.status, duration_ms: round(ctx.durationMs) },
    metrics: { timer_identity_ms: round(state.timings.identity) },
  };
  return withRedactions(record, config.redact);
}

/** A request to an upstream route that ended without a decision (buildRefusalRecord). */
export interface RefusalAuditContext extends UndecidedRequestContext {
  /** The authenticated subject; null when the request was refused before authentication. */
  readonly subject: Subject | null;
}

/**
 * The record for a request to an upstream route that ended without a policy
 * decision and whose authentication did not fail (buildAuthFailureRecord has
 * those): shed (load shedding, a concurrency limit), refused as malformed
 * before the policy was asked (a WebSocket handshake, a body too large, a
 * method the route does not take, a bad team header), or the policy unable to
 * decide. Not a request whose client left before any of that (499): nothing
 * was refused, nor done, for it. The decision's schema and type, without
 * what only a decision has (`decision_id`, `path`, `revision`,
 * `data_revision`, `result`, `query`); `input.request.path` is the path as
 * sent, and `input.remote_address` says where a request refused before
 * authentication came from. Undefined for any other request.
 */
export function buildRefusalRecord(ctx: RefusalAuditContext, config: Pick<AuditConfig, 'redact'>): AuditRecord | undefined {
  const { state, subject } = ctx;
  const route = state.route;
  if (state.decision !== undefined || route === undefined) return undefined;
  if (state.identity === 'rejected' || state.identity === 'unavailable' || state.clientClosed === true) return undefined;
  const record: AuditRecord = {
    type: AUDIT_TYPE,
    req_id: ctx.requestId,
    timestamp: (ctx.time ?? new Date()).toISOString(),
    input: {
      subject: subject === null ? null : auditedSubject(subject),
      request: { upstream: route.upstream, kind: route.kind, endpoint: route.endpoint, method: ctx.method, path: ctx.path },
      remote_address: ctx.remoteAddress ?? null,
    },
    response: responseBlock(ctx),
    metrics: metricsBlock(state),
  };
  return withRedactions(record, config.redact);
}

/**
 * One audit line (no newline): the record between pino's `level`/`time` and
 * `msg` fields, so lines keep the shape pino wrote before and log shippers
 * that parse pino lines read them unchanged. One native JSON.stringify.
 */
export function auditLine(record: AuditRecord, time: Date): string {
  const body = JSON.stringify(record);
  return `{"level":30,"time":"${time.toISOString()}",${body.length > 2 ? body.slice(1, -1) + ',' : ''}"msg":"Decision Log"}`;
}

/** Removes each dotted path that exists; returns the ones removed (OPA's `erased`). */
export function redact(record: Record<string, unknown>, paths: readonly string[]): string[] {
  const erased: string[] = [];
  for (const p of paths) {
    const keys = p.split('.');
    let cur: unknown = record;
    for (const k of keys.slice(0, -1)) {
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[k] : undefined;
    }
    const last = keys[keys.length - 1]!;
    if (cur !== null && typeof cur === 'object' && Object.hasOwn(cur, last)) {
      delete (cur as Record<string, unknown>)[last];
      erased.push(p);
    }
  }
  return erased;
}

/** Whether to write this decision: denials and failures always, allowed ones at `sampleRate`. */
export function shouldAudit(state: LbacRequestState, status: number, sampleRate: number, random: () => number = Math.random): boolean {
  if (state.decision === undefined) return false;
  if (!state.decision.allow || status >= 400) return true;
  return sampleRate >= 1 || random() < sampleRate;
}
