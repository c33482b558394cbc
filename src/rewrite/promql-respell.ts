/**
 * Spellings Prometheus accepts and lezer-promql does not: number literals,
 * newer functions, duration keywords in another case. Each is respelled in
 * place with the same length, so positions in the tree stay those of the text.
 */
import { parser } from '@prometheus-io/lezer-promql';
import { parseStrict, type ParseOutcome } from './lezer.ts';

/**
 * Number literals that Prometheus 3.16 accepts (Go's strconv) and
 * lezer-promql does not lex: an upper-case `0X` prefix, `_` right after the
 * hex prefix, `_` between hex digits, a decimal point with no digit after it
 * (`5.`, `5.e3`). Each is respelled with the same length and value (`0X1f` →
 * `0x1f`, `0x1_f` → `0x01f`: each `_` becomes a leading zero; `5.` → `5 `,
 * `5.e3` → `5e3 `) so positions stay valid; only where Lezer failed (`pos`),
 * i.e. never inside a string, comment or identifier.
 */
const LEZER_REJECTED_NUMBER = /0[xX]_?[0-9a-fA-F](?:_?[0-9a-fA-F])*|[0-9](?:_?[0-9])*\.(?![0-9])(?:[eE][+-]?[0-9](?:_?[0-9])*)?/y;
/** Bounds the parse retries a hostile query can cause. */
export const MAX_RESPELLED_NUMBERS = 16;

export const respell = (text: string, r: { readonly from: number; readonly respelled: string }): string =>
  text.slice(0, r.from) + r.respelled + text.slice(r.from + r.respelled.length);

/**
 * Functions of the Prometheus release the gateway targets (3.16) that
 * lezer-promql (latest release 0.315) does not know yet, each with a stand-in
 * the grammar knows: the same length and the same call syntax (the grammar
 * does not check arguments). Lezer reads the stand-in, so the tree has the
 * call, its arguments and every selector where Prometheus has them; the text
 * forwarded keeps the real name. `integral`, `max_of` and `min_of` are
 * experimental in Prometheus (`--enable-feature=promql-experimental-functions`).
 */
const NEWER_FUNCTIONS: ReadonlyMap<string, string> = new Map([
  ['integral', 'increase'],
  // Also experimental: scalar functions of two scalars (`max_of(1m, step())`). Lezer reads them only inside a
  // range or offset, where Prometheus reads them as duration expressions.
  ['max_of', 'minute'],
  ['min_of', 'minute'],
]);

/**
 * Where Lezer failed at the `(` of a call to a function in NEWER_FUNCTIONS
 * (its name, then only blanks): that name and its stand-in. Prometheus reads
 * an identifier followed by `(` as a function call wherever an expression
 * may start, and function names are case-sensitive.
 */
export function newerFunctionAt(text: string, pos: number): { from: number; text: string; respelled: string } | null {
  if (text[pos] !== '(') return null;
  let end = pos;
  while (end > 0 && /[ \t\r\n]/.test(text[end - 1] as string)) end--;
  let from = end;
  while (from > 0 && /[A-Za-z0-9_]/.test(text[from - 1] as string)) from--;
  if (from > 0 && /[A-Za-z0-9_:.]/.test(text[from - 1] as string)) return null;
  const name = text.slice(from, end);
  const standIn = NEWER_FUNCTIONS.get(name);
  return standIn === undefined ? null : { from, text: name, respelled: standIn };
}

/**
 * A strict parse of `text`, reading newer functions' names as their stand-ins
 * (for the verification of an output, which is already respelled: a number
 * literal Lezer cannot read there is a failure, not something to respell).
 */
export function parseWithStandIns(text: string): ParseOutcome {
  return parseRespelled(text, false).parsed;
}

