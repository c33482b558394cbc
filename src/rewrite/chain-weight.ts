/**
 * Counting, before parsing, the chains Lezer cannot build (LogQL and PromQL).
 *
 * Lezer's LR parser gives up on a node that keeps growing from the same start:
 * after 300 reductions of non-anonymous nodes that all start at one position
 * and span 2000 characters or more, it force-reduces (@lezer/lr,
 * Rec.MaxLeftAssociativeReductionCount / Recover.MinBigReduction, its guard
 * against trees too deep to walk), and a strict parse fails there. So a sum
 * of enough long operands cannot be parsed at all, whatever the nesting
 * limits say, and whether a query fails depends on its operands' length: a
 * query can parse and its rewritten form (longer: the policy's matchers in
 * every selector, `or`s of the policy's groups) not.
 *
 * Instead of interpreting the parser's failure, each rewriter counts first:
 * per bracket level, the items and operators the grammar chains there
 * (weights per language), refusing a text over a bound below what the
 * parser builds with items of any length, as `query_too_large`, on the query
 * and again on the rewritten query. Deterministic and linear. This module is
 * the scan shared by both languages (strings, comments, brackets, words,
 * numbers) and the refusal; what counts is each language's `ChainRules`
 * (logql-lexer.ts, promql-analysis.ts).
 */
import { QueryError } from '../errors.ts';
import { lineCol } from './lezer.ts';

/** What has been counted at one bracket level. */
export interface ChainLevel {
  weight: number;
}

/** A language's weights; methods add to `level.weight`. */
export interface ChainRules<L extends ChainLevel> {
  /** `//` line comments and `/* … *\/` block comments besides `#` (LogQL). */
  readonly cComments: boolean;
  /** `[…]` is skipped whole (LogQL's ranges) instead of being a bracket level. */
  readonly skipBrackets: boolean;
  /** `:` belongs to words (PromQL's metric names: `job:rate5m:sum`). */
  readonly colonInWords: boolean;
  /** A new level, opened by `opener` (`(`, `[` or `{`; 0 for the text's top level). */
  level(opener: number): L;
  /** Counts, in the level around it, the opening of a bracket. */
  opens(outer: L, opener: number): void;
  /** Counts a word (keywords: `and`, `or`, `offset`, …), `text[from, to)`. */
  word(level: L, text: string, from: number, to: number): void;
  /** Counts the punctuation at `i` (char code `c`); returns the offset after it. */
  punct(level: L, text: string, i: number, c: number): number;
}

export function isAsciiWordChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95;
}

/**
 * Scans `text` with `rules`: strings (`"…"` and `'…'` with backslash escapes,
 * ending at a newline as the backends' lexers end them; `` `…` `` raw) and
 * comments (`#` to the end of the line) are skipped, numbers (`1.5e3`, `5m`,
 * `0x1F`, `1KB`) hold no operators (but a keyword glued to one, `1or`, is
 * counted: countNumberTails), everything else is counted at the level of
 * the innermost bracket around it. Returns the offset at which some level's
 * weight first exceeds `limit`, or -1.
 */
