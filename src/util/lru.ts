/**
 * A small bounded LRU map with per-entry expiry. Map iteration order is
 * insertion order, so re-inserting on hit keeps recency; the oldest key is first.
 * A hit re-inserts only an entry in the older half of the order (see
 * `isStale`): a hot entry is not moved on every request, and no entry hit
 * while in the older half is evicted before one that was not.
 */
export class LruCache<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, { value: V; expiresAt: number; tick: number }>();
  /** Insertions and re-insertions so far: an entry's `tick` is when it last moved to the end. */
  #tick = 0;
  readonly #now: () => number;
  #generation = 0;
  hits = 0;
  misses = 0;

  constructor(max: number, now: () => number = Date.now) {
    if (!(max > 0)) throw new RangeError('LruCache size must be positive');
    this.#max = max;
    this.#now = now;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Bumped by `clear`. Read it before computing a value; `set(…, since)` drops a value computed before a clear. */
  get generation(): number {
    return this.#generation;
  }

  get(key: K): V | undefined {
    return this.#lookup(key, true);
  }

  /** Like `get`, but a miss is not counted: for a caller that asks `get` next when this misses. */
  peek(key: K): V | undefined {
    return this.#lookup(key, false);
  }

  #lookup(key: K, countMiss: boolean): V | undefined {
    const e = this.#map.get(key);
    if (e === undefined) {
      if (countMiss) this.misses++;
      return undefined;
    }
    if (e.expiresAt <= this.#now()) {
      this.#map.delete(key);
      if (countMiss) this.misses++;
      return undefined;
    }
    if (isStale(this.#tick, e.tick, this.#max)) {
      this.#map.delete(key);
      e.tick = ++this.#tick;
      this.#map.set(key, e);
    }
    this.hits++;
    return e.value;
  }

  /** `ttlMs` ≤ 0 stores nothing; nor does a `since` (a `generation` read earlier) from before the last `clear`. */
  set(key: K, value: V, ttlMs = Number.POSITIVE_INFINITY, since?: number): void {
    if (!(ttlMs > 0) || (since !== undefined && since !== this.#generation)) return;
    this.#map.delete(key);
    this.#map.set(key, { value, expiresAt: this.#now() + ttlMs, tick: ++this.#tick });
    while (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next().value as K;
      this.#map.delete(oldest);
    }
  }

  clear(): void {
    this.#map.clear();
    this.#generation++;
  }
}

/**
 * Whether an entry that last moved at `entryTick` may be in the older half of
 * a cache of `max` entries: fewer than max/2 moves since then leave it in the
 * newer half, so moving it again would change nothing an eviction can see soon.
 */
export function isStale(nowTick: number, entryTick: number, max: number): boolean {
  return 2 * (nowTick - entryTick) >= max;
}
