// Starts the real gateway through its CLI (`bin/lbac-gateway.js serve --config FILE`)
// under the pinned Node 24, with the given config written as YAML.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './ports.ts';
import { startProcess } from './process.ts';
import type { ExitInfo } from './process.ts';
import { repoRoot, toolPath } from './tools.ts';

export interface StartGatewayOptions {
  /** The config object (see the config contract); `server.listen` is set by the harness. */
  config: Record<string, unknown>;
  /** Where to write the YAML. Relative paths in the config resolve against its directory. Default: a fresh temp dir, removed by stop() (unless LBAC_E2E_KEEP_TMP=1). */
  configFile?: string;
  /** Port to listen on. Default: a free port (retried if it was taken meanwhile). */
  port?: number;
  /** Extra environment for the gateway process (`undefined` removes a variable). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Default 30 000 ms. */
  readyTimeoutMs?: number;
  logFile?: string;
  /** 'https' when the config sets server.tls; then `readyUrl` must name a plain-HTTP readiness URL (e.g. the admin listener's). */
  scheme?: 'http' | 'https';
  /** Readiness URL polled instead of `<url>/readyz`. */
  readyUrl?: string;
}

export interface GatewayInstance {
  /** e.g. http://127.0.0.1:41235 (no trailing slash). */
  url: string;
  port: number;
  configFile: string;
  logFile: string;
  pid: number;
  stop(): Promise<void>;
  /** Resolves when the gateway process exits (for any reason). */
  exited: Promise<ExitInfo>;
  /** Last lines of the gateway's log (stdout+stderr). */
  tail(lines?: number): string;
}

/** The CLI entry point the gateway is started from. */
export const gatewayBin: string = join(repoRoot, 'bin', 'lbac-gateway.js');

const PORT_ATTEMPTS = 3;

function withListen(config: Record<string, unknown>, port: number): Record<string, unknown> {
  const copy = structuredClone(config);
  const server = copy['server'];
  const serverObj: Record<string, unknown> =
    server !== null && typeof server === 'object' && !Array.isArray(server) ? (server as Record<string, unknown>) : {};
  serverObj['listen'] = `127.0.0.1:${port}`;
  // The product defaults to one worker per core; suites get one process unless they ask for more.
  serverObj['workers'] ??= 1;
  copy['server'] = serverObj;
  return copy;
}

export async function startGateway(opts: StartGatewayOptions): Promise<GatewayInstance> {
  if (!existsSync(gatewayBin)) {
    throw new Error(`${gatewayBin} does not exist: the gateway CLI is not built/written yet (npm ci runs the build)`);
  }
  const node = toolPath('node');
  const tempDir = opts.configFile === undefined ? await mkdtemp(join(tmpdir(), 'lbac-gateway-')) : undefined;
  const configFile = tempDir !== undefined ? join(tempDir, 'config.yaml') : resolve(opts.configFile as string);
  mkdirSync(dirname(configFile), { recursive: true });
  const removeTemp = (): void => {
    if (tempDir !== undefined && process.env['LBAC_E2E_KEEP_TMP'] !== '1') rmSync(tempDir, { recursive: true, force: true });
  };

  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const url = `${opts.scheme ?? 'http'}://127.0.0.1:${port}`;
    writeFileSync(configFile, stringify(withListen(opts.config, port)));
    try {
      const proc = await startProcess({
        name: 'lbac-gateway',
        cmd: node,
        args: [gatewayBin, 'serve', '--config', configFile],
        cwd: repoRoot,
        ...(opts.env !== undefined ? { env: opts.env } : {}),
        readyUrl: opts.readyUrl ?? `${url}/readyz`,
        readyTimeoutMs: opts.readyTimeoutMs ?? 30_000,
        ...(opts.logFile !== undefined ? { logFile: opts.logFile } : {}),
      });
      return {
        url,
        port,
        configFile,
        logFile: proc.logFile,
        pid: proc.pid,
        stop: async () => {
          await proc.stop();
          removeTemp();
        },
        exited: proc.exited,
        tail: proc.tail,
      };
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (opts.port === undefined && attempt < PORT_ATTEMPTS && /EADDRINUSE|address already in use/i.test(msg)) continue;
      removeTemp();
      throw err;
    }
  }
}
