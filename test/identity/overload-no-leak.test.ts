// A credential a local source could not judge for load (the API-key hash queue full: 503, retry) is
// not sent on to a source that judges by asking a third party (introspection): it may be one of the
// gateway's own API keys, which no identity provider may see. Found by the session 30 red-team pass:
// a flood of random bearer tokens filled the queue, and a client's valid key then went to the IdP.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiKeyProviderSchema, introspectionProviderSchema } from '../../src/config/schema.ts';
import { GatewayError } from '../../src/errors.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { IntrospectionSource } from '../../src/identity/introspection.ts';
import { hashSecret } from '../../src/identity/secrets.ts';
import type { IdentitySource } from '../../src/identity/source.ts';
import { ApiKeySource } from '../../src/identity/static.ts';

let server: Server;
let url: string;
/** The tokens the introspection endpoint was sent. */
const introspected: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      introspected.push(new URLSearchParams(body).get('token') ?? '');
      res.setHeader('content-type', 'application/json').end(JSON.stringify({ active: false }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
const overloaded = () => Promise.reject(new GatewayError('overloaded', 'too many credential checks in progress; retry later'));

describe('a local source overloaded', () => {
  it('ends the search before any source that sends credentials away; local sources after it still judge', async () => {
    const remoteCalls: string[] = [];
    const remote: IdentitySource = { name: 'idp', sendsCredentials: true, authenticate: async (c) => (remoteCalls.push(c.bearer ?? ''), undefined) };
    const busyKeys: IdentitySource = { name: 'apikey', authenticate: overloaded };
    await expect(new Authenticator([busyKeys, remote]).authenticate(bearer('a-key'))).rejects.toMatchObject({ code: 'overloaded', status: 503 });
    expect(remoteCalls).toEqual([]);
    // A local verifier after it (a JWT checked against keys) still accepts its own tokens.
    const jwt: IdentitySource = { name: 'jwt', authenticate: async (c) => (c.bearer === 'a-jwt' ? { sub: 'u', groups: [], roles: [], auth: 'jwt', claims: {} } : undefined) };
    await expect(new Authenticator([busyKeys, jwt, remote]).authenticate(bearer('a-jwt'))).resolves.toMatchObject({ sub: 'u' });
    await expect(new Authenticator([busyKeys, jwt, remote]).authenticate(bearer('other'))).rejects.toMatchObject({ code: 'overloaded' });
    expect(remoteCalls).toEqual([]);
  });

  it('real sources: a valid API key sent while random tokens fill the hash queue gets 503 and never reaches introspection', async () => {
    const KEY = 'ci-exporter-secret-key-0123456789';
    const keys = new ApiKeySource(apiKeyProviderSchema.parse({ type: 'apikey', keys: [{ name: 'ci', hash: await hashSecret(KEY, { N: 1024 }), subject: { groups: ['team-a'] } }] }));
    const idp = await IntrospectionSource.create(introspectionProviderSchema.parse({ type: 'introspection', introspectionUrl: url, clientId: 'gw', clientSecret: 's' }));
    const auth = new Authenticator([keys, idp]);
    introspected.length = 0;
    const flood = Array.from({ length: 100 }, (_, i) => auth.authenticate(bearer(`random-${i}-xxxxxxxxxxxxxxxx`)).catch((e: unknown) => e));
    const mine = await auth.authenticate(bearer(KEY)).catch((e: unknown) => e);
    const floodOutcomes = await Promise.all(flood);
    expect(mine).toMatchObject({ code: 'overloaded', status: 503 });
    expect(floodOutcomes.some((e) => (e as GatewayError).code === 'overloaded')).toBe(true);
    expect(introspected).not.toContain(KEY);
    // Tokens the key source did judge (and refused) still go on to introspection, as before.
    expect(introspected.length).toBeGreaterThan(0);
    // Once the queue drains, the key is accepted, locally.
    await expect(auth.authenticate(bearer(KEY))).resolves.toMatchObject({ auth: 'apikey' });
    expect(introspected).not.toContain(KEY);
  });
});

describe('a source that fails unexpectedly (not a refusal)', () => {
  it('ends the search with 503: a later source never judges the credential in its place', async () => {
    const later: string[] = [];
    const broken: IdentitySource = { name: 'broken', authenticate: async () => Promise.reject(new TypeError("Cannot read properties of undefined (reading 'groups')")) };
    const accepting: IdentitySource = {
      name: 'accepting',
      authenticate: async (c) => {
        later.push(c.bearer ?? '');
        return { sub: 'u', groups: ['admins'], roles: [], auth: 'accepting', claims: {} };
      },
    };
    const auth = new Authenticator([broken, accepting]);
    const e = await auth.authenticate(bearer('some.jwt.token')).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toMatchObject({ code: 'identity_unavailable', status: 503 });
    expect(later).toEqual([]);
    expect(auth.stats.unavailable).toBe(1);
  });
});

