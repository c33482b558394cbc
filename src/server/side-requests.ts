/**
 * Requests the gateway makes to an upstream itself, outside reply-from: a
 * route's lookup (a second answer its response filter needs), the parts of a
 * fanned-out request and their merge, and the upstream's version check.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Pool } from 'undici';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { FormParams } from '../backends/form-params.ts';
import { unfilteredErrorAnswer } from '../backends/error-answers.ts';
import { buildinfoVersion, versionProblem } from '../backends/versions.ts';
import { responseFilterOf, type FanOutSpec, type LookupSpec, type RawFilteredResponse, type RouteSpec } from '../backends/routes.ts';
import type { ResolvedUpstream } from '../config/load.ts';
import { GatewayError, QueryError } from '../errors.ts';
import type { Decision } from '../policy/decision.ts';
import { MAX_FILTERED_BODY, readBounded, type ByteBudget } from './answer-budget.ts';
import { LANGUAGE, type Enforced } from './enforce.ts';
import { filterAnswer, mergeAnswers } from './filter-offload.ts';
import type { LookupCache } from './lookup-cache.ts';
import type { PluginOptions } from './plugins/upstream.ts';
import { clientGone } from './plugins/context.ts';
import { ownedHeaders, signedHeaders, upstreamHeaders } from './upstream-headers.ts';
import { ClientGone } from './upstream-dispatcher.ts';

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
export function lookupAnswer(spec: LookupSpec, decision: Decision, headers: Record<string, string | string[]>, upstream: ResolvedUpstream, lookups: Lookups, budget: ByteBudget): Promise<unknown> {
  const ask = () => runLookup(spec, decision, headers, upstream, lookups.pool, budget);
  if (spec.maxAgeMs === undefined || upstream.forwardAuthorization) return ask().then((a) => a.value);
  return lookups.cache.get(`${spec.path}\u0000${JSON.stringify(decision.selectors)}\u0000${JSON.stringify(decision.headers)}`, spec.maxAgeMs, ask);
}

/** The client headers a route lookup takes: the request id, and Authorization where the upstream gets it. */
export function lookupClientHeaders(req: FastifyRequest, upstream: ResolvedUpstream): IncomingHttpHeaders {
  const own: IncomingHttpHeaders = { 'x-request-id': req.id };
  if (upstream.forwardAuthorization && req.headers.authorization !== undefined) own.authorization = req.headers.authorization;
  return own;
}

/** FilterContext.refuseTraceLevelIntrinsics of an upstream: set only where the upstream sets it, so other filters' contexts stay as they were. */
export function traceLevelContext(upstream: ResolvedUpstream): { refuseTraceLevelIntrinsics?: true } {
  return upstream.refuseTraceLevelIntrinsics ? { refuseTraceLevelIntrinsics: true } : {};
}

/** A filtered answer's body as Fastify sends it (a Buffer view of the filter's bytes, or its text). */
export function sendable(out: RawFilteredResponse): string | Buffer {
  return typeof out.body === 'string' ? out.body : Buffer.from(out.body.buffer, out.body.byteOffset, out.body.byteLength);
}

/** Most upstream requests one fanned-out request makes (one per policy alternative it can reach). */
export const MAX_FAN_OUT = 32;

/**
 * RouteSpec.fanOut: the request once per value of the fan-out parameter (a GET
 * through the lookup pool, with the headers the forwarded request would carry,
 * SigV4 signed per URL), and what the route's merge makes of the answers,
 * filtered as the route's answer is. An upstream refusal of a client error (4xx but 429)
 * is relayed as its error message (unfilteredErrorAnswer); other failures as for lookups.
 */
export async function fanOutReply(
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
    if (failed.status >= 400 && failed.status < 500 && failed.status !== 429) {
      const relayed = unfilteredErrorAnswer(failed.raw, failed.contentType, failed.status);
      if (relayed instanceof GatewayError) throw relayed;
      return reply.code(failed.status).type(relayed.contentType).send(relayed.body);
    }
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
export async function requireVersion(req: FastifyRequest, endpoint: string, min: string, decision: Decision, opts: PluginOptions, lookups: Lookups | undefined): Promise<void> {
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
export interface Lookups {
  readonly pool: Pool;
  /** Fan-out parts (RouteSpec.fanOut): their own pool, sized to the upstream's concurrency limit. */
  readonly fanOutPool: Pool;
  readonly cache: LookupCache;
}

/** An upstream request that got no answer to relay: 504 when it timed out, else 502. */
export function upstreamFailure(error: unknown): GatewayError {
  const code = (error as { code?: string })?.code ?? '';
  const timeout = /TIMEOUT/i.test(code) || (error as { statusCode?: number })?.statusCode === 504;
  return new GatewayError(timeout ? 'upstream_timeout' : 'upstream_error', timeout ? 'upstream timed out' : 'upstream unavailable', { cause: error });
}
