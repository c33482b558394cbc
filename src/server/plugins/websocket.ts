/**
 * WebSocket routes (Loki's live tail): the client's upgrade goes through the same
 * identity → policy → enforcement path as every HTTP route, and the upstream
 * connection is opened BEFORE the client's upgrade completes, so every refusal
 * (401/403/400 — a browser's cross-origin upgrade included, crossOriginProblem —
 * an upstream that refuses or is down) is an HTTP answer in the
 * backend's error format and nothing is relayed. Once both sides are open,
 * upstream messages are relayed to the client as they are (the rewritten query
 * already restricts them); client messages are dropped (Loki reads none).
 * Either side closing closes the other; shutdown closes every relay with 1001.
 * A tail is decided once, at the upgrade, so it ends when that decision may no
 * longer hold: at the credential's `exp` or client certificate's `notAfter` (1008), and when the policy or the
 * configuration changes (1012, "reconnect": closeRelays from the runtime); its
 * credentials are judged again every server.tail.recheckIntervalMs (1008 / 1012 / 1013).
 * One subject holds at most server.tail.maxPerSubject tails open (one more: 429).
 * The cross-origin and per-subject refusals come after the decision, so they
 * are audited as every decided refusal is, and before Loki is contacted.
 * A route may name several upstream connections (a tail per policy
 * alternative, RouteSpec.fanOut): all open before the upgrade or none is kept,
 * the messages of each are relayed as they come, and any one closing ends the
 * tail (a tail that silently lost one alternative's lines would mislead).
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import WebSocket from 'ws';
import type { TlsConnectOptions } from '../../backends/credentials.ts';
import type { BackendKind, RouteSpec } from '../../backends/routes.ts';
import { GatewayError } from '../../errors.ts';
import { TCHAR } from '../../util/header-name.ts';
import { clientClosed, clientGone } from './context.ts';

/** Largest message a client may send (they are dropped; the limit bounds what is read). */
const CLIENT_MAX_PAYLOAD = 64 * 1024;
/** Largest message accepted from the upstream (a tail batch). */
const UPSTREAM_MAX_PAYLOAD = 64 * 1024 * 1024;
/** A client that stops reading: once this much is queued for it, the tail is closed. */
const CLIENT_MAX_BUFFERED = 16 * 1024 * 1024;
/**
 * Why a client's WebSocket handshake would be refused (RFC 6455 §4.2.1: a
 * Sec-WebSocket-Key of 16 base64 bytes, version 13), or undefined. At least
 * as strict as ws's own checks (handleUpgrade), which run only after the
 * upstream tail was opened: what ws would refuse is refused here, before.
 */
export function clientHandshakeProblem(headers: IncomingHttpHeaders): string | undefined {
  // Node reports any Upgrade (h2c, …) as an upgrade; ws takes only the one value "websocket".
  const upgrade = headers['upgrade'];
  if (typeof upgrade !== 'string' || upgrade.toLowerCase() !== 'websocket') return 'not a WebSocket upgrade (Upgrade: websocket is required)';
  if (!headerTokens(headers['connection']).includes('upgrade')) return 'not a WebSocket upgrade (Connection: Upgrade is required)';
  const key = headers['sec-websocket-key'];
  if (typeof key !== 'string' || !/^[A-Za-z0-9+/]{22}==$/.test(key)) return 'missing or invalid Sec-WebSocket-Key';
  if (headers['sec-websocket-version'] !== '13') return 'unsupported Sec-WebSocket-Version (13 is required)';
  const protocols = headers['sec-websocket-protocol'];
  if (protocols !== undefined && !validSubprotocols(protocols)) return 'invalid Sec-WebSocket-Protocol';
  return undefined;
}

/** Tokens (RFC 7230 tchar), comma-separated, blanks only around commas, none twice: what ws's subprotocol parser accepts. */
const SUBPROTOCOLS = new RegExp(`^${TCHAR}+(?:[ \\t]*,[ \\t]*${TCHAR}+)*$`);
function validSubprotocols(value: string | string[]): boolean {
  if (typeof value !== 'string' || !SUBPROTOCOLS.test(value)) return false;
  const names = value.split(',').map((p) => p.trim());
  return new Set(names).size === names.length;
}

