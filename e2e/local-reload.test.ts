// Local mode (policy from a wasm file + data from the config): rebuilding the
// wasm is picked up without a restart, validated before the swap — a broken
// file is rejected and the running policy stays.
import { copyFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBundleArchive } from '../src/policy/bundle-tar.ts';
import { buildBundle, readBundleFile } from './harness/bundles.ts';
import { tempDir } from './harness/temp-dir.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { promGet, startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer } from './harness/tokens.ts';
import { buildTeamsOpenMetrics, seedEndSeconds, TEAM_NAMESPACES } from './fixtures/seed.ts';

let prom: PrometheusInstance;
let gw: GatewayInstance;
let token: string;
let evalTime: number;
const dir = tempDir('lbac-local-reload-');
const wasmPath = join(dir, 'policy.wasm');

/** Replace the file the way `cp`/a build step does it: write beside, then rename over. */
function replaceWasm(bytes: Uint8Array): void {
  writeFileSync(`${wasmPath}.tmp`, bytes);
  renameSync(`${wasmPath}.tmp`, wasmPath);
}

async function namespaces(): Promise<string[]> {
  const r = await promGet<{ result: { metric: { namespace: string } }[] }>(`${gw.url}/prometheus`, '/api/v1/query', { query: 'count by (namespace) (up)', time: String(evalTime) }, { authorization: `Bearer ${token}` });
  expect(r.status).toBe(200);
  return r.body.data!.result.map((x) => x.metric.namespace).sort();
}

async function until(pred: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error('condition not reached');
}

beforeAll(async () => {
  const now = Math.floor(Date.now() / 1000);
  evalTime = seedEndSeconds(now);
  prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }) });
  const idp = await createTestIssuer({ issuer: 'https://idp.local', audience: 'lbac-gateway', alg: 'ES256' });
  copyFileSync(new URL('../wasm/policy.wasm', import.meta.url), wasmPath);
  gw = await startGateway({
    config: {
      server: { logLevel: 'info', reloadDebounceMs: 100 },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: prom.url, mount: '/prometheus' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      policy: { wasm: wasmPath },
      teams: { 'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }] } },
    },
  });
  token = await idp.mint({ sub: 'alice', groups: ['team-a'] });
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await prom?.stop();
});

describe('local policy reload', () => {
  it('a rebuilt wasm is picked up; a broken one is rejected and the running policy stays', async () => {
    expect(await namespaces()).toEqual([...TEAM_NAMESPACES['team-a']].sort());

    // A different policy: everyone sees team-b-db only (built with the real opa CLI).
    const bundle = await buildBundle({
      revision: 'other',
      noDefaultPolicy: true,
      rego: {
        'other.rego': `package lbac\n\ndecision := {"allow": true, "reason": "fixed", "unrestricted": false, "selectors": [[{"name": "namespace", "op": "=", "value": "team-b-db"}]], "headers": {}}\n`,
      },
    });
    const other = readBundleArchive(readBundleFile(bundle)).get('/policy.wasm')!;
    replaceWasm(other);
    await until(async () => JSON.stringify(await namespaces()) === JSON.stringify(['team-b-db']));

    replaceWasm(new TextEncoder().encode('not a wasm module'));
    await until(async () => /config reload rejected/.test(gw.tail(50)));
    expect(await namespaces()).toEqual(['team-b-db']);
  });
});
