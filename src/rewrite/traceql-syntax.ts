/**
 * Reading TraceQL the way Tempo does: the grammar-specific half of the
 * TraceQL rewriter. `analyzeTraceQL` parses a query with the project's own
 * Lezer grammar (src/rewrite/grammars/traceql.grammar), applies the lexical
 * rules a regular grammar cannot express (Tempo's Go lexer: string escapes,
 * integer and float ranges, duration syntax, `nil` placement, hint names, the
 * greedy attribute and number scanners), and reports what the rewriter needs:
 *
 *  - every spanset filter `{ … }` (including the one inside `compare(…)`),
 *    with the top-level `&&` chain of its expression, each conjunct
 *    classified (parenthesised expression, string matcher, DNF group list);
 *  - every spanset pipeline that does not start with a spanset expression
 *    (`count() > 2`, `by(.a) | …`, `select(.a)`): such a pipeline reads all
 *    spans of a trace, so the rewriter must put an enforced filter in front.
 *
 * The rewriter itself (traceql.ts) only sees these positions and
 * classifications, so another grammar can be plugged in by providing the
 * same `TraceQLAnalysis`.
 */
import type { SyntaxNode, Tree } from '@lezer/common';
import { QueryError } from '../errors.ts';
import { parser } from './grammars/traceql.parser.ts';
import { GO_STRINGS, LiteralError, describeAt, isWellFormedUnicode, lineCol, parseStrict, unquoteStringLiteral } from './lezer.ts';
import { checkMatcherRegex, type MatchOp } from './matcher.ts';
import { MAX_REGEX_EXPANSION, regexExpansion } from './regex-budget.ts';
import type { RewriteLimits } from './rewriter.ts';
import type { AttributeScope, TraceQLField } from './traceql-escape.ts';
import { fieldKey, fieldNameOrNull, parseFieldName } from './traceql-escape.ts';

const LANG = 'traceql';

/**
 * Lezer gives up on left-associative chains of roughly 350 binary operators
 * (an internal recursion guard). A parse failure on a query with at least
 * this many operator characters is reported as too large rather than as a
 * syntax error at a confusing position.
 */
const LEZER_CHAIN_LIMIT = 300;

// ---------------------------------------------------------------------------
// Node types, by name (inline rules have no exported term constant)
// ---------------------------------------------------------------------------

function nodeId(name: string): number {
  const t = parser.nodeSet.types.find((x) => x.name === name);
  if (t === undefined) throw new Error(`internal: TraceQL grammar has no node ${name}`);
  return t.id;
}

export const N = {
  LineComment: nodeId('LineComment'),
  BlockComment: nodeId('BlockComment'),
  SpansetFilter: nodeId('SpansetFilter'),
  OpenBrace: nodeId('{'),
  CloseBrace: nodeId('}'),
  FieldParen: nodeId('FieldParen'),
  LogicalExpr: nodeId('LogicalExpr'),
  AndOp: nodeId('AndOp'),
  OrOp: nodeId('OrOp'),
  CompareExpr: nodeId('CompareExpr'),
  ArithExpr: nodeId('ArithExpr'),
  UnaryExpr: nodeId('UnaryExpr'),
  Eq: nodeId('Eq'),
  Neq: nodeId('Neq'),
  Re: nodeId('Re'),
  NotSibl: nodeId('NotSibl'),
  String: nodeId('String'),
  Integer: nodeId('Integer'),
  Float: nodeId('Float'),
  Duration: nodeId('Duration'),
  Nil: nodeId('Nil'),
  Attribute: nodeId('Attribute'),
  Intrinsic: nodeId('Intrinsic'),
  ScopedIntrinsic: nodeId('ScopedIntrinsic'),
  ScalarFilter: nodeId('ScalarFilter'),
  GroupOperation: nodeId('GroupOperation'),
  SelectOperation: nodeId('SelectOperation'),
  Pipe: nodeId('Pipe'),
  HintName: nodeId('HintName'),
} as const;

/** Composite node types: each level counts towards `maxDepth`. */
const COUNTED = new Uint8Array(parser.nodeSet.types.length);
for (const name of [
  'SpansetFilter',
  'FieldParen',
  'LogicalExpr',
  'CompareExpr',
  'ArithExpr',
  'UnaryExpr',
  'SpansetParen',
  'SpansetOperation',
  'WrappedPipeline',
  'PipelineParen',
  'PipelineOperation',
  'ScalarFilter',
  'ScalarParen',
  'ScalarOperation',
  'ScalarPipelineFilter',
  'WrappedScalarPipeline',
  'ScalarPipelineParen',
  'ScalarPipelineOperation',
  'Aggregate',
  'GroupOperation',
  'SelectOperation',
  'FirstStage',
  'WrappedMetrics',
  'MetricsParen',
  'MetricsOperation',
]) {
  COUNTED[nodeId(name)] = 1;
}

