// What starts a reload: bursts of requests (SIGHUP, file events) share reloads instead of
// queueing one each, and the file watch follows policy.wasm when a reload points it elsewhere.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { startJwksServer, type JwksServer } from '../../e2e/harness/jwks-server.ts';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { loadConfigFile } from '../../src/config/load.ts';
import { createRuntime, startGateway } from '../../src/server/index.ts';
import { createMetrics } from '../../src/server/metrics.ts';

let idp: TestIssuer;
let jwks: JwksServer;
/** How long the key-set endpoint takes to answer (a remote identity provider). */
let jwksDelayMs = 0;

beforeAll(async () => {
  idp = await createTestIssuer({ issuer: 'https://idp.test', audience: 'lbac-gateway', alg: 'ES256' });
  jwks = await startJwksServer(() => readFileSync(idp.jwksPath), { delayMs: () => jwksDelayMs });
});
afterAll(async () => {
  await jwks?.close();
  idp?.cleanup();
});

const gatewayYaml = (namespace: string, extra = '') => `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
    - { type: jwt, jwksUrl: "${jwks.url}", issuer: "https://idp.test", audience: lbac-gateway, algorithms: [ES256] }
teams: { a: { groups: [team-a], selectors: [{ namespace: "${namespace}" }] } }
${extra}`;

/** A runtime started from a config file with this text (the file is what reloads read). */
async function runtimeFromFile(text: string) {
  const file = join(tempDir('lbac-reload-burst-'), 'gateway.yaml');
  writeFileSync(file, text);
  return { file, ...(await createRuntime(await loadConfigFile(file), pino({ level: 'silent' }), { metrics: createMetrics({ defaultMetrics: false }) })) };
}

/** The policy rebuilt: the same wasm with a custom section appended, other bytes at every call (a rebuild of the same bytes changes nothing). */
let rebuilds = 0;
const rebuiltWasm = (): Buffer => Buffer.concat([readFileSync('wasm/policy.wasm'), Buffer.from([0, 5, 4, 0x6c, 0x62, 0x61, ++rebuilds % 256])]);

const until = async (done: () => boolean, ms = 15_000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
};

describe('reload requests', () => {
  it('a burst shares reloads: one key-set refetch per applied reload, not one per request', async () => {
    const { app, runtime } = await runtimeFromFile(gatewayYaml('a'));
    try {
      // The key set is fetched once, for the first token.
      await runtime.authenticator.authenticate({ headers: { authorization: `Bearer ${await idp.mint({ sub: 'u-1', groups: ['team-a'] })}` } });
      // Reloads applied (this one changes nothing, so its listeners are not told: counted by the metric).
      const succeeded = async () => (await runtime.metrics.configReloads.get()).values.find((v) => v.labels['result'] === 'success')?.value ?? 0;
      const start = await succeeded();
      const before = jwks.fetches();
      // Requests made before the reload starts share it.
      const together = await Promise.all(Array.from({ length: 20 }, () => runtime.reload('SIGHUP')));
      expect(together.every((r) => r.ok)).toBe(true);
      expect((await succeeded()) - start).toBe(1);
      expect(jwks.fetches() - before).toBe(1);
      // Requests made while one runs share the one reload queued behind it.
      const running = runtime.reload('SIGHUP');
      await new Promise((r) => setImmediate(r));
      const queued = await Promise.all([running, ...Array.from({ length: 19 }, () => runtime.reload('SIGHUP'))]);
      expect(queued.every((r) => r.ok)).toBe(true);
      expect((await succeeded()) - start).toBe(3);
      expect(jwks.fetches() - before).toBe(3);
    } finally {
      await app.close();
    }
  });

  it('a request made while a reload runs gets a later reload, which reads the file as it is then', async () => {
    const { app, runtime, file } = await runtimeFromFile(gatewayYaml('a'));
    try {
      const first = runtime.reload('SIGHUP');
      await new Promise((r) => setImmediate(r)); // the first reload is reading the file
      writeFileSync(file, gatewayYaml('b'));
      const second = runtime.reload('file change', { skipIfUnchanged: true });
      expect(second).not.toBe(first);
      await first;
      expect(await second).toMatchObject({ ok: true });
      expect(runtime.config.teams['a']!.selectors).toEqual([{ namespace: 'b' }]);
    } finally {
      await app.close();
    }
  });

  it('a shared reload is skipped when unchanged only if every request allowed that', async () => {
    const { app, runtime } = await runtimeFromFile(gatewayYaml('a'));
    try {
      const running = runtime.reload('SIGHUP');
      const watched = runtime.reload('file change', { skipIfUnchanged: true });
      const forced = runtime.reload('SIGHUP');
      expect(forced).toBe(watched);
      await running;
      // The file did not change, but a SIGHUP asked: the shared reload runs (and refetches keys).
      expect(await watched).toMatchObject({ ok: true });
      expect((await watched).unchanged).toBeUndefined();
      const skipped = await Promise.all([runtime.reload('file change', { skipIfUnchanged: true }), runtime.reload('file change', { skipIfUnchanged: true })]);
      expect(skipped.map((r) => r.unchanged)).toEqual([true, true]);
    } finally {
      await app.close();
    }
  });
});

