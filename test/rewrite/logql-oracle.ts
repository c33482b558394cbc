/**
 * Test oracles for LogQL, written independently of src/rewrite/logql*.ts:
 *
 * - `oracleSelectors(q)`: a lexical scan for stream selectors. In LogQL `{`
 *   and `}` only ever delimit stream selectors (outside strings, comments and
 *   ranges), so finding them needs no grammar. Comments are read as Loki's
 *   scanner reads them (`#`, and Go's `//` and `/* … *\/`). Values are decoded
 *   with this file's own Go-string decoder.
 * - `oracleParse(q)`: the official Lezer grammar, strict, checked for error
 *   nodes, with the selectors found by a tree walk compared to the scan.
 */
import { Selector, parser } from '@grafana/lezer-logql';
import type { Matcher } from '../../src/rewrite/matcher.ts';

export interface OracleMatcher {
  readonly name: string;
  readonly op: string;
  /** null when the literal's bytes are not valid UTF-8. */
  readonly value: string | null;
  readonly from: number;
  readonly to: number;
}

export interface OracleSelector {
  readonly from: number;
  readonly to: number;
  readonly matchers: readonly OracleMatcher[];
}

// ignoreBOM: Go keeps a leading U+FEFF in a string's value; TextDecoder would drop it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const enc = new TextEncoder();

/** Decode a Go string literal ("…" or `…`). Throws on anything malformed. */
export function goUnquote(lit: string): string | null {
  if (lit.startsWith('`')) {
    if (!lit.endsWith('`') || lit.length < 2) throw new Error(`bad raw literal ${lit}`);
    return lit.slice(1, -1);
  }
  if (!lit.startsWith('"') || !lit.endsWith('"') || lit.length < 2) throw new Error(`bad literal ${lit}`);
  const body = lit.slice(1, -1);
  const bytes: number[] = [];
  const simple: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92, '"': 34 };
  for (let i = 0; i < body.length; ) {
    const ch = body[i] as string;
    if (ch !== '\\') {
      const cp = body.codePointAt(i) as number;
      const s = String.fromCodePoint(cp);
      bytes.push(...enc.encode(s));
      i += s.length;
      continue;
    }
    const e = body[i + 1] ?? '';
    if (e in simple) {
      bytes.push(simple[e] as number);
      i += 2;
    } else if (e === 'x') {
      bytes.push(parseInt(body.slice(i + 2, i + 4), 16));
      i += 4;
    } else if (e === 'u' || e === 'U') {
      const n = e === 'u' ? 4 : 8;
      bytes.push(...enc.encode(String.fromCodePoint(parseInt(body.slice(i + 2, i + 2 + n), 16))));
      i += 2 + n;
    } else if (/[0-7]/.test(e)) {
      bytes.push(parseInt(body.slice(i + 1, i + 4), 8));
      i += 4;
    } else {
      throw new Error(`bad escape in ${lit}`);
    }
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    return null;
  }
}

function skipString(q: string, i: number): number {
  const quote = q[i];
  let j = i + 1;
  while (j < q.length && q[j] !== quote) j += quote === '"' && q[j] === '\\' ? 2 : 1;
  if (j >= q.length) throw new Error(`unterminated string at ${i}`);
  return j + 1;
}

// Whitespace and comments (`#`, Go's `//` and `/* */`) may sit between any two tokens.
const T = '(?:[ \\t\\r\\n]|#[^\\n]*(?:\\n|$)|//[^\\n]*(?:\\n|$)|/\\*[\\s\\S]*?\\*/)*';
const ITEM = new RegExp(`^${T}([A-Za-z_][A-Za-z0-9_]*)${T}(=~|!~|!=|=)${T}("(?:[^"\\\\\\n]|\\\\.)*"|\`[^\`]*\`)${T}`);

/** Every `{…}` stream selector, by a lexical scan. */
export function oracleSelectors(q: string): OracleSelector[] {
  const out: OracleSelector[] = [];
  let i = 0;
  while (i < q.length) {
    const c = q[i] as string;
    if (c === '#' || (c === '/' && q[i + 1] === '/')) {
      // LogQL comments, and Go line comments (Loki's scanner skips those too)
      const nl = q.indexOf('\n', i);
      i = nl < 0 ? q.length : nl;
    } else if (c === '/' && q[i + 1] === '*') {
      const end = q.indexOf('*/', i + 2);
      if (end < 0) throw new Error('unterminated block comment');
      i = end + 2;
    } else if (c === '"' || c === '`') {
      i = skipString(q, i);
    } else if (c === '[') {
      i = q.indexOf(']', i) + 1;
      if (i === 0) throw new Error('unterminated range');
    } else if (c === '}') {
      throw new Error(`stray } at ${i}`);
    } else if (c === '{') {
      const from = i;
      const matchers: OracleMatcher[] = [];
      let j = i + 1;
      for (;;) {
        const m = ITEM.exec(q.slice(j));
        if (m === null) throw new Error(`cannot read selector at ${from}: ${JSON.stringify(q.slice(from, from + 60))}`);
        const lit = m[3] as string;
        const litFrom = j + m[0].indexOf(lit, (m[1] as string).length);
        matchers.push({ name: m[1] as string, op: m[2] as string, value: goUnquote(lit), from: j + m[0].indexOf(m[1] as string), to: litFrom + lit.length });
        j += m[0].length;
        if (q[j] === ',') {
          j++;
          continue;
        }
        if (q[j] === '}') break;
        throw new Error(`unexpected ${JSON.stringify(q[j])} in selector at ${j}`);
      }
      out.push({ from, to: j + 1, matchers });
      i = j + 1;
    } else {
      i++;
    }
  }
  return out;
}

const strict = parser.configure({ strict: true });

/** Strict parse with the official grammar; returns the selector start offsets found by a tree walk. */
export function oracleParse(q: string): number[] {
  const tree = strict.parse(q);
  const starts: number[] = [];
  tree.iterate({
    enter(n) {
      if (n.type.isError) throw new Error(`error node at ${n.from}`);
      if (n.type.id === Selector) starts.push(n.from);
    },
  });
  const scanned = oracleSelectors(q).map((s) => s.from);
  if (JSON.stringify(scanned) !== JSON.stringify(starts)) throw new Error(`tree and scan disagree: ${JSON.stringify(starts)} vs ${JSON.stringify(scanned)}`);
  return starts;
}

export function carries(sel: OracleSelector, m: Matcher): boolean {
  return sel.matchers.some((x) => x.name === m.name && x.op === m.op && x.value === m.value);
}
