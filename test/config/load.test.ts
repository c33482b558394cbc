import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { parseConfig, DEFAULT_POLICY_WASM } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import type { JwtProviderConfig } from '../../src/config/schema.ts';
import { restartRequiredChanges } from '../../src/server/reload.ts';

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

  it('policyEnforcement: rewrite by default; header only for Loki', () => {
    expect(parseConfig(minimal, { env: {}, baseDir: '/etc/gw' }).upstreams[0]!.policyEnforcement).toBe('rewrite');
    const e = configError(minimal.replace('    kind: prometheus', '    kind: prometheus\n    policyEnforcement: header'));
    expect(e.key).toBe('upstreams.0.policyEnforcement');
    expect(e.message).toContain('for Loki upstreams');
    const loki = parseConfig(minimal.replace('    kind: prometheus', '    kind: loki\n    policyEnforcement: header'), { env: {}, baseDir: '/etc/gw' });
    expect(loki.upstreams[0]!.policyEnforcement).toBe('header');
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

  it('refuses regex values that are valid only once wrapped or joined (they would match anything)', () => {
    for (const v of ['"~team-a-x)|(.*"', '["team-a-prod", "~team-a-x)|(.*"]', '"!~a)|(b"', '["a", "~\\\\Qx"]']) {
      const e = configError(minimal.replace('"~a|b"', v));
      expect(e.message, v).toMatch(/invalid RE2/);
      expect(e.key, v).toMatch(/^teams\.a\.selectors\.0\.namespace/);
    }
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

  it('an invalid environment override is reported as the variable\'s, not at a line of the file', () => {
    const e = configError(minimal, { LBAC_LOG_LEVEL: 'bogus' });
    expect(e.key).toBe('server.logLevel');
    expect(e.message).toMatch(/set by the environment variable LBAC_LOG_LEVEL/);
    expect(e.line).toBeUndefined();
    // A conflict between the file and an override names the variable too.
    const both = configError(`${minimal}\npolicy:\n  bundle: { url: "https://b.example/", resource: b.tar.gz }\n`, { LBAC_POLICY_WASM: '/x.wasm' });
    expect(both.message).toMatch(/with LBAC_POLICY_WASM setting policy\.wasm/);
    // A problem in the file itself is still located in the file.
    expect(configError(minimal.replace('audience: gw', 'audience: 5'), { LBAC_LOG_LEVEL: 'debug' }).line).toBeTypeOf('number');
  });

  it('a selector value YAML reads as a number, boolean or null is refused with a hint to quote it', () => {
    for (const v of ['01', '1e3', 'true', 'null', '[a, 1]']) {
      expect(configError(minimal.replace('namespace: "~a|b"', `namespace: ${v}`)).message, v).toMatch(/quote values YAML reads as numbers, booleans or null/);
    }
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
    // Janus values are literals unless globbed or "~re": "!prod" is the value "!prod", not "everything but prod".
    const bang = parseConfig(janus.replace('namespace: [demo]', 'namespace: ["!prod"]'), { env: {} });
    expect(bang.policyData.teams['janus:thanos:order-team']!.selectors[0]![1]).toEqual({ name: 'namespace', op: '=', value: '!prod' });
    // Header names and values are checked at load, as for native teams.
    expect(configError(janus.replace('X-Scope-OrgID: tenant1', 'X-Scope-OrgID: "a\\r\\nX-Evil: 1"')).message).toMatch(/control character \(CR, LF, NUL/);
    expect(configError(janus.replace('X-Scope-OrgID: tenant1', '"Bad Header": t')).message).toMatch(/not a valid HTTP header name/);
  });

  it('Janus: a numeric header value is refused (YAML read 0042 as 42: another tenant), a quoted one kept', () => {
    const janus = (tenant: string) => `${minimal}
janus:
  thanos:
    tenant-header-constraints:
      org: { header: { X-Scope-OrgID: ${tenant} } }
    user-label-constraints:
      org: { namespace: ["*"] }
`;
    for (const n of ['0042', '1e3', '900719925474099123', '1.10']) expect(configError(janus(n)).message, n).toMatch(/is a number.*quote it/);
    expect(parseConfig(janus('"0042"'), { env: {} }).policyData.teams['janus:thanos:org']!.headers).toEqual({ 'X-Scope-OrgID': '0042' });
    // The "Name: value" string form is text already.
    expect(parseConfig(janus('x').replace('header: { X-Scope-OrgID: x }', 'header: ["X-Scope-OrgID: 0042"]'), { env: {} }).policyData.teams['janus:thanos:org']!.headers).toEqual({ 'X-Scope-OrgID': '0042' });
  });

  it('Janus: two sections that apply to the same upstream are refused (their constraints would merge there)', () => {
    const two = (a: string, b: string) => `${minimal}
janus:
  ${a}:
    user-label-constraints: { dev: { namespace: ["*"] } }
  ${b}:
    user-label-constraints: { dev: { namespace: [dev] } }
`;
    for (const [a, b] of [['thanos', 'mimir'], ['prom', 'prometheus'], ['mimir', 'prom']] as const) {
      expect(configError(two(a, b)).message, `${a}+${b}`).toMatch(new RegExp(`sections "${a}" and "${b}" both apply to upstream "prom"`));
    }
  });

  it('Janus: a tenant header on a key without label constraints of its own is refused (it would never be applied)', () => {
    const cfg = `${minimal}
janus:
  thanos:
    tenant-header-constraints:
      team-a-devs: { header: ["X-Scope-OrgID: tenant-a"] }
    user-label-constraints:
      alice: { namespace: [checkout] }
`;
    expect(configError(cfg).message).toMatch(/"team-a-devs" has a tenant header but no user-label-constraints/);
    // Names every object has (constructor, toString) are keys like any other.
    for (const key of ['constructor', 'toString', 'hasOwnProperty']) expect(configError(cfg.replaceAll('team-a-devs', key)).message, key).toMatch(new RegExp(`"${key}" has a tenant header`));
    // With its own constraints it is a team with its tenant.
    const ok = parseConfig(cfg.replace('alice: { namespace: [checkout] }', 'alice: { namespace: [checkout] }\n      team-a-devs: { namespace: ["*"] }'), { env: {} });
    expect(ok.policyData.teams['janus:thanos:team-a-devs']!.headers).toEqual({ 'X-Scope-OrgID': 'tenant-a' });
  });

  it('the shipped example config is valid', () => {
    const text = readFileSync(new URL('../../examples/gateway.yaml', import.meta.url), 'utf8');
    const c = parseConfig(text, { env: {} });
    expect(Object.keys(c.policyData.teams)).toEqual(['team-a', 'team-b']);
  });
});

describe('"__proto__" keys', () => {
  it('are refused where they are written (a selector would silently lose that matcher)', () => {
    const text = minimal.replace('        env: "!prod"\n', '        env: "!prod"\n        __proto__: x\n');
    const e = configError(text);
    expect(e.message).toMatch(/"__proto__" is not allowed/);
    expect(e.line).toBe(text.split('\n').findIndex((l) => l.includes('__proto__')) + 1);
  });
});

describe('policy.attributes', () => {
  it('Tempo\'s default mapping stays when another kind is mapped, and yields to a tempo mapping', () => {
    const withAttributes = (yaml: string) => parseConfig(`${minimal}policy:\n  attributes: ${yaml}\n`, { env: {}, baseDir: '/etc/gw' }).policyData.attributes;
    expect(parseConfig(minimal, { env: {}, baseDir: '/etc/gw' }).policyData.attributes).toEqual({ tempo: { namespace: 'resource.k8s.namespace.name' } });
    expect(withAttributes('{ loki: { namespace: k8s_namespace } }')).toEqual({ tempo: { namespace: 'resource.k8s.namespace.name' }, loki: { namespace: 'k8s_namespace' } });
    expect(withAttributes('{ tempo: { ns: resource.ns } }')).toEqual({ tempo: { ns: 'resource.ns' } });
  });
});

describe('team values that would not mean what they say are refused at load', () => {
  const team = (lines: string) => minimal.replace(`      - namespace: "~a|b"\n        env: "!prod"\n`, lines);
  it.each([
    ['an empty value (an unset ${VAR})', `      - namespace: "\${TEAM_NS}"\n`, /empty value "" \(an unset \$\{VAR\}\?\)/],
    ['a bare "~"', '      - namespace: "~"\n', /empty value "~"/],
    ['a bare "!"', '      - namespace: "!"\n', /empty value "!"/],
    ['"=" alone', '      - namespace: "="\n', /empty value "="/],
    ['an empty list member', '      - namespace: [team-a, ""]\n', /empty value ""/],
  ])('%s', (_what, lines, message) => {
    expect(configError(team(lines), { TEAM_NS: '' }).message).toMatch(message);
  });
  it('an unquoted "!value" is a YAML tag, not a negation: refused with a hint', () => {
    const text = team('      - namespace: team-a\n        env: !prod\n');
    const e = configError(text);
    expect(e.message).toMatch(/Unresolved tag.*quote it, e\.g\. "!prod"/);
    expect(e.line).toBe(text.split('\n').findIndex((l) => l.includes('!prod')) + 1);
    expect(() => parseConfig(team('      - namespace: team-a\n        env: "!prod"\n'), { env: {}, baseDir: '/etc/gw' })).not.toThrow();
  });
  it.each([
    ['a tag', 'password: !Pa55w0rd-S3CRET', /Unresolved tag \(an unquoted value starting with "!"/],
    ['an alias', 'password: *Pa55w0rd-S3CRET', /unresolved alias \(an unquoted value starting with "\*"/],
    ['a tag with a handle', 'password: !a!Pa55w0rd-S3CRET', /YAML syntax: Could not resolve tag \(an unquoted value starting with "!"/],
  ])('a secret written as %s is refused at its line without being quoted', (_what, line, message) => {
    const text = `upstreams:\n  - name: m\n    kind: prometheus\n    url: http://127.0.0.1:9090\n    mount: /p\n    auth:\n      type: basic\n      username: svc\n      ${line}\n`;
    const e = configError(text);
    expect(e.message).toMatch(message);
    expect(e.message).not.toContain('Pa55w0rd');
    expect(e.line).toBe(9);
  });
  it.each([
    ['an empty tenant (an unset ${VAR})', '    headers: { X-Scope-OrgID: "${TENANT}" }\n', /X-Scope-OrgID.*empty/],
    ['a tenant list of nothing', '    headers: { X-Scope-OrgID: "|" }\n', /X-Scope-OrgID.*empty/],
    ['a header the decision validator refuses', '    headers: { Host: other }\n', /may not set "Host"/],
    ['a value that cannot be sent', '    headers: { X-Scope-OrgID: "t\\x01" }\n', /control character/],
  ])('team headers: %s', (_what, lines, message) => {
    expect(configError(minimal.replace('    groups: [team-a]\n', `    groups: [team-a]\n${lines}`), { TENANT: '' }).message).toMatch(message);
  });
});

describe('URLs with credentials (user:password@) are refused, without repeating them', () => {
  it.each([
    ['an upstream', minimal.replace('url: http://127.0.0.1:9090/prefix/', 'url: http://tenant:S3CRET@127.0.0.1:9090/prefix/'), /upstreams\.0\.url: must not contain credentials.*upstreams\[\]\.auth/],
    ['a JWKS URL', minimal.replace('jwksFile: keys/jwks.json', 'jwksUrl: https://r:S3CRET@idp.example/jwks'), /jwksUrl: must not contain credentials/],
    ['the bundle service', `${minimal}policy:\n  bundle:\n    url: https://r:S3CRET@bundles.example\n    resource: b.tar.gz\n`, /policy\.bundle\.url: must not contain credentials.*policy\.bundle\.auth/],
  ])('%s', (_what, text, message) => {
    const e = configError(text);
    expect(e.message).toMatch(message);
    expect(`${e.message} ${inspect(e)}`).not.toContain('S3CRET');
  });
  it('an upstream URL with a query or fragment is refused (only its origin and path are used: a query would be dropped silently)', () => {
    for (const url of ['http://127.0.0.1:9090/prefix/?api_key=S3CRET', 'http://127.0.0.1:9090/prefix/?', 'http://127.0.0.1:9090/prefix/#f']) {
      const e = configError(minimal.replace('url: http://127.0.0.1:9090/prefix/', `url: "${url}"`));
      expect(e.message).toMatch(/upstreams\.0\.url: must not contain a query or fragment/);
      expect(`${e.message} ${inspect(e)}`).not.toContain('S3CRET');
    }
  });
  it('a pre-signed query is allowed (it is never shown: logs and status drop the query)', () => {
    expect(() => parseConfig(`${minimal}policy:\n  bundle:\n    url: https://bundles.example\n    resource: b.tar.gz?X-Amz-Signature=abc\n`, { env: {}, baseDir: '/etc/gw' })).not.toThrow();
  });
});

describe('upstream credentials and TLS (upstreams[].auth, upstreams[].tls)', () => {
  const withUpstream = (lines: string, url = 'http://127.0.0.1:9090/prefix/') =>
    minimal.replace('    url: http://127.0.0.1:9090/prefix/\n', `    url: ${url}\n${lines.replace(/^/gm, '    ')}\n`);
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'lbac-cred-'));
    mkdirSync(join(dir, 'secrets'));
    writeFileSync(join(dir, 'secrets', 'mimir-password'), 'file-password\n');
    writeFileSync(join(dir, 'secrets', 'token'), 'file-token\r\n');
    writeFileSync(join(dir, 'secrets', 'bad.pem'), '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const load = (text: string, env: NodeJS.ProcessEnv = {}) => parseConfig(text, { file: 'gw.yaml', env, baseDir: dir });
  const loadError = (text: string, env: NodeJS.ProcessEnv = {}): ConfigError => {
    try {
      load(text, env);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return e as ConfigError;
    }
    throw new Error('expected a ConfigError');
  };

  it('reads passwordFile / tokenFile relative to the config file, trailing newline trimmed', () => {
    const basic = load(withUpstream('auth: { type: basic, username: "123456", passwordFile: secrets/mimir-password }'));
    expect(basic.upstreams[0]!.auth!.headers()).toEqual({ authorization: `Basic ${Buffer.from('123456:file-password').toString('base64')}` });
    const bearer = load(withUpstream('auth: { type: bearer, tokenFile: secrets/token }'));
    expect(bearer.upstreams[0]!.auth!.headers()).toEqual({ authorization: 'Bearer file-token' });
    const literal = load(withUpstream('auth: { type: bearer, token: "${TOKEN}" }'), { TOKEN: 'env-token' });
    expect(literal.upstreams[0]!.auth!.headers()).toEqual({ authorization: 'Bearer env-token' });
  });

  it('a missing secret file is an error naming file, line and key', () => {
    const e = loadError(withUpstream('auth:\n  type: bearer\n  tokenFile: secrets/missing'));
    expect(e.key).toBe('upstreams.0.auth.tokenFile');
    expect(e.line).toBe(8);
    expect(e.message).toMatch(/gw\.yaml.*cannot read tokenFile "secrets\/missing": ENOENT/);
  });

  it('sigv4 takes credentials from the config, else from the environment at load; none is an error', () => {
    const env = { AWS_ACCESS_KEY_ID: 'AKIAENVIRONMENT', AWS_SECRET_ACCESS_KEY: 'env-secret', AWS_SESSION_TOKEN: 'env-session' };
    const fromEnv = load(withUpstream('auth: { type: sigv4, region: eu-west-1 }', 'https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1'), env);
    const u = fromEnv.upstreams[0]!;
    expect(u.auth!.toJSON()).toMatchObject({ type: 'sigv4', region: 'eu-west-1', service: 'aps' });
    const h = u.auth!.sign({ method: 'GET', url: `${u.origin}/x`, headers: {} });
    expect(h['authorization']).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIAENVIRONMENT\/\d{8}\/eu-west-1\/aps\/aws4_request, /);
    expect(h['x-amz-security-token']).toBe('env-session');
    const fromConfig = load(withUpstream('auth: { type: sigv4, region: us-east-1, service: execute-api, accessKeyId: AKIACONFIG, secretAccessKey: "${SECRET}" }'), { ...env, SECRET: 's' });
    expect(fromConfig.upstreams[0]!.auth!.sign({ method: 'GET', url: 'https://h/', headers: {} })['authorization']).toMatch(/Credential=AKIACONFIG\/\d{8}\/us-east-1\/execute-api\//);
    const e = loadError(withUpstream('auth: { type: sigv4, region: eu-west-1 }'), { AWS_SECRET_ACCESS_KEY: 'only-half' });
    expect(e.key).toBe('upstreams.0.auth');
    expect(e.message).toMatch(/sigv4 needs credentials/);
    expect(e.message).not.toContain('only-half');
    expect(loadError(withUpstream('auth: { type: sigv4, region: eu-west-1, accessKeyId: AKIA }')).message).toMatch(/both accessKeyId and secretAccessKey, or neither/);
  });

  it('conflicts and ambiguities are config errors naming the key', () => {
    expect(loadError(withUpstream('auth: { type: basic, username: u, password: p, passwordFile: secrets/mimir-password }'))).toMatchObject({ key: 'upstreams.0.auth' });
    expect(loadError(withUpstream('auth: { type: basic, username: u, password: p, passwordFile: secrets/mimir-password }')).message).toMatch(/exactly one of password or passwordFile/);
    expect(loadError(withUpstream('auth: { type: bearer }')).message).toMatch(/exactly one of token or tokenFile/);
    expect(loadError(withUpstream('auth: { type: digest, username: u }')).key).toBe('upstreams.0.auth.type');
    const header = loadError(withUpstream('headers: { authorization: "Basic abc" }\nauth: { type: bearer, token: t }'));
    expect(header.key).toBe('upstreams.0.headers.authorization');
    expect(header.message).toMatch(/set by auth/);
    expect(loadError(withUpstream('headers: { X_Amz_Date: "x" }\nauth: { type: sigv4, region: eu-west-1, accessKeyId: a, secretAccessKey: b }')).key).toBe('upstreams.0.headers.X_Amz_Date');
    const fwd = loadError(withUpstream('forwardAuthorization: true\nauth: { type: bearer, token: t }'));
    expect(fwd.key).toBe('upstreams.0.forwardAuthorization');
    expect(fwd.line).toBe(6);
    // Without auth, a static Authorization header stays allowed (as before).
    expect(load(withUpstream('headers: { Authorization: "Bearer static" }')).upstreams[0]!.headers).toEqual({ Authorization: 'Bearer static' });
  });

  it('header values and the secrets sent as they are in a header hold only what a header can carry, checked after ${ENV} interpolation, never shown', () => {
    writeFileSync(join(dir, 'secrets', 'bad-token'), Buffer.from([0xff, 0x53, 0x33, 0x43, 0x52, 0x45, 0x54, 0x01, 0x0a])); // \xff S3CRET \x01 \n
    writeFileSync(join(dir, 'secrets', 'snowman-password'), 'S3CRET\u2603\n');
    const UNSENDABLE = /a control character \(CR, LF, NUL, …\) or a character beyond Latin-1 \(U\+00FF\)/;
    const refused = (text: string, env: NodeJS.ProcessEnv, key: string, line: number) => {
      const e = loadError(text, env);
      expect(e, key).toMatchObject({ key, line });
      expect(e.message, key).toMatch(UNSENDABLE);
      expect(e.message, key).not.toMatch(/S3CRET/);
    };
    // What undici refuses (every request a 502) is refused at load: a control character, a character beyond U+00FF, ...
    refused(withUpstream('headers: { X-Ctl: "${CTL}" }'), { CTL: 'S3CRET\u0001' }, 'upstreams.0.headers.X-Ctl', 6);
    refused(withUpstream('headers: { X-Api-Key: "S3CRET\\u2603" }'), {}, 'upstreams.0.headers.X-Api-Key', 6);
    refused(withUpstream('auth: { type: bearer, token: "${TOK}" }'), { TOK: 'S3CRET\u2603' }, 'upstreams.0.auth.token', 6);
    refused(withUpstream('auth: { type: bearer, token: "${TOK}" }'), { TOK: 'S3CRET\u007f' }, 'upstreams.0.auth.token', 6);
    // ... a token file that is not one sendable line (an invalid UTF-8 byte reads as U+FFFD), read at load so a reload is refused too.
    refused(withUpstream('auth:\n  type: bearer\n  tokenFile: secrets/bad-token'), {}, 'upstreams.0.auth.tokenFile', 8);
    // ... sigv4's key id (in Authorization) and session token (X-Amz-Security-Token), from the config or the environment.
    refused(withUpstream('auth: { type: sigv4, region: eu-west-1, accessKeyId: AKIA, secretAccessKey: s, sessionToken: "${T}" }'), { T: 'S3CRET\u2603' }, 'upstreams.0.auth.sessionToken', 6);
    refused(withUpstream('auth: { type: sigv4, region: eu-west-1 }'), { AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 's', AWS_SESSION_TOKEN: 'S3CRET\u2603' }, 'upstreams.0.auth', 6);
    // What a header can carry stays accepted: HTAB, Latin-1.
    const latin1 = load(withUpstream('headers: { X-Tenant: "${V}" }\nauth: { type: bearer, token: "${V}" }'), { V: 'caf\u00e9\tx\u00ff' });
    expect(latin1.upstreams[0]!.headers).toEqual({ 'X-Tenant': 'caf\u00e9\tx\u00ff' });
    expect(latin1.upstreams[0]!.auth!.headers()).toEqual({ authorization: 'Bearer caf\u00e9\tx\u00ff' });
    // A basic password is sent base64-encoded (UTF-8): any character but CR, LF, NUL can be sent.
    const basic = load(withUpstream('auth: { type: basic, username: "\u00fcser\u2603", passwordFile: secrets/snowman-password }'));
    expect(basic.upstreams[0]!.auth!.headers()).toEqual({ authorization: `Basic ${Buffer.from('\u00fcser\u2603:S3CRET\u2603', 'utf8').toString('base64')}` });
  });

  it('dropHeaders: a list of header names, empty by default; a name that is not a header name is an error naming the key', () => {
    expect(load(withUpstream('')).upstreams[0]!.dropHeaders).toEqual([]);
    expect(load(withUpstream('dropHeaders: [X-Forwarded-User, X_WEBAUTH_USER]')).upstreams[0]!.dropHeaders).toEqual(['X-Forwarded-User', 'X_WEBAUTH_USER']);
    expect(loadError(withUpstream('dropHeaders: ["X Forwarded User"]')).key).toBe('upstreams.0.dropHeaders.0');
  });

  it('tls: https only, certFile and keyFile together, files relative to the config file, invalid PEM names the key', () => {
    expect(loadError(withUpstream('tls: { insecureSkipVerify: true }')).key).toBe('upstreams.0.tls');
    expect(loadError(withUpstream('tls: { certFile: c.pem }', 'https://prom:9090')).message).toMatch(/both certFile and keyFile/);
    const bad = loadError(withUpstream('tls:\n  caFile: secrets/bad.pem', 'https://prom:9090'));
    expect(bad.key).toBe('upstreams.0.tls.caFile');
    expect(bad.message).toMatch(/invalid PEM certificate/);
    expect(loadError(withUpstream('tls: { caFile: secrets/none.pem }', 'https://prom:9090')).message).toMatch(/cannot read caFile "secrets\/none.pem": ENOENT/);
    const ok = load(withUpstream('tls: { serverName: prom.internal, insecureSkipVerify: true }', 'https://10.0.0.1:9090'));
    expect(ok.upstreams[0]!.tls!.connectOptions()).toEqual({ servername: 'prom.internal', rejectUnauthorized: false });
  });

  it('the resolved config never shows secrets (JSON, inspection, check-config style output)', () => {
    const c = load(withUpstream('auth: { type: basic, username: "123456", passwordFile: secrets/mimir-password }'));
    const c2 = load(withUpstream('auth: { type: sigv4, region: eu-west-1, accessKeyId: AKIA, secretAccessKey: "${S}" }'), { S: 'aws-secret-value' });
    for (const text of [JSON.stringify(c), inspect(c, { depth: 10 }), JSON.stringify(c2), inspect(c2, { depth: 10 })]) {
      expect(text).not.toContain('file-password');
      expect(text).not.toContain('aws-secret-value');
    }
    expect(JSON.stringify(c.upstreams[0]!.auth)).toMatch(/"username":"123456"/);
    // A rotated secret still shows as an upstreams change (restart needed), the same one does not.
    expect(restartRequiredChanges(c, load(withUpstream('auth: { type: basic, username: "123456", passwordFile: secrets/mimir-password }')))).toEqual([]);
    writeFileSync(join(dir, 'secrets', 'rotated'), 'new-password\n');
    expect(restartRequiredChanges(c, load(withUpstream('auth: { type: basic, username: "123456", passwordFile: secrets/rotated }')))).toEqual(['upstreams']);
  });
});
