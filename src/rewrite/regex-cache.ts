import { regexExpansion } from './regex-budget.ts';

/**
 * Compiled regexes kept for reuse, bounded by what they cost to hold. A compiled RE2JS program's
 * size follows the regex's expansion (regex-budget.ts: counted repetitions multiply, classes
 * weigh 8), not its text: `\pL{1000}\pL{1000}` is 19 characters and 16 000 units, and holding
 * 1024 such client regexes took 329 MB when only entries were counted. About 15–80 bytes of heap
 * per unit were measured, so the default 256 Ki units keep at most ≈ 20 MB.
 *
 * Least recently used goes first: a policy's regexes, used on every request of its team, stay
 * while distinct client regexes come and go. A regex too costly to keep in the shared cache (a
 * policy listing thousands of values) is still held in a few "recent" slots, so a response filter
 * that checks every label value, series or span against it compiles it once per answer, not once
 * per value.
 */
export class RegexCache<V> {
  readonly #entries = new Map<string, { readonly value: V; readonly cost: number }>();
  #cost = 0;
  /** The last few patterns used, whatever their cost: [pattern, value] pairs, newest first. */
  readonly #recent: [string, V][] = [];
  readonly maxEntries: number;
  /** Sum of the kept regexes' estimated compiled sizes (regexExpansion units). */
  readonly maxCost: number;
  /** A regex estimated larger than this is held only in the recent slots. */
  readonly maxEntryCost: number;

  constructor(maxEntries = 1024, maxCost = 256 * 1024, maxEntryCost = 64 * 1024) {
    this.maxEntries = maxEntries;
    this.maxCost = maxCost;
    this.maxEntryCost = maxEntryCost;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Estimated compiled size held in the shared cache now (for tests). */
  get cost(): number {
    return this.#cost;
  }

  /** The cached value for `pattern`, or `compile(pattern)`, kept when it fits (least recently used out first). */
  get(pattern: string, compile: (pattern: string) => V): V {
    const recent = this.#recent;
    // A filter loop asks for the same pattern again and again: no map work for that.
    if (recent.length > 0 && recent[0]![0] === pattern) return recent[0]![1];
    const hit = this.#entries.get(pattern);
    let value: V;
    if (hit !== undefined) {
      this.#entries.delete(pattern);
      this.#entries.set(pattern, hit);
      value = hit.value;
    } else {
      const slot = recent.findIndex(([p]) => p === pattern);
      value = slot >= 0 ? recent[slot]![1] : compile(pattern);
      if (slot < 0) this.#keep(pattern, value);
    }
    this.#remember(pattern, value);
    return value;
  }

  #keep(pattern: string, value: V): void {
    const cost = Math.max(1, regexExpansion(pattern));
    if (cost > this.maxEntryCost) return;
    while (this.#entries.size > 0 && (this.#entries.size >= this.maxEntries || this.#cost + cost > this.maxCost)) {
      const [oldest, entry] = this.#entries.entries().next().value as [string, { cost: number }];
      this.#entries.delete(oldest);
      this.#cost -= entry.cost;
    }
    this.#entries.set(pattern, { value, cost });
    this.#cost += cost;
  }

  #remember(pattern: string, value: V): void {
    const recent = this.#recent;
    const at = recent.findIndex(([p]) => p === pattern);
    if (at >= 0) recent.splice(at, 1);
    recent.unshift([pattern, value]);
    if (recent.length > RECENT_SLOTS) recent.pop();
  }
}

/** Patterns held whatever their cost: enough for a filter that alternates between a few policy regexes. */
const RECENT_SLOTS = 4;
