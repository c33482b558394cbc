/**
 * A token-level oracle for LogQL, written for the tests from the rules of
 * Loki's lexer and independent of src/rewrite (and of ./logql-oracle.ts,
 * whose scan is a regular expression over `{…}`):
 *
 * - Go `text/scanner` in GoTokens mode: whitespace is only ' ', '\t', '\n',
 *   '\r'; `//` and `/* *\/` comments are skipped; "…" strings with Go escape
 *   checking (an unknown escape, a short \x/\u/\U/octal escape, a raw newline
 *   or the end of input are scanner errors); `…` raw strings; '…' character
 *   literals (exactly one character, else an error) that LogQL turns into an
 *   identifier; a leading byte-order mark is skipped; NUL is an error
 *   wherever it is read; identifiers are Go identifiers (\p{L}, '_', then
 *   \p{Nd}); numbers are read as one token and never contain a delimiter;
 * - LogQL's Lex on top: `#` skips to the end of the line, `[` is read raw up
 *   to `]`, two-character operators are joined when the second character
 *   follows directly, keywords are compared lower-cased, strings are
 *   unquoted (octal above \377 and surrogate or out-of-range code points are
 *   errors).
 *
 * Every scanner or lexer error makes Loki refuse the query, so the oracle
 * throws LokiOracleError on the first one. Where the model is unsure it
 * errs towards *reading more* selectors, never fewer: the selectors it
 * finds are the `{` tokens of the stream, each parsed as Loki's grammar
 * reads a selector (`{}` or `name op string` items separated by `,`); a
 * `{` that does not open such a selector, or a stray `}`, is a Loki syntax
 * error and throws as well.
 */

export class LokiOracleError extends Error {}

export type LokiTokKind = 'ident' | 'string' | 'number' | 'range' | 'op';

export interface LokiTok {
  readonly kind: LokiTokKind;
  /** ident: the text; string: the unquoted value (null when not valid UTF-8); op: the operator; others: source text. */
  readonly value: string | null;
  readonly from: number;
  readonly to: number;
}

export interface LokiOracleMatcher {
  readonly name: string;
  readonly op: string;
  readonly value: string | null;
}

export interface LokiOracleSelector {
  readonly from: number;
  readonly to: number;
  readonly matchers: readonly LokiOracleMatcher[];
}

const TWO_CHAR_OPS = new Set(['!=', '=~', '!~', '!>', '|=', '|~', '|>', '==', '>=', '<=']);

/** Words Loki's lexer always turns into keyword tokens, compared lower-cased (never a label name). */
const KEYWORDS = new Set([
  'by', 'without', 'bool', 'offset', 'on', 'ignoring', 'group_left', 'group_right', 'or', 'and', 'unless',
  'json', 'regexp', 'logfmt', 'unpack', 'pattern', 'label_format', 'line_format', 'decolorize', 'drop', 'keep',
  'variants', 'of', 'unwrap',
]);
// Not here: function names (`rate`, `sum`, `ip`, `label_replace`, …). Loki checks them first and reads
// them as identifiers unless `(` (or `by`/`without` and `(`) follows, so they can be label names.

const isGoWs = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r';
const isLetter = (c: string): boolean => c === '_' || /^\p{L}$/u.test(c);
const isDigit = (c: string): boolean => /^\p{Nd}$/u.test(c);
const isDecimal = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';

// ignoreBOM: Go keeps a leading U+FEFF in a string's value; TextDecoder would drop it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const enc = new TextEncoder();

