import { mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { loadConfigFile, type GatewayConfig } from '../../src/config/load.ts';
import { createRuntime, startGateway } from '../../src/server/index.ts';
import { createMetrics } from '../../src/server/metrics.ts';
import { configRevision, mergeReloadable, restartRequiredChanges } from '../../src/server/reload.ts';
import { testConfig } from './helpers.ts';
import { buildBundle, generateSigningKey, serveBundles } from '../../e2e/harness/bundles.ts';
import { createTestIssuer } from '../../e2e/harness/tokens.ts';

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
  it('an audit file the reload cannot open rejects it before anything is swapped (the running teams and audit file stay)', async () => {
    const dir = tempDir('lbac-reload-');
    const file = join(dir, 'gateway.yaml');
    const audit = (path: string) => `audit: { enabled: true, destination: file, file: "${path}", flushIntervalMs: 0 }`;
    writeFileSync(join(dir, 'plain-file'), 'not a directory');
    writeFileSync(file, yaml('a', audit(join(dir, 'audit.log'))));
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
    const { app, runtime } = await createRuntime(await loadConfigFile(file), logger, { metrics: createMetrics({ defaultMetrics: false }) });
    try {
      const before = runtime.dataRevision;
      // New team data, and an audit file under a plain file (ENOTDIR when opened).
      writeFileSync(file, yaml('b', audit(join(dir, 'plain-file', 'audit.log'))));
      const r = await runtime.reload('test');
      expect(r).toMatchObject({ ok: false, error: expect.stringMatching(/EEXIST|ENOTDIR/) });
      expect(runtime.dataRevision).toBe(before);
      expect(runtime.config.teams['team-a']!.selectors).toEqual([{ namespace: 'a' }]);
      expect(lines.join('')).toContain('config reload rejected');
      // The running audit file is still written to.
      runtime.auditLog.write({ type: 'probe' });
      expect(readFileSync(join(dir, 'audit.log'), 'utf8')).toContain('"probe"');
    } finally {
      runtime.stopRetries();
      await app.close();
    }
  });

  it('a reload that changes nothing that runs (a SIGHUP for another key of a ConfigMap) keeps the policy engine and the live tails; identity is built anew; a change swaps both', async () => {
    const dir = tempDir('lbac-reload-');
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, yaml('a'));
    const { app, runtime } = await createRuntime(await loadConfigFile(file), pino({ level: 'silent' }), { metrics: createMetrics({ defaultMetrics: false }) });
    const swaps: string[] = [];
    const reloads: string[] = [];
    const offSwap = runtime.holder.onSwap((info) => void swaps.push(info.revision));
    const offReload = runtime.onReloaded(() => void reloads.push('reloaded'));
    try {
      const engine = runtime.holder.info;
      const authenticator = runtime.authenticator;
      expect(await runtime.reload('SIGHUP')).toMatchObject({ ok: true });
      expect([swaps, reloads]).toEqual([[], []]);
      expect(runtime.holder.info).toBe(engine);
      expect(runtime.authenticator).not.toBe(authenticator);
      // Other team data: a new engine and the reload's listeners (which close live tails).
      writeFileSync(file, yaml('b'));
      expect(await runtime.reload('SIGHUP')).toMatchObject({ ok: true });
      expect([swaps.length, reloads]).toEqual([1, ['reloaded']]);
      // Any other reloadable setting (here the audit's) counts as a change too.
      writeFileSync(file, yaml('b', 'audit: { sampleRate: 0.5 }'));
      expect(await runtime.reload('SIGHUP')).toMatchObject({ ok: true });
      expect([swaps.length, reloads.length]).toEqual([2, 2]);
      // A restart-only one (server.*) changes nothing that runs: nothing swapped.
      writeFileSync(file, yaml('b', 'audit: { sampleRate: 0.5 }\nserver: { tail: { recheckIntervalMs: 5000 } }'));
      expect(await runtime.reload('SIGHUP')).toMatchObject({ ok: true });
      expect([swaps.length, reloads.length]).toEqual([2, 2]);
    } finally {
      offSwap();
      offReload();
      runtime.stopRetries();
      await app.close();
    }
  });

  it('lists the keys that need a restart', () => {
    const a = testConfig('http://127.0.0.1:1');
    const b = testConfig('http://127.0.0.1:2', 'audit: { sampleRate: 0.5 }');
    expect(restartRequiredChanges(a, b)).toEqual(['upstreams']);
    expect(restartRequiredChanges(a, { ...a, server: { ...a.server, adminListen: '127.0.0.1:9091' } })).toEqual(['server.adminListen']);
    expect(restartRequiredChanges(a, testConfig('http://127.0.0.1:1', 'audit: { sampleRate: 0.5 }'))).toEqual([]);
  });

  it('agrees with itself on the restart-only keys: what a reload keeps, what it reports and what workers compare', () => {
    const a = testConfig('http://127.0.0.1:1');
    const variants: GatewayConfig[] = [
      testConfig('http://127.0.0.1:2'),
      testConfig('http://127.0.0.1:1', 'audit: { sampleRate: 0.5 }'),
      testConfig('http://127.0.0.1:2', 'audit: { sampleRate: 0.5 }'),
      { ...a, server: { ...a.server, adminListen: '127.0.0.1:9091' } },
      { ...a, policy: { ...a.policy, entrypoint: 'other/allow' } },
      { ...a, policy: { ...a.policy, bundle: { ...({} as NonNullable<GatewayConfig['policy']['bundle']>), url: 'http://127.0.0.1:3/b.tar.gz' } } },
    ];
    for (const b of variants) {
      const merged = mergeReloadable(a, b);
      // The running config's restart-only keys are kept, so nothing is left to report...
      expect(restartRequiredChanges(a, merged)).toEqual([]);
      // ...and workers compare exactly the reloadable parts of the new file.
      expect(configRevision(merged, 'k')).toBe(configRevision(b, 'k'));
      // A change the reload reports is one it did not apply; one it does not report, it applied whole.
      expect(JSON.stringify(merged) === JSON.stringify(b)).toBe(restartRequiredChanges(a, b).length === 0);
      // The revision moves with the reloadable parts only.
      expect(configRevision(b, 'k') === configRevision(a, 'k')).toBe(JSON.stringify(b.audit) === JSON.stringify(a.audit));
    }
  });

  it('swaps the policy data on a good config, keeps everything on a bad one, keeps restart-only keys', async () => {
    const dir = tempDir('lbac-reload-');
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
    const dir = tempDir('lbac-reload-');
    const file = join(dir, 'gateway.yaml');
    const listen = 'server: { listen: "127.0.0.1:0", watchConfig: true, reloadDebounceMs: 10 }';
    writeFileSync(file, yaml('a', listen));
    const config = await loadConfigFile(file);
    // The file changes after it was read, before anything watches it (a worker starting in a cluster).
    writeFileSync(file, yaml('b', listen));
    const gw = await startGateway(config, pino({ level: 'silent' }));
    try {
      const deadline = Date.now() + 15_000;
      while (gw.runtime.config.teams['team-a']!.selectors[0]!['namespace'] !== 'b' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(gw.runtime.config.teams['team-a']!.selectors).toEqual([{ namespace: 'b' }]);
    } finally {
      await gw.close();
    }
  });

  it('/readyz answers 503 while draining', async () => {
    const dir = tempDir('lbac-reload-');
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
    const dir = tempDir('lbac-reload-bundle-');
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

/** The server and policy sections of a gateway on a signed bundle, verified with the key in `keyFile`. */
const signedBundleConfig = (url: string, keyFile: string, o: { watchConfig: boolean; pollSeconds: [number, number] }) => `server: { listen: "127.0.0.1:0", watchConfig: ${o.watchConfig}, reloadDebounceMs: 10 }
policy:
  bundle:
    url: "${url}"
    resource: b.tar.gz
    polling: { minDelaySeconds: ${o.pollSeconds[0]}, maxDelaySeconds: ${o.pollSeconds[1]} }
    signing: { keys: [{ keyid: default, algorithm: ES256, publicKeyFile: "${keyFile}" }] }
`;

describe('bundle signing key rotation', () => {
  it('a key file replaced in place (a Secret) is read again without a SIGHUP: the new key\'s bundle is fetched and activated, the retired key\'s refused', async () => {
    const [k1, k2] = [generateSigningKey('ES256'), generateSigningKey('ES256')];
    const oldWide = readFileSync(await buildBundle({ revision: 'old', signingKey: k1 }));
    const fresh = readFileSync(await buildBundle({ revision: 'new', signingKey: k2 }));
    let served = { body: oldWide, etag: '"old"' };
    const service = await serveBundles(() => served);
    const bundleUrl = service.url;
    const secrets = tempDir('lbac-reload-secret-');
    const keyFile = join(secrets, 'bundle.pem');
    writeFileSync(keyFile, k1.publicKeyPem);
    const file = join(tempDir('lbac-reload-keys-'), 'gateway.yaml');
    writeFileSync(file, yaml('a', signedBundleConfig(bundleUrl, keyFile, { watchConfig: true, pollSeconds: [60, 120] })));
    const gw = await startGateway(await loadConfigFile(file), pino({ level: 'silent' }));
    try {
      const until = async (done: () => boolean) => {
        for (const deadline = Date.now() + 10_000; !done() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
      };
      await until(() => gw.runtime.holder.revision === 'old');
      expect(gw.runtime.holder.revision).toBe('old');
      // The service publishes the bundle signed with the new key; the operator then rotates the key file.
      served = { body: fresh, etag: '"new"' };
      writeFileSync(keyFile, k2.publicKeyPem);
      await until(() => gw.runtime.holder.revision === 'new');
      expect(gw.runtime.holder.revision).toBe('new');
      // The retired key signs nothing any more.
      served = { body: oldWide, etag: '"old-again"' };
      expect(await gw.runtime.bundleClient!.poll()).toMatchObject({ kind: 'failed' });
      expect(gw.runtime.holder.revision).toBe('new');
    } finally {
      await gw.close();
      await service.close();
    }
  });
});

describe('a cluster worker waiting for its first policy bundle', () => {
  // The service publishes only a bundle signed with the new key; the worker read the retired key.
  const setup = async (watchConfig: boolean) => {
    const [k1, k2] = [generateSigningKey('ES256'), generateSigningKey('ES256')];
    const fresh = readFileSync(await buildBundle({ revision: 'new', signingKey: k2 }));
    const service = await serveBundles(() => ({ body: fresh, etag: '"new"' }));
    const keyFile = join(tempDir('lbac-wait-secret-'), 'bundle.pem');
    writeFileSync(keyFile, k1.publicKeyPem);
    const file = join(tempDir('lbac-wait-keys-'), 'gateway.yaml');
    writeFileSync(file, yaml('a', signedBundleConfig(service.url, keyFile, { watchConfig, pollSeconds: [1, 1] })));
    return { k2, keyFile, file, service };
  };
  const neverReleased = () => ({ promise: new Promise<void>(() => undefined), cancel: () => undefined });
  const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms))]);

  it('takes a signing key rotated in place while it waits (the file watch runs before the wait) and then listens with the new bundle', async () => {
    const { k2, keyFile, file, service } = await setup(true);
    const starting = startGateway(await loadConfigFile(file), pino({ level: 'silent' }), { waitForPolicy: true, stopWaitingForPolicy: neverReleased });
    try {
      // With the retired key it cannot verify the only bundle there is: it keeps waiting.
      expect(await within(starting, 1500)).toBe('still waiting');
      writeFileSync(keyFile, k2.publicKeyPem);
      const gw = await within(starting, 10_000);
      expect(gw).not.toBe('still waiting');
      if (gw === 'still waiting') return;
      expect(gw.runtime.holder.revision).toBe('new');
      expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    } finally {
      const gw = await within(starting, 10);
      if (gw !== 'still waiting') await gw.close();
      await service.close();
    }
  });

  it('hands its runtime out before the wait, so a SIGHUP reload reaches it while it waits', async () => {
    const { k2, keyFile, file, service } = await setup(false);
    let reload: (() => Promise<unknown>) | undefined;
    const starting = startGateway(await loadConfigFile(file), pino({ level: 'silent' }), {
      waitForPolicy: true,
      stopWaitingForPolicy: neverReleased,
      onRuntime: (runtime) => (reload = () => runtime.reload('SIGHUP')),
    });
    try {
      expect(await within(starting, 1500)).toBe('still waiting');
      expect(reload).toBeDefined();
      writeFileSync(keyFile, k2.publicKeyPem);
      await reload?.();
      const gw = await within(starting, 10_000);
      expect(gw).not.toBe('still waiting');
      if (gw === 'still waiting') return;
      expect(gw.runtime.holder.revision).toBe('new');
    } finally {
      const gw = await within(starting, 10);
      if (gw !== 'still waiting') await gw.close();
      await service.close();
    }
  });
});

