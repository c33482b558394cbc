import { describe, expect, it } from 'vitest';
import { codeOf, errorOf } from './query-errors.ts';
import type { Matcher, SelectorPolicy } from '../../src/rewrite/matcher.ts';
import {
  clearLogQLCache,
  formatLogQLMatcher,
  isLogQLLabelName,
  labelPolicyHeader,
  logqlRewriter,
  parseLogQLMatchers,
  rewriteLogQL,
  rewriteLogQLSelectors,
  verifyLogQL,
} from '../../src/rewrite/logql.ts';
import { LokiLexError, scanLokiSelectors } from '../../src/rewrite/logql-lexer.ts';
import { DEFAULT_LIMITS } from '../../src/rewrite/rewriter.ts';
import { carries, oracleSelectors } from './logql-oracle.ts';
import { cpuMs } from '../cpu-time.ts';

const NS: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'a' }]];
const M = 'namespace="a"';
const m = (name: string, op: Matcher['op'], value: string): Matcher => ({ name, op, value });

/** [query, expected] with policy namespace="a". */
const TABLE: [string, string][] = [
  // the acceptance example
  ['sum by (level) (count_over_time({app="api"} |= "error" | json [5m]))', `sum by (level) (count_over_time({app="api", ${M}} |= "error" | json [5m]))`],
  // selectors: spacing and user bytes survive, insertion after the last matcher
  ['{app="api"}', `{app="api", ${M}}`],
  ['{app="api",env="prod"}', `{app="api",env="prod", ${M}}`],
  ['{ app = "api" }', `{ app = "api", ${M} }`],
  ['{app="api" # the app\n}', `{app="api", ${M} # the app\n}`],
  ['{app=`api`}', `{app=\`api\`, ${M}}`],
  ['{app=~"api|web", pod!~"tmp-.*"}', `{app=~"api|web", pod!~"tmp-.*", ${M}}`],
  ['{app!=""}', `{app!="", ${M}}`],
  ['{app="ünïcödé 🚀"}', `{app="ünïcödé 🚀", ${M}}`],
  ['\ufeff{app="api"}', `\ufeff{app="api", ${M}}`],
  // user matchers on the enforced label are kept; identical ones are not duplicated
  ['{namespace="b"}', `{namespace="b", ${M}}`],
  ['{namespace!="a", app="x"}', `{namespace!="a", app="x", ${M}}`],
  ['{namespace=~"a"}', `{namespace=~"a", ${M}}`],
  ['{namespace="a"}', '{namespace="a"}'],
  ['{app="x", namespace="a"} |= "y"', '{app="x", namespace="a"} |= "y"'],
  ['{namespace=`a`}', '{namespace=`a`}'],
  ['{namespace="\\x61"}', '{namespace="\\x61"}'],
  ['{namespace="\\u0061", app="x"}', '{namespace="\\u0061", app="x"}'],
  // line filters
  ['{app="api"} |= "error" != "timeout" |~ "(?i)fail" !~ `^DEBUG`', `{app="api", ${M}} |= "error" != "timeout" |~ "(?i)fail" !~ \`^DEBUG\``],
  ['{app="api"} |= "a" or "b"', `{app="api", ${M}} |= "a" or "b"`],
  ['{app="api"} |> "<_> 500 <_>" !> "<_> GET <_>"', `{app="api", ${M}} |> "<_> 500 <_>" !> "<_> GET <_>"`],
  ['{app="edge"} |= ip("10.0.0.0/8")', `{app="edge", ${M}} |= ip("10.0.0.0/8")`],
  ['{app="api"} |= "{namespace=\\"b\\"}"', `{app="api", ${M}} |= "{namespace=\\"b\\"}"`],
  ['{app="api"} |= `}{` # {x="y"}', `{app="api", ${M}} |= \`}{\` # {x="y"}`],
  // parsers, label filters, formats: byte for byte
  ['{app="api"} | json | level="error" | __error__=""', `{app="api", ${M}} | json | level="error" | __error__=""`],
  ['{app="api"} | json a="b.c", d', `{app="api", ${M}} | json a="b.c", d`],
  ['{app="api"} | logfmt --strict --keep-empty | status >= 500', `{app="api", ${M}} | logfmt --strict --keep-empty | status >= 500`],
  ['{app="api"} | regexp `(?P<ip>\\S+)`', `{app="api", ${M}} | regexp \`(?P<ip>\\S+)\``],
  ['{app="api"} | pattern "<ip> - <_>"', `{app="api", ${M}} | pattern "<ip> - <_>"`],
  ['{app="api"} | unpack', `{app="api", ${M}} | unpack`],
  ['{app="api"} | logfmt | d > 10s and s < 5MB or x = ip("::1")', `{app="api", ${M}} | logfmt | d > 10s and s < 5MB or x = ip("::1")`],
  ['{app="api"} | logfmt | (a="1" or b="2"), c!="3"', `{app="api", ${M}} | logfmt | (a="1" or b="2"), c!="3"`],
  ['{app="api"} | line_format "{{.msg}}" | label_format namespace="{{.ns}}", x=y', `{app="api", ${M}} | line_format "{{.msg}}" | label_format namespace="{{.ns}}", x=y`],
  ['{app="api"} | drop namespace, pod=~"x.*" | keep level', `{app="api", ${M}} | drop namespace, pod=~"x.*" | keep level`],
  ['{app="api"} | decolorize', `{app="api", ${M}} | decolorize`],
  // implicit AND label filters (not in the official Lezer grammar)
  ['{app="api"} | logfmt | level="error" caller!~"db.*"', `{app="api", ${M}} | logfmt | level="error" caller!~"db.*"`],
  ['{app="api"} | logfmt | a="1"  b="2"\tc>3 d=ip("::1") e="5"', `{app="api", ${M}} | logfmt | a="1"  b="2"\tc>3 d=ip("::1") e="5"`],
  ['count_over_time({app="api"} | logfmt | a="1" b="2" [5m])', `count_over_time({app="api", ${M}} | logfmt | a="1" b="2" [5m])`],
  // metric queries
  ['rate({app="api"}[5m])', `rate({app="api", ${M}}[5m])`],
  ['bytes_over_time({app="api"}[1h])', `bytes_over_time({app="api", ${M}}[1h])`],
  ['bytes_rate({app="api"} |= "x" [1m])', `bytes_rate({app="api", ${M}} |= "x" [1m])`],
  ['sum(rate({app="api"}[5m])) by (pod)', `sum(rate({app="api", ${M}}[5m])) by (pod)`],
  ['topk(5, sum by (path) (rate({app="api"} | json [5m])))', `topk(5, sum by (path) (rate({app="api", ${M}} | json [5m])))`],
  ['sort_desc(sum without (pod) (count_over_time({app="api"}[5m])))', `sort_desc(sum without (pod) (count_over_time({app="api", ${M}}[5m])))`],
  ['quantile_over_time(0.99, {app="api"} | json | unwrap latency | __error__="" [5m]) by (route)', `quantile_over_time(0.99, {app="api", ${M}} | json | unwrap latency | __error__="" [5m]) by (route)`],
  ['sum_over_time({app="api"} | logfmt | unwrap bytes(size) [1m])', `sum_over_time({app="api", ${M}} | logfmt | unwrap bytes(size) [1m])`],
  ['avg_over_time({app="api"} | logfmt | unwrap duration_seconds(t) [1m]) by (x)', `avg_over_time({app="api", ${M}} | logfmt | unwrap duration_seconds(t) [1m]) by (x)`],
  // absent_over_time takes its result labels from the selector's `=` matchers: the policy's is taken back out.
  ['absent_over_time({app="api"}[10m])', `label_replace(absent_over_time({app="api", ${M}}[10m]), "namespace", "", "", "")`],
  ['absent_over_time({app="api", namespace=~"a|b"} |= "x" [10m])', `absent_over_time({app="api", namespace=~"a|b", ${M}} |= "x" [10m])`],
  ['absent_over_time({app="api", namespace="b"}[10m])', `label_replace(absent_over_time({app="api", namespace="b", ${M}}[10m]), "namespace", "b", "", "")`],
  ['count_over_time({app="api"}[5m] offset 1h)', `count_over_time({app="api", ${M}}[5m] offset 1h)`],
  ['count_over_time({app="api"}[5m] offset 1h | json)', `count_over_time({app="api", ${M}}[5m] offset 1h | json)`],
  ['sum_over_time({app="api"} | logfmt | unwrap x [5m] offset 1h)', `sum_over_time({app="api", ${M}} | logfmt | unwrap x [5m] offset 1h)`],
  ['rate(({app="api"} |= "x")[5m])', `rate(({app="api", ${M}} |= "x")[5m])`],
  // a parenthesised log range with stages before its unwrap (Loki reads it; the official Lezer grammar does not)
  ['max_over_time(({app="api"} | json | unwrap x)[5m])', `max_over_time(({app="api", ${M}} | json | unwrap x)[5m])`],
  [
    'sum by (r) (quantile_over_time(0.99, ({app="api"} |= "x" | logfmt | (a="1" or b!="2") | unwrap bytes(size) | __error__="" ) [1m] offset 1h))',
    `sum by (r) (quantile_over_time(0.99, ({app="api", ${M}} |= "x" | logfmt | (a="1" or b!="2") | unwrap bytes(size) | __error__="" ) [1m] offset 1h))`,
  ],
  ['max_over_time(({app="a"} | json | unwrap x)[5m]) / max_over_time(({app="b"} | logfmt | unwrap y)[5m])', `max_over_time(({app="a", ${M}} | json | unwrap x)[5m]) / max_over_time(({app="b", ${M}} | logfmt | unwrap y)[5m])`],
  ['label_replace(rate({app="api"}[5m]), "dst", "$1", "pod", "(.*)")', `label_replace(rate({app="api", ${M}}[5m]), "dst", "$1", "pod", "(.*)")`],
  ['sum(rate({app="a"}[5m])) / sum(rate({app="b"}[5m])) > bool 0.5', `sum(rate({app="a", ${M}}[5m])) / sum(rate({app="b", ${M}}[5m])) > bool 0.5`],
  ['sum(rate({app="a"}[5m])) or vector(0)', `sum(rate({app="a", ${M}}[5m])) or vector(0)`],
  ['vector(1) + rate({app="a"}[1m]) * 2', `vector(1) + rate({app="a", ${M}}[1m]) * 2`],
  ['sum by (x) (rate({app="a"}[5m])) / on (x) group_left (y) sum by (x, y) (rate({app="b"}[5m]))', `sum by (x) (rate({app="a", ${M}}[5m])) / on (x) group_left (y) sum by (x, y) (rate({app="b", ${M}}[5m]))`],
  ['1 + 1', '1 + 1'],
  ['vector(0)', 'vector(0)'],
  // comments and line breaks (a comment ends at '\n' only, for Loki and for the grammar)
  ['{app="api"} # c\r{x="y"}', `{app="api", ${M}} # c\r{x="y"}`],
  ['{app="api"} # c\u2028{x="y"}\n|= "z"', `{app="api", ${M}} # c\u2028{x="y"}\n|= "z"`],
  ['# errors by level\nsum by (level) (\n  count_over_time({app="api"} # app\n    |= "error" [5m])\n)', `# errors by level\nsum by (level) (\n  count_over_time({app="api", ${M}} # app\n    |= "error" [5m])\n)`],
];

