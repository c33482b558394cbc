/**
 * The strict Lezer parse of a LogQL query, with narrow repairs where
 * `@grafana/lezer-logql` lags behind Loki's own parser (implicit `and`
 * between label filters, `offset` order, a parenthesised `unwrap`, Go
 * comments, keyword case, function names Loki reads as label names, `_` in
 * numbers, byte-size suffixes). A repair only ever rewrites a shadow copy of
 * the query, of the same length, so stream selectors sit at the same offsets
 * in the query and in the tree; what the gateway forwards is always built
 * from the query itself (logql.ts). Pure; no I/O.
 */
import type { Tree } from '@lezer/common';
import { parser } from '@grafana/lezer-logql';
import { parseStrict } from './lezer.ts';
import { LOKI_RESERVED_WORDS } from './logql-lexer.ts';

/** Implicit-AND repairs attempted per parse (each costs a re-parse). */
const MAX_REPAIRS = 32;

/** Pipeline stage keywords: a stage starting with one of these is not a label filter. */
const STAGE_KEYWORDS = new Set(['json', 'logfmt', 'regexp', 'pattern', 'unpack', 'label_format', 'line_format', 'decolorize', 'drop', 'keep', 'unwrap']);

interface Tok {
  readonly kind: 'str' | 'num' | 'ident' | 'punct';
  readonly from: number;
  readonly to: number;
  readonly text: string;
}

/**
 * Tokens of `s` before `end`, roughly as Loki's lexer splits them (enough to
 * recognise label-filter stages). Returns null on anything unexpected.
 */
function tokensBefore(s: string, end: number): Tok[] | null {
  const out: Tok[] = [];
  let i = 0;
  while (i < end) {
    const c = s[i] as string;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
    } else if (c === '#') {
      const nl = s.indexOf('\n', i);
      i = nl < 0 ? s.length : nl;
    } else if (c === '"' || c === '`') {
      let j = i + 1;
      while (j < s.length && s[j] !== c) j += c === '"' && s[j] === '\\' ? 2 : 1;
      if (j >= s.length) return null;
      out.push({ kind: 'str', from: i, to: j + 1, text: s.slice(i, j + 1) });
      i = j + 1;
    } else if (c === '[') {
      const j = s.indexOf(']', i);
      if (j < 0) return null;
      out.push({ kind: 'punct', from: i, to: j + 1, text: s.slice(i, j + 1) });
      i = j + 1;
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9][0-9a-zA-Zµ._]*/u.exec(s.slice(i, i + 64));
      const len = m === null ? 1 : m[0].length;
      out.push({ kind: 'num', from: i, to: i + len, text: s.slice(i, i + len) });
      i += len;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i, i + 256));
      const len = m === null ? 1 : m[0].length;
      out.push({ kind: 'ident', from: i, to: i + len, text: s.slice(i, i + len) });
      i += len;
    } else {
      const two = s.slice(i, i + 2);
      const len = ['|=', '|~', '|>', '!=', '!~', '!>', '=~', '==', '>=', '<='].includes(two) ? 2 : 1;
      out.push({ kind: 'punct', from: i, to: i + len, text: s.slice(i, i + len) });
      i += len;
    }
  }
  return out;
}

/**
 * Loki accepts label filters written next to each other without `and` or
 * `,` (`| a="b" c!="d"`, the same as `| a="b", c!="d"`); the official
 * Lezer grammar does not. When the strict parse fails at `pos` and `pos`
 * starts a label filter that directly follows a complete one inside a
 * label-filter stage, the last whitespace character of the gap is replaced
 * by `,` in a shadow copy (same length, so every node position is the
 * original's). Returns the repaired shadow, or null.
 */
