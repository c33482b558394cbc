// The container image's runtime stage, checked without a Docker engine: the
// file set the Dockerfile copies into /app (dist compiled by tsc, production-only
// node_modules, bin/, wasm/, package.json, the example config) is assembled in a
// temporary directory and the gateway is started from it with the pinned Node.js,
// exactly as the image's ENTRYPOINT/CMD do. It must start, answer /healthz and
// /readyz, serve /metrics on the admin listener, pass the image's own HEALTHCHECK
// command, and never need a dev dependency (they are not there) or src/.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { freePort } from './harness/ports.ts';
import { runCommand, startProcess, type RunningProcess } from './harness/process.ts';
import { repoRoot, toolPath } from './harness/tools.ts';

const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');

/** The runtime stage: everything after the last FROM. */
function runtimeStage(): string {
  const stages = dockerfile.split(/^FROM /m);
  return stages[stages.length - 1]!;
}

/** Destinations (relative to WORKDIR /app, or absolute) of the runtime stage's COPY lines. */
function runtimeCopies(): { from: string | undefined; src: string; dest: string }[] {
  return [...runtimeStage().matchAll(/^COPY\s+(?:--from=(\S+)\s+)?(?:--\S+\s+)*(\S+)\s+(\S+)\s*$/gm)].map((m) => {
    const src = m[2]!;
    let dest = m[3]!;
    if (dest.endsWith('/')) dest += path.posix.basename(src); // COPY package.json ./
    return { from: m[1], src, dest: path.posix.normalize(dest) };
  });
}

function dockerEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  const line = /^ENV\s+(.+)$/m.exec(runtimeStage())?.[1] ?? '';
  for (const m of line.matchAll(/([A-Z_]+)=(\S+)/g)) env[m[1]!] = m[2]!;
  return env;
}

