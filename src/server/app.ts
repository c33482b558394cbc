import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { lokiRoutes } from '../backends/loki.ts';
import { prometheusRoutes } from '../backends/prometheus.ts';
import { tempoRoutes } from '../backends/tempo.ts';
import type { BackendKind, RouteTable } from '../backends/routes.ts';
import type { GatewayConfig } from '../config/load.ts';
import type { Authenticator } from '../identity/authenticator.ts';
import type { PolicyEngine } from '../policy/engine.ts';
import { PolicyHolder } from '../policy/holder.ts';
import { installErrorHandlers } from './plugins/errors.ts';
import { healthPlugin } from './plugins/health.ts';
import { identityPlugin } from './plugins/identity.ts';
import { policyPlugin } from './plugins/policy.ts';
import { upstreamPlugin } from './plugins/upstream.ts';

/** Route tables by backend kind. */
export const ROUTE_TABLES: Record<BackendKind, RouteTable> = { prometheus: prometheusRoutes, loki: lokiRoutes, tempo: tempoRoutes };

export interface AppDeps {
  readonly config: GatewayConfig;
  readonly authenticator: Authenticator;
  /** The policy: a fixed engine, or a holder whose engine is swapped at run time (bundles, reloads). */
  readonly engine: PolicyEngine | PolicyHolder;
  readonly logger: Logger;
}

/**
 * The Fastify app: one plugin per concern, wired from the (pure) modules.
 * Paths are matched exactly — no trailing-slash, duplicate-slash or case folding —
 * and the upstream path is rebuilt from the route table, never copied from the client.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: config.server.bodyLimitBytes,
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false, maxParamLength: 1024 },
    requestIdHeader: 'x-request-id',
    return503OnClosing: true,
    // Only the methods in the route tables: no implicit HEAD routes.
    exposeHeadRoutes: false,
  });
  installErrorHandlers(app, undefined);
  await app.register(identityPlugin, { authenticator: deps.authenticator });
  await app.register(policyPlugin, { holder: deps.engine instanceof PolicyHolder ? deps.engine : new PolicyHolder(deps.engine, 'static') });
  await app.register(healthPlugin);
  const limits = { maxQueryLength: config.server.maxQueryLength, maxDepth: config.server.maxQueryDepth };
  for (const upstream of config.upstreams) {
    const table = ROUTE_TABLES[upstream.kind];
    await app.register(upstreamPlugin, { prefix: upstream.mountPrefix, upstream, table, limits, bodyLimit: config.server.bodyLimitBytes });
  }
  return app;
}
