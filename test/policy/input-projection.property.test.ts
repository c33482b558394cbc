// The built-in policy's input contract (src/policy/input-projection.ts),
// checked against the committed wasm itself: for any config the config layer
// accepts and any subject, the decision with the projected subject (groups the
// data names, claims only in claims mode) equals the decision with the whole
// subject. A change to policies/lbac that reads other groups or the claims
// outside claims mode fails here; so does a projection that leaves out too much.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import type { DecisionInput, Subject } from '../../src/policy/decision.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { BUILTIN_POLICY_WASM_SHA256, builtinPolicyProjection, namedGroups } from '../../src/policy/input-projection.ts';

const wasm = readFileSync(new URL('../../wasm/policy.wasm', import.meta.url));
const manifest = JSON.parse(readFileSync(new URL('../../wasm/policy.manifest.json', import.meta.url), 'utf8')) as { wasmSha256: string };

const GROUPS = ['g0', 'g1', 'g2', 'g3', 'g4', 'admins'];
const USERS = ['u0', 'u1', 'u2'];
const group = fc.oneof(fc.constantFrom(...GROUPS), fc.string({ minLength: 1, maxLength: 6 }));
const team = fc.record(
  {
    groups: fc.uniqueArray(fc.constantFrom(...GROUPS), { maxLength: 3 }),
    users: fc.uniqueArray(fc.constantFrom(...USERS), { maxLength: 2 }),
    selectors: fc.constantFrom([{ namespace: 'a' }], [{ namespace: '~b-.*' }], [{ namespace: 'c', job: 'api' }]),
    upstreams: fc.constantFrom(undefined, ['metrics'], ['logs'], ['*']),
    headers: fc.constantFrom(undefined, { 'X-Scope-OrgID': 'tenant-a' }, { 'X-Scope-OrgID': 'tenant-b' }),
  },
  { requiredKeys: ['groups', 'users', 'selectors'] },
);
const configText = fc
  .record({
    teams: fc.dictionary(fc.constantFrom('team-a', 'team-b', 'team-c'), team, { minKeys: 1, maxKeys: 3 }),
    adminGroups: fc.uniqueArray(fc.constantFrom(...GROUPS), { maxLength: 2 }),
    adminUsers: fc.uniqueArray(fc.constantFrom(...USERS), { maxLength: 1 }),
    claimsMode: fc.constantFrom(undefined, { enabled: true }, { enabled: true, teamsFallback: true }, { enabled: false, teamsFallback: true }, { enabled: true, issuers: ['https://idp'] }),
  })
  .map(({ teams, adminGroups, adminUsers, claimsMode }) =>
    stringify({
      upstreams: [
        { name: 'metrics', kind: 'prometheus', url: 'http://127.0.0.1:9090' },
        { name: 'logs', kind: 'loki', url: 'http://127.0.0.1:3100' },
      ],
      identity: { providers: [{ type: 'jwt', jwksUrl: 'http://127.0.0.1:1/jwks', issuer: 'https://idp', audience: 'a' }] },
      ...(adminGroups.length + adminUsers.length > 0 ? { admins: { groups: adminGroups, users: adminUsers } } : {}),
      teams: Object.fromEntries(Object.entries(teams).map(([name, t]) => [name, Object.fromEntries(Object.entries(t).filter(([, v]) => v !== undefined))])),
      ...(claimsMode === undefined ? {} : { policy: { claimsMode } }),
    }),
  );
const subject: fc.Arbitrary<Subject> = fc
  .record({
    sub: fc.constantFrom(...USERS, 'someone'),
    username: fc.option(fc.constantFrom(...USERS), { nil: undefined }),
    usernameTrusted: fc.option(fc.boolean(), { nil: undefined }),
    groups: fc.array(group, { maxLength: 8 }),
    auth: fc.constantFrom('jwt', 'apikey', 'introspection'),
    issuer: fc.constantFrom(undefined, 'https://idp', 'https://other'),
    namespaces: fc.option(fc.constantFrom(['a'], ['b', 'c'], 'a', 7), { nil: undefined }),
    labels: fc.option(fc.constantFrom({ job: 'api' }, { job: ['a', 'b'] }, 'x'), { nil: undefined }),
  })
  .map(({ sub, username, usernameTrusted, groups, auth, issuer, namespaces, labels }) => {
    const claims: Record<string, unknown> = { sub, groups };
    if (namespaces !== undefined) claims['namespaces'] = namespaces;
    if (labels !== undefined) claims['labels'] = labels;
    const s: Subject = { sub, groups, roles: [], auth, claims };
    if (username !== undefined) s.username = username;
    if (usernameTrusted !== undefined) s.usernameTrusted = usernameTrusted;
    if (issuer !== undefined) s.issuer = issuer;
    return Object.freeze(s);
  });
