// A throw-away JWT issuer for tests: a real key pair (jose), a JWKS file with
// the public key(s) only, and a mint() that makes valid tokens and, on request,
// deliberately bad ones (expired, not yet valid, wrong iss/aud, alg none,
// HS256 keyed with the public key, unknown kid, foreign key).
import { randomUUID } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CompactSign, base64url, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import type { CryptoKey, JSONWebKeySet, JWK } from 'jose';

export type TestAlg = 'RS256' | 'ES256';

export interface CreateTestIssuerOptions {
  issuer: string;
  audience: string | readonly string[];
  alg: TestAlg;
  /** Where jwks.json goes. Default: a fresh temp dir. */
  dir?: string;
  /** kid of the first key. Default: a random one. */
  kid?: string;
  /** Also write the private key as private-jwk.json (mode 0600), e.g. for the demo. */
  writePrivateKey?: boolean;
}

export interface MintOptions {
  /** exp: a jose time span ('1h', '-5m', '2 hours ago') or seconds from now (negative = past); null omits exp. Default '1h'. */
  expiresIn?: string | number | null;
  /** nbf: same forms as expiresIn ('+10m' = not yet valid). Default: no nbf. */
  notBefore?: string | number;
  /** iat in epoch seconds; null omits it. Default: now. */
  issuedAt?: number | null;
  /** Header kid. Default: the current key's kid; null omits the kid. */
  kid?: string | null;
  /**
   * Signing algorithm. Default: the issuer's. 'none' produces an unsigned token
   * (empty signature). 'HS256'/'HS384'/'HS512' sign with `hmacSecret`, by default
   * the current public key's SPKI PEM (the classic key-confusion attack).
   */
  alg?: TestAlg | 'none' | 'HS256' | 'HS384' | 'HS512';
  hmacSecret?: string | Uint8Array;
  /** Merged last into the protected header (may override alg/kid/typ). */
  header?: Record<string, unknown>;
  /** iss. Default: the issuer's; null omits it. */
  issuer?: string | null;
  /** aud. Default: the issuer's; null omits it. */
  audience?: string | readonly string[] | null;
  /** 'foreign' signs with a key pair that is NOT in the JWKS (same kid unless overridden). */
  key?: 'issuer' | 'foreign';
}

export interface TestIssuer {
  issuer: string;
  audience: string | readonly string[];
  alg: TestAlg;
  /** kid of the key mint() signs with by default. */
  kid: string;
  dir: string;
  /** Absolute path of the JWKS file (public keys only). */
  jwksPath: string;
  /** The JWKS as written to jwksPath (updated by addKey/removeKey). */
  jwks: JSONWebKeySet;
  privateKeyPath?: string;
  /** Signs a token. Claims given here win over the defaults (iss, aud, iat, exp, nbf). */
  mint(claims?: Record<string, unknown>, opts?: MintOptions): Promise<string>;
  /** Generates another key, adds its public part to the JWKS file; with makeCurrent, mint() uses it from now on. */
  addKey(opts?: { kid?: string; alg?: TestAlg; makeCurrent?: boolean }): Promise<string>;
  /** Removes a key from the JWKS file (mint() can still sign with it: tokens then carry an unknown kid). */
  removeKey(kid: string): void;
  /** Deletes the directory if createTestIssuer made it (a temp dir); a given `dir` is left alone. */
  cleanup(): void;
}

interface KeyEntry {
  kid: string;
  alg: TestAlg;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
}

async function newKey(alg: TestAlg, kid: string): Promise<KeyEntry> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, publicJwk };
}

function writeAtomic(file: string, content: string, mode?: number): void {
  const tmp = `${file}.${process.pid}.${randomUUID()}.tmp`;
  writeFileSync(tmp, content, mode !== undefined ? { mode } : {});
  renameSync(tmp, file);
}

function timeClaim(value: string | number, now: number): number {
  if (typeof value === 'number') return now + Math.trunc(value);
  // The time-span grammar jose's SignJWT accepts ('1h', '-5m', '2 hours ago').
  const m = /^(\+|-)? ?(\d+|\d+\.\d+) ?(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w|years?|yrs?|y)(?: (ago|from now))?$/i.exec(
    value.trim(),
  );
  if (m === null) throw new Error(`invalid time span ${JSON.stringify(value)}`);
  const n = Number(m[2]);
  const unit = (m[3] as string).toLowerCase();
  const mult = unit.startsWith('s')
    ? 1
    : unit.startsWith('m')
      ? 60
      : unit.startsWith('h')
        ? 3600
        : unit.startsWith('d')
          ? 86_400
          : unit.startsWith('w')
            ? 604_800
            : 31_557_600;
  const sign = m[1] === '-' || m[4]?.toLowerCase() === 'ago' ? -1 : 1;
  return now + sign * Math.round(n * mult);
}

