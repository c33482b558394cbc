import { GatewayError, QueryError } from '../errors.ts';
import type { SelectorPolicy } from '../rewrite/matcher.ts';
import { fieldKey, fieldNameOrNull, formatField } from '../rewrite/traceql-escape.ts';
import { isFilteredTagValuesField, isPlainConditionFilter, isTagConditionField, isTraceLevelIntrinsic, tagField, traceLevelReads } from '../rewrite/traceql-syntax.ts';
import { rewriteTraceQL } from '../rewrite/traceql.ts';
import type { ResponseFilter } from './filters.ts';
import { policyValueTest } from '../rewrite/matcher.ts';
import type { Params } from './form-params.ts';
import type { EnforcedParam, FanOutSpec, RouteSpec, RouteTable } from './routes.ts';
import { mergeTagScopeAnswers, mergeTagValueAnswers, readTagScopes, readTagValues, tagValueOf } from './tag-answers.ts';
import { filterTraceV1, filterTraceV2, isPartialStatus, TRACE_NOT_FOUND } from './traces.ts';
import type { RawFilteredResponse } from './routes.ts';

/** `q`: a TraceQL query. When absent, `{ }` — every span — is sent, enforced, so the answer only covers allowed spans. */
const traceQuery = (required: boolean): EnforcedParam => ({
  name: 'q',
  required,
  multiple: false,
  rewrite: (values, policy: SelectorPolicy, limits) => (values.length === 0 ? [rewriteTraceQL('{}', policy, limits)] : values.map((q) => rewriteTraceQL(q, policy, limits))),
  missingMessage: 'invalid TraceQL query: q is required',
});

/**
 * `q` of the v2 tag APIs. Tempo does not run it as a search: it takes the
 * conditions of its first spanset filter (traceql.ExtractConditions) and, where
 * that gives up (a structural operator, `||` anywhere, no condition), answers
 * from every span of the tenant; so it does when the query fails its
 * validation (`{ status = "error" }`). So each forwarded `q` is one spanset
 * filter without `||`: the client's filter where it is only string
 * comparisons on attributes (Grafana sends the query typed so far;
 * isPlainConditionFilter), else none, AND one policy alternative. Under several
 * alternatives that is one `q` per alternative (RouteSpec.fanOut), the answers
 * merged. A `q` the gateway cannot parse (half-typed) or enforce adds
 * nothing: the policy alone can only narrow the answer.
 */
const tagScopeQuery: EnforcedParam = {
  name: 'q',
  required: false,
  multiple: false,
  // Only a plain condition filter is kept (below); any other client q is replaced by the policy alone.
  forwardsClientValue: (q) => isPlainConditionFilter(q),
  rewrite: (values, policy, limits) => {
    // A policy condition Tempo's tag APIs cannot place (an unscoped attribute) makes them ignore every condition.
    const unplaced = policy.flat().find((m) => !isTagConditionField(canonicalName(m.name)));
    if (unplaced !== undefined) {
      throw new QueryError(
        'traceql',
        `tag lookups cannot be restricted by the policy's condition on ${JSON.stringify(unplaced.name)}: Tempo's tag APIs ignore every condition of a query holding an unscoped attribute or this intrinsic; scope the policy's attributes (resource.… or span.…)`,
        'rewrite_unsupported',
      );
    }
    const client = values[0];
    const own = client !== undefined && isPlainConditionFilter(client) ? client : '{}';
    const parts = new Set<string>();
    for (const group of policy) {
      let q: string;
      try {
        q = rewriteTraceQL(own, [group], limits);
      } catch (e) {
        // Half-typed, or a filter the rewriter cannot enforce (parent attributes): the policy alone. Too large: refused.
        if (!(e instanceof QueryError) || e.code === 'query_too_large') throw e;
        q = rewriteTraceQL('{}', [group], limits);
      }
      // The rewriter adds one alternative as a conjunction; anything else Tempo could read as no condition at all.
      if (!isPlainConditionFilter(q)) throw new GatewayError('rewrite_verification_failed', 'a tag lookup\'s query is not one filter of plain conditions');
      parts.add(q);
    }
    return [...parts];
  },
  missingMessage: '',
};

