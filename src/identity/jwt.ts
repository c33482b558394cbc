import { readFile } from 'node:fs/promises';
import { hash } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, customFetch, decodeJwt, errors as joseErrors, jwtVerify, type CryptoKey, type FlattenedJWSInput, type CompactJWSHeaderParameters, type JWTVerifyGetKey, type JWTVerifyOptions, type JWTVerifyResult } from 'jose';
import type { ClaimsConfig, JwtProviderConfig } from '../config/schema.ts';
import { GatewayError } from '../errors.ts';
import type { Subject } from '../policy/decision.ts';
import { LruCache } from '../util/lru.ts';
import { claimsWellFormed, mapClaims } from './claims.ts';
import { UNDECIDED, type Credentials, type IdentityCacheStats, type IdentitySource } from './source.ts';
import { redactUrls } from '../util/shown-url.ts';
import { boundedFetch, boundExceeded } from './bounded-fetch.ts';
import { fileErrorCode } from '../util/file-error.ts';

/**
 * Reads and checks a `jwksFile` (serve and check-config): a missing file, one
 * that is not JSON, or one that is not a key set is a config error naming the key.
 */
export async function readJwksFile(file: string): Promise<Parameters<typeof createLocalJWKSet>[0]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    // The failed read is the cause: a reload retries an unreadable file (server/reload-retry.ts).
    throw new GatewayError('config_invalid', `cannot read jwksFile ${file}: ${fileErrorCode(e)}`, { cause: e });
  }
  let jwks: unknown;
  try {
    jwks = JSON.parse(text);
  } catch {
    // Not V8's message: it quotes the file's text ("Unexpected token 's', \"s3cr3t\" is not valid JSON"),
    // and a jwksFile set to the wrong path (a client secret, a private key) would print that secret.
    throw new GatewayError('config_invalid', `jwksFile ${file} is not JSON`);
  }
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  if (typeof jwks !== 'object' || jwks === null || !Array.isArray(keys) || !keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k))) {
    throw new GatewayError('config_invalid', `jwksFile ${file} is not a JSON Web Key Set ({"keys": [ … ]})`);
  }
  return jwks as Parameters<typeof createLocalJWKSet>[0];
}

/** Why a bearer token was refused; logged, never sent with token material. */
export class InvalidTokenError extends GatewayError {
  /** No credentials at all (RFC 6750 §3.1: then the challenge carries no error code). */
  readonly missing: boolean;
  /** Also challenge with `Basic` (set by the Authenticator when a basic source is configured). */
  readonly basicChallenge: boolean;
  /**
   * The source that refused owns the token: a JWT whose signature verified
   * against its issuer's keys, refused on its claims (audience, expiry, typ).
   * No later source may accept it (an introspection endpoint would call a
   * token for another audience active).
   */
  readonly final: boolean;
  constructor(message: string, cause?: unknown, missing = false, basicChallenge = false, final = false) {
    super('unauthenticated', message, cause === undefined ? undefined : { cause });
    this.name = 'InvalidTokenError';
    this.missing = missing;
    this.basicChallenge = basicChallenge;
    this.final = final;
  }

  /** The same refusal, also challenging with Basic. */
  withBasicChallenge(): InvalidTokenError {
    if (this.basicChallenge) return this;
    return new InvalidTokenError(this.message, this.cause, this.missing, true, this.final);
  }
}

/**
 * A JOSE `typ` as RFC 7515 §4.1.9 compares it: media types are
 * case-insensitive and "application/" may be left out. Not a string: "".
 */
export function normalizedTyp(typ: unknown): string {
  if (typeof typ !== 'string') return '';
  const t = typ.toLowerCase();
  return t.startsWith('application/') && !t.slice('application/'.length).includes('/') ? t.slice('application/'.length) : t;
}

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Whether an unpadded base64url segment is the one spelling of its bytes
 * (RFC 4648 §3.5: the bits past the last byte are zero; a length of 1 mod 4
 * encodes no whole byte). Decoders ignore those bits, so without this check
 * one signed token has up to 16 spellings per segment that all verify, each
 * a separate cache entry (and userinfo call) keyed by its own digest.
 */
