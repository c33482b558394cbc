import { describe, expect, it } from 'vitest';
import { codeOf, errorOf } from './query-errors.ts';
import { QueryError } from '../../src/errors.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { DEFAULT_LIMITS } from '../../src/rewrite/rewriter.ts';
import {
  clearTraceQLCache,
  formatTraceQLMatcher,
  parseTraceQLMatchers,
  rewriteTraceQL,
  TEMPO_MAX_QUERY_BYTES,
  traceqlRewriter,
  verifyTraceQL,
} from '../../src/rewrite/traceql.ts';
import { isGoDuration, isPromDuration, traceLevelReads } from '../../src/rewrite/traceql-syntax.ts';
import { cpuMs } from '../cpu-time.ts';

// The two halves of traceLevelReads, as the refusal reads them.
const traceLevelIntrinsics = (q: string): string[] => traceLevelReads(q).intrinsics;
const callsCompare = (q: string): boolean => traceLevelReads(q).compare;

const NS: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=', value: 'a' }]];
const M = 'resource.k8s.namespace.name = "a"';

const STRUCTURAL = ['&&', '||', '>', '<', '>>', '<<', '~', '!>', '!<', '!>>', '!<<', '!~', '&>', '&<', '&>>', '&<<', '&~'];

/** [query, expected] with policy resource.k8s.namespace.name="a". */
const TABLE: [string, string][] = [
  // the canonical example
  ['{ resource.service.name = "api" && duration > 1s } | count() > 2', `{ (resource.service.name = "api" && duration > 1s) && ${M} } | count() > 2`],
  // empty filters: ` C` after `{`, plus a space when nothing was between the braces
  ['{}', `{ ${M} }`],
  ['{ }', `{ ${M} }`],
  ['{  }', `{ ${M}  }`],
  ['{ /* note */ }', `{ ${M} /* note */ }`],
  ['{\n}', `{ ${M}\n}`],
  // one filter
  ['{ .a }', `{ (.a) && ${M} }`],
  ['{.a=1}', `{(.a=1) && ${M}}`],
  ['{ true }', `{ (true) && ${M} }`],
  ['{ !(.a = 1) }', `{ (!(.a = 1)) && ${M} }`],
  ['{ .a = 1 || .b = 2 }', `{ (.a = 1 || .b = 2) && ${M} }`],
  ['{ span.http.method = "GET" && status = error }', `{ (span.http.method = "GET" && status = error) && ${M} }`],
  ['{ span."name with space" = "x" }', `{ (span."name with space" = "x") && ${M} }`],
  ['{ span."a}b" = "}" }', `{ (span."a}b" = "}") && ${M} }`],
  ['{ .a = `raw } string` }', `{ (.a = \`raw } string\`) && ${M} }`],
  ['{ trace:rootService = "x" && span:kind = server }', `{ (trace:rootService = "x" && span:kind = server) && ${M} }`],
  ['{ .a != nil }', `{ (.a != nil) && ${M} }`],
  ['{ duration > 1h30m && .x = 1e3 }', `{ (duration > 1h30m && .x = 1e3) && ${M} }`],
  ['{\n  resource.service.name = "x" &&\n  status = error\n}', `{\n  (resource.service.name = "x" &&\n  status = error) && ${M}\n}`],
  // comments survive, braces in comments are not filters
  ['{ .a /* } */ } // { .b }', `{ (.a) && ${M} /* } */ } // { .b }`],
  ['{ .a // }\n}', `{ (.a) && ${M} // }\n}`],
  ['{ .a//x = 1 }', `{ (.a//x = 1) && ${M} }`],
  // spanset operations
  ['{ .a } && { .b }', `{ (.a) && ${M} } && { (.b) && ${M} }`],
  ['({ .a } >> { .b }) && { .c }', `({ (.a) && ${M} } >> { (.b) && ${M} }) && { (.c) && ${M} }`],
  ['{ .a } >> { .b } ~ {}', `{ (.a) && ${M} } >> { (.b) && ${M} } ~ { ${M} }`],
  // pipelines
  ['{ .a } | { .b }', `{ (.a) && ${M} } | { (.b) && ${M} }`],
  ['{ .a } | avg(duration) > 1s', `{ (.a) && ${M} } | avg(duration) > 1s`],
  ['{ .a } | by(resource.service.name) | count() > 1', `{ (.a) && ${M} } | by(resource.service.name) | count() > 1`],
  ['{ .a } | select(span.http.url, duration)', `{ (.a) && ${M} } | select(span.http.url, duration)`],
  ['{ .a } | by(.ns) | coalesce() | avg(duration) = 1s', `{ (.a) && ${M} } | by(.ns) | coalesce() | avg(duration) = 1s`],
  ['({ .a } | count() > 1 | { .b }) >> ({ .c } | { .d })', `({ (.a) && ${M} } | count() > 1 | { (.b) && ${M} }) >> ({ (.c) && ${M} } | { (.d) && ${M} })`],
  // pipelines that do not start with a filter read every span: a filter goes in front
  ['count() > 10', `{ ${M} } | count() > 10`],
  ['by(.a) | { true }', `{ ${M} } | by(.a) | { (true) && ${M} }`],
  ['select(.a)', `{ ${M} } | select(.a)`],
  ['max(duration) > 3s | { status = error }', `{ ${M} } | max(duration) > 3s | { (status = error) && ${M} }`],
  ['(count() > 1 | { .a }) && ({ .b } | { .c })', `({ ${M} } | count() > 1 | { (.a) && ${M} }) && ({ (.b) && ${M} } | { (.c) && ${M} })`],
  // scalar pipeline filters
  ['({ .a } | count()) > ({ .b } | count())', `({ (.a) && ${M} } | count()) > ({ (.b) && ${M} } | count())`],
  ['(by(.a) | count()) > 2', `({ ${M} } | by(.a) | count()) > 2`],
  // metrics
  ['{} | rate()', `{ ${M} } | rate()`],
  ['{ status = error } | rate() by (resource.service.name)', `{ (status = error) && ${M} } | rate() by (resource.service.name)`],
  ['{} | quantile_over_time(duration, .9) by (span.http.route)', `{ ${M} } | quantile_over_time(duration, .9) by (span.http.route)`],
  ['{} | histogram_over_time(duration)', `{ ${M} } | histogram_over_time(duration)`],
  ['{ .a } | compare({ status = error }, 10)', `{ (.a) && ${M} } | compare({ (status = error) && ${M} }, 10)`],
  ['{} | compare({})', `{ ${M} } | compare({ ${M} })`],
  ['{} | rate() by (name) > 10 | topk(5)', `{ ${M} } | rate() by (name) > 10 | topk(5)`],
  ['({ status = error } | rate()) / ({} | rate())', `({ (status = error) && ${M} } | rate()) / ({ ${M} } | rate())`],
  ['({ .a } | count_over_time() | topk(3)) - ({ .b } | count_over_time())', `({ (.a) && ${M} } | count_over_time() | topk(3)) - ({ (.b) && ${M} } | count_over_time())`],
  // hints
  ['{} | count_over_time() with(sample=0.1)', `{ ${M} } | count_over_time() with(sample=0.1)`],
  ['{ .a } with(most_recent=true)', `{ (.a) && ${M} } with(most_recent=true)`],
  // already enforced: left as is (idempotence), in any spacing
  [`{ ${M} }`, `{ ${M} }`],
  ['{ resource.k8s.namespace.name="a" }', '{ resource.k8s.namespace.name="a" }'],
  [`{ (.a) && ${M} }`, `{ (.a) && ${M} }`],
  ['{ (.a)&&resource.k8s.namespace.name =  "\\x61" }', '{ (.a)&&resource.k8s.namespace.name =  "\\x61" }'],
  // not exactly enforced: wrapped again (never weakened)
  ['{ resource.k8s.namespace.name = "b" }', `{ (resource.k8s.namespace.name = "b") && ${M} }`],
  [`{ ${M} && .x = 1 }`, `{ (${M} && .x = 1) && ${M} }`],
  [`{ .x = 1 && ${M} }`, `{ (.x = 1 && ${M}) && ${M} }`],
  [`{ (.a) || ${M} }`, `{ ((.a) || ${M}) && ${M} }`],
  [`{ (.a) && (.b) && ${M} }`, `{ ((.a) && (.b) && ${M}) && ${M} }`],
  [`{ ${M} } | count() > 1`, `{ ${M} } | count() > 1`],
];

