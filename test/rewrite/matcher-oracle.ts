/**
 * An independent evaluation of label matchers for the rewriters' semantic
 * property tests: RE2 (re2js) anchored as Prometheus and Loki anchor a regex
 * matcher (`^(?s:re)$`), a missing label read as "". Deliberately imports
 * nothing from src/rewrite (src/rewrite/matcher.ts has its own).
 */
import { RE2JS } from 're2js';

export function anchoredMatch(re: string, s: string): boolean {
  return RE2JS.compile(`^(?s:${re})$`).matcher(s).find();
}

/** Whether a matcher holds for a label value ("" when the label is absent). */
export function evalMatcher(m: { op: string; value: string }, s: string): boolean {
  switch (m.op) {
    case '=':
      return m.value === s;
    case '!=':
      return m.value !== s;
    case '=~':
      return anchoredMatch(m.value, s);
    default:
      return !anchoredMatch(m.value, s);
  }
}
