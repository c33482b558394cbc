// Tempo routes whose answers the gateway filters: what reaches Tempo from a
// restricted subject's parameters, and what of Tempo's answer reaches the client.
import { describe, expect, it } from 'vitest';
import { FormParams } from '../../src/backends/form-params.ts';
import { enforceParams, MAX_RECEIVED_PARAMETERS } from '../../src/backends/params.ts';
import { tempoRoutes } from '../../src/backends/tempo.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { DEFAULT_LIMITS } from '../../src/rewrite/rewriter.ts';

const route = (endpoint: string) => tempoRoutes.routes.find((r) => r.endpoint === endpoint)!;
const teamA: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=~', value: 'team-a-.*' }]];

describe('trace by id: only the time range is forwarded for restricted subjects', () => {
  // Newer Tempo evaluates a trace-by-id `q` over every span of the trace (keeping matched spans' ancestors, PARTIAL status):
  // a probe of other teams' span attributes.
  it.each(['trace_by_id', 'trace_by_id_v2'])('%s', (endpoint) => {
    const sent = () => new URLSearchParams('start=1&end=2&q=%7B+span.card.last4+%3D~+%224.*%22+%7D&keep_hierarchy=false&mode=all&span_pruning=true&span_pruning_min_spans=2');
    expect([...enforceParams(route(endpoint), sent(), teamA, DEFAULT_LIMITS, 'traceql')]).toEqual([
      ['start', '1'],
      ['end', '2'],
      // v2: Tempo's read-time span pruning asked off (its summaries count similar spans of the whole trace).
      ...(endpoint === 'trace_by_id_v2' ? [['span_pruning', 'false']] : []),
    ]);
    // Unrestricted subjects get Tempo's own behaviour.
    expect([...enforceParams(route(endpoint), sent(), undefined, DEFAULT_LIMITS, 'traceql')].map(([k]) => k)).toEqual(['start', 'end', 'q', 'keep_hierarchy', 'mode', 'span_pruning', 'span_pruning_min_spans']);
  });
});

describe('many parameters', () => {
  it('the parameters outside the allowed ones go in one pass, as with URLSearchParams (FormParams.keepOnly)', () => {
    // 9 000 distinct names: a delete per name walked every pair each time (quadratic; 40 000 took 6 s).
    const text = `start=1&${Array.from({ length: 9000 }, (_, i) => `k${i}=x`).join('&')}&end=2&k5=y`;
    for (const endpoint of ['trace_by_id', 'trace_by_id_v2']) {
      const form = enforceParams(route(endpoint), new FormParams(text), teamA, DEFAULT_LIMITS, 'traceql');
      expect(form.size).toBe(endpoint === 'trace_by_id_v2' ? 3 : 2);
      expect([...form]).toEqual([...enforceParams(route(endpoint), new URLSearchParams(text), teamA, DEFAULT_LIMITS, 'traceql')]);
    }
  });

  it('a request with more parameters than Go parses (10 000) is refused before any work on them', () => {
    const text = Array.from({ length: MAX_RECEIVED_PARAMETERS + 1 }, (_, i) => `k${i}=`).join('&');
    expect(() => enforceParams(route('trace_by_id'), new FormParams(text), teamA, DEFAULT_LIMITS, 'traceql')).toThrow(/10001 parameters; at most 10000 are accepted/);
    expect(() => enforceParams(route('trace_by_id'), new FormParams(text), undefined, DEFAULT_LIMITS, 'traceql')).toThrow(/10001 parameters/);
  });
});