for (const op of STRUCTURAL) TABLE.push([`{ .a } ${op} { .b }`, `{ (.a) && ${M} } ${op} { (.b) && ${M} }`]);

describe('rewriteTraceQL: exact output, policy resource.k8s.namespace.name="a"', () => {
  it('has at least 50 cases', () => {
    expect(TABLE.length).toBeGreaterThanOrEqual(50);
  });
  for (const [q, want] of TABLE) {
    it(JSON.stringify(q), () => {
      expect(rewriteTraceQL(q, NS)).toBe(want);
      // idempotent
      expect(rewriteTraceQL(want, NS)).toBe(want);
      verifyTraceQL(want, NS);
    });
  }
});

describe('rewriteTraceQL: DNF policies', () => {
  const D: SelectorPolicy = [
    [
      { name: 'resource.k8s.namespace.name', op: '=', value: 'a' },
      { name: 'span.x', op: '!=', value: 'y' },
    ],
    [{ name: 'resource.team', op: '=~', value: 'b|c' }],
  ];
  const ALONE = '(resource.k8s.namespace.name = "a" && span.x != "y") || (resource.team =~ "^(?s:b|c)$")';

  it('empty filter: the disjunction alone', () => {
    expect(rewriteTraceQL('{}', D)).toBe(`{ ${ALONE} }`);
  });
  it('non-empty filter: parenthesised, because && and || share one precedence level in TraceQL', () => {
    expect(rewriteTraceQL('{ .a = 1 || .b = 2 }', D)).toBe(`{ (.a = 1 || .b = 2) && (${ALONE}) }`);
  });
  it('pipelines, metrics and compare()', () => {
    expect(rewriteTraceQL('count() > 1', D)).toBe(`{ ${ALONE} } | count() > 1`);
    expect(rewriteTraceQL('{ .a } | compare({ status = error })', D)).toBe(`{ (.a) && (${ALONE}) } | compare({ (status = error) && (${ALONE}) })`);
  });
  it('idempotent', () => {
    for (const q of ['{}', '{ .a }', '{ .a } >> { .b } | rate()', 'select(.a)']) {
      const once = rewriteTraceQL(q, D);
      expect(rewriteTraceQL(once, D)).toBe(once);
      verifyTraceQL(once, D);
    }
  });
  it('a group containing another group is dropped (the OR is unchanged), duplicate matchers are merged', () => {
    const p: SelectorPolicy = [
      [
        { name: 'resource.a', op: '=', value: '1' },
        { name: 'resource.a', op: '=', value: '1' },
      ],
      [
        { name: 'resource.a', op: '=', value: '1' },
        { name: 'resource.b', op: '=', value: '2' },
      ],
    ];
    expect(rewriteTraceQL('{ .x }', p)).toBe('{ (.x) && resource.a = "1" }');
  });
  it('the single-group form does not satisfy a DNF policy and vice versa', () => {
    expect(rewriteTraceQL(`{ ${M} }`, D)).toBe(`{ (${M}) && (${ALONE}) }`);
    expect(rewriteTraceQL(`{ ${ALONE} }`, NS)).toBe(`{ (${ALONE}) && ${M} }`);
  });
});

