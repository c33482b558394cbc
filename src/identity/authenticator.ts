import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';
import type { Subject } from '../policy/decision.ts';
import { InvalidTokenError, JwtVerifier } from './jwt.ts';

export interface IdentitySource {
  verify(token: string): Promise<Subject>;
}

/**
 * Extracts the bearer credential from `Authorization` only — never from query
 * parameters or cookies (tokens in URLs end up in logs) — and asks each
 * configured source in order. "Could not verify" is never "anonymous".
 */
export class Authenticator {
  readonly #sources: readonly IdentitySource[];

  constructor(sources: readonly IdentitySource[]) {
    if (sources.length === 0) throw new GatewayError('config_invalid', 'no identity providers configured');
    this.#sources = sources;
  }

  static async fromConfig(config: GatewayConfig): Promise<Authenticator> {
    const sources = await Promise.all(config.identity.providers.map((p) => JwtVerifier.create(p)));
    return new Authenticator(sources);
  }

  /** Parse `Authorization: Bearer <token>` strictly (RFC 6750 b64token syntax, one header). */
  static bearerToken(headers: IncomingHttpHeaders): string {
    const raw = headers.authorization;
    if (raw === undefined || raw === '') throw new InvalidTokenError('missing bearer token', undefined, true);
    if (Array.isArray(raw)) throw new InvalidTokenError('more than one Authorization header');
    const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(raw);
    if (m === null) throw new InvalidTokenError('malformed Authorization header (expected "Bearer <token>")');
    return m[1]!;
  }

  async authenticate(headers: IncomingHttpHeaders): Promise<Subject> {
    const token = Authenticator.bearerToken(headers);
    let lastError: unknown;
    for (const source of this.#sources) {
      try {
        return await source.verify(token);
      } catch (e) {
        // An unreachable provider fails closed for the whole request (503), it does not fall through.
        if (e instanceof GatewayError && e.code === 'identity_unavailable') throw e;
        lastError = e;
      }
    }
    if (lastError instanceof GatewayError) throw lastError;
    throw new InvalidTokenError('token not accepted', lastError);
  }
}
