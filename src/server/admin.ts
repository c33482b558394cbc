import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { PolicyHolder } from '../policy/holder.ts';
import type { GatewayMetrics } from './metrics.ts';
import { healthPlugin } from './plugins/health.ts';
import { silentRequestLogging } from './log-controller.ts';

/**
 * The admin listener (`server.adminListen`): /metrics (Prometheus text format),
 * /healthz and /readyz. A separate Fastify instance on its own port, so
 * /metrics is never reachable through the main listener and needs no credentials.
 */
export async function buildAdminApp(deps: { metrics: GatewayMetrics; holder: PolicyHolder; logger: Logger; draining?: () => boolean; dataRevision?: () => string }): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: deps.logger as FastifyBaseLogger, logController: silentRequestLogging(), exposeHeadRoutes: false });
  app.get('/metrics', async (_req, reply) => {
    const body = await deps.metrics.registry.metrics();
    return reply.type(deps.metrics.registry.contentType).send(body);
  });
  await app.register(healthPlugin, {
    holder: deps.holder,
    ...(deps.draining === undefined ? {} : { draining: deps.draining }),
    ...(deps.dataRevision === undefined ? {} : { dataRevision: deps.dataRevision }),
  });
  return app;
}

/** Split "host:port" (IPv6 in brackets). */
export function splitHostPort(listen: string): { host: string; port: number } {
  const idx = listen.lastIndexOf(':');
  return { host: listen.slice(0, idx).replace(/^\[|\]$/g, ''), port: Number(listen.slice(idx + 1)) };
}
