/**
 * Merging the answers of Tempo's v2 tag APIs asked once per policy
 * alternative (RouteSpec.fanOut): tag names per scope, `{"scopes": [{"name",
 * "tags": […]}]}`, and tag values, `{"tagValues": [{"type", "value"}]}`.
 * Pure; no I/O. Tempo's `metrics` (bytes inspected: the whole tenant's data,
 * not the policy's share) is left out.
 */
import { GatewayError } from '../errors.ts';
import { compareCodePoints } from './list-answers.ts';
import { isRecord } from '../util/is-record.ts';

const unreadable = () => new GatewayError('upstream_error', 'upstream answer could not be read');

export interface TagScopes {
  readonly scopes: { name: string; tags: string[] }[];
}

/**
 * One tag-names answer as `{scopes}`, in Tempo's order, nothing else copied.
 * Tempo's JSON leaves an empty list out (`{}` or only `metrics` when nothing
 * matched); any other shape throws (→ 502).
 */
export function readTagScopes(answer: unknown): TagScopes {
  const empty = isRecord(answer) && answer['scopes'] === undefined && Object.keys(answer).every((k) => k === 'metrics');
  const scopes = empty ? [] : isRecord(answer) ? answer['scopes'] : undefined;
  if (!Array.isArray(scopes)) throw unreadable();
  return {
    scopes: scopes.map((s: unknown) => {
      if (!isRecord(s) || typeof s['name'] !== 'string') throw unreadable();
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

/**
 * One tag-values entry as the gateway relays it: Tempo's `{type, value}`
 * (only those two fields), or a bare string value (the v1 shape).
 */
export type TagValueEntry = string | { readonly type?: string; readonly value: string };

export interface TagValues {
  readonly tagValues: TagValueEntry[];
}

/** The value an entry lists. */
export const tagValueOf = (e: TagValueEntry): string => (typeof e === 'string' ? e : e.value);

/**
 * One tag-values answer read leniently, the same for a single answer and for
 * each part of a merge: an answer that is not an object, or whose
 * `tagValues` is missing or not a list, lists nothing; an entry is kept when
 * its value can be read (a string, or an object whose `value` is a string),
 * rebuilt from `type` and `value` alone, and any other entry is left out.
 * What is left out is never relayed; the policy's filter then judges what is kept.
 */
export function readTagValues(answer: unknown): TagValueEntry[] {
  const values = isRecord(answer) ? answer['tagValues'] : undefined;
  if (!Array.isArray(values)) return [];
  const out: TagValueEntry[] = [];
  for (const v of values as unknown[]) {
    if (typeof v === 'string') out.push(v);
    else if (isRecord(v) && typeof v['value'] === 'string') out.push(typeof v['type'] === 'string' ? { type: v['type'], value: v['value'] } : { value: v['value'] });
  }
  return out;
}

/**
 * Tag values: the union of the entries (each part read as readTagValues reads
 * one answer, so an odd entry is left out here as it is from a single answer),
 * sorted by value then type, at most `limit` of them (the request's own
 * `limit`, which each part applied).
 */
export function mergeTagValueAnswers(answers: readonly unknown[], limit = 0): TagValues {
  const seen = new Map<string, TagValueEntry>();
  for (const a of answers) {
    for (const e of readTagValues(a)) seen.set(JSON.stringify(typeof e === 'string' ? [e] : [e.value, e.type ?? null]), e);
  }
  const typeOf = (e: TagValueEntry): string => (typeof e === 'string' ? '' : (e.type ?? ''));
  const sorted = [...seen.values()].sort((x, y) => compareCodePoints(tagValueOf(x), tagValueOf(y)) || compareCodePoints(typeOf(x), typeOf(y)) || Number(typeof x === 'string') - Number(typeof y === 'string'));
  const tagValues = limit > 0 ? sorted.slice(0, limit) : sorted;
  return { tagValues };
}
