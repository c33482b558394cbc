/**
 * PromQL analysis: limits, lexical pre-scan, strict Lezer parse (with the
 * respellings of promql-respell.ts) and one walk of the tree that collects
 * every vector selector with its matchers; plus Prometheus' rules on what the
 * user wrote (non-empty selectors, info()) and small tree helpers shared by
 * the rewriter's other modules.
 */
import type { SyntaxNode, Tree } from '@lezer/common';
import {
  Absent,
  AbsentOverTime,
  AggregateOp,
  AnchoredExpr,
  CountValues,
  DurationExpr,
  FunctionCall,
  FunctionCallBody,
  FunctionIdentifier,
  HistogramQuantiles,
  Identifier,
  Info,
  LabelJoin,
  LabelMatchers,
  LabelName,
  LabelReplace,
  LineComment,
  MatchOp,
  MatrixSelector,
  NumberDurationLiteral,
  NumberDurationLiteralInDurationContext,
  OffsetDurationExpr,
  OffsetExpr,
  ParenExpr,
  QuotedLabelMatcher,
  QuotedLabelName,
  SmoothedExpr,
  SortByLabel,
  SortByLabelDesc,
  StepInvariantExpr,
  StringLiteral,
  UnquotedLabelMatcher,
  VectorSelector,
  parser,
} from '@prometheus-io/lezer-promql';
import { checkChainWeight, type ChainLevel, type ChainRules } from './chain-weight.ts';
import { LiteralError, describeAt, isWellFormedUnicode, prescan, unquoteStringLiteral, type PrescanOptions } from './lezer.ts';
import { isMatchOp, matcherMatches, type MatchOp as MatchOpT, type Matcher } from './matcher.ts';
import { RegexBudget } from './regex-budget.ts';
import type { PreparedPolicy } from './promql-policy.ts';
import { MAX_RESPELLED_NUMBERS, parseRespelled, unsupportedNumberAt } from './promql-respell.ts';
import type { RewriteLimits } from './rewriter.ts';
import { QueryError } from '../errors.ts';

export const LANG = 'promql';

/**
 * Most chained operators one bracket level of a PromQL query may hold (see
 * PROMQL_CHAINS). Lezer gives up on a node that keeps growing from one start
 * (chain-weight.ts): each binary operator, and each range, subquery or
 * selector modifier after one (lezer-promql reads `a + b offset 1m` as
 * `(a + b) offset 1m`), costs two reductions at the start of the chain, so
 * with 2000-character operands 150 such items parse and 151 do not (with
 * short ones a few hundred more, as the first 2000 characters do not count).
 * Measured on @prometheus-io/lezer-promql 0.315.0 with @lezer/lr 1.4.10.
 * Lists (matchers of one selector, function arguments, `by (…)`, `on (…)`)
 * are repetitions, which Lezer builds balanced: 8192 items of 2000
 * characters parse, so they are not counted. 128 leaves room for the nodes
 * around a chain, and is the default `maxQueryDepth` a chain of binary
 * operators needs anyway.
 */
export const PROMQL_MAX_CHAIN = 128;

interface PromChainLevel extends ChainLevel {
  /** Inside `{…}`: label matchers, nothing chains. */
  readonly matchers: boolean;
}

/** Keywords that chain: binary operators and selector modifiers. */
const CHAIN_WORDS = new Set(['and', 'or', 'unless', 'atan2', 'offset', 'anchored', 'smoothed']);

/**
 * PromQL's weights for chainWeight: 1 for each binary operator (`+ - * / % ^`,
 * `== != < > <= >=`, `</ >/`, `and or unless atan2`), each `[` (range,
 * subquery) and each modifier (`offset`, `@`, `anchored`, `smoothed`),
 * counted at the level of the innermost `(`, `[` or `{` around it; nothing
 * inside `{…}`. Unary signs count as binary operators (an upper bound).
 */
