import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { BackendKind } from '../backends/routes.ts';
import { ROUTE_TABLES } from '../backends/tables.ts';
import { assertFilterWorker, closeFilterPool } from './filter-offload.ts';
import type { GatewayConfig } from '../config/load.ts';
import type { Authenticator } from '../identity/authenticator.ts';
import type { PolicyEngine } from '../policy/engine.ts';
import { PolicyHolder } from '../policy/holder.ts';
import type { GatewayMetrics } from './metrics.ts';
import { AuditLog, auditPlugin } from './plugins/audit.ts';
import { contextPlugin, requestIdFor, type RouteIndex } from './plugins/context.ts';
import { GatewayLogController } from './log-controller.ts';
import { lazyRequestLogger } from './request-logger.ts';
import { answerRouterRefusal, installErrorHandlers } from './plugins/errors.ts';
import { healthPlugin } from './plugins/health.ts';
import { identityPlugin } from './plugins/identity.ts';
import { limitsPlugin } from './plugins/limits.ts';
import { metricsPlugin } from './plugins/metrics.ts';
import { policyPlugin } from './plugins/policy.ts';
import { ByteBudget } from './answer-budget.ts';
import { upstreamPlugin } from './plugins/upstream.ts';
import { websocketPlugin } from './plugins/websocket.ts';
import { httpsOptions } from './tls.ts';

/** Route tables by backend kind. */

export interface AppDeps {
  readonly config: GatewayConfig;
  /** The authenticator, or a getter for the current one (config reloads swap it). */
  readonly authenticator: Authenticator | (() => Authenticator);
  /** The policy: a fixed engine, or a holder whose engine is swapped at run time (bundles, reloads). */
  readonly engine: PolicyEngine | PolicyHolder;
  readonly logger: Logger;
  /** The current config, for the settings a reload may change (audit). Default: `config`. */
  readonly current?: () => GatewayConfig;
  /** Metrics registry to record into (served by the admin listener). Unset: no metrics. */
  readonly metrics?: GatewayMetrics;
  /** Audit destination (tests pass one with a sink). Default: from the config. */
  readonly auditLog?: AuditLog;
  /** Short hash of the policy data (teams/admins), reported in audit records. */
  readonly dataRevision?: () => string | undefined;
  /** True once shutdown began (/readyz → 503). */
  readonly draining?: () => boolean;
}

/** `request.query` of every request: empty, since the gateway never reads it (buildApp's querystringParser). */
const NO_QUERY: Readonly<Record<string, never>> = Object.freeze({});
const noQuery = (): Readonly<Record<string, never>> => NO_QUERY;

/** Registered route URL → upstream and endpoint, for hooks that run before the handler (limits, metrics). */
export function routeIndex(config: GatewayConfig): RouteIndex {
  const index = new Map<string, { upstream: string; kind: BackendKind; endpoint: string }>();
  for (const u of config.upstreams) {
    for (const r of ROUTE_TABLES[u.kind].routes) index.set(u.mountPrefix + r.path, { upstream: u.name, kind: u.kind, endpoint: r.endpoint });
  }
  return index;
}

