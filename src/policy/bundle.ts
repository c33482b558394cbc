/**
 * OPA bundles (`opa build -t wasm -e lbac/decision … -o bundle.tar.gz`) turned
 * into a ready PolicyEngine — or rejected with a reason, never half-loaded.
 *
 * A bundle is a gzipped tar of:
 *   /.manifest          {"revision", "roots", "wasm": [{"entrypoint", "module"}], ...}
 *   /policy.wasm        the compiled policy (the module the manifest names for our entrypoint)
 *   /data.json, /a/b/data.json (or data.yaml)   data documents, each at its directory's path
 *   /.signatures.json   optional; required (and verified) when verification is configured
 *   *.rego              sources, ignored by a wasm evaluator
 *
 * Data: every bundle data document must lie under one of the manifest's roots
 * (default: [""], everything). The gateway's own data (`{lbac: …}` from the
 * config's teams/admins) is merged in: objects merge key by key, and any path
 * where both give a value that is not an object on both sides is a conflict,
 * which rejects the bundle.
 */
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { GatewayError, isGatewayError } from '../errors.ts';
import { readBundleArchive, BundleFormatError, DEFAULT_MAX_UNCOMPRESSED_BYTES } from './bundle-tar.ts';
import { verifyBundleSignature, BundleSignatureError, SIGNATURES_FILE, type VerificationConfig } from './bundle-signature.ts';
import { PolicyEngine, DEFAULT_ENTRYPOINT, type PolicyEngineOptions } from './engine.ts';

export interface BundleManifest {
  revision: string;
  roots: string[];
  wasm: { entrypoint: string; module: string }[];
  metadata?: Record<string, unknown>;
}

export interface LoadedBundle {
  engine: PolicyEngine;
  manifest: BundleManifest;
  /** Manifest revision, or (if empty) "sha256:<12 hex>" of the wasm: always non-empty. */
  revision: string;
  /** The key the signature verified with, if verification is configured. */
  signedBy: string | undefined;
  /** BundleArchive.contentDigest of the archive it was loaded from. */
  contentDigest: string;
}

/** A bundle archive read (gunzipped, untarred) but not yet verified or loaded. */
export interface BundleArchive {
  readonly files: ReadonlyMap<string, Uint8Array>;
  /**
   * SHA-256 over the files' paths and bytes in path order: what the bundle
   * holds, whatever the tar and gzip around it (mtimes, owners, order,
   * compression level). A service that rebuilds the same bundle at every
   * poll gives other bytes with the same digest.
   */
  readonly contentDigest: string;
}

export interface LoadBundleOptions {
  /** Data merged with the bundle's data (the gateway passes `{lbac: config.policyData}`). */
  configData?: Record<string, unknown>;
  entrypoint?: string;
  /** When set, the bundle must carry a valid `.signatures.json`. */
  verification?: VerificationConfig | undefined;
  maxUncompressedBytes?: number;
  memory?: PolicyEngineOptions['memory'];
}

/** Why a bundle was rejected; always a `policy_error`. */
export class BundleError extends GatewayError {
  constructor(message: string, cause?: unknown) {
    super('policy_error', message, cause === undefined ? undefined : { cause });
    this.name = 'BundleError';
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseManifest(bytes: Uint8Array | undefined): BundleManifest {
  if (bytes === undefined) return { revision: '', roots: [''], wasm: [] };
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new BundleError('.manifest is not valid JSON');
  }
  if (!isObject(raw)) throw new BundleError('.manifest must be a JSON object');
  const revision = raw['revision'] ?? '';
  if (typeof revision !== 'string') throw new BundleError('.manifest revision must be a string');
  let roots: string[] = [''];
  if (raw['roots'] !== undefined) {
    const r = raw['roots'];
    if (!Array.isArray(r) || !r.every((x) => typeof x === 'string')) throw new BundleError('.manifest roots must be a list of strings');
    roots = r.map((x: string) => x.replace(/^\/+|\/+$/g, ''));
  }
  // OPA: roots may not overlap (one may not be a prefix of another).
  for (const a of roots) {
    for (const b of roots) {
      if (a !== b && (a === '' || b.startsWith(a + '/'))) throw new BundleError(`.manifest roots overlap: ${JSON.stringify(a)} and ${JSON.stringify(b)}`);
    }
  }
  const wasm: { entrypoint: string; module: string }[] = [];
  if (raw['wasm'] !== undefined) {
    const w = raw['wasm'];
    if (!Array.isArray(w)) throw new BundleError('.manifest wasm must be a list');
    for (const m of w) {
      if (!isObject(m) || typeof m['entrypoint'] !== 'string' || typeof m['module'] !== 'string') throw new BundleError('.manifest wasm entries need string entrypoint and module');
      wasm.push({ entrypoint: m['entrypoint'], module: m['module'] });
    }
  }
  const metadata = raw['metadata'];
  return { revision, roots, wasm, ...(isObject(metadata) ? { metadata } : {}) };
}

/** Paths are slash-separated without leading "/"; the root "" is the whole tree. */
function inRoot(path: string, roots: readonly string[]): boolean {
  return roots.some((r) => r === '' || path === r || path.startsWith(r + '/'));
}
function aboveRoot(path: string, roots: readonly string[]): boolean {
  return roots.some((r) => (path === '' ? r !== '' : r.startsWith(path + '/')));
}

/**
 * Sets an own data property, whatever the key: `obj[k] = v` with k "__proto__"
 * would replace obj's prototype instead, dropping that data from the document
 * the policy sees (JSON keeps it as a key, and OPA evaluates it) while lookups
 * through the prototype still found it.
 */
function put(obj: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(obj, k, { value: v, writable: true, enumerable: true, configurable: true });
}

/**
 * Deep merge of `b` into `a` (both data documents). Objects merge key by key;
 * anything else present on both sides is a conflict at that path.
 */
export function mergeData(a: Record<string, unknown>, b: Record<string, unknown>, where: string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (!Object.hasOwn(out, k)) {
      put(out, k, v);
      continue;
    }
    const cur = out[k];
    if (isObject(cur) && isObject(v)) put(out, k, mergeData(cur, v, [...where, k]));
    else throw new BundleError(`data conflict at ${[...where, k].join('.')}: both the bundle and the gateway config set it`);
  }
  return out;
}

