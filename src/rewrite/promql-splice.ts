/**
 * Splicing one group of matchers into the selectors of a PromQL query as
 * text, and what absent()/absent_over_time() need so their result labels stay
 * those of the query as written.
 */
import { QueryError } from '../errors.ts';
import { labelChanges, withLabelChanges, type LabelChange } from './label-fix.ts';
import type { MatchOp as MatchOpT, Matcher } from './matcher.ts';
import { LANG, matchesEmpty, selectorLabel, type InfoCall, type SelectorInfo } from './promql-analysis.ts';
import { formatMatcher, quotePromQLString } from './promql-escape.ts';
import type { PreparedGroup, PreparedPolicy } from './promql-policy.ts';
import { RegexBudget } from './regex-budget.ts';

function hasMatcher(sel: SelectorInfo, m: Matcher): boolean {
  for (const it of sel.items) {
    if (it.value !== null && it.name === m.name && it.op === m.op && it.value === m.value) return true;
  }
  return m.name === '__name__' && m.op === '=' && sel.ident !== null && sel.ident.text === m.value;
}

export function satisfiesSomeGroup(sel: SelectorInfo, groups: readonly PreparedGroup[]): boolean {
  return groups.some((g) => g.matchers.every((m) => hasMatcher(sel, m)));
}

/**
 * The replacement text for `text[sel.from, sel.to)` with the group's missing
 * matchers added. Insertion only, except when a `__name__` matcher must be
 * added to a selector whose name is written outside the braces: Prometheus
 * rejects `up{__name__=~"…"}` ("metric name must not be set twice"), so the
 * name moves inside as the equivalent `{__name__="up",…}`.
 */
export function renderSelector(text: string, sel: SelectorInfo, group: PreparedGroup): string {
  let ins = '';
  let move = false;
  for (let i = 0; i < group.matchers.length; i++) {
    const m = group.matchers[i] as Matcher;
    if (hasMatcher(sel, m)) continue;
    ins = ins === '' ? (group.texts[i] as string) : `${ins},${group.texts[i] as string}`;
    if (m.name === '__name__' && sel.ident !== null) move = true;
  }
  if (ins === '') return text.slice(sel.from, sel.to);
  const ident = sel.ident;
  const braces = sel.braces;
  if (braces === null) {
    // `metric` alone.
    const name = ident === null ? '' : ident.text;
    return move ? `{__name__=${quotePromQLString(name)},${ins}}` : `${name}{${ins}}`;
  }
  const nameText = move && ident !== null ? `__name__=${quotePromQLString(ident.text)},` : '';
  const start = move && ident !== null ? ident.to : sel.from;
  const open = braces.from + 1;
  const last = sel.items[sel.items.length - 1];
  if (last === undefined) {
    return `${text.slice(start, open)}${nameText}${ins}${text.slice(open, sel.to)}`;
  }
  return `${text.slice(start, open)}${nameText}${text.slice(open, last.to)},${ins}${text.slice(last.to, sel.to)}`;
}

/** Labels Prometheus never takes from absent()'s matchers (schema.IsMetadataLabel). */
const METADATA_LABELS: ReadonlySet<string> = new Set(['__name__', '__type__', '__unit__']);

type AbsentMatcher = { readonly name: string | null; readonly op: MatchOpT | null; readonly value: string | null };

/**
 * The result labels of absent()/absent_over_time() over a selector with these
 * matchers, in order, as Prometheus builds them (createLabelsForAbsentFunction):
 * each first `=` matcher of a name sets it (an empty value sets nothing), any
 * other matcher of that name removes it. Null when a matcher cannot be read.
 */
function absentLabels(matchers: readonly AbsentMatcher[]): Map<string, string> | null {
  const out = new Map<string, string>();
  const has = new Set<string>();
  for (const m of matchers) {
    if (m.name === null || m.op === null || m.value === null) return null;
    if (METADATA_LABELS.has(m.name)) continue;
    if (m.op === '=' && !has.has(m.name)) {
      has.add(m.name);
      if (m.value === '') out.delete(m.name);
      else out.set(m.name, m.value);
    } else {
      out.delete(m.name);
    }
  }
  return out;
}

/**
 * The orders in which createLabelsForAbsentFunction may read a selector's
 * matchers: as written, and as the TSDB leaves them. Looking the selector up,
 * the TSDB sorts the selector's own matcher slice in place (tsdb/querier.go
 * PostingsForMatchers: a stable partition, "intersecting" matchers first), and
 * absent() reads that slice afterwards; the sort happens only when the lookup
 * reaches a block (some data in the query's time range), so either order is
 * possible. `{namespace!="a", namespace="b"}` gives `namespace="b"` as written
 * and no label once sorted. Only the relative order of one label's matchers
 * matters to absentLabels, and whether a matcher is "subtracting" depends only
 * on the matchers of its label, so labels with one matcher are left alone (no
 * regex compiled). Null when a matcher cannot be read.
 */
