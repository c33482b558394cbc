// `make bench`: the same Grafana-like request mix, two tenants, sent side by side
// in one run to
//   (a) the upstream directly,
//   (b) prom-label-proxy (the Go peer) in front of it,
//   (c) lbac-gateway,
//   (d) a bare Fastify/reply-from pass-through (the floor),
// for two upstreams: a real Prometheus with small data, and a canned-response
// stub that isolates proxy cost. Load comes from this process (autocannon) on
// loopback only, bounded in time. Results: bench/results/gateway-<date>.json.
//
//   node bench/gateway.ts [--duration 8] [--connections 16] [--rate 300]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { buildTeamsOpenMetrics, seedEndSeconds } from '../e2e/fixtures/seed.ts';
import { startGateway, type GatewayInstance } from '../e2e/harness/gateway.ts';
import { freePort } from '../e2e/harness/ports.ts';
import { startProcess, type RunningProcess } from '../e2e/harness/process.ts';
import { startPrometheus, type PrometheusInstance } from '../e2e/harness/prometheus.ts';
import { createTestIssuer } from '../e2e/harness/tokens.ts';
import { repoRoot, toolPath } from '../e2e/harness/tools.ts';
import { rewritePromQL } from '../src/rewrite/promql.ts';

const { values: args } = parseArgs({
  options: { duration: { type: 'string', default: '8' }, connections: { type: 'string', default: '16' }, rate: { type: 'string', default: '300' }, workers: { type: 'string', default: '1' } },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const RATE = Number(args.rate);
const WORKERS = args.workers === 'auto' ? 'auto' : Number(args.workers);
const TENANTS = ['team-a-frontend', 'team-b-api'] as const;

type Target = 'direct' | 'prom-label-proxy' | 'lbac-gateway' | 'passthrough';
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
}

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

/** Grafana-like mix: dashboard query_range POSTs, a label-values dropdown, a series lookup. */
function requestMix(
  evalTime: number,
  tenantAuth: (tenant: string) => { path: string; headers: Record<string, string> },
  /** For targets that enforce nothing, send the already-enforced queries so the backend does the same work. */
  preEnforce = false,
): autocannon.Request[] {
  const range = `start=${evalTime - 3600}&end=${evalTime}&step=60`;
  const queries = [
    'sum by (namespace) (rate(http_requests_total[5m]))',
    'histogram_quantile(0.99, sum by (le, namespace) (rate(http_request_duration_seconds_bucket[5m])))',
    'sum by (code) (rate(http_requests_total{code=~"5.."}[5m])) / ignoring(code) group_left sum(rate(http_requests_total[5m]))',
    'avg by (instance) (node_memory_bytes)',
  ];
  const out: autocannon.Request[] = [];
  for (const tenant of TENANTS) {
    const t = tenantAuth(tenant);
    const withParam = (p: string) => (t.path === '' ? p : `${p}${p.includes('?') ? '&' : '?'}${t.path}`);
    const policy = [[{ name: 'namespace', op: '=' as const, value: tenant }]];
    const enforce = (q: string) => (preEnforce ? rewritePromQL(q, policy) : q);
    const match = preEnforce ? `{__name__="up",namespace="${tenant}"}` : 'up';
    const valuesMatch = preEnforce ? `&match[]=${encodeURIComponent(`{namespace="${tenant}"}`)}` : '';
    for (const q of queries) {
      out.push({
        method: 'POST',
        path: withParam('/api/v1/query_range'),
        headers: { ...t.headers, 'content-type': 'application/x-www-form-urlencoded' },
        body: `query=${encodeURIComponent(enforce(q))}&${range}`,
      });
    }
    out.push({ method: 'GET', path: withParam(`/api/v1/label/namespace/values?start=${evalTime - 3600}&end=${evalTime}${valuesMatch}`), headers: t.headers });
    out.push({ method: 'GET', path: withParam(`/api/v1/series?match[]=${encodeURIComponent(match)}&start=${evalTime - 3600}&end=${evalTime}`), headers: t.headers });
  }
  return out;
}

async function load(url: string, requests: autocannon.Request[], mode: 'throughput' | 'moderate'): Promise<autocannon.Result> {
  return autocannon({
    url,
    requests,
    connections: mode === 'throughput' ? CONNECTIONS : 4,
    duration: DURATION,
    ...(mode === 'moderate' ? { overallRate: RATE } : {}),
    pipelining: 1,
  });
}

async function main(): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const evalTime = seedEndSeconds(now);
  const procs: { stop(): Promise<void> }[] = [];
  try {
    log('starting upstreams (real Prometheus with small data, canned stub)');
    const prom: PrometheusInstance = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }) });
    procs.push(prom);
    const stubPort = await freePort();
    const stub: RunningProcess = await startProcess({
      name: 'bench-stub',
      cmd: process.execPath,
      args: [join(repoRoot, 'bench', 'stub-upstream.ts'), String(stubPort)],
      readyUrl: `http://127.0.0.1:${stubPort}/api/v1/status/buildinfo`,
    });
    procs.push(stub);
    const idp = await createTestIssuer({ issuer: 'https://bench.invalid', audience: 'lbac-gateway', alg: 'ES256' });
    const tokens: Record<string, string> = {};
    for (const t of TENANTS) tokens[t] = await idp.mint({ sub: `u-${t}`, groups: [t] }, { expiresIn: '2h' });

    const upstreams = { prometheus: prom.url, stub: `http://127.0.0.1:${stubPort}` };
    const samples: Sample[] = [];
    for (const [upstreamName, upstreamUrl] of Object.entries(upstreams)) {
      log(`upstream ${upstreamName}: starting prom-label-proxy, lbac-gateway, passthrough`);
      const plpPort = await freePort();
      const plp = await startProcess({
        name: 'prom-label-proxy',
        cmd: toolPath('prom-label-proxy'),
        args: ['-label', 'namespace', '-upstream', upstreamUrl, '-insecure-listen-address', `127.0.0.1:${plpPort}`, '-enable-label-apis'],
        readyUrl: `http://127.0.0.1:${plpPort}/api/v1/query?query=1&namespace=x`,
      });
      const gw: GatewayInstance = await startGateway({
        config: {
          server: { logLevel: 'warn', workers: WORKERS },
          audit: { enabled: false },
          upstreams: [{ name: 'metrics', kind: 'prometheus', url: upstreamUrl, mount: '/' }],
          identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
          teams: Object.fromEntries(TENANTS.map((t) => [t, { groups: [t], selectors: [{ namespace: t }] }])),
        },
      });
      const ptPort = await freePort();
      const pt = await startProcess({
        name: 'passthrough',
        cmd: process.execPath,
        args: [join(repoRoot, 'bench', 'passthrough.ts'), String(ptPort), upstreamUrl],
        readyUrl: `http://127.0.0.1:${ptPort}/api/v1/status/buildinfo`,
      });
      const targets: Record<Target, { url: string; requests: autocannon.Request[] }> = {
        direct: { url: upstreamUrl, requests: requestMix(evalTime, () => ({ path: '', headers: {} }), true) },
        'prom-label-proxy': { url: `http://127.0.0.1:${plpPort}`, requests: requestMix(evalTime, (t) => ({ path: `namespace=${t}`, headers: {} })) },
        'lbac-gateway': { url: gw.url, requests: requestMix(evalTime, (t) => ({ path: '', headers: { authorization: `Bearer ${tokens[t]}` } })) },
        passthrough: { url: `http://127.0.0.1:${ptPort}`, requests: requestMix(evalTime, () => ({ path: '', headers: {} }), true) },
      };
      for (const mode of ['throughput', 'moderate'] as const) {
        for (const [target, t] of Object.entries(targets) as [Target, (typeof targets)[Target]][]) {
          await load(t.url, t.requests, mode).catch(() => undefined); // short warm-up run is the first pass below
          const r = await load(t.url, t.requests, mode);
          const lat = r.latency as unknown as Record<string, number>;
          const s: Sample = {
            upstream: upstreamName,
            target,
            mode,
            requestsPerSec: r.requests.average,
            p50: lat['p50'] ?? NaN,
            p99: lat['p99'] ?? NaN,
            p999: lat['p99_9'] ?? lat['p999'] ?? NaN,
            errors: r.errors + r.timeouts,
            non2xx: r.non2xx,
          };
          samples.push(s);
          log(`${upstreamName} ${mode} ${target}: ${s.requestsPerSec.toFixed(0)} req/s p50 ${s.p50} ms p99 ${s.p99} ms p99.9 ${s.p999} ms (errors ${s.errors}, non-2xx ${s.non2xx})`);
        }
      }
      await Promise.all([plp.stop(), gw.stop(), pt.stop()]);
    }

    const ratio = (u: string, m: string, a: Target, b: Target) => {
      const x = samples.find((s) => s.upstream === u && s.mode === m && s.target === a);
      const y = samples.find((s) => s.upstream === u && s.mode === m && s.target === b);
      return x && y ? x.requestsPerSec / y.requestsPerSec : NaN;
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
      command: `node bench/gateway.ts --duration ${DURATION} --connections ${CONNECTIONS} --rate ${RATE} --workers ${WORKERS}`,
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
      console.log(`${s.upstream.padEnd(11)} ${s.target.padEnd(17)} ${s.mode.padEnd(11)} ${s.requestsPerSec.toFixed(0).padStart(6)} ${String(s.p50).padStart(8)} ${String(s.p99).padStart(7)} ${String(s.p999).padStart(9)}`);
    }
    console.log(JSON.stringify(summary, null, 2));
    log(`written ${file}`);
  } finally {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
  }
}

await main();
