/**
 * Parser differentials, token class by token class: for adversarial LogQL
 * the gateway either refuses the query or forwards text in which every
 * stream selector *as Loki's lexer reads it* (./loki-token-oracle.ts, a
 * model independent of src/rewrite) carries the policy.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { rewriteLogQL } from '../../src/rewrite/logql.ts';
import { attempt, describeClasses, exactOutcomes, spliceFuzz, structuredFuzz, type Outcome } from './lexclass-harness.ts';
import { LokiOracleError, lokiSelectors, lokiTokens } from './loki-token-oracle.ts';

const NS: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'a' }]];
const M = 'namespace="a"';

function run(q: string, policy: SelectorPolicy = NS): Outcome {
  return attempt(() => rewriteLogQL(q, policy));
}

/** Loki's selectors of `q`, or null when Loki refuses it. */
function lokiReading(q: string): ReturnType<typeof lokiSelectors> | null {
  try {
    return lokiSelectors(q);
  } catch (e) {
    if (e instanceof LokiOracleError) return null;
    throw e;
  }
}

/**
 * The security property: refused, or every selector Loki reads in the output
 * carries every matcher of the (single-group) policy, and the output has as
 * many selectors as Loki reads in the input (none hidden, none invented).
 */
function expectSafe(q: string, policy: SelectorPolicy = NS): Outcome {
  const r = run(q, policy);
  if (!r.ok) {
    expect(['bad_query', 'rewrite_unsupported', 'query_too_large']).toContain(r.code);
    return r;
  }
  const sels = lokiReading(r.out);
  if (sels === null) return r; // Loki refuses the forwarded text: nothing is read
  const group = policy[0] ?? [];
  for (const s of sels) {
    for (const m of group) {
      const found = s.matchers.some((x) => x.name === m.name && x.op === m.op && x.value === m.value);
      if (!found) throw new Error(`selector ${JSON.stringify(r.out.slice(s.from, s.to))} of ${JSON.stringify(r.out)} lacks ${m.name}${m.op}${JSON.stringify(m.value)}`);
    }
  }
  const before = lokiReading(q);
  if (before !== null) expect(sels.length).toBe(before.length);
  return r;
}

describe('the Loki token oracle reads what Loki reads', () => {
  const at = (q: string): number[] => lokiSelectors(q).map((s) => s.from);
  it('strings, raw strings, character literals, comments and ranges hide braces', () => {
    expect(at('{a="b"} |= "{c=\\"d\\"}"')).toEqual([0]);
    expect(at('{a="b"} |= `}{`')).toEqual([0]);
    expect(at('{a="b"} # {c="d"}\n')).toEqual([0]);
    expect(at('{a="b"} // {c="d"}\n')).toEqual([0]);
    expect(at('{a="b"} /* {c="d"} */')).toEqual([0]);
    expect(at('rate({a="b"}[5m{])')).toEqual([5]);
    expect(lokiTokens("'{'").map((t) => t.kind)).toEqual(['ident']);
  });
  it('errors where Loki errors', () => {
    for (const q of ['{a="\\q"}', '{a="x\n"}', "'ab'", '{a="b"} /*', '{a="\\400"}', '{a="\\ud800"}', 'x\u0000', '{a="b"', '{a="b"}}', '{by="x"}', '{a=="x"}']) {
      expect(() => lokiSelectors(q), q).toThrow(LokiOracleError);
    }
  });
  it('a leading byte-order mark is skipped; operators join only when adjacent', () => {
    expect(at('\ufeff{a="b"}')).toEqual([1]);
    expect(lokiSelectors('{label_replace="x", ip="y", rate="z"}')[0]?.matchers.map((m) => m.name)).toEqual(['label_replace', 'ip', 'rate']);
    expect(lokiTokens('!= ! = =~ = ~').map((t) => t.value)).toEqual(['!=', '!', '=', '=~', '=', '~']);
  });
});