export const PROMQL_CHAINS: ChainRules<PromChainLevel> = {
  cComments: false,
  skipBrackets: false,
  colonInWords: true,
  level: (opener) => ({ weight: 0, matchers: opener === 123 }),
  opens(outer, opener) {
    if (opener === 91 && !outer.matchers) outer.weight++;
  },
  word(level, text, from, to) {
    if (level.matchers || to - from > 8 || to - from < 2) return;
    if (CHAIN_WORDS.has(text.slice(from, to).toLowerCase())) level.weight++;
  },
  punct(level, text, i, c) {
    if (level.matchers) return i + 1;
    const next = text.charCodeAt(i + 1);
    switch (c) {
      case 43: // +
      case 45: // -
      case 42: // *
      case 47: // /
      case 37: // %
      case 94: // ^
      case 64: // @
        level.weight++;
        return i + 1;
      case 61: // =
      case 33: // !
        // `==`, `!=`; a lone `=` or `!` is not PromQL outside braces.
        if (next !== 61) return i + 1;
        level.weight++;
        return i + 2;
      case 60: // <
      case 62: // >
        level.weight++;
        return i + (next === 61 || next === 47 ? 2 : 1);
      default:
        return i + 1;
    }
  },
};

/** What the refusal says is over the limit. */
const CHAIN_BOUND = `${PROMQL_MAX_CHAIN} binary operators, ranges, subqueries or offset/@/anchored/smoothed modifiers at one level`;

/**
 * Refuse, before parsing, a text with more chained operators at one bracket
 * level than the parser can build: a clear `query_too_large` at the position
 * of the first item over the limit, the same whatever the items' length,
 * instead of a parse error where the parser gives up (or, for the rewritten
 * query, a failed verification). `what` names the text.
 */
export function checkChains(text: string, prefix: string, what: string, posOffset = 0): void {
  checkChainWeight(LANG, PROMQL_CHAINS, PROMQL_MAX_CHAIN, CHAIN_BOUND, text, prefix, what, posOffset);
}

/** PromQL's lexical shape for prescan (a constant: prescan builds its table once per options object). */
const PRESCAN: PrescanOptions = { lineComment: '#', escapedQuotes: `"'`, rawQuotes: '`' };

/** Comments that contain '\r' followed by more text: Prometheus ends a comment at '\r', Lezer only at '\n'. */
export const CR_IN_COMMENT = /\r[^\r]/;

export interface MatcherItem {
  readonly from: number;
  readonly to: number;
  /** Unescaped label name; null when unknown (value not valid UTF-8). */
  name: string | null;
  op: MatchOpT | null;
  /** Unescaped value; null when not representable (invalid UTF-8 from byte escapes). */
  value: string | null;
}

/** An info() call: its extent and that of its first argument (the base vector). */
export interface InfoCall {
  readonly from: number;
  readonly to: number;
  readonly base: { readonly from: number; readonly to: number };
}

export interface SelectorInfo {
  readonly from: number;
  readonly to: number;
  ident: { readonly from: number; readonly to: number; readonly text: string } | null;
  braces: { readonly from: number; readonly to: number } | null;
  readonly items: MatcherItem[];
  /** Only collected for multi-group policies (needs parent navigation). */
  readonly node: SyntaxNode | null;
  /** The info() call whose data-label selector (second argument) this is; such a selector is exempt from the non-empty matcher rule. */
  info: InfoCall | null;
  /**
   * The absent() call whose argument is this selector (with its modifiers), or
   * the absent_over_time() call whose argument is its range: Prometheus builds
   * that call's result labels from the selector's matchers.
   */
  absentCall: { readonly from: number; readonly to: number } | null;
}

export interface Analysis {
  /** The text the tree was parsed from: the input, with number literals respelled (see respellNumbers). */
  readonly text: string;
  readonly tree: Tree;
  readonly selectors: SelectorInfo[];
}

/** Node types that count towards `maxDepth`: expressions (minus leaves) and duration expressions. */
const COUNTED = new Uint8Array(parser.nodeSet.types.length);
for (const t of parser.nodeSet.types) {
  if ((t.is('Expr') && t.id !== StringLiteral && t.name !== 'NumberDurationLiteral') || t.id === DurationExpr || t.id === OffsetDurationExpr) {
    COUNTED[t.id] = 1;
  }
}

