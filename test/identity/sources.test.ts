// Identity sources against a real oidc-provider over real HTTP (in-process, loopback).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GATEWAY_CLIENT, JWT_AUDIENCE, OPAQUE_RESOURCE, startIdp, type TestIdp } from '../../e2e/harness/idp.ts';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { apiKeyProviderSchema, basicProviderSchema, grafanaProviderSchema, introspectionProviderSchema, jwtProviderSchema, oidcProviderSchema } from '../../src/config/schema.ts';
import { GatewayError } from '../../src/errors.ts';
import { Authenticator, createSource } from '../../src/identity/authenticator.ts';
import { hashSecret } from '../../src/identity/secrets.ts';
import type { IdentitySource } from '../../src/identity/source.ts';

let idp: TestIdp;
let grafana: TestIssuer;
let grafanaServer: Server;
let grafanaUrl: string;

beforeAll(async () => {
  idp = await startIdp();
  idp.setAccount('u-alice', { preferred_username: 'alice', groups: ['team-a'] });
  grafana = await createTestIssuer({ issuer: 'placeholder', audience: 'org:1', alg: 'ES256' });
  grafanaServer = createServer((req, res) => {
    if (req.url === '/api/signing-keys/keys') res.setHeader('content-type', 'application/json').end(readFileSync(grafana.jwksPath));
    else if (req.url === '/introspect' && req.method === 'POST') {
      // A canned RFC 7662 endpoint: the token names the answer's time-claim shapes.
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const token = new URLSearchParams(body).get('token') ?? '';
        const later = Math.floor(Date.now() / 1000) + 3600;
        const answers: Record<string, Record<string, unknown>> = {
          numeric: { exp: later },
          'string-exp': { exp: String(later - 7200) },
          'string-nbf': { exp: later, nbf: 'soon' },
          'null-iat': { exp: later, iat: null },
        };
        res.setHeader('content-type', 'application/json').end(JSON.stringify({ active: true, sub: 'machine', ...(answers[token] ?? {}) }));
      });
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => grafanaServer.listen(0, '127.0.0.1', () => r()));
  grafanaUrl = `http://127.0.0.1:${(grafanaServer.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await idp?.stop();
  grafanaServer?.close();
  grafana?.cleanup();
});

const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

async function status(auth: Authenticator, req: { headers: Record<string, string | string[]> }): Promise<number> {
  try {
    await auth.authenticate(req);
    return 200;
  } catch (e) {
    if (e instanceof GatewayError) return e.status;
    throw e;
  }
}

describe('oidc source (discovery → JWKS)', () => {
  let auth: Authenticator;
  beforeAll(async () => {
    auth = new Authenticator([await createSource(oidcProviderSchema.parse({ type: 'oidc', issuer: idp.issuer, audience: JWT_AUDIENCE, jwks: { cooldownSeconds: 1 } }))]);
  });

  it('verifies a JWT access token with keys found through discovery and maps groups', async () => {
    const t = await idp.mintAccessToken({ sub: 'u-alice', claims: { groups: ['team-a'], preferred_username: 'alice' } });
    const s = await auth.authenticate(bearer(t));
    expect(s).toMatchObject({ sub: 'u-alice', username: 'alice', groups: ['team-a'], auth: 'oidc', issuer: idp.issuer });
    expect(s.usernameTrusted).toBeUndefined();
  });

  it('verifies a client_credentials token from the token endpoint', async () => {
    const s = await auth.authenticate(bearer(await idp.clientCredentials()));
    expect(s).toMatchObject({ sub: 'batch-job', groups: [] });
  });

  it('follows key rotation with one JWKS fetch, and unknown kids do not hammer the JWKS', async () => {
    await auth.authenticate(bearer(await idp.mintAccessToken({ sub: 'u-alice' })));
    idp.resetCounts();
    const kid = await idp.rotateKeys();
    const t = await idp.mintAccessToken({ sub: 'u-alice', claims: { groups: ['rotated'] } });
    expect(JSON.parse(Buffer.from(t.split('.')[0]!, 'base64url').toString())).toMatchObject({ kid });
    await new Promise((r) => setTimeout(r, 1100)); // past the 1 s cooldown
    expect(await auth.authenticate(bearer(t))).toMatchObject({ groups: ['rotated'] });
    expect(idp.requests.jwks).toBe(1);
    // A burst of tokens with unknown kids: at most one refetch per cooldown.
    const forged = await Promise.all(Array.from({ length: 20 }, (_, i) => idp.sign({ sub: 'x' }, { key: 'foreign', kid: `nope-${i}` })));
    const codes = await Promise.all(forged.map((f) => status(auth, bearer(f))));
    expect(new Set(codes)).toEqual(new Set([401]));
    expect(idp.requests.jwks).toBeLessThanOrEqual(2);
  });

  it.each([
    ['alg none', () => idp.sign({ sub: 'x' }, { alg: 'none' })],
    ['HS256 keyed with the RSA public key', () => idp.sign({ sub: 'x' }, { alg: 'HS256' })],
    ['expired', () => idp.sign({ sub: 'x', exp: Math.floor(Date.now() / 1000) - 600 })],
    ['nbf in the future', () => idp.sign({ sub: 'x', nbf: Math.floor(Date.now() / 1000) + 600 })],
    ['iat in the future', () => idp.sign({ sub: 'x', iat: Math.floor(Date.now() / 1000) + 600 })],
    ['wrong iss', () => idp.sign({ sub: 'x', iss: 'https://evil.example' })],
    ['wrong aud', () => idp.sign({ sub: 'x', aud: 'another-api' })],
    ['foreign key with the provider kid', () => idp.sign({ sub: 'x' }, { key: 'foreign' })],
    ['jku pointing at an attacker', () => idp.sign({ sub: 'x' }, { key: 'foreign', kid: 'evil', header: { jku: 'http://127.0.0.1:1/jwks' } })],
    ['x5u pointing at an attacker', () => idp.sign({ sub: 'x' }, { key: 'foreign', kid: 'evil', header: { x5u: 'http://127.0.0.1:1/cert.pem' } })],
    ['tampered payload', async () => {
      const [h, , sig] = (await idp.sign({ sub: 'x', groups: ['viewer'] })).split('.');
      return `${h}.${Buffer.from(JSON.stringify({ sub: 'x', groups: ['admins'], iss: idp.issuer, aud: JWT_AUDIENCE, exp: 9999999999 })).toString('base64url')}.${sig}`;
    }],
    ['oversized', async () => `${'a'.repeat(20_000)}.b.c`],
    ['no exp', () => idp.sign({ sub: 'x', exp: undefined })],
  ])('%s → 401', async (_n, make) => {
    expect(await status(auth, bearer(await make()))).toBe(401);
  });
});

describe('oidc source with authorizedParties', () => {
  it('accepts a token issued to a listed client (azp) and refuses one issued to another (401)', async () => {
    const auth = new Authenticator([await createSource(oidcProviderSchema.parse({ type: 'oidc', issuer: idp.issuer, audience: JWT_AUDIENCE, authorizedParties: ['grafana'] }))]);
    expect(await status(auth, bearer(await idp.sign({ sub: 'x', azp: 'grafana' })))).toBe(200);
    expect(await status(auth, bearer(await idp.sign({ sub: 'x', azp: 'someone-else' })))).toBe(401);
  });
});

describe('oidc source when the provider is unreachable', () => {
  it('answers 503 (never anonymous) until discovery succeeds, then recovers', async () => {
    idp.setAvailable(false);
    try {
      const src = await createSource(oidcProviderSchema.parse({ type: 'oidc', issuer: idp.issuer, audience: JWT_AUDIENCE, discoveryRetrySeconds: 1, timeoutMs: 1000 }));
      const auth = new Authenticator([src]);
      const t = await idp.mintAccessToken({ sub: 'u-alice' });
      const e = await auth.authenticate(bearer(t)).catch((x: unknown) => x);
      expect(e).toMatchObject({ code: 'identity_unavailable', status: 503 });
      expect(auth.stats.unavailable).toBe(1);
      idp.setAvailable(true);
      await new Promise((r) => setTimeout(r, 1100));
      expect(await auth.authenticate(bearer(t))).toMatchObject({ sub: 'u-alice' });
    } finally {
      idp.setAvailable(true);
    }
  });
});

describe('introspection source (RFC 7662) with userinfo enrichment', () => {
  let src: IdentitySource;
  let auth: Authenticator;
  beforeAll(async () => {
    src = await createSource(
      introspectionProviderSchema.parse({ type: 'introspection', issuer: idp.issuer, clientId: GATEWAY_CLIENT.id, clientSecret: GATEWAY_CLIENT.secret, userinfo: {}, negativeCacheTtlSeconds: 30 }),
    );
    auth = new Authenticator([src]);
  });

  it('accepts an active opaque token; groups come from userinfo; both results are cached', async () => {
    const t = await idp.mintAccessToken({ sub: 'u-alice', format: 'opaque' });
    idp.resetCounts();
    const s = await auth.authenticate(bearer(t));
    expect(s).toMatchObject({ sub: 'u-alice', username: 'alice', groups: ['team-a'], auth: 'introspection' });
    expect(s.usernameTrusted).toBeUndefined();
    expect(await auth.authenticate(bearer(t))).toBe(s);
    expect(idp.requests).toMatchObject({ introspection: 1, userinfo: 1 });
  });

  it('active:false → 401, cached briefly (no second call)', async () => {
    idp.resetCounts();
    expect(await status(auth, bearer('not-a-real-token-abcdef'))).toBe(401);
    expect(await status(auth, bearer('not-a-real-token-abcdef'))).toBe(401);
    expect(idp.requests.introspection).toBe(1);
  });

  it('client_credentials opaque tokens: the client is the subject (no userinfo for machine tokens)', async () => {
    const src2 = await createSource(introspectionProviderSchema.parse({ type: 'introspection', issuer: idp.issuer, clientId: GATEWAY_CLIENT.id, clientSecret: GATEWAY_CLIENT.secret, clientAuth: 'client_secret_post' }));
    const s = await new Authenticator([src2]).authenticate(bearer(await idp.clientCredentials(OPAQUE_RESOURCE)));
    expect(s).toMatchObject({ sub: 'batch-job', auth: 'introspection' });
  });

  it('audience is enforced when configured', async () => {
    const src3 = await createSource(introspectionProviderSchema.parse({ type: 'introspection', introspectionUrl: `${idp.issuer}/token/introspection`, clientId: GATEWAY_CLIENT.id, clientSecret: GATEWAY_CLIENT.secret, audience: 'somebody-else' }));
    expect(await status(new Authenticator([src3]), bearer(await idp.clientCredentials(OPAQUE_RESOURCE)))).toBe(401);
  });

  it('wrong gateway client secret → 503 (configuration problem), not 401', async () => {
    const bad = await createSource(introspectionProviderSchema.parse({ type: 'introspection', introspectionUrl: `${idp.issuer}/token/introspection`, clientId: GATEWAY_CLIENT.id, clientSecret: 'wrong' }));
    expect(await status(new Authenticator([bad]), bearer(await idp.mintAccessToken({ sub: 'u-alice', format: 'opaque' })))).toBe(503);
  });

  it('provider down → 503 for an uncached token', async () => {
    const t = await idp.mintAccessToken({ sub: 'u-alice', format: 'opaque' });
    idp.setAvailable(false);
    try {
      expect(await status(auth, bearer(t))).toBe(503);
    } finally {
      idp.setAvailable(true);
    }
  });

  it('JWT-shaped tokens are left to JWT sources (tokens: opaque)', async () => {
    const e = await auth.authenticate(bearer(await idp.mintAccessToken({ sub: 'u-alice' }))).catch((x: unknown) => x);
    expect(e).toMatchObject({ status: 401, message: expect.stringMatching(/no identity source/) });
  });
});

describe('grafana ID token source', () => {
  let auth: Authenticator;
  beforeAll(async () => {
    auth = new Authenticator([await createSource(grafanaProviderSchema.parse({ type: 'grafana', url: grafanaUrl, orgs: [1, 3] }))]);
  });
  const idToken = (aud: string | string[], extra: Record<string, unknown> = {}) =>
    grafana.mint({ sub: 'user:7', username: 'alice', email: 'alice@example.com', ...extra }, { issuer: `${grafanaUrl}/`, audience: aud });

  it('accepts a Grafana-signed ES256 ID token and exposes the org', async () => {
    const s = await auth.authenticate({ headers: { 'x-grafana-id': await idToken('org:3') } });
    expect(s).toMatchObject({ sub: 'user:7', username: 'alice', auth: 'grafana', grafanaOrg: 3 });
    expect(s.claims['grafana_org']).toBe(3);
  });
  it('a claims block that leaves username out (e.g. only trustUsername) still reads Grafana\'s "username" claim', async () => {
    const trusting = new Authenticator([await createSource(grafanaProviderSchema.parse({ type: 'grafana', url: grafanaUrl, orgs: [3], claims: { trustUsername: true } }))]);
    const s = await trusting.authenticate({ headers: { 'x-grafana-id': await idToken('org:3', { preferred_username: 'mallory' }) } });
    expect(s).toMatchObject({ sub: 'user:7', username: 'alice', usernameTrusted: true });
  });
  it('rejects an ID token for another org', async () => {
    expect(await status(auth, { headers: { 'x-grafana-id': await idToken('org:2') } })).toBe(401);
    expect(await status(auth, { headers: { 'x-grafana-id': await idToken(['org:1', 'org:3']) } })).toBe(401);
  });
  it('rejects another issuer, RS/HS confusion and unsigned tokens', async () => {
    expect(await status(auth, { headers: { 'x-grafana-id': await grafana.mint({ sub: 'user:7' }, { issuer: 'http://other-grafana/', audience: 'org:1' }) } })).toBe(401);
    expect(await status(auth, { headers: { 'x-grafana-id': await grafana.mint({ sub: 'user:7' }, { issuer: grafanaUrl, audience: 'org:1', alg: 'none' }) } })).toBe(401);
    expect(await status(auth, { headers: { 'x-grafana-id': await grafana.mint({ sub: 'user:7' }, { issuer: grafanaUrl, audience: 'org:1', alg: 'HS256' }) } })).toBe(401);
  });
  it('no header and no Authorization → 401 missing', async () => {
    expect(await auth.authenticate({ headers: {} }).catch((e: unknown) => e)).toMatchObject({ status: 401, missing: true });
  });
  it('without authorizedParties any "azp" is accepted', async () => {
    expect(await status(auth, { headers: { 'x-grafana-id': await idToken('org:3', { azp: 'someone-else' }) } })).toBe(200);
  });
  it('authorizedParties: azp must be listed; without azp the sole audience (org:<id>) is the authorized party, as for jwt/oidc', async () => {
    const restricted = new Authenticator([await createSource(grafanaProviderSchema.parse({ type: 'grafana', url: grafanaUrl, orgs: [1, 3], authorizedParties: ['grafana-app', 'org:1'] }))]);
    const e = await restricted.authenticate({ headers: { 'x-grafana-id': await idToken('org:3', { azp: 'someone-else' }) } }).catch((x: unknown) => x);
    expect(e).toMatchObject({ status: 401, message: expect.stringMatching(/unexpected "azp" claim value/) });
    expect(await status(restricted, { headers: { 'x-grafana-id': await idToken('org:3', { azp: 'grafana-app' }) } })).toBe(200);
    expect(await status(restricted, { headers: { 'x-grafana-id': await idToken('org:3', { azp: 42 }) } })).toBe(401);
    // Grafana's own ID tokens carry no azp: the org audience is then the authorized party.
    expect(await status(restricted, { headers: { 'x-grafana-id': await idToken('org:3') } })).toBe(401);
    expect(await status(restricted, { headers: { 'x-grafana-id': await idToken('org:1') } })).toBe(200);
  });
  it('authorizedParties: an empty list or an empty id is a config error', () => {
    expect(grafanaProviderSchema.safeParse({ type: 'grafana', url: grafanaUrl, authorizedParties: [] }).success).toBe(false);
    expect(grafanaProviderSchema.safeParse({ type: 'grafana', url: grafanaUrl, authorizedParties: [''] }).success).toBe(false);
  });
});

describe('static API keys and basic-auth users', () => {
  let auth: Authenticator;
  const key = 'lbac_test-key-0123456789abcdefghijklmnopqrstuvwxyz';
  beforeAll(async () => {
    auth = new Authenticator([
      await createSource(apiKeyProviderSchema.parse({ type: 'apikey', keys: [{ name: 'ci', hash: await hashSecret(key, { N: 1024 }), subject: { groups: ['team-a'] } }, { name: 'other', hash: await hashSecret('other-key-xyz', { N: 1024 }) }] })),
      await createSource(apiKeyProviderSchema.parse({ type: 'apikey', header: 'X-API-Key', keys: [{ name: 'hdr', hash: await hashSecret('header-key', { N: 1024 }), subject: { sub: 'svc-1', groups: ['team-b'] } }] })),
      await createSource(basicProviderSchema.parse({ type: 'basic', users: [{ username: 'bob', hash: await hashSecret('pa:ss w0rd', { N: 1024 }), subject: { groups: ['team-b'], roles: ['viewer'] } }] })),
    ]);
  });
  it('an API key as a bearer token maps to its subject', async () => {
    expect(await auth.authenticate(bearer(key))).toMatchObject({ sub: 'ci', username: 'ci', usernameTrusted: true, groups: ['team-a'], auth: 'apikey', claims: { apikey: 'ci' } });
  });
  it('an API key in a configured header', async () => {
    expect(await auth.authenticate({ headers: { 'x-api-key': 'header-key' } })).toMatchObject({ sub: 'svc-1', groups: ['team-b'] });
  });
  it('a wrong key → 401', async () => {
    expect(await status(auth, bearer('lbac_wrong'))).toBe(401);
    expect(await status(auth, { headers: { 'x-api-key': 'nope' } })).toBe(401);
  });
  it('basic auth (password with ":" and spaces)', async () => {
    const b = (u: string, p: string) => ({ headers: { authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` } });
    expect(await auth.authenticate(b('bob', 'pa:ss w0rd'))).toMatchObject({ sub: 'bob', usernameTrusted: true, groups: ['team-b'], roles: ['viewer'], auth: 'basic' });
    expect(await status(auth, b('bob', 'wrong'))).toBe(401);
    expect(await status(auth, b('nobody', 'pa:ss w0rd'))).toBe(401);
    expect(await status(auth, { headers: { authorization: 'Basic !!!' } })).toBe(401);
    expect(await status(auth, { headers: { authorization: `Basic ${Buffer.from('no-colon').toString('base64')}` } })).toBe(401);
  });
  it('Basic is malformed when no basic source is configured', () => {
    expect(() => Authenticator.credentials({ authorization: 'Basic Ym9iOng=' }, false)).toThrow(/malformed/);
  });
});

