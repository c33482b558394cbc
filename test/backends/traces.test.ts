import fc from 'fast-check';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import {
  filterTraceByIDResponseJson,
  filterTraceByIDResponseProto,
  filterTraceJson,
  filterTraceProto,
  filterTraceV1,
  filterTraceV2,
  PARTIAL_TRACE_MESSAGE,
  representationOf,
  spanAllowed,
  TRACE_NOT_FOUND,
} from '../../src/backends/traces.ts';
import type { Matcher, SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { tempoRoutes } from '../../src/backends/tempo.ts';
import {
  mixedTrace,
  spanNamesJson,
  spanNamesProto,
  spanObject,
  T,
  teamBOnlyTrace,
  traceByIdProto,
  traceJsonV1,
  traceJsonV2,
  traceProto,
  type AttrValue,
  type ResourceSpec,
} from './traces-fixtures.ts';

const teamA: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=~', value: 'team-a-.*' }]];
const attrs = (o: Record<string, string | null>) => new Map(Object.entries(o));
const one = (m: Matcher): SelectorPolicy => [[m]];

describe('spanAllowed: TraceQL semantics', () => {
  it('resource.* reads the resource, span.* the span', () => {
    expect(spanAllowed(teamA, attrs({ 'k8s.namespace.name': 'team-a-web' }), attrs({}))).toBe(true);
    expect(spanAllowed(teamA, attrs({}), attrs({ 'k8s.namespace.name': 'team-a-web' }))).toBe(false);
    const spanScoped = one({ name: 'span.http.method', op: '=', value: 'GET' });
    expect(spanAllowed(spanScoped, attrs({ 'http.method': 'GET' }), attrs({}))).toBe(false);
    expect(spanAllowed(spanScoped, attrs({}), attrs({ 'http.method': 'GET' }))).toBe(true);
  });

  it('unscoped .x reads the span first, then the resource', () => {
    const p = one({ name: '.tenant', op: '=', value: 'a' });
    expect(spanAllowed(p, attrs({ tenant: 'a' }), attrs({}))).toBe(true);
    expect(spanAllowed(p, attrs({}), attrs({ tenant: 'a' }))).toBe(true);
    // The span's own attribute takes precedence over the resource's.
    expect(spanAllowed(p, attrs({ tenant: 'a' }), attrs({ tenant: 'b' }))).toBe(false);
    expect(spanAllowed(p, attrs({ tenant: 'b' }), attrs({ tenant: 'a' }))).toBe(true);
    // …even when the span's value is not a string.
    expect(spanAllowed(p, attrs({ tenant: 'a' }), attrs({ tenant: null }))).toBe(false);
  });

  it('regexes are RE2 and fully anchored', () => {
    expect(spanAllowed(teamA, attrs({ 'k8s.namespace.name': 'xteam-a-web' }), attrs({}))).toBe(false);
    expect(spanAllowed(one({ name: 'resource.ns', op: '=~', value: 'a|b' }), attrs({ ns: 'ab' }), attrs({}))).toBe(false);
    expect(spanAllowed(one({ name: 'resource.ns', op: '!~', value: 'a|b' }), attrs({ ns: 'ab' }), attrs({}))).toBe(true);
    expect(spanAllowed(one({ name: 'resource.ns', op: '!~', value: 'a|b' }), attrs({ ns: 'b' }), attrs({}))).toBe(false);
  });

  it('a missing attribute satisfies no operator, != and !~ included (nil comparisons are false)', () => {
    for (const op of ['=', '!=', '=~', '!~'] as const) {
      expect(spanAllowed(one({ name: 'resource.secret', op, value: 'x' }), attrs({}), attrs({})), op).toBe(false);
      expect(spanAllowed(one({ name: 'resource.secret', op, value: '' }), attrs({}), attrs({})), op).toBe(false);
    }
    expect(spanAllowed(one({ name: 'resource.ns', op: '=~', value: '.*' }), attrs({}), attrs({}))).toBe(false);
  });

  it('non-string values (null here) and duplicated keys match nothing', () => {
    for (const op of ['=', '!=', '=~', '!~'] as const) expect(spanAllowed(one({ name: 'span.code', op, value: '200' }), attrs({}), attrs({ code: null })), op).toBe(false);
  });

  it('intrinsics, event/link/instrumentation scopes and unparseable names fail closed', () => {
    for (const name of ['name', 'span:name', 'trace:rootService', 'event.x', 'link.x', 'instrumentation.x', 'status', 'nonsense', 'parent.x', '']) {
      expect(spanAllowed(one({ name, op: '!=', value: 'zzz' }), attrs({ x: 'a', status: 'a', nonsense: 'a' }), attrs({ x: 'a' })), name).toBe(false);
    }
  });

  it('DNF: some group with all its matchers', () => {
    const p: SelectorPolicy = [
      [
        { name: 'resource.ns', op: '=', value: 'a' },
        { name: 'span.secret', op: '!=', value: 'true' },
      ],
      [{ name: 'resource.ns', op: '=', value: 'b' }],
    ];
    expect(spanAllowed(p, attrs({ ns: 'a' }), attrs({ secret: 'false' }))).toBe(true);
    expect(spanAllowed(p, attrs({ ns: 'a' }), attrs({ secret: 'true' }))).toBe(false);
    expect(spanAllowed(p, attrs({ ns: 'a' }), attrs({}))).toBe(false); // nil != "true" is false
    expect(spanAllowed(p, attrs({ ns: 'b' }), attrs({ secret: 'true' }))).toBe(true);
    expect(spanAllowed(p, attrs({ ns: 'c' }), attrs({}))).toBe(false);
  });
});

describe('protobuf: tempopb.Trace (v1)', () => {
  it('keeps only allowed spans, byte for byte; drops emptied scopes and resources', () => {
    const input = traceProto(mixedTrace);
    const out = filterTraceProto(input, teamA);
    expect(out.spans).toBe(2);
    expect(spanNamesProto(out.value)).toEqual(['a-root', 'a-db']);
    const decoded = T.Trace.toObject(T.Trace.decode(out.value), { longs: String, bytes: String }) as { resourceSpans: { resource: unknown; scopeSpans: unknown[]; schemaUrl: string }[] };
    expect(decoded.resourceSpans).toHaveLength(1);
    expect(decoded.resourceSpans[0]!.schemaUrl).toBe('https://resource-schema');
    expect(decoded.resourceSpans[0]!.scopeSpans).toHaveLength(1);
    // Each kept span is the upstream's encoding, verbatim (events, status, ids, everything).
    for (const name of ['a-root', 'a-db']) {
      const spanBytes = T.Span.encode(T.Span.fromObject(spanObject({ name, ...(name === 'a-root' ? { attrs: { 'http.method': 'GET' } } : {}) }))).finish();
      expect(Buffer.from(out.value).indexOf(Buffer.from(spanBytes))).toBeGreaterThan(0);
      expect(Buffer.from(input).indexOf(Buffer.from(spanBytes))).toBeGreaterThan(0);
    }
  });

  it('an allowed-everything policy returns the same bytes', () => {
    const input = traceProto(mixedTrace);
    const out = filterTraceProto(input, [[{ name: 'resource.service.name', op: '=~', value: '.+' }]]);
    expect(out.spans).toBe(5);
    expect(Buffer.from(out.value).equals(Buffer.from(input))).toBe(true);
  });

  it('no allowed span → nothing kept', () => {
    const out = filterTraceProto(traceProto(teamBOnlyTrace), teamA);
    expect(out.spans).toBe(0);
    expect(out.value.length).toBe(0);
  });

  it('span-level policies filter within one resource and scope', () => {
    const out = filterTraceProto(traceProto(mixedTrace), one({ name: 'span.http.method', op: '=', value: 'GET' }));
    expect(spanNamesProto(out.value)).toEqual(['a-root']);
  });

  it('non-string attribute values do not match string policies', () => {
    const typed = (v: AttrValue): ResourceSpec[] => [{ attrs: { ns: v }, scopes: [[{ name: 's' }]] }];
    for (const v of [{ int: 7 }, { bool: true }, { double: 7 }]) {
      expect(filterTraceProto(traceProto(typed(v)), one({ name: 'resource.ns', op: '=', value: '7' })).spans).toBe(0);
      expect(filterTraceProto(traceProto(typed(v)), one({ name: 'resource.ns', op: '!=', value: 'x' })).spans).toBe(0);
    }
    expect(filterTraceProto(traceProto(typed('7')), one({ name: 'resource.ns', op: '=', value: '7' })).spans).toBe(1);
  });

  it('reads the resource wherever it is on the wire, and merges repeated resource fields', () => {
    const rs = T.ResourceSpans.encode(T.ResourceSpans.fromObject({ scopeSpans: [{ spans: [spanObject({ name: 'late' })] }] })).finish();
    const resource = T.Resource.encode(T.Resource.fromObject({ attributes: [{ key: 'k8s.namespace.name', value: { stringValue: 'team-a-x' } }] })).finish();
    const tail = new protobuf.Writer().uint32((1 << 3) | 2).bytes(resource).finish();
    const rsLate = Buffer.concat([rs, tail]);
    const trace = new protobuf.Writer().uint32((1 << 3) | 2).bytes(rsLate).finish();
    expect(spanNamesProto(filterTraceProto(trace, teamA).value)).toEqual(['late']);
    // A second resource field adding the same key makes it ambiguous: fail closed.
    const dup = new protobuf.Writer().uint32((1 << 3) | 2).bytes(Buffer.concat([rsLate, tail])).finish();
    expect(filterTraceProto(dup, teamA).spans).toBe(0);
  });

  it('unknown fields are dropped; legacy instrumentation_library_spans (1000) is filtered like scope_spans', () => {
    const scope = T.ScopeSpans.encode(T.ScopeSpans.fromObject({ spans: [spanObject({ name: 'legacy-a' })] })).finish();
    const scopeB = T.ScopeSpans.encode(T.ScopeSpans.fromObject({ spans: [spanObject({ name: 'legacy-b', attrs: { mine: 'no' } })] })).finish();
    const resource = T.Resource.encode(T.Resource.fromObject({ attributes: [{ key: 'k8s.namespace.name', value: { stringValue: 'team-a-x' } }] })).finish();
    const rs = new protobuf.Writer()
      .uint32((1 << 3) | 2).bytes(resource)
      .uint32((1000 << 3) | 2).bytes(scope)
      .uint32((77 << 3) | 2).bytes(scopeB) // unknown: could hide anything
      .finish();
    const trace = new protobuf.Writer().uint32((1 << 3) | 2).bytes(rs).uint32((9 << 3) | 0).uint32(5).finish();
    const out = filterTraceProto(trace, teamA);
    expect(out.spans).toBe(1);
    expect(Buffer.from(out.value).indexOf(Buffer.from(scopeB))).toBe(-1);
    expect(Buffer.from(out.value).indexOf(Buffer.from(scope))).toBeGreaterThan(0);
  });

  it('malformed protobuf throws (the route answers 502)', () => {
    const good = traceProto(mixedTrace);
    expect(() => filterTraceProto(good.subarray(0, good.length - 3), teamA)).toThrow();
    expect(() => filterTraceProto(Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), teamA)).toThrow();
    expect(() => filterTraceProto(Uint8Array.from([0x08]), teamA)).toThrow();
  });

  it('a varint Go reads as another number than protobufjs\'s 32 bits (an over-long tag or length) throws', () => {
    const good = traceProto(mixedTrace);
    expect(() => filterTraceProto(good, teamA)).not.toThrow();
    // Field 1, LEN, spelt in 6 bytes (Go reads the same field; protobufjs' uint32 drops the sixth byte's
    // bits silently): refused rather than risk reading a field Tempo's and Grafana's decoders skip.
    const overlongTag = Buffer.concat([Uint8Array.from([0x8a, 0x80, 0x80, 0x80, 0x80, 0x00]), good.subarray(1)]);
    expect(() => filterTraceProto(overlongTag, teamA)).toThrow(/varint longer than 32 bits/);
    // Five bytes with bits past the 32nd: Go's field number is another one (or invalid).
    expect(() => filterTraceProto(Uint8Array.from([0x8a, 0x80, 0x80, 0x80, 0x10, 0x00]), teamA)).toThrow(/varint longer than 32 bits/);
  });
});

