import { readFile } from 'node:fs/promises';
import * as client from 'openid-client';
import type { IntrospectionProviderConfig } from '../config/schema.ts';
import { GatewayError } from '../errors.ts';
import type { Subject } from '../policy/decision.ts';
import { ConcurrencyGate, SingleFlight } from '../util/gate.ts';
import { LruCache } from '../util/lru.ts';
import { boundedFetch } from './bounded-fetch.ts';
import { claimAt } from './claims.ts';
import { InvalidTokenError, JwtVerifier, subjectFromClaims, tokenDigest } from './jwt.ts';
import { insecureIfHttp, OidcDiscovery } from './oidc.ts';
import { API_KEY_PREFIX } from './secrets.ts';
import type { Credentials, IdentityCacheStats, IdentityLog, IdentitySource } from './source.ts';
import { MAX_CONCURRENT_PROVIDER_CALLS, MAX_QUEUED_PROVIDER_CALLS, providerError, UserinfoEnricher } from './userinfo.ts';
import { fileErrorCode } from '../util/file-error.ts';

const CLOCK_TOLERANCE_S = 30;

/** OIDC Core §5.1 claims that describe a person; a client-credentials answer has none of them. */
const PERSON_CLAIMS = ['preferred_username', 'email', 'name', 'given_name', 'family_name'] as const;

/**
 * Whether an introspection answer names the user the token was issued for: RFC 7662 `username`, the
 * configured username or email claim, or a standard person claim (an answer that names its user
 * only by `email` is still a user's token, not its client's).
 */
export function namesResourceOwner(claims: Record<string, unknown>, paths: { readonly username: string; readonly email: string }): boolean {
  return [claims['username'], claimAt(claims, paths.username), claimAt(claims, paths.email), ...PERSON_CLAIMS.map((c) => claims[c])].some((v) => v !== undefined && v !== null && v !== '');
}

/** Introspection calls at once per provider (userinfo.ts: any uncached token, even a random one, costs a call). */
export const MAX_CONCURRENT_INTROSPECTIONS = MAX_CONCURRENT_PROVIDER_CALLS;

/**
 * RFC 7662 token introspection for opaque bearer tokens, with client
 * authentication (client_secret_basic / client_secret_post). `active: false`,
 * an expired or not-yet-valid token, a wrong `iss` or `aud`, a `client_id`
 * outside `authorizedParties` (when set; absent too), a non-Bearer
 * `token_type` (e.g. a refresh token) or a sender-constrained token (`cnf`,
 * whose proof the gateway cannot check) → 401. Active results are cached for
 * `cacheTtlSeconds`, never past `exp`; inactive ones for `negativeCacheTtlSeconds`
 * in a separate bounded cache. Provider errors → 503.
 */
export class IntrospectionSource implements IdentitySource {
  readonly name: string;
  readonly sendsCredentials = true;
  readonly #cfg: IntrospectionProviderConfig;
  readonly #secret: string;
  readonly #discovery: OidcDiscovery | undefined;
  readonly #userinfo: UserinfoEnricher | undefined;
  readonly #cache: LruCache<string, Subject>;
  readonly #negative: LruCache<string, string>;
  readonly #calls = new ConcurrencyGate(MAX_CONCURRENT_INTROSPECTIONS, MAX_QUEUED_PROVIDER_CALLS, 'token introspections');
  readonly #flights = new SingleFlight<string, Subject>();
  #config: client.Configuration | undefined;
  /** Requests made to the introspection endpoint (tests, diagnostics). */
  calls = 0;

