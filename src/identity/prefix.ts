import type { ProviderConfig } from '../config/schema.ts';
import type { Subject } from '../policy/decision.ts';

/**
 * A provider's namespace (config `groupsPrefix`, `usersPrefix`), as
 * Kubernetes' --oidc-groups-prefix / --oidc-username-prefix: with several
 * providers, each one's groups and subject ids can be told apart, so a
 * less-trusted issuer that mints `groups: [team-a]` or an admin's `sub` gets
 * `partner:team-a` / `partner:<sub>`, which no team or admin entry names
 * unless the operator wrote it so.
 */
export interface SubjectPrefixes {
  /** Prepended to every group. */
  readonly groupsPrefix?: string | undefined;
  /** Prepended to `sub` and `username`: what team and admin `users` entries match. */
  readonly usersPrefix?: string | undefined;
}

/** A provider's prefixes (both undefined when it sets none). */
export function prefixesOf(p: ProviderConfig): SubjectPrefixes {
  return { groupsPrefix: p.groupsPrefix, usersPrefix: p.usersPrefix };
}

/** The provider's config without its prefixes (what its source is built from: the prefixes are applied outside it). */
export function withoutPrefixes(p: ProviderConfig): Omit<ProviderConfig, 'groupsPrefix' | 'usersPrefix'> {
  const { groupsPrefix: _g, usersPrefix: _u, ...rest } = p;
  return rest;
}

/**
 * Puts the subjects one source accepts into its provider's namespace. The one
 * place prefixes are applied: the Authenticator runs every subject a source
 * answers (authenticate and peek) through its source's prefixer, so sources
 * parse claims, userinfo, introspection answers, static subjects and
 * certificates as they always did and only their output is prefixed.
 *
 * Prefixed: every group, `sub`, and `username` (trusted or not: `users`
 * entries match `sub` and the trusted username, and one subject's names stay
 * in one namespace, as the audit line shows them). Left alone: `email`,
 * `roles`, `issuer`, `auth` and the raw `claims` (custom policies and the
 * claims-driven mode read those as the provider sent them).
 *
 * The same source Subject always maps to the same prefixed Subject object
 * (frozen), so caches keyed by the Subject instance (decisions, audit JSON)
 * keep working. Without prefixes a subject is passed through unchanged.
 */
export class SubjectPrefixer {
  readonly groupsPrefix: string;
  readonly usersPrefix: string;
  readonly #prefixed = new WeakMap<Subject, Subject>();

  constructor(prefixes: SubjectPrefixes = {}) {
    this.groupsPrefix = prefixes.groupsPrefix ?? '';
    this.usersPrefix = prefixes.usersPrefix ?? '';
  }

  /** Whether this prefixer changes anything. */
  get active(): boolean {
    return this.groupsPrefix !== '' || this.usersPrefix !== '';
  }

  apply(subject: Subject): Subject {
    if (!this.active) return subject;
    const known = this.#prefixed.get(subject);
    if (known !== undefined) return known;
    const g = this.groupsPrefix;
    const u = this.usersPrefix;
    const prefixed: Subject = Object.freeze({
      ...subject,
      sub: u + subject.sub,
      ...(subject.username !== undefined ? { username: u + subject.username } : {}),
      groups: Object.freeze(g === '' ? [...subject.groups] : subject.groups.map((x) => g + x)),
    });
    this.#prefixed.set(subject, prefixed);
    return prefixed;
  }
}