/**
 * The Fastify app: one plugin per concern, wired from the (pure) modules.
 * Paths are matched exactly — no trailing-slash, duplicate-slash or case folding —
 * and the upstream path is rebuilt from the route table, never copied from the client.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  // The backend a path falls under (its longest mount), for errors in its format before any route matched.
  const mounts = [...config.upstreams].sort((a, b) => b.mountPrefix.length - a.mountPrefix.length);
  const kindOfPath = (url: string): BackendKind | undefined => {
    const path = url.split('?')[0]!;
    return mounts.find((u) => u.mountPrefix === '' || path === u.mountPrefix || path.startsWith(u.mountPrefix + '/'))?.kind;
  };
  const current = deps.current ?? (() => config);
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: config.server.bodyLimitBytes,
    // Node's own bound on receiving one request (Fastify's default, 0, disables it): a stalled body is cut off.
    requestTimeout: config.server.requestTimeoutMs,
    routerOptions: {
      caseSensitive: true,
      ignoreTrailingSlash: false,
      ignoreDuplicateSlashes: false,
      maxParamLength: 1024,
      // Nothing reads `request.query`: the query string is parsed once, Go-style, where it is enforced
      // (backends/form-params.ts). The router's own parse of it (fast-querystring, another dialect)
      // cost ≈ 1 µs per request and would be a second reading of the same text.
      querystringParser: noQuery,
    },
    // X-Request-Id: the client's if valid, else generated; echoed and forwarded (plugins/context.ts).
    requestIdHeader: false,
    genReqId: requestIdFor,
    // The request's pino child is made only when the request logs something (server/request-logger.ts).
    childLoggerFactory: lazyRequestLogger,
    // "incoming request" / "request completed" only with server.accessLog (server/log-controller.ts).
    logController: new GatewayLogController({ accessLog: config.server.accessLog }),
    return503OnClosing: true,
    // The router's own refusals (invalid percent-encoding, a path parameter over maxParamLength) come
    // before any hook: answered in the gateway's words and counted (plugins/errors.ts).
    frameworkErrors: (err, req, reply) => void answerRouterRefusal(err, req, reply, app.lbacRecorders ?? [], kindOfPath(req.raw.url ?? '')),
    // Only the methods in the route tables: no implicit HEAD routes.
    exposeHeadRoutes: false,
    // server.tls: HTTPS, client certificates requested for `mtls` identity (server/tls.ts).
    ...(config.server.tls === undefined ? {} : { https: httpsOptions(config.server.tls, config.server.requestTimeoutMs) }),
  });
  // A flood of connections (slow or idle ones included) is refused at the door before it exhausts the
  // process's file descriptors, which its upstream connections and audit file need too.
  app.server.maxConnections = config.server.maxConnections;
  // In a cluster worker, a connection the worker is too full for is otherwise handed back to the
  // primary, which passes it to the next worker: with every worker full, round and round over IPC.
  // Dropped here instead, as in a single process (Node's server.dropMaxConnection, not in @types/node).
  (app.server as { dropMaxConnection?: boolean }).dropMaxConnection = true;
  const { metrics } = deps;
  if (metrics !== undefined) app.server.on('drop', () => metrics.shed.inc({ reason: 'connections' }));
  const holder = deps.engine instanceof PolicyHolder ? deps.engine : new PolicyHolder(deps.engine, 'static');
  installErrorHandlers(app, undefined);
  // The thread that filters large answers (server/filter-offload.ts): its module must be there, and
  // a running thread would keep the process alive after close.
  assertFilterWorker();
  app.addHook('onClose', closeFilterPool);
  // Order matters: the context hook runs first on every request, then limits (shedding before any work).
  await app.register(contextPlugin, { routes: routeIndex(config), ...(deps.draining === undefined ? {} : { draining: deps.draining }) });
  await app.register(limitsPlugin, { loadShedding: config.server.loadShedding, sendTimeoutMs: config.server.sendTimeoutMs, upstreams: config.upstreams, metrics: deps.metrics });
  if (deps.metrics !== undefined) {
    deps.metrics.watchPolicy(holder);
    const { authenticator } = deps;
    deps.metrics.watchIdentity(() => (typeof authenticator === 'function' ? authenticator() : authenticator).cacheStats());
    await app.register(metricsPlugin, { metrics: deps.metrics });
  }
  await app.register(auditPlugin, {
    config: () => current().audit,
    log: deps.auditLog ?? new AuditLog(),
    entrypoint: () => current().policy.entrypoint,
    dataRevision: deps.dataRevision ?? (() => undefined),
    metrics: deps.metrics,
  });
  await app.register(identityPlugin, { authenticator: deps.authenticator });
  await app.register(policyPlugin, { holder });
  // WebSocket routes (Loki tail): one upgrade listener for the server; registered before any route it must see.
  if (config.upstreams.some((u) => ROUTE_TABLES[u.kind].routes.some((r) => r.websocket === true))) {
    await app.register(websocketPlugin, { maxTailsPerSubject: config.server.tail.maxPerSubject, recheckIntervalMs: config.server.tail.recheckIntervalMs });
  }
  await app.register(healthPlugin, { ...(deps.draining === undefined ? {} : { draining: deps.draining }), ...(deps.dataRevision === undefined ? {} : { dataRevision: deps.dataRevision }) });
  const limits = { maxQueryLength: config.server.maxQueryLength, maxDepth: config.server.maxQueryDepth };
  // Headers identity sources read credentials from (API keys, Grafana ID tokens): never forwarded upstream.
  const credentialHeaders = config.identity.providers.flatMap((p) => ('header' in p && typeof p.header === 'string' ? [p.header] : []));
  // Shared by every upstream: the process's memory is what it bounds.
  const answerBudget = new ByteBudget(config.server.maxBufferedAnswerBytes);
  deps.metrics?.watchAnswerBudget(() => answerBudget.used);
  for (const upstream of config.upstreams) {
    const table = ROUTE_TABLES[upstream.kind];
    await app.register(upstreamPlugin, { prefix: upstream.mountPrefix, upstream, table, limits, bodyLimit: config.server.bodyLimitBytes, credentialHeaders, answerBudget });
  }
  return app;
}
