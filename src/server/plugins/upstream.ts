import type { IncomingHttpHeaders } from 'node:http';
import { finished } from 'node:stream';
import replyFrom from '@fastify/reply-from';
import { Agent, Pool } from 'undici';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { lokiPolicyHeader } from '../../backends/loki.ts';
import { traceLevelIntrinsicsRefusal } from '../../backends/tempo.ts';
import { FormParams } from '../../backends/form-params.ts';
import { encodeForwarded, enforceParams, holdParams, mergeParams } from '../../backends/params.ts';
import { buildinfoVersion, versionProblem } from '../../backends/versions.ts';
import { pathParamProblem, responseFilterOf, upstreamPath, type FanOutSpec, type LookupSpec, type RawFilteredResponse, type RawResponseFilter, type RouteSpec, type RouteTable } from '../../backends/routes.ts';
import type { ResolvedUpstream } from '../../config/load.ts';
import { GatewayError, QueryError } from '../../errors.ts';
import type { Decision, RequestInfo } from '../../policy/decision.ts';
import type { RewriteLimits } from '../../rewrite/rewriter.ts';
import { BAD_HEADER_VALUE_CHAR, headerKey, headerLines, TEAM_HEADER } from '../../util/header-name.ts';
import { filterAnswer, mergeAnswers } from '../filter-offload.ts';
import { LookupCache } from '../lookup-cache.ts';
import { cancellingDispatcher, CLIENT_GONE, ClientGone } from '../upstream-dispatcher.ts';
import { clientGone } from './context.ts';
import { installErrorHandlers } from './errors.ts';
import { websocketRoute } from './websocket.ts';
import { noteDecision, noteForwardedParams, noteOriginalParams } from '../request-state.ts'; // lbac: decision/query/timings for audit + metrics

export interface UpstreamPluginOptions {
  readonly upstream: ResolvedUpstream;
  readonly table: RouteTable;
  readonly limits: RewriteLimits;
  readonly bodyLimit: number;
  /** Headers that carry the client's credentials for the gateway (identity sources' headers): never forwarded. */
  readonly credentialHeaders?: readonly string[];
  /** Bytes of upstream answers being read whole at once, shared by the app's upstreams (server.maxBufferedAnswerBytes). Unset: per plugin, the default. */
  readonly answerBudget?: ByteBudget;
}

/**
 * Bytes of upstream answers the process is reading whole (to filter or merge
 * them) at once. Each answer is bounded (64 MiB), but without this their sum
 * was bounded only by the requests in flight: fifty clients asking for large
 * label-value lists held 3 GiB. A chunk that does not fit fails its request
 * with 503 (`overloaded`); the bytes come back when the read ends (the filter
 * queue bounds the answers held after it: filter-offload.ts).
 */
export class ByteBudget {
  #used = 0;
  readonly max: number;
  constructor(max: number) {
    this.max = max;
  }
  get used(): number {
    return this.#used;
  }
  take(n: number): boolean {
    if (this.#used + n > this.max) return false;
    this.#used += n;
    return true;
  }
  give(n: number): void {
    this.#used -= n;
  }
}

/** server.maxBufferedAnswerBytes' default. */
export const DEFAULT_BUFFERED_ANSWER_BYTES = 256 * 1024 * 1024;

/** Credential headers Grafana may send (ID tokens): never forwarded, whatever identity sources are configured. */
export const GRAFANA_CREDENTIAL_HEADERS = ['x-grafana-id', 'x-id-token'];

/**
 * Headers the gateway owns: a client's copy is never forwarded. Besides these,
 * every header name the policy data's teams or admins set (PolicyEngine.ownedHeaders).
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

/** The Content-Type of every forwarded body: the form the gateway encoded, exactly as Go's ParseForm reads one. */
const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded';

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

/** The header names the active policy's data sets for any team or the admins. */
function ownedHeaders(req: FastifyRequest): ReadonlySet<string> {
  return req.server.policyEngine?.ownedHeaders ?? NO_NAMES;
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

const LANGUAGE: Record<RouteTable['kind'], string> = { prometheus: 'promql', loki: 'logql', tempo: 'traceql' };

/** The plugin's options with the answer budget settled once (options without a shared one, as in tests: one of its own). */
type PluginOptions = UpstreamPluginOptions & { readonly answerBudget: ByteBudget };

/** Largest upstream answer the gateway buffers to filter. */
const MAX_FILTERED_BODY = 64 * 1024 * 1024;

function readBounded(stream: NodeJS.ReadableStream, limit: number, budget: ByteBudget): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let taken = 0;
    const stop = (e: Error) => {
      reject(e);
      (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
    };
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) return stop(new Error('response too large'));
      if (!budget.take(c.length)) return stop(new GatewayError('overloaded', 'the gateway is reading too many large upstream answers at once; retry later', { details: { shed: 'answer_budget' } }));
      taken += c.length;
      chunks.push(c);
    });
    // Settles on the end, an error, or a close before the end (a destroyed stream need not emit 'error').
    finished(stream, (err) => {
      budget.give(taken);
      taken = 0;
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    });
  });
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

/** Upstream answer headers never relayed: hop-by-hop ones, and `Location` (the upstream's own address; the client would follow it past the gateway). */
const NOT_RELAYED = new Set([...HOP_BY_HOP, 'location']);

/**
 * The upstream answer's headers as relayed to the client: without the
 * hop-by-hop ones, `Location`, and those the upstream's `Connection` header lists.
 * reply-from strips them only for HTTP/2 upstreams; relayed from HTTP/1, an
 * upstream's `Connection: keep-alive` overrode the client's `close`, and a
 * `Trailer` header broke the answer.
 */
