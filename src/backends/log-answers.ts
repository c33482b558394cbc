/**
 * Merging the answers of one Loki log query sent once per policy alternative
 * (RouteSpec.fanOut): the `limit` newest (`direction=backward`, Loki's
 * default) or oldest entries of the union of the streams, as one Loki would
 * have answered over the union. Pure; no I/O.
 *
 * Why this is exact: Loki answers each part with the first `limit` entries of
 * its streams in the query's direction, so every stream in a part carries a
 * prefix of its own entries, and the first `limit` entries of the union are
 * among the parts' entries. A stream that two alternatives both select comes
 * back from both, as two prefixes of one sequence: its entries are kept once.
 * Streams of different parts that a pipeline gave the same labels are one
 * stream in the answer, their entries united, as in one Loki answer.
 * Entries with equal timestamps from different streams are ordered by the
 * streams' label sets, as Loki's query frontend orders them when it merges
 * the answers of sharded queries (iter.lessDescending without a stream hash).
 */
import { GatewayError } from '../errors.ts';
import type { Params } from './form-params.ts';
import { labelSetString } from './label-set.ts';
import { compareCodePoints } from './list-answers.ts';

export interface LogQueryOptions {
  readonly limit: number;
  readonly direction: 'backward' | 'forward';
}

/** Loki's defaults: 100 entries, newest first. Values Loki refuses never get here (the parts' 400 is relayed). */
export function logQueryOptions(params: Params): LogQueryOptions {
  const limit = Number(params.get('limit') ?? '100');
  const direction = (params.get('direction') ?? 'backward').toLowerCase() === 'forward' ? 'forward' : 'backward';
  return { limit: Number.isSafeInteger(limit) && limit > 0 ? limit : 100, direction };
}

interface Stream {
  readonly stream: Record<string, unknown>;
  readonly values: readonly (readonly unknown[])[];
}

const unreadable = (): GatewayError => new GatewayError('upstream_error', 'upstream answer could not be read');

/** `{status:"success", data:{resultType:"streams", result:[{stream, values:[[ns, line, …]]}]}}`, or throws (→ 502). */
function streamsOf(answer: unknown): { data: Record<string, unknown>; result: Stream[] } {
  const a = answer as { status?: unknown; data?: unknown } | null;
  const data = a?.data as Record<string, unknown> | undefined;
  if (a?.status !== 'success' || typeof data !== 'object' || data === null || data['resultType'] !== 'streams' || !Array.isArray(data['result'])) throw unreadable();
  const result = data['result'] as unknown[];
  for (const s of result) {
    const st = s as { stream?: unknown; values?: unknown } | null;
    if (typeof st?.stream !== 'object' || st.stream === null || !Array.isArray(st.values)) throw unreadable();
    for (const v of st.values as unknown[]) if (!Array.isArray(v) || typeof v[0] !== 'string' || !/^\d+$/.test(v[0])) throw unreadable();
  }
  return { data, result: result as Stream[] };
}


/** Numbers added, objects merged key by key, anything else from the first. Loki's stats: counts over the parts. */
function addStats(a: unknown, b: unknown): unknown {
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null && !Array.isArray(a) && !Array.isArray(b)) {
    const out: Record<string, unknown> = { ...(a as Record<string, unknown>) };
    for (const [k, v] of Object.entries(b as Record<string, unknown>)) out[k] = k in out ? addStats(out[k], v) : v;
    return out;
  }
  return a === undefined ? b : a;
}

export function mergeStreamAnswers(answers: readonly unknown[], opts: LogQueryOptions): unknown {
  const parts = answers.map(streamsOf);
  const newestFirst = opts.direction === 'backward';
  // Streams by their label set as answered, which a pipeline may have rewritten (`| drop pod`,
  // `| label_format …`): streams of different parts can then share one, and Loki over the union
  // would answer their entries as one stream. So entries are united per label set, an entry
  // both parts hold (a stream both alternatives select) kept once, as Loki's merge keeps it.
  const streams = new Map<string, { stream: Record<string, unknown>; values: (readonly unknown[])[]; seen: Set<string> }>();
  for (const { result } of parts) {
    for (const s of result) {
      const key = labelSetString(s.stream);
      let into = streams.get(key);
      if (into === undefined) streams.set(key, (into = { stream: s.stream, values: [], seen: new Set() }));
      for (const v of s.values) {
        const id = JSON.stringify([v[0], v[1]]);
        if (into.seen.has(id)) continue;
        into.seen.add(id);
        into.values.push(v);
      }
    }
  }
  for (const s of streams.values()) {
    // Stable: entries with equal timestamps keep the order the parts gave them.
    s.values.sort((x, y) => {
      const a = BigInt(x[0] as string);
      const b = BigInt(y[0] as string);
      return a === b ? 0 : (a < b ? -1 : 1) * (newestFirst ? -1 : 1);
    });
  }
  const entries: { key: string; index: number; ts: bigint; value: readonly unknown[] }[] = [];
  for (const [key, s] of streams) s.values.forEach((value, index) => entries.push({ key, index, ts: BigInt(value[0] as string), value }));
  entries.sort((x, y) => {
    if (x.ts !== y.ts) return (x.ts < y.ts ? -1 : 1) * (newestFirst ? -1 : 1);
    if (x.key !== y.key) return compareCodePoints(x.key, y.key);
    return x.index - y.index;
  });
  const kept = new Map<string, (readonly unknown[])[]>();
  for (const e of entries.slice(0, opts.limit)) {
    let values = kept.get(e.key);
    if (values === undefined) kept.set(e.key, (values = []));
    values.push(e.value);
  }
  const result = [...kept].map(([key, values]) => ({ stream: streams.get(key)!.stream, values }));
  const first = (parts[0] as { data: Record<string, unknown> }).data;
  let stats: unknown = undefined;
  for (const { data } of parts) stats = addStats(stats, data['stats']);
  // Loki's warnings (a limit reached, a partial answer): every part's, once each; a part's is not lost in the merge.
  const warnings = new Set<string>();
  for (const a of answers) {
    const w = (a as { warnings?: unknown }).warnings;
    if (w === undefined || w === null) continue;
    if (!Array.isArray(w) || !w.every((x) => typeof x === 'string')) throw unreadable();
    for (const x of w as string[]) warnings.add(x);
  }
  return { status: 'success', data: { ...first, resultType: 'streams', result, ...(stats === undefined ? {} : { stats }) }, ...(warnings.size > 0 ? { warnings: [...warnings] } : {}) };
}
