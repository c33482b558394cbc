/**
 * Property tests: random syntactically valid PromQL (built from the grammar's
 * constructs) × random policies. Checked with the independent oracle in
 * ./promql-oracle.ts, never with the rewriter's own verification.
 */
import fc from 'fast-check';
import { RE2JS } from 're2js';
import { describe, expect, it } from 'vitest';
import { QueryError } from '../../src/errors.ts';
import type { Matcher, MatchOp, SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { clearPromQLCache, formatMatcher, parseMatcherExpression, rewritePromQL, rewritePromQLPerGroup, rewriteSeriesSelectors } from '../../src/rewrite/promql.ts';
import { mergeGroups, normaliseGroups, policyErrorFor } from '../../src/rewrite/policy-prep.ts';
import { evalMatcher } from './matcher-oracle.ts';
import { carries, oracleParse, oracleSelectors, oracleUnquote, type OracleSelector } from './promql-oracle.ts';

// ---------------------------------------------------------------------------
// Lexical pieces
// ---------------------------------------------------------------------------

const SPECIAL_CHARS = ['"', "'", '`', '\\', '\n', '\r', '\t', '}', '{', ',', '#', ' ', '=', '~', '\u0000', '\u007f', '\u2028', '\ufeff', 'é', 'ß', '🚀', '𝔘', 'a', 'Z', '0', '.', '|', '*', '$'];
const char = fc.oneof(fc.constantFrom(...SPECIAL_CHARS), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }));
// Small fixed pools make user matchers collide with policy matchers (same
// name and value, maybe another operator or quoting), which is where
// de-duplication bugs would hide.
// '\ufeffa': a leading byte-order mark is part of the value (Go keeps it; a TextDecoder drops it by default).
const POOL_VALUES = ['a', 'a|b', 'x"}\n', 'é', '', 'team-a', '\\', '\ufeffa'];
const value = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(...POOL_VALUES) },
  { weight: 2, arbitrary: fc.array(char, { maxLength: 8 }).map((cs) => cs.join('')) },
);

const utf8 = new TextEncoder();

/** A string literal for `v` in a random quoting/escaping style (all valid for Prometheus). */
const literal = (v: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc
    .tuple(v, fc.constantFrom('"', "'", '`'), fc.infiniteStream(fc.nat(4)))
    .map(([s, q, modes]) => {
      if (q === '`' && !s.includes('`')) return `\`${s}\``;
      const quote = q === '`' ? '"' : q;
      let out = quote;
      const it = modes[Symbol.iterator]();
      for (const ch of s) {
        const cp = ch.codePointAt(0) as number;
        const mode = it.next().value as number;
        const mustEscape = ch === quote || ch === '\\' || ch === '\n';
        if (mode === 0 && !mustEscape) out += ch;
        else if (mode === 1 || (mode === 0 && mustEscape)) {
          const named: Record<string, string> = { '\n': '\\n', '\\': '\\\\', '\t': '\\t', '\r': '\\r', '\u0007': '\\a', '\b': '\\b', '\f': '\\f', '\v': '\\v' };
          out += named[ch] ?? (ch === quote ? `\\${quote}` : [...utf8.encode(ch)].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join(''));
        } else if (mode === 2) {
          out += cp > 0xffff ? `\\U${cp.toString(16).padStart(8, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
        } else if (mode === 3) {
          out += [...utf8.encode(ch)].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
        } else {
          out += [...utf8.encode(ch)].map((b) => `\\x${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
        }
      }
      return out + quote;
    });

const KEYWORD_LABELS = ['on', 'bool', 'offset', 'by', 'without', 'and', 'or', 'inf', 'nan', 'sum', 'rate', 'le', 'job', 'instance', '_'];
const legacyName = fc.oneof(fc.constantFrom(...KEYWORD_LABELS), fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,6}$/));
const POOL_NAMES = ['namespace', 'team', 'k8s.ns', 'on'];
const anyLabelName = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...POOL_NAMES) },
  { weight: 1, arbitrary: legacyName },
  { weight: 1, arbitrary: value.filter((s) => s.length > 0) },
);
const metricName = fc.oneof(
  fc.constantFrom('up', 'http_requests_total', 'node_cpu_seconds_total', 'job:rate5m:sum', 'x', 'kube_pod_info', 'start', 'end'),
  fc.stringMatching(/^m_[a-zA-Z0-9_:]{0,6}$/),
);
const op = fc.constantFrom<MatchOp>('=', '!=', '=~', '!~');
// Optional whitespace / comments where tokens are delimited anyway; `sp` where a separator is required.
const ws = fc.constantFrom('', '', '', ' ', '\n  ', ' # note "} or x\n');
const sp = fc.constantFrom(' ', ' ', '\n', '\t', ' # c\n');
const duration = fc.constantFrom('5m', '1h', '30s', '1d', '1h30m', '10m', '2w', '5m * 2', 'step()', '1y');
const number = fc.constantFrom('0', '1', '0.5', '100', '1e3', '0x1F', '2.5e-3', 'Inf', 'NaN', '1_000');

