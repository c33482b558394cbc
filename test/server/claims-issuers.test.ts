// The claims-driven mode with two JWT issuers, through the whole app and the real default policy
// (wasm/policy.wasm): only the corporate issuer is in policy.claimsMode.issuers. A partner IdP can
// mint any `namespaces` claim it likes; its tokens are read as carrying no claims at all: refused
// (403) before the upstream is asked, or, with teamsFallback, decided by the teams alone. A static
// API key (no issuer) is treated the same way. Without `issuers` (the old behaviour) the partner's
// claim would decide, which check-config warns about.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { parseConfig } from '../../src/config/load.ts';
import { configWarnings } from '../../src/config/warnings.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { hashSecret } from '../../src/identity/secrets.ts';
import { startUpstream, testApp, type TestApp, type Upstream } from './helpers.ts';

const API_KEY = 'lbac_claims-issuers-key-0123456789abcdefghijklmnop';
const UNTRUSTED = 'claims mode: the subject is not a token of an issuer in claimsMode.issuers';

let corp: TestIssuer;
let partner: TestIssuer;
let upstream: Upstream;
let keyHash: string;
const apps: TestApp[] = [];

const configFor = (claimsMode: string) =>
  parseConfig(
    `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: metrics, kind: prometheus, url: "${upstream.url}", mount: /prometheus }
identity:
  providers:
    - { type: jwt, jwksFile: "${corp.jwksPath}", issuer: "https://corp.test", audience: lbac-gateway, algorithms: [ES256] }
    - { type: jwt, jwksFile: "${partner.jwksPath}", issuer: "https://partner.test", audience: lbac-gateway, algorithms: [ES256], groupsPrefix: "partner:", usersPrefix: "partner:" }
    - { type: apikey, keys: [{ name: ci, hash: "${keyHash}", subject: { groups: [team-a] } }], groupsPrefix: "key:", usersPrefix: "key:" }
admins: { users: [u-admin, "partner:u-admin"] }
teams:
  team-a: { groups: [team-a, "key:team-a"], selectors: [{ namespace: "~team-a-.*" }] }
  team-x: { groups: ["partner:team-x"], selectors: [{ namespace: team-x }] }
policy:
  claimsMode: ${claimsMode}
`,
    { env: {} },
  );

async function appFor(claimsMode: string): Promise<TestApp> {
  const config = configFor(claimsMode);
  const t = await testApp(config, { authenticator: await Authenticator.fromConfig(config) });
  apps.push(t);
  return t;
}

beforeAll(async () => {
  corp = await createTestIssuer({ issuer: 'https://corp.test', audience: 'lbac-gateway', alg: 'ES256' });
  partner = await createTestIssuer({ issuer: 'https://partner.test', audience: 'lbac-gateway', alg: 'ES256' });
  upstream = await startUpstream();
  keyHash = await hashSecret(API_KEY, { N: 1024 });
});

afterAll(async () => {
  for (const t of apps) await t.app.close();
  await upstream?.close();
  corp?.cleanup();
  partner?.cleanup();
});

async function query(t: TestApp, token: string) {
  const before = upstream.requests.length;
  const auditBefore = t.audit.length;
  const res = await t.app.inject({ method: 'GET', url: '/prometheus/api/v1/query?query=up', headers: { authorization: `Bearer ${token}` } });
  const forwarded = upstream.requests.slice(before).map((r) => r.params.get('query'));
  const audit = t.audit.slice(auditBefore).find((l) => (l['input'] as Record<string, unknown> | undefined)?.['subject'] !== undefined);
  return { status: res.statusCode, forwarded, subject: (audit?.['input'] as { subject?: Record<string, unknown> } | undefined)?.subject, result: audit?.['result'] as Record<string, unknown> | undefined };
}

