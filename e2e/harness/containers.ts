// Containers mode (LBAC_E2E_MODE=containers): Prometheus and nginx from their
// official images through testcontainers, with the same handles as the local
// binaries (prometheus.ts, nginx.ts). Only those modules import this file,
// and only in containers mode, so local runs never load testcontainers.
//
// The work directory is a host temp dir bind-mounted at /lbac; the containers
// run as the caller's uid:gid so everything they write (TSDB blocks, the
// query log, nginx's access log) is readable — and removable — on the host,
// which is how queriesSeen() and accessLog() read them.
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { GenericContainer, Wait, type StartedTestContainer } from 'testcontainers';
import { CONTAINER_NGINX_PORT as NGINX_PORT, CONTAINER_WORK, CONTAINER_WWW, containerImages, requireContainerRuntime } from './mode.ts';
import { logDir, tailFile, type ExitInfo } from './process.ts';

let seq = 0;

function hostUser(): string {
  return `${process.getuid?.() ?? 0}:${process.getgid?.() ?? 0}`;
}

/** A started long-running container with its log in a host file. */
export interface ContainerHandle {
  url: string;
  port: number;
  logFile: string;
  exited: Promise<ExitInfo>;
  stop(): Promise<void>;
  tail(lines?: number): string;
}

async function startLogged(name: string, container: GenericContainer, port: number, logFile?: string): Promise<ContainerHandle> {
  const file = logFile ?? join(logDir(), `${name}-container-${process.pid}-${Date.now()}-${seq++}.log`);
  const log = createWriteStream(file, { flags: 'a' });
  let done: (info: ExitInfo) => void = () => {};
  const exited = new Promise<ExitInfo>((r) => (done = r));
  let started: StartedTestContainer;
  try {
    started = await container
      .withLogConsumer((stream: Readable) => {
        stream.pipe(log);
        stream.on('end', () => done({ code: null, signal: null }));
      })
      .start();
  } catch (err) {
    log.end();
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`${name} container did not start: ${msg}\n  log: ${file}\n--- last lines of the log ---\n${tailFile(file, 40)}\n--- end of log ---`, { cause: err });
  }
  const mapped = started.getMappedPort(port);
  let stopping: Promise<void> | undefined;
  return {
    url: `http://${started.getHost()}:${mapped}`,
    port: mapped,
    logFile: file,
    exited,
    stop: () =>
      (stopping ??= (async () => {
        await started.stop({ timeout: 5_000 });
        log.end();
        done({ code: null, signal: null });
      })()),
    tail: (lines = 40) => tailFile(file, lines),
  };
}

/**
 * Seeds `workDir/seed.om` into `workDir/data` with promtool from the
 * Prometheus image (`promtool tsdb create-blocks-from openmetrics`), then
 * starts Prometheus on the same volume with `workDir/prometheus.yml` (which
 * must name paths under CONTAINER_WORK).
 */
export async function startPrometheusContainer(opts: {
  workDir: string;
  extraArgs: readonly string[];
  retention: string;
  readyTimeoutMs: number;
  logFile?: string;
}): Promise<ContainerHandle> {
  await requireContainerRuntime();
  const image = containerImages().prometheus;
  const mount = [{ source: opts.workDir, target: CONTAINER_WORK, mode: 'rw' as const }];
  const seeder = await new GenericContainer(image)
    .withUser(hostUser())
    .withBindMounts(mount)
    .withEntrypoint(['/bin/promtool'])
    .withCommand(['tsdb', 'create-blocks-from', 'openmetrics', '--quiet', `${CONTAINER_WORK}/seed.om`, `${CONTAINER_WORK}/data`])
    .withWaitStrategy(Wait.forOneShotStartup())
    .withStartupTimeout(180_000)
    .start();
  await seeder.stop();
  const container = new GenericContainer(image)
    .withUser(hostUser())
    .withBindMounts(mount)
    .withCommand([
      `--config.file=${CONTAINER_WORK}/prometheus.yml`,
      `--storage.tsdb.path=${CONTAINER_WORK}/data`,
      `--web.listen-address=0.0.0.0:9090`,
      `--storage.tsdb.retention.time=${opts.retention}`,
      ...opts.extraArgs,
    ])
    .withExposedPorts(9090)
    .withWaitStrategy(Wait.forHttp('/-/ready', 9090).forStatusCode(200))
    .withStartupTimeout(opts.readyTimeoutMs);
  return startLogged('prometheus', container, 9090, opts.logFile);
}

/**
 * nginx from the alpine image with `work/nginx.conf` (written for paths under
 * CONTAINER_WORK, listening on 0.0.0.0:NGINX_PORT), the document root mounted
 * at CONTAINER_WWW. `hostPort` pins the host port (a restart of "the same
 * server"); otherwise Docker picks one.
 */
export async function startNginxContainer(opts: { work: string; root: string; hostPort?: number }): Promise<ContainerHandle> {
  await requireContainerRuntime();
  const container = new GenericContainer(containerImages().nginx)
    .withUser(hostUser())
    .withBindMounts([
      { source: opts.work, target: CONTAINER_WORK, mode: 'rw' },
      { source: opts.root, target: CONTAINER_WWW, mode: 'ro' },
    ])
    .withEntrypoint(['nginx'])
    .withCommand(['-p', CONTAINER_WORK, '-c', `${CONTAINER_WORK}/nginx.conf`, '-e', `${CONTAINER_WORK}/error.log`])
    .withExposedPorts(opts.hostPort !== undefined ? { container: NGINX_PORT, host: opts.hostPort } : NGINX_PORT)
    .withWaitStrategy(Wait.forHttp('/healthz', NGINX_PORT).forStatusCode(200))
    .withStartupTimeout(60_000);
  return startLogged('nginx', container, NGINX_PORT);
}
