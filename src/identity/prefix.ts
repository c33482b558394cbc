import type { ProviderConfig } from '../config/schema.ts';
import type { Subject } from '../policy/decision.ts';
import { InvalidTokenError } from './jwt.ts';
import { namespaceOf, reservedNamespaces, type ReservedNamespace } from './namespace.ts';
import type { IdentityLog } from './source.ts';

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

/** The namespaces of other providers that one provider may not yield names in (src/identity/namespace.ts). */
export interface ReservedFor {
  /** Inside this provider's groupsPrefix (or anywhere, without one): its groups there are dropped. */
  readonly groups: readonly ReservedNamespace[];
  /** Inside its usersPrefix: a `sub` there is refused, a `username` there dropped. */
  readonly users: readonly ReservedNamespace[];
}

const NOTHING_RESERVED: ReservedFor = { groups: [], users: [] };

/** A source Subject whose prefixed `sub` lies in another provider's users namespace (cached like a prefixed one). */
class Refusal {
  readonly namespace: ReservedNamespace;
  constructor(namespace: ReservedNamespace) {
    this.namespace = namespace;
  }
  error(): InvalidTokenError {
    return new InvalidTokenError(`subject id lies in another identity provider's namespace (${JSON.stringify(this.namespace.prefix)})`);
  }
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
 * Every configured prefix reserves its namespace for its provider(s)
 * (src/identity/namespace.ts): after this provider's own prefix, a group in
 * another provider's namespace is dropped, a `sub` there refuses the subject
 * (401: `apply` throws InvalidTokenError), and a `username` there is dropped
 * (with `usernameTrusted`): the username is optional, only ever matched
 * besides the `sub` that passed, and a login name that happens to look like
 * another provider's should not lock its holder out.
 *
 * The same source Subject always maps to the same prefixed Subject object
 * (frozen), or the same refusal, so caches keyed by the Subject instance
 * (decisions, audit JSON) keep working and the namespaces are checked once
 * per source Subject. A subject nothing changes (no prefixes anywhere, or
 * none of its own and nothing in another's namespace) is passed through as
 * it is.
 */
export class SubjectPrefixer {
  readonly groupsPrefix: string;
  readonly usersPrefix: string;
  readonly #reserved: ReservedFor;
  /** Config index of the provider (for the log). */
  readonly #provider: number | undefined;
  readonly #log: IdentityLog | undefined;
  readonly #prefixed = new WeakMap<Subject, Subject | Refusal>();
  /** Whether this prefixer can change anything (asked on every request: fixed at construction). */
  readonly active: boolean;

  constructor(prefixes: SubjectPrefixes = {}, reserved: ReservedFor = NOTHING_RESERVED, provider?: number, log?: IdentityLog) {
    this.groupsPrefix = prefixes.groupsPrefix ?? '';
    this.usersPrefix = prefixes.usersPrefix ?? '';
    this.#reserved = reserved;
    this.#provider = provider;
    this.#log = log;
    this.active = this.groupsPrefix !== '' || this.usersPrefix !== '' || reserved.groups.length > 0 || reserved.users.length > 0;
  }

  /**
   * One prefixer per provider (`prefixes[i]`, config order), each knowing the
   * namespaces the others reserve. Computed once per config (or reload).
   */
  static forProviders(prefixes: readonly (SubjectPrefixes | undefined)[], log?: IdentityLog): SubjectPrefixer[] {
    const groups = prefixes.map((p) => p?.groupsPrefix);
    const users = prefixes.map((p) => p?.usersPrefix);
    return prefixes.map((p, i) => new SubjectPrefixer(p, { groups: reservedNamespaces(p?.groupsPrefix, groups), users: reservedNamespaces(p?.usersPrefix, users) }, i, log));
  }

  /** The subject in this provider's namespace; throws InvalidTokenError (401) when its `sub` lies in another's. */
  apply(subject: Subject): Subject {
    const s = this.#resolve(subject);
    if (s instanceof Refusal) throw s.error();
    return s;
  }

  /** As `apply`, but undefined where `apply` throws (for Authenticator.peek, which answers no errors). */
  peek(subject: Subject): Subject | undefined {
    const s = this.#resolve(subject);
    return s instanceof Refusal ? undefined : s;
  }

  #resolve(subject: Subject): Subject | Refusal {
    if (!this.active) return subject;
    const known = this.#prefixed.get(subject);
    if (known !== undefined) return known;
    const result = this.#prefix(subject);
    this.#prefixed.set(subject, result);
    return result;
  }

  #prefix(subject: Subject): Subject | Refusal {
    const g = this.groupsPrefix;
    const u = this.usersPrefix;
    const reserved = this.#reserved;
    const sub = u + subject.sub;
    const taken = namespaceOf(sub, reserved.users);
    if (taken !== undefined) {
      this.#log?.warn({ provider: this.#provider, namespace: taken.prefix, reservedBy: taken.providers }, "identity: subject refused: its sub lies in another provider's usersPrefix namespace");
      return new Refusal(taken);
    }
    const username = subject.username === undefined ? undefined : u + subject.username;
    const dropUsername = username !== undefined && namespaceOf(username, reserved.users) !== undefined;
    let groups: readonly string[] = g === '' ? subject.groups : subject.groups.map((x) => g + x);
    let droppedGroups = 0;
    if (reserved.groups.length > 0) {
      const kept = groups.filter((x) => namespaceOf(x, reserved.groups) === undefined);
      droppedGroups = groups.length - kept.length;
      groups = kept;
    }
    if (droppedGroups > 0 || dropUsername) {
      this.#log?.warn({ provider: this.#provider, droppedGroups, droppedUsername: dropUsername }, "identity: names in another provider's groupsPrefix/usersPrefix namespace dropped from a subject");
    }
    // Nothing of its own to add and nothing dropped: the subject as the source answered it.
    if (g === '' && u === '' && droppedGroups === 0 && !dropUsername) return subject;
    const prefixed: Subject = {
      ...subject,
      sub,
      ...(username !== undefined ? { username } : {}),
      groups: Object.freeze(groups === subject.groups ? [...groups] : groups),
    };
    if (dropUsername) {
      delete prefixed.username;
      delete prefixed.usernameTrusted;
    }
    return Object.freeze(prefixed);
  }
}