describe('protobuf: TraceByIDResponse (v2)', () => {
  it('a status that is not the PartialStatus enum (another wire type, JSON of another type) is not relayed', () => {
    const good = traceByIdProto(mixedTrace, 1);
    const bogusStatus = new protobuf.Writer().uint32((3 << 3) | 2).string('team-b-secret').finish();
    const out = filterTraceByIDResponseProto(Buffer.concat([good, bogusStatus]), teamA);
    expect(Buffer.from(out.value).includes(Buffer.from('team-b-secret'))).toBe(false);
    const json = filterTraceByIDResponseJson({ ...traceJsonV2(mixedTrace), status: { namespace: 'team-b-secret' } }, teamA);
    expect(JSON.stringify(json.value)).not.toContain('team-b-secret');
    expect(filterTraceByIDResponseJson({ ...traceJsonV2(mixedTrace), status: 'PARTIAL' }, teamA).value).toMatchObject({ status: 'PARTIAL' });
    const metrics = tempoRoutes.routes.find((r) => r.endpoint === 'metrics_query_range')?.responseFilter;
    const answer = metrics!({ series: [], status: { namespace: 'team-b-secret' }, message: ['team-b-secret'] }, { policy: teamA, pathParams: {} });
    expect(answer).toEqual({ series: [] });
    expect(metrics!({ series: [], status: 'PARTIAL', message: 'Response exceeds maximum series limit of 10' }, { policy: teamA, pathParams: {} })).toMatchObject({ status: 'PARTIAL' });
  });
  it('filters the trace; keeps the status, a message in the gateway\'s words; leaves out metrics (the whole trace\'s size)', () => {
    const tempoMessage = 'Trace exceeds maximum size of 5000000 bytes, a partial trace is returned; Trace was pruned by Tempo while serving this request';
    const out = filterTraceByIDResponseProto(traceByIdProto(mixedTrace, 1, tempoMessage), teamA);
    expect(out.spans).toBe(2);
    expect(spanNamesProto(out.value, true)).toEqual(['a-root', 'a-db']);
    const decoded = T.TraceByIDResponse.toObject(T.TraceByIDResponse.decode(out.value), { longs: Number }) as { status: number; message: string; metrics?: unknown };
    expect(decoded).toMatchObject({ status: 1, message: PARTIAL_TRACE_MESSAGE });
    expect(decoded.metrics).toBeUndefined();
    expect(Buffer.from(out.value).includes(Buffer.from('5000000'))).toBe(false);
    expect(T.TraceByIDResponse.decode(traceByIdProto(mixedTrace, 1, tempoMessage)).toJSON()).toHaveProperty('metrics');
    // COMPLETE without a message: nothing added.
    const complete = T.TraceByIDResponse.toObject(T.TraceByIDResponse.decode(filterTraceByIDResponseProto(traceByIdProto(mixedTrace), teamA).value)) as { status?: number; message?: string };
    expect(complete.message ?? '').toBe('');
  });
  it('withholdStatus (refuseTraceLevelIntrinsics): status and message left out (PARTIAL says the whole trace exceeds the size limit)', () => {
    const out = filterTraceByIDResponseProto(traceByIdProto(mixedTrace, 1, 'Trace exceeds maximum size of 5000000 bytes'), teamA, { withholdStatus: true });
    expect(spanNamesProto(out.value, true)).toEqual(['a-root', 'a-db']);
    const decoded = T.TraceByIDResponse.decode(out.value);
    expect(decoded.toJSON()).not.toHaveProperty('status');
    expect(decoded.toJSON()).not.toHaveProperty('message');
    // Only the trace field is on the wire.
    expect(Buffer.from(out.value).includes(Buffer.from('exceeds'))).toBe(false);
  });
  it('no allowed span → nothing kept', () => {
    expect(filterTraceByIDResponseProto(traceByIdProto(teamBOnlyTrace), teamA).spans).toBe(0);
    expect(filterTraceByIDResponseProto(new Uint8Array(), teamA).spans).toBe(0);
  });
});

