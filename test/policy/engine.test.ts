import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { validateDecision } from '../../src/policy/decision.ts';
import type { Decision, DecisionInput, RequestInfo, Subject } from '../../src/policy/decision.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { toolPath } from '../../e2e/harness/tools.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WASM_PATH = join(ROOT, 'wasm/policy.wasm');
const MANIFEST_PATH = join(ROOT, 'wasm/policy.manifest.json');
const POLICY_DIR = join(ROOT, 'policies');

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

// --- realistic configuration (the shape src/config produces under data.lbac) ---------

const lbac = {
  admins: { groups: ['admins'], users: ['root'], headers: { 'X-Scope-OrgID': 'tenant-a|tenant-b' } },
  teams: {
    'team-a': {
      groups: ['team-a'],
      users: ['alice'],
      upstreams: ['*'],
      selectors: [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]],
      headers: { 'X-Scope-OrgID': 'tenant-a' },
      labels: ['*'],
    },
    'team-b': {
      groups: ['team-b'],
      users: [],
      upstreams: ['metrics', 'traces'],
      selectors: [[{ name: 'namespace', op: '=', value: 'team-b' }, { name: 'cluster', op: '!=', value: 'prod-eu' }]],
      headers: { 'X-Scope-OrgID': 'tenant-b' },
      labels: ['*'],
    },
  },
  attributes: { tempo: { namespace: 'resource.k8s.namespace.name', cluster: 'resource.k8s.cluster.name' } },
};
const data = { lbac };

const metrics: RequestInfo = { upstream: 'metrics', kind: 'prometheus', endpoint: 'query_range', method: 'POST', path: '/api/v1/query_range' };
const logs: RequestInfo = { upstream: 'logs', kind: 'loki', endpoint: 'query_range', method: 'GET', path: '/loki/api/v1/query_range' };
const traces: RequestInfo = { upstream: 'traces', kind: 'tempo', endpoint: 'search', method: 'GET', path: '/api/search' };

function subject(s: Partial<Subject> & { sub: string }): Subject {
  return { groups: [], roles: [], auth: 'jwt', issuer: 'https://idp.example.com', claims: { sub: s.sub }, ...s };
}
const alice = subject({ sub: 'u-alice', username: 'alice', usernameTrusted: true, email: 'alice@example.com', groups: ['viewers'] });
const bob = subject({ sub: 'u-bob', username: 'bob', groups: ['team-b'] });
const admin = subject({ sub: 'u-admin', username: 'carol', groups: ['team-a', 'admins'], roles: ['admin'] });
const stranger = subject({ sub: 'u-eve', username: 'eve', groups: ['contractors'] });
const multi = subject({ sub: 'u-dave', username: 'dave', groups: ['team-b', 'team-a'] });

const input = (s: Subject, request: RequestInfo): DecisionInput => ({ subject: s, request });

const teamA = [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]];
const teamB = [[{ name: 'cluster', op: '!=', value: 'prod-eu' }, { name: 'namespace', op: '=', value: 'team-b' }]];

function expectPolicyError(fn: () => unknown, message?: RegExp): GatewayError {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(GatewayError);
  const err = thrown as GatewayError;
  expect(err.code).toBe('policy_error');
  if (message) expect(err.message).toMatch(message);
  return err;
}

let wasm: Uint8Array;
let engine: PolicyEngine;
beforeAll(async () => {
  wasm = readFileSync(WASM_PATH);
  engine = await PolicyEngine.fromFile(WASM_PATH, data);
});

describe('wasm/policy.wasm is up to date', () => {
  const manifest = JSON.parse(readFileSync(MANIFEST_PATH, 'utf8')) as { entrypoint: string; opaVersion: string; wasmSha256: string; sourcesSha256: string };

  function regoSources(dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true, recursive: true })
      .filter((e) => e.isFile() && e.name.endsWith('.rego') && !e.name.endsWith('_test.rego'))
      .map((e) => relative(ROOT, join(e.parentPath, e.name)).split('\\').join('/'))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))); // bytewise, like LC_ALL=C sort
  }

  it('was built from the current policies/*.rego (run make policy)', () => {
    // Same scheme as scripts/build-policy.sh: sha256 over `sha256sum` lines, sorted by path.
    const listing = regoSources(POLICY_DIR)
      .map((p) => `${sha256(readFileSync(join(ROOT, p)))}  ${p}\n`)
      .join('');
    expect(sha256(listing), 'wasm/policy.wasm is stale: policies/ changed since it was built — run make policy').toBe(manifest.sourcesSha256);
  });

  it('is the file the manifest describes (run make policy)', () => {
    expect(sha256(wasm), 'wasm/policy.wasm does not match wasm/policy.manifest.json — run make policy').toBe(manifest.wasmSha256);
    expect(manifest.entrypoint).toBe('lbac/decision');
  });

  it('was built with the pinned OPA version (run make policy)', () => {
    const pinned = /^OPA_VERSION=v?(\S+)$/m.exec(readFileSync(join(ROOT, 'scripts/versions.env'), 'utf8'))?.[1];
    expect(manifest.opaVersion, 'wasm/policy.wasm was built with another OPA than scripts/versions.env pins — run make policy').toBe(pinned);
  });
});

