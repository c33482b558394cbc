/** PromQL under a policy of several groups: an `or` of per-group forms where that is exact. */
import type { SyntaxNode, Tree } from '@lezer/common';
import { BinaryExpr, FunctionCall, FunctionCallBody, GroupLeft, GroupRight, LineComment, MatchingModifierClause, MatrixSelector, ParenExpr, UnaryExpr } from '@prometheus-io/lezer-promql';
import { QueryError } from '../errors.ts';
import { LANG, MODIFIERS, exprArgs, firstNonComment, functionName, isSame, lastNonComment, selectorLabel, type SelectorInfo } from './promql-analysis.ts';
import type { PreparedGroup, PreparedPolicy } from './promql-policy.ts';
import { absentLabelFix, renderSelector, satisfiesSomeGroup, withLabels } from './promql-splice.ts';
import { RegexBudget } from './regex-budget.ts';
import type { RewriteLimits } from './rewriter.ts';
import type { LabelChange } from './label-fix.ts';

/**
 * Range functions for which `f(s{G1}[r]) or f(s{G2}[r])` equals f over the
 * union: they compute each output series from exactly one input series and
 * keep its labels (at most dropping the metric name). With a selector pinned
 * to one metric name, distinct input series give distinct output label sets,
 * and a series in both alternatives gives the same sample on both sides.
 *
 * Deliberately absent: absent_over_time (not per series: its result depends
 * on the whole set, and its labels on the selector's matchers).
 */
const RANGE_FUNCTIONS = new Map<string, { readonly rangeArg: number; readonly minArgs: number; readonly maxArgs: number }>([
  ...[
    'rate',
    'irate',
    'increase',
    'delta',
    'idelta',
    'deriv',
    'changes',
    'resets',
    'avg_over_time',
    'min_over_time',
    'max_over_time',
    'sum_over_time',
    'count_over_time',
    'stddev_over_time',
    'stdvar_over_time',
    'last_over_time',
    'first_over_time',
    'present_over_time',
    'mad_over_time',
    'ts_of_first_over_time',
    'ts_of_last_over_time',
    'ts_of_max_over_time',
    'ts_of_min_over_time',
  ].map((f) => [f, { rangeArg: 0, minArgs: 1, maxArgs: 1 }] as const),
  ['quantile_over_time', { rangeArg: 1, minArgs: 2, maxArgs: 2 }],
  ['predict_linear', { rangeArg: 0, minArgs: 2, maxArgs: 2 }],
  // integral(v range-vector, strategy=2 scalar): per series, as sum_over_time.
  ['integral', { rangeArg: 0, minArgs: 1, maxArgs: 2 }],
  ['double_exponential_smoothing', { rangeArg: 0, minArgs: 3, maxArgs: 3 }],
]);

/**
 * Per-series instant functions that Prometheus evaluates differently when
 * their argument is literally a vector selector (timestamp() returns sample
 * times only then). The whole call is the unit that gets OR-ed.
 */
const SELECTOR_SENSITIVE_FUNCTIONS = new Set(['timestamp']);

/**
 * Functions whose result depends on the argument's syntax (absent: labels
 * from the selector's equality matchers) or whose evaluation we have not
 * verified (start_timestamp, experimental). A selector that is their direct
 * argument has no exact multi-group rewrite.
 */
const SELECTOR_ARG_UNSUPPORTED = new Map([['start_timestamp', 'is not known to be computed per series from its argument\'s value']]);

interface Unit {
  readonly from: number;
  readonly to: number;
  readonly sel: SelectorInfo | null;
  readonly children: Unit[];
  /** An absent()/absent_over_time() call: its per-group forms are joined with `and on()`, not `or`. */
  readonly absent?: boolean;
  /** An instant selector over several metric names: its per-group forms carry the name in NAME_LABEL for the `or`. */
  readonly byName?: boolean;
}

/**
 * The metric name, copied into a label so that `or` tells apart series of
 * different metrics with otherwise equal labels (it compares label sets
 * without `__name__`), and removed again around the `or`. A reserved name
 * (`__` prefix): no stored series carries it.
 */
const NAME_LABEL = '__lbac_metric_name__';
const withNameLabel = (expr: string): string => `label_replace(${expr}, "${NAME_LABEL}", "$1", "__name__", "(.+)")`;
const withoutNameLabel = (expr: string): string => `label_replace(${expr}, "${NAME_LABEL}", "", "", "")`;

