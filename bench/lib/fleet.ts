// Starting what the proxy benchmarks measure, shared by bench/gateway.ts and
// bench/latency.ts: the two upstreams (a real Prometheus with the seeded demo
// data and the canned stub, bench/stub-upstream.ts), a test IdP with one token
// per tenant, and per upstream the targets in front of it: prom-label-proxy
// (the Go peer), lbac-gateway and the bare Fastify/reply-from pass-through.
// Everything is a child process listening on loopback.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildTeamsOpenMetrics, seedEndSeconds } from '../../e2e/fixtures/seed.ts';
import { startGateway, type GatewayInstance, type StartGatewayOptions } from '../../e2e/harness/gateway.ts';
import { freePort } from '../../e2e/harness/ports.ts';
import { startProcess } from '../../e2e/harness/process.ts';
import { startPrometheus } from '../../e2e/harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { hasTool, repoRoot, toolPath } from '../../e2e/harness/tools.ts';
import { resolveWorkers } from '../../src/cli/cluster.ts';
import { requestMix, TENANTS, type BenchRequest } from './mix.ts';

export type Target = 'direct' | 'prom-label-proxy' | 'lbac-gateway' | 'lbac-gateway twin' | 'passthrough';
export type UpstreamName = 'prometheus' | 'stub';

export interface Stoppable {
  stop(): Promise<void>;
}

export function logger(prefix: string): (msg: string) => void {
  return (msg) => process.stderr.write(`[${prefix}] ${msg}\n`);
}

/** Stops in reverse start order, never throwing. */
export async function stopAll(procs: Stoppable[]): Promise<void> {
  for (const p of [...procs].reverse()) await p.stop().catch(() => undefined);
}

/** `/proc/<pid>/task/<tid>/<file>` of every thread of `pid`, leaving out threads that ended between listing and reading. Linux only. */
function threadFiles(pid: number, file: string): string[] {
  const out: string[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(readFileSync(`/proc/${pid}/task/${task}/${file}`, 'utf8'));
    } catch {
      // The thread ended between listing and reading.
    }
  }
  return out;
}

/** CPU time of every thread of `pid` so far (main, libuv pool, GC helpers), in µs. Linux only. */
export function cpuMicros(pid: number): number {
  let ns = 0;
  for (const schedstat of threadFiles(pid, 'schedstat')) ns += Number(schedstat.split(' ')[0]);
  return ns / 1000;
}

/**
 * Context switches of every thread of `pid` so far: voluntary (it waited) and
 * involuntary (the scheduler preempted it); NaN for both when the process has
 * gone, as treeCpuMicros reads it. Linux only.
 */
export function contextSwitches(pid: number): { voluntary: number; involuntary: number } {
  let statuses: string[];
  try {
    statuses = threadFiles(pid, 'status');
  } catch {
    return { voluntary: Number.NaN, involuntary: Number.NaN };
  }
  let voluntary = 0;
  let involuntary = 0;
  for (const status of statuses) {
    voluntary += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    involuntary += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  }
  return { voluntary, involuntary };
}

/**
 * cpuMicros of `pid` and of every process below it (a cluster's primary and
 * its workers), each alone, the root first: `pids` are read once, so call
 * again with the same list to take the difference.
 */
export function treeCpuMicros(pids: readonly number[]): number[] {
  return pids.map((p) => {
    try {
      return cpuMicros(p);
    } catch {
      return Number.NaN; // gone: a worker that died is no steady state to measure
    }
  });
}

/** The canned-response upstream (bench/stub-upstream.ts), pushed onto `procs`; its URL. */
async function startStub(procs: Stoppable[]): Promise<string> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  procs.push(await startProcess({ name: 'bench-stub', cmd: process.execPath, args: [join(repoRoot, 'bench', 'stub-upstream.ts'), String(port)], readyUrl: `${url}/api/v1/status/buildinfo` }));
  return url;
}