describe('JSON', () => {
  it('v1 {"batches"}: allowed spans kept as they were, emptied scopes/resources dropped', () => {
    const input = traceJsonV1(mixedTrace);
    const out = filterTraceJson(input, teamA);
    expect(out.spans).toBe(2);
    expect(spanNamesJson(out.value)).toEqual(['a-root', 'a-db']);
    expect(out.value).toEqual({ batches: [input.batches[0]] });
  });

  it('v1 with resourceSpans and legacy instrumentationLibrarySpans; unknown keys dropped', () => {
    const [a, b] = traceJsonV1(mixedTrace).batches as Record<string, unknown>[];
    const legacyA = { resource: a!['resource'], instrumentationLibrarySpans: [{ instrumentationLibrary: { name: 'x' }, spans: (a!['scopeSpans'] as { spans: unknown[] }[])[0]!.spans }], secretSpans: [{}] };
    const out = filterTraceJson({ resourceSpans: [legacyA, b], extra: 1 }, teamA);
    expect(out.spans).toBe(2);
    expect(out.value).toEqual({ resourceSpans: [{ resource: a!['resource'], instrumentationLibrarySpans: legacyA.instrumentationLibrarySpans }] });
  });

  it('v1: non-string values never match; no allowed span → 0', () => {
    const body = { batches: [{ resource: { attributes: [{ key: 'k8s.namespace.name', value: { intValue: '5' } }] }, scopeSpans: [{ spans: [{ name: 'x' }] }] }] };
    expect(filterTraceJson(body, one({ name: 'resource.k8s.namespace.name', op: '!=', value: 'zzz' })).spans).toBe(0);
    expect(filterTraceJson(traceJsonV1(teamBOnlyTrace), teamA).spans).toBe(0);
    expect(filterTraceJson('nonsense', teamA).spans).toBe(0);
  });

  it('v2 {"trace", "status"}: trace filtered, status kept, a message in the gateway\'s words, metrics left out', () => {
    const input = { ...traceJsonV2(mixedTrace), status: 'PARTIAL', message: 'Trace exceeds maximum size of 5000000 bytes, a partial trace is returned', metrics: { inspectedBytes: '5' }, junk: true };
    const out = filterTraceByIDResponseJson(input, teamA);
    expect(out.spans).toBe(2);
    expect(spanNamesJson(out.value)).toEqual(['a-root', 'a-db']);
    expect(out.value).toMatchObject({ status: 'PARTIAL', message: PARTIAL_TRACE_MESSAGE });
    expect(out.value).not.toHaveProperty('junk');
    expect(out.value).not.toHaveProperty('metrics');
    expect(filterTraceByIDResponseJson({ status: 'COMPLETE' }, teamA).spans).toBe(0);
    // No message, an empty one, or one that is not a string: none relayed.
    for (const message of [undefined, '', 7, { text: 'x' }]) expect(filterTraceByIDResponseJson({ ...traceJsonV2(mixedTrace), message }, teamA).value).not.toHaveProperty('message');
    // withholdStatus: neither.
    const withheld = filterTraceByIDResponseJson(input, teamA, { withholdStatus: true });
    expect(spanNamesJson(withheld.value)).toEqual(['a-root', 'a-db']);
    expect(Object.keys(withheld.value)).toEqual(['trace']);
  });
});

