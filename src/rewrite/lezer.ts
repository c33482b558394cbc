/**
 * Generic helpers for the Lezer-based rewriters (PromQL, LogQL, TraceQL):
 * strict parsing with a position on failure, error-node detection, a cheap
 * lexical pre-scan for nesting depth, and unquoting of Go-style string
 * literals ("…", '…', `…`) exactly as the backends' Go lexers do.
 *
 * Nothing here knows about a particular grammar; callers pass node type ids.
 */
import type { Tree } from '@lezer/common';
import type { LRParser } from '@lezer/lr';
import { LONE_SURROGATE, isWellFormedUnicode } from '../util/unicode.ts';

export { isWellFormedUnicode };

/** A string literal the backend would reject. `offset` is relative to the literal's first character. */
export class LiteralError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.name = 'LiteralError';
    this.offset = offset;
  }
}

export type ParseOutcome = { readonly ok: true; readonly tree: Tree } | { readonly ok: false; readonly pos: number };

const strictParsers = new WeakMap<LRParser, LRParser>();

/**
 * Parse without error recovery. Lezer's recovery can take seconds on hostile
 * input (64 KiB of `)`), and we never use a recovered tree anyway: a query
 * the gateway cannot parse is rejected.
 */
export function parseStrict(parser: LRParser, text: string): ParseOutcome {
  let strict = strictParsers.get(parser);
  if (strict === undefined) {
    strict = parser.configure({ strict: true });
    strictParsers.set(parser, strict);
  }
  // A strict parse reports failure by throwing; only the message is read, so no
  // stack trace is captured (that costs as much as parsing a short query, and
  // the number-respelling and LogQL repair loops fail on purpose).
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return { ok: true, tree: strict.parse(text) };
  } catch (e) {
    if (e instanceof SyntaxError) {
      const m = /No parse at (\d+)/.exec(e.message);
      return { ok: false, pos: m?.[1] === undefined ? 0 : Number(m[1]) };
    }
    // Not a parse failure (a bug, or a resource limit): parsing is deterministic,
    // so parse again with stack traces on and let that error carry one.
    Error.stackTraceLimit = limit;
    strict.parse(text);
    throw e;
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** Position of the first error node (⚠), or -1. Strict parses never have one; this is defence in depth. */
export function firstErrorPos(tree: Tree): number {
  let pos = -1;
  tree.iterate({
    enter(n) {
      if (pos >= 0) return false;
      if (n.type.isError) {
        pos = n.from;
        return false;
      }
      return undefined;
    },
  });
  return pos;
}

/** A short human description of what sits at `pos`, for parse error messages. */
export function describeAt(text: string, pos: number): string {
  if (pos >= text.length) return 'unexpected end of input';
  const cp = text.codePointAt(pos) ?? 0;
  const ch = String.fromCodePoint(cp);
  if (/\s/.test(ch)) return `unexpected ${JSON.stringify(ch)}`;
  // Show the token-ish run starting at pos, bounded.
  const m = /^[A-Za-z0-9_:.]+/.exec(text.slice(pos, pos + 40));
  return `unexpected ${JSON.stringify(m === null ? ch : m[0])}`;
}

export interface PrescanOptions {
  /** Line comment introducer, e.g. '#', or null when the language has none. */
  readonly lineComment: string | null;
  /** Characters that open a string which may contain backslash escapes. */
  readonly escapedQuotes: string;
  /** Characters that open a raw string (no escapes, ends at the same character). */
  readonly rawQuotes: string;
}

export interface PrescanResult {
  /** Maximum nesting of (), [] and {} outside strings and comments. */
  readonly bracketDepth: number;
  /** Count of operator characters (+ - * / % ^ < > = !) outside strings, comments and braces. */
  readonly operatorChars: number;
}

const PRESCAN_COMMENT = 1;
const PRESCAN_ESCAPED = 2;
const PRESCAN_RAW = 4;

/** Per-options class table for ASCII (bit flags above), built once per options object. */
const prescanTables = new WeakMap<PrescanOptions, Uint8Array>();

function prescanTable(opts: PrescanOptions): Uint8Array {
  let t = prescanTables.get(opts);
  if (t !== undefined) return t;
  t = new Uint8Array(128);
  const lc = opts.lineComment;
  for (let c = 0; c < 128; c++) {
    const ch = String.fromCharCode(c);
    // '' would start a comment everywhere (startsWith('') is true); the confirmation below keeps that.
    t[c] =
      (lc !== null && (lc === '' || lc.charCodeAt(0) === c) ? PRESCAN_COMMENT : 0) |
      (opts.escapedQuotes.includes(ch) ? PRESCAN_ESCAPED : 0) |
      (opts.rawQuotes.includes(ch) ? PRESCAN_RAW : 0);
  }
  prescanTables.set(opts, t);
  return t;
}

/**
 * One linear pass over the text, skipping strings and comments, measuring
 * bracket nesting. Used before parsing to refuse pathologically nested input
 * cheaply (and with a precise error), and to classify parser failures caused
 * by Lezer's own limits.
 *
 * Runs on every query, so ASCII characters are classified through a table
 * (pass the options as a module constant to build it once); other characters
 * take the generic checks, which give the same answers.
 */
export function prescan(text: string, opts: PrescanOptions): PrescanResult {
  let depth = 0;
  let braces = 0;
  let max = 0;
  let ops = 0;
  const n = text.length;
  const lc = opts.lineComment;
  const table = prescanTable(opts);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    let cls: number;
    if (c < 128) {
      cls = table[c] as number;
    } else {
      const ch = text[i] as string;
      cls = (lc !== null && (lc === '' || lc.charCodeAt(0) === c) ? PRESCAN_COMMENT : 0) | (opts.escapedQuotes.includes(ch) ? PRESCAN_ESCAPED : 0) | (opts.rawQuotes.includes(ch) ? PRESCAN_RAW : 0);
    }
    if (cls !== 0) {
      if ((cls & PRESCAN_COMMENT) !== 0 && text.startsWith(lc as string, i)) {
        while (i < n && text.charCodeAt(i) !== 10 && text.charCodeAt(i) !== 13) i++;
        continue;
      }
      if ((cls & PRESCAN_ESCAPED) !== 0) {
        i++;
        while (i < n && text.charCodeAt(i) !== c && text.charCodeAt(i) !== 10) {
          if (text.charCodeAt(i) === 92) i++;
          i++;
        }
        continue;
      }
      if ((cls & PRESCAN_RAW) !== 0) {
        i++;
        while (i < n && text.charCodeAt(i) !== c) i++;
        continue;
      }
    }
    switch (c) {
      case 40: // (
      case 91: // [
      case 123: // {
        depth++;
        if (c === 123) braces++;
        if (depth > max) max = depth;
        break;
      case 41: // )
      case 93: // ]
      case 125: // }
        if (depth > 0) depth--;
        if (c === 125 && braces > 0) braces--;
        break;
      case 43: // +
      case 45: // -
      case 42: // *
      case 47: // /
      case 37: // %
      case 94: // ^
      case 60: // <
      case 62: // >
      case 61: // =
      case 33: // !
        if (braces === 0) ops++;
        break;
      default:
        break;
    }
  }
  return { bracketDepth: max, operatorChars: ops };
}