export function canonicalBase64url(segment: string): boolean {
  const rest = segment.length % 4;
  if (rest === 0) return true;
  if (rest === 1) return false;
  const last = BASE64URL.indexOf(segment[segment.length - 1]!);
  return (last & (rest === 2 ? 0x0f : 0x03)) === 0;
}

/**
 * Cache key for a token: a digest, so caches never hold token material.
 * crypto.hash (one shot) costs a fraction of createHash().update().digest() on the hot path.
 */
export function tokenDigest(token: string): string {
  return hash('sha256', token, 'base64url');
}

/** Per connection, the last bearer token seen on it and its digest. */
const lastTokenOn = new WeakMap<object, { readonly token: string; readonly digest: string }>();

/**
 * `tokenDigest(token)`, remembered for the connection the token came on:
 * Grafana and other clients re-send one token on a keep-alive connection, and
 * comparing it with the last one costs a fraction of hashing it again. The
 * token is held no longer than that connection, which carried it anyway, and
 * only compared with tokens that arrive on the same connection.
 */
export function connectionTokenDigest(token: string, connection: object | undefined): string {
  if (connection === undefined) return tokenDigest(token);
  const last = lastTokenOn.get(connection);
  if (last !== undefined && last.token === token) return last.digest;
  const digest = tokenDigest(token);
  lastTokenOn.set(connection, { token, digest });
  return digest;
}

/** Build a Subject from verified claims (frozen). */
export function subjectFromClaims(
  claims: Record<string, unknown>,
  mapping: ClaimsConfig,
  auth: string,
  fallbackIssuer: string | undefined,
  extra: Record<string, unknown> = {},
): Subject {
  if (!claimsWellFormed(claims)) throw new InvalidTokenError('token claims contain text that is not well-formed Unicode (an unpaired surrogate)');
  const mapped = mapClaims(claims, mapping);
  const sub = mapped.sub;
  if (sub === undefined) throw new InvalidTokenError(`token has no "${mapping.subject}" claim`);
  const iss = typeof claims['iss'] === 'string' ? claims['iss'] : fallbackIssuer;
  const subject: Subject = {
    sub,
    ...(mapped.username !== undefined ? { username: mapped.username } : {}),
    ...(mapped.email !== undefined ? { email: mapped.email } : {}),
    groups: Object.freeze(mapped.groups),
    roles: Object.freeze(mapped.roles),
    ...(iss !== undefined ? { issuer: iss } : {}),
    auth,
    ...(mapped.username !== undefined && mapping.trustUsername ? { usernameTrusted: true } : {}),
    claims: Object.freeze({ ...claims }),
    ...extra,
  };
  return Object.freeze(subject);
}

/** A key lookup's refusal that the key set gave (no key, several, an unsupported alg), not a failure to obtain it. */
const keySetAnswered = (e: unknown): boolean =>
  e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWKSMultipleMatchingKeys || e instanceof joseErrors.JOSENotSupported;

/**
 * Wraps a remote key set so that failures to *obtain* keys (network, timeout,
 * a non-200 or malformed JWKS) become `identity_unavailable` (503), while "no
 * key with this kid" stays a 401.
 */
export function failClosedKeys(getKey: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await getKey(header, token);
    } catch (e) {
      if (e instanceof GatewayError) throw e;
      const bounded = boundExceeded(e);
      if (bounded !== undefined) throw bounded;
      if (keySetAnswered(e)) throw e;
      throw new GatewayError('identity_unavailable', `identity provider key set unavailable: ${redactUrls((e as Error).message)}`, { cause: e });
    }
  };
}

/** A key lookup whose remote key set can be refetched on demand (a failed refetch keeps the keys it had). */
export type RefreshableKeys = JWTVerifyGetKey & { refresh?: () => Promise<void> };

