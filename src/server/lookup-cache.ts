/**
 * Answers of route lookups (RouteSpec.lookup, e.g. the metric names a policy
 * can see, asked before every `/api/v1/metadata`), kept for the lookup's
 * `maxAgeMs` and shared by requests with the same key: the same policy and
 * tenant headers get the same answer from the upstream, and the lookup is a
 * label-values scan over an hour of the index that Grafana repeats each time a
 * query editor opens. Requests that miss at the same time share one upstream
 * request. A failed lookup is not kept: the next request asks again.
 *
 * No I/O here: `load` is the caller's upstream request.
 */
import { LruCache } from '../util/lru.ts';

export class LookupCache {
  readonly #answers: LruCache<string, unknown>;
  readonly #inFlight = new Map<string, Promise<unknown>>();

  constructor(max = 1024, now: () => number = Date.now) {
    this.#answers = new LruCache(max, now);
  }

  get hits(): number {
    return this.#answers.hits;
  }

  get misses(): number {
    return this.#answers.misses;
  }

  /** The kept answer for `key`, or the one `load` is fetching for it, or a new `load()`; answers are frozen. */
  get(key: string, maxAgeMs: number, load: () => Promise<unknown>): Promise<unknown> {
    const kept = this.#answers.get(key);
    if (kept !== undefined) return Promise.resolve(kept);
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) return pending;
    const generation = this.#answers.generation;
    const fetching = load().then(
      (answer) => {
        const frozen = deepFreeze(answer);
        this.#answers.set(key, frozen, maxAgeMs, generation);
        return frozen;
      },
    );
    this.#inFlight.set(key, fetching);
    // Settled either way: later requests ask the cache (a kept answer) or the upstream again (a failure).
    const forget = (): void => void (this.#inFlight.get(key) === fetching && this.#inFlight.delete(key));
    fetching.then(forget, forget);
    return fetching;
  }

  /** Forgets every answer (and lets requests in flight finish without keeping theirs). */
  clear(): void {
    this.#answers.clear();
    this.#inFlight.clear();
  }
}

/** Parsed JSON, frozen all the way down: one answer is read by many requests' filters. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
