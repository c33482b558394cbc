import { parser as logqlParser } from '@grafana/lezer-logql';
import { GatewayError, QueryError } from '../errors.ts';
import { labelPolicyHeader, logQLSelectorLabels, rewriteLogQL, rewriteLogQLDisjointParts, rewriteLogQLPerAlternative, rewriteLogQLSelectors } from '../rewrite/logql.ts';
import { policyConstrainsLabel, type SelectorPolicy } from '../rewrite/matcher.ts';
import type { RewriteLimits } from '../rewrite/rewriter.ts';
import { headerKey } from '../util/header-name.ts';
import { filterLabelValues } from './filters.ts';
import { mergeStatsAnswers, mergeVolumeAnswers } from './index-answers.ts';
import { mergeListAnswers } from './list-answers.ts';
import { logQueryOptions, mergeStreamAnswers } from './log-answers.ts';
import { labelNamePathParamProblem, type EnforcedParam, type FanOutSpec, type RouteSpec, type RouteTable } from './routes.ts';
import type { Params } from './form-params.ts';
import { foldBareMatch } from './params.ts';

/**
 * `policyEnforcement: header`: Loki's X-Prom-Label-Policy for a decision — the
 * policy once per tenant of its X-Scope-OrgID (`a|b` reads several tenants).
 * No tenant → fail closed: Loki applies the header per tenant, so without one
 * nothing would be enforced.
 */
export function lokiPolicyHeader(policy: SelectorPolicy, decisionHeaders: Readonly<Record<string, string>>): string {
  const orgId = Object.entries(decisionHeaders).find(([name]) => headerKey(name) === 'x-scope-orgid')?.[1];
  if (orgId === undefined || orgId === '') {
    throw new GatewayError('policy_error', 'policyEnforcement "header" needs an X-Scope-OrgID tenant header in the decision');
  }
  try {
    return orgId
      .split('|')
      .map((tenant) => labelPolicyHeader(policy, tenant))
      .join(',');
  } catch (e) {
    throw new GatewayError('policy_error', 'the decision cannot be sent as X-Prom-Label-Policy', { cause: e });
  }
}

/** The policy as one stream selector, for endpoints whose `query` is optional. */
function policySelector(policy: SelectorPolicy): string {
  const selectors = rewriteLogQLSelectors([], policy);
  if (selectors.length !== 1) {
    throw new QueryError('logql', 'this endpoint takes one stream selector, which cannot express a policy with several alternatives; pass a query', 'rewrite_unsupported');
  }
  return selectors[0]!;
}

/**
 * `query` of /query and /query_range: a LogQL log or metric query. A log query
 * whose selector can reach several policy alternatives that one selector cannot
 * express becomes one query per alternative; the route fans out and merges the
 * streams (RouteSpec.fanOut, ./log-answers.ts).
 */
const logQuery: EnforcedParam = {
  name: 'query',
  required: true,
  multiple: false,
  rewrite: (values, policy, limits) => values.flatMap((q) => rewriteLogQLPerAlternative(q, policy, limits)),
  missingMessage: 'query parameter is required',
};

/**
 * Loki reads a missing `time` (instant queries) or `end` (everything with a
 * range; `start` defaults to an hour, or `since`, before it) as its own now,
 * per request. Fixed once, as Unix nanoseconds, so that every part of a
 * fan-out answers for the same instant and window.
 */
export const pinNow =
  (name: 'time' | 'end') =>
  (params: Params, nowMs: number): void => {
    if ((params.get(name) ?? '') === '') params.set(name, String(BigInt(Math.round(nowMs)) * 1_000_000n));
  };

const merged = (merge: NonNullable<FanOutSpec['merge']>, pin: 'time' | 'end'): FanOutSpec => ({ param: 'query', merge, pin: pinNow(pin) });

/** Log entries asked once per alternative: the first `limit` of the union in the query's direction. */
const mergeStreams: NonNullable<FanOutSpec['merge']> = (answers, params) => mergeStreamAnswers(answers, logQueryOptions(params));
/** Label names or values asked once per alternative: the sorted union. */
const listsFanOut = merged((answers) => mergeListAnswers(answers), 'end');

