/**
 * Hashed secrets for static credentials (API keys, basic-auth passwords):
 * scrypt from node:crypto, stored as `scrypt$N$r$p$salt$hash` (salt and hash
 * base64url), compared in constant time. Plain-text secrets never appear in
 * the config.
 *
 * Hash a secret without a CLI (prints the line to paste into the config):
 *
 *   node -e "import('./src/identity/secrets.ts').then(async (m) => console.log(await m.hashSecret(process.argv[1])))" 'the secret'
 *
 * Generate a new random API key and its hash:
 *
 *   node -e "import('./src/identity/secrets.ts').then(async (m) => { const k = m.generateApiKey(); console.log(k, await m.hashSecret(k)); })"
 */
import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { ConcurrencyGate } from '../util/gate.ts';

export interface ScryptParams {
  /** CPU/memory cost, a power of two. Default 2^15. */
  N?: number;
  r?: number;
  p?: number;
}

const DEFAULTS = { N: 2 ** 15, r: 8, p: 1 } as const;
const KEY_LEN = 32;
const SALT_LEN = 16;
/** Bounds accepted when verifying (a config typo must not allow a trivially cheap or a denial-of-service hash). */
const MIN_N = 2 ** 10;
const MAX_N = 2 ** 20;
const HASH_FORMAT = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/;

function scryptAsync(secret: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/**
 * Verification runs at most this many scrypt computations at once. Each takes
 * a libuv pool thread for tens of milliseconds, and every new unknown key or
 * password costs one per configured hash: without a bound, an anonymous client
 * sending random keys holds the whole pool, which JWT verification shares
 * (seconds of latency for every first-seen token). Beyond the queue: 503.
 */
export const MAX_CONCURRENT_VERIFICATIONS = 2;
const MAX_QUEUED_VERIFICATIONS = 64;
const verifications = new ConcurrencyGate(MAX_CONCURRENT_VERIFICATIONS, MAX_QUEUED_VERIFICATIONS, 'credential checks');

function boundedScrypt(secret: string, salt: Buffer, keylen: number, opts: ScryptOptions, gone?: () => boolean): Promise<Buffer> {
  return verifications.run(() => scryptAsync(secret, salt, keylen, opts), gone);
}

/** 128 * N * r bytes plus slack: what scrypt needs; node's default maxmem (32 MiB) is too small for N=2^15, r=8. */
function maxmem(N: number, r: number): number {
  return 128 * N * r * 2 + 1024 * 1024;
}

export interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/** Parses and bounds-checks a stored hash; throws a TypeError naming the problem. */
export function parseSecretHash(stored: string): ParsedHash {
  const m = HASH_FORMAT.exec(stored);
  if (m === null) throw new TypeError('not an scrypt hash (expected scrypt$N$r$p$salt$hash)');
  const N = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  if (!Number.isSafeInteger(N) || N < MIN_N || N > MAX_N || (N & (N - 1)) !== 0) throw new TypeError(`scrypt N must be a power of two in [${MIN_N}, ${MAX_N}]`);
  if (!(r >= 1 && r <= 32) || !(p >= 1 && p <= 16)) throw new TypeError('scrypt r must be 1..32 and p 1..16');
  const salt = Buffer.from(m[4]!, 'base64url');
  const hash = Buffer.from(m[5]!, 'base64url');
  if (salt.length < 16) throw new TypeError('scrypt salt must be at least 16 bytes');
  if (hash.length < 16) throw new TypeError('scrypt hash must be at least 16 bytes');
  return { N, r, p, salt, hash };
}

/** Hashes a secret for the config: `scrypt$N$r$p$salt$hash`. */
export async function hashSecret(secret: string, params: ScryptParams = {}): Promise<string> {
  if (secret.length === 0) throw new TypeError('empty secret');
  const N = params.N ?? DEFAULTS.N;
  const r = params.r ?? DEFAULTS.r;
  const p = params.p ?? DEFAULTS.p;
  const salt = randomBytes(SALT_LEN);
  const hash = await scryptAsync(secret, salt, KEY_LEN, { N, r, p, maxmem: maxmem(N, r) });
  const out = `scrypt$${N}$${r}$${p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
  parseSecretHash(out); // enforce the same bounds as verification
  return out;
}

/** Constant-time check of `secret` against a parsed stored hash. `gone`: the client went away (the check is dropped if still queued). */
export async function verifySecret(secret: string, stored: ParsedHash | string, gone?: () => boolean): Promise<boolean> {
  const h = typeof stored === 'string' ? parseSecretHash(stored) : stored;
  const got = await boundedScrypt(secret, h.salt, h.hash.length, { N: h.N, r: h.r, p: h.p, maxmem: maxmem(h.N, h.r) }, gone);
  return got.length === h.hash.length && timingSafeEqual(got, h.hash);
}

/**
 * The stored form of a generated API key: its SHA-256. A key of 256 random bits
 * cannot be guessed from a fast hash, and needs no slow one: a request with an
 * unknown key then costs one digest, not one scrypt per configured key.
 */
export function apiKeyDigest(key: string): string {
  return `sha256$${createHash('sha256').update(key, 'utf8').digest('hex')}`;
}

/** The prefix of generated API keys: recognisable by secret scanners, and never sent to an identity provider. */
export const API_KEY_PREFIX = 'lbac_';

/** What generateApiKey makes: the prefix and 256 bits in base64url. Only such a key is looked up by its SHA-256. */
export const GENERATED_API_KEY = new RegExp(`^${API_KEY_PREFIX}[A-Za-z0-9_-]{43}$`);

/** A new random API key (256 bits), prefixed so it is recognisable in secret scanners and never JWT-shaped. */
export function generateApiKey(): string {
  return `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
}
