import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { BackendKind } from '../../backends/routes.ts';
import { GatewayError } from '../../errors.ts';
import { InvalidTokenError } from '../../identity/jwt.ts';
import { renderError, toGatewayError } from '../error-format.ts';
import { newRequestState } from '../request-state.ts';
import { ROUTE_ANSWER_HEADERS } from '../upstream-headers.ts';
import type { Recorder } from './hook.ts';

/**
 * Retry-After (seconds) of a 503 or 429 whose cause names none: an identity provider
 * that could not decide, no policy yet, a live tail beyond server.tail.maxPerSubject
 * (freed when one of the subject's tails ends, minutes or hours later: retrying every
 * second would only load the gateway).
 */
export const DEFAULT_RETRY_AFTER = '5';

/**
 * Installs the error and not-found handlers for one encapsulation context,
 * rendering in `kind`'s native format. Call it at the root (Prometheus-style
 * default) and again inside each upstream scope.
 */
export function installErrorHandlers(app: FastifyInstance, kind: BackendKind | undefined, notFound = true): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const ge = toGatewayError(err);
    // Whatever failed after the client left (the abandoned upstream answer, a refusal to forward) is
    // nobody's answer: the request was recorded and logged when the client went (plugins/context.ts).
    const level = req.lbac?.clientClosed === true ? 'debug' : ge.status >= 500 ? 'error' : 'info';
    req.log[level]({ code: ge.code, status: ge.status, err: ge.status >= 500 ? err : undefined, details: ge.details }, ge.message);
    // An identity provider's failure is logged in full; the client (often anonymous) learns only that it failed.
    // So is a policy's: its text (OPA's error with the policy's source locations, a decision's values) is the
    // operator's, not the client's.
    const shown =
      ge.code === 'identity_unavailable'
        ? new GatewayError('identity_unavailable', 'identity provider unavailable; retry later')
        : ge.code === 'policy_error'
          ? new GatewayError('policy_error', 'policy evaluation failed (the gateway log has the cause)')
          : ge;
    const r = renderError(kind, shown);
    if (ge.status === 401) {
      const missing = ge instanceof InvalidTokenError && ge.missing;
      const bearer = missing ? 'Bearer realm="lbac-gateway"' : 'Bearer realm="lbac-gateway", error="invalid_token"';
      // One challenge per header line; Basic only when a basic source is configured (the Authenticator marks the error).
      reply.header('www-authenticate', ge instanceof InvalidTokenError && ge.basicChallenge ? [bearer, 'Basic realm="lbac-gateway"'] : bearer);
    }
    // Every 503 and 429 the gateway answers itself says when to come back; the limits that know better set their own (plugins/limits.ts).
    if ((ge.status === 503 || ge.status === 429) && !reply.hasHeader('retry-after')) reply.header('retry-after', DEFAULT_RETRY_AFTER);
    return reply.code(r.status).type(r.contentType).send(r.body);
  });
  // An upstream mounted at "/" shares the root's not-found handler (Fastify allows one per prefix).
  if (!notFound) return;
  // The path is not repeated: the body would carry whatever text a link put there (markup, a
  // phishing line shown as the backend's error), and the client knows what it asked for.
  app.setNotFoundHandler((_req: FastifyRequest, reply: FastifyReply) => {
    const r = renderError(kind, new GatewayError('not_found', 'unknown path (not forwarded)'));
    return reply.code(r.status).type(r.contentType).send(r.body);
  });
}

/**
 * Fastify's router refusing a path before any route or hook runs (Fastify's
 * `frameworkErrors`): a path that is not valid percent-encoding (`%FF`, `%zz`)
 * or a path parameter over `maxParamLength`. Fastify's own answer repeats the
 * path (whatever text a link put there) and nothing recorded the request:
 * answered here in the gateway's words, with a request id, logged and counted
 * (`endpoint="unmatched"`, as a 404). Never forwarded.
 */
export function answerRouterRefusal(err: { code?: string }, req: FastifyRequest, reply: FastifyReply, recorders: readonly Recorder[], kind: BackendKind | undefined): FastifyReply {
  // No onRequest hook ran: the state the recorders read, and the answer's headers, are set here.
  req.lbac = newRequestState();
  reply.header('x-request-id', req.id);
  reply.headers(ROUTE_ANSWER_HEADERS);
  // Nor will an onResponse hook run: the recorders are called when the answer is out.
  reply.raw.once('finish', () => {
    for (const record of recorders) record(req, reply);
  });
  const tooLong = err.code === 'FST_ERR_MAX_PARAM_LENGTH';
  const refusal = tooLong
    ? new GatewayError('bad_query', 'a path parameter is too long (not forwarded)', { status: 414 })
    : new GatewayError('bad_query', 'the path is not valid percent-encoding (not forwarded)');
  req.lbac.errorCode = refusal.code;
  req.log.info({ code: err.code, status: refusal.status }, refusal.message);
  // In the format of the backend whose mount the path is under (as its 404 is).
  const r = renderError(kind, refusal);
  return reply.code(r.status).type(r.contentType).send(r.body);
}
