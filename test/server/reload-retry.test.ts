// Which rejected reloads are retried (classifyReloadError) and when (reloadRetryDelayMs): pure, no timers.
// The retry itself (GatewayRuntime) is exercised in reload.test.ts.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { loadConfigFile, parseConfig } from '../../src/config/load.ts';
import { ConfigError, GatewayError } from '../../src/errors.ts';
import { IntrospectionSource } from '../../src/identity/introspection.ts';
import { readJwksFile } from '../../src/identity/jwt.ts';
import { BundleError } from '../../src/policy/bundle.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { classifyReloadError, reloadRetryDelayMs } from '../../src/server/reload-retry.ts';

const minimal = `
upstreams: [{ name: prom, kind: prometheus, url: "http://127.0.0.1:9090" }]
identity: { providers: [{ type: jwt, jwksUrl: "https://idp.test/jwks", issuer: "https://idp.test", audience: gw }] }
teams: { a: { groups: [team-a], selectors: [{ namespace: a }] } }
`;

/** The error `run` throws or rejects with. */
async function thrown(run: () => unknown): Promise<unknown> {
  try {
    await run();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

const dir = () => tempDir('lbac-reload-retry-');

describe('classifyReloadError: transient causes (retried)', () => {
  it('a config file that cannot be read: missing (an editor replacing it), a directory in its place', async () => {
    const d = dir();
    const missing = await thrown(() => loadConfigFile(join(d, 'gateway.yaml')));
    expect(missing).toBeInstanceOf(ConfigError);
    expect(classifyReloadError(missing)).toEqual({ transient: true, code: 'ENOENT' });
    mkdirSync(join(d, 'dir.yaml'));
    expect(classifyReloadError(await thrown(() => loadConfigFile(join(d, 'dir.yaml'))))).toEqual({ transient: true, code: 'EISDIR' });
  });

  it('files the config names: an upstream secret, a jwksFile, a clientSecretFile, the policy wasm', async () => {
    const d = dir();
    const secret = await thrown(() =>
      parseConfig(minimal.replace('url: "http://127.0.0.1:9090"', 'url: "http://127.0.0.1:9090", auth: { type: bearer, tokenFile: missing-token }'), { file: 'gw.yaml', baseDir: d, env: {} }),
    );
    expect(secret).toBeInstanceOf(ConfigError);
    expect(classifyReloadError(secret)).toEqual({ transient: true, code: 'ENOENT' });
    expect(classifyReloadError(await thrown(() => readJwksFile(join(d, 'jwks.json'))))).toEqual({ transient: true, code: 'ENOENT' });
    const introspection = { type: 'introspection', clientId: 'gw', clientSecretFile: join(d, 'client-secret'), introspectionUrl: 'https://idp.test/introspect' };
    expect(classifyReloadError(await thrown(() => IntrospectionSource.clientSecret(introspection as never)))).toEqual({ transient: true, code: 'ENOENT' });
    // The policy wasm is read by the engine: unreadable is policy_unavailable.
    expect(classifyReloadError(await thrown(() => PolicyEngine.fromFile(join(d, 'policy.wasm'), {})))).toEqual({ transient: true, code: 'policy_unavailable' });
  });

  it('an identity provider or policy that could not be reached', () => {
    expect(classifyReloadError(new GatewayError('identity_unavailable', 'OIDC discovery for https://idp.test failed: fetch failed'))).toEqual({ transient: true, code: 'identity_unavailable' });
    expect(classifyReloadError(new GatewayError('policy_unavailable', 'no policy loaded yet'))).toEqual({ transient: true, code: 'policy_unavailable' });
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED', syscall: 'connect' });
    expect(classifyReloadError(new TypeError('fetch failed', { cause: refused }))).toEqual({ transient: true, code: 'ECONNREFUSED' });
    for (const code of ['EACCES', 'EIO', 'ENOTDIR', 'EMFILE']) {
      expect(classifyReloadError(Object.assign(new Error(code), { code }))).toEqual({ transient: true, code });
    }
  });
});

describe('classifyReloadError: config errors (not retried)', () => {
  const configError = (text: string): unknown => {
    try {
      parseConfig(text, { file: 'gw.yaml', env: {} });
    } catch (e) {
      return e;
    }
    throw new Error('expected a config error');
  };

  it('YAML syntax, schema, team and team-conflict errors', () => {
    const cases = {
      syntax: `${minimal}teams: { oops: [\n`,
      unknownKey: `${minimal}nonsense: true\n`,
      badValue: minimal.replace('groups: [team-a]', 'groups: 7'),
      badTeam: minimal.replace('namespace: a', 'namespace: "~("'),
      teamConflict: `${minimal.replace('teams: { a:', 'teams: { "janus:thanos:t":')}janus: { thanos: { user-label-constraints: { t: { labels: [namespace], namespace: [x] } } } }\n`,
    };
    for (const [name, text] of Object.entries(cases)) {
      const e = configError(text);
      expect(e, name).toBeInstanceOf(ConfigError);
      expect(classifyReloadError(e), name).toEqual({ transient: false, code: 'config_invalid' });
    }
    expect((configError(cases.teamConflict) as Error).message).toMatch(/defined twice/);
  });

  it('a policy that does not load, a bundle that does not take the new data', async () => {
    const garbage = join(dir(), 'policy.wasm');
    writeFileSync(garbage, 'not a wasm module');
    expect(classifyReloadError(await thrown(() => PolicyEngine.fromFile(garbage, {})))).toEqual({ transient: false, code: 'policy_error' });
    const conflict = new GatewayError('config_invalid', 'the active policy bundle does not load with the new policy data', {
      cause: new BundleError('data conflict at lbac.teams.a: both the bundle and the gateway config set it'),
    });
    expect(classifyReloadError(conflict)).toEqual({ transient: false, code: 'config_invalid' });
  });

  it('a key file that is there but wrong is not retried (only a failed read is)', async () => {
    const jwks = join(dir(), 'jwks.json');
    writeFileSync(jwks, 'not json');
    expect(classifyReloadError(await thrown(() => readJwksFile(jwks)))).toEqual({ transient: false, code: 'config_invalid' });
  });

  it('what cannot be classified is not transient', () => {
    expect(classifyReloadError(new Error('something else'))).toEqual({ transient: false, code: 'unknown' });
    expect(classifyReloadError('a string')).toEqual({ transient: false, code: 'unknown' });
    expect(classifyReloadError(undefined)).toEqual({ transient: false, code: 'unknown' });
    expect(classifyReloadError(Object.assign(new Error('bad'), { code: 'EINVAL' }))).toEqual({ transient: false, code: 'EINVAL' });
    // A cause chain that loops ends.
    const cycle: Error & { cause?: unknown } = new Error('a');
    cycle.cause = cycle;
    expect(classifyReloadError(cycle)).toEqual({ transient: false, code: 'unknown' });
  });
});

describe('reloadRetryDelayMs', () => {
  it('1 s doubling to a cap of 30 s by default, as server.reloadRetry defaults to', () => {
    const defaults = parseConfig(minimal, { env: {} }).server.reloadRetry;
    expect(defaults).toEqual({ minDelayMs: 1000, maxDelayMs: 30_000 });
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => reloadRetryDelayMs(n, defaults))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    expect(reloadRetryDelayMs(10_000, defaults)).toBe(30_000);
  });

  it('follows the configured schedule; attempt numbers start at 1', () => {
    const schedule = { minDelayMs: 20, maxDelayMs: 50 };
    expect([1, 2, 3, 4].map((n) => reloadRetryDelayMs(n, schedule))).toEqual([20, 40, 50, 50]);
    expect(reloadRetryDelayMs(0, schedule)).toBe(20);
    expect(reloadRetryDelayMs(1, { minDelayMs: 100, maxDelayMs: 10 })).toBe(100);
  });

  it('server.reloadRetry: min must not exceed max', () => {
    expect(() => parseConfig(`${minimal}server: { reloadRetry: { minDelayMs: 5000, maxDelayMs: 1000 } }\n`, { env: {} })).toThrow(/minDelayMs must not exceed maxDelayMs/);
  });
});
