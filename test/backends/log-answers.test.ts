import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FormParams } from '../../src/backends/form-params.ts';
import { logQueryOptions, mergeStreamAnswers, type LogQueryOptions } from '../../src/backends/log-answers.ts';

/** A stream as stored: its labels and its entries' timestamps (ns), in time order. */
interface Stored {
  labels: Record<string, string>;
  ts: bigint[];
}

/**
 * Loki, simulated: the first `limit` entries of the selected streams in the query's direction, grouped by
 * stream as answered: `relabel` is the query's pipeline on the stream labels (`| drop pod`), and streams
 * it gives the same labels are one stream in the answer.
 */
function loki(store: readonly Stored[], selected: ReadonlySet<number>, opts: LogQueryOptions, relabel: (l: Record<string, string>) => Record<string, string> = (l) => l): unknown {
  const entries: { s: number; ts: bigint }[] = [];
  for (const i of selected) for (const ts of store[i]!.ts) entries.push({ s: i, ts });
  entries.sort((a, b) => (a.ts === b.ts ? 0 : a.ts < b.ts ? -1 : 1) * (opts.direction === 'backward' ? -1 : 1));
  const byStream = new Map<string, { stream: Record<string, string>; values: [string, string][] }>();
  for (const e of entries.slice(0, opts.limit)) {
    const stream = relabel(store[e.s]!.labels);
    const key = JSON.stringify(Object.entries(stream).sort());
    const into = byStream.get(key) ?? { stream, values: [] };
    into.values.push([String(e.ts), `line ${e.s} ${e.ts}`]);
    byStream.set(key, into);
  }
  return { status: 'success', data: { resultType: 'streams', result: [...byStream.values()], stats: { summary: { totalEntriesReturned: entries.length } } } };
}

/** Streams as a set: labels JSON → values, order-independent. */
const asSet = (answer: unknown): Map<string, unknown> =>
  new Map(((answer as { data: { result: { stream: Record<string, string>; values: unknown }[] } }).data.result).map((s) => [JSON.stringify(Object.entries(s.stream).sort()), s.values]));

