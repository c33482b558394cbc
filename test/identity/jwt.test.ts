import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { claimsSchema, jwtProviderSchema } from '../../src/config/schema.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { claimAt, isSpaceDelimitedClaim, mapClaims, stringList } from '../../src/identity/claims.ts';
import { connectionTokenDigest, JwtVerifier, readJwksFile, tokenDigest } from '../../src/identity/jwt.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { GatewayError } from '../../src/errors.ts';
import { UNDECIDED } from '../../src/identity/source.ts';

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

  it('counts its verified-token cache for the metrics: a miss, then hits; summed per kind by the Authenticator', async () => {
    const fresh = await JwtVerifier.create(jwtProviderSchema.parse({ type: 'jwt', jwksFile: idp.jwksPath, issuer: 'https://idp.test', audience: 'lbac-gateway' }));
    const other = await JwtVerifier.create(jwtProviderSchema.parse({ type: 'jwt', jwksFile: idp.jwksPath, issuer: 'https://idp.other', audience: 'lbac-gateway' }));
    const token = await idp.mint({ sub: 'u-c' });
    for (let i = 0; i < 3; i++) await fresh.verify(token);
    expect(fresh.cacheStats()).toEqual({ cache: 'identity_jwt', hits: 2, misses: 1, size: 1 });
    const both = new Authenticator([fresh, other]);
    await both.authenticate({ headers: { authorization: `Bearer ${await idp.mint({ sub: 'u-d' })}` } });
    // Both verifiers looked the new token up (a source looks before it reads the issuer): two misses.
    expect(both.cacheStats()).toEqual(new Map([['identity_jwt', { hits: 2, misses: 3, size: 2 }]]));
  });

  it('a username from the token is not trusted unless the provider says so', async () => {
    const s = await verifier.verify(await idp.mint({ sub: 'u-2', preferred_username: 'root' }));
    expect(s.username).toBe('root');
    expect(s.usernameTrusted).toBeUndefined();
    const trusting = await JwtVerifier.create(
      jwtProviderSchema.parse({ type: 'jwt', jwksFile: idp.jwksPath, issuer: 'https://idp.test', audience: 'lbac-gateway', claims: { trustUsername: true } }),
    );
    expect(await trusting.verify(await idp.mint({ sub: 'u-2', preferred_username: 'root' }))).toMatchObject({ username: 'root', usernameTrusted: true });
    expect((await trusting.verify(await idp.mint({ sub: 'u-3' }))).usernameTrusted).toBeUndefined();
  });

  it('typ: only the configured token types are accepted (RFC 7515 comparison)', async () => {
    const typed = await JwtVerifier.create(
      jwtProviderSchema.parse({ type: 'jwt', jwksFile: idp.jwksPath, issuer: 'https://idp.test', audience: 'lbac-gateway', typ: 'at+jwt' }),
    );
    for (const typ of ['at+jwt', 'AT+JWT', 'application/at+jwt']) {
      await expect(typed.verify(await idp.mint({ sub: 'x', jti: typ }, { header: { typ } }))).resolves.toMatchObject({ sub: 'x' });
    }
    for (const typ of ['JWT', 'id_token+jwt', 'application/jwt', 'text/at+jwt', 123, undefined]) {
      const err = await typed.verify(await idp.mint({ sub: 'x', jti: String(typ) }, { header: { typ } })).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, `typ ${String(typ)}`).toMatchObject({ status: 401, message: expect.stringMatching(/token type .* is not accepted/) });
    }
    // Without the option any typ is accepted, as before.
    await expect(verifier.verify(await idp.mint({ sub: 'x' }, { header: { typ: 'JWT' } }))).resolves.toMatchObject({ sub: 'x' });
  });

  it('refuses claims with an unpaired surrogate anywhere (401, not a policy error later)', async () => {
    for (const claims of [{ name: '\ud800' }, { groups: ['ok', 'x\udc00'] }, { nested: { deep: [{ ['k\ud83d']: 1 }] } }]) {
      await rejects(idp.mint({ sub: 'u-s', ...claims }), /not well-formed Unicode/);
    }
    await expect(verifier.verify(await idp.mint({ sub: 'u-s', name: 'ok 𝄞 \ud83d\ude00' }))).resolves.toMatchObject({ sub: 'u-s' });
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
  it('rejects iat in the future beyond the clock tolerance (401, final, never cached); within it, or without iat, accepted', async () => {
    const now = Math.floor(Date.now() / 1000);
    const future = await idp.mint({ sub: 'x-iat' }, { issuedAt: now + 120 });
    const err = await rejects(future, /"iat" claim timestamp check failed/);
    expect(err).toMatchObject({ code: 'unauthenticated', final: true });
    // Refused again, not answered from the cache of verified tokens.
    await rejects(future, /iat/);
    expect(verifier.peekToken(future)).toBe(UNDECIDED);
    await expect(auth.authenticate({ headers: { authorization: `Bearer ${future}` } })).rejects.toMatchObject({ status: 401 });
    await expect(verifier.verify(await idp.mint({ sub: 'x-iat' }, { issuedAt: now + 10 }))).resolves.toMatchObject({ sub: 'x-iat' });
    await expect(verifier.verify(await idp.mint({ sub: 'x-iat' }, { issuedAt: null }))).resolves.toMatchObject({ sub: 'x-iat' });
    await rejects(idp.mint({ sub: 'x-iat' }, { issuedAt: 'soon' as unknown as number }), /iat/);
  });
  it('authorizedParties: azp must be listed; without azp the sole audience is the authorized party; several audiences need azp', async () => {
    const parties = await JwtVerifier.create(
      jwtProviderSchema.parse({ type: 'jwt', jwksFile: idp.jwksPath, issuer: 'https://idp.test', audience: ['lbac-gateway', 'grafana'], authorizedParties: ['grafana', 'logcli'] }),
    );
    const refusedBy = async (v: JwtVerifier, token: string) => {
      const e = await v.verify(token).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e, 'token must be refused').toMatchObject({ status: 401, code: 'unauthenticated', final: true, message: expect.stringMatching(/azp/) });
      // A refused token is never cached as valid.
      expect(v.peekToken(token)).toBe(UNDECIDED);
    };
    for (const azp of ['grafana', 'logcli']) await expect(parties.verify(await idp.mint({ sub: 'p', azp }))).resolves.toMatchObject({ sub: 'p' });
    for (const azp of ['evil-client', 'GRAFANA', '', ['grafana'], 1, null]) await refusedBy(parties, await idp.mint({ sub: 'p', azp }));
    // No azp: one audience is the authorized party (OIDC Core §2).
    await expect(parties.verify(await idp.mint({ sub: 'p' }, { audience: 'grafana' }))).resolves.toMatchObject({ sub: 'p' });
    await expect(parties.verify(await idp.mint({ sub: 'p' }, { audience: ['grafana'] }))).resolves.toMatchObject({ sub: 'p' });
    await refusedBy(parties, await idp.mint({ sub: 'p' }, { audience: 'lbac-gateway' }));
    // Several audiences and no azp: no authorized party named.
    await refusedBy(parties, await idp.mint({ sub: 'p' }, { audience: ['grafana', 'lbac-gateway'] }));
    await expect(parties.verify(await idp.mint({ sub: 'p', azp: 'logcli' }, { audience: ['grafana', 'lbac-gateway'] }))).resolves.toMatchObject({ sub: 'p' });
    // A refusal ends the search: no later source is asked for the issuer's token.
    const both = new Authenticator([parties, { name: 'later', authenticate: async () => ({ sub: 'later', groups: [], roles: [], auth: 'x', claims: {} }) }]);
    await expect(both.authenticate({ headers: { authorization: `Bearer ${await idp.mint({ sub: 'p', azp: 'evil-client' })}` } })).rejects.toMatchObject({ status: 401 });
    // Without the setting any azp is accepted, as before.
    await expect(verifier.verify(await idp.mint({ sub: 'p', azp: 'evil-client' }))).resolves.toMatchObject({ sub: 'p' });
    expect(() => jwtProviderSchema.parse({ type: 'jwt', jwksFile: idp.jwksPath, issuer: 'i', audience: 'a', authorizedParties: [] })).toThrow();
  });
  it('a token naming this source\'s issuer is refused for good whatever the refusal (algorithm, unknown key, bad signature, no sub); another issuer\'s goes on to later sources', async () => {
    // A later source that accepts anything (as introspection with tokens: all would, for a token its IdP calls active).
    const later = { name: 'later', authenticate: async () => ({ sub: 'later', groups: ['admins'], roles: [], auth: 'x', claims: {} }) };
    const both = new Authenticator([verifier, later]);
    const outcome = async (token: string | Promise<string>) =>
      both.authenticate({ headers: { authorization: `Bearer ${await token}` } }).then(
        (s) => s.sub,
        (e: GatewayError) => e.status,
      );
    // Refused before any signature check: an algorithm the source does not take, a key it does not hold.
    expect(await outcome(idp.mint({ sub: 'x' }, { alg: 'HS256' }))).toBe(401);
    expect(await outcome(idp.mint({ sub: 'x' }, { key: 'foreign', kid: 'next-key' }))).toBe(401);
    expect(await outcome(idp.mint({ sub: 'x' }, { alg: 'none' }))).toBe(401);
    // Refused after it: no subject.
    expect(await outcome(idp.mint({ sub: null }))).toBe(401);
    // Too large to verify (a later source may take larger tokens): refused for good all the same.
    expect(await outcome(idp.mint({ sub: 'x', pad: 'p'.repeat(20_000) }, { key: 'foreign' }))).toBe(401);
    // Another issuer's token is not this source's: the later source judges it, also when too large for this one.
    expect(await outcome(idp.mint({ sub: 'x' }, { issuer: 'https://partner.example', key: 'foreign' }))).toBe('later');
    expect(await outcome(idp.mint({ sub: 'x', pad: 'p'.repeat(20_000) }, { issuer: 'https://partner.example', key: 'foreign' }))).toBe('later');
    // And this issuer's valid token is this source's subject.
    expect(await outcome(idp.mint({ sub: 'x' }))).toBe('x');
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

describe('per-connection token digest', () => {
  it('is always the digest of the token given, whatever came before on any connection', () => {
    // Tokens that share prefixes and lengths, so a memo comparing less than the whole token would show.
    const token = fc.constantFrom('aaaa.bbbb.cccc', 'aaaa.bbbb.cccd', 'aaaa.bbbb.ccc', 'baaa.bbbb.cccc', 'x', 'aaaa.bbbb.cccc ');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), token), { maxLength: 40 }), (steps) => {
        const connections = [{}, {}, {}, undefined];
        for (const [c, t] of steps) expect(connectionTokenDigest(t, connections[c])).toBe(tokenDigest(t));
      }),
    );
  });

  it('two users alternating on one keep-alive connection are each themselves (cache hits included)', async () => {
    const connection = {};
    const alice = await idp.mint({ sub: 'u-alice', realm_access: { roles: ['team-a'] } });
    const bob = await idp.mint({ sub: 'u-bob', realm_access: { roles: ['team-b'] } });
    for (let i = 0; i < 8; i++) {
      const [token, sub] = i % 3 === 2 ? [bob, 'u-bob'] : [alice, 'u-alice'];
      const s = await auth.authenticate({ headers: { authorization: `Bearer ${token}` }, connection });
      expect(s.sub).toBe(sub);
    }
    // A forged token right after a valid one on the same connection (same length, one signature character
    // changed) is verified, not taken for the one before.
    const forged = alice.slice(0, -2) + (alice.at(-2) === 'A' ? 'B' : 'A') + alice.at(-1);
    await expect(auth.authenticate({ headers: { authorization: `Bearer ${forged}` }, connection })).rejects.toMatchObject({ status: 401 });
    expect((await auth.authenticate({ headers: { authorization: `Bearer ${alice}` }, connection })).sub).toBe('u-alice');
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
    expect(stringList('read write', true)).toEqual(['read', 'write']);
    expect(stringList(claims.objs)).toEqual(['g1', 'g2']);
    expect(stringList({ not: 'a list' })).toEqual([]);
  });
  it('a string group is one group: spaces and commas are part of its name', () => {
    const m = mapClaims({ sub: 's', groups: 'Domain Admins' }, claimsSchema.parse({}));
    expect(m).toEqual({ sub: 's', username: undefined, email: undefined, groups: ['Domain Admins'], roles: [] });
    expect(mapClaims({ sub: 's', groups: 'evil,admins' }, claimsSchema.parse({})).groups).toEqual(['evil,admins']);
    expect(mapClaims({ sub: 's', groups: 'evil team-a' }, claimsSchema.parse({})).groups).toEqual(['evil team-a']);
  });
  it('scope-like claims (scope, scp, at any depth) are split on spaces only', () => {
    const cfg = claimsSchema.parse({ groups: 'scope', roles: 'ext.scp' });
    const m = mapClaims({ sub: 's', scope: 'read  write read', ext: { scp: 'a,b c' } }, cfg);
    expect(m.groups).toEqual(['read', 'write']);
    expect(m.roles).toEqual(['a,b', 'c']);
    expect(isSpaceDelimitedClaim('scope')).toBe(true);
    expect(isSpaceDelimitedClaim('groups')).toBe(false);
    expect(isSpaceDelimitedClaim('my_scope')).toBe(false);
  });
  it('an object entry is named by the first of name, value, id that it has', () => {
    expect(stringList([{ name: null, value: 'admins' }])).toEqual([]);
    expect(stringList([{ name: 'display', id: 'admins' }])).toEqual(['display']);
    expect(stringList([{ value: 'v', id: 'i' }, { id: 'i2' }, ['nested']])).toEqual(['v', 'i2']);
  });
});

