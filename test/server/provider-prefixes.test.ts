// Two JWT issuers through the whole app: the corporate IdP (no prefix) and a partner IdP the
// organisation trusts less (groupsPrefix/usersPrefix "partner:"). The partner can mint any
// groups and sub it likes; with the prefix they land in its own namespace, so it cannot grant
// itself the corporate team-a or an admin's sub, while a team written for it
// (`groups: ["partner:team-x"]`) grants its tokens. What the policy decided with, and the
// audit line shows, is the prefixed subject. The partner's prefix also reserves its namespace:
// the corporate issuer (unprefixed) cannot mint "partner:…" groups or subject ids.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { parseConfig } from '../../src/config/load.ts';
import { configWarnings } from '../../src/config/warnings.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { startUpstream, testApp, type TestApp, type Upstream } from './helpers.ts';

let corp: TestIssuer;
let partner: TestIssuer;
let upstream: Upstream;
let t: TestApp;

const configFor = (partnerPrefixes: string) =>
  parseConfig(
    `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: metrics, kind: prometheus, url: "${upstream.url}", mount: /prometheus }
identity:
  providers:
    - { type: jwt, jwksFile: "${corp.jwksPath}", issuer: "https://corp.test", audience: lbac-gateway, algorithms: [ES256] }
    - { type: jwt, jwksFile: "${partner.jwksPath}", issuer: "https://partner.test", audience: lbac-gateway, algorithms: [ES256]${partnerPrefixes} }
admins: { users: [u-admin] }
teams:
  team-a: { groups: [team-a], selectors: [{ namespace: "~team-a-.*" }] }
  team-x: { groups: ["partner:team-x"], users: ["partner:u-lead"], selectors: [{ namespace: team-x }] }
`,
    { env: {} },
  );

beforeAll(async () => {
  corp = await createTestIssuer({ issuer: 'https://corp.test', audience: 'lbac-gateway', alg: 'ES256' });
  partner = await createTestIssuer({ issuer: 'https://partner.test', audience: 'lbac-gateway', alg: 'ES256' });
  upstream = await startUpstream();
  const config = configFor(', groupsPrefix: "partner:", usersPrefix: "partner:"');
  t = await testApp(config, { authenticator: await Authenticator.fromConfig(config) });
});

afterAll(async () => {
  await t?.app.close();
  await upstream?.close();
  corp?.cleanup();
  partner?.cleanup();
});

async function query(token: string) {
  const before = upstream.requests.length;
  const auditBefore = t.audit.length;
  const res = await t.app.inject({ method: 'GET', url: '/prometheus/api/v1/query?query=up', headers: { authorization: `Bearer ${token}` } });
  const forwarded = upstream.requests.slice(before).map((r) => r.params.get('query'));
  const audit = t.audit.slice(auditBefore).find((l) => (l['input'] as Record<string, unknown> | undefined)?.['subject'] !== undefined);
  return { status: res.statusCode, forwarded, subject: (audit?.['input'] as { subject?: Record<string, unknown> } | undefined)?.subject, result: audit?.['result'] as Record<string, unknown> | undefined };
}

