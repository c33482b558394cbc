/**
 * Property tests: random syntactically valid TraceQL (built from the
 * grammar's constructs: filters with every kind of field, spanset and
 * structural operators, pipelines with scalar filters / by / select /
 * coalesce, scalar pipeline filters, metrics first and second stages,
 * compare(), metrics arithmetic, hints, comments) × random policies.
 * Checked with the independent oracle in ./traceql-oracle.ts (own lexer, own
 * parser), never with the rewriter's own verification.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QueryError } from '../../src/errors.ts';
import type { Matcher, MatchOp, SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { TEMPO_MAX_QUERY_BYTES, rewriteTraceQL } from '../../src/rewrite/traceql.ts';
import type { OracleResult, Tok } from './traceql-oracle.ts';
import { OracleError, filterEnforced, filterText, lex, oracleAnalyze, oracleFilters } from './traceql-oracle.ts';

// ---------------------------------------------------------------------------
// Lexical pieces
// ---------------------------------------------------------------------------

const NASTY = ['"', '\\', '}', '{', '\n', '\t', '|', '&&', '//', '/*', '*/', '`', "'", ' ', 'é', '🚀', '\u2028', 'a', '.', '=', '~', ')', '('];
const rawValue = fc.array(fc.oneof(fc.constantFrom(...NASTY), fc.string({ maxLength: 2 })), { maxLength: 6 }).map((xs) => xs.join(''));

/** A Go double-quoted literal for `v` (escaping only what must be, sometimes more). */
function goQuote(v: string, heavy: boolean): string {
  let out = '"';
  for (const ch of v) {
    const cp = ch.codePointAt(0) as number;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (heavy && cp > 0x7e) out += cp > 0xffff ? `\\U${cp.toString(16).padStart(8, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

const stringLit = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(rawValue, fc.boolean()).map(([v, h]) => goQuote(v.replace(/[\u0000\ufeff]/g, ''), h)) },
  { weight: 1, arbitrary: rawValue.filter((v) => !v.includes('`') && !/[\u0000\ufeff]/.test(v)).map((v) => `\`${v}\``) },
);

// Whitespace and comments between tokens (a required separator is written as `a === '' ? ' ' : a`).
const ws = fc.constantFrom('', '', '', ' ', ' ', '\n', ' /* } { | */ ', ' // } x\n', '\t');

const attrKey = fc.oneof(
  fc.constantFrom('http.method', 'k8s.namespace.name', 'service.name', 'a', 'x-y', 'x+1', 'db/sys', 'http.status_code'),
  fc.constantFrom('"a b"', '"a}b{"', '"q\\"q"', '"b\\\\s"', 'foo."bar baz".x', '"0"', '"é|&"'),
);
const scopedAttr = fc.tuple(fc.constantFrom('resource.', 'span.', 'event.', 'link.', 'instrumentation.', '.'), attrKey).map(([s, k]) =>
  s === '.' && /^[0-9]/.test(k) ? `.${JSON.stringify(k)}` : `${s}${k}`,
);
const intrinsic = fc.constantFrom(
  'name',
  'status',
  'kind',
  'duration',
  'statusMessage',
  'rootName',
  'rootServiceName',
  'traceDuration',
  'childCount',
  'nestedSetParent',
  'span:name',
  'span:duration',
  'span:status',
  'span: kind',
  'trace:rootService',
  'trace:duration',
  'trace:id',
  'event:name',
  'link:traceID',
  'instrumentation:version',
);
const field = fc.oneof({ weight: 3, arbitrary: scopedAttr }, { weight: 2, arbitrary: intrinsic });
const number = fc.constantFrom('0', '1', '200', '1.5', '.5', '1e3', '100ms', '1s', '1h30m', '5d', '2.5m', '1µs');
const enumLit = fc.constantFrom('ok', 'error', 'unset', 'server', 'client', 'true', 'false');
const cmpOp = fc.constantFrom('=', '!=', '<', '<=', '>', '>=', '=~', '!~');

// ---------------------------------------------------------------------------
// Field expressions (inside filters)
// ---------------------------------------------------------------------------