export function remoteKeySet(url: string, cooldownMs: number, maxAgeMs: number, timeoutMs: number): RefreshableKeys {
  // jose caches the key set and refetches on an unknown kid at most once per cooldown.
  // Bodies are bounded (bounded-fetch.ts): a key set is a few KiB.
  const set = createRemoteJWKSet(new URL(url), { cooldownDuration: cooldownMs, cacheMaxAge: maxAgeMs, timeoutDuration: timeoutMs, [customFetch]: boundedFetch() });
  // jose counts its cooldown and max age from the last fetch that *succeeded*: while the endpoint fails, every
  // request (anyone's: a token naming the issuer is enough) would fetch again, and past the max age every new
  // token would be refused with the keys still held. After a failed fetch, the held keys verify and no fetch
  // is made for a cooldown; a kid they lack cannot be decided then (503).
  let failedAt = Number.NEGATIVE_INFINITY;
  // The keys held when the last fetch failed: jose replaces them only on a fetch that succeeds, which cannot
  // happen before the cooldown ends, so one snapshot serves the whole cooldown.
  let held: JWTVerifyGetKey | undefined;
  const failed = (): void => {
    failedAt = Date.now();
    const jwks = set.jwks();
    held = jwks === undefined ? undefined : createLocalJWKSet(jwks);
  };
  const withHeldKeys = async (header: CompactJWSHeaderParameters, token: FlattenedJWSInput, cause: unknown): Promise<CryptoKey> => {
    if (held === undefined) throw cause;
    try {
      return (await held(header, token)) as CryptoKey;
    } catch (e) {
      if (e instanceof joseErrors.JWKSNoMatchingKey) throw cause;
      throw e;
    }
  };
  const getKey = async (header: CompactJWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> => {
    if (Date.now() - failedAt < cooldownMs) return withHeldKeys(header, token, new Error('the key set could not be fetched lately (retried after the cooldown)'));
    try {
      return (await set(header, token)) as CryptoKey;
    } catch (e) {
      if (keySetAnswered(e)) throw e;
      failed();
      return withHeldKeys(header, token, e);
    }
  };
  const keys: RefreshableKeys = failClosedKeys(getKey);
  keys.refresh = async () => {
    try {
      await set.reload();
      failedAt = Number.NEGATIVE_INFINITY;
    } catch (e) {
      failed();
      throw e;
    }
  };
  return keys;
}

/** Keys of one key set tried for a token that more than one of them matches. */
const MAX_MATCHING_KEYS = 8;

/**
 * `jwtVerify` against a key set. When more than one key of the set matches the
 * token's header (the provider publishes two keys under one `kid`, or keys
 * without `kid` for tokens without one, as during a rotation), jose refuses
 * with JWKSMultipleMatchingKeys; each matching key is then tried (up to
 * MAX_MATCHING_KEYS), as jose documents, so a rotation at the provider does not
 * refuse every token. Only keys of the configured set are ever used; a token
 * none of them verifies is a signature failure (401).
 */
export async function verifyWithKeySet(token: string, getKey: JWTVerifyGetKey, options: JWTVerifyOptions): Promise<JWTVerifyResult> {
  try {
    return await jwtVerify(token, getKey, options);
  } catch (e) {
    if (!(e instanceof joseErrors.JWKSMultipleMatchingKeys)) throw e;
    let tried = 0;
    for await (const key of e as unknown as AsyncIterable<CryptoKey>) {
      if (++tried > MAX_MATCHING_KEYS) break;
      try {
        return await jwtVerify(token, key, options);
      } catch (inner) {
        if (inner instanceof joseErrors.JWSSignatureVerificationFailed) continue;
        throw inner;
      }
    }
    throw new joseErrors.JWSSignatureVerificationFailed();
  }
}

/**
 * Why a token's authorized party is not one of `accepted`, or undefined.
 * The authorized party is `azp` (OIDC Core §2: the client the token was
 * issued to); a token without `azp` names it by its sole audience (§2: `azp`
 * may be left out when the authorized party is the sole audience). A token
 * with several audiences and no `azp` names none (§3.1.3.7: with several
 * audiences `azp` should be present) and is refused, as is an `azp` that is
 * no string.
 */
export function authorizedPartyProblem(payload: Record<string, unknown>, accepted: readonly string[]): string | undefined {
  if (Object.hasOwn(payload, 'azp')) {
    const azp = payload['azp'];
    if (typeof azp !== 'string') return '"azp" claim must be a string';
    return accepted.includes(azp) ? undefined : 'unexpected "azp" claim value';
  }
  const aud = payload['aud'];
  const sole = typeof aud === 'string' ? aud : Array.isArray(aud) && aud.length === 1 && typeof aud[0] === 'string' ? aud[0] : undefined;
  if (sole === undefined) return 'missing required "azp" claim (a token for several audiences must name its authorized party)';
  return accepted.includes(sole) ? undefined : 'no "azp" claim, and the sole audience is not an accepted authorized party';
}

export interface JwtVerifierOptions {
  /** Accepted `iss` value(s). */
  readonly issuer: string | string[];
  readonly audience: string | string[];
  readonly algorithms: string[];
  readonly clockToleranceSeconds: number;
  readonly maxTokenBytes: number;
  readonly claims: ClaimsConfig;
  /** Accepted JOSE `typ` values (any when absent). */
  readonly typ?: string | readonly string[];
  /** Accepted authorized parties (`azp`, see authorizedPartyProblem); any when absent. */
  readonly authorizedParties?: readonly string[];
  /** `subject.auth`. */
  readonly auth: string;
  readonly getKey: RefreshableKeys;
  /**
   * Runs after the signature and claims checks: may add claims (userinfo) or
   * reject (Grafana org). Returns the claims to map and extra Subject fields.
   */
  readonly postVerify?: (payload: Record<string, unknown>, token: string, gone?: () => boolean) => Promise<{ claims: Record<string, unknown>; extra?: Record<string, unknown> }>;
  /** Only judge tokens whose (unverified) `iss` is ours; others are left to other sources. Default true. */
  readonly routeByIssuer?: boolean;
  readonly cacheSize?: number;
  /** Runs on `reloaded` (e.g. to forget userinfo answers). */
  readonly reloaded?: () => Promise<void> | void;
  /** Upper bound for caching a verified subject (default 5 minutes; never past `exp`). */
  readonly maxCacheMs?: number;
}

/**
 * Verifies JWTs with `jose`: signature against the configured JWKS (never keys
 * named by the token: `jku`/`x5u`/`jwk` headers are ignored by jose's key
 * resolution), `iss`, `aud`, `exp`/`nbf`/`iat` with a small tolerance, `azp` when
 * authorized parties are configured, and an explicit
 * asymmetric algorithm allowlist (so `none` and HS256-with-a-public-key
 * confusion cannot verify). Verified subjects are cached by token digest, never
 * past `exp` (and at most 5 minutes).
 */
export class JwtVerifier implements IdentitySource {
  readonly name: string;
  readonly options: JwtVerifierOptions;
  /** `options.issuer` as a list: what tokens are routed here by, and what its refusals own. */
  readonly issuers: readonly string[];
  readonly #cache: LruCache<string, Subject>;
  readonly #acceptedTyp: ReadonlySet<string> | undefined;

  constructor(options: JwtVerifierOptions) {
    this.options = options;
    this.issuers = typeof options.issuer === 'string' ? [options.issuer] : options.issuer;
    const typ = options.typ;
    this.#acceptedTyp = typ === undefined ? undefined : new Set((typeof typ === 'string' ? [typ] : typ).map(normalizedTyp));
    this.name = `${options.auth}:${String(options.issuer)}`;
    this.#cache = new LruCache<string, Subject>(options.cacheSize ?? 10_000);
  }

  static async create(config: JwtProviderConfig): Promise<JwtVerifier> {
    let getKey: JWTVerifyGetKey;
    if (config.jwksFile !== undefined) {
      getKey = createLocalJWKSet(await readJwksFile(config.jwksFile));
    } else if (config.jwksUrl !== undefined) {
      getKey = remoteKeySet(config.jwksUrl, 30_000, 600_000, 5_000);
    } else {
      throw new GatewayError('config_invalid', 'jwt provider needs jwksUrl or jwksFile');
    }
    return new JwtVerifier({ ...config, audience: config.audience, auth: 'jwt', getKey });
  }

  cacheStats(): IdentityCacheStats {
    return { cache: `identity_${this.options.auth}`, hits: this.#cache.hits, misses: this.#cache.misses, size: this.#cache.size };
  }

  async reloaded(): Promise<void> {
    try {
      await this.options.getKey.refresh?.();
    } catch {
      // Unreachable: keep the keys held (jose keeps its key set when a refetch fails).
    }
    await this.options.reloaded?.();
    // A verification still running was started before: its result does not land in the fresh cache (`since`).
    this.#cache.clear();
  }

  /** True when the string looks like a compact JWS, i.e. a JWT source should judge it. */
  static looksLikeJwt(token: string): boolean {
    return JWS_COMPACT.test(token);
  }

  /**
   * True when the token carries a JOSE header (compact JWS, also with an empty
   * signature as in `alg: none`, or JWE): JWT sources judge it, opaque-token
   * sources leave it alone.
   */
  static hasJoseHeader(token: string): boolean {
    const parts = token.split('.');
    if (parts.length !== 3 && parts.length !== 5) return false;
    try {
      const h = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as unknown;
      return typeof h === 'object' && h !== null && typeof (h as { alg?: unknown }).alg === 'string';
    } catch {
      return false;
    }
  }

  /** The unverified `iss` (for routing only), or undefined. */
  static unverifiedIssuer(token: string): string | undefined {
    try {
      const iss = decodeJwt(token).iss;
      return typeof iss === 'string' ? iss : undefined;
    } catch {
      return undefined;
    }
  }

  /** `authenticate`'s answer without waiting: no bearer token, or one verified and cached (IdentitySource.peek). */
  peek(creds: Credentials): Subject | undefined | typeof UNDECIDED {
    const token = creds.bearer;
    if (token === undefined) return undefined;
    if (token.length > this.options.maxTokenBytes) return UNDECIDED;
    return this.#cache.peek(creds.bearerDigest?.() ?? tokenDigest(token)) ?? UNDECIDED;
  }

  /** `verify(token)`'s Subject when the token was verified before and is still cached, else UNDECIDED. */
  peekToken(token: string): Subject | typeof UNDECIDED {
    if (token.length > this.options.maxTokenBytes || !JwtVerifier.looksLikeJwt(token)) return UNDECIDED;
    return this.#cache.peek(tokenDigest(token)) ?? UNDECIDED;
  }

  async authenticate(creds: Credentials): Promise<Subject | undefined> {
    const token = creds.bearer;
    if (token === undefined) return undefined;
    if (token.length > this.options.maxTokenBytes) throw new InvalidTokenError('token too large', undefined, false, false, this.#namesIssuer(token));
    // A token this verifier already verified (cache keyed by digest, bounded by exp) needs no
    // header/issuer decoding to be routed here: the common case costs one SHA-256 and a lookup.
    const hit = this.#cache.get(creds.bearerDigest?.() ?? tokenDigest(token));
    if (hit !== undefined) return hit;
    if (!JwtVerifier.hasJoseHeader(token)) return undefined;
    if (this.options.routeByIssuer !== false) {
      const iss = JwtVerifier.unverifiedIssuer(token);
      if (iss !== undefined && !this.issuers.includes(iss)) return undefined;
    }
    return this.verify(token, creds.gone);
  }

  /**
   * The token's (unverified) `iss` is one this source is configured for: its refusals of it are final. Also for a
   * token over maxTokenBytes (its size is bounded by the request's header limit; decoding is not verifying).
   */
  #namesIssuer(token: string): boolean {
    const iss = JwtVerifier.unverifiedIssuer(token);
    return iss !== undefined && this.issuers.includes(iss);
  }

  /** `gone`: the client went away (calls to the provider queued for it are dropped). */
  async verify(token: string, gone?: () => boolean): Promise<Subject> {
    if (token.length > this.options.maxTokenBytes) throw new InvalidTokenError('token too large', undefined, false, false, this.#namesIssuer(token));
    if (!JwtVerifier.looksLikeJwt(token)) throw new InvalidTokenError('malformed token', undefined, false, false, this.#namesIssuer(token));
    if (!token.split('.').every(canonicalBase64url)) throw new InvalidTokenError('malformed token (a segment is not canonical base64url)', undefined, false, false, this.#namesIssuer(token));
    const key = tokenDigest(token);
    const cached = this.#cache.get(key);
    if (cached !== undefined) return cached;
    const since = this.#cache.generation;
    let payload: Record<string, unknown>;
    try {
      let protectedHeader: { typ?: unknown };
      ({ payload, protectedHeader } = await verifyWithKeySet(token, this.options.getKey, {
        issuer: this.options.issuer,
        audience: this.options.audience,
        algorithms: this.options.algorithms,
        clockTolerance: this.options.clockToleranceSeconds,
        requiredClaims: ['exp'],
      }));
      if (this.#acceptedTyp !== undefined && !this.#acceptedTyp.has(normalizedTyp(protectedHeader.typ))) {
        throw new InvalidTokenError(`token type ${JSON.stringify(protectedHeader.typ ?? null)} is not accepted (expected ${[...this.#acceptedTyp].join(' or ')})`, undefined, false, false, true);
      }
      // jose checks `iat` against the clock only with maxTokenAge (which would make `iat` required): a token
      // issued in the future (beyond the tolerance) comes from a provider whose clock is wrong or from a
      // forged-time replay; refused as jose refuses a future `nbf`.
      const iat = payload['iat'];
      if (typeof iat === 'number' && iat > Date.now() / 1000 + this.options.clockToleranceSeconds) {
        throw new joseErrors.JWTClaimValidationFailed('"iat" claim timestamp check failed (it should be in the past)', payload, 'iat', 'check_failed');
      }
      if (this.options.authorizedParties !== undefined) {
        const problem = authorizedPartyProblem(payload, this.options.authorizedParties);
        if (problem !== undefined) throw new joseErrors.JWTClaimValidationFailed(problem, payload, 'azp', 'check_failed');
      }
    } catch (e) {
      if (e instanceof GatewayError) throw e;
      if (e instanceof joseErrors.JWKSTimeout || (e instanceof TypeError && /fetch/i.test(e.message))) {
        throw new GatewayError('identity_unavailable', 'identity provider key set unreachable', { cause: e });
      }
      // jose checks claims only once the signature verified: a claim refusal (other than the issuer) is by this token's issuer.
      // And a token that names this source's issuer is this source's to judge whatever the refusal (an algorithm outside
      // `algorithms`, a key it does not hold, a bad signature): a later source (introspection with tokens: all) would
      // otherwise accept what this one refused. Naming the issuer only makes a refusal final, never an acceptance.
      const owned = ((e instanceof joseErrors.JWTClaimValidationFailed || e instanceof joseErrors.JWTExpired) && e.claim !== 'iss') || this.#namesIssuer(token);
      if (e instanceof joseErrors.JOSEError) throw new InvalidTokenError(`${e.code}: ${e.message}`, e, false, false, owned);
      throw new GatewayError('identity_unavailable', 'token verification failed unexpectedly', { cause: e });
    }
    let claims: Record<string, unknown> = payload;
    let extra: Record<string, unknown> | undefined;
    let subject: Subject;
    try {
      if (this.options.postVerify !== undefined) ({ claims, extra } = await this.options.postVerify(payload, token, gone));
      subject = subjectFromClaims(claims, this.options.claims, this.options.auth, this.issuers[0], extra);
    } catch (e) {
      // Refused once verified as this issuer's token (userinfo refused it, no `sub`): final, as a claim refusal is.
      if (e instanceof InvalidTokenError && !e.final) throw new InvalidTokenError(e.message, e.cause ?? e, e.missing, e.basicChallenge, true);
      throw e;
    }
    const exp = typeof payload['exp'] === 'number' ? payload['exp'] * 1000 : Date.now();
    this.#cache.set(key, subject, Math.min(exp - Date.now(), this.options.maxCacheMs ?? 300_000), since);
    return subject;
  }
}
