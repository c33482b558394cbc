// The claims-driven mode of the default policy (policies/lbac/claims.rego),
// through the committed wasm/policy.wasm and the config layer that produces its
// data: the Go semantics are covered by `opa test`; this checks that the
// WebAssembly build agrees, in particular the RE2 quoting of claim values.
import fc from 'fast-check';
import { RE2JS } from 're2js';
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { toolPath } from '../../e2e/harness/tools.ts';
import { validateDecision } from '../../src/policy/decision.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { Decision, DecisionInput, RequestInfo, Subject } from '../../src/policy/decision.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';

const WASM = fileURLToPath(new URL('../../wasm/policy.wasm', import.meta.url));
const metrics: RequestInfo = { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' };
const traces: RequestInfo = { upstream: 'traces', kind: 'tempo', endpoint: 'search', method: 'GET', path: '/api/search' };

function yaml(claimsMode: string): string {
  return `
upstreams:
  - { name: metrics, kind: prometheus, url: "http://127.0.0.1:9090" }
  - { name: traces, kind: tempo, url: "http://127.0.0.1:3200" }
identity:
  providers: [{ type: jwt, jwksUrl: "http://127.0.0.1:1/jwks", issuer: i, audience: a }]
admins: { groups: [admins] }
teams:
  team-a: { groups: [team-a], selectors: [{ namespace: "~team-a-.*" }] }
policy:
${claimsMode}
`;
}

async function engineFor(claimsMode: string): Promise<PolicyEngine> {
  const cfg = parseConfig(yaml(claimsMode));
  return PolicyEngine.fromFile(WASM, { lbac: cfg.policyData }, { entrypoint: cfg.policy.entrypoint });
}

const subject = (claims: Record<string, unknown>, groups: string[] = []): Subject => ({ sub: 'u-1', groups, roles: [], auth: 'jwt', claims });

/** Does the decision's (single-group) selector on `name` accept `value`, as Prometheus would (anchored RE2)? */
function accepts(d: Decision, name: string, value: string): boolean {
  const m = d.selectors[0]?.find((x) => x.name === name);
  if (m === undefined) throw new Error(`no matcher on ${name}`);
  if (m.op === '=') return m.value === value;
  if (m.op === '=~') return RE2JS.compile(`^(?:${m.value})$`).matches(value);
  throw new Error(`unexpected op ${m.op}`);
}

let engine: PolicyEngine;
beforeAll(async () => {
  engine = await engineFor('  claimsMode: { enabled: true }');
});

describe('config → data.lbac.claimsMode', () => {
  it('fills defaults and is absent unless configured', () => {
    expect(parseConfig(yaml('  claimsMode: {}')).policyData.claimsMode).toEqual({
      enabled: true,
      namespacesClaim: 'namespaces',
      labelsClaim: 'labels',
      namespaceLabel: 'namespace',
      teamsFallback: false,
    });
    expect(parseConfig(yaml('  attributes: {}')).policyData).not.toHaveProperty('claimsMode');
    // Unset issuers is absent from the data (every issuer's claims count), not an empty list.
    expect(parseConfig(yaml('  claimsMode: {}')).policyData.claimsMode).not.toHaveProperty('issuers');
    expect(parseConfig(yaml('  claimsMode: { issuers: ["https://corp.test"] }')).policyData.claimsMode).toMatchObject({ issuers: ['https://corp.test'] });
  });
  it('issuers: a non-empty list of non-empty strings', () => {
    expect(() => parseConfig(yaml('  claimsMode: { issuers: [] }'))).toThrow(/policy\.claimsMode\.issuers/);
    expect(() => parseConfig(yaml('  claimsMode: { issuers: [""] }'))).toThrow(/policy\.claimsMode\.issuers/);
    expect(() => parseConfig(yaml('  claimsMode: { issuers: "https://corp.test" }'))).toThrow(/policy\.claimsMode\.issuers/);
  });
  it('rejects unknown keys and bad label names with the YAML location', () => {
    expect(() => parseConfig(yaml('  claimsMode: { namespaceClaim: ns }'))).toThrow(/unknown key "namespaceClaim"/);
    expect(() => parseConfig(yaml('  claimsMode: { namespaceLabel: "k8s-ns" }'))).toThrow(/policy\.claimsMode\.namespaceLabel/);
  });
});

describe('claims mode through wasm/policy.wasm', () => {
  it('namespaces claim → namespace =~ alternation; labels claim → AND-group', () => {
    const d = engine.evaluate({ subject: subject({ namespaces: ['b', 'a'], labels: { app: 'x', team: ['y', 'z'] } }), request: metrics });
    expect(d).toMatchObject({ allow: true, unrestricted: false, reason: 'claims: labels,namespaces', headers: {} });
    expect(d.selectors).toEqual([
      [
        { name: 'app', op: '=', value: 'x' },
        { name: 'namespace', op: '=~', value: 'a|b' },
        { name: 'team', op: '=~', value: 'y|z' },
      ],
    ]);
  });
  it('maps the namespace label for Tempo', () => {
    const d = engine.evaluate({ subject: subject({ namespaces: ['a'] }), request: traces });
    expect(d.selectors).toEqual([[{ name: 'resource.k8s.namespace.name', op: '=', value: 'a' }]]);
  });
  it('refuses tokens carrying neither claim (no team fallback), and malformed claims', () => {
    for (const claims of [{}, { namespaces: [] }, { namespaces: [''] }, { labels: {} }, { labels: { 'bad-name': 'x' } }, { namespaces: ['a'], labels: { app: 3 } }]) {
      const d = engine.evaluate({ subject: subject(claims, ['team-a']), request: metrics });
      expect(d.allow, JSON.stringify(claims)).toBe(false);
      expect(d.selectors).toEqual([]);
    }
  });
  it('admins stay unrestricted', () => {
    expect(engine.evaluate({ subject: subject({}, ['admins']), request: metrics }).unrestricted).toBe(true);
  });
  it('teamsFallback: tokens without claims are decided by the teams', async () => {
    const e = await engineFor('  claimsMode: { teamsFallback: true }');
    expect(e.evaluate({ subject: subject({}, ['team-a']), request: metrics }).reason).toBe('teams: team-a');
    expect(e.evaluate({ subject: subject({ namespaces: ['x'] }, ['team-a']), request: metrics }).selectors).toEqual([[{ name: 'namespace', op: '=', value: 'x' }]]);
  });
  it('issuers: only a listed token issuer\'s claims count; any other subject is read as carrying none', async () => {
    const e = await engineFor('  claimsMode: { issuers: ["https://corp.test/"] }');
    const fallback = await engineFor('  claimsMode: { issuers: ["https://corp.test"], teamsFallback: true }');
    const from = (auth: string, issuer: string | undefined, groups: string[] = []): Subject => ({ ...subject({ namespaces: ['payments'] }, groups), auth, ...(issuer === undefined ? {} : { issuer }) });
    for (const iss of ['https://corp.test', 'https://corp.test/']) {
      expect(e.evaluate({ subject: from('jwt', iss), request: metrics }).selectors).toEqual([[{ name: 'namespace', op: '=', value: 'payments' }]]);
    }
    for (const s of [from('jwt', 'https://partner.test'), from('jwt', undefined), from('apikey', undefined), from('mtls', 'https://corp.test'), from('jwt', 'https://corp.test.evil')]) {
      const d = e.evaluate({ subject: s, request: metrics });
      expect(d, JSON.stringify(s)).toMatchObject({ allow: false, selectors: [], reason: 'claims mode: the subject is not a token of an issuer in claimsMode.issuers' });
      // With teamsFallback: the teams decide, the claims are not read.
      expect(fallback.evaluate({ subject: { ...s, groups: ['team-a'] }, request: metrics })).toMatchObject({ allow: true, reason: 'teams: team-a', selectors: [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]] });
      expect(fallback.evaluate({ subject: s, request: metrics })).toMatchObject({ allow: false, selectors: [] });
    }
    expect(e.evaluate({ subject: from('jwt', 'https://partner.test', ['admins']), request: metrics }).unrestricted).toBe(true);
  });
  it('custom claim paths (dotted) and namespace label', async () => {
    const e = await engineFor('  claimsMode: { namespacesClaim: tenancy.ns, labelsClaim: "https://example.com/labels", namespaceLabel: kubernetes_namespace }');
    const d = e.evaluate({ subject: subject({ tenancy: { ns: 'a' }, 'https://example.com/labels': { env: 'dev' } }), request: metrics });
    expect(d.selectors).toEqual([
      [
        { name: 'env', op: '=', value: 'dev' },
        { name: 'kubernetes_namespace', op: '=', value: 'a' },
      ],
    ]);
  });

  it('RE2 metacharacters in values are quoted: each value matches itself and nothing wider', () => {
    const values = ['a.b', 'c|d', 'e(f)*', 'g[h]{2}', 'i+j?', '^k$', 'l\\m', 'ñ.ü', '(?i)x', '.*'];
    const d = engine.evaluate({ subject: subject({ namespaces: values }), request: metrics });
    expect(d.selectors[0]).toHaveLength(1);
    expect(d.selectors[0]![0]!.value).toBe([...values].sort().map((v) => RE2JS.quote(v)).join('|'));
    for (const v of values) expect(accepts(d, 'namespace', v), v).toBe(true);
    for (const v of ['aXb', 'c', 'd', 'e', 'eff', 'ghh', 'gh', 'k', 'lm', 'X', 'anything', '']) expect(accepts(d, 'namespace', v), v).toBe(false);
  });

  it('property: the namespaces alternation accepts exactly the claimed values (RE2, anchored)', () => {
    const value = fc.string({ minLength: 1, maxLength: 8, unit: fc.constantFrom(...'ab.|()[]{}*+?^$\\-é ') });
    fc.assert(
      fc.property(fc.uniqueArray(value, { minLength: 1, maxLength: 5 }), fc.array(value, { maxLength: 5 }), (claimed, probes) => {
        const d = engine.evaluate({ subject: subject({ namespaces: claimed }), request: metrics });
        expect(d.allow).toBe(true);
        for (const v of claimed) expect(accepts(d, 'namespace', v)).toBe(true);
        for (const p of probes) expect(accepts(d, 'namespace', p)).toBe(claimed.includes(p));
      }),
      { numRuns: 300 },
    );
  });

  it('gives the same decisions as `opa eval` on the Rego sources (Go builtins vs WebAssembly)', async () => {
    const opa = toolPath('opa');
    const dir = mkdtempSync(join(tmpdir(), 'lbac-claims-'));
    const policyDir = fileURLToPath(new URL('../../policies/lbac/', import.meta.url));
    const sources = readdirSync(policyDir).filter((f) => f.endsWith('.rego') && !f.endsWith('_test.rego')).map((f) => join(policyDir, f));
    try {
      const dataFile = join(dir, 'data.json');
      writeFileSync(dataFile, JSON.stringify({ lbac: parseConfig(yaml('  claimsMode: { enabled: true }')).policyData }));
      const cases: Record<string, unknown>[] = [
        { namespaces: ['a.b', 'c|d', 'e(f)*', 'g[h]{2}', 'i+j?', '^k$', 'l\\m', 'ñ.ü', '日本.語'] },
        { labels: { app: 'x.y', team: ['(a)', 'b|c'] }, namespaces: 'ns' },
        {},
        { namespaces: [], labels: { app: 'x' } },
        { labels: { a: 'x', _b9: 'y', Z: 'z', __name__: 'up' } },
        { labels: { '9a': 'x' } },
        { labels: { 'a-b': 'x' } },
        { labels: { 'ñ': 'x' } },
      ];
      for (const claims of cases) {
        for (const request of [metrics, traces]) {
          const input = { subject: subject(claims), request };
          const out = execFileSync(opa!, ['eval', '--format', 'json', '--stdin-input', ...sources.flatMap((f) => ['--data', f]), '--data', dataFile, 'data.lbac.decision'], {
            input: JSON.stringify(input),
            encoding: 'utf8',
          });
          const value = (JSON.parse(out) as { result: { expressions: { value: unknown }[] }[] }).result[0]!.expressions[0]!.value;
          expect(engine.evaluate(input), JSON.stringify(claims)).toEqual(validateDecision(value));
        }
      }
      // The issuers allow-list (trailing "/" trimmed with trim_right on both sides).
      const listedMode = '  claimsMode: { issuers: ["https://corp.test/", "https://ünï.test"], teamsFallback: true }';
      writeFileSync(dataFile, JSON.stringify({ lbac: parseConfig(yaml(listedMode)).policyData }));
      const listed = parseConfig(yaml(listedMode));
      const e = await PolicyEngine.fromFile(WASM, { lbac: listed.policyData }, { entrypoint: listed.policy.entrypoint });
      const issuers: unknown[] = ['https://corp.test', 'https://corp.test/', 'https://corp.test//', 'https://ünï.test/', 'https://partner.test', '/', '', 7, null, undefined];
      for (const issuer of issuers) {
        for (const auth of ['jwt', 'grafana', 'mtls']) {
          const input = { subject: { ...subject({ namespaces: ['x'] }, ['team-a']), auth, ...(issuer === undefined ? {} : { issuer }) }, request: metrics };
          const out = execFileSync(opa!, ['eval', '--format', 'json', '--stdin-input', ...sources.flatMap((f) => ['--data', f]), '--data', dataFile, 'data.lbac.decision'], {
            input: JSON.stringify(input),
            encoding: 'utf8',
          });
          const value = (JSON.parse(out) as { result: { expressions: { value: unknown }[] }[] }).result[0]!.expressions[0]!.value;
          expect(e.evaluate(input as DecisionInput), `${auth} ${String(issuer)}`).toEqual(validateDecision(value));
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
