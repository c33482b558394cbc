import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { JwtProviderConfig } from '../config/schema.ts';
import { GatewayError } from '../errors.ts';
import type { Subject } from '../policy/decision.ts';
import { LruCache } from '../util/lru.ts';
import { mapClaims } from './claims.ts';

/** Why a bearer token was refused; logged, never sent with token material. */
export class InvalidTokenError extends GatewayError {
  /** No credentials at all (RFC 6750 §3.1: then the challenge carries no error code). */
  readonly missing: boolean;
  constructor(message: string, cause?: unknown, missing = false) {
    super('unauthenticated', message, cause === undefined ? undefined : { cause });
    this.name = 'InvalidTokenError';
    this.missing = missing;
  }
}

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * Verifies JWT bearer tokens with `jose`: signature against the configured JWKS
 * (never keys named by the token: `jku`/`x5u`/`jwk` headers are ignored by
 * jose's key resolution), `iss`, `aud`, `exp`/`nbf` with a small tolerance, and
 * an explicit asymmetric algorithm allowlist (so `none` and HS256-with-a-public-key
 * confusion cannot verify).
 */
export class JwtVerifier {
  readonly config: JwtProviderConfig;
  readonly #getKey: JWTVerifyGetKey;
  readonly #cache = new LruCache<string, Subject>(10_000);

  private constructor(config: JwtProviderConfig, getKey: JWTVerifyGetKey) {
    this.config = config;
    this.#getKey = getKey;
  }

  static async create(config: JwtProviderConfig): Promise<JwtVerifier> {
    if (config.jwksFile !== undefined) {
      const jwks = JSON.parse(await readFile(config.jwksFile, 'utf8')) as Parameters<typeof createLocalJWKSet>[0];
      return new JwtVerifier(config, createLocalJWKSet(jwks));
    }
    if (config.jwksUrl !== undefined) {
      // jose caches the key set, refetches on an unknown kid at most once per cooldown.
      return new JwtVerifier(config, createRemoteJWKSet(new URL(config.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000, timeoutDuration: 5_000 }));
    }
    throw new GatewayError('config_invalid', 'jwt provider needs jwksUrl or jwksFile');
  }

  /** True when the string looks like a compact JWS, i.e. this provider should judge it. */
  static looksLikeJwt(token: string): boolean {
    return JWS_COMPACT.test(token);
  }

  async verify(token: string): Promise<Subject> {
    if (token.length > this.config.maxTokenBytes) throw new InvalidTokenError('token too large');
    if (!JwtVerifier.looksLikeJwt(token)) throw new InvalidTokenError('malformed token');
    // Cache by digest so the cache never holds token material; entries die at `exp`.
    const key = createHash('sha256').update(token).digest('base64url');
    const cached = this.#cache.get(key);
    if (cached !== undefined) return cached;
    let payload: Record<string, unknown>;
    let protectedHeader: { alg: string };
    try {
      ({ payload, protectedHeader } = await jwtVerify(token, this.#getKey, {
        issuer: this.config.issuer,
        audience: this.config.audience,
        algorithms: this.config.algorithms,
        clockTolerance: this.config.clockToleranceSeconds,
        requiredClaims: ['exp'],
      }));
    } catch (e) {
      if (e instanceof joseErrors.JWKSTimeout || (e instanceof TypeError && /fetch/i.test(e.message))) {
        throw new GatewayError('identity_unavailable', 'identity provider key set unreachable', { cause: e });
      }
      if (e instanceof joseErrors.JOSEError) throw new InvalidTokenError(`${e.code}: ${e.message}`, e);
      throw new GatewayError('identity_unavailable', 'token verification failed unexpectedly', { cause: e });
    }
    const mapped = mapClaims(payload, this.config.claims);
    const sub = mapped.sub;
    if (sub === undefined) throw new InvalidTokenError(`token has no "${this.config.claims.subject}" claim`);
    const subject: Subject = {
      sub,
      ...(mapped.username !== undefined ? { username: mapped.username } : {}),
      ...(mapped.email !== undefined ? { email: mapped.email } : {}),
      groups: mapped.groups,
      roles: mapped.roles,
      issuer: typeof payload['iss'] === 'string' ? payload['iss'] : this.config.issuer,
      auth: 'jwt',
      claims: Object.freeze({ ...payload }),
    };
    Object.freeze(subject);
    const exp = typeof payload['exp'] === 'number' ? payload['exp'] * 1000 : Date.now();
    this.#cache.set(key, subject, Math.min(exp - Date.now(), 300_000));
    void protectedHeader;
    return subject;
  }
}