/**
 * The bare pass-through (bench/passthrough.ts) in front of `upstreamUrl`, pushed onto `procs`:
 * `workers` processes (node:cluster workers when more than one), started with `nodeArgs`.
 */
async function startPassthrough(procs: Stoppable[], upstreamUrl: string, workers: number, nodeArgs: readonly string[] = []): Promise<{ url: string; pid: number }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const pt = await startProcess({ name: 'bench-passthrough', cmd: process.execPath, args: [...nodeArgs, join(repoRoot, 'bench', 'passthrough.ts'), String(port), upstreamUrl, String(workers)], readyUrl: `${url}/api/v1/status/buildinfo` });
  procs.push(pt);
  return { url, pid: pt.pid };
}

/**
 * The CPU benchmarks' fixture (bench/cpu.ts, bench/ab.ts): the canned stub and the bare
 * pass-through in front of it, pushed onto `procs` (stopped by the caller), and a test IdP.
 */
export async function startStubAndPassthrough(
  procs: Stoppable[],
  /** Node options for the pass-through process (bench/profile.ts: `--perf-basic-prof`). */
  passthroughNodeArgs: readonly string[] = [],
  /** Pass-through processes (node:cluster workers when more than one, as bench/passthrough.ts runs them). */
  passthroughWorkers = 1,
): Promise<{ stubUrl: string; passthrough: { url: string; pid: number }; idp: TestIssuer }> {
  const stubUrl = await startStub(procs);
  const passthrough = await startPassthrough(procs, stubUrl, passthroughWorkers, passthroughNodeArgs);
  const idp = await createTestIssuer({ issuer: 'https://bench.invalid', audience: 'lbac-gateway', alg: 'ES256' });
  return { stubUrl, passthrough, idp };
}

/**
 * The gateway the proxy benchmarks measure (bench/gateway.ts, bench/latency.ts, bench/profile.ts):
 * one team per tenant of the mix, tokens from `idp`, in front of `upstreamUrl`. The defaults a
 * deployment runs: log level info and an audit line per decision (to the harness's log file, as
 * stdout would go to a container runtime). Until 2026-11-26 the benchmarks ran with audit off and
 * log level warn (docs/performance.md).
 */
export function benchGatewayConfig(upstreamUrl: string, idp: TestIssuer, workers: number | 'auto'): Record<string, unknown> {
  return {
    server: { workers },
    upstreams: [{ name: 'metrics', kind: 'prometheus', url: upstreamUrl, mount: '/' }],
    identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
    teams: Object.fromEntries(TENANTS.map((t) => [t, { groups: [t], selectors: [{ namespace: t }] }])),
  };
}

/**
 * A gateway a benchmark loads, started by `start` (this checkout's harness; bench/ab.ts passes the
 * base commit's). Its log holds an audit line per request, hundreds of MB per run: removed once
 * the gateway has stopped.
 */
export async function startBenchGateway(opts: StartGatewayOptions, start: (opts: StartGatewayOptions) => Promise<GatewayInstance> = startGateway): Promise<GatewayInstance> {
  const gw = await start(opts);
  return { ...gw, stop: () => gw.stop().finally(() => rmSync(gw.logFile, { force: true })) };
}

export interface Upstreams extends Stoppable {
  /** End of the seeded data window: the evaluation time of every query. */
  evalTime: number;
  urls: Record<UpstreamName, string>;
  idp: TestIssuer;
  /** One ES256 bearer token per tenant (groups: [tenant]). */
  tokens: Record<string, string>;
}

