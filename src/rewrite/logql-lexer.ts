/**
 * A second, independent reading of a LogQL query: a model of Loki's own
 * lexer (pkg/logql/syntax: a Go `text/scanner` in GoTokens mode plus the
 * LogQL `Lex` function), written from Loki's documented and observed
 * behaviour. It does not parse LogQL; it finds the stream selectors exactly
 * where Loki's lexer would see them:
 *
 * - whitespace is only ' ', '\t', '\n', '\r' (anything else is a token);
 * - comments are `# …` (LogQL) and Go's `// …` and `/* … *\/` (the scanner
 *   skips them before LogQL's lexer sees a token);
 * - strings are Go strings: "…" (escapes, no raw newline), `…` (raw);
 *   '…' is a Go character literal (one character, else a lexer error) that
 *   LogQL turns into an identifier, never a string;
 * - `[` starts a range that is read raw up to the next `]`;
 * - a NUL character anywhere is an error; a byte-order mark at the very
 *   start is skipped;
 * - identifiers are Go identifiers; keywords are case-insensitive, so a
 *   label named `by`, `OR` or `json` cannot be written in a matcher.
 *
 * The rewriter cross-checks this reading against the Lezer tree, on the
 * input and on its own output: any disagreement about where a selector is
 * or what its matchers are means the two parsers see different queries, and
 * the query is refused.
 */
import { LiteralError, unquoteStringLiteral } from './lezer.ts';
import type { UnquoteDialect } from './lezer.ts';
import type { MatchOp } from './matcher.ts';
import { chainWeight, type ChainLevel, type ChainRules } from './chain-weight.ts';

/**
 * LogQL strings: Loki's lexer hands "…" and `…` tokens to Prometheus'
 * `strutil.Unquote` (raw strings keep '\r'); single quotes never make a
 * string.
 */
export const LOGQL_STRINGS: UnquoteDialect = { singleQuotedStrings: false, rawStripsCR: false };

/**
 * The value of a LogQL string literal as a matcher value, or null when it is
 * not certain: invalid UTF-8 from byte escapes, or a raw string holding '\r'
 * (Go's strconv.Unquote drops it, Prometheus' strutil.Unquote keeps it; a
 * value whose reading depends on that never counts as an enforced matcher).
 * Throws LiteralError for literals Loki's lexer rejects.
 */
export function unquoteLogQL(raw: string): string | null {
  const v = unquoteStringLiteral(raw, LOGQL_STRINGS);
  return raw.charCodeAt(0) === 96 && raw.includes('\r') ? null : v;
}

/**
 * Words Loki's lexer turns into keyword tokens (compared lower-cased), so
 * they can never be a label name in a matcher. Function names (`rate`,
 * `sum`, `ip`, `label_replace`, …) are keywords only when followed by `(`
 * (Loki checks them first), so they are not here.
 */
export const LOKI_RESERVED_WORDS: ReadonlySet<string> = new Set([
  'by',
  'without',
  'bool',
  'offset',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'or',
  'and',
  'unless',
  'json',
  'regexp',
  'logfmt',
  'unpack',
  'pattern',
  'label_format',
  'line_format',
  'decolorize',
  'drop',
  'keep',
  'variants',
  'of',
  'unwrap',
]);

export class LokiLexError extends Error {
  /** UTF-16 offset into the text. */
  readonly pos: number;
  constructor(message: string, pos: number) {
    super(message);
    this.name = 'LokiLexError';
    this.pos = pos;
  }
}

export interface LokiMatcher {
  readonly name: string;
  readonly op: MatchOp;
  /** Unquoted value; null when the literal's value is not valid UTF-8. */
  readonly value: string | null;
}

export interface LokiSelector {
  /** Offset of `{`. */
  readonly from: number;
  /** Offset just after `}`. */
  readonly to: number;
  readonly matchers: readonly LokiMatcher[];
}

const IDENT_START = /[\p{L}_]/u;
const IDENT_PART = /[\p{L}\p{Nd}_]/u;

/**
 * Does the character at `i` match `re` (IDENT_START or IDENT_PART)? ASCII is
 * decided without the Unicode regex: among ASCII, \p{L} is [A-Za-z] and
 * \p{Nd} is [0-9].
 */
function isIdentChar(text: string, i: number, re: RegExp): boolean {
  const c = text.charCodeAt(i);
  if (c < 128) return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || (re === IDENT_PART && c >= 48 && c <= 57);
  return re.test(String.fromCodePoint(text.codePointAt(i) ?? 0));
}

