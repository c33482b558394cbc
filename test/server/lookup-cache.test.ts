// LookupCache: route lookup answers kept per key for a while, shared by
// requests that miss together, never kept when the lookup failed, bounded by
// the answers' bytes.
import { describe, expect, it } from 'vitest';
import { LookupCache, type LoadedAnswer } from '../../src/server/lookup-cache.ts';

const deferred = <T>() => {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

/** A load answering `value`, of `bytes` on the wire. */
const answer = (value: unknown, bytes = 10) => async (): Promise<LoadedAnswer> => ({ value, bytes });

describe('LookupCache', () => {
  it('keeps an answer for maxAgeMs, then asks again', async () => {
    let now = 1_000;
    const cache = new LookupCache(1 << 20, () => now);
    let asked = 0;
    const load = async () => ({ value: { data: [`n${++asked}`] }, bytes: 20 });
    expect(await cache.get('k', 30_000, load)).toEqual({ data: ['n1'] });
    now += 29_999;
    expect(await cache.get('k', 30_000, load)).toEqual({ data: ['n1'] });
    now += 1;
    expect(await cache.get('k', 30_000, load)).toEqual({ data: ['n2'] });
    expect(asked).toBe(2);
  });

  it('keys do not share answers', async () => {
    const cache = new LookupCache();
    expect(await cache.get('a', 1000, answer('A'))).toBe('A');
    expect(await cache.get('b', 1000, answer('B'))).toBe('B');
    expect(await cache.get('a', 1000, answer('other'))).toBe('A');
  });

  it('requests that miss at the same time share one load', async () => {
    const cache = new LookupCache();
    const d = deferred<LoadedAnswer>();
    let asked = 0;
    const load = () => (asked++, d.promise);
    const all = Promise.all([cache.get('k', 1000, load), cache.get('k', 1000, load), cache.get('k', 1000, load)]);
    d.resolve({ value: ['x'], bytes: 5 });
    expect(await all).toEqual([['x'], ['x'], ['x']]);
    expect(asked).toBe(1);
  });

  it('a failure reaches every waiting request and is not kept', async () => {
    const cache = new LookupCache();
    const d = deferred<LoadedAnswer>();
    const first = cache.get('k', 1000, () => d.promise);
    const second = cache.get('k', 1000, answer('not asked'));
    d.reject(new Error('upstream down'));
    await expect(first).rejects.toThrow('upstream down');
    await expect(second).rejects.toThrow('upstream down');
    expect(await cache.get('k', 1000, answer('fresh'))).toBe('fresh');
  });

  it('answers are frozen all the way down (many requests read one)', async () => {
    const cache = new LookupCache();
    const got = (await cache.get('k', 1000, answer({ status: 'success', data: ['a', { b: [1] }] }))) as { data: [string, { b: number[] }] };
    expect(Object.isFrozen(got)).toBe(true);
    expect(Object.isFrozen(got.data)).toBe(true);
    expect(Object.isFrozen(got.data[1].b)).toBe(true);
  });

  it('clear forgets kept answers, and an answer loading across a clear is not kept', async () => {
    const cache = new LookupCache();
    await cache.get('k', 1000, answer('old'));
    const d = deferred<LoadedAnswer>();
    const loading = cache.get('j', 1000, () => d.promise);
    cache.clear();
    d.resolve({ value: 'from before', bytes: 5 });
    expect(await loading).toBe('from before');
    expect(await cache.get('k', 1000, answer('new'))).toBe('new');
    expect(await cache.get('j', 1000, answer('new j'))).toBe('new j');
  });

  it('a maxAgeMs of 0 keeps nothing', async () => {
    const cache = new LookupCache();
    await cache.get('k', 0, answer(1));
    expect(await cache.get('k', 0, answer(2))).toBe(2);
    expect(cache.size).toBe(0);
  });

  it('stays within its byte budget: the oldest answers go first, one over a quarter of it is not kept', async () => {
    const cache = new LookupCache(1000);
    for (const k of ['a', 'b', 'c', 'd']) await cache.get(k, 60_000, answer(k, 250));
    expect(cache.bytes).toBe(1000);
    await cache.get('e', 60_000, answer('e', 250));
    expect(cache.bytes).toBe(1000);
    expect(await cache.get('a', 60_000, answer('a again', 250))).toBe('a again'); // 'a' was evicted (and 'b' now, for it)
    expect(await cache.get('e', 60_000, answer('not asked', 250))).toBe('e');
    await cache.get('big', 60_000, answer('big', 251));
    expect(await cache.get('big', 60_000, answer('big again', 251))).toBe('big again');
    expect(cache.bytes).toBeLessThanOrEqual(1000);
  });

  it('drops expired answers when another is added, not only when their key is asked again', async () => {
    let now = 0;
    const cache = new LookupCache(1 << 20, () => now);
    for (let i = 0; i < 50; i++) await cache.get(`policy-${i}`, 30_000, answer(i, 1000));
    expect(cache.bytes).toBe(50_000);
    now += 30_000;
    await cache.get('another', 30_000, answer('x', 1000));
    expect(cache.size).toBe(1);
    expect(cache.bytes).toBe(1000);
  });
});
