// Policy bundles end to end: a real nginx serves signed bundles built by the real
// `opa build -t wasm --signing-key`, the gateway (started through its CLI) polls
// it with bearer auth and ETags, and every check of "which policy is active" is
// made through the gateway against a real, seeded Prometheus: the namespaces
// Alice's query returns tell which bundle answered.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './harness/eventually.ts';
import { buildBundle, editBundle, generateSigningKey, type SigningKeyPair } from './harness/bundles.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { startNginx, type NginxInstance } from './harness/nginx.ts';
import { freePort } from './harness/ports.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';
import { buildTeamsOpenMetrics, seedEndSeconds, TEAM_NAMESPACES } from './fixtures/seed.ts';

const RESOURCE = 'bundles/lbac.tar.gz';
const TOKEN = 'bundle-service-token-1';
const NS_A = [...TEAM_NAMESPACES['team-a']].sort();
const NS_B = [...TEAM_NAMESPACES['team-b']].sort();

let prom: PrometheusInstance;
let idp: TestIssuer;
let nginx: NginxInstance;
let gw: GatewayInstance | undefined;
let key: SigningKeyPair;
let foreignKey: SigningKeyPair;
let evalTime: number;
let alice: string;
let persistDir: string | undefined;
const bundles: Record<string, Buffer> = {};

/** The bundle data: group team-a sees the given namespace regex. */
const teamData = (regex: string) => ({
  lbac: { teams: { 'team-a': { groups: ['team-a'], users: [], upstreams: ['*'], selectors: [[{ name: 'namespace', op: '=~', value: regex }]], headers: {}, labels: ['*'] } } },
});

function gatewayConfig(): Record<string, unknown> {
  return {
    server: { logLevel: 'info' },
    upstreams: [{ name: 'metrics', kind: 'prometheus', url: prom.url, mount: '/prometheus' }],
    identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway' }] },
    policy: {
      bundle: {
        url: nginx.url,
        resource: RESOURCE,
        auth: { type: 'bearer', token: TOKEN },
        polling: { minDelaySeconds: 0.2, maxDelaySeconds: 0.4 },
        timeoutMs: 2_000,
        signing: { keys: [{ keyid: 'default', algorithm: 'RS256', publicKeyFile: key.publicKeyFile }] },
        persistDir,
      },
    },
  };
}

async function readyz(base: string): Promise<{ status: number; body: { policyRevision: string | null; policySource: string | null } }> {
  const res = await fetch(`${base}/readyz`);
  return { status: res.status, body: (await res.json()) as { policyRevision: string | null; policySource: string | null } };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n--- gateway log ---\n${gw?.tail(30) ?? ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const waitForRevision = (rev: string, base = gw!.url) => waitFor(`revision ${rev}`, async () => ((await readyz(base)).body.policyRevision === rev ? true : undefined));

async function aliceNamespaces(base = gw!.url): Promise<{ status: number; namespaces: string[] }> {
  const r = await promGet<{ result: { metric: Record<string, string> }[] }>(
    `${base}/prometheus`,
    '/api/v1/query',
    { query: 'count by (namespace) (up)', time: String(evalTime) },
    { authorization: `Bearer ${alice}` },
  );
  return { status: r.status, namespaces: r.status === 200 ? [...new Set(r.body.data!.result.map((s) => s.metric['namespace'] ?? ''))].sort() : [] };
}

/** Serves `bytes` and waits until the gateway has downloaded it (one more 200 in nginx's log), plus time to process it. */
async function serveAndWaitForDownload(bytes: Buffer): Promise<void> {
  const before = nginx.accessLog().filter((e) => e.status === 200).length;
  nginx.put(RESOURCE, bytes);
  await waitFor('the gateway to download the bundle', async () => (nginx.accessLog().filter((e) => e.status === 200).length > before ? true : undefined));
  await new Promise((r) => setTimeout(r, 400));
}

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  persistDir = join(mkdtempSync(join(tmpdir(), 'lbac-bundle-persist-')), 'state');
  key = generateSigningKey('RS256');
  foreignKey = generateSigningKey('RS256');
  const [p, i, n, ...built] = await Promise.all([
    startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }) }),
    createTestIssuer({ issuer: 'https://idp.e2e', audience: 'lbac-gateway', alg: 'RS256' }),
    startNginx({ bearerToken: TOKEN }),
    buildBundle({ revision: 'a-1', data: teamData('team-a-.*'), signingKey: key }),
    buildBundle({ revision: 'b-2', data: teamData('team-b-.*'), signingKey: key }),
    buildBundle({ revision: 'wide-3', data: teamData('team-a-.*'), signingKey: key }),
    buildBundle({ revision: 'foreign-4', data: teamData('.*'), signingKey: foreignKey }),
    buildBundle({ revision: 'unsigned-5', data: teamData('.*') }),
    buildBundle({ revision: 'c-6', data: teamData('team-a-.*'), signingKey: key }),
    buildBundle({ revision: 'd-7', data: teamData('team-b-.*'), signingKey: key }),
  ]);
  prom = p;
  idp = i;
  nginx = n;
  for (const [name, file] of Object.entries({ a: built[0], b: built[1], wide: built[2], foreign: built[3], unsigned: built[4], c: built[5], d: built[6] })) {
    bundles[name] = readFileSync(file!);
  }
  alice = await idp.mint({ sub: 'u-alice', preferred_username: 'alice', groups: ['team-a'] });
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await nginx?.stop();
  await prom?.stop();
  if (persistDir !== undefined) rmSync(dirname(persistDir), { recursive: true, force: true });
});

