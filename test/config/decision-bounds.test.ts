// A team whose selectors or headers are over the policy decision bounds (src/policy/decision.ts) makes
// every request of its members fail with 500 at runtime; the config load refuses it (default policy)
// or warns (a custom policy; teams that one group grants together), so check-config and reload say so.
import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_WASM, parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { configWarnings } from '../../src/config/warnings.ts';
import { DECISION_LIMITS } from '../../src/policy/decision.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';

const UPSTREAMS = `upstreams:
  - { name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }
  - { name: traces, kind: tempo, url: "http://127.0.0.1:9", mount: /tempo }
identity: { providers: [{ type: jwt, jwksUrl: "https://idp/j", issuer: i, audience: a }] }
`;
/** One alternative per value: `{ namespace: ns-<i> }`. */
const alternatives = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `{ namespace: ns-${from + i} }`).join(', ');
const parse = (teams: string, policy = '') => parseConfig(`${UPSTREAMS}${policy}teams:\n${teams}`, { env: {} });
const refusal = (teams: string): ConfigError => {
  try {
    parse(teams);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('accepted');
};

describe('a team over the decision bounds, with the default policy', () => {
  it('more alternatives than the bound: a config error naming the team, its line, the count and the bound', () => {
    const e = refusal(`  ok: { groups: [a], selectors: [{ namespace: a }] }\n  huge: { groups: [h], selectors: [${alternatives(DECISION_LIMITS.maxGroups + 1)}] }\n`);
    expect(e.message).toContain(`teams.huge: the decision for its members would hold ${DECISION_LIMITS.maxGroups + 1} selector alternatives (at most ${DECISION_LIMITS.maxGroups})`);
    expect(e.message).toContain('fail with 500');
    expect(e.message).toContain('"metrics", "traces"');
    expect(e.key).toBe('teams.huge');
    expect(e.line).toBe(7);
  });

  it('an alternative of more matchers than the bound, more headers than the bound, more bytes than the bound: each a config error', () => {
    const matchers = Array.from({ length: DECISION_LIMITS.maxMatchersPerGroup + 1 }, (_, i) => `l${i}: v`).join(', ');
    expect(refusal(`  wide: { groups: [w], selectors: [{ ${matchers} }] }\n`).message).toContain(`an alternative of ${DECISION_LIMITS.maxMatchersPerGroup + 1} matchers`);
    const headers = Array.from({ length: DECISION_LIMITS.maxHeaders + 1 }, (_, i) => `X-H${i}: v`).join(', ');
    expect(refusal(`  many: { groups: [m], selectors: [{ namespace: a }], headers: { ${headers} } }\n`).message).toContain(`${DECISION_LIMITS.maxHeaders + 1} headers`);
    expect(refusal(`  long: { groups: [l], selectors: [{ namespace: "${'x'.repeat(DECISION_LIMITS.maxStringBytes)}" }] }\n`).message).toMatch(/bytes of names, values and reason \(at most 262144\)/);
  });

  it('at the bound, and over it only before identical alternatives are merged (as the policy merges them): accepted', () => {
    expect(() => parse(`  full: { groups: [f], selectors: [${alternatives(DECISION_LIMITS.maxGroups)}] }\n`)).not.toThrow();
    expect(() => parse(`  twice: { groups: [t], selectors: [${alternatives(DECISION_LIMITS.maxGroups)}, ${alternatives(10)}] }\n`)).not.toThrow();
    // Only for the upstreams it covers: none configured, nothing to decide.
    expect(() => parse(`  elsewhere: { groups: [e], upstreams: [other], selectors: [${alternatives(DECISION_LIMITS.maxGroups + 1)}] }\n`)).not.toThrow();
  });

  it('measures as the default policy decides, attribute mapping included: for Prometheus a decision it returns and the gateway accepts, for Tempo one the gateway refuses', async () => {
    // The bytes bound, where the attribute mapping (Tempo: resource.k8s.namespace.name) counts: the team fits for
    // Prometheus and not for Tempo. Loaded as a custom policy (the default wasm by path): warned, not refused.
    const value = 'v'.repeat(1000);
    const n = Math.floor(DECISION_LIMITS.maxStringBytes / (value.length + 'namespace'.length + 4));
    const teams = `  big: { groups: [b], selectors: [${Array.from({ length: n }, (_, i) => `{ namespace: "${value}${i}" }`).join(', ')}] }\n`;
    const config = parse(teams, `policy: { wasm: ${JSON.stringify(DEFAULT_POLICY_WASM)} }\n`);
    const warnings = configWarnings(config);
    expect(warnings.filter((w) => w.includes('teams.big'))).toHaveLength(1);
    expect(warnings.find((w) => w.includes('teams.big'))).toMatch(/every such request to "traces" would fail with 500.*\(Measured as the default policy returns teams; policy\.wasm may return otherwise\.\)/);
    expect(() => parse(teams)).toThrow(/teams\.big: .*bytes of names, values and reason.*"traces"/);
    const engine = await PolicyEngine.fromFile(config.policyWasm, { lbac: config.policyData });
    const input = (upstream: string, kind: 'prometheus' | 'tempo') => ({ subject: { sub: 'u', groups: ['b'], roles: [], auth: 'jwt', claims: {} }, request: { upstream, kind, endpoint: 'query', method: 'GET', path: '/' } });
    expect(engine.evaluate(input('metrics', 'prometheus')).selectors).toHaveLength(n);
    expect(() => engine.evaluate(input('traces', 'tempo'))).toThrow(/take more than 262144 bytes/);
  });
});

describe('decisions over the bounds that the config can make: warnings', () => {
  it('teams that one group grants together, over the bound in their union: warned (X-Lbac-Team picks one); conflicting ones are denied anyway', () => {
    const half = DECISION_LIMITS.maxGroups / 2 + 1;
    const together = parse(`  a: { groups: [shared, only-a], selectors: [${alternatives(half)}] }\n  b: { groups: [shared], selectors: [${alternatives(half, 10_000)}] }\n`);
    const w = configWarnings(together).filter((x) => x.includes('together'));
    expect(w).toEqual([expect.stringContaining(`teams a, b together (group "shared" is in all of them) make a decision of ${2 * half} selector alternatives`)]);
    expect(w[0]).toContain('unless they name one team with X-Lbac-Team');
    // Different tenants and different selectors: the default policy denies their common members, no decision to bound.
    const conflicting = parse(`  a: { groups: [shared], selectors: [${alternatives(half)}], headers: { X-Scope-OrgID: ta } }\n  b: { groups: [shared], selectors: [${alternatives(half, 10_000)}], headers: { X-Scope-OrgID: tb } }\n`);
    expect(configWarnings(conflicting).filter((x) => x.includes('together'))).toEqual([]);
    // Each alone within the bound and nobody in both: nothing.
    expect(configWarnings(parse(`  a: { groups: [ga], selectors: [${alternatives(half)}] }\n  b: { groups: [gb], selectors: [${alternatives(half, 10_000)}] }\n`)).filter((x) => x.includes('decision'))).toEqual([]);
  });
});