/** Production node_modules for this package-lock, prepared once per lock hash under the OS temp dir. */
async function productionNodeModules(): Promise<string> {
  const lock = readFileSync(path.join(repoRoot, 'package-lock.json'));
  const pkg = readFileSync(path.join(repoRoot, 'package.json'));
  const key = createHash('sha256').update(lock).update(pkg).digest('hex').slice(0, 16);
  const dir = path.join(os.tmpdir(), `lbac-gateway-prod-deps-${key}`);
  if (existsSync(path.join(dir, '.complete'))) return path.join(dir, 'node_modules');
  const work = mkdtempSync(path.join(os.tmpdir(), 'lbac-gateway-prod-deps-work-'));
  writeFileSync(path.join(work, 'package.json'), pkg);
  writeFileSync(path.join(work, 'package-lock.json'), lock);
  // What the image's build stage ends with (npm ci, then npm prune --omit=dev): only
  // production dependencies, no install scripts.
  await runCommand('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd: work, timeoutMs: 300_000 });
  writeFileSync(path.join(work, '.complete'), '');
  rmSync(dir, { recursive: true, force: true });
  renameSync(work, dir);
  return path.join(dir, 'node_modules');
}

let app: string;
let gateway: RunningProcess | undefined;
let base: string;
let adminBase: string;
let env: Record<string, string>;

beforeAll(async () => {
  app = mkdtempSync(path.join(os.tmpdir(), 'lbac-gateway-image-'));
  const modules = await productionNodeModules();
  // The build stage's compile step, into the image's /app/dist.
  await runCommand(toolPath('node'), [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(repoRoot, 'tsconfig.build.json'), '--outDir', path.join(app, 'dist')], { timeoutMs: 180_000 });
  const etc = path.join(app, 'etc', 'lbac-gateway');
  for (const c of runtimeCopies()) {
    const dest = path.join(app, c.dest);
    if (c.from === 'build') {
      if (c.src === '/app/node_modules') cpSync(modules, dest, { recursive: true, verbatimSymlinks: true });
      else if (c.src === '/app/dist') continue; // compiled above
      else throw new Error(`unexpected COPY --from=build ${c.src}`);
    } else {
      mkdirSync(path.dirname(dest), { recursive: true });
      cpSync(path.join(repoRoot, c.src), dest, { recursive: true });
    }
  }
  // The image's config, plus an admin listener as the Helm chart configures it.
  const configFile = path.join(etc, 'gateway.yaml');
  const doc = parseDocument(readFileSync(configFile, 'utf8'));
  const port = await freePort();
  const adminPort = await freePort();
  doc.setIn(['server', 'adminListen'], `127.0.0.1:${adminPort}`);
  writeFileSync(configFile, doc.toString());

  env = { ...dockerEnv(), LBAC_CONFIG: configFile, LBAC_LISTEN: `127.0.0.1:${port}` };
  base = `http://127.0.0.1:${port}`;
  adminBase = `http://127.0.0.1:${adminPort}`;
  // ENTRYPOINT ["node", "bin/lbac-gateway.js"] + CMD ["serve"], WORKDIR /app. NODE_OPTIONS and
  // NODE_PATH are cleared so nothing from the checkout (or vitest) can leak in.
  gateway = await startProcess({
    name: 'container-runtime',
    cmd: toolPath('node'),
    args: ['bin/lbac-gateway.js', 'serve'],
    cwd: app,
    env: { ...env, NODE_OPTIONS: undefined, NODE_PATH: undefined },
    readyUrl: `${base}/healthz`,
    readyTimeoutMs: 30_000,
  });
}, 400_000);

afterAll(async () => {
  await gateway?.stop();
  if (app) rmSync(app, { recursive: true, force: true });
});

describe('container runtime file set (Dockerfile runtime stage)', () => {
  it('copies exactly dist, production node_modules, package.json, bin, wasm and the example config', () => {
    const dests = runtimeCopies().map((c) => c.dest).sort();
    expect(dests).toEqual(['bin', 'dist', 'node_modules', 'package.json', 'wasm', '/etc/lbac-gateway/gateway.yaml'].sort());
    expect(readdirSync(app).sort()).toEqual(['bin', 'dist', 'etc', 'node_modules', 'package.json', 'wasm']);
  });

  it('has no dev dependency and no sources', () => {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { devDependencies: Record<string, string>; dependencies: Record<string, string> };
    // Every package the lockfile marks dev-only is absent (a devDependency that a production
    // dependency also needs, such as @types/node for protobufjs, is not dev-only and stays).
    const lock = JSON.parse(readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([p, v]) => p.startsWith('node_modules/') && v.dev === true).map(([p]) => p);
    expect(devOnly).toEqual(expect.arrayContaining(['node_modules/vitest', 'node_modules/typescript']));
    for (const p of devOnly) expect(existsSync(path.join(app, p)), p).toBe(false);
    for (const dev of ['vitest', 'typescript', 'fast-check', 'oidc-provider', 'testcontainers']) expect(pkg.devDependencies[dev], dev).toBeDefined();
    for (const dep of Object.keys(pkg.dependencies)) expect(existsSync(path.join(app, 'node_modules', dep)), dep).toBe(true);
    expect(existsSync(path.join(app, 'src'))).toBe(false);
    expect(existsSync(path.join(app, 'dist', 'cli', 'main.js'))).toBe(true);
  });

  it('starts and answers /healthz and /readyz with the bundled policy', async () => {
    const h = await fetch(`${base}/healthz`);
    expect(h.status).toBe(200);
    const r = await fetch(`${base}/readyz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ status: 'ready' });
  });

  it('enforces identity (the full request pipeline loaded): no token is 401, never forwarded', async () => {
    const res = await fetch(`${base}/prometheus/api/v1/query?query=up`);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ status: 'error', errorType: 'unauthorized' });
  });

  it('serves lbac_gateway_ metrics on the admin listener and not on the main port', async () => {
    const m = await fetch(`${adminBase}/metrics`);
    expect(m.status).toBe(200);
    expect(await m.text()).toMatch(/^lbac_gateway_build_info\{version="[^"]+"\} 1$/m);
    expect((await fetch(`${base}/metrics`)).status).toBe(404);
  });

  it("passes the image's own HEALTHCHECK command", async () => {
    const m = /^HEALTHCHECK\s.*?CMD\s+(\[.*\])\s*$/m.exec(runtimeStage());
    expect(m, 'the runtime stage has a HEALTHCHECK in exec form').not.toBeNull();
    const argv = JSON.parse(m![1]!) as string[];
    expect(argv[0]).toBe('node');
    await expect(runCommand(toolPath('node'), argv.slice(1), { cwd: app, env, timeoutMs: 10_000 })).resolves.toBeDefined();
  });

  it('stops cleanly on SIGTERM (exit 0)', async () => {
    const p = gateway!;
    gateway = undefined;
    await p.stop();
    expect(await p.exited).toEqual({ code: 0, signal: null });
  });
});
