// Classification of one (tenant, mode, query) against the reference.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeAnswer, sameAnswer, type Answer } from '../corpus.ts';
import { rewritePromQL, rewritePromQLPerGroup } from '../../../src/rewrite/promql.ts';
import type { Env, Mode, Tenant } from './env.ts';
import { tieFree, tieIndependentQueries, vectorSelectors } from './tie-free.ts';
import { equivalent, sameShape } from './compare.ts';

export type Cls = 'match' | 'match-empty' | 'float-nondeterminism' | 'both-error' | 'leak' | 'mismatch' | 'false-refusal' | 'gateway-5xx' | 'tie' | 'excluded';

export interface Outcome {
  cls: Cls;
  detail: string;
  rewritten: string;
  gateway: string;
  reference: string;
  unrestricted?: string;
}

interface Exclusion {
  q: string;
  tenants: readonly string[];
  mode?: Mode;
}
const exclusions = (JSON.parse(readFileSync(join(import.meta.dirname, '..', 'promql-exclusions.json'), 'utf8')) as { entries: Exclusion[] }).entries;

export function localRewrite(t: Tenant, mode: Mode, q: string): { ok: boolean; text: string } {
  try {
    return { ok: true, text: (mode === 'instant' ? rewritePromQLPerGroup(q, t.policy) : [rewritePromQL(q, t.policy)]).join('  ||  ') };
  } catch (e) {
    return { ok: false, text: `${(e as { code?: string }).code ?? 'error'}: ${(e as Error).message}` };
  }
}

function labelValues(a: Answer): Set<string> {
  const out = new Set<string>();
  if (!('series' in a)) return out;
  for (const s of a.series) for (const [k, v] of JSON.parse(s.labels) as [string, string][]) out.add(`${k}=${v}`);
  return out;
}

const TIE_FNS = /\b(topk|bottomk|limitk)\b/;

/**
 * Operations whose result a last-bit difference of the operand can change by a whole step: a
 * remainder and the periodic functions (they keep only the last bits of a large operand), and the
 * functions that round (floor, ceil, round, and the date functions, which floor the value read as a
 * time: `hour(75600)` is 21, `hour(75599.99999999999)` 20).
 */
