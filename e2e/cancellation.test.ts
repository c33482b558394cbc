// Grafana cancels a panel's queries on every refresh, time-range change and
// navigation, by closing the connection. Through the gateway, as when Grafana
// talks to Prometheus directly, Prometheus must stop evaluating the abandoned
// query (it answers such a request 499 and counts it), and the gateway records
// the request as 499 instead of failing it as a 500 (docs/operations.md,
// "Cancelled requests").
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTeamsOpenMetrics } from './fixtures/seed.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer } from './harness/tokens.ts';

let prom: PrometheusInstance;
let gw: GatewayInstance;
let token = '';

beforeAll(async () => {
  prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now: Math.floor(Date.now() / 1000) }) });
  const idp = await createTestIssuer({ issuer: 'https://idp.cancel', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: prom.url, mount: '/prometheus' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      teams: { 'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }] } },
    },
  });
  token = await idp.mint({ sub: 'u-alice', groups: ['team-a'] });
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await prom?.stop();
});

/** Prometheus' own count of /api/v1/query_range answers with `code`. */
async function promAnswered(code: string): Promise<number> {
  const text = await (await fetch(`${prom.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`prometheus_http_requests_total{code="${code}",handler="/api/v1/query_range"}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('a query whose client leaves', () => {
  it('is cancelled in Prometheus (it answers the gateway 499, not 200), and the gateway records it as 499, not as a failure', async () => {
    // 4 000 steps, each a max over a day of one-second points: about a second of work for Prometheus,
    // longer than the client waits. Prometheus notices the cancellation at its next check and then
    // counts the request as 499; had the gateway kept the upstream request open, it would count a 200.
    const end = Math.floor(Date.now() / 1000);
    const params = new URLSearchParams({ query: 'max_over_time(vector(1)[1d:1s])', start: String(end - 4_000 * 60), end: String(end), step: '60', timeout: '60s' });
    const before = { cancelled: await promAnswered('499'), answered: await promAnswered('200') };
    await new Promise<void>((resolve) => {
      const req = request(`${gw.url}/prometheus/api/v1/query_range?${params}`, { headers: { authorization: `Bearer ${token}` } });
      req.on('error', () => resolve());
      req.on('close', () => resolve());
      req.end();
      setTimeout(() => req.destroy(), 300);
    });
    await expect.poll(async () => (await promAnswered('499')) + (await promAnswered('200')), { timeout: 30_000, interval: 200 }).toBe(before.cancelled + before.answered + 1);
    expect(await promAnswered('499')).toBe(before.cancelled + 1);
    await expect
      .poll(() => gw.tail(50).split('\n').filter((l) => l.includes('"Decision Log"') && l.includes('"query_range"') && l.includes('"status":499')).length, { timeout: 3_000 })
      .toBe(1);
    expect(gw.tail(50)).not.toMatch(/"level":[45]0/);
  }, 45_000);
});
