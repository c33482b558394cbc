/**
 * The admin listener when the gateway runs as several node:cluster workers.
 *
 * Workers share the main port but not the admin port: the primary owns it, so a
 * scrape sees the whole process group, not whichever worker took the connection.
 *   /metrics  every worker's registry, fetched over IPC and merged with
 *             prom-client's AggregatorRegistry.aggregate (counters and histograms
 *             summed, gauges by the aggregator each metric declares).
 *   /readyz   ready only when every expected worker runs and is ready (policy
 *             loaded, not draining).
 *   /healthz  the primary is alive.
 *
 * A worker announces itself once its IPC handlers are installed; the primary
 * asks only announced workers (a message sent earlier would be lost, and the
 * scrape would hang until its timeout). A worker that has not announced itself
 * yet counts as not ready and contributes no series.
 */
import cluster, { type Worker } from 'node:cluster';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { silentRequestLogging } from './log-controller.ts';

/** Worker → primary: handlers installed. */
const ANNOUNCE = 'lbac:admin-ready';
const REQUEST = 'lbac:admin-request';
const RESPONSE = 'lbac:admin-response';
/** A worker that does not answer within this time fails the scrape (503), never a partial sum. */
const ANSWER_TIMEOUT_MS = 3_000;

export interface WorkerReadiness {
  readonly ready: boolean;
  readonly status: string;
  readonly policyRevision: string | null;
  /** Digest of the policy data (teams, admins, …): after a reload every worker should show the same. */
  readonly dataRevision?: string;
  /** reload.ts configRevision (identity, audit, key files, policy data): compared, never shown (it covers secrets). */
  readonly configRevision?: string;
}

type Ask = 'metrics' | 'readiness';
interface AdminRequest {
  readonly type: typeof REQUEST;
  readonly requestId: number;
  readonly ask: Ask;
}
interface AdminResponse {
  readonly type: typeof RESPONSE;
  readonly requestId: number;
  /** registry.getMetricsAsJSON() of the worker. */
  readonly metrics?: object[];
  readonly readiness?: WorkerReadiness;
  readonly error?: string;
}

const typed = (m: unknown, type: string): boolean => typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type;

/**
 * In a worker: answer the primary's metric and readiness requests, then
 * announce this worker. `readiness` is asked each time (policy swaps, draining).
 */
export function serveWorkerAdmin(registry: Registry, readiness: () => WorkerReadiness): void {
  if (!cluster.isWorker) return;
  process.on('message', (m: unknown) => {
    if (!typed(m, REQUEST)) return;
    const { requestId, ask } = m as AdminRequest;
    const reply = (r: Omit<AdminResponse, 'type' | 'requestId'>): void => void process.send?.({ type: RESPONSE, requestId, ...r } satisfies AdminResponse);
    if (ask === 'readiness') return reply({ readiness: readiness() });
    registry.getMetricsAsJSON().then(
      (metrics) => reply({ metrics }),
      (e: unknown) => reply({ error: e instanceof Error ? e.message : String(e) }),
    );
  });
  process.send?.({ type: ANNOUNCE });
}

/** In the primary: which workers have announced themselves. */
export class ClusterAdmin {
  readonly #announced = new Set<Worker>();
  #nextRequestId = 0;