describe('LogQL rewriting: exact output (policy namespace="a")', () => {
  for (const [q, want] of TABLE) {
    it(JSON.stringify(q), () => {
      const out = rewriteLogQL(q, NS);
      expect(out).toBe(want);
      // idempotent, and the independent oracle sees every selector enforced
      expect(rewriteLogQL(out, NS)).toBe(out);
      for (const s of oracleSelectors(out)) expect(carries(s, m('namespace', '=', 'a'))).toBe(true);
    });
  }

  it('has at least 60 cases', () => {
    expect(TABLE.length).toBeGreaterThanOrEqual(60);
  });

  it('is registered as the logql rewriter', () => {
    expect(logqlRewriter.language).toBe('logql');
    expect(logqlRewriter.rewrite('{app="x"}', NS)).toBe(`{app="x", ${M}}`);
  });
});

describe('several matchers in one group', () => {
  const P: SelectorPolicy = [[m('namespace', '=', 'a'), m('cluster', '=~', 'eu-.*'), m('secret', '!=', 'true')]];
  it('adds all missing matchers in policy order, skips present ones', () => {
    expect(rewriteLogQL('{app="x"}', P)).toBe('{app="x", namespace="a", cluster=~"eu-.*", secret!="true"}');
    expect(rewriteLogQL('{app="x", cluster=~"eu-.*"}', P)).toBe('{app="x", cluster=~"eu-.*", namespace="a", secret!="true"}');
    expect(rewriteLogQL('{secret!="true", cluster=~"eu-.*", namespace="a"}', P)).toBe('{secret!="true", cluster=~"eu-.*", namespace="a"}');
  });
  it('de-duplicates matchers repeated in the policy', () => {
    expect(rewriteLogQL('{app="x"}', [[m('namespace', '=', 'a'), m('namespace', '=', 'a')]])).toBe(`{app="x", ${M}}`);
  });
});

