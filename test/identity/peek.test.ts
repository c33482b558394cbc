// Authenticator.peek, the synchronous answer for credentials seen before: whenever it
// answers, authenticate() (the full, asynchronous walk over the sources) must answer the
// same Subject for the same request; otherwise it must stay out of the way (UNDECIDED).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { startJwksServer, type JwksServer } from '../../e2e/harness/jwks-server.ts';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { apiKeyProviderSchema, basicProviderSchema, grafanaProviderSchema, jwtProviderSchema, mtlsProviderSchema } from '../../src/config/schema.ts';
import { GatewayError } from '../../src/errors.ts';
import { Authenticator, createSource, UNDECIDED, type AuthRequest } from '../../src/identity/authenticator.ts';
import { hashSecret } from '../../src/identity/secrets.ts';
import type { Subject } from '../../src/policy/decision.ts';

let idpA: TestIssuer;
let idpB: TestIssuer;
let grafana: TestIssuer;
let grafanaKeys: JwksServer;
const GRAFANA_URL = 'https://grafana.peek.test';
const requests: Record<string, AuthRequest> = {};
const API_KEY = 'lbac_peek-key-0123456789abcdefghijklmnop';

async function sources() {
  return [
    await createSource(apiKeyProviderSchema.parse({ type: 'apikey', keys: [{ name: 'ci', hash: await hashSecret(API_KEY, { N: 1024 }), subject: { groups: ['team-a'] } }] })),
    await createSource(jwtProviderSchema.parse({ type: 'jwt', jwksFile: idpA.jwksPath, issuer: idpA.issuer, audience: 'lbac-gateway' })),
    await createSource(jwtProviderSchema.parse({ type: 'jwt', jwksFile: idpB.jwksPath, issuer: idpB.issuer, audience: 'lbac-gateway' })),
    await createSource(apiKeyProviderSchema.parse({ type: 'apikey', header: 'X-API-Key', keys: [{ name: 'hdr', hash: await hashSecret('header-key', { N: 1024 }), subject: { groups: ['team-b'] } }] })),
    await createSource(basicProviderSchema.parse({ type: 'basic', users: [{ username: 'bob', hash: await hashSecret('pw-bob', { N: 1024 }), subject: { groups: ['team-b'] } }] })),
    await createSource(grafanaProviderSchema.parse({ type: 'grafana', url: GRAFANA_URL, jwksUrl: grafanaKeys.url, orgs: [1] })),
    await createSource(mtlsProviderSchema.parse({ type: 'mtls' })),
  ];
}

beforeAll(async () => {
  idpA = await createTestIssuer({ issuer: 'https://idp-a.test', audience: 'lbac-gateway', alg: 'ES256' });
  idpB = await createTestIssuer({ issuer: 'https://idp-b.test', audience: 'lbac-gateway', alg: 'ES256' });
  grafana = await createTestIssuer({ issuer: GRAFANA_URL, audience: 'org:1', alg: 'ES256' });
  grafanaKeys = await startJwksServer(() => readFileSync(grafana.jwksPath));
  const bearer = (t: string): AuthRequest => ({ headers: { authorization: `Bearer ${t}` } });
  const grafanaId = await grafana.mint({ sub: 'user:7', username: 'gina' });
  const tls = (fingerprint256: string, authorized = true): AuthRequest['tls'] => ({
    authorized,
    error: authorized ? undefined : 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    certificate: { cn: 'svc', ou: ['team-a'], o: [], email: [], dns: [], uri: [], sanEmail: [], issuerCN: 'CA', serialNumber: '01', fingerprint256, validTo: new Date(Date.now() + 3_600_000).toUTCString() },
  });
  const alice = await idpA.mint({ sub: 'alice', groups: ['team-a'] });
  const carol = await idpA.mint({ sub: 'carol', groups: ['team-b'] });
  Object.assign(requests, {
    alice: bearer(alice),
    carol: bearer(carol),
    dave: bearer(await idpB.mint({ sub: 'dave', groups: ['team-b'] })),
    expired: bearer(await idpA.mint({ sub: 'old', exp: Math.floor(Date.now() / 1000) - 3600 })),
    otherAudience: bearer(await idpA.mint({ sub: 'aud' }, { audience: 'someone-else' })),
    forged: bearer(alice.slice(0, -2) + (alice.at(-2) === 'A' ? 'B' : 'A') + alice.at(-1)),
    apiKey: bearer(API_KEY),
    wrongKey: bearer('lbac_wrong-key-0123456789abcdefghijklmnop'),
    headerKey: { headers: { 'x-api-key': 'header-key' } },
    headerKeyAndAlice: { headers: { 'x-api-key': 'header-key', authorization: `Bearer ${alice}` } },
    basic: { headers: { authorization: `Basic ${Buffer.from('bob:pw-bob').toString('base64')}` } },
    basicWrong: { headers: { authorization: `Basic ${Buffer.from('bob:nope').toString('base64')}` } },
    none: { headers: {} },
    malformed: { headers: { authorization: 'Bearer a b' } },
    twoHeaders: { headers: { authorization: `Bearer ${alice}` }, rawHeaders: ['Authorization', `Bearer ${alice}`, 'authorization', `Bearer ${carol}`] },
    grafanaId: { headers: { 'x-grafana-id': grafanaId } },
    grafanaOtherOrg: { headers: { 'x-grafana-id': await grafana.mint({ sub: 'user:8' }, { audience: 'org:2' }) } },
    grafanaTwice: { headers: { 'x-grafana-id': [grafanaId, grafanaId] } },
    cert: { headers: {}, tls: tls('F1') },
    certUnverified: { headers: {}, tls: tls('F2', false) },
    certAndGrafana: { headers: { 'x-grafana-id': grafanaId }, tls: tls('F1') },
  } satisfies Record<string, AuthRequest>);
});

