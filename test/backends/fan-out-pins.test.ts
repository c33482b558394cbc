// Every route that asks the upstream once per policy alternative and merges the
// answers must fix, once for all parts, the time the upstream would otherwise
// take as its own "now" per request; else the parts answer for instants (or
// windows) milliseconds apart and their union is of no single moment.
import { describe, expect, it } from 'vitest';
import { FormParams } from '../../src/backends/form-params.ts';
import { lokiRoutes } from '../../src/backends/loki.ts';
import { prometheusRoutes } from '../../src/backends/prometheus.ts';
import { tempoRoutes } from '../../src/backends/tempo.ts';

const NOW_MS = 1_700_000_000_123;
/** The parameter each backend reads as "now" when absent, per endpoint, and how it is written. */
/** null: the endpoint has no "now" of its own (Tempo's tag APIs without start/end read the ingesters' recent data, not a window ending now). */
const EXPECTED: Record<string, Record<string, [param: string, value: string] | null>> = {
  prometheus: { query: ['time', '1700000000.123'] },
  loki: {
    query: ['time', '1700000000123000000'],
    query_range: ['end', '1700000000123000000'],
    labels: ['end', '1700000000123000000'],
    label_values: ['end', '1700000000123000000'],
    index_stats: ['end', '1700000000123000000'],
    index_volume: ['end', '1700000000123000000'],
  },
  tempo: { search_tags_v2: null, search_tag_values_v2: null },
};

describe('fan-out routes fix "now" once for all parts', () => {
  for (const table of [prometheusRoutes, lokiRoutes, tempoRoutes]) {
    const merged = table.routes.filter((r) => r.fanOut?.merge !== undefined);
    it(`${table.kind}: exactly the expected routes fan out and merge`, () => {
      expect(merged.map((r) => r.endpoint).sort()).toEqual(Object.keys(EXPECTED[table.kind]!).sort());
    });
    const pinned = merged.filter((r) => EXPECTED[table.kind]![r.endpoint] !== null);
    const unpinned = merged.filter((r) => EXPECTED[table.kind]![r.endpoint] === null);
    if (unpinned.length > 0) {
      it.each(unpinned.map((r) => [r.endpoint, r] as const))(`${table.kind} %s: no instant of its own, so nothing is pinned`, (_endpoint, route) => {
        expect(route.fanOut!.pin).toBeUndefined();
      });
    }
    if (pinned.length > 0) it.each(pinned.map((r) => [r.endpoint, r] as const))(`${table.kind} %s: the default instant is set when absent or empty, a given one kept`, (endpoint, route) => {
      const [param, value] = EXPECTED[table.kind]![endpoint]!;
      const pin = route.fanOut!.pin!;
      expect(pin, `${endpoint} has no pin`).toBeTypeOf('function');
      for (const initial of ['query=x', `query=x&${param}=`]) {
        const p = new FormParams(initial);
        pin(p, NOW_MS);
        expect(p.getAll(param)).toEqual([value]);
      }
      const given = new FormParams(`query=x&${param}=1600000000`);
      pin(given, NOW_MS);
      expect(given.getAll(param)).toEqual(['1600000000']);
    });
  }
});