function repairImplicitAnd(s: string, pos: number): string | null {
  if (pos <= 0 || pos >= s.length) return null;
  const next = s[pos] as string;
  if (!/[A-Za-z_(]/.test(next)) return null;
  const toks = tokensBefore(s, pos);
  if (toks === null || toks.length === 0) return null;
  const prev = toks[toks.length - 1] as Tok;
  if (!(prev.kind === 'str' || prev.kind === 'num' || prev.text === ')')) return null;
  const gap = s.slice(prev.to, pos);
  if (gap.length === 0 || !/^[ \t\r\n]+$/.test(gap)) return null;
  // The stage: everything after the last `|` (a bare pipe, not |= |~ |>).
  let pipe = -1;
  for (let k = toks.length - 1; k >= 0; k--) {
    if ((toks[k] as Tok).text === '|') {
      pipe = k;
      break;
    }
  }
  const head = toks[pipe + 1];
  if (pipe < 0 || head === undefined) return null;
  if (!(head.text === '(' || (head.kind === 'ident' && !STAGE_KEYWORDS.has(head.text.toLowerCase())))) return null;
  for (let k = pipe + 1; k < toks.length; k++) {
    const t = (toks[k] as Tok).text;
    if (t === '{' || t === '}' || t.startsWith('[') || t === '|=' || t === '|~' || t === '|>') return null;
  }
  return `${s.slice(0, pos - 1)},${s.slice(pos)}`;
}

/**
 * Loki accepts `f(sel | pipeline | unwrap x [5m] offset 1h)`; the official
 * Lezer grammar only reads the offset form when the range comes first
 * (`sel [5m] offset 1h | pipeline | unwrap x`), which Loki accepts too and
 * evaluates the same. When the strict parse fails at an `offset` that
 * follows a range, the range and its offset are moved, in the shadow copy,
 * to just after the selector's closing brace. The selector itself does not
 * move and the length is unchanged; nodes after the selector are read from
 * the shadow, never from the original text.
 */
function repairOffsetOrder(s: string, pos: number): string | null {
  if (!s.startsWith('offset', pos) || /[A-Za-z0-9_]/.test(s[pos + 6] ?? '')) return null;
  const toks = tokensBefore(s, pos);
  if (toks === null) return null;
  const range = toks[toks.length - 1];
  if (range === undefined || !range.text.startsWith('[') || !/^[ \t\r\n]*$/.test(s.slice(range.to, pos))) return null;
  const dur = /^[ \t\r\n]+-?[0-9][0-9a-zA-Zµ.]*/u.exec(s.slice(pos + 6, pos + 70));
  if (dur === null) return null;
  const end = pos + 6 + dur[0].length;
  // Back to the selector's `}` over a pipeline with balanced parentheses
  // (`(sel | json)[5m] offset 1h` is a different form and is left alone).
  let close = -1;
  let pipe = false;
  let depth = 0;
  for (let k = toks.length - 2; k >= 0; k--) {
    const t = toks[k] as Tok;
    if (t.text === '}') {
      close = k;
      break;
    }
    if (t.text === ')') depth++;
    else if (t.text === '(' && --depth < 0) return null;
    if (t.text === '{' || t.text.startsWith('[')) return null;
    if (t.text === '|') pipe = true;
  }
  if (close < 0 || !pipe || depth !== 0) return null;
  const brace = (toks[close] as Tok).to;
  return s.slice(0, brace) + s.slice(range.from, end) + s.slice(brace, range.from) + s.slice(end);
}

/**
 * Loki reads a parenthesised log range with stages before its unwrap,
 * `(sel | json | unwrap x)[5m]`, as `sel | json | unwrap x [5m]` (the
 * parentheses only group); the official Lezer grammar has the parenthesised
 * form only without those stages (`(sel | unwrap x)[5m]`). When the strict
 * parse fails at the `)` that closes such a group, and a range follows it,
 * both parentheses are blanked in the shadow copy (same length; the selector
 * does not move).
 */
function repairParenthesisedUnwrap(s: string, pos: number): string | null {
  if (!/^\)[ \t\r\n]*\[/.test(s.slice(pos, pos + 64))) return null;
  const toks = tokensBefore(s, pos);
  if (toks === null) return null;
  let depth = 0;
  let open = -1;
  for (let k = toks.length - 1; k >= 0; k--) {
    const t = (toks[k] as Tok).text;
    if (t === ')') depth++;
    else if (t === '(' && depth-- === 0) {
      open = k;
      break;
    }
  }
  // The group: a selector, then stages at its own level, the last an unwrap.
  if (open < 0 || toks[open + 1]?.text !== '{') return null;
  let unwrap = -1;
  depth = 0;
  for (let k = open + 1; k < toks.length; k++) {
    const t = toks[k] as Tok;
    if (t.text === '(') depth++;
    else if (t.text === ')') depth--;
    else if (depth === 0 && t.kind === 'ident' && t.text === 'unwrap' && toks[k - 1]?.text === '|') unwrap = k;
    else if (depth === 0 && t.text.startsWith('[')) return null;
  }
  if (unwrap < 0) return null;
  const at = (toks[open] as Tok).from;
  return `${s.slice(0, at)} ${s.slice(at + 1, pos)} ${s.slice(pos + 1)}`;
}

/**
 * Loki's scanner skips Go comments (`// …` to the end of the line, `/* … *\/`);
 * the grammar knows only `#`. When the strict parse fails at a `/` that starts
 * one, or right after it (the grammar took the first `/` for a division), the
 * comment is blanked in the shadow copy (newlines kept). Strings never reach
 * here: Lezer lexed them as strings, so the failure is in code.
 */
function repairGoComment(s: string, pos: number): string | null {
  for (const p of [pos, pos - 1]) {
    if (p < 0 || s[p] !== '/') continue;
    const next = s[p + 1];
    let end: number;
    if (next === '/') {
      const nl = s.indexOf('\n', p);
      end = nl < 0 ? s.length : nl;
    } else if (next === '*') {
      const close = s.indexOf('*/', p + 2);
      if (close < 0) return null;
      end = close + 2;
    } else {
      continue;
    }
    return s.slice(0, p) + s.slice(p, end).replace(/[^\n]/g, ' ') + s.slice(end);
  }
  return null;
}

/** Loki's function names: keywords (matched lower-cased) when followed by `(`. */
const LOKI_FUNCTIONS: ReadonlySet<string> = new Set([
  'rate', 'rate_counter', 'count_over_time', 'bytes_rate', 'bytes_over_time', 'avg_over_time', 'sum_over_time', 'min_over_time',
  'max_over_time', 'stddev_over_time', 'stdvar_over_time', 'quantile_over_time', 'first_over_time', 'last_over_time',
  'absent_over_time', 'sum', 'avg', 'max', 'min', 'count', 'stddev', 'stdvar', 'bottomk', 'topk', 'approx_topk', 'sort',
  'sort_desc', 'label_replace', 'vector', 'bytes', 'duration', 'duration_seconds', 'ip',
]);

/**
 * Loki compares keywords and function names lower-cased (`SUM(RATE(…))` is
 * `sum(rate(…))`); the grammar's are lower-case only. When the strict parse
 * fails at an identifier that is a reserved word, or a function name followed
 * by `(`, in another case, it is lower-cased in the shadow copy (same length).
 */
function repairKeywordCase(s: string, pos: number): string | null {
  if (pos > 0 && /[A-Za-z0-9_]/.test(s[pos - 1] as string)) return null;
  const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(pos, pos + 64));
  if (m === null) return null;
  const word = m[0];
  const lower = word.toLowerCase();
  if (lower === word) return null;
  const call = /^[ \t\r\n]*\(/.test(s.slice(pos + word.length, pos + word.length + 64));
  if (!LOKI_RESERVED_WORDS.has(lower) && !(LOKI_FUNCTIONS.has(lower) && call)) return null;
  return s.slice(0, pos) + lower + s.slice(pos + word.length);
}

/**
 * The word a function name that Loki reads as a label name is respelled to in
 * the shadow copy (repairFunctionNameAsLabel): Lezer reads it as an
 * identifier, Loki reserves it (`of`), so it is never a policy's label name,
 * and neither is the word it stands for. Names in selectors are read from
 * the query itself (labelNameAt).
 */
const RESPELLED_LABEL = 'of';

/** Function names the grammar reserves everywhere (in any case), which Loki reads as identifiers unless a call follows. */
const GRAMMAR_FUNCTION_WORDS: ReadonlySet<string> = new Set(['vector', 'label_replace']);

/**
 * Loki treats a function name as an identifier unless a call follows (its
 * lexer's isFunction: after blanks, `(`, or `by`/`without` and then `(`), so
 * `{label_replace="x"}`, `sum by (vector) (…)` and `| drop vector` name a
 * label; the grammar reserves `vector` and `label_replace` everywhere. When
 * the strict parse fails at such a word (whole, any case) and what follows
 * is not `(` or `by`/`without` (whatever comes after those), the word is
 * written as RESPELLED_LABEL and blanks in the shadow copy (same length).
 */
function repairFunctionNameAsLabel(s: string, pos: number): string | null {
  if (pos > 0 && /[\p{L}\p{Nd}_]/u.test(s[pos - 1] as string)) return null;
  const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(pos, pos + 64));
  if (m === null || !GRAMMAR_FUNCTION_WORDS.has(m[0].toLowerCase())) return null;
  const end = pos + m[0].length;
  if (/^[\p{L}\p{Nd}_]/u.test(s.slice(end, end + 2))) return null;
  const rest = s.slice(end, end + 256).replace(/^\s+/u, '').toLowerCase();
  if (rest.startsWith('(') || rest.startsWith('by') || rest.startsWith('without')) return null;
  return s.slice(0, pos) + RESPELLED_LABEL.padEnd(m[0].length, ' ') + s.slice(end);
}

