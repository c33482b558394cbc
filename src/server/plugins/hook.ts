import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Records what a finished request went through (audit, metrics). */
export type Recorder = (req: FastifyRequest, reply: FastifyReply) => void;

declare module 'fastify' {
  interface FastifyInstance {
    /** Every registered Recorder, for requests that end without an onResponse (src/server/plugins/context.ts). */
    lbacRecorders: Recorder[];
  }
}

/**
 * Registers a recorder, run once per request: by an onResponse hook in callback
 * style (no promise per request) once the response is sent, or, when the client
 * goes away before the answer is complete (Fastify runs no onResponse hook
 * then), by the context plugin at that moment. Recording happens after the
 * answer: a failure is logged, never thrown.
 */
export function addRecorder(app: FastifyInstance, what: string, record: Recorder): void {
  const safe: Recorder = (req, reply) => {
    try {
      record(req, reply);
    } catch (e) {
      req.log.error({ err: e }, `${what} failed`);
    }
  };
  app.lbacRecorders.push(safe);
  app.addHook('onResponse', (req, reply, done) => {
    // Recorded already when the client left (a late 'error' of the response can still end here).
    if (req.lbac?.clientClosed !== true) safe(req, reply);
    done();
  });
}
