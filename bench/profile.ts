// `make bench-profile`: where lbac-gateway's CPU per request goes, next to the
// bare pass-through's, under the same load. Linux with `perf` only.
//
// The canned stub upstream, the bare Fastify/reply-from pass-through and the
// gateway (one worker, default config: audit on, log level info), both proxies
// started with `--perf-basic-prof` so perf can name JavaScript frames. Each
// proxy in turn gets the `make bench` mix (bench/lib/mix.ts, two tenants) from
// autocannon at saturation: a warm-up (bench/lib/warm-up.ts), then `--seconds` unprofiled (CPU per
// request from /proc, every thread), then `--seconds` under `perf record -F
// 1999 -g -p <pid>`. Self time per kind of code, and per JavaScript function
// with the builtins, runtime and kernel time it called counted for it
// (bench/lib/perf-report.ts), is scaled by the CPU per request measured
// without perf; the gateway's figures are shown minus the pass-through's.
// Caveat: `--perf-basic-prof` never retires a name, so a sample in code V8
// has since moved or collected can carry the old name; look for agreement
// between runs before acting on a single small row.
// Results: bench/results/profile-<date>.json.
//
//   node bench/profile.ts [--seconds 10] [--warmup 15] [--connections 16] [--only 0,4] [--top 40] [--out FILE]
//
// --only keeps the mix's requests at those indices (per tenant: 0–3 query_range
// POSTs, 4 label values, 5 series; the second tenant's are 6–11).
import autocannon from 'autocannon';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchGatewayConfig, cpuMicros, logger, startBenchGateway, startStubAndPassthrough, stopAll, type Stoppable } from './lib/fleet.ts';
import { requestMix, TENANTS, type BenchRequest } from './lib/mix.ts';
import { diffProfiles, parsePerfScript, symbolKind, type DiffRow, type ProfileSide } from './lib/perf-report.ts';
import { machineInfo, row, writeResult } from './lib/report.ts';
import { WARM_UP_SECONDS, warmUp } from './lib/warm-up.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: String(WARM_UP_SECONDS) },
    connections: { type: 'string', default: '16' },
    only: { type: 'string' },
    top: { type: 'string', default: '40' },
    out: { type: 'string' },
  },
});
const SECONDS = Number(args.seconds);
const WARMUP = Number(args.warmup);
const CONNECTIONS = Number(args.connections);
const ONLY = args.only?.split(',').map(Number);
const TOP = Number(args.top);
const log = logger('bench-profile');

try {
  execFileSync('perf', ['--version'], { stdio: 'ignore' });
} catch {
  log('needs `perf` (linux-tools) on PATH, and permission to record another process (root, or kernel.perf_event_paranoid ≤ 1)');
  process.exit(2);
}

interface Measured {
  rps: number;
  requests: number;
  cpuPerRequest: number;
}

/** Saturating load for `seconds`; the process's CPU per request over it. */
async function load(url: string, pid: number, requests: BenchRequest[], seconds: number): Promise<Measured> {
  const c0 = cpuMicros(pid);
  const r = await autocannon({ url, connections: CONNECTIONS, duration: seconds, requests });
  const c1 = cpuMicros(pid);
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`${url}: ${r.non2xx} non-2xx answers, ${r.errors} errors`);
  return { rps: r.requests.average, requests: r.requests.total, cpuPerRequest: (c1 - c0) / r.requests.total };
}