const LAST_BITS = /%|\b(sin|cos|tan|floor|ceil|round|minute|hour|day_of_week|day_of_month|day_of_year|days_in_month|month|year)\s*\(/i;

/** Aggregations whose value depends on the order their input series arrive in (floating-point sums). */
const ORDER_DEPENDENT_AGGREGATION = /\b(sum|avg|stddev|stdvar)\b/i;

/**
 * A vector-matching error (duplicate series on one side) in a query with topk/bottomk/limitk: which
 * of tied series they keep decides whether two kept series fall into one match group, so one side may
 * answer and the other refuse (`bottomk(3, x) + on(job) …` under a multi-group `or`). Likewise a
 * function that drops the metric name (`day_of_year(limitk(3, {__name__=~"m_.*"}))`): whether two kept
 * series then share a label set depends on which ones were kept, and limitk keeps the first k in the
 * order storage gives them, which differs between a backend holding every tenant and the reference.
 */
function tieChoiceError(q: string, a: Answer): boolean {
  return TIE_FNS.test(q) && a.kind === 'error' && /duplicate series|many-to-many|multiple matches|same labelset/.test(a.error);
}
const TIE_ERROR = 'topk/bottomk/limitk kept other tied series, which one side could not match (duplicate series in a match group)';

/**
 * Equal result size at every timestamp (instant: series count). In a range query topk/bottomk/limitk
 * choose per step, so a tie broken differently at some step changes which series the matrix holds.
 */
function sameSizeAtEveryStep(g: Answer, r: Answer): boolean {
  if (!('series' in g) || !('series' in r) || g.kind !== r.kind) return false;
  if (g.kind !== 'matrix') return g.series.length === r.series.length;
  const sizes = (a: typeof g): string => {
    const n = new Map<string, number>();
    for (const s of a.series) for (const v of s.values) n.set(v.split('=')[0] as string, (n.get(v.split('=')[0] as string) ?? 0) + 1);
    return JSON.stringify([...n].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
  };
  return sizes(g) === sizes(r as typeof g);
}

/**
 * Whether a difference can only be which tied series topk/bottomk/limitk kept. The gateway (the
 * tenant's policy, every tenant's data) and the reference (the tenant's data only) must answer alike
 * (1) the argument of every such call: the candidates, labels and values, are the same on both sides,
 * so a call can only choose differently among equal values; (2) the query with every such call keeping
 * all of its series and (3) keeping none: the rest of the query, with the most and the least of what
 * the calls feed it (`y unless topk(3, x)` shows all of y with none kept), takes nothing from other
 * tenants' data and loses nothing of the tenant's. An argument that holds such a call itself is
 * held to (1)–(3) in its place (tieIndependentQueries). Neither side errs on any of them, with one
 * exception: (2) or (3) may fail on both sides with the same error, where keeping every series (or
 * none) is what breaks the rest of the query (seed 2108: `double_exponential_smoothing((topk without
 * (method, code, job) (3, bottomk by (job, method) (2, {__name__=~"http_.*"})))[10m:], …)` keeps
 * series that differ only in their name, which the function drops: "vector cannot contain metrics
 * with the same labelset"). Then the other one of (2) and (3) must still answer, and so must every
 * vector selector of the query on its own, alike: what (2) would have shown of the parts outside the
 * calls is then shown selector by selector.
 */
async function onlyTieChoice(env: Env, t: Tenant, mode: Mode, q: string): Promise<boolean> {
  const queries = tieIndependentQueries(q);
  const whole = tieFree(q);
  if (queries === null || whole === null) return false;
  const variants = new Set([whole.all, whole.none]);
  const alike = async (x: string): Promise<'alike' | 'same-error' | 'different'> => {
    const [g, r] = await Promise.all([env.gw(t.name, mode, x), env.ref(t.name, mode, x)]);
    if (g.answer.kind === 'error' || r.answer.kind === 'error') {
      const same = g.answer.kind === 'error' && r.answer.kind === 'error' && g.answer.errorType === r.answer.errorType && g.answer.error === r.answer.error;
      return same ? 'same-error' : 'different';
    }
    return equivalent(g.answer, r.answer) ? 'alike' : 'different';
  };
  let failedVariants = 0;
  for (const x of queries) {
    const outcome = await alike(x);
    if (outcome === 'alike') continue;
    if (outcome === 'same-error' && variants.has(x)) failedVariants++;
    else return false;
  }
  if (failedVariants === 0) return true;
  if (failedVariants === variants.size) return false;
  const selectors = vectorSelectors(q);
  if (selectors === null) return false;
  for (const x of selectors) if ((await alike(x)) !== 'alike') return false;
  return true;
}

export async function classify(env: Env, t: Tenant, mode: Mode, q: string): Promise<Outcome> {
  const [g, r] = await Promise.all([env.gw(t.name, mode, q), env.ref(t.name, mode, q)]);
  const rw = localRewrite(t, mode, q);
  const base = { rewritten: rw.text, gateway: describeAnswer(g.answer), reference: describeAnswer(r.answer) };
  if (g.status >= 500 && r.status < 500) return { cls: 'gateway-5xx', detail: `HTTP ${g.status}`, ...base };
  if (sameAnswer(g.answer, r.answer)) return { cls: g.answer.kind === 'error' ? 'both-error' : 'series' in g.answer && g.answer.series.length === 0 ? 'match-empty' : 'match', detail: '', ...base };
  if (exclusions.some((e) => e.q === q && (e.tenants.includes('*') || e.tenants.includes(t.name)) && (e.mode === undefined || e.mode === mode))) {
    return { cls: 'excluded', detail: '', ...base };
  }
  if (g.answer.kind === 'error') {
    if (!rw.ok) return { cls: 'false-refusal', detail: rw.text, ...base };
    if (tieChoiceError(q, g.answer)) return { cls: 'tie', detail: TIE_ERROR, ...base };
    return { cls: 'mismatch', detail: `gateway error HTTP ${g.status} (${g.answer.errorType}: ${g.answer.error}) on a query the rewriter accepted; the reference answers`, ...base };
  }
  // Leak: label values of other tenants' series that the reference answer does not have.
  const refVals = labelValues(r.answer);
  const visible = env.visible(t.name);
  const foreign = [...labelValues(g.answer)].filter((kv) => {
    const [k, ...rest] = kv.split('=');
    const v = rest.join('=');
    return ['namespace', 'job', 'instance'].includes(k as string) && env.allValues.has(v) && !visible.has(v) && !refVals.has(kv);
  });
  if (foreign.length > 0) return { cls: 'leak', detail: `foreign label values ${foreign.join(', ')}`, ...base };
  if (tieChoiceError(q, r.answer)) return { cls: 'tie', detail: TIE_ERROR, ...base };
  if (r.answer.kind === 'error') return { cls: 'mismatch', detail: `gateway answers, reference errors (${r.answer.errorType}: ${r.answer.error})`, ...base };
  if (TIE_FNS.test(q) && sameSizeAtEveryStep(g.answer, r.answer)) {
    return { cls: 'tie', detail: 'topk/bottomk/limitk: ties broken by series order; same result size', ...base };
  }
  if (/\blimitk\b/.test(q) && rw.text.includes(' or ')) {
    // limitk keeps the first k series it is given, whatever their values; the `or` of a multi-group
    // rewrite hands them over in another order, so other series are kept and whatever groups them
    // afterwards (`count(limitk(3, x)) without (code)`) differs in size too. No foreign label (checked above).
    return { cls: 'tie', detail: 'limitk: which k series are kept depends on the order the multi-group `or` gives them in', ...base };
  }
  if (/\blimit_ratio\b/.test(q) && TIE_FNS.test(q) && rw.text.includes(' or ')) {
    // limit_ratio keeps series by a hash of their labels; which tied series topk/bottomk/limitk handed
    // it depends on the order the multi-group `or` gives them in, so the sample differs in size too
    // (`limit_ratio(-0.5, bottomk(3, x == bool 1e3))`: all values tie at 0). No foreign label (checked above).
    return { cls: 'tie', detail: 'limit_ratio over the series topk/bottomk/limitk kept from ties, which depend on the order of the multi-group `or`', ...base };
  }
  if (LAST_BITS.test(q) && (rw.text.includes(' or ') || (mode === 'range' && ORDER_DEPENDENT_AGGREGATION.test(q))) && sameShape(g.answer, r.answer)) {
    // A multi-group rewrite's `or` changes the order in which series reach sum/avg/stddev/stdvar, and
    // so does, in a range query, a binary operator below the aggregation (Prometheus collects its output
    // series in a map; seed 2055: `hour(… stdvar(x and y) …)`), so the aggregate differs in its last
    // bits; a remainder by a small divisor (`x % (16 / time())`), sin/cos/tan of a large value, or a
    // rounding at a whole number turns them into a different value. Same series, same timestamps: only
    // the values, which no tolerance bounds.
    return { cls: 'float-nondeterminism', detail: 'a remainder, periodic or rounding function of an aggregate whose last bits depend on the order its series arrive in (a multi-group `or`; a range query\'s binary operator); same series and timestamps', ...base };
  }
  if (equivalent(g.answer, r.answer)) {
    return { cls: 'float-nondeterminism', detail: 'equal up to floating-point summation order (values and count_values label values to 1e-6 relative)', ...base };
  }
  if (TIE_FNS.test(q) && (await onlyTieChoice(env, t, mode, q))) {
    // topk/bottomk/limitk over ties under further operators (`stddev by (job) (topk by (pod) (3, group(…)))`):
    // which tied series are kept depends on the order they arrive in: the order the multi-group `or` hands
    // them over in, and, with or without a rewrite, the order of whatever Prometheus collects in a map (a
    // range query's binary operator, seed 2037: `limitk(1, x != 0.9)` forwarded as written; count_values,
    // seed 2061: `limit_ratio(0.5, topk by (__name__) (1, count_values(…)))`); what follows shows which ones
    // were kept. No foreign label (checked above).
    return { cls: 'tie', detail: 'topk/bottomk/limitk: ties broken by series order, under further operators; the gateway answers as the reference with every such call keeping none and all of its series, and on each call\'s argument', ...base };
  }
  const f = await env.full(mode, q);
  const unrestricted = describeAnswer(f.answer);
  if (sameAnswer(g.answer, f.answer) && !sameAnswer(f.answer, r.answer)) {
    return { cls: 'leak', detail: 'gateway answer equals the unrestricted answer (other tenants\' data), not the reference', ...base, unrestricted };
  }
  return { cls: 'mismatch', detail: '', ...base, unrestricted };
}