export function chainWeight<L extends ChainLevel>(text: string, rules: ChainRules<L>, limit: number): number {
  const n = text.length;
  const { cComments, skipBrackets, colonInWords } = rules;
  const stack: L[] = [rules.level(0)];
  let top = stack[0] as L;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    const at = i;
    if (c === 34 /* " */ || c === 39 /* ' */) {
      i++;
      while (i < n && text.charCodeAt(i) !== c && text.charCodeAt(i) !== 10) i += text.charCodeAt(i) === 92 ? 2 : 1;
      i++;
      continue;
    }
    if (c === 96 /* ` */) {
      const close = text.indexOf('`', i + 1);
      i = close < 0 ? n : close + 1;
      continue;
    }
    if (c === 35 /* # */ || (cComments && c === 47 && text.charCodeAt(i + 1) === 47)) {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? n : nl;
      continue;
    }
    if (cComments && c === 47 && text.charCodeAt(i + 1) === 42) {
      const close = text.indexOf('*/', i + 2);
      i = close < 0 ? n : close + 2;
      continue;
    }
    if (c === 91 /* [ */ && skipBrackets) {
      const close = text.indexOf(']', i + 1);
      i = close < 0 ? n : close + 1;
      continue;
    }
    switch (c) {
      case 91: // [
      case 40: // (
      case 123: // {
        rules.opens(top, c);
        if (top.weight > limit) return at;
        top = rules.level(c);
        stack.push(top);
        i++;
        continue;
      case 93: // ]
      case 41: // )
      case 125: // }
        if (stack.length > 1 && (c !== 93 || !skipBrackets)) {
          stack.pop();
          top = stack[stack.length - 1] as L;
        }
        i++;
        continue;
      default:
        break;
    }
    if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || (colonInWords && c === 58)) {
      let j = i + 1;
      for (let d = text.charCodeAt(j); j < n && (isAsciiWordChar(d) || (colonInWords && d === 58)); d = text.charCodeAt(++j));
      rules.word(top, text, i, j);
      i = j;
    } else if (c >= 48 && c <= 57) {
      // Numbers, durations and bytes: no operators inside. But the parsers end a number where no
      // number goes on (`1or x` is `1 or x` for Lezer, and for Loki's scanner; `5moffset`, `0x1fand`,
      // `1e3unless`): the end of each word-character run of the number that starts with a letter may
      // be a keyword, and is counted as one (no number or unit Prometheus or Loki reads ends in one).
      let j = i + 1;
      for (let d = text.charCodeAt(j); j < n && (isAsciiWordChar(d) || d === 46); d = text.charCodeAt(++j));
      countNumberTails(rules, top, text, i + 1, j);
      i = j;
      if (top.weight > limit) return at;
      continue;
    } else {
      i = rules.punct(top, text, i, c);
    }
    if (top.weight > limit) return at;
  }
  return -1;
}

/** Longest keyword a language's `word` counts (`anchored`, `smoothed`); longer tails are never one. */
const MAX_KEYWORD = 8;

/**
 * In the number `text[from - 1, to)`: every tail of a word-character run (runs
 * end at `.`) that starts with a letter and is at most MAX_KEYWORD long is
 * passed to `rules.word` (an upper bound: `1mor` counts `or`). Linear: only the
 * last MAX_KEYWORD characters of each run are looked at.
 */
function countNumberTails<L extends ChainLevel>(rules: ChainRules<L>, level: L, text: string, from: number, to: number): void {
  let runEnd = to;
  for (let k = to - 1; k >= from; k--) {
    const d = text.charCodeAt(k);
    if (d === 46) {
      runEnd = k;
      continue;
    }
    if (runEnd - k <= MAX_KEYWORD && ((d >= 65 && d <= 90) || (d >= 97 && d <= 122))) rules.word(level, text, k, runEnd);
  }
}

/**
 * Refuses `text` when `chainWeight` finds a level over `limit`: 400
 * `query_too_large`, "<what> is too complex: more than <bound>, at line L,
 * col C; split it into smaller queries". `what` names the text (the query, or
 * the query with the policy's matchers); `posOffset` is added to the offset
 * before it becomes a position (-1 when the text was wrapped in a bracket).
 */
export function checkChainWeight<L extends ChainLevel>(
  lang: string,
  rules: ChainRules<L>,
  limit: number,
  bound: string,
  text: string,
  prefix: string,
  what: string,
  posOffset = 0,
): void {
  const at = chainWeight(text, rules, limit);
  if (at < 0) return;
  const { line, col } = lineCol(text, Math.max(0, at + posOffset));
  throw new QueryError(lang, `${prefix}${what} is too complex: more than ${bound}, at line ${line}, col ${col}; split it into smaller queries`, 'query_too_large');
}
