/**
 * Verification of `.signatures.json` in OPA bundles, as `opa build
 * --signing-key KEY [--signing-alg RS256|ES256] [--scope S]` produces it and
 * OPA itself verifies it (docs: management-bundles, "Signing"):
 *
 *   {"signatures": ["<JWS compact>"], "plugin": "_default"}
 *
 * The JWS payload is `{"files": [{"name", "hash", "algorithm"}], "keyid"?,
 * "scope"?, ...}`. Names are bundle paths without the leading "/". Hashes are
 * hex digests: of the raw bytes for most files, and for JSON files (`.json`
 * data files and `.manifest`) of their canonical form — objects with keys
 * sorted, no insignificant whitespace, strings as Go's encoding/json writes
 * them without HTML escaping, numbers as written — so re-formatting the JSON
 * does not break a signature.
 *
 * Rules (OPA's): exactly one signature; the key is chosen by the configured
 * keyid, else the JWS header `kid`, else the payload's `keyid`; the JWS must
 * verify with that key under the key's algorithm; the payload's scope must
 * equal the configured scope (or the key's); every file in the bundle except
 * `.signatures.json` (and configured exclusions) must be listed with a
 * matching hash, and every listed file must be present.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { BundleSignatureError } from './bundle-digest.ts';
import { bundleFileHashes } from './bundle-hash.ts';

export { BundleSignatureError };

export type SigningAlgorithm = 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512';

export interface VerificationKey {
  keyid: string;
  algorithm: SigningAlgorithm;
  /** PEM (SPKI "PUBLIC KEY", or "RSA PUBLIC KEY") or a KeyObject. */
  publicKey: string | KeyObject;
  scope?: string | undefined;
}

export interface VerificationConfig {
  keys: readonly VerificationKey[];
  /** Force this key (OPA's `signing.keyid`); otherwise the JWS `kid` / payload `keyid` choose. */
  keyid?: string | undefined;
  /** Required payload scope (OPA's `signing.scope`). */
  scope?: string | undefined;
  /** Bundle paths (without leading "/") not covered by the signature. */
  excludeFiles?: readonly string[] | undefined;
}

export const SIGNATURES_FILE = '/.signatures.json';

// ---- verification ------------------------------------------------------------------

interface SignedFile {
  name: string;
  hash: string;
  algorithm: string;
}

function keyObject(k: VerificationKey): KeyObject {
  if (typeof k.publicKey !== 'string') return k.publicKey;
  try {
    return createPublicKey(k.publicKey);
  } catch (e) {
    throw new BundleSignatureError(`verification key ${k.keyid}: not a PEM public key (${(e as Error).message})`);
  }
}

/** Checks a config's keys once (so a bad PEM is a startup error, not a rejected bundle). */
export function prepareVerification(config: VerificationConfig): VerificationConfig {
  return { ...config, keys: config.keys.map((k) => ({ ...k, publicKey: keyObject(k) })) };
}

/**
 * Verifies the bundle's files (absolute paths → bytes, including
 * `/.signatures.json`) against the config. Throws BundleSignatureError with
 * the reason; returns the verified payload's keyid.
 */
