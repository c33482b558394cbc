import type { GrafanaProviderConfig } from '../config/schema.ts';
import type { Subject } from '../policy/decision.ts';
import { InvalidTokenError, JwtVerifier, remoteKeySet } from './jwt.ts';
import { UNDECIDED, type Credentials, type IdentityCacheStats, type IdentitySource } from './source.ts';

const ORG_AUD = /^org:(\d+)$/;

/**
 * Grafana's ID token (`X-Grafana-Id`): an ES256 JWT signed by Grafana, `iss` =
 * Grafana's root URL (accepted with or without the trailing slash), `aud` =
 * `org:<id>` for the user's current org, keys at `<url>/api/signing-keys/keys`.
 * Only the configured orgs are accepted; the org id is exposed to policies as
 * `subject.grafanaOrg` (a number) and `subject.claims.grafana_org`.
 */
export class GrafanaSource implements IdentitySource {
  readonly name: string;
  readonly #header: string;
  readonly #verifier: JwtVerifier;

  constructor(cfg: GrafanaProviderConfig) {
    const root = cfg.url.replace(/\/+$/, '');
    this.name = `grafana:${root}`;
    this.#header = cfg.header.toLowerCase();
    const orgs = new Set(cfg.orgs);
    this.#verifier = new JwtVerifier({
      issuer: [root, `${root}/`],
      audience: cfg.orgs.map((o) => `org:${o}`),
      algorithms: cfg.algorithms,
      clockToleranceSeconds: cfg.clockToleranceSeconds,
      maxTokenBytes: cfg.maxTokenBytes,
      claims: cfg.claims,
      ...(cfg.authorizedParties !== undefined ? { authorizedParties: cfg.authorizedParties } : {}),
      auth: 'grafana',
      getKey: remoteKeySet(cfg.jwksUrl ?? `${root}/api/signing-keys/keys`, cfg.jwks.cooldownSeconds * 1000, cfg.jwks.maxAgeSeconds * 1000, cfg.timeoutMs),
      routeByIssuer: false,
      postVerify: async (payload) => {
        const aud = payload['aud'];
        const auds = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
        const matched = auds
          .map((a) => (typeof a === 'string' ? ORG_AUD.exec(a) : null))
          .filter((m): m is RegExpExecArray => m !== null)
          .map((m) => Number(m[1]));
        // jose already required an accepted audience; a token naming several orgs is ambiguous.
        const accepted = [...new Set(matched.filter((o) => orgs.has(o)))];
        if (accepted.length !== 1) throw new InvalidTokenError('Grafana ID token must name exactly one accepted org');
        const org = accepted[0]!;
        return { claims: { ...payload, grafana_org: org }, extra: { grafanaOrg: org } };
      },
    });
  }

  cacheStats(): IdentityCacheStats {
    return this.#verifier.cacheStats();
  }

  /** `authenticate`'s answer without waiting: no ID token header, or a token verified before (IdentitySource.peek). */
  peek(creds: Credentials): Subject | undefined | typeof UNDECIDED {
    let token: string | undefined;
    try {
      token = this.#tokenOf(creds);
    } catch {
      return UNDECIDED;
    }
    return token === undefined ? undefined : this.#verifier.peekToken(token);
  }

  async authenticate(creds: Credentials): Promise<Subject | undefined> {
    const token = this.#tokenOf(creds);
    return token === undefined ? undefined : this.#verifier.verify(token);
  }

  /** The ID token the request carries (undefined: no header); throws for a repeated header. */
  #tokenOf(creds: Credentials): string | undefined {
    const raw = creds.headers[this.#header];
    if (raw === undefined || raw === '') return undefined;
    if (Array.isArray(raw)) throw new InvalidTokenError(`more than one ${this.#header} header`);
    return raw.trim();
  }

  reloaded(): Promise<void> {
    return this.#verifier.reloaded();
  }
}