describe('route filters', () => {
  const ctx = { policy: teamA, pathParams: { traceId: 'abc' } };
  it('protobuf in → protobuf out; JSON in → JSON out', () => {
    const p = filterTraceV2(traceByIdProto(mixedTrace), 'application/protobuf', ctx);
    expect(p.status).toBe(200);
    expect(p.contentType).toBe('application/protobuf');
    expect(spanNamesProto(p.body as Uint8Array, true)).toEqual(['a-root', 'a-db']);
    const j = filterTraceV1(Buffer.from(JSON.stringify(traceJsonV1(mixedTrace))), 'application/json; charset=utf-8', ctx);
    expect(j.status).toBe(200);
    expect(spanNamesJson(JSON.parse(j.body as string))).toEqual(['a-root', 'a-db']);
    const v1p = filterTraceV1(traceProto(mixedTrace), 'application/x-protobuf', ctx);
    expect(spanNamesProto(v1p.body as Uint8Array)).toEqual(['a-root', 'a-db']);
  });
  it('v2: the route\'s refuseTraceLevelIntrinsics withholds status and message, in both representations', () => {
    const on = { ...ctx, refuseTraceLevelIntrinsics: true };
    const p = filterTraceV2(traceByIdProto(mixedTrace, 1, 'Trace exceeds maximum size'), 'application/protobuf', on);
    expect(T.TraceByIDResponse.decode(p.body as Uint8Array).toJSON()).not.toHaveProperty('status');
    const j = filterTraceV2(Buffer.from(JSON.stringify({ ...traceJsonV2(mixedTrace), status: 'PARTIAL', message: 'Trace exceeds maximum size' })), 'application/json', on);
    expect(JSON.parse(j.body as string)).not.toHaveProperty('status');
    const off = filterTraceV2(Buffer.from(JSON.stringify({ ...traceJsonV2(mixedTrace), status: 'PARTIAL', message: 'Trace exceeds maximum size' })), 'application/json', ctx);
    expect(JSON.parse(off.body as string)).toMatchObject({ status: 'PARTIAL', message: PARTIAL_TRACE_MESSAGE });
  });
  it('no allowed span → Tempo-style 404 "trace not found"', () => {
    expect(filterTraceV2(traceByIdProto(teamBOnlyTrace), 'application/protobuf', ctx)).toEqual(TRACE_NOT_FOUND);
    expect(filterTraceV1(Buffer.from(JSON.stringify(traceJsonV1(teamBOnlyTrace))), 'application/json', ctx)).toEqual(TRACE_NOT_FOUND);
    expect(TRACE_NOT_FOUND).toMatchObject({ status: 404, body: 'trace not found' });
  });
  it('unknown content types and invalid JSON throw (fail closed)', () => {
    expect(() => representationOf('text/html')).toThrow();
    expect(() => representationOf('')).toThrow();
    expect(() => filterTraceV1(Buffer.from('{"batches": ['), 'application/json', ctx)).toThrow();
  });
});