/** Retries of a reload rejected for a transient cause (the schedule and classification: reload-retry.test.ts). */
describe('config reload retry', () => {
  /** Short backoff (the defaults are 1 s doubling to 30 s); no file watch: only a retry (or an explicit reload) reloads. */
  const settings = (minDelayMs: number, maxDelayMs: number) => `server: { listen: "127.0.0.1:0", watchConfig: false, reloadRetry: { minDelayMs: ${minDelayMs}, maxDelayMs: ${maxDelayMs} } }`;

  /** A runtime from a config file, its log lines (parsed) and its reload counters. */
  async function runtimeFor(text: string) {
    const dir = tempDir('lbac-reload-retry-');
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, text);
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    const metrics = createMetrics({ defaultMetrics: false });
    const { app, runtime } = await createRuntime(await loadConfigFile(file), logger, { metrics });
    return { dir, file, lines, metrics, app, runtime, ...helpers(file, lines, () => metrics.registry.metrics()) };
  }

  function helpers(file: string, lines: Record<string, unknown>[], metricsText: () => Promise<string>) {
    return {
      /** The config path becomes a directory (as for a moment while a mount is rebuilt): reading it fails with EISDIR. */
      breakFile: () => {
        rmSync(file);
        mkdirSync(file);
      },
      /** The file is back, with this text, written atomically (a half-written file must not be read). */
      restoreFile: (text: string) => {
        const tmp = `${file}.tmp`;
        writeFileSync(tmp, text);
        rmdirSync(file);
        renameSync(tmp, file);
      },
      reloads: async (result: 'success' | 'failure'): Promise<number> => Number(new RegExp(`lbac_gateway_config_reloads_total\\{result="${result}"\\} (\\d+)`).exec(await metricsText())?.[1] ?? 0),
      logged: (msg: string) => lines.filter((l) => l['msg'] === msg),
    };
  }

  const until = async (done: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!(await done()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const namespaceOf = (config: { teams: Record<string, { selectors: readonly Record<string, unknown>[] }> }) => config.teams['team-a']!.selectors[0]!['namespace'];

  it('a reload that could not read the file is retried with a backoff and applies the new team data, with no other reload', async () => {
    const t = await runtimeFor(yaml('a', settings(20, 80)));
    try {
      t.breakFile();
      const first = await t.runtime.reload('SIGHUP');
      expect(first).toMatchObject({ ok: false, transient: true, code: 'EISDIR', retryInMs: 20 });
      expect(t.runtime.retryPending).toBe(true);
      // Retries fail while the path is a directory: 20, 40, 80, 80 ms apart.
      await until(() => t.logged('config reload retry scheduled').length >= 4);
      const scheduled = t.logged('config reload retry scheduled');
      expect(scheduled.slice(0, 4).map((l) => [l['attempt'], l['delayMs'], l['code']])).toEqual([
        [1, 20, 'EISDIR'],
        [2, 40, 'EISDIR'],
        [3, 80, 'EISDIR'],
        [4, 80, 'EISDIR'],
      ]);
      expect(scheduled[0]).toMatchObject({ level: 40, retryOf: 'SIGHUP', error: expect.stringMatching(/cannot read config: EISDIR/) });
      expect(namespaceOf(t.runtime.config)).toBe('a');

      t.restoreFile(yaml('b', settings(20, 80)));
      await until(() => namespaceOf(t.runtime.config) === 'b');
      expect(t.runtime.config.teams['team-a']!.selectors).toEqual([{ namespace: 'b' }]);
      expect(t.runtime.holder.decide({ subject: { sub: 'x', groups: ['team-a'], roles: [], auth: 'test', claims: {} }, request: { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' } }).selectors).toEqual([
        [{ name: 'namespace', op: '=', value: 'b' }],
      ]);
      expect(t.runtime.retryPending).toBe(false);
      // The success log says it was a retry; every attempt counted as a reload.
      const applied = t.logged('config reloaded');
      expect(applied).toHaveLength(1);
      expect(applied[0]).toMatchObject({ reason: 'retry', retryOf: 'SIGHUP', attempt: expect.any(Number) });
      const failures = t.logged('config reload rejected').length;
      expect(failures).toBeGreaterThanOrEqual(4);
      expect(await t.reloads('failure')).toBe(failures);
      expect(await t.reloads('success')).toBe(1);
      // Nothing more runs once it applied.
      await sleep(250);
      expect(await t.reloads('failure')).toBe(failures);
      expect(await t.reloads('success')).toBe(1);
    } finally {
      await t.app.close();
    }
  });

  it('a reload rejected for a config error is not retried', async () => {
    const t = await runtimeFor(yaml('a', settings(20, 40)));
    try {
      writeFileSync(t.file, yaml('b', `${settings(20, 40)}\nnonsense: true`));
      const bad = await t.runtime.reload('SIGHUP');
      expect(bad).toMatchObject({ ok: false, transient: false, code: 'config_invalid', error: expect.stringMatching(/unknown key "nonsense"/) });
      expect(bad.retryInMs).toBeUndefined();
      expect(t.runtime.retryPending).toBe(false);
      expect(t.logged('config reload rejected')[0]).toMatchObject({ transient: false, code: 'config_invalid' });
      // Several backoff periods later: still the one attempt.
      await sleep(300);
      expect(await t.reloads('failure')).toBe(1);
      expect(t.logged('config reload retry scheduled')).toEqual([]);
      expect(namespaceOf(t.runtime.config)).toBe('a');
    } finally {
      await t.app.close();
    }
  });

  it('a newer reload cancels the pending retry; failing transiently again, it starts a backoff of its own', async () => {
    // A retry would come 250 ms after the rejection.
    const t = await runtimeFor(yaml('a', settings(250, 250)));
    try {
      t.breakFile();
      expect(await t.runtime.reload('SIGHUP')).toMatchObject({ ok: false, transient: true, retryInMs: 250 });
      // The newer reload reads a config that is wrong: rejected, not retried, and the older retry never runs.
      t.restoreFile(yaml('b', `${settings(250, 250)}\nnonsense: true`));
      expect(await t.runtime.reload('file change')).toMatchObject({ ok: false, transient: false });
      expect(t.runtime.retryPending).toBe(false);
      await sleep(600);
      expect(await t.reloads('failure')).toBe(2);
      expect(t.logged('config reload rejected').map((l) => l['reason'])).toEqual(['SIGHUP', 'file change']);
      expect(namespaceOf(t.runtime.config)).toBe('a');
    } finally {
      await t.app.close();
    }

    const u = await runtimeFor(yaml('a', settings(20, 1000)));
    try {
      u.breakFile();
      await u.runtime.reload('SIGHUP');
      await until(() => u.logged('config reload retry scheduled').length >= 4);
      // Backed off to 160 ms by now; a newer reload that fails the same way starts over at 20 ms.
      const newer = await u.runtime.reload('SIGHUP');
      expect(newer).toMatchObject({ ok: false, transient: true, retryInMs: 20 });
      expect(u.logged('config reload retry scheduled').at(-1)).toMatchObject({ attempt: 1, delayMs: 20 });
    } finally {
      await u.app.close();
    }
    // Closed (onClose): the pending retry is gone.
    expect(u.runtime.retryPending).toBe(false);
  });

  it('a newer reload that may skip an unchanged config does not drop the retry of one that may not (a rotated jwksFile is read)', async () => {
    // SIGHUP re-reads the files the config names even when the config is unchanged; a file-change reload skips an
    // unchanged config. The SIGHUP reload meets the jwksFile mid-rotation (EISDIR); a file event then comes.
    const old = await createTestIssuer({ issuer: 'https://idp.test', audience: 'gw', alg: 'ES256' });
    const rotated = await createTestIssuer({ issuer: 'https://idp.test', audience: 'gw', alg: 'ES256' });
    const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
    const jwtConfig = (jwks: string) =>
      yaml('a', settings(200, 200)).replace(
        /identity:[\s\S]*?(?=teams:)/,
        `identity:\n  providers:\n    - { type: jwt, jwksFile: "${jwks}", issuer: "https://idp.test", audience: gw, algorithms: [ES256] }\n`,
      );
    try {
      for (const during of ['pending retry', 'reload still running'] as const) {
        const dir = tempDir('lbac-reload-retry-');
        const jwks = join(dir, 'jwks.json');
        writeFileSync(jwks, readFileSync(old.jwksPath));
        const t = await runtimeFor(jwtConfig(jwks));
        try {
          const oldToken = await old.mint({ sub: 'u-old' });
          const newToken = await rotated.mint({ sub: 'u-new' });
          await expect(t.runtime.authenticator.authenticate(bearer(oldToken))).resolves.toMatchObject({ sub: 'u-old' });
          // The old key leaked: the jwksFile is being replaced (a directory for a moment) when SIGHUP comes.
          rmSync(jwks);
          mkdirSync(jwks);
          let fileEvent: Promise<unknown> | undefined;
          if (during === 'reload still running') {
            // The file event arrives while the SIGHUP reload runs (it has read the config): queued behind it.
            const off = t.runtime.onConfigRead(() => {
              off();
              fileEvent = t.runtime.reload('file change', { skipIfUnchanged: true });
            });
          }
          const sighup = await t.runtime.reload('SIGHUP');
          expect(sighup, during).toMatchObject({ ok: false, transient: true, code: 'EISDIR' });
          rmdirSync(jwks);
          writeFileSync(jwks, readFileSync(rotated.jwksPath));
          // The config file itself is unchanged; a file event (the mount's ..data link, the config rewritten alike).
          if (during === 'pending retry') fileEvent = t.runtime.reload('file change', { skipIfUnchanged: true });
          await fileEvent;
          await until(async () => (await t.reloads('success')) === 1, 10_000);
          expect(await t.reloads('success'), during).toBe(1);
          // The rotated key set is in force: the leaked key's token is refused.
          await expect(t.runtime.authenticator.authenticate(bearer(oldToken)), during).rejects.toMatchObject({ status: 401 });
          await expect(t.runtime.authenticator.authenticate(bearer(newToken)), during).resolves.toMatchObject({ sub: 'u-new' });
        } finally {
          await t.app.close();
        }
      }
    } finally {
      old.cleanup();
      rotated.cleanup();
    }
  });

  it('close() and shutdown() cancel a pending retry: nothing fires after them', async () => {
    for (const stop of ['close', 'shutdown'] as const) {
      const dir = tempDir('lbac-reload-retry-');
      const file = join(dir, 'gateway.yaml');
      writeFileSync(file, yaml('a', settings(100, 100)));
      const lines: Record<string, unknown>[] = [];
      const gw = await startGateway(await loadConfigFile(file), pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }));
      const t = helpers(file, lines, () => gw.runtime.metrics.registry.metrics());
      t.breakFile();
      expect(await gw.runtime.reload('SIGHUP')).toMatchObject({ ok: false, transient: true, retryInMs: 100 });
      expect(gw.runtime.retryPending).toBe(true);
      if (stop === 'close') await gw.close();
      else expect(await gw.shutdown()).toBe(true);
      expect(gw.runtime.retryPending, stop).toBe(false);
      // The file is fine again: a retry that still ran would apply it.
      t.restoreFile(yaml('b', settings(100, 100)));
      await sleep(350);
      expect(await t.reloads('failure'), stop).toBe(1);
      expect(namespaceOf(gw.runtime.config), stop).toBe('a');
      expect(t.logged('config reload rejected'), stop).toHaveLength(1);
    }
  });
});
