/**
 * Property tests: random syntactically valid LogQL (log and metric queries,
 * built from the grammar's constructs) × random policies, checked with the
 * independent oracle in ./logql-oracle.ts — never with the rewriter's own
 * verification.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QueryError } from '../../src/errors.ts';
import type { Matcher, MatchOp, SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { clearLogQLCache, formatLogQLMatcher, parseLogQLMatchers, rewriteLogQL, rewriteLogQLDisjointParts, rewriteLogQLPerAlternative, rewriteLogQLSelectors } from '../../src/rewrite/logql.ts';
import { evalMatcher } from './matcher-oracle.ts';
import { carries, oracleParse, oracleSelectors } from './logql-oracle.ts';
import type { OracleSelector } from './logql-oracle.ts';

// ---------------------------------------------------------------------------
// Lexical pieces
// ---------------------------------------------------------------------------

const SPECIAL_CHARS = ['"', '`', '\\', '\n', '\r', '\t', '}', '{', ',', '#', ' ', '=', '~', '|', '\u0000', '\u007f', '\u2028', 'é', '🚀', 'a', 'Z', '0', '.', '*', '$', '[', ']', '(', ')'];
const char = fc.oneof(fc.constantFrom(...SPECIAL_CHARS), fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }));
// '\ufeffa': a leading byte-order mark is part of the value (Go keeps it; a TextDecoder drops it by default).
const POOL_VALUES = ['a', 'b', 'team-a', 'x"}\n', 'é', '\\', '{x="y"}', '# c', 'a|b', '\ufeffa'];
const value = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...POOL_VALUES) }, { weight: 2, arbitrary: fc.array(char, { maxLength: 8 }).map((cs) => cs.join('')) });
const REGEXES = ['a|b', '.+', 'team-.*', '(?i)x', 'a\\.b', '', '.*', '[0-9]+', 'é|🚀', 'a', 'b.*'];

const utf8 = new TextEncoder();

/** A LogQL string literal for `v` in a random quoting/escaping style (all valid for Loki). */
const literal = (v: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.tuple(v, fc.boolean(), fc.infiniteStream(fc.nat(4))).map(([s, raw, modes]) => {
    if (raw && !s.includes('`') && !s.includes('\u0000')) return `\`${s}\``;
    let out = '"';
    const it = modes[Symbol.iterator]();
    for (const ch of s) {
      const cp = ch.codePointAt(0) as number;
      const mode = it.next().value as number;
      const mustEscape = ch === '"' || ch === '\\' || ch === '\n' || ch === '\u0000';
      if (mode === 0 && !mustEscape) out += ch;
      else if (mode === 1 || (mode === 0 && mustEscape)) {
        const named: Record<string, string> = { '\n': '\\n', '\\': '\\\\', '\t': '\\t', '\r': '\\r', '"': '\\"', '\u0007': '\\a', '\b': '\\b', '\f': '\\f', '\v': '\\v' };
        out += named[ch] ?? [...utf8.encode(ch)].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
      } else if (mode === 2) {
        out += cp > 0xffff ? `\\U${cp.toString(16).padStart(8, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
      } else if (mode === 3) {
        out += [...utf8.encode(ch)].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
      } else {
        out += [...utf8.encode(ch)].map((b) => `\\x${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
      }
    }
    return `${out}"`;
  });

const NAMES = ['namespace', 'app', 'job', 'team', 'level', 'rate', 'sum', '_x', 'Namespace', 'pod'];
const name = fc.constantFrom(...NAMES);
const POLICY_NAMES = ['namespace', 'team', 'app'];
// Optional whitespace / comments where tokens are delimited anyway; `sp` where a separator is required.
const ws = fc.constantFrom('', '', '', ' ', '\n  ', ' # note "}{ or x\n', '\t');
const sp = fc.constantFrom(' ', ' ', '\n', '\t', ' # c {x="y"}\n');


interface GenMatcher {
  readonly name: string;
  readonly op: MatchOp;
  readonly value: string;
}

const genMatcher: fc.Arbitrary<GenMatcher> = fc.oneof(
  fc.record({ name, op: fc.constantFrom<MatchOp>('=', '!='), value }),
  fc.record({ name, op: fc.constantFrom<MatchOp>('=~', '!~'), value: fc.constantFrom(...REGEXES) }),
);

/** Loki needs one matcher per selector that does not match "". */
const selectsFromIndex = (m: GenMatcher): boolean => !evalMatcher(m, '');

const item = fc.tuple(genMatcher, ws, ws, fc.boolean()).chain(([m, w1, w2, b]) =>
  literal(fc.constant(m.value)).map((lit) => ({ m, text: `${m.name}${b ? w1.replace(/#.*\n/, '') : ''}${m.op}${b ? w2.replace(/#.*\n/, '') : ''}${lit}` })),
);

const selector: fc.Arbitrary<string> = fc.tuple(fc.array(item, { minLength: 0, maxLength: 4 }), ws, ws, literal(fc.constantFrom('api', 'x', 'é "}'))).map(([items, w1, w2, lit]) => {
  const texts = items.map((i) => i.text);
  if (!items.some((i) => selectsFromIndex(i.m))) texts.unshift(`job=${lit}`);
  return `{${w2}${texts.join(`,${w1}`)}}`;
});

// ---------------------------------------------------------------------------
// Pipelines
// ---------------------------------------------------------------------------

/** Placeholder for an implicit-AND gap: ' ' in the query, ',' in its twin. */
const GAP = '\u0001';
/**
 * `SEL_END … RANGE_START[5m] offset 1hRANGE_END`: a range written after an
 * unwrap with an offset (valid LogQL the official grammar does not read);
 * the twin moves the range to SEL_END (`sel[5m] offset 1h | … | unwrap x`).
 */
const SEL_END = '\u0004';
const RANGE_START = '\u0002';
const RANGE_END = '\u0003';

const lineFilter = fc.oneof(
  fc.tuple(fc.constantFrom('|=', '!=', '|~', '!~'), ws, literal(fc.constantFrom('error', '(?i)x', 'a|b', '"quoted"', '{x="y"}', '# hash'))).map(([o, w, l]) => `${o}${w}${l}`),
  fc.tuple(fc.constantFrom('|>', '!>'), literal(fc.constantFrom('<_> <x>', '<_> 500 <_>'))).map(([o, l]) => `${o} ${l}`),
  fc.tuple(literal(fc.constantFrom('a', 'b')), literal(fc.constantFrom('c', 'd'))).map(([a, b]) => `|= ${a} or ${b}`),
  fc.constantFrom('|= ip("10.0.0.0/8")', '!= ip("::1")'),
);

/**
 * Byte sizes Loki reads that the official grammar does not, each with a twin of the same length in
 * the grammar's form (the twin query keeps the grammar's spelling; src/rewrite/logql-parse.ts,
 * repairByteSuffix): written as \u0005<index>\u0006 until queryPair picks a side.
 */
const BYTE_TWINS: readonly (readonly [string, string])[] = [['20K', '20B'], ['512Ki', '512KB'], ['.5MB', '05MB'], ['3kiB', '3KiB']];
const withByteTwins = (raw: string, side: 0 | 1): string => raw.replace(/\u0005(\d)\u0006/g, (_, i: string) => (BYTE_TWINS[Number(i)] as readonly [string, string])[side]);

const labelFilterAtom = fc.oneof(
  fc.tuple(fc.constantFrom('level', 'status', 'caller', 'namespace'), fc.constantFrom('=', '!=', '=~', '!~'), literal(fc.constantFrom('error', 'x.*', ''))).map(([n, o, l]) => `${n}${o}${l}`),
  fc.tuple(fc.constantFrom('status', 'latency', 'size'), fc.constantFrom('>', '>=', '<', '<=', '==', '!='), fc.constantFrom('500', '1.5', '-1', '250ms', '10s', '20KB', '1.5MiB', ...BYTE_TWINS.map((_, i) => `\u0005${i}\u0006`))).map(
    ([n, o, v]) => `${n} ${o} ${v}`,
  ),
  fc.constantFrom('addr=ip("10.0.0.0/8")', '__error__=""', '__error__!=""'),
);
const labelFilter: fc.Arbitrary<string> = fc.letrec((tie) => ({
  lf: fc.oneof(
    { weight: 4, arbitrary: labelFilterAtom },
    { weight: 1, arbitrary: fc.tuple(tie('lf') as fc.Arbitrary<string>, fc.constantFrom(' and ', ' or ', ', ', GAP), labelFilterAtom).map(([a, o, b]) => `${a}${o}${b}`) },
    { weight: 1, arbitrary: (tie('lf') as fc.Arbitrary<string>).map((a) => `(${a})`) },
  ),
})).lf;

const stage = fc.oneof(
  { weight: 3, arbitrary: lineFilter },
  { weight: 2, arbitrary: fc.constantFrom('| json', '| logfmt', '| logfmt --strict', '| logfmt --keep-empty --strict', '| unpack', '| decolorize', '| json a="b.c", d', '| logfmt x, y="z"') },
  { weight: 1, arbitrary: literal(fc.constantFrom('(?P<a>\\w+)', '(?P<b>.*)')).map((l) => `| regexp ${l}`) },
  { weight: 1, arbitrary: literal(fc.constantFrom('<a> <_>', '<_> "<b>"')).map((l) => `| pattern ${l}`) },
  { weight: 3, arbitrary: labelFilter.map((f) => `| ${f}`) },
  { weight: 1, arbitrary: literal(fc.constantFrom('{{.msg}}', '{{ .a | ToUpper }} "}"')).map((l) => `| line_format ${l}`) },
  { weight: 1, arbitrary: literal(fc.constantFrom('{{.ns}}', 'x')).map((l) => `| label_format a=b, c=${l}`) },
  // (ending in a string: `| drop a != "x"` would read the line filter as a drop matcher)
  { weight: 1, arbitrary: fc.constantFrom('| drop a, b="c"', '| keep level, app="x"', '| drop __error__=""') },
);
const pipeline = fc.array(fc.tuple(stage, sp), { maxLength: 4 }).map((ss) => ss.map(([s, w]) => `${w}${s}`).join(''));
const unwrap = fc
  .tuple(fc.constantFrom('latency', 'bytes(size)', 'duration(took)', 'duration_seconds(t)'), fc.option(labelFilter, { nil: null }))
  .map(([u, f]) => ` | unwrap ${u}${f === null ? '' : ` | ${f}`}`);

const range = fc.constantFrom('5m', '1h', '30s', '1h30m', '10m');
const offset = fc.option(fc.constantFrom('1h', '-5m', '1d'), { nil: null });

const COUNTING = ['count_over_time', 'rate', 'bytes_over_time', 'bytes_rate', 'absent_over_time'];
const UNWRAPPING = ['sum_over_time', 'avg_over_time', 'max_over_time', 'min_over_time', 'stddev_over_time', 'stdvar_over_time', 'first_over_time', 'last_over_time', 'rate', 'rate_counter'];
const GROUPABLE = new Set(['avg_over_time', 'max_over_time', 'min_over_time', 'stddev_over_time', 'stdvar_over_time', 'first_over_time', 'last_over_time']);

const grouping = fc.tuple(fc.constantFrom('by', 'without'), fc.array(fc.constantFrom('level', 'pod', 'namespace', 'app'), { maxLength: 3 })).map(([k, ls]) => ` ${k} (${ls.join(', ')})`);

function rangeAggregations(sel: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const counting = fc.tuple(fc.constantFrom(...COUNTING), sel, pipeline, range, offset, fc.nat(3)).map(([f, s, p, r, o, form]) => {
    const off = o === null ? '' : ` offset ${o}`;
    switch (form) {
      case 0:
        return `${f}(${s}${p} [${r}]${off})`;
      case 1:
        return `${f}(${s}[${r}]${off}${p})`;
      case 2:
        return `${f}((${s}${p})[${r}]${off})`;
      default:
        return `${f}(${s}${p}[${r}])`;
    }
  });
  const unwrapping = fc
    .tuple(fc.constantFrom(...UNWRAPPING, 'quantile_over_time'), sel, pipeline, unwrap, range, offset, fc.boolean(), fc.option(grouping, { nil: null }))
    .map(([f, s, p, u, r, o, after, g]) => {
      const off = o === null ? '' : ` offset ${o}`;
      const body = after ? `${s}[${r}]${off}${p}${u}` : o === null ? `${s}${p}${u} [${r}]` : `${s}${SEL_END}${p}${u} ${RANGE_START}[${r}]${off}${RANGE_END}`;
      const grp = g !== null && (GROUPABLE.has(f) || f === 'quantile_over_time') ? g : '';
      return f === 'quantile_over_time' ? `${f}(0.99, ${body})${grp}` : `${f}(${body})${grp}`;
    });
  return fc.oneof(counting, unwrapping);
}

const AGGS = ['sum', 'avg', 'min', 'max', 'count', 'stddev', 'stdvar'];
const ARITH = ['+', '-', '*', '/', '%', '^'];
const CMP = ['==', '!=', '>', '<', '>=', '<='];
const SET = ['and', 'or', 'unless'];

function metricQueries(sel: fc.Arbitrary<string>) {
  const leaf = rangeAggregations(sel);
  const metric = fc.memo((n: number): fc.Arbitrary<string> => {
    if (n <= 1) return leaf;
    const sub = metric(n - 1);
    return fc.oneof(
      { weight: 3, arbitrary: leaf },
      {
        weight: 2,
        arbitrary: fc.tuple(fc.constantFrom(...AGGS), fc.option(grouping, { nil: null }), fc.boolean(), sub).map(([a, g, before, e]) =>
          g === null ? `${a}(${e})` : before ? `${a}${g} (${e})` : `${a}(${e})${g}`,
        ),
      },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom('topk', 'bottomk'), fc.constantFrom('1', '5'), sub).map(([a, k, e]) => `${a}(${k}, ${e})`) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom('sort', 'sort_desc'), sub).map(([a, e]) => `${a}(${e})`) },
      { weight: 1, arbitrary: sub.map((e) => `label_replace(${e}, "dst", "$1", "src", "(.*)")`) },
      {
        weight: 2,
        arbitrary: fc
          .tuple(sub, fc.constantFrom(...ARITH), fc.option(fc.tuple(fc.constantFrom('on', 'ignoring'), fc.constantFrom('(pod)', '()', '(a, b)'), fc.option(fc.constantFrom(' group_left ()', ' group_right (x)'), { nil: null })), { nil: null }), sub)
          .map(([l, o, mod, r]) => `${l} ${o} ${mod === null ? '' : `${mod[0]}${mod[1]}${mod[2] ?? ''} `}${r}`),
      },
      { weight: 1, arbitrary: fc.tuple(sub, fc.constantFrom(...CMP), fc.boolean(), fc.oneof(sub, fc.constantFrom('0', '1.5', 'vector(1)'))).map(([l, o, b, r]) => `${l} ${o} ${b ? 'bool ' : ''}${r}`) },
      { weight: 1, arbitrary: fc.tuple(sub, fc.constantFrom(...SET), sub).map(([l, o, r]) => `${l} ${o} ${r}`) },
      { weight: 1, arbitrary: fc.tuple(ws, sub, ws).map(([a, e, b]) => `(${a}${e}${b})`) },
      { weight: 1, arbitrary: sub.map((e) => `vector(1) + ${e}`) },
    );
  });
  return metric(4);
}

