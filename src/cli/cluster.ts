import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { StdoutRelay } from './stdout-relay.ts';

/**
 * Runs `workers` copies of the server under node:cluster. The primary only
 * supervises: it shares the listening socket, forwards SIGTERM/SIGINT (drain
 * and stop) and SIGHUP (reload) to every serving worker, replaces a worker that dies
 * unexpectedly (with a delay, so a crash loop cannot spin), and exits when all
 * workers have stopped — also when a worker fails before any has served. Each worker is a complete gateway: its own policy
 * engine (WASM instances are per process), identity and decision caches, and
 * bundle polling — the same as independent replicas.
 */
export function resolveWorkers(setting: number | 'auto'): number {
  return setting === 'auto' ? availableParallelism() : setting;
}

/**
 * Which workers a reload (SIGHUP) goes to, and when. A worker that reloads on
 * SIGHUP gets it at once: one that listens, or one that waits for its first
 * policy bundle (it has its runtime, and must take a rotated signing key to
 * ever verify that bundle). One still starting may have no SIGHUP handler yet
 * (the signal's default action would kill it), so its reload is kept and sent
 * when it is ready: it may have read the config before the change, and a
 * revocation it missed would otherwise stay unapplied until the next reload.
 */
export class ReloadRelay {
  readonly #ready = new Set<number>();
  readonly #pending = new Set<number>();

  /** A worker reloads on SIGHUP from now on; true when a reload was asked for while it started (send it now). */
  ready(id: number): boolean {
    this.#ready.add(id);
    return this.#pending.delete(id);
  }

  /** A reload is asked for: the workers to signal now (the others get it when they are ready). */
  reload(workers: readonly number[]): number[] {
    const now: number[] = [];
    for (const id of workers) {
      if (this.#ready.has(id)) now.push(id);
      else this.#pending.add(id);
    }
    return now;
  }

  exited(id: number): void {
    this.#ready.delete(id);
    this.#pending.delete(id);
  }
}

/** Worker → primary: this worker waits for a policy before it listens (bundle mode, a sibling listened when it was started). */
const WAITING_FOR_POLICY = 'lbac:waiting-for-policy';
/** Primary → worker: no sibling listens (any more); stop waiting for a policy and listen. */
const LISTEN_WITHOUT_POLICY = 'lbac:listen-without-policy';

/**
 * Worker side of the above: settles when the primary says no other worker
 * listens. The primary answers the worker's own announcement too, so a
 * message sent while the worker was still loading is not needed. `cancel`
 * removes the IPC listener (a 'message' listener keeps the channel referenced).
 */
export function untilNoSiblingListens(): { readonly promise: Promise<void>; cancel(): void } {
  let cancel = (): void => undefined;
  const promise = new Promise<void>((resolve) => {
    const onMessage = (message: unknown): void => {
      if (message !== LISTEN_WITHOUT_POLICY) return;
      cancel();
      resolve();
    };
    process.on('message', onMessage);
    cancel = () => void process.off('message', onMessage);
  });
  process.send?.(WAITING_FOR_POLICY);
  return { promise, cancel: () => cancel() };
}

/** How long a worker must serve before a crash streak is considered over. */
const STABLE_AFTER_MS = 30_000;

/**
 * `stdout`: where stdout is a pipe or socket (stdoutNeedsRelay), the relay
 * the workers' output goes through: on a pipe, two workers' lines longer than
 * 4 KiB would interleave, so each worker writes to a pipe of its own and the
 * primary copies out whole lines at a time (./stdout-relay.ts).
 */
export async function superviseWorkers(count: number, log: (msg: string, extra?: Record<string, unknown>) => void, stdout?: StdoutRelay): Promise<number> {
  let stopping = false;
  let failures = 0;
  let uncleanStops = 0;
  // Whether any worker ever listened (then an exit is no longer a failure to start).
  let served = false;
  // Workers listening now. While one does, a replacement waits for a policy before it takes
  // connections (bundle mode); when the last one exits, the waiting ones are told to listen, so the
  // port answers (503 until a bundle arrives) instead of refusing connections.
  const listening = new Set<number>();
  if (stdout !== undefined) cluster.setupPrimary({ stdio: ['inherit', 'pipe', 'inherit', 'ipc'] });
  // Workers' output not relayed yet: the primary exits only once all of it is out (the audit lines a
  // stopping worker flushes last included).
  const relays = new Set<Promise<void>>();
  // Replacements waiting out their delay: a stop cancels them (one forked after the stop would serve on).
  const restarts = new Set<NodeJS.Timeout>();
  const fork = (): Worker => {
    const worker = cluster.fork({ LBAC_CLUSTER_WORKER: '1', LBAC_SIBLINGS_SERVING: listening.size > 0 ? '1' : '0' });
    const out = worker.process.stdout;
    if (stdout !== undefined && out !== null) {
      const relay = stdout.relay(out).finally(() => relays.delete(relay));
      relays.add(relay);
    }
    return worker;
  };
  for (let i = 0; i < count; i++) fork();
  log('started workers', { workers: count });

  const relay = new ReloadRelay();
  // Until a worker has served, an exit is a failure to start (a TLS file that cannot be read, a
  // port in use): every worker would fail alike, so the group stops and reports it, as a single
  // process does, instead of replacing workers forever with nothing listening.
  let startFailure: number | undefined;
  // A worker that dies as the message goes out is not an error here (its exit is handled below).
  const releaseWaiting = (w: Worker): void => void (w.isConnected() && w.send(LISTEN_WITHOUT_POLICY, () => undefined));
  cluster.on('message', (worker, message) => {
    if (message !== WAITING_FOR_POLICY) return;
    // It waits with its runtime built (SIGHUP reloads it): a reload must reach it now, not when it listens.
    if (relay.ready(worker.id)) worker.process.kill('SIGHUP');
    if (listening.size === 0 && !stopping) releaseWaiting(worker);
  });
  cluster.on('listening', (worker) => {
    served = true;
    listening.add(worker.id);
    if (relay.ready(worker.id)) worker.process.kill('SIGHUP');
    // A worker that keeps serving ends a crash streak: the replacement delay starts over.
    setTimeout(() => {
      if (!worker.isDead()) failures = 0;
    }, STABLE_AFTER_MS).unref();
  });
  // Settles the supervision once no worker is left, all their output relayed.
  let finish: () => void = () => undefined;
  const forward = (signal: NodeJS.Signals) => {
    if (signal !== 'SIGHUP') {
      stopping = true;
      for (const timer of restarts) clearTimeout(timer);
      restarts.clear();
      // Every worker had crashed and its replacement was waiting: nothing will exit any more.
      if (Object.keys(cluster.workers ?? {}).length === 0) finish();
    }
    const workers = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined);
    if (signal === 'SIGHUP') {
      const now = new Set(relay.reload(workers.map((w) => w.id)));
      for (const w of workers) if (now.has(w.id)) w.process.kill(signal);
    } else for (const w of workers) w.process.kill(signal);
  };
  process.on('SIGTERM', () => forward('SIGTERM'));
  process.on('SIGINT', () => forward('SIGINT'));
  process.on('SIGHUP', () => forward('SIGHUP'));