/**
 * Why an upgrade sent by a browser page on another origin is refused, or
 * undefined (RFC 6455 §10.2: cross-site WebSocket hijacking). A page on any
 * site can open a WebSocket to the gateway, WebSockets have no CORS, and the
 * browser attaches what it sends on its own: cached Basic credentials (the
 * gateway's 401 offers `WWW-Authenticate: Basic`), a TLS client certificate,
 * and the cookies a proxy in front may turn into a bearer token. The page would
 * then read the tail. A browser always sends `Origin` with the handshake; other
 * clients (logcli, Grafana's backend) send none, and Grafana's data source proxy
 * (the way Grafana's browser side opens a tail) removes it. So an `Origin` that
 * is not the gateway's own (its `Host`, and over TLS its https: scheme; `null`
 * and values that are no http(s) origin included) is refused, whatever the
 * credential.
 */
export function crossOriginProblem(headers: IncomingHttpHeaders, tls: boolean): string | undefined {
  const origin = headers['origin'];
  if (origin === undefined) return undefined;
  const host = headers['host'];
  if (typeof host === 'string' && host !== '') {
    try {
      const o = new URL(origin);
      // Over TLS only an https: page is the gateway's own: an http:// page of the same host is whoever is on the
      // path (without HSTS), and the browser would still send the client certificate. Over plain HTTP either
      // scheme (a TLS proxy in front: the page is https:).
      const schemes = tls ? ['https:'] : ['http:', 'https:'];
      // Both as URL normalises them (case, default port), under the Origin's scheme.
      if (schemes.includes(o.protocol) && o.host === new URL(`${o.protocol}//${host}`).host) return undefined;
    } catch {
      // An Origin or Host that is no URL: not the gateway's own origin.
    }
  }
  return 'cross-origin WebSocket upgrade refused (a browser page on another site would read the tail with the credentials the browser sends on its own); connect without an Origin header';
}

/** The comma-separated tokens of a header, trimmed and lower-cased. */
function headerTokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value.join(',') : value).split(',').map((t) => t.trim().toLowerCase());
}

/** Largest upstream error body relayed when the upstream refuses the upgrade. */
const MAX_ERROR_BODY = 64 * 1024;
/** How long shutdown waits for close handshakes before cutting the connections. */
const SHUTDOWN_GRACE_MS = 2_000;

/** Where and how to open the upstream side. */
export interface WebSocketTarget {
  /** ws:// or wss:// URL, enforced query included. */
  readonly url: string;
  /** Request headers for the upstream handshake (upstreamHeaders(): owned, credential and hop-by-hop headers stripped). */
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** upstreams[].tls for a wss:// URL (CA, client certificate, servername, rejectUnauthorized). */
  readonly tls?: TlsConnectOptions;
}

export interface WebSocketRouteOptions {
  readonly kind: BackendKind;
  /** Upstream handshake timeout. */
  readonly timeoutMs: number;
  /** Identity is checked by then; decides and enforces (throws to refuse) and names the upstream connections (one or more). */
  readonly prepare: (req: FastifyRequest) => readonly WebSocketTarget[];
}

/** One live relay, closable from outside (shutdown). */
interface Relay {
  close(code: number, reason: string): void;
  readonly done: Promise<void>;
  terminate(): void;
}

export interface WebSocketPluginOptions {
  /** server.tail.maxPerSubject: live tails one subject holds open at once. */
  readonly maxTailsPerSubject: number;
  /** server.tail.recheckIntervalMs: how often an open tail's credentials are judged again. */
  readonly recheckIntervalMs: number;
}

/** The tails each subject holds open (an entry only while it holds one), and the settings. */
export interface TailLimits extends WebSocketPluginOptions {
  readonly held: Map<string, number>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Live WebSocket relays (closed with 1001 on shutdown). */
    websocketRelays: Set<Relay>;
    /** Per-subject tail counts and the tail settings (server.tail). */
    websocketTails: TailLimits;
  }
  interface FastifyContextConfig {
    /** Set on WebSocket routes: an upgrade request to any other route is refused. */
    websocket?: boolean;
  }
}