describe('policy names and values are escaped for TraceQL', () => {
  const one = (name: string, op: '=' | '!=' | '=~' | '!~', value: string): string => rewriteTraceQL('{}', [[{ name, op, value }]]);

  it('values: quotes, backslashes, newlines, controls, unicode cannot break out', () => {
    expect(one('resource.ns', '=', 'a" } || { true')).toBe('{ resource.ns = "a\\" } || { true" }');
    expect(one('resource.ns', '=', 'x\\')).toBe('{ resource.ns = "x\\\\" }');
    expect(one('resource.ns', '=', 'a\nb\r\t')).toBe('{ resource.ns = "a\\nb\\r\\t" }');
    expect(one('resource.ns', '=', 'nul\u0000 del\u007f')).toBe('{ resource.ns = "nul\\x00 del\\x7f" }');
    expect(one('resource.ns', '=', 'é🚀\u2028')).toBe('{ resource.ns = "é🚀\\u2028" }');
    expect(one('resource.ns', '=', '*/ // `')).toBe('{ resource.ns = "*/ // `" }');
  });
  it('names: quoted attribute syntax when needed', () => {
    expect(one('resource.my key', '=', 'a')).toBe('{ resource."my key" = "a" }');
    expect(one('span.a"b\\c', '=', 'a')).toBe('{ span."a\\"b\\\\c" = "a" }');
    expect(one('span.a}{', '=', 'a')).toBe('{ span."a}{" = "a" }');
    expect(one('.team', '=', 'a')).toBe('{ .team = "a" }');
    expect(one('.5xx', '=', 'a')).toBe('{ ."5xx" = "a" }');
    expect(one('resource.5xx', '=', 'a')).toBe('{ resource.5xx = "a" }');
    expect(one('event.exception.type', '!=', 'a')).toBe('{ event.exception.type != "a" }');
    expect(one('span:name', '=~', 'GET .*')).toBe('{ span:name =~ "^(?s:GET .*)$" }');
    expect(one('trace:rootService', '!~', 'x')).toBe('{ trace:rootService !~ "^(?s:x)$" }');
  });
  it('escaped names and values are recognised as enforced (idempotence)', () => {
    const p: SelectorPolicy = [[{ name: 'span.a"b c', op: '=', value: 'x"\n' }]];
    const out = rewriteTraceQL('{ .q }', p);
    expect(out).toBe('{ (.q) && span."a\\"b c" = "x\\"\\n" }');
    expect(rewriteTraceQL(out, p)).toBe(out);
  });
  it('invalid policies are policy errors', () => {
    expect(codeOf(() => rewriteTraceQL('{}', []))).toBe('policy_error');
    expect(codeOf(() => rewriteTraceQL('{}', [[]]))).toBe('policy_error');
    expect(codeOf(() => one('namespace', '=', 'a'))).toBe('policy_error');
    expect(codeOf(() => one('parent.resource.x', '=', 'a'))).toBe('policy_error');
    expect(codeOf(() => one('status', '=', 'error'))).toBe('policy_error');
    expect(codeOf(() => one('resource.', '=', 'a'))).toBe('policy_error');
    expect(codeOf(() => one('resource.ns', '=~', '('))).toBe('policy_error');
    expect(codeOf(() => one('resource.ns', '=', '\ud800'))).toBe('policy_error');
    expect(codeOf(() => rewriteTraceQL('{}', [[{ name: 'resource.ns', op: '==' as '=', value: 'a' }]]))).toBe('policy_error');
  });
});