export async function createTestIssuer(opts: CreateTestIssuerOptions): Promise<TestIssuer> {
  const dir = opts.dir !== undefined ? resolve(opts.dir) : await mkdtemp(join(tmpdir(), 'lbac-issuer-'));
  mkdirSync(dir, { recursive: true });
  const jwksPath = join(dir, 'jwks.json');
  const privateKeyPath = opts.writePrivateKey === true ? join(dir, 'private-jwk.json') : undefined;

  const keys: KeyEntry[] = [await newKey(opts.alg, opts.kid ?? `test-${randomUUID().slice(0, 8)}`)];
  let current = keys[0] as KeyEntry;
  let foreign: KeyEntry | undefined;

  const issuerObj: TestIssuer = {
    issuer: opts.issuer,
    audience: opts.audience,
    alg: opts.alg,
    kid: current.kid,
    dir,
    jwksPath,
    jwks: { keys: [] },
    ...(privateKeyPath !== undefined ? { privateKeyPath } : {}),
    mint,
    addKey,
    removeKey,
    cleanup: () => {
      if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };

  async function writeFiles(): Promise<void> {
    issuerObj.jwks = { keys: keys.map((k) => ({ ...k.publicJwk })) };
    writeAtomic(jwksPath, `${JSON.stringify(issuerObj.jwks, null, 2)}\n`);
    if (privateKeyPath !== undefined) {
      const priv = await Promise.all(
        keys.map(async (k) => ({ ...(await exportJWK(k.privateKey)), kid: k.kid, alg: k.alg, use: 'sig' })),
      );
      writeAtomic(privateKeyPath, `${JSON.stringify({ keys: priv }, null, 2)}\n`, 0o600);
    }
  }

  async function mint(claims: Record<string, unknown> = {}, mo: MintOptions = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const payload: Record<string, unknown> = {};
    const iss = mo.issuer === undefined ? opts.issuer : mo.issuer;
    if (iss !== null) payload['iss'] = iss;
    const aud = mo.audience === undefined ? opts.audience : mo.audience;
    if (aud !== null) payload['aud'] = typeof aud === 'string' ? aud : [...aud];
    if (mo.issuedAt !== null) payload['iat'] = mo.issuedAt ?? now;
    const exp = mo.expiresIn === undefined ? '1h' : mo.expiresIn;
    if (exp !== null) payload['exp'] = timeClaim(exp, now);
    if (mo.notBefore !== undefined) payload['nbf'] = timeClaim(mo.notBefore, now);
    Object.assign(payload, claims);

    let signer: KeyEntry = current;
    if (mo.key === 'foreign') {
      foreign ??= await newKey(opts.alg, current.kid);
      signer = { ...foreign, kid: current.kid };
    }
    const alg = mo.alg ?? signer.alg;
    const header: Record<string, unknown> = { alg, typ: 'JWT' };
    const kid = mo.kid === undefined ? signer.kid : mo.kid;
    if (kid !== null) header['kid'] = kid;
    Object.assign(header, mo.header ?? {});
    const body = new TextEncoder().encode(JSON.stringify(payload));

    if (alg === 'none') {
      return `${base64url.encode(JSON.stringify(header))}.${base64url.encode(body)}.`;
    }
    let key: CryptoKey | Uint8Array;
    if (alg.startsWith('HS')) {
      const secret = mo.hmacSecret ?? (await exportSPKI(signer.publicKey));
      key = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
    } else {
      key = signer.privateKey;
    }
    return new CompactSign(body).setProtectedHeader(header as { alg: string }).sign(key);
  }

  async function addKey(ao: { kid?: string; alg?: TestAlg; makeCurrent?: boolean } = {}): Promise<string> {
    const entry = await newKey(ao.alg ?? opts.alg, ao.kid ?? `test-${randomUUID().slice(0, 8)}`);
    keys.push(entry);
    if (ao.makeCurrent === true) {
      current = entry;
      issuerObj.kid = entry.kid;
    }
    await writeFiles();
    return entry.kid;
  }

  function removeKey(kid: string): void {
    const i = keys.findIndex((k) => k.kid === kid);
    if (i < 0) throw new Error(`no key ${kid}`);
    // mint() keeps signing with a removed current key: its tokens then carry an unknown kid.
    keys.splice(i, 1);
    issuerObj.jwks = { keys: keys.map((k) => ({ ...k.publicJwk })) };
    writeAtomic(jwksPath, `${JSON.stringify(issuerObj.jwks, null, 2)}\n`);
  }

  await writeFiles();
  return issuerObj;
}
