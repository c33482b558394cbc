import type { FastifyInstance } from 'fastify';

/** Liveness and readiness. Readiness means: a policy is loaded and can decide. */
export async function healthPlugin(app: FastifyInstance): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const engine = app.policyEngine;
    const ready = engine !== undefined;
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', policyRevision: engine?.revision ?? null });
  });
}