/** Close codes that may be sent in a close frame (RFC 6455 §7.4; ws' own check). */
function sendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** The code and reason to pass on when the other side closed with `code`. */
function relayedClose(code: number, reason: Buffer, lost: string): [number, string] {
  if (code === 1005) return [1000, ''];
  if (!sendableCode(code)) return [1011, lost];
  return [code, reason.toString('utf8')];
}

/**
 * Root plugin: @fastify/websocket (one `upgrade` listener for the whole server),
 * upgrades refused on every non-WebSocket route, and relays closed with 1001
 * when the server closes.
 */
export const websocketPlugin = fp<WebSocketPluginOptions>(
  async (app: FastifyInstance, opts: WebSocketPluginOptions) => {
    const relays = new Set<Relay>();
    app.decorate('websocketRelays', relays);
    app.decorate('websocketTails', { maxTailsPerSubject: opts.maxTailsPerSubject, recheckIntervalMs: opts.recheckIntervalMs, held: new Map<string, number>() });
    // Registered before @fastify/websocket's own preClose (which closes its clients
    // without a code): ours goes first, so tails see 1001 "going away".
    app.addHook('preClose', async () => {
      if (relays.size === 0) return;
      const all = [...relays];
      for (const r of all) r.close(1001, 'server shutting down');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(all.map((r) => r.done)), new Promise((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)))]);
      clearTimeout(timer);
      for (const r of all) r.terminate();
    });
    await app.register(websocket, { options: { maxPayload: CLIENT_MAX_PAYLOAD, perMessageDeflate: false } });
    // An upgrade answered with HTTP instead of 101 (every refusal: 400/401/403/404/429/503, the upstream's own)
    // ends its connection: @fastify/websocket destroys the socket once the answer is written (onResponse). Say
    // so, or a keep-alive client (an HTTP agent) puts the socket back in its pool and its next request on it
    // fails with "socket hang up". Node marks the request of an 'upgrade' event `upgrade`; hooks that refused
    // before @fastify/websocket's onRequest set `req.ws` (load shedding) are covered too.
    app.addHook('onSend', (req, reply, payload, done) => {
      // (Set by Node's parser, not in @types/node's IncomingMessage.)
      if ((req.raw as { upgrade?: boolean }).upgrade === true) reply.header('connection', 'close');
      done(null, payload);
    });
    // Callback style: this hook runs on every request, and an async one costs a promise each.
    app.addHook('onRequest', (req, _reply, done) => {
      // @fastify/websocket would upgrade (and immediately close) on any route: refuse instead.
      if (req.ws && req.routeOptions.config?.websocket !== true && !req.is404) {
        done(new GatewayError('bad_query', 'WebSocket upgrade is not served on this path', { status: 400 }));
        return;
      }
      done();
    });
  },
  { name: 'lbac-websocket', dependencies: ['lbac-context'] },
);

/** The upstream side, open; messages that arrive before the client is upgraded are held. */
interface Pending {
  readonly upstream: WebSocket;
  readonly held: [WebSocket.RawData, boolean][];
  closed: [number, Buffer] | undefined;
  /** Set once the client side is open. */
  onMessage: ((data: WebSocket.RawData, binary: boolean) => void) | undefined;
  onClose: ((code: number, reason: Buffer) => void) | undefined;
}

type Connected = { readonly kind: 'open'; readonly pending: Pending } | { readonly kind: 'refused'; readonly status: number; readonly contentType: string; readonly body: Buffer };

