/**
 * Span filtering for Tempo's trace-by-id answers: pure functions from the
 * upstream's bytes to what a restricted subject may see.
 *
 * Shapes (Tempo HTTP API, `pkg/tempopb/tempo.proto`, OTLP trace/common protos):
 *
 *   /api/traces/<id>     JSON `{"batches": [ResourceSpans…]}`; protobuf
 *                        `tempopb.Trace { repeated ResourceSpans batches = 1 }`
 *                        (newer Tempo spells the field `resourceSpans`; both are read).
 *   /api/v2/traces/<id>  JSON `{"trace": {…as v1…}, "status": …, "message": …}`;
 *                        protobuf `TraceByIDResponse { Trace trace = 1;
 *                        TraceByIDMetrics metrics = 2; PartialStatus status = 3;
 *                        string message = 4 }`.
 *   ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2;
 *                   string schema_url = 3 }   (1000: pre-1.0 instrumentation_library_spans,
 *                                              same layout as ScopeSpans)
 *   ScopeSpans    { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3 }
 *   Resource      { repeated KeyValue attributes = 1; … }
 *   Span          { …; repeated KeyValue attributes = 9; … }
 *   KeyValue      { string key = 1; AnyValue value = 2 }
 *   AnyValue      { oneof: string_value = 1, bool_value = 2, int_value = 3,
 *                   double_value = 4, array_value = 5, kvlist_value = 6, bytes_value = 7 }
 *
 * Semantics: TraceQL's, because the same policy is enforced in TraceQL
 * searches (`{ (q) && policy }`) and a span found by a search must be a span
 * shown in the trace view, and vice versa. A span is kept iff every matcher
 * of at least one policy group holds for it:
 *
 * - `resource.k` reads the resource's attributes, `span.k` the span's,
 *   unscoped `.k` the span's attribute when the span has key `k`, else the
 *   resource's (TraceQL: span attributes take precedence).
 * - A missing attribute satisfies no operator, `!=` and `!~` included
 *   (TraceQL: comparisons with nil are false — unlike PromQL's empty string).
 * - Policy values are strings; a TraceQL string literal matches only string
 *   attributes, so an int/bool/double/array/kvlist/bytes value satisfies no
 *   operator either.
 * - `=~`/`!~` are RE2 as `^(?s:re)$` (Tempo compiles TraceQL regexes with
 *   Prometheus' `labels.NewFastRegexMatcher`).
 * - A span pruning summary (a span attribute key ending in `is_summary`:
 *   `aggregation.is_summary`) is never kept: it counts similar spans of the
 *   whole trace, other teams' included (isPruningSummary).
 * - Fail closed: intrinsics (`name`, `span:name`, `trace:rootService`, …),
 *   `event.`/`link.`/`instrumentation.` attributes and names the gateway cannot
 *   parse never match, and a key present more than once on one resource or span
 *   (invalid OTLP) counts as not a string.
 *
 * Protobuf is filtered at the wire level: kept spans (and resources, scopes,
 * schema URLs, v2 status) are copied byte for byte, dropped
 * spans and unknown fields are left out, and ScopeSpans/ResourceSpans left
 * without spans are dropped. JSON is filtered the same way on the parsed body.
 * The v2 `metrics` (bytes Tempo inspected: the size of the whole trace, other
 * teams' spans included) is left out: it would measure what was filtered. The
 * v2 `message` is the gateway's PARTIAL_TRACE_MESSAGE (Tempo's describe the
 * whole trace); under `refuseTraceLevelIntrinsics` neither it nor `status` is
 * relayed (TraceByIDOptions).
 */
import protobuf from 'protobufjs/minimal.js';
import { matcherTest, type Matcher, type SelectorPolicy } from '../rewrite/matcher.ts';
import { fieldNameOrNull } from '../rewrite/traceql-escape.ts';
import type { RawFilteredResponse, RawResponseFilter } from './routes.ts';
import { isRecord } from '../util/is-record.ts';
import { pick } from '../util/pick.ts';

// ---- Policy evaluation ------------------------------------------------------

/** Attribute values by key: a string, or `null` for a non-string or duplicated key. */
export type Attributes = ReadonlyMap<string, string | null>;