// ---------------------------------------------------------------------------
// Selectors and expressions
// ---------------------------------------------------------------------------

const item = fc.oneof(
  fc.tuple(fc.oneof(fc.constantFrom('namespace', 'team', 'on'), legacyName), ws, op, ws, literal(value)).map(([n, w1, o, w2, l]) => `${n}${w1}${o}${w2}${l}`),
  fc.tuple(literal(anyLabelName), op, literal(value)).map(([n, o, l]) => `${n}${o}${l}`),
);

const selector: fc.Arbitrary<string> = fc
  .tuple(fc.option(metricName, { nil: null }), fc.option(fc.array(item, { maxLength: 4 }), { nil: null }), fc.boolean(), ws, ws, fc.option(literal(value.filter((s) => s.length > 0)), { nil: null }))
  .map(([name, items, trailing, w1, w2, bare]) => {
    let list = items;
    // Without a metric name Prometheus needs a matcher that does not match "" (see the
    // property on empty-matching selectors below); `job="x"` is one.
    if (name === null) list = bare === null ? [...(list ?? []), 'job="x"'] : (list ?? []);
    if (list === null) return name as string;
    const all = name === null && bare !== null ? [bare, ...list] : list;
    const inner = all.join(`,${w1}`) + (trailing && all.length > 0 ? ',' : '');
    return `${name ?? ''}{${w2}${inner}}`;
  });