export function checkLength(query: string, limits: RewriteLimits): void {
  if (query.length > limits.maxQueryLength || (query.length * 3 > limits.maxQueryLength && Buffer.byteLength(query, 'utf8') > limits.maxQueryLength)) {
    throw new QueryError(LANG, `query is too long: more than ${limits.maxQueryLength} bytes`, 'query_too_large');
  }
}

export interface AnalyzeOptions {
  readonly limits: RewriteLimits;
  readonly needNodes: boolean;
  /** Added to reported character positions (e.g. -1 when the text was wrapped in '{'). */
  readonly posOffset: number;
  /** Prefix for error messages, e.g. 'invalid parameter "match[]": '. */
  readonly prefix: string;
}

function parseError(opts: AnalyzeOptions, pos: number, what: string): QueryError {
  return new QueryError(LANG, `${opts.prefix}parse error at char ${Math.max(1, pos + 1 + opts.posOffset)}: ${what}`, 'bad_query');
}

export function functionName(text: string, call: SyntaxNode): string {
  const id = call.firstChild;
  return id === null ? '' : text.slice(id.from, id.to);
}

export function exprArgs(body: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = body.firstChild; c !== null; c = c.nextSibling) if (c.type.is('Expr')) out.push(c);
  return out;
}

/**
 * The prefix of the labels the rewriter writes into the queries it forwards
 * (`__lbac_info_<n>__` around info(), promql-splice.ts; `__lbac_metric_name__`
 * for several metric names under a multi-group policy, promql-dnf.ts): a
 * label of the client's own with such a name would be overwritten or removed
 * on the way. Refused wherever a query names a label: matchers (also quoted,
 * `{"__lbac_x"="v"}`), `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`,
 * and the label-name arguments of label_replace, label_join, sort_by_label(_desc)
 * and count_values. Label values, metric names and other strings are free.
 */
export const RESERVED_LABEL_PREFIX = '__lbac_';

function reservedLabel(opts: AnalyzeOptions, pos: number, name: string): QueryError {
  return new QueryError(
    LANG,
    `${opts.prefix}label name ${JSON.stringify(name)} at char ${Math.max(1, pos + 1 + opts.posOffset)}: label names starting with "${RESERVED_LABEL_PREFIX}" are reserved by the gateway`,
    'bad_query',
  );
}

/** Which arguments (by index) of a function, known by its keyword's node type, are label names. */
const LABEL_NAME_ARGS = new Map<number, (i: number) => boolean>([
  [LabelReplace, (i) => i === 1 || i === 3], // label_replace(v, dst, replacement, src, regex)
  [LabelJoin, (i) => i === 1 || i >= 3], // label_join(v, dst, separator, src…)
  [SortByLabel, (i) => i >= 1], // sort_by_label(v, label…)
  [SortByLabelDesc, (i) => i >= 1],
  [CountValues, (i) => i === 0], // count_values("label", v)
  [HistogramQuantiles, (i) => i === 1], // histogram_quantiles(v, label, φ…)
]);

/**
 * Refuse a reserved label name among the string arguments of the call whose
 * function keyword is `keyword` (label_replace and the others of
 * LABEL_NAME_ARGS; count_values under AggregateOp). Prometheus reads such an
 * argument through parentheses (stringFromArg unwraps them); an argument that
 * is not a well-formed string literal is left to the walk, which reports it.
 */
function checkLabelNameArgs(text: string, keyword: SyntaxNode, isLabelArg: (i: number) => boolean, opts: AnalyzeOptions): void {
  const body = keyword.parent?.parent?.getChild(FunctionCallBody);
  if (body === null || body === undefined) return;
  exprArgs(body).forEach((arg, i) => {
    if (!isLabelArg(i)) return;
    let n: SyntaxNode | undefined = arg;
    while (n !== undefined && n.type.id === ParenExpr) n = exprArgs(n)[0];
    // Unquoted first: an escape may spell the prefix ("\x5f_lbac_x").
    if (n === undefined || n.type.id !== StringLiteral) return;
    let name: string | null;
    try {
      name = unquoteStringLiteral(text.slice(n.from, n.to));
    } catch {
      return;
    }
    if (name !== null && name.startsWith(RESERVED_LABEL_PREFIX)) throw reservedLabel(opts, n.from, name);
  });
}

