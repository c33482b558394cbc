/**
 * Which headers cross the gateway, in both directions: a client's are stripped
 * of everything the gateway owns (tenant and policy headers, credentials for
 * the gateway, hop-by-hop and framing headers), then the upstream's and the
 * policy's are added; an upstream's answer loses its hop-by-hop headers and
 * `Location`.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { lokiPolicyHeader } from '../backends/loki.ts';
import type { ResolvedUpstream } from '../config/load.ts';
import type { Decision } from '../policy/decision.ts';
import { headerKey, TEAM_HEADER } from '../util/header-name.ts';

/** Credential headers Grafana may send (ID tokens): never forwarded, whatever identity sources are configured. */
export const GRAFANA_CREDENTIAL_HEADERS = ['x-grafana-id', 'x-id-token'];

/**
 * Headers the gateway owns: a client's copy is never forwarded. Besides these,
 * every header name the policy data's teams or admins set, or set earlier in this process (PolicyHolder.ownedHeaders).
 * THANOS-TENANT is Thanos Receive's tenant header, owned even where no team sets it.
 */
const OWNED_HEADERS = ['x-scope-orgid', 'x-prom-label-policy', 'thanos-tenant'];
/** Connection-scoped headers (RFC 9110 §7.6.1): never relayed in either direction. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);
/** Never forwarded: hop-by-hop headers, credentials for the gateway, and framing we recompute. */
const DROPPED_HEADERS = [
  ...HOP_BY_HOP,
  'cookie',
  'content-length',
  'expect',
  'proxy-authenticate',
  'proxy-authorization',
  'host',
  // The gateway forwards its own re-encoding of the form, never the client's bytes, under its own
  // Content-Type (relay): Fastify matched the client's by media type alone, and a parameter Go's
  // mime.ParseMediaType refuses (one repeated with another value) made the backend read no body at all.
  'content-encoding',
  'content-type',
  // The gateway's own: the team the client acts as (decision input), not the upstream's business.
  TEAM_HEADER,
  // Loki's internal switch that turns off every pipeline wrapper a deployment installed for its queries.
  'x-loki-disable-pipeline-wrappers',
  // Read by some proxies and frameworks in front of a backend as the real path or method: the gateway
  // enforced this request's path and method, and a client's override would change them behind it.
  'x-original-url',
  'x-rewrite-url',
  'x-original-method',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
];

const NO_HEADERS: readonly string[] = [];

/**
 * Never forwarded from restricted subjects. `X-Span-Matcher`: Tempo's trace
 * redaction (its frontend's SpanMatcher, read by a data-access controller):
 * spans outside the matchers are kept as placeholders (name `redacted`, no
 * attributes or events, their resource's attributes replaced by
 * `service.name: redacted`) with their ids, parent ids, times, kind and
 * status. A client's matcher could turn other teams' spans into placeholders
 * that a policy matcher such as `resource.service.name != "payments"` keeps.
 * `X-Loki-Query-Limits-Context`: Grafana's `lokiQueryLimitsContext` sends the
 * whole query plan there (`{"expr": <the query>, "from", "to"}`), which Loki
 * carries to its queriers for limit checks; the gateway rewrites `query`, not
 * this copy, so Loki would weigh the client's unrestricted selector.
 */
const RESTRICTED_DROPPED = new Set(['x-span-matcher', 'x-loki-query-limits-context']);

/** The Content-Type of every forwarded body: the form the gateway encoded, exactly as Go's ParseForm reads one. */
export const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded';

/** Per upstream (and credential-header list): every client header name never forwarded, as headerKey. */
const strippedByUpstream = new WeakMap<ResolvedUpstream, { credentialHeaders: readonly string[]; names: ReadonlySet<string> }>();
function strippedNames(upstream: ResolvedUpstream, credentialHeaders: readonly string[]): ReadonlySet<string> {
  const hit = strippedByUpstream.get(upstream);
  if (hit !== undefined && hit.credentialHeaders === credentialHeaders) return hit.names;
  const names = new Set([...OWNED_HEADERS, ...DROPPED_HEADERS, ...GRAFANA_CREDENTIAL_HEADERS, ...credentialHeaders, ...Object.keys(upstream.headers), ...(upstream.dropHeaders ?? [])].map(headerKey));
  strippedByUpstream.set(upstream, { credentialHeaders, names });
  return names;
}

const NO_NAMES: ReadonlySet<string> = new Set();

