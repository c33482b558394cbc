// `make bench-cluster-cpu`: CPU per request of every process of a cluster
// (the node:cluster primary and each worker, every thread) at saturation, the
// gateway against the bare pass-through run with as many processes, in front of
// the canned stub, with the `make bench` mix (two tenants: `query_range` POSTs,
// label values, series). It answers what `make bench`'s req/s cannot: whether
// the primary costs anything, and how each proxy's CPU per request changes when
// its workers share the cores with the load generator and the stub.
//
// Per round each target gets --seconds of autocannon load (16 connections,
// from this process), alternating targets, after --warmup seconds each.
// Reported per target: the median over rounds of req/s and of CPU µs per
// request, per process (primary first) and in all; floor ÷ gateway by CPU and
// by req/s, per round and as the median of the rounds' ratios; context switches
// per request (voluntary: a process waited; involuntary: the scheduler took the
// core from it), all processes of the target together. Linux only.
// Results: bench/results/cluster-cpu-<date>.json.
//
//   node bench/cluster-cpu.ts [--workers 2] [--seconds 6] [--rounds 5] [--warmup 15] [--gateway-config JSON] [--out FILE]
//
// --gateway-config: top-level keys merged over the gateway's bench config, e.g.
// '{"audit":{"enabled":false}}' to see what the audit line costs in a cluster.
import autocannon from 'autocannon';
import { parseArgs } from 'node:util';
import { benchGatewayConfig, contextSwitches, logger, startBenchGateway, startStubAndPassthrough, stopAll, treeCpuMicros, type Stoppable } from './lib/fleet.ts';
import { processTree } from './lib/pin.ts';
import { requestMix, TENANTS } from './lib/mix.ts';
import { machineInfo, row, upperMedian, writeResult } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    workers: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '6' },
    rounds: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '15' },
    'gateway-config': { type: 'string', default: '{}' },
    out: { type: 'string' },
  },
});
const WORKERS = Number(args.workers);
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const WARMUP = Number(args.warmup);
const GATEWAY_CONFIG = JSON.parse(args['gateway-config']) as Record<string, unknown>;
if (!Number.isInteger(WORKERS) || WORKERS < 1) throw new Error('--workers must be a whole number ≥ 1');
const log = logger('bench-cluster-cpu');

interface Target {
  readonly name: 'bare pass-through' | 'lbac-gateway';
  readonly url: string;
  /** The root process first (a cluster's primary), then its workers. */
  readonly pids: readonly number[];
  readonly requests: autocannon.Request[];
}

interface Round {
  readonly requestsPerSec: number;
  /** CPU µs per request of each process of `pids`, in that order. */
  readonly perProcess: number[];
  readonly total: number;
  /** Context switches per request, all processes and threads: the process waited (voluntary), or was preempted (involuntary). */
  readonly voluntarySwitches: number;
  readonly involuntarySwitches: number;
}

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r2 = (x: number): number => Math.round(x * 100) / 100;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;

