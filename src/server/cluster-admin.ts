/**
 * The admin listener when the gateway runs as several node:cluster workers.
 *
 * Workers share the main port but not the admin port: the primary owns it, so a
 * scrape sees the whole process group, not whichever worker took the connection.
 *   /metrics  prom-client's AggregatorRegistry: the primary asks every worker for
 *             its registry over IPC and merges (counters and histograms summed,
 *             gauges by the aggregator each metric declares).
 *   /readyz   ready only when every live worker is ready (policy loaded, not draining).
 *   /healthz  the primary is alive.
 */
import cluster, { type Worker } from 'node:cluster';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from 'pino';

const READINESS_REQUEST = 'lbac:readiness-request';
const READINESS_RESPONSE = 'lbac:readiness-response';
/** A worker that does not answer within this time counts as not ready. */
const READINESS_TIMEOUT_MS = 2_000;

export interface WorkerReadiness {
  readonly ready: boolean;
  readonly status: string;
  readonly policyRevision: string | null;
}

interface ReadinessMessage {
  readonly type: typeof READINESS_RESPONSE;
  readonly requestId: number;
  readonly readiness: WorkerReadiness;
}

const isReadinessResponse = (m: unknown): m is ReadinessMessage =>
  typeof m === 'object' && m !== null && (m as { type?: unknown }).type === READINESS_RESPONSE;

/**
 * In a worker: answer the primary's metric and readiness requests. `readiness`
 * is asked each time, so it reflects policy swaps and draining.
 */
export function serveWorkerAdmin(registry: Registry, readiness: () => WorkerReadiness): void {
  if (!cluster.isWorker) return;
  // Constructing an AggregatorRegistry installs prom-client's worker-side IPC listener.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  process.on('message', (m: unknown) => {
    if (typeof m !== 'object' || m === null || (m as { type?: unknown }).type !== READINESS_REQUEST) return;
    const requestId = (m as { requestId?: unknown }).requestId;
    if (typeof requestId !== 'number') return;
    process.send?.({ type: READINESS_RESPONSE, requestId, readiness: readiness() } satisfies ReadinessMessage);
  });
}

let nextRequestId = 0;

/** In the primary: every live worker's readiness (a silent worker counts as not ready). */
export async function clusterReadiness(timeoutMs = READINESS_TIMEOUT_MS): Promise<{ pid: number | undefined; readiness: WorkerReadiness }[]> {
  const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
  return Promise.all(
    workers.map(
      (w) =>
        new Promise<{ pid: number | undefined; readiness: WorkerReadiness }>((resolve) => {
          const requestId = nextRequestId++;
          const pid = w.process.pid;
          const done = (readiness: WorkerReadiness): void => {
            clearTimeout(timer);
            w.off('message', onMessage);
            resolve({ pid, readiness });
          };
          const onMessage = (m: unknown): void => {
            if (isReadinessResponse(m) && m.requestId === requestId) done(m.readiness);
          };
          const timer = setTimeout(() => done({ ready: false, status: 'no answer', policyRevision: null }), timeoutMs);
          w.on('message', onMessage);
          try {
            w.send({ type: READINESS_REQUEST, requestId });
          } catch {
            done({ ready: false, status: 'unreachable', policyRevision: null });
          }
        }),
    ),
  );
}

/** In the primary: the admin app for the whole process group. */
export async function buildClusterAdminApp(logger: Logger, expectedWorkers: () => number): Promise<FastifyInstance> {
  const aggregator = new AggregatorRegistry();
  const app = Fastify({ loggerInstance: logger as FastifyBaseLogger, disableRequestLogging: true, exposeHeadRoutes: false });
  app.get('/metrics', async (_req, reply) => {
    try {
      const body = await aggregator.clusterMetrics();
      return reply.type(aggregator.contentType).send(body);
    } catch (e) {
      logger.warn({ err: e }, 'cluster metrics unavailable');
      return reply.code(503).type('text/plain').send('metrics unavailable: a worker did not answer\n');
    }
  });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const workers = await clusterReadiness();
    // Until every expected worker runs (start-up, replacement after a crash) the group is not ready.
    const ready = workers.length >= expectedWorkers() && workers.every((w) => w.readiness.ready);
    return reply.code(ready ? 200 : 503).send({
      status: ready ? 'ready' : 'not ready',
      workers: workers.map((w) => ({ pid: w.pid ?? null, ...w.readiness })),
    });
  });
  return app;
}
