import type { IncomingHttpHeaders } from 'node:http';
import replyFrom from '@fastify/reply-from';
import { Agent, Pool } from 'undici';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { unfilteredErrorAnswer } from '../../backends/error-answers.ts';
import { FormParams } from '../../backends/form-params.ts';
import { responseFilterOf, type FanOutSpec, type LookupSpec, type RawFilteredResponse, type RawResponseFilter, type RouteSpec, type RouteTable } from '../../backends/routes.ts';
import type { ResolvedUpstream } from '../../config/load.ts';
import { GatewayError, QueryError } from '../../errors.ts';
import type { Decision } from '../../policy/decision.ts';
import type { RewriteLimits } from '../../rewrite/rewriter.ts';
import { AnswerTooLarge, ByteBudget, DEFAULT_BUFFERED_ANSWER_BYTES, MAX_FILTERED_BODY, readBounded } from '../answer-budget.ts';
import { decideAndEnforce, LANGUAGE, type Enforced } from '../enforce.ts';
import { filterAnswer } from '../filter-offload.ts';
import { LookupCache } from '../lookup-cache.ts';
import { fanOutReply, lookupAnswer, lookupClientHeaders, MAX_FAN_OUT, requireVersion, sendable, traceLevelContext, upstreamFailure, type Lookups } from '../side-requests.ts';
import { cancellingDispatcher, CLIENT_GONE, ClientGone } from '../upstream-dispatcher.ts';
import { downstreamHeaders, dropUpstreamHeaders, filteredDownstreamHeaders, FORM_CONTENT_TYPE, ownedHeaders, signedHeaders, upstreamHeaders } from '../upstream-headers.ts';
import { clientGone } from './context.ts';
import { installErrorHandlers } from './errors.ts';
import { websocketRoute } from './websocket.ts';

/**
 * One upstream's Fastify plugin: its routes, each authenticated (onRequest),
 * decided and enforced (../enforce.ts), and forwarded with reply-from, its
 * answer relayed or filtered. Lookups, fan-outs and version checks:
 * ../side-requests.ts; headers: ../upstream-headers.ts.
 */
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


/** The plugin's options with the answer budget settled once (options without a shared one, as in tests: one of its own). */
export type PluginOptions = UpstreamPluginOptions & { readonly answerBudget: ByteBudget };

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
 * No retries: reply-from retries a GET answered 503 up to ten times (and any request on a socket
 * error when asked to), which multiplied the load on a backend that had just said it was
 * overloaded and held the client meanwhile. The answer is relayed; retrying is the client's call.
 */
