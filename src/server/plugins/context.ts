import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import fp from 'fastify-plugin';
import { toGatewayError } from '../error-format.ts';
import { newRequestState } from '../request-state.ts';

/** Which upstream and route-table endpoint a registered route URL belongs to. */
export type RouteIndex = ReadonlyMap<string, { readonly upstream: string; readonly endpoint: string }>;

/** A client's X-Request-Id is reused only if it is short and plain (it ends up in logs and upstream headers). */
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/** Fastify `genReqId`: the client's valid X-Request-Id, else a fresh UUID. */
export function requestIdFor(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
}

/**
 * Per-request context, first of all hooks: the request state read by audit and
 * metrics (`req.lbac`), the request id echoed to the client and forwarded
 * upstream (the upstream plugin copies client headers, so the validated id
 * replaces whatever the client sent), and the error code of a failed request.
 */
export const contextPlugin = fp<{ routes: RouteIndex; draining?: () => boolean }>(
  async (app, { routes, draining }) => {
    app.decorateRequest('lbac', null as never);
    // Callback-style hooks on the per-request path: no promise per hook.
    app.addHook('onRequest', (req, reply, done) => {
      req.lbac = newRequestState();
      const route = routes.get(req.routeOptions.url ?? '');
      if (route !== undefined) req.lbac.route = route;
      req.headers['x-request-id'] = req.id;
      reply.header('x-request-id', req.id);
      done();
    });
    app.addHook('onError', (req, _reply, err, done) => {
      req.lbac.errorCode = toGatewayError(err).code;
      done();
    });
    // While shutting down, every response closes its connection: in-flight requests finish,
    // and their keep-alive sockets do not hold the process open afterwards.
    if (draining !== undefined) {
      app.addHook('onSend', (_req, reply, payload, done) => {
        if (draining()) reply.header('connection', 'close');
        done(null, payload);
      });
    }
    // First onResponse hook: close the upstream stage before audit and metrics read the timings.
    app.addHook('onResponse', (req, _reply, done) => {
      const s = req.lbac;
      if (s?.forwardedAt !== undefined) s.timings.upstream = performance.now() - s.forwardedAt;
      done();
    });
  },
  { name: 'lbac-context' },
);