/**
 * The label name of a matcher whose identifier node is `id`: the shadow's
 * text, or, where the shadow has RESPELLED_LABEL, the word the query has at
 * that offset (selectors are at the same offsets in both).
 */
export function labelNameAt(text: string, shadow: string, id: { from: number; to: number }): string {
  const name = shadow.slice(id.from, id.to);
  if (name !== RESPELLED_LABEL) return name;
  return /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(id.from, id.from + 64))?.[0] ?? name;
}

/** A number literal (no `_`) Go's scanner reads as an octal integer with a digit 8 or 9, which Loki's scanner refuses. */
const isRefusedOctal = (lit: string): boolean => /^0[0-9]*[89]/.test(lit) && !/[.eE]/.test(lit);

/** A Go decimal literal with `_` between digits, as Loki's scanner reads one (and strconv.ParseFloat then takes). */
const UNDERSCORE_NUMBER = /^[0-9](?:_?[0-9])*(?:\.(?:[0-9](?:_?[0-9])*)?)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?/;

/**
 * Loki's scanner reads `_` between the digits of a number (`1_000`,
 * `0.9_9`; Go's syntax, which strconv.ParseFloat also reads); the grammar
 * does not. When the strict parse fails at such a `_`, the number is written
 * without its underscores, padded with leading zeros, in the shadow copy
 * (`1_000` → `01000`: same length, same value for the grammar). Not when a
 * letter, digit, `_` or `.` follows the number (a duration or byte size, which
 * Loki would not read with `_`), when `_` does not separate two digits, or
 * for an integer Go reads as octal with a digit 8 or 9 (Loki's scanner refuses it).
 */
