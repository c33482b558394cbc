import type { ApiKeyProviderConfig, BasicProviderConfig } from '../config/schema.ts';
import type { Subject } from '../policy/decision.ts';
import { LruCache } from '../util/lru.ts';
import { InvalidTokenError, JwtVerifier, tokenDigest } from './jwt.ts';
import { apiKeyDigest, GENERATED_API_KEY, parseSecretHash, verifySecret, type ParsedHash } from './secrets.ts';
import { UNDECIDED, type Credentials, type IdentityCacheStats, type IdentitySource } from './source.ts';

type StaticSubject = ApiKeyProviderConfig['keys'][number]['subject'];

function staticSubject(s: StaticSubject, name: string, auth: string, claims: Record<string, unknown>): Subject {
  return Object.freeze({
    sub: s.sub ?? name,
    username: s.username ?? name,
    ...(s.email !== undefined ? { email: s.email } : {}),
    groups: Object.freeze([...s.groups]),
    roles: Object.freeze([...s.roles]),
    auth,
    // The operator wrote this username into the config: it names one holder.
    usernameTrusted: true,
    claims: Object.freeze({ ...claims }),
  });
}

const NEGATIVE_TTL_MS = 10_000;
const MAX_SECRET_BYTES = 4096;

/**
 * Static API keys (for machine clients), stored as SHA-256 digests (generated,
 * random keys, `lbac_` + 43 base64url characters: one lookup per request; a
 * key of another shape is never looked up by digest) or scrypt hashes (keys a
 * person chose).
 * The key comes from `Authorization: Bearer <key>` (JWT-shaped tokens are left
 * to JWT sources) or from a configured header. A key is looked up by its
 * SHA-256 first; then the scrypt hashes are checked one at a time until one
 * matches (constant-time compares; a refused key costs every scrypt hash, and
 * the timing of an accepted one tells only its position to someone who holds
 * it); verified and refused keys are cached by digest (refusals briefly,
 * bounded), so repeated requests cost one hash lookup.
 * Revocation: remove the key from the config and restart/reload.
 */
export class ApiKeySource implements IdentitySource {
  readonly name = 'apikey';
  readonly #cfg: ApiKeyProviderConfig;
  /** scrypt-hashed keys, checked in turn. */
  readonly #keys: { name: string; hash: ParsedHash; subject: Subject }[];
  /** SHA-256-stored (generated) keys, by their stored form. */
  readonly #byDigest: Map<string, Subject>;
  readonly #cache = new LruCache<string, Subject>(10_000);
  readonly #negative = new LruCache<string, true>(1_000);
  readonly #header: string | undefined;

  constructor(cfg: ApiKeyProviderConfig) {
    this.#cfg = cfg;
    this.#header = cfg.header?.toLowerCase();
    const subjectOf = (k: ApiKeyProviderConfig['keys'][number]) => staticSubject(k.subject, k.name, 'apikey', { apikey: k.name });
    this.#keys = cfg.keys.filter((k) => k.hash.startsWith('scrypt$')).map((k) => ({ name: k.name, hash: parseSecretHash(k.hash), subject: subjectOf(k) }));
    this.#byDigest = new Map(cfg.keys.filter((k) => k.hash.startsWith('sha256$')).map((k) => [k.hash, subjectOf(k)]));
  }

