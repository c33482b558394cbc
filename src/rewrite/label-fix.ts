/**
 * Putting back result labels that a function takes from its selector's own
 * matchers (PromQL absent()/absent_over_time(), LogQL absent_over_time()),
 * which the policy's added matchers would otherwise change. Both languages
 * read label_replace alike. Pure.
 */

/** A label to set to `value`, or to remove when `value` is empty. */
export type LabelChange = readonly [name: string, value: string];

/** The changes that turn the labels of the enforced selector into those of the selector as written. */
export function labelChanges(asWritten: ReadonlyMap<string, string>, enforced: ReadonlyMap<string, string>): LabelChange[] {
  const out: LabelChange[] = [];
  for (const name of enforced.keys()) if (!asWritten.has(name)) out.push([name, '']);
  for (const [name, value] of asWritten) if (enforced.get(name) !== value) out.push([name, value]);
  return out;
}

/**
 * `expr` inside label_replace(…, "name", "value", "", "") per change: the
 * empty source label and regex match every series, an empty value removes
 * the label, and `$` is written `$$` (the replacement is expanded).
 */
export function withLabelChanges(expr: string, changes: readonly LabelChange[], quote: (s: string) => string): string {
  let out = expr;
  for (const [name, value] of changes) out = `label_replace(${out}, ${quote(name)}, ${quote(value.split('$').join('$$'))}, "", "")`;
  return out;
}