export function downstreamHeaders(upstream: IncomingHttpHeaders): IncomingHttpHeaders {
  let hopByHop = false;
  for (const name in upstream) {
    if (NOT_RELAYED.has(name.toLowerCase())) {
      hopByHop = true;
      break;
    }
  }
  // Most answers carry none (a Go backend sends no Connection header): relayed as they are.
  if (!hopByHop) return upstream;
  const nominated = connectionNominated(upstream.connection);
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream)) {
    const lower = name.toLowerCase();
    if (NOT_RELAYED.has(lower) || nominated?.has(lower) === true) continue;
    out[name] = value;
  }
  return out;
}

/**
 * downstreamHeaders for an answer the gateway filters and re-serialises: also
 * without the upstream's Content-Length and Content-Encoding, which describe
 * bytes the client does not get. Left out of the copy rather than removed from
 * the reply afterwards (a delete per header on the reply's header object).
 */
export function filteredDownstreamHeaders(upstream: IncomingHttpHeaders): IncomingHttpHeaders {
  const relayed = downstreamHeaders(upstream);
  const out: IncomingHttpHeaders = {};
  for (const name in relayed) {
    const lower = name.toLowerCase();
    if (lower !== 'content-length' && lower !== 'content-encoding') out[name] = relayed[name];
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
    if (nominated !== undefined && nominated.has(lower)) continue;
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
function signedHeaders(upstream: ResolvedUpstream, method: string, target: string, headers: Record<string, string | string[]>, body?: string): Record<string, string | string[]> {
  if (upstream.auth?.signsRequests !== true) return headers;
  return { ...headers, ...upstream.auth.sign({ method, url: target, headers, body }) };
}

/**
 * One upstream: its route table registered under its mount, each route
 * authenticated, decided, enforced and forwarded with reply-from. Encapsulated,
 * so its error format and body parser apply only here.
 */
export async function upstreamPlugin(app: FastifyInstance, given: UpstreamPluginOptions): Promise<void> {
  const opts: PluginOptions = { ...given, answerBudget: given.answerBudget ?? new ByteBudget(DEFAULT_BUFFERED_ANSWER_BYTES) };
  const { upstream, table } = opts;
  installErrorHandlers(app, table.kind, upstream.mountPrefix !== '');
  // upstreams[].tls: private CA, client certificate, SNI/verification name (undici's `connect` = tls.connect options).
  // Always passed: reply-from defaults undici to rejectUnauthorized: false, i.e. unverified https upstreams.
  const tls = upstream.tls?.connectOptions();
  if (upstream.tls?.insecureSkipVerify === true) app.log.warn({ upstream: upstream.name }, 'upstream TLS certificate verification is disabled (tls.insecureSkipVerify)');
  // reply-from's own Agent settings (128 connections, no pipelining), with each request cancelled
  // when its client leaves (../upstream-dispatcher.ts).
  const dispatcher = cancellingDispatcher(
    new Agent({ headersTimeout: upstream.timeoutMs, bodyTimeout: upstream.timeoutMs, connections: 128, pipelining: 1, connect: tls ?? { rejectUnauthorized: true } }),
  );
  app.addHook('onClose', async () => dispatcher.close());
  await app.register(replyFrom, { base: upstream.origin, disableRequestLogging: true, undici: dispatcher as unknown as Pool });
  // Routes whose filter needs a second answer (RouteSpec.lookup) and version checks ask the upstream
  // through a small pool of their own; fan-out parts through another, as large as the upstream's
  // concurrency limit (their slots are counted: fanOutReply), so neither queues behind the other.
  // Both with the same TLS settings as reply-from.
  const needsPools = table.routes.some((r) => r.lookup !== undefined || r.fanOut !== undefined || r.minVersion !== undefined);
  const pool = (connections: number) => new Pool(upstream.origin, { connect: tls ?? { rejectUnauthorized: true }, connections, headersTimeout: upstream.timeoutMs, bodyTimeout: upstream.timeoutMs });
  const lookupPool = needsPools ? pool(8) : undefined;
  const fanOutPool = needsPools ? pool(upstream.maxConcurrent ?? 128) : undefined;
  for (const p of [lookupPool, fanOutPool]) if (p !== undefined) app.addHook('onClose', async () => p.close());
  const lookups: Lookups | undefined = lookupPool === undefined || fanOutPool === undefined ? undefined : { pool: lookupPool, fanOutPool, cache: new LookupCache() };
  // Keep form bodies raw: they are parsed once, Go-style, in mergeParams. Every other
  // content type (JSON included, which Fastify parses by default) → 415.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: opts.bodyLimit }, (_req, body, done) => done(null, body));

  for (const route of table.routes) {
    if (route.websocket === true) {
      // The WebSocket plumbing lives in ./websocket.ts; the front half (identity, decision, enforcement) is shared.
      websocketRoute(app, route, {
        kind: table.kind,
        timeoutMs: upstream.timeoutMs,
        prepare: (req) => {
          const { decision, path, encoded, params, paths } = decideAndEnforce(app, req, route, opts);
          // An expanded path parameter (RouteSpec.expandPathParam) is only ever asked as its parts: not over a WebSocket.
          if (paths !== undefined) throw new GatewayError('internal', `route ${route.endpoint}: an expanded path parameter cannot be forwarded as sent`);
          // RouteSpec.fanOut: one upstream connection per value of its parameter (a tail per policy alternative).
          const name = route.fanOut?.param;
          const values = name === undefined ? [] : params.getAll(name);
          if (values.length > MAX_FAN_OUT) {
            throw new QueryError(LANGUAGE[opts.table.kind], `the policy has ${values.length} alternatives for this request; at most ${MAX_FAN_OUT} are asked separately`, 'query_too_large');
          }
          const searches =
            name === undefined || values.length < 2
              ? [encoded]
              : values.map((value) => {
                  const one = new FormParams(encoded);
                  one.set(name, value);
                  return one.toString();
                });
          return searches.map((search) => {
            const url = new URL(upstream.pathPrefix + path, upstream.origin);
            url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
            url.search = upstream.auth?.query(search) ?? search;
            const headers = upstreamHeaders(req.headers, upstream, decision, opts.credentialHeaders, ownedHeaders(req));
            if (upstream.auth?.signsRequests === true) headers['host'] = url.host;
            return { url: url.href, headers: signedHeaders(upstream, 'GET', url.href, headers), ...(tls === undefined ? {} : { tls }) };
          });
        },
      });
      continue;
    }
    app.route({
      method: [...route.methods],
      url: route.path,
      onRequest: app.authenticate,
      handler: (req, reply) => forward(app, req, reply, route, opts, lookups),
    });
    // A known path with another method: 405 with Allow, as the backends answer (Grafana falls back
    // from POST to GET on a 405, not on a 404). Nothing is forwarded.
    const others = HTTP_METHODS.filter((m) => !(route.methods as readonly string[]).includes(m));
    if (others.length > 0) {
      const allow = [...route.methods].join(', ');
      const refuse = (req: FastifyRequest, reply: FastifyReply): GatewayError => {
        reply.header('allow', allow);
        return new GatewayError('method_not_allowed', `method ${req.method} not allowed for ${route.endpoint}; use ${allow}`);
      };
      app.route({
        method: others,
        url: route.path,
        // Answered in onRequest: before the body is read, and before the concurrency limit (preHandler).
        onRequest: (req, reply, done) => done(refuse(req, reply)),
        handler: (req, reply) => {
          throw refuse(req, reply);
        },
      });
    }
  }
}

/** Methods answered 405 on a route that does not take them. */
const HTTP_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'] as const;

/**
 * The decision input's `request`: one frozen object per (upstream, route, method, path),
 * reused by every request with that shape, so what is derived from it (the decision-cache
 * key, the audit line's JSON) is computed once and found by identity. Bounded per route:
 * path parameters (label names) come from clients.
 */
const requestInfos = new WeakMap<ResolvedUpstream, Map<RouteSpec, Map<string, Map<string, RequestInfo>>>>();
const MAX_REQUEST_INFOS_PER_ROUTE = 256;

function requestInfoOf(upstream: ResolvedUpstream, kind: RouteTable['kind'], route: RouteSpec, method: string, path: string, team: string | undefined): RequestInfo {
  let byRoute = requestInfos.get(upstream);
  if (byRoute === undefined) requestInfos.set(upstream, (byRoute = new Map()));
  let byMethod = byRoute.get(route);
  if (byMethod === undefined) byRoute.set(route, (byMethod = new Map()));
  let byPath = byMethod.get(method);
  if (byPath === undefined) byMethod.set(method, (byPath = new Map()));
  // Keyed by path and team, unambiguously (the team's length ends it; paths may hold any character).
  const key = team === undefined ? `-${path}` : `${team.length}:${team}${path}`;
  let info = byPath.get(key);
  if (info === undefined) {
    if (byPath.size >= MAX_REQUEST_INFOS_PER_ROUTE) byPath.clear();
    info = Object.freeze(team === undefined ? { upstream: upstream.name, kind, endpoint: route.endpoint, method, path } : { upstream: upstream.name, kind, endpoint: route.endpoint, method, path, team });
    byPath.set(key, info);
  }
  return info;
}

/** Longest team name a client may ask for (config keys are longer only in theory). */
const MAX_TEAM_CHARS = 256;

/**
 * The team the client asks to act as (TEAM_HEADER), or undefined; a malformed
 * one is refused (400), as is a repeated one (Node joins repeats with ", ",
 * which would read as one team's name: the raw header lines show them).
 */
export function requestedTeam(headers: IncomingHttpHeaders, rawHeaders: readonly string[], language: string): string | undefined {
  const raw = headers[TEAM_HEADER];
  if (raw === undefined) return undefined;
  if (Array.isArray(raw) || headerLines(rawHeaders, TEAM_HEADER) > 1) throw new QueryError(language, `more than one ${TEAM_HEADER} header`);
  const team = raw.trim();
  if (team === '' || team.length > MAX_TEAM_CHARS || BAD_HEADER_VALUE_CHAR.test(team)) {
    throw new QueryError(language, `${TEAM_HEADER} must name one team (1 to ${MAX_TEAM_CHARS} characters)`);
  }
  return team;
}

/** What the shared front half of every route established: the decision and the parameters to forward. */
export interface Enforced {
  readonly decision: Decision;
  /** Upstream path (relative to the mount, without the upstream's path prefix). */
  readonly path: string;
  readonly pathParams: Record<string, string>;
  /** The enforced parameters, encoded. */
  readonly encoded: string;
  /** The same, as parameters. */
  readonly params: FormParams;
  /** RouteSpec.heldParams the client sent (restricted subjects): for the response filter. */
  readonly held: Readonly<Record<string, string>> | undefined;
  /**
   * RouteSpec.expandPathParam (restricted subjects): the upstream paths to ask
   * instead of `path`, each a part of a fan-out; `path` itself is never asked.
   */
  readonly paths?: readonly string[];
}

/**
 * Identity checked (by the route's onRequest), policy decided, path parameters
 * validated and query parameters enforced: the same path for HTTP and WebSocket
 * routes. Throws (4xx/5xx in the backend's format) before anything is forwarded.
 */
export function decideAndEnforce(app: FastifyInstance, req: FastifyRequest, route: RouteSpec, opts: UpstreamPluginOptions): Enforced {
  const { upstream, table, limits } = opts;
  const language = LANGUAGE[table.kind];
  const subject = req.subject;
  if (subject === null) throw new GatewayError('unauthenticated', 'no identity');
  const pathParams = (req.params ?? {}) as Record<string, string>;
  for (const [name, value] of Object.entries(pathParams)) {
    const problem = pathParamProblem(route, name, value);
    if (problem !== undefined) throw new QueryError(language, problem);
  }
  const path = upstreamPath(route, pathParams);
  const request = requestInfoOf(upstream, table.kind, route, req.method, path, requestedTeam(req.headers, req.raw.rawHeaders, language));
  const decideStartedAt = performance.now(); // lbac: policy stage timing
  const decision = app.decide({ subject, request });
  noteDecision(req, request, decision, decideStartedAt); // lbac: audit + metrics (src/server/request-state.ts)
  if (!decision.allow) throw new GatewayError('forbidden', `access denied: ${decision.reason}`);
  let paths: string[] | undefined;
  if (!decision.unrestricted) {
    for (const [name, value] of Object.entries(pathParams)) {
      const expanded = route.expandPathParam?.(name, value);
      if (expanded !== undefined) {
        if (paths !== undefined || expanded.length === 0) throw new GatewayError('internal', `route ${route.endpoint}: a path parameter expands to nothing, or two do`);
        paths = expanded.map((v) => {
          const problem = pathParamProblem(route, name, v) ?? route.restrictedPathParam?.(name, v);
          if (problem !== undefined) throw new GatewayError('rewrite_verification_failed', `route ${route.endpoint}: an expanded path parameter is refused: ${problem}`);
          return upstreamPath(route, { ...pathParams, [name]: v });
        });
        continue;
      }
      const problem = route.restrictedPathParam?.(name, value);
      if (problem !== undefined) throw new QueryError(language, problem, 'rewrite_unsupported');
    }
    if (paths !== undefined && route.fanOut === undefined) throw new GatewayError('internal', `route ${route.endpoint} expands a path parameter without a fan-out`);
  }

  const rawUrl = req.raw.url ?? '';
  const q = rawUrl.indexOf('?');
  const search = q >= 0 ? rawUrl.slice(q + 1) : '';
  const body = typeof req.body === 'string' ? req.body : undefined;
  const params = mergeParams(search, body);
  noteOriginalParams(req, route, params); // lbac: audit (original query, copied before enforcement changes params)
  // policyEnforcement "header": where Loki enforces the policy (X-Prom-Label-Policy, upstreamHeaders), parameters are checked, not rewritten.
  const rewriteWith = decision.unrestricted || (upstream.policyEnforcement === 'header' && route.headerEnforced === true) ? undefined : decision.selectors;
  if (!decision.unrestricted && upstream.refuseTraceLevelIntrinsics) {
    const refusal = traceLevelIntrinsicsRefusal(route, params, pathParams);
    if (refusal !== undefined) throw new QueryError(language, refusal, 'rewrite_unsupported');
  }
  const held = decision.unrestricted ? undefined : holdParams(route, params);
  const heldProblem = held === undefined ? undefined : route.heldParamsProblem?.(held);
  if (heldProblem !== undefined) throw new QueryError(language, heldProblem);
  // Parameters no enforcement covers (Loki's storeChunks) go for every restricted subject, also where Loki enforces the header.
  enforceParams(route, params, rewriteWith, limits, language, !decision.unrestricted);
  noteForwardedParams(req, route, params); // lbac: audit (rewritten query), rewrite/upstream stage timing
  return { decision, path, pathParams, encoded: encodeForwarded(params, language), params, held, ...(paths === undefined ? {} : { paths }) };
}


/**
 * A GET to the upstream outside reply-from (route lookups, fan-out parts): `target`
 * (path and query, relative to the upstream's path prefix) with `headers` plus the
 * gateway's own (uncompressed JSON, no body), SigV4 signed for this URL; the answer
 * read whole, up to `limit` bytes. Throws what undici or the read throw.
 */
async function getUpstream(
  pool: Pool,
  upstream: ResolvedUpstream,
  target: string,
  headers: Record<string, string | string[]>,
  limit: number,
  budget: ByteBudget,
  signal?: ClientGone,
): Promise<{ status: number; contentType: string; raw: Buffer }> {
  const path = upstream.pathPrefix + target;
  const base: Record<string, string | string[]> = { ...headers, host: new URL(upstream.origin).host, 'accept-encoding': 'identity', accept: 'application/json' };
  delete base['content-type'];
  delete base['content-length'];
  const res = await pool.request({ method: 'GET', path, headers: signedHeaders(upstream, 'GET', upstream.origin + path, base), ...(signal === undefined ? {} : { signal: signal as never }) });
  return { status: res.statusCode, contentType: String(res.headers['content-type'] ?? ''), raw: await readBounded(res.body, limit, budget) };
}

/**
 * A route's lookup (RouteSpec.lookup): one GET to the upstream with the request's
 * upstream headers (tenant, credentials; SigV4 signed for this URL), its JSON
 * answer parsed. Any failure is the request's failure (502).
 */
async function runLookup(spec: LookupSpec, decision: Decision, headers: Record<string, string | string[]>, upstream: ResolvedUpstream, pool: Pool, budget: ByteBudget): Promise<{ value: unknown; bytes: number }> {
  const encoded = spec.params(decision.selectors, Math.floor(Date.now() / 1000)).toString();
  let status: number;
  let raw: Buffer;
  try {
    ({ status, raw } = await getUpstream(pool, upstream, `${spec.path}?${upstream.auth?.query(encoded) ?? encoded}`, headers, MAX_FILTERED_BODY, budget));
  } catch (e) {
    if (e instanceof GatewayError && e.code === 'overloaded') throw e;
    throw new GatewayError('upstream_error', 'upstream unavailable', { cause: e });
  }
  if (status < 200 || status > 299) throw lookupRefused(status);
  try {
    return { value: JSON.parse(raw.toString('utf8')) as unknown, bytes: raw.length };
  } catch (e) {
    throw new GatewayError('upstream_error', 'upstream answer could not be read', { cause: e });
  }
}

/**
 * A lookup the upstream did not answer with 2xx fails its request. Back-off answers
 * keep their status, as the upstream would have answered the request itself: 429 and
 * 503 (overloaded, rate-limited: a client should retry later, not report a broken
 * backend) and 504. Anything else is 502. The upstream's error text is not relayed:
 * it is about the lookup, which carries the policy's matchers.
 */
function lookupRefused(status: number): GatewayError {
  const message = `upstream answered ${status} to the gateway's lookup`;
  if (status === 504) return new GatewayError('upstream_timeout', message);
  return new GatewayError('upstream_error', message, status === 429 || status === 503 ? { status } : undefined);
}

/**
 * The route's lookup answer: reused from `cache` when the spec allows it and
 * the answer cannot depend on more than the policy and its tenant headers (a
 * forwarded Authorization lets the upstream answer per user), else asked now.
 */
function lookupAnswer(spec: LookupSpec, decision: Decision, headers: Record<string, string | string[]>, upstream: ResolvedUpstream, lookups: Lookups, budget: ByteBudget): Promise<unknown> {
  const ask = () => runLookup(spec, decision, headers, upstream, lookups.pool, budget);
  if (spec.maxAgeMs === undefined || upstream.forwardAuthorization) return ask().then((a) => a.value);
  return lookups.cache.get(`${spec.path}\u0000${JSON.stringify(decision.selectors)}\u0000${JSON.stringify(decision.headers)}`, spec.maxAgeMs, ask);
}

/** The client headers a route lookup takes: the request id, and Authorization where the upstream gets it. */
function lookupClientHeaders(req: FastifyRequest, upstream: ResolvedUpstream): IncomingHttpHeaders {
  const own: IncomingHttpHeaders = { 'x-request-id': req.id };
  if (upstream.forwardAuthorization && req.headers.authorization !== undefined) own.authorization = req.headers.authorization;
  return own;
}

/**
 * Removes the upstream answer's headers (as relayed) from a reply the gateway
 * answers itself (Tempo's trace by id: its own 404 for a trace without the
 * team's spans, and for errors about a trace), but `keep`: that answer must
 * be the same whatever the upstream answered (Go's http.Error adds
 * `X-Content-Type-Options`, a 200 does not). The gateway's own headers
 * (`X-Request-Id`) stay.
 */
function dropUpstreamHeaders(reply: FastifyReply, upstream: IncomingHttpHeaders, keep?: string): void {
  for (const name in upstream) {
    const lower = name.toLowerCase();
    if (lower !== keep && lower !== 'x-request-id') reply.removeHeader(lower);
  }
}

/** FilterContext.refuseTraceLevelIntrinsics of an upstream: set only where the upstream sets it, so other filters' contexts stay as they were. */
function traceLevelContext(upstream: ResolvedUpstream): { refuseTraceLevelIntrinsics?: true } {
  return upstream.refuseTraceLevelIntrinsics ? { refuseTraceLevelIntrinsics: true } : {};
}

/** A filtered answer's body as Fastify sends it (a Buffer view of the filter's bytes, or its text). */
function sendable(out: RawFilteredResponse): string | Buffer {
  return typeof out.body === 'string' ? out.body : Buffer.from(out.body.buffer, out.body.byteOffset, out.body.byteLength);
}

/** Most upstream requests one fanned-out request makes (one per policy alternative it can reach). */
const MAX_FAN_OUT = 32;

/**
 * RouteSpec.fanOut: the request once per value of the fan-out parameter (a GET
 * through the lookup pool, with the headers the forwarded request would carry,
 * SigV4 signed per URL), and what the route's merge makes of the answers,
 * filtered as the route's answer is. An upstream refusal of a client error (4xx but 429)
 * is relayed as the upstream wrote it; other failures as for lookups.
 */
async function fanOutReply(
  req: FastifyRequest,
  reply: FastifyReply,
  route: RouteSpec,
  spec: FanOutSpec,
  enforced: Pick<Enforced, 'decision' | 'path' | 'pathParams' | 'params' | 'paths'>,
  opts: PluginOptions,
  pool: Pool,
): Promise<FastifyReply> {
  const { upstream } = opts;
  const { decision, pathParams, params } = enforced;
  const name = spec.param;
  const merge = spec.merge;
  if (merge === undefined) throw new GatewayError('internal', `route ${route.endpoint} fans out without a merge`);
  const values = params.getAll(name);
  // One part per upstream path (RouteSpec.expandPathParam) and value of the fan-out parameter.
  const paths = enforced.paths ?? [enforced.path];
  const count = values.length * paths.length;
  if (count > MAX_FAN_OUT) {
    throw new QueryError(LANGUAGE[opts.table.kind], `the policy has ${values.length} alternatives for this request (${count} upstream requests); at most ${MAX_FAN_OUT} are asked separately`, 'query_too_large');
  }
  // Each part is an upstream request: the ones beyond the request's own slot count against maxConcurrent too
  // (at most the limit in all: a policy with more alternatives than the limit is still served, its parts queued in the pool).
  const extra = Math.min(count, upstream.maxConcurrent ?? count) - 1;
  if (clientGone(req)) throw new GatewayError('client_closed', 'the client closed the connection');
  if (req.server.hasDecorator('upstreamSlots') && !req.server.upstreamSlots.takeExtra(upstream.name, extra, reply)) {
    reply.header('retry-after', '1');
    if (req.lbac?.shed === 'subject_concurrency') {
      throw new GatewayError('overloaded', `this subject has ${upstream.maxConcurrentPerSubject} requests in flight to upstream ${upstream.name} (its per-subject limit; this request needs ${count}); retry later`);
    }
    throw new GatewayError('overloaded', `upstream ${upstream.name} is at its concurrency limit (${upstream.maxConcurrent}; this request needs ${count}); retry later`);
  }
  const headers = upstreamHeaders(req.headers, upstream, decision, opts.credentialHeaders, ownedHeaders(req));
  const gone = new ClientGone();
  if (req.lbac !== null && req.lbac !== undefined) req.lbac.cancelUpstream = gone;
  spec.pin?.(params, Date.now());
  const all = params.toString();
  // The parts together hold no more than one filtered answer may.
  const partLimit = Math.floor(MAX_FILTERED_BODY / count);
  const answers = await Promise.all(
    paths.flatMap((path) => values.map((value) => [path, value] as const)).map(async ([path, value]) => {
      // The forwarded parameters with only this value of the fan-out parameter, where the first was.
      const one = new FormParams(all);
      one.set(name, value);
      const encoded = one.toString();
      try {
        return await getUpstream(pool, upstream, `${path}?${upstream.auth?.query(encoded) ?? encoded}`, headers, partLimit, opts.answerBudget, gone);
      } catch (e) {
        if (gone.aborted) throw new GatewayError('client_closed', 'the client closed the connection', { cause: e });
        if (e instanceof GatewayError && e.code === 'overloaded') throw e;
        if (e instanceof Error && e.message === 'response too large') throw new GatewayError('upstream_error', 'upstream answers too large to merge', { cause: e });
        throw upstreamFailure(e);
      }
    }),
  );
  const failed = answers.find((a) => a.status < 200 || a.status > 299);
  if (failed !== undefined) {
    if (failed.status >= 400 && failed.status < 500 && failed.status !== 429) return reply.code(failed.status).type(failed.contentType || 'text/plain').send(failed.raw);
    throw lookupRefused(failed.status);
  }
  // Large parts are parsed and merged off the event loop (../filter-offload.ts).
  const bytes = await mergeAnswers(merge, { kind: opts.table.kind, endpoint: route.endpoint, parts: answers.map((a) => a.raw), params: params.toString() });
  const merged = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const filter = decision.unrestricted || route.filters?.(decision.selectors, pathParams) === false ? undefined : responseFilterOf(route);
  if (filter === undefined) return reply.type('application/json').send(merged);
  const out = await filterAnswer(filter, { kind: opts.table.kind, endpoint: route.endpoint, raw: merged, contentType: 'application/json', ctx: { policy: decision.selectors, pathParams, ...traceLevelContext(upstream) } });
  return reply.code(out.status).type(out.contentType).send(sendable(out));
}

/** How long an upstream's reported version is kept (a rolling upgrade shows within this). */
const VERSION_MAX_AGE_MS = 5 * 60_000;

/**
 * RouteSpec.minVersion: the upstream (its `version` setting, else its
 * buildinfo, kept for a few minutes) must be at least `min`, or the request
 * is refused (403): an older release would answer it for the whole tenant.
 * A buildinfo that cannot be read fails the request (502), not the check.
 */
async function requireVersion(req: FastifyRequest, endpoint: string, min: string, decision: Decision, opts: PluginOptions, lookups: Lookups | undefined): Promise<void> {
  const { upstream, table } = opts;
  let reported = upstream.version;
  if (reported === undefined && lookups !== undefined && table.buildinfoPath !== undefined) {
    const path = table.buildinfoPath;
    const headers = upstreamHeaders(lookupClientHeaders(req, upstream), upstream, decision, opts.credentialHeaders, ownedHeaders(req));
    const value = await lookups.cache.get(`buildinfo\u0000${path}`, VERSION_MAX_AGE_MS, async () => {
      let answer: { status: number; raw: Buffer };
      try {
        answer = await getUpstream(lookups.pool, upstream, path, headers, 64 * 1024, opts.answerBudget);
      } catch (e) {
        throw upstreamFailure(e as Error);
      }
      if (answer.status !== 200) throw new GatewayError('upstream_error', `the upstream's buildinfo (${path}) answered ${answer.status}; set upstreams[].version if it cannot be reached`);
      let body: unknown;
      try {
        body = JSON.parse(answer.raw.toString('utf8'));
      } catch (e) {
        throw new GatewayError('upstream_error', "the upstream's buildinfo could not be read", { cause: e });
      }
      return { value: buildinfoVersion(body) ?? null, bytes: answer.raw.length };
    });
    reported = typeof value === 'string' ? value : undefined;
  }
  const problem = versionProblem(table.kind, endpoint, min, reported);
  if (problem !== undefined) throw new GatewayError('forbidden', problem);
}

/** Where route lookups and fan-out parts go: their own connection pools, and the lookup answers kept for reuse. */
interface Lookups {
  readonly pool: Pool;
  /** Fan-out parts (RouteSpec.fanOut): their own pool, sized to the upstream's concurrency limit. */
  readonly fanOutPool: Pool;
  readonly cache: LookupCache;
}

/**
 * No retries: reply-from retries a GET answered 503 up to ten times (and any request on a socket
 * error when asked to), which multiplied the load on a backend that had just said it was
 * overloaded and held the client meanwhile. The answer is relayed; retrying is the client's call.
 */
const NO_RETRY = (): null => null;

/** An upstream request that got no answer to relay: 504 when it timed out, else 502. */
function upstreamFailure(error: unknown): GatewayError {
  const code = (error as { code?: string })?.code ?? '';
  const timeout = /TIMEOUT/i.test(code) || (error as { statusCode?: number })?.statusCode === 504;
  return new GatewayError(timeout ? 'upstream_timeout' : 'upstream_error', timeout ? 'upstream timed out' : 'upstream unavailable', { cause: error });
}

/** reply-from's onError: the upstream failed or timed out (no answer to relay). */
function upstreamFailed(r: { send(payload: unknown): unknown }, { error }: { error: Error }): void {
  r.send(upstreamFailure(error));
}

/**
 * The route handler. Synchronous unless the request needs to wait for
 * something first (the upstream's version, a fan-out, a lookup for the
 * response filter): Fastify then gets a promise, otherwise nothing, and the
 * reply is sent by reply-from; a handler's promise costs microtask turns on
 * every request.
 */
function forward(
  app: FastifyInstance,
  req: FastifyRequest,
  reply: FastifyReply,
  route: RouteSpec,
  opts: PluginOptions,
  lookups?: Lookups,
): Promise<FastifyReply> | undefined {
  // The client left while the request was authenticated or waited for a slot: nothing to ask the upstream for.
  if (clientGone(req)) throw new GatewayError('client_closed', 'the client closed the connection');
  const enforced = decideAndEnforce(app, req, route, opts);
  const { decision } = enforced;
  req.log.debug({ endpoint: route.endpoint, unrestricted: decision.unrestricted }, 'forwarding');
  // A route may filter the upstream's answer (the raw bytes in any representation, e.g.
  // Tempo traces as JSON or protobuf, or parsed JSON). The client's Accept is forwarded
  // (upstreamHeaders), so the upstream answers the representation asked for, except that
  // an answer only filtered as JSON is not asked for as protobuf (relay).
  const filter = decision.unrestricted || route.filters?.(decision.selectors, enforced.pathParams) === false ? undefined : responseFilterOf(route);
  const f: Forwarding = { req, reply, route, opts, enforced, filter };
  if (waitsForVersion(route, decision) || fansOut(route, enforced, lookups) || needsLookup(route, filter, lookups)) return forwardAfterWaiting(f, lookups);
  relay(f, undefined);
  return undefined;
}

/** One request on its way upstream, once decided and enforced. */
interface Forwarding {
  readonly req: FastifyRequest;
  readonly reply: FastifyReply;
  readonly route: RouteSpec;
  readonly opts: PluginOptions;
  readonly enforced: Enforced;
  /** The response filter, when the answer is filtered for this decision. */
  readonly filter: RawResponseFilter | undefined;
}

/** The upstream's version must be checked first (RouteSpec.minVersion; restricted subjects only). */
const waitsForVersion = (route: RouteSpec, decision: Decision): boolean => route.minVersion !== undefined && !decision.unrestricted;
/** Asked once per value of the fan-out parameter (RouteSpec.fanOut). */
const fansOut = (route: RouteSpec, enforced: Enforced, lookups: Lookups | undefined): lookups is Lookups =>
  route.fanOut !== undefined && lookups !== undefined && (enforced.paths !== undefined || enforced.params.getAll(route.fanOut.param).length > 1);
/** The response filter needs a lookup's answer (RouteSpec.lookup). */
const needsLookup = (route: RouteSpec, filter: RawResponseFilter | undefined, lookups: Lookups | undefined): lookups is Lookups =>
  filter !== undefined && route.lookup !== undefined && lookups !== undefined;

async function forwardAfterWaiting(f: Forwarding, lookups: Lookups | undefined): Promise<FastifyReply> {
  const { req, reply, route, opts, filter } = f;
  const { upstream } = opts;
  const { decision, path, pathParams, params } = f.enforced;
  if (waitsForVersion(route, decision)) {
    await requireVersion(req, route.endpoint, route.minVersion as string, decision, opts, lookups);
    if (clientGone(req)) throw new GatewayError('client_closed', 'the client closed the connection');
  }
  if (fansOut(route, f.enforced, lookups)) {
    return fanOutReply(req, reply, route, route.fanOut as FanOutSpec, { decision, path, pathParams, params, ...(f.enforced.paths === undefined ? {} : { paths: f.enforced.paths }) }, opts, lookups.fanOutPool);
  }
  // The lookup carries only what the gateway controls (its answer is shared: lookup-cache.ts), plus the
  // client's Authorization for upstreams that get it (never shared). The client may leave while it runs.
  const lookup = needsLookup(route, filter, lookups)
    ? await lookupAnswer(route.lookup as LookupSpec, decision, upstreamHeaders(lookupClientHeaders(req, upstream), upstream, decision, opts.credentialHeaders, ownedHeaders(req)), upstream, lookups, opts.answerBudget)
    : undefined;
  if (clientGone(req)) throw new GatewayError('client_closed', 'the client closed the connection');
  return relay(f, lookup);
}

/** Sends the enforced request upstream and relays (or filters) its answer. */
function relay(f: Forwarding, lookup: unknown): FastifyReply {
  const { req, reply, route, opts, filter } = f;
  // An expanded path parameter (RouteSpec.expandPathParam) is only ever asked as its parts.
  if (f.enforced.paths !== undefined) throw new GatewayError('internal', `route ${route.endpoint}: an expanded path parameter cannot be forwarded as sent`);
  const { upstream } = opts;
  const { decision, path, pathParams, encoded, held } = f.enforced;
  const headers = upstreamHeaders(req.headers, upstream, decision, opts.credentialHeaders, ownedHeaders(req));
  // A filtered answer is read whole and re-serialised: ask for it uncompressed, and where only JSON
  // is filtered, not as protobuf (Tempo answers protobuf to a client that asks for it: a 502 here).
  if (filter !== undefined) {
    headers['accept-encoding'] = 'identity';
    if (route.rawResponseFilter === undefined && /protobuf/i.test(String(headers['accept'] ?? ''))) headers['accept'] = 'application/json';
  }
  const source = upstream.pathPrefix + path;
  const query = req.method === 'GET' ? (upstream.auth?.query(encoded) ?? encoded) : '';
  // Cancels the upstream request if the client leaves before the answer (fired by plugins/context.ts).
  const gone = new ClientGone();
  if (req.lbac !== null && req.lbac !== undefined) req.lbac.cancelUpstream = gone;
  const common = {
    ...(filter === undefined
      ? {}
      : {
          // reply-from's typings call `res` a server response; at run time it is the upstream response.
          onResponse: (_r: unknown, replyArg: unknown, resArg: unknown) => {
            const rep = replyArg as FastifyReply;
            const res = resArg as { statusCode: number; headers: IncomingHttpHeaders; stream: NodeJS.ReadableStream };
            readBounded(res.stream, MAX_FILTERED_BODY, opts.answerBudget).then(
              (raw) => {
                // The reply has no upstream Content-Length or Content-Encoding (filteredDownstreamHeaders).
                // A redirect is not followed or relayed: its body is unfiltered and its Location the upstream's own address.
                if (res.statusCode >= 300 && res.statusCode <= 399) return rep.send(new GatewayError('upstream_error', `upstream answered ${res.statusCode} (a redirect)`));
                // Errors (4xx/5xx) pass through as the upstream wrote them, unless the route answers them itself
                // (RouteSpec.upstreamErrorAnswer: Tempo's trace by id); every 2xx answer is filtered.
                if (res.statusCode < 200 || res.statusCode > 299) {
                  const own = route.upstreamErrorAnswer?.(res.statusCode);
                  if (own === undefined) return rep.send(raw);
                  const note = { endpoint: route.endpoint, upstreamStatus: res.statusCode, answered: own.status };
                  if (res.statusCode >= 500) req.log.warn(note, 'upstream error answered by the route');
                  else req.log.info(note, 'upstream error answered by the route');
                  dropUpstreamHeaders(rep, res.headers, own instanceof GatewayError ? 'retry-after' : undefined);
                  return own instanceof GatewayError ? rep.send(own) : rep.code(own.status).type(own.contentType).send(sendable(own));
                }
                const task = { kind: opts.table.kind, endpoint: route.endpoint, raw, contentType: String(res.headers['content-type'] ?? ''), ctx: { policy: decision.selectors, pathParams, lookup, ...(held === undefined ? {} : { held }), ...traceLevelContext(opts.upstream) } };
                return filterAnswer(filter, task).then(
                  (out) => {
                    const body = sendable(out);
                    // Keep the upstream's 2xx (e.g. 206) unless the filter decided otherwise (404: nothing left),
                    // when the answer is the gateway's own, without the upstream's headers.
                    if (out.status !== 200) dropUpstreamHeaders(rep, res.headers);
                    return rep.code(out.status === 200 ? res.statusCode : out.status).type(out.contentType).send(body);
                  },
                  (e: unknown) => rep.send(e instanceof GatewayError && e.code === 'overloaded' ? e : new GatewayError('upstream_error', 'upstream answer could not be filtered', { cause: e })),
                );
              },
              (e: unknown) => rep.send(e instanceof GatewayError && e.code === 'overloaded' ? e : new GatewayError('upstream_error', 'upstream response too large or failed', { cause: e })),
            );
          },
        }),
    retryDelay: NO_RETRY,
    rewriteHeaders: filter === undefined ? downstreamHeaders : filteredDownstreamHeaders,
    rewriteRequestHeaders: (_r: unknown, h: IncomingHttpHeaders) => {
      // `headers` is this request's own object: completed in place rather than copied once more.
      const out = headers as Record<string | symbol, unknown> as Record<string, string | string[]>;
      out['host'] = h.host ?? new URL(upstream.origin).host;
      // The body is the gateway's form (the client's Content-Type is never forwarded: upstreamHeaders).
      if (req.method !== 'GET') out['content-type'] = FORM_CONTENT_TYPE;
      (out as Record<symbol, unknown>)[CLIENT_GONE] = gone;
      if (upstream.auth?.signsRequests !== true) return out;
      // reply-from sends new URL(source, base).pathname + "?" + query, and `body` as given.
      const target = upstream.origin + new URL(source.startsWith('//') ? `.${source}` : source, upstream.origin).pathname + (query === '' ? '' : `?${query}`);
      return signedHeaders(upstream, req.method, target, out, req.method === 'GET' ? undefined : encoded);
    },
    onError: upstreamFailed,
  };
  if (req.method === 'GET') return reply.from(source, { ...common, queryString: () => query });
  return reply.from(source, { ...common, queryString: () => '', body: encoded, contentType: FORM_CONTENT_TYPE });
}