describe('escaping of policy values', () => {
  const cases: [string, string][] = [
    ['a"b', '"a\\"b"'],
    ['a\\b', '"a\\\\b"'],
    ['line1\nline2', '"line1\\nline2"'],
    ['"} or {app=~".+"', '"\\"} or {app=~\\".+\\""'],
    ['x"} |= "', '"x\\"} |= \\""'],
    ['tab\there\r', '"tab\\there\\r"'],
    ['\u0000\u007f\u2028', '"\\x00\\x7f\\u2028"'],
    ['`raw`', '"`raw`"'],
    ['# not a comment', '"# not a comment"'],
    ['ünï 🚀', '"ünï 🚀"'],
  ];
  for (const [value, lit] of cases) {
    it(JSON.stringify(value), () => {
      const out = rewriteLogQL('{app="x"} |= "y"', [[m('namespace', '=', value)]]);
      expect(out).toBe(`{app="x", namespace=${lit}} |= "y"`);
      const sels = oracleSelectors(out);
      expect(sels).toHaveLength(1);
      expect(carries(sels[0] as (typeof sels)[number], m('namespace', '=', value))).toBe(true);
      expect(() => verifyLogQL(out, [[m('namespace', '=', value)]])).not.toThrow();
    });
  }
  it('a raw string holding a carriage return never counts as the enforced value', () => {
    // Go's strconv.Unquote would drop the '\r', Prometheus' unquote keeps it: ambiguous, so the policy matcher is added.
    expect(rewriteLogQL('{namespace=`a\r`}', [[m('namespace', '=', 'a\r')]])).toBe('{namespace=`a\r`, namespace="a\\r"}');
    expect(rewriteLogQL('{namespace=`a\r`}', [[m('namespace', '=', 'a')]])).toBe('{namespace=`a\r`, namespace="a"}');
  });
  it('regex values keep their backslashes', () => {
    expect(rewriteLogQL('{app="x"}', [[m('namespace', '=~', 'a\\.b|c"d')]])).toBe('{app="x", namespace=~"a\\\\.b|c\\"d"}');
  });
  it('label names LogQL cannot express are rewrite_unsupported', () => {
    for (const name of ['k8s.namespace', 'service-name', '1abc', 'by', 'OR', 'json', 'offset', 'unwrap', 'vector', 'label_replace', 'Of', 'ñ']) {
      expect(isLogQLLabelName(name)).toBe(false);
      expect(errorOf(() => rewriteLogQL('{app="x"}', [[m(name, '=', 'v')]])).code).toBe('rewrite_unsupported');
    }
    for (const name of ['namespace', '_x', 'rate', 'sum', 'ip', 'level', '__error__']) {
      expect(isLogQLLabelName(name)).toBe(true);
      expect(rewriteLogQL('{app="x"}', [[m(name, '=', 'v')]])).toBe(`{app="x", ${name}="v"}`);
    }
  });
  it('malformed policies are policy_error', () => {
    expect(codeOf(() => rewriteLogQL('{a="b"}', []))).toBe('policy_error');
    expect(codeOf(() => rewriteLogQL('{a="b"}', [[]]))).toBe('policy_error');
    expect(codeOf(() => rewriteLogQL('{a="b"}', [[{ name: 'x', op: '==', value: 'y' } as unknown as Matcher]]))).toBe('policy_error');
    expect(codeOf(() => rewriteLogQL('{a="b"}', [[m('x', '=~', '(')]]))).toBe('policy_error');
    expect(codeOf(() => rewriteLogQL('{a="b"}', [[m('x', '=', '\ud800')]]))).toBe('policy_error');
  });
  it('formatLogQLMatcher', () => {
    expect(formatLogQLMatcher(m('a', '!~', 'x|y'))).toBe('a!~"x|y"');
  });
});