const NO_RETRY = (): null => null;

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
  // Where Loki enforces the policy itself (policyEnforcement "header"), a restricted subject's request goes
  // as GET: Loki's access control reads some queries from the URL only (its aggregated-metric and volume
  // rewrites), so a POSTed body would pass them unchecked (its query then travels in the URL: docs/rewriting-logql.md).
  const get = req.method === 'GET' || (upstream.policyEnforcement === 'header' && route.headerEnforced === true && !decision.unrestricted);
  const query = get ? (upstream.auth?.query(encoded) ?? encoded) : '';
  // Cancels the upstream request if the client leaves before the answer (fired by plugins/context.ts).
  const gone = new ClientGone();
  if (req.lbac !== null && req.lbac !== undefined) req.lbac.cancelUpstream = gone;
  // reply-from's typings call `res` a server response; at run time it is the upstream response.
  const onResponse =
    filter === undefined
      ? undefined
      : (_r: unknown, replyArg: unknown, resArg: unknown) => {
          const rep = replyArg as FastifyReply;
          const res = resArg as { statusCode: number; headers: IncomingHttpHeaders; stream: NodeJS.ReadableStream };
          // The route's own answer instead of the upstream's (RouteSpec.upstreamErrorAnswer), without the upstream's headers.
          const answerOwn = (own: RawFilteredResponse | GatewayError, upstreamStatus: number): FastifyReply => {
            const note = { endpoint: route.endpoint, upstreamStatus, answered: own.status };
            if (upstreamStatus >= 500) req.log.warn(note, 'upstream error answered by the route');
            else req.log.info(note, 'upstream error answered by the route');
            dropUpstreamHeaders(rep, res.headers, own instanceof GatewayError ? 'retry-after' : undefined);
            return own instanceof GatewayError ? rep.send(own) : rep.code(own.status).type(own.contentType).send(sendable(own));
          };
          readBounded(res.stream, MAX_FILTERED_BODY, opts.answerBudget).then(
            (raw) => {
              // The reply has no upstream Content-Length or Content-Encoding (filteredDownstreamHeaders).
              // A redirect is not followed or relayed: its body is unfiltered and its Location the upstream's own address.
              if (res.statusCode >= 300 && res.statusCode <= 399) return answerOwn(new GatewayError('upstream_error', `upstream answered ${res.statusCode} (a redirect)`), res.statusCode);
              // Errors (4xx/5xx) pass as the backend's error message (relayableError), unless the route answers them
              // itself (RouteSpec.upstreamErrorAnswer: Tempo's trace by id); every 2xx answer is filtered.
              if (res.statusCode < 200 || res.statusCode > 299) {
                const own = route.upstreamErrorAnswer?.(res.statusCode);
                if (own !== undefined) return answerOwn(own, res.statusCode);
                const relayed = unfilteredErrorAnswer(raw, String(res.headers['content-type'] ?? ''), res.statusCode);
                if (relayed instanceof GatewayError) return answerOwn(relayed, res.statusCode);
                return rep.type(relayed.contentType).send(relayed.body);
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
                (e: unknown) => {
                  // The gateway's own error, without the headers of the upstream answer it could not filter.
                  dropUpstreamHeaders(rep, res.headers, 'retry-after');
                  return rep.send(e instanceof GatewayError && e.code === 'overloaded' ? e : new GatewayError('upstream_error', 'upstream answer could not be filtered', { cause: e }));
                },
              );
            },
            (e: unknown) => {
              // An answer too large to filter is, where the route answers errors itself, answered as the upstream's own
              // "response larger than the max" (500) would be: its size must not tell a trace made only of other
              // teams' spans (Tempo 200, over MAX_FILTERED_BODY) from a missing one (Tempo 404).
              const own = e instanceof AnswerTooLarge ? route.upstreamErrorAnswer?.(res.statusCode >= 200 && res.statusCode <= 299 ? 500 : res.statusCode) : undefined;
              if (own !== undefined) return answerOwn(own, res.statusCode);
              dropUpstreamHeaders(rep, res.headers, 'retry-after');
              return rep.send(e instanceof GatewayError && e.code === 'overloaded' ? e : new GatewayError('upstream_error', 'upstream response too large or failed', { cause: e }));
            },
          );
        };
  // One options object, of one shape for every kind of request (an absent option is undefined, which
  // reply-from reads as absent): built as `{ ...common, … }` it was two objects per request, in four
  // shapes (filtered or not, GET or POST) for reply-from's property reads to tell apart.
  return reply.from(source, {
    onResponse,
    retryDelay: NO_RETRY,
    rewriteHeaders: filter === undefined ? downstreamHeaders : filteredDownstreamHeaders,
    rewriteRequestHeaders: (_r: unknown, h: IncomingHttpHeaders) => {
      // `headers` is this request's own object: completed in place rather than copied once more.
      const out = headers as Record<string | symbol, unknown> as Record<string, string | string[]>;
      out['host'] = h.host ?? new URL(upstream.origin).host;
      // The body is the gateway's form (the client's Content-Type is never forwarded: upstreamHeaders).
      if (!get) out['content-type'] = FORM_CONTENT_TYPE;
      (out as Record<symbol, unknown>)[CLIENT_GONE] = gone;
      if (upstream.auth?.signsRequests !== true) return out;
      // reply-from sends new URL(source, base).pathname + "?" + query, and `body` as given.
      const target = upstream.origin + new URL(source.startsWith('//') ? `.${source}` : source, upstream.origin).pathname + (query === '' ? '' : `?${query}`);
      return signedHeaders(upstream, get ? 'GET' : req.method, target, out, get ? undefined : encoded);
    },
    onError: upstreamFailed,
    method: get ? 'GET' : undefined,
    queryString: get ? () => query : NO_QUERY_STRING,
    // null: a POST sent on as GET leaves the client's body behind (reply-from would otherwise send it).
    body: get ? (req.method === 'GET' ? undefined : null) : encoded,
    contentType: get ? undefined : FORM_CONTENT_TYPE,
  });
}

/** A POST's query string upstream: none (its parameters travel in the body). */
const NO_QUERY_STRING = (): string => '';
