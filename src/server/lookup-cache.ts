/**
 * Answers of route lookups (RouteSpec.lookup, e.g. the metric names a policy
 * can see, asked before every `/api/v1/metadata`), kept for the lookup's
 * `maxAgeMs` and shared by requests with the same key: the same policy and
 * tenant headers get the same answer from the upstream (the lookup carries no
 * other client header), and the lookup is a label-values scan over an hour of
 * the index that Grafana repeats each time a query editor opens. Requests that
 * miss at the same time share one upstream request. A failed lookup is not
 * kept: the next request asks again.
 *
 * Bounded by the answers' size (their bytes on the wire; parsed, they take a
 * few times that): expired answers are dropped whenever one is added, then the
 * oldest until the new one fits; one larger than a quarter of the budget is
 * not kept at all.
 *
 * No I/O here: `load` is the caller's upstream request.
 */

interface Kept {
  readonly value: unknown;
  readonly bytes: number;
  readonly expiresAt: number;
}

/** What `load` fetched: the parsed answer and its size on the wire. */
export interface LoadedAnswer {
  readonly value: unknown;
  readonly bytes: number;
}

export class LookupCache {
  readonly #maxBytes: number;
  readonly #now: () => number;
  /** In insertion order, which is expiry order (one maxAgeMs per route; a replaced key moves to the end). */
  readonly #kept = new Map<string, Kept>();
  readonly #inFlight = new Map<string, Promise<unknown>>();
  #bytes = 0;
  #generation = 0;

  constructor(maxBytes = 32 * 1024 * 1024, now: () => number = Date.now) {
    this.#maxBytes = maxBytes;
    this.#now = now;
  }

  /** Bytes of the answers kept now. */
  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#kept.size;
  }

  /** The kept answer for `key`, or the one `load` is fetching for it, or a new `load()`; answers are frozen. */
  get(key: string, maxAgeMs: number, load: () => Promise<LoadedAnswer>): Promise<unknown> {
    const kept = this.#kept.get(key);
    if (kept !== undefined && kept.expiresAt > this.#now()) return Promise.resolve(kept.value);
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) return pending;
    const generation = this.#generation;
    let loading: Promise<LoadedAnswer>;
    try {
      loading = load();
    } catch (e) {
      loading = Promise.reject(e);
    }
    const fetching = loading.then(({ value, bytes }) => {
      const frozen = deepFreeze(value);
      if (generation === this.#generation) this.#keep(key, frozen, bytes, maxAgeMs);
      return frozen;
    });
    this.#inFlight.set(key, fetching);
    // Settled either way: later requests ask the cache (a kept answer) or the upstream again (a failure).
    const forget = (): void => void (this.#inFlight.get(key) === fetching && this.#inFlight.delete(key));
    fetching.then(forget, forget);
    return fetching;
  }

  /** Forgets every answer (and lets requests in flight finish without keeping theirs). */
  clear(): void {
    this.#kept.clear();
    this.#inFlight.clear();
    this.#bytes = 0;
    this.#generation++;
  }

  #drop(key: string): void {
    const kept = this.#kept.get(key);
    if (kept === undefined) return;
    this.#kept.delete(key);
    this.#bytes -= kept.bytes;
  }

  #keep(key: string, value: unknown, bytes: number, maxAgeMs: number): void {
    this.#drop(key);
    if (!(maxAgeMs > 0) || !(bytes >= 0) || bytes * 4 > this.#maxBytes) return;
    const now = this.#now();
    // Expired ones first, then the oldest, until the new answer fits.
    for (const [k, kept] of this.#kept) {
      if (kept.expiresAt > now && this.#bytes + bytes <= this.#maxBytes) break;
      this.#drop(k);
    }
    this.#kept.set(key, { value, bytes, expiresAt: now + maxAgeMs });
    this.#bytes += bytes;
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