/**
 * Tempo's v1 tag APIs take no query (its ingesters list every tag and value
 * of the tenant), so nothing can restrict them: refused for restricted
 * subjects, who use the v2 APIs (Grafana's Tempo datasource does; it falls
 * back to v1 only where v2 is missing).
 */
const v1TagLookup: EnforcedParam = {
  name: 'q',
  required: false,
  multiple: false,
  rewrite: () => {
    throw new GatewayError('forbidden', "Tempo's v1 tag APIs cannot be restricted by a query; use /api/v2/search/tags and /api/v2/search/tag/<tag>/values");
  },
  missingMessage: '',
};

/**
 * A parameter that could carry a query the gateway does not enforce: refused
 * when present. Tempo's legacy `tags` search (logfmt key=value) cannot carry
 * the policy; `query` is the name Grafana 10.x used for TraceQL metrics, which
 * a Tempo version may read besides `q`: a search is always the TraceQL in `q`.
 */
const refused = (name: string, message: string): EnforcedParam => ({
  name,
  required: false,
  multiple: false,
  rewrite: (values) => {
    if (values.length > 0) throw new QueryError('traceql', message);
    return [];
  },
  missingMessage: '',
});
const noLegacyTags = refused('tags', 'search by "tags" is not supported through the gateway: use a TraceQL query in "q"');
const noQueryAlias = refused('query', 'parameter "query" is not supported through the gateway: send the TraceQL query in "q"');

/**
 * Tag values (v2: `{tagValues: [{type, value}]}`): drops values the policy's
 * matchers on that tag refuse. The tag is compared as Tempo reads it, as a
 * TraceQL field (`resource."k8s.namespace.name"` is `resource.k8s.namespace.name`).
 */
const filterTagValues: ResponseFilter = (body, { policy, pathParams }) => {
  const requested = pathParams['tag'] ?? '';
  const field = tagField(requested);
  // The fields the tag lists: an unscoped attribute's values are its resource and its span attribute's
  // (asked as both, expandUnscopedTag), so a policy matcher on either applies to them.
  const fields = new Set(field === null ? [] : [field, ...(expandUnscopedTag('tag', requested) ?? []).map(canonicalName)]);
  // validatePathParam refused names that are not one field; a policy name is compared in its canonical form.
  const onTag: SelectorPolicy = policy.map((g) => g.map((m) => (fields.has(canonicalName(m.name)) ? { ...m, name: requested } : m)));
  // Read as each part of a merge is (readTagValues: odd entries left out), rebuilt from what was checked;
  // Tempo's `metrics` (bytes inspected, the whole tenant's) is left out.
  const allowed = policyValueTest(onTag, requested);
  return { tagValues: readTagValues(body).filter((v) => allowed(tagValueOf(v))) };
};

/** A policy matcher's name as a canonical field name (policies are checked when loaded; a name that is not one compares as written). */
function canonicalName(name: string): string {
  const field = fieldNameOrNull(name);
  return field === null ? name : fieldKey(field);
}

/**
 * What a restricted subject gets of each search result (tempopb.TraceSearchMetadata): the id, the
 * trace-level fields Grafana shows (root service and span name, start and duration: documented as
 * residual), and the matched spansets, which hold only spans the policy's filter selected.
 */
const SEARCH_TRACE_FIELDS = ['traceID', 'rootServiceName', 'rootTraceName', 'startTimeUnixNano', 'durationMs', 'spanSet', 'spanSets'] as const;
/**
 * Under `upstreams[].refuseTraceLevelIntrinsics`: the fields kept as Tempo wrote them. The root
 * service and span name (the root span may be another team's) are left out; the start and
 * duration are recomputed from the spans shown (spanSetsExtent).
 */
const SEARCH_TRACE_FIELDS_OWN = ['traceID', 'spanSet', 'spanSets'] as const;

