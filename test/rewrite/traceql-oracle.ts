/**
 * An independent oracle for the TraceQL rewriter tests. It imports nothing
 * from src/rewrite, so a bug there cannot hide itself here:
 *
 *  - its own lexer, written from the rules of Tempo's lexer (Go text/scanner
 *    for whitespace, comments, strings and numbers; Tempo's attribute
 *    scanning with quoted parts; the greedy multi-character operators);
 *  - its own backtracking parser of TraceQL's spanset/pipeline/metrics
 *    structure (field expressions are not parsed: a filter is its braces),
 *    which reports every pipeline that does not start with a spanset
 *    expression;
 *  - a token-level check that a filter is enforced: its tokens are exactly
 *    C, or `(` X `)` `&&` C with the parenthesis balanced around X.
 */

export type TokKind =
  | 'op' // operators and punctuation; v = the operator text
  | 'str' // v = decoded value
  | 'num' // integers, floats, durations; v = source text
  | 'ident' // identifiers and keywords; v = text
  | 'field'; // attributes and scoped intrinsics; v = canonical name (scope.key, span:name, …)

export interface Tok {
  readonly k: TokKind;
  readonly v: string;
  readonly from: number;
  readonly to: number;
}

export class OracleError extends Error {}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

const OPS = [
  '&&', '||', '|', '=', '!=', '=~', '!~', '>', '>=', '<', '<=', '>>', '<<', '~', '!>', '!<', '!>>', '!<<', '&>', '&<', '&>>', '&<<', '&~',
  '+', '-', '*', '/', '%', '^', '!', '{', '}', '(', ')', ',', '.',
];
const OPSET = new Set(OPS);

function isSpace(c: string): boolean {
  // unicode.IsSpace
  return /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u.test(c);
}

function isAttrRune(c: string | undefined): boolean {
  if (c === undefined || isSpace(c)) return false;
  return !'{}()=~!<>&|^,'.includes(c);
}

const SCOPES = ['resource', 'span', 'event', 'link', 'instrumentation'];
const COLON_SCOPES = ['trace', 'span', 'event', 'link', 'instrumentation'];

/** Go string literal value (interpreted), or throws. */
function goUnquote(body: string): string {
  let out = '';
  const bytes: number[] = [];
  const flush = (): void => {
    if (bytes.length > 0) {
      out += Buffer.from(bytes).toString('utf8');
      bytes.length = 0;
    }
  };
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c === '\n') throw new OracleError('newline in string');
    if (c !== '\\') {
      flush();
      out += c;
      continue;
    }
    const e = body[++i];
    const simple: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', '"': '"' };
    if (e !== undefined && simple[e] !== undefined) {
      flush();
      out += simple[e];
    } else if (e === 'x' || e === 'u' || e === 'U') {
      const len = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      const hex = body.slice(i + 1, i + 1 + len);
      if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) throw new OracleError('bad hex escape');
      i += len;
      const v = parseInt(hex, 16);
      if (e === 'x') bytes.push(v);
      else {
        if (v > 0x10ffff || (v >= 0xd800 && v < 0xe000)) throw new OracleError('bad code point');
        flush();
        out += String.fromCodePoint(v);
      }
    } else if (e !== undefined && e >= '0' && e <= '7') {
      const oct = body.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(oct) || parseInt(oct, 8) > 255) throw new OracleError('bad octal escape');
      i += 2;
      bytes.push(parseInt(oct, 8));
    } else {
      throw new OracleError(`unknown escape \\${e}`);
    }
  }
  flush();
  return out;
}

const DURATION_RUNES = 'nsumhµdwy';