describe('errors', () => {
  const bad: [string, string, RegExp][] = [
    ['', 'bad_query', /empty query/],
    ['  \n ', 'bad_query', /empty query/],
    ['{app="api"', 'bad_query', /^parse error at line 1, col 11: /],
    ['{app="api"}\n| json\n| level=', 'bad_query', /^parse error at line 3, col 9: /],
    ['{app="api}', 'bad_query', /literal not terminated/],
    ['{app="a\\qb"}', 'bad_query', /unknown escape/],
    ["{app='x'}", 'bad_query', /parse error/],
    ['{app=~".*"}', 'bad_query', /at least one regexp or equality matcher/],
    ['{app!="x"}', 'bad_query', /at least one regexp or equality matcher/],
    ['{app=~"("}', 'bad_query', /error parsing regexp/],
    ['{by="x"}', 'bad_query', /unexpected by/],
    ['{app="x"} or {app="y"}', 'bad_query', /binary operation/],
    ['rate({app="x"}[5m]) by (pod)', 'bad_query', /grouping not allowed for rate/],
    ['sum_over_time({app="x"}[5m])', 'bad_query', /without unwrap/],
    ['count_over_time({app="x"} | unwrap y [5m])', 'bad_query', /with unwrap/],
    ['quantile_over_time({app="x"} | unwrap y [5m])', 'bad_query', /parameter required/],
    ['topk(rate({app="x"}[5m]))', 'bad_query', /parameter required/],
    ['sum(2, rate({app="x"}[5m]))', 'bad_query', /unsupported parameter/],
    ['{app="x"} |= "a\u0000"', 'bad_query', /NUL/],
    ['{app="x"}\u00a0|= "a"', 'bad_query', /parse error/],
    ['{app="x"} | json foo bar', 'bad_query', /parse error/],
    ['{app="x"} |= "a" /* unterminated', 'bad_query', /comment not terminated/],
    ['RATE_OF({app="x"}[5m])', 'bad_query', /parse error/], // not a Loki function in any case
    ['{app="x"}\u000b|= "a"', 'bad_query', /parse error/],
    ['{variants="x"}', 'bad_query', /unexpected variants/],
    ['variants(count_over_time({app="x"}[1m])) of ({app="x"}[1m])', 'bad_query', /parse error/],
    ['{app="x"} | line_format "\ud800"', 'bad_query', /not valid UTF-8/],
  ];
  for (const [q, code, msg] of bad) {
    it(JSON.stringify(q), () => {
      const e = errorOf(() => rewriteLogQL(q, NS));
      expect(e.code).toBe(code);
      expect(e.language).toBe('logql');
      expect(e.message).toMatch(msg);
    });
  }
  it('non-string input', () => {
    expect(codeOf(() => rewriteLogQL(42 as unknown as string, NS))).toBe('bad_query');
  });
});

describe('limits', () => {
  it('query length', () => {
    const q = `{app="${'x'.repeat(200)}"}`;
    expect(codeOf(() => rewriteLogQL(q, NS, { maxQueryLength: 100, maxDepth: 128 }))).toBe('query_too_large');
    expect(codeOf(() => rewriteLogQL(`{app="${'é'.repeat(40)}"}`, NS, { maxQueryLength: 60, maxDepth: 128 }))).toBe('query_too_large');
    expect(codeOf(() => rewriteLogQL(q, NS, DEFAULT_LIMITS))).toBe('ok');
  });
  it('nesting depth (brackets and tree)', () => {
    const deep = `${'('.repeat(200)}rate({app="x"}[5m])${')'.repeat(200)}`;
    expect(codeOf(() => rewriteLogQL(deep, NS))).toBe('query_too_large');
    const sums = `${'sum('.repeat(20)}rate({app="x"}[5m])${')'.repeat(20)}`;
    expect(codeOf(() => rewriteLogQL(sums, NS, { maxQueryLength: 65536, maxDepth: 10 }))).toBe('query_too_large');
    expect(codeOf(() => rewriteLogQL(sums, NS))).toBe('ok');
  });
  it('hostile input fails fast', () => {
    const t0 = cpuMs();
    expect(codeOf(() => rewriteLogQL(')'.repeat(60000), NS))).toBe('bad_query');
    expect(codeOf(() => rewriteLogQL(`{app="x"} ${'| a="1" '.repeat(3000)}`, NS))).not.toBe('rewrite_verification_failed');
    expect(cpuMs() - t0).toBeLessThan(5000);
  });
});

