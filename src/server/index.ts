import { watch, type FSWatcher } from 'node:fs';
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { FastifyInstance } from 'fastify';
import { loadConfigFile, type GatewayConfig } from '../config/load.ts';
import { configWarnings } from '../config/warnings.ts';
import { Authenticator } from '../identity/authenticator.ts';
import { BundleClient, type PreparedReload } from '../policy/bundle-client.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { PolicyHolder } from '../policy/holder.ts';
import { buildAdminApp, splitHostPort } from './admin.ts';
import { serveWorkerAdmin } from './cluster-admin.ts';
import { buildApp } from './app.ts';
import { createMetrics, type GatewayMetrics } from './metrics.ts';
import { AuditLog } from './plugins/audit.ts';
import { readinessOf } from './plugins/health.ts';
import { configRevision, dataRevision, mergeReloadable, restartRequiredChanges } from './reload.ts';
import { classifyReloadError, reloadRetryDelayMs } from './reload-retry.ts';
import { ConfigError } from '../errors.ts';
import { redactErrorUrls } from '../util/shown-url.ts';
import { closeRelays } from './plugins/websocket.ts';
import { keyFiles, keyFilesDigest } from './key-files.ts';

export interface RunningGateway {
  readonly url: string;
  /** The admin listener's URL (/metrics), when `server.adminListen` is set. */
  readonly adminUrl: string | undefined;
  readonly app: FastifyInstance;
  readonly runtime: GatewayRuntime;
  /** Stop immediately (no drain delay). */
  close(): Promise<void>;
  /**
   * Graceful stop: /readyz → 503, wait `server.shutdownDelayMs`, stop accepting
   * connections and let in-flight requests finish. Resolves false when they did
   * not finish within `server.shutdownTimeoutMs`.
   */
  shutdown(): Promise<boolean>;
}

export interface ReloadResult {
  readonly ok: boolean;
  readonly error?: string;
  /** A rejection: the code it was classified by (an errno code such as ENOENT, or a gateway error code). */
  readonly code?: string;
  /** A rejection: its cause may pass (a file that could not be read, a provider that could not be reached). */
  readonly transient?: boolean;
  /** A transient rejection: the retry runs after this many ms (unless a newer reload or a stop comes first). */
  readonly retryInMs?: number;
  /** Changed keys that need a restart (kept at their running values). */
  readonly restartRequired?: readonly string[];
  readonly unchanged?: boolean;
}

/** A reload waiting for the running one: the requests it answers. */
interface QueuedReload {
  readonly reasons: Set<string>;
  skipIfUnchanged: boolean;
  /** A retry of a rejected reload: its number (1 for the first) and what the rejected reload was for. */
  retry: { readonly attempt: number; readonly of: string } | undefined;
  /** `GatewayRuntime.#generation` when the last request joined: a later one takes over any retry. */
  generation: number;
  result: Promise<ReloadResult>;
}

/** Never log credentials: these paths are censored wherever they appear. */
export const REDACT_PATHS = ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-grafana-id"]', 'req.headers["x-id-token"]'];

/**
 * Node's HTTP parser errors (a malformed request, which Fastify logs at trace
 * as "client error") carry the request's raw bytes as `rawPacket`: its
 * Authorization header and query string. Never logged; `code`, `reason` and
 * `bytesParsed` say what was wrong.
 */
function withoutRawRequest<T extends object>(serialised: T): T {
  if (!('rawPacket' in serialised)) return serialised;
  const { rawPacket: _raw, ...rest } = serialised;
  return rest as T;
}

