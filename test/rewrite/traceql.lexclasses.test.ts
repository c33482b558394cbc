/**
 * Parser differentials, token class by token class: for adversarial TraceQL
 * the gateway either refuses the query or forwards text in which every
 * spanset filter *as Tempo's lexer reads it* (the independent lexer of
 * ./traceql-oracle.ts) is enforced, and no filter appears or disappears.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { rewriteTraceQL } from '../../src/rewrite/traceql.ts';
import { attempt, describeClasses, exactOutcomes, spliceFuzz, structuredFuzz, type Outcome } from './lexclass-harness.ts';
import type { Tok } from './traceql-oracle.ts';
import { OracleError, filterEnforced, filterText, lex, oracleFilters } from './traceql-oracle.ts';

const P: SelectorPolicy = [[{ name: 'resource.ns', op: '=', value: 'a' }]];
const C = 'resource.ns = "a"';
const CLAUSE: readonly Tok[] = lex(C);

function run(q: string): Outcome {
  return attempt(() => rewriteTraceQL(q, P));
}

function tempoFilters(q: string): ReturnType<typeof oracleFilters> | null {
  try {
    return oracleFilters(q);
  } catch (e) {
    if (e instanceof OracleError) return null;
    throw e;
  }
}

/** Refused, or every filter Tempo's lexer reads in the output is `C` or `(X) && C`, and none of the input's is lost. */
function expectSafe(q: string): Outcome {
  const r = run(q);
  if (!r.ok) {
    expect(['bad_query', 'rewrite_unsupported', 'query_too_large']).toContain(r.code);
    return r;
  }
  const read = tempoFilters(r.out);
  if (read === null) return r; // Tempo's lexer refuses the forwarded text: nothing is read
  const res = { tokens: read.tokens, filters: read.filters, badHead: false };
  for (const f of read.filters) {
    if (!filterEnforced(res, f, CLAUSE, CLAUSE)) throw new Error(`unenforced filter ${JSON.stringify(filterText(r.out, res, f))} in ${JSON.stringify(r.out)}`);
  }
  const before = tempoFilters(q);
  // The gateway adds `{ C } | ` in front of a pipeline that does not start with a filter; it never removes one.
  if (before !== null) expect(read.filters.length, q).toBeGreaterThanOrEqual(before.filters.length);
  return r;
}

