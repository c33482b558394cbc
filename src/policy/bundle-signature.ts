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
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';

export class BundleSignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleSignatureError';
  }
}

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

// ---- canonical JSON (the hash of structured files) ------------------------------

/** A parsed JSON value whose numbers keep their source text (Go's json.Number). */
type RawJson = null | boolean | string | { num: string } | RawJson[] | { obj: Map<string, RawJson> };

function parseRawJson(text: string): RawJson {
  let i = 0;
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const fail = (msg: string): never => {
    throw new SyntaxError(`${msg} at offset ${i}`);
  };
  const value = (depth: number): RawJson => {
    if (depth > 512) fail('JSON nested too deeply');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj = new Map<string, RawJson>();
      ws();
      if (text[i] === '}') {
        i++;
        return { obj };
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a string key');
        const k = str();
        ws();
        if (text[i] !== ':') fail('expected ":"');
        i++;
        obj.set(k, value(depth + 1)); // Go keeps the last duplicate too
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return { obj };
        }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const arr: RawJson[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return str();
    if (text.startsWith('true', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('false', i)) {
      i += 5;
      return false;
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (m === null) return fail('unexpected character');
    i += m[0].length;
    return { num: m[0] };
  };
  const str = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('unterminated string');
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

/** A string as Go's json.Encoder with SetEscapeHTML(false) writes it. */
function goJsonString(s: string): string {
  return JSON.stringify(s).replace(/[\u2028\u2029]/g, (c) => (c === '\u2028' ? '\\u2028' : '\\u2029'));
}

function canonical(v: RawJson, out: string[]): void {
  if (v === null || typeof v === 'boolean') out.push(String(v));
  else if (typeof v === 'string') out.push(goJsonString(v));
  else if (Array.isArray(v)) {
    out.push('[');
    v.forEach((x, idx) => {
      if (idx > 0) out.push(',');
      canonical(x, out);
    });
    out.push(']');
  } else if ('num' in v) out.push(v.num);
  else {
    out.push('{');
    // Go's sort.Strings: bytewise UTF-8 order.
    const keys = [...v.obj.keys()].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
    keys.forEach((k, idx) => {
      if (idx > 0) out.push(',');
      out.push(goJsonString(k), ':');
      canonical(v.obj.get(k)!, out);
    });
    out.push('}');
  }
}

/** The canonical JSON text OPA hashes for structured files. */
export function canonicalJson(text: string): string {
  const out: string[] = [];
  canonical(parseRawJson(text), out);
  return out.join('');
}

const HASH_ALGORITHMS: Readonly<Record<string, string>> = {
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
  'SHA-224': 'sha224',
  'SHA-512-224': 'sha512-224',
  'SHA-512-256': 'sha512-256',
  'SHA3-224': 'sha3-224',
  'SHA3-256': 'sha3-256',
  'SHA3-384': 'sha3-384',
  'SHA3-512': 'sha3-512',
};

/** Whether OPA hashes a bundle file in its canonical JSON form. */
function isStructured(path: string): boolean {
  return path.endsWith('.json') || path === '/.manifest';
}

/** Hex digest of one bundle file, as OPA computes it for signatures. */
export function bundleFileHash(path: string, bytes: Uint8Array, algorithm = 'SHA-256'): string {
  const node = HASH_ALGORITHMS[algorithm.toUpperCase()];
  if (node === undefined) throw new BundleSignatureError(`unsupported hashing algorithm ${JSON.stringify(algorithm)} for ${path}`);
  const h = createHash(node);
  if (isStructured(path)) {
    let text: string;
    try {
      text = canonicalJson(Buffer.from(bytes).toString('utf8'));
    } catch (e) {
      throw new BundleSignatureError(`${path}: not valid JSON (${(e as Error).message})`);
    }
    h.update(text, 'utf8');
  } else h.update(bytes);
  return h.digest('hex');
}

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
  const wantScope = config.scope ?? key.scope;
  if (wantScope !== undefined && wantScope !== '' && payload.scope !== wantScope) {
    throw new BundleSignatureError(`signature scope ${JSON.stringify(payload.scope ?? null)} does not match the required scope ${JSON.stringify(wantScope)}`);
  }
  if (!Array.isArray(payload.files) || payload.files.length === 0) throw new BundleSignatureError('signature payload lists no files');

  const excluded = new Set((config.excludeFiles ?? []).map((f) => '/' + f.replace(/^\/+/, '')));
  const signed = new Map<string, SignedFile>();
  for (const f of payload.files as unknown[]) {
    const sf = f as Partial<SignedFile> | null;
    if (sf === null || typeof sf.name !== 'string' || typeof sf.hash !== 'string') throw new BundleSignatureError('signature payload has a malformed file entry');
    const path = '/' + sf.name.replace(/^\/+/, '');
    if (signed.has(path)) throw new BundleSignatureError(`signature lists ${sf.name} twice`);
    signed.set(path, { name: sf.name, hash: sf.hash.toLowerCase(), algorithm: typeof sf.algorithm === 'string' ? sf.algorithm : 'SHA-256' });
  }
  for (const [path, bytes] of files) {
    if (path === SIGNATURES_FILE || excluded.has(path)) continue;
    const entry = signed.get(path);
    if (entry === undefined) throw new BundleSignatureError(`file ${path.slice(1)} is not covered by the bundle signature`);
    if (bundleFileHash(path, bytes, entry.algorithm) !== entry.hash) throw new BundleSignatureError(`file ${path.slice(1)}: digest mismatch (tampered?)`);
    signed.delete(path);
  }
  for (const path of signed.keys()) {
    if (!excluded.has(path)) throw new BundleSignatureError(`file ${path.slice(1)} is listed in the bundle signature but missing from the bundle`);
  }
  return { keyid };
}
