import { GatewayError } from '../errors.ts';

/**
 * At most `maxRunning` calls at once and `maxQueued` waiting for a turn;
 * beyond that a call fails at once with `overloaded` (503). Bounds work that
 * a client can cause without credentials (credential hashing, calls to the
 * identity provider) so a flood queues briefly or is refused, instead of
 * growing without limit or hammering a shared resource. A finished call hands
 * its slot straight to the next waiter, so the bound is never exceeded.
 */
export class ConcurrencyGate {
  readonly #maxRunning: number;
  readonly #maxQueued: number;
  readonly #what: string;
  #running = 0;
  #waiting: Waiter[] = [];

  /** `what` names the calls in the 503 message ("credential checks"). */
  constructor(maxRunning: number, maxQueued: number, what: string) {
    this.#maxRunning = maxRunning;
    this.#maxQueued = maxQueued;
    this.#what = what;
  }

  get running(): number {
    return this.#running;
  }
  get queued(): number {
    return this.#waiting.length;
  }

  /**
   * Runs `fn` when a slot is free. `abandoned` (optional) says that nobody
   * waits for the result any more (the client went away): such a call is
   * dropped from the queue instead of taking a slot, and a full queue is first
   * cleared of them, so clients that send a burst and hang up cannot keep the
   * queue full for those who stay.
   */
  async run<T>(fn: () => Promise<T>, abandoned?: () => boolean): Promise<T> {
    if (this.#running < this.#maxRunning) this.#running++;
    else {
      if (this.#waiting.length >= this.#maxQueued) this.#dropAbandoned();
      if (this.#waiting.length >= this.#maxQueued) throw new GatewayError('overloaded', `too many ${this.#what} in progress; retry later`);
      // Resolved by a finishing call, which hands over its slot (running stays counted).
      await new Promise<void>((resolve, reject) => this.#waiting.push({ resolve, reject, abandoned }));
    }
    try {
      return await fn();
    } finally {
      this.#handOver();
    }
  }

  #handOver(): void {
    for (;;) {
      const next = this.#waiting.shift();
      if (next === undefined) {
        this.#running--;
        return;
      }
      if (next.abandoned?.() === true) next.reject(gone(this.#what));
      else return next.resolve();
    }
  }

  #dropAbandoned(): void {
    const keep: Waiter[] = [];
    for (const w of this.#waiting) {
      if (w.abandoned?.() === true) w.reject(gone(this.#what));
      else keep.push(w);
    }
    this.#waiting = keep;
  }
}

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  readonly abandoned: (() => boolean) | undefined;
}

const gone = (what: string) => new GatewayError('overloaded', `dropped from the queue of ${what}: the client went away`);

/**
 * Concurrent calls for the same key share one in-flight promise: a dashboard
 * whose panels all arrive with a token not yet cached costs one call to the
 * identity provider, not one per panel.
 */
export class SingleFlight<K, V> {
  readonly #inflight = new Map<K, { readonly promise: Promise<V>; readonly joiners: ((() => boolean) | undefined)[] }>();

  /**
   * `gone` (optional) tells when this caller stops waiting; `fn` gets
   * `abandoned`, true once every caller sharing the call has gone (one without
   * `gone` never goes), to pass on to a queue (ConcurrencyGate.run).
   */
  run(key: K, fn: (abandoned: () => boolean) => Promise<V>, gone?: () => boolean): Promise<V> {
    const existing = this.#inflight.get(key);
    if (existing !== undefined) {
      existing.joiners.push(gone);
      return existing.promise;
    }
    const joiners: ((() => boolean) | undefined)[] = [gone];
    const abandoned = () => joiners.every((g) => g?.() === true);
    // Removed only while it is still the key's call: after `forget`, a newer call may hold the key.
    const promise = (async () => fn(abandoned))().finally(() => {
      if (this.#inflight.get(key) === entry) this.#inflight.delete(key);
    });
    const entry = { promise, joiners };
    this.#inflight.set(key, entry);
    return promise;
  }

  /**
   * Later callers start calls of their own; the running calls finish for the callers they have. A
   * reload (a revocation to apply at once) must not let a request after it join a call from before.
   */
  forget(): void {
    this.#inflight.clear();
  }

  get size(): number {
    return this.#inflight.size;
  }
}
