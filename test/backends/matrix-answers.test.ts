import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FormParams } from '../../src/backends/form-params.ts';
import { compareLabelSets, mergeMatrixAnswers, pinEvaluationTime, TRUNCATED_WARNING } from '../../src/backends/matrix-answers.ts';

type Metric = Record<string, string>;
const series = (metric: Metric, values: [number, string][] = [[1, '1']]) => ({ metric, values });
const matrix = (result: unknown[], extra: Record<string, unknown> = {}) => ({ status: 'success', data: { resultType: 'matrix', result }, ...extra });
const metricsOf = (a: { data: { result: { metric: Metric }[] } }): Metric[] => a.data.result.map((s) => s.metric);

/**
 * Prometheus' labels.Compare written out from its definition (labels sorted by
 * name; name, then value, pair by pair; Go compares strings by UTF-8 bytes; a
 * prefix sorts first), independently of the implementation under test.
 */
function goCompare(a: Metric, b: Metric): number {
  const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');
  const sorted = (m: Metric): [string, string][] => Object.entries(m).sort((x, y) => Buffer.compare(bytes(x[0]), bytes(y[0])));
  const [x, y] = [sorted(a), sorted(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const byName = Buffer.compare(bytes(x[i]![0]), bytes(y[i]![0]));
    if (byName !== 0) return byName;
    const byValue = Buffer.compare(bytes(x[i]![1]), bytes(y[i]![1]));
    if (byValue !== 0) return byValue;
  }
  return x.length - y.length;
}

const char = fc.constantFrom('a', 'b', '_', 'é', '\u{ffff}', '\u{10000}');
const word = fc.array(char, { minLength: 1, maxLength: 3 }).map((cs) => cs.join(''));
const metricArb = fc.dictionary(fc.constantFrom('__name__', 'a', 'job', 'namespace', 'é'), word, { maxKeys: 4 });

describe('compareLabelSets', () => {
  it('orders label sets as Prometheus sorts a matrix (labels.Compare)', () => {
    fc.assert(
      fc.property(metricArb, metricArb, (a, b) => {
        const sorted = (m: Metric) => Object.entries(m).sort((x, y) => Buffer.compare(Buffer.from(x[0]), Buffer.from(y[0])));
        expect(Math.sign(compareLabelSets(sorted(a), sorted(b)))).toBe(Math.sign(goCompare(a, b)));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('mergeMatrixAnswers', () => {
  it('the union of the parts, each series once, in labels.Compare order', () => {
    fc.assert(
      fc.property(fc.array(fc.array(metricArb, { maxLength: 6 }), { minLength: 1, maxLength: 4 }), (parts) => {
        const answers = parts.map((ms) => matrix(ms.map((m) => series(m))));
        const out = mergeMatrixAnswers(answers, new FormParams(''));
        const got = metricsOf(out);
        const key = (m: Metric) => JSON.stringify(Object.entries(m).sort());
        const expected = [...new Map(parts.flat().map((m) => [key(m), m])).values()].sort(goCompare);
        expect(got.map(key)).toEqual(expected.map(key));
      }),
      { numRuns: 500 },
    );
  });

  it('keeps a series two groups share once, with its samples and histograms as the part sent them', () => {
    const shared = { metric: { __name__: 'up', namespace: 'a', job: 'api' }, values: [[100, '1'], [115, '1']], histograms: [[100, { count: '2', sum: '3', buckets: [] }]] };
    const other = series({ __name__: 'up', namespace: 'b' }, [[100, '0']]);
    const out = mergeMatrixAnswers([matrix([shared]), matrix([other, { ...shared }])], new FormParams(''));
    expect(out.data.result).toEqual([shared, other]);
    expect(out).not.toHaveProperty('warnings');
  });

  it('cuts the union at `limit` as Prometheus cuts its sorted result, and says so', () => {
    const a = matrix([series({ n: '1' }), series({ n: '3' })], { warnings: [TRUNCATED_WARNING] });
    const b = matrix([series({ n: '2' }), series({ n: '4' })], { warnings: [TRUNCATED_WARNING] });
    const out = mergeMatrixAnswers([a, b], new FormParams('limit=2'));
    expect(metricsOf(out)).toEqual([{ n: '1' }, { n: '2' }]);
    expect(out.warnings).toEqual([TRUNCATED_WARNING]);
    // Under the limit: nothing cut, no warning added.
    const whole = mergeMatrixAnswers([matrix([series({ n: '1' })]), matrix([series({ n: '2' })])], new FormParams('limit=2'));
    expect(metricsOf(whole)).toHaveLength(2);
    expect(whole).not.toHaveProperty('warnings');
    // limit=0 means no limit in Prometheus.
    expect(metricsOf(mergeMatrixAnswers([a, b], new FormParams('limit=0')))).toHaveLength(4);
  });

  it('relays every part\'s warnings and infos once each', () => {
    const out = mergeMatrixAnswers(
      [matrix([], { warnings: ['w1'], infos: ['i1'] }), matrix([], { warnings: ['w1', 'w2'] })],
      new FormParams(''),
    );
    expect(out.warnings).toEqual(['w1', 'w2']);
    expect(out.infos).toEqual(['i1']);
  });

  it('an answer that is not a matrix fails the whole (→ 502), never a partial result', () => {
    const good = matrix([series({ a: '1' })]);
    const bad: unknown[] = [
      null,
      { status: 'error', errorType: 'bad_data', error: 'x' },
      { status: 'success', data: { resultType: 'vector', result: [] } },
      { status: 'success', data: { resultType: 'matrix' } },
      matrix([{ values: [] }]),
      matrix([{ metric: { a: 1 } }]),
      matrix([], { warnings: 'w' }),
    ];
    for (const b of bad) expect(() => mergeMatrixAnswers([good, b], new FormParams(''))).toThrow(/could not be read/);
  });
});

describe('pinEvaluationTime', () => {
  it('fixes `time` at the request\'s now when the client left it to Prometheus, and only then', () => {
    const absent = new FormParams('query=up%5B5m%5D');
    pinEvaluationTime(absent, 1_700_000_000_123);
    expect(absent.get('time')).toBe('1700000000.123');
    const empty = new FormParams('query=x&time=');
    pinEvaluationTime(empty, 1_700_000_000_000);
    expect(empty.get('time')).toBe('1700000000.000');
    const given = new FormParams('time=2024-01-01T00:00:00Z');
    pinEvaluationTime(given, 1_700_000_000_000);
    expect(given.getAll('time')).toEqual(['2024-01-01T00:00:00Z']);
  });
});
