// A seeded, typed, grammar-based PromQL generator. Every node has a type
// (iv = instant vector, rv = range vector, s = scalar, str = string) and is
// built only where that type is valid, so most outputs parse and evaluate.
// Trees are kept (not just strings) so a failing query can be shrunk by
// replacing a node with a same-typed descendant.
import { HISTOGRAM_LE, NAMESPACES, SEED_TARGETS } from '../../fixtures/seed.ts';

export type T = 'iv' | 'rv' | 's' | 'str';
export interface N {
  t: T;
  f: (k: readonly string[]) => string;
  k: N[];
  /** A construct tag, for coverage counts. */
  tag: string;
}

export const render = (n: N): string => n.f(n.k.map(render));

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    // mulberry32
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<X>(a: readonly X[]): X {
    return a[this.int(a.length)] as X;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  subset<X>(a: readonly X[], max = 3): X[] {
    const n = 1 + this.int(max);
    const out = new Set<X>();
    for (let i = 0; i < n; i++) out.add(this.pick(a));
    return [...out];
  }
}

const q = (s: string): string => JSON.stringify(s);
/** PromQL's other string forms: single quotes (Go escapes) and backticks (raw); only for values that need no escape. */
const PLAIN_STRING = /^[^"'`\\]*$/;
const leaf = (t: T, s: string, tag: string): N => ({ t, f: () => s, k: [], tag });
const node = (t: T, tag: string, k: N[], f: (k: readonly string[]) => string): N => ({ t, f, k, tag });

const METRICS = ['up', 'http_requests_total', 'node_memory_bytes', 'http_request_duration_seconds_bucket', 'http_request_duration_seconds_count', 'http_request_duration_seconds_sum'];
const COUNTERS = ['http_requests_total', 'http_request_duration_seconds_bucket', 'http_request_duration_seconds_count', 'http_request_duration_seconds_sum'];
const NAME_REGEXES = ['up|node_memory_bytes', 'http_request_duration_seconds_.*', 'http_.*', '.+', 'up', 'node_.*|up', 'nonexistent_.*'];
/** Labels of the seed, plus ones no series has (`pod`) or only some have (`le`, `code`, `job`). */
const LABELS = ['namespace', 'job', 'instance', 'code', 'method', 'le', 'pod'];
const INSTANCES = SEED_TARGETS.map((t) => t.instance);
const EQ_VALUES: Record<string, readonly string[]> = {
  namespace: [...NAMESPACES, 'nope', ''],
  job: ['web', 'api', 'worker', 'postgres', 'ingress', ''],
  instance: [INSTANCES[0] as string, INSTANCES[3] as string, INSTANCES[7] as string, INSTANCES[INSTANCES.length - 1] as string, ''],
  code: ['200', '404', '500'],
  method: ['GET', 'POST'],
  le: [...HISTOGRAM_LE],
  pod: ['p', ''],
};
const RE_VALUES: Record<string, readonly string[]> = {
  namespace: ['team-a-.*', 'team-.*', 'platform|team-b-api', '.*', '.+', '', 'team-a-frontend|platform', 'team-b.*', 'plat.*', '(?i)PLATFORM'],
  job: ['api|web', 'a.*', '.*', '', 'api', 'ingress|postgres'],
  instance: ['api-.*', '.*platform.*', '.+', 'web-0.*'],
  code: ['5..', '2..|4..', '.*'],
  method: ['GET|POST', 'P.*'],
  le: ['0.*', '\\\\+Inf', '1.0|0.5'],
  pod: ['.*', '.+', ''],
};
/** Matchers that do not match the empty string (a name-less selector needs one). */
const NON_EMPTY = ['job="api"', 'namespace=~".+"', 'namespace="platform"', 'job=~"api|web"', 'namespace!=""', '__name__=~"up|node_memory_bytes"', 'namespace=~"team-b.*"', 'instance=~".+"'];

export interface GenOptions {
  evalTime: number;
  maxDepth: number;
}

export class Gen {
  private r: Rng;
  private o: GenOptions;
  constructor(r: Rng, o: GenOptions) {
    this.r = r;
    this.o = o;
  }

  matcher(): string {
    const r = this.r;
    const l = r.chance(0.45) ? 'namespace' : r.pick(LABELS);
    const op = r.pick(['=', '!=', '=~', '!~']);
    const vals = op === '=' || op === '!=' ? (EQ_VALUES[l] as string[]) : (RE_VALUES[l] as string[]);
    return `${this.labelName(l)}${op}${this.str(r.pick(vals))}`;
  }

  /** A string literal: mostly double quotes, sometimes single quotes or backticks (same value). */
  str(v: string): string {
    const r = this.r;
    if (!PLAIN_STRING.test(v) || !r.chance(0.15)) return q(v);
    const c = r.next();
    if (c < 0.35) return `'${v}'`;
    if (c < 0.7) return `\`${v}\``;
    if (v === '') return q(v);
    // One character escaped (\xHH, \uHHHH or octal \OOO): the same value to Prometheus.
    const i = r.int(v.length);
    const code = v.charCodeAt(i);
    const esc = r.pick([`\\x${code.toString(16).padStart(2, '0')}`, `\\u${code.toString(16).padStart(4, '0')}`, `\\${code.toString(8).padStart(3, '0')}`]);
    return `"${v.slice(0, i)}${esc}${v.slice(i + 1)}"`;
  }

  /** A label name, sometimes in its quoted (UTF-8) form `"namespace"`, which means the same label. */
  labelName(l: string): string {
    return !/^[A-Za-z_][A-Za-z0-9_]*$/.test(l) || this.r.chance(0.1) ? q(l) : l;
  }

  /**
   * Blank space between tokens: mostly one space, sometimes a newline, a tab, CRLF or a comment running to
   * the end of its line (the gateway's parser and Prometheus' lexer must agree on where tokens are).
   */
  ws(): string {
    const r = this.r;
    if (!r.chance(0.05)) return ' ';
    return r.pick(['\n', '\t', '\r\n', ' # c\n', '  #\n\t', '\n# "q" {x}\n']);
  }

  /** A keyword (by, offset, and, bool, sum, …) in another case now and then: Prometheus reads keywords case-insensitively. */
  kw(k: string): string {
    const r = this.r;
    if (!r.chance(0.06)) return k;
    return r.chance(0.5) ? k.toUpperCase() : k.charAt(0).toUpperCase() + k.slice(1);
  }

  /** A vector selector (no modifiers). */
  selector(counter = false): N {
    const r = this.r;
    const ms: string[] = [];
    const nMatchers = r.pick([0, 0, 0, 1, 1, 1, 2]);
    for (let i = 0; i < nMatchers; i++) ms.push(this.matcher());
    const metric = counter ? r.pick(COUNTERS) : r.pick(METRICS);
    const style = r.next();
    let tag = 'sel';
    let text: string;
    if (style < 0.68) {
      text = ms.length === 0 && r.chance(0.5) ? metric : `${metric}{${ms.join(', ')}}`;
    } else if (style < 0.78) {
      tag = 'sel:__name__=';
      text = `{${[`__name__=${q(metric)}`, ...ms].join(', ')}}`;
    } else if (style < 0.86) {
      tag = 'sel:__name__=~';
      text = `{${[`${this.labelName('__name__')}=~${q(counter ? 'http_.*' : r.pick(NAME_REGEXES))}`, ...ms].join(', ')}}`;
    } else if (style < 0.92) {
      // The metric name as a bare string inside the braces (Prometheus 3 UTF-8 syntax), anywhere in the list.
      tag = 'sel:quoted-name';
      const all = [...ms];
      all.splice(r.int(all.length + 1), 0, q(metric));
      text = `{${all.join(', ')}}`;
    } else {
      tag = 'sel:nameless';
      text = `{${[r.pick(NON_EMPTY), ...ms].join(', ')}}`;
    }
    if (r.chance(0.02)) {
      tag = 'sel:empty-only';
      text = r.pick(['{namespace=""}', '{namespace=~".*"}', '{namespace!="platform"}', '{job=~""}']);
    }
    return leaf('iv', text, tag);
  }

  modifier(): string {
    const r = this.r;
    if (!r.chance(0.15)) return '';
    const off = this.kw('offset');
    if (r.chance(0.3)) {
      // Duration expressions (Prometheus 3.16 parses them without a flag), numbers as seconds, @ then offset.
      return r.pick([
        ` ${off} (1m*2)`, ` ${off} -(1m+1m)`, ` ${off} -step()`, ` ${off} 60`, ` ${off} 1h30m`, ` ${off} (10m-step())`,
        ` @ start() ${off} 5m`, ` @ end() ${off} -5m`, ` @ ${this.o.evalTime - 600}.5`, ` ${off} 5m @ ${this.o.evalTime - 300}`, ` @ ${this.o.evalTime - 1200} ${off} -max_of(1m, step())`,
      ]);
    }
    return r.pick([` ${off} 5m`, ` ${off} 30m`, ` ${off} -5m`, ' @ end()', ' @ start()', ` @ ${this.o.evalTime - 600}`, ` @ ${this.o.evalTime - 900} ${off} 1m`]);
  }

  dur(): string {
    const r = this.r;
    if (r.chance(0.15)) return r.pick(['5m+1m', '2*5m', '(10m-5m)', '300', '1h30m', 'max_of(1m, step())', 'min_of(10m, 2*step()+1m)', 'step()+1m', '10m-step()']);
    return r.pick(['1m', '2m', '5m', '10m', '30m', '1h']);
  }

  /**
   * `anchored` / `smoothed` after a selector or range (Prometheus 3.16). On a range only with some functions
   * (`fits`: anchored with rate/increase/delta/changes/resets, smoothed with rate/increase/delta); rarely
   * elsewhere, where both sides refuse it.
   */
  extended(fits: readonly string[] = []): string {
    const r = this.r;
    if (fits.length > 0 && r.chance(0.2)) return ` ${this.kw(r.pick(fits))}`;
    return r.chance(0.01) ? r.pick([' anchored', ' smoothed']) : '';
  }

  rv(d: number, fits: readonly string[] = []): N {
    const r = this.r;
    if (d <= 0 || r.chance(0.7)) {
      const s = this.selector(r.chance(0.6));
      const mod = this.modifier();
      const dur = this.dur();
      const ext = this.extended(fits);
      // anchored/smoothed before or after offset/@: Prometheus takes both orders.
      const [m1, m2] = r.chance(0.5) ? [mod, ext] : [ext, mod];
      return node('rv', `range-sel${ext === '' ? '' : `:${ext.trim().toLowerCase()}`}`, [s], ([x]) => `${x}[${dur}]${m1}${m2}`);
    }
    const inner = this.iv(d - 1);
    const rng = r.chance(0.15) ? r.pick(['(5m+5m):1m', '10m:max_of(1m, step())', '2*15m:5m', '10m:(30s+30s)']) : r.pick(['10m:1m', '5m:30s', '30m:5m', '10m:', '1h:10m']);
    const mod = this.modifier();
    if (r.chance(0.12)) {
      // A subquery over a range function of a subquery: two nested step grids.
      const f = r.pick(['max_over_time', 'rate', 'avg_over_time', 'last_over_time']);
      return node('rv', 'subquery:nested', [inner], ([x]) => `(${f}((${x})[${rng}]${mod}))[30m:5m]`);
    }
    return node('rv', 'subquery', [inner], ([x]) => `(${x})[${rng}]${mod}`);
  }

  scalar(d: number): N {
    const r = this.r;
    if (d <= 0 || r.chance(0.6)) {
      // Hex, exponent and leading-dot literals and the special values, besides plain decimals.
      if (r.chance(0.12)) return leaf('s', r.pick(['0x10', '0X1f', '.5', '1e-3', '2E2', 'Inf', '-Inf', 'NaN', '0x1_0', '5.']), 'num:lit');
      return leaf('s', r.pick(['0', '1', '0.5', '2', '100', '-1', '3', '0.9', '1e3']), 'num');
    }
    const c = r.next();
    if (c < 0.45) return node('s', 'scalar()', [this.iv(d - 1)], ([x]) => `scalar(${x})`);
    if (c < 0.6) return leaf('s', 'time()', 'time()');
    if (c < 0.72) {
      const op = r.pick(['+', '-', '*', '/', '%', '^']);
      return node('s', 'scalar-binop', [this.scalar(d - 1), this.scalar(d - 1)], ([a, b]) => `(${a} ${op} ${b})`);
    }
    if (c < 0.8) {
      // Scalar comparisons need bool.
      const op = r.pick(['==', '!=', '>', '<', '>=', '<=']);
      const bool = this.kw('bool');
      return node('s', 'scalar-cmp', [this.scalar(d - 1), this.scalar(d - 1)], ([a, b]) => `(${a} ${op} ${bool} ${b})`);
    }
    return node('s', 'scalar-neg', [this.scalar(d - 1)], ([a]) => `-(${a})`);
  }

  grouping(): string {
    const r = this.r;
    const c = r.next();
    if (c < 0.3) return '';
    const ls = r.chance(0.05) ? '' : r.subset(['namespace', 'job', 'instance', 'code', 'le', 'pod', 'method', '__name__', 'k8s.namespace'], 3).map((l) => this.labelName(l)).join(', ');
    return c < 0.7 ? ` ${this.kw('by')} (${ls})` : ` ${this.kw('without')} (${ls})`;
  }

  agg(d: number): N {
    const r = this.r;
    const g = this.grouping();
    const prefix = r.chance(0.6);
    const w = this.ws();
    const wrap = (op: string, param: string | null) => (k: readonly string[]): string => {
      const args = param === null ? k[0] : `${param},${w}${k[0]}`;
      return prefix ? `${op}${g} (${args})` : `${op} (${args})${g}`;
    };
    const c = r.next();
    if (c < 0.55) {
      const op = r.pick(['sum', 'avg', 'min', 'max', 'count', 'group', 'stddev', 'stdvar']);
      const gk = g.trim().toLowerCase();
      return node('iv', `agg:${op}${gk.startsWith('by') ? ':by' : gk.startsWith('without') ? ':without' : ''}`, [this.iv(d - 1)], wrap(this.kw(op), null));
    }
    const op = r.pick(['topk', 'bottomk', 'limitk', 'limit_ratio', 'quantile', 'count_values']);
    const param =
      op === 'topk' || op === 'bottomk' || op === 'limitk'
        ? r.pick(['1', '2', '3'])
        : op === 'limit_ratio'
          ? r.pick(['0.5', '-0.5', '1', '0.3'])
          : op === 'quantile'
            ? r.pick(['0.5', '0.9', '0'])
            : q(r.pick(['value', 'namespace', 'job', 'v', 'instance', '__name__']));
    if (op !== 'count_values' && r.chance(0.1)) {
      // The parameter as a scalar expression over a selector (its selector needs the policy too).
      const sc = this.scalar(d - 1);
      return node('iv', `agg:${op}:expr-param`, [this.iv(d - 1), sc], ([x, p]) => (prefix ? `${op}${g} (${p}, ${x})` : `${op} (${p}, ${x})${g}`));
    }
    return node('iv', `agg:${op}`, [this.iv(d - 1)], wrap(op, param));
  }

  matching(setOp: boolean, labelsOnly = false): string {
    const r = this.r;
    const c = r.next();
    if (c < 0.4) return '';
    const ls = r.chance(0.15) ? '' : r.subset(['namespace', 'job', 'instance', 'code', 'method', 'le', 'pod', 'k8s.namespace'], 3).map((l) => this.labelName(l)).join(', ');
    const base = c < 0.75 ? `${this.kw('on')}(${ls})` : `${this.kw('ignoring')}(${ls})`;
    if (setOp || labelsOnly || !r.chance(0.35)) return ` ${base}`;
    const side = this.kw(r.pick(['group_left', 'group_right']));
    const extra = r.chance(0.4) ? '' : `(${r.subset(['namespace', 'job', 'instance', 'pod', 'code', 'k8s.namespace'], 2).map((l) => this.labelName(l)).join(', ')})`;
    return ` ${base} ${side}${extra}`;
  }

  /**
   * Binary-operator fill modifiers (`fill(v)`, `fill_left(v)`, `fill_right(v)`; Prometheus 3.16 with
   * --enable-feature=promql-binop-fill-modifiers, which the env sets): a missing side is filled instead of
   * dropping the match, so series of one side only reach the output.
   */
  fill(): string {
    const r = this.r;
    if (!r.chance(0.12)) return '';
    return ` ${r.pick(['fill(0)', 'fill(1)', 'fill_left(0)', 'fill_right(-1)', 'fill_left(0) fill_right(1)', 'fill(NaN)'])}`;
  }

  binary(d: number): N {
    const r = this.r;
    const c = r.next();
    if (c < 0.3) {
      const op = r.pick(['and', 'or', 'unless']);
      const m = this.matching(true);
      const opText = this.kw(op);
      const [w1, w2] = [this.ws(), this.ws()];
      return node('iv', `set:${op}${m === '' ? '' : m.toLowerCase().includes('on(') ? ':on' : ':ignoring'}`, [this.iv(d - 1), this.iv(d - 1)], ([a, b]) => `(${a})${w1}${opText}${m}${w2}(${b})`);
    }
    const cmp = c < 0.6;
    const op = cmp ? r.pick(['==', '!=', '>', '<', '>=', '<=']) : r.pick(['+', '-', '*', '/', '%', '^', 'atan2']);
    const bool = cmp && r.chance(0.4) ? ` ${this.kw('bool')}` : '';
    const shape = r.next();
    if (shape < 0.45) {
      const m = this.matching(false);
      const fill = this.fill();
      // A comment between the operator and its right operand now and then (it runs to the end of the line).
      const sep = this.ws();
      const tag = `bin:${cmp ? 'cmp' : 'arith'}${bool ? ':bool' : ''}${m.toLowerCase().includes('group_') ? ':group' : m === '' ? '' : ':match'}${fill === '' ? '' : ':fill'}`;
      return node('iv', tag, [this.iv(d - 1), this.iv(d - 1)], ([a, b]) => `(${a}) ${op}${bool}${m}${fill}${sep}(${b})`);
    }
    const sc = this.scalar(d - 1);
    const v = this.iv(d - 1);
    const tag = `bin:${cmp ? 'cmp' : 'arith'}${bool ? ':bool' : ''}:scalar`;
    return shape < 0.75 ? node('iv', tag, [v, sc], ([a, b]) => `(${a}) ${op}${bool} ${b}`) : node('iv', tag, [sc, v], ([a, b]) => `${a} ${op}${bool} (${b})`);
  }

  rangeFn(d: number): N {
    const r = this.r;
    const fns = [
      'rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'changes', 'resets', 'avg_over_time', 'min_over_time', 'max_over_time',
      'sum_over_time', 'count_over_time', 'stddev_over_time', 'last_over_time', 'present_over_time', 'absent_over_time',
      'mad_over_time', 'first_over_time', 'ts_of_max_over_time', 'ts_of_last_over_time', 'quantile_over_time', 'predict_linear', 'double_exponential_smoothing',
      'stdvar_over_time', 'ts_of_min_over_time', 'ts_of_first_over_time', 'integral',
    ];
    const f = r.pick(fns);
    const fits = ['rate', 'increase', 'delta'].includes(f) ? ['anchored', 'smoothed'] : ['changes', 'resets'].includes(f) ? ['anchored'] : [];
    const rv = this.rv(d - 1, fits);
    if (f === 'quantile_over_time') return node('iv', `fn:${f}`, [rv], ([x]) => `${f}(${r.pick(['0.5', '0.9'])}, ${x})`);
    if (f === 'predict_linear') return node('iv', `fn:${f}`, [rv], ([x]) => `${f}(${x}, 600)`);
    if (f === 'double_exponential_smoothing') return node('iv', `fn:${f}`, [rv], ([x]) => `${f}(${x}, 0.5, 0.5)`);
    if (f === 'integral' && r.chance(0.5)) return node('iv', `fn:${f}:strategy`, [rv], ([x]) => `${f}(${x}, ${r.pick(['0', '1', '2'])})`);
    return node('iv', `fn:${f}${rv.tag === 'subquery' ? ':subquery' : ''}`, [rv], ([x]) => `${f}(${x})`);
  }

  fn(d: number): N {
    const r = this.r;
    const c = r.int(23);
    const one = (name: string) => node('iv', `fn:${name}`, [this.iv(d - 1)], ([x]) => `${name}(${x})`);
    switch (c) {
      case 0:
        return one(r.pick(['abs', 'ceil', 'floor', 'round', 'sqrt', 'exp', 'ln', 'log2', 'sgn', 'sort', 'sort_desc']));
      case 1: {
        const name = r.pick(['clamp_min', 'clamp_max']);
        return node('iv', `fn:${name}`, [this.iv(d - 1), this.scalar(d - 1)], ([x, s]) => `${name}(${x}, ${s})`);
      }
      case 2:
      case 3: {
        // timestamp() of a selector (special in Prometheus) or of an expression
        const arg = r.chance(0.6) ? this.selWithMod() : this.iv(d - 1);
        const paren = r.chance(0.25);
        return node('iv', `fn:timestamp${arg.tag.startsWith('sel') ? ':sel' : ''}${paren ? ':paren' : ''}`, [arg], ([x]) => (paren ? `timestamp((${x}))` : `timestamp(${x})`));
      }
      case 4:
      case 5: {
        const dst = r.pick(['namespace', 'namespace', 'job', 'foo', 'instance', '__name__', 'k8s.namespace']);
        const src = r.pick(['namespace', 'job', 'instance', '__name__', 'pod', 'code']);
        const repl = r.pick(['$1', 'team-b-api', 'platform', 'x-$1', '', 'team-a-frontend', '$1-$2']);
        const re = r.pick(['(.*)', 'team-(.*)', '(.+)-(.*)', '', '.*', '(.*)-.*', 'platform']);
        return node('iv', `fn:label_replace${dst === 'namespace' ? ':into-ns' : ''}${src === 'namespace' ? ':from-ns' : ''}`, [this.iv(d - 1)], ([x]) => `label_replace(${x}, ${q(dst)}, ${q(repl)}, ${q(src)}, ${q(re)})`);
      }
      case 6: {
        const dst = r.pick(['namespace', 'job', 'foo']);
        const srcs = r.subset(['namespace', 'job', 'instance', 'pod', '__name__'], 3).map(q).join(', ');
        const sep = r.pick(['-', '', ',']);
        return node('iv', `fn:label_join${dst === 'namespace' ? ':into-ns' : ''}`, [this.iv(d - 1)], ([x]) => `label_join(${x}, ${q(dst)}, ${q(sep)}, ${srcs})`);
      }
      case 7: {
        if (r.chance(0.3)) {
          // absent_over_time over a range selector or a subquery, sometimes parenthesised
          const m = r.pick(['up', 'missing_metric', 'http_requests_total']);
          const ms = r.pick(['{job="api"}', '{namespace="team-b-db"}', '{job="nope", namespace=~"team-.*"}', '{code="500", job="api"}', '{namespace="platform", job!="x"}', '{instance=""}']);
          const form = r.pick(['A[5m]', 'A[5m] offset 5m', '(A)[5m:1m]', 'A[10m:1m]', '(A[5m])', 'A[5m] @ end()']);
          const text = form.replace('A', `${m}${ms}`);
          return leaf('iv', `absent_over_time(${text})`, `fn:absent_over_time:${form}`);
        }
        const arg = r.chance(0.6) ? this.selWithMod(r.chance(0.4) ? 'missing_metric' : undefined) : this.iv(d - 1);
        const paren = r.chance(0.2);
        return node('iv', `fn:absent${arg.tag.startsWith('sel') ? ':sel' : ''}${paren ? ':paren' : ''}`, [arg], ([x]) => (paren ? `absent((${x}))` : `absent(${x})`));
      }
      case 8: {
        const phi = r.pick(['0.5', '0.9', '0.99', '0']);
        const by = r.pick(['le', 'le', 'le, namespace', 'namespace', 'le, job']);
        const inner = r.chance(0.7)
          ? node('iv', 'hq-inner', [this.selWithMod('http_request_duration_seconds_bucket')], ([s]) => `sum by (${by}) (rate(${(s as string)}[5m]))`)
          : this.iv(d - 1);
        // the selector above is a plain selector: rate(s[5m]) needs the range applied to it
        return node('iv', 'fn:histogram_quantile', [inner], ([x]) => `histogram_quantile(${phi}, ${x})`);
      }
      case 9:
        return node('iv', 'fn:vector', [this.scalar(d - 1)], ([s]) => `vector(${s})`);
      case 10: {
        const name = r.pick(['sort_by_label', 'sort_by_label_desc']);
        const ls = r.subset(['namespace', 'job', 'instance', 'pod'], 2).map(q).join(', ');
        return node('iv', `fn:${name}`, [this.iv(d - 1)], ([x]) => `${name}(${x}, ${ls})`);
      }
      case 11: {
        const data = r.pick(['', '', `, {__name__="target_info"}`, `, {k8s_cluster_name=~".+"}`, `, {namespace=~".+"}`, `, {__name__="up", job=~".+"}`]);
        return node('iv', `fn:info${data === '' ? '' : ':data'}`, [this.iv(d - 1)], ([x]) => `info(${x}${data})`);
      }
      case 12:
        return node('iv', 'neg', [this.iv(d - 1)], ([x]) => `-(${x})`);
      case 20: {
        // Unary minus/plus without parentheses: binds looser than offset/@ (`-up offset 5m` is `-(up offset 5m)`).
        const sign = r.pick(['-', '+', '- -', '-']);
        const arg = r.chance(0.6) ? this.selWithMod() : this.fnCallOrAgg(d - 1);
        return node('iv', `neg:bare${arg.tag.startsWith('sel') ? ':sel' : ''}`, [arg], ([x]) => `${sign}${x}`);
      }
      case 21: {
        const name = r.pick(['year', 'month', 'day_of_month', 'day_of_year', 'sin', 'cos', 'deg', 'rad', 'log10', 'exp', 'sgn']);
        return node('iv', `fn:${name}`, [this.iv(d - 1)], ([x]) => `${name}(${x})`);
      }
      case 22: {
        // Quoted metric and label names in absent(): its result labels come from the matchers.
        // Also several matchers on one label, whose result labels depend on the order the TSDB leaves them in.
        const ms = r.pick([
          '{"up", "namespace"="nope"}', '{"missing_metric", "job"="api"}', '{"namespace"="team-b-db", "up"}', '{"__name__"="up", "namespace"=\'platform\'}', 'missing_metric{"namespace"=`team-a-x`}',
          'missing_metric{namespace!="platform", namespace="team-b-db"}', 'missing_metric{namespace="team-b-db", namespace!~"plat.*"}', 'missing_metric{job!="x", job="api"}', 'missing_metric{namespace=~"", namespace="nope"}',
        ]);
        return leaf('iv', r.chance(0.5) ? `absent(${ms})` : `absent_over_time(${ms}[5m])`, 'fn:absent:quoted');
      }
      case 13:
        return node('iv', 'paren', [this.iv(d - 1)], ([x]) => `(${x})`);
      case 14: {
        const name = r.pick(['day_of_week', 'hour', 'minute', 'days_in_month']);
        return r.chance(0.5) ? leaf('iv', `${name}()`, `fn:${name}()`) : node('iv', `fn:${name}`, [this.iv(d - 1)], ([x]) => `${name}(${x})`);
      }
      case 15: {
        const name = r.pick(['clamp']);
        return node('iv', `fn:${name}`, [this.iv(d - 1), this.scalar(d - 1), this.scalar(d - 1)], ([x, a, b]) => `${name}(${x}, ${a}, ${b})`);
      }
      case 16:
        return node('iv', 'fn:scalar-vector', [this.iv(d - 1)], ([x]) => `vector(scalar(${x}))`);
      case 17:
        return node('iv', 'fn:histogram_fraction', [this.selWithMod('http_request_duration_seconds_bucket')], ([s]) => `histogram_fraction(0, 0.25, sum by (le) (rate(${s as string}[5m])))`);
      default:
        return this.rangeFn(d);
    }
  }

  /** A function call or aggregation (something `-x` may prefix without parentheses). */
  fnCallOrAgg(d: number): N {
    return this.r.chance(0.5) ? this.agg(Math.max(d, 1)) : this.rangeFn(Math.max(d, 1));
  }

  /** A selector with an optional modifier. */
  selWithMod(metric?: string): N {
    const s = this.selector(metric !== undefined);
    if (metric !== undefined) {
      // force the given metric name, keep the matchers
      const text = s.f([]);
      const body = text.slice(text.indexOf('{'));
      const fixed = text.includes('{') ? `${metric}${body.replace(/__name__=~?"[^"]*",?\s*/, '')}` : metric;
      const out = fixed.replace(/\{\s*\}$/, '').replace(/,\s*\}$/, '}');
      return leaf('iv', metric === 'missing_metric' ? `${out}${this.modifier()}` : out, 'sel');
    }
    const mod = this.modifier() + this.extended(this.r.chance(0.3) ? ['anchored', 'smoothed'] : []);
    return mod === '' ? s : node('iv', `${s.tag}:mod`, [s], ([x]) => `${x}${mod}`);
  }

  iv(d: number): N {
    const r = this.r;
    if (d <= 0) return this.selWithMod();
    const c = r.next();
    if (c < 0.2) return this.selWithMod();
    if (c < 0.42) return this.agg(d);
    if (c < 0.62) return this.binary(d);
    if (c < 0.78) return this.rangeFn(d);
    return this.fn(d);
  }

  /** A top-level query and its type. */
  top(): N {
    const r = this.r;
    const c = r.next();
    const d = 1 + r.int(this.o.maxDepth);
    if (c < 0.86) return this.iv(d);
    if (c < 0.93) return this.scalar(d);
    if (c < 0.99) return this.rv(d);
    return leaf('str', q(r.pick(['hello', 'team-b-api'])), 'str');
  }
}

