/**
 * What the built-in policy (policies/lbac, committed as wasm/policy.wasm) is
 * given of a subject: only what it can read. Its input contract, checked by
 * test/policy/input-projection.property.test.ts against the wasm itself:
 *
 * - `subject.groups` are only ever compared with group names the data names
 *   (`data.lbac.admins.groups`, `data.lbac.teams.*.groups`), so a group no
 *   entry names cannot change a decision;
 * - `subject.claims` are only read in claims mode (`data.lbac.claimsMode.enabled`).
 *
 * Enterprise identity providers put every group of a user in the token (200
 * and more), and the policy's cost grows with its input (JSON into wasm
 * memory, parsed there, a set built of the groups): ≈ 150 µs per uncached
 * decision for 200 groups against ≈ 15 µs without them (docs/performance.md).
 * Leaving out what cannot matter makes that cost independent of the token.
 *
 * Only for the wasm whose sha256 is BUILTIN_POLICY_WASM_SHA256: any other
 * policy (a custom wasm, a bundle's) gets the subject whole. Pure; no I/O.
 */
import type { Subject } from './decision.ts';
import { isRecord } from '../util/is-record.ts';

/**
 * sha256 of wasm/policy.wasm as committed. Changing policies/lbac changes it:
 * update it only after checking that the new policy still keeps the input
 * contract above (the property test runs the contract against the wasm).
 */
export const BUILTIN_POLICY_WASM_SHA256 = '40f0c4f0c88c44ab973c52303964060d2c55e06ecb378f62e5c457d3cfab6bab';

export type SubjectProjection = (subject: Subject) => Subject;

const NO_CLAIMS: Record<string, unknown> = Object.freeze({});

/** The entries of `data.lbac` that grant anything: `admins` and every team (objects only, as the policy reads them). */
export function grantingEntries(data: unknown): Record<string, unknown>[] {
  const lbac = isRecord(data) ? data['lbac'] : undefined;
  if (!isRecord(lbac)) return [];
  const teams = isRecord(lbac['teams']) ? Object.values(lbac['teams']) : [];
  return [lbac['admins'], ...teams].filter(isRecord);
}

/** The group names `data.lbac` grants anything to (admins and teams), as the built-in policy reads them. */
export function namedGroups(data: unknown): ReadonlySet<string> {
  const names = new Set<string>();
  for (const entry of grantingEntries(data)) {
    const groups = entry['groups'];
    if (Array.isArray(groups)) for (const g of groups) if (typeof g === 'string') names.add(g);
  }
  return names;
}

/**
 * The built-in policy's view of a subject under `data`: its groups narrowed to
 * those the data names, its claims left out unless claims mode is on.
 * Memoised per Subject instance (subjects come from the identity cache), and
 * the subject itself when nothing is left out.
 */
export function builtinPolicyProjection(data: unknown): SubjectProjection {
  const named = namedGroups(data);
  const lbac = isRecord(data) ? data['lbac'] : undefined;
  const claimsMode = isRecord(lbac) && isRecord(lbac['claimsMode']) && lbac['claimsMode']['enabled'] === true;
  const seen = new WeakMap<Subject, Subject>();
  return (subject) => {
    // Not a subject the identity layer builds (a malformed input): the policy's to refuse, passed as it is.
    if (typeof subject !== 'object' || subject === null) return subject;
    const known = seen.get(subject);
    if (known !== undefined) return known;
    // A groups value that is not a list is the policy's to ignore (as_array): passed as it is.
    const all: unknown = subject.groups;
    const groups = Array.isArray(all) ? all.filter((g): g is string => typeof g === 'string' && named.has(g)) : undefined;
    const dropGroups = groups !== undefined && groups.length !== (all as unknown[]).length;
    const dropClaims = !claimsMode && isRecord(subject.claims) && Object.keys(subject.claims).length > 0;
    const projected =
      !dropGroups && !dropClaims
        ? subject
        : Object.freeze({ ...subject, ...(dropGroups ? { groups: Object.freeze(groups) } : {}), ...(dropClaims ? { claims: NO_CLAIMS } : {}) });
    seen.set(subject, projected);
    return projected;
  };
}