/**
 * The bundle's data files merged into one document, each object of it copied
 * at most once: a merge goes into objects this document owns, never into a
 * file's own (a YAML alias is one object in two places, so changing it in
 * place would change both). A copy of the whole document per file made the
 * merge of n data files quadratic (20 000 small files took minutes).
 */
class BundleDocument {
  readonly root: Record<string, unknown> = {};
  readonly #owned = new WeakSet<object>([this.root]);

  /** Merges `value` in at `keys`; conflicts as in mergeData. */
  mergeAt(keys: readonly string[], value: unknown, file: string): void {
    if (keys.length === 0 && !isObject(value)) throw new BundleError(`${file}: the root data document must be an object`);
    let cur = this.root;
    for (let i = 0; i < keys.length - 1; i++) cur = this.#child(cur, keys[i]!, keys.slice(0, i + 1), file, true);
    if (keys.length === 0) this.#mergeInto(cur, value as Record<string, unknown>, [], file);
    else this.#mergeInto(cur, { [keys[keys.length - 1]!]: value }, keys.slice(0, -1), file);
  }

  /** `parent[k]` as an object this document owns (copied from a file's on first change); `create` when absent. */
  #child(parent: Record<string, unknown>, k: string, where: readonly string[], file: string, create: boolean): Record<string, unknown> {
    if (!Object.hasOwn(parent, k) && create) {
      const made: Record<string, unknown> = {};
      this.#owned.add(made);
      put(parent, k, made);
      return made;
    }
    const cur = parent[k];
    if (!isObject(cur)) throw new BundleError(`${file}: data conflict at ${where.join('.')}: another data file sets it`);
    if (this.#owned.has(cur)) return cur;
    const copy: Record<string, unknown> = {};
    for (const [ck, cv] of Object.entries(cur)) put(copy, ck, cv);
    this.#owned.add(copy);
    put(parent, k, copy);
    return copy;
  }

  #mergeInto(a: Record<string, unknown>, b: Record<string, unknown>, where: readonly string[], file: string): void {
    for (const [k, v] of Object.entries(b)) {
      if (!Object.hasOwn(a, k)) {
        put(a, k, v);
        continue;
      }
      if (!isObject(a[k]) || !isObject(v)) throw new BundleError(`${file}: data conflict at ${[...where, k].join('.')}: another data file sets it`);
      this.#mergeInto(this.#child(a, k, [...where, k], file, false), v, [...where, k], file);
    }
  }
}

/** The bundle's data documents merged into one tree; checks roots. */
function bundleData(files: ReadonlyMap<string, Uint8Array>, roots: readonly string[]): Record<string, unknown> {
  const doc = new BundleDocument();
  for (const [path, bytes] of files) {
    const base = path.slice(path.lastIndexOf('/') + 1);
    if (base !== 'data.json' && base !== 'data.yaml' && base !== 'data.yml') continue;
    const dir = path.slice(1, path.lastIndexOf('/') + 1).replace(/\/$/, '');
    const keys = dir === '' ? [] : dir.split('/');
    let value: unknown;
    const text = Buffer.from(bytes).toString('utf8');
    try {
      value = base === 'data.json' ? JSON.parse(text) : parseYaml(text);
    } catch (e) {
      throw new BundleError(`${path}: not valid ${base === 'data.json' ? 'JSON' : 'YAML'}: ${(e as Error).message}`);
    }
    if (value === undefined || value === null) value = {};
    // Every key the file sets must be under a declared root.
    const check = (v: unknown, at: string[]): void => {
      const p = at.join('/');
      if (inRoot(p, roots)) return;
      if (!aboveRoot(p, roots) || !isObject(v)) throw new BundleError(`${path}: data at ${p === '' ? '(root)' : p} is outside the manifest roots [${roots.join(', ')}]`);
      for (const [k, x] of Object.entries(v)) check(x, [...at, k]);
    };
    check(value, keys);
    doc.mergeAt(keys, value, path);
  }
  return doc.root;
}

