import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RewriteCache, type RewriteKind } from '../../src/rewrite/cache.ts';
import type { RewriteLimits } from '../../src/rewrite/rewriter.ts';

const L: RewriteLimits = { maxQueryLength: 1000, maxDepth: 10 };

describe('RewriteCache', () => {
  it('evicts the least recently used text', () => {
    const c = new RewriteCache(2);
    c.set('query', 'p', L, 'a', '1');
    c.set('query', 'p', L, 'b', '2');
    expect(c.get('query', 'p', L, 'a')).toBe('1'); // a is now most recent
    c.set('query', 'p', L, 'c', '3');
    expect(c.get('query', 'p', L, 'b')).toBeUndefined();
    expect(c.get('query', 'p', L, 'a')).toBe('1');
    expect(c.get('query', 'p', L, 'c')).toBe('3');
    expect(c.size).toBe(2);
  });

  it('bounds total characters and skips oversized entries', () => {
    // An entry's characters: text + policy key + value.
    const c = new RewriteCache(100, 12, 7);
    c.set('query', 'p', L, 'k1', 'vvvv'); // 7 chars
    expect(c.chars).toBe(7);
    c.set('query', 'p', L, 'k2', 'vvvv'); // 14 > 12: evicts k1
    expect(c.get('query', 'p', L, 'k1')).toBeUndefined();
    expect(c.get('query', 'p', L, 'k2')).toBe('vvvv');
    c.set('query', 'p', L, 'big', 'vvvvvvv'); // 11 > 7 per entry: not stored
    expect(c.get('query', 'p', L, 'big')).toBeUndefined();
    c.set('query', 'p', L, 'k2', 'v'); // replacing updates the accounting
    expect(c.chars).toBe(4);
    c.clear();
    expect(c.size).toBe(0);
    expect(c.chars).toBe(0);
  });

  it('a text evicted takes all its entries (every kind and policy) out of the accounting', () => {
    const c = new RewriteCache(3);
    c.set('query', 'p1', L, 'up', 'a');
    c.set('query', 'p2', L, 'up', 'b');
    c.set('param', 'p1', L, 'up', ['c']);
    expect(c.size).toBe(3);
    c.set('query', 'p1', L, 'x', 'd'); // 4 entries > 3: the text "up" goes
    expect(c.size).toBe(1);
    expect(c.chars).toBe('x'.length + 'p1'.length + 1);
    expect(c.get('query', 'p2', L, 'up')).toBeUndefined();
  });

  it('a zero-size cache stores nothing', () => {
    const c = new RewriteCache(0);
    c.set('query', 'p', L, 'a', 'b');
    expect(c.get('query', 'p', L, 'a')).toBeUndefined();
  });

  it('never answers with what was stored under another kind, policy, limits or text (model check)', () => {
    const kind = fc.constantFrom<RewriteKind>('query', 'param', 'noParam');
    const policy = fc.constantFrom('[["namespace","=","a"]]', '[["namespace","=","b"]]', '[["namespace","=","a"]');
    const limits = fc.constantFrom<RewriteLimits>(L, { maxQueryLength: 1000, maxDepth: 11 }, { maxQueryLength: 999, maxDepth: 10 });
    const text = fc.constantFrom('', 'up', 'up ', 'rate(x[5m])', 'Up');
    const op = fc.record({ set: fc.boolean(), kind, policy, limits, text, value: fc.string({ maxLength: 6 }) });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.integer({ min: 1, max: 6 }), (ops, max) => {
        const c = new RewriteCache(max);
        const model = new Map<string, string>();
        const keyOf = (o: (typeof ops)[number]) => JSON.stringify([o.kind, o.policy, o.limits.maxQueryLength, o.limits.maxDepth, o.text]);
        for (const o of ops) {
          if (o.set) {
            c.set(o.kind, o.policy, o.limits, o.text, o.value);
            model.set(keyOf(o), o.value);
          } else {
            const got = c.get(o.kind, o.policy, o.limits, o.text);
            // A miss is always allowed (eviction); a hit must be the last value stored under exactly this key.
            if (got !== undefined) expect(got).toBe(model.get(keyOf(o)));
          }
          expect(c.size).toBeLessThanOrEqual(max);
        }
      }),
    );
  });
});