describe('chains longer than the parser can build (too complex)', () => {
  // Lezer gives up after ~300 reductions of one growing node spanning 2000+
  // characters (a selector of 301 such matchers, a sum of 102 such operands).
  // The gateway counts instead (logqlChainWeight): at most 256 items or
  // operators at one level, a binary operator counting 3, checked on the
  // query and again on the query with the policy's matchers.
  const BIG = { maxQueryLength: 1 << 24, maxDepth: 100_000 };
  const LONG = 'x'.repeat(2000);
  const list = (k: number, f: (i: number) => string, sep: string): string => Array.from({ length: k }, (_, i) => f(i)).join(sep);
  const cases: [string, (k: number, p: string) => string, number][] = [
    // [what, query with k items, most items accepted]; the policy adds one matcher to each selector
    ['matchers of one selector', (k, p) => `{${list(k, (i) => `a${i}="${p}"`, ',')}}`, 256],
    ['pipeline stages', (k, p) => `{a="x"}${list(k, () => ` | a="${p}"`, '')}`, 256],
    ['line filters', (k, p) => `{a="x"}${list(k, () => ` |= "${p}"`, '')}`, 256],
    ['line filter alternatives', (k, p) => `{a="x"} |= ${list(k, () => `"${p}"`, ' or ')}`, 256],
    // Negated line filters before any `|` are stages too, not comparisons (exclusion lists).
    ['negated line filters', (k, p) => `{a="x"}${list(k, () => ` != "${p}"`, '')}`, 256],
    ['negated regex line filters', (k, p) => `{a="x"}${list(k, (i) => (i % 2 === 0 ? ` !~ "${p}"` : ` !> \`${p}\``), '')}`, 256],
    ['negated line filter alternatives', (k, p) => `{a="x"} != ${list(k, () => `"${p}"`, ' or ')}`, 256],
    ['negated ip line filters', (k, p) => `{a="x"}${list(k, () => ` != ip("${p}")`, '')}`, 256],
    ['label filters', (k, p) => `{a="x"} | ${list(k, () => `a="${p}"`, ' and ')}`, 256],
    ['label_format items', (k, p) => `{a="x"} | label_format ${list(k, (i) => `a${i}="${p}"`, ', ')}`, 256],
    ['drop items', (k, p) => `{a="x"} | drop ${list(k, (i) => `a${i}="${p}"`, ', ')}`, 256],
    ['grouping labels', (k, p) => `sum by (${list(k, (i) => `a${i}`, ', ')}) (rate({a="${p}"}[5m]))`, 257],
    ['operands of a binary operation', (k, p) => list(k, () => `count_over_time({a="${p}"}[5m])`, ' + '), 86],
    ['operands of or', (k, p) => list(k, () => `count_over_time({a="${p}"}[5m])`, ' or '), 86],
  ];
  for (const [what, q, max] of cases) {
    it(`${what}: ${max} accepted (also 2000-character items), ${max + 1} refused as too complex`, () => {
      expect(codeOf(() => rewriteLogQL(q(max, LONG), NS, BIG))).toBe('ok');
      expect(codeOf(() => rewriteLogQL(q(max, 'x'), NS, BIG))).toBe('ok');
      for (const p of ['x', LONG]) {
        const e = errorOf(() => rewriteLogQL(q(max + 1, p), NS, BIG));
        expect(e.code).toBe('query_too_large');
        expect(e.message).toMatch(/^(?:the query with the policy.s matchers|query) is too complex: more than 256 matchers, pipeline stages, list items or operators at one level/);
      }
    });
  }
  it('the 500-matcher selector of the review is refused as too complex, not as a parse error', () => {
    const q = `{${list(500, (i) => `label_${i}="value"`, ', ')}}`;
    expect(errorOf(() => rewriteLogQL(q, NS))).toMatchObject({ code: 'query_too_large', message: expect.stringMatching(/too complex.*line 1, col \d+/) });
  });
  it("a selector that only the policy's matchers take over the limit: too complex (400), not a failed verification", () => {
    const q = `{${list(257, (i) => `a${i}="${LONG}"`, ',')}}`;
    expect(errorOf(() => rewriteLogQL(q, NS, BIG))).toMatchObject({ code: 'query_too_large', message: expect.stringMatching(/^the query with the policy's matchers is too complex/) });
    expect(codeOf(() => rewriteLogQL(q, [[m('namespace', '=', 'a'), m('cluster', '=', 'b')]], BIG))).toBe('query_too_large');
  });
  it('items at different levels do not add up; strings, comments and ranges are not counted', () => {
    const inner = list(200, (i) => `a${i}="x"`, ',');
    expect(codeOf(() => rewriteLogQL(`{${inner}}${list(200, () => ' | b="y"', '')}`, NS, BIG))).toBe('ok');
    expect(codeOf(() => rewriteLogQL(`{a="${'|,+'.repeat(400)}"} # ${'|'.repeat(400)}\n |= \`${','.repeat(400)}\``, NS))).toBe('ok');
    expect(codeOf(() => rewriteLogQL(`sum(${list(80, () => 'count_over_time({a="x"}[5m])', ' + ')}) + sum(${list(80, () => 'count_over_time({a="x"}[5m])', ' + ')})`, NS, BIG))).toBe('ok');
  });
  it('an operator written against a number (`1or`: Loki and Lezer end the number there) is counted: too complex, not a failed verification (500)', () => {
    // Parsed as written; the policy's matchers take the chain over Lezer's limit.
    const sum = `(${list(60, () => 'count_over_time({x="y"}[1m])', '+')})`;
    for (const glued of ['1or ', '5mor ', '1KBor ', '1.5or ', '1and ', '1unless ']) {
      expect(errorOf(() => rewriteLogQL(`${sum} or ${glued.repeat(100)}1`, NS, BIG)), glued).toMatchObject({ code: 'query_too_large', message: expect.stringMatching(/is too complex/) });
    }
    // Default limits: a plain too-complex refusal, not a parse error at the 101st `1or`.
    const bal = (n: number): string => (n <= 1 ? 'count_over_time({x="y"}[1m])' : `(${bal(Math.floor(n / 2))}+${bal(n - Math.floor(n / 2))})`);
    expect(errorOf(() => rewriteLogQL(`${bal(80)} or ${'1or '.repeat(100)}1`, NS))).toMatchObject({ code: 'query_too_large' });
    // Durations and byte sizes hold no keyword: not counted.
    expect(codeOf(() => rewriteLogQL(`{a="x"} | ${list(200, () => 'size > 1KiB', ' , ')} | d > 1h30m5s`, NS, BIG))).toBe('ok');
  });
});

