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
 * cancellation travels in its header set under a symbol key (never serialised,
 * removed here before undici sees the headers).
 */
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import type { Agent, Dispatcher } from 'undici';

/** Header-set key of a request's ClientGone. */
export const CLIENT_GONE: unique symbol = Symbol('lbac.clientGone');

/**
 * Fires once when the client leaves before its answer is complete. An
 * EventEmitter with `aborted`, which undici accepts as a request's signal
 * (lighter than an AbortController, and one is made per forwarded request).
 */
export class ClientGone extends EventEmitter {
  aborted = false;
  reason: Error | undefined;

  fire(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = new ClientGoneError();
    this.emit('abort');
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
      delete headers![CLIENT_GONE];
      agent.request({ ...options, signal: gone }, (err, res) => {
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
