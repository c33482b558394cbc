// A JWKS endpoint that fails: jose counts its cooldown and max age from the last fetch that
// succeeded, so every request (anyone's: a token naming the issuer is enough) fetched again, and
// past the max age every token was refused with the keys still held. After a failed fetch the
// held keys verify, and no fetch is made for a cooldown.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { remoteKeySet } from '../../src/identity/jwt.ts';

let server: Server;
let url: string;
let failing = false;
let fetches = 0;
let token: string;
let otherKid: string;

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  server = createServer((_req, res) => {
    fetches++;
    if (failing) return void res.writeHead(503).end('down');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
  token = await new SignJWT({ sub: 'u' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setExpirationTime('1h').sign(privateKey);
  otherKid = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'ES256', kid: 'unknown' }).setExpirationTime('1h').sign(privateKey);
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'verified',
    (e: { code?: string }) => e.code ?? 'refused',
  );

describe('a remote key set whose endpoint fails', () => {
  it('verifies with the held keys past their max age, and fetches at most once per cooldown', async () => {
    const keys = remoteKeySet(url, 60_000, 50, 2_000);
    expect(await code(jwtVerify(token, keys))).toBe('verified');
    expect(fetches).toBe(1);
    failing = true;
    await new Promise((r) => setTimeout(r, 100)); // past the max age: jose wants a fresh set
    expect(await code(jwtVerify(token, keys))).toBe('verified');
    expect(fetches).toBe(2);
    // Within the cooldown: no fetch, whatever the token; a kid the held keys lack cannot be decided (503).
    for (let i = 0; i < 20; i++) {
      expect(await code(jwtVerify(otherKid, keys))).toBe('identity_unavailable');
      expect(await code(jwtVerify(token, keys))).toBe('verified');
    }
    expect(fetches).toBe(2);
    // A reload's refresh fails too: still the held keys, and still no fetch per request.
    await expect(keys.refresh!()).rejects.toThrow();
    expect(await code(jwtVerify(token, keys))).toBe('verified');
    expect(fetches).toBe(3);
    failing = false;
  });

  it('without keys held, a failed fetch is 503, and the next request within the cooldown fetches nothing', async () => {
    failing = true;
    const before = fetches;
    const keys = remoteKeySet(url, 60_000, 600_000, 2_000);
    expect(await code(jwtVerify(token, keys))).toBe('identity_unavailable');
    expect(await code(jwtVerify(token, keys))).toBe('identity_unavailable');
    expect(fetches - before).toBe(1);
    failing = false;
  });
});

describe('jwks.cooldownSeconds', () => {
  it('is at least 1 s: with none, every token with an unknown kid (anyone can send one) would be a fetch', async () => {
    const { jwksCacheSchema } = await import('../../src/config/schema.ts');
    expect(jwksCacheSchema.safeParse({ cooldownSeconds: 0 }).success).toBe(false);
    expect(jwksCacheSchema.parse({ cooldownSeconds: 1 }).cooldownSeconds).toBe(1);
  });
});
