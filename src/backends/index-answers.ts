/**
 * Merging the answers of one Loki index request sent once per policy
 * alternative (RouteSpec.fanOut), where the alternatives select disjoint
 * streams (rewriteLogQLDisjointParts): `index/stats` and `index/volume` are
 * sums over the selected streams, so the answer for the union is the sum of
 * the parts. Pure; no I/O. An answer of another shape throws (→ 502): a part
 * that cannot be read is never left out of a total.
 */
import { GatewayError, QueryError } from '../errors.ts';
import { labelSetString } from './label-set.ts';
import { compareCodePoints } from './list-answers.ts';
import type { Params } from './form-params.ts';

const unreadable = (): GatewayError => new GatewayError('upstream_error', 'upstream answer could not be read');

/** `index/stats`: Loki's `{streams, chunks, bytes, entries}` counters. */
export interface StatsAnswer {
  streams: number;
  chunks: number;
  bytes: number;
  entries: number;
}

const STATS_FIELDS = ['streams', 'chunks', 'bytes', 'entries'] as const;

/**
 * The field-wise sum. Only the four counters are known to be additive, so an
 * answer with any other field (a Loki version that added one) is not merged.
 */
export function mergeStatsAnswers(answers: readonly unknown[]): StatsAnswer {
  const sum: StatsAnswer = { streams: 0, chunks: 0, bytes: 0, entries: 0 };
  for (const a of answers) {
    if (typeof a !== 'object' || a === null || Array.isArray(a)) throw unreadable();
    for (const [k, v] of Object.entries(a)) {
      if (!(STATS_FIELDS as readonly string[]).includes(k) || !Number.isSafeInteger(v) || (v as number) < 0) throw unreadable();
      sum[k as keyof StatsAnswer] += v as number;
    }
  }
  for (const k of STATS_FIELDS) if (!Number.isSafeInteger(sum[k])) throw unreadable();
  return sum;
}

interface VolumeSample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

export interface VolumeAnswer {
  readonly status: 'success';
  readonly data: { readonly resultType: 'vector'; readonly result: VolumeSample[] };
}

function samplesOf(a: unknown): VolumeSample[] {
  const o = a as { status?: unknown; data?: { resultType?: unknown; result?: unknown } } | null;
  if (o?.status !== 'success' || o.data?.resultType !== 'vector' || !Array.isArray(o.data.result)) throw unreadable();
  for (const s of o.data.result as unknown[]) {
    const { metric, value } = (s ?? {}) as { metric?: unknown; value?: unknown };
    if (typeof metric !== 'object' || metric === null || Array.isArray(metric) || !Object.values(metric).every((v) => typeof v === 'string')) throw unreadable();
    if (!Array.isArray(value) || value.length !== 2 || typeof value[0] !== 'number' || typeof value[1] !== 'string' || !/^\d{1,30}$/.test(value[1])) throw unreadable();
  }
  return o.data.result as VolumeSample[];
}

/** Loki's volume `limit` when absent, empty or 0 (loghttp volumeLimit, seriesvolume.DefaultLimit). */
export const LOKI_VOLUME_DEFAULT_LIMIT = 100;

/**
 * `index/volume`: Loki's own merge of volume answers (seriesvolume.Merge):
 * equal label sets added up (exactly, as integers), largest first, ties in
 * label-set order, the first `limit`. For disjoint parts that is the union's
 * answer unless a part was cut at the limit: a part that returned `limit`
 * series may have left out the rest of a label set another part counts, so
 * such a request is refused with a 400 naming the way out.
 */
export function mergeVolumeAnswers(answers: readonly unknown[], params: Params): VolumeAnswer {
  const limitText = params.get('limit') ?? '';
  // Go's strconv.Atoi; Loki itself refuses a negative or unreadable limit (that 400 is relayed before any merge).
  const asked = limitText === '' ? 0 : /^[+-]?\d{1,9}$/.test(limitText) ? Number(limitText) : -1;
  if (asked < 0) throw unreadable();
  const limit = asked === 0 ? LOKI_VOLUME_DEFAULT_LIMIT : asked;
  const byLabelName = params.get('aggregateBy') === 'labels';
  const totals = new Map<string, { metric: Record<string, string>; ts: number; bytes: bigint }>();
  for (const a of answers) {
    const samples = samplesOf(a);
    if (samples.length >= limit) {
      throw new QueryError(
        'logql',
        `a volume over several policy alternatives is summed per alternative, and one alternative alone reached limit=${limit}, so the sum could miss part of a series; raise limit or narrow the selector to one alternative`,
        'rewrite_unsupported',
      );
    }
    for (const s of samples) {
      // Loki's name for a volume's series, which also orders equal volumes (seriesvolume.MapToVolumeResponse):
      // the label set, or with aggregateBy=labels the one label name (its metric is {name: ""}).
      const key = byLabelName ? Object.keys(s.metric).join(',') : labelSetString(s.metric);
      const t = totals.get(key);
      if (t === undefined) totals.set(key, { metric: s.metric, ts: s.value[0], bytes: BigInt(s.value[1]) });
      else {
        t.bytes += BigInt(s.value[1]);
        t.ts = Math.max(t.ts, s.value[0]);
      }
    }
  }
  const rows = [...totals.entries()].sort((x, y) => (x[1].bytes === y[1].bytes ? compareCodePoints(x[0], y[0]) : x[1].bytes > y[1].bytes ? -1 : 1));
  return {
    status: 'success',
    data: { resultType: 'vector', result: rows.slice(0, limit).map(([, t]) => ({ metric: t.metric, value: [t.ts, t.bytes.toString()] })) },
  };
}
