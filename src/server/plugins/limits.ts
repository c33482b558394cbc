import underPressure from '@fastify/under-pressure';
import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerConfig } from '../../config/schema.ts';
import type { ResolvedUpstream } from '../../config/load.ts';
import { GatewayError } from '../../errors.ts';
import type { GatewayMetrics } from '../metrics.ts';
import { clientGone } from './context.ts';

export interface LimitsOptions {
  readonly loadShedding: ServerConfig['loadShedding'];
  /** server.sendTimeoutMs (unset: none). */
  readonly sendTimeoutMs?: number;
  readonly upstreams: readonly ResolvedUpstream[];
  readonly metrics: GatewayMetrics | undefined;
}

/** A response's socket timeout (plugins below): the client took nothing for sendTimeoutMs. */
function onStalled(this: { destroy(): void }): void {
  this.destroy();
}

/** Retry-After for a request refused by a per-upstream concurrency limit. */
const CONCURRENCY_RETRY_AFTER = '1';

/**
 * Upstream request slots beyond the one each request takes: a request the
 * gateway asks the upstream several times (RouteSpec.fanOut) takes one more
 * per extra part, so it counts against `maxConcurrent` as what it costs.
 */
export interface UpstreamSlots {
  /** Takes `n` more slots of `upstream` until `reply` closes; false (nothing taken) when that would pass its limit. */
  takeExtra(upstream: string, n: number, reply: FastifyReply): boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    upstreamSlots: UpstreamSlots;
  }
}

/**
 * Load shedding and per-upstream concurrency limits. Both answer 503 with
 * Retry-After in the backend's error format (the route's error handler renders
 * the GatewayError). Health routes are never shed, so an overloaded gateway
 * stays visibly alive. Runs after the context plugin (it needs `req.lbac.route`).
 */