function repairNumberUnderscore(s: string, pos: number): string | null {
  if (s[pos] !== '_' || !/[0-9]/.test(s[pos - 1] ?? '')) return null;
  let start = pos;
  while (start > 0 && /[0-9_.eE+-]/.test(s[start - 1] as string)) start--;
  // The literal starts at a digit that no identifier character or `.` precedes.
  while (start < pos && !/[0-9]/.test(s[start] as string)) start++;
  if (start > 0 && /[\p{L}\p{Nd}_.]/u.test(s[start - 1] as string)) return null;
  const m = UNDERSCORE_NUMBER.exec(s.slice(start, pos + 512));
  if (m === null) return null;
  const lit = m[0];
  const end = start + lit.length;
  if (end <= pos || /^[\p{L}\p{N}_.]/u.test(s.slice(end, end + 2))) return null;
  const digits = lit.replaceAll('_', '');
  if (isRefusedOctal(digits)) return null;
  return s.slice(0, start) + '0'.repeat(lit.length - digits.length) + digits + s.slice(end);
}

/**
 * Byte-size suffixes Loki reads after a number (its lexer's tryScanBytes: a run
 * of digits, `.` and the letters B i k K M G T P up to a blank, handed to
 * go-humanize's ParseBytes, which lower-cases the suffix), by length. The
 * grammar reads only the `B`-terminated SI and IEC forms (`KB`, `MiB`, …).
 */