describe('multi-group policies (DNF)', () => {
  it('groups that differ in one positive matcher on one label merge into one regex', () => {
    const P: SelectorPolicy = [[m('namespace', '=', 'a.b')], [m('namespace', '=~', 'c|d')]];
    expect(rewriteLogQL('{app="x"} |= "y"', P)).toBe('{app="x", namespace=~"(?:a\\\\.b)|(?:c|d)"} |= "y"');
    // already inside one alternative: untouched
    expect(rewriteLogQL('{namespace="a.b"}', P)).toBe('{namespace="a.b"}');
    const P2: SelectorPolicy = [[m('team', '=', 't'), m('namespace', '=', 'a')], [m('namespace', '=', 'b'), m('team', '=', 't')]];
    expect(rewriteLogQL('{app="x"}', P2)).toBe('{app="x", team="t", namespace=~"(?:a)|(?:b)"}');
  });
  it('a group that is a superset of another is dropped', () => {
    expect(rewriteLogQL('{app="x"}', [[m('namespace', '=', 'a'), m('team', '=', 't')], [m('namespace', '=', 'a')]])).toBe(`{app="x", ${M}}`);
  });
  const GEM: SelectorPolicy = [[m('secret', '!=', 'true'), m('app', '=', 'sensitive')], [m('app', '!=', 'sensitive')]];
  it('groups the selector cannot reach are dropped; one left is exact (log queries too)', () => {
    expect(rewriteLogQL('{app="sensitive"} |= "x"', GEM)).toBe('{app="sensitive", secret!="true"} |= "x"');
    expect(rewriteLogQL('{app="other"} |= "x"', GEM)).toBe('{app="other", app!="sensitive"} |= "x"');
    expect(rewriteLogQL('sum(rate({app="other"}[5m]))', GEM)).toBe('sum(rate({app="other", app!="sensitive"}[5m]))');
  });
  it('no group reachable: any group keeps the selector empty', () => {
    expect(rewriteLogQL('{namespace="c"}', [[m('namespace', '=', 'a'), m('t', '=', 'x')], [m('namespace', '=', 'b'), m('u', '=', 'y')]])).toBe(
      '{namespace="c", namespace="a", t="x"}',
    );
  });
  const DISJ: SelectorPolicy = [[m('namespace', '=', 'a'), m('team', '=', 'x')], [m('namespace', '=', 'b')]];
  it('log queries that can reach several groups are rejected with a hint', () => {
    const e = errorOf(() => rewriteLogQL('{app="api"} |= "x"', DISJ));
    expect(e.code).toBe('rewrite_unsupported');
    expect(e.message).toMatch(/X-Prom-Label-Policy/);
    expect(codeOf(() => rewriteLogQL('{app="sensitive"} or {x="y"}', GEM))).toBe('bad_query');
    expect(codeOf(() => rewriteLogQL('{app=~"s.*"}', GEM))).toBe('rewrite_unsupported');
  });
  it('metric queries over disjoint groups become an "or" of range aggregations', () => {
    expect(rewriteLogQL('sum by (level) (count_over_time({app="api"} |= "error" | json [5m]))', DISJ)).toBe(
      'sum by (level) ((count_over_time({app="api", namespace="a", team="x"} |= "error" | json [5m]) or count_over_time({app="api", namespace="b"} |= "error" | json [5m])))',
    );
    expect(rewriteLogQL('quantile_over_time(0.9, {app="api"} | logfmt | unwrap t [5m]) by (namespace) > 1', DISJ)).toBe(
      '(quantile_over_time(0.9, {app="api", namespace="a", team="x"} | logfmt | unwrap t [5m]) by (namespace) or quantile_over_time(0.9, {app="api", namespace="b"} | logfmt | unwrap t [5m]) by (namespace)) > 1',
    );
    // each selector separately; one already inside an alternative stays
    expect(rewriteLogQL('rate({namespace="b"}[1m]) / rate({app="y"}[1m])', DISJ)).toBe(
      'rate({namespace="b"}[1m]) / (rate({app="y", namespace="a", team="x"}[1m]) or rate({app="y", namespace="b"}[1m]))',
    );
  });
  it('rejects what it cannot prove exact', () => {
    const unsup = [
      'sum(rate({app="api"} | label_format namespace="x" [5m]))',
      'sum(rate({app="api"} | label_format y=namespace [5m]))',
      'sum(rate({app="api"} | drop namespace [5m]))',
      'sum(rate({app="api"} | json | keep level [5m]))',
      'sum(rate({app="api"} | unpack [5m]))',
      'sum(sum_over_time({app="api"} | unwrap namespace [5m]))',
      'max_over_time({app="api"} | unwrap t [5m]) by (pod)',
      'max_over_time({app="api"} | unwrap t [5m]) without (namespace)',
      'sum(rate({app="api"}[5m]))', // with overlapping groups, below
    ];
    for (const q of unsup.slice(0, -1)) expect(codeOf(() => rewriteLogQL(q, DISJ))).toBe('rewrite_unsupported');
    expect(codeOf(() => rewriteLogQL('sum(rate({app=~"s.*"}[5m]))', GEM))).toBe('rewrite_unsupported');
    // keep that keeps the distinguishing label, and a grouping that keeps it, are fine
    expect(codeOf(() => rewriteLogQL('sum(rate({app="api"} | json | keep namespace, level [5m]))', DISJ))).toBe('ok');
    expect(codeOf(() => rewriteLogQL('max_over_time({app="api"} | unwrap t [5m]) without (pod)', DISJ))).toBe('ok');
  });
  it('absent_over_time under several groups: the per-group calls AND-ed on nothing, the first part\'s labels put back', () => {
    expect(rewriteLogQL('absent_over_time({app="api"}[5m])', DISJ)).toBe(
      'label_replace(label_replace((absent_over_time({app="api", namespace="a", team="x"}[5m]) and on() absent_over_time({app="api", namespace="b"}[5m])), "namespace", "", "", ""), "team", "", "", "")',
    );
    // Only one group can match: that group alone (here already written), labels put back.
    expect(rewriteLogQL('absent_over_time({app="api", namespace="b"}[5m])', DISJ)).toBe('absent_over_time({app="api", namespace="b"}[5m])');
    expect(rewriteLogQL('absent_over_time({app="api", namespace=~"a|c"}[5m])', DISJ)).toBe(
      'label_replace(absent_over_time({app="api", namespace=~"a|c", namespace="a", team="x"}[5m]), "team", "", "", "")',
    );
  });
  it('every output selector carries one whole group', () => {
    const out = rewriteLogQL('sum(rate({app="a"}[1m])) + sum(count_over_time({app="b"} | logfmt [5m]))', DISJ);
    const sels = oracleSelectors(out);
    expect(sels).toHaveLength(4);
    for (const s of sels) expect(DISJ.some((g) => g.every((x) => carries(s, x)))).toBe(true);
  });
});