/** The gateway's logger (stdout unless `destination` is given: tests). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // Log the path only: query strings may carry anything a client chose to put there.
      req: (req: { method: string; url: string; id: string }) => ({ id: req.id, method: req.method, path: req.url.split('?')[0] }),
      // Errors quote the URLs they failed on (fetch, jose): shown without credentials or query, causes included.
      err: (e: Error) => redactErrorUrls(withoutRawRequest(pino.stdSerializers.err(e))),
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

/**
 * The running gateway's swappable state: the current config, authenticator and
 * policy (in a PolicyHolder). `reload` validates and builds everything new
 * before it swaps anything; the swap is a few synchronous assignments, so each
 * request sees either the old or the new state for identity and policy.
 */
export class GatewayRuntime {
  #config: GatewayConfig;
  #authenticator: Authenticator;
  #dataRevision: string;
  /** configRevision of the running config: workers compare it (the cluster's /readyz). */
  #configRevision: string;
  /** keyFilesDigest of the running config, taken before its sources read the files (undefined: not known). */
  #keyDigest: string | undefined;
  #draining = false;
  #queue: Promise<unknown> = Promise.resolve();
  /** The reload queued behind the running one, not started yet: later requests join it. */
  #waiting: QueuedReload | undefined;
  /** Counts reload requests (SIGHUP, file change; not retries): a retry is scheduled only if none came after the rejected one. */
  #generation = 0;
  /** The pending retry of a reload rejected for a transient cause. */
  #retryTimer: NodeJS.Timeout | undefined;
  /** The pending retry's skipIfUnchanged: a request that takes over from it reloads an unchanged config too when this is false. */
  #retrySkipIfUnchanged = true;
  /** Stopped (close, shutdown): no retry is scheduled any more. */
  #stopped = false;
  readonly #onReloaded = new Set<(config: GatewayConfig) => void>();
  readonly #onConfigRead = new Set<(next: GatewayConfig) => void>();
  readonly holder: PolicyHolder;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly auditLog: AuditLog;
  bundleClient: BundleClient | undefined;

  constructor(init: { config: GatewayConfig; authenticator: Authenticator; holder: PolicyHolder; metrics: GatewayMetrics; logger: Logger; auditLog?: AuditLog; keyDigest?: string }) {
    this.#config = init.config;
    this.#authenticator = init.authenticator;
    this.#dataRevision = dataRevision(init.config);
    this.#configRevision = configRevision(init.config, init.keyDigest);
    this.#keyDigest = init.keyDigest;
    this.holder = init.holder;
    this.metrics = init.metrics;
    this.logger = init.logger;
    this.auditLog = init.auditLog ?? new AuditLog();
  }

  get config(): GatewayConfig {
    return this.#config;
  }
  get authenticator(): Authenticator {
    return this.#authenticator;
  }
  get dataRevision(): string {
    return this.#dataRevision;
  }
  get configRevision(): string {
    return this.#configRevision;
  }
  get draining(): boolean {
    return this.#draining;
  }
  startDraining(): void {
    this.#draining = true;
  }

