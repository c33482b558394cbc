import type { FastifyInstance } from 'fastify';
import type { PolicyHolder } from '../../policy/holder.ts';

export interface HealthOptions {
  /** Default: the app's `policyHolder` decorator. */
  readonly holder?: PolicyHolder;
  /** True once shutdown began: /readyz answers 503 so load balancers stop sending traffic. */
  readonly draining?: () => boolean;
  /** Digest of the running policy data (teams, admins, …), shown so a reload can be confirmed. */
  readonly dataRevision?: () => string | undefined;
}

/**
 * Liveness and readiness. Readiness means: a policy is loaded and can decide,
 * and the gateway is not shutting down. With bundles, the gateway listens
 * before the first bundle arrives and stays not ready (503) until one is
 * activated; /readyz reports the active revision and where it came from.
 */
export async function healthPlugin(app: FastifyInstance, opts: HealthOptions = {}): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const holder = opts.holder ?? app.policyHolder;
    const info = holder.info;
    const r = readinessOf(holder, opts.draining?.() ?? false);
    return reply.code(r.ready ? 200 : 503).send({
      status: r.status,
      policyRevision: info?.revision ?? null,
      policySource: info?.source ?? null,
      policyActivatedAt: info?.activatedAt.toISOString() ?? null,
      dataRevision: opts.dataRevision?.() ?? null,
    });
  });
}

/** Ready = a policy can decide and shutdown has not begun (the rule of /readyz, here and for cluster workers). */
export function readinessOf(holder: PolicyHolder, draining: boolean): { readonly ready: boolean; readonly status: 'ready' | 'shutting down' | 'not ready' } {
  const ready = holder.ready && !draining;
  return { ready, status: ready ? 'ready' : draining ? 'shutting down' : 'not ready' };
}