describe('property: protobuf and JSON filters agree with a per-span oracle', () => {
  const values = ['a', 'b', 'team-a-1', ''];
  const keys = ['ns', 'svc'];
  const attrValue = fc.oneof(fc.constantFrom(...values), fc.record({ int: fc.constantFrom(1, 2) }));
  const attrMap = fc.dictionary(fc.constantFrom(...keys), attrValue, { maxKeys: 2 });
  const resourceArb = fc.record({
    attrs: attrMap,
    scopes: fc.array(fc.array(fc.record({ name: fc.constant(''), attrs: attrMap }), { maxLength: 3 }), { maxLength: 2 }),
  });
  const matcherArb = fc.record({
    name: fc.constantFrom('resource.ns', 'span.ns', '.ns', 'resource.svc', '.svc', 'name'),
    op: fc.constantFrom('=', '!=', '=~', '!~'),
    value: fc.constantFrom('a', 'b', 'team-a-.*', '', 'a|b'),
  }) as fc.Arbitrary<Matcher>;
  const policyArb = fc.array(fc.array(matcherArb, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 2 });

  /** Independent oracle: evaluates each span from its spec. */
  function expected(resources: ResourceSpec[], policy: SelectorPolicy): string[] {
    const str = (v: AttrValue | undefined) => (typeof v === 'string' ? v : v === undefined ? undefined : null);
    const holds = (m: Matcher, r: Record<string, AttrValue>, s: Record<string, AttrValue>) => {
      const [scope, key] = m.name.startsWith('.') ? ['', m.name.slice(1)] : [m.name.split('.')[0], m.name.slice(m.name.indexOf('.') + 1)];
      if (m.name === 'name') return false;
      const v = scope === 'resource' ? str(r[key!]) : scope === 'span' ? str(s[key!]) : key! in s ? str(s[key!]) : str(r[key!]);
      if (v === undefined || v === null) return false;
      const re = new RegExp(`^(?:${m.value})$`);
      return m.op === '=' ? v === m.value : m.op === '!=' ? v !== m.value : m.op === '=~' ? re.test(v) : !re.test(v);
    };
    return resources.flatMap((r) => r.scopes.flatMap((ss) => ss.filter((s) => policy.some((g) => g.every((m) => holds(m, r.attrs, s.attrs ?? {})))).map((s) => s.name)));
  }

  it('keeps exactly the spans the oracle allows, in both encodings', () => {
    fc.assert(
      fc.property(fc.array(resourceArb, { maxLength: 3 }), policyArb, (raw, policy) => {
        let n = 0;
        const resources: ResourceSpec[] = raw.map((r) => ({ attrs: r.attrs, scopes: r.scopes.map((ss) => ss.map((s) => ({ ...s, name: `s${n++}` }))) }));
        const want = expected(resources, policy);
        expect(spanNamesProto(filterTraceProto(traceProto(resources), policy).value)).toEqual(want);
        expect(spanNamesProto(filterTraceByIDResponseProto(traceByIdProto(resources), policy).value, true)).toEqual(want);
        expect(spanNamesJson(filterTraceJson(traceJsonV1(resources), policy).value)).toEqual(want);
        expect(spanNamesJson(filterTraceByIDResponseJson(traceJsonV2(resources), policy).value)).toEqual(want);
      }),
      { numRuns: 300 },
    );
  });
});