/** What `parseRespelled` gives: the text to forward, the text Lezer read, and Lezer's outcome. */
export interface RespelledParse {
  /** The input with unsupported number literals and keyword case respelled (same length, same meaning to Prometheus). */
  readonly text: string;
  /** `text` with newer functions' names replaced by stand-ins: what Lezer parsed. */
  readonly shadow: string;
  readonly parsed: ParseOutcome;
}

/**
 * A strict parse of a query as Prometheus reads it: where Lezer fails on a
 * number literal, a duration keyword's case (only with `respellLiterals`) or a
 * newer function, that spot is respelled in place (same length, so positions
 * in the tree are those of the input) and parsed again, at most
 * MAX_RESPELLED_NUMBERS times.
 */
export function parseRespelled(input: string, respellLiterals = true): RespelledParse {
  let text = input;
  let shadow = input;
  let parsed = parseStrict(parser, shadow);
  for (let respelled = 0; !parsed.ok && respelled < MAX_RESPELLED_NUMBERS; respelled++) {
    const num = respellLiterals ? (unsupportedNumberAt(shadow, parsed.pos) ?? unsupportedKeywordCaseAt(shadow, parsed.pos)) : null;
    if (num !== null) {
      text = respell(text, num);
      shadow = respell(shadow, num);
    } else {
      const fn = newerFunctionAt(shadow, parsed.pos);
      if (fn === null) break;
      shadow = respell(shadow, fn);
    }
    parsed = parseStrict(parser, shadow);
  }
  return { text, shadow, parsed };
}

export function unsupportedNumberAt(text: string, pos: number): { from: number; text: string; respelled: string } | null {
  let from = Math.min(pos, text.length);
  while (from > 0 && /[0-9A-Za-z_.:]/.test(text[from - 1] as string)) from--;
  // A run that starts with a digit is no identifier: `5m:0X1f` is a subquery's range and step.
  const colon = text.lastIndexOf(':', pos - 1);
  if (/[0-9]/.test(text[from] ?? '') && colon >= from) from = colon + 1;
  // …and a run that starts with the colon is a step after a range already read (`x[5 :1.]`).
  if (text[from] === ':') from++;
  LEZER_REJECTED_NUMBER.lastIndex = from;
  const m = LEZER_REJECTED_NUMBER.exec(text);
  if (m === null || from + m[0].length < pos) return null;
  const after = text[from + m[0].length];
  // A ":" may follow: `x[5.:1m]` is a subquery whose range is the number.
  if (after !== undefined && /[0-9A-Za-z_.]/.test(after)) return null;
  const n = m[0];
  let respelled: string;
  if (n[1] === 'x' || n[1] === 'X') {
    const digits = n.slice(2).replace(/_/g, '');
    respelled = `0x${'0'.repeat(n.length - 2 - digits.length)}${digits}`;
  } else {
    respelled = `${n.replace('.', '')} `;
  }
  return respelled === n ? null : { from, text: n, respelled };
}

/** Duration functions Prometheus reads in any case (its lexer looks keywords up lower-cased); lezer-promql only in lower case. */
const DURATION_KEYWORDS: ReadonlySet<string> = new Set(['step', 'range', 'min_of', 'max_of']);

/**
 * A duration function written in another case (`x[STEP()]`, `offset -Range()`)
 * where the parse failed at `pos`: respelled lower-case, same length, as for
 * number literals; an identifier elsewhere (a metric named `STEP`) is not at a
 * parse failure followed by `(` in a duration, so it is never touched.
 */
export function unsupportedKeywordCaseAt(text: string, pos: number): { from: number; text: string; respelled: string } | null {
  const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(pos, pos + 16));
  if (m === null || (pos > 0 && /[0-9A-Za-z_]/.test(text[pos - 1] as string))) return null;
  const word = m[0];
  const lower = word.toLowerCase();
  if (word === lower || !DURATION_KEYWORDS.has(lower) || !/^[ \t\r\n]*\(/.test(text.slice(pos + word.length, pos + word.length + 64))) return null;
  return { from: pos, text: word, respelled: lower };
}
