import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isStale, LruCache } from '../../src/util/lru.ts';

describe('LruCache', () => {
  it('evicts the least recently used entry: a hit in the older half moves it to the end', () => {
    const c = new LruCache<string, number>(4);
    for (const [i, k] of ['a', 'b', 'c', 'd'].entries()) c.set(k, i);
    expect(c.get('a')).toBe(0);
    c.set('e', 4);
    expect(c.get('b')).toBeUndefined();
    expect([c.get('a'), c.get('c'), c.get('d'), c.get('e')]).toEqual([0, 2, 3, 4]);
  });

  it('a value computed before a clear (set with an older generation) is not stored', () => {
    const c = new LruCache<string, number>(4);
    const since = c.generation;
    c.set('a', 1, 1000, since);
    expect(c.get('a')).toBe(1);
    const before = c.generation;
    c.clear();
    c.set('b', 2, 1000, before);
    expect(c.get('b')).toBeUndefined();
    c.set('b', 3, 1000, c.generation);
    c.set('c', 4);
    expect([c.get('b'), c.get('c')]).toEqual([3, 4]);
  });

  it('expires entries after their ttl and stores nothing for a ttl ≤ 0', () => {
    let now = 1000;
    const c = new LruCache<string, number>(4, () => now);
    c.set('a', 1, 50);
    c.set('b', 2, 0);
    expect(c.get('a')).toBe(1);
    expect(c.get('b')).toBeUndefined();
    now += 50;
    expect(c.get('a')).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('never holds more than max entries', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 }), fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 40 })), { maxLength: 300 }), (max, ops) => {
        const c = new LruCache<number, number>(max);
        for (const [isSet, k] of ops) {
          if (isSet) c.set(k, k);
          else c.get(k);
          expect(c.size).toBeLessThanOrEqual(max);
        }
      }),
    );
  });

  it('a key just read survives at least max/2 insertions of new keys', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 32 }), fc.array(fc.integer({ min: 0, max: 63 }), { maxLength: 100 }), fc.nat(), (max, keys, pick) => {
        const c = new LruCache<number, number>(max);
        for (const k of keys) c.set(k, k);
        const present = [...new Set(keys)].filter((k) => c.get(k) !== undefined);
        if (present.length === 0) return;
        const k = present[pick % present.length]!;
        expect(c.get(k)).toBe(k);
        for (let i = 0; i < Math.floor(max / 2); i++) c.set(1000 + i, i);
        expect(c.get(k)).toBe(k);
      }),
    );
  });
});

describe('isStale', () => {
  it('is true from max/2 moves on', () => {
    expect(isStale(10, 9, 4)).toBe(false);
    expect(isStale(10, 8, 4)).toBe(true);
    expect(isStale(5, 5, 1)).toBe(false);
    expect(isStale(6, 5, 1)).toBe(true);
  });
});
