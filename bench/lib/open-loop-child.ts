// The open-loop load generator (child process; see open-loop.ts). Per target an
// undici Pool of keep-alive connections; sends are paced by a clock thread
// (clock-worker.ts) at fixed times start + k/rate, whether or not earlier
// responses have arrived, and every latency is measured from that scheduled
// time with process.hrtime.bigint() into a perf_hooks histogram (ns).
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { Pool } from 'undici';
import type { ClockSpec } from './clock-worker.ts';
import type { FromChild, Percentiles, RunResult, RunSpec, TargetResult, ToChild } from './open-loop.ts';
import type { BenchRequest } from './mix.ts';

const send = (m: FromChild): void => void process.send?.(m);
const log = (msg: string): void => send({ type: 'log', msg });
const clockUrl = new URL('./clock-worker.ts', import.meta.url);

interface Recorder {
  latency: RecordableHistogram;
  service: RecordableHistogram;
  sendLag: RecordableHistogram;
  scheduled: number;
  ok: number;
  non2xx: number;
  errors: number;
  connects: number;
}

function recorder(): Recorder {
  return { latency: createHistogram(), service: createHistogram(), sendLag: createHistogram(), scheduled: 0, ok: 0, non2xx: 0, errors: 0, connects: 0 };
}

function percentiles(h: RecordableHistogram): Percentiles {
  const us = (ns: number) => Math.round(ns / 10) / 100;
  return { count: h.count, p50: us(h.percentile(50)), p90: us(h.percentile(90)), p99: us(h.percentile(99)), p999: us(h.percentile(99.9)), max: us(h.max), mean: us(h.mean) };
}

class TargetLoad {
  readonly pool: Pool;
  #next = 0;
  /** Where connects are counted; undefined while warming up. */
  current: Recorder | undefined;

  readonly name: string;
  readonly requests: BenchRequest[];

  constructor(name: string, url: string, requests: BenchRequest[], connections: number) {
    this.name = name;
    this.requests = requests;
    this.pool = new Pool(url, { connections, pipelining: 1, keepAliveTimeout: 120_000, keepAliveMaxTimeout: 600_000, headersTimeout: 30_000, bodyTimeout: 30_000 });
    this.pool.on('connect', () => {
      if (this.current !== undefined) this.current.connects++;
    });
  }

  /** Sends the next request of the mix; calls done(ok) when its body has been read. */
  fire(scheduled: bigint, rec: Recorder | undefined, done: () => void): void {
    const r = this.requests[this.#next++ % this.requests.length]!;
    const sentAt = process.hrtime.bigint();
    if (rec !== undefined) rec.scheduled++;
    this.pool
      .request({ method: r.method, path: r.path, headers: r.headers, ...(r.body === undefined ? {} : { body: r.body }) })
      .then(async (res) => {
        for await (const _chunk of res.body);
        const end = process.hrtime.bigint();
        if (rec === undefined) return;
        rec.latency.record(end - scheduled);
        rec.service.record(end - sentAt);
        rec.sendLag.record(sentAt > scheduled ? sentAt - scheduled : 1n);
        if (res.statusCode >= 200 && res.statusCode < 300) rec.ok++;
        else rec.non2xx++;
      })
      .catch(() => {
        if (rec !== undefined) rec.errors++;
      })
      .finally(done);
  }
}

/** One slice: `seconds` at `rate` to one target, paced by the clock thread; resolves when every response is in. */
function slice(t: TargetLoad, rate: number, seconds: number, spinUs: number, rec: Recorder | undefined): Promise<void> {
  const intervalNs = 1e9 / rate;
  const total = Math.max(1, Math.round(rate * seconds));
  const start = process.hrtime.bigint() + 30_000_000n; // the worker's start-up is not part of the slice
  t.current = rec;
  return new Promise<void>((resolve, reject) => {
    let inflight = 0;
    let clockDone = false;
    const maybeDone = () => {
      if (clockDone && inflight === 0) resolve();
    };
    const spec: ClockSpec = { startNs: String(start), intervalNs, total, spinNs: spinUs * 1000 };
    const clock = new Worker(clockUrl, { workerData: spec });
    clock.on('message', (k: number) => {
      if (k < 0) {
        clockDone = true;
        void clock.terminate();
        maybeDone();
        return;
      }
      inflight++;
      t.fire(start + BigInt(Math.round(k * intervalNs)), rec, () => {
        inflight--;
        maybeDone();
      });
    });
    clock.on('error', reject);
  });
}

async function run(spec: RunSpec): Promise<RunResult> {
  const loads = spec.targets.map((t) => new TargetLoad(t.name, t.url, t.requests, spec.connections));
  try {
    const maxRate = Math.max(...spec.rates);
    for (const t of loads) {
      log(`${spec.label}: warm-up ${t.name} (${spec.warmupSec} s at ${maxRate} req/s)`);
      await slice(t, maxRate, spec.warmupSec, spec.spinUs, undefined);
    }
    const results: TargetResult[] = [];
    for (const rate of spec.rates) {
      const recs = new Map(loads.map((t) => [t, recorder()]));
      for (let round = 0; round < spec.rounds; round++) {
        const order = loads.map((_, i) => loads[(i + round) % loads.length]!);
        for (const t of order) await slice(t, rate, spec.durationSec / spec.rounds, spec.spinUs, recs.get(t));
      }
      for (const t of loads) {
        const r = recs.get(t)!;
        const row: TargetResult = {
          target: t.name,
          rate,
          scheduled: r.scheduled,
          ok: r.ok,
          non2xx: r.non2xx,
          errors: r.errors,
          connects: r.connects,
          latency: percentiles(r.latency),
          service: percentiles(r.service),
          sendLag: percentiles(r.sendLag),
        };
        results.push(row);
        log(
          `${spec.label} ${rate} req/s ${t.name}: p50 ${row.latency.p50} p90 ${row.latency.p90} p99 ${row.latency.p99} p99.9 ${row.latency.p999} µs ` +
            `(send lag p50 ${row.sendLag.p50} p99 ${row.sendLag.p99} µs; ok ${row.ok}, non-2xx ${row.non2xx}, errors ${row.errors}, connects ${row.connects})`,
        );
      }
    }
    return { label: spec.label, results };
  } finally {
    await Promise.all(loads.map((t) => t.pool.close()));
  }
}

process.on('message', (m: ToChild) => {
  if (m.type === 'exit') {
    process.disconnect?.();
    return;
  }
  run(m.spec).then(
    (result) => send({ type: 'result', result }),
    (e: unknown) => send({ type: 'error', error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
  );
});
