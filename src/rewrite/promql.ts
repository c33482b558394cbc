/**
 * The PromQL rewriter: every vector selector in a query gets the policy's
 * matchers ANDed, by splicing text at Lezer node positions so that everything
 * else the user wrote survives byte for byte.
 *
 * Pipeline (see docs in ARCHITECTURE.md, "Rewriting semantics"):
 *   limits → lexical pre-scan → strict parse (@prometheus-io/lezer-promql) →
 *   one tree walk (depth, string literals, comments, selectors) → Prometheus'
 *   non-empty matcher rule on what the user wrote → splice → verification by
 *   an independent walk of a fresh parse of the output.
 *
 * Policies are DNF (`SelectorPolicy`). One group is spliced everywhere. More
 * than one group is rewritten to an `or` of the per-group forms where that is
 * exact, and rejected (`rewrite_unsupported`) where it is not; see
 * `rewriteDnf`.
 */
import type { SyntaxNode, Tree } from '@lezer/common';
import {
  Absent,
  AbsentOverTime,
  AnchoredExpr,
  BinaryExpr,
  DurationExpr,
  FunctionCall,
  FunctionCallBody,
  FunctionIdentifier,
  GroupLeft,
  GroupRight,
  Identifier,
  Info,
  LabelMatchers,
  LabelName,
  LineComment,
  MatchOp,
  MatchingModifierClause,
  MatrixSelector,
  NumberDurationLiteral,
  NumberDurationLiteralInDurationContext,
  OffsetDurationExpr,
  OffsetExpr,
  ParenExpr,
  QuotedLabelMatcher,
  QuotedLabelName,
  SmoothedExpr,
  StepInvariantExpr,
  StringLiteral,
  UnaryExpr,
  UnquotedLabelMatcher,
  VectorSelector,
  parser,
} from '@prometheus-io/lezer-promql';
import { QueryError } from '../errors.ts';
import { RewriteCache, registerRewriteCache, unionOfSelectors } from './cache.ts';
import { LiteralError, describeAt, isWellFormedUnicode, parseStrict, prescan, unquoteStringLiteral, type ParseOutcome, type PrescanOptions } from './lezer.ts';
import type { MatchOp as MatchOpT, Matcher, SelectorPolicy } from './matcher.ts';
import { isMatchOp, matcherMatches } from './matcher.ts';
import { RegexBudget } from './regex-budget.ts';
import { labelChanges, withLabelChanges, type LabelChange } from './label-fix.ts';
import { formatMatcher, quotePromQLString } from './promql-escape.ts';
import { matcherKeyOf, memoizedPreparation, mergeGroups, normaliseGroups, policyErrorFor, validatePolicyMatcher } from './policy-prep.ts';
import type { QueryRewriter, RewriteLimits } from './rewriter.ts';
import { DEFAULT_LIMITS } from './rewriter.ts';

export { formatMatcher } from './promql-escape.ts';

const LANG = 'promql';

/**
 * Lezer gives up on left-associative chains of a few hundred binary
 * operators (an internal recursion guard). A parse failure on a query with
 * at least this many operator characters is reported as too large rather
 * than as a syntax error at a confusing position.
 */
const LEZER_CHAIN_LIMIT = 300;

/** PromQL's lexical shape for prescan (a constant: prescan builds its table once per options object). */
const PRESCAN: PrescanOptions = { lineComment: '#', escapedQuotes: `"'`, rawQuotes: '`' };

/** Comments that contain '\r' followed by more text: Prometheus ends a comment at '\r', Lezer only at '\n'. */
const CR_IN_COMMENT = /\r[^\r]/;

// ---------------------------------------------------------------------------
// Policy preparation
// ---------------------------------------------------------------------------

interface PreparedGroup {
  readonly matchers: readonly Matcher[];
  /** `formatMatcher(matchers[i])`. */
  readonly texts: readonly string[];
}

interface PreparedPolicy {
  /** What is spliced: the policy's groups, or the one group they merge into (mergeGroups). */
  readonly groups: readonly PreparedGroup[];
  /**
   * The policy's own groups (normalised). A selector that already carries all
   * matchers of one of these is inside the policy and is left alone. Equal to
   * `groups` unless a merge happened.
   */
  readonly alternatives: readonly PreparedGroup[];
  /** Whether `groups` is the one group that `alternatives` merged into. */
  readonly merged: boolean;
  /** Unambiguous canonical key, for caches. */
  readonly key: string;
  /** Longest `texts.join(',')` of any group; bounds DNF output size. */
  readonly maxGroupText: number;
}