describe('introspection answers whose time claims cannot be checked', () => {
  it('a non-numeric exp, nbf or iat is refused, not ignored (RFC 7662: NumericDate)', async () => {
    const src = await createSource(introspectionProviderSchema.parse({ type: 'introspection', introspectionUrl: `${grafanaUrl}/introspect`, clientId: 'c', clientSecret: 's' }));
    const auth = new Authenticator([src]);
    expect(await auth.authenticate(bearer('numeric'))).toMatchObject({ sub: 'machine', auth: 'introspection' });
    for (const t of ['string-exp', 'string-nbf', 'null-iat']) expect(await status(auth, bearer(t)), t).toBe(401);
  });
});

describe('credentials that must not reach the identity provider', () => {
  const key = 'lbac_local-key-0123456789abcdefghijklmnopqrstuvwxyz';
  let auth: Authenticator;
  beforeAll(async () => {
    // Introspection listed first, as in a config that puts the OAuth sources before machine clients.
    auth = new Authenticator([
      await createSource(introspectionProviderSchema.parse({ type: 'introspection', issuer: idp.issuer, clientId: GATEWAY_CLIENT.id, clientSecret: GATEWAY_CLIENT.secret })),
      await createSource(apiKeyProviderSchema.parse({ type: 'apikey', keys: [{ name: 'ci', hash: await hashSecret(key, { N: 1024 }), subject: { groups: ['team-a'] } }] })),
    ]);
  });
  it('an API key is judged locally first: never introspected, accepted while the provider is down', async () => {
    idp.resetCounts();
    expect(await auth.authenticate(bearer(key))).toMatchObject({ sub: 'ci', auth: 'apikey' });
    expect(await status(auth, bearer('lbac_unknown-key-0123456789'))).toBe(401);
    expect(idp.requests.introspection).toBe(0);
    idp.setAvailable(false);
    try {
      expect(await auth.authenticate(bearer(key))).toMatchObject({ sub: 'ci' });
    } finally {
      idp.setAvailable(true);
    }
    // An opaque token of the provider still goes to introspection.
    expect(await auth.authenticate(bearer(await idp.mintAccessToken({ sub: 'u-alice', format: 'opaque' })))).toMatchObject({ auth: 'introspection' });
    expect(idp.requests.introspection).toBe(1);
  });
  it('repeated Authorization headers are refused (Node keeps only the first in req.headers)', async () => {
    const e = await auth.authenticate({ headers: { authorization: `Bearer ${key}` }, rawHeaders: ['Authorization', `Bearer ${key}`, 'authorization', 'Bearer junk'] }).catch((x: unknown) => x);
    expect(e).toMatchObject({ status: 401, message: expect.stringMatching(/more than one Authorization/) });
    expect(await auth.authenticate({ headers: { authorization: `Bearer ${key}` }, rawHeaders: ['Host', 'x', 'Authorization', `Bearer ${key}`] })).toMatchObject({ sub: 'ci' });
  });
});

