// The open-loop load generator's clock (bench/lib/open-loop-child.ts): a worker
// thread that posts the index k of each send at start + k·interval. Node's own
// timers have millisecond granularity (a send would be up to ~1 ms late, as
// much as the latency being measured), so this thread sleeps with
// Atomics.wait until `spinNs` before each send time and spins the rest; the
// main thread stays free to send and receive. The lateness that remains (the
// main thread's wake-up) is measured per request as "send lag" and is part of
// every latency figure, which is measured from the scheduled time.
import { parentPort, workerData } from 'node:worker_threads';

export interface ClockSpec {
  /** process.hrtime.bigint() of send 0, as a decimal string. */
  startNs: string;
  intervalNs: number;
  total: number;
  spinNs: number;
}

const { startNs, intervalNs, total, spinNs } = workerData as ClockSpec;
const start = BigInt(startNs);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
for (let k = 0; k < total; k++) {
  const due = start + BigInt(Math.round(k * intervalNs));
  const remaining = Number(due - process.hrtime.bigint());
  if (remaining > spinNs) Atomics.wait(sleeper, 0, 0, (remaining - spinNs) / 1e6);
  while (process.hrtime.bigint() < due);
  parentPort!.postMessage(k);
}
parentPort!.postMessage(-1);
