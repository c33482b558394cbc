// `server.workers: 2`: the gateway runs as a node:cluster primary with two
// workers sharing the port; both serve enforced answers, the primary's admin
// listener sums the workers' metrics and reports every worker's readiness, and
// SIGTERM stops all.
import { mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './harness/ports.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { rawRequest } from './harness/http.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer } from './harness/tokens.ts';
import { buildTeamsOpenMetrics, seedEndSeconds, TEAM_NAMESPACES } from './fixtures/seed.ts';

let prom: PrometheusInstance;
let gw: GatewayInstance;
let token: string;
let evalTime: number;
let adminUrl: string;
/** Requests the first test sent through the gateway (all 200). */
let sent = 0;

/** The primary's /readyz: the group's status and every worker's readiness. */
type GroupReadiness = { status: string; workers: { pid: number; policyRevision: string; dataRevision: string; [k: string]: unknown }[] };
async function groupReadiness(): Promise<{ code: number; body: GroupReadiness }> {
  const r = await rawRequest(adminUrl, '/readyz');
  return { code: r.status, body: JSON.parse(r.body) as GroupReadiness };
}
/** Polls `get` (every 100 ms, up to 15 s) until `want` holds; the last value either way. */
async function pollUntil<T>(get: () => Promise<T> | T, want: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + 15_000;
  let v = await get();
  while (!want(v) && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 100));
    v = await get();
  }
  return v;
}
const readinessUntil = (want: (r: { code: number; body: GroupReadiness }) => boolean) => pollUntil(groupReadiness, want);

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }) });
  const idp = await createTestIssuer({ issuer: 'https://idp.workers', audience: 'lbac-gateway', alg: 'ES256' });
  const adminPort = await freePort();
  adminUrl = `http://127.0.0.1:${adminPort}`;
  gw = await startGateway({
    config: {
      // No file watch: the reload tests decide which worker gets a SIGHUP.
      server: { logLevel: 'info', accessLog: true, workers: 2, adminListen: `127.0.0.1:${adminPort}`, watchConfig: false },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: prom.url, mount: '/prometheus' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      teams: { 'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }] } },
    },
  });
  token = await idp.mint({ sub: 'alice', groups: ['team-a'] });
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await prom?.stop();
});

