// `make bench`: the same Grafana-like request mix, two tenants, sent side by side
// in one run to
//   (a) the upstream directly,
//   (b) prom-label-proxy (the Go peer) in front of it,
//   (c) lbac-gateway,
//   (d) a bare Fastify/reply-from pass-through (the floor; as many processes as the gateway has workers),
// for two upstreams: a real Prometheus with small data, and a canned-response
// stub that isolates proxy cost. Load comes from this process (autocannon) on
// loopback only, bounded in time. Results: bench/results/gateway-<date>.json.
//
//   node bench/gateway.ts [--duration 12] [--rounds 6] [--connections 16] [--rate 300] [--workers 1|auto] [--warmup 15] [--no-twin]
//
// Each target first gets --warmup seconds of saturating load, not recorded
// (bench/lib/warm-up.ts: the gateway needs ≈ 13 s to reach its steady state).
//
// A second, identical lbac-gateway ("lbac-gateway twin") runs alongside unless
// --no-twin: its ratio to the first (`twinVsGateway`) is the run's own noise.
// Throughput is measured in rounds: each target gets duration/rounds seconds
// per round, the target order rotating each round, so noise from the shared
// cores lands on all targets alike; ratios are the median of the per-round
// ratios (two targets measured minutes apart differ by more than the gateway's
// own cost on these machines).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { repoRoot } from '../e2e/harness/tools.ts';
import { logger, startTargets, startUpstreams, type Target, type TargetSpec } from './lib/fleet.ts';
import { WARM_UP_SECONDS, warmUp } from './lib/warm-up.ts';