describe('match[] selectors', () => {
  it('one selector per parameter and group', () => {
    expect(rewriteLogQLSelectors(['{app="x"}', '{job=~"a.+"}'], NS)).toEqual([`{app="x", ${M}}`, `{job=~"a.+", ${M}}`]);
    const P: SelectorPolicy = [[m('ns', '=', 'a')], [m('ns', '=', 'b'), m('t', '=', 'x')]];
    expect(rewriteLogQLSelectors(['{app="x"}'], P)).toEqual(['{app="x", ns="a"}', '{app="x", ns="b", t="x"}']);
    expect(rewriteLogQLSelectors(['{ns="b"}'], P)).toEqual(['{ns="b", t="x"}']);
    expect(rewriteLogQLSelectors(['{ns="a"}', '{ns="a"}'], P)).toEqual(['{ns="a"}']);
  });
  it('no parameters: one selector per group', () => {
    expect(rewriteLogQLSelectors([], NS)).toEqual([`{${M}}`]);
    expect(rewriteLogQLSelectors([], [[m('ns', '=', 'a'), m('t', '!=', 'x')], [m('ns', '=', 'b'), m('u', '=', 'y')]])).toEqual(['{ns="a", t!="x"}', '{ns="b", u="y"}']);
  });
  it('anything but one stream selector is refused', () => {
    for (const p of ['{app="x"} |= "y"', 'rate({app="x"}[5m])', '1', '{app="x"} # c\n|= "y"', '']) {
      expect(codeOf(() => rewriteLogQLSelectors([p], NS))).toBe('bad_query');
    }
    expect(errorOf(() => rewriteLogQLSelectors(['{app='], NS)).message).toMatch(/^invalid parameter "match\[\]": parse error/);
    expect(rewriteLogQLSelectors(['({app="x"})'], NS)).toEqual([`({app="x", ${M}})`]);
  });
});

describe('parseLogQLMatchers', () => {
  it('parses the CLI --matcher syntax', () => {
    expect(parseLogQLMatchers('namespace="a"')).toEqual([m('namespace', '=', 'a')]);
    expect(parseLogQLMatchers(' a="x", b!~"y|z" ,c=~`\\d+`')).toEqual([m('a', '=', 'x'), m('b', '!~', 'y|z'), m('c', '=~', '\\d+')]);
    expect(parseLogQLMatchers('secret!="true"')).toEqual([m('secret', '!=', 'true')]);
    expect(parseLogQLMatchers('a="\\u00e9\\n"')).toEqual([m('a', '=', 'é\n')]);
  });
  it('rejects anything else', () => {
    for (const t of ['', 'a', 'a=b', '"a"="b"', 'a="b"} |= "x', 'a="b"}, {c="d"', 'a="b"} or {c="d"', 'by="x"', 'a="\\xff"']) {
      expect(codeOf(() => parseLogQLMatchers(t))).toBe('bad_query');
    }
    expect(errorOf(() => parseLogQLMatchers('a="b" c="d"')).message).toMatch(/^invalid matcher expression: parse error at line 1, col 7/);
  });
});

describe('verifyLogQL', () => {
  it('accepts enforced queries and rejects unenforced ones', () => {
    expect(() => verifyLogQL(`sum(rate({app="x", ${M}}[5m])) / sum(rate({${M}, b="c"}[5m]))`, NS)).not.toThrow();
    expect(errorOf(() => verifyLogQL(`sum(rate({app="x", ${M}}[5m])) / sum(rate({b="c"}[5m]))`, NS)).code).toBe('rewrite_verification_failed');
    expect(errorOf(() => verifyLogQL('{namespace=~"a"}', NS)).code).toBe('rewrite_verification_failed');
    expect(errorOf(() => verifyLogQL('{namespace="a"', NS)).code).toBe('rewrite_verification_failed');
    // A selector inside a Go comment is not a selector (Loki's scanner skips comments); one after it is.
    expect(() => verifyLogQL(`{${M}} // {b="c"}`, NS)).not.toThrow();
    expect(errorOf(() => verifyLogQL(`sum(rate({${M}}[5m])) /* c */ / sum(rate({b="c"}[5m]))`, NS)).code).toBe('rewrite_verification_failed');
  });

  it('reads what Loki reads and the grammar does not: Go comments, keywords in any case (forwarded as written)', () => {
    expect(rewriteLogQL('SUM(RATE({app="x"}[5m]))', NS)).toBe(`SUM(RATE({app="x", ${M}}[5m]))`);
    expect(rewriteLogQL('Sum By (level) (Count_Over_Time({app="x"} | JSON [1m]))', NS)).toBe(`Sum By (level) (Count_Over_Time({app="x", ${M}} | JSON [1m]))`);
    expect(rewriteLogQL('{app="x"} // {namespace="b"}', NS)).toBe(`{app="x", ${M}} // {namespace="b"}`);
    expect(rewriteLogQL('sum(rate({app="x"}[1m])) /* {b="c"} */ / 2', NS)).toBe(`sum(rate({app="x", ${M}}[1m])) /* {b="c"} */ / 2`);
    expect(rewriteLogQL('{// c\napp="x"}', NS)).toBe(`{// c\napp="x", ${M}}`);
    // Strings stay strings; label names keep their case.
    expect(rewriteLogQL('{app="x"} |= "a // b" | LEVEL="e"', NS)).toBe(`{app="x", ${M}} |= "a // b" | LEVEL="e"`);
    // The parenthesised unwrap range is read only with its range after the group.
    expect(codeOf(() => rewriteLogQL('max_over_time(({app="x"} | json | unwrap y))', NS))).toBe('bad_query');
    expect(codeOf(() => rewriteLogQL('max_over_time(({app="x"} | json) | unwrap y [5m])', NS))).toBe('bad_query');
  });
});

