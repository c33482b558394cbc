/**
 * The PromQL rewriter: every vector selector in a query gets the policy's
 * matchers ANDed, by splicing text at Lezer node positions so that everything
 * else the user wrote survives byte for byte.
 *
 * Pipeline (see docs in ARCHITECTURE.md, "Rewriting semantics"):
 *   limits → lexical pre-scan (nesting, chains: PROMQL_CHAINS) → strict parse (@prometheus-io/lezer-promql) →
 *   one tree walk (depth, string literals, comments, selectors) → Prometheus'
 *   non-empty matcher rule on what the user wrote → splice → verification by
 *   an independent walk of a fresh parse of the output.
 *
 * Policies are DNF (`SelectorPolicy`). One group is spliced everywhere. More
 * than one group is rewritten to an `or` of the per-group forms where that is
 * exact, and rejected (`rewrite_unsupported`) where it is not; see
 * `rewriteDnf`.
 *
 * Modules: promql-analysis.ts (limits, parse, walk, Prometheus' rules on the
 * input), promql-respell.ts (spellings lezer-promql lags on), promql-policy.ts
 * (the prepared policy), promql-splice.ts (one group, absent()),
 * promql-dnf.ts (several groups), promql-verify.ts (the independent check of
 * the output); this file is the public API and the rewrite cache.
 */
import type { SyntaxNode } from '@lezer/common';
import { MatrixSelector, ParenExpr, VectorSelector } from '@prometheus-io/lezer-promql';
import { QueryError } from '../errors.ts';
import { RewriteCache, registerRewriteCache, unionOfSelectors } from './cache.ts';
import type { Matcher, SelectorPolicy } from './matcher.ts';
import { LANG, MODIFIERS, analyze, checkInfoDataLabels, checkLength, checkNonEmptySelectors, exprArgs, firstNonComment, matchesOnlyEmpty, type AnalyzeOptions } from './promql-analysis.ts';
import { rewriteDnf } from './promql-dnf.ts';
import { preparePolicy } from './promql-policy.ts';
import { renderSelector, rewriteSingle, satisfiesSomeGroup } from './promql-splice.ts';
import { verifyPrepared } from './promql-verify.ts';
import { RegexBudget } from './regex-budget.ts';
import type { QueryRewriter, RewriteLimits } from './rewriter.ts';
import { DEFAULT_LIMITS } from './rewriter.ts';

export { formatMatcher } from './promql-escape.ts';
export { verifyPromQL } from './promql-verify.ts';

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
 * policy. Throws QueryError: bad_query (parse errors, empty, a label name with
 * the reserved prefix __lbac_), query_too_large,
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