  /**
   * Reload from the config file. One reload runs at a time; requests made while
   * one runs share a single next reload (it reads the file after all of them),
   * so a burst of SIGHUPs or file events costs at most two reloads, not one
   * identity-provider key refetch per signal. The shared reload is skipped when
   * unchanged only if every request allowed that.
   *
   * A reload rejected for a transient cause (classifyReloadError: a file that
   * could not be read, a provider that could not be reached) is retried by this
   * process after `server.reloadRetry.minDelayMs`, doubling per failed retry up
   * to `maxDelayMs`. A request made after it cancels the pending retry (the
   * newer reload takes over, with a backoff of its own if it fails so too), as
   * does `stopRetries()` (close, shutdown).
   */
  reload(reason: string, opts: { skipIfUnchanged?: boolean } = {}): Promise<ReloadResult> {
    this.#generation++;
    // Taking over from a pending retry: what it would have reloaded (files the config names, an unchanged
    // config read again after a SIGHUP) is reloaded by this request, which may then not skip it as unchanged.
    const skipIfUnchanged = opts.skipIfUnchanged === true && (this.#retryTimer === undefined || this.#retrySkipIfUnchanged);
    this.#cancelRetry();
    return this.#request(reason, skipIfUnchanged, undefined);
  }

  #request(reason: string, skipIfUnchanged: boolean, retry: QueuedReload['retry']): Promise<ReloadResult> {
    const waiting = this.#waiting;
    if (waiting !== undefined) {
      waiting.reasons.add(reason);
      if (!skipIfUnchanged) waiting.skipIfUnchanged = false;
      // A new request joined: the shared reload answers it, and its rejection starts a backoff of its own.
      if (retry === undefined) waiting.retry = undefined;
      waiting.generation = this.#generation;
      return waiting.result;
    }
    const next: QueuedReload = { reasons: new Set([reason]), skipIfUnchanged, retry, generation: this.#generation, result: Promise.resolve({ ok: true }) };
    next.result = this.#queue.then(async () => {
      if (this.#waiting === next) this.#waiting = undefined;
      const reasons = [...next.reasons].join(', ');
      const result = await this.#reload(next.retry === undefined ? reasons : 'retry', { skipIfUnchanged: next.skipIfUnchanged, retry: next.retry });
      if (result.ok || result.transient !== true) return result;
      // Retried only when nothing newer asked for a reload meanwhile (that one decides) and the process runs on.
      if (this.#stopped) return result;
      if (next.generation !== this.#generation) {
        // The newer request, queued behind this one, takes over: it must not skip as unchanged what this one,
        // retried, would have reloaded.
        if (!next.skipIfUnchanged && this.#waiting !== undefined) this.#waiting.skipIfUnchanged = false;
        return result;
      }
      const attempt = (next.retry?.attempt ?? 0) + 1;
      const delayMs = this.#scheduleRetry(attempt, next.retry?.of ?? reasons, next.skipIfUnchanged);
      this.logger
        .child({ component: 'reload', file: this.#config.file })
        .warn({ attempt, delayMs, code: result.code, error: result.error, retryOf: next.retry?.of ?? reasons }, 'config reload retry scheduled');
      return { ...result, retryInMs: delayMs };
    });
    this.#waiting = next;
    this.#queue = next.result.catch(() => undefined);
    return next.result;
  }

  /** Retry number `attempt` of the reload requested for `of`, after its backoff delay; returns the delay. */
  #scheduleRetry(attempt: number, of: string, skipIfUnchanged: boolean): number {
    this.#cancelRetry();
    const delayMs = reloadRetryDelayMs(attempt, this.#config.server.reloadRetry);
    const timer = setTimeout(() => {
      if (this.#retryTimer !== timer) return;
      this.#retryTimer = undefined;
      // A rejection is logged and counted by the reload itself; nothing waits for this promise.
      this.#request('retry', skipIfUnchanged, { attempt, of }).catch((e: unknown) => this.logger.error({ err: e, component: 'reload' }, 'config reload retry failed'));
    }, delayMs);
    // A pending retry never keeps the process alive.
    timer.unref();
    this.#retryTimer = timer;
    this.#retrySkipIfUnchanged = skipIfUnchanged;
    return delayMs;
  }

  #cancelRetry(): void {
    if (this.#retryTimer === undefined) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  /** Whether a retry of a rejected reload is waiting for its time. */
  get retryPending(): boolean {
    return this.#retryTimer !== undefined;
  }

  /** The process stops (close, shutdown): the pending retry is cancelled and none is scheduled any more. */
  stopRetries(): void {
    this.#stopped = true;
    this.#cancelRetry();
  }

  /** `listener` runs after each applied reload with the config now running; returns its remover. */
  onReloaded(listener: (config: GatewayConfig) => void): () => void {
    this.#onReloaded.add(listener);
    return () => this.#onReloaded.delete(listener);
  }

  /**
   * `listener` runs when a reload has read a changed config, before it loads the
   * files that config names (policy.wasm); returns its remover.
   */
  onConfigRead(listener: (next: GatewayConfig) => void): () => void {
    this.#onConfigRead.add(listener);
    return () => this.#onConfigRead.delete(listener);
  }

  #notify<T>(listeners: Set<(value: T) => void>, value: T, log: Logger): void {
    for (const listener of listeners) {
      try {
        listener(value);
      } catch (e) {
        log.warn({ err: e }, 'reload listener failed');
      }
    }
  }

  async #reload(reason: string, opts: { skipIfUnchanged?: boolean; retry?: QueuedReload['retry'] }): Promise<ReloadResult> {
    const running = this.#config;
    const file = running.file;
    const retry = opts.retry === undefined ? {} : { attempt: opts.retry.attempt, retryOf: opts.retry.of };
    const log = this.logger.child({ component: 'reload', reason, file, ...retry });
    const reject = (e: unknown): ReloadResult => {
      const error = e instanceof Error ? e.message : String(e);
      const { transient, code } = classifyReloadError(e);
      log.error({ error, code, transient }, 'config reload rejected');
      this.metrics.configReloads.inc({ result: 'failure' });
      this.metrics.configLastReload.set({ result: 'failure' }, Date.now() / 1000);
      return { ok: false, error, code, transient };
    };
    if (file === undefined) return reject(new ConfigError('the running config was not read from a file'));
    let loaded: GatewayConfig;
    try {
      loaded = await loadConfigFile(file);
    } catch (e) {
      return reject(e);
    }
    const restartRequired = restartRequiredChanges(running, loaded);
    let next = mergeReloadable(running, loaded);
    // Before the sources read them: a change made after this is seen by the next watched reload.
    const keyDigest = await keyFilesDigest(next);
    const bundleMode = running.policy.bundle !== undefined;
    const dataChanged = dataRevision(next) !== this.#dataRevision;
    if (bundleMode && this.bundleClient === undefined && dataChanged) {
      // No bundle client to merge the new data into bundles (a runtime built without one): the running data stays.
      restartRequired.push('teams/admins/janus (policy data in bundle mode)');
      next = { ...next, policyData: running.policyData, teams: running.teams, admins: running.admins, janus: running.janus };
    }
    if (opts.skipIfUnchanged === true && JSON.stringify(next) === JSON.stringify(running) && restartRequired.length === 0 && keyDigest === this.#keyDigest) {
      log.debug('config file unchanged');
      return { ok: true, unchanged: true };
    }
    this.#notify(this.#onConfigRead, next, log);
    let authenticator: Authenticator;
    let engine: PolicyEngine | undefined;
    // Bundle mode: the signing keys read again, and with new team data the active bundle loaded again with it
    // (PreparedReload); both applied in the swap.
    const prepared = bundleMode ? this.bundleClient?.prepareReload(dataChanged ? { lbac: next.policyData } : undefined) : undefined;
    prepared?.catch(() => undefined);
    let data: PreparedReload | undefined;
    try {
      [authenticator, engine, data] = await Promise.all([
        Authenticator.fromConfig(next, this.#authenticator, this.logger),
        bundleMode ? Promise.resolve(undefined) : PolicyEngine.fromFile(next.policyWasm, { lbac: next.policyData }, { entrypoint: next.policy.entrypoint }),
        prepared,
      ]);
    } catch (e) {
      void prepared?.then((p) => p.release(), () => undefined);
      return reject(e);
    }
    let switchAudit: () => void;
    try {
      await authenticator.refreshKeptSources();
      // Opened before the swap: one that cannot be opened rejects the reload (the running config stays).
      switchAudit = this.auditLog.prepare(next.audit);
    } catch (e) {
      data?.release();
      return reject(e);
    }
    const nextRevision = configRevision(next, keyDigest);
    // Nothing a decision or a live tail was decided under changed (a SIGHUP a config reloader sends for another key of
    // its ConfigMap): the policy engine (and its decision cache) and the live tails are kept. The identity sources are
    // built anew all the same, so their caches are forgotten (a reload still makes revocations at a provider apply).
    const unchanged = nextRevision === this.#configRevision && (engine === undefined || (engine.wasmSha256 === this.holder.engine?.wasmSha256 && this.holder.info?.source === `file:${next.policyWasm}`));
    // The swap: synchronous, nothing can interleave.
    this.#config = next;
    this.#authenticator = authenticator;
    this.#dataRevision = dataRevision(next);
    this.#configRevision = nextRevision;
    this.#keyDigest = keyDigest;
    if (engine !== undefined && !unchanged) this.holder.activate(engine, `file:${next.policyWasm}`);
    data?.commit();
    switchAudit();
    if (restartRequired.length > 0) log.warn({ keys: restartRequired }, 'config change needs a restart to take effect (running values kept)');
    log.info({ policyRevision: this.holder.revision, dataRevision: this.#dataRevision, teams: Object.keys(next.policyData.teams).length, unchanged }, 'config reloaded');
    this.metrics.configReloads.inc({ result: 'success' });
    this.metrics.configLastReload.set({ result: 'success' }, Date.now() / 1000);
    if (!unchanged) this.#notify(this.#onReloaded, next, log);
    return { ok: true, restartRequired };
  }
}

export async function createRuntime(config: GatewayConfig, logger: Logger, opts: { metrics?: GatewayMetrics } = {}): Promise<{ app: FastifyInstance; runtime: GatewayRuntime }> {
  const holder = new PolicyHolder();
  const metrics = opts.metrics ?? createMetrics();
  const bundle = config.policy.bundle;
  const configData = { lbac: config.policyData };
  const upstreams = config.upstreams.map((u) => `${u.name}@${u.mount}`);
  // Before the sources read the key files (see GatewayRuntime.#keyDigest).
  const keyDigest = await keyFilesDigest(config);
  let runtime: GatewayRuntime;
  let client: BundleClient | undefined;
  if (bundle === undefined) {
    const [authenticator, engine] = await Promise.all([
      Authenticator.fromConfig(config, undefined, logger),
      PolicyEngine.fromFile(config.policyWasm, configData, { entrypoint: config.policy.entrypoint }),
    ]);
    holder.activate(engine, `file:${config.policyWasm}`);
    // projectsInput: the built-in policy, given only the subject's groups the config names (src/policy/input-projection.ts).
    logger.info({ policy: config.policyWasm, revision: engine.revision, projectsInput: engine.projectsInput, upstreams }, 'policy loaded');
    runtime = new GatewayRuntime({ config, authenticator, holder, metrics, logger, keyDigest });
  } else {
    // Bundle mode: listen right away, not ready until the persisted or a downloaded bundle is active.
    const [authenticator, c] = await Promise.all([
      Authenticator.fromConfig(config, undefined, logger),
      BundleClient.create({ config: bundle, holder, entrypoint: config.policy.entrypoint, configData, logger: logger.child({ component: 'bundle' }) }),
    ]);
    client = c;
    logger.info({ bundle: client.shownUrl, signed: bundle.signing !== undefined, persistDir: bundle.persistDir ?? null, upstreams }, 'policy from bundle service');
    runtime = new GatewayRuntime({ config, authenticator, holder, metrics, logger, keyDigest });
    runtime.bundleClient = client;
    metrics.watchBundle(() => c.status);
  }
  const rt = runtime;
  const app = await buildApp({
    config,
    authenticator: () => rt.authenticator,
    engine: holder,
    logger,
    current: () => rt.config,
    metrics,
    auditLog: rt.auditLog,
    dataRevision: () => rt.dataRevision,
    draining: () => rt.draining,
  });
  // Live tails were decided under the policy and configuration they opened with: a change ends them (clients reconnect).
  const offSwap = holder.onSwap((_info, previous) => {
    if (previous !== undefined) closeRelays(app, 1012, 'policy changed; reconnect');
  });
  const offReload = rt.onReloaded(() => closeRelays(app, 1012, 'configuration changed; reconnect'));
  app.addHook('onClose', async () => {
    offSwap();
    offReload();
    // No reload retry fires after close.
    rt.stopRetries();
  });
  if (client !== undefined) {
    const c = client;
    app.addHook('onClose', async () => c.stop());
    await c.start();
  }
  return { app, runtime };
}

export async function createGateway(config: GatewayConfig, logger: Logger = createLogger(config.server.logLevel)): Promise<FastifyInstance> {
  return (await createRuntime(config, logger)).app;
}

/** The files whose change reloads the gateway: the config file, its key files, and in local mode the policy wasm (always reloaded). */
function watchedFiles(config: GatewayConfig): { file: string; always: boolean }[] {
  return [
    ...(config.file !== undefined ? [{ file: config.file, always: false }] : []),
    // Local mode: a rebuilt wasm (make policy) is picked up like a config change, validated before the swap.
    ...(config.policy.bundle === undefined ? [{ file: config.policyWasm, always: true }] : []),
    // Files a reload re-reads but the config's text does not show: a key removed from a jwksFile or a rotated
    // bundle signing key must not wait for a SIGHUP (a Secret updated in place is the usual way to change them).
    // Their contents count as the config's (keyFilesDigest): the same bytes written again reload nothing.
    ...keyFiles(config).map((file) => ({ file, always: false })),
  ];
}

/**
 * Reload when a watched file changes. Directories are watched (editors and
 * Kubernetes replace files: a mounted ConfigMap changes by swapping its `..data`
 * link, so that name counts for every file in the directory). Changes are
 * debounced. A change in the wasm's directory always rebuilds the engine;
 * any other is skipped when the parsed config and the key files' contents
 * are equal. `watch` is called again after each
 * reload: a reload that points policy.wasm elsewhere moves the watch with it.
 */
class ReloadWatch {
  readonly #runtime: GatewayRuntime;
  readonly #debounceMs: number;
  readonly #dirs = new Map<string, { names: Set<string>; always: boolean; watcher: FSWatcher; timer: NodeJS.Timeout | undefined }>();

  constructor(runtime: GatewayRuntime, debounceMs: number) {
    this.#runtime = runtime;
    this.#debounceMs = debounceMs;
  }

  get watching(): boolean {
    return this.#dirs.size > 0;
  }

  /** Watch exactly these files' directories (stops watching the others). */
  watch(files: readonly { file: string; always: boolean }[]): void {
    const wanted = new Map<string, { names: Set<string>; always: boolean }>();
    for (const { file, always } of files) {
      const dir = path.dirname(path.resolve(file));
      const entry = wanted.get(dir) ?? { names: new Set(['..data']), always: false };
      entry.names.add(path.basename(file));
      entry.always ||= always;
      wanted.set(dir, entry);
    }
    for (const [dir, entry] of this.#dirs) {
      if (!wanted.has(dir)) {
        entry.watcher.close();
        this.#dirs.delete(dir);
      }
    }
    for (const [dir, { names, always }] of wanted) {
      const existing = this.#dirs.get(dir);
      if (existing !== undefined) {
        // The event handler reads these: a running watch takes the new names at once.
        existing.names = names;
        existing.always = always;
        continue;
      }
      try {
        const watcher = watch(dir, { persistent: false }, (_event, name) => {
          const entry = this.#dirs.get(dir);
          if (entry === undefined || (name !== null && !entry.names.has(name))) return;
          if (entry.timer !== undefined) clearTimeout(entry.timer);
          entry.timer = setTimeout(() => {
            entry.timer = undefined;
            void this.#runtime.reload('file change', { skipIfUnchanged: !entry.always });
          }, this.#debounceMs);
        });
        const entry = { names, always, watcher, timer: undefined as NodeJS.Timeout | undefined };
        watcher.on('close', () => entry.timer !== undefined && clearTimeout(entry.timer));
        watcher.on('error', (e) => this.#runtime.logger.warn({ err: e, dir }, 'file watch failed; reload with SIGHUP'));
        this.#dirs.set(dir, entry);
      } catch (e) {
        this.#runtime.logger.warn({ err: e, dir }, 'cannot watch for changes; reload with SIGHUP');
      }
    }
  }

  close(): void {
    for (const entry of this.#dirs.values()) entry.watcher.close();
    this.#dirs.clear();
  }
}

/** The server's connections that have not sent a request yet (TLS: once the handshake is done). */
function unusedConnections(server: Server, tls: boolean): ReadonlySet<Socket> {
  const unused = new Set<Socket>();
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    unused.add(socket);
    socket.once('close', () => unused.delete(socket));
  });
  const used = (req: IncomingMessage): boolean => unused.delete(req.socket);
  server.on('request', used);
  // A WebSocket upgrade (Loki tail) is routed without a 'request' event; the websocket plugin closes
  // those sockets itself (1001). Only with that plugin: an 'upgrade' listener makes Node hand every
  // upgrade request to listeners, and a gateway without one must keep answering them as requests.
  if (server.listenerCount('upgrade') > 0) server.on('upgrade', used);
  return unused;
}

export interface StartOptions {
  /**
   * 'own': this process serves `server.adminListen` (a single process).
   * 'cluster-worker': the cluster primary serves it; this worker answers the
   * primary's metric and readiness requests over IPC (src/server/cluster-admin.ts).
   */
  readonly admin?: 'own' | 'cluster-worker';
  /**
   * Listen only once a policy is active (bundle mode). For a cluster worker replacing one that
   * died while its siblings serve: without a policy it would take connections only to answer 503.
   */
  readonly waitForPolicy?: boolean;
  /** With `waitForPolicy`, called when the wait starts: listen without a policy once `promise` settles (no sibling listens). */
  readonly stopWaitingForPolicy?: () => { readonly promise: Promise<void>; cancel(): void };
  /**
   * Called once the runtime exists, before any wait for a policy: the caller can route SIGHUP to
   * `runtime.reload` from then on. A worker waiting for its first bundle must take a rotated
   * signing key, or it would wait for a bundle only the retired key verifies.
   */
  readonly onRuntime?: (runtime: GatewayRuntime) => void;
}

export async function startGateway(config: GatewayConfig, logger: Logger = createLogger(config.server.logLevel), opts: StartOptions = {}): Promise<RunningGateway> {
  const { app, runtime } = await createRuntime(config, logger);
  for (const warning of configWarnings(config)) logger.warn({ file: config.file ?? null }, `config: ${warning}`);
  opts.onRuntime?.(runtime);
  // The file watch starts before any wait for a policy: a worker waiting for its first bundle sees
  // a rotated signing key (or jwksFile) as a serving one does.
  const fileWatch = new ReloadWatch(runtime, config.server.reloadDebounceMs);
  // The watch follows the files the config names: widened to a reload's new ones before they are
  // read (a rebuild while the reload runs is seen), narrowed to the running config's once applied.
  // A rejected reload leaves it widened, so fixing the file it named is seen too.
  const following = config.server.watchConfig
    ? [runtime.onConfigRead((next) => fileWatch.watch([...watchedFiles(runtime.config), ...watchedFiles(next)])), runtime.onReloaded((running) => fileWatch.watch(watchedFiles(running)))]
    : [];
  const stopFollowing = (): void => following.forEach((off) => off());
  if (config.server.watchConfig) fileWatch.watch(watchedFiles(config));
  // A change made between reading the config and watching it would go unnoticed: compare once now.
  if (fileWatch.watching && config.file !== undefined) void runtime.reload('file check after start', { skipIfUnchanged: true });
  const stopWatching = (): void => {
    stopFollowing();
    fileWatch.close();
  };
  if (opts.waitForPolicy === true && !runtime.holder.ready) {
    // Bundle mode in a cluster: a worker without a policy (a replacement started while the bundle
    // service is down, with nothing persisted) would take its share of connections only to answer
    // 503 while its siblings can decide. It joins the shared port once it has a policy.
    logger.info('cluster worker: waiting for a policy bundle before accepting connections');
    let off: () => void = () => undefined;
    const released = opts.stopWaitingForPolicy?.();
    await Promise.race([new Promise<void>((resolve) => (off = runtime.holder.onSwap(() => resolve()))), released?.promise ?? new Promise<never>(() => undefined)]);
    off();
    released?.cancel();
    if (!runtime.holder.ready) logger.warn('cluster worker: no other worker listens; accepting connections without a policy (503 until a bundle arrives)');
  }
  // Tracked from before listening, so no connection is missed.
  const unused = unusedConnections(app.server, config.server.tls !== undefined);
  let url: string;
  try {
    url = await app.listen(splitHostPort(config.server.listen));
  } catch (e) {
    stopWatching();
    runtime.stopRetries();
    throw e;
  }
  let admin: FastifyInstance | undefined;
  let adminUrl: string | undefined;
  if (opts.admin === 'cluster-worker') {
    serveWorkerAdmin(runtime.metrics.registry, () => ({
      ...readinessOf(runtime.holder, runtime.draining),
      policyRevision: runtime.holder.info?.revision ?? null,
      dataRevision: runtime.dataRevision,
      // Without a bundle, the policy file is read again at each reload: a worker whose reload was rejected may run
      // an older (wider) wasm, so its revision is compared too. Bundles reach workers a polling interval apart.
      configRevision: runtime.config.policy.bundle === undefined ? `${runtime.configRevision} ${runtime.holder.revision ?? ''}` : runtime.configRevision,
    }));
  } else if (config.server.adminListen !== undefined) {
    try {
      admin = await buildAdminApp({ metrics: runtime.metrics, holder: runtime.holder, logger: logger.child({ component: 'admin' }), draining: () => runtime.draining, dataRevision: () => runtime.dataRevision });
      adminUrl = await admin.listen(splitHostPort(config.server.adminListen));
    } catch (e) {
      // Fail the start as a whole: a gateway serving without its admin listener (metrics,
      // readiness) would look healthy to clients and be invisible to operators.
      stopWatching();
      runtime.stopRetries();
      await Promise.allSettled([app.close(), admin?.close()]);
      throw e;
    }
    logger.info({ url: adminUrl }, 'admin listener (metrics) started');
  }
  const closeAll = async () => {
    stopWatching();
    runtime.stopRetries();
    await Promise.allSettled([app.close(), admin?.close()]);
  };
  return {
    url,
    adminUrl,
    app,
    runtime,
    close: closeAll,
    shutdown: async () => {
      runtime.startDraining();
      stopWatching();
      // A reload retry now would rebuild what is being shut down.
      runtime.stopRetries();
      const { shutdownDelayMs, shutdownTimeoutMs } = runtime.config.server;
      if (shutdownDelayMs > 0) await new Promise((r) => setTimeout(r, shutdownDelayMs));
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<false>((r) => (timer = setTimeout(() => r(false), shutdownTimeoutMs)));
      // The main listener first (drains in-flight requests); the admin listener stays up for scrapes until then.
      const done = app.close().then(async () => {
        await admin?.close();
        return true as const;
      });
      // Connections that never sent a request (a browser's preconnect, a TCP probe that stays): nothing
      // to drain on them. Node's closeIdleConnections leaves them open until their headers timeout, so
      // every stop would wait the whole shutdownTimeoutMs and report requests still in flight.
      for (const socket of unused) socket.destroy();
      const ok = await Promise.race([done, timedOut]);
      clearTimeout(timer);
      return ok;
    },
  };
}
