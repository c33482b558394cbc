import { GatewayError, QueryError } from '../errors.ts';
import type { SelectorPolicy } from '../rewrite/matcher.ts';
import type { RewriteLimits } from '../rewrite/rewriter.ts';
import { FormParams, type Params } from './form-params.ts';
import type { RouteSpec } from './routes.ts';

/**
 * Parameters as the backend (Go's net/http `ParseForm`) would see them: URL query
 * and form body merged. The gateway never forwards the client's encoding: it
 * re-serialises exactly what it checked, so a parameter smuggled by an encoding
 * difference cannot reach the backend unenforced.
 */
export function mergeParams(search: string, formBody: string | undefined): FormParams {
  if (formBody === undefined || formBody === '') return new FormParams(search);
  // Body first, as Go's r.Form lists PostForm values before URL values.
  const merged = new FormParams(formBody);
  if (search !== '') merged.appendEncoded(search);
  return merged;
}

/** Takes RouteSpec.heldParams out of `params`: name → first value (undefined when the route holds none). */
export function holdParams(route: RouteSpec, params: Params): Record<string, string> | undefined {
  if (route.heldParams === undefined) return undefined;
  const held: Record<string, string> = {};
  for (const name of route.heldParams) {
    const value = params.get(name);
    if (value !== null) held[name] = value;
    params.delete(name);
  }
  return held;
}

/** Deletes every parameter but the route's allowed and enforced ones. */
function keepOnly(params: Params, route: RouteSpec): void {
  const keep = new Set([...(route.allowedParams ?? []), ...route.enforced.map((spec) => spec.name)]);
  // One pass: a delete per distinct name walks every pair each time, quadratic in what the client sent
  // (the routes with allowedParams take GET only: a 16 KiB query string of 3 900 names took ≈ 90 ms;
  // 40 000 names, 300 KB, 6 s).
  if (params instanceof FormParams) return params.keepOnly(keep);
  const others = new Set<string>();
  for (const [name] of params) if (!keep.has(name)) others.add(name);
  for (const name of others) params.delete(name);
}

/**
 * A bare `match` joins `match[]` before enforcement (RouteSpec.completeParams), so it never reaches
 * the store on its own: Loki (loghttp.ParseSeriesQuery) and VictoriaMetrics (its series, label-name
 * and label-value handlers, "for backwards compatibility") read both and answer their union.
 */
export function foldBareMatch(params: Params): void {
  const bare = params.getAll('match');
  if (bare.length === 0) return;
  params.delete('match');
  for (const v of bare) params.append('match[]', v);
}

/** Most values one query-bearing parameter (e.g. `match[]`) may have; Grafana sends one or a few. */
export const MAX_VALUES_PER_PARAMETER = 100;

/**
 * Most parameters one forwarded request may carry, after enforcement. Go's
 * `url.ParseQuery` refuses a query string or form body of more than 10 000
 * parameters, and handlers that ignore `ParseForm`'s error (Prometheus'
 * `/api/v1/labels`) then read no `match[]` at all: padding a request past
 * that limit would drop the enforced selectors. Grafana sends about ten.
 */
export const MAX_FORWARDED_PARAMETERS = 1000;

/** Most parameters a request may arrive with (some may be dropped before forwarding): Go's own limit. */
export const MAX_RECEIVED_PARAMETERS = 10_000;

/**
 * Most bytes of the parameters one request forwards, as the gateway encodes
 * them. Go's `ParseForm` reads at most 10 MiB of a form body and, past that,
 * no body parameter at all; `/api/v1/labels` ignores the error and answers
 * every label name. The encoding is the gateway's (a raw byte the client sent
 * may become `%EF%BF%BD`, and `match[]` is repeated per policy group), so a
 * body within the request limit could grow past Go's: bounded here, after
 * enforcement, well below it.
 */
export const MAX_FORWARDED_BYTES = 4 * 1024 * 1024;

/** The enforced parameters as forwarded (query string or form body); refused past MAX_FORWARDED_BYTES. */
export function encodeForwarded(params: Params, language: string): string {
  const encoded = params.toString();
  if (encoded.length > MAX_FORWARDED_BYTES) {
    throw new QueryError(language, `the enforced parameters are ${encoded.length} bytes; at most ${MAX_FORWARDED_BYTES} are forwarded`, 'query_too_large');
  }
  return encoded;
}