const CLASSES: [string, string[]][] = [
  [
    'strings and escapes',
    [
      '{ .a = "}" } && { .b = "{" }',
      '{ .a = "\\"}" }',
      '{ .a = "\\x7d\\u007b\\U0000007d\\175" }',
      '{ .a = "\\q" } && { .b }',
      '{ .a = "\\\'" }',
      '{ .a = "\\x7" }',
      '{ .a = "\\777" }',
      '{ .a = "\\ud800" }',
      '{ .a = "x\ny" }',
      '{ .a = "x\\\n}" }',
      '{ .a = "unterminated }',
      '{ .a = `}` } && { .b = `\\` }',
      '{ .a = `x\ry` }',
      '{ .a = `x\ny` }',
      "{ .a = '}' }",
      "{ .a = '\"' } && { .b = '\"' }",
      '{ .a = "\\\\" } | select(span."}")',
    ],
  ],
  [
    'comments',
    [
      '{ .a = "x" // }\n }',
      '{ .a = "x" /* } */ }',
      '{ .a = "x" } /* { .b } */',
      '{ .a = "x" } // { .b }',
      '{ .a/* } */ = "x" }',
      '{ .a// }\n= "x" }',
      '{ .a = "x" } /* unterminated',
      '{ .a = "x" } # { .b }',
      '{ .a = "/*" } && { .b = "*/" }',
      '{ span:/* } */status = error }',
      '{ .a = 1 } /*/ } { */',
      '{ .a = 1 } /**/ && /***/ { .b }',
      '{ .a } // c\r{ .b }',
      '{ .a } // c\u2028 && { .b }',
    ],
  ],
  [
    'whitespace classes',
    [
      '{\t.a\r\n=\n1 }',
      '{ .a\v= 1 }',
      '{ .a\f= 1 }',
      '{ .a\u0085= 1 }',
      '{ .a\u00a0= 1 }',
      '{ .a\u1680= 1 }',
      '{ .a\u2000= 1 }',
      '{ .a\u2028= 1 }',
      '{ .a\u2029= 1 }',
      '{ .a\u202f= 1 }',
      '{ .a\u205f= 1 }',
      '{ .a\u3000= 1 }',
      '{ .a\u200b= 1 }',
      '{ .a = 1 }\u00a0&& { .b }',
      '{ .a = 1 }\v&& { .b }',
      '\ufeff{ .a }',
      '{ .a\ufeff= 1 }',
      '{ .a = 1 }\u0000',
    ],
  ],
  [
    'attribute names',
    [
      '{ span."a b" = 1 }',
      '{ span."a}b" = 1 } && { span."{" }',
      '{ span."a\\"}" = 1 }',
      '{ span."a\\\\" = 1 }',
      '{ span."a\\n" = 1 }',
      '{ span."a\nb" = 1 }',
      '{ span."unterminated = 1 }',
      '{ .a"}"b = 1 }',
      '{ ."{" = 1 }',
      '{ ."" = 1 }',
      '{ span."" = 1 }',
      '{ .a`b = 1 }',
      "{ .a'b = 1 }",
      '{ .a#b = 1 }',
      '{ .a[b]:c;d\\e = 1 }',
      '{ .a.b/c*d%e+f-g?h = 1 }',
      '{ ..a = 1 }',
      '{ resource..a = 1 }',
      '{ .resource.ns = "a" }',
      '{ .5 = 1 }',
      '{ .a5 = 1 }',
      '{ .é = 1 }',
      '{ span.a}',
      '{ span. = 1 }',
      '{ resource.ns = "a" }',
      '{ resource."ns" = "a" }',
      '{ resource.n"s" = "a" }',
      '{ (.x) && resource."n""s" = "a" }',
      '{ (.x) && resource.ns = `a` }',
      '{ (.x) && resource.ns = "\\x61" }',
      '{ parent.resource.ns = "a" }',
      '{ parent/**/.resource.ns = "a" }',
      '{ trace.a = 1 }',
    ],
  ],
  [
    'scoped intrinsics and keywords',
    [
      '{ span:status = error }',
      '{ span: status = error }',
      '{ span :status = error }',
      '{ span:"status" = error }',
      '{ trace:rootService = "x" }',
      '{ trace:rootservice = "x" }',
      '{ Span:name = "x" }',
      '{ span:name.x = "x" }',
      '{ name.x = "x" }',
      '{ .a = nil }',
      '{ .a = Nil }',
      '{ nil }',
      '{ .a = true && .b = false }',
      '{ .a = True }',
      '{ .a = TRUE }',
      '{ status = ERROR }',
      '{ Status = error }',
      '{ kind = server }',
      '{ kind = Server }',
      '{ .a } with(a=1)',
      "{ .a } with('x'=1)",
      "{ .a } with('}'=1) && { .b }",
      "{ .a } with('\\''=1)",
      "{ .a } with('ab'=1)",
      "{ .a } with(''=1)",
      "{ .a } with('\\\"'=1)",
      "{ .a } with('x'=1, 'y'=\"z\")",
      '{ .a } with(\u2028=1)',
    ],
  ],
  [
    'numbers and durations',
    [
      '{ .a = 1e3 }',
      '{ .a = 1E3 }',
      '{ .a = 1e }',
      '{ .a = 0x1f }',
      '{ .a = 0x1p4 }',
      '{ .a = 1_000 }',
      '{ .a = 08 }',
      '{ .a = 9223372036854775808 }',
      '{ .a = -1 }',
      '{ .a = .5 }',
      '{ .a = 1. }',
      '{ .a = 1.5.5 }',
      '{ .a = 1KB }',
      '{ duration > 1h30m }',
      '{ duration > 1h.5m }',
      '{ duration > 1.5d }',
      '{ duration > 1µs }',
      '{ duration > 1μs }',
      '{ duration > 1s.a }',
      '{ duration > 1m5 }',
      '{ duration > 1sresource.ns = "a" }',
    ],
  ],
  [
    'operators and adjacency',
    [
      '{ .a } >> { .b }',
      '{ .a } > > { .b }',
      '{ .a } >/**/> { .b }',
      '{ .a } !~ { .b }',
      '{ .a } ! ~ { .b }',
      '{ .a } &>> { .b } &<< { .c } &~ { .d } !>> { .e } !<< { .f }',
      '{ .a } & & { .b }',
      '{ .a } | | { .b }',
      '{ .a }&&{ .b }||{ .c }',
      '{ .a }~{ .b }',
      '{ .a =~ "x" }',
      '{ .a = ~"x" }',
      '{ .a != 1 }',
      '{ .a ! = 1 }',
      '{ .a >>= 1 }',
      '{ .a <<= 1 }',
      '{ .a <- 1 }',
      '{ .a == 1 }',
      '{ !.a }',
      '{ .a = --1 }',
      '{ .a } |{ .b }',
      '({ .a }|count())>1',
    ],
  ],
  [
    'braces in pipelines, by(), select(), compare()',
    [
      '{ .a } | select(span."}", .b)',
      '{ .a } | by(span."{") | { .b }',
      '{} | rate() by (span."}")',
      '{} | compare({ .a = "}" })',
      '{} | compare({ span."}" = 1 }, 10)',
      '{ .a } | count() > 1 | { .b = "{" }',
      'count() > 1',
      'select(span."}")',
      'by(.a) | { .b }',
    ],
  ],
];