  return new Promise<number>((resolve) => {
    let finished = false;
    finish = () => {
      if (finished) return;
      finished = true;
      void Promise.all(relays)
        .then(() => stdout?.flushed())
        .then(() => resolve(startFailure ?? (uncleanStops > 0 ? 1 : 0)));
    };
    cluster.on('exit', (worker, code, signal) => {
      relay.exited(worker.id);
      listening.delete(worker.id);
      const alive = Object.keys(cluster.workers ?? {}).length;
      if (!stopping && listening.size === 0) for (const w of Object.values(cluster.workers ?? {})) if (w !== undefined) releaseWaiting(w);
      if (!stopping && !served) {
        stopping = true;
        startFailure = code !== null && code !== 0 ? code : 1;
        log('a worker failed to start; stopping', { pid: worker.process.pid, code, signal });
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      }
      if (!stopping) {
        failures++;
        log('worker exited unexpectedly; replacing it', { pid: worker.process.pid, code, signal });
        const timer = setTimeout(() => {
          restarts.delete(timer);
          if (!stopping) fork();
        }, Math.min(30_000, 250 * 2 ** Math.min(failures, 7)));
        restarts.add(timer);
        return;
      }
      // A worker still starting when the signal came dies of it: that is a clean stop too.
      // The exit status reports the stop; crashes replaced earlier were logged when they happened.
      const stoppedBySignal = code === null && (signal === 'SIGTERM' || signal === 'SIGINT');
      if (code !== 0 && !stoppedBySignal) uncleanStops++;
      if (alive === 0) finish();
    });
  });
}