  private constructor(cfg: IntrospectionProviderConfig, secret: string, log: IdentityLog | undefined) {
    this.#cfg = cfg;
    this.#secret = secret;
    this.name = `introspection:${cfg.introspectionUrl ?? cfg.issuer ?? ''}`;
    this.#cache = new LruCache(cfg.cacheSize);
    this.#negative = new LruCache(cfg.negativeCacheSize);
    if (cfg.issuer !== undefined) {
      this.#discovery = new OidcDiscovery({
        issuer: cfg.issuer,
        clientId: cfg.clientId,
        clientSecret: secret,
        clientAuth: cfg.clientAuth,
        timeoutMs: cfg.timeoutMs,
        retryMs: cfg.discoveryRetrySeconds * 1000,
        uses: [...(cfg.introspectionUrl === undefined ? ['introspection_endpoint' as const] : []), ...(cfg.userinfo?.enabled === true ? ['userinfo_endpoint' as const] : [])],
        log,
      });
      this.#discovery.warmUp();
      if (cfg.userinfo?.enabled === true) this.#userinfo = new UserinfoEnricher(this.#discovery, cfg.userinfo);
    }
  }

  static async create(cfg: IntrospectionProviderConfig, log?: IdentityLog): Promise<IntrospectionSource> {
    return new IntrospectionSource(cfg, await IntrospectionSource.clientSecret(cfg), log);
  }

  /** The client secret, read from clientSecretFile when set that way (serve and check-config). */
  static async clientSecret(cfg: IntrospectionProviderConfig): Promise<string> {
    let secret = cfg.clientSecret;
    if (secret === undefined && cfg.clientSecretFile !== undefined) {
      try {
        secret = (await readFile(cfg.clientSecretFile, 'utf8')).trim();
      } catch (e) {
        // The failed read is the cause: a reload retries an unreadable file (server/reload-retry.ts).
        throw new GatewayError('config_invalid', `cannot read clientSecretFile ${cfg.clientSecretFile}: ${fileErrorCode(e)}`, { cause: e });
      }
    }
    if (secret === undefined || secret === '') throw new GatewayError('config_invalid', 'introspection provider needs a client secret');
    return secret;
  }

  async #configuration(): Promise<client.Configuration> {
    if (this.#config !== undefined) return this.#config;
    const cfg = this.#cfg;
    const auth = cfg.clientAuth === 'client_secret_post' ? client.ClientSecretPost(this.#secret) : client.ClientSecretBasic(this.#secret);
    let config: client.Configuration;
    if (this.#discovery !== undefined) {
      const discovered = await this.#discovery.get();
      const meta = discovered.serverMetadata();
      const endpoint = cfg.introspectionUrl ?? meta.introspection_endpoint;
      if (endpoint === undefined) throw new GatewayError('identity_unavailable', `the discovery document of ${cfg.issuer} has no introspection_endpoint`);
      config = cfg.introspectionUrl === undefined ? discovered : new client.Configuration({ ...(JSON.parse(JSON.stringify(meta)) as client.ServerMetadata), introspection_endpoint: endpoint }, cfg.clientId, this.#secret, auth);
    } else {
      const endpoint = cfg.introspectionUrl!;
      config = new client.Configuration({ issuer: new URL(endpoint).origin, introspection_endpoint: endpoint }, cfg.clientId, this.#secret, auth);
    }
    for (const f of insecureIfHttp(cfg.introspectionUrl ?? cfg.issuer!)) f(config);
    config.timeout = Math.max(1, Math.ceil(cfg.timeoutMs / 1000));
    config[client.customFetch] = boundedFetch();
    this.#config = config;
    return config;
  }

  cacheStats(): IdentityCacheStats {
    return { cache: 'identity_introspection', hits: this.#cache.hits, misses: this.#cache.misses, size: this.#cache.size };
  }

  async authenticate(creds: Credentials): Promise<Subject | undefined> {
    const token = creds.bearer;
    if (token === undefined) return undefined;
    // The gateway's own API keys are never the IdP's tokens: they are not sent to it, even when no key matched.
    if (token.startsWith(API_KEY_PREFIX)) return undefined;
    if (this.#cfg.tokens === 'opaque' && JwtVerifier.hasJoseHeader(token)) return undefined;
    if (token.length > this.#cfg.maxTokenBytes) throw new InvalidTokenError('token too large');
    return this.verify(token, creds.gone, creds.bearerDigest?.());
  }

  /** `digest`: the token's `tokenDigest`, when the caller has it. */
  async verify(token: string, gone?: () => boolean, digest?: string): Promise<Subject> {
    const key = digest ?? tokenDigest(token);
    const hit = this.#cache.get(key);
    if (hit !== undefined) return hit;
    const refused = this.#negative.get(key);
    if (refused !== undefined) throw new InvalidTokenError(`introspection: ${refused} (cached)`);
    // Requests carrying the same new token (a dashboard's panels) share one introspection.
    return this.#flights.run(key, (abandoned) => this.#introspect(token, key, abandoned), gone);
  }

  /** A reload keeps this source: forget every answer, so revocations at the provider apply at once. */
  async reloaded(): Promise<void> {
    // Introspections still running were started before: their answers are not cached (`since`), and
    // a request from now on does not join them.
    this.#cache.clear();
    this.#negative.clear();
    this.#flights.forget();
    this.#userinfo?.forget();
  }

  async #introspect(token: string, key: string, abandoned: () => boolean): Promise<Subject> {
    const since = this.#cache.generation;
    const sinceRefused = this.#negative.generation;
    const config = await this.#configuration();
    let resp: Record<string, unknown>;
    try {
      resp = await this.#calls.run(async () => {
        this.calls++;
        return (await client.tokenIntrospection(config, token, { token_type_hint: 'access_token' })) as Record<string, unknown>;
      }, abandoned);
    } catch (e) {
      // RFC 7662 answers every token question with 200 {active}; an error is about the gateway or the provider.
      throw providerError('introspection', e, false);
    }
    const reason = this.#refusal(resp);
    if (reason !== undefined) {
      this.#negative.set(key, reason, this.#cfg.negativeCacheTtlSeconds * 1000, sinceRefused);
      throw new InvalidTokenError(`introspection: ${reason}`);
    }
    let claims: Record<string, unknown> = { ...resp };
    // Client-credentials tokens have no user: the client is the subject. Not a user's token that lacks
    // `sub` (Keycloak 25+ for a client without the "basic" scope): its client_id is the client the user
    // logged in with, the same for all its users, who would all become that client (and match its
    // `users` entries). Such a token names no subject: refused below (401), as a JWT without one is.
    if (claims['sub'] === undefined && typeof claims['client_id'] === 'string' && !namesResourceOwner(claims, this.#cfg.claims)) claims['sub'] = claims['client_id'];
    const exp = typeof resp['exp'] === 'number' ? resp['exp'] : undefined;
    if (this.#userinfo !== undefined && typeof resp['sub'] === 'string') claims = await this.#userinfo.merge(claims, token, abandoned);
    // The subject's issuer is the answer's own "iss" (#refusal: the configured issuer's, when one is set) or else the
    // configured issuer: never one a userinfo answer adds to the merged claims, which nothing checks (the claims
    // mode's `issuers` and custom policies trust `subject.issuer`).
    const issuer = typeof resp['iss'] === 'string' ? resp['iss'] : this.#cfg.issuer;
    const subject = subjectFromClaims(claims, this.#cfg.claims, 'introspection', this.#cfg.issuer, issuer === undefined ? {} : { issuer });
    // Accepted up to exp + tolerance (#refusal), so cached that long too: a token in its last
    // seconds would otherwise cost one introspection per request.
    const ttl = Math.min(this.#cfg.cacheTtlSeconds * 1000, exp === undefined ? Number.POSITIVE_INFINITY : (exp + CLOCK_TOLERANCE_S) * 1000 - Date.now());
    this.#cache.set(key, subject, ttl, since);
    return subject;
  }

  /** Why an introspection response does not authenticate, or undefined if it does. */
  #refusal(r: Record<string, unknown>): string | undefined {
    if (r['active'] !== true) return 'token is not active';
    const now = Date.now() / 1000;
    // RFC 7662: NumericDate. Present in another shape, it cannot be checked: refused, not ignored.
    for (const claim of ['exp', 'nbf', 'iat']) {
      if (r[claim] !== undefined && (typeof r[claim] !== 'number' || !Number.isFinite(r[claim]))) return `"${claim}" is not a number`;
    }
    if (typeof r['exp'] === 'number' && r['exp'] + CLOCK_TOLERANCE_S < now) return 'token expired';
    if (typeof r['nbf'] === 'number' && r['nbf'] - CLOCK_TOLERANCE_S > now) return 'token not yet valid';
    if (this.#cfg.issuer !== undefined && r['iss'] !== undefined && r['iss'] !== this.#cfg.issuer) return 'unexpected "iss"';
    const tt = r['token_type'];
    // The provider's value is quoted only when it is a short token name: the reason reaches the log and the client's 401.
    if (tt !== undefined && (typeof tt !== 'string' || tt.toLowerCase() !== 'bearer')) return typeof tt === 'string' && /^[A-Za-z0-9_.+-]{1,32}$/.test(tt) ? `unexpected token_type "${tt}"` : 'unexpected token_type';
    if (r['cnf'] !== undefined) return 'sender-constrained token (cnf) cannot be used as a plain bearer token';
    if (this.#cfg.audience !== undefined) {
      const want = typeof this.#cfg.audience === 'string' ? [this.#cfg.audience] : this.#cfg.audience;
      const aud = r['aud'];
      const got = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
      if (!got.some((a) => want.includes(a as string))) return 'unexpected "aud"';
    }
    // RFC 7662 §2.2: client_id is the client the token was issued to (JWT's azp). Absent, the answer names no
    // client to check: refused, as a JWT naming no authorized party is.
    if (this.#cfg.authorizedParties !== undefined) {
      const clientId = r['client_id'];
      if (typeof clientId !== 'string') return clientId === undefined ? 'missing "client_id" (authorizedParties is set)' : '"client_id" is not a string';
      if (!this.#cfg.authorizedParties.includes(clientId)) return 'unexpected "client_id"';
    }
    return undefined;
  }
}