describeClasses('TraceQL parser differentials, by token class: refused, or every filter Tempo reads is enforced', CLASSES, (q) => expectSafe(q));

describe('TraceQL token classes: exact outcomes', () => {
  const { out, refused } = exactOutcomes((q) => run(q));

  it('the closing parenthesis and the policy go before a comment that would hide the closing brace', () => {
    expect(out('{ .a = "x" // }\n }')).toBe(`{ (.a = "x") && ${C} // }\n }`);
    expect(out('{ .a = "x" /* } */ }')).toBe(`{ (.a = "x") && ${C} /* } */ }`);
  });

  it('comment markers inside an attribute name are part of the name, as for Tempo', () => {
    expect(out('{ .a//x = 1 }')).toBe(`{ (.a//x = 1) && ${C} }`);
    // `.a/*` is the attribute, so the brace closes the filter and the rest is a syntax error
    expect(refused('{ .a/* } */ = "x" }')).toBe(true);
  });

  it('line comments end at LF only: CR, NEL and U+2028 leave the rest of the line in the comment, as for Tempo', () => {
    for (const eol of ['\r', '\u0085', '\u2028', '\u2029']) {
      const q = `{ .a } // c${eol} && { .b }`;
      expect(out(q), JSON.stringify(q)).toBe(`{ (.a) && ${C} } // c${eol} && { .b }`);
    }
    expect(out('{ .a } // c\r\n && { .b }')).toBe(`{ (.a) && ${C} } // c\r\n && { (.b) && ${C} }`);
  });

  it('TraceQL has no # comments', () => {
    expect(refused('{ .a = "x" } # { .b }')).toBe(true);
  });

  it('Unicode space characters end an attribute name (unicode.IsSpace) but are no blanks: refused', () => {
    for (const ws of ['\v', '\f', '\u0085', '\u00a0', '\u1680', '\u2000', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000']) {
      expect(refused(`{ .a${ws}= 1 }`), JSON.stringify(ws)).toBe(true);
      expect(refused(`{ .a = 1 }${ws}&& { .b }`), JSON.stringify(ws)).toBe(true);
    }
    // U+200B is no space for Go: part of the name
    expect(out('{ .a\u200b= 1 }')).toBe(`{ (.a\u200b= 1) && ${C} }`);
  });

  it('quoted attribute parts: only \\" and \\\\ escapes, raw newlines allowed, unterminated refused', () => {
    expect(out('{ span."a\\"}" = 1 }')).toBe(`{ (span."a\\"}" = 1) && ${C} }`);
    expect(out('{ span."a\nb" = 1 }')).toBe(`{ (span."a\nb" = 1) && ${C} }`);
    expect(refused('{ span."a\\n" = 1 }')).toBe(true);
    expect(refused('{ span."unterminated = 1 }')).toBe(true);
  });

  it('the policy written in another spelling counts as enforced only when Tempo reads the same field and value', () => {
    expect(out('{ (.x) && resource."n""s" = "a" }')).toBe('{ (.x) && resource."n""s" = "a" }');
    expect(out('{ (.x) && resource.ns = "\\x61" }')).toBe('{ (.x) && resource.ns = "\\x61" }');
    // an unscoped `.resource.ns` is another attribute
    expect(out('{ .resource.ns = "a" }')).toBe(`{ (.resource.ns = "a") && ${C} }`);
  });

  it("a hint name may be a Go character literal, as for Tempo (its lexer hands 'x' on as an identifier); other quotes are refused", () => {
    expect(out("{ .a } with('x'=1)")).toBe(`{ (.a) && ${C} } with('x'=1)`);
    expect(out("{ .a } with('}'=1, '\\''=true)")).toBe(`{ (.a) && ${C} } with('}'=1, '\\''=true)`);
    for (const q of ["{ .a } with('ab'=1)", "{ .a } with(''=1)", "{ .a } with('\\\"'=1)", "{ .a } with('\n'=1)", '{ .a } with("x"=1)', "{ .a = 'x' }"]) {
      expect(refused(q), q).toBe(true);
    }
  });

  it('keywords are case-sensitive: other cases are refused', () => {
    for (const q of ['{ .a = True }', '{ .a = Nil }', '{ status = ERROR }', '{ Status = error }', '{ kind = Server }', '{ trace:rootservice = "x" }', '{ Span:name = "x" }']) {
      expect(refused(q), q).toBe(true);
    }
  });

  it('operators are joined only when adjacent', () => {
    for (const q of ['{ .a } > > { .b }', '{ .a } >/**/> { .b }', '{ .a } ! ~ { .b }', '{ .a } & & { .b }', '{ .a } | | { .b }', '{ .a = ~"x" }', '{ .a ! = 1 }', '{ .a == 1 }']) {
      expect(refused(q), q).toBe(true);
    }
    expect(out('{ .a }~{ .b }')).toBe(`{ (.a) && ${C} }~{ (.b) && ${C} }`);
  });

  it('numbers Tempo rejects or reads otherwise are refused', () => {
    for (const q of ['{ .a = 0x1f }', '{ .a = 0x1p4 }', '{ .a = 1_000 }', '{ .a = 08 }', '{ .a = 9223372036854775808 }', '{ .a = 1KB }', '{ duration > 1m5 }', '{ .a = 1e }']) {
      expect(refused(q), q).toBe(true);
    }
    expect(out('{ duration > 1h.5m }')).toBe(`{ (duration > 1h.5m) && ${C} }`);
  });
});

// ---------------------------------------------------------------------------
// Fuzz: valid seeds with adversarial characters inserted
// ---------------------------------------------------------------------------

const SEEDS = [
  '{ .a = "x" }',
  '{ resource.service.name = "api" && span."http.route" =~ "/v1/.*" } >> { status = error }',
  '{ .a } | by(span."k") | count() > 2 | { duration > 1h30m }',
  '{} | rate() by (resource.service.name) with(sample=true)',
  '({ .a } | count()) > 2',
  '{ span:status = error /* c */ } && { trace:rootService = `x` } // end',
  '{ .a = 1.5e3 || !.b } | select(.c, span:name)',
  "{ .a } with('x'=1)",
  "{ .a } >> { .b } with('}'=true, '\\''=1, 'é'=\"v\")",
  "{} | rate() with('{'=1, '\\x7b'=2, '\\u007d'=3)",
];
const FRAGMENTS = [
  '{', '}', '"', "'", '`', '#', '//', '/*', '*/', '\n', '\r', '\t', '\v', '\f', '\u0085', '\u00a0', '\u2028', '\u200b', '\ufeff', '\u0000',
  '\\', '\\"', '\\x7d', '\\q', '.', 'span.', 'span:', 'parent.', ':', '|', '||', '&&', '&', '!', '~', '>', '=', ',', ' ', '(', ')',
  'a', 'é', '1', 's', '.5', '0x', '_', 'nil', 'True', '"}"', '"{', '}"', '."}"', C,
  // around character literals (hint names)
  "'", "''", "'{'", "'}'", "'\\''", "'\\'", "'\\x7b'", "'\\u007d'", "'\\175'", "'\\U0001F600'", "'\u{1F600}'", "'ab'", "'\"'", "'`'",
  " with('x'=1)", " with('}'=1, '{'=2)", "with(", "'=1", "=1)", ", '}'=1",
];

describe('TraceQL lexical fuzz against the Tempo lexer oracle', () => {
  it('inserted adversarial fragments: refused, or every filter Tempo reads is enforced', () => {
    expect(spliceFuzz(SEEDS, FRAGMENTS, (q) => expectSafe(q))).toBeGreaterThan(50);
  });
});

// ---------------------------------------------------------------------------
// Structured fuzz: queries built from tricky but valid tokens
// ---------------------------------------------------------------------------

const gap = fc.constantFrom('', ' ', '\n', '\t', '\r\n', ' // } { " `\n', ' /* } { " ` */ ', '/**/', ' /*/ { */ ');
const sp = fc.constantFrom(' ', '\n', ' // }\n', ' /* { */ ');
const attrPart = fc.constantFrom('a', 'b.c', '"x y"', '"}"', '"{"', '"\\""', '"\\\\"', '"a\nb"', '//', '/*', '*/', '#', '`', "'", '[', ':', '-', '0', 'é', '\u200b', '"', '.');
const attr = fc
  .tuple(fc.constantFrom('.', 'span.', 'resource.', 'event.', 'link.', 'instrumentation.'), fc.array(attrPart, { minLength: 1, maxLength: 3 }))
  .map(([s, ps]) => s + ps.join(''));
const intrinsic = fc.constantFrom('name', 'status', 'duration', 'span:name', 'span: status', 'trace:rootService', 'span:/**/id', 'kind');
const str = fc.oneof(
  fc.array(fc.constantFrom('{', '}', 'a', ' ', '\\"', '\\\\', '\\x7b', '\\u007d', '\\175', '#', '//', '/*', '`', "'", ')', '('), { maxLength: 5 }).map((cs) => `"${cs.join('')}"`),
  fc.array(fc.constantFrom('{', '}', '"', '\\', '\n', '\r', 'a', ')'), { maxLength: 5 }).map((cs) => `\`${cs.join('')}\``),
);
const value = fc.oneof(str, fc.constantFrom('1', '-1', '1.5', '.5', '1e3', '1h30m', '10ms', 'nil', 'true', 'error', 'server'));
const cmp = fc.tuple(fc.oneof(attr, intrinsic), gap, fc.constantFrom('=', '!=', '=~', '!~', '>', '<=', '>='), gap, value).map(([a, g, o, h, v]) => `${a}${g === '' ? ' ' : g}${o}${h}${v}`);
const fieldExpr = fc
  .tuple(cmp, fc.array(fc.tuple(gap, fc.constantFrom('&&', '||'), gap, fc.boolean(), cmp), { maxLength: 2 }))
  .map(([c0, rest]) => c0 + rest.map(([g, o, h, paren, c]) => `${g === '' ? ' ' : g}${o}${h}${paren ? `(${c})` : c}`).join(''));
const filter = fc.tuple(gap, fc.option(fieldExpr, { freq: 4 }), gap).map(([a, e, b]) => `{${a}${e ?? ''}${b}}`);
const tqStage = fc.oneof(
  filter,
  fc.constantFrom('count() > 1', 'avg(duration) > 1s'),
  attr.map((a) => `by(${a})`),
  fc.tuple(attr, attr).map(([a, b]) => `select(${a}, ${b})`),
);
const tqQuery = fc.oneof(
  fc.tuple(filter, fc.array(fc.tuple(gap, fc.constantFrom('&&', '||', '>>', '>', '<', '~', '!~', '&>>', '!<<'), gap, filter), { maxLength: 2 }), fc.array(fc.tuple(gap, gap, tqStage), { maxLength: 2 })).map(
    ([f0, ops, stages]) => f0 + ops.map(([g, o, h, f]) => `${g === '' ? ' ' : g}${o}${h === '' ? ' ' : h}${f}`).join('') + stages.map(([g, h, s]) => `${g}|${h}${s}`).join(''),
  ),
  fc.tuple(filter, gap, attr).map(([f, g, a]) => `${f}${g}|${g}rate()${g}by${g}(${a})`),
  fc.tuple(filter, sp).map(([f, s]) => `({ .x } |${s}count())${s}>${s}1 && ${f}`),
);

// Hints whose names are Go character literals (Tempo's lexer hands `'x'` on as an identifier).
const charLit = fc.constantFrom("'x'", "'{'", "'}'", "'\\''", "'\\\\'", "'\\x7b'", "'\\u007d'", "'\\175'", "'\\U0000007b'", "'\"'", "'`'", "'/'", "'*'", "'#'", "'é'", "'\u{1F600}'", "' '");
const hintName = fc.oneof(charLit, fc.constantFrom('sample', 'most_recent', 'x'));
const hints = fc
  .array(fc.tuple(gap, hintName, gap, gap, fc.constantFrom('1', 'true', '"}"', '`{`', '1.5', '10ms')), { minLength: 1, maxLength: 3 })
  .map((hs) => ` with(${hs.map(([g, n, h, k, v]) => `${g}${n}${h}=${k}${v}`).join(',')})`);
const tqHinted = fc.tuple(tqQuery, fc.option(hints, { freq: 2 }), gap).map(([q, h, g]) => `${q}${h ?? ''}${h === null ? '' : g}`);

describe('TraceQL structured lexical fuzz against the Tempo lexer oracle', () => {
  it('tricky attribute names, strings, comments and blanks around every token: refused, or every filter Tempo reads is enforced', () => {
    expect(structuredFuzz(tqQuery, FRAGMENTS, (q) => expectSafe(q))).toBeGreaterThan(300);
  });

  it('hints named by character literals, with quotes, braces and comment markers inserted: refused, or every filter Tempo reads is enforced', () => {
    expect(structuredFuzz(tqHinted, FRAGMENTS, (q) => expectSafe(q))).toBeGreaterThan(300);
  });
});
