/**
 * The digests a bundle signature is checked against, with the large
 * structured files hashed on a worker thread. Canonicalising JSON is a pass
 * over every token of a file that may be anything the bundle server (or the
 * network) sent, before the signature says whether it is the signed file:
 * on the event loop, 60 MB of numbers (130 KB gzipped) stalled every request
 * for seconds at each poll. The worker has a heap of its own, so a file too
 * large to canonicalise is a rejected bundle, not a process out of memory.
 */
import { getHeapStatistics } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { bundleFileHash, BundleSignatureError, isStructured } from './bundle-digest.ts';

export interface HashJob {
  readonly path: string;
  readonly bytes: Uint8Array;
  readonly algorithm: string;
}

export type HashResult = { readonly hash: string } | { readonly error: string };

/** Structured files from this size on are hashed off the event loop (smaller ones cost less than a thread). */
export const OFF_THREAD_BYTES = 256 * 1024;
/** The event loop's old-space cap (`--max-old-space-size`, in MB), else V8's whole heap limit. */
function oldSpaceLimitMb(): number {
  const flags = [...process.execArgv, ...(process.env['NODE_OPTIONS'] ?? '').split(/\s+/)];
  for (const flag of flags.reverse()) {
    const m = /^--max-old-space-size=(\d+)$/.exec(flag);
    if (m !== null) return Number(m[1]);
  }
  return Math.floor(getHeapStatistics().heap_size_limit / 2 ** 20);
}

/**
 * The hashing worker's heap: half the event loop's old-space cap (sized for the container, which also
 * holds the filter thread's heap), about 3 bytes of heap per byte of file; a small young generation.
 * A file too large for it is a rejected bundle, not a process out of memory.
 */
const WORKER_LIMITS = { maxOldGenerationSizeMb: Math.max(64, Math.floor(oldSpaceLimitMb() / 2)), maxYoungGenerationSizeMb: 16 };
/** A worker still hashing after this is ended (a linear pass over the largest bundle takes seconds). */
const WORKER_TIMEOUT_MS = 60_000;

export const HASH_WORKER = new URL(import.meta.url.endsWith('.ts') ? './bundle-hash-worker.ts' : './bundle-hash-worker.js', import.meta.url);

/** Each job's hex digest, in order; throws BundleSignatureError for a file that cannot be hashed. */
export async function bundleFileHashes(jobs: readonly HashJob[]): Promise<string[]> {
  const out = new Array<string>(jobs.length);
  const offThread: number[] = [];
  jobs.forEach((j, idx) => {
    if (isStructured(j.path) && j.bytes.byteLength >= OFF_THREAD_BYTES) offThread.push(idx);
    else out[idx] = bundleFileHash(j.path, j.bytes, j.algorithm);
  });
  if (offThread.length === 0) return out;
  const results = await hashOnWorker(offThread.map((idx) => jobs[idx]!));
  results.forEach((r, k) => {
    if ('error' in r) throw new BundleSignatureError(r.error);
    out[offThread[k]!] = r.hash;
  });
  return out;
}

function hashOnWorker(jobs: readonly HashJob[]): Promise<HashResult[]> {
  const names = jobs.map((j) => j.path.slice(1)).join(', ');
  // Each file in a buffer of its own, moved to the worker: a view would take its whole archive along.
  const own = jobs.map((j) => ({ path: j.path, algorithm: j.algorithm, bytes: new Uint8Array(j.bytes) }));
  return new Promise((resolve, reject) => {
    const worker = new Worker(HASH_WORKER, { workerData: { jobs: own }, transferList: own.map((j) => j.bytes.buffer as ArrayBuffer), resourceLimits: WORKER_LIMITS });
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
      void worker.terminate();
    };
    const timer = setTimeout(() => settle(() => reject(new BundleSignatureError(`${names}: hashing took longer than ${WORKER_TIMEOUT_MS / 1000} s`))), WORKER_TIMEOUT_MS);
    worker.once('message', (m: HashResult[]) => settle(() => resolve(m)));
    worker.once('error', (e: Error & { code?: string }) =>
      settle(() => reject(new BundleSignatureError(e.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `${names}: too large to canonicalise for the digest` : `${names}: hashing failed: ${e.message}`))),
    );
    worker.once('exit', (code) => settle(() => reject(new BundleSignatureError(`${names}: the hashing worker exited (${code})`))));
  });
}
