import { describe, expect, it } from 'vitest';
import { logqlRegexCache } from '../../src/rewrite/logql-policy.ts';
import { rewriteLogQL } from '../../src/rewrite/logql.ts';
import { matcherRegexCache } from '../../src/rewrite/matcher.ts';
import { rewritePromQL, rewriteSeriesSelectors } from '../../src/rewrite/promql.ts';
import { RegexCache } from '../../src/rewrite/regex-cache.ts';

describe('RegexCache (compiled regexes, bounded in entries and in pattern text)', () => {
  it('compiles a pattern once while it is kept', () => {
    const c = new RegexCache<string>(4, 100, 50);
    let compiled = 0;
    const compile = (p: string) => (compiled++, p.toUpperCase());
    expect(c.get('ab', compile)).toBe('AB');
    expect(c.get('ab', compile)).toBe('AB');
    expect(compiled).toBe(1);
  });

  it('keeps a null result (a regex that does not compile) like any other', () => {
    const c = new RegexCache<string | null>();
    let compiled = 0;
    c.get('(', () => (compiled++, null));
    expect(c.get('(', () => (compiled++, null))).toBeNull();
    expect(compiled).toBe(1);
  });

  it('holds at most maxChars of pattern text: distinct long client regexes push out the oldest, not grow the heap', () => {
    const c = new RegexCache<number>(1024, 1000, 400);
    for (let i = 0; i < 100; i++) c.get(`r${i}-${'a'.repeat(300)}`, () => i);
    expect(c.chars).toBeLessThanOrEqual(1000);
    expect(c.size).toBe(3);
    // The newest are the ones kept.
    let compiled = 0;
    c.get(`r99-${'a'.repeat(300)}`, () => (compiled++, 0));
    expect(compiled).toBe(0);
  });

  it('never keeps a pattern longer than maxPatternChars (compiled again each time)', () => {
    const c = new RegexCache<number>(1024, 10_000, 100);
    let compiled = 0;
    const long = 'x'.repeat(101);
    c.get(long, () => ++compiled);
    c.get(long, () => ++compiled);
    expect(compiled).toBe(2);
    expect(c.size).toBe(0);
  });

  it('holds at most maxEntries', () => {
    const c = new RegexCache<number>(3, 10_000, 100);
    for (let i = 0; i < 10; i++) c.get(`p${i}`, () => i);
    expect(c.size).toBe(3);
    expect(c.chars).toBe(6);
  });

  it('defaults bound the text kept to 256 Ki characters, whatever clients send', () => {
    const c = new RegexCache<number>();
    for (let i = 0; i < 200; i++) c.get(`r${i}-${'a'.repeat(18_000)}`, () => i);
    expect(c.chars).toBeLessThanOrEqual(256 * 1024);
  });
});

describe('the rewriters keep a bounded amount of client regex text compiled', () => {
  // Each distinct 18 KB regex passes the per-query regex budget; kept compiled by count alone,
  // about 230 such requests exhausted a 384 MB heap.
  const policy = [[{ name: 'namespace', op: '=' as const, value: 'team-a' }]];
  const clientRegex = (i: number) => `r${i}-${'a'.repeat(18_000)}`;

  it('LogQL: stream selectors with distinct long regexes', () => {
    for (let i = 0; i < 40; i++) rewriteLogQL(`{app=~"${clientRegex(i)}"}`, policy);
    expect(logqlRegexCache.chars).toBeLessThanOrEqual(256 * 1024);
    expect(logqlRegexCache.size).toBeLessThan(40);
  });

  it('PromQL: selectors without a metric name, in queries and match[]', () => {
    for (let i = 0; i < 20; i++) rewritePromQL(`{job=~"${clientRegex(i)}"}`, policy);
    for (let i = 20; i < 40; i++) rewriteSeriesSelectors([`{job=~"${clientRegex(i)}"}`], policy);
    expect(matcherRegexCache.chars).toBeLessThanOrEqual(256 * 1024);
    expect(matcherRegexCache.size).toBeLessThan(40);
  });
});
