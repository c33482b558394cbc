/**
 * The LogQL rewriter: every stream selector of a query (log or metric) gets
 * the policy's matchers ANDed, by splicing text at Lezer node positions, so
 * that pipelines and everything else the user wrote survive byte for byte.
 *
 * Pipeline (ARCHITECTURE.md, "Rewriting semantics"):
 *   limits → lexical pre-scan → strict parse (@grafana/lezer-logql, with
 *   narrow same-length repairs for grammar lag: logql-parse.ts) → one walk
 *   (depth, literals, selectors, Loki's own validation rules) → cross-check
 *   of the selectors against a model of Loki's lexer (logql-lexer.ts) →
 *   splice → verification of the output by a fresh parse, an independent
 *   walk and the lexer model.
 *
 * Policies are DNF. One group (or several that merge exactly into one) is
 * spliced everywhere. Otherwise each selector keeps only the groups it can
 * still reach; one left → spliced; several → an `or` of per-group range
 * aggregations where that is provably exact, else rewrite_unsupported. Log
 * queries cannot `or` streams, so they need the selector itself to decide
 * (see `rewriteDnf`).
 *
 * Why enforcing selectors is enough even though `label_format`,
 * `label_replace`, parsers and `drop`/`keep` can rename or invent labels:
 * Loki selects streams by the stream selector first (index lookup on stream
 * labels); pipelines only transform or drop lines of streams that were
 * already selected. No pipeline stage can add a stream to the result.
 */
import type { SyntaxNode, Tree } from '@lezer/common';
import {
  BinOpExpr,
  By,
  DropLabel,
  Eq,
  Expr,
  Grouping,
  Identifier,
  KeepLabel,
  KeepLabelsExpr,
  LabelFilter,
  LabelFormatMatcher,
  LabelParser,
  LabelReplaceExpr,
  Labels,
  LogExpr,
  LogRangeExpr,
  Matcher as MatcherNode,
  Matchers,
  MetricExpr,
  Neq,
  Nre,
  Number as NumberNode,
  PipelineExpr,
  RangeAggregationExpr,
  RangeOp,
  Re,
  Selector,
  String as StringNode,
  Unpack,
  UnwrapExpr,
  VectorAggregationExpr,
  VectorOp,
  Without,
} from '@grafana/lezer-logql';
import { QueryError } from '../errors.ts';
import { RewriteCache, registerRewriteCache, unionOfSelectors } from './cache.ts';
import { labelChanges, withLabelChanges, type LabelChange } from './label-fix.ts';
import { LiteralError, describeAt, isWellFormedUnicode, lineCol, prescan, unquoteStringLiteral, type PrescanOptions } from './lezer.ts';
import { labelNameAt, parseLogQL } from './logql-parse.ts';
import { LOGQL_CHAINS, LOGQL_MAX_CHAIN_WEIGHT, LOGQL_STRINGS, LokiLexError, scanLokiSelectors, unquoteLogQL } from './logql-lexer.ts';
import { checkChainWeight } from './chain-weight.ts';
import type { LokiSelector } from './logql-lexer.ts';
import { RegexBudget } from './regex-budget.ts';
import { contradicts, distinguishingLabels, isValidMatcherRegex, matcherMatches, preparePolicy, quoteLogQLString } from './logql-policy.ts';
import type { PreparedGroup, PreparedPolicy } from './logql-policy.ts';
import type { MatchOp, Matcher, SelectorPolicy } from './matcher.ts';
import type { QueryRewriter, RewriteLimits } from './rewriter.ts';
import { DEFAULT_LIMITS } from './rewriter.ts';

export { formatLogQLMatcher, isLogQLLabelName, labelPolicyHeader, quoteLogQLString } from './logql-policy.ts';

const LANG = 'logql';

/** Separator between an existing matcher and inserted ones (Grafana's and Loki's own formatting). */
const SEP = ', ';

/** LogQL's lexical shape for prescan (a constant: prescan builds its table once per options object). */
const PRESCAN: PrescanOptions = { lineComment: '#', escapedQuotes: '"', rawQuotes: '`' };

const EMPTY_COMPATIBLE =
  'queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~".*" does not meet this requirement, but app=~".+" will';

// ---------------------------------------------------------------------------
// Errors and positions
// ---------------------------------------------------------------------------

interface Ctx {
  readonly text: string;
  /** Prefix for error messages, e.g. 'invalid parameter "match[]": '. */
  readonly prefix: string;
  /** Subtracted from positions before reporting (text wrapped in '{'). */
  readonly posOffset: number;
}

function parseError(ctx: Ctx, pos: number, what: string): QueryError {
  const p = Math.max(0, pos + ctx.posOffset);
  const text = ctx.posOffset === 0 ? ctx.text : ctx.text.slice(-ctx.posOffset, ctx.text.length + ctx.posOffset);
  const { line, col } = lineCol(text, p);
  return new QueryError(LANG, `${ctx.prefix}parse error at line ${line}, col ${col}: ${what}`, 'bad_query');
}

/** A Loki validation error (Loki reports these without a position). */
function invalid(ctx: Ctx, what: string): QueryError {
  return new QueryError(LANG, `${ctx.prefix}parse error : ${what}`, 'bad_query');
}

function unsupported(message: string): QueryError {
  return new QueryError(LANG, message, 'rewrite_unsupported');
}

