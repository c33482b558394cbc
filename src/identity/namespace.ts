/**
 * Which provider a name belongs to, when providers set prefixes
 * (`groupsPrefix`, `usersPrefix`; src/identity/prefix.ts). Pure: used by the
 * Authenticator (once per config) and by check-config's warnings.
 *
 * The rule: every configured prefix reserves its namespace for its
 * provider(s). A provider whose own prefix is P (or none: "") may yield a
 * name in the namespace of another provider's prefix Q only when P is Q or
 * lies inside it (P starts with Q: that provider is in Q's namespace by the
 * operator's configuration). A longer Q that starts with P is another
 * provider's namespace carved out of P's: names there are not P's provider's
 * to yield. An unprefixed provider (P = "") may thus yield no name that
 * starts with any configured prefix.
 */

/** A namespace reserved for other providers: its prefix and the providers (config indexes) that set it. */
export interface ReservedNamespace {
  readonly prefix: string;
  readonly providers: readonly number[];
}

/**
 * The namespaces a provider whose own prefix is `own` ("" for none) must not
 * yield names in: the other prefixes of `all` (one per provider, in config
 * order; undefined for none) that are longer than `own` and start with it.
 * Longest first, so the first match is the innermost namespace. Empty when
 * no other provider sets such a prefix.
 */
export function reservedNamespaces(own: string | undefined, all: readonly (string | undefined)[]): readonly ReservedNamespace[] {
  const mine = own ?? '';
  const byPrefix = new Map<string, number[]>();
  all.forEach((q, i) => {
    if (q === undefined || q === mine || !q.startsWith(mine)) return;
    byPrefix.set(q, [...(byPrefix.get(q) ?? []), i]);
  });
  return [...byPrefix]
    .map(([prefix, providers]) => ({ prefix, providers }))
    .sort((a, b) => b.prefix.length - a.prefix.length || (a.prefix < b.prefix ? -1 : 1));
}

/** The reserved namespace `name` (already carrying its provider's own prefix) falls into, if any. */
export function namespaceOf(name: string, reserved: readonly ReservedNamespace[]): ReservedNamespace | undefined {
  for (const ns of reserved) if (name.startsWith(ns.prefix)) return ns;
  return undefined;
}
