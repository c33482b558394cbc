// Attacks on JWT verification not covered in jwt.test.ts: spellings of one token, key material
// named by the token itself, header extensions, odd kids and claim shapes.
import { generateKeyPairSync, sign } from 'node:crypto';
import { CompactSign, createLocalJWKSet, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { claimsSchema, jwtProviderSchema } from '../../src/config/schema.ts';
import { GatewayError } from '../../src/errors.ts';
import { canonicalBase64url, JwtVerifier } from '../../src/identity/jwt.ts';

let idp: TestIssuer;
let verifier: JwtVerifier;

beforeAll(async () => {
  idp = await createTestIssuer({ issuer: 'https://idp.test', audience: 'lbac-gateway', alg: 'RS256' });
  verifier = await JwtVerifier.create(jwtProviderSchema.parse({ type: 'jwt', jwksFile: idp.jwksPath, issuer: 'https://idp.test', audience: 'lbac-gateway' }));
});
afterAll(() => idp?.cleanup());

async function refusal(token: string): Promise<GatewayError> {
  const err = await verifier.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'token must be rejected').toBeInstanceOf(GatewayError);
  expect((err as GatewayError).status).toBe(401);
  return err as GatewayError;
}

const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The same bytes spelled with other (ignored) trailing bits in the last character. */
function respell(segment: string, bits: number): string {
  const last = A.indexOf(segment.at(-1)!);
  return segment.slice(0, -1) + A[last | bits]!;
}

describe('one token, several spellings', () => {
  it('canonicalBase64url: trailing bits must be zero, and a length of 1 mod 4 is no encoding', () => {
    expect(canonicalBase64url('AA')).toBe(true);
    expect(canonicalBase64url('AB')).toBe(false);
    expect(canonicalBase64url('AAA')).toBe(true);
    expect(canonicalBase64url('AAB')).toBe(false);
    expect(canonicalBase64url('AAAA')).toBe(true);
    expect(canonicalBase64url('AAAAA')).toBe(false);
    for (let n = 0; n < 40; n++) {
      const s = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff)).toString('base64url');
      expect(canonicalBase64url(s), s).toBe(true);
    }
  });

  it('a signature or payload re-spelled with non-zero trailing bits is refused; the token itself verifies', async () => {
    const token = await idp.mint({ sub: 'spelled' });
    const [h, p, s] = token.split('.') as [string, string, string];
    // RS256: 256 signature bytes are 342 characters, whose last carries 4 unused bits.
    expect(s.length % 4).toBe(2);
    await expect(verifier.verify(token)).resolves.toMatchObject({ sub: 'spelled' });
    for (const bits of [1, 2, 4, 8]) {
      expect(await refusal(`${h}.${p}.${respell(s, bits)}`)).toMatchObject({ message: expect.stringMatching(/canonical/) });
    }
    if (p.length % 4 !== 0) await refusal(`${h}.${respell(p, 1)}.${s}`);
    if (h.length % 4 !== 0) await refusal(`${respell(h, 1)}.${p}.${s}`);
  });
});

