import { MAX_REGEX_EXPANSION, regexExpansion } from './regex-budget.ts';

/**
 * Compiled regexes kept for reuse across requests, bounded by what they cost to hold. A compiled
 * RE2JS program's size follows the regex's expansion (regex-budget.ts), not its text:
 * `\pL{1000}\pL{1000}` is 19 characters, and holding 1024 such client regexes took 329 MB when
 * only entries were counted. Measured: ≈ 8.5 KB per program plus up to ≈ 400 bytes per unit for
 * short regexes (≈ 80 for long ones), so an entry costs ENTRY_COST + its units, and the default
 * 40 Ki units hold at most ≈ 16 MB.
 *
 * Least recently used goes first: a policy's regexes, used on every request of its team, stay
 * while distinct client regexes come and go. A client's regex is within the per-query budget
 * (MAX_REGEX_EXPANSION), so it always fits an entry; a larger one can only be a policy's (a list
 * of thousands of values), and the last few of those are held aside, so that a rewrite or a
 * response filter does not compile it again for every selector or value.
 */
export class RegexCache<V> {
  readonly #entries = new Map<string, { readonly value: V; readonly cost: number }>();
  #cost = 0;
  /** Regexes over maxEntryCost, newest first (policy regexes: clients' are budgeted below it). */
  readonly #large: [string, V][] = [];
  readonly maxEntries: number;
  /** Sum of the kept entries' costs (ENTRY_COST + regexExpansion units each). */
  readonly maxCost: number;
  /** A regex estimated larger than this is held only among the last LARGE_KEPT large ones. */
  readonly maxEntryCost: number;

  constructor(maxEntries = 1024, maxCost = 40 * 1024, maxEntryCost = MAX_REGEX_EXPANSION + ENTRY_COST) {
    this.maxEntries = maxEntries;
    this.maxCost = maxCost;
    this.maxEntryCost = maxEntryCost;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Cost held by the entries now (for tests). */
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
    const large = this.#large.findIndex(([p]) => p === pattern);
    if (large >= 0) {
      const [entry] = this.#large.splice(large, 1);
      this.#large.unshift(entry!);
      return entry![1];
    }
    const value = compile(pattern);
    const cost = ENTRY_COST + regexExpansion(pattern);
    if (cost > this.maxEntryCost) {
      this.#large.unshift([pattern, value]);
      if (this.#large.length > LARGE_KEPT) this.#large.pop();
      return value;
    }
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

/** What a compiled program costs beside its regex's units (≈ 8.5 KB, at ≈ 350 bytes a unit). */
const ENTRY_COST = 25;
/** Large (policy) regexes held aside: enough for a policy of a few such alternatives. */
const LARGE_KEPT = 4;