/** Open the upstream WebSocket; an upstream that answers with HTTP instead is reported, not thrown. */
function connectUpstream(target: WebSocketTarget, timeoutMs: number): Promise<Connected> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = {};
    // ws computes the handshake headers itself; the client's are never copied.
    for (const [k, v] of Object.entries(target.headers)) if (!k.startsWith('sec-websocket-')) headers[k] = v;
    const upstream = new WebSocket(target.url, { ...target.tls, headers, handshakeTimeout: timeoutMs, perMessageDeflate: false, maxPayload: UPSTREAM_MAX_PAYLOAD, followRedirects: false });
    const pending: Pending = { upstream, held: [], closed: undefined, onMessage: undefined, onClose: undefined };
    let settled = false;
    upstream.on('unexpected-response', (clientReq, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = () => {
        if (settled) return;
        settled = true;
        clientReq.destroy();
        resolve({ kind: 'refused', status: res.statusCode ?? 502, contentType: String(res.headers['content-type'] ?? 'text/plain; charset=utf-8'), body: Buffer.concat(chunks) });
      };
      res.on('data', (c: Buffer) => {
        if (size < MAX_ERROR_BODY) chunks.push(c.subarray(0, MAX_ERROR_BODY - size));
        size += c.length;
      });
      res.on('end', finish);
      res.on('error', finish);
      res.on('close', finish);
    });
    upstream.on('error', (e: Error) => {
      if (settled) return;
      settled = true;
      const timeout = /timed out/i.test(e.message);
      reject(new GatewayError(timeout ? 'upstream_timeout' : 'upstream_error', timeout ? 'upstream timed out' : 'upstream unavailable', { cause: e }));
    });
    upstream.once('open', () => {
      settled = true;
      resolve({ kind: 'open', pending });
    });
    upstream.on('message', (data, binary) => (pending.onMessage === undefined ? pending.held.push([data, binary]) : pending.onMessage(data, binary)));
    upstream.on('close', (code, reason) => {
      if (pending.onClose === undefined) pending.closed = [code, reason];
      else pending.onClose(code, reason);
    });
  });
}

/**
 * Every target opened, or none kept: the first refusal is reported (the
 * others are closed), the first failure thrown once every attempt settled.
 */