export function analyze(input: string, opts: AnalyzeOptions): Analysis {
  const { limits } = opts;
  if (input.trim() === '') throw new QueryError(LANG, `${opts.prefix}empty query`, 'bad_query');
  checkLength(input, limits);
  if (!isWellFormedUnicode(input)) throw new QueryError(LANG, `${opts.prefix}query is not valid UTF-8`, 'bad_query');
  const scan = prescan(input, PRESCAN);
  if (scan.bracketDepth > limits.maxDepth) {
    throw new QueryError(LANG, `${opts.prefix}query is nested too deeply (more than ${limits.maxDepth} levels)`, 'query_too_large');
  }
  checkChains(input, opts.prefix, 'query', opts.posOffset);
  // Number literals Prometheus accepts and lezer-promql does not lex are respelled
  // in place (same length, same value) where the parse failed, and parsed again.
  // The respelled text is what gets rewritten, verified and forwarded.
  const { text, parsed } = parseRespelled(input);
  if (!parsed.ok) {
    const num = unsupportedNumberAt(text, parsed.pos);
    if (num !== null) {
      throw parseError(
        opts,
        num.from,
        `more than ${MAX_RESPELLED_NUMBERS} number literals the gateway must respell (upper-case 0X, "_" after 0x, or a trailing "."); write ${JSON.stringify(num.text)} as ${num.respelled.trim()}`,
      );
    }
    throw parseError(opts, parsed.pos, describeAt(text, parsed.pos));
  }
  const tree = parsed.tree;
  const selectors: SelectorInfo[] = [];
  const c = tree.cursor();
  const stack: number[] = []; // type ids of the ancestors of the cursor's node
  let depth = 0;
  let sel: SelectorInfo | null = null;
  let item: MatcherItem | null = null;
  // Enclosing function calls, innermost last: their extent and, for absent()/absent_over_time(), which.
  const calls: { from: number; to: number; fn: number }[] = [];

  const leave = (id: number): void => {
    if (COUNTED[id] === 1) depth--;
    if (id === FunctionCall) calls.pop();
    else if (id === VectorSelector) sel = null;
    else if (id === UnquotedLabelMatcher || id === QuotedLabelMatcher) item = null;
    else if (id === QuotedLabelName && stack[stack.length - 1] === LabelMatchers) item = null;
  };

  for (;;) {
    const type = c.type;
    const id = type.id;
    if (type.isError) throw parseError(opts, c.from, describeAt(text, c.from));
    if (COUNTED[id] === 1) {
      depth++;
      if (depth > limits.maxDepth) {
        throw new QueryError(LANG, `${opts.prefix}query is nested too deeply (more than ${limits.maxDepth} levels)`, 'query_too_large');
      }
    }
    const parent = stack.length > 0 ? stack[stack.length - 1] : -1;
    switch (id) {
      case VectorSelector: {
        let k = stack.length - 1;
        while (k >= 0 && MODIFIERS.has(stack[k] as number)) k--;
        const info = k >= 1 && stack[k] === FunctionCallBody && stack[k - 1] === FunctionCall ? infoCallOf(text, c.node) : null;
        // absent(s) or absent_over_time(s[r]), modifiers and parentheses allowed: Prometheus' engine unwraps
        // parentheses around a call's arguments (unwrapParenExpr) before absent reads the selector's labels.
        let j = k;
        let want = Absent;
        if (j >= 0 && stack[j] === MatrixSelector) {
          want = AbsentOverTime;
          for (j--; j >= 0 && MODIFIERS.has(stack[j] as number); j--);
        }
        while (j >= 0 && stack[j] === ParenExpr) j--;
        const call = calls[calls.length - 1];
        const absentCall = j >= 1 && stack[j] === FunctionCallBody && stack[j - 1] === FunctionCall && call !== undefined && call.fn === want ? { from: call.from, to: call.to } : null;
        sel = { from: c.from, to: c.to, ident: null, braces: null, items: [], node: opts.needNodes ? c.node : null, info, absentCall };
        selectors.push(sel);
        break;
      }
      case FunctionCall:
        calls.push({ from: c.from, to: c.to, fn: -1 });
        break;
      case NumberDurationLiteral:
      case NumberDurationLiteralInDurationContext:
        if (text.charCodeAt(c.from) === 0x2e && c.from > 0 && NAME_CHAR.test(text[c.from - 1] as string)) {
          throw parseError(opts, c.from, NAME_THEN_FRACTION);
        }
        break;
      case Absent:
      case AbsentOverTime:
        if (parent === FunctionIdentifier && calls.length > 0) (calls[calls.length - 1] as { fn: number }).fn = id;
        break;
      case Identifier:
        if (parent === VectorSelector && sel !== null) sel.ident = { from: c.from, to: c.to, text: text.slice(c.from, c.to) };
        break;
      case LabelMatchers:
        if (sel !== null) sel.braces = { from: c.from, to: c.to };
        break;
      case UnquotedLabelMatcher:
      case QuotedLabelMatcher:
        if (sel !== null) {
          item = { from: c.from, to: c.to, name: null, op: null, value: null };
          sel.items.push(item);
        }
        break;
      case QuotedLabelName:
        if (parent === LabelMatchers && sel !== null) {
          // Bare `{"metric.name"}`: the metric name.
          item = { from: c.from, to: c.to, name: '__name__', op: '=', value: null };
          sel.items.push(item);
        }
        break;
      case LabelName:
        // In a matcher or a grouping list (by, without, on, ignoring, group_left, group_right).
        if (text.startsWith(RESERVED_LABEL_PREFIX, c.from)) throw reservedLabel(opts, c.from, text.slice(c.from, c.to));
        if (parent === UnquotedLabelMatcher && item !== null) item.name = text.slice(c.from, c.to);
        break;
      case LabelReplace:
      case LabelJoin:
      case SortByLabel:
      case SortByLabelDesc:
      case HistogramQuantiles:
      case CountValues:
        if (parent === (id === CountValues ? AggregateOp : FunctionIdentifier)) checkLabelNameArgs(text, c.node, LABEL_NAME_ARGS.get(id)!, opts);
        break;
      case MatchOp:
        if (item !== null) {
          const op = text.slice(c.from, c.to);
          item.op = isMatchOp(op) ? op : null;
        }
        break;
      case StringLiteral: {
        let value: string | null;
        try {
          value = unquoteStringLiteral(text.slice(c.from, c.to));
        } catch (e) {
          if (e instanceof LiteralError) throw parseError(opts, c.from + e.offset, e.message);
          throw e;
        }
        // A quoted label name in a matcher or a grouping list (`{"a"}` alone, under LabelMatchers, is a metric name).
        if (parent === QuotedLabelName && value !== null && value.startsWith(RESERVED_LABEL_PREFIX) && (stack.length < 2 || stack[stack.length - 2] !== LabelMatchers)) {
          throw reservedLabel(opts, c.from, value);
        }
        if (item !== null) {
          if (parent === QuotedLabelName) {
            const grand = stack.length > 1 ? stack[stack.length - 2] : -1;
            if (grand === LabelMatchers) item.value = value;
            else if (grand === QuotedLabelMatcher) item.name = value;
          } else if (parent === UnquotedLabelMatcher || parent === QuotedLabelMatcher) {
            item.value = value;
          }
        }
        break;
      }
      case LineComment:
        if (CR_IN_COMMENT.test(text.slice(c.from, c.to))) {
          // Prometheus ends a comment at '\r'; Lezer does not. What follows
          // would be hidden from us but evaluated by Prometheus.
          throw parseError(opts, c.from, 'carriage return inside a comment is not supported');
        }
        break;
      case Info:
        checkInfoArity(c.node);
        break;
      default:
        break;
    }
    if (c.firstChild()) {
      stack.push(id);
      continue;
    }
    leave(id);
    for (;;) {
      if (c.nextSibling()) break;
      if (!c.parent()) return { text, tree, selectors };
      leave(stack.pop() as number);
    }
  }
}