/**
 * Refuse, before parsing, a query with more list items or operators at one
 * bracket level than the parser can build (logqlChainWeight in logql-lexer.ts, chain-weight.ts): a clear
 * `query_too_large`, the same for every query over the limit, instead of
 * whatever the parser reports where it gives up. `what` names the text
 * (the query, or the query with the policy's matchers).
 */
function checkChains(text: string, prefix: string, what: string, posOffset = 0): void {
  checkChainWeight(LANG, LOGQL_CHAINS, LOGQL_MAX_CHAIN_WEIGHT, CHAIN_BOUND, text, prefix, what, posOffset);
}

/** What the refusal says is over the limit. */
const CHAIN_BOUND = `${LOGQL_MAX_CHAIN_WEIGHT} matchers, pipeline stages, list items or operators at one level (a binary operator counts 3)`;

function checkLength(query: string, limits: RewriteLimits): void {
  if (query.length > limits.maxQueryLength || (query.length * 3 > limits.maxQueryLength && Buffer.byteLength(query, 'utf8') > limits.maxQueryLength)) {
    throw new QueryError(LANG, `query is too long: more than ${limits.maxQueryLength} bytes`, 'query_too_large');
  }
}

// ---------------------------------------------------------------------------
// Analysis: one walk over the tree
// ---------------------------------------------------------------------------

interface MatcherItem {
  readonly from: number;
  readonly to: number;
  readonly name: string;
  readonly op: MatchOp;
  /** Unescaped value; null when not certain (invalid UTF-8 from byte escapes, raw string with '\r'): never counts as enforced. */
  readonly value: string | null;
}

interface SelectorInfo {
  readonly from: number;
  readonly to: number;
  readonly items: MatcherItem[];
  readonly node: SyntaxNode;
}

interface Analysis {
  readonly tree: Tree;
  /** The text the tree's positions refer to (see parseLogQL); selectors are at the same offsets as in the query. */
  readonly shadow: string;
  readonly selectors: SelectorInfo[];
}

/** Node types that count towards `maxDepth`. */
const COUNTED = new Set<number>([Expr, MetricExpr, LogExpr, LabelFilter]);

const OPS = new Map<number, MatchOp>([
  [Eq, '='],
  [Neq, '!='],
  [Re, '=~'],
  [Nre, '!~'],
]);

function unquote(ctx: Ctx, text: string, n: { from: number; to: number }): string | null {
  try {
    return unquoteLogQL(text.slice(n.from, n.to));
  } catch (e) {
    if (e instanceof LiteralError) throw parseError(ctx, n.from + e.offset, e.message);
    throw e;
  }
}

function child(n: SyntaxNode | null, type: number): SyntaxNode | null {
  if (n === null) return null;
  for (let c = n.firstChild; c !== null; c = c.nextSibling) if (c.type.id === type) return c;
  return null;
}

function children(n: SyntaxNode, type: number): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = n.firstChild; c !== null; c = c.nextSibling) if (c.type.id === type) out.push(c);
  return out;
}

/** `n` and all its descendants of the given type, in document order. */
function descendants(n: SyntaxNode, type: number): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  n.cursor().iterate((c) => {
    if (c.type.id === type) out.push(c.node);
  });
  return out;
}

function hasNode(tree: Tree, type: number): boolean {
  let found = false;
  tree.iterate({
    enter(n) {
      if (found) return false;
      if (n.type.id === type) found = true;
      return undefined;
    },
  });
  return found;
}

function readSelector(ctx: Ctx, text: string, node: SyntaxNode): SelectorInfo {
  const items: MatcherItem[] = [];
  const list = child(node, Matchers);
  if (list !== null) {
    for (const m of descendants(list, MatcherNode)) {
      const id = child(m, Identifier);
      let op: MatchOp | undefined;
      for (let c = m.firstChild; c !== null && op === undefined; c = c.nextSibling) op = OPS.get(c.type.id);
      const str = child(m, StringNode);
      if (id === null || op === undefined || str === null) throw parseError(ctx, m.from, describeAt(text, m.from));
      items.push({ from: m.from, to: m.to, name: labelNameAt(ctx.text, text, id), op, value: unquote(ctx, text, str) });
    }
  }
  return { from: node.from, to: node.to, items, node };
}

/** Loki's SplitFiltersAndMatchers: a matcher that does not match "" selects streams from the index. */
function selectsFromIndex(it: MatcherItem): boolean {
  if (it.value === null) return it.op === '=';
  const m = matcherMatches(it.op, it.value, '');
  return m === false;
}

/**
 * Loki's own checks after parsing (syntax.ParseExpr → validateExpr and the AST constructors).
 * Only RangeAggregationExpr, VectorAggregationExpr, LabelReplaceExpr and Expr have any
 * (analyze() calls it for those alone): keep that list in step with the cases here.
 */