describe('userinfo merge', () => {
  it('the token wins, also over a userinfo key that spells one of its paths with dots', async () => {
    const { mergeUserinfo } = await import('../../src/identity/userinfo.ts');
    const token = { sub: 's', realm_access: { roles: ['team-a'] }, email: 'a@x' };
    const info = { 'realm_access.roles': ['admins'], email: 'evil@x', groups: ['from-userinfo'], 'org.unit': 'kept' };
    const merged = mergeUserinfo(token, info);
    expect(mapClaims(merged, claimsSchema.parse({ groups: 'realm_access.roles' }))).toMatchObject({ groups: ['team-a'], email: 'a@x' });
    // What the token lacks, userinfo fills in (also dotted keys the token has nothing at).
    expect(merged['groups']).toEqual(['from-userinfo']);
    expect(merged['org.unit']).toBe('kept');
    expect(claimAt(mergeUserinfo({ sub: 's' }, info), 'realm_access.roles')).toEqual(['admins']);
  });
});

describe('readJwksFile', () => {
  it("a file that is not JSON is a config error that does not quote the file's text (a jwksFile set to a secret's path)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jwks-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    for (const secret of ['s3cr3t-client-secret', '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n', '{"keys": [], "x": s3cr3tpassw0rd}']) {
      const file = join(dir, 'secret');
      writeFileSync(file, secret);
      const e = await readJwksFile(file).then(
        () => null,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(GatewayError);
      expect((e as GatewayError).message).toBe(`jwksFile ${file} is not JSON`);
      expect(JSON.stringify(e) + String((e as Error).stack) + String((e as { cause?: unknown }).cause)).not.toMatch(/s3cr3t|MIIE/);
    }
  });
});
