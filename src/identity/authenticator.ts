import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayConfig } from '../config/load.ts';
import type { ProviderConfig } from '../config/schema.ts';
import { GatewayError } from '../errors.ts';
import { headerLines } from '../util/header-name.ts';
import type { Subject } from '../policy/decision.ts';
import { GrafanaSource } from './grafana.ts';
import { IntrospectionSource } from './introspection.ts';
import { connectionTokenDigest, InvalidTokenError, JwtVerifier } from './jwt.ts';
import { createOidcSource } from './oidc.ts';
import { MtlsSource } from './mtls.ts';
import { prefixesOf, SubjectPrefixer, withoutPrefixes, type SubjectPrefixes } from './prefix.ts';
import { ApiKeySource, BasicAuthSource } from './static.ts';
import { UNDECIDED, type AuthRequest, type Credentials, type IdentityLog, type IdentitySource } from './source.ts';

export type { AuthRequest, ClientCertificate, Credentials, IdentitySource, TlsInfo } from './source.ts';
export { UNDECIDED } from './source.ts';
export type { SubjectPrefixes } from './prefix.ts';

/** Whether a provider's source reads a file when it is built (its content may change without the config changing). */
function readsFile(p: ProviderConfig): boolean {
  return ('jwksFile' in p && p.jwksFile !== undefined) || ('clientSecretFile' in p && p.clientSecretFile !== undefined);
}

