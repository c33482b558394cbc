// OPA bundles built by the real, pinned `opa build -t wasm`, for bundle tests:
// the default policy's Rego (policies/lbac, tests excluded), optional data
// and manifest roots, optionally signed with `--signing-key` (RS256/ES256).
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { tempDir } from './temp-dir.ts';
import { repoRoot, toolPath } from './tools.ts';

const run = promisify(execFile);

export interface SigningKeyPair {
  algorithm: 'RS256' | 'ES256';
  /** PKCS#8 PEM, for `opa build --signing-key`. */
  privateKeyPem: string;
  /** SPKI PEM, for the gateway's verification config. */
  publicKeyPem: string;
  /** Files holding them (in the helper's temp dir). */
  privateKeyFile: string;
  publicKeyFile: string;
}

export interface BuildBundleOptions {
  revision: string;
  /** Written as the bundle source's /data.json. */
  data?: Record<string, unknown>;
  /** Manifest roots (written to the source's .manifest). */
  roots?: string[];
  /** Extra Rego files: bundle path → source (package must fit the roots). */
  rego?: Record<string, string>;
  /** Leave out the default policy's Rego (then `rego` must define the entrypoint). */
  noDefaultPolicy?: boolean;
  entrypoint?: string;
  signingKey?: SigningKeyPair;
  /** --scope is only for verification in opa build; a signed scope goes in the claims file. */
  claims?: Record<string, unknown>;
  /** Output file; default: a file in the helper's temp dir. */
  out?: string;
}

/** The helper's temp dir (keys, bundle sources, bundles), made on first use and removed after the test file (temp-dir.ts). */
let workDir: string | undefined;
function tmp(): string {
  workDir ??= tempDir('lbac-bundles-');
  return workDir;
}
let seq = 0;

export function generateSigningKey(algorithm: 'RS256' | 'ES256' = 'RS256'): SigningKeyPair {
  const pair =
    algorithm === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const privateKeyPem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const publicKeyPem = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const n = seq++;
  const privateKeyFile = join(tmp(), `key-${n}.pem`);
  const publicKeyFile = join(tmp(), `key-${n}.pub.pem`);
  writeFileSync(privateKeyFile, privateKeyPem, { mode: 0o600 });
  writeFileSync(publicKeyFile, publicKeyPem);
  return { algorithm, privateKeyPem, publicKeyPem, privateKeyFile, publicKeyFile };
}

/** Builds a wasm bundle with the real `opa build`; returns the .tar.gz path. */
export async function buildBundle(opts: BuildBundleOptions): Promise<string> {
  const n = seq++;
  const src = join(tmp(), `src-${n}`);
  mkdirSync(join(src, 'lbac'), { recursive: true });
  if (opts.noDefaultPolicy !== true) {
    for (const f of readdirSync(join(repoRoot, 'policies', 'lbac'))) {
      if (f.endsWith('.rego') && !f.endsWith('_test.rego')) copyFileSync(join(repoRoot, 'policies', 'lbac', f), join(src, 'lbac', f));
    }
  }
  for (const [path, text] of Object.entries(opts.rego ?? {})) {
    const file = join(src, path);
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, text);
  }
  if (opts.data !== undefined) writeFileSync(join(src, 'data.json'), JSON.stringify(opts.data));
  if (opts.roots !== undefined) writeFileSync(join(src, '.manifest'), JSON.stringify({ roots: opts.roots }));
  const out = opts.out ?? join(tmp(), `bundle-${n}.tar.gz`);
  const args = ['build', '-t', 'wasm', '-e', opts.entrypoint ?? 'lbac/decision', '-r', opts.revision, '-o', out];
  if (opts.signingKey !== undefined) {
    args.push('--signing-key', opts.signingKey.privateKeyFile, '--signing-alg', opts.signingKey.algorithm);
    if (opts.claims !== undefined) {
      const claimsFile = join(tmp(), `claims-${n}.json`);
      writeFileSync(claimsFile, JSON.stringify(opts.claims));
      args.push('--claims-file', claimsFile);
    }
  }
  // From inside the source dir, so Rego files are stored as /lbac/decision.rego.
  args.push('--bundle', '.');
  try {
    await run(toolPath('opa'), args, { cwd: src });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`opa ${args.join(' ')} failed: ${err.stderr ?? err.message}`);
  }
  rmSync(src, { recursive: true, force: true });
  return out;
}

// ---- tampering (tar-level edits of a built bundle) ----------------------------------

interface TarMember {
  header: Buffer;
  name: string;
  data: Buffer;
}

function tarMembers(tar: Buffer): TarMember[] {
  const out: TarMember[] = [];
  let pos = 0;
  while (pos + 512 <= tar.length) {
    const header = tar.subarray(pos, pos + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(header.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim() || '0', 8);
    out.push({ header: Buffer.from(header), name, data: Buffer.from(tar.subarray(pos + 512, pos + 512 + size)) });
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

function writeTar(members: TarMember[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const h = Buffer.from(m.header);
    h.write(m.data.length.toString(8).padStart(11, '0') + '\0', 124, 12, 'ascii');
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
    parts.push(h, m.data, Buffer.alloc((512 - (m.data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A copy of the bundle with members edited: return new bytes, or null to drop the member. */
export function editBundle(bundle: Buffer, edit: (name: string, data: Buffer) => Buffer | null, extra: Record<string, Buffer> = {}): Buffer {
  const members = tarMembers(gunzipSync(bundle));
  const kept: TarMember[] = [];
  for (const m of members) {
    const next = edit(m.name, m.data);
    if (next !== null) kept.push({ ...m, data: next });
  }
  const template = members[0];
  if (template !== undefined) {
    for (const [name, data] of Object.entries(extra)) {
      const header = Buffer.from(template.header);
      header.fill(0, 0, 100);
      header.write(name, 0, 100, 'utf8');
      kept.push({ header, name, data });
    }
  }
  return gzipSync(writeTar(kept));
}

/** Member names of a bundle, e.g. ["/data.json", "/policy.wasm", ...]. */
export function bundleMembers(bundle: Buffer): string[] {
  return tarMembers(gunzipSync(bundle)).map((m) => m.name);
}

export function readBundleFile(path: string): Buffer {
  return readFileSync(path);
}

/** What a test bundle service serves now: a bundle and its ETag, or nothing (503, the service down). */
export type ServedBundle = { readonly body: Buffer; readonly etag: string } | undefined;

/**
 * A bundle service on a loopback port for tests: answers any path with
 * `current()` (200 with its ETag, 304 to a matching If-None-Match, 503 when
 * undefined), each answer after `hold()` resolves (a service that is slow to
 * answer).
 */
export async function serveBundles(current: () => ServedBundle, hold: () => Promise<void> = () => Promise.resolve()): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    void hold().then(() => {
      const served = current();
      if (served === undefined) return void res.writeHead(503).end();
      if (req.headers['if-none-match'] === served.etag) return void res.writeHead(304).end();
      res.writeHead(200, { etag: served.etag, 'content-type': 'application/gzip' }).end(served.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