const comparison = fc.oneof(
  fc.tuple(field, ws, cmpOp, ws, fc.oneof(stringLit, number, enumLit)).map(([f, a, o, b, v]) => `${f}${a}${o}${b}${v}`),
  fc.tuple(field, ws, fc.constantFrom('=', '!='), ws).map(([f, a, o, b]) => `${f}${a}${o}${b}nil`),
  scopedAttr,
  fc.tuple(scopedAttr, fc.constantFrom(' + ', ' * ', ' - ', ' / ', ' % ', ' ^ '), number, fc.constantFrom(' > ', ' = '), number).map(
    ([f, o, n, c, m]) => `${f}${o}${n}${c}${m}`,
  ),
);

const fieldExpr: fc.Arbitrary<string> = fc.letrec((tie) => ({
  expr: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    comparison,
    fc.tuple(tie('expr'), fc.constantFrom(' && ', ' || ', '&&', ' &&\n'), tie('expr')).map(([l, o, r]) => `${l}${o}${r}`),
    fc.tuple(ws, tie('expr'), ws).map(([a, e, b]) => `(${a}${e}${b})`),
    tie('expr').map((e) => `!(${e})`),
  ),
})).expr as fc.Arbitrary<string>;

const filter = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom('{}', '{ }', '{  }', '{ /* } */ }', '{\n}') },
  { weight: 6, arbitrary: fc.tuple(ws, fieldExpr, ws).map(([a, e, b]) => `{${a === '' ? ' ' : a}${e}${b === '' ? ' ' : b}}`) },
);

// ---------------------------------------------------------------------------
// Spanset expressions, pipelines, metrics
// ---------------------------------------------------------------------------

const SPANSET_OPS = ['&&', '||', '>', '<', '>>', '<<', '~', '!>', '!<', '!>>', '!<<', '!~', '&>', '&<', '&>>', '&<<', '&~'];

const spansetExpr: fc.Arbitrary<string> = fc.letrec((tie) => ({
  se: fc.oneof(
    { depthSize: 'small' },
    filter,
    fc.tuple(tie('se'), ws, fc.constantFrom(...SPANSET_OPS), ws, tie('se')).map(([l, a, o, b, r]) => `${l}${a === '' ? ' ' : a}${o}${b === '' ? ' ' : b}${r}`),
    fc.tuple(ws, tie('se'), ws).map(([a, e, b]) => `(${a}${e}${b})`),
  ),
})).se as fc.Arbitrary<string>;

const aggregate = fc.oneof(fc.constant('count()'), fc.tuple(fc.constantFrom('avg', 'max', 'min', 'sum'), fc.oneof(field, fc.constant('(1 + span.a) * 2'))).map(([a, f]) => `${a}(${f})`));
const scalarNum = fc.constantFrom('1', '2', '1s', '10ms', '-1', '0.5');
const scalarExpr = fc.oneof(
  aggregate,
  scalarNum,
  fc.tuple(aggregate, fc.constantFrom(' + ', ' - ', ' * '), fc.oneof(aggregate, scalarNum)).map(([a, o, b]) => `${a}${o}${b}`),
  aggregate.map((a) => `(${a})`),
);
const scalarFilter = fc.tuple(scalarExpr, fc.constantFrom(' > ', ' = ', ' != ', ' <= ', '>='), scalarExpr).map(([a, o, b]) => `${a}${o}${b}`);
const attrList = fc.array(field, { minLength: 1, maxLength: 3 }).map((fs) => fs.join(', '));
const groupOp = fc.oneof(field, fc.constant('span.a + 1')).map((f) => `by(${f})`);
const selectOp = attrList.map((l) => `select(${l})`);

const stage = fc.oneof(
  { weight: 4, arbitrary: spansetExpr },
  { weight: 2, arbitrary: scalarFilter },
  { weight: 1, arbitrary: groupOp },
  { weight: 1, arbitrary: selectOp },
  { weight: 1, arbitrary: fc.constant('coalesce()') },
);
const head = fc.oneof({ weight: 5, arbitrary: spansetExpr }, { weight: 1, arbitrary: scalarFilter }, { weight: 1, arbitrary: groupOp }, { weight: 1, arbitrary: selectOp });
const pipeSep = fc.constantFrom(' | ', '|', ' |\n', ' /* | */ | ');
const pipeline = fc.tuple(head, fc.array(fc.tuple(pipeSep, stage), { maxLength: 3 })).map(([h, rest]) => h + rest.map(([s, e]) => s + e).join(''));
/** A pipeline with at least two elements (a one-element wrapped spanset is a spanset expression in Tempo's grammar). */
const longPipeline = fc.tuple(head, fc.array(fc.tuple(pipeSep, stage), { minLength: 1, maxLength: 3 })).map(([h, rest]) => h + rest.map(([s, e]) => s + e).join(''));

