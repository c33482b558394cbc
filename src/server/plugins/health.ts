import type { FastifyInstance } from 'fastify';

/**
 * Liveness and readiness. Readiness means: a policy is loaded and can decide.
 * With bundles, the gateway listens before the first bundle arrives and stays
 * not ready (503) until one is activated; /readyz reports the active revision
 * and where it came from.
 */
export async function healthPlugin(app: FastifyInstance): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const info = app.policyHolder.info;
    const ready = app.policyHolder.ready;
    return reply.code(ready ? 200 : 503).send({
      status: ready ? 'ready' : 'not ready',
      policyRevision: info?.revision ?? null,
      policySource: info?.source ?? null,
      policyActivatedAt: info?.activatedAt.toISOString() ?? null,
    });
  });
}
