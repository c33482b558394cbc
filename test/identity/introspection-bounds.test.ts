// Introspection is the one identity source a client can make call out without holding any
// credential (every uncached bearer token is sent to the provider): calls for the same token
// are shared, and calls at once are bounded.
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { introspectionProviderSchema } from '../../src/config/schema.ts';
import { createSource } from '../../src/identity/authenticator.ts';
import { MAX_CONCURRENT_INTROSPECTIONS } from '../../src/identity/introspection.ts';
import type { IdentitySource } from '../../src/identity/source.ts';

let server: Server;
let url: string;
let calls = 0;
let inFlight = 0;
let maxInFlight = 0;
let delayMs = 50;
/** Tokens the provider has revoked since it first answered for them. */
const revoked = new Set<string>();

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      calls++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const token = new URLSearchParams(body).get('token') ?? '';
      // Decided when the question arrives, answered after the delay (a revocation meanwhile is not seen).
      const answer = token.startsWith('ok-') && !revoked.has(token) ? { active: true, sub: `u-${token}`, exp: Math.floor(Date.now() / 1000) + 600 } : { active: false };
      setTimeout(() => {
        inFlight--;
        res.setHeader('content-type', 'application/json').end(JSON.stringify(answer));
      }, delayMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  url = `http://127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}/introspect`;
});
afterAll(() => server?.close());

const source = async (): Promise<IdentitySource> =>
  createSource(introspectionProviderSchema.parse({ type: 'introspection', introspectionUrl: url, clientId: 'c', clientSecret: 's', negativeCacheTtlSeconds: 0 }));
const bearer = (t: string, gone?: () => boolean) => ({ headers: {}, bearer: t, basic: undefined, gone });
const reset = () => {
  calls = 0;
  maxInFlight = 0;
};