const policyError = policyErrorFor(LANG);

function validateMatcher(m: unknown): Matcher {
  return validatePolicyMatcher(m, policyError);
}

const preparePolicy: (policy: SelectorPolicy) => PreparedPolicy = memoizedPreparation((policy) => buildPolicy(policy), policyError);

function buildPolicy(policy: SelectorPolicy): PreparedPolicy {
  // Validated, de-duplicated, redundant groups dropped (policy-prep.ts).
  const kept = normaliseGroups(policy, validateMatcher, (m) => m, policyError).map((g) => ({ matchers: g.items, keys: g.keys }));
  const alternatives: PreparedGroup[] = kept.map((g) => prepareGroup(g.matchers));
  // Groups that differ only in one label's allowed values are one group with a regex (exact; policy-prep.ts).
  const merged = mergeGroups(kept.map((g) => g.matchers));
  const groups = merged === null ? alternatives : [prepareGroup(merged)];
  // Order-preserving: insertion order follows it.
  const key = JSON.stringify([kept.map((g) => [...g.keys]), merged === null ? null : merged.map(matcherKeyOf)]);
  const maxGroupText = Math.max(...[...groups, ...alternatives].map((g) => g.texts.join(',').length));
  return { groups, alternatives, merged: merged !== null, key, maxGroupText };
}

function prepareGroup(matchers: readonly Matcher[]): PreparedGroup {
  return { matchers, texts: matchers.map(formatMatcher) };
}

// ---------------------------------------------------------------------------
// Analysis: parse + one walk
// ---------------------------------------------------------------------------

interface MatcherItem {
  readonly from: number;
  readonly to: number;
  /** Unescaped label name; null when unknown (value not valid UTF-8). */
  name: string | null;
  op: MatchOpT | null;
  /** Unescaped value; null when not representable (invalid UTF-8 from byte escapes). */
  value: string | null;
}

interface SelectorInfo {
  readonly from: number;
  readonly to: number;
  ident: { readonly from: number; readonly to: number; readonly text: string } | null;
  braces: { readonly from: number; readonly to: number } | null;
  readonly items: MatcherItem[];
  /** Only collected for multi-group policies (needs parent navigation). */
  readonly node: SyntaxNode | null;
  /** The data-label selector of info() (its second argument), exempt from the non-empty matcher rule. */
  infoLabels: boolean;
  /**
   * The absent() call whose argument is this selector (with its modifiers), or
   * the absent_over_time() call whose argument is its range: Prometheus builds
   * that call's result labels from the selector's matchers.
   */
  absentCall: { readonly from: number; readonly to: number } | null;
}