/** True when a (valid) LogQL query is a log query, not a metric query. */
function isLogQuery(query: string): boolean {
  // LogQL → Expr → LogExpr | MetricExpr
  const expr = logqlParser.parse(query).topNode.firstChild;
  return expr?.firstChild?.name === 'LogExpr';
}

/**
 * `query` of /tail: a log query (Loki streams log lines only). Rewritten like
 * /query's; under a policy with several alternatives that cannot be one
 * selector, one query per alternative when they are provably disjoint (the
 * route opens a tail for each, RouteSpec.fanOut), else refused.
 */
const tailQuery: EnforcedParam = {
  name: 'query',
  required: true,
  multiple: false,
  rewrite: (values, policy, limits) =>
    values.flatMap((q) => {
      // Under alternatives one selector cannot express, one tail per alternative when no stream can be in two (no line twice).
      const outs = q === '' ? [rewriteLogQL(q, policy, limits)] : rewriteLogQLDisjointParts([q], policy, limits);
      for (const out of outs) if (!isLogQuery(out)) throw new QueryError('logql', 'tail supports log queries only, not metric queries');
      return outs;
    }),
  missingMessage: 'query parameter is required',
};

/**
 * `query` of label, series-like and index endpoints: a stream selector (or a
 * query). When absent, or sent empty (`query=`, as Logs Drilldown does without
 * label filters, which Loki reads as "no selector"), the policy's selector is
 * sent, so the answer only covers allowed streams.
 */
const scopedQuery: EnforcedParam = {
  name: 'query',
  required: false,
  multiple: false,
  rewrite: (values, policy, limits) => {
    const given = values.filter((q) => q !== '');
    return given.length === 0 ? [policySelector(policy)] : given.map((q) => rewriteLogQL(q, policy, limits));
  },
  missingMessage: 'query parameter is required',
};

/**
 * `query` of labels and label values: as scopedQuery, except that a policy one
 * stream selector cannot express (alternatives that do not merge) is not
 * refused. Without a query, one selector per alternative; with a query whose
 * selector several alternatives can reach, one query per alternative, as for
 * log queries. The route then asks Loki once per value and answers the union
 * (RouteSpec.fanOut): label names and values are sets, so the union is exact.
 */
const listQuery: EnforcedParam = {
  ...scopedQuery,
  rewrite: (values, policy, limits) => {
    const given = values.filter((q) => q !== '');
    return given.length === 0 ? rewriteLogQLSelectors([], policy, limits) : given.flatMap((q) => rewriteLogQLPerAlternative(q, policy, limits));
  },
};

/**
 * `query` of the index totals (stats, volume): as scopedQuery, except that a
 * policy one stream selector cannot express is not refused when the
 * alternatives the request reaches select disjoint streams: one selector per
 * alternative, and the route adds up the parts (RouteSpec.fanOut).
 */
const totalsQuery: EnforcedParam = {
  ...scopedQuery,
  rewrite: (values, policy, limits) => rewriteLogQLDisjointParts(values, policy, limits),
};

/** Index stats asked once per disjoint alternative: the counters added up. */
const statsFanOut = merged((answers) => mergeStatsAnswers(answers), 'end');
/** Index volume asked once per disjoint alternative: equal label sets added up, the first `limit`. */
const volumeFanOut = merged((answers, params) => mergeVolumeAnswers(answers, params), 'end');

const matchParam: EnforcedParam = {
  name: 'match[]',
  required: false,
  multiple: true,
  rewrite: (values, policy, limits) => rewriteLogQLSelectors([...values], policy, limits),
  missingMessage: 'match[] parameter is required',
};

/**
 * Loki aggregates a volume by every label its selector matches on unless
 * `targetLabels` says otherwise, so the policy's added matcher (e.g. on
 * `namespace`) would split each service's volume by namespace (Logs
 * Drilldown's service list). Without `targetLabels`, the client's own
 * selector's labels are sent as the grouping, as Loki would have used them.
 */
function volumeTargetLabels(params: Params, limits: RewriteLimits): void {
  // Loki splits targetLabels on commas and reads an empty value as none.
  if ((params.get('targetLabels') ?? '') !== '' || (params.get('aggregateBy') ?? 'series') !== 'series') return;
  const query = params.get('query');
  if (query === null || query === '') return;
  const labels = logQLSelectorLabels(query, limits);
  if (labels.length > 0) params.set('targetLabels', labels.join(','));
}