/** `log`: where a source warns about what it finds out after start (a plain-HTTP endpoint in a discovery document). */
export async function createSource(p: ProviderConfig, log?: IdentityLog): Promise<IdentitySource> {
  switch (p.type) {
    case 'jwt':
      return JwtVerifier.create(p);
    case 'oidc':
      return createOidcSource(p, log);
    case 'introspection':
      return IntrospectionSource.create(p, log);
    case 'grafana':
      return new GrafanaSource(p);
    case 'apikey':
      return new ApiKeySource(p);
    case 'basic':
      return new BasicAuthSource(p);
    case 'mtls':
      return new MtlsSource(p);
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Basic credentials as UTF-8 (RFC 7617 §2.1), or undefined when the bytes are
 * not UTF-8: a lenient decode would turn every invalid byte into U+FFFD, so
 * different passwords would arrive as one.
 */
function strictUtf8(bytes: Uint8Array): string | undefined {
  try {
    return UTF8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Counters for identity outcomes (exposed for a metrics endpoint; see docs/identity.md). */
export interface IdentityStats {
  accepted: Record<string, number>;
  rejected: number;
  unavailable: number;
}


/**
 * Extracts credentials from `Authorization` (Bearer, and Basic when a basic
 * source is configured) and source-specific headers (X-Grafana-Id, an API key
 * header) — never from query parameters or cookies (tokens in URLs end up in
 * logs) — and asks each configured source in order. A source that finds
 * nothing of its kind is skipped; one that rejects the credential lets the
 * next source try; one that cannot decide (provider unreachable) fails the
 * request with 503. "Could not verify" is never "anonymous".
 */
export class Authenticator {
  readonly #sources: readonly IdentitySource[];
  /**
   * Per source (same order): its provider's groupsPrefix / usersPrefix, applied to every subject it answers,
   * and the namespaces the other providers' prefixes reserve (computed here, once per config).
   */
  readonly #prefixers: readonly SubjectPrefixer[];
  /** Per source: whether its final refusal (InvalidTokenError.final) ends the search. */
  readonly #finalRefusal: readonly boolean[];
  readonly #basic: boolean;
  readonly #mtls: boolean;
  readonly stats: IdentityStats = { accepted: {}, rejected: 0, unavailable: 0 };
  /** Sources built from config, by the provider's JSON, that a reload may reuse (fromConfig). */
  #reusable: ReadonlyMap<string, IdentitySource> = new Map();
  /** Sources this authenticator took over from the previous one (fromConfig). */
  #kept: readonly IdentitySource[] = [];

  /**
   * For a reload that is about to be applied (everything else built): kept
   * sources refetch key sets (keeping theirs when the provider is unreachable)
   * and forget what they verified, introspected or fetched, as a reload did
   * when it rebuilt every source. Called last, so a reload that is rejected
   * changes nothing.
   */
  async refreshKeptSources(): Promise<void> {
    await Promise.all(this.#kept.map((s) => s.reloaded?.()));
  }

  /**
   * `prefixes[i]`: the namespace of `sources[i]`'s subjects (its provider's
   * `groupsPrefix` / `usersPrefix`, src/identity/prefix.ts); none when absent.
   * Each prefix also reserves its namespace: another source's groups there are
   * dropped, its subjects whose `sub` lies there refused (src/identity/namespace.ts).
   * `log`: where dropped names and refused subjects are reported (provider index and counts).
   */
  constructor(sources: readonly IdentitySource[], prefixes: readonly (SubjectPrefixes | undefined)[] = [], log?: IdentityLog) {
    if (sources.length === 0) throw new GatewayError('config_invalid', 'no identity providers configured');
    // Local sources first, in config order, then those that send the credential away (introspection):
    // an API key is accepted before any provider could see it, and does not depend on the provider being up.
    const prefixers = SubjectPrefixer.forProviders(sources.map((_, i) => prefixes[i]), log);
    const entries = sources.map((source, i) => ({ source, prefixer: prefixers[i]! }));
    const ordered = [...entries.filter((e) => e.source.sendsCredentials !== true), ...entries.filter((e) => e.source.sendsCredentials === true)];
    this.#sources = ordered.map((e) => e.source);
    this.#prefixers = ordered.map((e) => e.prefixer);
    // A JWT source's claim refusal is final unless a later JWT source judges the same issuer (another audience).
    this.#finalRefusal = this.#sources.map((s, i) => {
      if (!(s instanceof JwtVerifier)) return true;
      const mine = s.issuers;
      return !this.#sources.slice(i + 1).some((later) => later instanceof JwtVerifier && later.issuers.some((iss) => mine.includes(iss)));
    });
    this.#basic = sources.some((s) => s instanceof BasicAuthSource);
    this.#mtls = sources.some((s) => s instanceof MtlsSource);
  }

  /**
   * The sources of `config`. On a reload (`previous`), a source whose provider
   * config is unchanged and reads no file is reused, with its key set: a
   * reload (even one that changes only teams) must not refuse every JWT user
   * while the identity provider is down. What it learned about tokens is
   * dropped by `refreshKeptSources`, called when the reload is about to be
   * applied. A source that reads a file (`jwksFile`, `clientSecretFile`) is
   * rebuilt, so the reload picks up the file's content.
   */
  static async fromConfig(config: GatewayConfig, previous?: Authenticator, log?: IdentityLog): Promise<Authenticator> {
    const reusable = previous === undefined ? undefined : previous.#reusable;
    const kept: IdentitySource[] = [];
    const built = new Map<string, IdentitySource>();
    const sources = await Promise.all(
      config.identity.providers.map(async (p) => {
        // The prefixes are applied here, not by the source: a reload that changes only them keeps the source.
        const key = readsFile(p) ? undefined : JSON.stringify(withoutPrefixes(p));
        let source = key === undefined ? undefined : reusable?.get(key);
        if (source === undefined) source = await createSource(p, log);
        else kept.push(source);
        if (key !== undefined) built.set(key, source);
        return source;
      }),
    );
    const auth = new Authenticator(sources, config.identity.providers.map(prefixesOf), log);
    auth.#kept = kept;
    auth.#reusable = built;
    return auth;
  }

  /** The sources' caches of verified credentials, summed per cache name (`identity_<kind>`). */
  cacheStats(): Map<string, { hits: number; misses: number; size: number }> {
    const out = new Map<string, { hits: number; misses: number; size: number }>();
    for (const source of this.#sources) {
      const s = source.cacheStats?.();
      if (s === undefined) continue;
      const sum = out.get(s.cache) ?? { hits: 0, misses: 0, size: 0 };
      out.set(s.cache, { hits: sum.hits + s.hits, misses: sum.misses + s.misses, size: sum.size + s.size });
    }
    return out;
  }

  /** Parse `Authorization: Bearer <token>` strictly (RFC 6750 b64token syntax, one header). */
  static bearerToken(headers: IncomingHttpHeaders): string {
    const c = Authenticator.credentials(headers, false);
    if (c.bearer === undefined) throw new InvalidTokenError('missing bearer token', undefined, true);
    return c.bearer;
  }

  /** Parse the Authorization header strictly; a malformed one is a 401 whatever else the request carries. */
  static credentials(headers: IncomingHttpHeaders, allowBasic: boolean): Credentials {
    const raw = headers.authorization;
    if (raw === undefined || raw === '') return { headers, bearer: undefined, basic: undefined };
    if (Array.isArray(raw)) throw new InvalidTokenError('more than one Authorization header');
    const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(raw);
    if (m !== null) return { headers, bearer: m[1]!, basic: undefined };
    if (allowBasic) {
      const b = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(raw);
      if (b !== null) {
        const decoded = strictUtf8(Buffer.from(b[1]!, 'base64'));
        const i = decoded === undefined ? -1 : decoded.indexOf(':');
        if (decoded !== undefined && i > 0 && !/[\u0000-\u001f\u007f]/.test(decoded)) return { headers, bearer: undefined, basic: { username: decoded.slice(0, i), password: decoded.slice(i + 1) } };
      }
      throw new InvalidTokenError('malformed Authorization header (expected "Bearer <token>" or "Basic <credentials>")');
    }
    throw new InvalidTokenError('malformed Authorization header (expected "Bearer <token>")');
  }

  async authenticate(req: AuthRequest): Promise<Subject> {
    try {
      const s = await this.#authenticate(req);
      this.stats.accepted[s.auth] = (this.stats.accepted[s.auth] ?? 0) + 1;
      return s;
    } catch (e) {
      if (e instanceof GatewayError && e.code === 'identity_unavailable') this.stats.unavailable++;
      else this.stats.rejected++;
      // With a basic source configured, 401s also offer `WWW-Authenticate: Basic` (server/plugins/errors.ts).
      if (this.#basic && e instanceof InvalidTokenError) throw e.withBasicChallenge();
      throw e;
    }
  }

  /**
   * `authenticate`'s Subject when it is known without waiting, else UNDECIDED
   * (then call `authenticate`). The sources are asked in `authenticate`'s
   * order and the first that is undecided ends the walk, so a Subject comes
   * from the source that `authenticate` would have taken it from: one whose
   * cache holds the token, with every source before it holding nothing of
   * the request's kind. Errors are never answered here. Saves a chain of
   * promises per request for the common case, a token seen before.
   */
  peek(req: AuthRequest): Subject | typeof UNDECIDED {
    if (req.rawHeaders !== undefined && headerLines(req.rawHeaders, 'authorization') > 1) return UNDECIDED;
    let creds: Credentials;
    try {
      creds = this.#credentialsOf(req);
    } catch {
      return UNDECIDED;
    }
    for (let i = 0; i < this.#sources.length; i++) {
      const source = this.#sources[i]!;
      const answer = source.peek === undefined ? UNDECIDED : source.peek(creds);
      if (answer === UNDECIDED) return UNDECIDED;
      if (answer !== undefined) {
        // A subject its provider may not yield (its sub in another's namespace) is refused by authenticate.
        const subject = this.#prefixers[i]!.peek(answer);
        if (subject === undefined) return UNDECIDED;
        this.stats.accepted[subject.auth] = (this.stats.accepted[subject.auth] ?? 0) + 1;
        return subject;
      }
    }
    return UNDECIDED;
  }

  #credentialsOf(req: AuthRequest): Credentials {
    const parsed = Authenticator.credentials(req.headers, this.#basic);
    const bearer = parsed.bearer;
    return {
      ...parsed,
      tls: req.tls,
      gone: req.gone,
      // Computed on first use: a source may refuse the token (too large, not its kind) before needing it.
      bearerDigest: bearer === undefined ? undefined : () => connectionTokenDigest(bearer, req.connection),
    };
  }

  async #authenticate(req: AuthRequest): Promise<Subject> {
    if (req.rawHeaders !== undefined && headerLines(req.rawHeaders, 'authorization') > 1) throw new InvalidTokenError('more than one Authorization header');
    const creds = this.#credentialsOf(req);
    let lastError: unknown;
    let overloaded: GatewayError | undefined;
    let overloadedLocally = false;
    let judged = false;
    for (const [i, source] of this.#sources.entries()) {
      // A local source that could not judge the credential for load (an API key's hash queue full)
      // may own it: it must not go on to a source that sends it to a third party. 503, retry.
      if (overloadedLocally && source.sendsCredentials === true) break;
      let subject: Subject | undefined;
      try {
        subject = await source.authenticate(creds);
      } catch (e) {
        // An unreachable provider fails the whole request (503), it does not fall through.
        if (e instanceof GatewayError && e.code === 'identity_unavailable') throw e;
        // Verified as its issuer's token and refused on its claims: no later source may accept it.
        if (e instanceof InvalidTokenError && e.final && this.#finalRefusal[i] === true) throw e;
        // A failure that is no refusal (a bug, an answer no code path expected): the source could not judge the
        // credential, and no later source judges it in its place (it may be one this source refuses for good). 503.
        if (!(e instanceof GatewayError)) throw new GatewayError('identity_unavailable', `identity source ${source.name} failed unexpectedly`, { cause: e });
        // An overloaded one may be the wrong provider for this credential: later sources still try,
        // and if none accepts, the answer is its 503 (retry), not a 401 (log in again).
        if (e.code === 'overloaded') {
          overloaded ??= e;
          if (source.sendsCredentials !== true) overloadedLocally = true;
        }
        judged = true;
        lastError = e;
        continue;
      }
      // Refused here (its sub in another provider's namespace) ends the search: the source owned the credential.
      if (subject !== undefined) return this.#prefixers[i]!.apply(subject);
    }
    if (overloaded !== undefined) throw overloaded;
    if (lastError instanceof GatewayError) throw lastError;
    if (lastError !== undefined) throw new InvalidTokenError('credentials not accepted', lastError);
    // Header-based sources (X-Grafana-Id, API key header) judge whenever their header is present.
    if (!judged && creds.bearer === undefined && creds.basic === undefined && !(this.#mtls && creds.tls?.certificate !== undefined)) {
      throw new InvalidTokenError('missing credentials', undefined, true);
    }
    throw new InvalidTokenError('no identity source accepts these credentials (unknown issuer or token type)');
  }
}
