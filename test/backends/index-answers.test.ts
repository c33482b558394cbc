import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FormParams } from '../../src/backends/form-params.ts';
import { mergeStatsAnswers, mergeVolumeAnswers } from '../../src/backends/index-answers.ts';
import { QueryError } from '../../src/errors.ts';

const params = (s: string) => new FormParams(s);

describe('mergeStatsAnswers', () => {
  it('adds the counters up', () => {
    expect(
      mergeStatsAnswers([
        { streams: 2, chunks: 5, bytes: 1000, entries: 40 },
        { streams: 1, chunks: 2, bytes: 300, entries: 7 },
        { streams: 0, chunks: 0, bytes: 0, entries: 0 },
      ]),
    ).toEqual({ streams: 3, chunks: 7, bytes: 1300, entries: 47 });
    // Loki leaves zero counters out of its JSON.
    expect(mergeStatsAnswers([{ bytes: 5 }, {}])).toEqual({ streams: 0, chunks: 0, bytes: 5, entries: 0 });
  });

  it('an answer of another shape, or with a field not known to be additive, fails the whole (→ 502)', () => {
    for (const bad of [null, [], 'x', { streams: -1 }, { streams: 1.5 }, { streams: '1' }, { streams: 1, ratio: 2 }, { bytes: Number.MAX_SAFE_INTEGER + 1 }]) {
      expect(() => mergeStatsAnswers([{ streams: 1 }, bad])).toThrow(/could not be read/);
    }
    expect(() => mergeStatsAnswers([{ bytes: Number.MAX_SAFE_INTEGER }, { bytes: 1 }])).toThrow(/could not be read/);
  });
});

const vector = (rows: [Record<string, string>, string][], ts = 1700000000) => ({
  status: 'success',
  data: { resultType: 'vector', result: rows.map(([metric, v]) => ({ metric, value: [ts, v] })) },
});