const request = fc.record(
  { upstream: fc.constantFrom('metrics', 'logs'), team: fc.option(fc.constantFrom('team-a', 'team-b', 'nope'), { nil: undefined }) },
).map(({ upstream, team: t }) => ({ upstream, kind: upstream === 'metrics' ? ('prometheus' as const) : ('loki' as const), endpoint: 'query', method: 'GET', path: '/q', ...(t === undefined ? {} : { team: t }) }));

let projected: PolicyEngine;
let whole: PolicyEngine;
beforeAll(async () => {
  projected = await PolicyEngine.fromBytes(wasm, {});
  whole = await PolicyEngine.fromBytes(wasm, {}, { projectInput: false });
});

describe('the built-in policy reads only what its input projection keeps', () => {
  it('is the committed wasm that the projection is tied to', () => {
    expect(BUILTIN_POLICY_WASM_SHA256, 'wasm/policy.wasm changed: check the input contract in src/policy/input-projection.ts, then update BUILTIN_POLICY_WASM_SHA256').toBe(manifest.wasmSha256);
    expect(projected.projectsInput).toBe(true);
    expect(whole.projectsInput).toBe(false);
  });

  it('decides every request as with the whole subject', () => {
    fc.assert(
      fc.property(configText, fc.array(fc.tuple(subject, request), { minLength: 1, maxLength: 6 }), (text, cases) => {
        const data = { lbac: parseConfig(text).policyData };
        projected.setData(data);
        whole.setData(data);
        for (const [s, r] of cases) {
          const input: DecisionInput = { subject: s, request: r };
          expect(projected.evaluate(input)).toEqual(whole.evaluate({ subject: s, request: { ...r } }));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('is given fewer groups and no claims outside claims mode, the subject itself when nothing is left out', () => {
    const data = { lbac: parseConfig(stringify({ upstreams: [{ name: 'metrics', kind: 'prometheus', url: 'http://127.0.0.1:9090' }], identity: { providers: [{ type: 'jwt', jwksUrl: 'http://127.0.0.1:1/jwks', issuer: 'https://idp', audience: 'a' }] }, admins: { groups: ['admins'] }, teams: { 'team-a': { groups: ['g0'], selectors: [{ namespace: 'a' }] } } })).policyData };
    expect([...namedGroups(data)].sort()).toEqual(['admins', 'g0']);
    const project = builtinPolicyProjection(data);
    const s: Subject = Object.freeze({ sub: 'u', groups: ['x', 'g0', 'y', 'admins'], roles: [], auth: 'jwt', claims: { groups: ['x'] } });
    const p = project(s);
    expect(p.groups).toEqual(['g0', 'admins']);
    expect(p.claims).toEqual({});
    expect(Object.isFrozen(p) && Object.isFrozen(p.groups)).toBe(true);
    expect(project(s)).toBe(p);
    const plain: Subject = Object.freeze({ sub: 'u', groups: ['g0'], roles: [], auth: 'apikey', claims: {} });
    expect(project(plain)).toBe(plain);
    const claimsData = { lbac: { ...data.lbac, claimsMode: { enabled: true } } };
    expect(builtinPolicyProjection(claimsData)(s).claims).toBe(s.claims);
  });

  it('gives any other policy the whole subject', async () => {
    // The same policy with a custom section appended: a valid wasm with another sha256.
    const other = new Uint8Array([...wasm, 0x00, 0x05, 0x04, ...new TextEncoder().encode('lbac')]);
    const e = await PolicyEngine.fromBytes(other, {});
    expect(e.projectsInput).toBe(false);
  });
});
