import { rewritePromQL, rewriteSeriesSelectors } from '../rewrite/promql.ts';
import { filterAlerts, filterLabelValues, filterRules } from './filters.ts';
import type { EnforcedParam, RouteTable } from './routes.ts';

/** `query` of /query and /query_range: one PromQL expression. */
const queryParam: EnforcedParam = {
  name: 'query',
  required: true,
  multiple: false,
  rewrite: (values, policy, limits) => values.map((q) => rewritePromQL(q, policy, limits)),
  missingMessage: 'invalid parameter "query": unknown position: parse error: no expression found in input',
};

/** `match[]`: series selectors, unioned by Prometheus; with a policy they are never absent. */
const matchParam = (required: boolean): EnforcedParam => ({
  name: 'match[]',
  required,
  multiple: true,
  rewrite: (values, policy) => rewriteSeriesSelectors([...values], policy),
  missingMessage: 'no match[] parameter provided',
});

/**
 * The Prometheus HTTP API routes the gateway serves (relative to the upstream
 * mount). Grafana's Prometheus datasource POSTs form bodies for queries.
 */
export const prometheusRoutes: RouteTable = {
  kind: 'prometheus',
  routes: [
    { endpoint: 'query', path: '/api/v1/query', methods: ['GET', 'POST'], enforced: [queryParam] },
    { endpoint: 'query_range', path: '/api/v1/query_range', methods: ['GET', 'POST'], enforced: [queryParam] },
    { endpoint: 'series', path: '/api/v1/series', methods: ['GET', 'POST'], enforced: [matchParam(true)] },
    { endpoint: 'labels', path: '/api/v1/labels', methods: ['GET', 'POST'], enforced: [matchParam(false)] },
    {
      endpoint: 'label_values',
      path: '/api/v1/label/:name/values',
      methods: ['GET'],
      enforced: [matchParam(false)],
      responseFilter: filterLabelValues,
      validatePathParam: (_n, v) => (v.length === 0 || v.length > 1024 || /[\0\r\n]/.test(v) ? `invalid label name ${JSON.stringify(v)}` : undefined),
    },
    { endpoint: 'query_exemplars', path: '/api/v1/query_exemplars', methods: ['GET', 'POST'], enforced: [queryParam] },
    // Formatting reads no data; the query is forwarded as written so Grafana's "format" shows the user's own text.
    { endpoint: 'format_query', path: '/api/v1/format_query', methods: ['GET', 'POST'], enforced: [] },
    { endpoint: 'rules', path: '/api/v1/rules', methods: ['GET'], enforced: [], responseFilter: filterRules },
    { endpoint: 'alerts', path: '/api/v1/alerts', methods: ['GET'], enforced: [], responseFilter: filterAlerts },
    { endpoint: 'buildinfo', path: '/api/v1/status/buildinfo', methods: ['GET'], enforced: [] },
  ],
};