/**
 * Search results, rebuilt as `{traces}`: each trace's `serviceStats` counts
 * the spans and errors of every service in the trace, other teams' included
 * (Tempo computes it over the whole trace, not over the spans the policy's
 * filter matched), and the answer's `metrics` (blocks, bytes and traces
 * inspected) measure the whole tenant's data: both left out, and so is any
 * trace field not in SEARCH_TRACE_FIELDS. Where the upstream refuses
 * trace-level intrinsics, so are the fields Tempo computes over the whole
 * trace (SEARCH_TRACE_FIELDS_OWN). An answer of another shape is not relayed
 * (→ 502).
 */
const filterSearchResults: ResponseFilter = (body, ctx) => {
  const traces = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as { traces?: unknown }).traces : undefined;
  if ((traces !== undefined && traces !== null && !Array.isArray(traces)) || typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new GatewayError('upstream_error', 'upstream answer could not be read');
  }
  const own = ctx.refuseTraceLevelIntrinsics === true;
  return {
    traces: (traces ?? []).map((t: unknown) => {
      if (typeof t !== 'object' || t === null || Array.isArray(t)) throw new GatewayError('upstream_error', 'upstream answer could not be read');
      // Known fields only: a field a newer Tempo adds may describe the whole trace, as serviceStats does.
      const kept: Record<string, unknown> = {};
      for (const k of own ? SEARCH_TRACE_FIELDS_OWN : SEARCH_TRACE_FIELDS) if (k in t) kept[k] = (t as Record<string, unknown>)[k];
      return own ? { ...kept, ...spanSetsExtent(kept) } : kept;
    }),
  };
};

/** A uint64 as Tempo's JSON writes it (a decimal string; a number is read too), else undefined. */
function uint64Of(v: unknown): bigint | undefined {
  if (typeof v === 'string' && /^[0-9]{1,20}$/.test(v)) return BigInt(v);
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  return undefined;
}

/**
 * `startTimeUnixNano` and `durationMs` of the spans a search result shows (its
 * `spanSets` and the older `spanSet`): the earliest start and the extent to
 * the latest end, as Tempo writes them for a trace (the start a decimal
 * string, whole milliseconds, each left out when there is none or, for the
 * duration, when it is 0, as Tempo's JSON leaves out zero values). These are
 * the team's own matched spans (at most `spss` per spanset), not the whole
 * trace, whose start and duration other teams' spans may set.
 */
function spanSetsExtent(trace: Record<string, unknown>): { startTimeUnixNano?: string; durationMs?: number } {
  let start: bigint | undefined;
  let end: bigint | undefined;
  const sets = [...(Array.isArray(trace['spanSets']) ? trace['spanSets'] : []), trace['spanSet']];
  for (const set of sets) {
    if (typeof set !== 'object' || set === null) continue;
    const spans = (set as { spans?: unknown }).spans;
    if (!Array.isArray(spans)) continue;
    for (const span of spans) {
      if (typeof span !== 'object' || span === null) continue;
      const s = uint64Of((span as Record<string, unknown>)['startTimeUnixNano']);
      if (s === undefined || s === 0n) continue;
      const d = uint64Of((span as Record<string, unknown>)['durationNanos'] ?? '0') ?? 0n;
      if (start === undefined || s < start) start = s;
      if (end === undefined || s + d > end) end = s + d;
    }
  }
  if (start === undefined || end === undefined) return {};
  const ms = Number((end - start) / 1_000_000n);
  return { startTimeUnixNano: start.toString(), ...(ms === 0 ? {} : { durationMs: ms }) };
}

/**
 * TraceQL metrics answers (range and instant), rebuilt from `series`,
 * `status` and `message`: their `metrics` (blocks, bytes and spans
 * inspected) measure the whole tenant's data, as search's do. `status` and
 * `message` (max series reached) count the series of the rewritten query,
 * i.e. the team's: relayed (docs/rewriting-traceql.md). An answer of
 * another shape is not relayed (→ 502).
 */