describe('errors and limits', () => {
  it('empty query', () => {
    expect(codeOf(() => rewriteTraceQL('', NS))).toBe('bad_query');
    expect(codeOf(() => rewriteTraceQL(' \n ', NS))).toBe('bad_query');
  });
  it('parse errors carry a position', () => {
    const e = errorOf(() => rewriteTraceQL('{ .a = 1 } |\n { .b = }', NS));
    expect(e.code).toBe('bad_query');
    expect(e.message).toMatch(/^parse error at line 2, col 9: /);
    expect(errorOf(() => rewriteTraceQL('{ .a = "\\q" }', NS)).message).toMatch(/line 1, col 9: unknown escape sequence/);
  });
  it('what Tempo rejects is rejected', () => {
    for (const q of [
      '{ .a < 3',
      '{ . foo }',
      '{ .a == 1 }',
      '{ true } + { true }',
      'coalesce() | { true }',
      '{} | topk(10)',
      '{ .a = 1_000 }',
      '{ .a = 08 }',
      '{ .a = 99999999999999999999 }',
      '{ duration > 1.5d }',
      '{ duration > 1sm }',
      '{ .a = \'x\' }',
      '{ .a = 1 } /* open',
      '{ .a = 1 }\u00a0',
      '{ .a = 1 }\u0000',
      '{ .a + nil = 1 }',
      '{} | rate() with(name=1)',
      '{ span."a\\n" = 1 }',
      '({} | rate()) * 1s',
    ]) {
      expect(codeOf(() => rewriteTraceQL(q, NS)), q).toBe('bad_query');
    }
  });
  it('parent attributes are refused (they read another span than the one filtered)', () => {
    expect(codeOf(() => rewriteTraceQL('{ parent.resource.k8s.namespace.name = "b" }', NS))).toBe('rewrite_unsupported');
    expect(codeOf(() => rewriteTraceQL('{ .a } | select(parent.span.x)', NS))).toBe('rewrite_unsupported');
  });
  it('length limit', () => {
    const q = `{ .a = "${'x'.repeat(100)}" }`;
    expect(codeOf(() => rewriteTraceQL(q, NS, { maxQueryLength: 50, maxDepth: 128 }))).toBe('query_too_large');
    expect(codeOf(() => rewriteTraceQL(`{ .a = "${'é'.repeat(40)}" }`, NS, { maxQueryLength: 60, maxDepth: 128 }))).toBe('query_too_large');
  });
  it('nesting limit', () => {
    const deep = `${'('.repeat(20)}{ .a }${')'.repeat(20)}`;
    expect(rewriteTraceQL(deep, NS)).toBe(`${'('.repeat(20)}{ (.a) && ${M} }${')'.repeat(20)}`);
    expect(codeOf(() => rewriteTraceQL(deep, NS, { maxQueryLength: 65536, maxDepth: 10 }))).toBe('query_too_large');
    expect(codeOf(() => rewriteTraceQL(`{ ${'('.repeat(500)}.a${')'.repeat(500)} }`, NS))).toBe('query_too_large');
  });
  it('very long operator chains are too large, not a confusing syntax error', () => {
    const q = `{ ${Array.from({ length: 400 }, (_, i) => `.a${i} = ${i}`).join(' && ')} }`;
    expect(codeOf(() => rewriteTraceQL(q, NS, { maxQueryLength: 65536, maxDepth: 10000 }))).toBe('query_too_large');
  });
  it('every chain that fits in Tempo\'s 1024 bytes parses: accepted, or refused as nested too deeply (never a parse error)', () => {
    // Lezer gives up only on a node growing from one start over 2000+ characters
    // (or thousands of tokens deep); the 1024-byte cap is checked before parsing,
    // so the parser's own limits are out of reach and the depth limit decides.
    const forms: [string, (k: number) => string][] = [
      ['&&', (k) => `{${Array.from({ length: k }, () => '.a').join('&&')}}`],
      ['||', (k) => `{${Array.from({ length: k }, () => '.a').join('||')}}`],
      ['&& of comparisons', (k) => `{${Array.from({ length: k }, () => '.a=1').join('&&')}}`],
      ['spanset &&', (k) => Array.from({ length: k }, () => '{.a}').join('&&')],
      ['structural', (k) => Array.from({ length: k }, () => '{.a}').join('>>')],
      ['pipeline', (k) => `{.a}${'|{.a}'.repeat(k)}`],
      ['arithmetic', (k) => `{.a${'+1'.repeat(k)}>1}`],
    ];
    for (const [what, q] of forms) {
      let refusedFrom: number | null = null;
      for (let k = 1; Buffer.byteLength(q(k)) <= TEMPO_MAX_QUERY_BYTES; k++) {
        let code = 'ok';
        try {
          rewriteTraceQL(q(k), NS);
        } catch (e) {
          code = e instanceof QueryError ? `${e.code}: ${e.message}` : String(e);
        }
        if (code === 'ok') continue;
        expect(code, `${what} × ${k}`).toMatch(/^query_too_large: (?:query is nested too deeply|the query with the policy's matchers is \d+ bytes)/);
        refusedFrom ??= k;
      }
      if (what === '&&') expect(refusedFrom).toBeLessThanOrEqual(130);
    }
  });
  it("the rewritten query of every query that fits in 1024 bytes parses, under any maxDepth and policies of several groups: accepted or a 4xx, never a failed verification", () => {
    // Nesting and right-recursion (brackets, `!`, `-`, `^`) stay far below Lezer's
    // stack limit (thousands of tokens deep) in 1024 bytes, and the rewritten
    // query is measured against the same 1024 bytes before it is parsed.
    const BIG = { maxQueryLength: 65536, maxDepth: 100_000 };
    const policies: SelectorPolicy[] = [
      NS,
      [
        [{ name: 'resource.k8s.namespace.name', op: '=', value: 'a' }, { name: 'resource.k8s.cluster.name', op: '=', value: 'x' }],
        [{ name: 'resource.k8s.namespace.name', op: '=', value: 'b' }, { name: 'span.team', op: '=', value: 'y' }],
      ],
    ];
    const forms: [string, (k: number) => string][] = [
      ['&&', (k) => `{${Array.from({ length: k }, () => '.a').join('&&')}}`],
      ['spanset ||', (k) => Array.from({ length: k }, () => '{.a}').join('||')],
      ['empty spansets', (k) => Array.from({ length: k }, () => '{}').join('&&')],
      ['pipeline', (k) => `{.a}${'|{.a}'.repeat(k)}`],
      ['power', (k) => `{.a${'^1'.repeat(k)}>1}`],
      ['not', (k) => `{${'!'.repeat(k)}.a}`],
      ['minus', (k) => `{.a=${'-'.repeat(k)}1}`],
      ['parentheses in a filter', (k) => `{${'('.repeat(k)}.a${')'.repeat(k)}}`],
      ['parenthesised spansets', (k) => `${'('.repeat(k)}{.a}${')'.repeat(k)}`],
    ];
    for (const policy of policies) {
      for (const [what, q] of forms) {
        for (let k = 1; Buffer.byteLength(q(k)) <= TEMPO_MAX_QUERY_BYTES; k += 5) {
          expect(['ok', 'query_too_large'], `${what} × ${k}`).toContain(codeOf(() => rewriteTraceQL(q(k), policy, BIG)));
        }
      }
    }
  });
  it('hostile input is rejected quickly', () => {
    const t0 = cpuMs();
    expect(codeOf(() => rewriteTraceQL(')'.repeat(60000), NS))).toBe('query_too_large');
    expect(codeOf(() => rewriteTraceQL('{'.repeat(60000), NS))).toBe('query_too_large');
    expect(codeOf(() => rewriteTraceQL(')'.repeat(1000), NS))).toBe('bad_query');
    expect(cpuMs() - t0).toBeLessThan(2000);
  });
  it(`refuses text longer than Tempo's lexer reads safely (${TEMPO_MAX_QUERY_BYTES} UTF-8 bytes, with the policy's matchers)`, () => {
    // Rewriting '{ .a = 1<spaces> }' inserts the same text whatever the padding.
    const added = Buffer.byteLength(rewriteTraceQL('{ .a = 1 }', NS)) - Buffer.byteLength('{ .a = 1 }');
    const sized = (outBytes: number) => `{ .a = 1${' '.repeat(outBytes - added - Buffer.byteLength('{ .a = 1 }'))} }`;
    const at = sized(TEMPO_MAX_QUERY_BYTES);
    const out = rewriteTraceQL(at, NS);
    expect(Buffer.byteLength(out)).toBe(TEMPO_MAX_QUERY_BYTES);
    expect(codeOf(() => rewriteTraceQL(sized(TEMPO_MAX_QUERY_BYTES + 1), NS))).toBe('query_too_large');
    // Bytes, not UTF-16 units: U+00E9 is two bytes in UTF-8.
    const wide = `{ .a = "${'\u00e9'.repeat(520)}" }`;
    expect(wide.length).toBeLessThan(TEMPO_MAX_QUERY_BYTES);
    expect(errorOf(() => rewriteTraceQL(wide, NS))).toMatchObject({ code: 'query_too_large', message: expect.stringMatching(/grafana\/tempo#3513/) });
    // Already too long before rewriting: refused without parsing.
    expect(codeOf(() => rewriteTraceQL(`{ .a = "${'x'.repeat(TEMPO_MAX_QUERY_BYTES)}" }`, NS))).toBe('query_too_large');
    // The shape of the lexer desync (a look-ahead straddling byte 1024, a comment hidden in a string) is refused.
    const desync = `{${' '.repeat(1009)}duration > 1ms && .q = "${' '.repeat(1014)}) } /*" } // */`;
    expect(codeOf(() => rewriteTraceQL(desync, NS))).toBe('query_too_large');
  });
  it('the integer bound constants minInt and maxInt are literals', () => {
    expect(rewriteTraceQL('{ span.value != minInt && span.value != maxInt }', NS)).toBe(`{ (span.value != minInt && span.value != maxInt) && ${M} }`);
    expect(rewriteTraceQL('{ span.minInt = maxInt }', NS)).toBe(`{ (span.minInt = maxInt) && ${M} }`);
    // Where an integer literal goes, so do they.
    expect(codeOf(() => rewriteTraceQL('{ minInt }', NS))).toBe(codeOf(() => rewriteTraceQL('{ 1 }', NS)));
  });
  it('policy regexes are written anchored, ^(?s:re)$, so they mean the same on every Tempo version', () => {
    const re: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=~', value: 'team-a-.*' }, { name: 'span.x', op: '!~', value: 'b|c' }]];
    const out = rewriteTraceQL('{ .a = 1 }', re);
    expect(out).toBe('{ (.a = 1) && resource.k8s.namespace.name =~ "^(?s:team-a-.*)$" && span.x !~ "^(?s:b|c)$" }');
    expect(rewriteTraceQL(out, re)).toBe(out);
    verifyTraceQL(out, re);
    // The unanchored spelling is not the enforced form.
    expect(codeOf(() => verifyTraceQL('{ (.a = 1) && resource.k8s.namespace.name =~ "team-a-.*" && span.x !~ "b|c" }', re))).toBe('rewrite_verification_failed');
  });
  it('non-string query', () => {
    expect(codeOf(() => rewriteTraceQL(42 as unknown as string, NS))).toBe('bad_query');
  });
});

describe('verifyTraceQL', () => {
  it('accepts enforced queries', () => {
    verifyTraceQL(`{ ${M} } | count() > 1`, NS);
    verifyTraceQL(`{ (.a) && ${M} } >> { ${M} }`, NS);
  });
  it('rejects any filter or pipeline without the exact enforcement', () => {
    for (const q of [
      '{ .a }',
      `{ ${M} } && { .b }`,
      `{ .a && ${M} }`,
      `{ (.a) || ${M} }`,
      `{ ${M} || .a }`,
      `{ (.a) && resource.k8s.namespace.name = "b" }`,
      `{ (.a) && resource.k8s.namespace.name =~ "a" }`,
      `{ (.a) && (.b) && ${M} }`,
      'count() > 1',
      `{ ${M} } | compare({ .x })`,
      `select(.a) | { ${M} }`,
      'not traceql',
    ]) {
      expect(codeOf(() => verifyTraceQL(q, NS)), q).toBe('rewrite_verification_failed');
    }
  });
});

describe('formatTraceQLMatcher / parseTraceQLMatchers', () => {
  it('formats', () => {
    expect(formatTraceQLMatcher({ name: 'resource.k8s.namespace.name', op: '=', value: 'a' })).toBe(M);
    expect(formatTraceQLMatcher({ name: 'span.http.method', op: '=~', value: 'GET|POST' })).toBe('span.http.method =~ "GET|POST"');
    expect(formatTraceQLMatcher({ name: 'resource.a b', op: '!~', value: '"' })).toBe('resource."a b" !~ "\\""');
    expect(codeOf(() => formatTraceQLMatcher({ name: 'duration', op: '=', value: '1s' }))).toBe('policy_error');
  });
  it('parses --matcher text: one or several, comma or && separated', () => {
    expect(parseTraceQLMatchers('resource.k8s.namespace.name="a"')).toEqual([{ name: 'resource.k8s.namespace.name', op: '=', value: 'a' }]);
    expect(parseTraceQLMatchers('resource.ns=~"a|b", span.x != "y,z" && .t = `q`')).toEqual([
      { name: 'resource.ns', op: '=~', value: 'a|b' },
      { name: 'span.x', op: '!=', value: 'y,z' },
      { name: '.t', op: '=', value: 'q' },
    ]);
    expect(parseTraceQLMatchers('span."my, key" = "v"')).toEqual([{ name: 'span.my, key', op: '=', value: 'v' }]);
    expect(parseTraceQLMatchers('span:name = "GET /"')).toEqual([{ name: 'span:name', op: '=', value: 'GET /' }]);
  });
  it('round-trips through formatTraceQLMatcher', () => {
    for (const m of [
      { name: 'resource.my "key"', op: '=' as const, value: 'v\n"' },
      { name: '.0', op: '!=' as const, value: '' },
      { name: 'instrumentation:version', op: '=~' as const, value: '1\\..*' },
    ]) {
      expect(parseTraceQLMatchers(formatTraceQLMatcher(m))).toEqual([m]);
    }
  });
  it('rejects what is not a list of string matchers', () => {
    for (const t of ['', 'resource.ns', 'resource.ns > "a"', 'resource.ns = 1', 'resource.ns = "a" || .b = "c"', 'namespace="a"', 'parent.x="a"', 'resource.ns="a",', '"a" = resource.ns', 'status = error']) {
      expect(['bad_query', 'rewrite_unsupported'], t).toContain(codeOf(() => parseTraceQLMatchers(t)));
    }
    expect(errorOf(() => parseTraceQLMatchers('resource.ns = "a" && x')).message).toMatch(/^invalid matcher expression: parse error at line 1, col 22/);
  });
});

describe('misc', () => {
  it('is registered as the traceql rewriter', () => {
    expect(traceqlRewriter.language).toBe('traceql');
    expect(traceqlRewriter.rewrite('{}', NS)).toBe(`{ ${M} }`);
  });
  it('caches results (same output, policy identity by content)', () => {
    clearTraceQLCache();
    const a = rewriteTraceQL('{ .a }', NS, DEFAULT_LIMITS);
    const b = rewriteTraceQL('{ .a }', [[{ name: 'resource.k8s.namespace.name', op: '=', value: 'a' }]]);
    expect(b).toBe(a);
    expect(rewriteTraceQL('{ .a }', [[{ name: 'resource.k8s.namespace.name', op: '=', value: 'b' }]])).toBe('{ (.a) && resource.k8s.namespace.name = "b" }');
  });
  it('durations: Prometheus or Go syntax, as Tempo accepts', () => {
    for (const d of ['1s', '100ms', '1h30m', '5d', '2w', '1y', '1y2w3d4h5m6s7ms']) expect(isPromDuration(d), d).toBe(true);
    for (const d of ['1.5s', '.5m', '1µs', '10us', '300ns', '1h1.5m', '1.s']) expect(isGoDuration(d), d).toBe(true);
    for (const d of ['1.5d', '1d1y', '1sm', '1x', '.s', '']) expect(isPromDuration(d) || isGoDuration(d), d).toBe(false);
    expect(isPromDuration('999999999999y')).toBe(false);
  });
});

describe('cache and matcher order', () => {
  it('each policy gets its own matcher order, whatever was cached before', () => {
    const a = { name: 'resource.k8s.namespace.name', op: '=' as const, value: 'a' };
    const b = { name: 'resource.env', op: '=' as const, value: 'prod' };
    clearTraceQLCache();
    const ab = rewriteTraceQL('{ .x = 1 }', [[a, b]]);
    const ba = rewriteTraceQL('{ .x = 1 }', [[b, a]]);
    expect(ab.indexOf('k8s.namespace.name')).toBeLessThan(ab.indexOf('resource.env'));
    expect(ba.indexOf('resource.env')).toBeLessThan(ba.indexOf('k8s.namespace.name'));
  });
});

describe('traceLevelReads: intrinsics (upstreams[].refuseTraceLevelIntrinsics)', () => {
  it('finds every trace-level intrinsic, in any position and spelling Tempo reads', () => {
    expect(traceLevelIntrinsics('{ trace:rootService = "a" && trace:rootName = "b" }')).toEqual(['trace:rootService', 'trace:rootName']);
    expect(traceLevelIntrinsics('{ trace: /* c */ duration > 1s }')).toEqual(['trace:duration']);
    expect(traceLevelIntrinsics('{ trace:id = "x" }')).toEqual(['trace:id']);
    expect(traceLevelIntrinsics('{ rootServiceName = "a" } | select(rootName, traceDuration)')).toEqual(['rootServiceName', 'rootName', 'traceDuration']);
    expect(traceLevelIntrinsics('{} | rate() by (trace:rootService)')).toEqual(['trace:rootService']);
    expect(traceLevelIntrinsics('{ .a } | compare({ trace:rootName = "x" })')).toEqual(['trace:rootName']);
  });
  it('and those Tempo computes from the whole trace\'s structure: childCount, the nested set bounds', () => {
    expect(traceLevelIntrinsics('{ span:childCount > 2 && childCount = 0 }')).toEqual(['span:childCount', 'childCount']);
    expect(traceLevelIntrinsics('{ nestedSetParent = -1 } | select(nestedSetLeft, nestedSetRight)')).toEqual(['nestedSetParent', 'nestedSetLeft', 'nestedSetRight']);
    expect(traceLevelIntrinsics('{ span: /* c */ childCount > 0 } | rate() by (span:childCount)')).toEqual(['span:childCount']);
    // The parent's id: shown by trace by id anyway (parentSpanId).
    expect(traceLevelIntrinsics('{ span:parentID = "abc" }')).toEqual([]);
  });
  it('not attributes, strings, comments or span-level intrinsics; nothing for text that does not parse', () => {
    for (const q of ['{ span.rootName = "a" }', '{ .rootServiceName = "a" }', '{ span.childCount = 1 }', '{ .nestedSetLeft = 1 }', '{ .a = "trace:rootService" }', '{ .a } // trace:rootService', '{ name = "a" && duration > 1s && span:id = "x" }', '{ trace:rootService = }']) {
      expect(traceLevelIntrinsics(q), q).toEqual([]);
    }
  });
});

describe('traceLevelReads: compare() (it reads every attribute, trace-level intrinsics included)', () => {
  it('finds the call in any form Tempo reads', () => {
    for (const q of ['{ } | compare({ status = error })', '{ .a } | compare({ .b = 1 }, 10)', '{ } | compare({ status = error }, 10, 1700000000000000000, 1700000060000000000)', '{ } | /* c */ compare ( { } )', '{ } | compare({ }) with (sample = 0.1)']) {
      expect(callsCompare(q), q).toBe(true);
    }
  });
  it('not an attribute, a string or a comment that spells it; false for text that does not parse', () => {
    for (const q of ['{ .compare = 1 }', '{ span.compare = "x" }', '{ name = "compare({})" }', '{ } | rate() // compare({ })', '{ } | rate()', '{ } | compare(']) {
      expect(callsCompare(q), q).toBe(false);
    }
  });
});
