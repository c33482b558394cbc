import type { ClaimsConfig } from '../config/schema.ts';

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

/**
 * Claims that name groups or roles come in several shapes: an array of strings,
 * a space- or comma-separated string (`scope`-like), or an array of objects
 * with a `name`/`value`/`id` field. Anything else yields no entries.
 */
export function stringList(value: unknown): string[] {
  if (typeof value === 'string') return value.split(/[\s,]+/).filter((s) => s.length > 0);
  if (!Array.isArray(value)) return [];
  const out: string[] = [];
  for (const v of value) {
    if (typeof v === 'string' && v.length > 0) out.push(v);
    else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      const name = o['name'] ?? o['value'] ?? o['id'];
      if (typeof name === 'string' && name.length > 0) out.push(name);
    }
  }
  return [...new Set(out)];
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
    groups: stringList(claimAt(claims, cfg.groups)),
    roles: stringList(claimAt(claims, cfg.roles)),
  };
}
