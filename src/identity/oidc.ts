import * as client from 'openid-client';
import type { OidcProviderConfig } from '../config/schema.ts';
import { GatewayError } from '../errors.ts';
import { JwtVerifier, remoteKeySet, type RefreshableKeys } from './jwt.ts';
import { UserinfoEnricher } from './userinfo.ts';
import { redactUrls, shownUrl } from '../util/shown-url.ts';
import { cleartextRemote } from '../util/loopback.ts';
import type { IdentityLog } from './source.ts';
import { boundedFetch, boundExceeded } from './bounded-fetch.ts';

export interface DiscoveryOptions {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret?: string | undefined;
  readonly clientAuth?: 'client_secret_basic' | 'client_secret_post' | undefined;
  readonly timeoutMs: number;
  /** After a failure, discovery is retried at most this often; meanwhile requests fail with 503. */
  readonly retryMs: number;
  /** The endpoints of the discovery document this source calls (checked for plain HTTP to another host). */
  readonly uses?: readonly DiscoveredEndpoint[];
  /** Where a warning about the discovered document goes (the process log). */
  readonly log?: IdentityLog | undefined;
}

/** Endpoints of a discovery document that the gateway calls. */
export type DiscoveredEndpoint = 'jwks_uri' | 'userinfo_endpoint' | 'introspection_endpoint';

/**
 * The endpoints among `uses` that a plain-HTTP issuer's discovery document
 * announces as plain HTTP to another host. Such an issuer is accepted for
 * loopback tests (`http://localhost`), where the configuration warnings see
 * nothing amiss, but its document may send keys, tokens or the client secret
 * to another machine in the clear. (An https issuer's plain-HTTP endpoints are
 * refused: openid-client's for userinfo and introspection, createOidcSource's
 * for jwks_uri.)
 */
export function cleartextEndpoints(issuer: string, metadata: Readonly<Record<string, unknown>>, uses: readonly DiscoveredEndpoint[]): { endpoint: DiscoveredEndpoint; url: string }[] {
  if (protocolOf(issuer) !== 'http:') return [];
  return uses.flatMap((endpoint) => {
    const url = metadata[endpoint];
    return typeof url === 'string' && cleartextRemote(url) ? [{ endpoint, url: shownUrl(url) }] : [];
  });
}

function clientAuthFor(o: DiscoveryOptions): client.ClientAuth {
  if (o.clientSecret === undefined) return client.None();
  return o.clientAuth === 'client_secret_post' ? client.ClientSecretPost(o.clientSecret) : client.ClientSecretBasic(o.clientSecret);
}

/** Plain-HTTP identity providers are only used when configured with an http:// URL explicitly (e.g. loopback tests). */
export function insecureIfHttp(url: string): Array<(c: client.Configuration) => void> {
  return new URL(url).protocol === 'http:' ? [client.allowInsecureRequests] : [];
}

/**
 * Lazy, single-flight OIDC discovery (openid-client). The gateway starts even
 * when the provider is down; until discovery succeeds every request needing it
 * fails closed with `identity_unavailable` (503), and discovery is retried at
 * most once per `retryMs`. openid-client checks that the document's `issuer`
 * equals the configured issuer.
 */
export class OidcDiscovery {
  readonly options: DiscoveryOptions;
  #config: client.Configuration | undefined;
  #pending: Promise<client.Configuration> | undefined;
  #failedAt = Number.NEGATIVE_INFINITY;
  #lastError: GatewayError | undefined;
  /** Number of discovery attempts (for tests and diagnostics). */
  attempts = 0;

  constructor(options: DiscoveryOptions) {
    this.options = options;
  }

