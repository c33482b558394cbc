import { parser } from '@prometheus-io/lezer-promql';
import { describe, expect, it } from 'vitest';
import {
  GO_STRINGS,
  LiteralError,
  PROMQL_STRINGS,
  describeAt,
  firstErrorPos,
  isWellFormedUnicode,
  nestingDepth,
  parseStrict,
  prescan,
  unquoteStringLiteral,
} from '../../src/rewrite/lezer.ts';

describe('unquoteStringLiteral (Go / Prometheus semantics)', () => {
  const ok: [string, string | null][] = [
    ['"abc"', 'abc'],
    ['""', ''],
    ["'a\\'b'", "a'b"],
    ["'a\"b'", 'a"b'],
    ['"a\'b"', "a'b"],
    ['"say \\"hi\\""', 'say "hi"'],
    ['`a\\b"\'`', 'a\\b"\''],
    ['`line\nbreak`', 'line\nbreak'],
    ['`cr\r`', 'cr\r'],
    ['"\\x41\\101\\u0041\\U00000041"', 'AAAA'],
    ['"\\a\\b\\f\\n\\r\\t\\v\\\\"', '\u0007\b\f\n\r\t\v\\'],
    ['"\\xc3\\xa9"', 'é'],
    ['"\\303\\251"', 'é'],
    ['"\\U0001F680"', '🚀'],
    ['"🚀 é"', '🚀 é'],
    ['"\\xff"', null],
    ['"\\xc3"', null],
  ];
  it.each(ok)('%j → %j', (raw, value) => {
    expect(unquoteStringLiteral(raw, PROMQL_STRINGS)).toBe(value);
  });

  const bad = ['"abc', '"', '`abc', '"\\q"', '"\\\'"', "'\\\"'", '"\\u00"', '"\\uD800"', '"\\U00110000"', '"\\400"', '"\\8"', '"\\x4"', '"a\nb"', '"\\', '"\\\n"', '"\uD800"'];
  it.each(bad)('rejects %j', (raw) => {
    expect(() => unquoteStringLiteral(raw, PROMQL_STRINGS)).toThrow(LiteralError);
  });

  it('Go dialect: single quotes are not strings, raw strings drop \\r', () => {
    expect(() => unquoteStringLiteral("'a'", GO_STRINGS)).toThrow(LiteralError);
    expect(unquoteStringLiteral('`a\r\nb`', GO_STRINGS)).toBe('a\nb');
    expect(unquoteStringLiteral('"a\\tb"', GO_STRINGS)).toBe('a\tb');
  });

  it('reports the offset of the problem', () => {
    try {
      unquoteStringLiteral('"ab\\qc"');
      throw new Error('no error');
    } catch (e) {
      expect(e).toBeInstanceOf(LiteralError);
      expect((e as LiteralError).offset).toBe(3);
    }
  });
});

describe('lexical and tree helpers', () => {
  const opts = { lineComment: '#', escapedQuotes: `"'`, rawQuotes: '`' };
  it('prescan measures bracket depth outside strings and comments', () => {
    expect(prescan('((a))', opts).bracketDepth).toBe(2);
    expect(prescan('f("((((", `[[[[`) # ((((\n', opts).bracketDepth).toBe(1);
    expect(prescan('x{a="\\"{{"}', opts).bracketDepth).toBe(1);
    expect(prescan('a + b - c', opts).operatorChars).toBe(2);
    expect(prescan('a{b="+"} + c', opts).operatorChars).toBe(1);
  });

  it('parseStrict returns the failure position; firstErrorPos finds recovered errors', () => {
    const r = parseStrict(parser, 'sum(');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.pos).toBe(4);
    const good = parseStrict(parser, 'sum(x)');
    expect(good.ok).toBe(true);
    if (good.ok) expect(firstErrorPos(good.tree)).toBe(-1);
    expect(firstErrorPos(parser.parse('x +'))).toBe(3);
    // Failures are cheap (no stack trace captured) and leave the global setting as it was.
    const before = Error.stackTraceLimit;
    expect(parseStrict(parser, '0X1f').ok).toBe(false);
    expect(Error.stackTraceLimit).toBe(before);
  });

  it('prescan gives the same answers for non-ASCII and unusual options', () => {
    expect(prescan('é("((", ((x)))', opts)).toEqual({ bracketDepth: 3, operatorChars: 0 });
    expect(prescan('a # ((\r(b)', opts)).toEqual({ bracketDepth: 1, operatorChars: 0 });
    const odd = { lineComment: '//', escapedQuotes: '"é', rawQuotes: '`\u00ff' };
    expect(prescan('a / (b) // ((\n[c]', odd)).toEqual({ bracketDepth: 1, operatorChars: 1 });
    expect(prescan('é(((é(\u00ff[[\u00ff(', odd)).toEqual({ bracketDepth: 2, operatorChars: 0 });
    expect(prescan('((x))', { lineComment: '', escapedQuotes: '', rawQuotes: '' })).toEqual({ bracketDepth: 0, operatorChars: 0 });
  });

  it('nestingDepth counts only the selected node types', () => {
    const tree = parser.parse('abs(abs(x))');
    const fc = parser.nodeSet.types.find((t) => t.name === 'FunctionCall')?.id;
    expect(nestingDepth(tree, (id) => id === fc)).toBe(2);
    expect(nestingDepth(tree, () => true)).toBeGreaterThan(4);
  });

  it('describeAt and isWellFormedUnicode', () => {
    expect(describeAt('up}', 2)).toBe('unexpected "}"');
    expect(describeAt('sum(', 4)).toBe('unexpected end of input');
    expect(describeAt('a offset', 2)).toBe('unexpected "offset"');
    expect(isWellFormedUnicode('a🚀')).toBe(true);
    expect(isWellFormedUnicode('a\uD800')).toBe(false);
    expect(isWellFormedUnicode('\uDC00a')).toBe(false);
  });
});
