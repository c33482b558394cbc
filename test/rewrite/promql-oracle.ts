/**
 * An independent oracle for PromQL rewriting tests: its own string decoder
 * and its own walk of the Lezer tree. It deliberately imports nothing from
 * src/rewrite so that a bug there cannot hide itself here.
 */
import { parser } from '@prometheus-io/lezer-promql';
import type { SyntaxNode, Tree } from '@lezer/common';

export interface OracleMatcher {
  name: string;
  op: string;
  value: string;
}

export interface OracleSelector {
  from: number;
  to: number;
  /** The metric name written before the braces, if any. */
  metric: string | null;
  /** Position right after the identifier (no braces), after the last matcher, or after '{'. */
  insertAt: number;
  hasBraces: boolean;
  hasItems: boolean;
  matchers: OracleMatcher[];
  /** Source ranges of the matcher items inside the braces, in order. */
  items: [number, number][];
  /** End of the identifier, or -1. */
  identTo: number;
  /** Position of '{', or -1. */
  braceFrom: number;
}

const strict = parser.configure({ strict: true });

/** Parse strictly; throws on any syntax error or error node. */
export function oracleParse(text: string): Tree {
  const tree = strict.parse(text);
  tree.iterate({
    enter(n) {
      if (n.type.isError) throw new Error(`error node at ${n.from}`);
    },
  });
  return tree;
}

/** Go strconv-style unquote for "…", '…' (Prometheus) and `…`; bytes decoded as UTF-8 (replacement on invalid). */
export function oracleUnquote(lit: string): string {
  const q = lit[0];
  if (lit.length < 2 || lit[lit.length - 1] !== q) throw new Error(`unterminated ${lit}`);
  const body = lit.slice(1, -1);
  if (q === '`') return body;
  const bytes: number[] = [];
  const enc = new TextEncoder();
  for (let i = 0; i < body.length; ) {
    const ch = body[i] as string;
    if (ch !== '\\') {
      const cp = body.codePointAt(i) as number;
      const s = String.fromCodePoint(cp);
      bytes.push(...enc.encode(s));
      i += s.length;
      continue;
    }
    const e = body[i + 1] as string;
    i += 2;
    const simple: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92, '"': 34, "'": 39 };
    if (e in simple) {
      bytes.push(simple[e] as number);
    } else if (e === 'x') {
      bytes.push(parseInt(body.slice(i, i + 2), 16));
      i += 2;
    } else if (e === 'u' || e === 'U') {
      const n = e === 'u' ? 4 : 8;
      bytes.push(...enc.encode(String.fromCodePoint(parseInt(body.slice(i, i + n), 16))));
      i += n;
    } else if (/[0-7]/.test(e)) {
      bytes.push(parseInt(e + body.slice(i, i + 2), 8));
      i += 2;
    } else {
      throw new Error(`bad escape \\${e}`);
    }
  }
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(Uint8Array.from(bytes));
}

function kids(n: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  const c = n.cursor();
  if (c.firstChild()) {
    do out.push(c.node);
    while (c.nextSibling());
  }
  return out;
}

/** Every VectorSelector in the text, with its matchers (metric name as __name__="…"). */
export function oracleSelectors(text: string): OracleSelector[] {
  const tree = oracleParse(text);
  const out: OracleSelector[] = [];
  tree.iterate({
    enter(ref) {
      if (ref.name !== 'VectorSelector') return undefined;
      const n = ref.node;
      const sel: OracleSelector = {
        from: n.from,
        to: n.to,
        metric: null,
        insertAt: n.to,
        hasBraces: false,
        hasItems: false,
        matchers: [],
        items: [],
        identTo: -1,
        braceFrom: -1,
      };
      for (const part of kids(n)) {
        if (part.name === 'Identifier') {
          sel.metric = text.slice(part.from, part.to);
          sel.matchers.push({ name: '__name__', op: '=', value: sel.metric });
          sel.insertAt = part.to;
          sel.identTo = part.to;
        } else if (part.name === 'LabelMatchers') {
          sel.hasBraces = true;
          sel.braceFrom = part.from;
          sel.insertAt = part.from + 1;
          for (const m of kids(part)) {
            if (m.name === 'LineComment') continue;
            sel.hasItems = true;
            sel.insertAt = m.to;
            sel.items.push([m.from, m.to]);
            const ks = kids(m);
            const get = (name: string) => ks.find((k) => k.name === name);
            const lit = (k: SyntaxNode | undefined) => (k === undefined ? '' : oracleUnquote(text.slice(k.from, k.to)));
            if (m.name === 'UnquotedLabelMatcher') {
              const ln = get('LabelName') as SyntaxNode;
              const op = get('MatchOp') as SyntaxNode;
              sel.matchers.push({ name: text.slice(ln.from, ln.to), op: text.slice(op.from, op.to), value: lit(get('StringLiteral')) });
            } else if (m.name === 'QuotedLabelMatcher') {
              const qn = get('QuotedLabelName') as SyntaxNode;
              const op = get('MatchOp') as SyntaxNode;
              sel.matchers.push({ name: lit(kids(qn).find((k) => k.name === 'StringLiteral')), op: text.slice(op.from, op.to), value: lit(get('StringLiteral')) });
            } else if (m.name === 'QuotedLabelName') {
              sel.matchers.push({ name: '__name__', op: '=', value: lit(get('StringLiteral')) });
            }
          }
        }
      }
      out.push(sel);
      return false;
    },
  });
  return out;
}

export function carries(sel: OracleSelector, m: OracleMatcher): boolean {
  return sel.matchers.some((x) => x.name === m.name && x.op === m.op && x.value === m.value);
}