describe('search: serviceStats (counted over the whole trace, other teams\' services included) and metrics (the whole tenant\'s) are left out', () => {
  const filter = route('search').responseFilter!;
  it('per trace; each trace otherwise as Tempo wrote it, known fields only; the answer rebuilt as {traces}', () => {
    const body = {
      traces: [
        {
          traceID: 'a1',
          rootServiceName: 'web',
          spanSets: [{ spans: [{ spanID: 's1' }], matched: 1 }],
          serviceStats: { web: { spanCount: 2 }, 'payments-secret': { spanCount: 7, errorCount: 3 } },
        },
        { traceID: 'a2', rootServiceName: 'web', rootTraceName: 'GET /', startTimeUnixNano: '1', durationMs: 3, spanSet: { spans: [], matched: 0 }, futureWholeTraceStat: { 'payments-secret': 1 } },
      ],
      metrics: { inspectedTraces: 2 },
    };
    const out = filter(body, { policy: teamA, pathParams: {} });
    expect(out).toEqual({
      traces: [
        { traceID: 'a1', rootServiceName: 'web', spanSets: [{ spans: [{ spanID: 's1' }], matched: 1 }] },
        { traceID: 'a2', rootServiceName: 'web', rootTraceName: 'GET /', startTimeUnixNano: '1', durationMs: 3, spanSet: { spans: [], matched: 0 } },
      ],
    });
    expect(JSON.stringify(out)).not.toContain('payments-secret');
    // No traces: an empty list, nothing else relayed.
    expect(filter({ metrics: { totalBlockBytes: '123456' }, other: 'x' }, { policy: teamA, pathParams: {} })).toEqual({ traces: [] });
    expect(filter({ traces: null }, { policy: teamA, pathParams: {} })).toEqual({ traces: [] });
  });
  it('an answer of another shape is not relayed', () => {
    expect(() => filter({ traces: 'x' }, { policy: teamA, pathParams: {} })).toThrow(/could not be read/);
    expect(() => filter([], { policy: teamA, pathParams: {} })).toThrow(/could not be read/);
    expect(() => filter({ traces: ['x'] }, { policy: teamA, pathParams: {} })).toThrow(/could not be read/);
  });
});

describe('search under refuseTraceLevelIntrinsics: facts Tempo computes over the whole trace are left out or recomputed from the spans shown', () => {
  const filter = route('search').responseFilter!;
  const on = { policy: teamA, pathParams: {}, refuseTraceLevelIntrinsics: true };
  const span = (spanID: string, start: string, dur?: string) => ({ spanID, name: 'op', startTimeUnixNano: start, ...(dur === undefined ? {} : { durationNanos: dur }), attributes: [] });
  const trace = {
    traceID: 'a1',
    // Another team's root span: its service and name, the whole trace's start and duration.
    rootServiceName: 'payments-secret',
    rootTraceName: 'POST /charge-secret',
    startTimeUnixNano: '1700000000000000000',
    durationMs: 98765,
    spanSet: { spans: [span('s2', '1700000001500000000', '250000000')], matched: 1 },
    spanSets: [
      { spans: [span('s2', '1700000001500000000', '250000000'), span('s3', '1700000001000000000', '100000000')], matched: 2 },
      { spans: [span('s4', '1700000001200000000', '900000000')], matched: 1 },
    ],
    serviceStats: { 'payments-secret': { spanCount: 7 } },
  };
  it('root service and span name left out; start and duration those of the matched spans (earliest start, to the latest end)', () => {
    const out = filter({ traces: [trace] }, on) as { traces: Record<string, unknown>[] };
    expect(out.traces).toEqual([{ traceID: 'a1', spanSet: trace.spanSet, spanSets: trace.spanSets, startTimeUnixNano: '1700000001000000000', durationMs: 1100 }]);
    expect(JSON.stringify(out)).not.toMatch(/secret|98765|1700000000000000000/);
  });
  it('whole milliseconds, none when 0 (as Tempo leaves zero values out); no span with a start: neither field', () => {
    const small = { traceID: 'a2', rootServiceName: 'x', spanSets: [{ spans: [span('s1', '5', '999999'), span('s2', '6')], matched: 2 }] };
    expect(filter({ traces: [small] }, on)).toEqual({ traces: [{ traceID: 'a2', spanSets: small.spanSets, startTimeUnixNano: '5' }] });
    const odd = { traceID: 'a3', durationMs: 5, startTimeUnixNano: '9', spanSets: [{ spans: [{ spanID: 's1' }, span('s2', 'x'), span('s3', '0'), 'junk'], matched: 1 }, null], spanSet: 'junk' };
    expect(filter({ traces: [odd] }, on)).toEqual({ traces: [{ traceID: 'a3', spanSets: odd.spanSets, spanSet: 'junk' }] });
    expect(filter({ traces: [{ traceID: 'a4', startTimeUnixNano: '9', durationMs: 5 }] }, on)).toEqual({ traces: [{ traceID: 'a4' }] });
    // Numbers are read too (Tempo writes uint64 as strings); 1 ms and more is kept.
    expect(filter({ traces: [{ traceID: 'a5', spanSets: [{ spans: [{ spanID: 's', startTimeUnixNano: 1000, durationNanos: 2500000 }] }] }] }, on)).toMatchObject({
      traces: [{ startTimeUnixNano: '1000', durationMs: 2 }],
    });
  });
  it('off (the default): the trace-level fields are relayed as Tempo wrote them', () => {
    expect(filter({ traces: [trace] }, { policy: teamA, pathParams: {} })).toEqual({
      traces: [{ traceID: 'a1', rootServiceName: 'payments-secret', rootTraceName: 'POST /charge-secret', startTimeUnixNano: '1700000000000000000', durationMs: 98765, spanSet: trace.spanSet, spanSets: trace.spanSets }],
    });
  });
  it('an answer of another shape is still not relayed', () => {
    expect(() => filter({ traces: ['x'] }, on)).toThrow(/could not be read/);
  });
});

