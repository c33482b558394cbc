// `make bench-latency`: the latency lbac-gateway adds, at microsecond
// resolution (autocannon, used by `make bench`, reports whole milliseconds).
//
// The same Grafana-like mix as bench/gateway.ts (bench/lib/mix.ts), two
// tenants, sent at fixed rates (open loop: a send is never held back waiting
// for an earlier response) to
//   (a) the upstream directly, (b) prom-label-proxy (if installed),
//   (c) lbac-gateway, (d) the bare Fastify/reply-from pass-through,
// for a real Prometheus with small data and for the canned stub. The load
// generator is a child process of its own (bench/lib/open-loop-child.ts: undici
// Pool with keep-alive, a clock thread for sub-millisecond pacing); latency is
// completion minus *scheduled* send time, in a perf_hooks histogram (ns).
// Targets are measured in interleaved rounds (each rate's duration is split into
// `rounds` slices, target order rotating), so background noise spreads over all
// of them. `--pin generator` (where taskset and two CPUs are available) runs
// the generator on the first CPU and the servers (upstreams, proxies under
// test) on the others (bench/lib/pin.ts); off by default: on this 2-vCPU
// machine it made every tail worse (docs/performance.md).
// Results: bench/results/latency-<date>.json.
//
// Before its open-loop runs every target gets --saturate seconds of
// saturating closed-loop load (bench/lib/warm-up.ts): at 1000 req/s a run
// would never send the ≈ 120 000 requests V8 needs to optimise the gateway;
// --warmup is then the open-loop warm-up at each rate.
//
//   node bench/latency.ts [--rates 200,1000] [--duration 8] [--warmup 3] [--saturate 15] [--rounds 8]
//                         [--upstreams prometheus,stub] [--connections 64] [--workers 1] [--spin 150]
//                         [--pin off|generator] [--out FILE]
import { parseArgs } from 'node:util';
import { logger, startTargets, startUpstreams, type Target, type UpstreamName } from './lib/fleet.ts';
import { forkLoadGenerator, type Percentiles, type RunResult, type TargetResult } from './lib/open-loop.ts';
import { pinningPlan, pinTree } from './lib/pin.ts';
import { machineInfo, row, writeResult } from './lib/report.ts';
import { WARM_UP_SECONDS, warmUp } from './lib/warm-up.ts';

const { values: args } = parseArgs({
  options: {
    rates: { type: 'string', default: '200,1000' },
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '3' },
    saturate: { type: 'string', default: String(WARM_UP_SECONDS) },
    rounds: { type: 'string', default: '8' },
    upstreams: { type: 'string', default: 'prometheus,stub' },
    connections: { type: 'string', default: '64' },
    workers: { type: 'string', default: '1' },
    spin: { type: 'string', default: '150' },
    pin: { type: 'string', default: 'off' },
    out: { type: 'string' },
  },
});
const RATES = args.rates.split(',').map(Number);
const DURATION = Number(args.duration);
const WARMUP = Number(args.warmup);
const SATURATE = Number(args.saturate);
const ROUNDS = Number(args.rounds);
const UPSTREAMS = args.upstreams.split(',') as UpstreamName[];
const CONNECTIONS = Number(args.connections);
const WORKERS = args.workers === 'auto' ? 'auto' : Number(args.workers);
const SPIN_US = Number(args.spin);
if (args.pin !== 'generator' && args.pin !== 'off') throw new Error(`--pin must be off or generator, not ${args.pin}`);
const PIN = pinningPlan(args.pin);
const PCTS = ['p50', 'p90', 'p99', 'p999'] as const;
const log = logger('bench-latency');

type Added = Record<(typeof PCTS)[number], number>;

function added(a: Percentiles | undefined, b: Percentiles | undefined): Added | null {
  if (a === undefined || b === undefined) return null;
  const d = (k: (typeof PCTS)[number]) => Math.round((a[k] - b[k]) * 10) / 10;
  return { p50: d('p50'), p90: d('p90'), p99: d('p99'), p999: d('p999') };
}

function summarise(runs: RunResult[]) {
  return runs.flatMap((run) =>
    RATES.map((rate) => {
      const at = (t: Target) => run.results.find((r) => r.rate === rate && r.target === t);
      const lat = (t: Target) => at(t)?.latency;
      const svc = (t: Target) => at(t)?.service;
      return {
        upstream: run.label,
        rate,
        addedLatencyUs: {
          gatewayVsDirect: added(lat('lbac-gateway'), lat('direct')),
          gatewayVsPassthrough: added(lat('lbac-gateway'), lat('passthrough')),
          promLabelProxyVsDirect: added(lat('prom-label-proxy'), lat('direct')),
          passthroughVsDirect: added(lat('passthrough'), lat('direct')),
        },
        addedServiceTimeUs: {
          gatewayVsDirect: added(svc('lbac-gateway'), svc('direct')),
          gatewayVsPassthrough: added(svc('lbac-gateway'), svc('passthrough')),
        },
      };
    }),
  );
}

