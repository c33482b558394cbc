// The compiled-size estimate that bounds the regexes the gateway compiles
// (re2js expands counted repetitions into copies, so a few kilobytes of
// `\pL{1000}` would take seconds and gigabytes on the event loop).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { thrownCode as codeOf } from './query-errors.ts';
import { rewriteLogQL, rewriteLogQLSelectors } from '../../src/rewrite/logql.ts';
import { rewritePromQL, rewriteSeriesSelectors } from '../../src/rewrite/promql.ts';
import { MAX_REGEX_EXPANSION, regexExpansion } from '../../src/rewrite/regex-budget.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { cpuMs } from '../cpu-time.ts';

const policy: SelectorPolicy = [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]];

describe('regexExpansion', () => {
  it.each([
    ['abc', 3],
    ['a{1000}', 1000],
    ['a{2,5}', 5],
    ['a{3,}', 4],
    ['(ab){10}', 100], // a capturing group weighs 8 besides its contents
    ['(?:a|bc){4}', 20], // a non-capturing group 2
    ['[a-z]{10}', 80],
    ['\\pL{1000}', 40_000], // a Unicode class weighs 40
    ['[\\pL\\d]', 48],
    ['\\d{1000}', 8000],
    ['\\p{Greek}{2}', 80],
    ['(?i)\\w', 8],
    ['\\Qa{9}\\E', 4],
    ['a\\{9}', 4],
    ['x{', 2],
    ['(?i)(a{10}){10}', 180],
    ['()', 8],
    ['(?:)', 2],
    ['(?P<n>)', 8],
    ['a*b+c?', 12], // a quantifier weighs 3
    ['(a?){3}', 36],
    ['a|b', 2], // an alternative that holds something: its | is free
    ['a||b', 3], // an empty one is not
    ['|a', 2],
    ['(|a)', 10],
    ['((', 16],
  ])('%s → %d', (re, units) => {
    expect(regexExpansion(re)).toBe(units);
  });

  const piece = fc.constantFrom('a', 'b', '.', '[0-9]', '\\d', '\\pL', '(?i)', '|', '*', '+', '?', '\\.', 'é');
  const regex = fc.array(piece, { maxLength: 12 }).map((p) => p.join(''));

  it('a counted repetition of a group multiplies its size', () => {
    fc.assert(
      fc.property(regex, fc.integer({ min: 1, max: 1000 }), (r, n) => {
        expect(regexExpansion(`(?:${r}){${n}}`)).toBe(n * (regexExpansion(r) + 2));
      }),
    );
  });

  it('appending never makes a regex smaller', () => {
    fc.assert(
      fc.property(regex, regex, (a, b) => {
        expect(regexExpansion(a + b)).toBeGreaterThanOrEqual(regexExpansion(a));
      }),
    );
  });
});

describe('groups, quantifiers and empty alternatives are charged (they cost re2js as much as literals, or more)', () => {
  // 64 KiB of `()` counted as nothing and took about a second to compile, per request; `a?` and bare `|` cost
  // more time and memory per unit than the budget assumed.
  it.each([
    ['()', 32 * 1024],
    ['(?:)', 16 * 1024],
    ['a?', 32 * 1024],
    ['|', 60_000],
    ['a*', 32 * 1024],
  ])('%s repeated to 64 KiB is refused in PromQL and LogQL as too large', (unit, times) => {
    const re = unit.repeat(times);
    expect(regexExpansion(re)).toBeGreaterThan(MAX_REGEX_EXPANSION);
    expect(codeOf(() => rewritePromQL(`{job=~"${re}x"}`, policy))).toBe('query_too_large');
    expect(codeOf(() => rewriteLogQL(`{app=~"${re}x"}`, policy))).toBe('query_too_large');
  });
});