  async get(): Promise<client.Configuration> {
    if (this.#config !== undefined) return this.#config;
    if (this.#pending !== undefined) return this.#pending;
    if (Date.now() - this.#failedAt < this.options.retryMs) {
      // The message kept is the redacted one the first failure threw, not the raw error's.
      throw new GatewayError('identity_unavailable', `${this.#lastError?.message ?? `OIDC discovery for ${this.options.issuer} failed`} (recently; retried after ${this.options.retryMs} ms)`, {
        cause: this.#lastError?.cause,
      });
    }
    this.attempts++;
    const o = this.options;
    this.#pending = client
      .discovery(new URL(o.issuer), o.clientId, o.clientSecret, clientAuthFor(o), {
        execute: insecureIfHttp(o.issuer),
        timeout: Math.max(1, Math.ceil(o.timeoutMs / 1000)),
        // Bounded answers (bounded-fetch.ts); the configuration keeps it for userinfo and introspection.
        [client.customFetch]: boundedFetch(),
      })
      .then(
        (c) => {
          this.#config = c;
          const cleartext = cleartextEndpoints(o.issuer, c.serverMetadata(), o.uses ?? []);
          if (cleartext.length > 0) {
            o.log?.warn(
              { issuer: shownUrl(o.issuer), endpoints: Object.fromEntries(cleartext.map((e) => [e.endpoint, e.url])) },
              `identity provider ${shownUrl(o.issuer)}: its discovery document announces ${cleartext.map((e) => `${e.endpoint} ${e.url}`).join(', ')}, plain HTTP to another host: anyone on the path can serve their own keys or answers (and so any identity) and read the tokens and client credentials sent. Use https, or set the endpoint's URL in the provider's config.`,
            );
          }
          return c;
        },
        (e: unknown) => {
          this.#failedAt = Date.now();
          this.#lastError = new GatewayError('identity_unavailable', `OIDC discovery for ${o.issuer} failed: ${boundExceeded(e)?.message ?? redactUrls((e as Error).message)}`, { cause: e });
          throw this.#lastError;
        },
      )
      .finally(() => {
        this.#pending = undefined;
      });
    return this.#pending;
  }

  /** Starts discovery in the background (errors are kept for the first request). */
  warmUp(): void {
    this.get().catch(() => undefined);
  }
}

/** JWT access tokens whose keys come from OIDC discovery (jwks_uri), optionally enriched from userinfo. */
export function createOidcSource(cfg: OidcProviderConfig, log?: IdentityLog): JwtVerifier {
  const uses: DiscoveredEndpoint[] = [...(cfg.jwksUrl === undefined ? ['jwks_uri' as const] : []), ...(cfg.userinfo?.enabled === true ? ['userinfo_endpoint' as const] : [])];
  const discovery = new OidcDiscovery({
    issuer: cfg.issuer,
    clientId: typeof cfg.audience === 'string' ? cfg.audience : (cfg.audience[0] ?? 'lbac-gateway'),
    timeoutMs: cfg.timeoutMs,
    retryMs: cfg.discoveryRetrySeconds * 1000,
    uses,
    log,
  });
  let keys: RefreshableKeys | undefined;
  const getKey: RefreshableKeys = async (header, token) => {
    if (keys === undefined) {
      const jwksUri = cfg.jwksUrl ?? (await discovery.get()).serverMetadata().jwks_uri;
      if (jwksUri === undefined) throw new GatewayError('identity_unavailable', `the discovery document of ${cfg.issuer} has no jwks_uri`);
      // openid-client refuses plain-HTTP endpoints of an https issuer; jose would fetch the keys from one. Keys in
      // the clear are anyone's on the path (a provider behind a TLS proxy that announces http:// URLs, say).
      if (cfg.jwksUrl === undefined && new URL(cfg.issuer).protocol === 'https:' && protocolOf(jwksUri) !== 'https:') {
        throw new GatewayError('identity_unavailable', `the discovery document of ${cfg.issuer} announces jwks_uri ${redactUrls(jwksUri)}, not https: refused (set jwksUrl, or fix the provider's public URL)`);
      }
      keys = remoteKeySet(jwksUri, cfg.jwks.cooldownSeconds * 1000, cfg.jwks.maxAgeSeconds * 1000, cfg.timeoutMs);
    }
    return keys(header, token);
  };
  getKey.refresh = async () => {
    await keys?.refresh?.();
  };
  const userinfo = cfg.userinfo?.enabled === true ? new UserinfoEnricher(discovery, cfg.userinfo) : undefined;
  if (cfg.jwksUrl === undefined || userinfo !== undefined) discovery.warmUp();
  return new JwtVerifier({
    issuer: cfg.issuer,
    audience: cfg.audience,
    algorithms: cfg.algorithms,
    clockToleranceSeconds: cfg.clockToleranceSeconds,
    maxTokenBytes: cfg.maxTokenBytes,
    claims: cfg.claims,
    ...(cfg.typ !== undefined ? { typ: cfg.typ } : {}),
    ...(cfg.authorizedParties !== undefined ? { authorizedParties: cfg.authorizedParties } : {}),
    auth: 'oidc',
    getKey,
    ...(userinfo !== undefined ? { maxCacheMs: cfg.userinfo!.cacheTtlSeconds * 1000 } : {}),
    ...(userinfo !== undefined ? { postVerify: async (payload, token, gone) => ({ claims: await userinfo.merge(payload, token, gone) }), reloaded: () => userinfo.forget() } : {}),
  });
}

/** A URL's scheme as URL parses it (lower-case, e.g. "https:"); '' for text that is not a URL. */
function protocolOf(url: string): string {
  try {
    return new URL(url).protocol;
  } catch {
    return '';
  }
}