/** Decode a "…" literal's body the way Prometheus' strutil.Unquote does. Throws on a bad escape. */
function unquoteInterpreted(body: string): string | null {
  const bytes: number[] = [];
  const simple: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92, '"': 34 };
  const cps = [...body];
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i] as string;
    if (c !== '\\') {
      bytes.push(...enc.encode(c));
      continue;
    }
    const e = cps[++i];
    if (e !== undefined && simple[e] !== undefined) {
      bytes.push(simple[e] as number);
    } else if (e === 'x' || e === 'u' || e === 'U') {
      const len = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      const hex = cps.slice(i + 1, i + 1 + len).join('');
      if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) throw new LokiOracleError('invalid char escape');
      i += len;
      const v = parseInt(hex, 16);
      if (e === 'x') bytes.push(v);
      else if (v > 0x10ffff || (v >= 0xd800 && v < 0xe000)) throw new LokiOracleError('invalid code point');
      else bytes.push(...enc.encode(String.fromCodePoint(v)));
    } else if (e !== undefined && /[0-7]/.test(e)) {
      const oct = cps.slice(i, i + 3).join('');
      if (!/^[0-7]{3}$/.test(oct) || parseInt(oct, 8) > 255) throw new LokiOracleError('invalid octal escape');
      i += 2;
      bytes.push(parseInt(oct, 8));
    } else {
      throw new LokiOracleError(`invalid char escape \\${e ?? ''}`);
    }
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    return null;
  }
}

/** End (exclusive) of a Go quoted literal starting at `i`; checks escapes like scanEscape. */
function quotedEnd(text: string, i: number, quote: string): { end: number; chars: number } {
  let j = i + 1;
  let chars = 0;
  for (;;) {
    const c = text[j];
    if (c === undefined || c === '\n') throw new LokiOracleError('literal not terminated');
    if (c === quote) return { end: j + 1, chars };
    chars++;
    if (c === '\\') {
      const e = text[j + 1];
      if (e !== undefined && ('abfnrtv\\'.includes(e) || e === quote)) j += 2;
      else if (e !== undefined && /[0-7]/.test(e)) {
        if (!/^[0-7]{3}$/.test(text.slice(j + 1, j + 4))) throw new LokiOracleError('invalid char escape');
        j += 4;
      } else if (e === 'x' || e === 'u' || e === 'U') {
        const len = e === 'x' ? 2 : e === 'u' ? 4 : 8;
        if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(text.slice(j + 2, j + 2 + len))) throw new LokiOracleError('invalid char escape');
        j += 2 + len;
      } else throw new LokiOracleError('invalid char escape');
      continue;
    }
    j += (text.codePointAt(j) ?? 0) > 0xffff ? 2 : 1;
  }
}