export async function verifyBundleSignature(files: ReadonlyMap<string, Uint8Array>, config: VerificationConfig): Promise<{ keyid: string }> {
  const sigBytes = files.get(SIGNATURES_FILE);
  if (sigBytes === undefined) throw new BundleSignatureError('bundle is not signed (no .signatures.json) but signature verification is configured');
  let sigDoc: unknown;
  try {
    sigDoc = JSON.parse(Buffer.from(sigBytes).toString('utf8'));
  } catch {
    throw new BundleSignatureError('.signatures.json is not valid JSON');
  }
  const signatures = (sigDoc as { signatures?: unknown } | null)?.signatures;
  if (!Array.isArray(signatures) || signatures.length === 0) throw new BundleSignatureError('.signatures.json has no signatures');
  if (signatures.length > 1) throw new BundleSignatureError('.signatures.json has more than one signature (only one is supported, as in OPA)');
  const plugin = (sigDoc as { plugin?: unknown }).plugin;
  if (plugin !== undefined && plugin !== '_default' && plugin !== '') throw new BundleSignatureError(`signature plugin ${JSON.stringify(plugin)} is not supported`);
  const jws = signatures[0];
  if (typeof jws !== 'string') throw new BundleSignatureError('signature is not a string');

  let headerKid: string | undefined;
  let payloadKeyid: string | undefined;
  let unverifiedPayload: unknown;
  try {
    headerKid = decodeProtectedHeader(jws).kid;
    const part = jws.split('.')[1] ?? '';
    unverifiedPayload = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    const k = (unverifiedPayload as { keyid?: unknown }).keyid;
    payloadKeyid = typeof k === 'string' && k !== '' ? k : undefined;
  } catch {
    throw new BundleSignatureError('signature is not a JWS in compact form');
  }
  const keyid = config.keyid ?? (headerKid !== undefined && headerKid !== '' ? headerKid : undefined) ?? payloadKeyid;
  if (keyid === undefined) throw new BundleSignatureError('signature names no key (no kid / keyid) and none is configured');
  const key = config.keys.find((k) => k.keyid === keyid);
  if (key === undefined) throw new BundleSignatureError(`signature key ${JSON.stringify(keyid)} is not a configured verification key`);

  let payloadBytes: Uint8Array;
  try {
    const result = await compactVerify(jws, keyObject(key), { algorithms: [key.algorithm] });
    payloadBytes = result.payload;
  } catch (e) {
    throw new BundleSignatureError(`signature does not verify with key ${JSON.stringify(keyid)} (${key.algorithm}): ${(e as Error).message}`);
  }
  let payload: { files?: unknown; scope?: unknown };
  try {
    payload = JSON.parse(Buffer.from(payloadBytes).toString('utf8')) as typeof payload;
  } catch {
    throw new BundleSignatureError('signature payload is not JSON');
  }
  // As OPA: the payload's scope must equal the required one, also when none is required (a bundle signed
  // for a scope, e.g. staging's with the same key, is not one an unscoped gateway takes).
  const wantScope = (config.scope !== undefined && config.scope !== '' ? config.scope : key.scope) ?? '';
  if ((payload.scope ?? '') !== wantScope) {
    throw new BundleSignatureError(`signature scope ${JSON.stringify(payload.scope ?? null)} does not match the required scope ${JSON.stringify(wantScope === '' ? null : wantScope)}`);
  }
  if (!Array.isArray(payload.files) || payload.files.length === 0) throw new BundleSignatureError('signature payload lists no files');

  const excluded = new Set((config.excludeFiles ?? []).map((f) => '/' + f.replace(/^\/+/, '')));
  const signed = new Map<string, SignedFile>();
  for (const f of payload.files as unknown[]) {
    const sf = f as Partial<SignedFile> | null;
    if (sf === null || typeof sf.name !== 'string' || typeof sf.hash !== 'string') throw new BundleSignatureError('signature payload has a malformed file entry');
    // As OPA: a name is the file's path as written (no leading "/"), and its hashing algorithm is named.
    if (typeof sf.algorithm !== 'string' || sf.algorithm === '') throw new BundleSignatureError(`signature payload names no hashing algorithm for ${sf.name}`);
    const path = '/' + sf.name;
    if (signed.has(path)) throw new BundleSignatureError(`signature lists ${sf.name} twice`);
    signed.set(path, { name: sf.name, hash: sf.hash.toLowerCase(), algorithm: sf.algorithm });
  }
  // Every name first (cheap), then the digests: an unlisted file is refused before any file is hashed.
  const jobs: { path: string; bytes: Uint8Array; algorithm: string; hash: string }[] = [];
  for (const [path, bytes] of files) {
    if (path === SIGNATURES_FILE || excluded.has(path)) continue;
    const entry = signed.get(path);
    if (entry === undefined) throw new BundleSignatureError(`file ${path.slice(1)} is not covered by the bundle signature`);
    jobs.push({ path, bytes, algorithm: entry.algorithm, hash: entry.hash });
    signed.delete(path);
  }
  for (const path of signed.keys()) {
    if (!excluded.has(path)) throw new BundleSignatureError(`file ${path.slice(1)} is listed in the bundle signature but missing from the bundle`);
  }
  const digests = await bundleFileHashes(jobs);
  jobs.forEach((j, idx) => {
    if (digests[idx] !== j.hash) throw new BundleSignatureError(`file ${j.path.slice(1)}: digest mismatch (tampered?)`);
  });
  return { keyid };
}
