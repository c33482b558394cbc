import { RE2JS } from 're2js';
import { describe, expect, it, vi } from 'vitest';
import { policyAllowsValue, policyLabelsTest, policyValueTest } from '../../src/rewrite/matcher.ts';
import { logqlRegexCache } from '../../src/rewrite/logql-policy.ts';
import { rewriteLogQL } from '../../src/rewrite/logql.ts';
import { matcherRegexCache } from '../../src/rewrite/matcher.ts';
import { rewritePromQL, rewriteSeriesSelectors } from '../../src/rewrite/promql.ts';
import { MAX_REGEX_EXPANSION, regexExpansion } from '../../src/rewrite/regex-budget.ts';
import { RegexCache } from '../../src/rewrite/regex-cache.ts';
import { cpuMs } from '../cpu-time.ts';

const counting = () => {
  const c = { compiled: 0, compile: (p: string) => (c.compiled++, p.toUpperCase()) };
  return c;
};

describe('RegexCache (compiled regexes, bounded by their estimated compiled size)', () => {
  it('compiles a pattern once while it is kept', () => {
    const c = new RegexCache<string>();
    const k = counting();
    expect(c.get('ab', k.compile)).toBe('AB');
    expect(c.get('ab', k.compile)).toBe('AB');
    c.get('cd', k.compile);
    expect(c.get('ab', k.compile)).toBe('AB');
    expect(k.compiled).toBe(2);
  });

  it('keeps a null result (a regex that does not compile) like any other', () => {
    const c = new RegexCache<string | null>();
    let compiled = 0;
    c.get('(', () => (compiled++, null));
    c.get('x', () => 'x');
    expect(c.get('(', () => (compiled++, null))).toBeNull();
    expect(compiled).toBe(1);
  });

  it('bounds what it keeps by expansion, not text: short regexes with counted repetitions count as what they compile to', () => {
    const c = new RegexCache<number>(1024, 100_000, 50_000);
    for (let i = 0; i < 200; i++) c.get(`\\pL{1000}\\pL{1000}${i}`, () => i);
    expect(c.cost).toBeLessThanOrEqual(100_000);
    expect(c.size).toBeLessThanOrEqual(100_000 / regexExpansion('\\pL{1000}\\pL{1000}0'));
  });

  it('least recently used goes first: a regex in use stays while others come and go', () => {
    const c = new RegexCache<string>(1024, 1000, 1000);
    const k = counting();
    const hot = 'h'.repeat(300);
    c.get(hot, k.compile);
    for (let i = 0; i < 50; i++) {
      c.get(`r${i}-${'a'.repeat(300)}`, k.compile);
      c.get(hot, k.compile);
    }
    // Compiled once: every cold one pushed out another cold one, never the hot one (first in, first out
    // would have pushed the hot one out every third round).
    expect(k.compiled).toBe(51);
    expect(c.cost).toBeLessThanOrEqual(1000);
  });

  it('a regex over maxEntryCost (only a policy\'s can be) is held among the last few large ones, outside the entries', () => {
    const c = new RegexCache<string>(1024, 1000, 100);
    const k = counting();
    const big = (i: number) => `${i}-${'x'.repeat(500)}`;
    for (let round = 0; round < 3; round++) for (let i = 0; i < 4; i++) c.get(big(i), k.compile);
    expect(k.compiled).toBe(4);
    expect(c.size).toBe(0);
    // A fifth pushes out the least recently used one.
    c.get(big(4), k.compile);
    c.get(big(0), k.compile);
    expect(k.compiled).toBe(6);
  });

  it('a client regex within the per-query budget always fits an entry', () => {
    const c = new RegexCache<string>();
    c.get('a'.repeat(MAX_REGEX_EXPANSION), (p) => p);
    expect(c.size).toBe(1);
  });

  it('holds at most maxEntries', () => {
    const c = new RegexCache<number>(3);
    for (let i = 0; i < 10; i++) c.get(`p${i}`, () => i);
    expect(c.size).toBe(3);
  });
});