const filterMetricsAnswer: ResponseFilter = (body) => {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new GatewayError('upstream_error', 'upstream answer could not be read');
  const { series, status, message } = body as { series?: unknown; status?: unknown; message?: unknown };
  if (series !== undefined && series !== null && !Array.isArray(series)) throw new GatewayError('upstream_error', 'upstream answer could not be read');
  // status: the PartialStatus enum; message: text. Other types are not Tempo's.
  return { series: series ?? [], ...(isPartialStatus(status) ? { status } : {}), ...(typeof message === 'string' ? { message } : {}) };
};

/** Tag names (v2), rebuilt as `{scopes}` in Tempo's order: the answer's `metrics` (bytes inspected, the whole tenant's) left out. */
const filterTagScopes: ResponseFilter = (body) => readTagScopes(body);

const validTag = (_n: string, v: string) => (v.length === 0 || v.length > 1024 || /[\0\r\n]/.test(v) ? `invalid tag ${JSON.stringify(v)}` : undefined);
/** Trace ids as Tempo parses them: hex, at most 128 bits (shorter ids are left-padded by Tempo). */
const validTraceId = (_n: string, v: string) => (/^[0-9a-fA-F]{1,32}$/.test(v) ? undefined : `invalid trace id ${JSON.stringify(v.slice(0, 64))}: expected 1 to 32 hex digits`);
const get = ['GET'] as const;
/** `/api/search` parameters that filter on the whole trace's duration (Tempo's tag-based search). */
const SEARCH_TRACE_LEVEL_PARAMS = ['minDuration', 'maxDuration'] as const;
const TRACE_RANGE = ['start', 'end'] as const;
/** Trace by id v2, restricted subjects: Tempo's read-time span pruning off (RouteSpec.completeParams, after allowedParams). */
const noSpanPruning = (params: Params) => params.set('span_pruning', 'false');
/** A v2 tag name must be one TraceQL field, as Tempo reads it, so that the answer's filter knows which field it lists. */
const validV2Tag = (n: string, v: string) => validTag(n, v) ?? (tagField(v) === null ? `invalid tag ${JSON.stringify(v)}: expected one TraceQL field, e.g. resource.service.name, span."http.method" or name` : undefined);
/**
 * For restricted subjects, a v2 tag-values tag Tempo answers from the spans
 * the conditions select: Tempo adds the tag itself as a condition, and an
 * unscoped attribute (`.service.name`) or an intrinsic its block readers
 * cannot place makes the whole lookup unfiltered (isFilteredTagValuesField).
 */
const restrictedV2Tag = (_n: string, v: string) => {
  const field = tagField(v);
  if (field === null || isFilteredTagValuesField(field)) return undefined;
  return field.startsWith('.')
    ? `tag ${JSON.stringify(v)} is unscoped: Tempo lists its values from every span whatever the query, so it cannot be restricted; ask resource${field} or span${field}`
    : `values of ${JSON.stringify(v)} cannot be restricted: Tempo lists them from every span whatever the query`;
};
/**
 * For restricted subjects, the values of an unscoped attribute (`.http.method`,
 * which Tempo would list from every span) are asked as those of
 * `resource.<key>` and of `span.<key>` (an unscoped attribute reads either),
 * each under the policy, and merged (RouteSpec.expandPathParam).
 */
const expandUnscopedTag = (_n: string, v: string): string[] | undefined => {
  const field = tagField(v);
  if (field === null) return undefined;
  const f = fieldNameOrNull(field);
  // Not an unscoped attribute (an intrinsic that is no string field, `status`, `kind`, `duration`, included): asked once, as sent.
  if (f === null || f.kind !== 'attribute' || f.scope !== null) return undefined;
  return [formatField({ kind: 'attribute', scope: 'resource', key: f.key }), formatField({ kind: 'attribute', scope: 'span', key: f.key })];
};
/** Tag names and values asked once per policy alternative: the union. Tempo has no "now" of its own here (without start/end it reads recent data). */
const tagScopesFanOut: FanOutSpec = { param: 'q', merge: (answers) => mergeTagScopeAnswers(answers) };
const tagValuesFanOut: FanOutSpec = { param: 'q', merge: (answers, params) => mergeTagValueAnswers(answers, positiveInt(params.get('limit'))) };

