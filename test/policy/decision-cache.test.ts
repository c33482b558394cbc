import { describe, expect, it } from 'vitest';
import { DecisionCache } from '../../src/policy/decision-cache.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import type { DecisionInput, Subject } from '../../src/policy/decision.ts';

const wasm = new URL('../../wasm/policy.wasm', import.meta.url).pathname;
const teams = (value: string) => ({ lbac: { admins: {}, teams: { a: { groups: ['a'], selectors: [[{ name: 'namespace', op: '=', value }]] } }, attributes: {} } });
const subject = (): Subject => Object.freeze({ sub: 'u', groups: ['a'], roles: [], auth: 'jwt', claims: {} });
const input = (s: Subject, endpoint = 'query'): DecisionInput => ({ subject: s, request: { upstream: 'p', kind: 'prometheus', endpoint, method: 'GET', path: '/api/v1/query' } });

describe('decision cache', () => {
  it('the same subject instance and request hit; another request or subject misses', async () => {
    const engine = await PolicyEngine.fromFile(wasm, teams('x'));
    const s = subject();
    const first = engine.evaluate(input(s));
    expect(engine.evaluate(input(s))).toBe(first);
    expect(engine.decisionCache.hits).toBe(1);
    engine.evaluate(input(s, 'series'));
    engine.evaluate(input(subject()));
    expect(engine.decisionCache.misses).toBe(3);
  });

  it('the requested team is part of the key: no team, each team and any path stay apart', () => {
    const r = { upstream: 'p', kind: 'prometheus' as const, endpoint: 'query', method: 'GET' };
    const keys = [
      { ...r, path: '/x' },
      { ...r, path: '/x', team: 'a' },
      { ...r, path: '/x', team: 'b' },
      { ...r, path: '/x', team: 'a/x' },
      { ...r, path: 'a/x', team: '' },
      { ...r, path: '1:a/x' },
      { ...r, path: '-/x' },
      { ...r, path: '/x', team: '-' },
    ].map((request) => DecisionCache.key({ subject: subject(), request }));
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('a decision for one team is not served for another or for none', async () => {
    const engine = await PolicyEngine.fromFile(wasm, { lbac: { admins: {}, teams: { a: { groups: ['a'], selectors: [[{ name: 'namespace', op: '=', value: 'x' }]] } }, attributes: {} } });
    const s = subject();
    const asked = (team?: string): DecisionInput => ({ subject: s, request: { ...input(s).request, ...(team === undefined ? {} : { team }) } });
    expect(engine.evaluate(asked('a')).allow).toBe(true);
    expect(engine.evaluate(asked('b')).allow).toBe(false);
    expect(engine.evaluate(asked()).allow).toBe(true);
    expect(engine.evaluate(asked('b')).allow).toBe(false);
    expect(engine.decisionCache.hits).toBe(1);
  });

  it('new data clears it: the next decision follows the new data', async () => {
    const engine = await PolicyEngine.fromFile(wasm, teams('x'));
    const s = subject();
    expect(engine.evaluate(input(s)).selectors).toEqual([[{ name: 'namespace', op: '=', value: 'x' }]]);
    engine.setData(teams('y'));
    expect(engine.evaluate(input(s)).selectors).toEqual([[{ name: 'namespace', op: '=', value: 'y' }]]);
  });

  it('a new engine (policy revision) starts with an empty cache', async () => {
    const s = subject();
    const a = await PolicyEngine.fromFile(wasm, teams('x'));
    a.evaluate(input(s));
    const b = await PolicyEngine.fromFile(wasm, teams('z'));
    expect(b.evaluate(input(s)).selectors).toEqual([[{ name: 'namespace', op: '=', value: 'z' }]]);
  });

  it('entries expire after the TTL', () => {
    const c = new DecisionCache(1000);
    const i = input(subject());
    const d = { allow: false, reason: 'r', unrestricted: false, selectors: [], headers: {} };
    c.set(i, d, 0);
    expect(c.get(i, 999)).toBe(d);
    expect(c.get(i, 1000)).toBeUndefined();
  });

  it('is bounded in total, not only per subject: many subjects × many request shapes stay under maxEntries', () => {
    const c = new DecisionCache(60_000, 4, 50);
    const d = { allow: true, reason: 'r', unrestricted: false, selectors: [], headers: {} };
    const subjects = Array.from({ length: 40 }, () => subject());
    const shapes = Array.from({ length: 10 }, (_, i) => `/api/v1/label/l${i}/values`);
    for (const s of subjects) for (const path of shapes) c.set({ subject: s, request: { upstream: 'p', kind: 'prometheus', endpoint: 'label_values', method: 'GET', path } }, d, 0);
    expect(c.entries).toBeLessThanOrEqual(50);
    // Held entries, counted the hard way: never more than the bound.
    let held = 0;
    for (const s of subjects) for (const path of shapes) if (c.get({ subject: s, request: { upstream: 'p', kind: 'prometheus', endpoint: 'label_values', method: 'GET', path } }, 1) !== undefined) held++;
    expect(held).toBeLessThanOrEqual(50);
    expect(held).toBeGreaterThan(0);
    // Setting the same key again is not a new entry.
    const one = input(subjects[0]!);
    c.clear();
    c.set(one, d, 0);
    c.set(one, d, 0);
    expect(c.entries).toBe(1);
  });
});
