import { QueryError } from '../errors.ts';
import type { SelectorPolicy } from '../rewrite/matcher.ts';
import { rewriteTraceQL } from '../rewrite/traceql.ts';
import type { ResponseFilter } from './filters.ts';
import { policyAllowsValue } from '../rewrite/matcher.ts';
import type { EnforcedParam, RouteSpec, RouteTable } from './routes.ts';
import { filterTraceV1, filterTraceV2 } from './traces.ts';

/** `q`: a TraceQL query. When absent, `{ }` — every span — is sent, enforced, so the answer only covers allowed spans. */
const traceQuery = (required: boolean): EnforcedParam => ({
  name: 'q',
  required,
  multiple: false,
  rewrite: (values, policy: SelectorPolicy, limits) => (values.length === 0 ? [rewriteTraceQL('{}', policy, limits)] : values.map((q) => rewriteTraceQL(q, policy, limits))),
  missingMessage: 'invalid TraceQL query: q is required',
});

/**
 * `q` of the tag APIs: Grafana sends the half-typed query there for
 * autocompletion, which Tempo parses leniently. A `q` the gateway cannot parse
 * is replaced by `{ C }` — the policy alone — which can only narrow the answer.
 */
const tagScopeQuery: EnforcedParam = {
  ...traceQuery(false),
  rewrite: (values, policy, limits) =>
    values.length === 0
      ? [rewriteTraceQL('{}', policy, limits)]
      : values.map((q) => {
          try {
            return rewriteTraceQL(q, policy, limits);
          } catch (e) {
            if (e instanceof QueryError && e.code === 'bad_query') return rewriteTraceQL('{}', policy, limits);
            throw e;
          }
        }),
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

/** `resource.k8s.namespace.name` → `k8s.namespace.name`; `.x` → `x`: the unscoped name v1 tag APIs use. */
function unscoped(name: string): string {
  const m = /^(?:resource|span|event|link|instrumentation)?\.(.*)$/s.exec(name);
  return m ? m[1]! : name;
}

/**
 * Tag values: v2 answers `{tagValues: [{type, value}]}`, v1 `{tagValues: [string]}`.
 * Drops values the policy's matchers on that tag refuse; v1 names tags without
 * scope, so a policy name matches it by its unscoped form too.
 */
const filterTagValues: ResponseFilter = (body, { policy, pathParams }) => {
  const requested = pathParams['tag'] ?? '';
  const tag = unscoped(requested);
  const onTag: SelectorPolicy = policy.map((g) => g.map((m) => (m.name === requested || unscoped(m.name) === tag ? { ...m, name: requested } : m)));
  const values = typeof body === 'object' && body !== null && Array.isArray((body as { tagValues?: unknown }).tagValues) ? (body as { tagValues: unknown[] }).tagValues : [];
  const valueOf = (v: unknown) => (typeof v === 'string' ? v : typeof v === 'object' && v !== null ? (v as { value?: unknown }).value : undefined);
  // Rebuilt from what was checked (and Tempo's `metrics` object, which counts bytes inspected): nothing else is copied.
  const metrics = typeof body === 'object' && body !== null ? (body as { metrics?: unknown }).metrics : undefined;
  return {
    tagValues: values.filter((v) => typeof valueOf(v) === 'string' && policyAllowsValue(onTag, requested, valueOf(v) as string)),
    ...(typeof metrics === 'object' && metrics !== null && !Array.isArray(metrics) ? { metrics } : {}),
  };
};

const validTag = (_n: string, v: string) => (v.length === 0 || v.length > 1024 || /[\0\r\n]/.test(v) ? `invalid tag ${JSON.stringify(v)}` : undefined);
/** Trace ids as Tempo parses them: hex, at most 128 bits (shorter ids are left-padded by Tempo). */
const validTraceId = (_n: string, v: string) => (/^[0-9a-fA-F]{1,32}$/.test(v) ? undefined : `invalid trace id ${JSON.stringify(v.slice(0, 64))}: expected 1 to 32 hex digits`);
const get = ['GET'] as const;
const tagValues = (endpoint: string, path: string): RouteSpec => ({ endpoint, path, methods: get, enforced: [tagScopeQuery], responseFilter: filterTagValues, validatePathParam: validTag });

/**
 * Tempo's HTTP API as Grafana's Tempo datasource uses it. Trace by id answers
 * (JSON or protobuf, as the client's Accept asked) are filtered span by span
 * (src/backends/traces.ts); a trace with no allowed span is 404.
 */
export const tempoRoutes: RouteTable = {
  kind: 'tempo',
  routes: [
    { endpoint: 'search', path: '/api/search', methods: get, enforced: [traceQuery(false), noLegacyTags, noQueryAlias] },
    { endpoint: 'search_tags', path: '/api/search/tags', methods: get, enforced: [tagScopeQuery] },
    { endpoint: 'search_tags_v2', path: '/api/v2/search/tags', methods: get, enforced: [tagScopeQuery] },
    tagValues('search_tag_values', '/api/search/tag/:tag/values'),
    tagValues('search_tag_values_v2', '/api/v2/search/tag/:tag/values'),
    { endpoint: 'metrics_query_range', path: '/api/metrics/query_range', methods: get, enforced: [traceQuery(true), noQueryAlias] },
    { endpoint: 'metrics_query', path: '/api/metrics/query', methods: get, enforced: [traceQuery(true), noQueryAlias] },
    { endpoint: 'trace_by_id', path: '/api/traces/:traceId', methods: get, enforced: [], validatePathParam: validTraceId, rawResponseFilter: filterTraceV1 },
    { endpoint: 'trace_by_id_v2', path: '/api/v2/traces/:traceId', methods: get, enforced: [], validatePathParam: validTraceId, rawResponseFilter: filterTraceV2 },
    { endpoint: 'buildinfo', path: '/api/status/buildinfo', methods: get, enforced: [] },
    { endpoint: 'echo', path: '/api/echo', methods: get, enforced: [] },
  ],
};