type CompiledMatcher =
  | { readonly scope: 'resource' | 'span' | 'unscoped'; readonly key: string; readonly test: (value: string) => boolean }
  | { readonly scope: 'never' };
type CompiledPolicy = readonly (readonly CompiledMatcher[])[];

function compileMatcher(m: Matcher): CompiledMatcher {
  const field = fieldNameOrNull(m.name);
  if (field === null || field.kind !== 'attribute') return { scope: 'never' };
  // The regex is resolved here, once per answer, not once per span.
  if (field.scope === null) return { scope: 'unscoped', key: field.key, test: matcherTest(m) };
  if (field.scope === 'resource' || field.scope === 'span') return { scope: field.scope, key: field.key, test: matcherTest(m) };
  return { scope: 'never' };
}

function compile(policy: SelectorPolicy): CompiledPolicy {
  return policy.map((group) => group.map(compileMatcher));
}

function holds(c: CompiledMatcher, resource: Attributes, span: Attributes): boolean {
  if (c.scope === 'never') return false;
  const value = c.scope === 'resource' ? resource.get(c.key) : c.scope === 'span' ? span.get(c.key) : span.has(c.key) ? span.get(c.key) : resource.get(c.key);
  // nil (missing) and non-string values satisfy no operator, as in TraceQL.
  if (value === undefined || value === null) return false;
  return c.test(value);
}

/**
 * A span pruning summary (OpenTelemetry's span pruning processor, which Tempo
 * runs on its v2 trace-by-id answers and collectors run before Tempo): one
 * span standing for a group of similar spans of the whole trace (same name,
 * status, parent name and chosen span attributes, whatever their resource, so
 * other teams' spans too), placed in the resource of the group's slowest span
 * and marked `<prefix>is_summary` (default prefix `aggregation.`), with the
 * group's count, durations and time window. Never kept for restricted
 * subjects, whatever its value: its resource says nothing of the spans it
 * counts.
 */
function isPruningSummary(span: Attributes): boolean {
  for (const key of span.keys()) if (key.endsWith('is_summary')) return true;
  return false;
}

function allowed(policy: CompiledPolicy, resource: Attributes, span: Attributes): boolean {
  return !isPruningSummary(span) && policy.some((group) => group.every((c) => holds(c, resource, span)));
}

/** Is a span with these resource and span attributes visible under the policy? (TraceQL semantics, see above; never a pruning summary.) */
export function spanAllowed(policy: SelectorPolicy, resource: Attributes, span: Attributes): boolean {
  return allowed(compile(policy), resource, span);
}

function addAttribute(into: Map<string, string | null>, key: string, value: string | null): void {
  into.set(key, into.has(key) ? null : value);
}

// ---- Protobuf (wire level) --------------------------------------------------

const { Reader, Writer, util } = protobuf;
const LEN = 2;

interface WireField {
  readonly num: number;
  readonly wire: number;
  /** The whole field, tag included: copied verbatim when kept. */
  readonly raw: Uint8Array;
  /** For length-delimited fields, the payload. */
  readonly body: Uint8Array;
}

/**
 * A varint protobufjs read as 32 bits must be one Go reads as the same number:
 * at most 5 bytes, the fifth holding no bit past the 32nd. protobufjs keeps the
 * low 32 bits of a longer one, where Go's decoder reads all 64 (another field
 * number, or an error), so a span attribute the gateway reads could be one
 * Tempo's and Grafana's decoders skip.
 */
function checkVarint32(buf: Uint8Array, from: number, to: number, what: string): void {
  if (to - from > 5 || (to - from === 5 && (buf[from + 4] as number) > 0x0f)) throw new Error(`invalid protobuf: ${what} varint longer than 32 bits`);
}

/** The fields of one message, in wire order. Malformed input throws (protobufjs' bounds checks). */
function fieldsOf(buf: Uint8Array): WireField[] {
  const r = Reader.create(buf);
  const out: WireField[] = [];
  while (r.pos < r.len) {
    const start = r.pos;
    const tag = r.uint32();
    checkVarint32(buf, start, r.pos, 'field tag');
    const num = tag >>> 3;
    const wire = tag & 7;
    if (num === 0) throw new Error('invalid protobuf: field number 0');
    let body: Uint8Array = buf.subarray(0, 0);
    if (wire === LEN) {
      const at0 = r.pos;
      const len = r.uint32();
      checkVarint32(buf, at0, r.pos, 'length');
      const at = r.pos;
      r.skip(len);
      body = buf.subarray(at, r.pos);
    } else {
      r.skipType(wire);
    }
    out.push({ num, wire, raw: buf.subarray(start, r.pos), body });
  }
  return out;
}