/**
 * Maximum nesting depth counting only nodes for which `counts(typeId)` is
 * true (e.g. expression nodes). Iterative; safe for any tree Lezer produced.
 */
export function nestingDepth(tree: Tree, counts: (typeId: number) => boolean): number {
  const c = tree.cursor();
  const stack: number[] = [];
  let depth = 0;
  let max = 0;
  for (;;) {
    const counted = counts(c.type.id);
    if (counted) {
      depth++;
      if (depth > max) max = depth;
    }
    if (c.firstChild()) {
      stack.push(counted ? 1 : 0);
      continue;
    }
    if (counted) depth--;
    for (;;) {
      if (c.nextSibling()) break;
      if (!c.parent()) return max;
      depth -= stack.pop() ?? 0;
    }
  }
}

export interface UnquoteDialect {
  /** Single-quoted strings are strings (PromQL) rather than invalid (Go strconv / LogQL). */
  readonly singleQuotedStrings: boolean;
  /** Go's strconv.Unquote drops '\r' from raw strings; Prometheus' own unquote does not. */
  readonly rawStripsCR: boolean;
}

export const PROMQL_STRINGS: UnquoteDialect = { singleQuotedStrings: true, rawStripsCR: false };
export const GO_STRINGS: UnquoteDialect = { singleQuotedStrings: false, rawStripsCR: true };

