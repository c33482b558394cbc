/**
 * Fastify's per-request log lines, as the gateway writes them. Fastify logs
 * "incoming request" and "request completed" for every request at `info`, the
 * default level; in front of every dashboard panel that is two lines and about
 * 25 µs of CPU per request (a pino child, two serialised lines: a fifth of the
 * gateway's cost, docs/performance.md), and it repeats what the audit log already
 * records for every decision and every refused authentication. So those two
 * lines are an opt-in access log (`server.accessLog`); everything else Fastify
 * logs per request (a failed request, a stream error, a 5xx from its default
 * error handler) is kept.
 */
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';

export class GatewayLogController extends LogController {
  readonly #accessLog: boolean;

  constructor(opts: { readonly accessLog: boolean }) {
    super();
    this.#accessLog = opts.accessLog;
  }

  override incomingRequest(request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (this.#accessLog) super.incomingRequest(request, reply, metadata);
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    // A request that failed with an error is logged whatever the setting.
    if (this.#accessLog || (error !== null && error !== undefined)) super.requestCompleted(error, request, reply, metadata);
  }
}

/** For listeners that never log per request (the admin listener): Fastify's own switch. */
export const silentRequestLogging = (): LogController => new LogController({ disableRequestLogging: true });
