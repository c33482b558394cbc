import fc from 'fast-check';
import { AggregatorRegistry, Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { TalliedCounter } from '../../src/server/tally.ts';

// Label values the text format must escape, values that would collide under a naive join, and arbitrary ones.
const labelValue = fc.oneof(fc.constantFrom('metrics', 'query_range', 'a"b', 'c\\d', 'e\nf', '', 'a\u0000', '1:a', 'a1:'), fc.string({ maxLength: 6 }));
// Labels may be left out (a series without them), which must not collide with any value.
const increments = fc.array(fc.record({ upstream: labelValue, status: labelValue }, { requiredKeys: ['upstream'] }), { maxLength: 80 });

function both() {
  const registry = new Registry();
  const theirs = new Counter({ name: 'c_total', help: 'help "text"\\', labelNames: ['upstream', 'status'] as const, registers: [registry] });
  const mineRegistry = new Registry();
  const mine = new TalliedCounter({ name: 'c_total', help: 'help "text"\\', labelNames: ['upstream', 'status'] as const, registers: [mineRegistry] });
  return { registry, theirs, mineRegistry, mine };
}

describe('TalliedCounter', () => {
  it('exports what prom-client’s Counter exports for the same increments (text and JSON), scrape after scrape', async () => {
    await fc.assert(
      fc.asyncProperty(increments, increments, async (first, second) => {
        const { registry, theirs, mineRegistry, mine } = both();
        for (const batch of [first, second]) {
          for (const o of batch) {
            theirs.inc(o);
            mine.inc(o as { upstream: string; status: string }); // a label left out, as prom-client allows
          }
          expect(await mineRegistry.metrics()).toBe(await registry.metrics());
          expect(await mineRegistry.getMetricsAsJSON()).toEqual(await registry.getMetricsAsJSON());
        }
      }),
      { numRuns: 200 },
    );
  });

  it('merges across cluster workers like prom-client’s Counter', async () => {
    const { registry, theirs, mineRegistry, mine } = both();
    for (let i = 0; i < 3; i++) {
      theirs.inc({ upstream: 'm', status: '200' });
      mine.inc({ upstream: 'm', status: '200' });
    }
    const merged = async (r: Registry) => {
      const json = await r.getMetricsAsJSON();
      return AggregatorRegistry.aggregate([json, json]).metrics();
    };
    expect(await merged(mineRegistry)).toBe(await merged(registry));
    expect(await merged(mineRegistry)).toContain('c_total{upstream="m",status="200"} 6');
  });

  it('is zeroed by registry.resetMetrics(), as a Counter is', async () => {
    const { mineRegistry, mine } = both();
    mine.inc({ upstream: 'm', status: '200' });
    mineRegistry.resetMetrics();
    expect(await mineRegistry.metrics()).not.toContain('c_total{');
    mine.inc({ upstream: 'm', status: '500' });
    const text = await mineRegistry.metrics();
    expect(text).toContain('c_total{upstream="m",status="500"} 1');
    expect(text).not.toContain('status="200"');
  });

  it('refuses a label prom-client would refuse', () => {
    const { mine } = both();
    expect(() => mine.inc({ upstream: 'm', status: '200', extra: 'x' } as never)).toThrow(/not included/);
  });
});