/** Tempo's lexer as a function from text to tokens. Throws OracleError where Tempo reports a lexical error. */
export function lex(text: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  const n = text.length;
  const at = (k: number): string | undefined => (k < n ? text[k] : undefined);
  let lastScope: string | null = null; // Tempo's currentScope for parent.
  while (i < n) {
    const c = text[i] as string;
    if (c === '\0' || c === '\ufeff') throw new OracleError('NUL or BOM');
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (c === '/' && at(i + 1) === '/') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && at(i + 1) === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) throw new OracleError('comment not terminated');
      i = end + 2;
      continue;
    }
    const start = i;
    if (c === '"') {
      let j = i + 1;
      while (j < n && text[j] !== '"') {
        if (text[j] === '\n') throw new OracleError('literal not terminated');
        if (text[j] === '\\') j++;
        j++;
      }
      if (j >= n) throw new OracleError('literal not terminated');
      toks.push({ k: 'str', v: goUnquote(text.slice(i + 1, j)), from: start, to: j + 1 });
      i = j + 1;
      continue;
    }
    if (c === "'") {
      // A Go character literal (exactly one character or escape, else a scanner error);
      // Tempo's lexer hands it on as an identifier whose text keeps the quotes.
      let j = i + 1;
      let chars = 0;
      while (j < n && text[j] !== "'") {
        if (text[j] === '\n') throw new OracleError('literal not terminated');
        if (text[j] === '\\') {
          const e = text[j + 1] ?? '';
          const len = /[abfnrtv\\']/.test(e) ? 1 : /[0-7]/.test(e) ? 3 : e === 'x' ? 3 : e === 'u' ? 5 : e === 'U' ? 9 : -1;
          const digits = e === 'x' || e === 'u' || e === 'U' ? text.slice(j + 2, j + 1 + len) : /[0-7]/.test(e) ? text.slice(j + 1, j + 4) : '';
          if (len < 0 || (/[0-7xuU]/.test(e) && !(e === 'x' || e === 'u' || e === 'U' ? /^[0-9a-fA-F]*$/ : /^[0-7]*$/).test(digits)) || digits.length !== (/[0-7]/.test(e) ? 3 : e === 'x' || e === 'u' || e === 'U' ? len - 1 : 0)) {
            throw new OracleError('invalid char escape');
          }
          j += 1 + len;
        } else {
          j += (text.codePointAt(j) ?? 0) > 0xffff ? 2 : 1;
        }
        chars++;
      }
      if (j >= n) throw new OracleError('literal not terminated');
      if (chars !== 1) throw new OracleError('invalid char literal');
      toks.push({ k: 'ident', v: text.slice(i, j + 1), from: start, to: j + 1 });
      i = j + 1;
      continue;
    }
    if (c === '`') {
      const j = text.indexOf('`', i + 1);
      if (j < 0) throw new OracleError('raw literal not terminated');
      toks.push({ k: 'str', v: text.slice(i + 1, j).replaceAll('\r', ''), from: start, to: j + 1 });
      i = j + 1;
      continue;
    }
    if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(at(i + 1) ?? ''))) {
      // Go number (decimal forms only; anything else Tempo rejects anyway).
      let j = i;
      while (j < n && /[0-9]/.test(text[j] as string)) j++;
      let isFloat = false;
      if (text[j] === '.') {
        isFloat = true;
        j++;
        while (j < n && /[0-9]/.test(text[j] as string)) j++;
      }
      if (/[eE]/.test(text[j] ?? '') && /[0-9]/.test(text[j + 1] === '+' || text[j + 1] === '-' ? (text[j + 2] ?? '') : (text[j + 1] ?? ''))) {
        isFloat = true;
        j += text[j + 1] === '+' || text[j + 1] === '-' ? 2 : 1;
        while (j < n && /[0-9]/.test(text[j] as string)) j++;
      }
      // Tempo: keep reading digits, '.', duration letters up to whitespace; a valid duration wins.
      let k = j;
      while (k < n && (/[0-9.]/.test(text[k] as string) || DURATION_RUNES.includes(text[k] as string))) k++;
      if (k > j && oracleDuration(text.slice(i, k))) {
        toks.push({ k: 'num', v: text.slice(i, k), from: start, to: k });
        i = k;
        continue;
      }
      const numText = text.slice(i, j);
      if (!isFloat && (/^0[0-9]*[89]/.test(numText) || BigInt(numText) > 9223372036854775807n)) throw new OracleError('bad integer');
      if (isFloat && !Number.isFinite(Number(numText))) throw new OracleError('bad float');
      toks.push({ k: 'num', v: numText, from: start, to: j });
      i = j;
      continue;
    }
    if (/[\p{L}_]/u.test(c)) {
      let j = i + 1;
      while (j < n && /[\p{L}\p{Nd}_]/u.test(text[j] as string)) j++;
      const word = text.slice(i, j);
      const next = at(j);
      if (next === '.' && (SCOPES.includes(word) || word === 'parent')) {
        lastScope = word;
        i = readAttribute(text, j + 1, word, toks, start);
        continue;
      }
      if (next === ':' && COLON_SCOPES.includes(word)) {
        // Scoped intrinsic: the name is the next identifier (whitespace and comments may come between).
        lastScope = `${word}:`;
        toks.push({ k: 'op', v: `${word}:`, from: start, to: j + 1 });
        i = j + 1;
        continue;
      }
      toks.push({ k: 'ident', v: word, from: start, to: j });
      i = j;
      continue;
    }
    if (c === '.') {
      i = readAttribute(text, i + 1, '', toks, start, lastScope === 'parent');
      continue;
    }
    // Operators: extend while the longer text is still an operator.
    let op = c;
    while (i + op.length < n && OPSET.has(op + (text[i + op.length] as string))) op += text[i + op.length] as string;
    if (!OPSET.has(op)) throw new OracleError(`unexpected ${JSON.stringify(c)}`);
    toks.push({ k: 'op', v: op, from: start, to: i + op.length });
    i += op.length;
  }
  // Fold `scope:` + identifier into one field token.
  const out: Tok[] = [];
  for (let t = 0; t < toks.length; t++) {
    const tok = toks[t] as Tok;
    if (tok.k === 'op' && tok.v.endsWith(':')) {
      const name = toks[t + 1];
      if (name === undefined || name.k !== 'ident') throw new OracleError('scope without intrinsic');
      out.push({ k: 'field', v: tok.v + name.v, from: tok.from, to: name.to });
      t++;
      continue;
    }
    out.push(tok);
  }
  return out;
}