/**
 * Prometheus refuses a vector selector that has no metric name outside the
 * braces and whose matchers all match the empty string (`{}`,
 * `{job=~".*"}`, `{a=""}`, `{a!="x"}`): it would select every series. The
 * policy's matchers would make such a selector valid, and the gateway would
 * answer where the backend says bad_data, so the rule is applied to what the
 * user wrote, before rewriting. A matcher whose value or regular expression
 * we cannot evaluate counts as non-empty (Prometheus then rejects the query
 * itself, e.g. for an invalid regular expression). Each regular expression
 * is charged to `regexes` before it is compiled (re2js expands counted
 * repetitions: `(?i)\pL{1000}` repeated would hold the event loop for seconds).
 */
export function matchesOnlyEmpty(sel: SelectorInfo, regexes: RegexBudget, prefix: string): boolean {
  if (sel.ident !== null || sel.info !== null) return false;
  // Equality matchers first: most selectors are decided without compiling a regular expression.
  for (const regex of [false, true]) {
    for (const it of sel.items) {
      if (it.name === null || it.op === null || it.value === null) return false;
      if ((it.op === '=~' || it.op === '!~') !== regex) continue;
      if (regex) regexes.charge(it.value, prefix);
      let empty: boolean;
      try {
        empty = matcherMatches({ name: it.name, op: it.op, value: it.value }, '');
      } catch {
        return false;
      }
      if (!empty) return false;
    }
  }
  return true;
}