interface Analysis {
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

function checkLength(query: string, limits: RewriteLimits): void {
  if (query.length > limits.maxQueryLength || (query.length * 3 > limits.maxQueryLength && Buffer.byteLength(query, 'utf8') > limits.maxQueryLength)) {
    throw new QueryError(LANG, `query is too long: more than ${limits.maxQueryLength} bytes`, 'query_too_large');
  }
}

interface AnalyzeOptions {
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

function functionName(text: string, call: SyntaxNode): string {
  const id = call.firstChild;
  return id === null ? '' : text.slice(id.from, id.to);
}

function exprArgs(body: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = body.firstChild; c !== null; c = c.nextSibling) if (c.type.is('Expr')) out.push(c);
  return out;
}

function analyze(input: string, opts: AnalyzeOptions): Analysis {
  const { limits } = opts;
  if (input.trim() === '') throw new QueryError(LANG, `${opts.prefix}empty query`, 'bad_query');
  checkLength(input, limits);
  if (!isWellFormedUnicode(input)) throw new QueryError(LANG, `${opts.prefix}query is not valid UTF-8`, 'bad_query');
  const scan = prescan(input, PRESCAN);
  if (scan.bracketDepth > limits.maxDepth) {
    throw new QueryError(LANG, `${opts.prefix}query is nested too deeply (more than ${limits.maxDepth} levels)`, 'query_too_large');
  }
  let text = input;
  // What Lezer reads: `text` with newer functions' names replaced by stand-ins (newerFunctionAt).
  let shadow = input;
  let parsed = parseStrict(parser, shadow);
  // Number literals Prometheus accepts and lezer-promql does not lex are respelled
  // in place (same length, same value) where the parse failed, and parsed again.
  // The respelled text is what gets rewritten, verified and forwarded.
  for (let respelled = 0; !parsed.ok && respelled < MAX_RESPELLED_NUMBERS; respelled++) {
    const num = unsupportedNumberAt(shadow, parsed.pos) ?? unsupportedKeywordCaseAt(shadow, parsed.pos);
    if (num !== null) {
      text = respell(text, num);
      shadow = respell(shadow, num);
    } else {
      const fn = newerFunctionAt(shadow, parsed.pos);
      if (fn === null) break;
      shadow = respell(shadow, fn);
    }
    parsed = parseStrict(parser, shadow);
  }
  if (!parsed.ok) {
    if (scan.operatorChars >= LEZER_CHAIN_LIMIT) {
      throw new QueryError(
        LANG,
        `${opts.prefix}query could not be parsed: it is invalid or too complex (${scan.operatorChars} operators; parse failed at char ${parsed.pos + 1 + opts.posOffset})`,
        'query_too_large',
      );
    }
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
        const infoLabels = k >= 1 && stack[k] === FunctionCallBody && stack[k - 1] === FunctionCall && isInfoLabelArg(text, c.node);
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
        sel = { from: c.from, to: c.to, ident: null, braces: null, items: [], node: opts.needNodes ? c.node : null, infoLabels, absentCall };
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
        if (parent === UnquotedLabelMatcher && item !== null) item.name = text.slice(c.from, c.to);
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
function matchesOnlyEmpty(sel: SelectorInfo, regexes: RegexBudget, prefix: string): boolean {
  if (sel.ident !== null || sel.infoLabels) return false;
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
 * Is the selector `vs` (possibly under offset/@ modifiers) the second
 * argument of info()? Prometheus exempts that data-label selector from the
 * non-empty matcher rule (`info(up, {k8s_cluster_name=~".*"})` is valid).
 */
function isInfoLabelArg(text: string, vs: SyntaxNode): boolean {
  let n = vs;
  while (n.parent !== null && MODIFIERS.has(n.parent.type.id)) n = n.parent;
  const body = n.parent;
  const call = body?.parent ?? null;
  if (body === null || call === null || call.type.id !== FunctionCall || functionName(text, call) !== 'info') return false;
  const args = exprArgs(body);
  return args.length === 2 && isSame(args[1] ?? null, n);
}

/**
 * info(v, {__name__="target_info"}) adds every data label of the info series,
 * but once its selector has a matcher on any other label, Prometheus adds only
 * the labels matched there (promql/info.go, dataLabelMatchers). The policy's
 * matchers in that selector would turn "all data labels" into "only the
 * policy's labels", which v already has: the answer would silently lose its
 * data labels. Refused unless the user names data labels themselves or the
 * policy matches on `__name__` only.
 */
function checkInfoDataLabels(selectors: readonly SelectorInfo[], p: PreparedPolicy): void {
  if (!p.groups.some((g) => g.matchers.some((m) => m.name !== '__name__'))) return;
  for (const sel of selectors) {
    if (sel.infoLabels && !sel.items.some((it) => it.name !== null && it.name !== '__name__')) {
      throw new QueryError(
        LANG,
        'info() with a data-label selector that names no data label would, with the policy\'s matchers added, add only the policy\'s labels; name the data labels to add, e.g. info(metric, {__name__="target_info", k8s_cluster_name=~".+"})',
        'rewrite_unsupported',
      );
    }
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

function checkNonEmptySelectors(selectors: readonly SelectorInfo[], opts: AnalyzeOptions): void {
  const regexes = new RegexBudget(LANG);
  for (const sel of selectors) if (matchesOnlyEmpty(sel, regexes, opts.prefix)) throw parseError(opts, sel.from, EMPTY_SELECTOR);
}

/**
 * Number literals that Prometheus 3.16 accepts (Go's strconv) and
 * lezer-promql does not lex: an upper-case `0X` prefix, `_` right after the
 * hex prefix, `_` between hex digits, a decimal point with no digit after it
 * (`5.`, `5.e3`). Each is respelled with the same length and value (`0X1f` →
 * `0x1f`, `0x1_f` → `0x01f`: each `_` becomes a leading zero; `5.` → `5 `,
 * `5.e3` → `5e3 `) so positions stay valid; only where Lezer failed (`pos`),
 * i.e. never inside a string, comment or identifier.
 */
const LEZER_REJECTED_NUMBER = /0[xX]_?[0-9a-fA-F](?:_?[0-9a-fA-F])*|[0-9](?:_?[0-9])*\.(?![0-9])(?:[eE][+-]?[0-9](?:_?[0-9])*)?/y;
/** Bounds the parse retries a hostile query can cause. */
const MAX_RESPELLED_NUMBERS = 16;

const respell = (text: string, r: { readonly from: number; readonly respelled: string }): string =>
  text.slice(0, r.from) + r.respelled + text.slice(r.from + r.respelled.length);

/**
 * Functions of the Prometheus release the gateway targets (3.16) that
 * lezer-promql (latest release 0.315) does not know yet, each with a stand-in
 * the grammar knows: the same length and the same call syntax (the grammar
 * does not check arguments). Lezer reads the stand-in, so the tree has the
 * call, its arguments and every selector where Prometheus has them; the text
 * forwarded keeps the real name. `integral` is experimental in Prometheus
 * (`--enable-feature=promql-experimental-functions`).
 */
const NEWER_FUNCTIONS: ReadonlyMap<string, string> = new Map([['integral', 'increase']]);

/**
 * Where Lezer failed at the `(` of a call to a function in NEWER_FUNCTIONS
 * (its name, then only blanks): that name and its stand-in. Prometheus reads
 * an identifier followed by `(` as a function call wherever an expression
 * may start, and function names are case-sensitive.
 */
function newerFunctionAt(text: string, pos: number): { from: number; text: string; respelled: string } | null {
  if (text[pos] !== '(') return null;
  let end = pos;
  while (end > 0 && /[ \t\r\n]/.test(text[end - 1] as string)) end--;
  let from = end;
  while (from > 0 && /[A-Za-z0-9_]/.test(text[from - 1] as string)) from--;
  if (from > 0 && /[A-Za-z0-9_:.]/.test(text[from - 1] as string)) return null;
  const name = text.slice(from, end);
  const standIn = NEWER_FUNCTIONS.get(name);
  return standIn === undefined ? null : { from, text: name, respelled: standIn };
}

/** A strict parse of `text`, reading newer functions' names as their stand-ins (for the verification of an output). */
function parseWithStandIns(text: string): ParseOutcome {
  let shadow = text;
  let parsed = parseStrict(parser, shadow);
  for (let i = 0; !parsed.ok && i < MAX_RESPELLED_NUMBERS; i++) {
    const fn = newerFunctionAt(shadow, parsed.pos);
    if (fn === null) break;
    shadow = respell(shadow, fn);
    parsed = parseStrict(parser, shadow);
  }
  return parsed;
}

function unsupportedNumberAt(text: string, pos: number): { from: number; text: string; respelled: string } | null {
  let from = Math.min(pos, text.length);
  while (from > 0 && /[0-9A-Za-z_.:]/.test(text[from - 1] as string)) from--;
  // A run that starts with a digit is no identifier: `5m:0X1f` is a subquery's range and step.
  const colon = text.lastIndexOf(':', pos - 1);
  if (/[0-9]/.test(text[from] ?? '') && colon >= from) from = colon + 1;
  LEZER_REJECTED_NUMBER.lastIndex = from;
  const m = LEZER_REJECTED_NUMBER.exec(text);
  if (m === null || from + m[0].length < pos) return null;
  const after = text[from + m[0].length];
  if (after !== undefined && /[0-9A-Za-z_.:]/.test(after)) return null;
  const n = m[0];
  let respelled: string;
  if (n[1] === 'x' || n[1] === 'X') {
    const digits = n.slice(2).replace(/_/g, '');
    respelled = `0x${'0'.repeat(n.length - 2 - digits.length)}${digits}`;
  } else {
    respelled = `${n.replace('.', '')} `;
  }
  return respelled === n ? null : { from, text: n, respelled };
}

/** Duration functions Prometheus reads in any case (its lexer looks keywords up lower-cased); lezer-promql only in lower case. */
const DURATION_KEYWORDS: ReadonlySet<string> = new Set(['step', 'range', 'min_of', 'max_of']);

/**
 * A duration function written in another case (`x[STEP()]`, `offset -Range()`)
 * where the parse failed at `pos`: respelled lower-case, same length, as for
 * number literals; an identifier elsewhere (a metric named `STEP`) is not at a
 * parse failure followed by `(` in a duration, so it is never touched.
 */
function unsupportedKeywordCaseAt(text: string, pos: number): { from: number; text: string; respelled: string } | null {
  const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(pos, pos + 16));
  if (m === null || (pos > 0 && /[0-9A-Za-z_]/.test(text[pos - 1] as string))) return null;
  const word = m[0];
  const lower = word.toLowerCase();
  if (word === lower || !DURATION_KEYWORDS.has(lower) || !/^[ \t\r\n]*\(/.test(text.slice(pos + word.length, pos + word.length + 64))) return null;
  return { from: pos, text: word, respelled: lower };
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

// ---------------------------------------------------------------------------
// Splicing
// ---------------------------------------------------------------------------

function hasMatcher(sel: SelectorInfo, m: Matcher): boolean {
  for (const it of sel.items) {
    if (it.value !== null && it.name === m.name && it.op === m.op && it.value === m.value) return true;
  }
  return m.name === '__name__' && m.op === '=' && sel.ident !== null && sel.ident.text === m.value;
}

function satisfiesSomeGroup(sel: SelectorInfo, groups: readonly PreparedGroup[]): boolean {
  return groups.some((g) => g.matchers.every((m) => hasMatcher(sel, m)));
}

/**
 * The replacement text for `text[sel.from, sel.to)` with the group's missing
 * matchers added. Insertion only, except when a `__name__` matcher must be
 * added to a selector whose name is written outside the braces: Prometheus
 * rejects `up{__name__=~"…"}` ("metric name must not be set twice"), so the
 * name moves inside as the equivalent `{__name__="up",…}`.
 */
function renderSelector(text: string, sel: SelectorInfo, group: PreparedGroup): string {
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

/** Whether the matcher holds for a missing label. A regex that does not compile counts as not: Prometheus rejects the query, the order is moot. */
function matchesEmpty(m: Matcher, regexes: RegexBudget): boolean {
  if (m.op === '=~' || m.op === '!~') regexes.charge(m.value);
  try {
    return matcherMatches(m, '');
  } catch {
    return false;
  }
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
function absentLabelFix(text: string, sel: SelectorInfo, group: PreparedGroup, regexes: RegexBudget): LabelChange[] | null {
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

const withLabels = (expr: string, fix: readonly LabelChange[]): string => withLabelChanges(expr, fix, quotePromQLString);

/** One group spliced into every selector; with a merged policy, a selector already inside one of its alternatives stays as written. */
function rewriteSingle(text: string, selectors: readonly SelectorInfo[], policy: PreparedPolicy): string {
  const group = policy.groups[0] as PreparedGroup;
  const regexes = new RegexBudget(LANG);
  let out = '';
  let pos = 0;
  for (let i = 0; i < selectors.length; i++) {
    const sel = selectors[i] as SelectorInfo;
    if (policy.merged && satisfiesSomeGroup(sel, policy.alternatives)) continue;
    const rendered = renderSelector(text, sel, group);
    // The call must hold this selector alone (Lezer also parses `absent(a, b)`, which Prometheus refuses).
    const next = selectors[i + 1];
    const call = sel.absentCall !== null && sel.absentCall.from >= pos && (next === undefined || next.from >= sel.absentCall.to) ? sel.absentCall : null;
    const fix = call === null ? null : absentLabelFix(text, sel, group, regexes);
    if (call === null || fix === null || fix.length === 0) {
      out += text.slice(pos, sel.from) + rendered;
      pos = sel.to;
      continue;
    }
    // absent(s): the call's result labels put back to those of s as written.
    const inner = text.slice(call.from, sel.from) + rendered + text.slice(sel.to, call.to);
    out += text.slice(pos, call.from) + withLabels(inner, fix);
    pos = call.to;
  }
  return pos === 0 ? text : out + text.slice(pos);
}

// ---------------------------------------------------------------------------
// DNF (more than one group)
// ---------------------------------------------------------------------------

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

/** Selector modifiers that belong to the selector (`offset`, `@`, `anchored`, `smoothed`). */
const MODIFIERS = new Set<number>([OffsetExpr, StepInvariantExpr, AnchoredExpr, SmoothedExpr]);

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

function unsupported(message: string): QueryError {
  return new QueryError(LANG, `${message}; a multi-group policy has no exact rewrite for this query`, 'rewrite_unsupported');
}

function selectorLabel(text: string, sel: SelectorInfo): string {
  const s = text.slice(sel.from, sel.to);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
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

function isSame(a: SyntaxNode | null, b: SyntaxNode): boolean {
  return a !== null && a.type.id === b.type.id && a.from === b.from && a.to === b.to;
}

function lastNonComment(n: SyntaxNode): SyntaxNode | null {
  let c = n.lastChild;
  while (c !== null && c.type.id === LineComment) c = c.prevSibling;
  return c;
}

function firstNonComment(n: SyntaxNode): SyntaxNode | null {
  let c = n.firstChild;
  while (c !== null && c.type.id === LineComment) c = c.nextSibling;
  return c;
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
 * replaced by `(U{G1} or U{G2} …)`, where U is its unit: the selector with
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
function rewriteDnf(text: string, tree: Tree, selectors: readonly SelectorInfo[], policy: PreparedPolicy, limits: RewriteLimits): string {
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
          // with the first part's result labels put back to those of s as written.
          const sel = child.sel as SelectorInfo;
          const fix = sel.absentCall === null ? [] : absentLabelFix(text, sel, groups[0] as PreparedGroup, regexes);
          if (fix === null) throw unsupported(`absent() of ${selectorLabel(text, sel)}, a selector with a matcher that cannot be read,`);
          piece = withLabels(`(${groups.map((g) => emit(child, g)).join(' and on() ')})`, fix);
        } else if (child.byName === true) {
          piece = withoutNameLabel(`(${groups.map((g) => withNameLabel(emit(child, g))).join(' or ')})`);
        } else {
          piece = `(${groups.map((g) => emit(child, g)).join(' or ')})`;
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

// ---------------------------------------------------------------------------
// Verification (independent of the walk above: SyntaxNode API, fresh parse)
// ---------------------------------------------------------------------------

interface PlainMatcher {
  readonly name: string | null;
  readonly op: string;
  readonly value: string | null;
}

function literal(text: string, n: SyntaxNode | null): string | null {
  if (n === null) return null;
  return unquoteStringLiteral(text.slice(n.from, n.to));
}

/** First direct child of `n` with the given type (cheaper than getChild). */
function child(n: SyntaxNode | null, type: number): SyntaxNode | null {
  if (n === null) return null;
  for (let c = n.firstChild; c !== null; c = c.nextSibling) if (c.type.id === type) return c;
  return null;
}

function matchersOf(text: string, vs: SyntaxNode): PlainMatcher[] {
  const out: PlainMatcher[] = [];
  for (let part = vs.firstChild; part !== null; part = part.nextSibling) {
    if (part.type.id === Identifier) {
      out.push({ name: '__name__', op: '=', value: text.slice(part.from, part.to) });
      continue;
    }
    if (part.type.id !== LabelMatchers) continue;
    for (let m = part.firstChild; m !== null; m = m.nextSibling) {
      const mt = m.type.id;
      if (mt !== UnquotedLabelMatcher && mt !== QuotedLabelMatcher && mt !== QuotedLabelName) continue;
      // The first direct child of each kind (as child() would find it), in one pass.
      let op: SyntaxNode | null = null;
      let ln: SyntaxNode | null = null;
      let qn: SyntaxNode | null = null;
      let str: SyntaxNode | null = null;
      for (let c = m.firstChild; c !== null; c = c.nextSibling) {
        const ct = c.type.id;
        if (ct === MatchOp) op ??= c;
        else if (ct === LabelName) ln ??= c;
        else if (ct === QuotedLabelName) qn ??= c;
        else if (ct === StringLiteral) str ??= c;
      }
      const opText = op === null ? '' : text.slice(op.from, op.to);
      if (mt === UnquotedLabelMatcher) {
        out.push({ name: ln === null ? null : text.slice(ln.from, ln.to), op: opText, value: literal(text, str) });
      } else if (mt === QuotedLabelMatcher) {
        out.push({ name: literal(text, child(qn, StringLiteral)), op: opText, value: literal(text, str) });
      } else {
        out.push({ name: '__name__', op: '=', value: literal(text, str) });
      }
    }
  }
  return out;
}

function verifyPrepared(text: string, policy: PreparedPolicy, reuse: Tree | null): void {
  const fail = (why: string): QueryError =>
    new QueryError(LANG, `rewritten query failed verification: ${why}`, 'rewrite_verification_failed');
  let tree = reuse;
  if (tree === null) {
    const r = parseWithStandIns(text);
    if (!r.ok) throw fail(`it does not parse (char ${r.pos + 1})`);
    tree = r.tree;
  }
  // A selector inside one of a merged policy's alternatives is inside the policy (rewriteSingle leaves it).
  const accepted = policy.merged ? [...policy.groups, ...policy.alternatives] : policy.groups;
  let problem: string | null = null;
  try {
    tree.iterate({
      enter(n) {
        if (problem !== null) return false;
        if (n.type.isError) {
          problem = `syntax error at char ${n.from + 1}`;
          return false;
        }
        switch (n.type.id) {
          case LineComment:
            if (CR_IN_COMMENT.test(text.slice(n.from, n.to))) problem = 'carriage return inside a comment';
            return false;
          case StringLiteral:
            unquoteStringLiteral(text.slice(n.from, n.to));
            return false;
          case Info: {
            const call = n.node.parent?.parent ?? null;
            const body = child(call, FunctionCallBody);
            if (body === null || exprArgs(body).length < 2) problem = 'info() without a data-label selector';
            return false;
          }
          case VectorSelector: {
            const ms = matchersOf(text, n.node);
            const ok = accepted.some((g) =>
              g.matchers.every((m) => ms.some((x) => x.value !== null && x.name === m.name && x.op === m.op && x.value === m.value)),
            );
            if (!ok) problem = `selector at char ${n.from + 1} (${JSON.stringify(text.slice(n.from, Math.min(n.to, n.from + 80)))}) lacks the enforced matchers`;
            return undefined;
          }
          default:
            return undefined;
        }
      },
    });
  } catch (e) {
    if (e instanceof LiteralError) throw fail(`invalid string literal (${e.message})`);
    throw e;
  }
  if (problem !== null) throw fail(problem);
}

/**
 * Check that `query` parses cleanly and that every vector selector in it
 * carries all matchers of at least one policy group (parsed, unescaped
 * values). Throws QueryError('rewrite_verification_failed') otherwise.
 */
export function verifyPromQL(query: string, policy: SelectorPolicy): void {
  verifyPrepared(query, preparePolicy(policy), null);
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

const cache = registerRewriteCache('promql', new RewriteCache());

/** For tests and benchmarks. */
export function clearPromQLCache(): void {
  cache.clear();
}

/**
 * Rewrite a PromQL query so that every vector selector is constrained by the
 * policy. Throws QueryError: bad_query (parse errors, empty), query_too_large,
 * rewrite_unsupported (no exact rewrite for a multi-group policy; info()
 * without a data-label selector), policy_error (malformed policy),
 * rewrite_verification_failed (a bug; fail closed).
 */
export function rewritePromQL(query: string, policy: SelectorPolicy, limits: RewriteLimits = DEFAULT_LIMITS): string {
  if (typeof query !== 'string') throw new QueryError(LANG, 'query must be a string', 'bad_query');
  const p = preparePolicy(policy);
  checkLength(query, limits);
  return cache.through(p.key, limits, query, () => {
    const multi = p.groups.length > 1;
    const opts: AnalyzeOptions = { limits, needNodes: multi, posOffset: 0, prefix: '' };
    const a = analyze(query, opts);
    checkNonEmptySelectors(a.selectors, opts);
    checkInfoDataLabels(a.selectors, p);
    const out = multi ? rewriteDnf(a.text, a.tree, a.selectors, p, limits) : rewriteSingle(a.text, a.selectors, p);
    verifyPrepared(out, p, out === a.text ? a.tree : null);
    return out;
  });
}

/**
 * `query` of an instant query (/api/v1/query) under a policy of several groups:
 * the rewrite when there is one, else, for a query that is only a range
 * selector (`up[5m]`, also with `offset`/`@`/`anchored`/`smoothed` and in
 * parentheses), one query per group. An "or" of range vectors is not PromQL,
 * but the raw samples of the union are the union of each group's samples:
 * the route asks once per group and merges the matrices
 * (src/backends/matrix-answers.ts). Anything else keeps the refusal.
 */
export function rewritePromQLPerGroup(query: string, policy: SelectorPolicy, limits: RewriteLimits = DEFAULT_LIMITS): string[] {
  try {
    return [rewritePromQL(query, policy, limits)];
  } catch (e) {
    if (!(e instanceof QueryError) || e.code !== 'rewrite_unsupported' || policy.length < 2 || !isBareRangeSelector(query, limits)) throw e;
    // The normalised alternatives: a group that contains another adds nothing to the union, nor a part.
    return [...new Set(preparePolicy(policy).alternatives.map((group) => rewritePromQL(query, [group.matchers], limits)))];
  }
}

/** Whether the (valid) query is one range selector: `s[r]` with modifiers and parentheses around it, nothing else. */
function isBareRangeSelector(query: string, limits: RewriteLimits): boolean {
  const a = analyze(query, { limits, needNodes: false, posOffset: 0, prefix: '' });
  if (a.selectors.length !== 1) return false;
  let n: SyntaxNode | null = exprArgs(a.tree.topNode)[0] ?? null;
  while (n !== null && (n.type.id === ParenExpr || MODIFIERS.has(n.type.id))) n = firstNonComment(n);
  if (n === null || n.type.id !== MatrixSelector) return false;
  return firstNonComment(n)?.type.id === VectorSelector;
}

export const promqlRewriter: QueryRewriter = {
  language: 'promql',
  rewrite: rewritePromQL,
};

/**
 * Enforce the policy on Prometheus `match[]` parameters (/series, /labels,
 * /label/<name>/values). Each parameter must be a single vector selector.
 * Prometheus unions match[] results, so `n` params × `k` groups selectors
 * is exact. With no params, one `{group}` selector per group.
 */
export function rewriteSeriesSelectors(matchParams: readonly string[], policy: SelectorPolicy, limits: RewriteLimits = DEFAULT_LIMITS): string[] {
  const p = preparePolicy(policy);
  const verify = (s: string): void => verifyPrepared(s, p, null);
  if (matchParams.length === 0) {
    return [...cache.throughSelectors(p.key, limits, undefined, verify, (add) => p.groups.forEach((g) => add(`{${g.texts.join(',')}}`)))];
  }
  const prefix = 'invalid parameter "match[]": ';
  // One budget for every match[] value of the request (a series lookup may carry many).
  const regexes = new RegexBudget(LANG);
  const lists = matchParams.map((param) => {
    if (typeof param !== 'string') throw new QueryError(LANG, `${prefix}must be a string`, 'bad_query');
    checkLength(param, limits);
    return cache.throughSelectors(p.key, limits, param, verify, (add) => {
      const a = analyze(param, { limits, needNodes: false, posOffset: 0, prefix });
      const top = a.tree.topNode;
      const exprs = exprArgs(top);
      const only = exprs[0];
      if (exprs.length !== 1 || only === undefined || only.type.id !== VectorSelector) {
        throw new QueryError(LANG, `${prefix}must be a single series selector, e.g. up{job="api"}`, 'bad_query');
      }
      const sel = a.selectors[0];
      if (sel === undefined || a.selectors.length !== 1) {
        throw new QueryError(LANG, `${prefix}must be a single series selector, e.g. up{job="api"}`, 'bad_query');
      }
      if (matchesOnlyEmpty(sel, regexes, prefix)) {
        // Prometheus' own wording for match[] (web/api/v1: parseMatchersParam).
        throw new QueryError(LANG, `${prefix}match[] must contain at least one non-empty matcher`, 'bad_query');
      }
      // With a merged policy, a selector already inside one of its alternatives is forwarded as written.
      if (p.merged && satisfiesSomeGroup(sel, p.alternatives)) add(a.text);
      else for (const g of p.groups) add(a.text.slice(0, sel.from) + renderSelector(a.text, sel, g) + a.text.slice(sel.to));
    });
  });
  return unionOfSelectors(lists);
}

/**
 * Parse matcher text in PromQL syntax (the CLI's `--matcher`):
 * `namespace=~"a|b"`, `a="x", b!="y"`, `"k8s.ns"="x"`.
 */
export function parseMatcherExpression(text: string): Matcher[] {
  if (typeof text !== 'string' || text.trim() === '') throw new QueryError(LANG, 'empty matcher expression', 'bad_query');
  const wrapped = `{${text}}`;
  const prefix = 'invalid matcher expression: ';
  const a = analyze(wrapped, { limits: DEFAULT_LIMITS, needNodes: false, posOffset: -1, prefix });
  const top = exprArgs(a.tree.topNode);
  const sel = a.selectors[0];
  if (top.length !== 1 || top[0]?.type.id !== VectorSelector || sel === undefined || a.selectors.length !== 1 || sel.ident !== null || sel.braces === null) {
    throw new QueryError(LANG, `${prefix}expected label matchers like name="value"`, 'bad_query');
  }
  if (sel.braces.from !== 0 || sel.braces.to !== wrapped.length) {
    throw new QueryError(LANG, `${prefix}expected label matchers like name="value"`, 'bad_query');
  }
  if (sel.items.length === 0) throw new QueryError(LANG, `${prefix}no matchers`, 'bad_query');
  return sel.items.map((it) => {
    if (it.name === null || it.op === null || it.value === null) {
      throw new QueryError(LANG, `${prefix}matcher ${JSON.stringify(wrapped.slice(it.from, it.to))} is not valid UTF-8`, 'bad_query');
    }
    return { name: it.name, op: it.op, value: it.value };
  });
}
