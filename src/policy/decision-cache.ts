import type { Decision, DecisionInput } from './decision.ts';

/**
 * Caches decisions per subject object and request shape. Keyed by the Subject
 * *instance* (a WeakMap): identity sources return the same frozen Subject for a
 * cached token, so a dashboard's repeated panels skip the WASM evaluation, and
 * an entry dies with its subject — never outliving the token's own cache.
 * Entries also expire after `ttlMs`, bounding staleness for policies that
 * consult the clock. An engine owns one cache; new data means a new cache.
 */
export class DecisionCache {
  readonly #ttlMs: number;
  readonly #perSubject: number;
  #bySubject = new WeakMap<object, Map<string, { decision: Decision; at: number }>>();
  hits = 0;
  misses = 0;

  constructor(ttlMs = 10_000, perSubject = 256) {
    this.#ttlMs = ttlMs;
    this.#perSubject = perSubject;
  }

  static key(input: DecisionInput): string {
    const r = input.request;
    return `${r.upstream}\u0000${r.kind}\u0000${r.endpoint}\u0000${r.method}\u0000${r.path}`;
  }

  /** Malformed inputs are never cached: the policy alone judges them. */
  static #cacheable(input: DecisionInput): boolean {
    return typeof input?.subject === 'object' && input.subject !== null && typeof input.request === 'object' && input.request !== null;
  }

  get(input: DecisionInput, now = Date.now()): Decision | undefined {
    if (!DecisionCache.#cacheable(input)) return undefined;
    const e = this.#bySubject.get(input.subject)?.get(DecisionCache.key(input));
    if (e === undefined || now - e.at >= this.#ttlMs) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return e.decision;
  }

  set(input: DecisionInput, decision: Decision, now = Date.now()): void {
    if (!DecisionCache.#cacheable(input)) return;
    let m = this.#bySubject.get(input.subject);
    if (m === undefined) this.#bySubject.set(input.subject, (m = new Map()));
    if (m.size >= this.#perSubject) m.clear();
    m.set(DecisionCache.key(input), { decision, at: now });
  }

  clear(): void {
    this.#bySubject = new WeakMap();
  }
}