describe('key material and processing rules named by the token', () => {
  it('an embedded jwk header carrying the attacker\'s own key is ignored, with or without a kid', async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk = await exportJWK(publicKey);
    const now = Math.floor(Date.now() / 1000);
    const payload = new TextEncoder().encode(JSON.stringify({ iss: 'https://idp.test', aud: 'lbac-gateway', sub: 'mallory', exp: now + 600, iat: now }));
    for (const header of [{ alg: 'RS256', jwk }, { alg: 'RS256', jwk, kid: 'evil' }, { alg: 'RS256', jwk: { ...jwk, kid: idp.kid }, kid: idp.kid }]) {
      await refusal(await new CompactSign(payload).setProtectedHeader(header).sign(privateKey));
    }
  });

  it('crit extensions the gateway does not implement, and unencoded payloads (b64: false), are refused', async () => {
    // Signed by hand (jose will not sign these): the key is in the verifier's key set.
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...(publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid: 'own', alg: 'RS256' };
    const own = new JwtVerifier({
      issuer: 'https://idp.test', audience: 'lbac-gateway', algorithms: ['RS256'], clockToleranceSeconds: 30, maxTokenBytes: 16384,
      claims: claimsSchema.parse({}), auth: 'jwt', getKey: createLocalJWKSet({ keys: [jwk] }),
    });
    const now = Math.floor(Date.now() / 1000);
    const claims = JSON.stringify({ iss: 'https://idp.test', aud: 'lbac-gateway', sub: 'crit', exp: now + 600 });
    const b64 = (s: string) => Buffer.from(s).toString('base64url');
    const signed = (header: Record<string, unknown>, payload = b64(claims)) => {
      const input = `${b64(JSON.stringify({ alg: 'RS256', kid: 'own', ...header }))}.${payload}`;
      return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
    };
    await expect(own.verify(signed({}))).resolves.toMatchObject({ sub: 'crit' });
    for (const token of [signed({ crit: ['exp'], exp: 1 }), signed({ crit: ['https://example.com/ext'], 'https://example.com/ext': true }), signed({ crit: [] }), signed({ b64: false, crit: ['b64'] })]) {
      const err = await own.verify(token).then(() => undefined, (e: unknown) => e);
      expect(err, token).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).status).toBe(401);
    }
  });

  it('a kid the key set holds twice: the token verifies with the key that signed it, and only with a key of the set', async () => {
    const one = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const two = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const outsider = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pub = (k: typeof one) => ({ ...(k.publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid: 'dup', alg: 'RS256' });
    const twice = new JwtVerifier({
      issuer: 'https://idp.test', audience: 'lbac-gateway', algorithms: ['RS256'], clockToleranceSeconds: 30, maxTokenBytes: 16384,
      claims: claimsSchema.parse({}), auth: 'jwt', getKey: createLocalJWKSet({ keys: [pub(one), pub(two)] }),
    });
    const now = Math.floor(Date.now() / 1000);
    const signedBy = (k: typeof one, sub: string) => {
      const input = `${Buffer.from(JSON.stringify({ alg: 'RS256', kid: 'dup' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'https://idp.test', aud: 'lbac-gateway', sub, exp: now + 600 })).toString('base64url')}`;
      return `${input}.${sign('sha256', Buffer.from(input), k.privateKey).toString('base64url')}`;
    };
    await expect(twice.verify(signedBy(one, 'by-one'))).resolves.toMatchObject({ sub: 'by-one' });
    await expect(twice.verify(signedBy(two, 'by-two'))).resolves.toMatchObject({ sub: 'by-two' });
    const err = await twice.verify(signedBy(outsider, 'outsider')).then(() => undefined, (e: unknown) => e);
    expect((err as GatewayError).status).toBe(401);
    expect((err as GatewayError).message).toMatch(/signature/);
    // A provider rotating keys that carry no kid, signing tokens without one: both keys match every token.
    const kidless = new JwtVerifier({
      ...twice.options,
      getKey: createLocalJWKSet({ keys: [pub(one), pub(two)].map(({ kid: _kid, ...k }) => k) }),
    });
    const noKid = (k: typeof one, sub: string) => {
      const input = `${Buffer.from(JSON.stringify({ alg: 'RS256' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'https://idp.test', aud: 'lbac-gateway', sub, exp: now + 600 })).toString('base64url')}`;
      return `${input}.${sign('sha256', Buffer.from(input), k.privateKey).toString('base64url')}`;
    };
    await expect(kidless.verify(noKid(two, 'rotated'))).resolves.toMatchObject({ sub: 'rotated' });
    expect((await kidless.verify(noKid(outsider, 'x')).then(() => undefined, (e: unknown) => e) as GatewayError).status).toBe(401);
  });

  it('a path-like or very long kid is an unknown key (401), never a lookup outside the key set', async () => {
    for (const kid of ['../../../../etc/passwd', 'file:///etc/passwd', '\u0000', 'k'.repeat(4000)]) {
      const err = await refusal(await idp.mint({ sub: 'x' }, { kid }));
      expect(err.code).toBe('unauthenticated');
    }
  });
});

describe('other token forms', () => {
  it('a JWE (five parts) and a nested JWT (cty: JWT, a JWT as payload) are refused', async () => {
    const inner = await idp.mint({ sub: 'inner' });
    await refusal(`${inner.split('.')[0]!}.${'A'.repeat(43)}.${'B'.repeat(22)}.${'C'.repeat(40)}.${'D'.repeat(22)}`);
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const own = new JwtVerifier({
      issuer: 'https://idp.test', audience: 'lbac-gateway', algorithms: ['RS256'], clockToleranceSeconds: 30, maxTokenBytes: 16384,
      claims: claimsSchema.parse({}), auth: 'jwt', getKey: createLocalJWKSet({ keys: [{ ...(publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid: 'own' }] }),
    });
    const input = `${Buffer.from(JSON.stringify({ alg: 'RS256', kid: 'own', cty: 'JWT' })).toString('base64url')}.${Buffer.from(inner).toString('base64url')}`;
    const nested = `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
    const err = await own.verify(nested).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).status).toBe(401);
  });
});

describe('claim shapes', () => {
  it('group claims that are objects, numbers or hold __proto__ keys grant no groups and change no prototype', async () => {
    for (const groups of [{ admins: true }, 42, true, null, [1, null, ['admins']], JSON.parse('{"__proto__": ["admins"]}') as unknown]) {
      const s = await verifier.verify(await idp.mint({ sub: 'shapes', groups }));
      expect(s.groups, JSON.stringify(groups)).toEqual([]);
    }
    const s = await verifier.verify(await idp.mint(JSON.parse('{"sub":"proto","__proto__":{"groups":["admins"]},"constructor":{"prototype":{"admin":true}}}') as Record<string, unknown>));
    expect(s.groups).toEqual([]);
    expect(({} as Record<string, unknown>)['admin']).toBeUndefined();
    expect(({} as Record<string, unknown>)['groups']).toBeUndefined();
  });
});
