/**
 * Merging the answers of Tempo's v2 tag APIs asked once per policy
 * alternative (RouteSpec.fanOut): tag names per scope, `{"scopes": [{"name",
 * "tags": […]}]}`, and tag values, `{"tagValues": [{"type", "value"}]}`.
 * Pure; no I/O. Tempo's `metrics` (bytes inspected: the whole tenant's data,
 * not the policy's share) is left out.
 */
import { GatewayError } from '../errors.ts';
import { compareCodePoints } from './list-answers.ts';

const unreadable = () => new GatewayError('upstream_error', 'upstream answer could not be read');

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface TagScopes {
  readonly scopes: { name: string; tags: string[] }[];
}

/**
 * One tag-names answer as `{scopes}`, in Tempo's order, nothing else copied.
 * Tempo's JSON leaves an empty list out (`{}` or only `metrics` when nothing
 * matched); any other shape throws (→ 502).
 */
export function readTagScopes(answer: unknown): TagScopes {
  const empty = isObject(answer) && answer['scopes'] === undefined && Object.keys(answer).every((k) => k === 'metrics');
  const scopes = empty ? [] : isObject(answer) ? answer['scopes'] : undefined;
  if (!Array.isArray(scopes)) throw unreadable();
  return {
    scopes: scopes.map((s: unknown) => {
      if (!isObject(s) || typeof s['name'] !== 'string') throw unreadable();
      const tags = s['tags'] ?? [];
      if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) throw unreadable();
      return { name: s['name'], tags: tags as string[] };
    }),
  };
}

/** Tag names: per scope (in first-seen order), the sorted union. Any answer of another shape throws (→ 502). */
export function mergeTagScopeAnswers(answers: readonly unknown[]): TagScopes {
  const scopes = new Map<string, Set<string>>();
  for (const a of answers) {
    for (const { name, tags } of readTagScopes(a).scopes) {
      let set = scopes.get(name);
      if (set === undefined) scopes.set(name, (set = new Set()));
      for (const t of tags) set.add(t);
    }
  }
  return { scopes: [...scopes].map(([name, tags]) => ({ name, tags: [...tags].sort(compareCodePoints) })) };
}

export interface TagValues {
  readonly tagValues: { type: string; value: string }[];
}

/**
 * Tag values: the union of (type, value) pairs, sorted by value then type, at
 * most `limit` of them (the request's own `limit`, which each part applied).
 * Any answer of another shape throws (→ 502).
 */
export function mergeTagValueAnswers(answers: readonly unknown[], limit = 0): TagValues {
  const seen = new Map<string, { type: string; value: string }>();
  for (const a of answers) {
    if (!isObject(a)) throw unreadable();
    const values = a['tagValues'] ?? [];
    if (!Array.isArray(values)) throw unreadable();
    for (const v of values as unknown[]) {
      if (!isObject(v) || typeof v['type'] !== 'string' || typeof v['value'] !== 'string') throw unreadable();
      seen.set(JSON.stringify([v['type'], v['value']]), { type: v['type'], value: v['value'] });
    }
  }
  const sorted = [...seen.values()].sort((x, y) => compareCodePoints(x.value, y.value) || compareCodePoints(x.type, y.type));
  const tagValues = limit > 0 ? sorted.slice(0, limit) : sorted;
  return { tagValues };
}