/** The same load under `perf record -g`; the samples' stacks (`perf script`). */
async function profiled(url: string, pid: number, requests: BenchRequest[], dir: string, name: string): Promise<{ measured: Measured; script: string }> {
  const data = join(dir, `${name}.data`);
  const perf = spawn('perf', ['record', '-q', '-g', '-F', '1999', '-p', String(pid), '-o', data], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<void>((resolve) => perf.once('exit', () => resolve()));
  // perf attaches asynchronously; samples before the load are idle and do not count.
  await new Promise((r) => setTimeout(r, 500));
  const measured = await load(url, pid, requests, SECONDS);
  perf.kill('SIGINT');
  await exited;
  const script = execFileSync('perf', ['script', '-i', data, '-F', 'comm,tid,period,ip,sym'], { encoding: 'utf8', maxBuffer: 1024 * 1024 * 1024, stdio: ['ignore', 'pipe', 'ignore'] });
  return { measured, script };
}

function print(title: string, rows: readonly DiffRow[]): void {
  const w = [Math.min(100, Math.max(...rows.map((r) => r.key.length), 10)), 9, 9, 9];
  process.stdout.write(`\n${title} (µs per request)\n${row(['', 'gateway', 'floor', 'added'], w)}\n`);
  for (const r of rows) process.stdout.write(`${row([r.key.slice(0, 100), r.gateway.toFixed(2), r.passthrough.toFixed(2), r.added.toFixed(2)], w)}\n`);
}

const procs: Stoppable[] = [];
const dir = mkdtempSync(join(tmpdir(), 'lbac-profile-'));
const perfMaps: string[] = [];
try {
  const { stubUrl, passthrough, idp } = await startStubAndPassthrough(procs, ['--perf-basic-prof']);
  const tokens: Record<string, string> = {};
  for (const t of TENANTS) tokens[t] = await idp.mint({ sub: `u-${t}`, groups: [t] }, { expiresIn: '2h' });
  const gateway = await startBenchGateway({ config: benchGatewayConfig(stubUrl, idp, 1), env: { NODE_OPTIONS: '--perf-basic-prof' } });
  procs.push(gateway);
  const now = Math.floor(Date.now() / 1000);
  const pick = (mix: BenchRequest[]) => (ONLY === undefined ? mix : mix.filter((_, i) => ONLY.includes(i)));
  const targets = {
    gateway: { url: gateway.url, pid: gateway.pid, requests: pick(requestMix(now, (t) => ({ path: '', headers: { authorization: `Bearer ${tokens[t]}` } }))) },
    passthrough: { url: passthrough.url, pid: passthrough.pid, requests: pick(requestMix(now, () => ({ path: '', headers: {} }), true)) },
  };
  const result: Record<string, { unprofiled: Measured; profiled: Measured; script: string }> = {};
  for (const [name, t] of Object.entries(targets)) {
    perfMaps.push(`/tmp/perf-${t.pid}.map`);
    log(`${name}: warm-up ${WARMUP} s, ${SECONDS} s unprofiled, ${SECONDS} s under perf`);
    await warmUp(t.url, t.requests, WARMUP, CONNECTIONS);
    const unprofiled = await load(t.url, t.pid, t.requests, SECONDS);
    const { measured, script } = await profiled(t.url, t.pid, t.requests, dir, name);
    result[name] = { unprofiled, profiled: measured, script };
  }
  const g = result['gateway']!;
  const p = result['passthrough']!;
  // Shares scaled by the unprofiled CPU per request: perf's stack walks add CPU time (more for
  // the gateway's deeper stacks) that no sample shows, so the profiled figure overstates the cost.
  const side = (r: typeof g, fold: boolean): ProfileSide => ({ shares: parsePerfScript(r.script, fold), cpuPerRequest: r.unprofiled.cpuPerRequest });
  const byKind = diffProfiles(side(g, false), side(p, false), symbolKind);
  const byKindFolded = diffProfiles(side(g, true), side(p, true), symbolKind);
  const bySymbol = diffProfiles(side(g, true), side(p, true));
  const fmt = (m: Measured) => `${Math.round(m.rps)} req/s, ${m.cpuPerRequest.toFixed(1)} µs CPU per request`;
  process.stdout.write(
    `unprofiled: gateway ${fmt(g.unprofiled)}; pass-through ${fmt(p.unprofiled)}; floor ÷ gateway ${(p.unprofiled.cpuPerRequest / g.unprofiled.cpuPerRequest).toFixed(2)} (CPU), ${(g.unprofiled.rps / p.unprofiled.rps).toFixed(2)} (req/s)\n` +
      `under perf: gateway ${fmt(g.profiled)}; pass-through ${fmt(p.profiled)}\n`,
  );
  print('self time by kind of code', byKind);
  print('by kind of code, builtins, runtime, native and kernel time counted for the JavaScript that called them', byKindFolded);
  print(`by JavaScript function (with what it called outside JavaScript), the ${TOP} largest additions`, bySymbol.slice(0, TOP));
  const strip = (m: Measured) => ({ rps: Math.round(m.rps), requests: m.requests, cpuPerRequest: Math.round(m.cpuPerRequest * 10) / 10 });
  const file = writeResult(
    'profile',
    {
      date: new Date().toISOString(),
      machine: machineInfo(),
      method: { seconds: SECONDS, warmup: WARMUP, connections: CONNECTIONS, only: ONLY ?? null, perfHz: 1999 },
      gateway: { unprofiled: strip(g.unprofiled), profiled: strip(g.profiled) },
      passthrough: { unprofiled: strip(p.unprofiled), profiled: strip(p.profiled) },
      byKind,
      byKindFolded,
      bySymbolFolded: bySymbol.slice(0, TOP),
    },
    args.out,
  );
  log(`wrote ${file}`);
} finally {
  await stopAll(procs);
  rmSync(dir, { recursive: true, force: true });
  for (const m of perfMaps) rmSync(m, { force: true });
}