  cacheStats(): IdentityCacheStats {
    return { cache: 'identity_apikey', hits: this.#cache.hits, misses: this.#cache.misses, size: this.#cache.size };
  }

  /** `authenticate`'s answer without waiting: no key of its kind, or a key accepted before (IdentitySource.peek). */
  peek(creds: Credentials): Subject | undefined | typeof UNDECIDED {
    let key: string | undefined;
    try {
      key = this.#keyOf(creds);
    } catch {
      return UNDECIDED;
    }
    return key === undefined ? undefined : (this.#cache.peek(tokenDigest(key)) ?? UNDECIDED);
  }

  /** The API key the request carries for this source (undefined: none of its kind); throws for a repeated header or an oversized key. */
  #keyOf(creds: Credentials): string | undefined {
    let key: string | undefined;
    if (this.#header !== undefined && this.#header !== 'authorization') {
      const raw = creds.headers[this.#header];
      if (raw === undefined || raw === '') return undefined;
      if (Array.isArray(raw)) throw new InvalidTokenError(`more than one ${this.#header} header`);
      key = raw.trim();
    } else {
      key = creds.bearer;
      if (key === undefined || JwtVerifier.hasJoseHeader(key)) return undefined;
    }
    if (key.length > MAX_SECRET_BYTES) throw new InvalidTokenError('API key too large');
    return key;
  }

  async authenticate(creds: Credentials): Promise<Subject | undefined> {
    const key = this.#keyOf(creds);
    if (key === undefined) return undefined;
    const digest = tokenDigest(key);
    const hit = this.#cache.get(digest);
    if (hit !== undefined) return hit;
    if (this.#negative.get(digest) !== undefined) throw new InvalidTokenError('unknown API key (cached)');
    // Only a generated key (256 random bits) is looked up by its fast digest: a key a person chose stored as
    // sha256$ would be guessable from a leaked config at SHA-256 speed, so it never matches.
    let subject = this.#byDigest.size === 0 || !GENERATED_API_KEY.test(key) ? undefined : this.#byDigest.get(apiKeyDigest(key));
    // One hash at a time, so one request holds at most one of the bounded verification slots (secrets.ts).
    for (let j = 0; j < this.#keys.length && subject === undefined; j++) if (await verifySecret(key, this.#keys[j]!.hash, creds.gone)) subject = this.#keys[j]!.subject;
    if (subject === undefined) {
      this.#negative.set(digest, true, NEGATIVE_TTL_MS);
      throw new InvalidTokenError('unknown API key');
    }
    this.#cache.set(digest, subject, this.#cfg.cacheTtlSeconds * 1000);
    return subject;
  }
}

/**
 * HTTP basic-auth users with scrypt-hashed passwords. An unknown user costs the
 * same hash as a known one (no user enumeration by timing).
 */
export class BasicAuthSource implements IdentitySource {
  readonly name = 'basic';
  readonly #cfg: BasicProviderConfig;
  readonly #users: Map<string, { hash: ParsedHash; subject: Subject }>;
  readonly #dummy: ParsedHash;
  readonly #cache = new LruCache<string, Subject>(10_000);
  readonly #negative = new LruCache<string, true>(1_000);

  constructor(cfg: BasicProviderConfig) {
    this.#cfg = cfg;
    this.#users = new Map(cfg.users.map((u) => [u.username, { hash: parseSecretHash(u.hash), subject: staticSubject(u.subject, u.username, 'basic', { username: u.username }) }]));
    this.#dummy = this.#users.values().next().value!.hash;
  }

  cacheStats(): IdentityCacheStats {
    return { cache: 'identity_basic', hits: this.#cache.hits, misses: this.#cache.misses, size: this.#cache.size };
  }

  /** `authenticate`'s answer without waiting: no basic credentials, or ones accepted before (IdentitySource.peek). */
  peek(creds: Credentials): Subject | undefined | typeof UNDECIDED {
    const basic = creds.basic;
    if (basic === undefined) return undefined;
    if (basic.password.length > MAX_SECRET_BYTES) return UNDECIDED;
    return this.#cache.peek(tokenDigest(`${basic.username}\u0000${basic.password}`)) ?? UNDECIDED;
  }

  async authenticate(creds: Credentials): Promise<Subject | undefined> {
    const basic = creds.basic;
    if (basic === undefined) return undefined;
    if (basic.password.length > MAX_SECRET_BYTES) throw new InvalidTokenError('password too large');
    const digest = tokenDigest(`${basic.username}\u0000${basic.password}`);
    const hit = this.#cache.get(digest);
    if (hit !== undefined) return hit;
    if (this.#negative.get(digest) !== undefined) throw new InvalidTokenError('invalid username or password (cached)');
    const user = this.#users.get(basic.username);
    const ok = await verifySecret(basic.password, user?.hash ?? this.#dummy, creds.gone);
    if (user === undefined || !ok) {
      this.#negative.set(digest, true, NEGATIVE_TTL_MS);
      throw new InvalidTokenError('invalid username or password');
    }
    this.#cache.set(digest, user.subject, this.#cfg.cacheTtlSeconds * 1000);
    return user.subject;
  }
}