function isComment(n: SyntaxNode): boolean {
  return n.type.id === N.LineComment || n.type.id === N.BlockComment;
}

/** Children of `n` that are not comments. */
export function significantChildren(n: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = n.firstChild; c !== null; c = c.nextSibling) if (!isComment(c)) out.push(c);
  return out;
}

/** The previous sibling that is not a comment, or null. */
export function prevSignificant(n: SyntaxNode): SyntaxNode | null {
  let p = n.prevSibling;
  while (p !== null && isComment(p)) p = p.prevSibling;
  return p;
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

/** `field op "value"` as read from the query (unescaped, canonical field name). */
export interface ReadMatcher {
  readonly field: string;
  readonly op: MatchOp;
  readonly value: string;
}

/** One element of a filter expression's top-level `&&` chain. */
export type Conjunct =
  | { readonly kind: 'paren'; readonly from: number; readonly to: number; readonly groups: readonly (readonly ReadMatcher[])[] | null }
  | { readonly kind: 'matcher'; readonly from: number; readonly to: number; readonly matcher: ReadMatcher }
  | { readonly kind: 'other'; readonly from: number; readonly to: number };

export interface FilterSite {
  /** Position of `{`. */
  readonly from: number;
  /** Position after `}`. */
  readonly to: number;
  /** The expression between the braces, or null for `{ }`. */
  readonly expr: { readonly from: number; readonly to: number } | null;
  /** Top-level `&&` chain of the expression (left to right); empty for `{ }`. */
  readonly conjuncts: readonly Conjunct[];
  /** When the whole expression is `( … ) || ( … ) || …` over matcher conjunctions: those groups. */
  readonly orGroups: readonly (readonly ReadMatcher[])[] | null;
}

export interface TraceQLAnalysis {
  readonly tree: Tree;
  readonly filters: readonly FilterSite[];
  /** Positions of pipelines that start with a scalar filter, by() or select() (where `{ C } | ` goes). */
  readonly heads: readonly number[];
}

export interface AnalyzeOptions {
  readonly limits: RewriteLimits;
  /** Prefix for error messages, e.g. 'invalid matcher expression: '. */
  readonly prefix?: string;
  /** Added to reported positions (e.g. -2 when the text was wrapped in '{ '). */
  readonly posOffset?: number;
}

// ---------------------------------------------------------------------------
// Positions and errors
// ---------------------------------------------------------------------------

class Ctx {
  readonly text: string;
  readonly prefix: string;
  readonly posOffset: number;
  constructor(text: string, opts: AnalyzeOptions) {
    this.text = text;
    this.prefix = opts.prefix ?? '';
    this.posOffset = opts.posOffset ?? 0;
  }
  error(pos: number, what: string, code: 'bad_query' | 'query_too_large' | 'rewrite_unsupported' = 'bad_query'): QueryError {
    const p = Math.max(0, pos + this.posOffset);
    const shown = this.posOffset === 0 ? this.text : this.text.slice(-this.posOffset);
    const { line, col } = lineCol(shown, p);
    if (code === 'rewrite_unsupported') return new QueryError(LANG, `${this.prefix}${what} (at line ${line}, col ${col})`, code);
    return new QueryError(LANG, `${this.prefix}parse error at line ${line}, col ${col}: ${what}`, code);
  }
  plain(message: string, code: 'bad_query' | 'query_too_large' | 'rewrite_unsupported'): QueryError {
    return new QueryError(LANG, `${this.prefix}${message}`, code);
  }
}

// ---------------------------------------------------------------------------
// Lexical pre-scan (depth limit, operator count) — Go scanner rules
// ---------------------------------------------------------------------------

interface Prescan {
  readonly depth: number;
  readonly operators: number;
}

/**
 * One linear pass skipping strings, raw strings, quoted attribute parts and
 * Go comments; measures bracket nesting and counts operator characters.
 */
function prescan(text: string): Prescan {
  let depth = 0;
  let max = 0;
  let ops = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      // "…" (strings and quoted attribute parts; both use backslash escapes)
      i++;
      while (i < n && text.charCodeAt(i) !== 34) {
        if (text.charCodeAt(i) === 92) i++;
        i++;
      }
      continue;
    }
    if (c === 96) {
      i++;
      while (i < n && text.charCodeAt(i) !== 96) i++;
      continue;
    }
    if (c === 47 && text.charCodeAt(i + 1) === 47) {
      while (i < n && text.charCodeAt(i) !== 10) i++;
      continue;
    }
    if (c === 47 && text.charCodeAt(i + 1) === 42) {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 1;
      continue;
    }
    switch (c) {
      case 40: // (
      case 91: // [
      case 123: // {
        depth++;
        if (depth > max) max = depth;
        break;
      case 41:
      case 93:
      case 125:
        if (depth > 0) depth--;
        break;
      case 38: // &
      case 124: // |
      case 61: // =
      case 60: // <
      case 62: // >
      case 33: // !
      case 126: // ~
      case 43: // +
      case 45: // -
      case 42: // *
      case 47: // /
      case 37: // %
      case 94: // ^
        ops++;
        break;
      default:
        break;
    }
  }
  return { depth: max, operators: ops };
}