const { values: args } = parseArgs({
  allowNegative: true,
  options: {
    duration: { type: 'string', default: '12' },
    rounds: { type: 'string', default: '6' },
    connections: { type: 'string', default: '16' },
    rate: { type: 'string', default: '300' },
    workers: { type: 'string', default: '1' },
    warmup: { type: 'string', default: String(WARM_UP_SECONDS) },
    twin: { type: 'boolean', default: true },
  },
});
const DURATION = Number(args.duration);
const ROUNDS = Math.max(1, Math.round(Number(args.rounds)));
const CONNECTIONS = Number(args.connections);
const RATE = Number(args.rate);
const WORKERS = args.workers === 'auto' ? 'auto' : Number(args.workers);
const WARMUP = Number(args.warmup);
interface Sample {
  upstream: string;
  target: Target;
  mode: 'throughput' | 'moderate';
  requestsPerSec: number;
  p50: number;
  p99: number;
  p999: number;
  errors: number;
  non2xx: number;
  /** Throughput mode: req/s of each round (the target order rotates per round). */
  rounds?: number[];
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

const log = logger('bench');

async function load(url: string, requests: autocannon.Request[], mode: 'throughput' | 'moderate', duration = DURATION): Promise<autocannon.Result> {
  return autocannon({
    url,
    requests,
    connections: mode === 'throughput' ? CONNECTIONS : 4,
    duration,
    ...(mode === 'moderate' ? { overallRate: RATE } : {}),
    pipelining: 1,
  });
}

async function main(): Promise<void> {
  const up = await startUpstreams(log);
  try {
    const upstreams = up.urls;
    const samples: Sample[] = [];
    for (const [upstreamName, upstreamUrl] of Object.entries(upstreams)) {
      log(`upstream ${upstreamName}: starting prom-label-proxy, lbac-gateway, passthrough`);
      const { targets, stop } = await startTargets(upstreamUrl, up, { workers: WORKERS, promLabelProxy: 'required', log, twin: args.twin });
      const entries = Object.entries(targets) as [Target, TargetSpec][];
      log(`warm-up: ${WARMUP} s of saturating load per target`);
      for (const [, t] of entries) await warmUp(t.url, t.requests, WARMUP, CONNECTIONS);
      // Throughput: rounds with a rotating target order (see the header comment).
      const roundSecs = Math.max(1, DURATION / ROUNDS);
      const runs = new Map<Target, autocannon.Result[]>(entries.map(([target]) => [target, []]));
      for (let round = 0; round < ROUNDS; round++) {
        for (let i = 0; i < entries.length; i++) {
          const [target, t] = entries[(i + round) % entries.length] as [Target, TargetSpec];
          runs.get(target)?.push(await load(t.url, t.requests, 'throughput', roundSecs));
        }
      }
      for (const [target] of entries) {
        const rs = runs.get(target) ?? [];
        const pct = (key: string) => median(rs.map((r) => (r.latency as unknown as Record<string, number>)[key] ?? NaN));
        const s: Sample = {
          upstream: upstreamName,
          target,
          mode: 'throughput',
          requestsPerSec: rs.reduce((n, r) => n + r.requests.total, 0) / rs.reduce((n, r) => n + r.duration, 0),
          p50: pct('p50'),
          p99: pct('p99'),
          p999: median(rs.map((r) => { const l = r.latency as unknown as Record<string, number>; return l['p99_9'] ?? l['p999'] ?? NaN; })),
          errors: rs.reduce((n, r) => n + r.errors + r.timeouts, 0),
          non2xx: rs.reduce((n, r) => n + r.non2xx, 0),
          rounds: rs.map((r) => r.requests.total / r.duration),
        };
        samples.push(s);
        log(`${upstreamName} throughput ${target}: ${s.requestsPerSec.toFixed(0)} req/s (rounds ${s.rounds?.map((x) => x.toFixed(0)).join(' ')}) p50 ${s.p50} ms p99 ${s.p99} ms (errors ${s.errors}, non-2xx ${s.non2xx})`);
      }
      for (const [target, t] of entries) {
        const r = await load(t.url, t.requests, 'moderate');
        const lat = r.latency as unknown as Record<string, number>;
        const s: Sample = {
          upstream: upstreamName,
          target,
          mode: 'moderate',
          requestsPerSec: r.requests.average,
          p50: lat['p50'] ?? NaN,
          p99: lat['p99'] ?? NaN,
          p999: lat['p99_9'] ?? lat['p999'] ?? NaN,
          errors: r.errors + r.timeouts,
          non2xx: r.non2xx,
        };
        samples.push(s);
        log(`${upstreamName} moderate ${target}: ${s.requestsPerSec.toFixed(0)} req/s p50 ${s.p50} ms p99 ${s.p99} ms p99.9 ${s.p999} ms (errors ${s.errors}, non-2xx ${s.non2xx})`);
      }
      await stop();
    }

    // The median of the per-round ratios: each round's two figures were measured minutes closer together than the totals.
    const ratio = (u: string, m: string, a: Target, b: Target) => {
      const x = samples.find((s) => s.upstream === u && s.mode === m && s.target === a);
      const y = samples.find((s) => s.upstream === u && s.mode === m && s.target === b);
      if (x === undefined || y === undefined) return NaN;
      if (x.rounds === undefined || y.rounds === undefined) return x.requestsPerSec / y.requestsPerSec;
      const yr = y.rounds;
      return median(x.rounds.map((v, i) => v / (yr[i] ?? NaN)));
    };
    const added = (u: string, a: Target, field: 'p50' | 'p99') => {
      const x = samples.find((s) => s.upstream === u && s.mode === 'moderate' && s.target === a);
      const y = samples.find((s) => s.upstream === u && s.mode === 'moderate' && s.target === 'direct');
      return x && y ? x[field] - y[field] : NaN;
    };
    const summary = Object.keys(upstreams).map((u) => ({
      upstream: u,
      throughputRatio: {
        gatewayVsDirect: ratio(u, 'throughput', 'lbac-gateway', 'direct'),
        gatewayVsPromLabelProxy: ratio(u, 'throughput', 'lbac-gateway', 'prom-label-proxy'),
        gatewayVsPassthrough: ratio(u, 'throughput', 'lbac-gateway', 'passthrough'),
        promLabelProxyVsDirect: ratio(u, 'throughput', 'prom-label-proxy', 'direct'),
        // Two identical gateways: a ratio between other targets closer to 1 than this one's distance is noise.
        twinVsGateway: ratio(u, 'throughput', 'lbac-gateway twin', 'lbac-gateway'),
      },
      addedLatencyMsAtModerateLoad: {
        gatewayP50: added(u, 'lbac-gateway', 'p50'),
        gatewayP99: added(u, 'lbac-gateway', 'p99'),
        promLabelProxyP50: added(u, 'prom-label-proxy', 'p50'),
        promLabelProxyP99: added(u, 'prom-label-proxy', 'p99'),
      },
    }));
    const result = {
      date: new Date().toISOString(),
      command: `node bench/gateway.ts --duration ${DURATION} --rounds ${ROUNDS} --connections ${CONNECTIONS} --rate ${RATE} --workers ${WORKERS} --warmup ${WARMUP}${args.twin ? '' : ' --no-twin'}`,
      machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
      samples,
      summary,
    };
    const dir = join(repoRoot, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `gateway-${result.date.slice(0, 10)}-workers-${WORKERS}.json`);
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    console.log('\nupstream    target            mode        req/s    p50 ms  p99 ms  p99.9 ms');
    for (const s of samples) {
      console.log(`${s.upstream.padEnd(11)} ${s.target.padEnd(18)} ${s.mode.padEnd(11)} ${s.requestsPerSec.toFixed(0).padStart(6)} ${String(s.p50).padStart(8)} ${String(s.p99).padStart(7)} ${String(s.p999).padStart(9)}`);
    }
    console.log(JSON.stringify(summary, null, 2));
    log(`written ${file}`);
  } finally {
    await up.stop();
  }
}

await main();
