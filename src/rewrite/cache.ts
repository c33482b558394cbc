import { isStale } from '../util/lru.ts';
import type { RewriteLimits } from './rewriter.ts';

/** A cached rewrite: a query, or the selectors one `match[]` parameter (or none) became. */
type Rewritten = string | readonly string[];

const charsOf = (v: Rewritten): number => (typeof v === 'string' ? v.length : v.reduce((n, s) => n + s.length + 1, 0));

/**
 * A bounded LRU of successful rewrites, keyed by (policy key, limits, query),
 * and of `match[]` parameters' selector lists. Dashboards re-send the same
 * query text on every refresh, and Grafana's label and series lookups the same
 * selectors, so most rewrites are a map lookup. Only results that passed
 * verification are stored. Both the number of entries and the total
 * characters held are bounded, and one oversized entry is simply not cached.
 */
export class RewriteCache {
  readonly #maxEntries: number;
  readonly #maxChars: number;
  readonly #maxEntryChars: number;
  readonly #map = new Map<string, { value: Rewritten; tick: number }>();
  #tick = 0;
  #chars = 0;
  /** Lookups answered from / missing in the cache, for the metrics endpoint. */
  hits = 0;
  misses = 0;

  constructor(maxEntries = 2048, maxChars = 4 * 1024 * 1024, maxEntryChars = 32 * 1024) {
    this.#maxEntries = Math.max(0, Math.floor(maxEntries));
    this.#maxChars = maxChars;
    this.#maxEntryChars = maxEntryChars;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Total characters held (keys + values). */
  get chars(): number {
    return this.#chars;
  }

  get(key: string): Rewritten | undefined {
    const e = this.#map.get(key);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    // Hot entries in the newer half stay where they are (src/util/lru.ts).
    if (isStale(this.#tick, e.tick, this.#maxEntries)) {
      this.#map.delete(key);
      e.tick = ++this.#tick;
      this.#map.set(key, e);
    }
    this.hits++;
    return e.value;
  }

  set(key: string, value: Rewritten): void {
    const size = key.length + charsOf(value);
    if (this.#maxEntries === 0 || size > this.#maxEntryChars) return;
    const old = this.#map.get(key);
    if (old !== undefined) {
      this.#map.delete(key);
      this.#chars -= key.length + charsOf(old.value);
    }
    this.#map.set(key, { value, tick: ++this.#tick });
    this.#chars += size;
    while (this.#map.size > this.#maxEntries || this.#chars > this.#maxChars) {
      const oldest = this.#map.keys().next();
      if (oldest.done === true) break;
      const k = oldest.value;
      const v = this.#map.get(k)?.value ?? '';
      this.#map.delete(k);
      this.#chars -= k.length + charsOf(v);
    }
  }

  clear(): void {
    this.#map.clear();
    this.#chars = 0;
  }

  /**
   * The cached rewrite of `query` under a prepared policy and limits, else
   * `rewrite()` (which verifies its output before returning it), stored.
   */
  through(policyKey: string, limits: RewriteLimits, query: string, rewrite: () => string): string {
    const key = `q\u0000${policyKey}\u0000${limits.maxQueryLength}\u0000${limits.maxDepth}\u0000${query}`;
    const hit = this.get(key);
    if (typeof hit === 'string') return hit;
    const out = rewrite();
    this.set(key, out);
    return out;
  }

  /**
   * The cached selectors of one `match[]` parameter (`undefined`: the
   * selectors that stand for no parameter) under a prepared policy and
   * limits; on a miss, what `build` adds, each selector kept once and only
   * after `verify` accepted it, stored.
   */
  throughSelectors(
    policyKey: string,
    limits: RewriteLimits,
    param: string | undefined,
    verify: (selector: string) => void,
    build: (add: (selector: string) => void) => void,
  ): readonly string[] {
    const key = `${param === undefined ? 'n' : 'm'}\u0000${policyKey}\u0000${limits.maxQueryLength}\u0000${limits.maxDepth}\u0000${param ?? ''}`;
    const hit = this.get(key);
    if (hit !== undefined && typeof hit !== 'string') return hit;
    const out = new VerifiedSelectors(verify);
    build((selector) => out.add(selector));
    const list = Object.freeze(out.list);
    this.set(key, list);
    return list;
  }
}

/**
 * The union of `match[]` parameters' selector lists as the backend takes it:
 * each selector once, in order of first appearance.
 */
export function unionOfSelectors(lists: Iterable<readonly string[]>): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const list of lists) {
    for (const s of list) {
      if (seen.has(s)) continue;
      seen.add(s);
      out.push(s);
    }
  }
  return out;
}

/**
 * Selectors for a `match[]`-style parameter: each kept once, in order, and
 * only after `verify` accepted it.
 */
class VerifiedSelectors {
  readonly list: string[] = [];
  readonly #seen = new Set<string>();
  readonly #verify: (selector: string) => void;

  constructor(verify: (selector: string) => void) {
    this.#verify = verify;
  }

  add(selector: string): void {
    if (this.#seen.has(selector)) return;
    this.#seen.add(selector);
    this.#verify(selector);
    this.list.push(selector);
  }
}

/** The rewriters' caches by language, so the metrics endpoint can report them. */
export const REWRITE_CACHES = new Map<string, RewriteCache>();

export function registerRewriteCache(language: string, cache: RewriteCache): RewriteCache {
  REWRITE_CACHES.set(language, cache);
  return cache;
}