  constructor() {
    cluster.on('message', (worker, m: unknown) => {
      if (typed(m, ANNOUNCE)) this.#announced.add(worker);
    });
    cluster.on('exit', (worker) => this.#announced.delete(worker));
  }

  /** Live workers that answer admin requests. */
  get workers(): Worker[] {
    return [...this.#announced].filter((w) => w.isConnected());
  }

  /** Ask one worker; rejects on timeout or a worker-side error. */
  ask(worker: Worker, ask: Ask, timeoutMs = ANSWER_TIMEOUT_MS): Promise<AdminResponse> {
    const requestId = this.#nextRequestId++;
    return new Promise((resolve, reject) => {
      const done = (err: Error | undefined, r?: AdminResponse): void => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        if (err !== undefined) reject(err);
        else resolve(r as AdminResponse);
      };
      const onMessage = (m: unknown): void => {
        if (!typed(m, RESPONSE) || (m as AdminResponse).requestId !== requestId) return;
        const r = m as AdminResponse;
        done(r.error === undefined ? undefined : new Error(r.error), r);
      };
      const timer = setTimeout(() => done(new Error(`worker ${worker.process.pid} did not answer within ${timeoutMs} ms`)), timeoutMs);
      worker.on('message', onMessage);
      try {
        worker.send({ type: REQUEST, requestId, ask } satisfies AdminRequest);
      } catch (e) {
        done(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  /** Every announced worker's metrics, merged. */
  async metrics(): Promise<Registry> {
    const answers = await Promise.all(this.workers.map((w) => this.ask(w, 'metrics')));
    return AggregatorRegistry.aggregate(answers.map((a) => a.metrics ?? []));
  }

  /** Every announced worker's readiness; a silent worker counts as not ready. */
  async readiness(): Promise<{ pid: number | undefined; readiness: WorkerReadiness }[]> {
    return Promise.all(
      this.workers.map((w) =>
        this.ask(w, 'readiness', 2_000).then(
          (r) => ({ pid: w.process.pid, readiness: r.readiness ?? { ready: false, status: 'no answer', policyRevision: null } }),
          () => ({ pid: w.process.pid, readiness: { ready: false, status: 'no answer', policyRevision: null } }),
        ),
      ),
    );
  }
}

/** Status of a group whose workers run on different policy data (see groupReadiness). */
export const WORKERS_DISAGREE =
  'not ready: workers run different policy data or configuration (a reload failed in some; see the log: a transient failure is retried by the worker, otherwise fix and reload again)';

/**
 * The group's readiness. Until every expected worker runs (start-up,
 * replacement after a crash) the group is not ready. Nor is it while workers
 * report different `dataRevision`s or `configRevision`s: each worker reloads
 * on its own, and one whose reload was rejected keeps the team data, API keys
 * or identity providers the others replaced — perhaps wider. A rejection for a transient cause (a file it could not read at that
 * moment) is retried by that worker with a backoff (GatewayRuntime.reload), so
 * the state clears by itself once the retry applies; one for a config error
 * lasts until the next reload. Never more than a reload's own duration otherwise.
 */
export function groupReadiness(workers: readonly WorkerReadiness[], expected: number): { ready: boolean; status: string } {
  if (workers.length < expected || !workers.every((w) => w.ready)) return { ready: false, status: 'not ready' };
  const data = new Set(workers.map((w) => w.dataRevision));
  const config = new Set(workers.map((w) => w.configRevision));
  if (data.size > 1 || config.size > 1) return { ready: false, status: WORKERS_DISAGREE };
  return { ready: true, status: 'ready' };
}

/** In the primary: the admin app for the whole process group. Create it before forking workers. */
export async function buildClusterAdminApp(logger: Logger, expectedWorkers: () => number): Promise<FastifyInstance> {
  const group = new ClusterAdmin();
  const app = Fastify({ loggerInstance: logger as FastifyBaseLogger, logController: silentRequestLogging(), exposeHeadRoutes: false });
  app.get('/metrics', async (_req, reply) => {
    try {
      const registry = await group.metrics();
      return reply.type(registry.contentType).send(await registry.metrics());
    } catch (e) {
      logger.warn({ err: e }, 'cluster metrics unavailable');
      return reply.code(503).type('text/plain').send('metrics unavailable: a worker did not answer\n');
    }
  });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const workers = await group.readiness();
    const { ready, status } = groupReadiness(workers.map((w) => w.readiness), expectedWorkers());
    return reply.code(ready ? 200 : 503).send({
      status,
      workers: workers.map(({ pid, readiness: { configRevision: _secretDigest, ...shown } }) => ({ pid: pid ?? null, ...shown })),
    });
  });
  return app;
}