describe('Grafana multi-value variables (`(v1|v2|…)`, "All" of hundreds of values)', () => {
  it('cost their values\' characters only: 960 pod names of 20 characters fit the budget', () => {
    const pods = Array.from({ length: 960 }, (_, i) => `api-7d9f8b6c5d-${String(i).padStart(5, '0')}`);
    const re = `(${pods.join('|')})`;
    expect(regexExpansion(re)).toBeLessThanOrEqual(MAX_REGEX_EXPANSION);
    expect(codeOf(() => rewriteLogQL(`count_over_time({namespace="prod", pod=~"${re}"} |= "error" [5m])`, policy))).toBeUndefined();
  });
});

describe('LogQL: the regexes of one query are refused as too large before they are compiled', () => {
  const big = '(?i)\\\\pL{1000}'.repeat(300); // LogQL text; the regex is (?i)\pL{1000}…
  it('one selector regex', () => {
    expect(codeOf(() => rewriteLogQL(`{app=~"${big}"}`, policy))).toBe('query_too_large');
    // A realistic regex passes.
    expect(rewriteLogQL('{app=~"(?i)api-[0-9]{1,3}|web"}', policy)).toContain('namespace=~"team-a-.*"');
  });
  it('many small ones add up, across the selectors of a query and the values of match[]', () => {
    const each = '\\\\d{1000}'; // 8 000 units
    const three = [1, 2, 3].map((i) => `{app${i}=~"${each}"}`);
    expect(codeOf(() => rewriteLogQL(`sum(count_over_time(${three[0]}[1m])) + sum(count_over_time(${three[1]}[1m])) + sum(count_over_time(${three[2]}[1m]))`, policy))).toBe('query_too_large');
    expect(codeOf(() => rewriteLogQLSelectors(three, policy))).toBe('query_too_large');
    expect(codeOf(() => rewriteLogQLSelectors(three.slice(0, 2), policy))).toBeUndefined();
    expect(3 * regexExpansion(each.replace(/\\\\/g, '\\'))).toBeGreaterThan(MAX_REGEX_EXPANSION);
  });
  it('label_replace', () => {
    expect(codeOf(() => rewriteLogQL(`label_replace(rate({app="x"}[5m]), "a", "$1", "b", "${'x{1000}'.repeat(30)}")`, policy))).toBe('query_too_large');
  });
});

describe('PromQL: the regexes compiled for the non-empty-matcher rule are charged before they are compiled', () => {
  // Prometheus refuses a selector with no metric name whose matchers all match "": the gateway
  // decides that by compiling the client's regexes, so they are budgeted as LogQL's are.
  const each = '\\\\d{1000}'; // PromQL text; the regex \d{1000} is 8 000 units
  it('one selector regex', () => {
    const t0 = cpuMs();
    expect(codeOf(() => rewritePromQL(`{a=~"${'(?i)\\\\pL{1000}'.repeat(100)}"}`, policy))).toBe('query_too_large');
    // Refused from the text, not after compiling it (compiling takes seconds).
    expect(cpuMs() - t0).toBeLessThan(1000);
    expect(rewritePromQL('{job=~"(?i)api-[0-9]{1,3}|web"}', policy)).toContain('namespace=~"team-a-.*"');
  });
  it('many small ones add up, across the selectors of a query and the values of match[]', () => {
    const three = [1, 2, 3].map((i) => `{a${i}=~"${each}"}`);
    expect(codeOf(() => rewritePromQL(three.join(' + '), policy))).toBe('query_too_large');
    expect(codeOf(() => rewritePromQL(three.slice(0, 2).join(' + '), policy))).toBeUndefined();
    expect(codeOf(() => rewriteSeriesSelectors(three, policy))).toBe('query_too_large');
    expect(codeOf(() => rewriteSeriesSelectors(three.slice(0, 2), policy))).toBeUndefined();
  });
  it('regexes that are not compiled (a metric name decides the rule) are not charged', () => {
    expect(codeOf(() => rewritePromQL(`up{a=~"${'\\\\pL{1000}'.repeat(3)}"}`, policy))).toBeUndefined();
  });
});
