/**
 * Large upstream answers are filtered on a worker thread. Filtering is
 * synchronous (JSON.parse, the route's filter, JSON.stringify or protobuf
 * re-encoding): for a multi-MiB answer (a big trace, a tenant's whole list of
 * label values) it held the event loop, and with it every other request of the
 * process, for up to seconds. Answers under OFFLOAD_MIN_BYTES, nearly all of
 * them, are filtered inline: handing one to a thread would cost more than
 * filtering it. One thread per process, created on first use and ended when
 * idle; at most MAX_QUEUED answers wait for it (each holds its bytes), beyond
 * that the request is refused with 503 (`overloaded`).
 */
import { Piscina } from 'piscina';
import type { BackendKind, FilterContext, RawFilteredResponse, RawResponseFilter } from '../backends/routes.ts';
import { GatewayError } from '../errors.ts';

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

let pool: Piscina<FilterTask, RawFilteredResponse> | undefined;

function filterPool(): Piscina<FilterTask, RawFilteredResponse> {
  // The sources run as .ts (Node strips types) or compiled to dist/ as .js: the worker is the sibling of this module.
  const worker = new URL(import.meta.url.endsWith('.ts') ? './filter-worker.ts' : './filter-worker.js', import.meta.url);
  return (pool ??= new Piscina({ filename: worker.href, minThreads: 0, maxThreads: 1, maxQueue: MAX_QUEUED, idleTimeout: IDLE_MS }));
}

/**
 * The route's filter applied to an answer: inline when small, else on the
 * filter thread (`raw` is then transferred: the caller must not use it after).
 * `signal` drops a queued answer whose client went away.
 */
export async function filterAnswer(filter: RawResponseFilter, task: FilterTask, signal?: AbortSignal): Promise<RawFilteredResponse> {
  if (task.raw.byteLength < OFFLOAD_MIN_BYTES) return filter(task.raw, task.contentType, task.ctx);
  const p = filterPool();
  if (p.queueSize >= MAX_QUEUED) throw new GatewayError('overloaded', 'too many large upstream answers are being filtered; retry');
  const { raw } = task;
  // Transfer the bytes when the view owns its whole buffer (Buffer.concat of a large answer does), else they are copied.
  const transferList = raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength && raw.buffer instanceof ArrayBuffer ? [raw.buffer] : [];
  return p.run(task, { transferList, ...(signal === undefined ? {} : { signal }) });
}

/** Ends the filter thread (at shutdown); a later large answer starts a new one. */
export async function closeFilterPool(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.destroy();
}
