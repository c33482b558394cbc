import type { ClaimsConfig } from '../config/schema.ts';
import { isWellFormedUnicode } from '../util/unicode.ts';

/** Read a dotted claim path ("realm_access.roles", "resource_access.grafana.roles"). A literal key containing dots wins. */
export function claimAt(claims: Record<string, unknown>, path: string): unknown {
  if (Object.hasOwn(claims, path)) return claims[path];
  let cur: unknown = claims;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** Claims the OAuth specs define as space-delimited lists (RFC 8693 §4.2 `scope`; `scp` as Microsoft and Okta send it). */
const SPACE_DELIMITED_CLAIMS = new Set(['scope', 'scp']);

/** Whether a claim path names a space-delimited list claim (its last segment is `scope` or `scp`). */
export function isSpaceDelimitedClaim(path: string): boolean {
  return SPACE_DELIMITED_CLAIMS.has(path.slice(path.lastIndexOf('.') + 1));
}

/** Keys naming an entry of an array-of-objects claim, in the order they are looked for. */
const OBJECT_NAME_KEYS = ['name', 'value', 'id'] as const;

/**
 * Claims that name groups or roles come in several shapes: an array of strings,
 * an array of objects naming the entry in `name`, `value` or `id` (the first of
 * those keys present decides), or a single string. A string is one value: a
 * group delivered alone (one-element claims are often sent unwrapped) may
 * contain spaces or commas ("Domain Admins"), and splitting it would turn one
 * name, possibly user-chosen, into several grants. Only `scope`-like claims
 * (`spaceDelimited`) are split, on spaces, as RFC 6749 §3.3 writes them.
 * Anything else yields no entries.
 */
export function stringList(value: unknown, spaceDelimited = false): string[] {
  if (typeof value === 'string') {
    const parts = spaceDelimited ? value.split(' ') : [value];
    return [...new Set(parts.filter((s) => s.length > 0))];
  }
  if (!Array.isArray(value)) return [];
  const out: string[] = [];
  for (const v of value) {
    if (typeof v === 'string' && v.length > 0) out.push(v);
    else if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const key = OBJECT_NAME_KEYS.find((k) => Object.hasOwn(o, k));
      const name = key === undefined ? undefined : o[key];
      if (typeof name === 'string' && name.length > 0) out.push(name);
    }
  }
  return [...new Set(out)];
}

/**
 * Whether every string in a JSON value (keys included) is well-formed UTF-16.
 * JSON may escape a lone surrogate (`"\\ud800"`) and JSON.parse keeps it, but
 * OPA's input parser refuses it: such claims would fail every request of the
 * token with a policy error instead of one clear 401. Iterative, so deep
 * nesting cannot overflow the stack.
 */
export function claimsWellFormed(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (!isWellFormedUnicode(v)) return false;
    } else if (Array.isArray(v)) {
      for (const e of v) stack.push(e);
    } else if (typeof v === 'object' && v !== null) {
      for (const [k, e] of Object.entries(v)) {
        if (!isWellFormedUnicode(k)) return false;
        stack.push(e);
      }
    }
  }
  return true;
}

function optionalString(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

export interface MappedClaims {
  sub: string | undefined;
  username: string | undefined;
  email: string | undefined;
  groups: string[];
  roles: string[];
}

export function mapClaims(claims: Record<string, unknown>, cfg: ClaimsConfig): MappedClaims {
  return {
    sub: optionalString(claimAt(claims, cfg.subject)),
    username: optionalString(claimAt(claims, cfg.username)),
    email: optionalString(claimAt(claims, cfg.email)),
    groups: stringList(claimAt(claims, cfg.groups), isSpaceDelimitedClaim(cfg.groups)),
    roles: stringList(claimAt(claims, cfg.roles), isSpaceDelimitedClaim(cfg.roles)),
  };
}