const pipelineExpr: fc.Arbitrary<string> = fc.letrec((tie) => ({
  pe: fc.oneof(
    { depthSize: 'small' },
    longPipeline.map((p) => `(${p})`),
    fc.tuple(tie('pe'), fc.constantFrom(...SPANSET_OPS), tie('pe')).map(([l, o, r]) => `${l} ${o} ${r}`),
  ),
})).pe as fc.Arbitrary<string>;

const wrappedScalar = fc.tuple(pipeline, aggregate).map(([p, a]) => `(${p} | ${a})`);
const scalarPipelineFilter = fc.tuple(wrappedScalar, fc.constantFrom(' > ', ' = ', ' < '), fc.oneof(wrappedScalar, scalarNum.filter((n) => !n.startsWith('-')), stringLit)).map(([a, o, b]) => `${a}${o}${b}`);

const byClause = fc.option(attrList.map((l) => ` by (${l})`), { nil: '' });
const firstStage = fc.oneof(
  fc.tuple(fc.constantFrom('rate()', 'count_over_time()'), byClause).map(([f, b]) => f + b),
  fc.tuple(fc.constantFrom('min_over_time', 'max_over_time', 'avg_over_time', 'sum_over_time', 'histogram_over_time'), field, byClause).map(([f, a, b]) => `${f}(${a})${b}`),
  fc.tuple(field, fc.constantFrom('.99', '0.5, .9', '0, 1'), byClause).map(([a, q, b]) => `quantile_over_time(${a}, ${q})${b}`),
  fc.tuple(filter, fc.constantFrom('', ', 10', ', 5, 1700000000000000000, 1700000060000000000')).map(([f, x]) => `compare(${f}${x})`),
);
const secondStages = fc.array(fc.oneof(fc.constantFrom('| topk(5)', '| bottomk(2)', '> 10', '<= 0.5', '!= -1', '>= 1s')), { maxLength: 2 }).map((xs) => xs.map((x) => ` ${x}`).join(''));
const metricsQuery = fc.tuple(pipeline, firstStage, secondStages).map(([p, f, s]) => `${p} | ${f}${s}`);
const metricsMath: fc.Arbitrary<string> = fc.letrec((tie) => ({
  mm: fc.oneof(
    { depthSize: 'small' },
    metricsQuery.map((m) => `(${m})`),
    fc.tuple(tie('mm'), fc.constantFrom(' + ', ' - ', ' * ', ' / '), tie('mm')).map(([l, o, r]) => `${l}${o}${r}`),
  ),
})).mm as fc.Arbitrary<string>;

const hints = fc.option(fc.constantFrom(' with(sample=0.1)', ' with (most_recent=true)', ' with(a="x", b=2) with(c=1s)'), { nil: '' });

const query = fc
  .tuple(
    ws,
    fc.oneof(
      { weight: 6, arbitrary: pipeline },
      { weight: 2, arbitrary: pipelineExpr },
      { weight: 1, arbitrary: scalarPipelineFilter },
      { weight: 3, arbitrary: metricsQuery },
      { weight: 1, arbitrary: fc.tuple(metricsMath, secondStages).map(([m, s]) => m + s) },
    ),
    hints,
    ws,
  )
  .map(([a, q, h, b]) => `${a}${q}${h}${b}`);

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

