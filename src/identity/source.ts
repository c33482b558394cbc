import type { IncomingHttpHeaders } from 'node:http';
import type { Subject } from '../policy/decision.ts';

/** What the Authenticator sees of a request. */
export interface AuthRequest {
  readonly headers: IncomingHttpHeaders;
}

/** Credentials parsed once from the request, strictly. */
export interface Credentials {
  readonly headers: IncomingHttpHeaders;
  /** `Authorization: Bearer <token>`. */
  readonly bearer: string | undefined;
  /** `Authorization: Basic <base64(user:password)>` (only parsed when a basic source is configured). */
  readonly basic: { readonly username: string; readonly password: string } | undefined;
}

/**
 * One identity source. `authenticate` returns undefined when the request
 * carries nothing this source judges (no credential of its kind, or a JWT from
 * another issuer); it throws InvalidTokenError (401) for a credential it
 * rejects and `identity_unavailable` (503) when it cannot decide.
 */
export interface IdentitySource {
  readonly name: string;
  authenticate(creds: Credentials): Promise<Subject | undefined>;
}