// Spans as Tempo (or a collector before it) may hand them over: the rule for every one of them is that a span is kept only
// when the policy's attribute is there, once, as a string the policy accepts. Each case in both encodings and both routes.
describe('odd spans: missing, empty, duplicated, non-string or summarising attributes are never kept', () => {
  type Kv = { key: string; value?: Record<string, unknown> };
  interface OddResource {
    readonly resource?: Kv[] | null; // null: no resource field at all
    readonly spans: readonly { readonly name: string; readonly attrs?: Kv[] }[];
  }
  const s = (v: string) => ({ stringValue: v });
  const ns = (value: Record<string, unknown> | undefined): Kv => (value === undefined ? { key: 'k8s.namespace.name' } : { key: 'k8s.namespace.name', value });
  const protoObject = (rs: readonly OddResource[]) => ({
    resourceSpans: rs.map((r) => ({
      ...(r.resource === null ? {} : { resource: { attributes: r.resource ?? [] } }),
      scopeSpans: [{ spans: r.spans.map((sp) => ({ ...spanObject({ name: sp.name }), attributes: sp.attrs ?? [] })) }],
    })),
  });
  const proto = (rs: readonly OddResource[]) => T.Trace.encode(T.Trace.fromObject(protoObject(rs))).finish();
  const protoV2 = (rs: readonly OddResource[]) => T.TraceByIDResponse.encode(T.TraceByIDResponse.fromObject({ trace: protoObject(rs) })).finish();
  /** OTLP JSON: int64 as strings, bytes as base64 (what Tempo writes). */
  const jsonValue = (v: Record<string, unknown> | undefined): unknown => {
    if (v === undefined) return undefined;
    if ('intValue' in v) return { intValue: String(v['intValue']) };
    if ('bytesValue' in v) return { bytesValue: Buffer.from(v['bytesValue'] as Uint8Array).toString('base64') };
    if ('arrayValue' in v) return { arrayValue: { values: ((v['arrayValue'] as { values: Record<string, unknown>[] }).values).map(jsonValue) } };
    return v;
  };
  const jsonKvs = (kvs: Kv[] | undefined) => (kvs ?? []).map((kv) => (kv.value === undefined ? { key: kv.key } : { key: kv.key, value: jsonValue(kv.value) }));
  const jsonBatches = (rs: readonly OddResource[]) =>
    rs.map((r) => ({
      ...(r.resource === null ? {} : { resource: { attributes: jsonKvs(r.resource) } }),
      scopeSpans: [{ spans: r.spans.map((sp) => ({ name: sp.name, spanId: 'aa', attributes: jsonKvs(sp.attrs) })) }],
    }));
  /** The spans kept, by every filter: protobuf v1 and v2, JSON v1 and v2; all four must agree. */
  function kept(rs: readonly OddResource[], policy: SelectorPolicy = teamA): string[] {
    const results = [
      spanNamesProto(filterTraceProto(proto(rs), policy).value),
      spanNamesProto(filterTraceByIDResponseProto(protoV2(rs), policy).value, true),
      spanNamesJson(filterTraceJson({ batches: jsonBatches(rs) }, policy).value),
      spanNamesJson(filterTraceByIDResponseJson({ trace: { resourceSpans: jsonBatches(rs) } }, policy).value),
    ];
    for (const r of results.slice(1)) expect(r).toEqual(results[0]);
    return results[0]!;
  }
  const mine: OddResource = { resource: [ns(s('team-a-web'))], spans: [{ name: 'mine' }] };

  it('the fixtures themselves: a plain team span is kept in every encoding', () => {
    expect(kept([mine])).toEqual(['mine']);
  });
  it('no resource, a resource without attributes, a policy attribute without a value or with an empty one', () => {
    expect(kept([mine, { resource: null, spans: [{ name: 'no-resource' }] }])).toEqual(['mine']);
    expect(kept([{ resource: [], spans: [{ name: 'empty-resource' }] }, mine])).toEqual(['mine']);
    expect(kept([{ resource: [ns(undefined)], spans: [{ name: 'no-value' }] }])).toEqual([]);
    expect(kept([{ resource: [ns({})], spans: [{ name: 'empty-value' }] }])).toEqual([]);
    // The attribute on the span instead of the resource: a resource.… policy does not read it.
    expect(kept([{ resource: [], spans: [{ name: 'on-span', attrs: [ns(s('team-a-web'))] }] }])).toEqual([]);
    // Negative matchers too: a missing attribute satisfies no operator (TraceQL's nil).
    for (const op of ['!=', '!~'] as const) {
      expect(kept([{ resource: null, spans: [{ name: 'x' }] }, { resource: [], spans: [{ name: 'y', attrs: [] }] }], one({ name: 'resource.k8s.namespace.name', op, value: 'payments' }))).toEqual([]);
    }
  });
  it('the policy attribute twice on one resource or span (invalid OTLP: which one Tempo reads is not defined), whatever the values', () => {
    expect(kept([{ resource: [ns(s('team-a-web')), ns(s('team-b-api'))], spans: [{ name: 'a-then-b' }] }])).toEqual([]);
    expect(kept([{ resource: [ns(s('team-b-api')), ns(s('team-a-web'))], spans: [{ name: 'b-then-a' }] }])).toEqual([]);
    expect(kept([{ resource: [ns(s('team-a-web')), ns(s('team-a-web'))], spans: [{ name: 'same-twice' }] }])).toEqual([]);
    const spanPolicy = one({ name: 'span.team', op: '=', value: 'a' });
    expect(kept([{ resource: [], spans: [{ name: 'twice', attrs: [{ key: 'team', value: s('a') }, { key: 'team', value: s('a') }] }, { name: 'once', attrs: [{ key: 'team', value: s('a') }] }] }], spanPolicy)).toEqual(['once']);
  });
  it('non-string values: int 1 is not the string "1"; arrays (even of the allowed string), kvlists, bytes, bools and doubles match nothing', () => {
    const one1 = one({ name: 'resource.k8s.namespace.name', op: '=', value: '1' });
    expect(kept([{ resource: [ns({ intValue: 1 })], spans: [{ name: 'int' }] }, { resource: [ns(s('1'))], spans: [{ name: 'string' }] }], one1)).toEqual(['string']);
    expect(kept([{ resource: [ns({ doubleValue: 1 })], spans: [{ name: 'double' }] }, { resource: [ns({ boolValue: true })], spans: [{ name: 'bool' }] }], one({ name: 'resource.k8s.namespace.name', op: '=~', value: '1|true' }))).toEqual([]);
    const odd: Record<string, unknown>[] = [
      { arrayValue: { values: [s('team-a-web')] } },
      { arrayValue: { values: [] } },
      { kvlistValue: { values: [{ key: 'k8s.namespace.name', value: s('team-a-web') }] } },
      { bytesValue: Buffer.from('team-a-web') },
    ];
    for (const v of odd) expect(kept([{ resource: [ns(v)], spans: [{ name: 'odd' }] }]), JSON.stringify(v)).toEqual([]);
    // …and under negative matchers, which a string of another value would satisfy.
    for (const v of [...odd, { intValue: 7 }]) expect(kept([{ resource: [ns(v)], spans: [{ name: 'odd' }] }], one({ name: 'resource.k8s.namespace.name', op: '!=', value: 'payments' })), JSON.stringify(v)).toEqual([]);
  });
  it('protobuf: an AnyValue with two oneof members is read as Go reads it, the last one (a string last: that string; an int last: no string)', () => {
    const kv = (first: [number, number, Uint8Array | number], second: [number, number, Uint8Array | number]) => {
      const w = new protobuf.Writer();
      for (const [field, wire, v] of [first, second]) {
        w.uint32((field << 3) | wire);
        if (wire === 2) w.bytes(v as Uint8Array);
        else w.int64(v as number);
      }
      const anyValue = w.finish();
      return new protobuf.Writer().uint32((1 << 3) | 2).string('k8s.namespace.name').uint32((2 << 3) | 2).bytes(anyValue).finish();
    };
    const str = [1, 2, Buffer.from('team-a-web')] as [number, number, Uint8Array];
    const int = [3, 0, 1] as [number, number, number];
    const traceWith = (keyValue: Uint8Array) => {
      const resource = new protobuf.Writer().uint32((1 << 3) | 2).bytes(keyValue).finish();
      const scope = T.ScopeSpans.encode(T.ScopeSpans.fromObject({ spans: [spanObject({ name: 'two-members' })] })).finish();
      const rs = new protobuf.Writer().uint32((1 << 3) | 2).bytes(resource).uint32((2 << 3) | 2).bytes(scope).finish();
      return new protobuf.Writer().uint32((1 << 3) | 2).bytes(rs).finish();
    };
    expect(spanNamesProto(filterTraceProto(traceWith(kv(int, str)), teamA).value)).toEqual(['two-members']);
    expect(filterTraceProto(traceWith(kv(str, int)), teamA).spans).toBe(0);
    // JSON with two members is not OTLP JSON (protojson refuses it): no string.
    const body = { batches: [{ resource: { attributes: [{ key: 'k8s.namespace.name', value: { intValue: '1', stringValue: 'team-a-web' } }] }, scopeSpans: [{ spans: [{ name: 'x' }] }] }] };
    expect(filterTraceJson(body, teamA).spans).toBe(0);
  });
  it('a span pruning summary in the team\'s resource (it counts similar spans of the whole trace, other teams\' too) is dropped, whatever the prefix', () => {
    for (const key of ['aggregation.is_summary', 'batch.is_summary', 'is_summary']) {
      const summary = { name: 'SELECT', attrs: [{ key, value: { boolValue: true } }, { key: 'aggregation.span_count', value: { intValue: 12 } }] };
      expect(kept([{ resource: [ns(s('team-a-web'))], spans: [{ name: 'mine' }, summary] }]), key).toEqual(['mine']);
    }
    // A span policy the summary inherits from its template span does not keep it either.
    const spanPolicy = one({ name: 'span.db.system', op: '=', value: 'pg' });
    expect(kept([{ resource: [], spans: [{ name: 'S', attrs: [{ key: 'db.system', value: s('pg') }, { key: 'aggregation.is_summary', value: { boolValue: true } }] }] }], spanPolicy)).toEqual([]);
  });
  it('Tempo\'s redaction placeholders (resource service.name: redacted, no span attributes) are not the team\'s', () => {
    expect(kept([{ resource: [{ key: 'service.name', value: s('redacted') }], spans: [{ name: 'redacted' }] }, mine])).toEqual(['mine']);
  });
});