/** UTF-16 length of the code point at `i`. */
function identCharLength(text: string, i: number): number {
  return (text.codePointAt(i) ?? 0) > 0xffff ? 2 : 1;
}

/**
 * Printable ASCII that neither starts trivia (whitespace, `#`, `/`) nor is
 * a case of scanLokiSelectors' switch (quotes, `[`, `{`, `}`).
 */
const PLAIN_ASCII = new Uint8Array(128);
for (let c = 33; c < 127; c++) PLAIN_ASCII[c] = '#/"`\'[{}'.includes(String.fromCharCode(c)) ? 0 : 1;

function isWs(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13;
}

/** End (exclusive) of a Go-scanner string or char literal starting at `i` (the quote). */
function scanQuoted(text: string, i: number, quote: string): number {
  const n = text.length;
  let j = i + 1;
  for (;;) {
    if (j >= n) throw new LokiLexError('literal not terminated', i);
    const ch = text[j] as string;
    if (ch === quote) return j + 1;
    if (ch === '\n') throw new LokiLexError('literal not terminated', i);
    if (ch === '\\') {
      const e = text[j + 1];
      if (e === undefined) throw new LokiLexError('literal not terminated', i);
      if ('abfnrtv\\'.includes(e) || e === quote) {
        j += 2;
      } else if (e >= '0' && e <= '7') {
        for (let k = 1; k <= 3; k++) if (!/[0-7]/.test(text[j + k] ?? '')) throw new LokiLexError('invalid char escape', j);
        j += 4;
      } else if (e === 'x' || e === 'u' || e === 'U') {
        const len = e === 'x' ? 2 : e === 'u' ? 4 : 8;
        for (let k = 2; k < 2 + len; k++) if (!/[0-9a-fA-F]/.test(text[j + k] ?? '')) throw new LokiLexError('invalid char escape', j);
        j += 2 + len;
      } else {
        throw new LokiLexError('invalid char escape', j);
      }
      continue;
    }
    j += (text.codePointAt(j) ?? 0) > 0xffff ? 2 : 1;
  }
}

interface Cursor {
  pos: number;
}

/** Skip whitespace and comments (all three kinds). */
function skipTrivia(text: string, cur: Cursor): void {
  const n = text.length;
  while (cur.pos < n) {
    const c = text.charCodeAt(cur.pos);
    if (isWs(c)) {
      cur.pos++;
    } else if (c === 35 /* # */) {
      const nl = text.indexOf('\n', cur.pos);
      cur.pos = nl < 0 ? n : nl;
    } else if (c === 47 /* / */ && text.charCodeAt(cur.pos + 1) === 47) {
      const nl = text.indexOf('\n', cur.pos);
      cur.pos = nl < 0 ? n : nl;
    } else if (c === 47 && text.charCodeAt(cur.pos + 1) === 42 /* * */) {
      const end = text.indexOf('*/', cur.pos + 2);
      if (end < 0) throw new LokiLexError('comment not terminated', cur.pos);
      cur.pos = end + 2;
    } else {
      return;
    }
  }
}

function stringValue(raw: string, pos: number): string | null {
  try {
    return unquoteLogQL(raw);
  } catch (e) {
    if (e instanceof LiteralError) throw new LokiLexError(e.message, pos + e.offset);
    throw e;
  }
}