/**
 * Most per-group forms joined in one flat chain: `(U1 or U2 or … or U8)`.
 * Above that the forms are split in two halves, each joined the same way,
 * `((U1 or … or U8) or (U9 or … or U16))`, so that no bracket level holds
 * more than FLAT_GROUPS - 1 operators (the parser's chain limit,
 * PROMQL_MAX_CHAIN, is per level) and the nesting grows with log2 of the
 * number of groups (1024 groups: 8 levels of `or`).
 *
 * Exact: `or` and `and on()` are associative in what they keep. `A or B` is
 * A and the samples of B whose label set (without the metric name) A lacks;
 * `(A or B) or C` and `A or (B or C)` both give A, B minus A's label sets,
 * and C minus A's and B's. `A and on() B` is A if B is non-empty, else
 * nothing; both groupings give the first part if every part is non-empty.
 * (The order of the series is no part of the answer either way: Prometheus
 * collects a binary operator's output series per step in a map.)
 * e2e/promql-dnf-balanced.test.ts compares both forms on the real Prometheus.
 */
const FLAT_GROUPS = 8;

export function joinBalanced(parts: readonly string[], op: string): string {
  if (parts.length <= FLAT_GROUPS) return `(${parts.join(op)})`;
  const half = Math.ceil(parts.length / 2);
  return `(${joinBalanced(parts.slice(0, half), op)}${op}${joinBalanced(parts.slice(half), op)})`;
}

function unsupported(message: string): QueryError {
  return new QueryError(LANG, `${message}; a multi-group policy has no exact rewrite for this query`, 'rewrite_unsupported');
}

/**
 * The smallest enclosing expression that can be OR-ed per group without
 * changing the result; for the argument of absent() or absent_over_time(),
 * the call (`absent` set), whose per-group forms are AND-ed instead.
 */
function unitFor(text: string, sel: SelectorInfo): { from: number; to: number; absent?: boolean; instant?: boolean } {
  const node = sel.node;
  if (node === null) throw new Error('internal: selector node missing');
  const label = selectorLabel(text, sel);
  for (let a = node.parent; a !== null; a = a.parent) {
    if (a.type.id === FunctionCall && functionName(text, a) === 'info') throw unsupported(`selector ${label} is used in info()`);
  }
  let n: SyntaxNode = node;
  while (n.parent !== null && MODIFIERS.has(n.parent.type.id)) n = n.parent;
  const parent = n.parent;
  if (parent !== null && parent.type.id === MatrixSelector) {
    // Range context: s[r] (with modifiers), must be the range argument of a per-series range function.
    let r: SyntaxNode = parent;
    while (r.parent !== null && (MODIFIERS.has(r.parent.type.id) || r.parent.type.id === ParenExpr)) r = r.parent;
    const body = r.parent;
    const call = body?.parent ?? null;
    if (body === null || body.type.id !== FunctionCallBody || call === null || call.type.id !== FunctionCall) {
      throw unsupported(`range selector ${label} is not the argument of a range function (an "or" of range vectors is not valid PromQL)`);
    }
    const fname = functionName(text, call);
    if (fname === 'absent_over_time') return { from: call.from, to: call.to, absent: true };
    const spec = RANGE_FUNCTIONS.get(fname);
    if (spec === undefined) throw unsupported(`${fname}() over the range selector ${label} is not computed per series`);
    const args = exprArgs(body);
    const idx = args.findIndex((x) => x.from === r.from && x.to === r.to);
    if (idx !== spec.rangeArg || args.length < spec.minArgs || args.length > spec.maxArgs) {
      throw unsupported(`unexpected arguments to ${fname}()`);
    }
    return { from: call.from, to: call.to };
  }
  // Instant context (also: directly under a subquery, which evaluates an instant expression per step).
  let q: SyntaxNode = n;
  while (q.parent !== null && q.parent.type.id === ParenExpr) q = q.parent;
  const body = q.parent;
  if (body !== null && body.type.id === FunctionCallBody && body.parent !== null && body.parent.type.id === FunctionCall) {
    const fname = functionName(text, body.parent);
    if (SELECTOR_SENSITIVE_FUNCTIONS.has(fname)) return { from: body.parent.from, to: body.parent.to };
    if (fname === 'absent') return { from: body.parent.from, to: body.parent.to, absent: true };
    const why = SELECTOR_ARG_UNSUPPORTED.get(fname);
    if (why !== undefined) throw unsupported(`${fname}(${label}) ${why}`);
  }
  return { from: n.from, to: modifiersEnd(n), instant: true };
}