describe('policy bundles from nginx', () => {
  it('the gateway is not ready (and answers 503) until the first bundle is served; then it enforces it', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const starting = startGateway({ config: gatewayConfig(), port });
    const notReady = await waitFor('the gateway to listen', async () => {
      const r = await readyz(base);
      return r.status === 503 ? r : undefined;
    });
    expect(notReady.body.policyRevision).toBeNull();
    expect((await aliceNamespaces(base)).status).toBe(503);
    nginx.put(RESOURCE, bundles['a']!);
    gw = await starting;
    const ready = await readyz(gw.url);
    expect(ready).toMatchObject({ status: 200, body: { policyRevision: 'a-1', policySource: `bundle:${nginx.url}/${RESOURCE}` } });
    expect(await aliceNamespaces()).toEqual({ status: 200, namespaces: NS_A });
    expect(gw.tail(50)).toMatch(/"revision":"a-1".*policy bundle activated/);
  });

  it('polls with the bearer token and If-None-Match: unchanged bundles are answered 304', async () => {
    const before = nginx.accessLog().length;
    // At least three polls (0.2–0.4 s apart), waited for rather than slept for: a loaded machine is slower.
    const deadline = Date.now() + 15_000;
    while (nginx.accessLog().length - before < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const log = nginx.accessLog().slice(before);
    expect(log.length).toBeGreaterThanOrEqual(3); // 0.2–0.4 s polling
    expect(log.every((e) => e.status === 304 && e.authorized && e.uri === `/${RESOURCE}` && e.ifNoneMatch.startsWith('"'))).toBe(true);
    expect(nginx.accessLog().filter((e) => !e.authorized).length).toBe(0);
  });

  it('an updated bundle propagates within seconds', async () => {
    nginx.put(RESOURCE, bundles['b']!);
    await waitForRevision('b-2');
    expect(await aliceNamespaces()).toEqual({ status: 200, namespaces: NS_B });
  });

  const bad: [string, () => Buffer, RegExp][] = [
    ['a tampered data.json (widened to every namespace)', () => editBundle(bundles['wide']!, (n, d) => (n === '/data.json' ? Buffer.from(JSON.stringify(teamData('.*'))) : d)), /digest mismatch/],
    ['a bundle signed with another key', () => bundles['foreign']!, /does not verify with key \\"default\\"/],
    ['an unsigned bundle', () => bundles['unsigned']!, /not signed/],
    ['a truncated tar', () => gzipSync(gunzipSync(bundles['wide']!).subarray(0, 2048)), /truncated archive/],
    ['a truncated download', () => bundles['wide']!.subarray(0, bundles['wide']!.length - 100), /gzip/],
    ['a file that is not a bundle', () => Buffer.from('<html>maintenance</html>'), /not a gzip file/],
  ];
  it.each(bad)('%s is rejected and the old policy is still enforced', async (_name, make, why) => {
    await serveAndWaitForDownload(make());
    // Refused once processed (verification, loading): waited for, since a loaded machine is slower.
    expect(await eventually(() => why.test(gw!.tail(40)), 10_000), gw!.tail(40)).toBe(true);
    expect((await readyz(gw!.url)).body).toMatchObject({ policyRevision: 'b-2' });
    expect(await aliceNamespaces()).toEqual({ status: 200, namespaces: NS_B });
  });

  it('with the bundle service down, the last good policy is kept', async () => {
    nginx.put(RESOURCE, bundles['b']!); // serve the good one again (same revision)
    await serveAndWaitForDownload(bundles['b']!);
    await nginx.stop();
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await readyz(gw!.url)).toMatchObject({ status: 200, body: { policyRevision: 'b-2' } });
    expect(await aliceNamespaces()).toEqual({ status: 200, namespaces: NS_B });
    expect(gw!.tail(20)).toMatch(/policy bundle download failed; keeping the active policy/);
  });

  it('a restart with the service down starts from the persisted bundle', async () => {
    await gw!.stop();
    gw = await startGateway({ config: gatewayConfig(), readyTimeoutMs: 15_000 });
    const r = await readyz(gw.url);
    expect(r).toMatchObject({ status: 200, body: { policyRevision: 'b-2' } });
    expect(r.body.policySource).toMatch(/^persisted:.*bundle\.tar\.gz$/);
    expect(await aliceNamespaces()).toEqual({ status: 200, namespaces: NS_B });
  });

  it('when the service is back, new bundles are picked up again', async () => {
    nginx = await startNginx({ bearerToken: TOKEN, port: nginx.port, root: nginx.root });
    nginx.put(RESOURCE, bundles['c']!);
    await waitForRevision('c-6');
    expect(await aliceNamespaces()).toEqual({ status: 200, namespaces: NS_A });
  });

  it('swap under load: every response is consistent with the old or the new policy, none fails', async () => {
    const results: { status: number; namespaces: string[] }[] = [];
    let swapped = false;
    let afterSwap = 0;
    const worker = async () => {
      // Keep going until the swap happened, some requests ran on the new policy,
      // and a few hundred ran in all (however fast the machine is).
      while (results.length < 2_000 && (!swapped || afterSwap < 100 || results.length < 300)) {
        const r = await aliceNamespaces();
        results.push(r);
        if (swapped) afterSwap++;
      }
    };
    const workers = Array.from({ length: 40 }, worker);
    await new Promise((r) => setTimeout(r, 300));
    nginx.put(RESOURCE, bundles['d']!);
    await waitForRevision('d-7');
    swapped = true;
    await Promise.all(workers);
    expect(results.length).toBeGreaterThanOrEqual(200);
    const failed = results.filter((r) => r.status !== 200);
    expect(failed, JSON.stringify(failed.slice(0, 3))).toEqual([]);
    const inconsistent = results.filter((r) => JSON.stringify(r.namespaces) !== JSON.stringify(NS_A) && JSON.stringify(r.namespaces) !== JSON.stringify(NS_B));
    expect(inconsistent).toEqual([]);
    expect(results.some((r) => JSON.stringify(r.namespaces) === JSON.stringify(NS_A))).toBe(true);
    expect(results.some((r) => JSON.stringify(r.namespaces) === JSON.stringify(NS_B))).toBe(true);
    expect(JSON.stringify(results.at(-1)!.namespaces)).toBe(JSON.stringify(NS_B));
  });
});
