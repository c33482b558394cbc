import fc from 'fast-check';
import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BoundHistogram } from '../../src/server/histogram.ts';

const BUCKETS = [0.001, 0.005, 0.01, 0.1, 1, 10];
// Label values that the text format must escape, and observations on, between and past the bounds.
const labelValue = fc.oneof(fc.constantFrom('metrics', 'query_range', 'a"b', 'c\\d', 'e\nf', ''), fc.string({ maxLength: 6 }));
const value = fc.oneof(fc.constantFrom(0, ...BUCKETS, 100), fc.double({ min: 0, max: 50, noNaN: true }));
const observations = fc.array(fc.record({ upstream: labelValue, endpoint: labelValue, value }), { maxLength: 60 });

function both() {
  const registry = new Registry();
  const theirs = new Histogram({ name: 'h_seconds', help: 'help "text"\\', labelNames: ['upstream', 'endpoint'] as const, buckets: BUCKETS, registers: [registry] });
  const mineRegistry = new Registry();
  const mine = new BoundHistogram({ name: 'h_seconds', help: 'help "text"\\', labelNames: ['upstream', 'endpoint'] as const, buckets: BUCKETS, registers: [mineRegistry] });
  return { registry, theirs, mineRegistry, mine };
}

describe('BoundHistogram', () => {
  it('exports what prom-client’s Histogram exports for the same observations (text and JSON)', async () => {
    await fc.assert(
      fc.asyncProperty(observations, async (obs) => {
        const { registry, theirs, mineRegistry, mine } = both();
        for (const o of obs) {
          theirs.observe({ upstream: o.upstream, endpoint: o.endpoint }, o.value);
          // A fresh child for some, the same one for others: both must land in one series.
          mine.child({ upstream: o.upstream, endpoint: o.endpoint }).observe(o.value);
        }
        expect(await mineRegistry.metrics()).toBe(await registry.metrics());
        expect(await mineRegistry.getMetricsAsJSON()).toEqual(await registry.getMetricsAsJSON());
      }),
      { numRuns: 200 },
    );
  });

  it('merges across cluster workers like prom-client’s histogram', async () => {
    const { registry, theirs, mineRegistry, mine } = both();
    const a = mine.child({ upstream: 'm', endpoint: 'query' });
    for (const v of [0.002, 0.2, 3]) {
      a.observe(v);
      theirs.observe({ upstream: 'm', endpoint: 'query' }, v);
    }
    const mineJson = await mineRegistry.getMetricsAsJSON();
    const theirJson = await registry.getMetricsAsJSON();
    const merged = (json: typeof mineJson) => AggregatorRegistry.aggregate([json, json]).metrics();
    expect(await merged(mineJson)).toBe(await merged(theirJson));
    expect(await merged(mineJson)).toContain('h_seconds_count{upstream="m",endpoint="query"} 6');
  });

  it('a child bound before reset() keeps counting into a fresh series', async () => {
    const { mineRegistry, mine } = both();
    const c = mine.child({ upstream: 'm', endpoint: 'q' });
    c.observe(0.5);
    mineRegistry.resetMetrics();
    expect(await mineRegistry.metrics()).not.toContain('h_seconds_count');
    c.observe(0.5);
    expect(await mineRegistry.metrics()).toContain('h_seconds_count{upstream="m",endpoint="q"} 1');
  });

  it('refuses what prom-client refuses: non-finite values, unknown or missing labels, le', () => {
    const { mine } = both();
    const c = mine.child({ upstream: 'm', endpoint: 'q' });
    expect(() => c.observe(Number.NaN)).toThrow(TypeError);
    expect(() => c.observe(Number.POSITIVE_INFINITY)).toThrow(TypeError);
    expect(() => mine.child({ upstream: 'm' } as never)).toThrow(/missing/);
    expect(() => mine.child({ upstream: 'm', endpoint: 'q', extra: 'x' } as never)).toThrow(/unknown label/);
    expect(() => new BoundHistogram({ name: 'x', help: 'x', labelNames: ['le'], buckets: [1], registers: [] })).toThrow(/label name/);
    expect(() => new BoundHistogram({ name: 'x', help: 'x', labelNames: [], buckets: [2, 1], registers: [] })).toThrow(/increase/);
  });
});
