/**
 * Large upstream answers are filtered on a worker thread, and the large parts
 * of a fanned-out request merged there (./merge-parts.ts). Filtering is
 * synchronous (JSON.parse, the route's filter, JSON.stringify or protobuf
 * re-encoding): for a multi-MiB answer (a big trace, a tenant's whole list of
 * label values) it held the event loop, and with it every other request of the
 * process, for up to seconds. Answers under OFFLOAD_MIN_BYTES, nearly all of
 * them, are filtered inline: handing one to a thread would cost more than
 * filtering it. One thread per process, created on first use and ended when
 * idle; at most MAX_QUEUED answers wait for it (each holds its bytes), beyond
 * that the request is refused with 503 (`overloaded`).
 *
 * A thread that runs out of heap is ended by Node (ERR_WORKER_OUT_OF_MEMORY),
 * not the process: the answer it was filtering gets 502 and the next one a new
 * thread (tested).
 *
 * A task, once queued, runs to its end even if its client went away: piscina
 * cancels a running task by ending its thread, which stalled the answers
 * queued behind it. A thread that fails outside a task (it cannot start)
 * rejects every waiting answer (→ 502) and the next large answer starts a new one.
 */
import { existsSync } from 'node:fs';
import type { ResourceLimits } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { BackendKind, FanOutSpec, FilterContext, RawFilteredResponse, RawResponseFilter } from '../backends/routes.ts';
import { GatewayError, QueryError } from '../errors.ts';
import { mergeParts, type MergeOutcome, type MergeTask } from './merge-parts.ts';

export type { MergeOutcome, MergeTask };

/** Answers at least this large are filtered off the event loop. */
export const OFFLOAD_MIN_BYTES = 1024 * 1024;
/** Answers that may wait for the filter thread. */
const MAX_QUEUED = 8;
/** An idle filter thread ends after this long (it holds a heap of its own). */
const IDLE_MS = 30_000;

/** What the filter thread gets: the route by name, and plain data. */
export interface FilterTask {
  readonly kind: BackendKind;
  readonly endpoint: string;
  readonly raw: Uint8Array;
  readonly contentType: string;
  readonly ctx: FilterContext;
}

/** The worker module: a sibling of this one, as .ts (Node strips types) or compiled to dist/ as .js. */
export const FILTER_WORKER = new URL(import.meta.url.endsWith('.ts') ? './filter-worker.ts' : './filter-worker.js', import.meta.url);

/** Fails the start of a deployment that lacks the worker module, rather than its first large answer. */
export function assertFilterWorker(worker: URL = FILTER_WORKER): void {
  if (!existsSync(fileURLToPath(worker))) throw new Error(`the response filter thread's module is missing: ${fileURLToPath(worker)}`);
}

/** The filter thread: a piscina pool of one, re-created after a failure. */
export class FilterThread {
  readonly #worker: URL;
  readonly #limits: ResourceLimits | undefined;
  #pool: Piscina<FilterTask | MergeTask, RawFilteredResponse | MergeOutcome> | undefined;

  /**
   * `limits`: the thread's heap limits (default: V8's, as for the event loop). A thread that
   * reaches its limit is ended by Node with ERR_WORKER_OUT_OF_MEMORY, not the process: the
   * answer it was filtering is refused (→ 502) and the next large answer starts a new thread.
   */
  constructor(worker: URL = FILTER_WORKER, limits?: ResourceLimits) {
    this.#worker = worker;
    this.#limits = limits;
  }

  #current(): Piscina<FilterTask | MergeTask, RawFilteredResponse | MergeOutcome> {
    if (this.#pool !== undefined) return this.#pool;
    const pool = new Piscina<FilterTask | MergeTask, RawFilteredResponse | MergeOutcome>({
      filename: this.#worker.href,
      minThreads: 0,
      maxThreads: 1,
      maxQueue: MAX_QUEUED,
      idleTimeout: IDLE_MS,
      ...(this.#limits === undefined ? {} : { resourceLimits: this.#limits }),
    });
    // A failure outside a task (the thread cannot start): the waiting answers are rejected, the next one starts afresh.
    pool.on('error', () => {
      if (this.#pool === pool) this.#pool = undefined;
      void pool.destroy().catch(() => undefined);
    });
    return (this.#pool = pool);
  }

  /** Filters on the thread; `task.raw` is transferred when it owns its whole buffer (the caller must not use it after). */
  async run(task: FilterTask): Promise<RawFilteredResponse> {
    const pool = this.#current();
    if (pool.queueSize >= MAX_QUEUED) throw new GatewayError('overloaded', 'too many large upstream answers are being filtered; retry', { details: { shed: 'filter_queue' } });
    const { raw } = task;
    // Buffer.concat of a large answer owns its buffer; anything else is copied.
    return pool.run(task, { transferList: owned(raw) }) as Promise<RawFilteredResponse>;
  }

  /** Merges on the thread (the worker's `mergeTask`); the parts are transferred where they own their buffers. */
  async merge(task: MergeTask): Promise<MergeOutcome> {
    const pool = this.#current();
    if (pool.queueSize >= MAX_QUEUED) throw new GatewayError('overloaded', 'too many large upstream answers are being merged; retry', { details: { shed: 'filter_queue' } });
    return pool.run(task, { name: 'mergeTask', transferList: task.parts.flatMap(owned) }) as Promise<MergeOutcome>;
  }

  async close(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.destroy();
  }
}

/** `raw`'s buffer, to transfer, when `raw` is all of it (Buffer.concat of a large answer); else nothing (it is copied). */
function owned(raw: Uint8Array): ArrayBuffer[] {
  return raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength && raw.buffer instanceof ArrayBuffer ? [raw.buffer] : [];
}

let shared: FilterThread | undefined;

/** The route's filter applied to an answer: inline when small, else on the process's filter thread. */
export async function filterAnswer(filter: RawResponseFilter, task: FilterTask): Promise<RawFilteredResponse> {
  if (task.raw.byteLength < OFFLOAD_MIN_BYTES) return filter(task.raw, task.contentType, task.ctx);
  return (shared ??= new FilterThread()).run(task);
}

/**
 * A fan-out's parts merged (RouteSpec.fanOut): inline when they are small
 * together, else on the process's filter thread, so that parsing and merging
 * large answers does not hold the event loop. Throws what the merge refuses.
 */
export async function mergeAnswers(merge: NonNullable<FanOutSpec['merge']>, task: MergeTask): Promise<Uint8Array> {
  const bytes = task.parts.reduce((n, p) => n + p.byteLength, 0);
  if (bytes < OFFLOAD_MIN_BYTES) return mergeParts(merge, task.parts, task.params);
  const out = await (shared ??= new FilterThread()).merge(task);
  if ('body' in out) return out.body;
  const { code, message, status, language } = out.error;
  throw language === undefined ? new GatewayError(code, message, { status }) : new QueryError(language, message, code);
}

/** Ends the filter thread (at shutdown); a later large answer starts a new one. */
export async function closeFilterPool(): Promise<void> {
  const thread = shared;
  shared = undefined;
  await thread?.close();
}
