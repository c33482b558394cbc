import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.ts';
import { createRuntime, startGateway } from '../../src/server/index.ts';
import { createMetrics } from '../../src/server/metrics.ts';
import { restartRequiredChanges } from '../../src/server/reload.ts';
import { testConfig } from './helpers.ts';
import { buildBundle } from '../../e2e/harness/bundles.ts';

const yaml = (team: string, extra = '') => `
upstreams:
  - { name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }
identity:
  providers:
    - type: apikey
      keys: [{ name: k, hash: "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" }]
teams:
  team-a: { groups: [team-a], selectors: [{ namespace: "${team}" }] }
${extra}`;

describe('config reload', () => {
  it('lists the keys that need a restart', () => {
    const a = testConfig('http://127.0.0.1:1');
    const b = testConfig('http://127.0.0.1:2', 'audit: { sampleRate: 0.5 }');
    expect(restartRequiredChanges(a, b)).toEqual(['upstreams']);
    expect(restartRequiredChanges(a, { ...a, server: { ...a.server, adminListen: '127.0.0.1:9091' } })).toEqual(['server.adminListen']);
    expect(restartRequiredChanges(a, testConfig('http://127.0.0.1:1', 'audit: { sampleRate: 0.5 }'))).toEqual([]);
  });

  it('swaps the policy data on a good config, keeps everything on a bad one, keeps restart-only keys', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lbac-reload-'));
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, yaml('a'));
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
    const metrics = createMetrics({ defaultMetrics: false });
    const { app, runtime } = await createRuntime(await loadConfigFile(file), logger, { metrics });
    try {
      const before = runtime.dataRevision;
      const authBefore = runtime.authenticator;
      writeFileSync(file, yaml('b', 'server: { listen: "127.0.0.1:9999" }'));
      const ok = await runtime.reload('test');
      expect(ok).toMatchObject({ ok: true, restartRequired: ['server.listen'] });
      expect(runtime.dataRevision).not.toBe(before);
      expect(runtime.authenticator).not.toBe(authBefore);
      expect(runtime.config.server.listen).toBe('127.0.0.1:8080');
      expect(runtime.config.teams['team-a']!.selectors).toEqual([{ namespace: 'b' }]);
      const decision = runtime.holder.decide({
        subject: { sub: 'x', groups: ['team-a'], roles: [], auth: 'test', claims: {} },
        request: { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' },
      });
      expect(decision.selectors).toEqual([[{ name: 'namespace', op: '=', value: 'b' }]]);

      const rev = runtime.dataRevision;
      writeFileSync(file, yaml('c', 'nonsense: true'));
      const bad = await runtime.reload('test');
      expect(bad.ok).toBe(false);
      expect(bad.error).toMatch(/unknown key "nonsense"/);
      expect(runtime.dataRevision).toBe(rev);
      expect(lines.join('')).toContain('config reload rejected');
      const text = await metrics.registry.metrics();
      expect(text).toMatch(/lbac_gateway_config_reloads_total\{result="success"\} 1/);
      expect(text).toMatch(/lbac_gateway_config_reloads_total\{result="failure"\} 1/);
      expect(text).toMatch(/lbac_gateway_policy_activations_total 2/);
      // A team the default policy could not answer for (over the decision bounds): refused, not activated.
      const huge = Array.from({ length: 1025 }, (_, i) => `{ namespace: ns-${i} }`).join(', ');
      writeFileSync(file, `${yaml('c')}  huge: { groups: [h], selectors: [${huge}] }\n`);
      const over = await runtime.reload('test');
      expect(over.ok).toBe(false);
      expect(over.error).toMatch(/key teams\.huge: teams\.huge: the decision for its members would hold 1025 selector alternatives \(at most 1024\)/);
      expect(runtime.dataRevision).toBe(rev);

      writeFileSync(file, yaml('b', 'server: { listen: "127.0.0.1:9999" }'));
      expect(await runtime.reload('test', { skipIfUnchanged: true })).toMatchObject({ ok: true });
    } finally {
      await app.close();
    }
  });

  it('a change written between reading the config and watching it is applied once the gateway runs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lbac-reload-'));
    const file = join(dir, 'gateway.yaml');
    const listen = 'server: { listen: "127.0.0.1:0", watchConfig: true, reloadDebounceMs: 10 }';
    writeFileSync(file, yaml('a', listen));
    const config = await loadConfigFile(file);
    // The file changes after it was read, before anything watches it (a worker starting in a cluster).
    writeFileSync(file, yaml('b', listen));
    const gw = await startGateway(config, pino({ level: 'silent' }));
    try {
      const deadline = Date.now() + 5_000;
      while (gw.runtime.config.teams['team-a']!.selectors[0]!['namespace'] !== 'b' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(gw.runtime.config.teams['team-a']!.selectors).toEqual([{ namespace: 'b' }]);
    } finally {
      await gw.close();
    }
  });

  it('/readyz answers 503 while draining', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lbac-reload-'));
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, yaml('a'));
    const { app, runtime } = await createRuntime(await loadConfigFile(file), pino({ level: 'silent' }), { metrics: createMetrics({ defaultMetrics: false }) });
    try {
      expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
      runtime.startDraining();
      const res = await app.inject({ url: '/readyz' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 'shutting down' });
      expect(res.headers['connection']).toBe('close');
    } finally {
      await app.close();
    }
  });

  it('bundle mode: a reload that takes a user out of a team applies at once (the active bundle with the new data)', async () => {
    const bundle = readFileSync(await buildBundle({ revision: 'r1' }));
    const server = createServer((_req, res) => void res.writeHead(200, { etag: '"r1"', 'content-type': 'application/gzip' }).end(bundle));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const bundleUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const dir = mkdtempSync(join(tmpdir(), 'lbac-reload-bundle-'));
    const file = join(dir, 'gateway.yaml');
    const policy = `policy:\n  bundle: { url: "${bundleUrl}", resource: b.tar.gz, polling: { minDelaySeconds: 60, maxDelaySeconds: 120 } }\n`;
    const teamB = (groups: string) => `  team-b: { groups: [${groups}], selectors: [{ namespace: "b" }] }\n${policy}`;
    writeFileSync(file, yaml('a', teamB('team-a')));
    const { app, runtime } = await createRuntime(await loadConfigFile(file), pino({ level: 'silent' }), { metrics: createMetrics({ defaultMetrics: false }) });
    try {
      while (!runtime.holder.ready) await new Promise((r) => setTimeout(r, 10));
      const decide = () =>
        runtime.holder.decide({
          subject: { sub: 'x', groups: ['team-a'], roles: [], auth: 'test', claims: {} },
          request: { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' },
        }).selectors.flatMap((g) => g.map((m) => m.value)).sort();
      expect(decide()).toEqual(['a', 'b']);
      const before = runtime.dataRevision;
      writeFileSync(file, yaml('a', teamB('others')));
      expect(await runtime.reload('test')).toEqual({ ok: true, restartRequired: [] });
      expect(decide()).toEqual(['a']);
      expect(runtime.dataRevision).not.toBe(before);
      expect(runtime.holder.revision).toBe('r1');
      expect(runtime.config.teams['team-b']!.groups).toEqual(['others']);
    } finally {
      await app.close();
      await new Promise((r) => server.close(r));
    }
  });
});