describe('claimsMode.issuers: ["https://corp.test"], no teamsFallback', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await appFor('{ issuers: ["https://corp.test"] }');
  });

  it('the listed (corporate) issuer\'s namespaces claim is the selector', async () => {
    const r = await query(t, await corp.mint({ sub: 'u-alice', namespaces: ['payments'] }));
    expect(r.status).toBe(200);
    expect(r.forwarded).toEqual(['up{namespace="payments"}']);
    expect(r.result).toMatchObject({ allow: true, reason: 'claims: namespaces' });
  });

  it('the unlisted (partner) issuer\'s token with namespaces: [payments] is refused (403) and never reaches the upstream', async () => {
    const r = await query(t, await partner.mint({ sub: 'u-mallory', namespaces: ['payments'] }));
    expect(r.status).toBe(403);
    expect(r.forwarded).toEqual([]);
    expect(r.subject).toMatchObject({ sub: 'partner:u-mallory', issuer: 'https://partner.test', auth: 'jwt' });
    expect(r.result).toMatchObject({ allow: false, reason: UNTRUSTED, selectors: [] });
    // Team membership does not help without teamsFallback, nor do labels.
    const member = await query(t, await partner.mint({ sub: 'u-pat', groups: ['team-x'], namespaces: ['payments'], labels: { app: 'x' } }));
    expect(member.status).toBe(403);
    expect(member.forwarded).toEqual([]);
  });

  it('an API key (no issuer) is refused too; admins of either issuer stay unrestricted', async () => {
    const r = await query(t, API_KEY);
    expect(r.status).toBe(403);
    expect(r.forwarded).toEqual([]);
    expect(r.result).toMatchObject({ reason: UNTRUSTED });
    const admin = await query(t, await partner.mint({ sub: 'u-admin', namespaces: ['payments'] }));
    expect(admin.status).toBe(200);
    expect(admin.forwarded).toEqual(['up']);
  });

  it('one sub and one claim under both issuers: decided per issuer, repeated requests included (the decision cache keys on the subject object)', async () => {
    for (let i = 0; i < 3; i++) {
      const listed = await query(t, await corp.mint({ sub: 'u-same', namespaces: ['payments'] }));
      expect(listed.status).toBe(200);
      expect(listed.forwarded).toEqual(['up{namespace="payments"}']);
      const unlisted = await query(t, await partner.mint({ sub: 'u-same', namespaces: ['payments'] }));
      expect(unlisted.status).toBe(403);
      expect(unlisted.forwarded).toEqual([]);
    }
    // One token re-sent (the identity caches hand back the same subject object): still per issuer.
    const corpToken = await corp.mint({ sub: 'u-same', namespaces: ['payments'] });
    const partnerToken = await partner.mint({ sub: 'u-same', namespaces: ['payments'] });
    for (let i = 0; i < 2; i++) {
      expect((await query(t, partnerToken)).status).toBe(403);
      expect((await query(t, corpToken)).status).toBe(200);
    }
  });

  it('check-config: no warning for a listed configured issuer; a typo is flagged', () => {
    expect(configWarnings(configFor('{ issuers: ["https://corp.test"] }'))).toEqual([]);
    expect(configWarnings(configFor('{ issuers: ["https://crop.test"] }'))).toEqual([expect.stringMatching(/^policy\.claimsMode\.issuers\[0\] "https:\/\/crop\.test" is the issuer of no configured token provider/)]);
  });
});

describe('claimsMode.issuers with teamsFallback: an unlisted issuer is decided by the teams, its claims ignored', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await appFor('{ issuers: ["https://corp.test"], teamsFallback: true }');
  });

  it('a partner token in team-x carrying namespaces: [payments] gets team-x\'s selector, not the claim', async () => {
    const r = await query(t, await partner.mint({ sub: 'u-pat', groups: ['team-x'], namespaces: ['payments'], labels: { app: 'x' } }));
    expect(r.status).toBe(200);
    expect(r.forwarded).toEqual(['up{namespace="team-x"}']);
    expect(r.result).toMatchObject({ reason: 'teams: team-x' });
  });

  it('a partner token in no team carrying namespaces: [payments] is refused (403), not allowed by the claim', async () => {
    const r = await query(t, await partner.mint({ sub: 'u-mallory', namespaces: ['payments'] }));
    expect(r.status).toBe(403);
    expect(r.forwarded).toEqual([]);
    expect(r.result).toMatchObject({ allow: false, selectors: [] });
  });

  it('the API key is decided by its team; the corporate issuer\'s claims still decide', async () => {
    const key = await query(t, API_KEY);
    expect(key.status).toBe(200);
    expect(key.forwarded).toEqual(['up{namespace=~"team-a-.*"}']);
    const listed = await query(t, await corp.mint({ sub: 'u-alice', groups: ['team-a'], namespaces: ['payments'] }));
    expect(listed.forwarded).toEqual(['up{namespace="payments"}']);
  });
});

describe('issuers unset (the old behaviour): every issuer\'s claims decide, and check-config warns', () => {
  it('the partner token\'s namespaces: [payments] reaches payments', async () => {
    const t = await appFor('{ enabled: true }');
    const r = await query(t, await partner.mint({ sub: 'u-mallory', namespaces: ['payments'] }));
    expect(r.status).toBe(200);
    expect(r.forwarded).toEqual(['up{namespace="payments"}']);
    expect(configWarnings(configFor('{ enabled: true }'))).toEqual([expect.stringMatching(/^policy\.claimsMode reads the namespaces and labels claims of every token issuer/)]);
  });
});
