/**
 * Worker-thread side of ./bundle-hash.ts: the digests of a bundle's large
 * structured files (canonical JSON), computed off the event loop. Only bytes
 * and digests cross the thread boundary.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { bundleFileHash } from './bundle-digest.ts';
import type { HashJob, HashResult } from './bundle-hash.ts';

const jobs = (workerData as { jobs: HashJob[] }).jobs;
const results: HashResult[] = jobs.map((j) => {
  try {
    return { hash: bundleFileHash(j.path, j.bytes, j.algorithm) };
  } catch (e) {
    return { error: (e as Error).message };
  }
});
parentPort?.postMessage(results);