const logQuery = fc.tuple(sel(), pipeline).map(([s, p]) => `${s}${p}`);
function sel(): fc.Arbitrary<string> {
  return selector;
}

/** A query and its twin with every implicit-AND gap written as ','. */
const queryPair = fc
  .tuple(ws, fc.oneof({ weight: 2, arbitrary: logQuery }, { weight: 3, arbitrary: metricQueries(selector) }), ws)
  .map(([a, e, b]) => {
    const raw = `${a}${e}${b}`;
    const q = withByteTwins(raw, 0).replaceAll(GAP, ' ').replace(/[\u0002-\u0004]/g, '');
    const qc = withByteTwins(raw, 1)
      .replaceAll(GAP, ',')
      .replace(/\u0004([^\u0002]*)\u0002([^\u0003]*)\u0003/g, '$2$1')
      .replace(/[\u0002-\u0004]/g, '');
    return { q, qc };
  });

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

const policyMatcher: fc.Arbitrary<Matcher> = fc.oneof(
  fc.record({ name: fc.constantFrom(...POLICY_NAMES), op: fc.constantFrom<MatchOp>('=', '!='), value }),
  fc.record({ name: fc.constantFrom(...POLICY_NAMES), op: fc.constantFrom<MatchOp>('=~', '!~'), value: fc.constantFrom(...REGEXES) }),
);
const singleGroup: fc.Arbitrary<SelectorPolicy> = fc.array(policyMatcher, { minLength: 1, maxLength: 3 }).map((g) => [g]);
const multiGroup: fc.Arbitrary<SelectorPolicy> = fc.array(fc.array(policyMatcher, { minLength: 1, maxLength: 2 }), { minLength: 2, maxLength: 3 });