/** [class, queries]: adversarial inputs for each token class of Loki's lexer. */
const CLASSES: [string, string[]][] = [
  [
    'double-quoted strings and escapes',
    [
      '{app="x"} |= "{namespace=\\"b\\"}"',
      '{app="x"} |= "\\x7bnamespace=\\x22b\\x22\\x7d"',
      '{app="x"} |= "\\u007b" |= "\\U0000007d"',
      '{app="x"} |= "\\173\\175"',
      '{app="x"} |= "\\777"',
      '{app="x"} |= "\\ud800"',
      '{app="x"} |= "\\U00110000"',
      '{app="x"} |= "\\q{b=\\"c\\"}"',
      '{app="x"} |= "\\\'"',
      '{app="x"} |= "\\x7"',
      '{app="x"} |= "\\17"',
      '{app="x"} |= "a\nb" {b="c"}',
      '{app="x"} |= "a\\\n{b=\\"c\\"}"',
      '{app="x"} |= "tail\\',
      '{app="x"} |= "unterminated {b="c"}',
      '{app="\\"}", b="c"}',
      '{app="x\\\\"} |= "}"',
    ],
  ],
  [
    'raw strings and character literals',
    [
      '{app="x"} |= `{b="c"}`',
      '{app="x"} |= `a\nb` |= `\\`',
      '{app=`x\r`}',
      '{app="x"} | line_format `{{ "{" }}{{ .a }}`',
      '{app="x"} |= `unterminated {b="c"}',
      "{app=\"x\"} |= '{'",
      "{app=\"x\"} |= '\"' {b=\"c\"} '\"'",
      "sum by ('x') (rate({app=\"x\"}[1m]))",
      "{app=\"x\"} |= 'ab' {b=\"c\"}",
      "{app='x'}",
    ],
  ],
  [
    'comments',
    [
      '{app="x"} # {b="c"}',
      '{app="x"} #\n{b="c"}',
      '{app="x" # }\n}',
      '{app="x", # c="d"}\nb="c"}',
      '{app="x"} // {b="c"}',
      '{app="x"} /* {b="c"} */ |= "y"',
      '{app="x" /* } */}',
      '{app="x"} /* unterminated {b="c"}',
      '{app="x"} |= "/*" {b="c"} |= "*/"',
      '{app="x"} |= `#` {b="c"}',
      '{app="x"} /*/ {b="c"} */',
      '{app="x"} /**/ |= "y"',
      '{app="x"} |= "y" #',
      '# {b="c"}\n{app="x"}',
      '{app="x"} # c\r{b="c"}',
      '{app="x"} // c\u2028{b="c"}',
    ],
  ],
  [
    'whitespace classes',
    [
      '{app="x"}\t|= "y"\r\n',
      '{app="x"}\v|= "y"',
      '{app="x"}\f|= "y"',
      '{app="x"}\u0085|= "y"',
      '{app="x"}\u00a0|= "y"',
      '{app="x"}\u1680|= "y"',
      '{app="x"}\u2028|= "y"',
      '{app="x"}\u2029|= "y"',
      '{app="x"}\u3000|= "y"',
      '{app="x"}\u200b|= "y"',
      '{app\u00a0="x"}',
      '\ufeff{app="x"}',
      '\ufeff\ufeff{app="x"}',
      '{app="x"}\ufeff',
      '{app="x"} |= "y"\u0000',
    ],
  ],
  [
    'identifiers',
    [
      '{App_1="x"}',
      '{é="x"}',
      '{a٣="x"}',
      '{1a="x"}',
      '{a.b="x"}',
      '{a:b="x"}',
      '{a-b="x"}',
      '{by="x"}',
      '{BY="x"}',
      '{Or="x"}',
      '{json="x"}',
      '{rate="x"}',
      '{sum="x"}',
      '{offset="x"}',
      '{namespace="b"}',
      '{NAMESPACE="b"}',
      '{app="x"} | é="y"',
    ],
  ],
  [
    'numbers, durations and bytes',
    [
      '{app="x"} | n > 1e3',
      '{app="x"} | n > 1e',
      '{app="x"} | n > 0x1f',
      '{app="x"} | n > 1_000',
      '{app="x"} | n > 1_000.5_0',
      '{app="x"} | n > 1__000',
      '{app="x"} | n > 1_000_',
      '{app="x"} | n > 1_',
      '{app="x"} | n > 0_9',
      '{app="x"} | d > 1_0s',
      '{app="x"} | n > 1_000{b="c"}',
      'rate({app="x"}[1_0m])',
      'rate({app="x"}[5m] offset 1_0m)',
      'vector(1_000) + rate({app="x"}[5m])',
      'topk(1_0, rate({app="x"}[5m]))',
      'quantile_over_time(0.9_9, {app="x"} | unwrap n [5m])',
      '{app="x"} | n > 08',
      '{app="x"} | d > 1h30m',
      '{app="x"} | d > 1.5h',
      '{app="x"} | b > 1KB',
      '{app="x"} | b > 1KiB',
      '{app="x"} | b > 1kB{b="c"}',
      '{app="x"} | b > 20K',
      '{app="x"} | b > 1.5Mi',
      '{app="x"} | b > 3kiB{b="c"}',
      '{app="x"} | b > 20Kb',
      '{app="x"} | b > 20kb="c"',
      '{app="x"} | b > x20K',
      'rate({app="x"}[1h30m])',
      'rate({app="x"}[5m] offset -1h)',
      'rate({app="x"}[5m]) > .5',
      'rate({app="x"}[5m]) > 1.e3',
      '{app="x"} | logfmt --strict --keep-empty',
      '{app="x"} | logfmt --strict{b="c"}',
    ],
  ],
  [
    'function names as label names',
    [
      '{label_replace="x"}',
      '{vector="x"}',
      '{Vector=~"x", b="c"}',
      '{app="x", LABEL_REPLACE!="y"}',
      '{vector ="x"} |= "y" {b="c"}',
      '{vector\n="x"}',
      '{vector /* ( */ ="x"}',
      '{vector ("x")}',
      '{vector by="x"}',
      '{vector without="x"}',
      '{vectorx="x"}',
      '{app="x"} | vector="y"',
      '{app="x"} | drop vector, label_replace',
      '{app="x"} | label_format vector=app',
      'sum by (vector) (rate({app="x"}[5m]))',
      'sum_over_time({app="x"} | unwrap vector [5m])',
      'label_replace(rate({label_replace="x"}[5m]), "vector", "$1", "label_replace", "(.*)")',
    ],
  ],
  [
    'operators and adjacency',
    [
      '{app="x"}|~"y"!~"z"|>"<_>"!>"<_>"',
      '{app="x"} | = "y"',
      '{app="x"} ! = "y"',
      '{app="x"} |= ~"y"',
      '{app= ~"x"}',
      '{app=~ "x"}',
      '{app! ="x"}',
      '{app!= "x"}',
      '{app=="x"}',
      '{app="x"} | n == 1',
      '{app="x"} | n >= 1 | m <= 2',
      '{app="x"}|="y"or"z"',
      '{app="x"} |= "y" or {b="c"}',
      '{app="x"},{b="c"}',
      '{app="x"}|{b="c"}',
    ],
  ],
  [
    'ranges',
    [
      'rate({app="x"}[5m # ])',
      'rate({app="x"}[5m "])',
      'rate({app="x"}[5m {b="c"}])',
      'rate({app="x"}[5m)',
      'rate({app="x"}[5m] # ]\n)',
      'rate({app="x"} |= "[" [5m])',
      'rate({app="x"}[ 5m ])',
      'rate({app="x"}[5m]]) {b="c"}',
    ],
  ],
  [
    'braces inside templates and regexes',
    [
      '{app="x"} | line_format "{{.a}} {b=\\"c\\"}"',
      '{app="x"} | label_format a="{{ `}` }}", b="{{ \\"{\\" }}"',
      '{app="x"} | label_format a=`{{ "}" }}`',
      '{app="x"} |~ "a{2,3}" |~ `\\{`',
      '{app=~"a{1,2}"}',
      '{app="x"} | regexp `(?P<a>\\w{2})` | pattern `<_> {`',
      '{app="x"} | json a="{", b="}"',
      '{app="x"} | a="{" or b=`}`',
      'label_replace(rate({app="x"}[1m]), "a", "{b=\\"c\\"}", "src", "(.*)")',
    ],
  ],
];