/** The header names the policy data sets for any team or the admins, now or earlier in this process (PolicyHolder.ownedHeaders). */
export function ownedHeaders(req: FastifyRequest): ReadonlySet<string> {
  return req.server.policyHolder.ownedHeaders;
}

/** The policy's header names (decisions are frozen, so one set per decision). */
const policyHeaderNames = new WeakMap<object, ReadonlySet<string>>();
function policyNamesOf(headers: Decision['headers']): ReadonlySet<string> {
  let names = policyHeaderNames.get(headers);
  if (names === undefined) {
    names = new Set(Object.keys(headers).map(headerKey));
    if (Object.isFrozen(headers)) policyHeaderNames.set(headers, names);
  }
  return names;
}

/**
 * The header names a client's `Connection` header lists: hop-by-hop for this
 * connection only, never forwarded (RFC 9110 §7.6.1, as reply-from does for
 * the headers it copies itself). Absent when the client sent no Connection.
 */
function connectionNominated(connection: string | string[] | undefined): ReadonlySet<string> | undefined {
  // The usual values name no other header (keep-alive is hop-by-hop anyway): nothing to build per request.
  if (connection === undefined || connection === 'keep-alive' || connection === 'close' || (typeof connection === 'string' && PLAIN_CONNECTION.test(connection))) return undefined;
  const names = new Set<string>();
  for (const value of Array.isArray(connection) ? connection : [connection]) {
    for (const token of value.split(',')) {
      const name = token.trim().toLowerCase();
      if (name !== '') names.add(name);
    }
  }
  return names;
}

const PLAIN_CONNECTION = /^\s*(?:keep-alive|close)\s*$/i;

/**
 * What the context plugin sets on every answer of an upstream route. What an upstream route answers
 * depends on who asked (the policy's selectors and tenants): no cache may keep it for the next client
 * of the same URL (RFC 9111 §5.2.2.5, §5.2.2.7; API keys, mTLS and Grafana ID tokens send no
 * Authorization that would stop a shared cache). And an upstream's answer is relayed with its own
 * Content-Type (an error page in front of a backend may be HTML reflecting the request): a browser
 * that opens the URL must neither sniff it nor run it on the gateway's origin, which a tail's Origin
 * check trusts; nothing in an answer may load, run or be framed.
 */
export const ROUTE_ANSWER_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'private, no-store',
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'; sandbox",
};

/**
 * Answer headers the gateway sets itself, never the upstream's: the request id the client and the
 * audit log know (a proxy in front of the backend may answer its own) and ROUTE_ANSWER_HEADERS.
 */
const GATEWAY_ANSWER_HEADERS: ReadonlySet<string> = new Set(['x-request-id', ...Object.keys(ROUTE_ANSWER_HEADERS)]);

/**
 * Upstream answer headers never relayed: hop-by-hop ones, `Location` (the upstream's own address;
 * the client would follow it past the gateway), `Set-Cookie` (a session an auth proxy in front of the
 * backend issues for the gateway's own upstream credential, which would work against the backend
 * directly), and the gateway's own (GATEWAY_ANSWER_HEADERS).
 */
const NOT_RELAYED = new Set<string>([...HOP_BY_HOP, 'location', 'set-cookie', ...GATEWAY_ANSWER_HEADERS]);

/**
 * The upstream answer's headers as relayed to the client: without the
 * hop-by-hop ones, `Location`, `Cache-Control` (the gateway's own), and those the
 * upstream's `Connection` header lists.
 * reply-from strips them only for HTTP/2 upstreams; relayed from HTTP/1, an
 * upstream's `Connection: keep-alive` overrode the client's `close`, and a
 * `Trailer` header broke the answer.
 */
export function downstreamHeaders(upstream: IncomingHttpHeaders): IncomingHttpHeaders {
  let dropped = false;
  for (const name in upstream) {
    if (NOT_RELAYED.has(name.toLowerCase())) {
      dropped = true;
      break;
    }
  }
  // Most answers carry none (a Go backend sends no Connection header): relayed as they are.
  if (!dropped) return upstream;
  const nominated = connectionNominated(upstream.connection);
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream)) {
    const lower = name.toLowerCase();
    if (NOT_RELAYED.has(lower) || nominated?.has(lower) === true) continue;
    out[name] = value;
  }
  return out;
}

