// `make bench-ab BASE=<rev>`: CPU per request of this checkout's gateway against
// the gateway at another commit, paired. On these shared 2-vCPU machines two runs
// minutes apart differ by more than most changes do (two identical gateways
// measured one after the other read 176 and 159 µs), so both gateways and the
// bare pass-through are loaded at the same time, each at the same fixed rate,
// and every round's CPU figures come from the same seconds. The result is the
// median of the per-round differences and how many rounds agree on its sign.
//
//   node bench/ab.ts --base <rev> [--rate 700] [--requests 7000] [--rounds 11] [--warmup 8000] [--out FILE]
//
// The base commit is checked out into a temporary git worktree (sharing this
// checkout's node_modules) and removed afterwards. Linux only (reads
// /proc/<pid>/task/*/schedstat, as bench/cpu.ts does).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import type { startGateway } from '../e2e/harness/gateway.ts';
import { repoRoot } from '../e2e/harness/tools.ts';
import { cpuMicros, logger, startBenchGateway, startStubAndPassthrough, stopAll, type Stoppable } from './lib/fleet.ts';
import { CPU_BENCH_QUERY, cpuBenchRequest } from './lib/mix.ts';
import { machineInfo, row, upperMedian, writeResult } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    rate: { type: 'string', default: '700' },
    requests: { type: 'string', default: '7000' },
    rounds: { type: 'string', default: '11' },
    warmup: { type: 'string', default: '8000' },
    out: { type: 'string' },
  },
});
if (args.base === undefined || args.base === '') throw new Error('usage: node bench/ab.ts --base <git rev> (e.g. make bench-ab BASE=HEAD~3)');
const RATE = Number(args.rate);
const REQUESTS = Number(args.requests);
const ROUNDS = Number(args.rounds);
const WARMUP = Number(args.warmup);
const log = logger('bench-ab');

const git = (...a: string[]): string => execFileSync('git', a, { cwd: repoRoot, encoding: 'utf8' }).trim();

const baseRev = git('rev-parse', '--verify', `${args.base}^{commit}`);
const headRev = git('rev-parse', 'HEAD');
const dirty = git('status', '--porcelain', '--untracked-files=no') !== '';
const worktree = join(mkdtempSync(join(tmpdir(), 'lbac-ab-')), 'base');
const procs: Stoppable[] = [];
try {
  log(`base ${baseRev.slice(0, 12)} → ${worktree}`);
  git('worktree', 'add', '--detach', worktree, baseRev);
  symlinkSync(join(repoRoot, 'node_modules'), join(worktree, 'node_modules'));
  const baseHarness = join(worktree, 'e2e', 'harness', 'gateway.ts');
  if (!existsSync(baseHarness)) throw new Error(`${args.base} has no e2e/harness/gateway.ts to start its gateway with`);
  const startBase = ((await import(baseHarness)) as { startGateway: typeof startGateway }).startGateway;

  const { stubUrl, passthrough, idp } = await startStubAndPassthrough(procs);
  // The default configuration (audit on, log level info), one worker.
  const config = {
    server: { workers: 1 },
    upstreams: [{ name: 'metrics', kind: 'prometheus', url: stubUrl, mount: '/' }],
    identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: 'https://bench.invalid', audience: 'lbac-gateway', algorithms: ['ES256'] }] },
    teams: { a: { groups: ['team-a'], selectors: [{ namespace: 'team-a' }] } },
  };
  const base = await startBenchGateway({ config }, startBase);
  procs.push(base);
  const head = await startBenchGateway({ config });
  procs.push(head);
  const token = await idp.mint({ sub: 'u-a', groups: ['team-a'] }, { expiresIn: '2h' });
  const query = CPU_BENCH_QUERY;
  const request = cpuBenchRequest(token);
  const targets = [
    { name: 'bare pass-through', ...passthrough },
    { name: `base ${baseRev.slice(0, 7)}`, url: base.url, pid: base.pid },
    { name: `this checkout${dirty ? ' (uncommitted changes)' : ''}`, url: head.url, pid: head.pid },
  ];
  const load = (t: (typeof targets)[number], amount: number) => autocannon({ url: t.url, connections: 8, amount, overallRate: RATE, requests: [request] });
  log(`warm-up: ${WARMUP} requests per target`);
  await Promise.all(targets.map((t) => load(t, WARMUP)));
  const samples = targets.map(() => [] as number[]);
  for (let round = 0; round < ROUNDS; round++) {
    log(`round ${round + 1}/${ROUNDS}: ${REQUESTS} requests per target at ${RATE} req/s, all at once`);
    const before = targets.map((t) => cpuMicros(t.pid));
    const results = await Promise.all(targets.map((t) => load(t, REQUESTS)));
    results.forEach((r, i) => {
      if (r.non2xx > 0 || r.errors > 0) throw new Error(`${targets[i]!.name}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      samples[i]!.push((cpuMicros(targets[i]!.pid) - before[i]!) / REQUESTS);
    });
  }
  const medians = samples.map(upperMedian);
  const [floor, baseUs, headUs] = medians as [number, number, number];
  const diffs = samples[2]!.map((h, i) => h - samples[1]![i]!);
  const medianDiff = upperMedian(diffs);
  const agreeing = diffs.filter((d) => Math.sign(d) === Math.sign(medianDiff)).length;
  const widths = [40, 12, 14];
  process.stdout.write(`\n${row(['target', 'CPU µs/req', 'floor ÷ target'], widths)}\n`);
  for (const [i, t] of targets.entries()) process.stdout.write(`${row([t.name, medians[i]!.toFixed(1), (floor / medians[i]!).toFixed(2)], widths)}\n`);
  process.stdout.write(`\nthis checkout − base, per round: median ${medianDiff.toFixed(1)} µs/req; ${agreeing} of ${ROUNDS} rounds agree on the sign\n`);
  const round1 = (x: number) => Math.round(x * 10) / 10;
  const file = writeResult(
    'ab',
    {
      date: new Date().toISOString(),
      machine: machineInfo(),
      command: `node bench/ab.ts --base ${args.base} --rate ${RATE} --requests ${REQUESTS} --rounds ${ROUNDS}`,
      base: baseRev,
      head: headRev,
      dirty,
      query,
      cpuMicrosPerRequest: { passthrough: round1(floor), base: round1(baseUs), head: round1(headUs) },
      floorRatio: { base: round1((floor / baseUs) * 100) / 100, head: round1((floor / headUs) * 100) / 100 },
      headMinusBase: { medianMicros: round1(medianDiff), roundsAgreeing: agreeing, rounds: diffs.map(round1) },
      rounds: { passthrough: samples[0]!.map(round1), base: samples[1]!.map(round1), head: samples[2]!.map(round1) },
    },
    args.out,
  );
  process.stdout.write(`written: ${file}\n`);
} finally {
  await stopAll(procs);
  try {
    git('worktree', 'remove', '--force', worktree);
  } catch {
    rmSync(worktree, { recursive: true, force: true });
    git('worktree', 'prune');
  }
}