function lenField(f: WireField): Uint8Array {
  if (f.wire !== LEN) throw new Error(`invalid protobuf: field ${f.num} is not length-delimited`);
  return f.body;
}

/** A length-delimited field `num` holding `payload`. */
function encodeLen(num: number, payload: Uint8Array): Uint8Array {
  const head = Writer.create()
    .uint32(((num << 3) | LEN) >>> 0)
    .uint32(payload.length)
    .finish();
  return concat([head, payload]);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

const utf8 = (b: Uint8Array) => util.utf8.read(b, 0, b.length);

/** AnyValue → its string value, or null when the last set oneof member is not string_value (or none is set). */
function anyValueString(buf: Uint8Array): string | null {
  let last: WireField | undefined;
  for (const f of fieldsOf(buf)) if (f.num >= 1 && f.num <= 7) last = f;
  return last !== undefined && last.num === 1 ? utf8(lenField(last)) : null;
}

/** Adds one KeyValue to `into`. */
function readKeyValue(buf: Uint8Array, into: Map<string, string | null>): void {
  let key = '';
  let value: string | null = null;
  for (const f of fieldsOf(buf)) {
    if (f.num === 1) key = utf8(lenField(f));
    else if (f.num === 2) value = anyValueString(lenField(f));
  }
  addAttribute(into, key, value);
}

/** Attributes of a message whose `repeated KeyValue` field is `num` (Resource: 1, Span: 9). */
function protoAttributes(buf: Uint8Array, num: number, into = new Map<string, string | null>()): Map<string, string | null> {
  for (const f of fieldsOf(buf)) if (f.num === num) readKeyValue(lenField(f), into);
  return into;
}

interface Filtered<T> {
  readonly value: T;
  /** Spans kept. */
  readonly spans: number;
}

/** ScopeSpans (or the legacy InstrumentationLibrarySpans): keep scope and schema URL, allowed spans; undefined when none is left. */
function filterScopeSpansProto(buf: Uint8Array, policy: CompiledPolicy, resource: Attributes): Filtered<Uint8Array> | undefined {
  const parts: Uint8Array[] = [];
  let spans = 0;
  for (const f of fieldsOf(buf)) {
    if (f.num === 2) {
      if (allowed(policy, resource, protoAttributes(lenField(f), 9))) {
        parts.push(f.raw);
        spans++;
      }
    } else if (f.num === 1 || f.num === 3) parts.push(f.raw);
  }
  return spans === 0 ? undefined : { value: concat(parts), spans };
}

function filterResourceSpansProto(buf: Uint8Array, policy: CompiledPolicy): Filtered<Uint8Array> | undefined {
  const fields = fieldsOf(buf);
  // A message field given twice is merged: its repeated attributes concatenate.
  const resource = new Map<string, string | null>();
  for (const f of fields) if (f.num === 1) protoAttributes(lenField(f), 1, resource);
  const parts: Uint8Array[] = [];
  let spans = 0;
  for (const f of fields) {
    if (f.num === 2 || f.num === 1000) {
      const kept = filterScopeSpansProto(lenField(f), policy, resource);
      if (kept !== undefined) {
        parts.push(encodeLen(f.num, kept.value));
        spans += kept.spans;
      }
    } else if (f.num === 1 || f.num === 3) parts.push(f.raw);
  }
  return spans === 0 ? undefined : { value: concat(parts), spans };
}

/** `tempopb.Trace` (= OTLP TracesData on the wire): field 1, repeated ResourceSpans. */
function filterTraceProtoCompiled(buf: Uint8Array, policy: CompiledPolicy): Filtered<Uint8Array> {
  const parts: Uint8Array[] = [];
  let spans = 0;
  for (const f of fieldsOf(buf)) {
    if (f.num !== 1) continue;
    const kept = filterResourceSpansProto(lenField(f), policy);
    if (kept !== undefined) {
      parts.push(encodeLen(1, kept.value));
      spans += kept.spans;
    }
  }
  return { value: concat(parts), spans };
}

/** Filters a protobuf `tempopb.Trace` (the v1 answer). */
export function filterTraceProto(buf: Uint8Array, policy: SelectorPolicy): Filtered<Uint8Array> {
  return filterTraceProtoCompiled(buf, compile(policy));
}

/**
 * What a restricted subject gets of a v2 answer's `message`, whatever Tempo
 * wrote: Tempo's messages describe the whole trace ("Trace exceeds maximum
 * size of N bytes", pruning, a `q` filter) and newer releases add reasons.
 */
export const PARTIAL_TRACE_MESSAGE = 'Trace is partial: some of its spans may be missing';

/** Options of the v2 filters. */
export interface TraceByIDOptions {
  /**
   * `upstreams[].refuseTraceLevelIntrinsics`: `status` and `message` left out
   * (PARTIAL says the whole trace, other teams' spans included, exceeds
   * Tempo's size limit). Otherwise the status is kept and a message is
   * PARTIAL_TRACE_MESSAGE.
   */
  readonly withholdStatus?: boolean;
}

const utf8Bytes = (text: string) => Buffer.from(text, 'utf8');

/**
 * Filters a protobuf `TraceByIDResponse` (the v2 answer): trace filtered;
 * metrics left out; status kept and a message made PARTIAL_TRACE_MESSAGE, or
 * both left out (TraceByIDOptions.withholdStatus).
 */
export function filterTraceByIDResponseProto(buf: Uint8Array, policy: SelectorPolicy, options: TraceByIDOptions = {}): Filtered<Uint8Array> {
  const compiled = compile(policy);
  const parts: Uint8Array[] = [];
  let spans = 0;
  for (const f of fieldsOf(buf)) {
    if (f.num === 1) {
      const kept = filterTraceProtoCompiled(lenField(f), compiled);
      spans += kept.spans;
      parts.push(encodeLen(1, kept.value));
    } else if (options.withholdStatus === true) continue;
    // PartialStatus is an enum (a varint); any other wire type is not Tempo's and not relayed.
    else if (f.num === 3 && f.wire === 0) parts.push(f.raw);
    else if (f.num === 4 && lenField(f).length > 0) parts.push(encodeLen(4, utf8Bytes(PARTIAL_TRACE_MESSAGE)));
  }
  return { value: concat(parts), spans };
}

// ---- JSON ---------------------------------------------------------------------

/**
 * Tempo's PartialStatus enum as protojson writes it (`"COMPLETE"`, `"PARTIAL"`)
 * or as its number: the only `status` a trace-by-id or metrics answer relays.
 */
export function isPartialStatus(x: unknown): boolean {
  return (typeof x === 'string' && /^[A-Z_]{1,32}$/.test(x)) || (typeof x === 'number' && Number.isInteger(x));
}

type Json = Record<string, unknown>;
const list = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);