function sameMatcher(a: Matcher, b: Matcher): boolean {
  return a.name === b.name && a.op === b.op && a.value === b.value;
}

function carriesGroup(s: OracleSelector, g: readonly Matcher[]): boolean {
  return g.every((m) => carries(s, m));
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

describe('LogQL rewriting properties', () => {
  it('generator sanity: comma twins parse with the official grammar', () => {
    fc.assert(
      fc.property(queryPair, ({ qc }) => {
        oracleParse(qc);
      }),
      { numRuns: 300 },
    );
  });

  it('single group: parses, enforced everywhere, idempotent, same selectors, pure insertion', () => {
    fc.assert(
      fc.property(queryPair, singleGroup, ({ q, qc }, policy) => {
        let out: string;
        try {
          out = rewriteLogQL(q, policy);
        } catch (e) {
          throw new Error(`rewrite failed for ${JSON.stringify(q)}: ${(e as Error).message}`);
        }
        const group = policy[0] as readonly Matcher[];
        // (1) the twin (written in the official grammar's forms) gets the same
        // selectors at the same places, and its output parses cleanly
        const outc = rewriteLogQL(qc, policy);
        oracleParse(outc);
        expect(outc.length).toBe(out.length);
        expect(oracleSelectors(outc)).toEqual(oracleSelectors(out));
        // (2) every selector carries every policy matcher (independent scan)
        const inSels = oracleSelectors(q);
        const outSels = oracleSelectors(out);
        for (const s of outSels) for (const m of group) expect(carries(s, m)).toBe(true);
        // (3) idempotent
        expect(rewriteLogQL(out, policy)).toBe(out);
        // (4) same number of selectors
        expect(outSels.length).toBe(inSels.length);
        // (5) removing what was inserted gives back the input exactly. Not when absent_over_time got
        // label_replace around it to keep its result labels (tested on their own in logql.test.ts).
        if (out.split('label_replace(').length !== q.split('label_replace(').length) return;
        const removals: [number, number][] = [];
        inSels.forEach((before, i) => {
          const after = outSels[i] as OracleSelector;
          const missing = group.filter((m, k) => !carries(before, m) && group.findIndex((x) => sameMatcher(x, m)) === k);
          if (missing.length === 0) {
            expect(out.slice(after.from, after.to)).toBe(q.slice(before.from, before.to));
            return;
          }
          const added = after.matchers.slice(before.matchers.length);
          expect(added.map((x) => ({ name: x.name, op: x.op, value: x.value }))).toEqual(missing.map((m) => ({ name: m.name, op: m.op, value: m.value })));
          removals.push([(after.matchers[before.matchers.length - 1] as { to: number }).to, (after.matchers[after.matchers.length - 1] as { to: number }).to]);
        });
        let back = out;
        for (const [from, to] of removals.reverse()) back = back.slice(0, from) + back.slice(to);
        expect(back).toBe(q);
      }),
      { numRuns: 1200 },
    );
  });

  it('multi-group: exact rewrite or rewrite_unsupported, never anything unenforced', () => {
    let rewritten = 0;
    fc.assert(
      fc.property(queryPair, multiGroup, ({ q }, policy) => {
        let out: string;
        try {
          out = rewriteLogQL(q, policy);
        } catch (e) {
          expect(e).toBeInstanceOf(QueryError);
          expect((e as QueryError).code).toBe('rewrite_unsupported');
          return;
        }
        rewritten++;
        for (const s of oracleSelectors(out)) {
          const ok = policy.some((g) => carriesGroup(s, g)) || s.matchers.some((x) => x.op === '=~' && x.value !== null && x.value.startsWith('(?:'));
          expect(ok).toBe(true);
        }
        expect(rewriteLogQL(out, policy)).toBe(out);
      }),
      { numRuns: 500 },
    );
    expect(rewritten).toBeGreaterThan(20);
  });

  // Small universe of label values for the semantic properties below.
  const VALUES = ['', 'a', 'b', 'team-a', 'x', 'é'];
  const assignment = fc.record({ namespace: fc.constantFrom(...VALUES), team: fc.constantFrom(...VALUES), app: fc.constantFrom(...VALUES), job: fc.constantFrom(...VALUES) });
  const smallMatcher = fc.record({ name: fc.constantFrom('namespace', 'team', 'app'), op: fc.constantFrom<MatchOp>('=', '!=', '=~', '!~'), value: fc.constantFrom('a', 'b', 'team-a', '', 'a|b', '.+') });
  const smallPolicy = fc.array(fc.array(smallMatcher, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 3 });
  const userSel = fc.array(smallMatcher, { minLength: 0, maxLength: 2 }).map((ms) => [{ name: 'job', op: '=' as MatchOp, value: 'x' }, ...ms]);

  it('absent_over_time keeps the result labels of the query as written (Loki\'s absentLabels), and every part is enforced', () => {
    // Loki's absentLabels (pkg/logql/evaluator.go), written out from its source: first `=` per name sets it
    // (an empty value sets nothing), every other matcher of a name removes the name at the end.
    const lokiAbsent = (ms: readonly { name: string; op: string; value: string | null }[]): Map<string, string> => {
      const out = new Map<string, string>();
      const removed: string[] = [];
      for (const m of ms) {
        if (m.op === '=' && !out.has(m.name)) {
          if (m.value !== '') out.set(m.name, m.value as string);
        } else removed.push(m.name);
      }
      for (const n of removed) out.delete(n);
      return out;
    };
    const LR = /^label_replace\((.*), ("(?:[^"\\]|\\.)*"), ("(?:[^"\\]|\\.)*"), "", ""\)$/s;
    let fixed = 0;
    fc.assert(
      fc.property(userSel, smallPolicy, fc.boolean(), (user, policy, pipeline) => {
        const q = `absent_over_time({${user.map(formatLogQLMatcher).join(', ')}}${pipeline ? ' |= "y"' : ''} [5m])`;
        let out: string;
        try {
          out = rewriteLogQL(q, policy);
        } catch (e) {
          expect((e as QueryError).code).toBe('rewrite_unsupported');
          return;
        }
        let inner = out;
        const fixes: [string, string][] = [];
        for (let m = LR.exec(inner); m !== null; m = LR.exec(inner)) {
          fixes.unshift([JSON.parse(m[2] as string) as string, (JSON.parse(m[3] as string) as string).replaceAll('$$', '$')]);
          inner = m[1] as string;
        }
        if (fixes.length > 0) fixed++;
        const sels = oracleSelectors(inner);
        // Each part carries one whole group (or the merged group's regex, as above).
        for (const s of sels) expect(policy.some((g) => carriesGroup(s, g)) || s.matchers.some((x) => x.op === '=~' && (x.value ?? '').startsWith('(?:'))).toBe(true);
        const labels = lokiAbsent((sels[0] as OracleSelector).matchers);
        for (const [name, value] of fixes) {
          if (value === '') labels.delete(name);
          else labels.set(name, value);
        }
        expect(labels).toEqual(lokiAbsent(user));
        if (sels.length > 1) expect(inner.split(' and on() ').length).toBe(sels.length);
      }),
      { numRuns: 800 },
    );
    expect(fixed).toBeGreaterThan(50);
  });

  it('multi-group semantics: what a rewritten selector admits is exactly selector ∧ (G1 ∨ G2 ∨ …)', () => {
    // The rewritten selector (one per log query) must accept exactly the label
    // sets that the original selector and some group accept.
    fc.assert(
      fc.property(userSel, smallPolicy, fc.array(assignment, { minLength: 20, maxLength: 20 }), (user, policy, labelSets) => {
        const q = `{${user.map(formatLogQLMatcher).join(', ')}} |= "y"`;
        let out: string;
        try {
          out = rewriteLogQL(q, policy);
        } catch (e) {
          expect((e as QueryError).code).toBe('rewrite_unsupported');
          return;
        }
        const [s] = oracleSelectors(out);
        expect(s).toBeDefined();
        for (const ls of labelSets) {
          const get = (n: string): string => (ls as Record<string, string>)[n] ?? '';
          const want = user.every((m) => evalMatcher(m, get(m.name))) && policy.some((g) => g.every((m) => evalMatcher(m, get(m.name))));
          const got = (s as OracleSelector).matchers.every((m) => evalMatcher({ op: m.op, value: m.value as string }, get(m.name)));
          expect(got).toBe(want);
        }
      }),
      { numRuns: 600 },
    );
  });

  it('log queries per alternative: never refused, each query carries one whole group, together they admit exactly selector ∧ (G1 ∨ G2 ∨ …)', () => {
    let split = 0;
    fc.assert(
      fc.property(userSel, smallPolicy, fc.array(assignment, { minLength: 20, maxLength: 20 }), (user, policy, labelSets) => {
        const q = `{${user.map(formatLogQLMatcher).join(', ')}} |= "y" | json`;
        const outs = rewriteLogQLPerAlternative(q, policy);
        if (outs.length > 1) split++;
        const sels = outs.map((out) => {
          const found = oracleSelectors(out);
          expect(found).toHaveLength(1);
          // The pipeline is kept as written.
          expect(out.endsWith(' |= "y" | json')).toBe(true);
          return found[0] as OracleSelector;
        });
        if (outs.length > 1) for (const s of sels) expect(policy.some((g) => carriesGroup(s, g))).toBe(true);
        for (const ls of labelSets) {
          const get = (n: string): string => (ls as Record<string, string>)[n] ?? '';
          const want = user.every((m) => evalMatcher(m, get(m.name))) && policy.some((g) => g.every((m) => evalMatcher(m, get(m.name))));
          const got = sels.some((s) => s.matchers.every((m) => evalMatcher({ op: m.op, value: m.value as string }, get(m.name))));
          expect(got).toBe(want);
        }
      }),
      { numRuns: 600 },
    );
    expect(split).toBeGreaterThan(30);
  });

  it('index totals per disjoint alternative: the parts admit exactly selector ∧ (G1 ∨ G2 ∨ …), and no label set is admitted by two parts', () => {
    let split = 0;
    let refused = 0;
    fc.assert(
      fc.property(fc.option(userSel, { nil: undefined }), smallPolicy, fc.array(assignment, { minLength: 30, maxLength: 30 }), (user, policy, labelSets) => {
        const q = user === undefined ? '' : `{${user.map(formatLogQLMatcher).join(', ')}}`;
        let outs: string[];
        try {
          outs = rewriteLogQLDisjointParts([q], policy);
        } catch (e) {
          expect((e as QueryError).code).toBe('rewrite_unsupported');
          refused++;
          return;
        }
        if (outs.length > 1) split++;
        const sels = outs.map((out) => {
          const found = oracleSelectors(out);
          expect(found).toHaveLength(1);
          return found[0] as OracleSelector;
        });
        for (const ls of labelSets) {
          const get = (n: string): string => (ls as Record<string, string>)[n] ?? '';
          const want = (user ?? []).every((m) => evalMatcher(m, get(m.name))) && policy.some((g) => g.every((m) => evalMatcher(m, get(m.name))));
          const admitting = sels.filter((s) => s.matchers.every((m) => evalMatcher({ op: m.op, value: m.value as string }, get(m.name))));
          expect(admitting.length > 0).toBe(want);
          // A stream counted by two parts would be counted twice in the sum.
          expect(admitting.length).toBeLessThanOrEqual(1);
        }
      }),
      { numRuns: 1500 },
    );
    expect(split).toBeGreaterThan(5);
    expect(refused).toBeGreaterThan(20);
  });

  it('mutated (often invalid) queries: either a QueryError or fully enforced output', () => {
    const mutation = fc.tuple(fc.nat(), fc.constantFrom('', '{', '}', '(', ')', '"', "'", '`', '#', '\n', '\r', ',', '[', ']', ' or ', 'x', '=', '\\', '|', ' ', '//', '/*'), fc.nat(3));
    fc.assert(
      fc.property(queryPair, fc.array(mutation, { minLength: 1, maxLength: 3 }), singleGroup, ({ q: q0 }, muts, policy) => {
        let q = q0;
        for (const [at, ins, del] of muts) {
          const i = q.length === 0 ? 0 : at % q.length;
          q = q.slice(0, i) + ins + q.slice(i + del);
        }
        let out: string;
        try {
          out = rewriteLogQL(q, policy);
        } catch (e) {
          expect(e).toBeInstanceOf(QueryError);
          expect(['bad_query', 'query_too_large', 'rewrite_unsupported']).toContain((e as QueryError).code);
          return;
        }
        const group = policy[0] as readonly Matcher[];
        for (const s of oracleSelectors(out)) for (const m of group) expect(carries(s, m)).toBe(true);
      }),
      { numRuns: 1200 },
    );
  });

  it('match[]: the same selectors from the cache as computed afresh, and the list is the union of each parameter\'s', () => {
    fc.assert(
      fc.property(fc.array(selector, { maxLength: 3 }), multiGroup, fc.boolean(), (params, policy, warmFirst) => {
        if (warmFirst) rewriteLogQLSelectors(params.slice(1), policy);
        const cached = rewriteLogQLSelectors(params, policy);
        clearLogQLCache();
        const fresh = rewriteLogQLSelectors(params, policy);
        expect(cached).toEqual(fresh);
        const union: string[] = [];
        for (const p of params) for (const s of (clearLogQLCache(), rewriteLogQLSelectors([p], policy))) if (!union.includes(s)) union.push(s);
        expect(fresh).toEqual(params.length === 0 ? rewriteLogQLSelectors([], policy) : union);
      }),
      { numRuns: 300 },
    );
  });

  it('match[]: every result is one selector carrying one whole group', () => {
    fc.assert(
      fc.property(fc.array(selector, { maxLength: 3 }), multiGroup, (params, policy) => {
        const out = rewriteLogQLSelectors(params, policy);
        expect(out.length).toBeLessThanOrEqual(Math.max(1, params.length) * policy.length);
        for (const s of out) {
          const sels = oracleSelectors(s);
          expect(sels).toHaveLength(1);
          const [only] = sels;
          expect(only !== undefined && (policy.some((g) => carriesGroup(only, g)) || only.matchers.some((x) => x.op === '=~' && (x.value ?? '').startsWith('(?:')))).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('parseLogQLMatchers(formatLogQLMatcher(...)) round-trips', () => {
    fc.assert(
      fc.property(fc.array(policyMatcher, { minLength: 1, maxLength: 4 }), fc.constantFrom(',', ', ', ' ,\n'), (ms, s) => {
        expect(parseLogQLMatchers(ms.map(formatLogQLMatcher).join(s))).toEqual(ms.map((m) => ({ name: m.name, op: m.op, value: m.value })));
      }),
      { numRuns: 300 },
    );
  });
});
