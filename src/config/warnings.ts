import type { GatewayConfig } from './load.ts';

/** Claims that an identity provider may let their holder choose or change (OIDC Core §5.1 and common IdPs). */
const MUTABLE_CLAIMS = new Set(['preferred_username', 'username', 'nickname', 'name', 'given_name', 'family_name', 'email', 'login', 'upn', 'unique_name']);

/**
 * Settings that are valid but probably not meant: printed by `check-config`
 * and logged at start. A warning never stops the gateway.
 */
export function configWarnings(config: GatewayConfig): string[] {
  const out: string[] = [];
  config.identity.providers.forEach((p, i) => {
    // RFC 7662 says nothing of audiences: many providers (Keycloak) call any valid token of the realm active,
    // including tokens issued for other services, which this gateway would then accept.
    if (p.type === 'introspection' && p.audience === undefined) {
      out.push(
        `identity.providers[${i}] (introspection): no audience; the provider may call tokens issued for other services active, and the gateway would accept them. Set audience to this gateway's audience (the response "aud" must then contain it).`,
      );
    }
    if (!('claims' in p)) return;
    const { subject, username, trustUsername } = p.claims;
    // `users` entries match the subject; a subject read from a claim its holder can set makes
    // those entries choosable, which is what trustUsername is there to state explicitly.
    if (!trustUsername && (MUTABLE_CLAIMS.has(subject.slice(subject.lastIndexOf('.') + 1)) || subject === username)) {
      out.push(
        `identity.providers[${i}] (${p.type}): claims.subject is "${subject}", a claim its holder may be able to choose or change; team and admin users entries match the subject. Map the subject to a stable id (e.g. "sub"), or set claims.trustUsername: true if this provider's "${subject}" is unique and fixed.`,
      );
    }
  });
  return out;
}