/**
 * The info() call of which the selector `vs` (possibly under offset/@
 * modifiers) is the second argument, or null. Prometheus exempts that
 * data-label selector from the non-empty matcher rule
 * (`info(up, {k8s_cluster_name=~".*"})` is valid).
 */
function infoCallOf(text: string, vs: SyntaxNode): InfoCall | null {
  let n = vs;
  while (n.parent !== null && MODIFIERS.has(n.parent.type.id)) n = n.parent;
  const body = n.parent;
  const call = body?.parent ?? null;
  if (body === null || call === null || call.type.id !== FunctionCall || functionName(text, call) !== 'info') return null;
  const args = exprArgs(body);
  const base = args[0];
  return args.length === 2 && base !== undefined && isSame(args[1] ?? null, n) ? { from: call.from, to: call.to, base: { from: base.from, to: base.to } } : null;
}

/**
 * info(v, {__name__="target_info"}) adds every data label of the info series,
 * but once its selector has a matcher on any other label, Prometheus adds only
 * the labels matched there (promql/info.go, dataLabelMatchers). The policy's
 * matchers in that selector would turn "all data labels" into "only the
 * policy's labels": the answer would silently lose its data labels. Refused
 * unless the user names data labels themselves or the policy matches on
 * `__name__` only.
 *
 * And when every data label the user names may be missing (all their
 * matchers match the empty string), Prometheus keeps a base series that no
 * info series matches; a policy matcher that needs its label set makes it drop
 * such a series (a base series whose info series the team cannot see would
 * vanish). Refused too. The policy's labels becoming data labels is undone by
 * the splice (promql-splice.ts, infoLabelEdits).
 */
