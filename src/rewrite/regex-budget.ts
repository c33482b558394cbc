/**
 * How large a regular expression becomes once compiled, estimated from its
 * text without compiling it. re2js (like RE2's simplifier) expands a counted
 * repetition into copies (`x{1000}` is a thousand `x`; nested counts
 * multiply) and copies a character class's ranges with each copy, so a short
 * text such as `(?i)\pL{1000}` repeated a few hundred times takes seconds and
 * gigabytes to compile, on the event loop. Go compiles the same text cheaply
 * (Loki's own parser accepts it), so such a regex is refused as too large
 * before it is compiled. Pure; no I/O.
 */
import { QueryError } from '../errors.ts';

/**
 * Most estimated units the regexes of one query may compile to. A unit is about
 * a literal's work: 1.5–5.5 µs of re2js and at most ≈ 100 bytes of compiled
 * program were measured per unit for every construct below, so this is at most
 * ≈ 110 ms and 2 MB; dashboards write far less (`[0-9]{1,3}` is 24 units, a
 * 200-character alternation about 200, Grafana's "All" of 960 pod names 19 204).
 */
export const MAX_REGEX_EXPANSION = 20_000;

/** Weight of a character class or class escape (`[a-z]`, `\w`), in literals: re2js copies its ranges. */
const CLASS_WEIGHT = 8;
/**
 * Weight of a Unicode class (`\pL`, `\p{Greek}`, also inside brackets): thousands of ranges,
 * ≈ 70 µs to compile, ≈ 175 µs under `(?i)`.
 */
const UNICODE_CLASS_WEIGHT = 40;
/**
 * Weight of a group itself, beside its contents: an empty capturing group `()` costs re2js
 * ≈ 14 µs and ≈ 800 bytes, a non-capturing one about two literals. Free groups let 64 KiB of
 * `()()…` cost nothing here and about a second to compile.
 */
const CAPTURE_WEIGHT = 8;
const GROUP_WEIGHT = 2;
/** Weight of `*`, `+` or `?` beside what it repeats: `a?` costs ≈ 9 µs and 350 bytes, four literals' worth. */
const QUANTIFIER_WEIGHT = 3;
/**
 * Weight of an empty alternative (`||`, `(|`): ≈ 3 µs each. A `|` after an alternative that holds
 * something is free, so Grafana's multi-value variables (`(v1|v2|…)`) cost their values only.
 */
const EMPTY_ALTERNATIVE_WEIGHT = 1;

function readRepeat(s: string, i: number): { end: number; factor: number } | null {
  // `{n}`, `{n,}`, `{n,m}` (RE2 syntax); anything else is a literal brace.
  const m = /^\{([0-9]{1,4})(,([0-9]{0,4}))?\}/.exec(s.slice(i, i + 12));
  if (m === null) return null;
  const n = Number(m[1]);
  const max = m[2] === undefined ? n : m[3] === '' ? n + 1 : Number(m[3]);
  return { end: i + m[0].length, factor: Math.max(1, n, max) };
}

/** The end (exclusive) of the bracket class starting at `i` (`[`), or the text's end. */
function classEnd(s: string, i: number): number {
  let j = i + 1;
  if (s[j] === '^') j++;
  if (s[j] === ']') j++;
  while (j < s.length) {
    const c = s[j];
    if (c === '\\') j += 2;
    else if (c === '[' && s[j + 1] === ':') {
      const close = s.indexOf(':]', j + 2);
      j = close < 0 ? j + 1 : close + 2;
    } else if (c === ']') return j + 1;
    else j++;
  }
  return s.length;
}

/** How many Unicode classes (`\\p…`, `\\P…`) the bracket class source[start, end) holds. */
function unicodeClassesIn(source: string, start: number, end: number): number {
  let n = 0;
  for (let j = start + 1; j < end - 1; j++) {
    if (source[j] !== '\\') continue;
    if (source[j + 1] === 'p' || source[j + 1] === 'P') n++;
    j++;
  }
  return n;
}

