// The parts of a query that do not depend on how topk/bottomk/limitk break
// ties (generative/oracle.ts, classify): the query with every such call
// keeping none of its series and keeping all of them, and each call's vector
// argument on its own.
import type { Tree } from '@lezer/common';
import { parseRespelled } from '../../../src/rewrite/promql-respell.ts';

/**
 * The query's tree as the gateway reads it: Prometheus spellings lezer-promql
 * lags on (`5.`, `0X1f`, `STEP()`, newer functions) are respelled with the same
 * length, so the tree's positions slice the query as written (seed 2175:
 * `topk((5. ^ 2), …)` did not parse, and its ties went unrecognised). null
 * when it does not parse; a strict parse, so the tree has no error nodes.
 */
function treeOf(q: string): Tree | null {
  const r = parseRespelled(q).parsed;
  return r.ok ? r.tree : null;
}

const TIE_OPS = new Set(['Topk', 'Bottomk', 'LimitK']);

/** More series than any oracle data set holds: `topk(ALL, x)` keeps every series of x. */
export const KEEP_ALL = '100000';

export interface TieFree {
  /** The query with the k of every topk/bottomk/limitk replaced by 0 (each keeps nothing). */
  readonly none: string;
  /** The same with KEEP_ALL (each keeps every series it is given). */
  readonly all: string;
  /** The vector argument of every topk/bottomk/limitk call, as written. */
  readonly args: readonly string[];
}

/** null when the query holds no topk/bottomk/limitk, or does not parse (treeOf). */
export function tieFree(q: string): TieFree | null {
  const tree = treeOf(q);
  if (tree === null) return null;
  let broken = false;
  const ks: { from: number; to: number }[] = [];
  const args: string[] = [];
  tree.iterate({
    enter(n) {
      if (n.name !== 'AggregateExpr') return undefined;
      const op = n.node.getChild('AggregateOp')?.firstChild ?? null;
      if (op === null || !TIE_OPS.has(op.name)) return undefined;
      const body = n.node.getChild('FunctionCallBody');
      const exprs: { from: number; to: number }[] = [];
      for (let c = body?.firstChild ?? null; c !== null; c = c.nextSibling) if (c.type.is('Expr')) exprs.push(c);
      const [k, arg] = exprs;
      if (exprs.length !== 2 || k === undefined || arg === undefined) {
        broken = true;
        return false;
      }
      ks.push({ from: k.from, to: k.to });
      args.push(q.slice(arg.from, arg.to));
      return undefined;
    },
  });
  if (broken || ks.length === 0) return null;
  // A k inside another call's k (`topk(scalar(topk(1, x)), y)`) goes with the outer one.
  const outer = ks.filter((a) => !ks.some((b) => b !== a && b.from <= a.from && a.to <= b.to));
  const withK = (v: string): string => {
    let out = '';
    let pos = 0;
    for (const k of outer.sort((a, b) => a.from - b.from)) {
      out += `${q.slice(pos, k.from)}${v}`;
      pos = k.to;
    }
    return out + q.slice(pos);
  };
  return { none: withK('0'), all: withK(KEEP_ALL), args };
}

/**
 * Every query whose answer does not depend on how topk/bottomk/limitk break ties and which must be
 * the same on both sides before a difference in `q` is put down to ties: `q` with every k 0 and with
 * every k KEEP_ALL, and each call's argument, where an argument that itself holds such a call
 * (`topk(1, bottomk(3, x))`) is replaced by the same queries of its own. null as tieFree.
 */
export function tieIndependentQueries(q: string): string[] | null {
  const parts = tieFree(q);
  if (parts === null) return null;
  const out = new Set<string>([parts.all, parts.none]);
  const pending = [...parts.args];
  for (let x = pending.pop(); x !== undefined; x = pending.pop()) {
    const inner = tieFree(x);
    if (inner === null) out.add(x);
    else {
      out.add(inner.all).add(inner.none);
      pending.push(...inner.args);
    }
  }
  return [...out];
}

/** Every vector selector of `q` as written (`x{a="b"}` of `rate(x{a="b"}[5m] offset 1m)`), each once; null when it does not parse (treeOf). */
export function vectorSelectors(q: string): string[] | null {
  const out = new Set<string>();
  const tree = treeOf(q);
  if (tree === null) return null;
  tree.iterate({
    enter(n) {
      if (n.name === 'VectorSelector') out.add(q.slice(n.from, n.to));
    },
  });
  return [...out];
}