/** Headers that describe the upstream's bytes, which a filtered answer's client does not get. */
const UNFILTERED_BODY_HEADERS: ReadonlySet<string> = new Set(['content-length', 'content-encoding', 'etag', 'last-modified', 'content-md5', 'digest', 'content-digest', 'repr-digest']);

/**
 * downstreamHeaders for an answer the gateway filters and re-serialises: also
 * without the upstream's Content-Length, Content-Encoding and validators
 * (ETag, Last-Modified, digests), which describe bytes the client does not
 * get (a cache could otherwise revalidate the filtered answer as the
 * unfiltered one). Left out of the copy rather than removed from the reply
 * afterwards (a delete per header on the reply's header object).
 */
export function filteredDownstreamHeaders(upstream: IncomingHttpHeaders): IncomingHttpHeaders {
  const relayed = downstreamHeaders(upstream);
  const out: IncomingHttpHeaders = {};
  for (const name in relayed) {
    if (!UNFILTERED_BODY_HEADERS.has(name.toLowerCase())) out[name] = relayed[name];
  }
  return out;
}

/** Build the upstream request headers: strip owned/spoofable ones, add the policy's and the upstream's. */
export function upstreamHeaders(
  client: IncomingHttpHeaders,
  upstream: ResolvedUpstream,
  decision: Decision,
  credentialHeaders: readonly string[] = NO_HEADERS,
  owned: ReadonlySet<string> = NO_NAMES,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const stripped = strippedNames(upstream, credentialHeaders);
  const policyNames = policyNamesOf(decision.headers);
  const nominated = connectionNominated(client.connection);
  // for…in, not Object.entries: no pair array per header on every request.
  for (const name in client) {
    const value = client[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    const key = headerKey(name);
    if (stripped.has(key) || policyNames.has(key) || owned.has(key)) continue;
    if (!decision.unrestricted && RESTRICTED_DROPPED.has(key)) continue;
    // X-Request-Id is the gateway's own (the context plugin set the validated id): a client naming it
    // in Connection must not take it off the upstream request (backend logs would lose the id).
    if (nominated !== undefined && nominated.has(lower) && lower !== 'x-request-id') continue;
    if (lower === 'authorization' && !upstream.forwardAuthorization) continue;
    // SigV4 (upstreams[].auth): X-Amz-* headers are the signer's; a client's copy would change what the upstream verifies.
    if (upstream.auth?.signsRequests === true && key.startsWith('x-amz-')) continue;
    out[lower] = value;
  }
  for (const name in upstream.headers) out[name.toLowerCase()] = upstream.headers[name] as string;
  for (const name in decision.headers) out[name.toLowerCase()] = decision.headers[name] as string;
  // policyEnforcement "header" (Loki): the policy itself, for every tenant the request reads.
  if (upstream.policyEnforcement === 'header' && !decision.unrestricted) out['x-prom-label-policy'] = lokiPolicyHeader(decision.selectors, decision.headers);
  // upstreams[].auth (basic, bearer): the gateway's own credential, last so nothing overrides it. SigV4 is added per request (signedHeaders).
  if (upstream.auth !== undefined) for (const [name, value] of Object.entries(upstream.auth.headers())) out[name] = value;
  return out;
}

/**
 * upstreams[].auth of type sigv4: `headers` plus the signature over the request exactly
 * as it is sent (method, `target` = origin + path + query, `headers` incl. host, body).
 * Other upstreams: `headers` unchanged.
 */
export function signedHeaders(upstream: ResolvedUpstream, method: string, target: string, headers: Record<string, string | string[]>, body?: string): Record<string, string | string[]> {
  if (upstream.auth?.signsRequests !== true) return headers;
  return { ...headers, ...upstream.auth.sign({ method, url: target, headers, body }) };
}

/**
 * Removes the upstream answer's headers (as relayed) from a reply the gateway
 * answers itself (Tempo's trace by id: its own 404 for a trace without the
 * team's spans, and for errors about a trace), but `keep`: that answer must
 * be the same whatever the upstream answered (Go's http.Error adds
 * `X-Content-Type-Options`, a 200 does not). The gateway's own headers
 * (GATEWAY_ANSWER_HEADERS) stay.
 */
export function dropUpstreamHeaders(reply: FastifyReply, upstream: IncomingHttpHeaders, keep?: string): void {
  for (const name in upstream) {
    const lower = name.toLowerCase();
    if (lower !== keep && !GATEWAY_ANSWER_HEADERS.has(lower)) reply.removeHeader(lower);
  }
}