/** Loki's token stream for `text`. Throws LokiOracleError where Loki's scanner or lexer reports an error. */
export function lokiTokens(text: string): LokiTok[] {
  if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text)) throw new LokiOracleError('invalid UTF-8');
  if (text.includes('\u0000')) throw new LokiOracleError('invalid character NUL');
  const toks: LokiTok[] = [];
  const n = text.length;
  let i = text.startsWith('\ufeff') ? 1 : 0;
  while (i < n) {
    const c = String.fromCodePoint(text.codePointAt(i) as number);
    if (isGoWs(c)) {
      i++;
      continue;
    }
    if (c === '/' && text[i + 1] === '/') {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? n : nl;
      continue;
    }
    if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) throw new LokiOracleError('comment not terminated');
      i = end + 2;
      continue;
    }
    if (c === '#') {
      // LogQL's Lex: skip up to and including the newline.
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
      continue;
    }
    const from = i;
    if (isLetter(c)) {
      let j = i + c.length;
      for (;;) {
        const d = text.codePointAt(j);
        if (d === undefined) break;
        const ch = String.fromCodePoint(d);
        if (!isLetter(ch) && !isDigit(ch)) break;
        j += ch.length;
      }
      toks.push({ kind: 'ident', value: text.slice(i, j), from, to: j });
      i = j;
      continue;
    }
    if (isDecimal(c) || (c === '.' && isDecimal(text[i + 1]))) {
      // Numbers, and Loki's duration/bytes suffixes: no delimiter can be part of one.
      let j = i + 1;
      while (j < n && /[0-9A-Za-z_.µ]/.test(text[j] as string)) {
        if (/[eEpP]/.test(text[j] as string) && (text[j + 1] === '+' || text[j + 1] === '-')) j++;
        j++;
      }
      toks.push({ kind: 'number', value: text.slice(i, j), from, to: j });
      i = j;
      continue;
    }
    if (c === '"') {
      const { end } = quotedEnd(text, i, '"');
      toks.push({ kind: 'string', value: unquoteInterpreted(text.slice(i + 1, end - 1)), from, to: end });
      i = end;
      continue;
    }
    if (c === '`') {
      const end = text.indexOf('`', i + 1);
      if (end < 0) throw new LokiOracleError('literal not terminated');
      // Prometheus' strutil.Unquote keeps '\r' in raw strings; Go's strconv drops it. Either is possible here: unknown.
      const body = text.slice(i + 1, end);
      toks.push({ kind: 'string', value: body.includes('\r') ? null : body, from, to: end + 1 });
      i = end + 1;
      continue;
    }
    if (c === "'") {
      const { end, chars } = quotedEnd(text, i, "'");
      if (chars !== 1) throw new LokiOracleError('invalid char literal');
      // A Char token is no LogQL token: the lexer hands it on as an identifier.
      toks.push({ kind: 'ident', value: text.slice(i, end), from, to: end });
      i = end;
      continue;
    }
    if (c === '[') {
      const end = text.indexOf(']', i + 1);
      if (end < 0) throw new LokiOracleError("missing closing ']' in duration");
      toks.push({ kind: 'range', value: text.slice(i + 1, end), from, to: end + 1 });
      i = end + 1;
      continue;
    }
    const two = c + (text[i + 1] ?? '');
    if (TWO_CHAR_OPS.has(two)) {
      toks.push({ kind: 'op', value: two, from, to: i + 2 });
      i += 2;
      continue;
    }
    toks.push({ kind: 'op', value: c, from, to: i + c.length });
    i += c.length;
  }
  return toks;
}

/** Every stream selector in Loki's reading of `text`. Throws LokiOracleError where Loki refuses. */
export function lokiSelectors(text: string): LokiOracleSelector[] {
  const toks = lokiTokens(text);
  const out: LokiOracleSelector[] = [];
  const isOp = (t: LokiTok | undefined, v: string): boolean => t !== undefined && t.kind === 'op' && t.value === v;
  for (let k = 0; k < toks.length; k++) {
    const t = toks[k] as LokiTok;
    if (isOp(t, '}')) throw new LokiOracleError(`syntax error: unexpected } at ${t.from}`);
    if (!isOp(t, '{')) continue;
    const matchers: LokiOracleMatcher[] = [];
    let p = k + 1;
    if (!isOp(toks[p], '}')) {
      for (;;) {
        const name = toks[p];
        const op = toks[p + 1];
        const val = toks[p + 2];
        if (name === undefined || name.kind !== 'ident' || KEYWORDS.has((name.value as string).toLowerCase())) throw new LokiOracleError(`expected a label name at ${name?.from ?? text.length}`);
        if (op === undefined || op.kind !== 'op' || !['=', '!=', '=~', '!~'].includes(op.value as string)) throw new LokiOracleError(`expected a match operator at ${op?.from ?? text.length}`);
        if (val === undefined || val.kind !== 'string') throw new LokiOracleError(`expected a string at ${val?.from ?? text.length}`);
        matchers.push({ name: name.value as string, op: op.value as string, value: val.value });
        p += 3;
        if (isOp(toks[p], ',')) {
          p++;
          continue;
        }
        if (isOp(toks[p], '}')) break;
        throw new LokiOracleError(`expected , or } at ${toks[p]?.from ?? text.length}`);
      }
    }
    const close = toks[p] as LokiTok;
    out.push({ from: t.from, to: close.to, matchers });
    k = p;
  }
  return out;
}
