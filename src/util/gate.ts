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
  readonly #waiting: (() => void)[] = [];

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

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#running < this.#maxRunning) this.#running++;
    else {
      if (this.#waiting.length >= this.#maxQueued) throw new GatewayError('overloaded', `too many ${this.#what} in progress; retry later`);
      // Resolved by a finishing call, which hands over its slot (running stays counted).
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next !== undefined) next();
      else this.#running--;
    }
  }
}

/**
 * Concurrent calls for the same key share one in-flight promise: a dashboard
 * whose panels all arrive with a token not yet cached costs one call to the
 * identity provider, not one per panel.
 */
export class SingleFlight<K, V> {
  readonly #inflight = new Map<K, Promise<V>>();

  run(key: K, fn: () => Promise<V>): Promise<V> {
    const existing = this.#inflight.get(key);
    if (existing !== undefined) return existing;
    const p = (async () => fn())().finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  get size(): number {
    return this.#inflight.size;
  }
}