async function connectAll(targets: readonly WebSocketTarget[], timeoutMs: number): Promise<Connected[]> {
  const settled = await Promise.allSettled(targets.map((t) => connectUpstream(t, timeoutMs)));
  const open = settled.flatMap((s) => (s.status === 'fulfilled' && s.value.kind === 'open' ? [s.value.pending] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  const refused = settled.find((s) => s.status === 'fulfilled' && s.value.kind === 'refused') as PromiseFulfilledResult<Connected> | undefined;
  if (failed === undefined && refused === undefined) return open.map((pending) => ({ kind: 'open', pending }));
  for (const p of open) p.upstream.terminate();
  if (refused !== undefined) return [refused.value];
  throw failed?.reason;
}

/**
 * A client that left before its upgrade completed: recorded as 499
 * (plugins/context.ts); nobody to answer, and its half-closed socket is ended.
 */
function abandoned(app: FastifyInstance, req: FastifyRequest, reply: FastifyReply): undefined {
  clientClosed(req, reply, app.lbacRecorders);
  reply.hijack();
  req.raw.socket.destroy();
  return undefined;
}

/** Register `route` as a WebSocket route relaying to the upstream `opts.prepare` names. */
export function websocketRoute(app: FastifyInstance, route: RouteSpec, opts: WebSocketRouteOptions): void {
  const opened = new WeakMap<FastifyRequest, { pending: readonly Pending[]; reply: FastifyReply; generation: number }>();
  // The state a tail is authenticated under: read before the identity providers are (a reload may land while a
  // credential is checked, e.g. a scrypt-hashed API key the reload removes), so a change after it closes the tail.
  const authenticatedUnder = new WeakMap<FastifyRequest, number>();
  app.route({
    method: 'GET',
    url: route.path,
    config: { websocket: true },
    onRequest: [
      (req: FastifyRequest, _reply: FastifyReply, done: () => void) => {
        authenticatedUnder.set(req, relayGeneration(app));
        done();
      },
      app.authenticate,
    ],
    // Everything that can refuse runs here, before the upgrade: a throw is an HTTP error answer.
    preHandler: async (req: FastifyRequest, reply: FastifyReply) => {
      if (!req.ws) throw new GatewayError('bad_query', `${route.path} is a WebSocket endpoint: send an upgrade request`, { status: 400 });
      // The client's handshake is checked as ws would check it, before an upstream tail is started for it.
      const problem = clientHandshakeProblem(req.headers);
      if (problem !== undefined) throw new GatewayError('bad_query', problem, { status: 400 });
      const socket = req.raw.socket;
      // Left while being authenticated: no upstream tail for nobody.
      if (clientGone(req)) return abandoned(app, req, reply);
      // The state the tail is authenticated and decided under: a change since, or before it becomes a relay, closes it then (wsHandler).
      const generation = authenticatedUnder.get(req) ?? -1;
      // A credential inside the sources' clock tolerance past its end is still served on HTTP routes, but a
      // tail with it would be closed (1008) as soon as it opened: refused before Loki is contacted.
      const left = msUntilExpiry(req.subject ?? undefined);
      if (left !== undefined && left <= 0) throw new GatewayError('unauthenticated', 'the credential has expired (within the clock tolerance HTTP requests allow): renew it to open a tail');
      const targets = opts.prepare(req);
      // Refused once decided (the decision is audited with the refusal), before Loki is contacted.
      const crossOrigin = crossOriginProblem(req.headers, (socket as { encrypted?: boolean }).encrypted === true);
      if (crossOrigin !== undefined) throw new GatewayError('forbidden', crossOrigin);
      const tails = app.websocketTails;
      if (!holdTail(tails, req, reply)) {
        throw new GatewayError('too_many_requests', `this subject has ${tails.maxTailsPerSubject} live tails open (server.tail.maxPerSubject); close one and retry`);
      }
      let connected: Connected[];
      try {
        connected = await connectAll(targets, opts.timeoutMs);
      } catch (e) {
        // The upstream failed, but nobody is there to be told: recorded as the client's departure.
        if (clientGone(req)) return abandoned(app, req, reply);
        throw e;
      }
      // The client may be gone by the time the upstream answered, or vanish before its upgrade completes.
      if (clientGone(req)) {
        for (const c of connected) if (c.kind === 'open') c.pending.upstream.terminate();
        return abandoned(app, req, reply);
      }
      const refused = connected.find((c) => c.kind === 'refused');
      if (refused !== undefined) {
        // The upstream's own refusal (e.g. Loki's 400 for a query it rejects) passes through; anything else is a bad gateway.
        if (refused.status >= 400 && refused.status <= 599) return reply.code(refused.status).type(refused.contentType).send(refused.body);
        throw new GatewayError('upstream_error', `upstream answered ${refused.status} instead of switching protocols`);
      }
      const pending = connected.flatMap((c) => (c.kind === 'open' ? [c.pending] : []));
      socket.once('close', () => {
        // Gone before the relay started (it records itself once it has).
        if (pending.some((p) => p.onClose !== undefined)) return;
        for (const p of pending) p.upstream.terminate();
        clientClosed(req, reply, app.lbacRecorders);
      });
      opened.set(req, { pending, reply, generation });
      req.log.debug({ endpoint: route.endpoint }, 'websocket upstream open');
      return undefined;
    },
    handler: async () => {
      throw new GatewayError('bad_query', `${route.path} is a WebSocket endpoint: send an upgrade request`, { status: 400 });
    },
    wsHandler: (client: WebSocket, req: FastifyRequest) => {
      const entry = opened.get(req);
      opened.delete(req);
      if (entry === undefined) {
        client.close(1011, 'no upstream');
        return;
      }
      const r = relay(app, req, entry.reply, client, entry.pending);
      // The policy or configuration changed while the upstream side opened: closeRelays did not see this tail yet.
      if (entry.generation !== relayGeneration(app)) r.close(1012, 'policy or configuration changed; reconnect');
    },
  });
}

/**
 * Close every live relay (e.g. 1012 when the policy or the configuration
 * changed: each tail was decided under the old one; clients reconnect and are
 * decided again).
 */
export function closeRelays(app: FastifyInstance, code: number, reason: string): void {
  if (!app.hasDecorator('websocketRelays')) return;
  generations.set(app.websocketRelays, relayGeneration(app) + 1);
  for (const r of [...app.websocketRelays]) r.close(code, reason);
}

/**
 * How many times closeRelays ran for this server (keyed by its relay set, which
 * every encapsulated context shares): a tail decided under an older count is
 * closed once it opens.
 */
const generations = new WeakMap<Set<Relay>, number>();
function relayGeneration(app: FastifyInstance): number {
  return app.hasDecorator('websocketRelays') ? (generations.get(app.websocketRelays) ?? 0) : 0;
}

/**
 * Milliseconds until the subject's credential expires — a token's `exp`
 * (seconds), a client certificate's `notAfter` (as Node reports it: "Nov 27
 * 09:00:00 2026 GMT") — or undefined when it carries neither. A client
 * certificate is verified at the TLS handshake only, so without this a tail
 * would outlive it. An `exp` that is no number, or a `notAfter` that does not
 * parse, is already expired (fail closed).
 */
export function msUntilExpiry(subject: { readonly auth: string; readonly claims: Readonly<Record<string, unknown>> } | undefined, now = Date.now()): number | undefined {
  if (subject === undefined) return undefined;
  const exp = subject.claims['exp'];
  // An `exp` in another shape cannot be checked: the credential is treated as expired, not as unending.
  if (exp !== undefined && exp !== null) return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 - now : 0;
  const notAfter = subject.claims['notAfter'];
  if (subject.auth === 'mtls' && notAfter !== undefined) {
    const t = typeof notAfter === 'string' ? Date.parse(notAfter) : Number.NaN;
    return Number.isFinite(t) ? t - now : 0;
  }
  return undefined;
}

/** The subject a tail counts against (issuer, kind of credential and sub, as limits.ts counts it). */
function tailSubjectKey(req: FastifyRequest): string {
  const s = req.subject;
  return s === null || s === undefined ? '' : `${s.issuer ?? ''}\u0000${s.auth}\u0000${s.sub}`;
}

/**
 * Counts one tail of the request's subject until the response closes (the
 * tail ended, the upgrade was refused or the client left: 'close' always
 * comes, as for the concurrency slots in limits.ts); false, nothing counted,
 * when the subject already holds server.tail.maxPerSubject.
 */
function holdTail(tails: TailLimits, req: FastifyRequest, reply: FastifyReply): boolean {
  const who = tailSubjectKey(req);
  const held = tails.held.get(who) ?? 0;
  if (held >= tails.maxTailsPerSubject) return false;
  // A response already closed (the client left) would never release it.
  if (reply.raw.closed || reply.raw.destroyed) return true;
  tails.held.set(who, held + 1);
  reply.raw.once('close', () => {
    const left = (tails.held.get(who) ?? 1) - 1;
    if (left > 0) tails.held.set(who, left);
    else tails.held.delete(who);
  });
  return true;
}

/** Whether two subjects would be decided alike: the same object, or equal in every field. */
function sameSubject(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

// setTimeout's largest delay; a credential valid for longer is checked again then.
const MAX_TIMER_MS = 2_147_483_647;

function relay(app: FastifyInstance, req: FastifyRequest, reply: FastifyReply, client: WebSocket, parts: readonly Pending[]): Relay {
  let finished!: () => void;
  const done = new Promise<void>((r) => (finished = r));
  let expiry: NodeJS.Timeout | undefined;
  const closeUpstreams = (code: number, reason?: string) => {
    for (const { upstream } of parts) {
      if (upstream.readyState === WebSocket.OPEN) upstream.close(code, reason);
      else if (upstream.readyState === WebSocket.CONNECTING) upstream.terminate();
    }
  };
  const closeBoth = (code: number, reason: string) => {
    if (client.readyState === WebSocket.OPEN) client.close(code, reason);
    closeUpstreams(code === 1001 ? 1001 : 1000);
  };
  // The tail was granted to a credential: it ends when the credential does.
  const armExpiry = () => {
    const left = msUntilExpiry(req.subject ?? undefined);
    if (left === undefined) return;
    if (left <= 0) return closeBoth(1008, 'credentials expired');
    expiry = setTimeout(left > MAX_TIMER_MS ? armExpiry : () => closeBoth(1008, 'credentials expired'), Math.min(left, MAX_TIMER_MS));
    expiry.unref();
  };
  // The credential judged again while the tail is open, every server.tail.recheckIntervalMs. A token's `exp`
  // bounds a tail, but a credential can stop being accepted sooner (an introspected token revoked at the
  // provider, a key the provider withdrew), and HTTP requests see that within the sources' cache TTLs
  // (introspection: 60 s by default): refused → 1008, a provider that cannot answer → 1013, a subject that
  // changed (groups, claims) → 1012 (the reconnect is decided again). A credential still cached is answered
  // without a provider call.
  let recheck: NodeJS.Timeout | undefined;
  const armRecheck = () => {
    recheck = setTimeout(() => {
      app.reauthenticate(req).then(
        (subject) => {
          if (client.readyState !== WebSocket.OPEN) return;
          if (!sameSubject(subject, req.subject)) return closeBoth(1012, 'identity changed; reconnect');
          armRecheck();
        },
        (e: unknown) => {
          if (client.readyState !== WebSocket.OPEN) return;
          req.log.info({ err: e }, 'websocket tail: credentials no longer accepted');
          if (e instanceof GatewayError && e.code === 'identity_unavailable') closeBoth(1013, 'identity provider unavailable; reconnect later');
          else closeBoth(1008, 'credentials no longer accepted');
        },
      );
    }, app.websocketTails.recheckIntervalMs);
    recheck.unref();
  };
  const r: Relay = {
    close: closeBoth,
    done,
    terminate: () => {
      client.terminate();
      for (const { upstream } of parts) upstream.terminate();
    },
  };
  app.websocketRelays.add(r);

  const send = (data: WebSocket.RawData, binary: boolean) => {
    if (client.readyState !== WebSocket.OPEN) return;
    if (client.bufferedAmount > CLIENT_MAX_BUFFERED) {
      req.log.warn({ buffered: client.bufferedAmount }, 'websocket client is not reading; closing');
      closeBoth(1008, 'client too slow');
      return;
    }
    client.send(data, { binary });
  };
  let upstreamsOpen = parts.length;
  let clientClosed = false;
  const maybeFinished = () => {
    if (upstreamsOpen > 0 || !clientClosed) return;
    clearTimeout(expiry);
    clearTimeout(recheck);
    app.websocketRelays.delete(r);
    finished();
    // The request's lifecycle ends with the tail: run onResponse (audit record, metrics, in-flight accounting)
    // by finishing the hijacked response object, with 101 as the status the client saw.
    // (@fastify/websocket hijacks the reply, so Fastify would not run them on its own.)
    reply.raw.statusCode = 101;
    reply.raw.emit('finish');
  };
  const onUpstreamClose = (code: number, reason: Buffer) => {
    upstreamsOpen--;
    // The first upstream to close ends the tail: its code goes to the client, the other parts are closed.
    if (client.readyState === WebSocket.OPEN || client.readyState === WebSocket.CONNECTING) {
      const [c, why] = relayedClose(code, reason, 'upstream connection lost');
      client.close(c, why);
      closeUpstreams(1000);
    }
    maybeFinished();
  };

  for (const part of parts) {
    for (const [data, binary] of part.held.splice(0)) send(data, binary);
    part.onMessage = send;
    part.onClose = onUpstreamClose;
    part.upstream.on('error', (e) => req.log.info({ err: e }, 'websocket upstream error'));
  }
  for (const part of parts) if (part.closed !== undefined) onUpstreamClose(...part.closed);
  armExpiry();
  armRecheck();

  // Client messages are not read by Loki: dropped (maxPayload bounds them).
  client.on('close', (code, reason) => {
    clientClosed = true;
    const [c, why] = relayedClose(code, reason, 'client connection lost');
    closeUpstreams(c === 1011 ? 1000 : c, why);
    maybeFinished();
  });
  return r;
}
