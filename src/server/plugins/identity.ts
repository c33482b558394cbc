import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError } from '../../errors.ts';
import { UNDECIDED, type Authenticator, type AuthRequest } from '../../identity/authenticator.ts';
import { tlsInfoOf } from '../../identity/mtls.ts';
import type { Subject } from '../../policy/decision.ts';

declare module 'fastify' {
  interface FastifyRequest {
    subject: Subject | null;
  }
  interface FastifyInstance {
    /** onRequest hook (callback style): sets request.subject or fails with 401/503. */
    authenticate(req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void;
    /**
     * The request's credentials judged again, by the authenticator current now
     * (a long-lived Loki tail: a revoked or changed identity must not keep it).
     * Rejects as authentication does (401, 503); records nothing.
     */
    reauthenticate(req: FastifyRequest): Promise<Subject>;
  }
}

/**
 * Identity: turns the request's credentials into a Subject (see src/identity).
 * `authenticator` may be a getter, so a config reload can swap it: each
 * request uses the one current when it arrives.
 */
/** What the identity sources read of a request: its headers, its TLS state and its connection. */
function authRequestOf(req: FastifyRequest): AuthRequest {
  const socket = req.raw.socket;
  return { headers: req.headers, rawHeaders: req.raw.rawHeaders, tls: tlsInfoOf(socket), connection: socket, gone: () => socket.destroyed };
}

export const identityPlugin = fp<{ authenticator: Authenticator | (() => Authenticator) }>(
  async (app, opts) => {
    const current = typeof opts.authenticator === 'function' ? opts.authenticator : () => opts.authenticator as Authenticator;
    app.decorateRequest('subject', null);
    // Callback-style: a token seen before is answered without a promise (Authenticator.peek).
    app.decorate('authenticate', (req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
      const started = performance.now();
      const state = req.lbac as FastifyRequest['lbac'] | null;
      const authenticator = current();
      const request = authRequestOf(req);
      const known = authenticator.peek(request);
      if (known !== UNDECIDED) {
        req.subject = known;
        if (state) {
          state.identity = 'accepted';
          state.timings.identity = performance.now() - started;
        }
        done();
        return;
      }
      authenticator.authenticate(request).then(
        (subject) => {
          req.subject = subject;
          if (state) {
            state.identity = 'accepted';
            state.timings.identity = performance.now() - started;
          }
          done();
        },
        (e: unknown) => {
          if (state) {
            state.identity = e instanceof GatewayError && e.code === 'identity_unavailable' ? 'unavailable' : 'rejected';
            state.timings.identity = performance.now() - started;
          }
          done(e as Error);
        },
      );
    });
    app.decorate('reauthenticate', (req: FastifyRequest): Promise<Subject> => {
      const authenticator = current();
      const request = authRequestOf(req);
      const known = authenticator.peek(request);
      return known !== UNDECIDED ? Promise.resolve(known) : authenticator.authenticate(request);
    });
  },
  { name: 'lbac-identity' },
);