// ---------------------------------------------------------------------------
// Literal checks (what Tempo's Go lexer rejects)
// ---------------------------------------------------------------------------

const MAX_INT64 = 9223372036854775807n;

function checkInteger(ctx: Ctx, n: SyntaxNode): void {
  const raw = ctx.text.slice(n.from, n.to);
  // Go's scanner reads a leading 0 as an octal literal: 08 and 09 are errors.
  if (raw.length > 1 && raw.charCodeAt(0) === 48 && /[89]/.test(raw)) throw ctx.error(n.from, `invalid digit in octal literal ${raw}`);
  // strconv.Atoi (int64).
  if (raw.length >= 19 && BigInt(raw) > MAX_INT64) throw ctx.error(n.from, `integer ${raw} out of range`);
}

function checkFloat(ctx: Ctx, n: SyntaxNode): void {
  const raw = ctx.text.slice(n.from, n.to);
  if (!Number.isFinite(Number(raw))) throw ctx.error(n.from, `float ${raw} out of range`);
}

const PROM_DURATION = /^(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?$/;
const PROM_UNIT_MS = [365n * 24n * 3600n * 1000n, 7n * 24n * 3600n * 1000n, 24n * 3600n * 1000n, 3600n * 1000n, 60n * 1000n, 1000n, 1n];

/** Prometheus' model.ParseDuration (integer components, fixed unit order, int64 nanoseconds). */
export function isPromDuration(s: string): boolean {
  if (s === '') return false;
  const m = PROM_DURATION.exec(s);
  if (m === null) return false;
  let ms = 0n;
  for (let i = 0; i < PROM_UNIT_MS.length; i++) {
    const v = m[i + 1];
    if (v !== undefined) ms += BigInt(v) * (PROM_UNIT_MS[i] as bigint);
  }
  return ms * 1000000n <= MAX_INT64;
}

const GO_UNITS: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1000n],
  ['µs', 1000n], // U+00B5
  ['μs', 1000n], // U+03BC
  ['ms', 1000000n],
  ['s', 1000000000n],
  ['m', 60n * 1000000000n],
  ['h', 3600n * 1000000000n],
]);
const GO_COMPONENT = /([0-9]*)(?:\.([0-9]*))?([^0-9.]+)/y;

/** Go's time.ParseDuration, without sign (the scanner never includes one). */
export function isGoDuration(s: string): boolean {
  if (s === '' || s === '0') return s === '0';
  let pos = 0;
  let total = 0n;
  while (pos < s.length) {
    GO_COMPONENT.lastIndex = pos;
    const m = GO_COMPONENT.exec(s);
    if (m === null) return false;
    const intPart = m[1] ?? '';
    const frac = m[2];
    if (intPart === '' && (frac === undefined || frac === '')) return false;
    const unitText = m[3] ?? '';
    // The unit is the run of non-digit, non-dot characters; it must be a known unit.
    const unit = GO_UNITS.get(unitText);
    if (unit === undefined) return false;
    let ns = BigInt(intPart === '' ? '0' : intPart) * unit;
    if (frac !== undefined && frac !== '') {
      ns += (BigInt(frac) * unit) / 10n ** BigInt(frac.length);
    }
    total += ns;
    if (total > MAX_INT64) return false;
    pos = GO_COMPONENT.lastIndex;
  }
  return true;
}

function checkDuration(ctx: Ctx, n: SyntaxNode): void {
  const raw = ctx.text.slice(n.from, n.to);
  if (!isPromDuration(raw) && !isGoDuration(raw)) throw ctx.error(n.from, `invalid duration ${raw}`);
}

