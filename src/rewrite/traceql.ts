/**
 * The TraceQL rewriter: every spanset filter in a query gets the policy's
 * matchers ANDed, by inserting text at parse-tree positions so that
 * everything else the user wrote survives byte for byte.
 *
 *   { A }             →  { (A) && C }
 *   { }  /  {}        →  { C }
 *   count() > 2       →  { C } | count() > 2        (pipelines that do not
 *   by(.a) | { .b }   →  { C } | by(.a) | { .b }     start with a spanset
 *   select(.a)        →  { C } | select(.a)          expression read every span)
 *
 * C is `m1 && m2 …` for a one-group policy, and for a policy with several
 * groups (DNF) `(g1a && g1b) || (g2a)` — written `{ (A) && ((g1a && g1b) ||
 * (g2a)) }` after an expression, because TraceQL gives `&&` and `||` the
 * same precedence. TraceQL has `||` inside filters, so DNF is always exact.
 * Matchers are spelt `field op "value"` (traceql-escape.ts), joined by ` && `.
 *
 * Idempotence: a filter whose expression is already exactly `C`, or exactly
 * `( … ) && C` (one parenthesised expression followed by the conjuncts of C,
 * compared by field, operator and unescaped value), is left as it is; so
 * rewriting a rewritten query changes nothing.
 *
 * Pipeline: limits → analysis with the project's grammar (traceql-syntax.ts)
 * → insertions → verification of a fresh parse of the output by an
 * independent walk (every filter enforced exactly as above, every pipeline
 * starts with a spanset expression) → cache.
 */
import type { SyntaxNode, Tree } from '@lezer/common';
import { QueryError } from '../errors.ts';
import { RewriteCache, registerRewriteCache } from './cache.ts';
import type { Matcher, SelectorPolicy } from './matcher.ts';
import { memoizedPreparation, normaliseGroups, policyErrorFor } from './policy-prep.ts';
import type { QueryRewriter, RewriteLimits } from './rewriter.ts';
import { DEFAULT_LIMITS } from './rewriter.ts';
import { checkMatcher, formatField, quoteTraceQLString } from './traceql-escape.ts';
import type { FilterSite, ReadMatcher, TraceQLAnalysis } from './traceql-syntax.ts';
import { N, analyzeTraceQL, parseTraceQLTree, prevSignificant, readMatcher, significantChildren } from './traceql-syntax.ts';

export { formatTraceQLMatcher } from './traceql-escape.ts';

const LANG = 'traceql';

// ---------------------------------------------------------------------------
// Policy preparation
// ---------------------------------------------------------------------------

interface PreparedGroup {
  readonly matchers: readonly Matcher[];
  /** `field op "value"` per matcher. */
  readonly texts: readonly string[];
}

interface PreparedPolicy {
  readonly groups: readonly PreparedGroup[];
  /** Unambiguous canonical key, for caches. */
  readonly key: string;
  /** What follows `(A) && ` in a non-empty filter. */
  readonly clause: string;
  /** The whole expression of an empty filter. */
  readonly alone: string;
}


const policyError = policyErrorFor(LANG);

const preparePolicy: (policy: SelectorPolicy) => PreparedPolicy = memoizedPreparation((policy) => buildPolicy(policy), policyError);

/**
 * A policy regex as the gateway writes it into queries: `^(?s:re)$`. Tempo 2.7
 * and later anchor TraceQL regexes themselves, with the same `^(?s:…)$`
 * (Prometheus' `labels.NewFastRegexMatcher`), where the extra anchors change
 * nothing; earlier Tempo matched them unanchored, so `=~ "team-a-.*"` also
 * matched `evil-team-a-x`. Written anchored, a policy means the same on both.
 * The value compiles on its own and inside a group (checkMatcherRegex), so it
 * cannot close the group or swallow its end.
 */
export function enforcedRegex(value: string): string {
  return `^(?s:${value})$`;
}

const enforcedMatcher = (m: Matcher): Matcher => (m.op === '=~' || m.op === '!~' ? { name: m.name, op: m.op, value: enforcedRegex(m.value) } : m);

