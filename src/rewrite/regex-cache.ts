/**
 * Compiled regexes kept for reuse, bounded in entries *and* in pattern text. A compiled RE2JS
 * program costs about 80 bytes of heap per pattern character, and client queries carry
 * regexes of up to the per-query budget (regex-budget.ts): counting entries alone let 1024
 * distinct 18 KB regexes keep about 1.4 GB. Policy regexes, the ones worth keeping, are short.
 */
export class RegexCache<V> {
  readonly #entries = new Map<string, V>();
  #chars = 0;

  readonly maxEntries: number;
  /** Sum of the cached patterns' lengths (≈ 20 MB of compiled programs at the default). */
  readonly maxChars: number;
  /** A longer pattern is compiled each time it is needed and never kept (a policy's value lists stay far below). */
  readonly maxPatternChars: number;

  constructor(maxEntries = 1024, maxChars = 256 * 1024, maxPatternChars = 32 * 1024) {
    this.maxEntries = maxEntries;
    this.maxChars = maxChars;
    this.maxPatternChars = maxPatternChars;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Pattern text held now (for tests and metrics). */
  get chars(): number {
    return this.#chars;
  }

  /** The cached value for `pattern`, or `compile(pattern)`, kept when it fits (oldest entries first out). */
  get(pattern: string, compile: (pattern: string) => V): V {
    const hit = this.#entries.get(pattern);
    if (hit !== undefined || this.#entries.has(pattern)) return hit as V;
    const value = compile(pattern);
    if (pattern.length > this.maxPatternChars) return value;
    while (this.#entries.size >= this.maxEntries || (this.#entries.size > 0 && this.#chars + pattern.length > this.maxChars)) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
      this.#chars -= oldest.length;
    }
    this.#entries.set(pattern, value);
    this.#chars += pattern.length;
    return value;
  }
}
