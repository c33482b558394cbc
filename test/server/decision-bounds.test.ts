// A decision larger than DECISION_LIMITS (src/policy/decision.ts) is malformed: the request fails
// closed (500, nothing forwarded), as for every other malformed decision. Here the default policy
// passes a team's selectors through, so a team with more alternatives than the bound makes one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DECISION_LIMITS } from '../../src/policy/decision.ts';
import { startUpstream, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let t: TestApp;

beforeAll(async () => {
  up = await startUpstream();
  const config = testConfig(up.url);
  const teams = config.policyData.teams;
  teams['huge'] = {
    ...teams['team-a']!,
    groups: ['team-huge'],
    selectors: Array.from({ length: DECISION_LIMITS.maxGroups + 1 }, (_, i) => [{ name: 'namespace', op: '=', value: `ns-${i}` }]),
  };
  t = await testApp(config, { identity: { name: 'fake', authenticate: async (c) => (c.bearer === 'huge' ? { sub: 'u-huge', groups: ['team-huge'], roles: [], auth: 'fake', claims: {} } : undefined) } });
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});

describe('a decision over the size bounds', () => {
  it('fails closed: 500 in the backend format, nothing forwarded', async () => {
    const r = await t.app.inject({ url: `/prometheus/api/v1/query?query=up`, headers: { authorization: 'Bearer huge' } });
    expect(r.statusCode, r.body).toBe(500);
    expect(JSON.parse(r.body)).toMatchObject({ status: 'error', errorType: 'internal', error: 'policy evaluation failed (the gateway log has the cause)' });
    expect(up.requests).toHaveLength(0);
  });

  it("the cause (the decision's problem, the policy's values) is logged, never told to the client", async () => {
    const r = await t.app.inject({ url: `/prometheus/api/v1/query?query=up`, headers: { authorization: 'Bearer huge' } });
    expect(r.body).not.toMatch(/ns-\d|groups|1024|decision/);
  });
});