describe('the rewriters keep a bounded amount of client regexes compiled', () => {
  const policy = [[{ name: 'namespace', op: '=' as const, value: 'team-a' }]];
  // Each distinct regex passes the per-query budget; kept by count alone, 18 KB literals held 1.4 MB each, and
  // quantifiers cost more per character (`a?` ≈ 350 bytes).
  const shapes = [(i: number) => `r${i}-${'a'.repeat(18_000)}`, (i: number) => `${'a?'.repeat(4_900)}${i}`];

  for (const [s, shape] of shapes.entries()) {
    it(`LogQL: stream selectors with distinct costly regexes (shape ${s})`, () => {
      for (let i = 0; i < 40; i++) rewriteLogQL(`{app=~"${shape(i)}"}`, policy);
      expect(logqlRegexCache.cost).toBeLessThanOrEqual(40 * 1024);
      expect(logqlRegexCache.size).toBeLessThan(40);
    });

    it(`PromQL: selectors without a metric name, in queries and match[] (shape ${s})`, () => {
      for (let i = 0; i < 20; i++) rewritePromQL(`{job=~"${shape(i)}"}`, policy);
      for (let i = 20; i < 40; i++) rewriteSeriesSelectors([`{job=~"${shape(i)}"}`], policy);
      expect(matcherRegexCache.cost).toBeLessThanOrEqual(40 * 1024);
      expect(matcherRegexCache.size).toBeLessThan(40);
    });
  }

  it('LogQL: a policy regex too large for an entry is compiled once for a query of many selectors, not once per selector', () => {
    const namespaces = Array.from({ length: 4000 }, (_, i) => `team-a-namespace-${i}`).join('|');
    // Two alternatives: for each selector the rewriter decides which are alive, comparing its namespace with the list.
    const big = [[{ name: 'namespace', op: '=~' as const, value: namespaces }], [{ name: 'app', op: '=' as const, value: 'team-a-app' }]];
    const compile = vi.spyOn(RE2JS, 'compile');
    try {
      const selectors = Array.from({ length: 40 }, (_, i) => `sum(count_over_time({namespace="ns-${i}"}[5m]))`).join(' + ');
      try {
        rewriteLogQL(selectors, big);
      } catch {
        // Refused or not, what counts is how often the list was compiled on the way.
      }
      // Its validation (as written and in a group) and one anchored compile: not one per selector.
      expect(compile.mock.calls.filter(([p]) => String(p).includes('team-a-namespace-3999')).length).toBeLessThanOrEqual(4);
    } finally {
      compile.mockRestore();
    }
  });

  it('a policy regex too large to keep is compiled once per answer, not once per label value, series or span', () => {
    const namespaces = Array.from({ length: 4000 }, (_, i) => `team-a-namespace-${i}`);
    const big = { name: 'namespace', op: '=~' as const, value: namespaces.join('|') };
    expect(regexExpansion(big.value)).toBeGreaterThan(64 * 1024);
    // Five such regexes in one policy (the alternatives of several teams): none can stay in the cache.
    const policy = [0, 1, 2, 3, 4].map((k) => [{ ...big, value: `${big.value}|k${k}` }]);
    const values = Array.from({ length: 2000 }, (_, i) => (i % 2 === 0 ? `team-a-namespace-${i}` : `team-b-${i}`));
    const t0 = cpuMs();
    expect(values.filter(policyValueTest(policy, 'namespace'))).toHaveLength(1000);
    const labels = policyLabelsTest(policy);
    expect(values.filter((v) => labels({ namespace: v }))).toHaveLength(1000);
    // Ten compiles of a 90 KB regex take about a second; one per value took minutes.
    expect(cpuMs() - t0).toBeLessThan(30_000);
    // The single-value forms agree.
    expect(values.slice(0, 4).map((v) => policyAllowsValue(policy, 'namespace', v))).toEqual([true, false, true, false]);
  });
});