/**
 * `upstreams[].refuseTraceLevelIntrinsics`: the refusal (Tempo's words) of a
 * restricted subject's request that reads a trace-level intrinsic
 * (`trace:rootService`, `rootName`, `span:childCount`, `nestedSetLeft`, …:
 * they describe the whole trace or its structure, other teams' spans
 * included; isTraceLevelIntrinsic) in any TraceQL parameter the route enforces, or
 * calls compare() (which reads them all; traceLevelReads), or names one as
 * the tag whose values it lists, or that filters on one with a parameter of its
 * own (RouteSpec.traceLevelParams: the search's `minDuration`/`maxDuration`);
 * undefined when it reads none. Checked on the client's parameters, before
 * enforcement.
 */
export function traceLevelIntrinsicsRefusal(route: RouteSpec, params: { getAll(name: string): string[] }, pathParams: Readonly<Record<string, string>>): string | undefined {
  for (const name of route.traceLevelParams ?? []) {
    // Tempo reads a parameter only when it is not empty (extractQueryParam).
    if (params.getAll(name).some((v) => v !== '')) {
      return `parameter ${JSON.stringify(name)} filters on the whole trace's duration (other teams' spans included), which this gateway does not answer: use duration (a span's) in the TraceQL query`;
    }
  }
  const tag = pathParams['tag'];
  const field = tag === undefined ? null : tagField(tag);
  if (field !== null && isTraceLevelIntrinsic(field)) {
    return `tag ${JSON.stringify(tag)} is a trace-level intrinsic (it describes whole traces or their structure, other teams' spans included), which this gateway does not answer`;
  }
  for (const spec of route.enforced) {
    for (const q of params.getAll(spec.name)) {
      // A q the rewrite replaces by the policy alone (Traces Drilldown's `{nestedSetParent<0 && …}` in tag lookups) reaches nothing.
      if (spec.forwardsClientValue?.(q) === false) continue;
      const { intrinsics: found, compare } = traceLevelReads(q);
      if (found.length > 0) {
        return `invalid TraceQL query: ${found.join(', ')} ${found.length === 1 ? 'is a trace-level intrinsic' : 'are trace-level intrinsics'} (describing whole traces or their structure, other teams' spans included), which this gateway does not answer`;
      }
      if (compare) {
        return 'invalid TraceQL query: compare() answers with every attribute of the spans it observes, trace-level intrinsics included (the root service and span name, the trace\'s structure and duration: other teams\' spans), which this gateway does not answer';
      }
    }
  }
  return undefined;
}

/**
 * Trace by id, restricted subjects: what the client gets when Tempo answers
 * with an error. The gateway cannot tell whether the trace holds one of the
 * team's spans without its body, and Tempo's errors about one trace are about
 * all of it: "trace exceeds max size" (422, v1), "response larger than the
 * max" (500), a failed read of one of its blocks (500). Relayed, they would
 * tell the team that a trace made only of other teams' spans exists and how
 * large it is. So every answer that could be about the trace is the
 * gateway's own "trace not found" (404, as for a trace without the team's
 * spans), whatever Tempo wrote, and the answers that are about Tempo's
 * availability keep their status with the gateway's own text: 429 and 503
 * (retry later), 502, and 504. 400 is about the request's form (the range;
 * the id the gateway has checked; Tempo turns its readers' 4xx into 500) and
 * is relayed as Tempo wrote it. Tempo unreachable stays the gateway's 502.
 */
export function traceErrorAnswer(status: number): RawFilteredResponse | GatewayError | undefined {
  if (status === 400) return undefined;
  if (status === 429 || status === 502 || status === 503) return new GatewayError('upstream_error', `upstream answered ${status}`, { status });
  if (status === 504) return new GatewayError('upstream_timeout', 'upstream timed out');
  return TRACE_NOT_FOUND;
}