function buildPolicy(policy: SelectorPolicy): PreparedPolicy {
  // Validated, de-duplicated, redundant groups dropped (policy-prep.ts); each
  // matcher is rendered `field op "value"` once here, regexes anchored (enforcedRegex).
  const kept = normaliseGroups(policy, checkMatcher, (c) => c.matcher, policyError).map((g) => {
    const matchers = g.items.map((c) => enforcedMatcher(c.matcher));
    return {
      matchers,
      texts: g.items.map(({ field }, i) => {
        const m = matchers[i] as Matcher;
        return `${formatField(field)} ${m.op} ${quoteTraceQLString(m.value)}`;
      }),
      keys: g.keys,
    };
  });
  const out: PreparedGroup[] = kept.map((g) => ({ matchers: g.matchers, texts: g.texts }));
  const key = JSON.stringify(kept.map((g) => [...g.keys])); // order-preserving: the rendered clause follows it
  const first = out[0] as PreparedGroup;
  let clause: string;
  let alone: string;
  if (out.length === 1) {
    clause = first.texts.join(' && ');
    alone = clause;
  } else {
    alone = out.map((g) => `(${g.texts.join(' && ')})`).join(' || ');
    clause = `(${alone})`;
  }
  return { groups: out, key, clause, alone };
}

// ---------------------------------------------------------------------------
// Is a filter already enforced? (on the analysis of the input)
// ---------------------------------------------------------------------------

function sameMatcher(r: ReadMatcher, m: Matcher): boolean {
  return r.field === m.name && r.op === m.op && r.value === m.value;
}

function sameGroups(read: readonly (readonly ReadMatcher[])[] | null, groups: readonly PreparedGroup[]): boolean {
  if (read === null || read.length !== groups.length) return false;
  return read.every((rg, i) => {
    const g = groups[i] as PreparedGroup;
    return rg.length === g.matchers.length && rg.every((r, j) => sameMatcher(r, g.matchers[j] as Matcher));
  });
}

