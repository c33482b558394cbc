// How the generative oracle compares two answers that may differ only by floating-point summation
// order (e2e/isolation/generative/oracle.ts): pure, so test/e2e-harness/generative-compare.test.ts
// holds it to its cases without a backend.
import { sameAnswer, type Answer } from '../corpus.ts';

const numeric = (v: string): boolean => v !== '' && Number.isFinite(Number(v));

/** Numeric-looking label values (count_values output) rounded to 12 significant digits. */
export function loose(a: Answer): Answer {
  if (!('series' in a)) return a;
  const series = a.series.map((x) => ({
    ...x,
    labels: JSON.stringify((JSON.parse(x.labels) as [string, string][]).map(([k, v]) => [k, numeric(v) ? Number(v).toPrecision(12) : v])),
  }));
  series.sort((p, q) => (p.labels < q.labels ? -1 : p.labels > q.labels ? 1 : 0));
  return { ...a, series };
}

/** Two numbers equal up to floating-point summation order (relative 1e-6; irate/deriv over stddev amplify the last digits). */
export function closeNumbers(a: string, b: string): boolean {
  if (a === b) return true;
  const x = Number(a);
  const y = Number(b);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return false;
  return Math.abs(x - y) <= 1e-6 * Math.max(Math.abs(x), Math.abs(y), 1e-9);
}

/**
 * Two label sets equal but for numeric-looking values equal as closeNumbers has it: count_values
 * writes a value into a label, so the value's summation-order tolerance holds for the label too
 * (seed 2152: `count_values("namespace", irate((stdvar(x))[10m:1m]))` under a multi-group `or`
 * labelled 21076662681.6 against 21076662749.866665; irate's difference of two large neighbours
 * leaves 3e-9 of relative error, more than 12 digits keep).
 */
export function closeLabels(a: string, b: string): boolean {
  if (a === b) return true;
  const x = JSON.parse(a) as [string, string][];
  const y = JSON.parse(b) as [string, string][];
  return x.length === y.length && x.every(([k, v], i) => {
    const [k2, v2] = y[i]!;
    return k === k2 && (v === v2 || (numeric(v) && numeric(v2) && closeNumbers(v, v2)));
  });
}

/** The series ordered by their labels with numeric values to 6 digits, so series whose count_values labels differ in their last digits meet. */
function byCoarseLabels(a: Answer): Answer {
  if (!('series' in a)) return a;
  const key = (labels: string): string => JSON.stringify((JSON.parse(labels) as [string, string][]).map(([k, v]) => [k, numeric(v) ? Number(v).toPrecision(6) : v]));
  const keyed = a.series.map((s) => ({ s, k: key(s.labels) }));
  keyed.sort((p, q) => (p.k < q.k ? -1 : p.k > q.k ? 1 : p.s.labels < q.s.labels ? -1 : p.s.labels > q.s.labels ? 1 : 0));
  return { ...a, series: keyed.map((x) => x.s) };
}

/** Same series and timestamps, values and numeric label values equal up to summation order. */
export function closeAnswers(g: Answer, r: Answer): boolean {
  const a = byCoarseLabels(g);
  const b = byCoarseLabels(r);
  if (!('series' in a) || !('series' in b) || a.kind !== b.kind || a.series.length !== b.series.length) return false;
  return a.series.every((s, i) => {
    const t = b.series[i]!;
    if (!closeLabels(s.labels, t.labels) || s.values.length !== t.values.length) return false;
    return s.values.every((v, j) => {
      const [ts, x] = v.split('=');
      const [tt, y] = (t.values[j] as string).split('=');
      return ts === tt && closeNumbers(x as string, y as string);
    });
  });
}

/** Same series labels and timestamps, in the same order (values may differ). */
export function sameShape(g: Answer, r: Answer): boolean {
  if (!('series' in g) || !('series' in r) || g.kind !== r.kind || g.series.length !== r.series.length) return false;
  return g.series.every((s, i) => {
    const t = r.series[i]!;
    return s.labels === t.labels && s.values.length === t.values.length && s.values.every((v, j) => v.split('=')[0] === (t.values[j] as string).split('=')[0]);
  });
}

/** Equal up to floating-point summation order (values and count_values label values to 1e-6 relative). */
export function equivalent(a: Answer, b: Answer): boolean {
  return sameAnswer(a, b) || sameAnswer(loose(a), loose(b)) || closeAnswers(a, b);
}
