// `make soak`: steady load on the gateway (in front of the canned stub, so the
// gateway is the only thing whose memory can grow) for a bounded time, sampling
// its RSS from /proc and the event-loop delay from its own metrics endpoint.
// Reports growth between the first and the last minute → bench/results/soak-<date>.json.
//
//   node bench/soak.ts [--minutes 10] [--rate 400]
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { freePort } from '../e2e/harness/ports.ts';
import { startProcess } from '../e2e/harness/process.ts';
import { createTestIssuer } from '../e2e/harness/tokens.ts';
import { repoRoot } from '../e2e/harness/tools.ts';
import { startBenchGateway } from './lib/fleet.ts';
import { upperMedian } from './lib/report.ts';

const { values: args } = parseArgs({ options: { minutes: { type: 'string', default: '10' }, rate: { type: 'string', default: '400' } } });
const MINUTES = Number(args.minutes);
const RATE = Number(args.rate);

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function eventLoopP99(adminUrl: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const m = /^lbac_gateway_nodejs_eventloop_lag_p99_seconds(?:\{[^}]*\})? ([0-9.e+-]+)$/m.exec(text);
  return m ? Number(m[1]) * 1000 : NaN;
}

const stubPort = await freePort();
const stub = await startProcess({ name: 'soak-stub', cmd: process.execPath, args: [join(repoRoot, 'bench', 'stub-upstream.ts'), String(stubPort)], readyUrl: `http://127.0.0.1:${stubPort}/api/v1/status/buildinfo` });
const idp = await createTestIssuer({ issuer: 'https://soak.invalid', audience: 'lbac-gateway', alg: 'ES256' });
const adminPort = await freePort();
const gw = await startBenchGateway({
  config: {
    // The defaults a deployment runs (log level info, an audit line per decision, to the harness's
    // log file); until 2026-11-26 the soak ran with audit off, so the audit batching was not in it.
    server: { adminListen: `127.0.0.1:${adminPort}` },
    upstreams: [{ name: 'metrics', kind: 'prometheus', url: `http://127.0.0.1:${stubPort}`, mount: '/' }],
    identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
    teams: { a: { groups: ['a'], selectors: [{ namespace: '~team-a-.*' }] }, b: { groups: ['b'], selectors: [{ namespace: 'team-b' }] } },
  },
});
// Many distinct tokens and queries, so caches fill and must stay bounded.
const tokens = await Promise.all(Array.from({ length: 50 }, (_, i) => idp.mint({ sub: `u${i}`, groups: [i % 2 ? 'a' : 'b'] }, { expiresIn: '2h' })));
const requests: autocannon.Request[] = tokens.flatMap((t, i) => [
  { method: 'POST', path: '/api/v1/query_range', headers: { authorization: `Bearer ${t}`, 'content-type': 'application/x-www-form-urlencoded' }, body: `query=${encodeURIComponent(`sum by (job) (rate(http_requests_total{code="${i}"}[5m]))`)}&start=1&end=3600&step=60` },
  { method: 'GET', path: `/api/v1/label/namespace/values?match[]=${encodeURIComponent(`up{instance="i${i}"}`)}`, headers: { authorization: `Bearer ${t}` } },
]);

const samples: { t: number; rssMiB: number; eventLoopP99Ms: number }[] = [];
const started = Date.now();
const sampler = setInterval(() => {
  void eventLoopP99(`http://127.0.0.1:${adminPort}`)
    .catch(() => NaN)
    .then((lag) => samples.push({ t: (Date.now() - started) / 1000, rssMiB: rssBytes(gw.pid) / 2 ** 20, eventLoopP99Ms: lag }));
}, 5_000);
process.stderr.write(`[soak] ${MINUTES} min at ${RATE} req/s against pid ${gw.pid}\n`);
const result = await autocannon({ url: gw.url, requests, connections: 8, overallRate: RATE, duration: MINUTES * 60 });
clearInterval(sampler);
await gw.stop();
await stub.stop();

const window = (from: number, to: number) => samples.filter((s) => s.t >= from && s.t < to);
// RSS follows the garbage collector's sawtooth; compare medians of the halves
// (after a minute of warm-up) and fit a line, rather than trust two points.
const steady = window(60, MINUTES * 60 + 10);
const half = 60 + (MINUTES * 60 - 60) / 2;
const slope = (() => {
  const n = steady.length;
  const mx = steady.reduce((a, s) => a + s.t, 0) / n;
  const my = steady.reduce((a, s) => a + s.rssMiB, 0) / n;
  const num = steady.reduce((a, s) => a + (s.t - mx) * (s.rssMiB - my), 0);
  const den = steady.reduce((a, s) => a + (s.t - mx) ** 2, 0);
  return den === 0 ? NaN : (num / den) * 60;
})();
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const first = window(60, 120);
const last = window(MINUTES * 60 - 60, MINUTES * 60 + 10);
const summary = {
  date: new Date().toISOString(),
  command: `node bench/soak.ts --minutes ${MINUTES} --rate ${RATE}`,
  requests: result.requests.total,
  non2xx: result.non2xx,
  errors: result.errors,
  rssMiBSecondMinute: mean(first.map((s) => s.rssMiB)),
  rssMiBLastMinute: mean(last.map((s) => s.rssMiB)),
  rssGrowthPercent: (100 * (mean(last.map((s) => s.rssMiB)) - mean(first.map((s) => s.rssMiB)))) / mean(first.map((s) => s.rssMiB)),
  rssMedianMiBFirstHalf: upperMedian(window(60, half).map((s) => s.rssMiB)),
  rssMedianMiBSecondHalf: upperMedian(window(half, MINUTES * 60 + 10).map((s) => s.rssMiB)),
  rssMedianGrowthPercent: (100 * (upperMedian(window(half, MINUTES * 60 + 10).map((s) => s.rssMiB)) - upperMedian(window(60, half).map((s) => s.rssMiB)))) / upperMedian(window(60, half).map((s) => s.rssMiB)),
  rssTrendMiBPerMinute: slope,
  eventLoopP99MsMax: Math.max(...samples.map((s) => s.eventLoopP99Ms).filter(Number.isFinite)),
  samples,
};
const dir = join(repoRoot, 'bench', 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, `soak-${summary.date.slice(0, 10)}.json`), JSON.stringify(summary, null, 2) + '\n');
console.log(JSON.stringify({ ...summary, samples: undefined }, null, 2));
