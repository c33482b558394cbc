import type { FastifyReply, FastifyRequest, onResponseHookHandler } from 'fastify';

/**
 * An onResponse hook in callback style (no promise per request) that records
 * something about the finished request. The response is already sent: a
 * failure is logged, never thrown.
 */
export function recordOnResponse(what: string, record: (req: FastifyRequest, reply: FastifyReply) => void): onResponseHookHandler {
  return (req, reply, done) => {
    try {
      record(req, reply);
    } catch (e) {
      req.log.error({ err: e }, `${what} failed`);
    }
    done();
  };
}