/** OTLP JSON `[{key, value: {stringValue}}]` → attributes. */
function jsonAttributes(x: unknown): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const kv of list(x)) {
    if (!isRecord(kv) || typeof kv['key'] !== 'string') continue;
    const v = kv['value'];
    const s = isRecord(v) && Object.keys(v).length === 1 && typeof v['stringValue'] === 'string' ? v['stringValue'] : null;
    addAttribute(out, kv['key'], s);
  }
  return out;
}

const SCOPE_SPANS_KEYS = ['scopeSpans', 'instrumentationLibrarySpans'] as const;
const RESOURCE_SPANS_KEYS = ['batches', 'resourceSpans'] as const;

function filterResourceSpansJson(rs: unknown, policy: CompiledPolicy): Filtered<Json> | undefined {
  if (!isRecord(rs)) return undefined;
  const resource = jsonAttributes(isRecord(rs['resource']) ? rs['resource']['attributes'] : undefined);
  const out = pick(rs, ['resource', 'schemaUrl']);
  let spans = 0;
  for (const key of SCOPE_SPANS_KEYS) {
    if (!(key in rs)) continue;
    const scopes = list(rs[key]).flatMap((ss): Json[] => {
      if (!isRecord(ss)) return [];
      const kept = list(ss['spans']).filter((s) => isRecord(s) && allowed(policy, resource, jsonAttributes(s['attributes'])));
      spans += kept.length;
      return kept.length === 0 ? [] : [{ ...pick(ss, ['scope', 'instrumentationLibrary', 'schemaUrl']), spans: kept }];
    });
    if (scopes.length > 0) out[key] = scopes;
  }
  return spans === 0 ? undefined : { value: out, spans };
}

