// A real nginx (Debian's, /usr/sbin/nginx; `make tools` installs it) serving
// static files — OPA bundles — on a loopback port chosen at run time, with
// ETag / If-None-Match → 304 (nginx's own `etag on`) and optional bearer
// authentication (a `map` on the Authorization header; anything else → 401).
// The access log records status and request per line, so tests can count 304s.
// LBAC_E2E_MODE=containers runs the same config in the official
// nginx:<NGINX_VERSION>-alpine image (containers.ts) instead.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort } from './ports.ts';
import { CONTAINER_NGINX_PORT, CONTAINER_WORK, CONTAINER_WWW, e2eMode, requireContainerRuntime } from './mode.ts';
import { startProcess } from './process.ts';

export const NGINX_BIN = process.env['LBAC_NGINX'] ?? '/usr/sbin/nginx';

export interface StartNginxOptions {
  /** Required bearer token; unset: no authentication. */
  bearerToken?: string;
  /** Port; default a free one. Pass the old port to restart "the same server". */
  port?: number;
  /** Document root; default a fresh temp dir (kept across restarts when passed back). */
  root?: string;
}

export interface AccessLogEntry {
  status: number;
  method: string;
  uri: string;
  ifNoneMatch: string;
  authorized: boolean;
}

export interface NginxInstance {
  url: string;
  port: number;
  root: string;
  /** Atomically (re)places a file under the root; its mtime is bumped so the ETag always changes. */
  put(path: string, content: Buffer | string): void;
  remove(path: string): void;
  accessLog(): AccessLogEntry[];
  stop(): Promise<void>;
  tail(lines?: number): string;
}

let mtimeSeq = Math.floor(Date.now() / 1000) - 100_000;

function config(opts: { listen: string; root: string; work: string; bearerToken: string | undefined }): string {
  const user = process.getuid?.() === 0 ? 'user root root;\n' : '';
  const auth =
    opts.bearerToken === undefined
      ? ''
      : `  map $http_authorization $lbac_authorized {\n    default 0;\n    "Bearer ${opts.bearerToken.replace(/["\\$]/g, '')}" 1;\n  }\n`;
  const check = opts.bearerToken === undefined ? '' : `      if ($lbac_authorized = 0) { return 401; }\n`;
  return `${user}daemon off;
master_process on;
worker_processes 1;
pid ${opts.work}/nginx.pid;
error_log ${opts.work}/error.log info;
events { worker_connections 256; }
http {
  default_type application/octet-stream;
  types { application/gzip gz; application/json json; }
  client_body_temp_path ${opts.work}/tmp/body;
  proxy_temp_path ${opts.work}/tmp/proxy;
  fastcgi_temp_path ${opts.work}/tmp/fastcgi;
  uwsgi_temp_path ${opts.work}/tmp/uwsgi;
  scgi_temp_path ${opts.work}/tmp/scgi;
  log_format lbac '$status $request_method "$request_uri" "$http_if_none_match" ${opts.bearerToken === undefined ? '1' : '$lbac_authorized'}';
  access_log ${opts.work}/access.log lbac;
${auth}  server {
    listen ${opts.listen};
    server_name localhost;
    root ${opts.root};
    etag on;
    location = /healthz { access_log off; return 200 "ok\\n"; }
    location / {
${check}      try_files $uri =404;
    }
  }
}
`;
}

export async function startNginx(opts: StartNginxOptions = {}): Promise<NginxInstance> {
  const inContainer = e2eMode() === 'containers';
  if (inContainer) await requireContainerRuntime();
  else if (!existsSync(NGINX_BIN)) throw new Error(`nginx is not installed at ${NGINX_BIN}: run \`make tools\` (it runs \`scripts/tools.sh nginx\`, apt-get install nginx)`);
  const work = await mkdtemp(join(tmpdir(), 'lbac-nginx-'));
  mkdirSync(join(work, 'tmp'), { recursive: true });
  const root = opts.root ?? join(work, 'www');
  mkdirSync(root, { recursive: true });
  let proc: { url: string; port: number; stop(): Promise<void>; tail(lines?: number): string } | undefined;
  if (inContainer) {
    writeFileSync(join(work, 'nginx.conf'), config({ listen: `0.0.0.0:${CONTAINER_NGINX_PORT}`, root: CONTAINER_WWW, work: CONTAINER_WORK, bearerToken: opts.bearerToken }));
    const { startNginxContainer } = await import('./containers.ts');
    proc = await startNginxContainer({ work, root, ...(opts.port !== undefined ? { hostPort: opts.port } : {}) });
  }
  for (let attempt = 1; proc === undefined; attempt++) {
    const port = opts.port ?? (await freePort());
    const confFile = join(work, 'nginx.conf');
    writeFileSync(confFile, config({ listen: `127.0.0.1:${port}`, root, work, bearerToken: opts.bearerToken }));
    try {
      const started = await startProcess({
        name: 'nginx',
        cmd: NGINX_BIN,
        args: ['-p', work, '-c', confFile, '-e', join(work, 'error.log')],
        readyUrl: `http://127.0.0.1:${port}/healthz`,
        readyTimeoutMs: 15_000,
        stopGraceMs: 3_000,
      });
      proc = { url: `http://127.0.0.1:${port}`, port, stop: started.stop, tail: started.tail };
    } catch (e) {
      const log = existsSync(join(work, 'error.log')) ? readFileSync(join(work, 'error.log'), 'utf8') : '';
      if (opts.port === undefined && attempt < 3 && /Address already in use/.test(log)) continue;
      throw new Error(`${(e as Error).message}\n--- nginx error.log ---\n${log.slice(-3000)}`);
    }
  }
  const running = proc;
  return {
    url: running.url,
    port: running.port,
    root,
    put(path, content) {
      const file = join(root, path);
      mkdirSync(dirname(file), { recursive: true });
      const tmp = `${file}.tmp-${process.pid}`;
      writeFileSync(tmp, content);
      mtimeSeq += 10;
      utimesSync(tmp, mtimeSeq, mtimeSeq);
      renameSync(tmp, file);
    },
    remove(path) {
      rmSync(join(root, path), { force: true });
    },
    accessLog() {
      let text = '';
      try {
        text = readFileSync(join(work, 'access.log'), 'utf8');
      } catch {
        return [];
      }
      return text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => {
          const m = /^(\d{3}) (\S+) "([^"]*)" "([^"]*)" (\d)$/.exec(l);
          if (m === null) throw new Error(`unexpected nginx access log line: ${l}`);
          return { status: Number(m[1]), method: m[2]!, uri: m[3]!, ifNoneMatch: m[4] === '-' ? '' : m[4]!.replace(/\\x22/g, '"'), authorized: m[5] === '1' };
        });
    },
    async stop() {
      await running.stop();
    },
    tail: (lines) => running.tail(lines),
  };
}
