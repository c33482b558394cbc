import { describe, expect, it } from 'vitest';
import { RewriteCache } from '../../src/rewrite/cache.ts';

describe('RewriteCache', () => {
  it('evicts the least recently used entry', () => {
    const c = new RewriteCache(2);
    c.set('a', '1');
    c.set('b', '2');
    expect(c.get('a')).toBe('1'); // a is now most recent
    c.set('c', '3');
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe('1');
    expect(c.get('c')).toBe('3');
    expect(c.size).toBe(2);
  });

  it('bounds total characters and skips oversized entries', () => {
    const c = new RewriteCache(100, 10, 6);
    c.set('k1', 'vvvv'); // 6 chars
    expect(c.chars).toBe(6);
    c.set('k2', 'vvvv'); // 12 > 10: evicts k1
    expect(c.get('k1')).toBeUndefined();
    expect(c.get('k2')).toBe('vvvv');
    c.set('big', 'vvvvvvv'); // 10 > 6 per entry: not stored
    expect(c.get('big')).toBeUndefined();
    c.set('k2', 'v'); // replacing updates the accounting
    expect(c.chars).toBe(3);
    c.clear();
    expect(c.size).toBe(0);
    expect(c.chars).toBe(0);
  });

  it('a zero-size cache stores nothing', () => {
    const c = new RewriteCache(0);
    c.set('a', 'b');
    expect(c.get('a')).toBeUndefined();
  });
});