function validateNode(ctx: Ctx, text: string, node: SyntaxNode, regexes: RegexBudget): void {
  switch (node.type.id) {
    case RangeAggregationExpr: {
      const opNode = child(node, RangeOp);
      const op = opNode === null ? '' : text.slice(opNode.from, opNode.to);
      const hasParam = child(node, NumberNode) !== null;
      const range = child(node, LogRangeExpr);
      const hasUnwrap = range !== null && descendants(range, UnwrapExpr).length > 0;
      const hasGrouping = child(node, Grouping) !== null;
      if (hasParam && op !== 'quantile_over_time') throw invalid(ctx, `parameter ${text.slice(child(node, NumberNode)?.from, child(node, NumberNode)?.to)} not supported for operation ${op}`);
      if (!hasParam && op === 'quantile_over_time') throw invalid(ctx, `parameter required for operation ${op}`);
      if (hasGrouping && !['avg_over_time', 'stddev_over_time', 'stdvar_over_time', 'quantile_over_time', 'max_over_time', 'min_over_time', 'first_over_time', 'last_over_time'].includes(op)) {
        throw invalid(ctx, `grouping not allowed for ${op} aggregation`);
      }
      if (hasUnwrap) {
        if (!['avg_over_time', 'sum_over_time', 'max_over_time', 'min_over_time', 'stddev_over_time', 'stdvar_over_time', 'quantile_over_time', 'rate', 'rate_counter', 'absent_over_time', 'first_over_time', 'last_over_time'].includes(op)) {
          throw invalid(ctx, `invalid aggregation ${op} with unwrap`);
        }
      } else if (!['bytes_over_time', 'bytes_rate', 'count_over_time', 'rate', 'absent_over_time'].includes(op)) {
        throw invalid(ctx, `invalid aggregation ${op} without unwrap`);
      }
      return;
    }
    case VectorAggregationExpr: {
      const opNode = child(node, VectorOp);
      const op = opNode === null ? '' : text.slice(opNode.from, opNode.to);
      const withParam = op === 'topk' || op === 'bottomk' || op === 'approx_topk';
      const param = child(node, NumberNode);
      if (withParam && param === null) throw invalid(ctx, `parameter required for operation ${op}`);
      // The parameter as written (the shadow may hold a respelled number): Loki reads it with strconv.Atoi, no `_`.
      const written = param === null ? '' : ctx.text.slice(param.from, param.to);
      if (withParam && param !== null && !/^[+-]?[0-9]+$/.test(written)) {
        throw invalid(ctx, `invalid parameter ${op}(${written},`);
      }
      if (!withParam && param !== null) throw invalid(ctx, `unsupported parameter for operation ${op}(${written},`);
      const g = child(node, Grouping);
      if ((op === 'sort' || op === 'sort_desc') && g !== null && child(g, Labels) !== null) throw invalid(ctx, 'sort and sort_desc doesn\'t allow grouping by ');
      return;
    }
    case LabelReplaceExpr: {
      // Loki compiles the regex (as `^(?:…)$`); it does not check the label names.
      const regex = children(node, StringNode)[3];
      const value = regex === undefined ? null : unquote(ctx, text, regex);
      if (value !== null) regexes.charge(value, ctx.prefix);
      if (value === null || !isValidMatcherRegex(value)) throw invalid(ctx, `invalid regex in label_replace: ${JSON.stringify(value ?? '')}`);
      return;
    }
    default: {
      // Binary operations: Loki's grammar admits log expressions as operands, its AST does not.
      if (node.type.id === Expr && node.parent !== null && node.parent.type.id === BinOpExpr && child(node, LogExpr) !== null) {
        throw invalid(ctx, 'unexpected type for binary operation: log queries cannot be operands of a binary operation');
      }
    }
  }
}

interface AnalyzeOptions {
  readonly limits: RewriteLimits;
  /** Apply Loki's validation (selectors with an index matcher, aggregation rules). Off for bare matcher lists. */
  readonly validate: boolean;
  /** Shared by the values of one parameter (match[]), so that many small values cannot add up. */
  readonly regexes?: RegexBudget;
}

function analyze(ctx: Ctx, opts: AnalyzeOptions): Analysis {
  const { text } = ctx;
  const { limits } = opts;
  if (text.trim() === '') throw new QueryError(LANG, `${ctx.prefix}empty query`, 'bad_query');
  checkLength(text, limits);
  if (!isWellFormedUnicode(text)) throw new QueryError(LANG, `${ctx.prefix}query is not valid UTF-8`, 'bad_query');
  const scan = prescan(text, PRESCAN);
  if (scan.bracketDepth > limits.maxDepth) {
    throw new QueryError(LANG, `${ctx.prefix}query is nested too deeply (more than ${limits.maxDepth} levels)`, 'query_too_large');
  }
  checkChains(text, ctx.prefix, 'query', ctx.posOffset);
  const parsed = parseLogQL(text);
  if (!parsed.ok) {
    // Prefer Loki's own lexer error when there is one (unterminated string, bad escape, …).
    try {
      scanLokiSelectors(text);
    } catch (e) {
      if (e instanceof LokiLexError && e.pos <= parsed.pos) throw parseError(ctx, e.pos, e.message);
      if (!(e instanceof LokiLexError)) throw e;
    }
    throw parseError(ctx, parsed.pos, `syntax error: ${describeAt(text, parsed.pos)}`);
  }
  const tree = parsed.tree;
  const src = parsed.shadow;
  const regexes = opts.regexes ?? new RegexBudget(LANG);
  const selectors: SelectorInfo[] = [];
  let depth = 0;
  let problem: QueryError | null = null;
  tree.iterate({
    enter(n) {
      if (problem !== null) return false;
      const id = n.type.id;
      if (n.type.isError) {
        problem = parseError(ctx, n.from, `syntax error: ${describeAt(text, n.from)}`);
        return false;
      }
      if (COUNTED.has(id)) {
        depth++;
        if (depth > limits.maxDepth) {
          problem = new QueryError(LANG, `${ctx.prefix}query is nested too deeply (more than ${limits.maxDepth} levels)`, 'query_too_large');
          return false;
        }
      }
      try {
        if (id === Selector) {
          const sel = readSelector(ctx, src, n.node);
          if (opts.validate) {
            for (const it of sel.items) {
              if ((it.op === '=~' || it.op === '!~') && it.value !== null) regexes.charge(it.value, ctx.prefix);
              if ((it.op === '=~' || it.op === '!~') && it.value !== null && !isValidMatcherRegex(it.value)) {
                throw parseError(ctx, it.from, `error parsing regexp: invalid regular expression ${JSON.stringify(it.value)}`);
              }
            }
            if (!sel.items.some(selectsFromIndex)) throw invalid(ctx, EMPTY_COMPATIBLE);
          }
          selectors.push(sel);
          return false;
        }
        if (id === StringNode) {
          unquote(ctx, src, n);
          return false;
        }
        // Only these node types have checks; materialising every node as a SyntaxNode is not free.
        if (opts.validate && (id === RangeAggregationExpr || id === VectorAggregationExpr || id === LabelReplaceExpr || id === Expr)) validateNode(ctx, src, n.node, regexes);
      } catch (e) {
        if (e instanceof QueryError) {
          problem = e;
          return false;
        }
        throw e;
      }
      return undefined;
    },
    leave(n) {
      if (COUNTED.has(n.type.id)) depth--;
    },
  });
  if (problem !== null) throw problem;
  crossCheck(ctx, selectors);
  return { tree, shadow: src, selectors };
}

