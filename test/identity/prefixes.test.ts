// Per-provider groupsPrefix / usersPrefix: every subject a provider yields is put in its
// namespace (groups; sub and username) by the Authenticator, whatever the source: JWT
// claims, introspection answers, static API-key and basic-auth subjects, certificates.
// Without prefixes nothing changes.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startJwksServer, type JwksServer } from '../../e2e/harness/jwks-server.ts';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { parseConfig } from '../../src/config/load.ts';
import { mtlsProviderSchema, providerSchema } from '../../src/config/schema.ts';
import { Authenticator, UNDECIDED, type AuthRequest } from '../../src/identity/authenticator.ts';
import { MtlsSource } from '../../src/identity/mtls.ts';
import { SubjectPrefixer } from '../../src/identity/prefix.ts';
import { hashSecret } from '../../src/identity/secrets.ts';
import type { Subject } from '../../src/policy/decision.ts';
import { startCannedIntrospection, type CannedIntrospection } from './canned-introspection.ts';

const API_KEY = 'lbac_prefix-key-0123456789abcdefghijklmnop';
const later = () => Math.floor(Date.now() / 1000) + 3600;

let idp: TestIssuer;
let jwks: JwksServer;
let jwksUp = true;
let introspection: CannedIntrospection;
let keyHash: string;
let passwordHash: string;

beforeAll(async () => {
  idp = await createTestIssuer({ issuer: 'https://partner.test', audience: 'lbac-gateway', alg: 'ES256' });
  jwks = await startJwksServer(() => (jwksUp ? readFileSync(idp.jwksPath) : undefined));
  introspection = await startCannedIntrospection({
    'opaque-user': () => ({ active: true, sub: 'u-intro', preferred_username: 'ivy', groups: ['team-a', 'ops'], aud: 'gw', exp: later() }),
    'opaque-machine': () => ({ active: true, client_id: 'batch-job', aud: 'gw', exp: later() }),
  });
  keyHash = await hashSecret(API_KEY, { N: 1024 });
  passwordHash = await hashSecret('pw-bob', { N: 1024 });
});

afterAll(async () => {
  idp?.cleanup();
  await jwks?.close();
  introspection?.close();
});

/** A config with these providers (YAML flow mappings), and the authenticator built from it as serve builds it. */
function config(...providers: string[]) {
  return parseConfig(
    `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
${providers.map((p) => `    - ${p}`).join('\n')}
teams: { a: { groups: [team-a], selectors: [{ namespace: a }] } }
`,
    { env: {} },
  );
}