describe('X-Prom-Label-Policy header', () => {
  it("uses Loki's <tenant>:<url-encoded selector>, comma-separated per group", () => {
    expect(labelPolicyHeader([[m('env', '=', 'dev')]], 'tenant1')).toBe('tenant1:%7Benv%3D%22dev%22%7D');
    expect(
      labelPolicyHeader([[m('service_name', '=', 'payments-api'), m('secret', '!=', 'true')], [m('service_name', '!=', 'payments-api')]], 'team-payments'),
    ).toBe('team-payments:%7Bservice_name%3D%22payments-api%22%2C%20secret%21%3D%22true%22%7D,team-payments:%7Bservice_name%21%3D%22payments-api%22%7D');
  });
  it('encodes everything that could split the header', () => {
    const h = labelPolicyHeader([[m('ns', '=~', 'a,b:c|"}\n é')]], 't');
    expect(h).toMatch(/^t:[A-Za-z0-9%\-._~]+$/);
    expect(decodeURIComponent(h.slice(2))).toBe('{ns=~"a,b:c|\\"}\\n é"}');
    expect(labelPolicyHeader([[m('k8s.ns', '=', 'x')]], 't')).toBe('t:%7B%22k8s.ns%22%3D%22x%22%7D');
  });
  it('rejects bad tenants and policies', () => {
    for (const t of ['', 'a:b', 'a,b', 'a|b', '.', '..', 'a b', 'x'.repeat(151)]) expect(codeOf(() => labelPolicyHeader(NS, t))).toBe('policy_error');
    expect(codeOf(() => labelPolicyHeader([], 't'))).toBe('policy_error');
    expect(codeOf(() => labelPolicyHeader([[]], 't'))).toBe('policy_error');
  });
});

describe('cache', () => {
  it('returns the same result and is keyed by policy content', () => {
    clearLogQLCache();
    const q = '{app="x"}';
    const policy: Matcher[][] = [[m('namespace', '=', 'a')]];
    expect(rewriteLogQL(q, policy)).toBe(`{app="x", ${M}}`);
    (policy[0] as Matcher[])[0] = m('namespace', '=', 'b');
    expect(rewriteLogQL(q, policy)).toBe('{app="x", namespace="b"}');
    // limits are part of the key: a cached result is not served past a stricter limit
    expect(codeOf(() => rewriteLogQL(q, NS, { maxQueryLength: 5, maxDepth: 1 }))).toBe('query_too_large');
  });
});

describe("Loki lexer model (scanLokiSelectors)", () => {
  it('reads label names as Go identifiers (ASCII and Unicode letters and digits)', () => {
    const names = (q: string): string[] => scanLokiSelectors(q).flatMap((s) => s.matchers.map((m) => m.name));
    expect(names('{a_1="x", é٣="y", 𝒜b="z"}')).toEqual(['a_1', 'é٣', '𝒜b']);
    expect(() => scanLokiSelectors('{1a="x"}')).toThrow(LokiLexError);
    expect(() => scanLokiSelectors('{٣="x"}')).toThrow(LokiLexError);
    expect(() => scanLokiSelectors('{a-b="x"}')).toThrow(LokiLexError);
  });

  it('steps over plain text between selectors but not over comments, strings or ranges', () => {
    const at = (q: string): number[] => scanLokiSelectors(q).map((s) => s.from);
    expect(at('sum(rate({a="x"}|="{"[5m]))/count({b="y"})')).toEqual([9, 34]);
    expect(at('x/*{a="x"}*/+{b="y"}')).toEqual([13]);
    expect(at('x//{a="x"}\n{b="y"}')).toEqual([11]);
    expect(at('x#{a="x"}\n{b="y"}')).toEqual([10]);
    expect(() => scanLokiSelectors('{a="x"} |= "y" \u0001')).toThrow(LokiLexError);
  });
});

describe('cache and matcher order', () => {
  it('each policy gets its own matcher order, whatever was cached before', () => {
    const teamFirst: SelectorPolicy = [[{ name: 'team', op: '=', value: 'a' }, { name: 'env', op: '=', value: 'prod' }]];
    const envFirst: SelectorPolicy = [[{ name: 'env', op: '=', value: 'prod' }, { name: 'team', op: '=', value: 'a' }]];
    clearLogQLCache();
    expect(rewriteLogQLSelectors(['{app="y"}'], teamFirst)).toEqual(['{app="y", team="a", env="prod"}']);
    expect(rewriteLogQLSelectors(['{app="y"}'], envFirst)).toEqual(['{app="y", env="prod", team="a"}']);
    expect(rewriteLogQL('{app="y"}', teamFirst)).toBe('{app="y", team="a", env="prod"}');
    expect(rewriteLogQL('{app="y"}', envFirst)).toBe('{app="y", env="prod", team="a"}');
  });
});