export const limitsPlugin = fp<LimitsOptions>(
  async (app, opts) => {
    const ls = opts.loadShedding;
    if (ls.enabled) {
      // The event loop is sampled from here on, and what runs before the server listens (the policy
      // compiled, grammars loaded) stalls it: the samples a request is judged by in the first two
      // intervals after listening may measure the start, not load. Then event-loop pressure does not
      // shed (one freshly-ready worker answered 80 × 503 in half a second). Without a listen (inject), no grace.
      let listenedAt: number | undefined;
      app.addHook('onListen', (done) => {
        listenedAt = performance.now();
        done();
      });
      const startGraceMs = 2 * ls.sampleIntervalMs;
      const startingUp = (type: string): boolean =>
        (type === 'eventLoopDelay' || type === 'eventLoopUtilization') && listenedAt !== undefined && performance.now() - listenedAt < startGraceMs;
      // under-pressure stops at the first limit passed: the memory limits it did not look at, looked at here.
      const memoryPressure = (): 'heapUsedBytes' | 'rssBytes' | undefined => {
        const m = app.memoryUsage();
        if (ls.maxHeapUsedBytes !== undefined && m.heapUsed > ls.maxHeapUsedBytes) return 'heapUsedBytes';
        if (ls.maxRssBytes !== undefined && m.rssBytes > ls.maxRssBytes) return 'rssBytes';
        return undefined;
      };
      await app.register(underPressure, {
        maxEventLoopDelay: ls.maxEventLoopDelayMs,
        // Utilisation over the last sample interval, as the delay is; under-pressure's default is since it started.
        ...(ls.maxEventLoopUtilization === undefined ? {} : { maxEventLoopUtilization: ls.maxEventLoopUtilization, eventLoopUtilizationMode: 'interval' as const }),
        ...(ls.maxHeapUsedBytes === undefined ? {} : { maxHeapUsedBytes: ls.maxHeapUsedBytes }),
        ...(ls.maxRssBytes === undefined ? {} : { maxRssBytes: ls.maxRssBytes }),
        sampleInterval: ls.sampleIntervalMs,
        retryAfter: ls.retryAfterSeconds,
        // A rejected promise makes under-pressure fail the request with that error (rendered by the route's error handler).
        pressureHandler: (req: FastifyRequest, reply: FastifyReply, type: string): Promise<void> | undefined => {
          if (req.lbac.route === undefined) return undefined; // health, not-found: never shed
          if (startingUp(type)) {
            const memory = memoryPressure();
            if (memory === undefined) return undefined;
            type = memory;
          }
          req.lbac.shed = type;
          opts.metrics?.shed.inc({ reason: type });
          reply.header('retry-after', String(ls.retryAfterSeconds));
          return Promise.reject(new GatewayError('overloaded', 'the gateway is overloaded; retry later'));
        },
      });
    }

    // Refusals for want of room later in a request (the buffered-answer budget, the filter
    // thread's queue) are shed too: counted under the reason the error names, once per request.
    app.addHook('onError', (req, _reply, error, done) => {
      const state = req.lbac as FastifyRequest['lbac'] | null | undefined;
      if (error instanceof GatewayError && error.code === 'overloaded' && state !== null && state !== undefined && state.shed === undefined) {
        const named = error.details?.['shed'];
        const reason = typeof named === 'string' ? named : 'overloaded';
        state.shed = reason;
        opts.metrics?.shed.inc({ reason });
      }
      done();
    });

    // A client that stops reading its answer would hold the answer's buffers, the upstream
    // connection streaming it and its concurrency slots for good (Node has no send timeout, and the
    // upstream's body timeout does not run while the client's backpressure pauses it). Once the
    // answer is being sent, the socket's inactivity timeout cuts such a client off: 'close' follows,
    // which frees the slots and cancels the upstream request (plugins/context.ts). After the answer,
    // Node sets the socket's keep-alive timeout again. Not for WebSocket upgrades (live tails).
    const sendTimeoutMs = opts.sendTimeoutMs;
    if (sendTimeoutMs !== undefined) {
      app.addHook('onSend', (req, reply, payload, done) => {
        if (req.lbac.route !== undefined && req.headers.upgrade === undefined) reply.raw.setTimeout(sendTimeoutMs, onStalled);
        done(null, payload);
      });
    }
    const limits = new Map<string, number>();
    for (const u of opts.upstreams) if (u.maxConcurrent !== undefined) limits.set(u.name, u.maxConcurrent);
    const inflight = opts.metrics?.inflight ?? new Map<string, number>();
    // Per upstream with maxConcurrentPerSubject: its limit and the slots each subject holds (an entry
    // only while it holds one, so the map is bounded by the requests in flight, not by who ever came).
    const perSubject = new Map<string, { max: number; held: Map<string, number> }>();
    for (const u of opts.upstreams) if (u.maxConcurrentPerSubject !== undefined) perSubject.set(u.name, { max: u.maxConcurrentPerSubject, held: new Map() });
    // Taken once the request is authenticated and its body read (preHandler), just before the upstream
    // work: a client that stalls its body, or one the gateway refuses, never holds a slot.
    app.addHook('preHandler', (req, reply, done) => {
      const route = req.lbac.route;
      if (route === undefined || req.lbac.shed !== undefined) return done();
      // A client gone while it was authenticated takes no slot: its response has closed already, so
      // the release below would never come (and nothing is forwarded for it: plugins/upstream.ts).
      if (clientGone(req)) return done();
      const name = route.upstream;
      const n = inflight.get(name) ?? 0;
      const max = limits.get(name);
      if (max !== undefined && n >= max) {
        refuse(reply, 'concurrency');
        reply.header('retry-after', CONCURRENCY_RETRY_AFTER);
        return done(new GatewayError('overloaded', `upstream ${name} is at its concurrency limit (${max}); retry later`));
      }
      const mine = perSubject.get(name);
      const who = mine === undefined ? undefined : subjectKey(req);
      if (mine !== undefined && who !== undefined && (mine.held.get(who) ?? 0) >= mine.max) {
        refuse(reply, 'subject_concurrency');
        reply.header('retry-after', CONCURRENCY_RETRY_AFTER);
        return done(new GatewayError('overloaded', `this subject has ${mine.max} requests in flight to upstream ${name} (its per-subject limit); retry later`));
      }
      hold(name, 1, reply, 1);
      done();
    });
    /** The subject a request counts against for maxConcurrentPerSubject (undefined: none authenticated). */
    function subjectKey(req: FastifyRequest): string | undefined {
      const s = req.subject;
      if (s === null || s === undefined) return undefined;
      return `${s.issuer ?? ''}\u0000${s.auth}\u0000${s.sub}`;
    }
    /**
     * Counts `n` slots of `name` in flight (and `own` of them against the request's subject)
     * until `reply` closes ('close' fires once the response is finished or the client went
     * away: always released).
     */
    function hold(name: string, n: number, reply: FastifyReply, own: number): boolean {
      // A response already closed (its client left while the request waited) would never release them.
      if (reply.raw.closed || reply.raw.destroyed) return false;
      inflight.set(name, (inflight.get(name) ?? 0) + n);
      const mine = perSubject.get(name);
      const who = mine === undefined || own <= 0 ? undefined : subjectKey(reply.request);
      if (mine !== undefined && who !== undefined) mine.held.set(who, (mine.held.get(who) ?? 0) + own);
      let released = false;
      reply.raw.once('close', () => {
        if (released) return;
        released = true;
        inflight.set(name, (inflight.get(name) ?? n) - n);
        if (mine !== undefined && who !== undefined) {
          const left = (mine.held.get(who) ?? own) - own;
          if (left > 0) mine.held.set(who, left);
          else mine.held.delete(who);
        }
      });
      return true;
    }
    /** A request shed for want of a slot (its own, preHandler above, or a fan-out's extra ones): counted by reason, and named in its audit line (`response.shed`; a fan-out's is its decision's line). */
    function refuse(reply: FastifyReply, reason: string): false {
      const state = reply.request.lbac;
      if (state !== null && state !== undefined) state.shed = reason;
      opts.metrics?.shed.inc({ reason });
      return false;
    }
    app.decorate('upstreamSlots', {
      takeExtra(name: string, n: number, reply: FastifyReply): boolean {
        if (n <= 0) return true;
        const max = limits.get(name);
        if (max !== undefined && (inflight.get(name) ?? 0) + n > max) return refuse(reply, 'concurrency');
        // The subject's share: its parts count up to its own limit (a lone request with more
        // groups than the limit is still served, its parts queued in the pool).
        const mine = perSubject.get(name);
        const who = mine === undefined ? undefined : subjectKey(reply.request);
        let own = 0;
        if (mine !== undefined && who !== undefined) {
          const held = mine.held.get(who) ?? 0;
          own = Math.min(n, Math.max(0, mine.max - held));
          // Already at its limit with other requests (this one's own slot included): refused.
          if (own < n && held > 1) return refuse(reply, 'subject_concurrency');
        }
        return hold(name, n, reply, own);
      },
    });
  },
  { name: 'lbac-limits', dependencies: ['lbac-context'] },
);