const LOKI_BYTE_SUFFIXES: ReadonlySet<string> = new Set([
  'B', 'k', 'K', 'M', 'G', 'T', 'P',
  'kB', 'KB', 'MB', 'GB', 'TB', 'PB', 'ki', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi',
  'kiB', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB',
]);
/** A suffix of each length the grammar reads (Bytes), for the shadow copy. */
const GRAMMAR_BYTE_SUFFIX = ['', 'B', 'KB', 'KiB'] as const;

/**
 * Loki reads `20K`, `1.5Mi`, `3kiB` as byte sizes (`| size > 20K`); the
 * grammar has no such Bytes token. When the strict parse fails at the first
 * letter of a suffix Loki reads (the whole run of its byte scan), right after
 * a decimal number that no identifier character precedes, the suffix is
 * written as one of the same length the grammar reads (`20K` → `20B`, `20Ki`
 * → `20KB`, `3kiB` → `3KiB`), and a leading `.` as `0` (`.5KB` → `05KB`), in
 * the shadow copy: only the value differs, which the rewrite never reads. Not
 * for an integer Go reads as octal with a digit 8 or 9 (Loki's scanner
 * refuses it).
 */
function repairByteSuffix(s: string, pos: number): string | null {
  const run = /^[0-9.BikKMGTP]+/.exec(s.slice(pos, pos + 8))?.[0];
  if (run === undefined || !LOKI_BYTE_SUFFIXES.has(run)) return null;
  let start = pos;
  while (start > 0 && /[0-9.]/.test(s[start - 1] as string)) start--;
  const num = s.slice(start, pos);
  if (!/^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/.test(num)) return null;
  if (start > 0 && /[\p{L}\p{N}_]/u.test(s[start - 1] as string)) return null;
  if (isRefusedOctal(num)) return null;
  // A leading `.` (Go's `.5`), which the grammar reads in no byte size, as `0`.
  const size = (num.startsWith('.') ? `0${num.slice(1)}` : num) + GRAMMAR_BYTE_SUFFIX[run.length as 1 | 2 | 3];
  if (size === s.slice(start, pos + run.length)) return null;
  return s.slice(0, start) + size + s.slice(pos + run.length);
}

export type ParseResult = { readonly ok: true; readonly tree: Tree; readonly shadow: string } | { readonly ok: false; readonly pos: number };

/**
 * Strict parse of `text`. The tree's positions refer to `shadow`, a copy of
 * `text` of the same length in which only the repairs above were applied:
 * stream selectors are at the same offsets in both.
 */
export function parseLogQL(text: string): ParseResult {
  let shadow = text.charCodeAt(0) === 0xfeff ? ` ${text.slice(1)}` : text;
  for (let repairs = 0; ; repairs++) {
    const r = parseStrict(parser, shadow);
    if (r.ok) return { ok: true, tree: r.tree, shadow };
    const fixed =
      repairs < MAX_REPAIRS
        ? (repairImplicitAnd(shadow, r.pos) ??
          repairOffsetOrder(shadow, r.pos) ??
          repairParenthesisedUnwrap(shadow, r.pos) ??
          repairGoComment(shadow, r.pos) ??
          repairKeywordCase(shadow, r.pos) ??
          repairFunctionNameAsLabel(shadow, r.pos) ??
          repairNumberUnderscore(shadow, r.pos) ??
          repairByteSuffix(shadow, r.pos))
        : null;
    if (fixed === null) return r;
    shadow = fixed;
  }
}