function wasmModule(files: ReadonlyMap<string, Uint8Array>, manifest: BundleManifest, entrypoint: string): Uint8Array {
  const entry = manifest.wasm.find((m) => m.entrypoint === entrypoint);
  if (entry === undefined && manifest.wasm.length > 0) {
    throw new BundleError(`bundle has no wasm module for entrypoint ${entrypoint} (it has: ${manifest.wasm.map((m) => m.entrypoint).join(', ')}); build it with -e ${entrypoint}`);
  }
  const modulePath = entry === undefined ? '/policy.wasm' : '/' + entry.module.replace(/^\/+/, '');
  const bytes = files.get(modulePath);
  if (bytes === undefined) throw new BundleError(entry === undefined ? 'bundle has no /policy.wasm (build it with opa build -t wasm)' : `bundle lacks ${modulePath}, the module the manifest names for ${entrypoint}`);
  return bytes;
}

/** Gunzip and untar a bundle (BundleError if it is not one), and digest what it holds. */
export function readBundle(bytes: Uint8Array, maxUncompressedBytes = DEFAULT_MAX_UNCOMPRESSED_BYTES): BundleArchive {
  let files: Map<string, Uint8Array>;
  try {
    files = readBundleArchive(bytes, { maxUncompressedBytes });
  } catch (e) {
    if (e instanceof BundleFormatError) throw new BundleError(`not a valid bundle: ${e.message}`, e);
    throw e;
  }
  const hash = createHash('sha256');
  const length = Buffer.alloc(8);
  for (const path of [...files.keys()].sort()) {
    const name = Buffer.from(path, 'utf8');
    const content = files.get(path)!;
    // Each part prefixed with its length: no two different file sets hash the same input.
    length.writeBigUInt64BE(BigInt(name.length));
    hash.update(length).update(name);
    length.writeBigUInt64BE(BigInt(content.length));
    hash.update(length).update(content);
  }
  return { files, contentDigest: hash.digest('hex') };
}

/**
 * Reads, verifies and compiles a bundle. Throws BundleError (`policy_error`)
 * with the reason for anything malformed; nothing is activated here.
 * `input`: the archive's bytes, or the archive readBundle read from them (with
 * the same maxUncompressedBytes).
 */
export async function loadBundle(input: Uint8Array | BundleArchive, opts: LoadBundleOptions = {}): Promise<LoadedBundle> {
  const entrypoint = opts.entrypoint ?? DEFAULT_ENTRYPOINT;
  const archive = input instanceof Uint8Array ? readBundle(input, opts.maxUncompressedBytes ?? DEFAULT_MAX_UNCOMPRESSED_BYTES) : input;
  const files = archive.files;
  let signedBy: string | undefined;
  if (opts.verification !== undefined) {
    try {
      signedBy = (await verifyBundleSignature(files, opts.verification)).keyid;
    } catch (e) {
      if (e instanceof BundleSignatureError) throw new BundleError(`bundle signature rejected: ${e.message}`, e);
      throw e;
    }
  }
  const manifest = parseManifest(files.get('/.manifest'));
  const wasm = wasmModule(files, manifest, entrypoint);
  const fromBundle = bundleData(files, manifest.roots);
  const data = mergeData(fromBundle, opts.configData ?? {});
  const revision = manifest.revision !== '' ? manifest.revision : undefined;
  let engine: PolicyEngine;
  try {
    engine = await PolicyEngine.fromBytes(wasm, data, {
      entrypoint,
      ...(revision === undefined ? {} : { revision }),
      ...(opts.memory === undefined ? {} : { memory: opts.memory }),
    });
  } catch (e) {
    if (isGatewayError(e)) throw new BundleError(`bundle policy rejected: ${e.message}`, e);
    throw e;
  }
  return { engine, manifest, revision: engine.revision, signedBy, contentDigest: archive.contentDigest };
}

/** Whether the bytes look like a bundle (gzip magic) rather than a bare wasm. */
export function looksLikeBundle(bytes: Uint8Array): boolean {
  return bytes[0] === 0x1f && bytes[1] === 0x8b;
}

export { SIGNATURES_FILE };