describe('sources in order', () => {
  it('a JWT for an unknown issuer is rejected; an unreachable source fails the request closed', async () => {
    const auth = new Authenticator([
      await createSource(oidcProviderSchema.parse({ type: 'oidc', issuer: idp.issuer, audience: JWT_AUDIENCE })),
      await createSource(introspectionProviderSchema.parse({ type: 'introspection', issuer: idp.issuer, clientId: GATEWAY_CLIENT.id, clientSecret: GATEWAY_CLIENT.secret })),
    ]);
    expect(await auth.authenticate(bearer(await idp.mintAccessToken({ sub: 'u-alice' })))).toMatchObject({ auth: 'oidc' });
    expect(await auth.authenticate(bearer(await idp.mintAccessToken({ sub: 'u-alice', format: 'opaque' })))).toMatchObject({ auth: 'introspection' });
    expect(await status(auth, bearer(await idp.sign({ sub: 'x', iss: 'https://unknown' })))).toBe(401);
  });
});

/** A source that accepts every bearer token it is asked about (as an introspection endpoint calls any realm token active), recording them. */
function introspectionLike(asked: string[]): IdentitySource {
  return {
    name: 'introspection-like',
    sendsCredentials: true,
    authenticate: async (creds) => {
      asked.push(creds.bearer ?? '');
      return { id: 'anyone', groups: ['team-a'], auth: 'introspection', claims: {} } as never;
    },
  };
}

