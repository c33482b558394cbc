// /api/v1/metadata through the gateway, against a real Prometheus that scrapes a
// target exposing metrics of two teams (metadata comes from scrapes only): each
// team sees the type/help of the metrics it has series of, admins see all.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTeamsOpenMetrics } from './fixtures/seed.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';

/** A scrape target: one metric family per team, with HELP and TYPE. */
const EXPOSITION = [
  '# HELP team_a_checkouts_total Checkouts handled by team A.',
  '# TYPE team_a_checkouts_total counter',
  'team_a_checkouts_total{namespace="team-a-frontend"} 42',
  '# HELP team_b_secret_jobs Jobs only team B may know about.',
  '# TYPE team_b_secret_jobs gauge',
  'team_b_secret_jobs{namespace="team-b-api"} 7',
  // Families whose series have other names (metadata is keyed by the family: team_a_latency_seconds).
  '# HELP team_a_latency_seconds Request latency of team A.',
  '# TYPE team_a_latency_seconds histogram',
  'team_a_latency_seconds_bucket{namespace="team-a-frontend",le="0.5"} 3',
  'team_a_latency_seconds_bucket{namespace="team-a-frontend",le="+Inf"} 4',
  'team_a_latency_seconds_sum{namespace="team-a-frontend"} 1.5',
  'team_a_latency_seconds_count{namespace="team-a-frontend"} 4',
  '# HELP team_b_rpc_seconds RPC time of team B.',
  '# TYPE team_b_rpc_seconds summary',
  'team_b_rpc_seconds_sum{namespace="team-b-api"} 2',
  'team_b_rpc_seconds_count{namespace="team-b-api"} 5',
  '',
].join('\n');

type Metadata = Record<string, { type: string; help: string; unit: string }[]>;

let target: Server;
let prom: PrometheusInstance;
let gw: GatewayInstance;
let idp: TestIssuer;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  target = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(EXPOSITION));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const targetAddr = `127.0.0.1:${(target.address() as AddressInfo).port}`;
  prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now: Math.floor(Date.now() / 1000) }), scrapeTargets: [targetAddr] });
  // Metadata appears after the first scrapes of both families.
  for (let i = 0; i < 100; i++) {
    const m = await promGet<Metadata>(prom.url, '/api/v1/metadata');
    if (['team_a_checkouts_total', 'team_b_secret_jobs', 'team_a_latency_seconds', 'team_b_rpc_seconds'].every((k) => m.body.data?.[k] !== undefined)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  idp = await createTestIssuer({ issuer: 'https://idp.metadata', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: prom.url, mount: '/prometheus' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      admins: { groups: ['admins'] },
      teams: {
        'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }] },
        'team-b': { groups: ['team-b'], selectors: [{ namespace: ['team-b-api', 'team-b-db'] }] },
      },
    },
  });
  for (const [who, group] of [['alice', 'team-a'], ['bob', 'team-b'], ['carol', 'admins']] as const) {
    tokens[who] = await idp.mint({ sub: `u-${who}`, groups: [group] });
  }
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await prom?.stop();
  await new Promise<void>((r) => (target ? target.close(() => r()) : r()));
  idp?.cleanup();
});

const metadata = (who: string, params: Record<string, string> = {}) =>
  promGet<Metadata>(`${gw.url}/prometheus`, '/api/v1/metadata', params, { authorization: `Bearer ${tokens[who]}` });

describe('/api/v1/metadata (Grafana query builder: metric type and help)', () => {
  it('Prometheus has metadata of both teams (the fixture works)', async () => {
    const direct = await promGet<Metadata>(prom.url, '/api/v1/metadata');
    expect(Object.keys(direct.body.data ?? {})).toEqual(expect.arrayContaining(['team_a_checkouts_total', 'team_b_secret_jobs']));
  });

  it('each team sees only the metrics it has series of', async () => {
    const a = await metadata('alice');
    expect(a.status).toBe(200);
    expect(Object.keys(a.body.data ?? {})).toContain('team_a_checkouts_total');
    expect(a.body.data?.['team_a_checkouts_total']?.[0]).toMatchObject({ type: 'counter', help: 'Checkouts handled by team A.' });
    expect(Object.keys(a.body.data ?? {})).not.toContain('team_b_secret_jobs');
    // Prometheus' own metrics have no namespace: no team sees them.
    expect(Object.keys(a.body.data ?? {}).filter((k) => k.startsWith('prometheus_') || k === 'up')).toEqual([]);
    const b = await metadata('bob');
    expect(Object.keys(b.body.data ?? {})).toContain('team_b_secret_jobs');
    expect(Object.keys(b.body.data ?? {})).not.toContain('team_a_checkouts_total');
  });

  it('a histogram or summary family is shown to the team that has its _bucket/_count/_sum series, and only to it', async () => {
    const a = (await metadata('alice')).body.data ?? {};
    expect(a['team_a_latency_seconds']?.[0]).toMatchObject({ type: 'histogram', help: 'Request latency of team A.' });
    expect(Object.keys(a)).not.toContain('team_b_rpc_seconds');
    const b = (await metadata('bob')).body.data ?? {};
    expect(b['team_b_rpc_seconds']?.[0]).toMatchObject({ type: 'summary', help: 'RPC time of team B.' });
    expect(Object.keys(b)).not.toContain('team_a_latency_seconds');
  });

  it('asking for another team\'s metric by name answers nothing', async () => {
    const a = await metadata('alice', { metric: 'team_b_secret_jobs' });
    expect(a.status).toBe(200);
    expect(a.body.data).toEqual({});
  });

  // Prometheus applies limit while it walks its metric names in map order (random), before the gateway's filter:
  // how often limit=1 came back empty would estimate how many metric names other teams have.
  it('limit counts only the metrics the team can see (applied after the filter, never by Prometheus)', async () => {
    const all = Object.keys((await metadata('alice')).body.data ?? {});
    expect(all).toContain('team_a_checkouts_total');
    for (let i = 0; i < 20; i++) {
      const one = await metadata('alice', { limit: '1' });
      expect(one.status).toBe(200);
      expect(Object.keys(one.body.data ?? {})).toHaveLength(1);
    }
    expect(Object.keys((await metadata('alice', { limit: '0' })).body.data ?? {})).toEqual([]);
    expect(Object.keys((await metadata('alice', { limit: '-1' })).body.data ?? {}).sort()).toEqual([...all].sort());
    const bad = await metadata('alice', { limit: 'x' });
    expect(bad.status).toBe(400);
  });

  it('admins see everything Prometheus has', async () => {
    const c = await metadata('carol');
    expect(Object.keys(c.body.data ?? {})).toEqual(expect.arrayContaining(['team_a_checkouts_total', 'team_b_secret_jobs']));
  });

  it('without credentials nothing is answered (the lookup\'s own parameters: test/server/metadata.test.ts)', async () => {
    const anon = await promGet(`${gw.url}/prometheus`, '/api/v1/metadata');
    expect(anon.status).toBe(401);
  });
});