/** A positive decimal integer parameter, else 0 (none). */
function positiveInt(v: string | null): number {
  return v !== null && /^[0-9]{1,9}$/.test(v) ? Number(v) : 0;
}

/**
 * Tempo's HTTP API as Grafana's Tempo datasource uses it. Trace by id answers
 * (JSON or protobuf, as the client's Accept asked) are filtered span by span
 * (src/backends/traces.ts); a trace with no allowed span is 404, and so is
 * any error Tempo answers about a trace (traceErrorAnswer).
 */
export const tempoRoutes: RouteTable = {
  kind: 'tempo',
  routes: [
    {
      endpoint: 'search',
      path: '/api/search',
      methods: get,
      enforced: [traceQuery(false), noLegacyTags, noQueryAlias],
      responseFilter: filterSearchResults,
      // The tag-based search's bounds on the whole trace's duration (trace:duration). Tempo applies them only without
      // `q` (its TraceQL engine reads q, start, end, limit and spss), and the gateway always sends a `q`: inert, so
      // dropped for restricted subjects; refused where the upstream refuses trace-level intrinsics.
      droppedParams: SEARCH_TRACE_LEVEL_PARAMS,
      traceLevelParams: SEARCH_TRACE_LEVEL_PARAMS,
    },
    { endpoint: 'search_tags', path: '/api/search/tags', methods: get, enforced: [v1TagLookup] },
    { endpoint: 'search_tags_v2', path: '/api/v2/search/tags', methods: get, enforced: [tagScopeQuery], fanOut: tagScopesFanOut, responseFilter: filterTagScopes },
    { endpoint: 'search_tag_values', path: '/api/search/tag/:tag/values', methods: get, enforced: [v1TagLookup], validatePathParam: validTag },
    {
      endpoint: 'search_tag_values_v2',
      path: '/api/v2/search/tag/:tag/values',
      methods: get,
      enforced: [tagScopeQuery],
      fanOut: tagValuesFanOut,
      responseFilter: filterTagValues,
      validatePathParam: validV2Tag,
      restrictedPathParam: restrictedV2Tag,
      expandPathParam: expandUnscopedTag,
    },
    { endpoint: 'metrics_query_range', path: '/api/metrics/query_range', methods: get, enforced: [traceQuery(true), noQueryAlias], responseFilter: filterMetricsAnswer },
    { endpoint: 'metrics_query', path: '/api/metrics/query', methods: get, enforced: [traceQuery(true), noQueryAlias], responseFilter: filterMetricsAnswer },
    // Only the time range is forwarded for restricted subjects: newer Tempo also reads `q` (and `keep_hierarchy`) here and
    // tests it against every span of the trace, so the answer's kept ancestors and PARTIAL status would tell another team's values.
    { endpoint: 'trace_by_id', path: '/api/traces/:traceId', methods: get, enforced: [], allowedParams: TRACE_RANGE, validatePathParam: validTraceId, rawResponseFilter: filterTraceV1, upstreamErrorAnswer: traceErrorAnswer },
    // Newer Tempo prunes v2 answers on read (span_pruning, on by default where span_pruning_enabled_by_default is set):
    // summary spans group similar spans of the whole trace, other teams' included. Asked off for restricted subjects
    // (an older Tempo ignores the parameter); a summary that comes back anyway is dropped by the filter.
    {
      endpoint: 'trace_by_id_v2',
      path: '/api/v2/traces/:traceId',
      methods: get,
      enforced: [],
      allowedParams: TRACE_RANGE,
      completeParams: noSpanPruning,
      validatePathParam: validTraceId,
      rawResponseFilter: filterTraceV2,
      upstreamErrorAnswer: traceErrorAnswer,
    },
    { endpoint: 'buildinfo', path: '/api/status/buildinfo', methods: get, enforced: [] },
    { endpoint: 'echo', path: '/api/echo', methods: get, enforced: [] },
  ],
};