function filterTraceJsonCompiled(body: unknown, policy: CompiledPolicy): Filtered<Json> {
  const out: Json = {};
  let spans = 0;
  if (!isRecord(body)) return { value: { batches: [] }, spans };
  for (const key of RESOURCE_SPANS_KEYS) {
    if (!(key in body)) continue;
    out[key] = list(body[key]).flatMap((rs) => {
      const kept = filterResourceSpansJson(rs, policy);
      if (kept === undefined) return [];
      spans += kept.spans;
      return [kept.value];
    });
  }
  return { value: out, spans };
}

/** Filters the v1 JSON answer `{"batches": [...]}`. */
export function filterTraceJson(body: unknown, policy: SelectorPolicy): Filtered<Json> {
  return filterTraceJsonCompiled(body, compile(policy));
}

/**
 * Filters the v2 JSON answer `{"trace": {...}, "status", "message", "metrics"}`: `metrics` left out,
 * status and message as filterTraceByIDResponseProto.
 */
export function filterTraceByIDResponseJson(body: unknown, policy: SelectorPolicy, options: TraceByIDOptions = {}): Filtered<Json> {
  if (!isRecord(body)) return { value: {}, spans: 0 };
  const out: Json = {};
  if (options.withholdStatus !== true) {
    if (isPartialStatus(body['status'])) out['status'] = body['status'];
    if (typeof body['message'] === 'string' && body['message'] !== '') out['message'] = PARTIAL_TRACE_MESSAGE;
  }
  if (!('trace' in body)) return { value: out, spans: 0 };
  const trace = filterTraceJsonCompiled(body['trace'], compile(policy));
  return { value: { trace: trace.value, ...out }, spans: trace.spans };
}

// ---- Route filters ------------------------------------------------------------

/** Tempo's answer for an unknown trace, in its plain-text style. */
export const TRACE_NOT_FOUND: RawFilteredResponse = { status: 404, contentType: 'text/plain; charset=utf-8', body: 'trace not found' };

type Representation = 'protobuf' | 'json';

/** The representation of an upstream answer from its Content-Type; anything else throws (fail closed). */
export function representationOf(contentType: string): Representation {
  const media = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  if (media === 'application/protobuf' || media === 'application/x-protobuf') return 'protobuf';
  if (media === 'application/json' || media.endsWith('+json')) return 'json';
  throw new Error(`unexpected trace content type ${JSON.stringify(contentType)}`);
}

function traceFilter(proto: typeof filterTraceByIDResponseProto, json: typeof filterTraceByIDResponseJson): RawResponseFilter {
  return (raw, contentType, { policy, refuseTraceLevelIntrinsics }) => {
    const options: TraceByIDOptions = { withholdStatus: refuseTraceLevelIntrinsics === true };
    if (representationOf(contentType) === 'protobuf') {
      const kept = proto(raw, policy, options);
      return kept.spans === 0 ? TRACE_NOT_FOUND : { status: 200, contentType: 'application/protobuf', body: kept.value };
    }
    const kept = json(JSON.parse(Buffer.from(raw).toString('utf8')) as unknown, policy, options);
    return kept.spans === 0 ? TRACE_NOT_FOUND : { status: 200, contentType: 'application/json', body: JSON.stringify(kept.value) };
  };
}

/** `/api/traces/<id>`: a `tempopb.Trace` (protobuf) or `{"batches": …}` (JSON), spans outside the policy removed. */
export const filterTraceV1: RawResponseFilter = traceFilter(filterTraceProto, filterTraceJson);
/** `/api/v2/traces/<id>`: a `TraceByIDResponse` (protobuf or JSON), spans outside the policy removed. */
export const filterTraceV2: RawResponseFilter = traceFilter(filterTraceByIDResponseProto, filterTraceByIDResponseJson);
