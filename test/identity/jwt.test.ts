import { beforeAll, describe, expect, it } from 'vitest';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { claimsSchema, jwtProviderSchema } from '../../src/config/schema.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { claimAt, mapClaims, stringList } from '../../src/identity/claims.ts';
import { JwtVerifier } from '../../src/identity/jwt.ts';
import { GatewayError } from '../../src/errors.ts';

let idp: TestIssuer;
let verifier: JwtVerifier;
let auth: Authenticator;

beforeAll(async () => {
  idp = await createTestIssuer({ issuer: 'https://idp.test', audience: 'lbac-gateway', alg: 'RS256' });
  verifier = await JwtVerifier.create(
    jwtProviderSchema.parse({ type: 'jwt', jwksFile: idp.jwksPath, issuer: 'https://idp.test', audience: 'lbac-gateway', claims: { groups: 'realm_access.roles' } }),
  );
  auth = new Authenticator([verifier]);
});

async function rejects(token: string | Promise<string>, pattern?: RegExp): Promise<GatewayError> {
  const t = await token;
  const err = await verifier.verify(t).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'token must be rejected').toBeInstanceOf(GatewayError);
  const ge = err as GatewayError;
  expect(ge.status).toBe(401);
  if (pattern) expect(ge.message).toMatch(pattern);
  return ge;
}

describe('JwtVerifier', () => {
  it('accepts a valid token and maps claims into a Subject', async () => {
    const token = await idp.mint({ sub: 'u-1', preferred_username: 'alice', email: 'a@x', realm_access: { roles: ['team-a', 'viewer'] } });
    const s = await verifier.verify(token);
    expect(s).toMatchObject({ sub: 'u-1', username: 'alice', email: 'a@x', groups: ['team-a', 'viewer'], auth: 'jwt', issuer: 'https://idp.test' });
    expect(s.claims['preferred_username']).toBe('alice');
    // Cached result is the same frozen subject.
    expect(await verifier.verify(token)).toBe(s);
    expect(Object.isFrozen(s)).toBe(true);
  });

  it('rejects alg "none"', async () => {
    await rejects(idp.mint({ sub: 'x' }, { alg: 'none' }));
  });
  it('rejects HS256 signed with the RSA public key (key confusion)', async () => {
    await rejects(idp.mint({ sub: 'x' }, { alg: 'HS256' }));
  });
  it('rejects expired tokens (beyond the clock tolerance)', async () => {
    await rejects(idp.mint({ sub: 'x' }, { expiresIn: -120 }), /exp/);
  });
  it('accepts a token expired within the clock tolerance', async () => {
    await expect(verifier.verify(await idp.mint({ sub: 'x' }, { expiresIn: -5 }))).resolves.toMatchObject({ sub: 'x' });
  });
  it('rejects tokens without exp', async () => {
    await rejects(idp.mint({ sub: 'x' }, { expiresIn: null }), /exp/);
  });
  it('rejects nbf in the future', async () => {
    await rejects(idp.mint({ sub: 'x' }, { notBefore: '+10m' }), /nbf/);
  });
  it('rejects a wrong issuer and a wrong audience', async () => {
    await rejects(idp.mint({ sub: 'x' }, { issuer: 'https://evil' }), /iss/);
    await rejects(idp.mint({ sub: 'x' }, { audience: 'other-api' }), /aud/);
  });
  it('rejects a token signed by a key outside the JWKS, even with a known kid', async () => {
    await rejects(idp.mint({ sub: 'x' }, { key: 'foreign' }));
    await rejects(idp.mint({ sub: 'x' }, { key: 'foreign', kid: 'attacker-kid' }));
  });
  it('ignores jku / x5u / embedded jwk headers pointing at attacker keys', async () => {
    await rejects(idp.mint({ sub: 'x' }, { key: 'foreign', kid: 'evil', header: { jku: 'https://attacker.example/jwks.json' } }));
    await rejects(idp.mint({ sub: 'x' }, { key: 'foreign', kid: 'evil', header: { x5u: 'https://attacker.example/cert.pem' } }));
  });
  it('rejects a tampered payload', async () => {
    const [h, , sig] = (await idp.mint({ sub: 'x', groups: ['viewer'] })).split('.');
    const forged = Buffer.from(JSON.stringify({ sub: 'x', groups: ['admins'], iss: 'https://idp.test', aud: 'lbac-gateway', exp: 9999999999 })).toString('base64url');
    await rejects(`${h}.${forged}.${sig}`);
  });
  it('rejects oversized and malformed tokens before parsing', async () => {
    await rejects('a'.repeat(20_000) + '.b.c', /too large/);
    await rejects('not-a-jwt', /malformed/);
  });
  it('rejects a token with no subject claim', async () => {
    await rejects(idp.mint({ sub: undefined }), /sub/);
  });
});

describe('Authenticator.bearerToken', () => {
  it.each([
    [undefined, /missing/],
    ['', /missing/],
    ['Basic dXNlcjpwYXNz', /malformed/],
    ['Bearer', /malformed/],
    ['Bearer a b', /malformed/],
    ['Bearer a\u0000b', /malformed/],
    ['Token abc', /malformed/],
  ])('rejects Authorization %j', (header, pattern) => {
    expect(() => Authenticator.bearerToken(header === undefined ? {} : { authorization: header })).toThrow(pattern);
  });
  it('rejects repeated Authorization headers', () => {
    expect(() => Authenticator.bearerToken({ authorization: ['Bearer a', 'Bearer b'] as unknown as string })).toThrow(/more than one/);
  });
  it('accepts a case-insensitive scheme', () => {
    expect(Authenticator.bearerToken({ authorization: 'bearer abc.def.ghi' })).toBe('abc.def.ghi');
  });
  it('authenticate never falls back to anonymous', async () => {
    await expect(auth.authenticate({ headers: {} })).rejects.toMatchObject({ status: 401 });
    await expect(auth.authenticate({ headers: { authorization: `Bearer ${await idp.mint({ sub: 'x' }, { alg: 'none' })}` } })).rejects.toMatchObject({ status: 401 });
  });
});

describe('claim mapping', () => {
  it('reads dotted paths, literal dotted keys, and several list shapes', () => {
    const claims = { 'a.b': 'literal', a: { b: 'nested' }, resource_access: { grafana: { roles: ['editor'] } }, scope: 'read write', objs: [{ name: 'g1' }, { id: 'g2' }, 3] };
    expect(claimAt(claims, 'a.b')).toBe('literal');
    expect(claimAt(claims, 'resource_access.grafana.roles')).toEqual(['editor']);
    expect(claimAt(claims, 'missing.path')).toBeUndefined();
    expect(stringList('read write,admin')).toEqual(['read', 'write', 'admin']);
    expect(stringList(claims.objs)).toEqual(['g1', 'g2']);
    expect(stringList({ not: 'a list' })).toEqual([]);
    const m = mapClaims({ sub: 's', groups: 'x y' }, claimsSchema.parse({}));
    expect(m).toEqual({ sub: 's', username: undefined, email: undefined, groups: ['x', 'y'], roles: [] });
  });
});