// ignoreBOM: a leading U+FEFF is part of a Go string's value; by default a
// TextDecoder drops it, and `x!="\ufeffprod"` would read as `x!="prod"`, an
// "already enforced" matcher that enforces nothing.
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function pushUtf8(out: number[], cp: number): void {
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 63));
  else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
  else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
}

/**
 * The value of a string literal, with the backends' Go semantics
 * (Prometheus' lexer + util/strutil.Unquote, or Go strconv.Unquote).
 *
 * Returns `null` when the literal is valid but its value is not well-formed
 * UTF-8 (e.g. "\xff"): such a value can never equal a policy value, and
 * callers must treat it as unknown. Throws `LiteralError` for anything the
 * backend's lexer rejects (unterminated, bad escapes, raw newline, surrogate
 * code points, lone surrogates in the text).
 */
export function unquoteStringLiteral(raw: string, dialect: UnquoteDialect = PROMQL_STRINGS): string | null {
  const n = raw.length;
  const q = raw.charCodeAt(0);
  if (n < 2 || raw.charCodeAt(n - 1) !== q) throw new LiteralError('unterminated quoted string', 0);
  if (q === 96) {
    // `raw`
    const body = raw.slice(1, n - 1);
    if (body.includes('`')) throw new LiteralError('unexpected backtick in raw string', 1 + body.indexOf('`'));
    checkWellFormed(body, 1);
    return dialect.rawStripsCR ? body.replaceAll('\r', '') : body;
  }
  if (q !== 34 && !(q === 39 && dialect.singleQuotedStrings)) throw new LiteralError('invalid string quote', 0);
  // Fast path: nothing to unescape.
  let simple = true;
  for (let i = 1; i < n - 1; i++) {
    const c = raw.charCodeAt(i);
    if (c === 92 || c === q || c === 10) {
      simple = false;
      break;
    }
  }
  if (simple) {
    const body = raw.slice(1, n - 1);
    checkWellFormed(body, 1);
    return body;
  }
  const bytes: number[] = [];
  let i = 1;
  const end = n - 1;
  while (i < end) {
    const c = raw.charCodeAt(i);
    if (c === 10) throw new LiteralError('unterminated quoted string', i);
    if (c === q) throw new LiteralError('unterminated quoted string', i);
    if (c !== 92) {
      const cp = raw.codePointAt(i) ?? c;
      if (cp >= 0xd800 && cp <= 0xdfff) throw new LiteralError('invalid UTF-8 rune', i);
      pushUtf8(bytes, cp);
      i += cp > 0xffff ? 2 : 1;
      continue;
    }
    // Backslash escape.
    if (i + 1 >= end) throw new LiteralError('escape sequence not terminated', i);
    const e = raw[i + 1] as string;
    const start = i;
    i += 2;
    switch (e) {
      case 'a':
        bytes.push(7);
        break;
      case 'b':
        bytes.push(8);
        break;
      case 'f':
        bytes.push(12);
        break;
      case 'n':
        bytes.push(10);
        break;
      case 'r':
        bytes.push(13);
        break;
      case 't':
        bytes.push(9);
        break;
      case 'v':
        bytes.push(11);
        break;
      case '\\':
        bytes.push(92);
        break;
      case '"':
      case "'":
        if (e.charCodeAt(0) !== q) throw new LiteralError(`unknown escape sequence \\${e}`, start);
        bytes.push(q);
        break;
      case 'x':
      case 'u':
      case 'U': {
        const digits = e === 'x' ? 2 : e === 'u' ? 4 : 8;
        if (i + digits > end) throw new LiteralError('escape sequence not terminated', start);
        let v = 0;
        for (let k = 0; k < digits; k++) {
          const d = hexVal(raw.charCodeAt(i + k));
          if (d < 0) throw new LiteralError('illegal character in escape sequence', i + k);
          v = v * 16 + d;
        }
        i += digits;
        if (e === 'x') {
          bytes.push(v);
        } else {
          if (v > 0x10ffff || (v >= 0xd800 && v < 0xe000)) throw new LiteralError('escape sequence is an invalid Unicode code point', start);
          pushUtf8(bytes, v);
        }
        break;
      }
      case '0':
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7': {
        if (i + 2 > end) throw new LiteralError('escape sequence not terminated', start);
        let v = e.charCodeAt(0) - 48;
        for (let k = 0; k < 2; k++) {
          const d = raw.charCodeAt(i + k) - 48;
          if (d < 0 || d > 7) throw new LiteralError('illegal character in escape sequence', i + k);
          v = v * 8 + d;
        }
        i += 2;
        if (v > 255) throw new LiteralError('escape sequence is an invalid Unicode code point', start);
        bytes.push(v);
        break;
      }
      default:
        throw new LiteralError(`unknown escape sequence \\${e === '\n' ? 'n (newline)' : e}`, start);
    }
  }
  try {
    return utf8Strict.decode(Uint8Array.from(bytes));
  } catch {
    return null;
  }
}