/** Parse one selector whose `{` is at `open`; returns it and moves the cursor past `}`. */
function scanSelector(text: string, open: number, cur: Cursor): LokiSelector {
  cur.pos = open + 1;
  const matchers: LokiMatcher[] = [];
  const unexpected = (what: string): never => {
    const at = cur.pos >= text.length ? 'end of input' : JSON.stringify(String.fromCodePoint(text.codePointAt(cur.pos) ?? 0));
    throw new LokiLexError(`syntax error: unexpected ${at}, expecting ${what}`, cur.pos);
  };
  skipTrivia(text, cur);
  if (text[cur.pos] === '}') {
    cur.pos++;
    return { from: open, to: cur.pos, matchers };
  }
  for (;;) {
    skipTrivia(text, cur);
    // Label name: a Go identifier that is not a keyword.
    const start = cur.pos;
    if (start >= text.length || !isIdentChar(text, start, IDENT_START)) unexpected('a label name');
    let j = start + identCharLength(text, start);
    while (j < text.length && isIdentChar(text, j, IDENT_PART)) j += identCharLength(text, j);
    const name = text.slice(start, j);
    if (LOKI_RESERVED_WORDS.has(name.toLowerCase())) {
      throw new LokiLexError(`syntax error: unexpected ${name.toLowerCase()}, expecting a label name`, start);
    }
    cur.pos = j;
    skipTrivia(text, cur);
    let op: MatchOp;
    const two = text.slice(cur.pos, cur.pos + 2);
    if (two === '=~' || two === '!=' || two === '!~') {
      op = two;
      cur.pos += 2;
    } else if (text[cur.pos] === '=' && two !== '==') {
      op = '=';
      cur.pos += 1;
    } else {
      return unexpected('=, !=, =~ or !~');
    }
    skipTrivia(text, cur);
    const q = text[cur.pos];
    if (q !== '"' && q !== '`') return unexpected('a string');
    const litStart = cur.pos;
    let litEnd: number;
    if (q === '"') {
      litEnd = scanQuoted(text, litStart, '"');
    } else {
      const close = text.indexOf('`', litStart + 1);
      if (close < 0) throw new LokiLexError('literal not terminated', litStart);
      litEnd = close + 1;
    }
    const value = stringValue(text.slice(litStart, litEnd), litStart);
    matchers.push({ name, op, value });
    cur.pos = litEnd;
    skipTrivia(text, cur);
    const sep = text[cur.pos];
    if (sep === ',') {
      cur.pos++;
      continue;
    }
    if (sep === '}') {
      cur.pos++;
      return { from: open, to: cur.pos, matchers };
    }
    return unexpected(', or }');
  }
}

/**
 * Every stream selector of `text` as Loki's lexer delimits it, in order.
 * Throws LokiLexError for input Loki's lexer would reject (and for
 * selectors Loki's grammar would reject). Tokens outside selectors are not
 * checked beyond what is needed to delimit strings, comments and ranges.
 */
