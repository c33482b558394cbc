// Child processes for e2e suites: spawn, log to a file, wait for readiness,
// stop (SIGTERM, then SIGKILL after a grace period), and never leak: every live
// child is SIGKILLed when this process exits, even after a failed test.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface StartProcessOptions {
  /** Short name used in log file names and error messages. */
  name: string;
  cmd: string;
  args?: readonly string[];
  /** Merged over process.env; `undefined` removes a variable. */
  env?: Readonly<Record<string, string | undefined>>;
  cwd?: string;
  /** Polled (GET) until it answers 200. Without it, startProcess resolves once spawned. */
  readyUrl?: string;
  /** Default 30 000 ms. */
  readyTimeoutMs?: number;
  /** Where stdout+stderr go. Default: a fresh file under logDir(). */
  logFile?: string;
  /** SIGTERM → SIGKILL grace period for stop(). Default 5 000 ms. */
  stopGraceMs?: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningProcess {
  name: string;
  pid: number;
  logFile: string;
  /** SIGTERM, then SIGKILL after the grace period; resolves when the child is gone. Idempotent. */
  stop(): Promise<void>;
  /** Resolves when the child exits (for any reason). */
  exited: Promise<ExitInfo>;
  isRunning(): boolean;
  /** The last `lines` lines of the log file. */
  tail(lines?: number): string;
}

/** Directory for harness log files: $LBAC_E2E_LOG_DIR or <tmpdir>/lbac-gateway-e2e. */
export function logDir(): string {
  const fromEnv = process.env['LBAC_E2E_LOG_DIR'];
  const dir = fromEnv !== undefined && fromEnv !== '' ? fromEnv : join(tmpdir(), 'lbac-gateway-e2e');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The last `lines` lines of a text file ('' if unreadable). */
export function tailFile(file: string, lines = 40): string {
  try {
    const text = readFileSync(file, 'utf8');
    const all = text.split('\n');
    // What follows the last newline: '' or a line still being written (not whole yet, so not JSON yet).
    all.pop();
    return all.slice(-lines).join('\n');
  } catch {
    return '';
  }
}

// ---- leak protection -------------------------------------------------------

const live = new Set<ChildProcess>();
let hooksInstalled = false;

function killAllNow(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // 'exit' runs for normal exit, process.exit(), and uncaught exceptions.
  process.on('exit', killAllNow);
  // A signal with no other handler would kill us without running 'exit'
  // hooks; if someone else handles it (a script's graceful shutdown, the test
  // runner), leave it to them: their exit path runs the 'exit' hook above.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      if (process.listenerCount(sig) > 1) return;
      killAllNow();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

// ---- start / stop ----------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

let seq = 0;

/**
 * Spawns `cmd args` with stdout+stderr appended to a log file, waits until
 * `readyUrl` answers 200 (if given), and returns a handle. If the child exits
 * or never becomes ready, it is killed and the error carries the log's tail.
 */
export async function startProcess(opts: StartProcessOptions): Promise<RunningProcess> {
  installExitHooks();
  const args = opts.args ?? [];
  const safeName = opts.name.replace(/[^A-Za-z0-9_.-]/g, '_');
  const logFile = opts.logFile ?? join(logDir(), `${safeName}-${process.pid}-${Date.now()}-${seq++}.log`);
  const grace = opts.stopGraceMs ?? 5_000;

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }

  const fd = openSync(logFile, 'a');
  writeSync(fd, `# ${new Date().toISOString()} ${opts.cmd} ${args.join(' ')}\n`);
  let child: ChildProcess;
  try {
    child = spawn(opts.cmd, [...args], {
      cwd: opts.cwd,
      env,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }

  let exitInfo: ExitInfo | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<ExitInfo>((resolveExit) => {
    child.once('error', (err) => {
      spawnError = err;
      live.delete(child);
      // 'exit' may not follow a spawn error.
      if (exitInfo === undefined) {
        exitInfo = { code: null, signal: null };
        resolveExit(exitInfo);
      }
    });
    child.once('exit', (code, signal) => {
      live.delete(child);
      if (exitInfo === undefined) {
        exitInfo = { code, signal };
        resolveExit(exitInfo);
      }
    });
  });
  live.add(child);

  const isRunning = (): boolean => exitInfo === undefined;
  const tail = (lines = 40): string => tailFile(logFile, lines);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    if (stopping !== undefined) return stopping;
    stopping = (async () => {
      if (!isRunning()) return;
      child.kill('SIGTERM');
      const timer = sleep(grace).then(() => 'timeout' as const);
      if ((await Promise.race([exited, timer])) === 'timeout' && isRunning()) {
        child.kill('SIGKILL');
        await exited;
      }
    })();
    return stopping;
  };

  const fail = async (why: string): Promise<never> => {
    await stop();
    const detail = spawnError !== undefined ? ` (${spawnError.message})` : '';
    throw new Error(
      `${opts.name} ${why}${detail}\n  command: ${opts.cmd} ${args.join(' ')}\n  log: ${logFile}\n` +
        `--- last lines of the log ---\n${tail(40)}\n--- end of log ---`,
    );
  };

  // Give a spawn error (ENOENT, EACCES) a chance to surface.
  await sleep(0);
  if (spawnError !== undefined || child.pid === undefined) return fail('could not be started');
  const pid = child.pid;

  if (opts.readyUrl !== undefined) {
    const timeoutMs = opts.readyTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    for (;;) {
      if (!isRunning()) {
        return fail(`exited before becoming ready (code ${exitInfo?.code ?? 'null'}, signal ${exitInfo?.signal ?? 'none'})`);
      }
      try {
        const res = await fetch(opts.readyUrl, { signal: AbortSignal.timeout(2_000) });
        await res.arrayBuffer().catch(() => undefined);
        if (res.status === 200) break;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
      }
      if (Date.now() > deadline) return fail(`not ready at ${opts.readyUrl} after ${timeoutMs} ms (last: ${last})`);
      await sleep(100);
    }
  }

  return { name: opts.name, pid, logFile, stop, exited, isRunning, tail };
}

/**
 * Runs a command to completion (output captured); throws with the output when
 * it exits non-zero. For one-shot tools such as promtool.
 */
export function runCommand(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; env?: Readonly<Record<string, string>>; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  installExitHooks();
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, [...args], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      live.delete(child);
      reject(new Error(`${cmd} could not be run: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      if (code === 0) resolveRun({ stdout, stderr });
      else
        reject(
          new Error(
            `${cmd} ${args.join(' ')} failed (code ${code}, signal ${signal ?? 'none'})\n` +
              `--- stdout ---\n${stdout.slice(-4000)}\n--- stderr ---\n${stderr.slice(-4000)}`,
          ),
        );
    });
  });
}