describe('worker processes', () => {
  it('both workers answer, each enforcing the policy', async () => {
    const pidsSeen = () =>
      new Set(
        gw
          .tail(1000)
          .split('\n')
          .filter((l) => l.includes('"request completed"'))
          .map((l) => (JSON.parse(l) as { pid: number }).pid),
      );
    // Workers start independently; the harness was ready at the first, and under a loaded machine the
    // second can take seconds more. Go on until both answered (bounded in time, paced after the first 12).
    const deadline = Date.now() + 30_000;
    for (let i = 0; i < 12 || (pidsSeen().size < 2 && Date.now() < deadline); i++) {
      if (i >= 12) await new Promise((r) => setTimeout(r, 100));
      // A fresh connection each time, so the cluster spreads them over workers.
      const r = await rawRequest(gw.url, `/prometheus/api/v1/query?query=${encodeURIComponent('count by (namespace) (up)')}&time=${evalTime}`, {
        headers: { authorization: `Bearer ${token}`, connection: 'close' },
      });
      expect(r.status).toBe(200);
      sent++;
      const ns = (JSON.parse(r.body) as { data: { result: { metric: { namespace: string } }[] } }).data.result.map((x) => x.metric.namespace).sort();
      expect(ns).toEqual([...TEAM_NAMESPACES['team-a']].sort());
    }
    expect(pidsSeen().size, gw.tail(60)).toBe(2);
  });

  it('the primary serves the admin listener: metrics summed over both workers', async () => {
    const r = await rawRequest(adminUrl, '/metrics');
    expect(r.status).toBe(200);
    const sample = (name: string, labels: string): number => {
      const total = r.body
        .split('\n')
        .filter((l) => l.startsWith(`${name}{`) && labels.split(',').every((kv) => l.includes(kv)))
        .reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
      return total;
    };
    // Each worker counted only the requests it answered: the sum is every request sent.
    expect(sample('lbac_gateway_requests_total', 'upstream="metrics",status="200"')).toBe(sent);
    expect(sample('lbac_gateway_policy_ready', '')).toBe(0); // not exported with labels
    expect(r.body).toMatch(/^lbac_gateway_policy_ready 1$/m); // min over workers: both ready
    expect(r.body).toMatch(/^lbac_gateway_build_info\{version="[^"]+"\} 1$/m); // first, not summed
  });

  it('admin readiness lists every worker; the main port serves readiness too', async () => {
    const r = await rawRequest(adminUrl, '/readyz');
    expect(r.status, r.body).toBe(200);
    const body = JSON.parse(r.body) as { status: string; workers: { pid: number; ready: boolean; policyRevision: string | null }[] };
    expect(body.status).toBe('ready');
    expect(body.workers).toHaveLength(2);
    expect(new Set(body.workers.map((w) => w.pid)).size).toBe(2);
    for (const w of body.workers) expect(w).toMatchObject({ ready: true, status: 'ready', policyRevision: expect.any(String) });
  });

  it('a reload signal while a replacement worker starts does not kill it', async () => {
    const workerPids = () =>
      gw
        .tail(2000)
        .split('\n')
        .filter((l) => l.includes('"request completed"'))
        .map((l) => (JSON.parse(l) as { pid: number }).pid);
    const before = new Set(workerPids());
    const victim = [...before][0]!;
    process.kill(victim, 'SIGKILL');
    // Reload signals all through the replacement's start (it is forked after a short delay).
    for (let i = 0; i < 40; i++) {
      process.kill(gw.pid, 'SIGHUP');
      await new Promise((r) => setTimeout(r, 100));
    }
    const deadline = Date.now() + 30_000;
    let replaced = false;
    while (!replaced && Date.now() < deadline) {
      const r = await rawRequest(gw.url, `/prometheus/api/v1/query?query=up&time=${evalTime}`, { headers: { authorization: `Bearer ${token}`, connection: 'close' } });
      expect(r.status).toBe(200);
      replaced = workerPids().some((p) => !before.has(p));
      if (!replaced) await new Promise((r) => setTimeout(r, 100));
    }
    expect(replaced, gw.tail(40)).toBe(true);
    // Only the SIGKILL'd worker exited; no worker died of the reload signal.
    const exits = gw.tail(2000).split('\n').filter((l) => l.includes('worker exited unexpectedly'));
    expect(exits.map((l) => (JSON.parse(l) as { signal: string | null }).signal)).toEqual(['SIGKILL']);
  });

  it('workers on different team data (a reload one of them missed) make the group not ready until all agree', async () => {
    const until = readinessUntil;
    const start = await until((r) => r.code === 200);
    expect(start.code, JSON.stringify(start.body)).toBe(200);
    // A narrowed team, reloaded by one worker only (as if the other's reload had been rejected).
    const original = readFileSync(gw.configFile, 'utf8');
    writeFileSync(gw.configFile, original.replace('~team-a-.*', '~team-a-1.*'));
    expect(readFileSync(gw.configFile, 'utf8')).not.toBe(original);
    const [one] = start.body.workers;
    process.kill(one!.pid, 'SIGHUP');
    const split = await until((r) => new Set(r.body.workers.map((w) => w.dataRevision)).size > 1);
    expect(split.code, JSON.stringify(split.body)).toBe(503);
    expect(split.body.status).toMatch(/workers run different policy data/);
    // The reload that reaches every worker ends it.
    process.kill(gw.pid, 'SIGHUP');
    const agreed = await until((r) => r.code === 200);
    expect(agreed.code, JSON.stringify(agreed.body)).toBe(200);
    expect(new Set(agreed.body.workers.map((w) => w.dataRevision)).size).toBe(1);
  });

  it('workers on the same team data but different identity settings (a reload one of them missed) are not ready either; the digest compared is not shown', async () => {
    const until = readinessUntil;
    const start = await until((r) => r.code === 200);
    expect(start.code, JSON.stringify(start.body)).toBe(200);
    const original = readFileSync(gw.configFile, 'utf8');
    // Only the identity provider changes (its clock tolerance): the team data, and so dataRevision, stay.
    const edited = original.replace(/(audience: lbac-gateway\n)/, '$1      clockToleranceSeconds: 7\n');
    expect(edited).not.toBe(original);
    writeFileSync(gw.configFile, edited);
    try {
      process.kill(start.body.workers[0]!.pid, 'SIGHUP');
      const split = await until((r) => r.code === 503);
      expect(split.code, JSON.stringify(split.body)).toBe(503);
      expect(split.body.status).toMatch(/workers run different policy data or configuration/);
      expect(new Set(split.body.workers.map((w) => w['dataRevision'])).size).toBe(1);
      for (const w of split.body.workers) expect(Object.keys(w)).not.toContain('configRevision');
    } finally {
      writeFileSync(gw.configFile, original);
      process.kill(gw.pid, 'SIGHUP');
    }
    const agreed = await until((r) => r.code === 200);
    expect(agreed.code, JSON.stringify(agreed.body)).toBe(200);
  });

  it('without a bundle, workers on different policy wasm bytes at the same path (a reload one of them missed) are not ready', async () => {
    const until = readinessUntil;
    const original = readFileSync(gw.configFile, 'utf8');
    const wasm = readFileSync(new URL('../wasm/policy.wasm', import.meta.url));
    // The same policy with a custom section appended: other bytes, another revision.
    const variant = (tag: number) => Buffer.concat([wasm, Buffer.from([0, 5, 4, 0x6c, 0x62, 0x61, tag])]);
    const copy = `${gw.configFile}.policy.wasm`;
    writeFileSync(copy, variant(1));
    // Every worker onto the copy (seen by its revision, which neither ran before).
    writeFileSync(gw.configFile, `${original}policy:\n  wasm: ${copy}\n`);
    try {
      const before = (await groupReadiness()).body.workers[0]!.policyRevision;
      process.kill(gw.pid, 'SIGHUP');
      const onCopy = await until((r) => r.code === 200 && r.body.workers.length === 2 && r.body.workers.every((w) => w.policyRevision !== before));
      expect(onCopy.code, JSON.stringify(onCopy.body)).toBe(200);
      expect(new Set(onCopy.body.workers.map((w) => w.policyRevision)).size).toBe(1);
      // Other bytes at the same path, reloaded by one worker only.
      writeFileSync(copy, variant(2));
      process.kill(onCopy.body.workers[0]!.pid, 'SIGHUP');
      const split = await until((r) => new Set(r.body.workers.map((w) => w.policyRevision)).size > 1);
      expect(new Set(split.body.workers.map((w) => w.policyRevision)).size, JSON.stringify(split.body)).toBe(2);
      expect(split.code).toBe(503);
      expect(split.body.status).toMatch(/workers run different policy data or configuration/);
    } finally {
      writeFileSync(gw.configFile, original);
      process.kill(gw.pid, 'SIGHUP');
    }
    const agreed = await until((r) => r.code === 200);
    expect(agreed.code, JSON.stringify(agreed.body)).toBe(200);
  });

  it('a worker whose reload failed for a transient cause retries it and converges with its sibling, no signal needed', async () => {
    const readiness = groupReadiness;
    const until = pollUntil;
    const logOf = (pid: number, msg: string) =>
      gw
        .tail(3000)
        .split('\n')
        // A line still being written when the log is read is not JSON yet: skipped, read again next time.
        .flatMap((l): { pid: number; msg: string; reason?: string; code?: string }[] => {
          try {
            return l.startsWith('{') ? [JSON.parse(l) as { pid: number; msg: string; reason?: string; code?: string }] : [];
          } catch {
            return [];
          }
        })
        .filter((l) => l.pid === pid && l.msg === msg);
    const start = await until(readiness, (r) => r.code === 200);
    expect(start.code, JSON.stringify(start.body)).toBe(200);
    const [one, two] = start.body.workers;
    const current = readFileSync(gw.configFile, 'utf8');
    const next = current.replace(/~team-a-[0-9]*\.\*/, '~team-a-2.*');
    expect(next).not.toBe(current);
    // Worker one applies the narrowed team: the group disagrees.
    writeFileSync(gw.configFile, next);
    process.kill(one!.pid, 'SIGHUP');
    const split = await until(readiness, (r) => new Set(r.body.workers.map((w) => w.dataRevision)).size > 1);
    expect(split.body.status).toMatch(/workers run different policy data/);
    // Worker two reloads while the config path is a directory for a moment: rejected (EISDIR), a retry scheduled.
    rmSync(gw.configFile);
    mkdirSync(gw.configFile);
    try {
      process.kill(two!.pid, 'SIGHUP');
      const scheduled = await until(() => logOf(two!.pid, 'config reload retry scheduled'), (l) => l.length > 0);
      expect(scheduled[0], gw.tail(20)).toMatchObject({ code: 'EISDIR' });
    } finally {
      // The file is back (atomically, as a ConfigMap swap): no signal, no file watch (watchConfig: false).
      writeFileSync(`${gw.configFile}.tmp`, next);
      rmdirSync(gw.configFile);
      renameSync(`${gw.configFile}.tmp`, gw.configFile);
    }
    const agreed = await until(readiness, (r) => r.code === 200);
    expect(agreed.code, JSON.stringify(agreed.body)).toBe(200);
    expect(new Set(agreed.body.workers.map((w) => w.dataRevision)).size).toBe(1);
    expect(logOf(two!.pid, 'config reloaded').at(-1)).toMatchObject({ reason: 'retry' });
  });

  it('SIGTERM stops every process', async () => {
    expect((await promGet(gw.url, '/readyz')).status).toBe(200);
    await gw.stop();
    const exit = await gw.exited;
    expect(exit.code).toBe(0);
  });
});