/**
 * Where the selector-with-modifiers `n` ends as Prometheus parses it.
 *
 * Prometheus binds the postfix modifiers (`offset`, `@`, `anchored`,
 * `smoothed`) tighter than any operator: `a - b offset 5m` is
 * `a - (b offset 5m)`, `-b @ 100` is `-(b @ 100)`. lezer-promql gives them no
 * precedence and attaches them to the whole operator expression
 * (`(a - b) offset 5m`). So a modifier that Lezer hangs on a binary/unary
 * expression whose rightmost operand is `n` belongs to `n`, and the unit
 * must include it (`(b{G1} offset 5m or b{G2} offset 5m)`); leaving it
 * outside the `or` makes Prometheus reject the query.
 *
 * Only the DNF units depend on this. Splicing and verification work on
 * VectorSelector nodes, which are the same tokens in both parsers whatever
 * the modifiers attach to. (`[…]` and `[…:]` after a binary expression
 * bind to the rightmost operand in Prometheus too; that makes a range vector
 * an operand, which Prometheus rejects, so those are left as they are.)
 */
function modifiersEnd(n: SyntaxNode): number {
  let top = n;
  for (;;) {
    let m = top;
    for (let p = m.parent; p !== null && (p.type.id === BinaryExpr || p.type.id === UnaryExpr) && isSame(lastNonComment(p), m); p = m.parent) m = p;
    const mod = m.parent;
    if (m === top || mod === null || !MODIFIERS.has(mod.type.id) || !isSame(firstNonComment(mod), m)) return top.to;
    top = mod;
    while (top.parent !== null && MODIFIERS.has(top.parent.type.id)) top = top.parent;
  }
}

function pinsOneMetricName(sel: SelectorInfo): boolean {
  // `__name__=~"up"`: a fully anchored regex without metacharacters matches that one name only.
  return sel.ident !== null || sel.items.some((i) => i.name === '__name__' && i.value !== null && (i.op === '=' || (i.op === '=~' && PLAIN_METRIC_NAME.test(i.value))));
}
const PLAIN_METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/**
 * Start positions of the right operands that directly follow a bare
 * `group_left` / `group_right` (no label list). An `or` group placed there
 * would be read as the label list (`group_left (x{G1} or x{G2})`), so it is
 * preceded by an explicit empty one: `group_left () (x{G1} or x{G2})`, which
 * Prometheus treats exactly like a bare `group_left`.
 */
function afterBareGroupModifier(tree: Tree): Set<number> {
  const out = new Set<number>();
  tree.iterate({
    enter(n) {
      if (n.type.id !== MatchingModifierClause) return undefined;
      const last = lastNonComment(n.node);
      if (last !== null && (last.type.id === GroupLeft || last.type.id === GroupRight)) {
        let next = n.node.nextSibling;
        while (next !== null && next.type.id === LineComment) next = next.nextSibling;
        if (next !== null && next.type.is('Expr')) out.add(next.from);
      }
      return false;
    },
  });
  return out;
}

/**
 * More than one group: each selector `s` that no group already covers is
 * replaced by `(U{G1} or U{G2} …)` (nested in halves above FLAT_GROUPS groups:
 * joinBalanced), where U is its unit: the selector with
 * its modifiers in instant context; the enclosing per-series range function
 * call for `s[r]`; the enclosing timestamp() call.
 *
 * Exactness: `or` keeps all of the left side plus right-side samples whose
 * label set *without the metric name* is new. If the selector pins a single
 * metric name, two different series never share that label set, so the `or`
 * is exactly the union (a series matching several groups appears once, with
 * the same sample). Selectors that can match several metric names are
 * rejected, as are range selectors outside per-series range functions,
 * absent(), info() and anything else without an exact form.
 *
 * Units follow Prometheus' precedence, not Lezer's (see modifiersEnd), and an
 * `or` group right after a bare group_left/group_right gets an explicit empty
 * label list in front (see afterBareGroupModifier).
 */
