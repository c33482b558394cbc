import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { loadConfigFile, type GatewayConfig } from '../config/load.ts';
import { configWarnings } from '../config/warnings.ts';
import { Authenticator } from '../identity/authenticator.ts';
import { BundleClient } from '../policy/bundle-client.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { PolicyHolder } from '../policy/holder.ts';
import { buildAdminApp, splitHostPort } from './admin.ts';
import { serveWorkerAdmin } from './cluster-admin.ts';
import { buildApp } from './app.ts';
import { createMetrics, type GatewayMetrics } from './metrics.ts';
import { AuditLog } from './plugins/audit.ts';
import { dataRevision, mergeReloadable, restartRequiredChanges } from './reload.ts';

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
  /** Changed keys that need a restart (kept at their running values). */
  readonly restartRequired?: readonly string[];
  readonly unchanged?: boolean;
}

/** Never log credentials: these paths are censored wherever they appear. */
export const REDACT_PATHS = ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-grafana-id"]', 'req.headers["x-id-token"]'];

export function createLogger(level: string): Logger {
  return pino({
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // Log the path only: query strings may carry anything a client chose to put there.
      req: (req: { method: string; url: string; id: string }) => ({ id: req.id, method: req.method, path: req.url.split('?')[0] }),
    },
  });
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
  #draining = false;
  #queue: Promise<unknown> = Promise.resolve();
  readonly holder: PolicyHolder;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly auditLog: AuditLog;
  bundleClient: BundleClient | undefined;

  constructor(init: { config: GatewayConfig; authenticator: Authenticator; holder: PolicyHolder; metrics: GatewayMetrics; logger: Logger; auditLog?: AuditLog }) {
    this.#config = init.config;
    this.#authenticator = init.authenticator;
    this.#dataRevision = dataRevision(init.config);
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
  get draining(): boolean {
    return this.#draining;
  }
  startDraining(): void {
    this.#draining = true;
  }

  /** Reload from the config file (serialised: one reload at a time). */
  reload(reason: string, opts: { skipIfUnchanged?: boolean } = {}): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#reload(reason, opts));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #reload(reason: string, opts: { skipIfUnchanged?: boolean }): Promise<ReloadResult> {
    const running = this.#config;
    const file = running.file;
    const log = this.logger.child({ component: 'reload', reason, file });
    const reject = (error: string): ReloadResult => {
      log.error({ error }, 'config reload rejected');
      this.metrics.configReloads.inc({ result: 'failure' });
      this.metrics.configLastReload.set({ result: 'failure' }, Date.now() / 1000);
      return { ok: false, error };
    };
    if (file === undefined) return reject('the running config was not read from a file');
    let loaded: GatewayConfig;
    try {
      loaded = await loadConfigFile(file);
    } catch (e) {
      return reject(e instanceof Error ? e.message : String(e));
    }
    const restartRequired = restartRequiredChanges(running, loaded);
    let next = mergeReloadable(running, loaded);
    const bundleMode = running.policy.bundle !== undefined;
    if (bundleMode && dataRevision(next) !== this.#dataRevision) {
      // The bundle client merges the team data into each bundle it activates; it keeps the data it started with.
      restartRequired.push('teams/admins/janus (policy data in bundle mode)');
      next = { ...next, policyData: running.policyData, teams: running.teams, admins: running.admins, janus: running.janus };
    }
    if (opts.skipIfUnchanged === true && JSON.stringify(next) === JSON.stringify(running) && restartRequired.length === 0) {
      log.debug('config file unchanged');
      return { ok: true, unchanged: true };
    }
    let authenticator: Authenticator;
    let engine: PolicyEngine | undefined;
    try {
      [authenticator, engine] = await Promise.all([
        Authenticator.fromConfig(next, this.#authenticator),
        bundleMode ? Promise.resolve(undefined) : PolicyEngine.fromFile(next.policyWasm, { lbac: next.policyData }, { entrypoint: next.policy.entrypoint }),
      ]);
    } catch (e) {
      return reject(e instanceof Error ? e.message : String(e));
    }
    await authenticator.refreshKeptSources();
    // The swap: synchronous, nothing can interleave.
    this.#config = next;
    this.#authenticator = authenticator;
    this.#dataRevision = dataRevision(next);
    if (engine !== undefined) this.holder.activate(engine, `file:${next.policyWasm}`);
    this.auditLog.configure(next.audit);
    if (restartRequired.length > 0) log.warn({ keys: restartRequired }, 'config change needs a restart to take effect (running values kept)');
    log.info({ policyRevision: this.holder.revision, dataRevision: this.#dataRevision, teams: Object.keys(next.policyData.teams).length }, 'config reloaded');
    this.metrics.configReloads.inc({ result: 'success' });
    this.metrics.configLastReload.set({ result: 'success' }, Date.now() / 1000);
    return { ok: true, restartRequired };
  }
}

export async function createRuntime(config: GatewayConfig, logger: Logger, opts: { metrics?: GatewayMetrics } = {}): Promise<{ app: FastifyInstance; runtime: GatewayRuntime }> {
  const holder = new PolicyHolder();
  const metrics = opts.metrics ?? createMetrics();
  const bundle = config.policy.bundle;
  const configData = { lbac: config.policyData };
  const upstreams = config.upstreams.map((u) => `${u.name}@${u.mount}`);
  let runtime: GatewayRuntime;
  let client: BundleClient | undefined;
  if (bundle === undefined) {
    const [authenticator, engine] = await Promise.all([
      Authenticator.fromConfig(config),
      PolicyEngine.fromFile(config.policyWasm, configData, { entrypoint: config.policy.entrypoint }),
    ]);
    holder.activate(engine, `file:${config.policyWasm}`);
    logger.info({ policy: config.policyWasm, revision: engine.revision, upstreams }, 'policy loaded');
    runtime = new GatewayRuntime({ config, authenticator, holder, metrics, logger });
  } else {
    // Bundle mode: listen right away, not ready until the persisted or a downloaded bundle is active.
    const [authenticator, c] = await Promise.all([
      Authenticator.fromConfig(config),
      BundleClient.create({ config: bundle, holder, entrypoint: config.policy.entrypoint, configData, logger: logger.child({ component: 'bundle' }) }),
    ]);
    client = c;
    logger.info({ bundle: client.shownUrl, signed: bundle.signing !== undefined, persistDir: bundle.persistDir ?? null, upstreams }, 'policy from bundle service');
    runtime = new GatewayRuntime({ config, authenticator, holder, metrics, logger });
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

/**
 * Reload when a watched file changes: the config file, and in local mode the
 * policy wasm. Directories are watched (editors and Kubernetes replace files:
 * a mounted ConfigMap changes by swapping its `..data` link, so that name counts
 * for every file in the directory). Changes are debounced. A wasm change always
 * rebuilds the engine; a config change is skipped when the parsed config is equal.
 */
function watchForReload(runtime: GatewayRuntime, files: readonly { file: string; always: boolean }[], debounceMs: number): FSWatcher[] {
  const byDir = new Map<string, { names: Set<string>; always: boolean }>();
  for (const { file, always } of files) {
    const dir = path.dirname(path.resolve(file));
    const entry = byDir.get(dir) ?? { names: new Set(['..data']), always: false };
    entry.names.add(path.basename(file));
    entry.always ||= always;
    byDir.set(dir, entry);
  }
  const watchers: FSWatcher[] = [];
  for (const [dir, { names, always }] of byDir) {
    let timer: NodeJS.Timeout | undefined;
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => {
        if (name !== null && !names.has(name)) return;
        if (timer !== undefined) clearTimeout(timer);
        timer = setTimeout(() => {
          timer = undefined;
          void runtime.reload('file change', { skipIfUnchanged: !always });
        }, debounceMs);
      });
      w.on('close', () => timer !== undefined && clearTimeout(timer));
      w.on('error', (e) => runtime.logger.warn({ err: e, dir }, 'file watch failed; reload with SIGHUP'));
      watchers.push(w);
    } catch (e) {
      runtime.logger.warn({ err: e, dir }, 'cannot watch for changes; reload with SIGHUP');
    }
  }
  return watchers;
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
}

export async function startGateway(config: GatewayConfig, logger: Logger = createLogger(config.server.logLevel), opts: StartOptions = {}): Promise<RunningGateway> {
  const { app, runtime } = await createRuntime(config, logger);
  for (const warning of configWarnings(config)) logger.warn({ file: config.file ?? null }, `config: ${warning}`);
  if (opts.waitForPolicy === true && !runtime.holder.ready) {
    // Bundle mode in a cluster: a worker without a policy (a replacement started while the bundle
    // service is down, with nothing persisted) would take its share of connections only to answer
    // 503 while its siblings can decide. It joins the shared port once it has a policy.
    logger.info('cluster worker: waiting for a policy bundle before accepting connections');
    await new Promise<void>((resolve) => {
      const off = runtime.holder.onSwap(() => {
        off();
        resolve();
      });
    });
  }
  const url = await app.listen(splitHostPort(config.server.listen));
  let admin: FastifyInstance | undefined;
  let adminUrl: string | undefined;
  if (opts.admin === 'cluster-worker') {
    serveWorkerAdmin(runtime.metrics.registry, () => {
      const ready = runtime.holder.ready && !runtime.draining;
      return { ready, status: ready ? 'ready' : runtime.draining ? 'shutting down' : 'not ready', policyRevision: runtime.holder.info?.revision ?? null, dataRevision: runtime.dataRevision };
    });
  } else if (config.server.adminListen !== undefined) {
    admin = await buildAdminApp({ metrics: runtime.metrics, holder: runtime.holder, logger: logger.child({ component: 'admin' }), draining: () => runtime.draining, dataRevision: () => runtime.dataRevision });
    try {
      adminUrl = await admin.listen(splitHostPort(config.server.adminListen));
    } catch (e) {
      // Fail the start as a whole: a gateway serving without its admin listener (metrics,
      // readiness) would look healthy to clients and be invisible to operators.
      await Promise.allSettled([app.close(), admin.close()]);
      throw e;
    }
    logger.info({ url: adminUrl }, 'admin listener (metrics) started');
  }
  const watched = [
    ...(config.file !== undefined ? [{ file: config.file, always: false }] : []),
    // Local mode: a rebuilt wasm (make policy) is picked up like a config change, validated before the swap.
    ...(config.policy.bundle === undefined ? [{ file: config.policyWasm, always: true }] : []),
  ];
  const watchers = config.server.watchConfig ? watchForReload(runtime, watched, config.server.reloadDebounceMs) : [];
  // A change made between reading the config and watching it would go unnoticed: compare once now.
  if (watchers.length > 0 && config.file !== undefined) void runtime.reload('file check after start', { skipIfUnchanged: true });
  const closeAll = async () => {
    for (const w of watchers) w.close();
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
      for (const w of watchers) w.close();
      const { shutdownDelayMs, shutdownTimeoutMs } = runtime.config.server;
      if (shutdownDelayMs > 0) await new Promise((r) => setTimeout(r, shutdownDelayMs));
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<false>((r) => (timer = setTimeout(() => r(false), shutdownTimeoutMs)));
      // The main listener first (drains in-flight requests); the admin listener stays up for scrapes until then.
      const done = app.close().then(async () => {
        await admin?.close();
        return true as const;
      });
      const ok = await Promise.race([done, timedOut]);
      clearTimeout(timer);
      return ok;
    },
  };
}