const procs: Stoppable[] = [];
try {
  const { stubUrl, passthrough, idp } = await startStubAndPassthrough(procs, [], WORKERS);
  const tokens = Object.fromEntries(await Promise.all(TENANTS.map(async (t) => [t, await idp.mint({ sub: `u-${t}`, groups: [t] }, { expiresIn: '2h' })] as const)));
  const gw = await startBenchGateway({ config: { ...benchGatewayConfig(stubUrl, idp, WORKERS), ...GATEWAY_CONFIG } });
  procs.push(gw);
  // The mix's timestamps do not matter to the stub; the pass-through gets the queries already enforced.
  const evalTime = Math.floor(Date.now() / 1000);
  const targets: Target[] = [
    { name: 'bare pass-through', url: passthrough.url, pids: processTree(passthrough.pid), requests: requestMix(evalTime, () => ({ path: '', headers: {} }), true) },
    { name: 'lbac-gateway', url: gw.url, pids: processTree(gw.pid), requests: requestMix(evalTime, (t) => ({ path: '', headers: { authorization: `Bearer ${tokens[t]}` } })) },
  ];
  for (const t of targets) {
    // One process alone, or a primary and WORKERS workers (the gateway may add helper processes: none today).
    if (t.pids.length !== (WORKERS === 1 ? 1 : WORKERS + 1)) throw new Error(`${t.name}: expected ${WORKERS === 1 ? 1 : WORKERS + 1} processes, found ${t.pids.length}`);
  }
  const switches = (pids: readonly number[]) =>
    pids.map(contextSwitches).reduce((a, b) => ({ voluntary: a.voluntary + b.voluntary, involuntary: a.involuntary + b.involuntary }), { voluntary: 0, involuntary: 0 });
  const load = async (t: Target, seconds: number): Promise<Round> => {
    const before = treeCpuMicros(t.pids);
    const switchesBefore = switches(t.pids);
    const r = await autocannon({ url: t.url, connections: 16, duration: seconds, requests: t.requests });
    const after = treeCpuMicros(t.pids);
    const switchesAfter = switches(t.pids);
    if (r.non2xx > 0 || r.errors > 0) throw new Error(`${t.name}: ${r.non2xx} non-2xx, ${r.errors} errors`);
    // A process read as gone (NaN) ended during the round: a dead worker is no steady state to measure.
    const gone = t.pids.filter((_, i) => Number.isNaN(after[i]!));
    if (gone.length > 0 || Number.isNaN(switchesAfter.voluntary)) throw new Error(`${t.name}: process(es) ${gone.join(', ') || 'of the tree'} ended during the round`);
    const n = r.requests.total;
    const perProcess = t.pids.map((_, i) => (after[i]! - before[i]!) / n);
    return {
      requestsPerSec: n / r.duration,
      perProcess,
      total: perProcess.reduce((a, b) => a + b, 0),
      voluntarySwitches: (switchesAfter.voluntary - switchesBefore.voluntary) / n,
      involuntarySwitches: (switchesAfter.involuntary - switchesBefore.involuntary) / n,
    };
  };
  log(`${WORKERS} worker(s) each; warm-up: ${WARMUP} s of saturating load per target`);
  for (const t of targets) await load(t, WARMUP);
  const rounds = new Map<Target['name'], Round[]>(targets.map((t) => [t.name, []]));
  for (let i = 0; i < ROUNDS; i++) {
    // Alternate which target goes first, so drift in the machine's load spreads over both.
    for (const t of i % 2 === 0 ? targets : [...targets].reverse()) {
      const r = await load(t, SECONDS);
      rounds.get(t.name)!.push(r);
      log(`round ${i + 1}/${ROUNDS} ${t.name}: ${r.requestsPerSec.toFixed(0)} req/s, CPU µs/request ${r.perProcess.map((x) => x.toFixed(1)).join(' + ')} = ${r.total.toFixed(1)}, context switches/request ${r.voluntarySwitches.toFixed(2)} voluntary, ${r.involuntarySwitches.toFixed(3)} involuntary`);
    }
  }
  const floor = rounds.get('bare pass-through')!;
  const gateway = rounds.get('lbac-gateway')!;
  const results = targets.map((t) => {
    const rs = rounds.get(t.name)!;
    return {
      target: t.name,
      processes: t.pids.length,
      requestsPerSec: Math.round(upperMedian(rs.map((r) => r.requestsPerSec))),
      cpuMicrosPerRequest: r1(upperMedian(rs.map((r) => r.total))),
      // Index 0 is the primary when there are workers.
      cpuMicrosPerRequestByProcess: t.pids.map((_, i) => r1(upperMedian(rs.map((r) => r.perProcess[i]!)))),
      voluntarySwitchesPerRequest: r3(upperMedian(rs.map((r) => r.voluntarySwitches))),
      involuntarySwitchesPerRequest: r3(upperMedian(rs.map((r) => r.involuntarySwitches))),
      rounds: rs.map((r) => ({ requestsPerSec: Math.round(r.requestsPerSec), cpuMicrosPerRequest: r1(r.total), byProcess: r.perProcess.map(r1), voluntarySwitches: r3(r.voluntarySwitches), involuntarySwitches: r3(r.involuntarySwitches) })),
    };
  });
  const ratios = {
    cpu: r2(upperMedian(floor.map((f, i) => f.total / gateway[i]!.total))),
    requestsPerSec: r2(upperMedian(floor.map((f, i) => gateway[i]!.requestsPerSec / f.requestsPerSec))),
    cpuByRound: floor.map((f, i) => r2(f.total / gateway[i]!.total)),
    requestsPerSecByRound: floor.map((f, i) => r2(gateway[i]!.requestsPerSec / f.requestsPerSec)),
  };
  const widths = [20, 10, 12, 30, 14, 14];
  process.stdout.write(`\n${row(['target', 'req/s', 'CPU µs/req', WORKERS === 1 ? 'the process' : 'primary, then each worker', 'vol. sw./req', 'invol. sw./req'], widths)}\n`);
  for (const r of results) process.stdout.write(`${row([r.target, r.requestsPerSec, r.cpuMicrosPerRequest, r.cpuMicrosPerRequestByProcess.join(' '), r.voluntarySwitchesPerRequest, r.involuntarySwitchesPerRequest], widths)}\n`);
  process.stdout.write(`\nfloor ÷ gateway: CPU ${ratios.cpu} (rounds ${ratios.cpuByRound.join(' ')}), req/s ${ratios.requestsPerSec} (rounds ${ratios.requestsPerSecByRound.join(' ')})\n`);
  const command = `node bench/cluster-cpu.ts --workers ${WORKERS} --seconds ${SECONDS} --rounds ${ROUNDS} --warmup ${WARMUP}${args['gateway-config'] === '{}' ? '' : ` --gateway-config '${args['gateway-config']}'`}`;
  const file = writeResult('cluster-cpu', { date: new Date().toISOString(), machine: machineInfo(), command, workers: WORKERS, gatewayConfig: GATEWAY_CONFIG, seconds: SECONDS, rounds: ROUNDS, warmup: WARMUP, results, ratios }, args.out);
  process.stdout.write(`written: ${file}\n`);
} finally {
  await stopAll(procs);
}