/**
 * The Lezer tree and the model of Loki's lexer must agree on every selector:
 * same position, same matchers. Otherwise the two parsers read different
 * queries and what the gateway enforces is not what Loki evaluates.
 */
function crossCheck(ctx: Ctx, selectors: readonly SelectorInfo[]): void {
  let loki: LokiSelector[];
  try {
    loki = scanLokiSelectors(ctx.text);
  } catch (e) {
    if (e instanceof LokiLexError) throw parseError(ctx, e.pos, e.message);
    throw e;
  }
  const mismatch = (pos: number): QueryError =>
    parseError(ctx, pos, 'the query is read differently by Loki and by the gateway; it is refused (rewrite it without unusual whitespace, comments or quoting)');
  for (let i = 0; i < Math.max(loki.length, selectors.length); i++) {
    const a = selectors[i];
    const b = loki[i];
    if (a === undefined || b === undefined) throw mismatch((a ?? b)?.from ?? 0);
    if (a.from !== b.from || a.to !== b.to || a.items.length !== b.matchers.length) throw mismatch(Math.min(a.from, b.from));
    for (let k = 0; k < a.items.length; k++) {
      const x = a.items[k] as MatcherItem;
      const y = b.matchers[k] as LokiSelector['matchers'][number];
      if (x.name !== y.name || x.op !== y.op || x.value !== y.value) throw mismatch(x.from);
    }
  }
}

// ---------------------------------------------------------------------------
// Splicing
// ---------------------------------------------------------------------------

function carries(items: readonly { name: string | null; op: string; value: string | null }[], m: Matcher): boolean {
  for (const it of items) if (it.value !== null && it.name === m.name && it.op === m.op && it.value === m.value) return true;
  return false;
}

function satisfiesSomeGroup(sel: SelectorInfo, groups: readonly PreparedGroup[]): boolean {
  return groups.some((g) => g.matchers.every((m) => carries(sel.items, m)));
}

/**
 * The replacement for `text[sel.from, sel.to)`: the group's missing matchers
 * inserted after the last matcher, `, `-separated. Insertion only.
 */
function renderSelector(text: string, sel: SelectorInfo, group: PreparedGroup): string {
  let ins = '';
  for (let i = 0; i < group.matchers.length; i++) {
    if (carries(sel.items, group.matchers[i] as Matcher)) continue;
    ins += SEP + (group.texts[i] as string);
  }
  if (ins === '') return text.slice(sel.from, sel.to);
  const last = sel.items[sel.items.length - 1];
  if (last === undefined) {
    // `{}` never parses, but keep the function total.
    return `{${ins.slice(SEP.length)}${text.slice(sel.from + 1, sel.to)}`;
  }
  return `${text.slice(sel.from, last.to)}${ins}${text.slice(last.to, sel.to)}`;
}

interface Piece {
  readonly from: number;
  readonly to: number;
  readonly text: string;
}

function splice(text: string, pieces: Piece[], budget: number): string {
  pieces.sort((a, b) => a.from - b.from);
  let out = '';
  let pos = 0;
  for (const p of pieces) {
    if (p.from < pos) throw new Error('internal: overlapping rewrite units');
    out += text.slice(pos, p.from) + p.text;
    pos = p.to;
    if (out.length > budget) throw new QueryError(LANG, 'query is too large after adding the policy matchers', 'query_too_large');
  }
  return pieces.length === 0 ? text : out + text.slice(pos);
}

function outputBudget(text: string, policy: PreparedPolicy, selectors: number): number {
  return 4 * Math.max(1, policy.groups.length) * (text.length + selectors * (policy.maxGroupText + 8)) + 1024;
}

/**
 * The result labels of absent_over_time over a stream selector with these
 * matchers, as Loki builds them (logql absentLabels): each first `=` matcher of
 * a name sets it (an empty value sets nothing); every name that also has
 * another matcher, or a later `=`, is removed at the end. Null when a value
 * cannot be read.
 */
function lokiAbsentLabels(matchers: readonly { readonly name: string; readonly op: MatchOp; readonly value: string | null }[]): Map<string, string> | null {
  const out = new Map<string, string>();
  const removed: string[] = [];
  for (const m of matchers) {
    if (m.value === null) return null;
    if (m.name === '__name__') continue;
    if (m.op === '=' && !out.has(m.name)) {
      if (m.value !== '') out.set(m.name, m.value);
    } else {
      removed.push(m.name);
    }
  }
  for (const name of removed) out.delete(name);
  return out;
}