/** The estimated compiled size of `source`, in literal-sized units (upper-bound-ish; not exact). */
export function regexExpansion(source: string): number {
  const stack: { sum: number; last: number; weight: number }[] = [];
  let sum = 0;
  let last = 0;
  // Whether the current alternative holds nothing yet (at the start, after `(` or `|`).
  let emptyAlternative = true;
  const atom = (w: number) => {
    sum += w;
    last = w;
    emptyAlternative = false;
  };
  for (let i = 0; i < source.length; ) {
    const c = source[i]!;
    if (c === '\\') {
      const e = source[i + 1];
      if (e === 'p' || e === 'P') {
        const close = source[i + 2] === '{' ? source.indexOf('}', i + 3) : -1;
        i = close >= 0 ? close + 1 : i + 3;
        atom(UNICODE_CLASS_WEIGHT);
      } else if (e === 'Q') {
        const end = source.indexOf('\\E', i + 2);
        const stop = end < 0 ? source.length : end;
        for (let k = i + 2; k < stop; k++) atom(1);
        i = end < 0 ? source.length : end + 2;
      } else if (e === 'x' && source[i + 2] === '{') {
        const close = source.indexOf('}', i + 3);
        i = close >= 0 ? close + 1 : source.length;
        atom(1);
      } else {
        i += 2;
        atom(e !== undefined && 'dDsSwW'.includes(e) ? CLASS_WEIGHT : 1);
      }
    } else if (c === '[') {
      const end = classEnd(source, i);
      atom(CLASS_WEIGHT + UNICODE_CLASS_WEIGHT * unicodeClassesIn(source, i, end));
      i = end;
    } else if (c === '(') {
      let body = i + 1;
      let weight = CAPTURE_WEIGHT;
      if (source[i + 1] === '?') {
        // `(?flags)` sets flags and is no group; `(?flags:`, `(?P<name>`, `(?<name>` open one.
        let j = i + 2;
        if (source[j] === 'P') j++;
        if (source[j] === '<') {
          const close = source.indexOf('>', j);
          body = close < 0 ? source.length : close + 1;
        } else {
          while (j < source.length && /[a-zA-Z-]/.test(source[j]!)) j++;
          if (source[j] === ')') {
            i = j + 1;
            continue;
          }
          body = source[j] === ':' ? j + 1 : j;
          weight = GROUP_WEIGHT;
        }
      }
      stack.push({ sum, last, weight });
      sum = 0;
      last = 0;
      emptyAlternative = true;
      i = body;
    } else if (c === ')') {
      const outer = stack.pop();
      const group = sum + (outer?.weight ?? 0);
      sum = (outer?.sum ?? 0) + group;
      last = group;
      emptyAlternative = false;
      i++;
    } else if (c === '|') {
      if (emptyAlternative) sum += EMPTY_ALTERNATIVE_WEIGHT;
      last = 0;
      emptyAlternative = true;
      i++;
    } else if (c === '{') {
      const r = readRepeat(source, i);
      if (r === null) {
        atom(1);
        i++;
      } else {
        sum += last * (r.factor - 1);
        last *= r.factor;
        i = r.end;
      }
    } else if (c === '*' || c === '+' || c === '?') {
      // Charged with what it repeats, so a counted repetition of it multiplies both.
      sum += QUANTIFIER_WEIGHT;
      last += QUANTIFIER_WEIGHT;
      i++;
    } else {
      atom(1);
      i += c.charCodeAt(0) >= 0xd800 && c.charCodeAt(0) <= 0xdbff ? 2 : 1;
    }
  }
  while (stack.length > 0) {
    const open = stack.pop()!;
    sum += open.sum + open.weight;
  }
  return sum;
}

/**
 * The regexes of one query (or of one request's `match[]` values) that the
 * gateway compiles, charged by their estimated compiled size before they are
 * compiled: over MAX_REGEX_EXPANSION in all, the query is refused as too large.
 */
export class RegexBudget {
  readonly #language: string;
  #spent = 0;
  constructor(language: string) {
    this.#language = language;
  }
  /** Charges `source`; throws `query_too_large` (a QueryError of this budget's language) once the total is over the budget. */
  charge(source: string, prefix = ''): void {
    this.#spent += regexExpansion(source);
    if (this.#spent > MAX_REGEX_EXPANSION) {
      throw new QueryError(this.#language, `${prefix}the query's regular expressions are too large (counted repetitions expand to more than ${MAX_REGEX_EXPANSION} units)`, 'query_too_large');
    }
  }
}