describe('mergeVolumeAnswers', () => {
  it('adds equal label sets up (whatever the key order), largest first, ties in label order', () => {
    const out = mergeVolumeAnswers(
      [
        vector([
          [{ service_name: 'api', level: 'info' }, '700'],
          [{ service_name: 'web' }, '300'],
        ]),
        vector([
          [{ level: 'info', service_name: 'api' }, '250'],
          [{ service_name: 'db' }, '300'],
          [{ service_name: 'zz' }, '1'],
        ]),
      ],
      params('limit=4'),
    );
    expect(out.data.result.slice(0, 3)).toEqual([
      { metric: { service_name: 'api', level: 'info' }, value: [1700000000, '950'] },
      { metric: { service_name: 'db' }, value: [1700000000, '300'] },
      { metric: { service_name: 'web' }, value: [1700000000, '300'] },
    ]);
  });

  it('aggregateBy=labels: series are label names ({name: ""}), equal volumes ordered by the name as Loki orders them', () => {
    // "a" before "a1" in Go; as label sets `{a1=""}` would sort before `{a=""}`.
    const part = vector([[{ a1: '' }, '5'], [{ a: '' }, '5']]);
    const out = mergeVolumeAnswers([part, vector([])], params('aggregateBy=labels&limit=10'));
    expect(out.data.result.map((r) => Object.keys(r.metric)[0])).toEqual(['a', 'a1']);
    expect(mergeVolumeAnswers([part, vector([])], params('limit=10')).data.result.map((r) => Object.keys(r.metric)[0])).toEqual(['a1', 'a']);
  });

  it('sums beyond 2^53 exactly', () => {
    const out = mergeVolumeAnswers([vector([[{ a: 'x' }, '9007199254740993']]), vector([[{ a: 'x' }, '9007199254740993']])], params('limit=5'));
    expect(out.data.result[0]?.value[1]).toBe('18014398509481986');
  });

  it("limit as Loki reads it (absent, empty or 0: 100); refused when a part reached it (the part may have cut a series short)", () => {
    const parts = [vector([[{ s: 'a' }, '1']]), vector([[{ s: 'b' }, '2']])];
    expect(() => mergeVolumeAnswers(parts, params('limit=1'))).toThrow(QueryError);
    expect(() => mergeVolumeAnswers(parts, params('limit=1'))).toThrow(/raise limit/);
    expect(mergeVolumeAnswers(parts, params('limit=2')).data.result).toHaveLength(2);
    expect(mergeVolumeAnswers(parts, params('limit=%2B2')).data.result).toHaveLength(2);
    for (const dflt of ['', 'limit=', 'limit=0']) expect(mergeVolumeAnswers(parts, params(dflt)).data.result).toHaveLength(2);
    const hundred = (k: string) => vector(Array.from({ length: 100 }, (_, i): [Record<string, string>, string] => [{ s: `${k}${i}` }, '1']));
    expect(() => mergeVolumeAnswers([hundred('a'), hundred('b')], params(''))).toThrow(/limit=100/);
    expect(mergeVolumeAnswers([hundred('a'), hundred('b')], params('limit=101')).data.result).toHaveLength(101);
    // Loki refuses these itself; were one to reach the merge, it is not guessed at.
    for (const bad of ['limit=-1', 'limit=x', 'limit=1.5']) expect(() => mergeVolumeAnswers(parts, params(bad))).toThrow(/could not be read/);
  });

  it('an answer of another shape fails the whole (→ 502)', () => {
    const good = vector([[{ s: 'a' }, '1']]);
    for (const bad of [
      null,
      { status: 'error' },
      { status: 'success', data: { resultType: 'matrix', result: [] } },
      vector([[{ s: 'a' }, '1.5']]),
      vector([[{ s: 'a' }, '-1']]),
      { status: 'success', data: { resultType: 'vector', result: [{ metric: { s: 1 }, value: [1, '1'] }] } },
      { status: 'success', data: { resultType: 'vector', result: [{ metric: { s: 'a' }, value: ['1', '1'] }] } },
    ]) {
      expect(() => mergeVolumeAnswers([good, bad], params('limit=10'))).toThrow(/could not be read/);
    }
  });

  it('equals the volume Loki computes over the union of disjoint parts whenever no part reached the limit (property)', () => {
    // Streams of two disjoint alternatives, each with a service and a byte count.
    const stream = fc.record({ part: fc.integer({ min: 0, max: 2 }), service: fc.constantFrom('api', 'web', 'db', 'é', '🚀'), bytes: fc.integer({ min: 0, max: 1000 }) });
    // Loki's volume over a set of streams, grouped by service: sums, largest first, the first `limit`.
    const volume = (streams: { service: string; bytes: number }[], limit: number): [string, number][] => {
      const by = new Map<string, number>();
      for (const s of streams) by.set(s.service, (by.get(s.service) ?? 0) + s.bytes);
      // Loki orders equal volumes by the label set's name, `{service_name="…"}`, in Go's (byte) order.
      const key = (service: string) => Buffer.from(`{service_name=${JSON.stringify(service)}}`, 'utf8');
      return [...by].sort((x, y) => y[1] - x[1] || Buffer.compare(key(x[0]), key(y[0]))).slice(0, limit);
    };
    fc.assert(
      fc.property(fc.array(stream, { maxLength: 30 }), fc.integer({ min: 1, max: 6 }), (streams, limit) => {
        const parts = [0, 1, 2].map((p) => volume(streams.filter((s) => s.part === p), limit));
        const answers = parts.map((rows) => vector(rows.map(([service, b]) => [{ service_name: service }, String(b)])));
        if (parts.some((rows) => rows.length >= limit)) {
          expect(() => mergeVolumeAnswers(answers, params(`limit=${limit}`))).toThrow(/raise limit/);
          return;
        }
        const merged = mergeVolumeAnswers(answers, params(`limit=${limit}`)).data.result.map((r) => [r.metric.service_name, Number(r.value[1])]);
        const union = volume(streams, limit);
        expect(merged).toEqual(union);
      }),
      { numRuns: 500 },
    );
  });
});