/** Every tag in a tree. */
export function tags(n: N, out: string[] = []): string[] {
  out.push(n.tag);
  for (const c of n.k) tags(c, out);
  return out;
}

/**
 * One-step shrinks: a node replaced by a same-typed proper descendant, or a
 * selector leaf with fewer matchers / no modifier. Smallest first.
 */
export function shrinks(n: N): N[] {
  const out: N[] = [];
  const desc = (m: N, acc: N[] = []): N[] => {
    for (const c of m.k) {
      acc.push(c);
      desc(c, acc);
    }
    return acc;
  };
  for (const d of desc(n)) if (d.t === n.t) out.push(d);
  n.k.forEach((c, i) => {
    for (const s of shrinks(c)) {
      const k = [...n.k];
      k[i] = s;
      out.push({ ...n, k });
    }
  });
  if (n.k.length === 0 && n.tag.startsWith('sel')) {
    const text = n.f([]);
    const m = /^([^{]*)\{(.*)\}$/.exec(text);
    if (m !== null) {
      const parts = (m[2] as string).split(/,\s*(?=[A-Za-z_]+[=!])/);
      if (parts.length > 1 || m[1] !== '') {
        parts.forEach((_, i) => {
          const rest = parts.filter((__, j) => j !== i);
          const t2 = rest.length === 0 ? (m[1] as string) : `${m[1] as string}{${rest.join(', ')}}`;
          if (t2 !== '') out.push(leaf(n.t, t2, n.tag));
        });
      }
    }
  }
  return out.sort((a, b) => render(a).length - render(b).length);
}
