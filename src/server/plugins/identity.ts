import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError } from '../../errors.ts';
import type { Authenticator } from '../../identity/authenticator.ts';
import { tlsInfoOf } from '../../identity/mtls.ts';
import type { Subject } from '../../policy/decision.ts';

declare module 'fastify' {
  interface FastifyRequest {
    subject: Subject | null;
  }
  interface FastifyInstance {
    /** onRequest hook: sets request.subject or fails with 401/503. */
    authenticate(req: FastifyRequest, reply: FastifyReply): Promise<void>;
  }
}

/**
 * Identity: turns the request's credentials into a Subject (see src/identity).
 * `authenticator` may be a getter, so a config reload can swap it: each
 * request uses the one current when it arrives.
 */
export const identityPlugin = fp<{ authenticator: Authenticator | (() => Authenticator) }>(
  async (app, opts) => {
    const current = typeof opts.authenticator === 'function' ? opts.authenticator : () => opts.authenticator as Authenticator;
    app.decorateRequest('subject', null);
    app.decorate('authenticate', async (req: FastifyRequest) => {
      const started = performance.now();
      const state = req.lbac as FastifyRequest['lbac'] | null;
      try {
        const socket = req.raw.socket;
        req.subject = await current().authenticate({ headers: req.headers, rawHeaders: req.raw.rawHeaders, tls: tlsInfoOf(socket), connection: socket, gone: () => socket.destroyed });
        if (state) state.identity = 'accepted';
      } catch (e) {
        if (state) state.identity = e instanceof GatewayError && e.code === 'identity_unavailable' ? 'unavailable' : 'rejected';
        throw e;
      } finally {
        if (state) state.timings.identity = performance.now() - started;
      }
    });
  },
  { name: 'lbac-identity' },
);