const both = ['GET', 'POST'] as const;
/**
 * Loki's query frontend hands queriers the chunks to read in `storeChunks`
 * (its own internal parameter): a client's copy would make Loki fetch the
 * chunks it names instead of those its index finds for the query.
 */
const LOKI_INTERNAL = ['storeChunks'] as const;
const scoped = (endpoint: string, path: string, extra: Partial<RouteSpec> = {}): RouteSpec => ({ endpoint, path, methods: both, enforced: [scopedQuery], ...extra });

/**
 * Loki's HTTP API as Grafana's Loki datasource uses it (relative to the mount),
 * and live tail as a WebSocket.
 */
export const lokiRoutes: RouteTable = {
  kind: 'loki',
  buildinfoPath: '/loki/api/v1/status/buildinfo',
  routes: [
    { endpoint: 'query', path: '/loki/api/v1/query', methods: both, enforced: [logQuery], droppedParams: LOKI_INTERNAL, fanOut: merged(mergeStreams, 'time'), headerEnforced: true },
    { endpoint: 'query_range', path: '/loki/api/v1/query_range', methods: both, enforced: [logQuery], droppedParams: LOKI_INTERNAL, fanOut: merged(mergeStreams, 'end'), headerEnforced: true },
    // WebSocket; delay_for, limit and start pass through. Upstream messages are relayed as-is
    // (the rewritten query already restricts the streams); client messages are dropped.
    { endpoint: 'tail', path: '/loki/api/v1/tail', methods: ['GET'], enforced: [tailQuery], websocket: true, fanOut: { param: 'query' }, headerEnforced: true },
    // Grafana's label browser: under alternatives one selector cannot express, one request per alternative.
    // Loki reads `query` on label names from 3.0 (grafana/loki#11982) and, for recent data, on label values from 3.0 too (#10759).
    scoped('labels', '/loki/api/v1/labels', { enforced: [listQuery], fanOut: listsFanOut, minVersion: '3.0.0' }),
    scoped('label_values', '/loki/api/v1/label/:name/values', {
      methods: ['GET'],
      minVersion: '3.0.0',
      enforced: [listQuery],
      fanOut: listsFanOut,
      responseFilter: filterLabelValues,
      filters: (policy, { name }) => policyConstrainsLabel(policy, name ?? ''),
      validatePathParam: labelNamePathParamProblem,
      headerEnforced: true,
    }),
    { endpoint: 'series', path: '/loki/api/v1/series', methods: both, completeParams: foldBareMatch, enforced: [matchParam] },
    // Sums over streams: under disjoint alternatives one selector cannot express, one request per alternative, added up.
    scoped('index_stats', '/loki/api/v1/index/stats', { enforced: [totalsQuery], fanOut: statsFanOut }),
    // Rewritten in header mode too: Loki's access control adds the policy to a volume query only
    // under a single alternative and lets bare label names (aggregateBy=labels) through its answer
    // filter, so under several alternatives it would answer over every stream of the tenant.
    scoped('index_volume', '/loki/api/v1/index/volume', { completeParams: volumeTargetLabels, enforced: [totalsQuery], fanOut: volumeFanOut }),
    scoped('index_volume_range', '/loki/api/v1/index/volume_range', { completeParams: volumeTargetLabels }),
    scoped('patterns', '/loki/api/v1/patterns'),
    scoped('detected_fields', '/loki/api/v1/detected_fields'),
    // Before 3.2 (grafana/loki#14012) the store side of detected_labels ignores the selector.
    scoped('detected_labels', '/loki/api/v1/detected_labels', { minVersion: '3.2.0' }),
    scoped('detected_field_values', '/loki/api/v1/detected_field/:name/values', { methods: ['GET'], validatePathParam: labelNamePathParamProblem }),
    // Formatting reads no data; the text is formatted as written.
    { endpoint: 'format_query', path: '/loki/api/v1/format_query', methods: both, enforced: [] },
    { endpoint: 'buildinfo', path: '/loki/api/v1/status/buildinfo', methods: ['GET'], enforced: [] },
    // Logs Drilldown's boot call: the tenant's limits (configuration, no log data), for the policy's tenant.
    { endpoint: 'drilldown_limits', path: '/loki/api/v1/drilldown-limits', methods: ['GET'], enforced: [] },
  ],
};
