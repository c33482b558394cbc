/**
 * A bounded LRU of successful rewrites, keyed by (policy key, limits, query).
 * Dashboards re-send the same query text on every refresh, so most rewrites
 * are a map lookup. Only results that passed verification are stored; the
 * entry count and the size of one entry are both bounded.
 */
export class RewriteCache {
  readonly #max: number;
  readonly #maxKeyLength: number;
  readonly #map = new Map<string, string>();

  constructor(maxEntries = 2048, maxKeyLength = 16 * 1024) {
    this.#max = Math.max(0, Math.floor(maxEntries));
    this.#maxKeyLength = maxKeyLength;
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: string): string | undefined {
    const v = this.#map.get(key);
    if (v !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, v);
    }
    return v;
  }

  set(key: string, value: string): void {
    if (this.#max === 0 || key.length > this.#maxKeyLength) return;
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next().value;
      if (oldest !== undefined) this.#map.delete(oldest);
    }
  }

  clear(): void {
    this.#map.clear();
  }
}
