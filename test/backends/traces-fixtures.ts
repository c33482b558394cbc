// OTLP trace messages and Tempo's trace-by-id envelopes, built with protobufjs
// reflection from a descriptor written here from the public schemas
// (opentelemetry-proto trace/v1 and common/v1, Apache-2.0; Tempo's
// tempopb.Trace / TraceByIDResponse field numbers). Shared by the unit tests
// and the e2e canned Tempo.
import protobuf from 'protobufjs';

const repeated = (type: string, id: number) => ({ rule: 'repeated', type, id });
const field = (type: string, id: number) => ({ type, id });

export const otlpRoot = protobuf.Root.fromJSON({
  nested: {
    AnyValue: {
      oneofs: { value: { oneof: ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'] } },
      fields: {
        stringValue: field('string', 1),
        boolValue: field('bool', 2),
        intValue: field('int64', 3),
        doubleValue: field('double', 4),
        arrayValue: field('ArrayValue', 5),
        kvlistValue: field('KeyValueList', 6),
        bytesValue: field('bytes', 7),
      },
    },
    ArrayValue: { fields: { values: repeated('AnyValue', 1) } },
    KeyValueList: { fields: { values: repeated('KeyValue', 1) } },
    KeyValue: { fields: { key: field('string', 1), value: field('AnyValue', 2) } },
    Resource: { fields: { attributes: repeated('KeyValue', 1), droppedAttributesCount: field('uint32', 2) } },
    InstrumentationScope: { fields: { name: field('string', 1), version: field('string', 2) } },
    Status: { fields: { message: field('string', 2), code: field('int32', 3) } },
    Event: { fields: { timeUnixNano: field('fixed64', 1), name: field('string', 2), attributes: repeated('KeyValue', 3) } },
    Span: {
      fields: {
        traceId: field('bytes', 1),
        spanId: field('bytes', 2),
        traceState: field('string', 3),
        parentSpanId: field('bytes', 4),
        name: field('string', 5),
        kind: field('int32', 6),
        startTimeUnixNano: field('fixed64', 7),
        endTimeUnixNano: field('fixed64', 8),
        attributes: repeated('KeyValue', 9),
        events: repeated('Event', 11),
        status: field('Status', 15),
        flags: field('fixed32', 16),
      },
    },
    ScopeSpans: { fields: { scope: field('InstrumentationScope', 1), spans: repeated('Span', 2), schemaUrl: field('string', 3) } },
    ResourceSpans: { fields: { resource: field('Resource', 1), scopeSpans: repeated('ScopeSpans', 2), schemaUrl: field('string', 3) } },
    /** tempopb.Trace — the v1 answer; wire-identical to OTLP TracesData. */
    Trace: { fields: { resourceSpans: repeated('ResourceSpans', 1) } },
    TraceByIDMetrics: { fields: { inspectedBytes: field('uint64', 1) } },
    /** tempopb.TraceByIDResponse — the v2 answer. status: PartialStatus (COMPLETE = 0, PARTIAL = 1). */
    TraceByIDResponse: { fields: { trace: field('Trace', 1), metrics: field('TraceByIDMetrics', 2), status: field('int32', 3), message: field('string', 4) } },
  },
});

export const T = {
  Trace: otlpRoot.lookupType('Trace'),
  TraceByIDResponse: otlpRoot.lookupType('TraceByIDResponse'),
  ResourceSpans: otlpRoot.lookupType('ResourceSpans'),
  ScopeSpans: otlpRoot.lookupType('ScopeSpans'),
  Span: otlpRoot.lookupType('Span'),
  Resource: otlpRoot.lookupType('Resource'),
};

/** Attribute value as written in a spec: a string, or a typed non-string. */
export type AttrValue = string | { int: number } | { bool: boolean } | { double: number };
export interface SpanSpec {
  readonly name: string;
  readonly attrs?: Readonly<Record<string, AttrValue>>;
}
export interface ResourceSpec {
  readonly attrs: Readonly<Record<string, AttrValue>>;
  readonly scopes: readonly (readonly SpanSpec[])[];
}

export const TRACE_ID_HEX = '0123456789abcdef0123456789abcdef';
const traceId = Buffer.from(TRACE_ID_HEX, 'hex');

function anyValue(v: AttrValue): Record<string, unknown> {
  if (typeof v === 'string') return { stringValue: v };
  if ('int' in v) return { intValue: v.int };
  if ('bool' in v) return { boolValue: v.bool };
  return { doubleValue: v.double };
}
const kvs = (attrs: Readonly<Record<string, AttrValue>> = {}) => Object.entries(attrs).map(([key, v]) => ({ key, value: anyValue(v) }));

/** A protobufjs plain object for one span (deterministic ids derived from its name). */
export function spanObject(s: SpanSpec): Record<string, unknown> {
  const id = Buffer.alloc(8);
  id.write(s.name.padEnd(8, '_').slice(0, 8), 'latin1');
  return {
    traceId,
    spanId: id,
    name: s.name,
    kind: 2,
    startTimeUnixNano: 1_700_000_000_000_000_000n.toString(),
    endTimeUnixNano: 1_700_000_000_500_000_000n.toString(),
    attributes: kvs(s.attrs),
    events: [{ timeUnixNano: '1700000000100000000', name: 'ev', attributes: kvs({ 'ev.k': 'v' }) }],
    status: { code: 1 },
  };
}

export function traceObject(resources: readonly ResourceSpec[]): Record<string, unknown> {
  return {
    resourceSpans: resources.map((r) => ({
      resource: { attributes: kvs(r.attrs) },
      scopeSpans: r.scopes.map((spans, i) => ({ scope: { name: `scope-${i}`, version: '1' }, spans: spans.map(spanObject), schemaUrl: 'https://schema' })),
      schemaUrl: 'https://resource-schema',
    })),
  };
}

/** tempopb.Trace bytes (v1 protobuf answer). */
export function traceProto(resources: readonly ResourceSpec[]): Uint8Array {
  return T.Trace.encode(T.Trace.fromObject(traceObject(resources))).finish();
}

/** TraceByIDResponse bytes (v2 protobuf answer). */
export function traceByIdProto(resources: readonly ResourceSpec[], status = 0, message = ''): Uint8Array {
  return T.TraceByIDResponse.encode(T.TraceByIDResponse.fromObject({ trace: traceObject(resources), metrics: { inspectedBytes: 1234 }, status, message })).finish();
}

/** OTLP JSON as Tempo writes it (camelCase, hex ids, int64 as strings). */
function jsonAnyValue(v: AttrValue): Record<string, unknown> {
  if (typeof v === 'string') return { stringValue: v };
  if ('int' in v) return { intValue: String(v.int) };
  if ('bool' in v) return { boolValue: v.bool };
  return { doubleValue: v.double };
}
const jsonKvs = (attrs: Readonly<Record<string, AttrValue>> = {}) => Object.entries(attrs).map(([key, v]) => ({ key, value: jsonAnyValue(v) }));

export function resourceSpansJson(resources: readonly ResourceSpec[]): Record<string, unknown>[] {
  return resources.map((r) => ({
    resource: { attributes: jsonKvs(r.attrs) },
    scopeSpans: r.scopes.map((spans, i) => ({
      scope: { name: `scope-${i}`, version: '1' },
      spans: spans.map((s) => ({
        traceId: TRACE_ID_HEX,
        spanId: Buffer.from(s.name.padEnd(8, '_').slice(0, 8), 'latin1').toString('hex'),
        name: s.name,
        kind: 'SPAN_KIND_SERVER',
        startTimeUnixNano: '1700000000000000000',
        endTimeUnixNano: '1700000000500000000',
        attributes: jsonKvs(s.attrs),
        status: { code: 'STATUS_CODE_OK' },
      })),
    })),
  }));
}

/** v1 JSON: `{"batches": [...]}`. */
export const traceJsonV1 = (resources: readonly ResourceSpec[]) => ({ batches: resourceSpansJson(resources) });
/** v2 JSON: `{"trace": {"resourceSpans": [...]}, "status": "COMPLETE"}`. */
export const traceJsonV2 = (resources: readonly ResourceSpec[]) => ({ trace: { resourceSpans: resourceSpansJson(resources) }, status: 'COMPLETE' });

/** Span names in a decoded tempopb.Trace, in order. */
export function spanNamesProto(bytes: Uint8Array, v2 = false): string[] {
  const trace = (v2 ? (T.TraceByIDResponse.toObject(T.TraceByIDResponse.decode(bytes)) as { trace?: unknown }).trace : T.Trace.toObject(T.Trace.decode(bytes))) as {
    resourceSpans?: { scopeSpans?: { spans?: { name: string }[] }[] }[];
  } | undefined;
  return (trace?.resourceSpans ?? []).flatMap((rs) => (rs.scopeSpans ?? []).flatMap((ss) => (ss.spans ?? []).map((s) => s.name)));
}

/** Span names in a v1 or v2 JSON answer. */
export function spanNamesJson(body: unknown): string[] {
  const b = body as { batches?: unknown[]; resourceSpans?: unknown[]; trace?: { batches?: unknown[]; resourceSpans?: unknown[] } };
  const rss = (b.trace ? (b.trace.batches ?? b.trace.resourceSpans) : (b.batches ?? b.resourceSpans)) ?? [];
  return (rss as { scopeSpans?: { spans?: { name: string }[] }[] }[]).flatMap((rs) => (rs.scopeSpans ?? []).flatMap((ss) => (ss.spans ?? []).map((s) => s.name)));
}

/** The demo trace: spans from team A's and team B's namespaces and a shared one. */
export const mixedTrace: ResourceSpec[] = [
  { attrs: { 'service.name': 'web', 'k8s.namespace.name': 'team-a-web' }, scopes: [[{ name: 'a-root', attrs: { 'http.method': 'GET' } }, { name: 'a-db' }]] },
  { attrs: { 'service.name': 'api', 'k8s.namespace.name': 'team-b-api' }, scopes: [[{ name: 'b-handler' }], [{ name: 'b-cache' }]] },
  { attrs: { 'service.name': 'gw', 'k8s.namespace.name': 'platform' }, scopes: [[{ name: 'p-ingress' }]] },
];
export const teamBOnlyTrace: ResourceSpec[] = [{ attrs: { 'k8s.namespace.name': 'team-b-api' }, scopes: [[{ name: 'b-only' }]] }];
