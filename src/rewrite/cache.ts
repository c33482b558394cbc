import { isStale } from '../util/lru.ts';
import type { RewriteLimits } from './rewriter.ts';

/** A cached rewrite: a query, or the selectors one `match[]` parameter (or none) became. */
type Rewritten = string | readonly string[];

const charsOf = (v: Rewritten): number => (typeof v === 'string' ? v.length : v.reduce((n, s) => n + s.length + 1, 0));

/** What a cached rewrite is of: a query, one `match[]` parameter, or no parameter (the policy's own selectors). */
export type RewriteKind = 'query' | 'param' | 'noParam';

/** Limits are compared on a hit: one policy used under two upstreams' limits keeps the last one stored. */
interface Entry {
  readonly value: Rewritten;
  readonly maxQueryLength: number;
  readonly maxDepth: number;
  readonly chars: number;
}

/** The rewrites of one text: per kind, by prepared policy key. */
interface Slot {
  tick: number;
  query?: Map<string, Entry>;
  param?: Map<string, Entry>;
  noParam?: Map<string, Entry>;
}

/**
 * A bounded LRU of successful rewrites, keyed by (text, kind, policy key,
 * limits), and of `match[]` parameters' selector lists. Dashboards re-send the
 * same query text on every refresh, and Grafana's label and series lookups the
 * same selectors, so most rewrites are a map lookup. Only results that passed
 * verification are stored. Both the number of entries and the total
 * characters held are bounded, and one oversized entry is simply not cached.
 *
 * Found by the text first, then by the policy key: both are strings the
 * gateway hands over again and again (form parameters are memoised, a
 * prepared policy keeps its key), whose hashes V8 keeps, so a hit hashes
 * nothing. A key concatenated per lookup cost ≈ 0.6 µs to build and hash.
 * Recency is kept per text: the least recently used text goes first, with all
 * its entries.
 */
export class RewriteCache {
  readonly #maxEntries: number;
  readonly #maxChars: number;
  readonly #maxEntryChars: number;
  readonly #slots = new Map<string, Slot>();
  #tick = 0;
  #entries = 0;
  #chars = 0;
  /** Lookups answered from / missing in the cache, for the metrics endpoint. */
  hits = 0;
  misses = 0;

  constructor(maxEntries = 2048, maxChars = 4 * 1024 * 1024, maxEntryChars = 32 * 1024) {
    this.#maxEntries = Math.max(0, Math.floor(maxEntries));
    this.#maxChars = maxChars;
    this.#maxEntryChars = maxEntryChars;
  }

  /** Entries held. */
  get size(): number {
    return this.#entries;
  }

  /** Total characters held (texts, policy keys and values). */
  get chars(): number {
    return this.#chars;
  }

  get(kind: RewriteKind, policyKey: string, limits: RewriteLimits, text: string): Rewritten | undefined {
    const slot = this.#slots.get(text);
    const e = slot?.[kind]?.get(policyKey);
    if (slot === undefined || e === undefined || e.maxQueryLength !== limits.maxQueryLength || e.maxDepth !== limits.maxDepth) {
      this.misses++;
      return undefined;
    }
    // Hot texts in the newer half stay where they are (src/util/lru.ts).
    if (isStale(this.#tick, slot.tick, this.#slots.size)) {
      this.#slots.delete(text);
      slot.tick = ++this.#tick;
      this.#slots.set(text, slot);
    }
    this.hits++;
    return e.value;
  }

  set(kind: RewriteKind, policyKey: string, limits: RewriteLimits, text: string, value: Rewritten): void {
    const chars = text.length + policyKey.length + charsOf(value);
    if (this.#maxEntries === 0 || chars > this.#maxEntryChars) return;
    let slot = this.#slots.get(text);
    if (slot === undefined) {
      slot = { tick: ++this.#tick };
      this.#slots.set(text, slot);
    } else {
      this.#slots.delete(text);
      slot.tick = ++this.#tick;
      this.#slots.set(text, slot);
    }
    const byPolicy = (slot[kind] ??= new Map<string, Entry>());
    const old = byPolicy.get(policyKey);
    if (old !== undefined) {
      this.#entries--;
      this.#chars -= old.chars;
    }
    byPolicy.set(policyKey, { value, maxQueryLength: limits.maxQueryLength, maxDepth: limits.maxDepth, chars });
    this.#entries++;
    this.#chars += chars;
    while (this.#entries > this.#maxEntries || this.#chars > this.#maxChars) {
      const oldest = this.#slots.entries().next();
      if (oldest.done === true) break;
      this.#evict(oldest.value[0], oldest.value[1]);
    }
  }

  #evict(text: string, slot: Slot): void {
    this.#slots.delete(text);
    for (const byPolicy of [slot.query, slot.param, slot.noParam]) {
      if (byPolicy === undefined) continue;
      for (const e of byPolicy.values()) {
        this.#entries--;
        this.#chars -= e.chars;
      }
    }
  }

  clear(): void {
    this.#slots.clear();
    this.#entries = 0;
    this.#chars = 0;
  }

  /**
   * The cached rewrite of `query` under a prepared policy and limits, else
   * `rewrite()` (which verifies its output before returning it), stored.
   */
  through(policyKey: string, limits: RewriteLimits, query: string, rewrite: () => string): string {
    const hit = this.get('query', policyKey, limits, query);
    if (typeof hit === 'string') return hit;
    const out = rewrite();
    this.set('query', policyKey, limits, query, out);
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
    const kind = param === undefined ? 'noParam' : 'param';
    const hit = this.get(kind, policyKey, limits, param ?? '');
    if (hit !== undefined && typeof hit !== 'string') return hit;
    const out = new VerifiedSelectors(verify);
    build((selector) => out.add(selector));
    const list = Object.freeze(out.list);
    this.set(kind, policyKey, limits, param ?? '', list);
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