describe('TraceQL metrics: the answer\'s metrics (blocks, bytes and spans inspected: the whole tenant\'s) are left out', () => {
  it.each(['metrics_query_range', 'metrics_query'])('%s: rebuilt from series, status and message', (endpoint) => {
    const filter = route(endpoint).responseFilter!;
    const series = [{ labels: [{ key: 'resource.service.name', value: { stringValue: 'web' } }], samples: [{ timestampMs: '1', value: 2 }] }];
    const body = { series, metrics: { inspectedBytes: '987654321', inspectedSpans: '42', totalBlocks: 13 }, status: 'PARTIAL', message: 'limit reached', extra: 'x' };
    expect(filter(body, { policy: teamA, pathParams: {} })).toEqual({ series, status: 'PARTIAL', message: 'limit reached' });
    expect(filter({ metrics: { inspectedBytes: '1' } }, { policy: teamA, pathParams: {} })).toEqual({ series: [] });
    expect(() => filter({ series: 'x' }, { policy: teamA, pathParams: {} })).toThrow(/could not be read/);
    expect(() => filter([series], { policy: teamA, pathParams: {} })).toThrow(/could not be read/);
  });
  // Tempo's status/message say the series limit was reached (frontend combiner, queriers' per-block counts): series of the
  // query Tempo ran, which for a restricted subject is the rewritten one (the team's condition in every spanset filter), so
  // the count never includes other teams' series; the text is fixed, with the limit (a tenant setting or the request's max_series).
  it.each(['metrics_query_range', 'metrics_query'])('%s: status and message describe the rewritten (team-restricted) query, relayed', (endpoint) => {
    const sent = new URLSearchParams({ q: '{} | rate() by (resource.service.name)', max_series: '2' });
    const forwarded = new URLSearchParams([...enforceParams(route(endpoint), sent, teamA, DEFAULT_LIMITS, 'traceql')]);
    expect(forwarded.get('q')).toBe('{ resource.k8s.namespace.name =~ "^(?s:team-a-.*)$" } | rate() by (resource.service.name)');
    expect(forwarded.get('max_series')).toBe('2');
    const message = 'Response exceeds maximum series limit of 2, a partial response is returned. Warning: the accuracy of each individual value is not guaranteed.';
    const series = [{ labels: [{ key: 'resource.service.name', value: { stringValue: 'web' } }], samples: [] }];
    expect(route(endpoint).responseFilter!({ series, status: 'PARTIAL', message }, { policy: teamA, pathParams: {} })).toEqual({ series, status: 'PARTIAL', message });
  });
});