describe('file watch of key files', () => {
  it('a key removed from a jwksFile (its own directory, as a mounted Secret) is refused without a SIGHUP', async () => {
    // Its own issuer: the JWKS file is edited here.
    const local = await createTestIssuer({ issuer: 'https://idp.local', audience: 'lbac-gateway', alg: 'ES256' });
    const configDir = tempDir('lbac-reload-keys-');
    const file = join(configDir, 'gateway.yaml');
    writeFileSync(
      file,
      `server: { listen: "127.0.0.1:0", watchConfig: true, reloadDebounceMs: 10 }
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
    - { type: jwt, jwksFile: "${local.jwksPath}", issuer: "https://idp.local", audience: lbac-gateway, algorithms: [ES256] }
teams: { a: { groups: [team-a], selectors: [{ namespace: "a" }] } }
`,
    );
    const gw = await startGateway(await loadConfigFile(file), pino({ level: 'silent' }));
    try {
      await new Promise((r) => setTimeout(r, 100)); // the check after start
      const oldKid = local.kid;
      const token = await local.mint({ sub: 'u-1', groups: ['team-a'] });
      const authenticate = () => gw.runtime.authenticator.authenticate({ headers: { authorization: `Bearer ${token}` } }).then(() => 'ok', (e: { code?: string }) => e.code ?? 'error');
      expect(await authenticate()).toBe('ok');
      let applied = 0;
      gw.runtime.onReloaded(() => applied++);
      await local.addKey({ makeCurrent: true });
      local.removeKey(oldKid);
      await until(() => applied >= 1);
      expect(applied).toBeGreaterThanOrEqual(1);
      expect(await authenticate()).toBe('unauthenticated');
      // A token of the key now in the file is accepted.
      const fresh = await local.mint({ sub: 'u-1', groups: ['team-a'] });
      expect(await gw.runtime.authenticator.authenticate({ headers: { authorization: `Bearer ${fresh}` } })).toMatchObject({ sub: 'u-1' });
      // The same bytes written again (a Secret's other key changed, a tool that rewrites files) reload nothing.
      await new Promise((r) => setTimeout(r, 200));
      const settled = applied;
      writeFileSync(local.jwksPath, readFileSync(local.jwksPath));
      await new Promise((r) => setTimeout(r, 400));
      expect(applied).toBe(settled);
    } finally {
      await gw.close();
      local.cleanup();
    }
  });
});

/** A watching gateway whose config (in its own directory) points policy.wasm at old/; new/ holds a copy too. */
async function gatewayWithWasmDirs() {
  const root = tempDir('lbac-reload-watch-');
  const [configDir, oldDir, newDir] = ['config', 'old', 'new'].map((d) => join(root, d)) as [string, string, string];
  for (const d of [configDir, oldDir, newDir]) mkdirSync(d);
  copyFileSync('wasm/policy.wasm', join(oldDir, 'policy.wasm'));
  copyFileSync('wasm/policy.wasm', join(newDir, 'policy.wasm'));
  const file = join(configDir, 'gateway.yaml');
  const settings = (wasmDir: string) => `server: { listen: "127.0.0.1:0", watchConfig: true, reloadDebounceMs: 10 }\npolicy: { wasm: "${join(wasmDir, 'policy.wasm')}" }`;
  writeFileSync(file, gatewayYaml('a', settings(oldDir)));
  const gw = await startGateway(await loadConfigFile(file), pino({ level: 'silent' }));
  return { gw, file, oldDir, newDir, settings };
}

describe('file watch', () => {
  it('follows policy.wasm to the path a reload points it to', async () => {
    const { gw, file, oldDir, newDir, settings } = await gatewayWithWasmDirs();
    try {
      await new Promise((r) => setTimeout(r, 100)); // the check after start
      let applied = 0;
      gw.runtime.onReloaded(() => applied++);
      // A rebuilt wasm where the config points is applied.
      writeFileSync(join(oldDir, 'policy.wasm'), rebuiltWasm());
      await until(() => applied === 1);
      expect(applied).toBe(1);
      writeFileSync(file, gatewayYaml('a', settings(newDir)));
      await until(() => gw.runtime.config.policyWasm === join(newDir, 'policy.wasm'));
      expect(gw.runtime.config.policyWasm).toBe(join(newDir, 'policy.wasm'));
      await new Promise((r) => setTimeout(r, 100));
      const moved = applied;
      // The new file is watched now; the old one is not.
      writeFileSync(join(newDir, 'policy.wasm'), rebuiltWasm());
      await until(() => applied === moved + 1);
      expect(applied).toBe(moved + 1);
      writeFileSync(join(oldDir, 'policy.wasm'), rebuiltWasm());
      await new Promise((r) => setTimeout(r, 300));
      expect(applied).toBe(moved + 1);
    } finally {
      await gw.close();
    }
  });

  it('sees a rebuild of the new policy.wasm made while the reload that moved it is still running', async () => {
    const { gw, file, newDir, settings } = await gatewayWithWasmDirs();
    try {
      await new Promise((r) => setTimeout(r, 100)); // the check after start
      const applied: string[] = [];
      gw.runtime.onReloaded((c) => applied.push(c.policyWasm));
      // The reload that moves policy.wasm waits for the key set (refetched before it is applied).
      jwksDelayMs = 800;
      writeFileSync(file, gatewayYaml('a', settings(newDir)));
      await new Promise((r) => setTimeout(r, 300));
      expect(applied).toEqual([]);
      writeFileSync(join(newDir, 'policy.wasm'), rebuiltWasm());
      jwksDelayMs = 0;
      const wasm = join(newDir, 'policy.wasm');
      await until(() => applied.length === 2);
      // The move, then the rebuild.
      expect(applied).toEqual([wasm, wasm]);
    } finally {
      jwksDelayMs = 0;
      await gw.close();
    }
  });
});
