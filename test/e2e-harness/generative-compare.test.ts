// The generative oracle's comparison up to floating-point summation order (e2e/isolation/generative/compare.ts).
import { describe, expect, it } from 'vitest';
import { toAnswer, type Answer } from '../../e2e/isolation/corpus.ts';
import { closeAnswers, closeLabels, equivalent } from '../../e2e/isolation/generative/compare.ts';

const vector = (rows: [Record<string, string>, string][], t = 1795928580): Answer =>
  toAnswer(200, { status: 'success', data: { resultType: 'vector', result: rows.map(([metric, v]) => ({ metric, value: [t, v] })) } });
const matrix = (rows: [Record<string, string>, [number, string][]][]): Answer =>
  toAnswer(200, { status: 'success', data: { resultType: 'matrix', result: rows.map(([metric, values]) => ({ metric, values })) } });

describe('closeAnswers', () => {
  it('takes count_values labels that differ in summation order (seed 2152) as equal', () => {
    const gateway = vector([[{ namespace: '21076662681.6' }, '1']]);
    const reference = vector([[{ namespace: '21076662749.866665' }, '1']]);
    expect(closeAnswers(gateway, reference)).toBe(true);
    expect(equivalent(gateway, reference)).toBe(true);
  });

  it('pairs series whose numeric labels sort apart as text (100.0000001 against 99.99999999)', () => {
    const gateway = matrix([
      [{ v: '100.0000001' }, [[1, '1']]],
      [{ v: '200' }, [[1, '2']]],
    ]);
    const reference = matrix([
      [{ v: '99.99999999' }, [[1, '1']]],
      [{ v: '200' }, [[1, '2']]],
    ]);
    expect(closeAnswers(gateway, reference)).toBe(true);
    // Paired by label, so the values must follow their series.
    const swapped = matrix([
      [{ v: '99.99999999' }, [[1, '2']]],
      [{ v: '200' }, [[1, '1']]],
    ]);
    expect(closeAnswers(gateway, swapped)).toBe(false);
  });

  it('refuses what summation order cannot explain', () => {
    const base = vector([[{ namespace: '21076662681.6', job: 'api' }, '1']]);
    expect(closeAnswers(base, vector([[{ namespace: '21076.6626816', job: 'api' }, '1']]))).toBe(false);
    expect(closeAnswers(base, vector([[{ namespace: '21086662681.6', job: 'api' }, '1']]))).toBe(false);
    expect(closeAnswers(base, vector([[{ namespace: '21076662681.6', job: 'web' }, '1']]))).toBe(false);
    expect(closeAnswers(base, vector([[{ namespace: '21076662681.6' }, '1']]))).toBe(false);
    expect(closeAnswers(base, vector([[{ namespace: '21076662681.6', job: 'api' }, '1.01']]))).toBe(false);
    expect(closeAnswers(base, vector([[{ namespace: '21076662681.6', job: 'api' }, '1']], 1795928581))).toBe(false);
    expect(closeAnswers(base, vector([[{ namespace: 'team-a-api', job: 'api' }, '1']]))).toBe(false);
    expect(closeAnswers(base, vector([]))).toBe(false);
  });
});

describe('closeLabels', () => {
  it('compares names exactly, numeric values to 1e-6 relative, other values exactly', () => {
    const labels = (o: Record<string, string>) => JSON.stringify(Object.entries(o));
    expect(closeLabels(labels({ a: '1e10' }), labels({ a: '10000000001' }))).toBe(true);
    expect(closeLabels(labels({ a: '1e10' }), labels({ b: '1e10' }))).toBe(false);
    expect(closeLabels(labels({ a: 'NaN' }), labels({ a: 'NaN' }))).toBe(true);
    expect(closeLabels(labels({ a: 'NaN' }), labels({ a: '+Inf' }))).toBe(false);
    expect(closeLabels(labels({ a: 'x1' }), labels({ a: 'x2' }))).toBe(false);
    expect(closeLabels(labels({ a: '' }), labels({ a: '0' }))).toBe(false);
  });
});