const POLICY_NAMES = ['resource.k8s.namespace.name', 'span.http.method', '.team', 'resource.my key', 'span.a}b{', 'span:name', 'resource.q"q', 'event.b\\s', 'trace:rootService', 'resource.0'];
const POLICY_VALUES = ['a', 'team-a', 'x"} || { true', '\\', '', 'é\n🚀', 'a|b', '.*'];
const policyMatcher: fc.Arbitrary<Matcher> = fc.record({
  name: fc.constantFrom(...POLICY_NAMES),
  op: fc.constantFrom<MatchOp>('=', '!=', '=~', '!~'),
  value: fc.oneof(fc.constantFrom(...POLICY_VALUES), rawValue.filter((v) => !/[\u0000\ufeff]/.test(v))),
}).filter((m) => {
  if (m.op !== '=~' && m.op !== '!~') return true;
  try {
    new RegExp(m.value, 'u');
    return !/[\\[(]/.test(m.value) || m.value === '.*';
  } catch {
    return false;
  }
});
const singleGroup: fc.Arbitrary<SelectorPolicy> = fc.array(policyMatcher, { minLength: 1, maxLength: 3 }).map((g) => [g]);
const multiGroup: fc.Arbitrary<SelectorPolicy> = fc.array(fc.array(policyMatcher, { minLength: 1, maxLength: 2 }), { minLength: 2, maxLength: 3 });
const anyPolicy = fc.oneof(singleGroup, multiGroup);

// ---------------------------------------------------------------------------
// Expected enforcement tokens, built from the policy (not from src formatting)
// ---------------------------------------------------------------------------

function dedupe(policy: SelectorPolicy): Matcher[][] {
  const groups = policy.map((g) => {
    const seen = new Set<string>();
    return g.filter((m) => {
      const k = JSON.stringify([m.name, m.op, m.value]);
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
  });
  const keys = groups.map((g) => new Set(g.map((m) => JSON.stringify([m.name, m.op, m.value]))));
  return groups.filter((_, i) =>
    !keys.some((h, j) => {
      const g = keys[i] as Set<string>;
      if (j === i || h.size > g.size) return false;
      for (const k of h) if (!g.has(k)) return false;
      return h.size < g.size || j < i;
    }),
  );
}

const T = (k: Tok['k'], v: string): Tok => ({ k, v, from: 0, to: 0 });

/** The gateway writes policy regexes anchored, `^(?s:re)$`, so they mean the same on every Tempo version. */
function matcherToks(m: Matcher): Tok[] {
  return [T('field', m.name), T('op', m.op), T('str', m.op === '=~' || m.op === '!~' ? `^(?s:${m.value})$` : m.value)];
}

function conj(g: readonly Matcher[]): Tok[] {
  return g.flatMap((m, i) => (i === 0 ? matcherToks(m) : [T('op', '&&'), ...matcherToks(m)]));
}

function expected(policy: SelectorPolicy): { clause: Tok[]; alone: Tok[] } {
  const groups = dedupe(policy);
  if (groups.length === 1) {
    const c = conj(groups[0] as Matcher[]);
    return { clause: c, alone: c };
  }
  const alone = groups.flatMap((g, i) => [...(i === 0 ? [] : [T('op', '||')]), T('op', '('), ...conj(g), T('op', ')')]);
  return { clause: [T('op', '('), ...alone, T('op', ')')], alone };
}

function isSubsequence(a: string, b: string): boolean {
  let i = 0;
  for (let j = 0; j < b.length && i < a.length; j++) if (a[i] === b[j]) i++;
  return i === a.length;
}

function check(q: string, policy: SelectorPolicy): void {
  let out: string;
  try {
    out = rewriteTraceQL(q, policy);
  } catch (e) {
    if (e instanceof QueryError && e.code === 'query_too_large') {
      // Refused for Tempo's lexer only when the text to send is longer than TEMPO_MAX_QUERY_BYTES
      // (the boundary itself is tested exactly in traceql.test.ts).
      const bytes = Number(/is (\d+) bytes/.exec(e.message)?.[1]);
      expect(bytes, `refused as too large: ${JSON.stringify(q)} (${e.message})`).toBeGreaterThan(TEMPO_MAX_QUERY_BYTES);
      expect(bytes).toBeGreaterThanOrEqual(Buffer.byteLength(q));
      return;
    }
    if (e instanceof QueryError) throw new Error(`rewrite failed (${e.code}: ${e.message}) for ${JSON.stringify(q)}`);
    throw e;
  }
  const inRes = oracleAnalyze(q);
  let outRes: OracleResult;
  try {
    outRes = oracleAnalyze(out);
  } catch (e) {
    throw new Error(`oracle cannot read the output ${JSON.stringify(out)}: ${(e as Error).message}`);
  }
  const { clause, alone } = expected(policy);
  for (const f of outRes.filters) {
    if (!filterEnforced(outRes, f, clause, alone)) throw new Error(`unenforced filter ${JSON.stringify(filterText(out, outRes, f))} in ${JSON.stringify(out)}`);
  }
  expect(outRes.badHead, `pipeline without a leading filter in ${JSON.stringify(out)}`).toBe(false);
  // One filter per input filter, plus one per pipeline that did not start with one.
  if (!inRes.badHead) expect(outRes.filters.length).toBe(inRes.filters.length);
  else expect(outRes.filters.length).toBeGreaterThan(inRes.filters.length);
  // Pure insertion: everything the user wrote is still there, in order.
  expect(isSubsequence(q, out)).toBe(true);
  // Idempotent.
  expect(rewriteTraceQL(out, policy)).toBe(out);
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

describe('TraceQL rewriting properties', () => {
  it('generator sanity: the oracle reads every generated query', () => {
    fc.assert(
      fc.property(query, (q) => {
        oracleAnalyze(q);
      }),
      { numRuns: 300 },
    );
  });

  it('single-group policies: parses, every filter enforced, every pipeline led by a filter, idempotent, pure insertion', () => {
    fc.assert(fc.property(query, singleGroup, check), { numRuns: 500 });
  });

  it('multi-group (DNF) policies: same properties', () => {
    fc.assert(fc.property(query, multiGroup, check), { numRuns: 300 });
  });

  it('policy values cannot break out of the string or the filter', () => {
    fc.assert(
      fc.property(anyPolicy, (policy) => {
        const out = rewriteTraceQL('{ .a = 1 } >> { }', policy);
        const r = oracleAnalyze(out);
        expect(r.filters.length).toBe(2);
        const { clause, alone } = expected(policy);
        for (const f of r.filters) expect(filterEnforced(r, f, clause, alone)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('lexical differential: mutated queries the gateway accepts are enforced as Tempo lexer reads them', () => {
    const FRAGMENTS = ['{', '}', '"', '\\', '`', '//', '/*', '*/', '\n', ' ', '.', 'span.', '"}"', '"{', '}"', "'", '|', '&&', '(', ')', '1', 's', '=', '.a', '\\"', 'µ', '\u00a0', ':', 'span:', '#', ','];
    const mutated = fc
      .tuple(query, fc.array(fc.tuple(fc.nat(), fc.array(fc.constantFrom(...FRAGMENTS), { minLength: 1, maxLength: 3 })), { minLength: 1, maxLength: 3 }))
      .map(([q, edits]) => {
        let s = q;
        for (const [pos, frags] of edits) {
          const at = pos % (s.length + 1);
          s = s.slice(0, at) + frags.join('') + s.slice(at);
        }
        return s;
      });
    let accepted = 0;
    fc.assert(
      fc.property(mutated, singleGroup, (q, policy) => {
        let out: string;
        try {
          out = rewriteTraceQL(q, policy);
        } catch (e) {
          if (e instanceof QueryError) return;
          throw e;
        }
        accepted++;
        let r: ReturnType<typeof oracleFilters>;
        try {
          r = oracleFilters(out);
        } catch (e) {
          if (e instanceof OracleError) return; // Tempo's lexer rejects it: nothing reaches the data
          throw e;
        }
        const { clause, alone } = expected(policy);
        const res = { tokens: r.tokens, filters: r.filters, badHead: false };
        for (const f of r.filters) {
          if (!filterEnforced(res, f, clause, alone)) throw new Error(`unenforced filter ${JSON.stringify(filterText(out, res, f))} in ${JSON.stringify(out)}`);
        }
      }),
      { numRuns: 2500 },
    );
    expect(accepted).toBeGreaterThan(100);
  });

  it('the oracle lexer and the enforced form agree on the policy tokens', () => {
    // lex() of a hand-written enforced filter gives the expected tokens.
    const policy: SelectorPolicy = [[{ name: 'resource.my key', op: '=~', value: 'a"b' }]];
    const r = oracleAnalyze('{ (.x = 1) && resource."my key" =~ "^(?s:a\\"b)$" }');
    const f = r.filters[0];
    expect(f).toBeDefined();
    const { clause, alone } = expected(policy);
    expect(filterEnforced(r, f as NonNullable<typeof f>, clause, alone)).toBe(true);
    expect(lex('span: name').map((t) => t.v)).toEqual(['span:name']);
  });
});
