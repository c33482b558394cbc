import type { IncomingHttpHeaders } from 'node:http';
import type { Subject } from '../policy/decision.ts';

/** The verified client certificate's identity-relevant fields (src/identity/mtls.ts). */
export interface ClientCertificate {
  readonly cn: string | undefined;
  /** How many CN attributes the subject has; more than one is ambiguous and refused. */
  readonly cnCount?: number;
  readonly ou: readonly string[];
  readonly o: readonly string[];
  /** Subject emailAddress attribute(s). */
  readonly email: readonly string[];
  readonly dns: readonly string[];
  readonly uri: readonly string[];
  /** SAN email (rfc822Name) entries. */
  readonly sanEmail: readonly string[];
  readonly issuerCN: string | undefined;
  readonly serialNumber: string;
  readonly fingerprint256: string;
  readonly validTo: string;
}

/** What the TLS listener established: `certificate` only when the chain verified against clientCA. */
export interface TlsInfo {
  readonly authorized: boolean;
  readonly certificate: ClientCertificate | undefined;
  /** Why a presented certificate was not accepted (e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE). */
  readonly error: string | undefined;
}

/** What the Authenticator sees of a request. */
export interface AuthRequest {
  readonly headers: IncomingHttpHeaders;
  /**
   * The request's header lines as received (Node's `rawHeaders`: name, value, …).
   * Node keeps only the first of repeated Authorization headers in `headers`;
   * these show the repeats, which are refused.
   */
  readonly rawHeaders?: readonly string[];
  /** Set when the gateway listens with TLS. */
  readonly tls?: TlsInfo | undefined;
  /**
   * The connection the request arrived on (any object that lives as long as
   * it): the digest of the last bearer token seen on it is remembered, so a
   * client re-sending its token on a keep-alive connection is not hashed again.
   */
  readonly connection?: object | undefined;
  /** True once the client has gone away (its connection closed): work queued for it is dropped. */
  readonly gone?: (() => boolean) | undefined;
}

/** Credentials parsed once from the request, strictly. */
export interface Credentials {
  readonly headers: IncomingHttpHeaders;
  /** `Authorization: Bearer <token>`. */
  readonly bearer: string | undefined;
  /** `Authorization: Basic <base64(user:password)>` (only parsed when a basic source is configured). */
  readonly basic: { readonly username: string; readonly password: string } | undefined;
  /** The TLS connection's client certificate state (only with a TLS listener). */
  readonly tls?: TlsInfo | undefined;
  /** See AuthRequest.gone. */
  readonly gone?: (() => boolean) | undefined;
  /** The bearer token's cache key (`tokenDigest`), remembered per connection; set with `bearer`. */
  readonly bearerDigest?: (() => string) | undefined;
}

/** What a source's `peek` answers when only its asynchronous `authenticate` can tell. */
export const UNDECIDED: unique symbol = Symbol('lbac.identity.undecided');

/**
 * One identity source. `authenticate` returns undefined when the request
 * carries nothing this source judges (no credential of its kind, or a JWT from
 * another issuer); it throws InvalidTokenError (401) for a credential it
 * rejects and `identity_unavailable` (503) when it cannot decide.
 */
export interface IdentitySource {
  readonly name: string;
  /**
   * True for a source that judges a credential by sending it to a third party
   * (token introspection). The Authenticator tries such sources after all local
   * ones, so a credential a local source accepts (an API key) never leaves.
   */
  readonly sendsCredentials?: boolean;
  authenticate(creds: Credentials): Promise<Subject | undefined>;
  /**
   * What `authenticate` would answer, when that is known without waiting: the
   * Subject of a credential already verified and cached, or undefined when the
   * request carries no credential of this source's kind; otherwise UNDECIDED
   * (also for any answer that would be an error). No I/O, never throws. A
   * source without it is always undecided.
   */
  peek?(creds: Credentials): Subject | undefined | typeof UNDECIDED;
  /**
   * A config reload keeps this source (its settings did not change). Refetch
   * remote key material, keeping what it has when the provider cannot be
   * reached, and forget verified tokens, so that a key the provider has
   * removed stops working at the reload, as it did when reloads rebuilt
   * every source, while an unreachable provider does not fail cached users.
   */
  reloaded?(): Promise<void>;
  /**
   * The source's cache of verified credentials, if it has one: `cache` names it
   * in `lbac_gateway_cache_lookups` (`identity_<kind>`); counts since the source
   * was built (a reload that changes the source starts them anew).
   */
  cacheStats?(): IdentityCacheStats;
}

/** Where a source logs what it finds out after start (e.g. in a discovery document): the process log. */
export interface IdentityLog {
  warn(fields: object, message: string): void;
}

export interface IdentityCacheStats {
  readonly cache: string;
  readonly hits: number;
  readonly misses: number;
  readonly size: number;
}