function absentOrders(matchers: readonly AbsentMatcher[], regexes: RegexBudget): (readonly AbsentMatcher[])[] | null {
  const byName = new Map<string, Matcher[]>();
  for (const m of matchers) {
    if (m.name === null || m.op === null || m.value === null) return null;
    const list = byName.get(m.name) ?? [];
    list.push(m as Matcher);
    byName.set(m.name, list);
  }
  const subtracting = new Set<AbsentMatcher>();
  for (const list of byName.values()) {
    if (list.length < 2) continue;
    const empty = list.map((m) => matchesEmpty(m, regexes));
    // tsdb: a label no matcher requires to be set, or a negative matcher that matches the empty string.
    const mustBeSet = empty.includes(false);
    list.forEach((m, i) => {
      if (!mustBeSet || ((m.op === '!=' || m.op === '!~') && empty[i] === true)) subtracting.add(m);
    });
  }
  if (subtracting.size === 0) return [matchers];
  return [matchers, [...matchers.filter((m) => !subtracting.has(m)), ...matchers.filter((m) => subtracting.has(m))]];
}

function sameLabels(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
}

function applyLabelChanges(labels: ReadonlyMap<string, string>, fix: readonly LabelChange[]): Map<string, string> {
  const out = new Map(labels);
  for (const [name, value] of fix) {
    if (value === '') out.delete(name);
    else out.set(name, value);
  }
  return out;
}

/**
 * absent(s) takes its result labels from s's matchers, so the policy's
 * matchers would change them (an added `namespace="a"` appears in the result;
 * an added regex on a label the user pinned removes it). The label changes
 * that give back the labels of the selector as written, for label_replace
 * (`[name, value]`, an empty value deletes the label), in whichever order the
 * backend reads the matchers (absentOrders); null when a matcher cannot be
 * read. Throws rewrite_unsupported when no one set of changes is right for
 * both orders: the policy's matchers are on a label whose result, as written,
 * depends on the order.
 */
export function absentLabelFix(text: string, sel: SelectorInfo, group: PreparedGroup, regexes: RegexBudget): LabelChange[] | null {
  const written = absentOrders(sel.items, regexes);
  const enforced = absentOrders([...sel.items, ...group.matchers.filter((m) => !hasMatcher(sel, m))], regexes);
  if (written === null || enforced === null) return null;
  // Per order (as written, as the TSDB leaves them): the labels wanted and the labels the enforced selector gets.
  const pairs = [0, 1].map((i) => ({ wanted: labelsInOrder(written, i), got: labelsInOrder(enforced, i) }));
  const fix = uniqueChanges(pairs.flatMap((p) => labelChanges(p.wanted, p.got)));
  if (pairs.some((p) => !sameLabels(applyLabelChanges(p.got, fix), p.wanted))) {
    throw new QueryError(
      LANG,
      `absent() of ${selectorLabel(text, sel)}: its result labels depend on the order in which the backend's storage leaves the selector's matchers, and the policy's matchers change them; write the "=" matcher of each label before its other matchers, or drop the redundant one`,
      'rewrite_unsupported',
    );
  }
  return fix;
}

/** absentLabels in order `i` of absentOrders (the last one when there is only one); never null, every matcher was read. */
function labelsInOrder(orders: readonly (readonly AbsentMatcher[])[], i: number): Map<string, string> {
  return absentLabels(orders[Math.min(i, orders.length - 1)] as readonly AbsentMatcher[]) as Map<string, string>;
}

