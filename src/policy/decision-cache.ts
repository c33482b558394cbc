import type { Decision, DecisionInput } from './decision.ts';

/** Keys of frozen request objects (their fields cannot change). */
const frozenRequestKeys = new WeakMap<object, string>();

/**
 * Caches decisions per subject object and request shape. Keyed by the Subject
 * *instance* (a WeakMap): identity sources return the same frozen Subject for a
 * cached token, so a dashboard's repeated panels skip the WASM evaluation, and
 * an entry dies with its subject — never outliving the token's own cache.
 * Entries also expire after `ttlMs`, bounding staleness for policies that
 * consult the clock. An engine owns one cache; new data means a new cache.
 *
 * Bounded twice: per subject (`perSubject` request shapes; path parameters such
 * as label names are part of the shape) and in total (`maxEntries`): subjects
 * live as long as the token cache keeps them, so without a total bound 10 000
 * cached tokens × 256 shapes could hold gigabytes. The total is counted on
 * insertion (entries of collected subjects are not subtracted), so it errs
 * towards clearing early; a clear only costs re-evaluations.
 */
export class DecisionCache {
  readonly #ttlMs: number;
  readonly #perSubject: number;
  readonly #maxEntries: number;
  #bySubject = new WeakMap<object, Map<string, { decision: Decision; at: number }>>();
  #entries = 0;
  hits = 0;
  misses = 0;

  constructor(ttlMs = 10_000, perSubject = 256, maxEntries = 20_000) {
    this.#ttlMs = ttlMs;
    this.#perSubject = perSubject;
    this.#maxEntries = maxEntries;
  }

  /** Entries inserted since the last full clear (an upper bound of those held). */
  get entries(): number {
    return this.#entries;
  }

  static key(input: DecisionInput): string {
    const r = input.request;
    // The gateway passes one frozen request object per request shape (server/enforce.ts, requestInfoOf): its key is
    // built once, and the same string object (its hash cached) is looked up every time.
    const known = frozenRequestKeys.get(r);
    if (known !== undefined) return known;
    // The team is part of the shape (a decision for one team is never another's, nor one for no team),
    // written before the path with its length, so no path can pass for a team.
    const key = `${r.upstream}\u0000${r.kind}\u0000${r.endpoint}\u0000${r.method}\u0000${r.team === undefined ? '-' : `${r.team.length}:${r.team}`}${r.path}`;
    if (Object.isFrozen(r)) frozenRequestKeys.set(r, key);
    return key;
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
    if (this.#entries >= this.#maxEntries) this.clear();
    let m = this.#bySubject.get(input.subject);
    if (m === undefined) this.#bySubject.set(input.subject, (m = new Map()));
    if (m.size >= this.#perSubject) {
      this.#entries -= m.size;
      m.clear();
    }
    const key = DecisionCache.key(input);
    if (!m.has(key)) this.#entries++;
    m.set(key, { decision, at: now });
  }

  clear(): void {
    this.#bySubject = new WeakMap();
    this.#entries = 0;
  }
}