// After a number, Tempo's scanner keeps reading digits, '.' and duration
// letters (and Go identifier characters start a new token): the gateway
// refuses any such continuation instead of guessing how Tempo splits it.
const NUMBER_CONTINUATION = /[0-9A-Za-z_.µ\u0080-\uffff]/;

function checkNumberEnd(ctx: Ctx, n: SyntaxNode): void {
  const next = ctx.text.charAt(n.to);
  if (next !== '' && NUMBER_CONTINUATION.test(next) && !/\s/.test(next)) {
    throw ctx.error(n.to, `unexpected ${JSON.stringify(next)} after number ${ctx.text.slice(n.from, n.to)}`);
  }
}

function checkString(ctx: Ctx, n: SyntaxNode): string | null {
  try {
    return unquoteStringLiteral(ctx.text.slice(n.from, n.to), GO_STRINGS);
  } catch (e) {
    if (e instanceof LiteralError) throw ctx.error(n.from + e.offset, e.message);
    throw e;
  }
}

const GO_IDENT = /^[\p{L}_][\p{L}\p{Nd}_]*$/u;
/** A Go character literal as text/scanner reads one: exactly one character (a code point) or one escape. */
const GO_CHAR_LITERAL = /^'(?:[^\\'\n]|\\(?:[abfnrtv\\']|[0-7]{3}|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}))'$/u;

// ---------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------

export interface DecodedAttribute {
  readonly parent: boolean;
  readonly scope: AttributeScope | null;
  readonly key: string;
}

const SCOPE_PREFIXES: readonly (readonly [string, AttributeScope])[] = [
  ['resource.', 'resource'],
  ['span.', 'span'],
  ['event.', 'event'],
  ['link.', 'link'],
  ['instrumentation.', 'instrumentation'],
];

/** The key of an attribute token body: bare runes and "quoted" parts (escapes \" and \\) concatenated. */
function decodeKey(body: string): string | null {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const ch = body[i] as string;
    if (ch !== '"') {
      out += ch;
      continue;
    }
    i++;
    for (;;) {
      if (i >= body.length) return null;
      const c = body[i] as string;
      if (c === '"') break;
      if (c === '\\') {
        const e = body[i + 1];
        if (e !== '"' && e !== '\\') return null;
        out += e;
        i += 2;
        continue;
      }
      out += c;
      i++;
    }
  }
  return out;
}

/**
 * Scope and key of an Attribute token, as Tempo's lexer splits it
 * (`parent.` then an optional `span.`/`resource.` scope, read on the raw
 * text before quotes are interpreted). Null when the key is malformed.
 */
export function decodeAttribute(raw: string): DecodedAttribute | null {
  let parent = false;
  let scope: AttributeScope | null = null;
  let body: string;
  if (raw.startsWith('.')) {
    body = raw.slice(1);
  } else if (raw.startsWith('parent.')) {
    parent = true;
    body = raw.slice(7);
    if (body.startsWith('span.')) {
      scope = 'span';
      body = body.slice(5);
    } else if (body.startsWith('resource.')) {
      scope = 'resource';
      body = body.slice(9);
    }
    if (body === '') return null;
  } else {
    const hit = SCOPE_PREFIXES.find(([p]) => raw.startsWith(p));
    if (hit === undefined) return null;
    scope = hit[1];
    body = raw.slice(hit[0].length);
  }
  const key = decodeKey(body);
  return key === null ? null : { parent, scope, key };
}

/** Canonical field name of an operand node (Attribute / Intrinsic / ScopedIntrinsic), or null. */
export function readField(text: string, n: SyntaxNode): string | null {
  const id = n.type.id;
  if (id === N.Attribute) {
    const a = decodeAttribute(text.slice(n.from, n.to));
    if (a === null || a.parent) return null;
    const f: TraceQLField = { kind: 'attribute', scope: a.scope, key: a.key };
    return fieldKey(f);
  }
  if (id === N.Intrinsic) return text.slice(n.from, n.to);
  if (id === N.ScopedIntrinsic) {
    const parts = significantChildren(n);
    const colon = parts[0];
    const kw = parts[1];
    if (colon === undefined || kw === undefined) return null;
    return text.slice(colon.from, colon.to) + text.slice(kw.from, kw.to);
  }
  return null;
}

function matchOpOf(n: SyntaxNode): MatchOp | null {
  switch (n.type.id) {
    case N.Eq:
      return '=';
    case N.Neq:
      return '!=';
    case N.Re:
      return '=~';
    case N.NotSibl:
      return '!~';
    default:
      return null;
  }
}

/** `field op "value"` when `n` is exactly that (field on the left, string on the right). */
export function readMatcher(text: string, n: SyntaxNode): ReadMatcher | null {
  if (n.type.id !== N.CompareExpr) return null;
  const [l, op, r, extra] = significantChildren(n);
  if (l === undefined || op === undefined || r === undefined || extra !== undefined) return null;
  if (r.type.id !== N.String) return null;
  const mop = matchOpOf(op);
  if (mop === null) return null;
  const field = readField(text, l);
  if (field === null) return null;
  let value: string | null;
  try {
    value = unquoteStringLiteral(text.slice(r.from, r.to), GO_STRINGS);
  } catch {
    return null;
  }
  if (value === null) return null;
  return { field, op: mop, value };
}

/** Operands of a left-associative chain of `op` (AndOp/OrOp) LogicalExprs, left to right. */
export function chain(n: SyntaxNode, op: number): SyntaxNode[] {
  const rights: SyntaxNode[] = [];
  let cur = n;
  for (;;) {
    if (cur.type.id !== N.LogicalExpr) break;
    const [l, o, r] = significantChildren(cur);
    if (l === undefined || o === undefined || r === undefined || o.type.id !== op) break;
    rights.push(r);
    cur = l;
  }
  rights.push(cur);
  return rights.reverse();
}

/** The expression inside a FieldParen. */
export function parenInner(n: SyntaxNode): SyntaxNode | null {
  if (n.type.id !== N.FieldParen) return null;
  const kids = significantChildren(n);
  return kids.length === 3 ? (kids[1] as SyntaxNode) : null;
}

/** `( m && m … ) || ( m … ) || …` → the matcher groups, else null. */
export function readGroups(text: string, n: SyntaxNode): ReadMatcher[][] | null {
  const alts = chain(n, N.OrOp);
  const groups: ReadMatcher[][] = [];
  for (const alt of alts) {
    const inner = parenInner(alt);
    if (inner === null) return null;
    const ms: ReadMatcher[] = [];
    for (const c of chain(inner, N.AndOp)) {
      const m = readMatcher(text, c);
      if (m === null) return null;
      ms.push(m);
    }
    groups.push(ms);
  }
  return groups;
}

function readFilter(text: string, node: SyntaxNode): FilterSite {
  const kids = significantChildren(node);
  const exprNode = kids.length === 3 ? (kids[1] as SyntaxNode) : null;
  if (exprNode === null) return { from: node.from, to: node.to, expr: null, conjuncts: [], orGroups: null };
  const conjuncts: Conjunct[] = chain(exprNode, N.AndOp).map((c): Conjunct => {
    if (c.type.id === N.FieldParen) {
      const inner = parenInner(c);
      return { kind: 'paren', from: c.from, to: c.to, groups: inner === null ? null : readGroups(text, inner) };
    }
    const m = readMatcher(text, c);
    return m === null ? { kind: 'other', from: c.from, to: c.to } : { kind: 'matcher', from: c.from, to: c.to, matcher: m };
  });
  const orGroups = exprNode.type.id === N.LogicalExpr ? readGroups(text, exprNode) : null;
  return { from: node.from, to: node.to, expr: { from: exprNode.from, to: exprNode.to }, conjuncts, orGroups };
}

// ---------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------

function checkLength(ctx: Ctx, text: string, limits: RewriteLimits): void {
  if (text.length > limits.maxQueryLength || (text.length * 3 > limits.maxQueryLength && Buffer.byteLength(text, 'utf8') > limits.maxQueryLength)) {
    throw ctx.plain(`query is too long: more than ${limits.maxQueryLength} bytes`, 'query_too_large');
  }
}

/**
 * Parse `text` as Tempo would and collect filters and pipeline heads.
 * Throws QueryError: bad_query (empty, not valid, position in the message),
 * query_too_large (length, nesting), rewrite_unsupported (parent attributes).
 */
export function analyzeTraceQL(text: string, opts: AnalyzeOptions): TraceQLAnalysis {
  const ctx = new Ctx(text, opts);
  const { limits } = opts;
  if (text.trim() === '') throw ctx.plain('empty query', 'bad_query');
  checkLength(ctx, text, limits);
  if (!isWellFormedUnicode(text)) throw ctx.plain('query is not valid UTF-8', 'bad_query');
  const nul = text.search(/[\u0000\ufeff]/);
  if (nul >= 0) throw ctx.error(nul, text.charCodeAt(nul) === 0 ? 'invalid character NUL' : 'invalid BOM');
  const scan = prescan(text);
  if (scan.depth > limits.maxDepth) {
    throw ctx.plain(`query is nested too deeply (more than ${limits.maxDepth} levels)`, 'query_too_large');
  }
  const parsed = parseStrict(parser, text);
  if (!parsed.ok) {
    if (scan.operators >= LEZER_CHAIN_LIMIT) {
      const { line, col } = lineCol(text, parsed.pos);
      throw ctx.plain(
        `query could not be parsed: it is invalid or too complex (${scan.operators} operators; parse failed at line ${line}, col ${col})`,
        'query_too_large',
      );
    }
    throw ctx.error(parsed.pos, describeAt(text, parsed.pos));
  }
  const tree = parsed.tree;
  const filters: FilterSite[] = [];
  const heads: number[] = [];
  const c = tree.cursor();
  let depth = 0;
  const counted: number[] = [];
  for (;;) {
    const type = c.type;
    const id = type.id;
    if (type.isError) throw ctx.error(c.from, describeAt(text, c.from));
    const isCounted = COUNTED[id] === 1;
    if (isCounted) {
      depth++;
      if (depth > limits.maxDepth) throw ctx.plain(`query is nested too deeply (more than ${limits.maxDepth} levels)`, 'query_too_large');
    }
    switch (id) {
      case N.SpansetFilter:
        filters.push(readFilter(text, c.node));
        break;
      case N.ScalarFilter:
      case N.GroupOperation:
      case N.SelectOperation: {
        const prev = prevSignificant(c.node);
        if (prev === null || prev.type.id !== N.Pipe) heads.push(c.from);
        break;
      }
      case N.String:
        checkString(ctx, c.node);
        break;
      case N.Integer:
        checkInteger(ctx, c.node);
        checkNumberEnd(ctx, c.node);
        break;
      case N.Float:
        checkFloat(ctx, c.node);
        checkNumberEnd(ctx, c.node);
        break;
      case N.Duration:
        checkDuration(ctx, c.node);
        checkNumberEnd(ctx, c.node);
        break;
      case N.Attribute: {
        const raw = text.slice(c.from, c.to);
        const a = decodeAttribute(raw);
        if (a === null) throw ctx.error(c.from, `invalid attribute name ${raw}`);
        if (text.charCodeAt(c.to) === 34) throw ctx.error(c.to, `unterminated or invalid quoted part in attribute name ${raw}`);
        if (a.parent) {
          throw ctx.error(
            c.from,
            `${raw}: parent attributes read another span than the one the policy filters, so the gateway cannot enforce them`,
            'rewrite_unsupported',
          );
        }
        break;
      }
      case N.Nil: {
        const p = c.node.parent;
        const kids = p === null ? [] : significantChildren(p);
        const op = kids[1];
        if (p === null || p.type.id !== N.CompareExpr || op === undefined || (op.type.id !== N.Eq && op.type.id !== N.Neq)) {
          throw ctx.error(c.from, 'nil can only be compared with = or !=');
        }
        break;
      }
      case N.HintName: {
        const name = text.slice(c.from, c.to);
        // An identifier, or a Go character literal (Tempo's lexer hands `'x'` on as an identifier, quotes included).
        if (!GO_IDENT.test(name) && !GO_CHAR_LITERAL.test(name)) throw ctx.error(c.from, `invalid hint name ${JSON.stringify(name)}`);
        break;
      }
      default:
        break;
    }
    if (c.firstChild()) {
      counted.push(isCounted ? 1 : 0);
      continue;
    }
    if (isCounted) depth--;
    for (;;) {
      if (c.nextSibling()) break;
      if (!c.parent()) return { tree, filters, heads };
      depth -= counted.pop() ?? 0;
    }
  }
}

/**
 * Intrinsics that describe a whole trace, other teams' spans included, in the
 * spelling readField gives them: the trace-level ones, and those Tempo
 * computes from the trace's structure, over every span of it.
 * `span:childCount` (`childCount`) counts a span's children, whoever's;
 * `nestedSetLeft`/`nestedSetRight` number the spans in a walk of the whole
 * trace (right − left − 1 is twice the number of descendants, and the left
 * bound counts the spans before it); `nestedSetParent` is the parent's left
 * bound. `span:parentID` is not among them: it is the parent span's id,
 * which the trace-by-id answer shows anyway (each span's `parentSpanId`).
 */
const TRACE_LEVEL_INTRINSICS: ReadonlySet<string> = new Set([
  'trace:rootService',
  'trace:rootName',
  'trace:duration',
  'trace:id',
  'rootServiceName',
  'rootName',
  'traceDuration',
  'span:childCount',
  'childCount',
  'nestedSetLeft',
  'nestedSetRight',
  'nestedSetParent',
]);

/** Whether `field` (a canonical field name, as readField and tagField give it) is a trace-level intrinsic (TRACE_LEVEL_INTRINSICS). */
export function isTraceLevelIntrinsic(field: string): boolean {
  return TRACE_LEVEL_INTRINSICS.has(field);
}

/** What a query reads of whole traces (upstreams[].refuseTraceLevelIntrinsics). */
export interface TraceLevelReads {
  /** The trace-level intrinsics it names (trace:rootService, rootName, …), each once, in order. */
  readonly intrinsics: string[];
  /**
   * Whether it calls `compare()`. Tempo answers it from every attribute of
   * each observed span (MetricsCompare asks its storage to select all, which
   * loads the trace-level intrinsics onto every span): a series per value of
   * the root service, the root span name, the nested-set bounds, and
   * exemplars labelled with the trace's duration, whatever the query names.
   */
  readonly compare: boolean;
}

/**
 * The trace-level intrinsics `text` names and whether it calls compare(), in
 * one parse; nothing when it does not parse (the rewrite then refuses it anyway).
 */
export function traceLevelReads(text: string): TraceLevelReads {
  const tree = parseTraceQLTree(text);
  if (tree === null) return { intrinsics: [], compare: false };
  const found = new Set<string>();
  let compare = false;
  tree.iterate({
    enter(n) {
      if (n.name === 'compare' && n.node.parent?.name === 'FirstStage') compare = true;
      if (n.type.id !== N.Intrinsic && n.type.id !== N.ScopedIntrinsic) return undefined;
      const field = readField(text, n.node);
      if (field !== null && TRACE_LEVEL_INTRINSICS.has(field)) found.add(field);
      return false;
    },
  });
  return { intrinsics: [...found], compare };
}

/** Parse without the lexical checks (for verification of the gateway's own output). */
export function parseTraceQLTree(text: string): Tree | null {
  const r = parseStrict(parser, text);
  return r.ok ? r.tree : null;
}

/** The single spanset filter `text` consists of (no pipeline, no structural operator), or null. */
function soleSpansetFilter(tree: Tree): SyntaxNode | null {
  const [query, extra] = significantChildren(tree.topNode);
  if (query === undefined || extra !== undefined) return null;
  const [filter, more] = significantChildren(query);
  return filter !== undefined && more === undefined && filter.type.id === N.SpansetFilter ? filter : null;
}

/**
 * Whether `text` is one spanset filter with no `||` anywhere in it and no
 * brace but its own: a query from which Tempo's tag APIs extract conditions
 * that must all hold (traceql.ExtractConditions gives up on structural
 * operators and on `||`, and Tempo then answers from every span; releases that
 * read the filter with a regular expression stop at the first `}`).
 */
export function isConjunctiveFilter(text: string): boolean {
  return conjunctiveFilter(text) !== null;
}

/** The spanset filter of isConjunctiveFilter, or null. */
function conjunctiveFilter(text: string): SyntaxNode | null {
  const tree = parseTraceQLTree(text);
  if (tree === null) return null;
  const filter = soleSpansetFilter(tree);
  if (filter === null) return null;
  if (/[{}]/.test(text.slice(filter.from + 1, filter.to - 1))) return null;
  let or = false;
  tree.iterate({
    from: filter.from,
    to: filter.to,
    enter: (n) => {
      if (n.type.id === N.OrOp) or = true;
      return !or;
    },
  });
  return or ? null : filter;
}

/**
 * Whether `text` is one spanset filter that is empty or a `&&` chain (any
 * parentheses) of `field op "string"` comparisons on attributes or string
 * intrinsics, each regular expression valid RE2: conditions Tempo's tag APIs
 * read *and validate* as written. Tempo drops the whole query when its
 * validation fails (traceql.ExtractConditionGroups; `{ status = "error" }`
 * compares an enum with a string, `{ .a = nil }`, `{ .a =~ "(" }`) and then
 * answers from every span, so nothing else of a client's filter is kept.
 */
export function isPlainConditionFilter(text: string): boolean {
  if (text.length > PLAIN_FILTER_MAX_LENGTH) return false;
  const filter = conjunctiveFilter(text);
  if (filter === null) return false;
  const kids = significantChildren(filter);
  if (kids.length === 2) return true;
  if (kids.length !== 3) return false;
  let regexUnits = 0;
  const plain = (n: SyntaxNode): boolean => {
    if (n.type.id === N.FieldParen) {
      const inner = parenInner(n);
      return inner !== null && plain(inner);
    }
    if (n.type.id === N.LogicalExpr) {
      const [l, op, r, extra] = significantChildren(n);
      return l !== undefined && r !== undefined && extra === undefined && op?.type.id === N.AndOp && plain(l) && plain(r);
    }
    const m = readMatcher(text, n);
    if (m === null || !isTagConditionField(m.field)) return false;
    try {
      parseFieldName(m.field);
      if (m.op === '=~' || m.op === '!~') {
        regexUnits += regexExpansion(m.value);
        if (regexUnits > MAX_REGEX_EXPANSION) return false;
        checkMatcherRegex(m.value);
      }
    } catch {
      return false;
    }
    return true;
  };
  return plain(kids[1] as SyntaxNode);
}

/**
 * Fields Tempo's tag APIs read a condition on *within its own scope*. Tempo's
 * block readers sort conditions by scope (span, resource, trace, event, link,
 * instrumentation: vparquet's categorizeConditions) and call a set holding a
 * condition they cannot place "mingled": an unscoped attribute (`.a`, span or
 * resource) and an intrinsic missing from their intrinsic column table
 * (`span:parentID`, `event:name`, `link:…`, `instrumentation:…` in releases
 * that lack them). FetchTagNames/FetchTagValues then take their old path,
 * which ignores every condition and lists every tag or value of the block:
 * the policy's condition included. So a tag lookup's `q` may hold only scoped
 * attributes and the intrinsics below, which every supported release places.
 */
const TAG_CONDITION_INTRINSICS: ReadonlySet<string> = new Set(['name', 'statusMessage', 'rootName', 'rootServiceName', 'span:name', 'span:statusMessage', 'trace:rootName', 'trace:rootService']);

/** Whether a condition on this canonical field keeps Tempo's tag APIs on their filtered path (TAG_CONDITION_INTRINSICS). */
export function isTagConditionField(field: string): boolean {
  const f = fieldNameOrNull(field);
  if (f === null) return false;
  return f.kind === 'attribute' ? f.scope !== null : TAG_CONDITION_INTRINSICS.has(f.name);
}

/**
 * Tags whose values Tempo's v2 tag-values API lists from the spans the
 * conditions select, for restricted subjects: Tempo adds the tag itself as a
 * condition (no operator), so an unscoped attribute (`.service.name`) or an
 * intrinsic Tempo cannot place makes the lookup "mingled" and unfiltered
 * (TAG_CONDITION_INTRINSICS). Scoped attributes and the intrinsics in Tempo's
 * intrinsic column table in every supported release.
 */
const TAG_VALUE_INTRINSICS: ReadonlySet<string> = new Set([
  'name',
  'status',
  'statusMessage',
  'kind',
  'duration',
  'rootName',
  'rootServiceName',
  'traceDuration',
  'span:name',
  'span:status',
  'span:statusMessage',
  'span:kind',
  'span:duration',
  'trace:rootName',
  'trace:rootService',
  'trace:duration',
]);

/** Whether the canonical field of a v2 tag-values path (tagField) may be asked by a restricted subject (TAG_VALUE_INTRINSICS). */
export function isFilteredTagValuesField(field: string): boolean {
  if (TAG_VALUE_INTRINSICS.has(field)) return true;
  const f = fieldNameOrNull(field);
  return f !== null && f.kind === 'attribute' && f.scope !== null;
}

/** Longer client filters are not kept in tag lookups (Grafana sends the few conditions typed so far). */
const PLAIN_FILTER_MAX_LENGTH = 2048;

/**
 * The canonical field a tag name of Tempo's v2 tag APIs denotes: Tempo reads
 * the name as TraceQL (`{` + name + `}`), so `resource."k8s.namespace.name"`
 * and ` resource.k8s.namespace.name` are `resource.k8s.namespace.name`. Null
 * when the name is not one field.
 */
export function tagField(name: string): string | null {
  if (!isWellFormedUnicode(name) || /[\u0000\ufeff]/.test(name)) return null;
  const text = `{${name}}`;
  const tree = parseTraceQLTree(text);
  if (tree === null) return null;
  const filter = soleSpansetFilter(tree);
  if (filter === null) return null;
  const kids = significantChildren(filter);
  if (kids.length !== 3) return null;
  return readField(text, kids[1] as SyntaxNode);
}