/** Reads an attribute name starting at `i` (after the scope's dot). Returns the new position. */
function readAttribute(text: string, i: number, scope: string, toks: Tok[], start: number, parentDotQuirk = false): number {
  let scopeName = scope;
  let j = i;
  if (!isAttrRune(text[j])) throw new OracleError('attribute without name');
  if (scope === 'parent' || parentDotQuirk) {
    for (const s of ['span.', 'resource.']) {
      if (text.startsWith(s, j)) {
        if (parentDotQuirk) throw new OracleError('Tempo lexes .span. after parent. as a scope token');
        scopeName = `parent.${s.slice(0, -1)}`;
        j += s.length;
        if (!isAttrRune(text[j])) throw new OracleError('attribute without name');
        break;
      }
    }
  }
  let key = '';
  while (j < text.length && isAttrRune(text[j])) {
    const ch = text[j] as string;
    if (ch !== '"') {
      key += ch;
      j++;
      continue;
    }
    j++;
    for (;;) {
      if (j >= text.length) throw new OracleError('unterminated quoted attribute');
      const q = text[j] as string;
      if (q === '"') {
        j++;
        break;
      }
      if (q === '\\') {
        const e = text[j + 1];
        if (e !== '"' && e !== '\\') throw new OracleError('invalid escape in quoted attribute');
        key += e;
        j += 2;
        continue;
      }
      key += q;
      j++;
    }
  }
  toks.push({ k: 'field', v: scopeName === '' ? `.${key}` : `${scopeName}.${key}`, from: start, to: j });
  return j;
}

