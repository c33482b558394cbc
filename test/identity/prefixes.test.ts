// Per-provider groupsPrefix / usersPrefix: every subject a provider yields is put in its
// namespace (groups; sub and username) by the Authenticator, whatever the source: JWT
// claims, introspection answers, static API-key and basic-auth subjects, certificates.
// Without prefixes nothing changes. Every prefix reserves its namespace: another provider's
// groups there are dropped, its subjects whose sub lies there refused.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startJwksServer, type JwksServer } from '../../e2e/harness/jwks-server.ts';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { parseConfig } from '../../src/config/load.ts';
import { mtlsProviderSchema, providerSchema } from '../../src/config/schema.ts';
import { Authenticator, UNDECIDED, type AuthRequest, type IdentitySource } from '../../src/identity/authenticator.ts';
import { InvalidTokenError } from '../../src/identity/jwt.ts';
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

describe('every prefix reserves its namespace for its provider', () => {
  /** A log that keeps what is warned. */
  const recording = () => {
    const lines: { fields: Record<string, unknown>; message: string }[] = [];
    return { lines, warn: (fields: object, message: string) => void lines.push({ fields: fields as Record<string, unknown>, message }) };
  };
  /** A source that answers this subject (the same object every time, as a cache would). */
  const fixed = (name: string, subject: Subject): IdentitySource => ({ name, authenticate: async () => subject, peek: () => subject });
  const subject = (over: Partial<Subject> = {}): Subject => ({ sub: 'u', groups: [], roles: [], auth: 'x', claims: {}, ...over });

  it('an unprefixed provider\'s groups in the "partner:" namespace are dropped, once per token, and logged with the provider index and count', async () => {
    const log = recording();
    const auth = await Authenticator.fromConfig(config(jwt(), apikey(', groupsPrefix: "partner:", usersPrefix: "partner:"')), undefined, log);
    const req = bearer(await idp.mint({ sub: 'u-6', groups: ['partner:ci', 'team-a', 'partner:'] }));
    const s = await auth.authenticate(req);
    expect(s).toMatchObject({ sub: 'u-6', groups: ['team-a'] });
    expect(Object.isFrozen(s) && Object.isFrozen(s.groups)).toBe(true);
    // The raw claims stay as the provider sent them.
    expect(s.claims['groups']).toEqual(['partner:ci', 'team-a', 'partner:']);
    // Seen again (peek, authenticate): the same filtered Subject, checked and logged once.
    expect(auth.peek(req)).toBe(s);
    expect(await auth.authenticate(req)).toBe(s);
    expect(log.lines).toEqual([{ fields: { provider: 0, droppedGroups: 2, droppedUsername: false }, message: expect.stringMatching(/dropped/) }]);
    // The partner's own subjects keep their names.
    expect(await auth.authenticate(bearer(API_KEY))).toMatchObject({ sub: 'partner:ci-bot', groups: ['partner:team-a'] });
  });

  it('an unprefixed provider\'s sub in the "partner:" namespace is refused (401) however often it comes, and counted as rejected', async () => {
    const log = recording();
    const auth = await Authenticator.fromConfig(config(jwt(), apikey(', usersPrefix: "partner:"')), undefined, log);
    const req = bearer(await idp.mint({ sub: 'partner:ci-bot', groups: ['team-a'] }));
    for (let n = 0; n < 2; n++) {
      const refused = await auth.authenticate(req).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(InvalidTokenError);
      expect(refused).toMatchObject({ code: 'unauthenticated', status: 401, message: expect.stringMatching(/namespace \("partner:"\)/) });
      // peek answers no errors: undecided, so authenticate refuses.
      expect(auth.peek(req)).toBe(UNDECIDED);
    }
    expect(auth.stats).toMatchObject({ accepted: {}, rejected: 2 });
    expect(log.lines).toEqual([{ fields: { provider: 0, namespace: 'partner:', reservedBy: [1] }, message: expect.stringMatching(/refused/) }]);
    // A sub outside it is accepted; the partner's own key is its own.
    expect(await auth.authenticate(bearer(await idp.mint({ sub: 'partner-x' })))).toMatchObject({ sub: 'partner-x' });
    expect(await auth.authenticate(bearer(API_KEY))).toMatchObject({ sub: 'partner:ci-bot' });
  });

  it('the refusal fails closed: no later source is asked', async () => {
    const auth = new Authenticator([fixed('plain', subject({ sub: 'partner:x' })), fixed('partner', subject({ sub: 'x' }))], [undefined, { usersPrefix: 'partner:' }]);
    await expect(auth.authenticate(bearer('t'))).rejects.toMatchObject({ status: 401 });
  });

  it('a username in another provider\'s users namespace is dropped (with usernameTrusted); the subject stays', async () => {
    const log = recording();
    const auth = await Authenticator.fromConfig(config(jwt(', claims: { trustUsername: true }'), apikey(', usersPrefix: "partner:"')), undefined, log);
    const s = await auth.authenticate(bearer(await idp.mint({ sub: 'u-7', preferred_username: 'partner:ci-bot', groups: ['team-a'] })));
    expect(s).toMatchObject({ sub: 'u-7', groups: ['team-a'] });
    expect(s).not.toHaveProperty('username');
    expect(s).not.toHaveProperty('usernameTrusted');
    expect(log.lines).toEqual([{ fields: { provider: 0, droppedGroups: 0, droppedUsername: true }, message: expect.any(String) }]);
    expect(await auth.authenticate(bearer(await idp.mint({ sub: 'u-8', preferred_username: 'pat' })))).toMatchObject({ username: 'pat', usernameTrusted: true });
  });

  it('providers with the same prefix share their namespace', async () => {
    const log = recording();
    const auth = await Authenticator.fromConfig(config(jwt(', groupsPrefix: "partner:", usersPrefix: "partner:"'), apikey(', groupsPrefix: "partner:", usersPrefix: "partner:"')), undefined, log);
    expect(await auth.authenticate(bearer(await idp.mint({ sub: 'ci-bot', groups: ['team-a', 'ci'] })))).toMatchObject({ sub: 'partner:ci-bot', groups: ['partner:team-a', 'partner:ci'] });
    expect(await auth.authenticate(bearer(API_KEY))).toMatchObject({ sub: 'partner:ci-bot', groups: ['partner:team-a'] });
    expect(log.lines).toEqual([]);
  });

  it('nested prefixes "p:" and "p:q:": the inner namespace is carved out of the outer one', async () => {
    const auth = new Authenticator(
      [fixed('outer', subject({ sub: 'u', username: 'q:name', usernameTrusted: true, groups: ['q:x', 'y', 'q'] })), fixed('inner', subject({ sub: 'u', groups: ['x'] }))],
      [{ groupsPrefix: 'p:', usersPrefix: 'p:' }, { groupsPrefix: 'p:q:', usersPrefix: 'p:q:' }],
    );
    // The outer provider's "q:x" would be "p:q:x", the inner one's: dropped; its username too.
    const outer = await auth.authenticate(bearer('t'));
    expect(outer).toEqual({ sub: 'p:u', groups: ['p:y', 'p:q'], roles: [], auth: 'x', claims: {} });
    // The inner provider lies inside the outer's namespace by configuration: left alone (check-config warns).
    const inner = new Authenticator([fixed('inner', subject({ sub: 'u', groups: ['x'] })), fixed('outer', subject())], [{ groupsPrefix: 'p:q:', usersPrefix: 'p:q:' }, { groupsPrefix: 'p:', usersPrefix: 'p:' }]);
    expect(await inner.authenticate(bearer('t'))).toMatchObject({ sub: 'p:q:u', groups: ['p:q:x'] });
    // An outer sub that would land in the inner namespace is refused.
    const refusing = new Authenticator([fixed('outer', subject({ sub: 'q:u' })), fixed('inner', subject())], [{ usersPrefix: 'p:' }, { usersPrefix: 'p:q:' }]);
    await expect(refusing.authenticate(bearer('t'))).rejects.toMatchObject({ status: 401, message: expect.stringMatching(/"p:q:"/) });
    // A third level: "p:" loses both inner namespaces, "p:q:" only "p:q:r:".
    const three = SubjectPrefixer.forProviders([{ groupsPrefix: 'p:' }, { groupsPrefix: 'p:q:' }, { groupsPrefix: 'p:q:r:' }]);
    const groups = subject({ groups: ['x', 'q:x', 'q:r:x', 'r:x'] });
    expect(three.map((p) => p.apply(groups).groups)).toEqual([['p:x', 'p:r:x'], ['p:q:x', 'p:q:q:x', 'p:q:q:r:x'], ['p:q:r:x', 'p:q:r:q:x', 'p:q:r:q:r:x', 'p:q:r:r:x']]);
  });

  it('no prefixes anywhere: the source\'s Subject object is handed on unchanged; an unprefixed provider with nothing to drop too', async () => {
    const a = subject({ sub: 'partner:x', groups: ['partner:ci'] });
    const b = subject({ sub: 'y', groups: ['g'] });
    const plain = new Authenticator([fixed('a', a), fixed('b', b)]);
    expect(await plain.authenticate(bearer('t'))).toBe(a);
    expect(plain.peek(bearer('t'))).toBe(a);
    for (const p of SubjectPrefixer.forProviders([undefined, {}, { groupsPrefix: undefined }])) expect(p.active).toBe(false);
    const mixed = new Authenticator([fixed('b', b), fixed('partner', a)], [undefined, { groupsPrefix: 'partner:', usersPrefix: 'partner:' }]);
    expect(await mixed.authenticate(bearer('t'))).toBe(b);
    expect(mixed.peek(bearer('t'))).toBe(b);
  });

  it('the reserved namespaces follow the config: a reload that adds a prefix starts dropping, one that removes it stops', async () => {
    const token = await idp.mint({ sub: 'u-9', groups: ['partner:ci', 'team-a'] });
    const before = await Authenticator.fromConfig(config(jwt(), apikey()));
    expect((await before.authenticate(bearer(token))).groups).toEqual(['partner:ci', 'team-a']);
    const reserved = await Authenticator.fromConfig(config(jwt(), apikey(', groupsPrefix: "partner:"')), before);
    await reserved.refreshKeptSources();
    expect((await reserved.authenticate(bearer(token))).groups).toEqual(['team-a']);
    const released = await Authenticator.fromConfig(config(jwt(), apikey()), reserved);
    await released.refreshKeptSources();
    expect((await released.authenticate(bearer(token))).groups).toEqual(['partner:ci', 'team-a']);
  });
});