describeClasses('LogQL parser differentials, by token class: refused, or every selector Loki reads is enforced', CLASSES, (q) => expectSafe(q));

describe('LogQL token classes: exact outcomes', () => {
  const { out, refused } = exactOutcomes((q) => run(q));

  it('escaped braces and quotes stay inside the string', () => {
    expect(out('{app="x"} |= "\\x7bnamespace=\\x22b\\x22\\x7d"')).toBe(`{app="x", ${M}} |= "\\x7bnamespace=\\x22b\\x22\\x7d"`);
    expect(out('{app="\\"}", b="c"}')).toBe(`{app="\\"}", b="c", ${M}}`);
  });

  it('escapes Loki rejects are refused (never read as ending the string elsewhere)', () => {
    for (const q of ['{app="x"} |= "\\q{b=\\"c\\"}"', '{app="x"} |= "\\\'"', '{app="x"} |= "\\x7"', '{app="x"} |= "\\17"', '{app="x"} |= "\\777"', '{app="x"} |= "a\\\n{b=\\"c\\"}"']) {
      expect(refused(q), q).toBe(true);
    }
  });

  it('function names are label names where no call follows, as for Loki (vector and label_replace, which the grammar reserves, in any case)', () => {
    expect(out('{label_replace="x"}')).toBe(`{label_replace="x", ${M}}`);
    expect(out('{Vector=~"x", b="c"}')).toBe(`{Vector=~"x", b="c", ${M}}`);
    expect(out('{vector\n="x"}')).toBe(`{vector\n="x", ${M}}`);
    expect(out('sum by (vector) (rate({app="x"}[5m]))')).toBe(`sum by (vector) (rate({app="x", ${M}}[5m]))`);
    expect(out('{app="x"} | drop vector, label_replace')).toBe(`{app="x", ${M}} | drop vector, label_replace`);
    expect(out('label_replace(rate({label_replace="x"}[5m]), "vector", "$1", "label_replace", "(.*)")')).toBe(
      `label_replace(rate({label_replace="x", ${M}}[5m]), "vector", "$1", "label_replace", "(.*)")`,
    );
    // A call follows (Loki's isFunction: "(", or by/without then "("): not a label name.
    for (const q of ['{vector ("x")}', '{vector by="x"}', '{vector without="x"}']) expect(refused(q), q).toBe(true);
  });

  it('numbers with _ between digits, as Loki reads them (Go syntax, strconv.ParseFloat); other forms refused', () => {
    expect(out('rate({app="x"}[5m]) > 1_000')).toBe(`rate({app="x", ${M}}[5m]) > 1_000`);
    expect(out('{app="x"} | n > 1_000.5_0')).toBe(`{app="x", ${M}} | n > 1_000.5_0`);
    expect(out('quantile_over_time(0.9_9, {app="x"} | unwrap n [5m])')).toBe(`quantile_over_time(0.9_9, {app="x", ${M}} | unwrap n [5m])`);
    expect(out('vector(1_000) + rate({app="x"}[5m])')).toBe(`vector(1_000) + rate({app="x", ${M}}[5m])`);
    // Loki reads topk's parameter with strconv.Atoi, which takes no `_`; `_` not between digits, an octal 9,
    // a duration or byte size (model.ParseDuration and time.ParseDuration take no `_`): Loki refuses them too.
    for (const q of ['topk(1_0, rate({app="x"}[5m]))', '{app="x"} | n > 1__000', '{app="x"} | n > 1_000_', '{app="x"} | n > 0_9', '{app="x"} | d > 1_0s', 'rate({app="x"}[1_0m])', 'rate({app="x"}[5m] offset 1_0m)']) {
      expect(refused(q), q).toBe(true);
    }
  });

  it('byte sizes Loki reads without the grammar\'s B ending (go-humanize ParseBytes); the forms Loki refuses stay refused', () => {
    for (const unit of ['B', 'k', 'K', 'M', 'G', 'T', 'P', 'kB', 'KB', 'MB', 'GB', 'TB', 'PB', 'ki', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'kiB', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']) {
      expect(out(`{app="x"} | size > 20${unit}`), unit).toBe(`{app="x", ${M}} | size > 20${unit}`);
    }
    expect(out('sum(count_over_time({app="x"} | logfmt | size >= 1.5Mi or size < .5K [5m]))')).toBe(`sum(count_over_time({app="x", ${M}} | logfmt | size >= 1.5Mi or size < .5K [5m]))`);
    expect(out('{app="x"} | logfmt | size > 3kiB, level="error"')).toBe(`{app="x", ${M}} | logfmt | size > 3kiB, level="error"`);
    // Go reads `.5` as a number, ParseBytes `.5KB` as 500 bytes; the grammar has no byte size with a leading `.`.
    expect(out('{app="x"} | size < .5KB')).toBe(`{app="x", ${M}} | size < .5KB`);
    // Loki: `20k` then an identifier `b`; a duration `20m` then `B`; no byte rune; not a bytes suffix; a digit after the
    // suffix; an identifier, not a number; an octal 9; a byte size as a range or topk's parameter.
    for (const q of ['{app="x"} | size > 20kb', '{app="x"} | size > 20Mb', '{app="x"} | size > 20mB', '{app="x"} | size > 20b', '{app="x"} | size > 20EB', '{app="x"} | size > 20KK', '{app="x"} | size > 20K5', '{app="x"} | size > x20K', '{app="x"} | size > 089K', 'rate({app="x"}[5K])', 'topk(5K, rate({app="x"}[5m]))']) {
      expect(refused(q), q).toBe(true);
    }
  });

  it('character literals are refused (Loki reads them as identifiers, the grammar has none)', () => {
    expect(refused("{app=\"x\"} |= '\"' {b=\"c\"} '\"'")).toBe(true);
    expect(refused("sum by ('x') (rate({app=\"x\"}[1m]))")).toBe(true);
  });

  it('comments: the matchers go before a comment that would hide the closing brace', () => {
    expect(out('{app="x" # }\n}')).toBe(`{app="x", ${M} # }\n}`);
    expect(out('{app="x" /* } */}')).toBe(`{app="x", ${M} /* } */}`);
    expect(out('{app="x"} /*/ {b="c"} */')).toBe(`{app="x", ${M}} /*/ {b="c"} */`);
  });

  it('line comments end at LF only: CR, NEL and U+2028 leave the rest of the line in the comment, as for Loki', () => {
    for (const eol of ['\r', '\u0085', '\u2028', '\u2029']) {
      for (const c of ['#', '//']) {
        const q = `{app="x"} ${c} c${eol}{b="c"}`;
        expect(out(q), JSON.stringify(q)).toBe(`{app="x", ${M}} ${c} c${eol}{b="c"}`);
        expect(lokiSelectors(q)).toHaveLength(1);
      }
    }
    expect(out('rate({app="x"}[1m]) # c\r\n/ rate({b="c"}[1m])')).toBe(`rate({app="x", ${M}}[1m]) # c\r\n/ rate({b="c", ${M}}[1m])`);
  });

  it('only space, tab, CR and LF are blanks: any other space character is refused', () => {
    for (const ws of ['\v', '\f', '\u0085', '\u00a0', '\u1680', '\u2028', '\u2029', '\u3000', '\u200b']) {
      expect(refused(`{app="x"}${ws}|= "y"`), JSON.stringify(ws)).toBe(true);
    }
    expect(out('{app="x"}\t|= "y"\r\n')).toBe(`{app="x", ${M}}\t|= "y"\r\n`);
  });

  it('keywords cannot be label names in any case', () => {
    for (const q of ['{by="x"}', '{BY="x"}', '{Or="x"}', '{json="x"}', '{offset="x"}']) expect(refused(q), q).toBe(true);
    expect(out('{rate="x"}')).toBe(`{rate="x", ${M}}`);
  });

  it('operators are joined only when adjacent', () => {
    for (const q of ['{app="x"} | = "y"', '{app="x"} ! = "y"', '{app= ~"x"}', '{app! ="x"}', '{app=="x"}']) expect(refused(q), q).toBe(true);
    expect(out('{app=~ "x"}')).toBe(`{app=~ "x", ${M}}`);
  });

  it('ranges are read raw up to the first ]', () => {
    for (const q of ['rate({app="x"}[5m {b="c"}])', 'rate({app="x"}[5m)', 'rate({app="x"}[5m]]) {b="c"}']) expect(refused(q), q).toBe(true);
    expect(out('rate({app="x"}[5m] # ]\n)')).toBe(`rate({app="x", ${M}}[5m] # ]\n)`);
  });
});

// ---------------------------------------------------------------------------
// Fuzz: valid seeds with adversarial characters inserted
// ---------------------------------------------------------------------------

const SEEDS = [
  '{app="api"}',
  '{app="api", env=~"prod|dev"} |= "error" != `timeout` # c\n| json | level="error"',
  'sum by (level) (count_over_time({app="api"} |~ "x{2}" | logfmt [5m]))',
  'rate({app="a"}[1m]) / rate({app="b"} /* {c="d"} */ [1m])',
  '{app="api"} | line_format "{{.a}}" | label_format b=`{{ "}" }}`',
  'topk(3, sum by (x) (rate({app="api"} | unwrap_x="1" [5m] offset 1h)))',
  '{app="api"} | n > 1.5e3 and d < 1h30m or b >= 1KiB',
];
const FRAGMENTS = [
  '{', '}', '"', "'", '`', '#', '//', '/*', '*/', '\n', '\r', '\t', '\v', '\f', '\u0085', '\u00a0', '\u2028', '\ufeff', '\u0000',
  '\\', '\\"', '\\x7b', '\\u007d', '\\q', '[', ']', '|', '=', '~', '!', ',', ' ', 'a', 'é', '٣', '0x', '1e', '.', '_', '--',
  'by', 'OR', '{b="c"}', '"}"', "'{'", '`{`', '"{', '}"', 'namespace="b"', '(', ')',
];

describe('LogQL lexical fuzz against the Loki token oracle', () => {
  it('inserted adversarial fragments: refused, or every selector Loki reads carries the policy', () => {
    expect(spliceFuzz(SEEDS, FRAGMENTS, (q) => expectSafe(q))).toBeGreaterThan(100);
  });
});

// ---------------------------------------------------------------------------
// Structured fuzz: queries built from tricky but valid tokens
// ---------------------------------------------------------------------------

const gap = fc.constantFrom('', ' ', '\t', '\n', '\r\n', ' # c {x="y"} " `\n', ' // {x="y"} "\n', ' /* } { " ` # */ ', '/**/', ' /*/ { */ ');
const sep = fc.constantFrom(' ', '\n', '\t', ' # {x="y"}\n', ' /* { */ ');
const dq = fc
  .array(fc.constantFrom('{', '}', 'a', ' ', '#', '/*', '*/', '//', '`', "'", '\\"', '\\\\', '\\x7b', '\\x7d', '\\u007b', '\\U0000007d', '\\173', '\\n', '\\t', 'é', '🚀', '[', ']', '|'), { maxLength: 6 })
  .map((cs) => `"${cs.join('')}"`);
const raw = fc.array(fc.constantFrom('{', '}', '"', "'", '#', '/*', '\\', '\n', '\r', 'a', ' ', '[', ']'), { maxLength: 6 }).map((cs) => `\`${cs.join('')}\``);
const lit = fc.oneof(dq, raw);
const labelName = fc.constantFrom('app', 'env', 'namespace', 'rate', 'ip', 'Namespace', '_x', 'by', 'é');
const matchOp = fc.constantFrom('=', '!=', '=~', '!~');
const selector = fc
  .tuple(gap, lit, fc.array(fc.tuple(gap, gap, labelName, gap, matchOp, gap, lit), { maxLength: 2 }), gap)
  .map(([g0, v0, rest, g9]) => `{${g0}app="x"${rest.map(([a, b, n, c, o, d, v]) => `${a},${b}${n}${c}${o}${d}${v}`).join('')}${g9}}`);
const stage = fc.oneof(
  fc.tuple(fc.constantFrom('|=', '!=', '|~', '!~', '|>', '!>'), gap, lit).map(([o, g, v]) => `${o}${g}${v}`),
  fc.tuple(gap, fc.constantFrom('json', 'logfmt', 'unpack', 'decolorize')).map(([g, k]) => `|${g}${k}`),
  fc.tuple(gap, fc.constantFrom('line_format', 'pattern', 'regexp'), sep, lit).map(([g, k, s, v]) => `|${g}${k}${s}${v}`),
  fc.tuple(gap, gap, lit).map(([g, h, v]) => `|${g}label_format${h === '' ? ' ' : h}x=${v}`),
  fc.tuple(gap, fc.constantFrom('level', 'x'), gap, fc.constantFrom('=', '!=', '=~'), gap, lit).map(([g, n, a, o, b, v]) => `|${g}${n}${a}${o}${b}${v}`),
);
const logQuery = fc.tuple(selector, fc.array(fc.tuple(gap, stage), { maxLength: 3 })).map(([s, st]) => s + st.map(([g, x]) => g + x).join(''));
const anyQuery = fc.oneof(
  logQuery,
  fc.tuple(logQuery, gap).map(([q, g]) => `count_over_time(${q}${g}[5m])`),
  fc.tuple(logQuery, logQuery, gap).map(([a, b, g]) => `sum by (x) (rate(${a} [1m]))${g}/${g}sum(rate(${b}[1m]))`),
);

describe('LogQL structured lexical fuzz against the Loki token oracle', () => {
  it('tricky strings, raw strings, comments and blanks around every token: refused, or every selector Loki reads carries the policy', () => {
    expect(structuredFuzz(anyQuery, FRAGMENTS, (q) => expectSafe(q))).toBeGreaterThan(300);
  });
});