afterAll(async () => {
  idpA?.cleanup();
  idpB?.cleanup();
  grafana?.cleanup();
  await grafanaKeys?.close();
});

async function outcome(auth: Authenticator, req: AuthRequest): Promise<Subject | number> {
  try {
    return await auth.authenticate(req);
  } catch (e) {
    if (e instanceof GatewayError) return e.status;
    throw e;
  }
}

describe('Authenticator.peek', () => {
  it('answers only what authenticate answers, for any sequence of requests on shared or separate connections', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom(...Object.keys(requests)), fc.integer({ min: 0, max: 2 })), { minLength: 1, maxLength: 30 }), async (steps) => {
        // A fresh authenticator per sequence: every cache starts empty.
        const auth = new Authenticator(await sources());
        const connections = [{}, {}, undefined];
        for (const [name, c] of steps) {
          const req = { ...(requests[name] as AuthRequest), connection: connections[c] };
          const peeked = auth.peek(req);
          const full = await outcome(auth, req);
          if (peeked !== UNDECIDED) expect(full, `${name}: peek answered, authenticate must agree`).toBe(peeked);
        }
      }),
      { numRuns: 40 },
    );
  }, 60_000);

  it('answers a token, key or password accepted before (from the first source that judges it), and nothing else', async () => {
    const auth = new Authenticator(await sources());
    for (const name of Object.keys(requests)) expect(auth.peek(requests[name] as AuthRequest), `${name} before any authenticate`).toBe(UNDECIDED);
    for (const name of Object.keys(requests)) await outcome(auth, requests[name] as AuthRequest);
    const decided = Object.keys(requests).filter((name) => auth.peek(requests[name] as AuthRequest) !== UNDECIDED);
    // dave's issuer is the second JWT source's: the first is undecided about his token (not in its cache), so
    // peek stops there. Without a bearer token the JWT sources judge nothing (undefined), so the header key
    // behind them is answered; with alice's token as well, the first JWT source answers, as authenticate does.
    expect(decided.sort()).toEqual(['alice', 'apiKey', 'basic', 'carol', 'cert', 'certAndGrafana', 'grafanaId', 'headerKey', 'headerKeyAndAlice'].sort());
    expect(auth.peek(requests['grafanaId'] as AuthRequest)).toMatchObject({ sub: 'user:7', auth: 'grafana' });
    // The Grafana source comes before mTLS in this config: its token answers.
    expect(auth.peek(requests['certAndGrafana'] as AuthRequest)).toMatchObject({ sub: 'user:7' });
    expect(auth.peek(requests['cert'] as AuthRequest)).toMatchObject({ sub: 'svc', auth: 'mtls' });
    expect(auth.peek(requests['headerKeyAndAlice'] as AuthRequest)).toMatchObject({ sub: 'alice' });
    expect(auth.peek(requests['alice'] as AuthRequest)).toMatchObject({ sub: 'alice' });
    expect(auth.peek(requests['headerKey'] as AuthRequest)).toMatchObject({ sub: 'hdr' });
  });

  it('counts a peeked answer as an accepted request and a cache hit, and an undecided peek as nothing', async () => {
    const auth = new Authenticator(await sources());
    const req = requests['alice'] as AuthRequest;
    expect(auth.peek(req)).toBe(UNDECIDED);
    await auth.authenticate(req);
    // The first JWT source looked the token up twice (authenticate, then verify); peek's miss is not counted.
    expect(auth.cacheStats().get('identity_jwt')).toEqual({ hits: 0, misses: 2, size: 1 });
    auth.peek(req);
    expect(auth.stats.accepted['jwt']).toBe(2);
    expect(auth.cacheStats().get('identity_jwt')).toMatchObject({ hits: 1, misses: 2 });
  });
});
