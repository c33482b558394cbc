/**
 * The front half every upstream route shares (HTTP and WebSocket): path
 * parameters checked, the policy decided for (subject, request), query
 * parameters enforced. Throws, in the backend's error format, before anything
 * is forwarded.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { traceLevelIntrinsicsRefusal } from '../backends/tempo.ts';
import type { FormParams } from '../backends/form-params.ts';
import { encodeForwarded, enforceParams, holdParams, mergeParams } from '../backends/params.ts';
import { pathParamProblem, upstreamPath, type RouteSpec, type RouteTable } from '../backends/routes.ts';
import type { ResolvedUpstream } from '../config/load.ts';
import { GatewayError, QueryError } from '../errors.ts';
import type { Decision, RequestInfo } from '../policy/decision.ts';
import { BAD_HEADER_VALUE_CHAR, headerLines, TEAM_HEADER } from '../util/header-name.ts';
import type { UpstreamPluginOptions } from './plugins/upstream.ts';
import { noteDecision, noteForwardedParams, noteOriginalParams } from './request-state.ts'; // lbac: decision/query/timings for audit + metrics

export const LANGUAGE: Record<RouteTable['kind'], string> = { prometheus: 'promql', loki: 'logql', tempo: 'traceql' };

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
  noteOriginalParams(req, route, params, limits.maxQueryLength); // lbac: audit (original query, copied before enforcement changes params)
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
