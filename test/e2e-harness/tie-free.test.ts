// The tie-free parts of a query that the generative isolation oracle compares before it calls a
// difference a topk/bottomk/limitk tie (e2e/isolation/generative/oracle.ts, onlyTieChoice).
import { describe, expect, it } from 'vitest';
import { KEEP_ALL, tieFree, tieIndependentQueries, vectorSelectors } from '../../e2e/isolation/generative/tie-free.ts';

describe('tieFree', () => {
  it('replaces every k by 0 and by KEEP_ALL, and lists each call\'s vector argument', () => {
    const q = '(stddev by (job, pod) (topk by (pod) (3, group without (__name__, instance) (http_requests_total)))) or (http_requests_total{namespace=~"platform|team-b-api"})';
    expect(tieFree(q)).toEqual({
      none: '(stddev by (job, pod) (topk by (pod) (0, group without (__name__, instance) (http_requests_total)))) or (http_requests_total{namespace=~"platform|team-b-api"})',
      all: `(stddev by (job, pod) (topk by (pod) (${KEEP_ALL}, group without (__name__, instance) (http_requests_total)))) or (http_requests_total{namespace=~"platform|team-b-api"})`,
      args: ['group without (__name__, instance) (http_requests_total)'],
    });
  });

  it('bottomk, limitk, modifiers after the arguments, nested calls, a k that is an expression', () => {
    expect(tieFree('bottomk(2, x) by (a) + limitk(1 + 1, LIMITK(5, y))')).toEqual({
      none: 'bottomk(0, x) by (a) + limitk(0, LIMITK(0, y))',
      all: `bottomk(${KEEP_ALL}, x) by (a) + limitk(${KEEP_ALL}, LIMITK(${KEEP_ALL}, y))`,
      args: ['x', 'LIMITK(5, y)', 'y'],
    });
    // A call inside another call's k goes with the outer k; its argument is still compared.
    expect(tieFree('topk(scalar(topk(1, x)), y)')).toEqual({ none: 'topk(0, y)', all: `topk(${KEEP_ALL}, y)`, args: ['y', 'x'] });
  });

  it('reads Prometheus spellings lezer-promql lags on, and slices the query as written (seed 2175)', () => {
    const q = 'min (bottomk (3, topk ((5. ^ 2), x{a!="b"}))) by (m) + integral(y[5m]) * 0X1f';
    expect(tieFree(q)).toEqual({
      none: 'min (bottomk (0, topk (0, x{a!="b"}))) by (m) + integral(y[5m]) * 0X1f',
      all: `min (bottomk (${KEEP_ALL}, topk (${KEEP_ALL}, x{a!="b"}))) by (m) + integral(y[5m]) * 0X1f`,
      args: ['topk ((5. ^ 2), x{a!="b"})', 'x{a!="b"}'],
    });
    expect(vectorSelectors(q)).toEqual(['x{a!="b"}', 'y']);
  });

  it('null without topk/bottomk/limitk, or when the query does not parse', () => {
    expect(tieFree('sum(x) or quantile(0.5, y)')).toBeNull();
    expect(tieFree('topk(3, x')).toBeNull();
    expect(tieFree('topk(3)')).toBeNull();
  });
});

describe('tieIndependentQueries', () => {
  it('a call without nested calls: all kept, none kept, its argument', () => {
    expect(tieIndependentQueries('count(topk(3, x))')?.sort()).toEqual(['count(topk(0, x))', `count(topk(${KEEP_ALL}, x))`, 'x'].sort());
  });

  it('an argument that holds a call is replaced by its own tie-independent queries, never compared as it is', () => {
    // Seed 2036 of the generative oracle: bottomk's choice among equal values decides the outer topk's groups.
    const q = 'topk without (code) (1, bottomk(3, delta(x[1h])))';
    const got = tieIndependentQueries(q);
    expect(got?.sort()).toEqual(
      [`topk without (code) (${KEEP_ALL}, bottomk(${KEEP_ALL}, delta(x[1h])))`, 'topk without (code) (0, bottomk(0, delta(x[1h])))', `bottomk(${KEEP_ALL}, delta(x[1h]))`, 'bottomk(0, delta(x[1h]))', 'delta(x[1h])'].sort(),
    );
    expect(got).not.toContain('bottomk(3, delta(x[1h]))');
  });

  it('null where tieFree is', () => {
    expect(tieIndependentQueries('sum(x)')).toBeNull();
  });
});

describe('vectorSelectors', () => {
  it('every vector selector once, as written, without its range, offset or @', () => {
    const q = 'sum(rate(x{a="b"}[5m] offset 1m)) + on(job) y @ 100 unless topk(3, x{a="b"}) or {__name__=~"http_.*", namespace!~"pla\\u0074.*"}';
    expect(vectorSelectors(q)).toEqual(['x{a="b"}', 'y', '{__name__=~"http_.*", namespace!~"pla\\u0074.*"}']);
  });

  it('selectors inside subqueries and function arguments; null when the query does not parse', () => {
    expect(vectorSelectors('double_exponential_smoothing((topk(3, bottomk(2, x)))[10m:], 0.5, 0.5)')).toEqual(['x']);
    expect(vectorSelectors('sum(x')).toBeNull();
  });
});
