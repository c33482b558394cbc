// X-Lbac-Team: a member of teams on different tenants names the team a request acts as.
// Through the real default policy (wasm/), the app and a canned upstream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUBJECTS, startUpstream, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

const TEAM_B = '  team-b: { groups: [team-b], selectors: [{ namespace: team-b }], headers: { X-Scope-OrgID: tenant-b } }\n';

let up: Upstream;
let t: TestApp;

beforeAll(async () => {
  up = await startUpstream();
  SUBJECTS['dana'] = { sub: 'u-dana', username: 'dana', groups: ['team-a', 'team-b'], roles: [], auth: 'fake', claims: {} };
  t = await testApp(testConfig(up.url, TEAM_B));
});

afterAll(async () => {
  delete SUBJECTS['dana'];
  await t?.app.close();
  await up?.close();
});

const ask = (token: string, headers: Record<string, string | string[]> = {}, query = 'up') =>
  t.app.inject({ method: 'POST', url: '/prometheus/api/v1/query', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded', ...headers }, payload: `query=${encodeURIComponent(query)}` });

describe('X-Lbac-Team', () => {
  it('a member of teams on different tenants is refused without it (the teams conflict) …', async () => {
    const n = up.requests.length;
    const r = await ask('dana');
    expect(r.statusCode).toBe(403);
    expect(r.json()).toMatchObject({ status: 'error', error: expect.stringMatching(/teams team-a,team-b set different headers/) });
    expect(up.requests.length).toBe(n);
  });

  it('… and served as the team it names: that team\'s selectors in that team\'s tenant, the header not forwarded', async () => {
    for (const [team, tenant, selector] of [
      ['team-b', 'tenant-b', 'up{namespace="team-b"}'],
      ['team-a', 'tenant-a', 'up{namespace=~"team-a-.*"}'],
    ] as const) {
      const r = await ask('dana', { 'X-Lbac-Team': team });
      expect(r.statusCode, team).toBe(200);
      const seen = up.requests.at(-1)!;
      expect(seen.params.get('query')).toBe(selector);
      expect(seen.headers['x-scope-orgid']).toBe(tenant);
      expect(seen.headers['x-lbac-team']).toBeUndefined();
    }
    // The audit line names the team the decision ran for.
    expect(t.audit.at(-1)).toMatchObject({ input: { request: { team: 'team-a' } }, result: { allow: true, reason: 'teams: team-a' } });
  });

  it('naming a team never widens: one the subject is not in, or an unknown one, is refused', async () => {
    const n = up.requests.length;
    for (const team of ['team-b', 'team-c', 'admins']) {
      const r = await ask('alice', { 'X-Lbac-Team': team });
      expect(r.statusCode, team).toBe(403);
      expect(r.json().error).toContain(`team ${team} does not grant this subject access to upstream metrics`);
    }
    expect(up.requests.length).toBe(n);
  });

  it('a decision for one team is never served from the cache for another, or for none', async () => {
    expect((await ask('dana', { 'X-Lbac-Team': 'team-b' })).statusCode).toBe(200);
    expect((await ask('dana', { 'X-Lbac-Team': 'team-a' })).statusCode).toBe(200);
    expect(up.requests.at(-1)!.headers['x-scope-orgid']).toBe('tenant-a');
    expect((await ask('dana')).statusCode).toBe(403);
    expect((await ask('alice', { 'X-Lbac-Team': 'team-a' })).statusCode).toBe(200);
    expect((await ask('alice', { 'X-Lbac-Team': 'team-b' })).statusCode).toBe(403);
  });

  it('spellings of another team, names Object.prototype holds, and a group name are no team the subject is in', async () => {
    const n = up.requests.length;
    // alice is in team-a only; her group "team-a" names a team, her other groups none.
    SUBJECTS['erin'] = { sub: 'u-erin', username: 'erin', groups: ['team-a', 'team-b-readers'], roles: [], auth: 'fake', claims: {} };
    try {
      for (const team of ['Team-B', 'TEAM-B', 'team-b.', 'team\u2011b', 'team-b-readers', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'admins', 'janus:prometheus:team-b']) {
        for (const who of ['alice', 'erin']) {
          const r = await ask(who, { 'X-Lbac-Team': team });
          // 400: not a header value (beyond Latin-1); 403: no team of the subject's.
          expect(r.statusCode, `${who} ${team}`).toBe(/^[\x20-\x7e]*$/.test(team) ? 403 : 400);
        }
      }
      // Latin-1 bytes of a header value, and a team name with a trailing NUL or CR, never reach the policy as another team.
      for (const raw of ['team-b\u0000', 'team-b\r']) {
        expect([400, 403]).toContain((await ask('alice', { 'X-Lbac-Team': raw }).catch(() => ({ statusCode: 400 }))).statusCode);
      }
    } finally {
      delete SUBJECTS['erin'];
    }
    expect(up.requests.length).toBe(n);
  });

  it('an empty, repeated or malformed header is a 400 in the backend\'s format, nothing forwarded', async () => {
    const n = up.requests.length;
    for (const value of ['', '   ', 'x'.repeat(257)]) {
      const r = await ask('dana', { 'X-Lbac-Team': value });
      expect(r.statusCode, JSON.stringify(value)).toBe(400);
      expect(r.json()).toMatchObject({ status: 'error', errorType: 'bad_data' });
    }
    const twice = await t.app.inject({ method: 'GET', url: '/prometheus/api/v1/query?query=up', headers: { authorization: 'Bearer dana', 'x-lbac-team': ['team-a', 'team-b'] } });
    expect(twice.statusCode).toBe(400);
    expect(up.requests.length).toBe(n);
  });

  it('an admin stays unrestricted whatever team is named', async () => {
    const r = await ask('carol', { 'X-Lbac-Team': 'team-a' });
    expect(r.statusCode).toBe(200);
    expect(up.requests.at(-1)!.params.get('query')).toBe('up');
  });
});
