import * as client from 'openid-client';
import type { UserinfoConfig } from '../config/schema.ts';
import { GatewayError } from '../errors.ts';
import { ConcurrencyGate, SingleFlight } from '../util/gate.ts';
import { LruCache } from '../util/lru.ts';
import { claimAt } from './claims.ts';
import { InvalidTokenError, tokenDigest } from './jwt.ts';
import type { OidcDiscovery } from './oidc.ts';
import { redactUrls } from '../util/shown-url.ts';
import { boundExceeded } from './bounded-fetch.ts';

/**
 * Calls to one identity provider's endpoint (introspection, userinfo) at once,
 * and waiting; beyond that 503 `overloaded`. Any uncached token costs a call,
 * so without a bound a client sending random tokens could hold hundreds open.
 */
export const MAX_CONCURRENT_PROVIDER_CALLS = 16;
export const MAX_QUEUED_PROVIDER_CALLS = 256;

/** Maps an openid-client failure: the provider refusing the token → 401; anything else (network, 5xx) → 503. */
export function providerError(what: string, e: unknown, tokenErrorsPossible = true): GatewayError {
  if (e instanceof GatewayError) return e;
  // A body over the bound fails inside the library's JSON parsing: say so, not "could not parse".
  const bounded = boundExceeded(e);
  if (bounded !== undefined) return new GatewayError('identity_unavailable', `${what} failed: ${bounded.message}`, { cause: e });
  // openid-client puts the status on its error, or (an answer that is no conforming one: a 401 without a
  // WWW-Authenticate challenge) the Response itself in `cause`.
  const cause = (e as { cause?: unknown }).cause;
  const status = (e as { status?: unknown }).status ?? (cause instanceof Response ? cause.status : undefined);
  // invalid_client: the gateway's own credentials are wrong — a configuration problem, not the caller's.
  const clientProblem = (e as { error?: unknown }).error === 'invalid_client';
  // The token refused: a 401, or a 403 that says so in OAuth terms (a Bearer challenge, an OAuth error body). A bare
  // 403 (a WAF's or proxy's block page) or a 5xx with a challenge is the provider failing: 503, never cached.
  const oauthAnswer = e instanceof client.WWWAuthenticateChallengeError || e instanceof client.ResponseBodyError;
  if (tokenErrorsPossible && !clientProblem && (status === 401 || (status === 403 && oauthAnswer))) {
    return new InvalidTokenError(`${what}: the identity provider rejected the token`, e);
  }
  const code = (e as { code?: unknown }).code;
  if (code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED') return new InvalidTokenError(`${what}: subject mismatch`, e);
  return new GatewayError('identity_unavailable', `${what} failed: ${redactUrls((e as Error).message)}`, { cause: e });
}

/**
 * Token claims merged over userinfo claims: the token wins. Claim paths are
 * dotted and a literal dotted key wins over the nested path (claims.ts
 * `claimAt`), so a userinfo key such as `"realm_access.roles"` would otherwise
 * override the token's own `realm_access.roles`; such a key is dropped where
 * the token has a value at that path.
 */
export function mergeUserinfo(claims: Record<string, unknown>, info: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...info, ...claims };
  for (const k of Object.keys(info)) {
    if (k.includes('.') && !Object.hasOwn(claims, k) && claimAt(claims, k) !== undefined) delete merged[k];
  }
  return merged;
}

/**
 * OIDC userinfo enrichment: fetches the userinfo response for a verified token
 * (its `sub` must equal the token's), caches it per token digest for
 * `cacheTtlSeconds`, never past the token's `exp`; a refusal for
 * `negativeCacheTtlSeconds`.
 */
export class UserinfoEnricher {
  readonly #discovery: OidcDiscovery;
  readonly #cfg: UserinfoConfig;
  readonly #cache: LruCache<string, Record<string, unknown>>;
  // Tokens the provider refused: a revoked token replayed by a client would otherwise cost a call per request.
  readonly #refused: LruCache<string, string>;
  // One call per new token however many requests carry it, and a bounded number at once.
  readonly #calls = new ConcurrencyGate(MAX_CONCURRENT_PROVIDER_CALLS, MAX_QUEUED_PROVIDER_CALLS, 'userinfo requests');
  readonly #flights = new SingleFlight<string, Record<string, unknown>>();
  /** Requests made to the userinfo endpoint (tests, diagnostics). */
  fetches = 0;

  constructor(discovery: OidcDiscovery, cfg: UserinfoConfig) {
    this.#discovery = discovery;
    this.#cfg = cfg;
    this.#cache = new LruCache(cfg.cacheSize);
    this.#refused = new LruCache(cfg.negativeCacheSize);
  }

  async fetch(token: string, sub: string, exp: number | undefined, gone?: () => boolean): Promise<Record<string, unknown>> {
    const key = tokenDigest(token);
    const hit = this.#cache.get(key);
    if (hit !== undefined) return hit;
    const refused = this.#refused.get(key);
    if (refused !== undefined) throw new InvalidTokenError(`${refused} (cached)`);
    return this.#flights.run(key, (abandoned) => this.#fetch(token, key, sub, exp, abandoned), gone);
  }

  async #fetch(token: string, key: string, sub: string, exp: number | undefined, abandoned: () => boolean): Promise<Record<string, unknown>> {
    const since = this.#cache.generation;
    const sinceRefused = this.#refused.generation;
    const config = await this.#discovery.get();
    if (config.serverMetadata().userinfo_endpoint === undefined) throw new GatewayError('identity_unavailable', 'the identity provider has no userinfo_endpoint');
    let info: Record<string, unknown>;
    try {
      info = await this.#calls.run(async () => {
        this.fetches++;
        return (await client.fetchUserInfo(config, token, sub)) as Record<string, unknown>;
      }, abandoned);
    } catch (e) {
      const error = providerError('userinfo', e);
      if (error instanceof InvalidTokenError && this.#cfg.negativeCacheTtlSeconds > 0) {
        this.#refused.set(key, error.message, this.#cfg.negativeCacheTtlSeconds * 1000, sinceRefused);
      }
      throw error;
    }
    const ttl = Math.min(this.#cfg.cacheTtlSeconds * 1000, exp === undefined ? Number.POSITIVE_INFINITY : exp * 1000 - Date.now());
    this.#cache.set(key, info, ttl, since);
    return info;
  }

  /** Drop every cached answer (a config reload: groups may have changed at the provider). */
  forget(): void {
    this.#cache.clear();
    this.#refused.clear();
    // A request from now on does not join a call started before (its answer is not cached either).
    this.#flights.forget();
  }

  /** Verified token claims win over userinfo claims; userinfo fills in what the token lacks (e.g. groups). */
  async merge(claims: Record<string, unknown>, token: string, gone?: () => boolean): Promise<Record<string, unknown>> {
    const sub = claims['sub'];
    if (typeof sub !== 'string' || sub === '') throw new InvalidTokenError('token has no "sub" claim (needed for userinfo)');
    const exp = typeof claims['exp'] === 'number' ? claims['exp'] : undefined;
    const info = await this.fetch(token, sub, exp, gone);
    return mergeUserinfo(claims, info);
  }
}
