/**
 * What reply-from sends upstream requests through: an undici Agent, with each
 * request cancelled when the client that asked for it goes away. Grafana
 * cancels a panel's queries on every refresh and navigation; cancelled, the
 * upstream request's connection closes, Go cancels the request's context and
 * Prometheus stops the query at its next check, as it would had Grafana talked
 * to it directly (e2e/cancellation.test.ts). Without this, every abandoned
 * query ran to its end on the backend.
 *
 * reply-from takes any object with undici's `request(options, callback)` as
 * its dispatcher, and passes no per-request options of its own: the request's
 * cancellation travels in its header set under a symbol key (never serialised:
 * undici takes header names from Object.keys, which lists no symbols).
 */
import { Readable } from 'node:stream';
import type { Agent, Dispatcher } from 'undici';

/** Header-set key of a request's ClientGone. */
export const CLIENT_GONE: unique symbol = Symbol('lbac.clientGone');

/**
 * Fires once when the client leaves before its answer is complete. undici
 * takes any object with `on`/`once`/`removeListener` and `aborted`/`reason` as
 * a request's signal; one is made per forwarded request, so this is the least
 * of an EventEmitter (no listener map, no once-wrapper per request).
 */
export class ClientGone {
  aborted = false;
  reason: Error | undefined = undefined;
  #listeners: (() => void)[] = [];

  on(event: string, listener: () => void): this {
    if (event === 'abort' && !this.aborted) this.#listeners.push(listener);
    return this;
  }

  /** It fires at most once, so every listener is a once-listener. */
  once(event: string, listener: () => void): this {
    return this.on(event, listener);
  }

  removeListener(event: string, listener: () => void): this {
    if (event !== 'abort') return this;
    const i = this.#listeners.indexOf(listener);
    if (i >= 0) this.#listeners.splice(i, 1);
    return this;
  }

  fire(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = new ClientGoneError();
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const listener of listeners) listener();
  }
}

class ClientGoneError extends Error {
  readonly code = 'LBAC_CLIENT_GONE';
  constructor() {
    super('the client closed the connection; the upstream request was cancelled');
    this.name = 'ClientGoneError';
  }
}

type Callback = (err: Error | null, res?: { statusCode: number; headers: Record<string, string | string[]>; body: Readable }) => void;

/** The dispatcher reply-from is given (its `undici` option); `close` ends the agent's connections. */
export interface CancellingDispatcher {
  request(options: Dispatcher.RequestOptions, callback: Callback): void;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

export function cancellingDispatcher(agent: Agent): CancellingDispatcher {
  return {
    request(options, callback) {
      const headers = options.headers as (Record<string | symbol, unknown> & { [CLIENT_GONE]?: ClientGone }) | undefined;
      const gone = headers?.[CLIENT_GONE];
      if (gone === undefined) {
        agent.request(options, callback as never);
        return;
      }
      // The symbol key stays: undici reads header names with Object.keys, which skips symbols, and a
      // `delete` would turn every request's header set into a slow dictionary-mode object.
      // `options` is reply-from's own per-request object.
      (options as { signal?: unknown }).signal = gone;
      agent.request(options, (err, res) => {
        // Cancelled because the client left: no one reads the answer. reply-from gets an empty one
        // (status 499, as the request is recorded) instead of an error it would log as a failure.
        if (err !== null && gone.aborted) return callback(null, { statusCode: 499, headers: {}, body: Readable.from([]) });
        callback(err, res as never);
      });
    },
    close: () => agent.close(),
    destroy: () => agent.destroy(),
  };
}