function uniqueChanges(changes: readonly LabelChange[]): LabelChange[] {
  const seen = new Set<string>();
  return changes.filter(([name, value]) => {
    const key = `${name}\u0000${value}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export const withLabels = (expr: string, fix: readonly LabelChange[]): string => withLabelChanges(expr, fix, quotePromQLString);

/** A text edit of the splice: `[from, to)` replaced by `text` (an insertion when from === to). */
interface Edit {
  readonly from: number;
  readonly to: number;
  readonly text: string;
  /**
   * For insertions: whether it closes a construct (after what it wraps) and
   * the length of what it wraps, so that at one position closings come first,
   * innermost first, then openings, outermost first.
   */
  readonly closes?: boolean;
  readonly span?: number;
}

function byPosition(a: Edit, b: Edit): number {
  if (a.from !== b.from) return a.from - b.from;
  // Closings, then openings, then the replacement of what starts here (a selector, wrapped by the openings).
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  return ra === 0 ? (a.span ?? 0) - (b.span ?? 0) : (b.span ?? 0) - (a.span ?? 0);
}

const rank = (e: Edit): number => (e.closes === true ? 0 : e.closes === false ? 1 : 2);

const INFO_LABEL = (i: number): string => `__lbac_info_${i}__`;

/**
 * info(v, {…}) adds, as data labels, the labels its selector has matchers
 * on, where v's series lack them (promql/info.go): the policy's matchers in
 * that selector would add the policy's labels to series of v that lack them
 * (e.g. `sum by (job) (…)`). Each such label is copied from v into a
 * reserved label before info() and put back afterwards (an empty copy
 * removes it), so the result keeps the labels of the query as written:
 * `label_replace(label_replace(info(label_replace(v, T, "$1", L, "(.*)"), {…}), L, "$1", T, "(.*)"), T, "", "", "")`.
 */
function infoLabelEdits(info: InfoCall, sel: SelectorInfo, group: PreparedGroup): Edit[] {
  const labels = [...new Set(group.matchers.filter((m) => m.name !== '__name__' && !sel.items.some((it) => it.name === m.name)).map((m) => m.name))];
  if (labels.length === 0) return [];
  const baseSpan = info.base.to - info.base.from;
  const callSpan = info.to - info.from;
  const copy = labels.map((l, i) => `, "${INFO_LABEL(i)}", "$1", ${quotePromQLString(l)}, "(.*)")`).join('');
  const restore = labels.map((l, i) => `, ${quotePromQLString(l)}, "$1", "${INFO_LABEL(i)}", "(.*)"), "${INFO_LABEL(i)}", "", "", "")`).join('');
  return [
    { from: info.from, to: info.from, text: 'label_replace('.repeat(2 * labels.length), closes: false, span: callSpan },
    { from: info.base.from, to: info.base.from, text: 'label_replace('.repeat(labels.length), closes: false, span: baseSpan },
    { from: info.base.to, to: info.base.to, text: copy, closes: true, span: baseSpan },
    { from: info.to, to: info.to, text: restore, closes: true, span: callSpan },
  ];
}

/**
 * The group to splice into info()'s data-label selector. Which metrics are
 * info metrics is read from that selector's `__name__` matchers
 * (promql/info.go, effectiveInfoNameMatchers): none means `target_info`, only
 * negative ones mean `.+_info` as well, any `=`/`=~` one means exactly those.
 * A policy's `__name__` matcher would be such a positive matcher and turn
 * every metric the team may read into an info metric (and every base series
 * it matches into one that info() leaves alone), so where the user wrote no
 * positive one, Prometheus' default is written out first.
 */
function infoSelectorGroup(sel: SelectorInfo, group: PreparedGroup): PreparedGroup {
  if (!group.matchers.some((m) => m.name === '__name__' && !hasMatcher(sel, m))) return group;
  if (sel.ident !== null || sel.items.some((it) => it.name === '__name__' && (it.op === '=' || it.op === '=~'))) return group;
  const m: Matcher = sel.items.some((it) => it.name === '__name__') ? { name: '__name__', op: '=~', value: '.+_info' } : { name: '__name__', op: '=', value: 'target_info' };
  return { matchers: [m, ...group.matchers], texts: [formatMatcher(m), ...group.texts] };
}

/** One group spliced into every selector; with a merged policy, a selector already inside one of its alternatives stays as written. */
export function rewriteSingle(text: string, selectors: readonly SelectorInfo[], policy: PreparedPolicy): string {
  const group = policy.groups[0] as PreparedGroup;
  const regexes = new RegexBudget(LANG);
  const edits: Edit[] = [];
  let pos = 0;
  for (let i = 0; i < selectors.length; i++) {
    const sel = selectors[i] as SelectorInfo;
    if (policy.merged && satisfiesSomeGroup(sel, policy.alternatives)) continue;
    const rendered = renderSelector(text, sel, sel.info === null ? group : infoSelectorGroup(sel, group));
    if (sel.info !== null) edits.push(...infoLabelEdits(sel.info, sel, group));
    // The call must hold this selector alone (Lezer also parses `absent(a, b)`, which Prometheus refuses).
    const next = selectors[i + 1];
    const call = sel.absentCall !== null && sel.absentCall.from >= pos && (next === undefined || next.from >= sel.absentCall.to) ? sel.absentCall : null;
    const fix = call === null ? null : absentLabelFix(text, sel, group, regexes);
    if (call === null || fix === null || fix.length === 0) {
      edits.push({ from: sel.from, to: sel.to, text: rendered });
      pos = sel.to;
      continue;
    }
    // absent(s): the call's result labels put back to those of s as written.
    edits.push({ from: call.from, to: call.to, text: withLabels(text.slice(call.from, sel.from) + rendered + text.slice(sel.to, call.to), fix) });
    pos = call.to;
  }
  if (edits.length === 0) return text;
  edits.sort(byPosition);
  let out = '';
  pos = 0;
  for (const e of edits) {
    out += text.slice(pos, e.from) + e.text;
    pos = e.to;
  }
  return out + text.slice(pos);
}