const bearer = (t: string): AuthRequest => ({ headers: { authorization: `Bearer ${t}` } });
const basic = (user: string, pw: string): AuthRequest => ({ headers: { authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}` } });

const jwt = (extra = '') => `{ type: jwt, jwksUrl: "${jwks.url}", issuer: "https://partner.test", audience: lbac-gateway, algorithms: [ES256]${extra} }`;
const apikey = (extra = '') => `{ type: apikey, keys: [{ name: ci, hash: "${keyHash}", subject: { sub: ci-bot, groups: [team-a] } }]${extra} }`;
const basicUsers = (extra = '') => `{ type: basic, users: [{ username: bob, hash: "${passwordHash}", subject: { groups: [team-b] } }]${extra} }`;
const intro = (extra = '') => `{ type: introspection, introspectionUrl: "${introspection.url}", clientId: gw, clientSecret: s, audience: [gw]${extra} }`;

describe('groupsPrefix and usersPrefix', () => {
  it('jwt: groups, sub and username carry the prefixes; email, roles, issuer and the raw claims do not', async () => {
    const auth = await Authenticator.fromConfig(config(jwt(', groupsPrefix: "partner:", usersPrefix: "partner-user:", claims: { trustUsername: true }')));
    const req = bearer(await idp.mint({ sub: 'u-1', preferred_username: 'pat', email: 'pat@partner.test', groups: ['team-a', 'ops'], roles: ['viewer'] }));
    const s = await auth.authenticate(req);
    expect(s).toMatchObject({
      sub: 'partner-user:u-1',
      username: 'partner-user:pat',
      usernameTrusted: true,
      email: 'pat@partner.test',
      groups: ['partner:team-a', 'partner:ops'],
      roles: ['viewer'],
      issuer: 'https://partner.test',
      auth: 'jwt',
    });
    // Claims-driven mode and custom policies read the claims as the provider sent them.
    expect(s.claims).toMatchObject({ sub: 'u-1', groups: ['team-a', 'ops'] });
    expect(Object.isFrozen(s) && Object.isFrozen(s.groups)).toBe(true);
    // The token seen again (cached by the source, answered by peek) is the same prefixed Subject object:
    // caches keyed by the Subject instance (decisions, audit JSON) keep working.
    expect(auth.peek(req)).toBe(s);
    expect(await auth.authenticate(req)).toBe(s);
  });

  it('jwt without prefixes: values unchanged; one prefix alone changes only its part', async () => {
    const claims = { sub: 'u-2', preferred_username: 'quinn', groups: ['team-a'] };
    const none = await (await Authenticator.fromConfig(config(jwt()))).authenticate(bearer(await idp.mint(claims)));
    expect(none).toMatchObject({ sub: 'u-2', username: 'quinn', groups: ['team-a'] });
    const groupsOnly = await (await Authenticator.fromConfig(config(jwt(', groupsPrefix: "p:"')))).authenticate(bearer(await idp.mint(claims)));
    expect(groupsOnly).toMatchObject({ sub: 'u-2', username: 'quinn', groups: ['p:team-a'] });
    const usersOnly = await (await Authenticator.fromConfig(config(jwt(', usersPrefix: "p:"')))).authenticate(bearer(await idp.mint(claims)));
    expect(usersOnly).toMatchObject({ sub: 'p:u-2', username: 'p:quinn', groups: ['team-a'] });
  });

  it('apikey and basic (static subjects written in the config): groups and sub prefixed; unprefixed without', async () => {
    const auth = await Authenticator.fromConfig(config(apikey(', groupsPrefix: "ci:", usersPrefix: "ci:"'), basicUsers(', groupsPrefix: "local:", usersPrefix: "local:"')));
    const key = await auth.authenticate(bearer(API_KEY));
    expect(key).toMatchObject({ sub: 'ci:ci-bot', username: 'ci:ci', groups: ['ci:team-a'], auth: 'apikey' });
    expect(auth.peek(bearer(API_KEY))).toBe(key);
    const user = await auth.authenticate(basic('bob', 'pw-bob'));
    expect(user).toMatchObject({ sub: 'local:bob', username: 'local:bob', groups: ['local:team-b'], auth: 'basic', usernameTrusted: true });
    expect(auth.peek(basic('bob', 'pw-bob'))).toBe(user);

    const plain = await Authenticator.fromConfig(config(apikey(), basicUsers()));
    expect(await plain.authenticate(bearer(API_KEY))).toMatchObject({ sub: 'ci-bot', username: 'ci', groups: ['team-a'] });
    expect(await plain.authenticate(basic('bob', 'pw-bob'))).toMatchObject({ sub: 'bob', username: 'bob', groups: ['team-b'] });
  });

  it('introspection: the groups and sub of the answer (and a client-credentials token\'s client_id as sub) are prefixed', async () => {
    const auth = await Authenticator.fromConfig(config(intro(', groupsPrefix: "idp:", usersPrefix: "idp:"')));
    expect(await auth.authenticate(bearer('opaque-user'))).toMatchObject({ sub: 'idp:u-intro', username: 'idp:ivy', groups: ['idp:team-a', 'idp:ops'], auth: 'introspection' });
    expect(await auth.authenticate(bearer('opaque-machine'))).toMatchObject({ sub: 'idp:batch-job', groups: [] });
    const plain = await Authenticator.fromConfig(config(intro()));
    expect(await plain.authenticate(bearer('opaque-user'))).toMatchObject({ sub: 'u-intro', username: 'ivy', groups: ['team-a', 'ops'] });
  });

  it('mtls: OU groups (ouAsGroups) and mapping groups are prefixed; mapping keys name the certificate\'s own subject', async () => {
    const source = new MtlsSource(mtlsProviderSchema.parse({ type: 'mtls', ouAsGroups: true, mapping: [{ subject: 'svc', groups: ['mapped'] }] }));
    const auth = new Authenticator([source], [{ groupsPrefix: 'cert:', usersPrefix: 'cert:' }]);
    const tls: AuthRequest['tls'] = {
      authorized: true,
      error: undefined,
      certificate: { cn: 'svc', ou: ['team-a'], o: [], email: [], dns: [], uri: [], sanEmail: [], issuerCN: 'CA', serialNumber: '01', fingerprint256: 'AA', validTo: new Date(Date.now() + 3_600_000).toUTCString() },
    };
    const s = await auth.authenticate({ headers: {}, tls });
    expect(s).toMatchObject({ sub: 'cert:svc', username: 'cert:svc', groups: ['cert:team-a', 'cert:mapped'], auth: 'mtls' });
    expect(auth.peek({ headers: {}, tls })).toBe(s);
  });

  it('each source keeps its own prefixes, also when introspection is moved after the local sources', async () => {
    const auth = await Authenticator.fromConfig(config(intro(', groupsPrefix: "idp:"'), apikey(', groupsPrefix: "ci:"'), jwt()));
    expect((await auth.authenticate(bearer('opaque-user'))).groups).toEqual(['idp:team-a', 'idp:ops']);
    expect((await auth.authenticate(bearer(API_KEY))).groups).toEqual(['ci:team-a']);
    expect((await auth.authenticate(bearer(await idp.mint({ sub: 'u-3', groups: ['team-a'] })))).groups).toEqual(['team-a']);
  });

  it('a reload that changes only the prefixes keeps the source (and its key set) and applies the new prefixes', async () => {
    jwksUp = true;
    const first = await Authenticator.fromConfig(config(jwt(', groupsPrefix: "old:"')));
    const token = await idp.mint({ sub: 'u-4', groups: ['team-a'] });
    expect((await first.authenticate(bearer(token))).groups).toEqual(['old:team-a']);
    jwksUp = false;
    try {
      const reloaded = await Authenticator.fromConfig(config(jwt(', groupsPrefix: "new:", usersPrefix: "new:"')), first);
      await reloaded.refreshKeptSources();
      // Verified again with the key set the kept source holds (the provider is down).
      expect(await reloaded.authenticate(bearer(token))).toMatchObject({ sub: 'new:u-4', groups: ['new:team-a'] });
    } finally {
      jwksUp = true;
    }
  });

  it('config: both keys on every provider type; an empty prefix or one with control characters is refused', () => {
    const providers = [
      { type: 'jwt', jwksFile: 'j.json', issuer: 'i', audience: 'a' },
      { type: 'oidc', issuer: 'https://idp.test', audience: 'a' },
      { type: 'introspection', introspectionUrl: 'https://idp.test/i', clientId: 'gw', clientSecret: 's' },
      { type: 'grafana', url: 'https://grafana.test' },
      { type: 'apikey', keys: [{ name: 'k', hash: keyHash }] },
      { type: 'basic', users: [{ username: 'u', hash: passwordHash }] },
      { type: 'mtls' },
    ];
    for (const p of providers) {
      expect(providerSchema.parse({ ...p, groupsPrefix: 'x:', usersPrefix: 'y:' }), p.type).toMatchObject({ groupsPrefix: 'x:', usersPrefix: 'y:' });
      expect(providerSchema.parse(p), p.type).not.toHaveProperty('groupsPrefix');
      expect(providerSchema.safeParse({ ...p, groupsPrefix: '' }).success, p.type).toBe(false);
      expect(providerSchema.safeParse({ ...p, usersPrefix: 'a\nb' }).success, p.type).toBe(false);
    }
  });

  it('SubjectPrefixer without prefixes passes the subject through as it is', () => {
    const s: Subject = { sub: 'u', groups: ['g'], roles: [], auth: 'x', claims: {} };
    expect(new SubjectPrefixer().apply(s)).toBe(s);
    expect(new SubjectPrefixer({ groupsPrefix: undefined, usersPrefix: undefined }).apply(s)).toBe(s);
    expect(new SubjectPrefixer({ usersPrefix: 'p:' }).apply(s)).toEqual({ ...s, sub: 'p:u' });
  });
});

describe('UNDECIDED stays undecided', () => {
  it('peek is not prefixed into an answer', async () => {
    const auth = await Authenticator.fromConfig(config(jwt(', groupsPrefix: "partner:"')));
    expect(auth.peek(bearer(await idp.mint({ sub: 'u-5' })))).toBe(UNDECIDED);
  });
});
