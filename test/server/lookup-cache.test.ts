// LookupCache: route lookup answers kept per key for a while, shared by
// requests that miss together, never kept when the lookup failed.
import { describe, expect, it } from 'vitest';
import { LookupCache } from '../../src/server/lookup-cache.ts';

const deferred = <T>() => {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

describe('LookupCache', () => {
  it('keeps an answer for maxAgeMs, then asks again', async () => {
    let now = 1_000;
    const cache = new LookupCache(16, () => now);
    let asked = 0;
    const load = async () => ({ data: [`n${++asked}`] });
    expect(await cache.get('k', 30_000, load)).toEqual({ data: ['n1'] });
    now += 29_999;
    expect(await cache.get('k', 30_000, load)).toEqual({ data: ['n1'] });
    now += 1;
    expect(await cache.get('k', 30_000, load)).toEqual({ data: ['n2'] });
    expect(asked).toBe(2);
  });

  it('keys do not share answers', async () => {
    const cache = new LookupCache();
    expect(await cache.get('a', 1000, async () => 'A')).toBe('A');
    expect(await cache.get('b', 1000, async () => 'B')).toBe('B');
    expect(await cache.get('a', 1000, async () => 'other')).toBe('A');
  });

  it('requests that miss at the same time share one load', async () => {
    const cache = new LookupCache();
    const d = deferred<unknown>();
    let asked = 0;
    const load = () => (asked++, d.promise);
    const all = Promise.all([cache.get('k', 1000, load), cache.get('k', 1000, load), cache.get('k', 1000, load)]);
    d.resolve(['x']);
    expect(await all).toEqual([['x'], ['x'], ['x']]);
    expect(asked).toBe(1);
  });

  it('a failure reaches every waiting request and is not kept', async () => {
    const cache = new LookupCache();
    const d = deferred<unknown>();
    const first = cache.get('k', 1000, () => d.promise);
    const second = cache.get('k', 1000, () => Promise.resolve('not asked'));
    d.reject(new Error('upstream down'));
    await expect(first).rejects.toThrow('upstream down');
    await expect(second).rejects.toThrow('upstream down');
    expect(await cache.get('k', 1000, async () => 'fresh')).toBe('fresh');
  });

  it('answers are frozen all the way down (many requests read one)', async () => {
    const cache = new LookupCache();
    const answer = (await cache.get('k', 1000, async () => ({ status: 'success', data: ['a', { b: [1] }] }))) as { data: [string, { b: number[] }] };
    expect(Object.isFrozen(answer)).toBe(true);
    expect(Object.isFrozen(answer.data)).toBe(true);
    expect(Object.isFrozen(answer.data[1].b)).toBe(true);
  });

  it('clear forgets kept answers, and an answer loading across a clear is not kept', async () => {
    const cache = new LookupCache();
    await cache.get('k', 1000, async () => 'old');
    const d = deferred<unknown>();
    const loading = cache.get('j', 1000, () => d.promise);
    cache.clear();
    d.resolve('from before');
    expect(await loading).toBe('from before');
    expect(await cache.get('k', 1000, async () => 'new')).toBe('new');
    expect(await cache.get('j', 1000, async () => 'new j')).toBe('new j');
  });

  it('a maxAgeMs of 0 keeps nothing', async () => {
    const cache = new LookupCache();
    await cache.get('k', 0, async () => 1);
    expect(await cache.get('k', 0, async () => 2)).toBe(2);
  });
});