const PROM_DURATION = /^(?:[0-9]+y)?(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?(?:[0-9]+ms)?$/;
const GO_DURATION = /^(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+$/;

function oracleDuration(s: string): boolean {
  return (s !== '' && PROM_DURATION.test(s)) || GO_DURATION.test(s);
}

// ---------------------------------------------------------------------------
// Structure parser (backtracking, memoised): pipelines and their heads
// ---------------------------------------------------------------------------

interface Res {
  readonly end: number;
  /** Some pipeline in this derivation starts with something other than a spanset expression. */
  readonly badHead: boolean;
}

const SPANSET_OPS = new Set(['&&', '||', '>', '<', '>>', '<<', '~', '!>', '!<', '!>>', '!<<', '!~', '&>', '&<', '&>>', '&<<', '&~']);
const CMP_OPS = new Set(['=', '!=', '<', '<=', '>', '>=']);
const ARITH_OPS = new Set(['+', '-', '*', '/', '%', '^']);
const AGGS = new Set(['count', 'avg', 'max', 'min', 'sum']);
const METRICS = new Set(['rate', 'count_over_time', 'min_over_time', 'max_over_time', 'avg_over_time', 'sum_over_time', 'quantile_over_time', 'histogram_over_time', 'compare']);

class Parser {
  readonly t: readonly Tok[];
  readonly memo = new Map<string, Res[]>();
  constructor(t: readonly Tok[]) {
    this.t = t;
  }
  is(p: number, v: string): boolean {
    const tok = this.t[p];
    return tok !== undefined && (tok.k === 'op' || tok.k === 'ident') && tok.v === v;
  }
  kind(p: number): TokKind | undefined {
    return this.t[p]?.k;
  }
  /** Index after the `)` matching the `(` at p, or -1. */
  balanced(p: number, open = '(', close = ')'): number {
    if (!this.is(p, open)) return -1;
    let d = 0;
    for (let q = p; q < this.t.length; q++) {
      if (this.is(q, open)) d++;
      else if (this.is(q, close)) {
        d--;
        if (d === 0) return q + 1;
      }
    }
    return -1;
  }
  m(rule: string, p: number, f: () => Res[]): Res[] {
    const key = `${rule}@${p}`;
    const hit = this.memo.get(key);
    if (hit !== undefined) return hit;
    this.memo.set(key, []); // no left recursion below; guards cycles anyway
    const seen = new Set<string>();
    const out = f().filter((r) => {
      const k = `${r.end}:${r.badHead}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    this.memo.set(key, out);
    return out;
  }
  /** `left (op right)*` over results. */
  /** `atom (op rest)*`; `rest` defaults to `atom`. */
  chain(p: number, atom: (q: number) => Res[], ops: ReadonlySet<string>, rest: (q: number) => Res[] = atom): Res[] {
    const out: Res[] = [];
    let frontier = atom(p);
    while (frontier.length > 0) {
      out.push(...frontier);
      const next: Res[] = [];
      for (const r of frontier) {
        const op = this.t[r.end];
        if (op !== undefined && op.k === 'op' && ops.has(op.v)) {
          for (const r2 of rest(r.end + 1)) next.push({ end: r2.end, badHead: r.badHead || r2.badHead });
        }
      }
      frontier = next;
    }
    return out;
  }
  filter(p: number): Res[] {
    const e = this.balanced(p, '{', '}');
    return e < 0 ? [] : [{ end: e, badHead: false }];
  }
  spansetExpr(p: number): Res[] {
    return this.m('se', p, () =>
      this.chain(
        p,
        (q) => {
          const out = this.filter(q);
          if (this.is(q, '(')) for (const r of this.spansetExpr(q + 1)) if (this.is(r.end, ')')) out.push({ end: r.end + 1, badHead: r.badHead });
          return out;
        },
        SPANSET_OPS,
      ),
    );
  }
  aggregate(p: number): Res[] {
    const tok = this.t[p];
    if (tok === undefined || tok.k !== 'ident' || !AGGS.has(tok.v)) return [];
    const e = this.balanced(p + 1);
    return e < 0 ? [] : [{ end: e, badHead: false }];
  }
  scalarExpr(p: number): Res[] {
    return this.m('sx', p, () =>
      this.chain(
        p,
        (q) => {
          const out = this.aggregate(q);
          if (this.kind(q) === 'num') out.push({ end: q + 1, badHead: false });
          if (this.is(q, '-') && this.kind(q + 1) === 'num') out.push({ end: q + 2, badHead: false });
          if (this.is(q, '(')) for (const r of this.scalarExpr(q + 1)) if (this.is(r.end, ')')) out.push({ end: r.end + 1, badHead: false });
          return out;
        },
        ARITH_OPS,
      ),
    );
  }
  scalarFilter(p: number): Res[] {
    const out: Res[] = [];
    for (const l of this.scalarExpr(p)) {
      const op = this.t[l.end];
      if (op !== undefined && op.k === 'op' && CMP_OPS.has(op.v)) for (const r of this.scalarExpr(l.end + 1)) out.push({ end: r.end, badHead: false });
    }
    return out;
  }
  element(p: number, head: boolean): Res[] {
    const out: Res[] = [...this.spansetExpr(p)];
    const other: Res[] = [...this.scalarFilter(p)];
    if (this.is(p, 'by') || this.is(p, 'select') || (!head && this.is(p, 'coalesce'))) {
      const e = this.balanced(p + 1);
      if (e >= 0) other.push({ end: e, badHead: false });
    }
    for (const r of other) out.push({ end: r.end, badHead: head });
    return out;
  }
  pipeline(p: number): Res[] {
    return this.m('p', p, () => {
      const out: Res[] = [];
      let frontier = this.element(p, true);
      while (frontier.length > 0) {
        out.push(...frontier);
        const next: Res[] = [];
        for (const r of frontier) {
          if (this.is(r.end, '|')) for (const r2 of this.element(r.end + 1, false)) next.push({ end: r2.end, badHead: r.badHead || r2.badHead });
        }
        frontier = next;
      }
      return out;
    });
  }
  pipelineExpr(p: number): Res[] {
    return this.m('pe', p, () =>
      this.chain(
        p,
        (q) => {
          const out: Res[] = [];
          if (this.is(q, '(')) {
            for (const r of this.pipeline(q + 1)) if (this.is(r.end, ')')) out.push({ end: r.end + 1, badHead: r.badHead });
            for (const r of this.pipelineExpr(q + 1)) if (this.is(r.end, ')')) out.push({ end: r.end + 1, badHead: r.badHead });
          }
          return out;
        },
        SPANSET_OPS,
      ),
    );
  }
  scalarPipelineExpr(p: number): Res[] {
    return this.m('spx', p, () =>
      this.chain(
        p,
        (q) => {
          const out: Res[] = [];
          if (this.is(q, '(')) {
            for (const r of this.pipeline(q + 1)) {
              if (!this.is(r.end, '|')) continue;
              for (const a of this.aggregate(r.end + 1)) if (this.is(a.end, ')')) out.push({ end: a.end + 1, badHead: r.badHead });
            }
            for (const r of this.scalarPipelineExpr(q + 1)) if (this.is(r.end, ')')) out.push({ end: r.end + 1, badHead: r.badHead });
          }
          return out;
        },
        ARITH_OPS,
      ),
    );
  }
  metricsFn(p: number): Res[] {
    const tok = this.t[p];
    if (tok === undefined || tok.k !== 'ident' || !METRICS.has(tok.v)) return [];
    const e = this.balanced(p + 1);
    if (e < 0) return [];
    const out: Res[] = [{ end: e, badHead: false }];
    if (this.is(e, 'by')) {
      const e2 = this.balanced(e + 1);
      if (e2 >= 0) out.push({ end: e2, badHead: false });
    }
    return out;
  }
  secondStages(p: number): Res[] {
    const out: Res[] = [{ end: p, badHead: false }];
    let q = p;
    for (;;) {
      if (this.is(q, '|') && (this.is(q + 1, 'topk') || this.is(q + 1, 'bottomk'))) {
        const e = this.balanced(q + 2);
        if (e < 0) break;
        q = e;
      } else if (this.t[q]?.k === 'op' && CMP_OPS.has(this.t[q]?.v ?? '')) {
        q += 1;
        if (this.is(q, '-')) q++;
        if (this.kind(q) !== 'num') break;
        q++;
      } else break;
      out.push({ end: q, badHead: false });
    }
    return out;
  }
  metricsQuery(p: number): Res[] {
    const out: Res[] = [];
    for (const r of this.pipeline(p)) {
      if (!this.is(r.end, '|')) continue;
      for (const f of this.metricsFn(r.end + 1)) for (const s of this.secondStages(f.end)) out.push({ end: s.end, badHead: r.badHead });
    }
    return out;
  }
  metricsMath(p: number): Res[] {
    const wrapped = (q: number): Res[] => {
      const out: Res[] = [];
      if (this.is(q, '(')) {
        for (const r of this.metricsQuery(q + 1)) if (this.is(r.end, ')')) out.push({ end: r.end + 1, badHead: r.badHead });
        for (const r of this.metricsMath(q + 1)) if (this.is(r.end, ')')) out.push({ end: r.end + 1, badHead: r.badHead });
      }
      return out;
    };
    // Right of an operator, a plain number (no duration) rescales every point (Tempo's metrics math).
    const operand = (q: number): Res[] => {
      const t = this.t[q];
      const num = t !== undefined && t.k === 'num' && /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(t.v);
      return num ? [{ end: q + 1, badHead: false }, ...wrapped(q)] : wrapped(q);
    };
    return this.m('mm', p, () => this.chain(p, wrapped, new Set(['+', '-', '*', '/']), operand));
  }
  root(): Res[] {
    const cands: Res[] = [...this.pipeline(0), ...this.pipelineExpr(0), ...this.metricsQuery(0)];
    for (const r of this.scalarPipelineExpr(0)) {
      const op = this.t[r.end];
      if (op === undefined || op.k !== 'op' || !CMP_OPS.has(op.v)) continue;
      for (const r2 of this.scalarPipelineExpr(r.end + 1)) cands.push({ end: r2.end, badHead: r.badHead || r2.badHead });
      if (this.kind(r.end + 1) === 'num' || this.kind(r.end + 1) === 'str' || this.kind(r.end + 1) === 'ident') cands.push({ end: r.end + 2, badHead: r.badHead });
    }
    for (const r of this.metricsMath(0)) for (const s of this.secondStages(r.end)) cands.push({ end: s.end, badHead: r.badHead });
    // Hints.
    const out: Res[] = [];
    for (const c of cands) {
      let e = c.end;
      while (this.is(e, 'with')) {
        const h = this.balanced(e + 1);
        if (h < 0) break;
        e = h;
      }
      if (e === this.t.length) out.push({ end: e, badHead: c.badHead });
    }
    return out;
  }
}

export interface OracleFilter {
  /** Token index of `{`. */
  readonly open: number;
  /** Token index of `}`. */
  readonly close: number;
}

export interface OracleResult {
  readonly tokens: readonly Tok[];
  readonly filters: readonly OracleFilter[];
  /** Some complete parse has a pipeline that does not start with a spanset expression. */
  readonly badHead: boolean;
}

/** Lex and find the filters (`{` … `}` token pairs); throws OracleError when Tempo's lexer would fail. */
export function oracleFilters(text: string): { tokens: Tok[]; filters: OracleFilter[] } {
  const tokens = lex(text);
  const filters: OracleFilter[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as Tok;
    if (t.k === 'op' && t.v === '{') {
      let j = i + 1;
      while (j < tokens.length && !((tokens[j] as Tok).k === 'op' && (tokens[j] as Tok).v === '}')) {
        if ((tokens[j] as Tok).k === 'op' && (tokens[j] as Tok).v === '{') throw new OracleError('nested brace');
        j++;
      }
      if (j >= tokens.length) throw new OracleError('unclosed brace');
      filters.push({ open: i, close: j });
      i = j;
    }
  }
  return { tokens, filters };
}

/** Lex and parse; throws OracleError when the oracle cannot read the query. */
export function oracleAnalyze(text: string): OracleResult {
  const { tokens, filters } = oracleFilters(text);
  const results = new Parser(tokens).root();
  if (results.length === 0) throw new OracleError('no complete parse');
  return { tokens, filters, badHead: results.some((r) => r.badHead) };
}

// ---------------------------------------------------------------------------
// Enforcement check
// ---------------------------------------------------------------------------

function sameTokens(a: readonly Tok[], b: readonly Tok[]): boolean {
  return a.length === b.length && a.every((t, i) => t.k === (b[i] as Tok).k && t.v === (b[i] as Tok).v);
}

/**
 * Is the filter enforced? `clause` is the token list of what must follow
 * `(X) &&`, `alone` the token list of an enforced empty filter.
 */
export function filterEnforced(r: OracleResult, f: OracleFilter, clause: readonly Tok[], alone: readonly Tok[]): boolean {
  const inner = r.tokens.slice(f.open + 1, f.close);
  if (sameTokens(inner, alone)) return true;
  if (inner.length < clause.length + 3) return false;
  const tail = inner.slice(inner.length - clause.length);
  const amp = inner[inner.length - clause.length - 1] as Tok;
  if (!sameTokens(tail, clause) || amp.k !== 'op' || amp.v !== '&&') return false;
  // inner[0] must be '(' and its matching ')' must be right before '&&'.
  const first = inner[0] as Tok;
  if (first.k !== 'op' || first.v !== '(') return false;
  let d = 0;
  for (let i = 0; i < inner.length - clause.length - 1; i++) {
    const t = inner[i] as Tok;
    if (t.k === 'op' && t.v === '(') d++;
    if (t.k === 'op' && t.v === ')') {
      d--;
      if (d === 0) return i === inner.length - clause.length - 2;
    }
  }
  return false;
}

/** The text between `{` and `}` of each filter, for messages. */
export function filterText(text: string, r: OracleResult, f: OracleFilter): string {
  return text.slice((r.tokens[f.open] as Tok).from, (r.tokens[f.close] as Tok).to);
}