/** A selector pinned to one metric name (for multi-group policies). */
const namedSelector = fc.tuple(metricName, selector).map(([name, s]) => (s.startsWith('{') ? `${name}${s}` : s.replace(/^[^{]*/, name)));

const RANGE_FNS = ['rate', 'irate', 'increase', 'delta', 'deriv', 'changes', 'resets', 'avg_over_time', 'max_over_time', 'count_over_time', 'last_over_time', 'present_over_time', 'stddev_over_time'];
const INSTANT_FNS = ['abs', 'ceil', 'floor', 'sort', 'sort_desc', 'exp', 'ln', 'sgn', 'timestamp', 'histogram_sum', 'day_of_week'];
const AGGS = ['sum', 'avg', 'min', 'max', 'count', 'group', 'stddev'];
const ARITH = ['+', '-', '*', '/', '%', '^', 'atan2'];
const CMP = ['==', '!=', '>', '<', '>=', '<='];
const SET = ['and', 'or', 'unless'];

const grouping = fc.array(fc.oneof(legacyName, literal(anyLabelName)), { maxLength: 3 }).map((ls) => `(${ls.join(', ')})`);

const withModifiers = (base: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc
    .tuple(base, fc.option(fc.tuple(sp, duration.filter((d) => !d.includes(' '))), { nil: null }), fc.option(fc.constantFrom('@ 1609746000', '@ start()', '@ end()'), { nil: null }))
    .map(([b, off, at]) => `${b}${off === null ? '' : `${off[0]}offset ${off[1]}`}${at === null ? '' : ` ${at}`}`);

function expressions(sel: fc.Arbitrary<string>, opts: { dnfSafe: boolean }) {
  const matrix = withModifiers(fc.tuple(sel, ws, duration).map(([s, w, d]) => `${s}${w}[${d}]`));
  const instant = fc.memo((n: number): fc.Arbitrary<string> => {
    const leaf = withModifiers(sel);
    if (n <= 1) return leaf;
    const sub = instant(n - 1);
    const rangeCall = fc.tuple(fc.constantFrom(...RANGE_FNS), ws, matrix).map(([f, w, m]) => `${f}${w}(${m})`);
    const subquery = fc.tuple(sub, duration, fc.constantFrom('', '1m', '30s')).map(([e, d, st]) => `(${e})[${d}:${st}]`);
    const parts: fc.Arbitrary<string>[] = [
      leaf,
      rangeCall,
      fc.tuple(fc.constantFrom(...RANGE_FNS), subquery).map(([f, q]) => `${f}(${q})`),
      fc.tuple(fc.constantFrom('quantile_over_time', 'predict_linear'), matrix, number).map(([f, m, x]) =>
        f === 'quantile_over_time' ? `${f}(${x}, ${m})` : `${f}(${m}, ${x})`,
      ),
      fc.tuple(fc.constantFrom(...INSTANT_FNS), sub).map(([f, e]) => `${f}(${e})`),
      fc.tuple(fc.constantFrom(...AGGS), fc.option(fc.tuple(fc.constantFrom('by', 'without'), grouping), { nil: null }), fc.boolean(), sub).map(
        ([a, g, before, e]) => (g === null ? `${a}(${e})` : before ? `${a} ${g[0]} ${g[1]} (${e})` : `${a}(${e}) ${g[0]} ${g[1]}`),
      ),
      fc.tuple(fc.constantFrom('topk', 'bottomk', 'quantile', 'limitk'), number, sub).map(([a, k, e]) => `${a}(${k}, ${e})`),
      fc.tuple(literal(fc.constantFrom('v', 'ver')), sub).map(([l, e]) => `count_values(${l}, ${e})`),
      fc.tuple(sub, literal(value), literal(value)).map(([e, a, b]) => `label_replace(${e}, "dst", ${a}, "src", ${b})`),
      fc.tuple(number, sub).map(([q, e]) => `histogram_quantile(${q}, ${e})`),
      fc.tuple(sub, fc.constantFrom(...ARITH), fc.option(fc.tuple(fc.constantFrom('on', 'ignoring'), grouping, fc.option(fc.tuple(fc.constantFrom('group_left', 'group_right'), grouping), { nil: null })), { nil: null }), sub).map(
        ([l, o, m, r]) => `${l} ${o} ${m === null ? '' : `${m[0]}${m[1]} ${m[2] === null ? '' : `${m[2][0]}${m[2][1]} `}`}${r}`,
      ),
      fc.tuple(sub, fc.constantFrom(...CMP), fc.boolean(), fc.oneof(sub, number)).map(([l, o, b, r]) => `${l} ${o} ${b ? 'bool ' : ''}${r}`),
      fc.tuple(sub, fc.constantFrom(...SET), fc.option(fc.tuple(fc.constantFrom('on', 'ignoring'), grouping), { nil: null }), sub).map(
        ([l, o, m, r]) => `${l} ${o} ${m === null ? '' : `${m[0]}${m[1]} `}${r}`,
      ),
      fc.tuple(sub, number).map(([e, x]) => `${e} * ${x}`),
      fc.tuple(sub, sub).map(([l, r]) => `${l} + fill(0) ${r}`),
      fc.tuple(ws, sub, ws).map(([a, e, b]) => `(${a}${e}${b})`),
      sub.map((e) => `-${e}`),
      fc.tuple(sub, sub).map(([e, s]) => `scalar(${s}) * ${e}`),
    ];
    if (!opts.dnfSafe) {
      parts.push(
        sub.map((e) => `absent(${e})`),
        matrix.map((m) => `absent_over_time(${m})`),
        fc.tuple(sub, fc.array(item, { minLength: 1, maxLength: 2 })).map(([e, its]) => `info(${e}, {${its.join(', ')}})`),
      );
    }
    return fc.oneof(...parts);
  });
  const top = opts.dnfSafe
    ? instant(4)
    : fc.oneof(
        { weight: 8, arbitrary: instant(4) },
        { weight: 1, arbitrary: number },
        { weight: 1, arbitrary: literal(value) },
        { weight: 1, arbitrary: fc.tuple(instant(3), number).map(([e, x]) => `vector(${x}) + scalar(${e})`) },
        { weight: 1, arbitrary: matrix },
      );
  return fc.tuple(ws, top, ws).map(([a, e, b]) => `${a}${e}${b}`);
}

const query = expressions(selector, { dnfSafe: false });
const dnfQuery = expressions(namedSelector, { dnfSafe: true });

const policyMatcher: fc.Arbitrary<Matcher> = fc.record({
  name: anyLabelName.filter((n) => n !== '__name__'),
  op,
  value,
});
const singleGroup: fc.Arbitrary<SelectorPolicy> = fc.array(policyMatcher, { minLength: 1, maxLength: 3 }).map((g) => [g]);
const multiGroup: fc.Arbitrary<SelectorPolicy> = fc.array(fc.array(policyMatcher, { minLength: 1, maxLength: 2 }), { minLength: 2, maxLength: 3 });

/**
 * Every matcher of one of the policy's groups, or of the one group they merge
 * into (mergeGroups; whose exactness is its own property below).
 */
function carriesPolicy(s: OracleSelector, policy: SelectorPolicy): boolean {
  if (policy.some((g) => g.every((m) => carries(s, m)))) return true;
  const merged = mergeGroups(normaliseGroups(policy, (m) => m as Matcher, (m) => m, policyErrorFor('PromQL')).map((g) => g.items));
  return merged !== null && merged.every((m) => carries(s, m));
}


function sameMatcher(a: Matcher, b: Matcher): boolean {
  return a.name === b.name && a.op === b.op && a.value === b.value;
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/** Whether the matcher holds for a missing label; an invalid regular expression does not (Prometheus refuses the query anyway). */
function holdsForMissing(m: Matcher): boolean {
  try {
    return evalMatcher(m, '');
  } catch {
    return false;
  }
}

/** Rewriting the output again changes nothing; the gateway's own `__lbac_` labels in it are refused as input, so compared renamed. */
function expectIdempotent(out: string, policy: SelectorPolicy): void {
  if (!out.includes('"__lbac_')) {
    expect(rewritePromQL(out, policy)).toBe(out);
    return;
  }
  expect(() => rewritePromQL(out, policy)).toThrow(/reserved by the gateway/);
  const renamed = out.replaceAll('"__lbac_', '"__xxxx_');
  expect(rewritePromQL(renamed, policy)).toBe(renamed);
}

describe('PromQL rewriting properties', () => {
  it('generator sanity: generated queries parse', () => {
    fc.assert(
      fc.property(query, (q) => {
        oracleParse(q);
      }),
      { numRuns: 300 },
    );
  });

  it('single group: parses, enforced everywhere, idempotent, same selectors, pure insertion', () => {
    fc.assert(
      fc.property(query, singleGroup, (q, policy) => {
        const group = policy[0] as readonly Matcher[];
        let out: string;
        try {
          out = rewritePromQL(q, policy);
        } catch (e) {
          // absent() over a selector whose label the policy touches and whose result labels depend on
          // the matchers' order (the absent() property below checks when that refusal is right).
          if ((e as QueryError).code === 'rewrite_unsupported' && (e as Error).message.includes('order in which')) return;
          // info() whose data-label matchers all hold for a missing label, under a matcher that does not.
          if ((e as QueryError).code === 'rewrite_unsupported' && (e as Error).message.includes('all match the empty string') && group.some((m) => m.name !== '__name__' && !holdsForMissing(m))) return;
          // The generator may build info(x) forms only with a selector; nothing else may fail.
          throw new Error(`rewrite failed for ${JSON.stringify(q)}: ${(e as Error).message}`);
        }
        // (1) parses cleanly
        oracleParse(out);
        // (2) every selector carries every policy matcher (independent walk)
        const inSels = oracleSelectors(q);
        const outSels = oracleSelectors(out);
        for (const s of outSels) for (const m of group) expect(carries(s, m)).toBe(true);
        // (3) idempotent (an output holding the gateway's own labels, around info(), is refused as input: compared renamed)
        expectIdempotent(out, policy);
        // (4) same number of selectors
        expect(outSels.length).toBe(inSels.length);
        // (5) removing what was inserted gives back the input exactly. Not when an absent() call got
        // label_replace around it to keep its result labels (the absent() property below checks those).
        const wrappers = (t: string): number => t.split('label_replace(').length;
        if (wrappers(out) !== wrappers(q)) return;
        const removals: [number, number][] = [];
        inSels.forEach((before, i) => {
          const after = outSels[i];
          if (after === undefined) throw new Error('selector count mismatch');
          const missing = group.filter((m, k) => !carries(before, m) && group.findIndex((x) => sameMatcher(x, m)) === k);
          if (missing.length === 0) {
            expect(out.slice(after.from, after.to)).toBe(q.slice(before.from, before.to));
            return;
          }
          let from: number;
          if (!before.hasBraces) from = after.identTo;
          else if (before.hasItems) from = (after.items[before.items.length - 1] as [number, number])[1];
          else from = after.braceFrom + 1;
          const to = before.hasBraces ? (after.items[after.items.length - 1] as [number, number])[1] : after.to;
          removals.push([from, to]);
          // The inserted matchers are exactly the missing ones, in policy order.
          const added = after.matchers.slice(before.matchers.length);
          expect(added).toEqual(missing.map((m) => ({ name: m.name, op: m.op, value: m.value })));
        });
        let back = out;
        for (const [from, to] of removals.reverse()) back = back.slice(0, from) + back.slice(to);
        expect(back).toBe(q);
      }),
      { numRuns: 2500 },
    );
  });

  it('multi-group: selectors pinned to a metric name are rewritten exactly; every selector carries one whole group', () => {
    fc.assert(
      fc.property(dnfQuery, multiGroup, (q, policy) => {
        const out = rewritePromQL(q, policy);
        oracleParse(out);
        for (const s of oracleSelectors(out)) expect(carriesPolicy(s, policy)).toBe(true);
        expectIdempotent(out, policy);
      }),
      { numRuns: 800 },
    );
  });

  it('multi-group on arbitrary queries: exact rewrite or rewrite_unsupported, never anything unenforced', () => {
    fc.assert(
      fc.property(query, multiGroup, (q, policy) => {
        let out: string;
        try {
          out = rewritePromQL(q, policy);
        } catch (e) {
          expect(e).toBeInstanceOf(QueryError);
          expect((e as QueryError).code).toBe('rewrite_unsupported');
          return;
        }
        oracleParse(out);
        for (const s of oracleSelectors(out)) expect(carriesPolicy(s, policy)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
  it('instant queries under several groups: the one rewrite, or (a bare range selector) one part per group carrying that whole group', () => {
    // Bare range selectors over any selector (several metric names too), with modifiers and parentheses, among arbitrary queries.
    const bareRange = withModifiers(fc.tuple(selector, ws, duration).map(([s, w, d]) => `${s}${w}[${d}]`)).chain((m) => fc.constantFrom(m, `(${m})`, `( ${m} )`));
    let fannedOut = 0;
    fc.assert(
      fc.property(fc.oneof(bareRange, query), multiGroup, (q, policy) => {
        let parts: string[];
        try {
          parts = rewritePromQLPerGroup(q, policy);
        } catch (e) {
          expect(e).toBeInstanceOf(QueryError);
          expect((e as QueryError).code).toBe('rewrite_unsupported');
          return;
        }
        let single: string | undefined;
        try {
          single = rewritePromQL(q, policy);
        } catch {
          single = undefined;
        }
        if (single !== undefined) {
          expect(parts).toEqual([single]);
          return;
        }
        // Fanned out: at most one part per group, each some group's own single-group rewrite, one selector each.
        fannedOut++;
        const perGroup = new Set(policy.map((g) => rewritePromQL(q, [g])));
        expect(parts.length).toBeLessThanOrEqual(perGroup.size);
        for (const part of parts) expect(perGroup.has(part), part).toBe(true);
        // Nothing of the union is lost: every group is asked, or contains a group that is (and selects a subset of its data).
        const key = (m: Matcher) => JSON.stringify([m.name, m.op, m.value]);
        const within = (h: readonly Matcher[], g: readonly Matcher[]) => h.every((m) => g.some((x) => key(x) === key(m)));
        for (const g of policy) expect(policy.some((h) => within(h, g) && parts.includes(rewritePromQL(q, [h])))).toBe(true);
        parts.forEach((part) => {
          oracleParse(part);
          const sels = oracleSelectors(part);
          expect(sels).toHaveLength(1);
          expect(policy.some((g) => g.every((m) => carries(sels[0]!, m)))).toBe(true);
        });
      }),
      { numRuns: 800 },
    );
    // Not vacuous: a good share of the runs took the per-group path.
    expect(fannedOut).toBeGreaterThan(100);
  });

  it('mutated (often invalid) queries: either a QueryError or fully enforced output', () => {
    const mutation = fc.tuple(fc.nat(), fc.constantFrom('', '{', '}', '(', ')', '"', "'", '`', '#', '\n', '\r', ',', '[', ']', ' or ', 'x', '=', '\\'), fc.nat(3));
    fc.assert(
      fc.property(query, fc.array(mutation, { minLength: 1, maxLength: 3 }), singleGroup, (q0, muts, policy) => {
        let q = q0;
        for (const [at, ins, del] of muts) {
          const i = q.length === 0 ? 0 : at % q.length;
          q = q.slice(0, i) + ins + q.slice(i + del);
        }
        let out: string;
        try {
          out = rewritePromQL(q, policy);
        } catch (e) {
          expect(e).toBeInstanceOf(QueryError);
          expect(['bad_query', 'query_too_large', 'rewrite_unsupported']).toContain((e as QueryError).code);
          return;
        }
        oracleParse(out);
        const group = policy[0] as readonly Matcher[];
        for (const s of oracleSelectors(out)) for (const m of group) expect(carries(s, m)).toBe(true);
      }),
      { numRuns: 1500 },
    );
  });

  it('match[]: the same selectors from the cache as computed afresh, and the list is the union of each parameter\'s', () => {
    fc.assert(
      fc.property(fc.array(selector, { maxLength: 3 }), multiGroup, fc.boolean(), (params, policy, warmFirst) => {
        if (warmFirst) rewriteSeriesSelectors(params.slice(1), policy);
        const cached = rewriteSeriesSelectors(params, policy);
        clearPromQLCache();
        const fresh = rewriteSeriesSelectors(params, policy);
        expect(cached).toEqual(fresh);
        const union: string[] = [];
        for (const p of params) for (const s of (clearPromQLCache(), rewriteSeriesSelectors([p], policy))) if (!union.includes(s)) union.push(s);
        expect(fresh).toEqual(params.length === 0 ? rewriteSeriesSelectors([], policy) : union);
      }),
      { numRuns: 300 },
    );
  });

  it('match[]: n params × k groups selectors, each a single selector carrying one whole group', () => {
    fc.assert(
      fc.property(fc.array(selector, { maxLength: 3 }), multiGroup, (params, policy) => {
        const out = rewriteSeriesSelectors(params, policy);
        expect(out.length).toBeLessThanOrEqual(Math.max(1, params.length) * policy.length);
        for (const s of out) {
          const sels = oracleSelectors(s);
          expect(sels).toHaveLength(1);
          const [only] = sels;
          expect(only !== undefined && carriesPolicy(only, policy)).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a selector without a metric name is refused exactly when all its matchers match "" (as Prometheus does), in queries and match[]', () => {
    const matchesEmpty = (m: { op: string; value: string }): boolean => {
      if (m.op === '=') return m.value === '';
      if (m.op === '!=') return m.value !== '';
      let re: RE2JS;
      try {
        re = RE2JS.compile(`^(?:${m.value})$`);
      } catch {
        return false; // not RE2: Prometheus reports the regexp instead
      }
      return re.matches('') === (m.op === '=~');
    };
    const bareSelector = fc
      .tuple(fc.array(item, { maxLength: 4 }), ws, fc.constantFrom('', ' offset 5m', '[5m]'))
      .map(([items, w, suffix]) => `{${items.join(`,${w}`)}}${suffix}`);
    fc.assert(
      fc.property(bareSelector, singleGroup, (q, policy) => {
        const [sel] = oracleSelectors(q);
        if (sel === undefined) throw new Error('no selector');
        const refused = sel.matchers.every(matchesEmpty);
        const wrapped = q.endsWith(']') ? `rate(${q})` : q;
        let code = 'ok';
        try {
          rewritePromQL(wrapped, policy);
        } catch (e) {
          expect(e).toBeInstanceOf(QueryError);
          expect((e as QueryError).message).toContain('vector selector must contain at least one non-empty matcher');
          code = (e as QueryError).code;
        }
        expect(code).toBe(refused ? 'bad_query' : 'ok');
        if (q.endsWith(']') || q.endsWith('m')) return;
        code = 'ok';
        try {
          rewriteSeriesSelectors([q], policy);
        } catch (e) {
          expect((e as QueryError).message).toContain('match[] must contain at least one non-empty matcher');
          code = (e as QueryError).code;
        }
        expect(code).toBe(refused ? 'bad_query' : 'ok');
      }),
      { numRuns: 1000 },
    );
  });

  // A small universe where policy values and regexes collide: '' (label absent), literals with regex metacharacters.
  const VALUES = ['', 'a', 'b', 'A', 'B', 'a.b', 'axb', 'a|b', 'team-a', 'é', '\n'];
  const smallMatcher = fc.record({
    name: fc.constantFrom('namespace', 'team', 'app'),
    op: fc.constantFrom<MatchOp>('=', '!=', '=~', '!~'),
    value: fc.constantFrom('a', 'b', 'a.b', 'a|b', '', 'team-.*', '.+', '(?i)A', '\\Qa.b\\E', 'é'),
  });
  const randomPolicy = fc.array(fc.array(smallMatcher, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 3 });
  // Shaped to merge most of the time: shared matchers, then one positive matcher per group on one label.
  const mergeablePolicy = fc
    .tuple(fc.array(smallMatcher, { maxLength: 1 }), fc.constantFrom('namespace', 'team'), fc.array(fc.tuple(fc.constantFrom<MatchOp>('=', '=~'), smallMatcher), { minLength: 2, maxLength: 3 }))
    .map(([common, name, alts]) => alts.map(([op, m]) => [...common, { name, op, value: m.value }]));
  const smallPolicy = fc.oneof(randomPolicy, mergeablePolicy);
  const labelSet = fc.record({ namespace: fc.constantFrom(...VALUES), team: fc.constantFrom(...VALUES), app: fc.constantFrom(...VALUES) });
  const admits = (ms: readonly { name: string; op: string; value: string }[], ls: Record<string, string>): boolean => ms.every((m) => evalMatcher(m, ls[m.name] ?? ''));

  it('merged groups admit exactly the label sets that one of the groups admits', () => {
    let mergedCount = 0;
    fc.assert(
      fc.property(smallPolicy, fc.array(labelSet, { minLength: 30, maxLength: 30 }), (policy, sets) => {
        const merged = mergeGroups(policy);
        if (merged === null) return;
        mergedCount++;
        for (const ls of sets) expect(admits(merged, ls)).toBe(policy.some((g) => admits(g, ls)));
      }),
      { numRuns: 3000 },
    );
    expect(mergedCount).toBeGreaterThan(100);
  });

  it('what the rewritten selectors admit together is exactly selector ∧ (G1 ∨ G2 ∨ …), merged or not', () => {
    const userSel = fc.array(smallMatcher, { maxLength: 2 });
    let rewritten = 0;
    fc.assert(
      fc.property(userSel, smallPolicy, fc.array(labelSet, { minLength: 20, maxLength: 20 }), (user, policy, sets) => {
        const q = `x{${[...user, { name: 'job', op: '=' as MatchOp, value: 'j' }].map(formatMatcher).join(',')}}`;
        const out = rewritePromQL(q, policy);
        rewritten++;
        const sels = oracleSelectors(out);
        expect(sels.length).toBeGreaterThan(0);
        for (const ls of sets) {
          const full = { ...ls, __name__: 'x', job: 'j' } as Record<string, string>;
          const want = admits(user, full) && policy.some((g) => admits(g, full));
          const got = sels.some((s) => s.matchers.every((m) => evalMatcher(m, full[m.name] ?? '')));
          expect(got).toBe(want);
        }
      }),
      { numRuns: 800 },
    );
    expect(rewritten).toBe(800);
  });

  it('parseMatcherExpression(formatMatcher(...)) round-trips', () => {
    fc.assert(
      fc.property(fc.array(policyMatcher, { minLength: 1, maxLength: 4 }), fc.constantFrom(',', ', ', ' ,\n'), (ms, sep) => {
        expect(parseMatcherExpression(ms.map(formatMatcher).join(sep))).toEqual(ms.map((m) => ({ name: m.name, op: m.op, value: m.value })));
      }),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------
// absent(): result labels come from the selector's matchers
// ---------------------------------------------------------------------------

/** Prometheus' createLabelsForAbsentFunction (promql/functions.go), written out from its source. */
function absentLabelsOracle(matchers: readonly { name: string; op: string; value: string }[]): Map<string, string> {
  const labels = new Map<string, string>();
  const has = new Set<string>();
  for (const m of matchers) {
    if (m.name === '__name__' || m.name === '__type__' || m.name === '__unit__') continue;
    if (m.op === '=' && !has.has(m.name)) {
      // labels.Builder.Set with an empty value deletes.
      if (m.value === '') labels.delete(m.name);
      else labels.set(m.name, m.value);
      has.add(m.name);
    } else {
      labels.delete(m.name);
    }
  }
  return labels;
}

/** Does a matcher hold for a missing label? A regex that does not compile: no (the query is invalid anyway). */
function matchesEmptyOracle(m: { op: string; value: string }): boolean {
  try {
    return evalMatcher(m, '');
  } catch {
    return false;
  }
}

/**
 * The order the TSDB leaves a selector's matchers in after looking it up (tsdb/querier.go
 * PostingsForMatchers sorts the slice in place, stably, "intersecting" matchers first), written out
 * from its source; absent() reads them after the lookup when some block covers the time range.
 */
function tsdbOrderOracle<M extends { name: string; op: string; value: string }>(matchers: readonly M[]): M[] {
  const mustBeSet = new Set(matchers.filter((m) => !matchesEmptyOracle(m)).map((m) => m.name));
  const subtracting = (m: M): boolean => !mustBeSet.has(m.name) || ((m.op === '!=' || m.op === '!~') && matchesEmptyOracle(m));
  return [...matchers.filter((m) => !subtracting(m)), ...matchers.filter(subtracting)];
}

/** The label_replace(…, "name", "value", "", "") wrappers around the output, innermost first, and what they wrap. */
function peelLabelReplace(out: string): { inner: string; fixes: [string, string][] } {
  let text = out;
  const fixes: [string, string][] = [];
  for (;;) {
    const top = oracleParse(text).topNode.firstChild;
    if (top === null || top.name !== 'FunctionCall') break;
    const fn = top.firstChild;
    if (fn === null || text.slice(fn.from, fn.to) !== 'label_replace') break;
    const body = top.lastChild;
    const args: { from: number; to: number; name: string }[] = [];
    for (let c = body?.firstChild ?? null; c !== null; c = c.nextSibling) if (c.type.is('Expr')) args.push({ from: c.from, to: c.to, name: c.name });
    expect(args.map((a) => a.name).slice(1)).toEqual(['StringLiteral', 'StringLiteral', 'StringLiteral', 'StringLiteral']);
    const str = (i: number): string => oracleUnquote(text.slice((args[i] as { from: number }).from, (args[i] as { to: number }).to));
    expect([str(3), str(4)]).toEqual(['', '']);
    const value = str(2);
    // Every `$` is written `$$` (label_replace expands the replacement).
    expect(value.replaceAll('$$', '')).not.toContain('$');
    fixes.unshift([str(1), value.replaceAll('$$', '$')]);
    text = text.slice((args[0] as { from: number }).from, (args[0] as { to: number }).to);
  }
  return { inner: text, fixes };
}

describe('absent() under a policy', () => {
  const absentQuery = fc.tuple(selector, fc.boolean()).map(([s, overTime]) => (overTime ? `absent_over_time(${s}[5m])` : `absent(${s})`));

  it('the rewritten call has the result labels of the call as written (label_replace puts back what the policy changed), and is enforced', () => {
    let fixed = 0;
    let refused = 0;
    fc.assert(
      fc.property(absentQuery, fc.oneof(singleGroup, multiGroup), (q, policy) => {
        let out: string;
        try {
          out = rewritePromQL(q, policy);
        } catch (e) {
          const written = (oracleSelectors(q)[0] as OracleSelector).matchers;
          if ((e as QueryError).code === 'rewrite_unsupported') {
            // Refused only when the labels as written depend on the order Prometheus reads the matchers in.
            expect(absentLabelsOracle(tsdbOrderOracle(written))).not.toEqual(absentLabelsOracle(written));
            refused++;
            return;
          }
          // Selectors Prometheus refuses (only empty-matching matchers) are refused here too.
          expect((e as QueryError).code).toBe('bad_query');
          return;
        }
        const written = oracleSelectors(q)[0] as OracleSelector;
        const { inner, fixes } = peelLabelReplace(out);
        if (fixes.length > 0) fixed++;
        const sels = oracleSelectors(inner);
        // Enforced: every selector carries one whole group (or the one group they merge into).
        for (const s of sels) expect(carriesPolicy(s, policy)).toBe(true);
        // The result labels, from the first (left-most) part, after the label_replace wrappers: those of
        // the selector as written, whichever order Prometheus reads the matchers in (as written, or as the
        // TSDB leaves them after the lookup).
        for (const order of [(ms: OracleSelector['matchers']) => ms, tsdbOrderOracle]) {
          const labels = absentLabelsOracle(order((sels[0] as OracleSelector).matchers));
          for (const [name, value] of fixes) {
            if (value === '') labels.delete(name);
            else labels.set(name, value);
          }
          expect(labels).toEqual(absentLabelsOracle(order(written.matchers)));
        }
        // One part per group when a part was needed, AND-ed on nothing.
        if (sels.length > 1) expect(inner.split(' and on() ').length).toBe(sels.length);
      }),
      { numRuns: 1500 },
    );
    expect(fixed).toBeGreaterThan(100);
    // Order-dependent labels need a `!=`/`!~` before an `=` on one label: rare, but the generator reaches them.
    expect(refused).toBeLessThan(1500 / 10);
  });
});