describe('PolicyEngine with the default policy', () => {
  it('reports the revision as the first 12 hex of the wasm sha256', () => {
    expect(engine.revision).toBe(sha256(wasm).slice(0, 12));
    expect(engine.entrypoint).toBe('lbac/decision');
  });

  it('alice (a team-a user by username) sees team-a namespaces on every upstream', () => {
    for (const request of [metrics, logs]) {
      expect(engine.evaluate(input(alice, request))).toEqual({
        allow: true,
        reason: 'teams: team-a',
        unrestricted: false,
        selectors: teamA,
        headers: { 'X-Scope-OrgID': 'tenant-a' },
      });
    }
  });

  it('the same username from a source that does not vouch for it grants nothing', () => {
    const { usernameTrusted: _, ...untrusted } = alice;
    for (const s of [untrusted, { ...alice, usernameTrusted: false }]) expect(engine.evaluate(input(s, metrics)).allow).toBe(false);
  });

  it('bob (group team-b) is allowed on metrics, denied on logs (upstream scoping)', () => {
    expect(engine.evaluate(input(bob, metrics))).toEqual({
      allow: true,
      reason: 'teams: team-b',
      unrestricted: false,
      selectors: teamB,
      headers: { 'X-Scope-OrgID': 'tenant-b' },
    });
    expect(engine.evaluate(input(bob, logs))).toEqual({
      allow: false,
      reason: 'no team grants access to upstream logs',
      unrestricted: false,
      selectors: [],
      headers: {},
    });
  });

  it('an admin is unrestricted, with the admin headers', () => {
    expect(engine.evaluate(input(admin, metrics))).toEqual({
      allow: true,
      reason: 'admin',
      unrestricted: true,
      selectors: [],
      headers: { 'X-Scope-OrgID': 'tenant-a|tenant-b' },
    });
    expect(engine.evaluate(input(subject({ sub: 'root' }), logs)).unrestricted).toBe(true);
  });

  it('a stranger is denied', () => {
    const d = engine.evaluate(input(stranger, metrics));
    expect(d).toEqual({ allow: false, reason: 'no team grants access to upstream metrics', unrestricted: false, selectors: [], headers: {} });
    expect(Object.isFrozen(d)).toBe(true);
  });

  it('a user in two teams on different tenants with different selectors is denied (one request would apply each team\'s selectors in the other\'s tenant)', () => {
    const d = engine.evaluate(input(multi, metrics));
    expect(d).toMatchObject({ allow: false, selectors: [], headers: {} });
    expect(d.reason).toMatch(/^teams team-a,team-b set different headers/);
  });

  const sameTenant = () => PolicyEngine.fromBytes(wasm, { lbac: { ...lbac, teams: { ...lbac.teams, 'team-b': { ...lbac.teams['team-b'], headers: { 'X-Scope-OrgID': 'tenant-a' } } } } });

  it('a user in two teams on one tenant gets the union of selectors', async () => {
    expect((await sameTenant()).evaluate(input(multi, metrics))).toEqual({
      allow: true,
      reason: 'teams: team-a,team-b',
      unrestricted: false,
      selectors: [...teamB, ...teamA],
      headers: { 'X-Scope-OrgID': 'tenant-a' },
    });
  });

  it('teams with the same selectors merge their tenants, header names case-insensitively', async () => {
    const e = await PolicyEngine.fromBytes(wasm, { lbac: { ...lbac, teams: { ...lbac.teams, 'team-b': { ...lbac.teams['team-b'], selectors: lbac.teams['team-a'].selectors, headers: { 'x-scope-orgid': 'tenant-c|tenant-b' } } } } });
    expect(e.evaluate(input(multi, metrics))).toMatchObject({ allow: true, selectors: teamA, headers: { 'X-Scope-OrgID': 'tenant-a|tenant-b|tenant-c' } });
  });

  it('maps selector names to Tempo attributes for tempo upstreams', async () => {
    expect((await sameTenant()).evaluate(input(multi, traces)).selectors).toEqual([
      [
        { name: 'resource.k8s.cluster.name', op: '!=', value: 'prod-eu' },
        { name: 'resource.k8s.namespace.name', op: '=', value: 'team-b' },
      ],
      [{ name: 'resource.k8s.namespace.name', op: '=~', value: 'team-a-.*' }],
    ]);
  });

  it('matches users by sub as well as username', async () => {
    const e = await PolicyEngine.fromBytes(wasm, { lbac: { ...lbac, teams: { ...lbac.teams, 'team-a': { ...lbac.teams['team-a'], users: ['u-eve'] } } } });
    expect(e.evaluate(input(stranger, metrics)).reason).toBe('teams: team-a');
  });

  it('needs no builtins implemented in JavaScript (every builtin is compiled into the wasm)', async () => {
    const { loadPolicy } = await import('@open-policy-agent/opa-wasm');
    const policy = await loadPolicy(wasm);
    const exports = (policy.wasmInstance as { exports: Record<string, (...a: number[]) => number> }).exports;
    const addr = exports['opa_json_dump']!(exports['builtins']!());
    const mem = new Uint8Array(policy.mem.buffer);
    const json = new TextDecoder().decode(mem.subarray(addr, mem.indexOf(0, addr)));
    expect(JSON.parse(json)).toEqual({});
    expect(policy.entrypoints).toEqual({ 'lbac/decision': 0 });
  });

  // Parity between the Rego semantics (opa eval, the pinned CLI) and the compiled wasm.
  it('gives the same decisions as `opa eval` on the Rego sources', () => {
    const opa = toolPath('opa'); // throws, naming `make tools`, when it is missing
    const dir = mkdtempSync(join(tmpdir(), 'lbac-policy-'));
    // Every policy file of package lbac (decision.rego, claims.rego, …), not the tests.
    const regoSources = readdirSync(join(POLICY_DIR, 'lbac'))
      .filter((f) => f.endsWith('.rego') && !f.endsWith('_test.rego'))
      .map((f) => join(POLICY_DIR, 'lbac', f));
    try {
      const dataFile = join(dir, 'data.json');
      writeFileSync(dataFile, JSON.stringify(data));
      for (const s of [alice, bob, admin, stranger, multi]) {
        for (const r of [metrics, logs, traces]) {
          const out = execFileSync(opa!, ['eval', '--format', 'json', '--stdin-input', ...regoSources.flatMap((f) => ['--data', f]), '--data', dataFile, 'data.lbac.decision'], {
            input: JSON.stringify(input(s, r)),
            encoding: 'utf8',
          });
          const value = (JSON.parse(out) as { result: { expressions: { value: unknown }[] }[] }).result[0]!.expressions[0]!.value;
          expect(engine.evaluate(input(s, r)), `${s.username} on ${r.upstream}`).toEqual(validateDecision(value));
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('PolicyEngine loading', () => {
  it('rejects garbage bytes', async () => {
    await expect(PolicyEngine.fromBytes(new TextEncoder().encode('not a wasm module at all'), data)).rejects.toMatchObject({
      code: 'policy_error',
      message: expect.stringMatching(/not a valid WebAssembly module/),
    });
    await expect(PolicyEngine.fromBytes(new Uint8Array(0), data)).rejects.toMatchObject({ code: 'policy_error' });
    await expect(PolicyEngine.fromBytes(new Uint8Array(4096).fill(0xff).buffer, data)).rejects.toMatchObject({ code: 'policy_error' });
  });

  it('rejects a valid WebAssembly module that is not an OPA policy', async () => {
    const emptyModule = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    await expect(PolicyEngine.fromBytes(emptyModule, data)).rejects.toMatchObject({ code: 'policy_error', message: expect.stringMatching(/not an OPA policy .* it lacks eval, entrypoints/) });
  });

  it('rejects a gzip file (a bundle) with a hint', async () => {
    await expect(PolicyEngine.fromBytes(gzipSync(wasm), data)).rejects.toMatchObject({ code: 'policy_error', message: expect.stringMatching(/gzip/) });
  });

  it('rejects a wasm without the entrypoint', async () => {
    await expect(PolicyEngine.fromBytes(wasm, data, { entrypoint: 'lbac/allow' })).rejects.toMatchObject({
      code: 'policy_error',
      message: expect.stringMatching(/no entrypoint lbac\/allow \(it has: lbac\/decision\)/),
    });
  });

  it('fromFile: a missing file is policy_unavailable and names the path', async () => {
    await expect(PolicyEngine.fromFile('/nonexistent/policy.wasm', data)).rejects.toMatchObject({ code: 'policy_unavailable', message: expect.stringMatching(/\/nonexistent\/policy\.wasm/) });
  });

  it('fromFile: an invalid file is policy_error and names the path', async () => {
    await expect(PolicyEngine.fromFile(MANIFEST_PATH, data)).rejects.toMatchObject({ code: 'policy_error', message: expect.stringMatching(/policy\.manifest\.json/) });
  });

  it('accepts an ArrayBuffer and an explicit revision', async () => {
    const buf = wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength) as ArrayBuffer;
    const e = await PolicyEngine.fromBytes(buf, data, { revision: 'bundle-42' });
    expect(e.revision).toBe('bundle-42');
    expect(e.evaluate(input(alice, metrics)).allow).toBe(true);
  });

  it('rejects data that is not a JSON object', async () => {
    for (const bad of [[], 'lbac', 1, null]) {
      await expect(PolicyEngine.fromBytes(wasm, bad)).rejects.toMatchObject({ code: 'policy_error', message: expect.stringMatching(/root data document/) });
    }
    await expect(PolicyEngine.fromBytes(wasm, { lbac: { n: 1n } })).rejects.toMatchObject({ code: 'policy_error', message: expect.stringMatching(/not serialisable/) });
  });

  it('treats undefined data as empty: everyone is denied', async () => {
    const e = await PolicyEngine.fromBytes(wasm, undefined);
    expect(e.evaluate(input(admin, metrics)).allow).toBe(false);
  });
});

describe('PolicyEngine.setData', () => {
  it('replaces the data', async () => {
    const e = await PolicyEngine.fromBytes(wasm, data);
    expect(e.evaluate(input(alice, metrics)).allow).toBe(true);
    e.setData({ lbac: { ...lbac, teams: { 'team-b': lbac.teams['team-b'] } } });
    expect(e.evaluate(input(alice, metrics)).allow).toBe(false);
    expect(e.evaluate(input(bob, metrics)).allow).toBe(true);
  });

  it('keeps the old data when the new data is rejected', async () => {
    const e = await PolicyEngine.fromBytes(wasm, data);
    expect(() => e.setData([])).toThrow(GatewayError);
    expect(() => e.setData({ lbac: { big: 10n } })).toThrow(/not serialisable/);
    expect(e.evaluate(input(alice, metrics)).allow).toBe(true);
  });

  it('keeps the old data when the new data does not fit in memory', async () => {
    const e = await PolicyEngine.fromBytes(wasm, data, { memory: { maximumPages: 16 } });
    expect(() => e.setData({ lbac: { ...lbac, filler: 'x'.repeat(2 * 1024 * 1024) } })).toThrow(/could not be (loaded|instantiated)/);
    expect(e.evaluate(input(alice, metrics)).allow).toBe(true);
  });
});

describe('PolicyEngine fails closed', () => {
  it('an evaluation that throws is a policy_error with the cause, and the engine recovers', async () => {
    const e = await PolicyEngine.fromBytes(wasm, data, { memory: { maximumPages: 16 } });
    // In a field every policy is given (the built-in one is not given claims outside claims mode: input-projection.ts).
    const huge = input(subject({ sub: 'u-alice', username: 'alice', email: 'x'.repeat(4 * 1024 * 1024) }), metrics);
    const err = expectPolicyError(() => e.evaluate(huge), /policy evaluation failed \(lbac\/decision, revision [0-9a-f]{12}\)/);
    expect(err.cause).toBeDefined();
    expect(e.evaluate(input(alice, metrics)).allow).toBe(true);
  });

  it('an input that cannot be serialised is a policy_error', () => {
    const bad = input(subject({ sub: 'u-alice', username: 'alice', email: 1n as unknown as string }), metrics);
    expectPolicyError(() => engine.evaluate(bad), /policy evaluation failed/);
    expect(engine.evaluate(input(alice, metrics)).allow).toBe(true);
  });

  const hostile: [string, unknown][] = [
    ['a data document that shadows the decision rule', { lbac: { ...lbac, decision: { allow: true, unrestricted: true, reason: 'pwned', selectors: [], headers: {} } } }],
    ['data that shadows helper rules', { lbac: { ...lbac, is_admin: true, granting_teams: ['team-a'], alternatives: [[]], subject_groups: ['admins'] } }],
    ['data.lbac as a string', { lbac: 'admins' }],
    ['data.lbac as an array', { lbac: [lbac] }],
    ['teams as an array', { lbac: { teams: Object.values(lbac.teams) } }],
    ['admins.groups as a string', { lbac: { admins: { groups: 'contractors' } } }],
    ['admins.users as an object', { lbac: { admins: { users: { eve: true, 'u-eve': true } } } }],
    ['team groups as a string', { lbac: { teams: { t: { groups: 'contractors', selectors: teamA } } } }],
    ['a team with empty selectors', { lbac: { teams: { t: { groups: ['contractors'], selectors: [] } } } }],
    ['a team with an empty alternative', { lbac: { teams: { t: { groups: ['contractors'], selectors: [[]] } } } }],
    ['a team with selectors as an object', { lbac: { teams: { t: { groups: ['contractors'], selectors: { namespace: 'x' } } } } }],
    ['a team with malformed matchers only', { lbac: { teams: { t: { groups: ['contractors'], selectors: [[{ name: 'namespace', op: '~=', value: 'x' }], [{ name: '', op: '=', value: 'x' }], ['namespace=x']] } } } }],
    ['a team with upstreams null', { lbac: { teams: { t: { groups: ['contractors'], upstreams: null, selectors: teamA } } } }],
    ['a team with upstreams as a string', { lbac: { teams: { t: { groups: ['contractors'], upstreams: '*', selectors: teamA } } } }],
  ];
  it.each(hostile)('%s never allows the stranger', async (_label, d) => {
    const e = await PolicyEngine.fromBytes(wasm, d);
    for (const r of [metrics, logs, traces]) {
      let decision: Decision | undefined;
      try {
        decision = e.evaluate(input(stranger, r));
      } catch (err) {
        expect(err).toMatchObject({ code: 'policy_error' });
      }
      if (decision) expect(decision.allow).toBe(false);
    }
  });

  it('a team matcher the policy passes through but the contract rejects (bad RE2) is a policy_error, not an allow', async () => {
    const e = await PolicyEngine.fromBytes(wasm, { lbac: { teams: { t: { groups: ['contractors'], selectors: [[{ name: 'namespace', op: '=~', value: '(unclosed' }]] } } } });
    expectPolicyError(() => e.evaluate(input(stranger, metrics)), /not a valid RE2/);
  });

  it('a header the policy passes through but the contract rejects is a policy_error, not an allow', async () => {
    const e = await PolicyEngine.fromBytes(wasm, { lbac: { teams: { t: { groups: ['contractors'], selectors: teamA, headers: { 'X-Scope-OrgID': 'a\r\nX-Admin: 1' } } } } });
    expectPolicyError(() => e.evaluate(input(stranger, metrics)), /control character/);
  });

  it('odd subjects are never allowed', () => {
    const odd = [
      { ...stranger, groups: 'admins' },
      { ...stranger, groups: { admins: 'admins' } },
      { ...stranger, groups: [['admins']] },
      { ...stranger, sub: ['root'], username: { root: true } },
      { sub: 'u-x' },
      {},
    ] as unknown as Subject[];
    for (const s of odd) expect(engine.evaluate(input(s, metrics)).allow).toBe(false);
    expect(engine.evaluate({} as DecisionInput).allow).toBe(false);
  });

  it('random data never lets in a subject it does not mention', async () => {
    const e = await PolicyEngine.fromBytes(wasm, {});
    const who = subject({ sub: 'u-zq9-nobody', username: 'zq9-nobody', groups: ['zq9-group'] });
    const matcher = fc.record({ name: fc.constantFrom('namespace', '', 1), op: fc.constantFrom('=', '=~', '~', null), value: fc.oneof(fc.string(), fc.constant('(')) });
    const team = fc.record(
      {
        groups: fc.oneof(fc.array(fc.string()), fc.jsonValue()),
        users: fc.oneof(fc.array(fc.string()), fc.jsonValue()),
        upstreams: fc.oneof(fc.constant(['*']), fc.jsonValue()),
        selectors: fc.oneof(fc.array(fc.array(matcher)), fc.jsonValue()),
        headers: fc.oneof(fc.dictionary(fc.string(), fc.string()), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    const lbacData = fc.record(
      {
        admins: fc.oneof(fc.record({ groups: fc.array(fc.string()), users: fc.array(fc.string()) }), fc.jsonValue()),
        teams: fc.oneof(fc.dictionary(fc.string(), team), fc.jsonValue()),
        attributes: fc.jsonValue(),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(lbacData, fc.jsonValue()), (l) => {
        fc.pre(!JSON.stringify(l).includes('zq9'));
        e.setData({ lbac: l });
        try {
          expect(e.evaluate(input(who, metrics)).allow).toBe(false);
        } catch (err) {
          expect(err).toMatchObject({ code: 'policy_error' });
        }
      }),
      { numRuns: 300 },
    );
  });
});