describe('two JWT issuers, the partner one prefixed', () => {
  it('the corporate issuer\'s team-a group grants team-a', async () => {
    const r = await query(await corp.mint({ sub: 'u-alice', groups: ['team-a'] }));
    expect(r.status).toBe(200);
    expect(r.forwarded).toEqual(['up{namespace=~"team-a-.*"}']);
    expect(r.subject).toMatchObject({ sub: 'u-alice', groups: ['team-a'] });
  });

  it('the partner issuer minting groups: [team-a] is refused (403): its group is partner:team-a', async () => {
    const r = await query(await partner.mint({ sub: 'u-mallory', groups: ['team-a'] }));
    expect(r.status).toBe(403);
    expect(r.forwarded).toEqual([]);
    // The audit line shows what the policy decided with: the prefixed subject.
    expect(r.subject).toMatchObject({ sub: 'partner:u-mallory', groups: ['partner:team-a'], issuer: 'https://partner.test' });
    expect(r.result).toMatchObject({ allow: false });
  });

  it('the partner issuer minting an admin\'s sub is not that admin (403); the corporate one is', async () => {
    expect((await query(await partner.mint({ sub: 'u-admin' }))).status).toBe(403);
    const admin = await query(await corp.mint({ sub: 'u-admin' }));
    expect(admin.status).toBe(200);
    expect(admin.forwarded).toEqual(['up']);
  });

  it('the partner\'s team-x group grants the team written as groups: ["partner:team-x"]', async () => {
    const r = await query(await partner.mint({ sub: 'u-pat', groups: ['team-x'] }));
    expect(r.status).toBe(200);
    expect(r.forwarded).toEqual(['up{namespace="team-x"}']);
    expect(r.subject).toMatchObject({ sub: 'partner:u-pat', groups: ['partner:team-x'] });
    // A corporate token carrying the bare team-x group is not in that team.
    expect((await query(await corp.mint({ sub: 'u-bob', groups: ['team-x'] }))).status).toBe(403);
  });

  it('the corporate (unprefixed) issuer minting the partner\'s group: dropped, so not team-x\'s data (403; with team-a besides, team-a only)', async () => {
    const r = await query(await corp.mint({ sub: 'u-eve', groups: ['partner:team-x'] }));
    expect(r.status).toBe(403);
    expect(r.forwarded).toEqual([]);
    expect(r.subject).toMatchObject({ sub: 'u-eve', groups: [] });
    const both = await query(await corp.mint({ sub: 'u-eve', groups: ['partner:team-x', 'team-a'] }));
    expect(both.status).toBe(200);
    expect(both.forwarded).toEqual(['up{namespace=~"team-a-.*"}']);
    expect(both.subject).toMatchObject({ sub: 'u-eve', groups: ['team-a'] });
  });

  it('the corporate issuer minting a partner sub (a team-x user) is refused (401), counted as a rejected identity; the partner\'s own is team-x', async () => {
    const rejected = async () => Number(/lbac_gateway_identity_results_total\{result="rejected",auth=""\} (\d+)/.exec(await t.metrics.registry.metrics())?.[1] ?? 0);
    const before = await rejected();
    const r = await query(await corp.mint({ sub: 'partner:u-lead', groups: ['team-a'] }));
    expect(r.status).toBe(401);
    expect(r.forwarded).toEqual([]);
    expect(r.subject).toBeUndefined();
    expect(await rejected()).toBe(before + 1);
    const lead = await query(await partner.mint({ sub: 'u-lead' }));
    expect(lead.status).toBe(200);
    expect(lead.forwarded).toEqual(['up{namespace="team-x"}']);
  });

  it('the same config without the partner prefixes: the partner can grant itself team-a and admin (what the prefixes prevent), and check-config warns', async () => {
    const config = configFor('');
    expect(configWarnings(config).filter((w) => /share one namespace/.test(w))).toHaveLength(1);
    expect(configWarnings(configFor(', groupsPrefix: "partner:", usersPrefix: "partner:"')).filter((w) => /share one namespace/.test(w))).toEqual([]);
    const open = await testApp(config, { authenticator: await Authenticator.fromConfig(config) });
    try {
      const res = await open.app.inject({ method: 'GET', url: '/prometheus/api/v1/query?query=up', headers: { authorization: `Bearer ${await partner.mint({ sub: 'u-mallory', groups: ['team-a'] })}` } });
      expect(res.statusCode).toBe(200);
      const admin = await open.app.inject({ method: 'GET', url: '/prometheus/api/v1/query?query=up', headers: { authorization: `Bearer ${await partner.mint({ sub: 'u-admin' })}` } });
      expect(admin.statusCode).toBe(200);
    } finally {
      await open.app.close();
    }
  });
});