describe('a JWT its issuer\'s JWT source verified and refused is refused by every later source', () => {
  // An introspection endpoint (Keycloak) calls any valid realm token active, whatever its audience or
  // type: were a later source asked, the JWT source's audience, expiry and typ checks would protect nothing.
  it('wrong audience, expired, wrong typ, a key or algorithm it does not take: 401 without asking the next source; other issuers\' tokens still reach it', async () => {
    const issuer = await createTestIssuer({ issuer: 'https://idp.final', audience: 'gw', alg: 'ES256' });
    try {
      const asked: string[] = [];
      const everything = introspectionLike(asked);
      const auth = new Authenticator([
        await createSource(jwtProviderSchema.parse({ type: 'jwt', jwksFile: issuer.jwksPath, issuer: issuer.issuer, audience: 'gw', algorithms: ['ES256'], typ: 'at+jwt' })),
        everything,
      ]);
      const at = { header: { typ: 'at+jwt' } };
      expect(await auth.authenticate(bearer(await issuer.mint({ sub: 'alice' }, at)))).toMatchObject({ auth: 'jwt' });
      for (const token of [
        await issuer.mint({ sub: 'alice' }, { ...at, audience: 'another-resource' }),
        await issuer.mint({ sub: 'alice' }, { ...at, expiresIn: -600 }),
        await issuer.mint({ sub: 'alice' }, { header: { typ: 'JWT' } }),
      ]) {
        expect(await status(auth, bearer(token))).toBe(401);
      }
      expect(asked).toEqual([]);
      // Naming its issuer but not signed by its keys (or with an algorithm it does not take): still the JWT source's
      // alone, or the later source would accept what the issuer's own checks (typ, azp, algorithms) refused.
      const foreign = await issuer.mint({ sub: 'mallory' }, { ...at, key: 'foreign' });
      expect(await status(auth, bearer(foreign))).toBe(401);
      expect(asked).toEqual([]);
      // Another issuer's token: not the JWT source's to judge.
      const other = await issuer.mint({ sub: 'bob' }, { ...at, issuer: 'https://elsewhere' });
      expect(await auth.authenticate(bearer(other))).toMatchObject({ auth: 'introspection' });
      expect(asked).toEqual([other]);
    } finally {
      issuer.cleanup();
    }
  });

  it('a later JWT source for the same issuer (another audience) is still asked; introspection after both is not', async () => {
    const issuer = await createTestIssuer({ issuer: 'https://idp.two-audiences', audience: 'gw-a', alg: 'ES256' });
    try {
      const asked: string[] = [];
      const everything = introspectionLike(asked);
      const jwt = (audience: string) => createSource(jwtProviderSchema.parse({ type: 'jwt', jwksFile: issuer.jwksPath, issuer: issuer.issuer, audience, algorithms: ['ES256'] }));
      const auth = new Authenticator([await jwt('gw-a'), await jwt('gw-b'), everything]);
      expect(await auth.authenticate(bearer(await issuer.mint({ sub: 'b' }, { audience: 'gw-b' })))).toMatchObject({ auth: 'jwt', sub: 'b' });
      expect(await status(auth, bearer(await issuer.mint({ sub: 'c' }, { audience: 'gw-c' })))).toBe(401);
      expect(asked).toEqual([]);
    } finally {
      issuer.cleanup();
    }
  });
});