/**
 * The query-bearing parameters of one restricted request together hold at most
 * `maxQueryLength` bytes (UTF-8), checked before any is parsed. Each value is
 * parsed and rewritten synchronously, ≈ 50–100 ms of event-loop time for 64 KiB
 * of dense matchers: fifteen such `match[]` values fit in a 1 MiB body and held
 * the event loop for 0.8 s, every other request of the process waiting. Grafana
 * sends one query, or a few short `match[]` selectors.
 */
function checkQueryBytes(route: RouteSpec, params: Params, limits: RewriteLimits, language: string): void {
  let total = 0;
  let count = 0;
  for (const spec of route.enforced) {
    for (const v of params.getAll(spec.name)) {
      total += v.length;
      count += 1;
    }
  }
  // v.length ≤ UTF-8 bytes ≤ 3 × v.length: measured exactly only when it may matter.
  if (count < 2 || total * 3 <= limits.maxQueryLength) return;
  let bytes = 0;
  for (const spec of route.enforced) for (const v of params.getAll(spec.name)) bytes += Buffer.byteLength(v, 'utf8');
  if (bytes > limits.maxQueryLength) {
    throw new QueryError(language, `the queries of this request are ${bytes} bytes together; at most ${limits.maxQueryLength} are accepted (send fewer or shorter selectors)`, 'query_too_large');
  }
}

/**
 * Enforce the policy on every query-bearing parameter of a route, in place:
 * `params` becomes the canonical parameter list to forward (other parameters
 * in their order, then the enforced ones in the route's order) and is returned.
 * `policy === undefined` means not rewritten: unrestricted (admins), or a
 * route whose upstream enforces the policy itself (Loki's X-Prom-Label-Policy);
 * parameters are checked for ambiguity. `restricted` (default: a policy is
 * given) says whether the subject is restricted: RouteSpec.droppedParams and
 * allowedParams apply to every restricted subject, also where the upstream
 * enforces the policy (they are what no enforcement covers).
 */
export function enforceParams<P extends Params>(
  route: RouteSpec,
  params: P,
  policy: SelectorPolicy | undefined,
  limits: RewriteLimits,
  language: string,
  restricted: boolean = policy !== undefined,
): P {
  // Go's form parser refuses more than 10 000 parameters: so many are no backend's request. Refused
  // before any work on them (the pass per enforced or dropped parameter is linear in their number).
  if (params.size > MAX_RECEIVED_PARAMETERS) {
    throw new QueryError(language, `${params.size} parameters; at most ${MAX_RECEIVED_PARAMETERS} are accepted`, 'query_too_large');
  }
  if (restricted && route.droppedParams !== undefined) for (const name of route.droppedParams) params.delete(name);
  if (restricted && route.allowedParams !== undefined) keepOnly(params, route);
  if (policy !== undefined) route.completeParams?.(params, limits);
  if (restricted) checkQueryBytes(route, params, limits, language);
  for (const spec of route.enforced) {
    const values = params.getAll(spec.name);
    if (values.length === 0 && spec.required) throw new QueryError(language, spec.missingMessage, 'missing_parameter');
    if (values.length > MAX_VALUES_PER_PARAMETER) {
      // Each value is parsed and rewritten synchronously: an unbounded list would hold the event loop for everyone.
      throw new QueryError(language, `parameter "${spec.name}" given ${values.length} times; at most ${MAX_VALUES_PER_PARAMETER} are accepted`, 'query_too_large');
    }
    if (values.length > 1 && !spec.multiple) {
      // Backends take the first value; a second, unchecked one is a smuggling attempt or a client bug.
      throw new QueryError(language, `parameter "${spec.name}" given ${values.length} times; send it once`);
    }
    const forwarded = policy === undefined ? values : spec.rewrite(values, policy, limits);
    // A selector list (match[]) restricts the answer only while it is non-empty: it must never vanish.
    if (policy !== undefined && forwarded.length === 0 && (values.length > 0 || spec.multiple)) {
      throw new GatewayError('rewrite_verification_failed', `rewriting ${spec.name} produced no selector`);
    }
    params.delete(spec.name);
    for (const v of forwarded) params.append(spec.name, v);
  }
  if (params.size > MAX_FORWARDED_PARAMETERS) {
    throw new QueryError(language, `${params.size} parameters once enforced; at most ${MAX_FORWARDED_PARAMETERS} are forwarded`, 'query_too_large');
  }
  return params;
}