describe('mergeStreamAnswers', () => {
  it('the parts\' answers merge into what Loki answers over the union of their streams (limit, direction, overlapping alternatives)', () => {
    // Distinct timestamps across all entries, so the cut is unambiguous.
    const store = fc.array(fc.array(fc.nat(1_000_000), { maxLength: 12 }), { minLength: 1, maxLength: 8 }).map((tss) => {
      let n = 0n;
      return tss.map((ts, i): Stored => ({ labels: { app: `a${i % 3}`, pod: `p${i}` }, ts: ts.map((t) => BigInt(t) * 1000n + (n += 1n)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) }));
    });
    fc.assert(
      fc.property(store, fc.array(fc.array(fc.nat(7), { maxLength: 8 }), { minLength: 2, maxLength: 4 }), fc.integer({ min: 1, max: 30 }), fc.constantFrom<'backward' | 'forward'>('backward', 'forward'), (st, picks, limit, direction) => {
        const opts = { limit, direction };
        const parts = picks.map((p) => new Set(p.filter((i) => i < st.length)));
        const union = new Set(parts.flatMap((p) => [...p]));
        const merged = mergeStreamAnswers(parts.map((p) => loki(st, p, opts)), opts);
        expect(asSet(merged)).toEqual(asSet(loki(st, union, opts)));
      }),
      { numRuns: 1500 },
    );
  });

  it('streams of different parts that the pipeline gave the same labels (| drop pod): their entries united, none dropped', () => {
    const dropPod = ({ pod: _pod, ...rest }: Record<string, string>) => rest;
    const store = fc.array(fc.array(fc.nat(1_000_000), { maxLength: 12 }), { minLength: 1, maxLength: 8 }).map((tss) => {
      let n = 0n;
      return tss.map((ts, i): Stored => ({ labels: { app: `a${i % 2}`, pod: `p${i}` }, ts: ts.map((t) => BigInt(t) * 1000n + (n += 1n)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) }));
    });
    fc.assert(
      fc.property(store, fc.array(fc.array(fc.nat(7), { maxLength: 8 }), { minLength: 2, maxLength: 4 }), fc.integer({ min: 1, max: 30 }), fc.constantFrom<'backward' | 'forward'>('backward', 'forward'), (st, picks, limit, direction) => {
        const opts = { limit, direction };
        const parts = picks.map((p) => new Set(p.filter((i) => i < st.length)));
        const union = new Set(parts.flatMap((p) => [...p]));
        const merged = mergeStreamAnswers(parts.map((p) => loki(st, p, opts, dropPod)), opts);
        expect(asSet(merged)).toEqual(asSet(loki(st, union, opts, dropPod)));
      }),
      { numRuns: 1000 },
    );
    // The plain case: {app="a"} from two alternatives' pods, one entry each.
    const part = (ts: string, line: string) => ({ status: 'success', data: { resultType: 'streams', result: [{ stream: { app: 'a' }, values: [[ts, line]] }] } });
    const out = mergeStreamAnswers([part('2', 'from eu'), part('1', 'from us')], { limit: 10, direction: 'backward' }) as { data: { result: unknown[] } };
    expect(out.data.result).toEqual([{ stream: { app: 'a' }, values: [['2', 'from eu'], ['1', 'from us']] }]);
  });

  it('keeps the first part\'s other fields, adds up the stats, and refuses answers of another shape (→ 502)', () => {
    const part = (ts: string, stats: number) => ({ status: 'success', data: { resultType: 'streams', encodingFlags: ['categorize-labels'], result: [{ stream: { a: '1' }, values: [[ts, 'x', { structuredMetadata: { k: 'v' } }]] }], stats: { summary: { n: stats } } } });
    const out = mergeStreamAnswers([part('2', 1), part('1', 2)], { limit: 10, direction: 'backward' }) as { data: Record<string, unknown> };
    expect(out.data['encodingFlags']).toEqual(['categorize-labels']);
    expect(out.data['stats']).toEqual({ summary: { n: 3 } });
    // One label set from both parts, different entries: both kept, newest first.
    expect(out.data['result']).toEqual([{ stream: { a: '1' }, values: [['2', 'x', { structuredMetadata: { k: 'v' } }], ['1', 'x', { structuredMetadata: { k: 'v' } }]] }]);
    // An entry both parts hold (the same time and line: one stream both alternatives select) is kept once, as the first part gave it.
    const again = mergeStreamAnswers([part('2', 1), part('2', 2)], { limit: 10, direction: 'backward' }) as { data: Record<string, unknown> };
    expect(again.data['result']).toEqual([{ stream: { a: '1' }, values: [['2', 'x', { structuredMetadata: { k: 'v' } }]] }]);
    for (const bad of [null, { status: 'error' }, { status: 'success', data: { resultType: 'matrix', result: [] } }, { status: 'success', data: { resultType: 'streams', result: [{ stream: {}, values: [['x1', 'l']] }] } }]) {
      expect(() => mergeStreamAnswers([part('1', 1), bad], { limit: 10, direction: 'backward' })).toThrow(/could not be read/);
    }
  });

  it("every part's warnings reach the client, once each (a part's limit or partial answer is not lost in the merge)", () => {
    const part = (warnings?: unknown) => ({ status: 'success', data: { resultType: 'streams', result: [] }, ...(warnings === undefined ? {} : { warnings }) });
    const out = mergeStreamAnswers([part(['max entries limit reached']), part(), part(['partial answer', 'max entries limit reached'])], { limit: 10, direction: 'backward' }) as { warnings?: string[] };
    expect(out.warnings).toEqual(['max entries limit reached', 'partial answer']);
    expect('warnings' in (mergeStreamAnswers([part(), part()], { limit: 10, direction: 'backward' }) as object)).toBe(false);
    expect(() => mergeStreamAnswers([part('x'), part()], { limit: 10, direction: 'backward' })).toThrow(/could not be read/);
  });

  it('entries with equal timestamps at the cut: ordered by the streams\' label sets in Go\'s byte order, as Loki\'s frontend orders them', () => {
    // U+FFFF sorts before U+10000 in bytes (Go), after it in UTF-16 code units (JS `<`).
    const part = (app: string) => ({ status: 'success', data: { resultType: 'streams', result: [{ stream: { app }, values: [['5', `from ${app}`]] }] } });
    for (const direction of ['backward', 'forward'] as const) {
      for (const order of [['\u{10000}', '\u{ffff}'], ['\u{ffff}', '\u{10000}']]) {
        const out = mergeStreamAnswers(order.map(part), { limit: 1, direction }) as { data: { result: { stream: { app: string } }[] } };
        expect(out.data.result.map((r) => r.stream.app)).toEqual(['\u{ffff}']);
      }
      // Names first: {a="x", b="y"} before {a="x"} ("," < "}"), whatever the key order in the answer.
      const two = mergeStreamAnswers([part('x'), { status: 'success', data: { resultType: 'streams', result: [{ stream: { b: 'y', app: 'x' }, values: [['5', 'l']] }] } }], { limit: 1, direction });
      expect((two as { data: { result: { stream: Record<string, string> }[] } }).data.result[0]?.stream).toEqual({ b: 'y', app: 'x' });
    }
  });

  it('reads limit and direction as Loki does by default (100, backward)', () => {
    expect(logQueryOptions(new FormParams('query=x'))).toEqual({ limit: 100, direction: 'backward' });
    expect(logQueryOptions(new FormParams('limit=1000&direction=FORWARD'))).toEqual({ limit: 1000, direction: 'forward' });
  });
});