/** A real Prometheus with small seeded data, the canned stub, and a test IdP with a token per tenant. */
export async function startUpstreams(log: (msg: string) => void): Promise<Upstreams> {
  const now = Math.floor(Date.now() / 1000);
  const procs: Stoppable[] = [];
  try {
    log('starting upstreams (real Prometheus with small data, canned stub)');
    const prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }) });
    procs.push(prom);
    const stubUrl = await startStub(procs);
    const idp = await createTestIssuer({ issuer: 'https://bench.invalid', audience: 'lbac-gateway', alg: 'ES256' });
    const tokens: Record<string, string> = {};
    for (const t of TENANTS) tokens[t] = await idp.mint({ sub: `u-${t}`, groups: [t] }, { expiresIn: '2h' });
    return {
      evalTime: seedEndSeconds(now),
      urls: { prometheus: prom.url, stub: stubUrl },
      idp,
      tokens,
      stop: () => stopAll(procs),
    };
  } catch (e) {
    await stopAll(procs);
    throw e;
  }
}

export interface TargetSpec {
  url: string;
  requests: BenchRequest[];
}

export interface Targets extends Stoppable {
  /** In the order direct, prom-label-proxy (absent if not installed and optional), lbac-gateway, its twin (if asked for), passthrough. */
  targets: Partial<Record<Target, TargetSpec>>;
}

export interface StartTargetsOptions {
  /** server.workers of the gateway. */
  workers: number | 'auto';
  /** 'if-present': skip prom-label-proxy when `make bench-tools` has not installed it. */
  promLabelProxy: 'required' | 'if-present';
  log: (msg: string) => void;
  /** Also start a second, identical lbac-gateway: how far the two land apart is the run's own noise. */
  twin?: boolean;
}

/**
 * The targets in front of one upstream, each with the same request mix: the
 * upstream itself and the pass-through get the already-enforced queries (so the
 * backend does the same work), prom-label-proxy the tenant as a parameter,
 * lbac-gateway the tenant's bearer token.
 */
export async function startTargets(upstreamUrl: string, up: Upstreams, opts: StartTargetsOptions): Promise<Targets> {
  const procs: Stoppable[] = [];
  const targets: Partial<Record<Target, TargetSpec>> = {};
  try {
    targets.direct = { url: upstreamUrl, requests: requestMix(up.evalTime, () => ({ path: '', headers: {} }), true) };
    if (opts.promLabelProxy === 'required' || hasTool('prom-label-proxy')) {
      const plpPort = await freePort();
      procs.push(
        await startProcess({
          name: 'prom-label-proxy',
          cmd: toolPath('prom-label-proxy'),
          args: ['-label', 'namespace', '-upstream', upstreamUrl, '-insecure-listen-address', `127.0.0.1:${plpPort}`, '-enable-label-apis'],
          readyUrl: `http://127.0.0.1:${plpPort}/api/v1/query?query=1&namespace=x`,
        }),
      );
      targets['prom-label-proxy'] = { url: `http://127.0.0.1:${plpPort}`, requests: requestMix(up.evalTime, (t) => ({ path: `namespace=${t}`, headers: {} })) };
    } else {
      opts.log('prom-label-proxy is not installed (make bench-tools): skipping it');
    }
    for (const name of opts.twin === true ? (['lbac-gateway', 'lbac-gateway twin'] as const) : (['lbac-gateway'] as const)) {
      const gw = await startBenchGateway({ config: benchGatewayConfig(upstreamUrl, up.idp, opts.workers) });
      procs.push(gw);
      targets[name] = { url: gw.url, requests: requestMix(up.evalTime, (t) => ({ path: '', headers: { authorization: `Bearer ${up.tokens[t]}` } })) };
    }
    // As many processes as the gateway runs workers: the floor for N workers is N pass-through processes.
    const passthrough = await startPassthrough(procs, upstreamUrl, resolveWorkers(opts.workers));
    targets.passthrough = { url: passthrough.url, requests: requestMix(up.evalTime, () => ({ path: '', headers: {} }), true) };
    return { targets, stop: () => Promise.all(procs.map((p) => p.stop().catch(() => undefined))).then(() => undefined) };
  } catch (e) {
    await stopAll(procs);
    throw e;
  }
}
