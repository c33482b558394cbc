import { newId } from '../../util/ids.ts';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { BackendKind } from '../../backends/routes.ts';
import { toGatewayError } from '../error-format.ts';
import { newRequestState } from '../request-state.ts';
import { ROUTE_ANSWER_HEADERS } from '../upstream-headers.ts';
import type { Recorder } from './hook.ts';

/** Which upstream and route-table endpoint a registered route URL belongs to. */
export type RouteIndex = ReadonlyMap<string, { readonly upstream: string; readonly kind: BackendKind; readonly endpoint: string }>;

/** A client's X-Request-Id is reused only if it is short and plain (it ends up in logs and upstream headers). */
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/** Fastify `genReqId`: the client's valid X-Request-Id, else a fresh UUID-shaped id (src/util/ids.ts). */
export function requestIdFor(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : newId();
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
    app.decorate('lbacRecorders', [] as Recorder[]);
    const recorders = app.lbacRecorders;
    // Callback-style hooks on the per-request path: no promise per hook.
    app.addHook('onRequest', (req, reply, done) => {
      req.lbac = newRequestState();
      const route = routes.get(req.routeOptions.url ?? '');
      if (route !== undefined) req.lbac.route = route;
      req.headers['x-request-id'] = req.id;
      reply.header('x-request-id', req.id);
      // Not cached, sniffed, run or framed (ROUTE_ANSWER_HEADERS says why).
      if (route !== undefined) reply.headers(ROUTE_ANSWER_HEADERS);
      // 'close' comes after every response; before its end only when the connection went first.
      // A WebSocket upgrade's lifecycle is the websocket plugin's: it records the relay when it ends, and
      // calls clientClosed itself for a client that leaves before the relay starts.
      const res = reply.raw;
      if ((req.raw as { upgrade?: boolean }).upgrade !== true) {
        res.on('close', () => {
          if (!res.writableFinished && req.lbac.answered !== true) clientClosed(req, reply, recorders);
        });
      }
      done();
    });
    app.addHook('onError', (req, _reply, err, done) => {
      if (req.lbac.clientClosed !== true) req.lbac.errorCode = toGatewayError(err).code;
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
      if (s !== null && s !== undefined && s.clientClosed !== true) {
        s.answered = true;
        if (s.forwardedAt !== undefined) s.timings.upstream = performance.now() - s.forwardedAt;
      }
      done();
    });
  },
  { name: 'lbac-context' },
);

/**
 * Whether the request's client is gone: its response closed early (HTTP,
 * recorded by clientClosed), or its socket is: destroyed, or, for a WebSocket
 * upgrade (whose socket is not read until the upgrade, so a client's FIN
 * leaves it undestroyed), no longer readable or writable, as ws itself checks.
 * A function: it changes across awaits.
 */
export function clientGone(req: FastifyRequest): boolean {
  if (req.lbac?.clientClosed === true) return true;
  const socket = req.raw.socket as Socket | null | undefined;
  if (socket === null || socket === undefined || socket.destroyed) return true;
  return (req.raw as { upgrade?: boolean }).upgrade === true && (!socket.readable || !socket.writable);
}

/**
 * The client went away before the answer was complete (Grafana cancels a
 * panel's queries on refresh and navigation): Fastify runs no onResponse hook
 * for such a request, so it is recorded now, as nginx records it: status 499
 * when no status line was sent, else the status sent. A request still being
 * authenticated is not forwarded any more; one waiting for the upstream has
 * its upstream request cancelled (src/server/upstream-dispatcher.ts).
 */
export function clientClosed(req: FastifyRequest, reply: FastifyReply, recorders: readonly Recorder[]): void {
  const s = req.lbac;
  if (s === null || s === undefined || s.clientClosed === true) return;
  s.clientClosed = true;
  if (s.forwardedAt !== undefined) s.timings.upstream = performance.now() - s.forwardedAt;
  if (!reply.raw.headersSent) {
    reply.raw.statusCode = 499;
    s.errorCode = 'client_closed';
  }
  s.cancelUpstream?.fire();
  req.log.info({ code: 'client_closed', status: reply.raw.statusCode, upstreamCancelled: s.cancelUpstream !== undefined }, 'the client closed the connection before the answer was complete');
  for (const record of recorders) record(req, reply);
}