async function main(): Promise<void> {
  const started = Date.now();
  const atStart = machineInfo();
  // Before anything is started: the servers inherit this process's CPUs; the generator is moved off them.
  if (PIN !== undefined) pinTree(process.pid, PIN.servers);
  const up = await startUpstreams(log);
  const gen = forkLoadGenerator(log);
  if (PIN !== undefined) {
    pinTree(gen.pid, PIN.generator);
    log(`pinned: load generator on CPU ${PIN.generator}, upstreams and proxies on CPU ${PIN.servers}`);
  }
  const runs: RunResult[] = [];
  try {
    log(`load generator pid ${gen.pid}; rates ${RATES.join(', ')} req/s, ${DURATION} s each in ${ROUNDS} rounds after ${WARMUP} s warm-up per target`);
    for (const upstream of UPSTREAMS) {
      const { targets, stop } = await startTargets(up.urls[upstream], up, { workers: WORKERS, promLabelProxy: 'if-present', log });
      try {
        log(`${upstream}: ${SATURATE} s of saturating load per target first`);
        for (const t of Object.values(targets)) await warmUp(t.url, t.requests, SATURATE);
        runs.push(
          await gen.run({
            label: upstream,
            targets: Object.entries(targets).map(([name, t]) => ({ name, url: t.url, requests: t.requests })),
            rates: RATES,
            durationSec: DURATION,
            rounds: ROUNDS,
            warmupSec: WARMUP,
            connections: CONNECTIONS,
            spinUs: SPIN_US,
          }),
        );
      } finally {
        await stop();
      }
    }
  } finally {
    await gen.close();
    await up.stop();
  }

  const summary = summarise(runs);
  const result = {
    date: new Date().toISOString(),
    command: `node bench/latency.ts --rates ${RATES.join(',')} --duration ${DURATION} --warmup ${WARMUP} --saturate ${SATURATE} --rounds ${ROUNDS} --upstreams ${UPSTREAMS.join(',')} --connections ${CONNECTIONS} --workers ${WORKERS} --spin ${SPIN_US} --pin ${args.pin}`,
    unit: 'µs',
    machine: machineInfo(),
    loadavg1mAtStart: atStart.loadavg1m,
    /** CPU lists (taskset -c) of the load generator and of the servers; null: not pinned. */
    pinning: PIN ?? null,
    wallSeconds: Math.round((Date.now() - started) / 1000),
    notes: [
      'latency = response body read minus scheduled send time (open loop; includes the generator send lag and any queueing for a connection)',
      'service = response body read minus actual send time',
      PIN === undefined
        ? 'everything (generator, upstream, proxies) shares the same cores: compare targets within one run'
        : `load generator pinned to CPU ${PIN.generator}, upstreams and proxies to CPU ${PIN.servers}: compare targets within one run`,
    ],
    runs,
    summary,
  };
  const file = writeResult('latency', result, args.out);

  const w = [11, 17, 6, 8, 8, 8, 9, 9, 8, 6];
  console.log(`\nlatency from scheduled send, µs (${result.machine.node}, ${result.machine.cores} cores, ${PIN === undefined ? 'not pinned' : `generator on CPU ${PIN.generator}`}, load ${atStart.loadavg1m} at start, ${result.machine.loadavg1m} at end)`);
  console.log(row(['upstream', 'target', 'rate', 'p50', 'p90', 'p99', 'p99.9', 'lag p50', 'lag p99', 'errs'], w));
  for (const run of runs) {
    for (const r of run.results as TargetResult[]) {
      console.log(row([run.label, r.target, r.rate, r.latency.p50, r.latency.p90, r.latency.p99, r.latency.p999, r.sendLag.p50, r.sendLag.p99, r.errors + r.non2xx], w));
    }
  }
  console.log('\nadded latency, µs (difference of percentiles)');
  const w2 = [11, 6, 24, 8, 8, 8, 8];
  console.log(row(['upstream', 'rate', 'comparison', 'p50', 'p90', 'p99', 'p99.9'], w2));
  for (const s of summary) {
    for (const [name, a] of Object.entries(s.addedLatencyUs)) {
      if (a !== null) console.log(row([s.upstream, s.rate, name, a.p50, a.p90, a.p99, a.p999], w2));
    }
  }
  log(`written ${file} (${result.wallSeconds} s)`);
}

await main();
