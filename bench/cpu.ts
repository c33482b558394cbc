// `make bench-cpu`: CPU time each proxy spends per request, the figure the
// throughput ratio against the bare pass-through follows (one worker saturates
// one core, so req/s ≈ 1 / CPU per request).
//
// The canned stub upstream (bench/stub-upstream.ts), and in front of it the bare
// Fastify/reply-from pass-through and lbac-gateway (one worker) three times: with
// the default config (an audit line per decision, log level info, no access log),
// with `audit.enabled: false` and with `server.accessLog: true`, so the audit
// line's and the access log's own costs are visible, plus a twin of the default
// one, whose distance from it (`twinSpread`) is the run's own noise. Each target gets the same dashboard
// `query_range` POST at a fixed rate (autocannon `overallRate`, well below
// saturation) in interleaved rounds; per round the proxy's CPU time is read from
// /proc/<pid>/task/*/schedstat (ns, every thread: main, libuv pool, GC helpers)
// before and after. The median over rounds is reported. Linux only.
// Results: bench/results/cpu-<date>.json.
//
//   node bench/cpu.ts [--rate 2000] [--requests 8000] [--rounds 11] [--warmup 10000] [--parallel] [--out FILE]
//
// --parallel loads every target at once (each at rate / targets) instead of one after
// the other: all processes then share the same seconds of this noisy machine, so the
// comparison is paired (per-request CPU is higher at the lower per-target rate).
import autocannon from 'autocannon';
import { parseArgs } from 'node:util';
import { cpuMicros, logger, startBenchGateway, startStubAndPassthrough, stopAll, type Stoppable } from './lib/fleet.ts';
import { CPU_BENCH_QUERY, cpuBenchRequest } from './lib/mix.ts';
import { machineInfo, row, upperMedian, writeResult } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '2000' },
    parallel: { type: 'boolean', default: false },
    requests: { type: 'string', default: '8000' },
    rounds: { type: 'string', default: '11' },
    warmup: { type: 'string', default: '10000' },
    out: { type: 'string' },
  },
});
const RATE = Number(args.rate);
/** --parallel: every target loaded at once, each at RATE / targets, so all see the same machine in the same seconds. */
const PARALLEL = args.parallel === true;
const REQUESTS = Number(args.requests);
const ROUNDS = Number(args.rounds);
const WARMUP = Number(args.warmup);
const log = logger('bench-cpu');

interface Target {
  name: string;
  url: string;
  pid: number;
}

const procs: Stoppable[] = [];
try {
  const { stubUrl, passthrough, idp } = await startStubAndPassthrough(procs);
  const gateway = (extra: Record<string, unknown>, server: Record<string, unknown> = {}) =>
    startBenchGateway({
      config: {
        ...extra,
        // The default log level (info): what a deployment runs.
        server: { workers: 1, ...server },
        upstreams: [{ name: 'metrics', kind: 'prometheus', url: stubUrl, mount: '/' }],
        identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: 'https://bench.invalid', audience: 'lbac-gateway', algorithms: ['ES256'] }] },
        teams: { a: { groups: ['team-a'], selectors: [{ namespace: 'team-a' }] } },
      },
    });
  const withAudit = await gateway({});
  procs.push(withAudit);
  // The same config again: how far two identical processes land apart in one run is the noise floor
  // a difference between the other targets has to clear.
  const twin = await gateway({});
  procs.push(twin);
  const noAudit = await gateway({ audit: { enabled: false } });
  procs.push(noAudit);
  const accessLog = await gateway({}, { accessLog: true });
  procs.push(accessLog);
  const token = await idp.mint({ sub: 'u-a', groups: ['team-a'] }, { expiresIn: '2h' });
  const query = CPU_BENCH_QUERY;
  const request = cpuBenchRequest(token);
  const targets: Target[] = [
    { name: 'bare pass-through', ...passthrough },
    { name: 'lbac-gateway', url: withAudit.url, pid: withAudit.pid },
    { name: 'lbac-gateway (twin)', url: twin.url, pid: twin.pid },
    { name: 'lbac-gateway, audit off', url: noAudit.url, pid: noAudit.pid },
    { name: 'lbac-gateway, access log on', url: accessLog.url, pid: accessLog.pid },
  ];
  const rate = PARALLEL ? Math.max(1, Math.round(RATE / targets.length)) : RATE;
  const run = async (t: Target, amount: number): Promise<number> => {
    const before = cpuMicros(t.pid);
    const r = await autocannon({ url: t.url, connections: PARALLEL ? 8 : 16, amount, overallRate: rate, requests: [request] });
    if (r.non2xx > 0 || r.errors > 0) throw new Error(`${t.name}: ${r.non2xx} non-2xx, ${r.errors} errors`);
    return (cpuMicros(t.pid) - before) / amount;
  };
  log(`warm-up: ${WARMUP} requests per target`);
  for (const t of targets) await run(t, WARMUP);
  const samples = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    log(`round ${round + 1}/${ROUNDS}: ${REQUESTS} requests per target at ${rate} req/s${PARALLEL ? ', all targets at once' : ''}`);
    if (PARALLEL) {
      const perTarget = await Promise.all(targets.map((t) => run(t, REQUESTS)));
      targets.forEach((t, i) => samples.get(t.name)!.push(perTarget[i]!));
      continue;
    }
    // Rotate the order so drift in the machine's background load spreads over all targets.
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + round) % targets.length]!;
      samples.get(t.name)!.push(await run(t, REQUESTS));
    }
  }
  const floor = upperMedian(samples.get('bare pass-through')!);
  const results = targets.map((t) => {
    const us = upperMedian(samples.get(t.name)!);
    return { target: t.name, cpuMicrosPerRequest: Math.round(us * 10) / 10, overFloor: Math.round((us - floor) * 10) / 10, floorRatio: Math.round((floor / us) * 100) / 100, rounds: samples.get(t.name)!.map((x) => Math.round(x)) };
  });
  const widths = [26, 12, 12, 14];
  process.stdout.write(`\n${row(['target', 'CPU µs/req', 'over floor', 'floor ÷ target'], widths)}\n`);
  for (const r of results) process.stdout.write(`${row([r.target, r.cpuMicrosPerRequest, r.overFloor, r.floorRatio], widths)}\n`);
  const gw = results.find((r) => r.target === 'lbac-gateway')!.cpuMicrosPerRequest;
  const tw = results.find((r) => r.target === 'lbac-gateway (twin)')!.cpuMicrosPerRequest;
  // Relative difference between the twins: differences between targets smaller than this are noise.
  const twinSpread = Math.round((Math.abs(gw - tw) / Math.min(gw, tw)) * 1000) / 1000;
  process.stdout.write(`\ntwin spread (identical gateways): ${(twinSpread * 100).toFixed(1)} %\n`);
  const file = writeResult('cpu', { date: new Date().toISOString(), machine: machineInfo(), command: `node bench/cpu.ts --rate ${RATE} --requests ${REQUESTS} --rounds ${ROUNDS}${PARALLEL ? ' --parallel' : ''}`, rate: RATE, parallel: PARALLEL, requests: REQUESTS, rounds: ROUNDS, query, results, twinSpread }, args.out);
  process.stdout.write(`\nwritten: ${file}\n`);
} finally {
  await stopAll(procs);
}
