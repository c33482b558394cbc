import { regexExpansion } from './regex-budget.ts';

/**
 * Compiled regexes kept for reuse across requests, bounded by what they cost to hold. A compiled
 * RE2JS program's size follows the regex's expansion (regex-budget.ts, whose weights were set so
 * that every construct measured at most ≈ 100 bytes of program per unit), not its text:
 * `\pL{1000}\pL{1000}` is 19 characters, and holding 1024 such client regexes took 329 MB when
 * only entries were counted. The default 128 Ki units keep at most ≈ 13 MB.
 *
 * Least recently used goes first: a policy's regexes, used on every request of its team, stay
 * while distinct client regexes come and go. A regex over `maxEntryCost` (a policy listing
 * thousands of values) is not kept: a response filter resolves its regexes once per answer
 * (matcher.ts `matcherTest`), so it is compiled once per answer, not once per value.
 */
export class RegexCache<V> {
  readonly #entries = new Map<string, { readonly value: V; readonly cost: number }>();
  #cost = 0;
  readonly maxEntries: number;
  /** Sum of the kept regexes' estimated compiled sizes (regexExpansion units). */
  readonly maxCost: number;
  /** A regex estimated larger than this is compiled when asked for and never kept. */
  readonly maxEntryCost: number;

  constructor(maxEntries = 1024, maxCost = 128 * 1024, maxEntryCost = 64 * 1024) {
    this.maxEntries = maxEntries;
    this.maxCost = maxCost;
    this.maxEntryCost = maxEntryCost;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Estimated compiled size held now (for tests). */
  get cost(): number {
    return this.#cost;
  }

  /** The cached value for `pattern`, or `compile(pattern)`, kept when it fits (least recently used out first). */
  get(pattern: string, compile: (pattern: string) => V): V {
    const hit = this.#entries.get(pattern);
    if (hit !== undefined) {
      this.#entries.delete(pattern);
      this.#entries.set(pattern, hit);
      return hit.value;
    }
    const value = compile(pattern);
    const cost = Math.max(1, regexExpansion(pattern));
    if (cost > this.maxEntryCost) return value;
    while (this.#entries.size > 0 && (this.#entries.size >= this.maxEntries || this.#cost + cost > this.maxCost)) {
      const [oldest, entry] = this.#entries.entries().next().value as [string, { cost: number }];
      this.#entries.delete(oldest);
      this.#cost -= entry.cost;
    }
    this.#entries.set(pattern, { value, cost });
    this.#cost += cost;
    return value;
  }
}
