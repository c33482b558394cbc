// Bundle data whose keys are "__proto__": JSON and OPA treat it as a key like any other; the
// gateway's merge of the data documents must too, or that data silently vanishes from what the
// policy evaluates (the merged object's prototype would be set instead).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildBundle } from '../../e2e/harness/bundles.ts';
import { loadBundle, mergeData } from '../../src/policy/bundle.ts';
import type { DecisionInput } from '../../src/policy/decision.ts';

const configData = { lbac: { admins: { groups: ['admins'], users: [], headers: {} }, teams: {}, attributes: {} } };
const input: DecisionInput = {
  subject: { sub: 'u', groups: [], roles: [], auth: 'jwt', claims: {} },
  request: { upstream: 'm', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' },
};

describe('data keys named __proto__', () => {
  it('mergeData keeps them as data, at any depth, and changes no prototype', () => {
    const bundle = JSON.parse('{"__proto__": {"lbac": {"teams": {}}}, "a": {"__proto__": {"deny": ["x"]}}}') as Record<string, unknown>;
    const merged = mergeData({ a: { b: 1 } }, bundle);
    expect(Object.hasOwn(merged, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(merged)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(merged['a'])).toBe(Object.prototype);
    expect(merged['lbac']).toBeUndefined();
    expect(JSON.parse(JSON.stringify(merged))).toEqual(JSON.parse('{"a": {"b": 1, "__proto__": {"deny": ["x"]}}, "__proto__": {"lbac": {"teams": {}}}}'));
    // Both sides setting it is a conflict like any other key.
    expect(() => mergeData(JSON.parse('{"__proto__": 1}') as Record<string, unknown>, JSON.parse('{"__proto__": 2}') as Record<string, unknown>)).toThrow(/conflict at __proto__/);
  });

  it('a bundle whose data.json sets __proto__ is evaluated with that data, as OPA evaluates it', async () => {
    const rego = [
      'package lbac',
      'import rego.v1',
      'default decision := {"allow": false, "reason": "closed"}',
      'decision := {"allow": true, "unrestricted": true, "reason": "open"} if data["__proto__"].open == true',
      '',
    ].join('\n');
    const built = readFileSync(
      await buildBundle({ revision: 'proto-1', noDefaultPolicy: true, rego: { '/lbac/open.rego': rego }, data: JSON.parse('{"__proto__": {"open": true}}') as Record<string, unknown> }),
    );
    const b = await loadBundle(built, { configData });
    expect(b.engine.evaluate(input)).toMatchObject({ allow: true, reason: 'open' });
  }, 60_000);
});
