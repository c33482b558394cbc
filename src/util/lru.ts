/**
 * A small bounded LRU map with per-entry expiry. Map iteration order is
 * insertion order, so re-inserting on hit keeps recency; the oldest key is first.
 */
export class LruCache<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, { value: V; expiresAt: number }>();
  readonly #now: () => number;
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

  get(key: K): V | undefined {
    const e = this.#map.get(key);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    if (e.expiresAt <= this.#now()) {
      this.#map.delete(key);
      this.misses++;
      return undefined;
    }
    this.#map.delete(key);
    this.#map.set(key, e);
    this.hits++;
    return e.value;
  }

  /** `ttlMs` ≤ 0 stores nothing. */
  set(key: K, value: V, ttlMs = Number.POSITIVE_INFINITY): void {
    if (!(ttlMs > 0)) return;
    this.#map.delete(key);
    this.#map.set(key, { value, expiresAt: this.#now() + ttlMs });
    while (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next().value as K;
      this.#map.delete(oldest);
    }
  }

  clear(): void {
    this.#map.clear();
  }
}