function checkWellFormed(body: string, offset: number): void {
  if (isWellFormedUnicode(body)) return;
  const m = LONE_SURROGATE.exec(body);
  if (m !== null) throw new LiteralError('invalid UTF-8 rune', offset + m.index);
}

// Escaped when quoting: backslash, double quote, C0 controls, DEL, C1 controls,
// the Unicode line/paragraph separators (harmless to the backends, but
// escaping keeps logs and terminals honest) and U+FEFF (a byte-order mark
// inside TraceQL text is refused, Go's scanners treat it specially).
const GO_NEEDS_ESCAPE = /["\\\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]/;
const GO_ESCAPE_ALL = /["\\\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]/g;
const GO_SHORT_ESCAPES: Readonly<Record<string, string>> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\u0007': '\\a', '\b': '\\b', '\f': '\\f', '\v': '\\v' };

/**
 * A double-quoted Go string literal (the syntax PromQL, LogQL and TraceQL share)
 * whose value is exactly `value`, which must be well-formed Unicode (callers
 * check, with their own error). Never lets a value end the string.
 */
export function quoteGoString(value: string): string {
  if (!GO_NEEDS_ESCAPE.test(value)) return `"${value}"`;
  return `"${value.replace(GO_ESCAPE_ALL, (ch) => {
    const short = GO_SHORT_ESCAPES[ch];
    if (short !== undefined) return short;
    const c = ch.charCodeAt(0);
    return c < 0x80 ? `\\x${c.toString(16).padStart(2, '0')}` : `\\u${c.toString(16).padStart(4, '0')}`;
  })}"`;
}

/**
 * 1-based line and column of `pos`, the column in characters (code points), as
 * Go's text/scanner counts them and Loki and Tempo report parse errors.
 */
export function lineCol(text: string, pos: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(Math.max(pos, 0), text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  let col = 1;
  for (let i = lineStart; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xdc00 && c <= 0xdfff && i > lineStart) continue; // low surrogate: same character
    col++;
  }
  return { line, col };
}