export function scanLokiSelectors(text: string): LokiSelector[] {
  const n = text.length;
  const nul = text.indexOf('\u0000');
  if (nul >= 0) throw new LokiLexError('invalid character NUL', nul);
  const out: LokiSelector[] = [];
  const cur: Cursor = { pos: text.charCodeAt(0) === 0xfeff ? 1 : 0 };
  while (cur.pos < n) {
    skipTrivia(text, cur);
    if (cur.pos >= n) break;
    const i = cur.pos;
    const ch = text[i] as string;
    switch (ch) {
      case '"':
        stringValue(text.slice(i, (cur.pos = scanQuoted(text, i, '"'))), i);
        break;
      case '`': {
        const close = text.indexOf('`', i + 1);
        if (close < 0) throw new LokiLexError('literal not terminated', i);
        cur.pos = close + 1;
        break;
      }
      case "'": {
        const end = scanQuoted(text, i, "'");
        const body = text.slice(i + 1, end - 1);
        if ([...body.replace(/\\(?:[0-7]{3}|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/gsu, 'x')].length !== 1) {
          throw new LokiLexError('invalid char literal', i);
        }
        cur.pos = end;
        break;
      }
      case '[': {
        const close = text.indexOf(']', i + 1);
        if (close < 0) throw new LokiLexError("missing closing ']' in duration", i);
        cur.pos = close + 1;
        break;
      }
      case '{':
        out.push(scanSelector(text, i, cur));
        break;
      case '}':
        throw new LokiLexError('syntax error: unexpected }', i);
      default: {
        const c = text.charCodeAt(i);
        // Characters Go's scanner treats as tokens but that no LogQL token
        // starts with (other control characters, non-ASCII spaces, …):
        // Loki answers with a syntax error.
        if (c < 32 || c === 127 || (c >= 0x80 && !IDENT_START.test(String.fromCodePoint(text.codePointAt(i) ?? 0)) && !/\p{Nd}/u.test(String.fromCodePoint(text.codePointAt(i) ?? 0)))) {
          throw new LokiLexError(`syntax error: unexpected ${JSON.stringify(String.fromCodePoint(text.codePointAt(i) ?? 0))}`, i);
        }
        let j = i + ((text.codePointAt(i) ?? 0) > 0xffff ? 2 : 1);
        // The printable ASCII characters that follow would each land here again
        // with nothing else to do (skipTrivia, the cases above): step over the run.
        while (j < n && PLAIN_ASCII[text.charCodeAt(j)] === 1) j++;
        cur.pos = j;
        break;
      }
    }
  }
  return out;
}

/**
 * Most list items and operators one bracket level of a LogQL query may hold
 * (see logqlChainWeight). Lezer's parser gives up on a node that keeps
 * growing from the same start: after 300 reductions of one left-recursive
 * rule spanning 2000 characters or more (its guard against trees too deep to
 * walk), so a selector of 301 long matchers, a pipeline of 301 long stages or
 * a sum of 102 long operands (each binary operator costs three reductions)
 * cannot be parsed at all. Measured on @grafana/lezer-logql 0.4.2 with
 * 2000-character items; 256 leaves room for the nodes around a chain.
 */
export const LOGQL_MAX_CHAIN_WEIGHT = 256;

/** Weight of a binary operator between expressions (Lezer reduces three nodes per operator). */
const BINOP_WEIGHT = 3;

interface ChainGroup extends ChainLevel {
  /** A pipeline (`|`, `|=`, `|~`, `|>`) has started at this level: comparisons are label filters, `and`/`or` join filters. */
  pipeline: boolean;
  /** Stream selectors seen at this level: a second one is an operand of a binary operation. */
  selectors: number;
}

/**
 * Whether a line filter's argument starts at `i`, after blanks and comments
 * (skipTrivia): a string (`"…"`, `` `…` ``) or `ip(`.
 */
function startsLineFilterArgument(text: string, i: number): boolean {
  const cur = { pos: i };
  try {
    skipTrivia(text, cur);
  } catch {
    return false; // an unterminated comment: the parse refuses the query
  }
  const c = text.charCodeAt(cur.pos);
  return c === 34 || c === 96 || /^ip[ \t\r\n]*\(/i.test(text.slice(cur.pos, cur.pos + 64));
}

/** LogQL's weights for chainWeight (see logqlChainWeight). */
export const LOGQL_CHAINS: ChainRules<ChainGroup> = {
  cComments: true,
  skipBrackets: true,
  colonInWords: false,
  level: () => ({ weight: 0, pipeline: false, selectors: 0 }),
  opens(outer, opener) {
    if (opener === 123 && outer.selectors++ > 0) outer.weight += BINOP_WEIGHT;
  },
  word(level, text, from, to) {
    if (to - from > 6) return;
    const word = text.slice(from, to).toLowerCase();
    if (word === 'and' || word === 'or') level.weight += level.pipeline ? 1 : BINOP_WEIGHT;
    else if (word === 'unless') level.weight += BINOP_WEIGHT;
  },
  punct(level, text, i, c) {
    const next = text.charCodeAt(i + 1);
    switch (c) {
      case 44: // ,
        level.weight += 1;
        return i + 1;
      case 124: // |
        level.pipeline = true;
        level.weight += 1;
        return i + (next === 61 || next === 126 || next === 62 ? 2 : 1);
      case 33: {
        // `!=`, `!~`, `!>`: a line filter (a stage) or, outside a pipeline, perhaps a comparison. One followed by
        // a string or `ip(` is a line filter (no comparison's operand is a string), so a pipeline, as after `|=`.
        const after = i + (next === 61 || next === 126 || next === 62 ? 2 : 1);
        if (!level.pipeline && after === i + 2 && startsLineFilterArgument(text, after)) level.pipeline = true;
        level.weight += level.pipeline ? 1 : BINOP_WEIGHT;
        return after;
      }
      case 61: // = (matchers, label filters, ==)
      case 60: // <
      case 62: // >
        if ((c !== 61 || next === 61) && !level.pipeline) level.weight += BINOP_WEIGHT;
        return i + (next === 61 || next === 126 ? 2 : 1);
      case 43: // +
      case 45: // -
      case 42: // *
      case 47: // /
      case 37: // %
      case 94: // ^
        level.weight += BINOP_WEIGHT;
        return i + 1;
      default:
        return i + 1;
    }
  },
};

/**
 * An upper bound, per bracket level, of the length of the left-recursive
 * chains the parser builds there, as a weight: 1 for each `,` (matchers,
 * label lists, label filters, stage parameters), each pipeline stage (`|`,
 * `|=`, `|~`, `|>`, `!=`, `!~`, `!>`) and each `and`/`or` inside a pipeline;
 * 3 for each binary operator between expressions (`+ - * / % ^`, comparisons
 * and `and`/`or`/`unless` outside a pipeline, a second stream selector at the
 * same level). Everything is counted at the level of the innermost `(` or `{`
 * around it; strings, comments and ranges are skipped as Loki's lexer skips
 * them. Returns the offset at which some level first exceeds `limit`, or -1.
 * Deterministic and linear: the refusal of a query too long for the parser
 * does not depend on how or where the parser fails.
 */
export function logqlChainWeight(text: string, limit: number = LOGQL_MAX_CHAIN_WEIGHT): number {
  return chainWeight(text, LOGQL_CHAINS, limit);
}