/**
 * absent_over_time(sel …) takes its result labels from the stream selector's
 * matchers, so the policy's would change them (an added `namespace="a"`
 * appears in the alert). The range aggregation around `sel` when its operation
 * is absent_over_time, with the label changes (for label_replace: an empty
 * value removes the label) that give back the labels of the selector as
 * written; null when there is nothing to put back.
 */
function absentFix(shadow: string, sel: SelectorInfo, group: PreparedGroup): { agg: SyntaxNode; fix: LabelChange[] } | null {
  const agg = enclosing(sel.node, RangeAggregationExpr);
  const op = agg === null ? null : child(agg, RangeOp);
  if (agg === null || op === null || shadow.slice(op.from, op.to) !== 'absent_over_time') return null;
  const asWritten = lokiAbsentLabels(sel.items);
  const enforced = lokiAbsentLabels([...sel.items, ...group.matchers.filter((m) => !carries(sel.items, m))]);
  if (asWritten === null || enforced === null) return null;
  const fix = labelChanges(asWritten, enforced);
  return fix.length === 0 ? null : { agg, fix };
}

const withLabels = (expr: string, fix: readonly LabelChange[]): string => withLabelChanges(expr, fix, quoteLogQLString);

/** The selector with one group spliced in; inside absent_over_time, the whole call with the result labels put back. */
function singlePiece(text: string, shadow: string, sel: SelectorInfo, group: PreparedGroup): Piece {
  const rendered = renderSelector(text, sel, group);
  const absent = absentFix(shadow, sel, group);
  if (absent === null) return { from: sel.from, to: sel.to, text: rendered };
  return { from: absent.agg.from, to: absent.agg.to, text: withLabels(text.slice(absent.agg.from, sel.from) + rendered + text.slice(sel.to, absent.agg.to), absent.fix) };
}

function rewriteSingle(text: string, shadow: string, selectors: readonly SelectorInfo[], policy: PreparedPolicy): string {
  const group = policy.groups[0] as PreparedGroup;
  const pieces: Piece[] = [];
  for (const sel of selectors) {
    if (satisfiesSomeGroup(sel, policy.alternatives)) continue;
    pieces.push(singlePiece(text, shadow, sel, group));
  }
  return splice(text, pieces, outputBudget(text, policy, selectors.length));
}

// ---------------------------------------------------------------------------
// DNF (several groups that do not merge)
// ---------------------------------------------------------------------------