export function checkInfoDataLabels(selectors: readonly SelectorInfo[], p: PreparedPolicy): void {
  if (!p.groups.some((g) => g.matchers.some((m) => m.name !== '__name__'))) return;
  const regexes = new RegexBudget(LANG);
  for (const sel of selectors) {
    if (sel.info === null) continue;
    const named = sel.items.filter((it) => it.name !== '__name__');
    if (named.length === 0 || named.some((it) => it.name === null)) {
      throw new QueryError(
        LANG,
        'info() with a data-label selector that names no data label would, with the policy\'s matchers added, add only the policy\'s labels; name the data labels to add, e.g. info(metric, {__name__="target_info", k8s_cluster_name=~".+"})',
        'rewrite_unsupported',
      );
    }
    const mayLackAll = named.every((it) => it.op !== null && it.value !== null && matchesEmpty({ name: it.name as string, op: it.op, value: it.value }, regexes));
    // Also on a label the user names: Prometheus drops a base series without an info series once any data-label
    // matcher needs a value, the policy's as much as the user's (`{namespace!="b"}` plus the policy's `namespace="a"`).
    if (mayLackAll && p.groups.some((g) => g.matchers.some((m) => m.name !== '__name__' && !matchesEmpty(m, regexes)))) {
      throw new QueryError(
        LANG,
        'info() whose data-label matchers all match the empty string keeps base series without an info series; with the policy\'s matchers added it would drop those whose info series the policy hides; require one data label (e.g. k8s_cluster_name=~".+")',
        'rewrite_unsupported',
      );
    }
  }
}

/** Whether the matcher holds for a missing label. A regex that does not compile counts as not: Prometheus rejects the query. */
export function matchesEmpty(m: Matcher, regexes: RegexBudget): boolean {
  if (m.op === '=~' || m.op === '!~') regexes.charge(m.value);
  try {
    return matcherMatches(m, '');
  } catch {
    return false;
  }
}

const EMPTY_SELECTOR = 'vector selector must contain at least one non-empty matcher';

/**
 * `bool.5`, `group_left.5`: lezer-promql (and Prometheus by default) reads a
 * keyword and the number `.5`; a Prometheus started with
 * `--enable-feature=promql-unquoted-utf8-names` reads one metric name,
 * `bool.5`, a selector the gateway would not see. Refused either way: written
 * with a space (`bool .5`) or a leading zero (`bool 0.5`) it means the same
 * to both.
 */
const NAME_CHAR = /^[A-Za-z0-9_]$/;
const NAME_THEN_FRACTION = 'a number starting with "." right after a name (e.g. bool.5) is read as one metric name by Prometheus with unquoted UTF-8 names; write a space or a leading zero (bool 0.5)';

export function checkNonEmptySelectors(selectors: readonly SelectorInfo[], opts: AnalyzeOptions): void {
  const regexes = new RegexBudget(LANG);
  for (const sel of selectors) if (matchesOnlyEmpty(sel, regexes, opts.prefix)) throw parseError(opts, sel.from, EMPTY_SELECTOR);
}

/**
 * info(v) without a data-label selector reads `target_info` implicitly, a
 * selector the gateway cannot constrain without changing what info() does.
 */
function checkInfoArity(infoKeyword: SyntaxNode): void {
  const call = infoKeyword.parent?.parent;
  if (call === null || call === undefined || call.type.id !== FunctionCall) return;
  const body = call.getChild(FunctionCallBody);
  if (body === null || exprArgs(body).length < 2) {
    throw new QueryError(
      LANG,
      'info() without a data-label selector reads target_info unrestricted; pass the selector explicitly, e.g. info(metric, {__name__="target_info", k8s_cluster_name=~".+"})',
      'rewrite_unsupported',
    );
  }
}

/** Selector modifiers that belong to the selector (`offset`, `@`, `anchored`, `smoothed`). */
export const MODIFIERS = new Set<number>([OffsetExpr, StepInvariantExpr, AnchoredExpr, SmoothedExpr]);

export function selectorLabel(text: string, sel: SelectorInfo): string {
  const s = text.slice(sel.from, sel.to);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export function isSame(a: SyntaxNode | null, b: SyntaxNode): boolean {
  return a !== null && a.type.id === b.type.id && a.from === b.from && a.to === b.to;
}

export function lastNonComment(n: SyntaxNode): SyntaxNode | null {
  let c = n.lastChild;
  while (c !== null && c.type.id === LineComment) c = c.prevSibling;
  return c;
}

export function firstNonComment(n: SyntaxNode): SyntaxNode | null {
  let c = n.firstChild;
  while (c !== null && c.type.id === LineComment) c = c.nextSibling;
  return c;
}