export function rewriteDnf(text: string, tree: Tree, selectors: readonly SelectorInfo[], policy: PreparedPolicy, limits: RewriteLimits): string {
  const groups = policy.groups;
  const regexes = new RegexBudget(LANG);
  const units: Unit[] = [];
  for (const sel of selectors) {
    if (satisfiesSomeGroup(sel, groups)) continue; // already within one alternative: s ∩ (G1 ∪ …) = s
    const u = unitFor(text, sel);
    // `or` matches series on their labels without the metric name: over several metric names, the
    // name is copied into a label for the `or` (instant vectors only; range functions drop the name).
    const byName = u.absent !== true && !pinsOneMetricName(sel);
    if (byName && u.instant !== true) {
      throw unsupported(`selector ${selectorLabel(text, sel)} does not pin a single metric name, so an "or" per policy group could drop series`);
    }
    units.push({ from: u.from, to: u.to, sel, children: [], absent: u.absent === true, byName });
  }
  if (units.length === 0) return text;
  const groupModifierEnds = afterBareGroupModifier(tree);
  units.sort((a, b) => a.from - b.from || b.to - a.to);
  const root: Unit = { from: 0, to: text.length, sel: null, children: [] };
  const stack: Unit[] = [root];
  for (const u of units) {
    let top = stack[stack.length - 1] as Unit;
    while (!(u.from >= top.from && u.to <= top.to)) {
      stack.pop();
      top = stack[stack.length - 1] as Unit;
    }
    if (top !== root && top.from === u.from && top.to === u.to) throw unsupported('two selectors share one function call');
    top.children.push(u);
    stack.push(u);
  }
  // The expansion multiplies text (k alternatives per unit, nested units
  // multiply again); bound the work and the output sent upstream.
  const budget = Math.min(4 * groups.length * (text.length + selectors.length * (policy.maxGroupText + 8)) + 1024, 4 * limits.maxQueryLength);
  let emitted = 0;
  const emit = (u: Unit, group: PreparedGroup | null): string => {
    let out = '';
    let pos = u.from;
    const parts: { from: number; to: number; unit: Unit | null }[] = u.children.map((ch) => ({ from: ch.from, to: ch.to, unit: ch }));
    if (u.sel !== null) parts.push({ from: u.sel.from, to: u.sel.to, unit: null });
    parts.sort((a, b) => a.from - b.from);
    for (const part of parts) {
      let piece: string;
      if (part.unit === null) {
        piece = renderSelector(text, u.sel as SelectorInfo, group as PreparedGroup);
      } else {
        const child = part.unit;
        if (child.absent === true) {
          // absent over the union is absent over every part: `absent(s{G1}) and on() absent(s{G2})`,
          // with the first part's result labels put back to those of s as written. The first part
          // is the first group whose labels can be put back (`and on()` keeps only its labels), so
          // what is refused does not depend on the order of the decision's groups.
          const sel = child.sel as SelectorInfo;
          const { lead, fix } = sel.absentCall === null ? { lead: 0, fix: [] } : absentLead(text, sel, groups, regexes);
          const ordered = [groups[lead] as PreparedGroup, ...groups.filter((_, i) => i !== lead)];
          piece = withLabels(joinBalanced(ordered.map((g) => emit(child, g)), ' and on() '), fix);
        } else if (child.byName === true) {
          piece = withoutNameLabel(joinBalanced(groups.map((g) => withNameLabel(emit(child, g))), ' or '));
        } else {
          piece = joinBalanced(groups.map((g) => emit(child, g)), ' or ');
        }
        if (groupModifierEnds.has(part.from)) piece = `() ${piece}`;
      }
      out += text.slice(pos, part.from) + piece;
      pos = part.to;
      emitted += piece.length;
      if (emitted > budget) {
        throw new QueryError(LANG, 'query is too large after expanding the multi-group policy', 'query_too_large');
      }
    }
    return out + text.slice(pos, u.to);
  };
  return emit(root, null);
}

/**
 * The group whose absent() part leads a multi-group absent (its result labels are the answer's)
 * and the label changes that put them back: the first group for which they exist. When none has,
 * the first group's refusal.
 */
function absentLead(text: string, sel: SelectorInfo, groups: readonly PreparedGroup[], regexes: RegexBudget): { lead: number; fix: LabelChange[] } {
  let firstError: unknown;
  for (const [i, g] of groups.entries()) {
    try {
      const fix = absentLabelFix(text, sel, g, regexes);
      if (fix === null) throw unsupported(`absent() of ${selectorLabel(text, sel)}, a selector with a matcher that cannot be read,`);
      return { lead: i, fix };
    } catch (e) {
      if (!(e instanceof QueryError)) throw e;
      firstError ??= e;
    }
  }
  throw firstError;
}
