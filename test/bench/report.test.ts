// bench/lib/report.ts upperMedian: the median the round-based CPU benchmarks report (cpu, ab,
// cluster-cpu, soak) is always one measured round (the upper middle one), never an average.
import { describe, expect, it } from 'vitest';
import { upperMedian } from '../../bench/lib/report.ts';

describe('upperMedian', () => {
  it('is the middle round of an odd count, in numeric (not string) order', () => {
    expect(upperMedian([107, 9, 98, 100, 12])).toBe(98);
  });

  it('is the upper of the two middle rounds of an even count', () => {
    expect(upperMedian([4, 1, 3, 2])).toBe(3);
  });

  it('leaves its input in the order the rounds ran, and is NaN for no rounds', () => {
    const rounds = [3, 1, 2];
    upperMedian(rounds);
    expect(rounds).toEqual([3, 1, 2]);
    expect(upperMedian([])).toBeNaN();
  });
});