function selectorLabel(text: string, sel: SelectorInfo): string {
  const s = text.slice(sel.from, sel.to);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function enclosing(node: SyntaxNode, type: number): SyntaxNode | null {
  for (let a = node.parent; a !== null; a = a.parent) if (a.type.id === type) return a;
  return null;
}

/**
 * Does every output series of this range aggregation keep stream label
 * `label` with its stream value? Parsers and structured metadata never
 * overwrite a stream label (they add `<name>_extracted`); these can drop or
 * replace it: label_format (as target or as the source of a rename), drop,
 * keep without it, unwrap of it, unpack (not analysed), and a by/without
 * grouping that removes it.
 */
function preservesLabel(text: string, agg: SyntaxNode, label: string): boolean {
  const ident = (n: SyntaxNode | null): string | null => (n === null ? null : text.slice(n.from, n.to));
  const grouping = child(agg, Grouping);
  if (grouping !== null) {
    const names = descendants(grouping, Identifier).map((n) => text.slice(n.from, n.to));
    if (child(grouping, By) !== null && !names.includes(label)) return false;
    if (child(grouping, Without) !== null && names.includes(label)) return false;
  }
  const range = child(agg, LogRangeExpr);
  if (range === null) return false;
  for (const lp of descendants(range, LabelParser)) if (child(lp, Unpack) !== null) return false;
  for (const f of descendants(range, LabelFormatMatcher)) {
    const ids = children(f, Identifier);
    if (ids.some((n) => ident(n) === label)) return false;
  }
  for (const d of descendants(range, DropLabel)) {
    if (ident(child(d, Identifier)) === label || ident(child(child(d, MatcherNode), Identifier)) === label) return false;
  }
  for (const k of descendants(range, KeepLabelsExpr)) {
    if (!descendants(k, KeepLabel).some((kl) => ident(child(kl, Identifier)) === label)) return false;
  }
  for (const u of descendants(range, UnwrapExpr)) if (ident(child(u, Identifier)) === label) return false;
  return true;
}

/**
 * More than one group survives for a selector. In a metric query the unit
 * is the enclosing range aggregation `f(sel | P [r])`, replaced by
 * `(f(sel{G1} | P [r]) or f(sel{G2} | P [r]) …)`.
 *
 * Exactness: LogQL's `or` keeps all left-hand series and the right-hand
 * series whose label set is new. Without grouping a range aggregation's
 * series are keyed by the stream's labels plus labels from parsers and
 * structured metadata, and distinct streams CAN produce the same label set
 * (structured metadata `pod` on one stream, stream label `pod` on another):
 * Loki sums them into one series, `or` would keep one side only. So the
 * rewrite is only accepted when every pair of surviving groups is provably
 * disjoint on a label L that both groups require to be present (so it is a
 * stream label of every selected stream) and that the aggregation keeps:
 * then no left-hand series can share a label set with a right-hand one, and
 * each side computes exactly the series of its own streams. Everything else
 * (overlapping groups, absent_over_time, label-dropping pipelines, log
 * queries) is rejected.
 */
function orUnit(text: string, shadow: string, sel: SelectorInfo, groups: readonly PreparedGroup[]): { from: number; to: number; absent?: boolean } {
  const label = selectorLabel(text, sel);
  const agg = enclosing(sel.node, RangeAggregationExpr);
  if (agg === null) {
    throw unsupported(
      `the policy has ${groups.length} alternative selectors that the stream selector ${label} can match, and Loki can combine the streams of several selectors only inside a metric query (with "or"); narrow the selector to one alternative (e.g. add the label that separates them), or set policyEnforcement: header on the Loki upstream (Loki ≥ 3.7 enforces the policy from X-Prom-Label-Policy)`,
    );
  }
  const opNode = child(agg, RangeOp);
  const op = opNode === null ? '' : shadow.slice(opNode.from, opNode.to);
  // Absent over the union is absent over every part: the per-group forms AND-ed on nothing (no disjointness needed).
  if (op === 'absent_over_time') return { from: agg.from, to: agg.to, absent: true };
  for (let i = 0; i < groups.length; i++) {
    for (let j = i + 1; j < groups.length; j++) {
      const gi = (groups[i] as PreparedGroup).matchers;
      const gj = (groups[j] as PreparedGroup).matchers;
      const ok = distinguishingLabels(gi, gj).some((l) => preservesLabel(shadow, agg, l));
      if (!ok) {
        throw unsupported(
          `the policy alternatives {${(groups[i] as PreparedGroup).texts.join(', ')}} and {${(groups[j] as PreparedGroup).texts.join(', ')}} are not provably disjoint on a label that ${op}() keeps, so an "or" of per-alternative queries over ${label} could merge or drop series; narrow the selector to one alternative or set policyEnforcement: header on the Loki upstream`,
        );
      }
    }
  }
  return { from: agg.from, to: agg.to };
}

function rewriteDnf(text: string, shadow: string, selectors: readonly SelectorInfo[], policy: PreparedPolicy): string {
  const budget = outputBudget(text, policy, selectors.length);
  const pieces: Piece[] = [];
  for (const sel of selectors) {
    if (satisfiesSomeGroup(sel, policy.alternatives)) continue; // sel ⊆ one alternative
    // Groups that cannot match any stream this selector matches contribute nothing.
    const alive = policy.alternatives.filter((g) => !contradicts(sel.items, g.matchers));
    if (alive.length <= 1) {
      // One group left: exact. None: the selector sees nothing allowed; any group keeps it empty.
      const group = alive[0] ?? (policy.alternatives[0] as PreparedGroup);
      pieces.push(singlePiece(text, shadow, sel, group));
      continue;
    }
    const unit = orUnit(text, shadow, sel, alive);
    const local = (g: PreparedGroup): string => text.slice(unit.from, sel.from) + renderSelector(text, sel, g) + text.slice(sel.to, unit.to);
    if (unit.absent === true) {
      // The first part's result labels put back to those of the selector as written.
      const fix = absentFix(shadow, sel, alive[0] as PreparedGroup)?.fix ?? [];
      pieces.push({ from: unit.from, to: unit.to, text: withLabels(`(${alive.map(local).join(' and on() ')})`, fix) });
    } else {
      pieces.push({ from: unit.from, to: unit.to, text: `(${alive.map(local).join(' or ')})` });
    }
  }
  return splice(text, pieces, budget);
}

// ---------------------------------------------------------------------------
// Verification (independent of the walk above)
// ---------------------------------------------------------------------------

interface PlainMatcher {
  readonly name: string;
  readonly op: string;
  readonly value: string | null;
}

function verifyPrepared(text: string, policy: PreparedPolicy): void {
  const fail = (why: string): QueryError => new QueryError(LANG, `rewritten query failed verification: ${why}`, 'rewrite_verification_failed');
  const accepted = [...policy.groups, ...policy.alternatives];
  const ok = (ms: readonly PlainMatcher[]): boolean => accepted.some((g) => g.matchers.every((m) => ms.some((x) => x.value !== null && x.name === m.name && x.op === m.op && x.value === m.value)));
  // The policy's matchers lengthen selectors (and several alternatives add `or`s): a client error, not a failed verification.
  checkChains(text, '', "the query with the policy's matchers");
  const r = parseLogQL(text);
  if (!r.ok) throw fail(`it does not parse (char ${r.pos + 1})`);
  const src = r.shadow;
  const starts: number[] = [];
  let problem: string | null = null;
  try {
    r.tree.iterate({
      enter(n) {
        if (problem !== null) return false;
        if (n.type.isError) {
          problem = `syntax error at char ${n.from + 1}`;
          return false;
        }
        if (n.type.id === StringNode) {
          unquoteStringLiteral(src.slice(n.from, n.to), LOGQL_STRINGS);
          return false;
        }
        if (n.type.id !== Selector) return undefined;
        starts.push(n.from);
        const ms: PlainMatcher[] = [];
        n.node.cursor().iterate((m) => {
          if (m.type.id !== MatcherNode) return undefined;
          let name = '';
          let op = '';
          let value: string | null = null;
          for (let c = m.node.firstChild; c !== null; c = c.nextSibling) {
            if (c.type.id === Identifier) name = labelNameAt(text, src, c);
            else if (c.type.id === StringNode) value = unquoteLogQL(src.slice(c.from, c.to));
            else if (OPS.has(c.type.id)) op = src.slice(c.from, c.to);
          }
          ms.push({ name, op, value });
          return false;
        });
        if (!ok(ms)) problem = `selector at char ${n.from + 1} (${JSON.stringify(text.slice(n.from, Math.min(n.to, n.from + 80)))}) lacks the enforced matchers`;
        return false;
      },
    });
  } catch (e) {
    if (e instanceof LiteralError) throw fail(`invalid string literal (${e.message})`);
    throw e;
  }
  if (problem !== null) throw fail(problem);
  // Loki's reading of the same text.
  let loki: LokiSelector[];
  try {
    loki = scanLokiSelectors(text);
  } catch (e) {
    if (e instanceof LokiLexError) throw fail(`Loki's lexer would reject it (${e.message})`);
    throw e;
  }
  if (loki.length !== starts.length || loki.some((s, i) => s.from !== starts[i])) throw fail('Loki would see different stream selectors');
  for (const s of loki) {
    if (!ok(s.matchers)) throw fail(`selector at char ${s.from + 1} lacks the enforced matchers (as Loki reads it)`);
  }
}

/**
 * Check that `query` parses cleanly, as Loki's lexer reads it too, and that
 * every stream selector carries all matchers of at least one policy group
 * (after normalisation: see preparePolicy). Throws
 * QueryError('rewrite_verification_failed') otherwise.
 */
export function verifyLogQL(query: string, policy: SelectorPolicy): void {
  verifyPrepared(query, preparePolicy(policy));
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

const cache = registerRewriteCache('logql', new RewriteCache(4096));

/** For tests and benchmarks. */
export function clearLogQLCache(): void {
  cache.clear();
}

/**
 * Rewrite a LogQL query (log or metric) so that every stream selector is
 * constrained by the policy. Throws QueryError: bad_query (parse errors in
 * Loki's format, empty, what Loki itself rejects), query_too_large,
 * rewrite_unsupported (no exact rewrite for a multi-group policy, label
 * names LogQL cannot express), policy_error (malformed policy),
 * rewrite_verification_failed (a bug; fail closed).
 */
export function rewriteLogQL(query: string, policy: SelectorPolicy, limits: RewriteLimits = DEFAULT_LIMITS): string {
  if (typeof query !== 'string') throw new QueryError(LANG, 'query must be a string', 'bad_query');
  const p = preparePolicy(policy);
  checkLength(query, limits);
  return cache.through(p.key, limits, query, () => {
    const a = analyze({ text: query, prefix: '', posOffset: 0 }, { limits, validate: true });
    const out = p.groups.length === 1 ? rewriteSingle(query, a.shadow, a.selectors, p) : rewriteDnf(query, a.shadow, a.selectors, p);
    verifyPrepared(out, p);
    return out;
  });
}

/**
 * A log query whose one stream selector can reach several policy alternatives
 * has no single rewrite (Loki cannot combine streams with `or`): the query
 * once per alternative it can reach, that alternative spliced into the
 * selector, each verified. The caller asks Loki once per query and merges the
 * streams (src/backends/log-answers.ts). Anything else gets what rewriteLogQL
 * gives: one rewritten query, or its error (metric queries keep their exact
 * `or` form or their refusal).
 */
export function rewriteLogQLPerAlternative(query: string, policy: SelectorPolicy, limits: RewriteLimits = DEFAULT_LIMITS): string[] {
  return perAlternative(query, policy, limits).queries;
}

/** rewriteLogQLPerAlternative, and the alternatives its queries carry (none: one query for all). */
function perAlternative(query: string, policy: SelectorPolicy, limits: RewriteLimits): { queries: string[]; alternatives: readonly PreparedGroup[] } {
  try {
    return { queries: [rewriteLogQL(query, policy, limits)], alternatives: [] };
  } catch (e) {
    if (!(e instanceof QueryError) || e.code !== 'rewrite_unsupported') throw e;
    const p = preparePolicy(policy);
    const a = analyze({ text: query, prefix: '', posOffset: 0 }, { limits, validate: true });
    const sel = a.selectors[0];
    if (a.selectors.length !== 1 || sel === undefined || hasNode(a.tree, MetricExpr)) throw e;
    const alive = p.alternatives.filter((g) => !contradicts(sel.items, g.matchers));
    if (alive.length < 2) throw e;
    const budget = outputBudget(query, p, 1);
    const queries = alive.map((g) => {
      const out = splice(query, [{ from: sel.from, to: sel.to, text: renderSelector(query, sel, g) }], budget);
      verifyPrepared(out, p);
      return out;
    });
    return { queries, alternatives: alive };
  }
}

/**
 * Two alternatives no stream can satisfy both of: some label they both
 * constrain takes values in one that the other excludes (`cluster="eu"` and
 * `cluster="us"`), so a stream lies in at most one of their selectors.
 */
function provablyDisjoint(groups: readonly PreparedGroup[]): { a: PreparedGroup; b: PreparedGroup } | null {
  for (let i = 0; i < groups.length; i++) {
    for (let j = i + 1; j < groups.length; j++) {
      const a = groups[i] as PreparedGroup;
      const b = groups[j] as PreparedGroup;
      if (distinguishingLabels(a.matchers, b.matchers).length === 0) return { a, b };
    }
  }
  return null;
}

/**
 * For requests whose answer is a sum over the selected streams (Loki
 * `index/stats`, `index/volume`): the stream selector once per policy
 * alternative it can reach, as rewriteLogQLPerAlternative, but only when
 * those alternatives are pairwise provably disjoint, so that no stream is
 * counted in two parts and the sum of the parts is the answer for the
 * union. Without a query (`[]` or `['']`), one selector per policy group,
 * under the same condition. One result: the request needs no fan-out.
 */
export function rewriteLogQLDisjointParts(values: readonly string[], policy: SelectorPolicy, limits: RewriteLimits = DEFAULT_LIMITS): string[] {
  const p = preparePolicy(policy);
  const given = values.filter((q) => q !== '');
  if (given.length > 1) throw new QueryError(LANG, 'parameter "query" given more than once; send it once', 'bad_query');
  const { queries: parts, alternatives } =
    given.length === 0 ? { queries: rewriteLogQLSelectors([], policy, limits), alternatives: p.groups } : perAlternative(given[0] as string, policy, limits);
  if (parts.length < 2) return parts;
  const overlap = provablyDisjoint(alternatives);
  if (overlap !== null) {
    throw new QueryError(
      LANG,
      `the policy alternatives {${overlap.a.texts.join(', ')}} and {${overlap.b.texts.join(', ')}} can select the same streams, so asking once per alternative would return those streams twice (counting them twice in a total); narrow the selector to one alternative or set policyEnforcement: header on the Loki upstream`,
      'rewrite_unsupported',
    );
  }
  return parts;
}

export const logqlRewriter: QueryRewriter = {
  language: 'logql',
  rewrite: rewriteLogQL,
};

/**
 * Enforce the policy on parameters that must be one stream selector (Loki
 * `/series` `match[]`, and similar). Loki unions the results of several
 * `match[]`, so each parameter becomes one selector per policy group it can
 * still match (de-duplicated). With no parameters: one `{group}` per group
 * (Loki needs at least one matcher that does not match "" in each; a group
 * of only negative matchers makes Loki reject the request, which fails closed).
 */
export function rewriteLogQLSelectors(matchParams: readonly string[], policy: SelectorPolicy, limits: RewriteLimits = DEFAULT_LIMITS): string[] {
  const p = preparePolicy(policy);
  const verify = (s: string): void => verifyPrepared(s, p);
  if (matchParams.length === 0) {
    return [...cache.throughSelectors(p.key, limits, undefined, verify, (add) => p.groups.forEach((g) => add(`{${g.texts.join(SEP)}}`)))];
  }
  const prefix = 'invalid parameter "match[]": ';
  const regexes = new RegexBudget(LANG);
  const lists = matchParams.map((param) => {
    if (typeof param !== 'string') throw new QueryError(LANG, `${prefix}must be a string`, 'bad_query');
    checkLength(param, limits);
    return cache.throughSelectors(p.key, limits, param, verify, (add) => {
      const a = analyze({ text: param, prefix, posOffset: 0 }, { limits, validate: true, regexes });
      const sel = a.selectors[0];
      if (sel === undefined || a.selectors.length !== 1 || hasNode(a.tree, PipelineExpr) || hasNode(a.tree, MetricExpr)) {
        throw new QueryError(LANG, `${prefix}must be a single stream selector, e.g. {app="api"}`, 'bad_query');
      }
      let groups: readonly PreparedGroup[];
      const own = p.alternatives.find((g) => g.matchers.every((m) => carries(sel.items, m)));
      if (own !== undefined) groups = [own];
      else if (p.groups.length === 1) groups = p.groups;
      else {
        const alive = p.alternatives.filter((g) => !contradicts(sel.items, g.matchers));
        groups = alive.length === 0 ? [p.alternatives[0] as PreparedGroup] : alive;
      }
      for (const g of groups) add(param.slice(0, sel.from) + renderSelector(param, sel, g) + param.slice(sel.to));
    });
  });
  return unionOfSelectors(lists);
}

/** The label names the stream selectors of a LogQL query match on, each once, in order. */
export function logQLSelectorLabels(query: string, limits: RewriteLimits = DEFAULT_LIMITS): string[] {
  const a = analyze({ text: query, prefix: '', posOffset: 0 }, { limits, validate: false });
  return [...new Set(a.selectors.flatMap((s) => s.items.map((it) => it.name)))];
}

/**
 * Parse matcher text in LogQL syntax (the CLI's `--matcher`):
 * `namespace="a"`, `a="x", b!~"y"`. Label names are LogQL identifiers.
 */
export function parseLogQLMatchers(text: string): Matcher[] {
  if (typeof text !== 'string' || text.trim() === '') throw new QueryError(LANG, 'empty matcher expression', 'bad_query');
  const wrapped = `{${text}}`;
  const prefix = 'invalid matcher expression: ';
  const a = analyze({ text: wrapped, prefix, posOffset: -1 }, { limits: DEFAULT_LIMITS, validate: false });
  const sel = a.selectors[0];
  if (sel === undefined || a.selectors.length !== 1 || sel.from !== 0 || sel.to !== wrapped.length || hasNode(a.tree, PipelineExpr) || hasNode(a.tree, MetricExpr)) {
    throw new QueryError(LANG, `${prefix}expected label matchers like name="value"`, 'bad_query');
  }
  return sel.items.map((it) => {
    if (it.value === null) throw new QueryError(LANG, `${prefix}the value of ${JSON.stringify(wrapped.slice(it.from, it.to))} is not valid UTF-8 or not unambiguous (raw string with a carriage return)`, 'bad_query');
    return { name: it.name, op: it.op, value: it.value };
  });
}
