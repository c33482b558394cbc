// An open-loop, fixed-rate load generator in a child process of its own (never
// in a server's process, never in the orchestrating one): bench/latency.ts
// forks it once and hands it one run per upstream. The child is
// bench/lib/open-loop-child.ts; this module is the protocol and the parent side.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BenchRequest } from './mix.ts';

export interface RunSpec {
  label: string;
  /** Measured in this order per round; the order rotates by one every round. */
  targets: { name: string; url: string; requests: BenchRequest[] }[];
  /** Requests per second, each measured separately. */
  rates: number[];
  /** Measured seconds per target and rate, split over `rounds` interleaved slices. */
  durationSec: number;
  rounds: number;
  /** Unrecorded seconds per target before anything is measured, at the highest rate. */
  warmupSec: number;
  /** Keep-alive connections per target (undici Pool); a request waits for one if all are busy, and that wait counts. */
  connections: number;
  /** The clock thread spins this long before each send instead of sleeping (see clock-worker.ts). */
  spinUs: number;
}

/** Microseconds. */
export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface TargetResult {
  target: string;
  rate: number;
  /** Requests scheduled in the measured slices. */
  scheduled: number;
  ok: number;
  non2xx: number;
  errors: number;
  /** New connections opened during measured slices (0: every request reused a warm keep-alive connection). */
  connects: number;
  /** Completion (response body read) minus scheduled send time: the figure that does not omit queueing (coordinated omission). */
  latency: Percentiles;
  /** Completion minus actual send time. */
  service: Percentiles;
  /** Actual send minus scheduled send time: the generator's own lateness. */
  sendLag: Percentiles;
}

export interface RunResult {
  label: string;
  results: TargetResult[];
}

export type ToChild = { type: 'run'; spec: RunSpec } | { type: 'exit' };
export type FromChild = { type: 'log'; msg: string } | { type: 'result'; result: RunResult } | { type: 'error'; error: string };

export interface LoadGenerator {
  pid: number;
  run(spec: RunSpec): Promise<RunResult>;
  close(): Promise<void>;
}

export function forkLoadGenerator(log: (msg: string) => void): LoadGenerator {
  const child: ChildProcess = fork(fileURLToPath(new URL('./open-loop-child.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let pending: { resolve(r: RunResult): void; reject(e: Error): void } | undefined;
  child.on('message', (m: FromChild) => {
    if (m.type === 'log') log(m.msg);
    else if (m.type === 'result') pending?.resolve(m.result);
    else pending?.reject(new Error(`load generator: ${m.error}`));
  });
  child.once('exit', (code, signal) => pending?.reject(new Error(`load generator exited (${code ?? signal})`)));
  return {
    pid: child.pid ?? -1,
    run(spec) {
      if (pending !== undefined) throw new Error('one run at a time');
      return new Promise<RunResult>((resolve, reject) => {
        pending = {
          resolve: (r) => ((pending = undefined), resolve(r)),
          reject: (e) => ((pending = undefined), reject(e)),
        };
        child.send({ type: 'run', spec } satisfies ToChild);
      });
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        child.send({ type: 'exit' } satisfies ToChild);
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}
