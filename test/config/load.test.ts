import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parseConfig, DEFAULT_POLICY_WASM } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import type { JwtProviderConfig } from '../../src/config/schema.ts';

const minimal = `
upstreams:
  - name: prom
    kind: prometheus
    url: http://127.0.0.1:9090/prefix/
identity:
  providers:
    - type: jwt
      jwksFile: keys/jwks.json
      issuer: https://issuer
      audience: gw
teams:
  a:
    groups: [team-a]
    selectors:
      - namespace: "~a|b"
        env: "!prod"
`;

function configError(text: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfig(text, { file: 'gw.yaml', env, baseDir: '/etc/gw' });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig', () => {
  it('applies defaults and resolves paths and upstream URLs', () => {
    const c = parseConfig(minimal, { env: {}, baseDir: '/etc/gw' });
    expect(c.server.listen).toBe('127.0.0.1:8080');
    expect(c.upstreams[0]).toMatchObject({ mount: '/prom', mountPrefix: '/prom', origin: 'http://127.0.0.1:9090', pathPrefix: '/prefix' });
    expect((c.identity.providers[0] as JwtProviderConfig).jwksFile).toBe('/etc/gw/keys/jwks.json');
    expect((c.identity.providers[0] as JwtProviderConfig).algorithms).toEqual(['RS256', 'ES256']);
    expect(c.policyWasm).toBe(DEFAULT_POLICY_WASM);
    expect(c.policyData.teams['a']!.selectors).toEqual([
      [
        { name: 'namespace', op: '=~', value: 'a|b' },
        { name: 'env', op: '!=', value: 'prod' },
      ],
    ]);
  });

  it('names file, line and key for an unknown key', () => {
    const e = configError(minimal.replace('    kind: prometheus', '    kind: prometheus\n    timout: 5'));
    expect(e.message).toContain('gw.yaml');
    expect(e.key).toBe('upstreams.0.timout');
    expect(e.line).toBe(5);
    expect(e.message).toMatch(/unknown key "timout"/);
  });

  it('names the line of a wrongly typed value', () => {
    const e = configError(minimal.replace('audience: gw', 'audience: 42'));
    expect(e.key).toBe('identity.providers.0.audience');
    expect(e.line).toBe(11);
  });

  it('rejects an invalid kind, a bad URL, duplicate upstream names and YAML syntax errors', () => {
    expect(configError(minimal.replace('kind: prometheus', 'kind: influx')).key).toBe('upstreams.0.kind');
    expect(configError(minimal.replace('url: http://127.0.0.1:9090/prefix/', 'url: ftp://x')).key).toBe('upstreams.0.url');
    const dup = minimal.replace('upstreams:\n', 'upstreams:\n  - {name: prom, kind: prometheus, url: "http://x:1"}\n');
    expect(configError(dup).message).toMatch(/duplicate upstream name/);
    expect(configError('upstreams: [').message).toMatch(/YAML syntax/);
  });

  it('requires exactly one of jwksUrl / jwksFile', () => {
    const both = minimal.replace('jwksFile: keys/jwks.json', 'jwksFile: k.json\n      jwksUrl: https://idp/jwks');
    expect(configError(both).message).toMatch(/exactly one of jwksUrl or jwksFile/);
  });

  it('rejects invalid RE2 in team selectors at load time, pointing at the value', () => {
    const e = configError(minimal.replace('"~a|b"', '"~(?=lookahead)"'));
    expect(e.message).toMatch(/invalid RE2/);
    expect(e.key).toBe('teams.a.selectors.0.namespace');
    expect(e.line).toBe(16);
  });

  it('interpolates ${VAR} and ${VAR:-default}, and fails on unset variables', () => {
    const t = minimal.replace('audience: gw', 'audience: ${AUD}').replace('issuer: https://issuer', 'issuer: ${ISS:-https://default}');
    const c = parseConfig(t, { env: { AUD: 'from-env' } });
    expect((c.identity.providers[0] as JwtProviderConfig).audience).toBe('from-env');
    expect((c.identity.providers[0] as JwtProviderConfig).issuer).toBe('https://default');
    const e = configError(t);
    expect(e.message).toMatch(/environment variable AUD is not set/);
    expect(e.key).toBe('identity.providers.0.audience');
  });

  it('applies documented environment overrides, validated like the file', () => {
    expect(parseConfig(minimal, { env: { LBAC_LISTEN: '0.0.0.0:9999' } }).server.listen).toBe('0.0.0.0:9999');
    expect(configError(minimal, { LBAC_LISTEN: 'nonsense' }).key).toBe('server.listen');
  });

  it('compact selector values: lists OR into one escaped regex; "*" is any value', () => {
    const c = parseConfig(minimal.replace('namespace: "~a|b"', 'namespace: [a.b, "~c+", "=~lit"]').replace('env: "!prod"', 'env: "*"'), { env: {} });
    expect(c.policyData.teams['a']!.selectors[0]).toEqual([
      { name: 'namespace', op: '=~', value: 'a\\.b|(?:c+)|~lit' },
      { name: 'env', op: '=~', value: '.*' },
    ]);
    expect(configError(minimal.replace('namespace: "~a|b"', 'namespace: [a, "!b"]')).message).toMatch(/negative values/);
  });

  it('accepts the Janus ConfigMap format', () => {
    const janus = `${minimal}
admins:
  groups: [admin]
janus:
  admin:
    header:
      - "X-Scope-OrgID: all"
  thanos:
    tenant-header-constraints:
      order-team:
        header:
          X-Scope-OrgID: tenant1
    user-label-constraints:
      order-team:
        labels: [service, namespace]
        service: ["*order-service", "~stock-.+"]
        namespace: [demo]
`;
    const c = parseConfig(janus, { env: {} });
    expect(c.policyData.admins.headers).toEqual({ 'X-Scope-OrgID': 'all' });
    expect(c.policyData.teams['janus:thanos:order-team']).toEqual({
      groups: ['order-team'],
      users: ['order-team'],
      upstreams: ['prom'],
      selectors: [
        [
          { name: 'service', op: '=~', value: '(?:.*order-service)|(?:stock-.+)' },
          { name: 'namespace', op: '=', value: 'demo' },
        ],
      ],
      headers: { 'X-Scope-OrgID': 'tenant1' },
      labels: ['service', 'namespace'],
    });
    expect(configError(`${minimal}\njanus:\n  loki:\n    user-label-constraints: {}\n`).message).toMatch(/no upstream named "loki"/);
  });

  it('the shipped example config is valid', () => {
    const text = readFileSync(new URL('../../examples/gateway.yaml', import.meta.url), 'utf8');
    const c = parseConfig(text, { env: {} });
    expect(Object.keys(c.policyData.teams)).toEqual(['team-a', 'team-b']);
  });
});
