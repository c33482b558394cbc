import { rewritePromQL, rewritePromQLPerGroup, rewriteSeriesSelectors } from '../rewrite/promql.ts';
import { policyConstrainsLabel } from '../rewrite/matcher.ts';
import { filterAlerts, filterLabelValues, filterMetadata, filterRules, type ResponseFilter } from './filters.ts';
import { mergeMatrixAnswers, pinEvaluationTime } from './matrix-answers.ts';
import { foldBareMatch } from './params.ts';
import { labelNamePathParamProblem, type EnforcedParam, type FanOutSpec, type LookupSpec, type RouteTable } from './routes.ts';

/**
 * Prometheus 3 accepts UTF-8 label names in the label-values path in its
 * "underscore escaping": `U__` + the name with `_` as `__` and any other
 * character outside [A-Za-z0-9] as `_<hex code point>_`. The response filter
 * must judge the name Prometheus will use. Anything malformed stays as written
 * (Prometheus then treats it literally as well).
 */
export function unescapeLabelName(name: string): string {
  if (!name.startsWith('U__')) return name;
  let out = '';
  const s = name.slice(3);
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '_') {
      out += c;
      continue;
    }
    if (s[i + 1] === '_') {
      out += '_';
      i++;
      continue;
    }
    const end = s.indexOf('_', i + 1);
    const hex = end < 0 ? '' : s.slice(i + 1, end);
    if (!/^[0-9A-Fa-f]{1,6}$/.test(hex) || Number.parseInt(hex, 16) > 0x10ffff) return name;
    out += String.fromCodePoint(Number.parseInt(hex, 16));
    i = end;
  }
  return out;
}

const filterPromLabelValues: ResponseFilter = (body, ctx) => filterLabelValues(body, { ...ctx, pathParams: { ...ctx.pathParams, name: unescapeLabelName(ctx.pathParams['name'] ?? '') } });

/** `query` of /query and /query_range: one PromQL expression. */
const queryParam: EnforcedParam = {
  name: 'query',
  required: true,
  multiple: false,
  rewrite: (values, policy, limits) => values.map((q) => rewritePromQL(q, policy, limits)),
  missingMessage: 'invalid parameter "query": unknown position: parse error: no expression found in input',
};

/**
 * `query` of /query: as queryParam, except that a query that is only a range
 * selector, which a policy of several groups cannot rewrite into one query,
 * becomes one query per group; the route asks each and merges the matrices.
 */
const instantQueryParam: EnforcedParam = {
  ...queryParam,
  rewrite: (values, policy, limits) => values.flatMap((q) => rewritePromQLPerGroup(q, policy, limits)),
};

/** Raw samples asked once per policy group, at one evaluation time: the sorted union of the series. */
const matrixFanOut: FanOutSpec = { param: 'query', merge: mergeMatrixAnswers, pin: pinEvaluationTime };

/** `match[]`: series selectors, unioned by Prometheus; with a policy they are never absent. */
const matchParam = (required: boolean): EnforcedParam => ({
  name: 'match[]',
  required,
  multiple: true,
  rewrite: (values, policy, limits) => rewriteSeriesSelectors([...values], policy, limits),
  missingMessage: 'no match[] parameter provided',
});

/** How far back a metric must have a visible series for its metadata to be shown. */
export const METADATA_LOOKBACK_SECONDS = 3600;

/**
 * The metric names the policy can see: Prometheus' metadata is per metric name
 * (from the targets being scraped), so names with a visible series in the last
 * hour decide which metadata a restricted subject gets.
 */
const visibleMetricNames: LookupSpec = {
  path: '/api/v1/label/__name__/values',
  // A metric whose first series appeared in the last half minute may lack its metadata that long.
  maxAgeMs: 30_000,
  params: (policy, now) => {
    const p = new URLSearchParams();
    for (const m of rewriteSeriesSelectors([], policy)) p.append('match[]', m);
    p.set('start', String(now - METADATA_LOOKBACK_SECONDS));
    p.set('end', String(now));
    return p;
  },
};

/**
 * The Prometheus HTTP API routes the gateway serves (relative to the upstream
 * mount). Grafana's Prometheus datasource POSTs form bodies for queries.
 */
export const prometheusRoutes: RouteTable = {
  kind: 'prometheus',
  routes: [
    { endpoint: 'query', path: '/api/v1/query', methods: ['GET', 'POST'], enforced: [instantQueryParam], fanOut: matrixFanOut },
    { endpoint: 'query_range', path: '/api/v1/query_range', methods: ['GET', 'POST'], enforced: [queryParam] },
    // A bare `match` is enforced as `match[]` (foldBareMatch): VictoriaMetrics reads both and answers their union.
    { endpoint: 'series', path: '/api/v1/series', methods: ['GET', 'POST'], completeParams: foldBareMatch, enforced: [matchParam(true)] },
    { endpoint: 'labels', path: '/api/v1/labels', methods: ['GET', 'POST'], completeParams: foldBareMatch, enforced: [matchParam(false)] },
    {
      endpoint: 'label_values',
      path: '/api/v1/label/:name/values',
      methods: ['GET'],
      completeParams: foldBareMatch,
      enforced: [matchParam(false)],
      responseFilter: filterPromLabelValues,
      // Values of a label the policy does not restrict (job, pod, __name__ for the metric browser) are
      // only those of the series match[] already limits: streamed, not read whole and re-encoded.
      filters: (policy, { name }) => policyConstrainsLabel(policy, unescapeLabelName(name ?? '')),
      validatePathParam: labelNamePathParamProblem,
    },
    { endpoint: 'query_exemplars', path: '/api/v1/query_exemplars', methods: ['GET', 'POST'], enforced: [queryParam] },
    // Formatting reads no data; the query is forwarded as written so Grafana's "format" shows the user's own text.
    { endpoint: 'format_query', path: '/api/v1/format_query', methods: ['GET', 'POST'], enforced: [] },
    // Paging happens before the filter: Prometheus would page over every tenant's groups (and its
    // groupNextToken counts and fingerprints them), so restricted subjects get the whole, filtered list.
    { endpoint: 'rules', path: '/api/v1/rules', methods: ['GET'], enforced: [], droppedParams: ['group_limit', 'group_next_token'], heldParams: ['exclude_alerts'], responseFilter: filterRules },
    { endpoint: 'alerts', path: '/api/v1/alerts', methods: ['GET'], enforced: [], responseFilter: filterAlerts },
    { endpoint: 'buildinfo', path: '/api/v1/status/buildinfo', methods: ['GET'], enforced: [] },
    // Metric type/help for Grafana's query builder: only metrics the policy can see (a lookup of their names).
    // `limit` is applied after the filter: Prometheus counts every team's metric names towards it (in map order),
    // so how often a small limit came back short would tell how many names other teams have.
    {
      endpoint: 'metadata',
      path: '/api/v1/metadata',
      methods: ['GET'],
      enforced: [],
      heldParams: ['limit'],
      heldParamsProblem: ({ limit }) => (limit !== undefined && !/^[+-]?[0-9]{1,18}$/.test(limit) ? 'limit must be a number' : undefined),
      responseFilter: filterMetadata,
      lookup: visibleMetricNames,
    },
  ],
};
