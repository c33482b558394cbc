import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authenticator } from '../../identity/authenticator.ts';
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

/** Identity: turns the request's credentials into a Subject (see src/identity). */
export const identityPlugin = fp<{ authenticator: Authenticator }>(
  async (app, { authenticator }) => {
    app.decorateRequest('subject', null);
    app.decorate('authenticate', async (req: FastifyRequest) => {
      req.subject = await authenticator.authenticate({ headers: req.headers });
    });
  },
  { name: 'lbac-identity' },
);
