/**
 * Verification of a rewritten PromQL query, independent of the analysis walk
 * (SyntaxNode API, a fresh parse of the output): it parses cleanly and every
 * vector selector carries all matchers of one policy group.
 */
import type { SyntaxNode, Tree } from '@lezer/common';
import { FunctionCallBody, Identifier, Info, LabelMatchers, LabelName, LineComment, MatchOp, QuotedLabelMatcher, QuotedLabelName, StringLiteral, UnquotedLabelMatcher, VectorSelector } from '@prometheus-io/lezer-promql';
import { QueryError } from '../errors.ts';
import { LiteralError, unquoteStringLiteral } from './lezer.ts';
import type { SelectorPolicy } from './matcher.ts';
import { CR_IN_COMMENT, LANG, checkChains, exprArgs } from './promql-analysis.ts';
import { preparePolicy, type PreparedPolicy } from './promql-policy.ts';
import { parseWithStandIns } from './promql-respell.ts';

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

export function verifyPrepared(text: string, policy: PreparedPolicy, reuse: Tree | null): void {
  const fail = (why: string): QueryError =>
    new QueryError(LANG, `rewritten query failed verification: ${why}`, 'rewrite_verification_failed');
  let tree = reuse;
  if (tree === null) {
    // The policy's matchers lengthen selectors and several groups add `or`s: over the parser's limits, a client error.
    checkChains(text, '', "the query with the policy's matchers");
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