describe('introspection calls', () => {
  it('requests carrying the same new token share one call', async () => {
    const src = await source();
    reset();
    const subjects = await Promise.all(Array.from({ length: 40 }, () => src.authenticate(bearer('ok-panel'))));
    expect(calls).toBe(1);
    expect(new Set(subjects).size).toBe(1);
    expect(subjects[0]).toMatchObject({ sub: 'u-ok-panel' });
    // Refusals are shared the same way (and each later request asks again: negative cache off here).
    reset();
    const refused = await Promise.allSettled(Array.from({ length: 10 }, () => src.authenticate(bearer('bad-token'))));
    expect(refused.every((r) => r.status === 'rejected' && (r.reason as { status: number }).status === 401)).toBe(true);
    expect(calls).toBe(1);
  });

  it('a flood of distinct tokens never has more calls open than the bound; beyond the queue it is 503 overloaded', async () => {
    const src = await source();
    reset();
    delayMs = 30;
    const results = await Promise.allSettled(Array.from({ length: 600 }, (_, i) => src.authenticate(bearer(`random-${i}`))));
    expect(maxInFlight).toBeLessThanOrEqual(MAX_CONCURRENT_INTROSPECTIONS);
    expect(maxInFlight).toBeGreaterThan(1);
    const statuses = results.map((r) => (r.status === 'rejected' ? (r.reason as { status: number; code: string }) : { status: 200, code: 'ok' }));
    // Queued ones were answered (401: inactive); the rest was refused before reaching the provider.
    const overloaded = statuses.filter((s) => s.code === 'overloaded');
    expect(overloaded.length).toBeGreaterThan(0);
    expect(overloaded.every((s) => s.status === 503)).toBe(true);
    expect(calls).toBe(600 - overloaded.length);
    // Once the flood is over a real user gets through.
    await expect(src.authenticate(bearer('ok-after'))).resolves.toMatchObject({ sub: 'u-ok-after' });
    delayMs = 50;
  });

  it('requests whose clients hung up while queued are dropped: the next user does not wait behind them', async () => {
    const src = await source();
    reset();
    delayMs = 200;
    // A burst of random tokens whose clients are already gone (they hung up while queued).
    const burst = Array.from({ length: 300 }, (_, i) => src.authenticate(bearer(`abandoned-${i}`, () => true)).catch(() => undefined));
    await new Promise((r) => setTimeout(r, 20));
    const started = Date.now();
    await expect(src.authenticate(bearer('ok-user'))).resolves.toMatchObject({ sub: 'u-ok-user' });
    // Only the calls already running when the user came are ahead of it (one provider round trip),
    // not the 284 queued ones (≈ 18 rounds of 200 ms).
    expect(Date.now() - started).toBeLessThan(2_500);
    await Promise.all(burst);
    expect(calls).toBeLessThanOrEqual(MAX_CONCURRENT_INTROSPECTIONS + 1);
    delayMs = 50;
  });

  it('a reload that keeps the source forgets its answers: a token revoked at the provider stops working', async () => {
    const { parseConfig } = await import('../../src/config/load.ts');
    const { Authenticator } = await import('../../src/identity/authenticator.ts');
    const cfg = parseConfig(`
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
    - { type: introspection, introspectionUrl: "${url}", clientId: c, clientSecret: s }
`, { env: {} });
    const first = await Authenticator.fromConfig(cfg);
    const req = { headers: { authorization: 'Bearer ok-revoke-me' } };
    await expect(first.authenticate(req)).resolves.toMatchObject({ sub: 'u-ok-revoke-me' });
    revoked.add('ok-revoke-me');
    // Cached: the provider is not asked again until the TTL or a reload.
    await expect(first.authenticate(req)).resolves.toMatchObject({ sub: 'u-ok-revoke-me' });
    const reloaded = await Authenticator.fromConfig(cfg, first);
    await reloaded.refreshKeptSources();
    await expect(reloaded.authenticate(req)).rejects.toMatchObject({ status: 401 });
  });

  it('a request after a reload does not join an introspection started before it (the revocation applies at once)', async () => {
    const src = await source();
    delayMs = 400;
    try {
      const before = src.authenticate(bearer('ok-revoked-in-flight'));
      await new Promise((r) => setTimeout(r, 100));
      revoked.add('ok-revoked-in-flight');
      await src.reloaded?.();
      const after = src.authenticate(bearer('ok-revoked-in-flight'));
      // The call from before the reload answers its own caller as the provider answered then…
      await expect(before).resolves.toMatchObject({ sub: 'u-ok-revoked-in-flight' });
      // …a request after the reload asks again, and is refused.
      await expect(after).rejects.toMatchObject({ status: 401 });
    } finally {
      delayMs = 50;
    }
  });

  it('an overloaded source fails the request with 503; the next source does not turn it into a 401', async () => {
    const { Authenticator } = await import('../../src/identity/authenticator.ts');
    const { GatewayError } = await import('../../src/errors.ts');
    const { InvalidTokenError } = await import('../../src/identity/jwt.ts');
    const auth = new Authenticator([
      { name: 'busy', sendsCredentials: true, authenticate: async () => Promise.reject(new GatewayError('overloaded', 'too many token introspections in progress; retry later')) },
      { name: 'other', sendsCredentials: true, authenticate: async () => Promise.reject(new InvalidTokenError('not mine')) },
    ]);
    await expect(auth.authenticate({ headers: { authorization: 'Bearer opaque-token' } })).rejects.toMatchObject({ code: 'overloaded', status: 503 });
    // A busy provider does not block the users of another one.
    const other = new Authenticator([
      { name: 'busy', sendsCredentials: true, authenticate: async () => Promise.reject(new GatewayError('overloaded', 'too many token introspections in progress; retry later')) },
      { name: 'healthy', sendsCredentials: true, authenticate: async () => ({ sub: 'u-b', groups: [], roles: [], auth: 'introspection', claims: {} }) },
    ]);
    await expect(other.authenticate({ headers: { authorization: 'Bearer opaque-token' } })).resolves.toMatchObject({ sub: 'u-b' });
  });
});