function isEnforced(f: FilterSite, p: PreparedPolicy): boolean {
  if (f.expr === null) return false;
  const cs = f.conjuncts;
  if (p.groups.length > 1) {
    if (cs.length === 1 && sameGroups(f.orGroups, p.groups)) return true; // { C }
    const [head, last] = cs;
    return cs.length === 2 && head?.kind === 'paren' && last?.kind === 'paren' && sameGroups(last.groups, p.groups); // { (A) && (C) }
  }
  const ms = (p.groups[0] as PreparedGroup).matchers;
  const offset = cs.length - ms.length;
  if (offset !== 0 && offset !== 1) return false;
  if (offset === 1 && cs[0]?.kind !== 'paren') return false;
  for (let i = 0; i < ms.length; i++) {
    const c = cs[offset + i];
    if (c === undefined || c.kind !== 'matcher' || !sameMatcher(c.matcher, ms[i] as Matcher)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Rewriting
// ---------------------------------------------------------------------------

interface Insertion {
  readonly at: number;
  readonly text: string;
}

function rewriteAnalysis(text: string, a: TraceQLAnalysis, p: PreparedPolicy): string {
  const ins: Insertion[] = [];
  for (const f of a.filters) {
    if (isEnforced(f, p)) continue;
    if (f.expr === null) {
      // `{}` → `{ C }`, `{ }` → `{ C }`; whatever was between the braces stays.
      const open = f.from + 1;
      ins.push({ at: open, text: text.charCodeAt(open) === 125 ? ` ${p.alone} ` : ` ${p.alone}` });
    } else {
      ins.push({ at: f.expr.from, text: '(' });
      ins.push({ at: f.expr.to, text: `) && ${p.clause}` });
    }
  }
  for (const h of a.heads) ins.push({ at: h, text: `{ ${p.alone} } | ` });
  if (ins.length === 0) return text;
  ins.sort((x, y) => x.at - y.at);
  let out = '';
  let pos = 0;
  for (const i of ins) {
    out += text.slice(pos, i.at) + i.text;
    pos = i.at;
  }
  return out + text.slice(pos);
}

// ---------------------------------------------------------------------------
// Verification (independent of the analysis above: fresh parse, SyntaxNode API)
// ---------------------------------------------------------------------------

function flatten(n: SyntaxNode, opType: number): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  const stack: SyntaxNode[] = [n];
  while (stack.length > 0) {
    const cur = stack.pop() as SyntaxNode;
    const kids = significantChildren(cur);
    if (cur.type.id === N.LogicalExpr && kids.length === 3 && kids[1]?.type.id === opType) {
      stack.push(kids[2] as SyntaxNode, kids[0] as SyntaxNode);
    } else {
      out.push(cur);
    }
  }
  return out;
}

/**
 * `flatten` treats `a && (b && c)` written without parentheses the same as
 * left-nested chains; TraceQL only produces left-nested chains for `&&`
 * (left-associative), and explicit parentheses are FieldParen nodes, so the
 * two agree on every tree the grammar builds.
 */
function matchesGroup(text: string, n: SyntaxNode, g: PreparedGroup): boolean {
  const items = flatten(n, N.AndOp);
  if (items.length !== g.matchers.length) return false;
  return items.every((it, i) => {
    const r = readMatcher(text, it);
    return r !== null && sameMatcher(r, g.matchers[i] as Matcher);
  });
}

function matchesDnf(text: string, n: SyntaxNode, p: PreparedPolicy): boolean {
  const alts = flatten(n, N.OrOp);
  if (alts.length !== p.groups.length) return false;
  return alts.every((alt, i) => {
    const kids = significantChildren(alt);
    return alt.type.id === N.FieldParen && kids.length === 3 && matchesGroup(text, kids[1] as SyntaxNode, p.groups[i] as PreparedGroup);
  });
}

function filterEnforced(text: string, filter: SyntaxNode, p: PreparedPolicy): boolean {
  const kids = significantChildren(filter);
  if (kids.length !== 3) return false;
  const expr = kids[1] as SyntaxNode;
  const conj = flatten(expr, N.AndOp);
  if (p.groups.length > 1) {
    if (conj.length === 1) return matchesDnf(text, expr, p);
    if (conj.length !== 2 || conj[0]?.type.id !== N.FieldParen) return false;
    const last = conj[1] as SyntaxNode;
    const inner = significantChildren(last);
    return last.type.id === N.FieldParen && inner.length === 3 && matchesDnf(text, inner[1] as SyntaxNode, p);
  }
  const g = p.groups[0] as PreparedGroup;
  const extra = conj.length - g.matchers.length;
  if (extra !== 0 && extra !== 1) return false;
  if (extra === 1 && conj[0]?.type.id !== N.FieldParen) return false;
  return conj.slice(extra).every((c, i) => {
    const r = readMatcher(text, c);
    return r !== null && sameMatcher(r, g.matchers[i] as Matcher);
  });
}

/**
 * Longest TraceQL text, in UTF-8 bytes, the gateway sends to Tempo. Tempo's
 * lexer (pkg/traceql/lexer.go) looks ahead on by-value copies of Go's
 * text/scanner, and the copies share its input reader: a look-ahead that
 * crosses the scanner's 1024-byte buffer pulls the next chunk into the copy,
 * and Tempo's own scanner never sees those bytes (grafana/tempo#3513). Tempo
 * would then parse another query than the one verified here, and a crafted
 * query can put the policy's clause in the skipped bytes. A text that fits in
 * the first buffer is read in one piece, so nothing can be skipped. (Tempo
 * itself fails on most longer queries for the same reason.)
 */
export const TEMPO_MAX_QUERY_BYTES = 1024;

function checkTempoLength(text: string, what: string): void {
  // UTF-16 length ≤ 1024 bounds the UTF-8 length by 3 × 1024: measure only past the cheap bound.
  if (text.length <= TEMPO_MAX_QUERY_BYTES / 3) return;
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > TEMPO_MAX_QUERY_BYTES) {
    throw new QueryError(LANG, `${what} is ${bytes} bytes; Tempo misreads TraceQL longer than ${TEMPO_MAX_QUERY_BYTES} bytes (grafana/tempo#3513), so longer queries are refused`, 'query_too_large');
  }
}

function verifyPrepared(text: string, p: PreparedPolicy, reuse: Tree | null, expectedFilters: number | null): void {
  const fail = (why: string): QueryError => new QueryError(LANG, `rewritten query failed verification: ${why}`, 'rewrite_verification_failed');
  checkTempoLength(text, 'the query with the policy\'s matchers');
  const tree = reuse ?? parseTraceQLTree(text);
  if (tree === null) throw fail('it does not parse');
  let problem: string | null = null;
  let filters = 0;
  tree.iterate({
    enter(n) {
      if (problem !== null) return false;
      if (n.type.isError) {
        problem = `syntax error at char ${n.from + 1}`;
        return false;
      }
      const id = n.type.id;
      if (id === N.SpansetFilter) {
        filters++;
        if (!filterEnforced(text, n.node, p)) {
          problem = `spanset filter at char ${n.from + 1} (${JSON.stringify(text.slice(n.from, Math.min(n.to, n.from + 80)))}) lacks the enforced matchers`;
        }
        return false;
      }
      if (id === N.ScalarFilter || id === N.GroupOperation || id === N.SelectOperation) {
        const prev = prevSignificant(n.node);
        if (prev === null || prev.type.id !== N.Pipe) {
          problem = `pipeline at char ${n.from + 1} does not start with a spanset filter`;
          return false;
        }
      }
      return undefined;
    },
  });
  if (problem !== null) throw fail(problem);
  if (filters === 0) throw fail('no spanset filter');
  if (expectedFilters !== null && filters !== expectedFilters) throw fail(`expected ${expectedFilters} spanset filters, found ${filters}`);
}

/**
 * Check that `query` parses and that every spanset filter carries the
 * policy exactly in the enforced form (`C` or `( … ) && C`) and every
 * pipeline starts with a spanset expression. Throws QueryError
 * ('rewrite_verification_failed') otherwise.
 */
export function verifyTraceQL(query: string, policy: SelectorPolicy): void {
  verifyPrepared(query, preparePolicy(policy), null, null);
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

const cache = registerRewriteCache('traceql', new RewriteCache(4096));

/** For tests and benchmarks. */
export function clearTraceQLCache(): void {
  cache.clear();
}

/**
 * Rewrite a TraceQL query (search or metrics) so that every spanset filter
 * is constrained by the policy. Throws QueryError: bad_query (parse errors,
 * empty), query_too_large, rewrite_unsupported (parent attributes),
 * policy_error (malformed policy), rewrite_verification_failed (a bug; fail
 * closed).
 */
export function rewriteTraceQL(query: string, policy: SelectorPolicy, limits: RewriteLimits = DEFAULT_LIMITS): string {
  if (typeof query !== 'string') throw new QueryError(LANG, 'query must be a string', 'bad_query');
  const p = preparePolicy(policy);
  if (query.length > limits.maxQueryLength) {
    throw new QueryError(LANG, `query is too long: more than ${limits.maxQueryLength} bytes`, 'query_too_large');
  }
  // Rewriting only inserts text: a query already too long for Tempo is refused before parsing.
  checkTempoLength(query, 'the query');
  return cache.through(p.key, limits, query, () => {
    const a = analyzeTraceQL(query, { limits });
    const out = rewriteAnalysis(query, a, p);
    verifyPrepared(out, p, out === query ? a.tree : null, a.filters.length + a.heads.length);
    return out;
  });
}

export const traceqlRewriter: QueryRewriter = {
  language: 'traceql',
  rewrite: rewriteTraceQL,
};

// ---------------------------------------------------------------------------
// Matcher text (CLI --matcher)
// ---------------------------------------------------------------------------

/** Split at top-level commas (outside "…" and `…`). */
function splitCommas(text: string): { part: string; offset: number }[] {
  const out: { part: string; offset: number }[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      i++;
      while (i < text.length && text.charCodeAt(i) !== 34) {
        if (text.charCodeAt(i) === 92) i++;
        i++;
      }
    } else if (c === 96) {
      i++;
      while (i < text.length && text.charCodeAt(i) !== 96) i++;
    } else if (c === 44) {
      out.push({ part: text.slice(start, i), offset: start });
      start = i + 1;
    }
  }
  out.push({ part: text.slice(start), offset: start });
  return out;
}

/**
 * Parse matcher text in TraceQL syntax (the CLI's `--matcher`):
 * `resource.k8s.namespace.name="a"`, several separated by `,` or `&&`
 * (`span.http.method="GET" && resource.service.name=~"api|web"`). Names come
 * back in canonical form (`span."my key"` → `span.my key`).
 */
export function parseTraceQLMatchers(text: string): Matcher[] {
  const prefix = 'invalid matcher expression: ';
  if (typeof text !== 'string' || text.trim() === '') throw new QueryError(LANG, 'empty matcher expression', 'bad_query');
  const out: Matcher[] = [];
  for (const { part } of splitCommas(text)) {
    if (part.trim() === '') throw new QueryError(LANG, `${prefix}empty matcher between commas`, 'bad_query');
    const wrapped = `{ ${part} }`;
    const a = analyzeTraceQL(wrapped, { limits: DEFAULT_LIMITS, prefix, posOffset: -2 });
    const f = a.filters[0];
    if (a.filters.length !== 1 || f === undefined || f.from !== 0 || f.to !== wrapped.length || a.heads.length !== 0 || f.expr === null) {
      throw new QueryError(LANG, `${prefix}expected matchers like resource.k8s.namespace.name="a"`, 'bad_query');
    }
    for (const c of f.conjuncts) {
      if (c.kind !== 'matcher') {
        throw new QueryError(
          LANG,
          `${prefix}${JSON.stringify(wrapped.slice(c.from, c.to))} is not a matcher (field op "string", op one of = != =~ !~)`,
          'bad_query',
        );
      }
      const m: Matcher = { name: c.matcher.field, op: c.matcher.op, value: c.matcher.value };
      try {
        checkMatcher(m);
      } catch (e) {
        if (e instanceof QueryError) throw new QueryError(LANG, `${prefix}${e.message}`, 'bad_query');
        throw e;
      }
      out.push(m);
    }
  }
  return out;
}
