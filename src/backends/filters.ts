import { policyLabelsTest, policyValueTest } from '../rewrite/matcher.ts';
import type { FilterContext } from './routes.ts';
import { isRecord } from '../util/is-record.ts';
import { pick } from '../util/pick.ts';

/**
 * Response filters for what a query cannot enforce: pure functions from a
 * parsed upstream JSON body to the body the client may see. A body that does
 * not have the expected shape is replaced by an empty result (fail closed).
 * Applied only where a route's `filters` says the request needs it: label
 * values of a label the policy does not restrict pass as the upstream sent
 * them, like the answers of query routes (RouteSpec.filters).
 */
export type ResponseFilter = (body: unknown, ctx: FilterContext) => unknown;

type Json = Record<string, unknown>;
const labelsOf = (x: unknown): Record<string, string> => {
  if (!isRecord(x)) return {};
  // No prototype: a label named "__proto__" is kept as one (an assignment on a plain object would drop it).
  const out = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(x)) if (typeof v === 'string') out[k] = v;
  return out;
};

function successData(body: unknown): unknown {
  return isRecord(body) && body['status'] === 'success' ? body['data'] : undefined;
}

/**
 * What a filtered answer keeps of the upstream's envelope: Prometheus'
 * `warnings` and `infos` when they are lists of strings. Everything else is
 * rebuilt from what the filter checked; unknown fields (a page token, a
 * non-standard backend's extras) and bodies of another shape are not copied.
 */
function notes(body: unknown): Json {
  const out: Json = {};
  if (!isRecord(body)) return out;
  for (const key of ['warnings', 'infos']) {
    const v = body[key];
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) out[key] = v;
  }
  return out;
}

/**
 * The fields of Prometheus' rules and alerts answers (web/api/v1/api.go:
 * RuleGroup, AlertingRule, RecordingRule, Alert) a filtered answer copies;
 * `rules` and `alerts` are rebuilt. A field another ruler adds (Thanos,
 * Mimir, vmalert, a newer Prometheus) is not relayed until reviewed: it could
 * carry what the filter did not check.
 */
const RULE_GROUP_FIELDS = ['name', 'file', 'interval', 'limit', 'evaluationTime', 'lastEvaluation'] as const;
const RULE_FIELDS = ['state', 'name', 'query', 'duration', 'keepFiringFor', 'labels', 'annotations', 'health', 'lastError', 'evaluationTime', 'lastEvaluation', 'type'] as const;
const ALERT_FIELDS = ['labels', 'annotations', 'state', 'activeAt', 'keepFiringSince', 'value'] as const;

/**
 * /api/v1/rules: keep rules whose labels the policy allows (as prom-label-proxy
 * does with its tenant label); for alerting rules also filter their active alerts.
 * Groups left without rules are dropped.
 */
export const filterRules: ResponseFilter = (body, { policy, held }) => {
  const data = successData(body);
  const groups = isRecord(data) && Array.isArray(data['groups']) ? data['groups'] : [];
  // exclude_alerts is held back (RouteSpec.heldParams): the alerts are needed for the state, then left out here.
  const excludeAlerts = held?.['exclude_alerts'] === 'true';
  const visible = policyLabelsTest(policy);
  const kept = groups.flatMap((g): Json[] => {
    if (!isRecord(g) || !Array.isArray(g['rules'])) return [];
    const rules = g['rules'].flatMap((r): Json[] => {
      if (!isRecord(r) || !visible(labelsOf(r['labels']))) return [];
      // Alerts that are neither a list nor absent cannot be filtered: the rule is left out.
      if (r['alerts'] !== undefined && r['alerts'] !== null && !Array.isArray(r['alerts'])) return [];
      return [filterRule(r, visible, excludeAlerts)];
    });
    if (rules.length === 0) return [];
    const group: Json = { ...pick(g, RULE_GROUP_FIELDS), rules };
    if (rules.length !== g['rules'].length) evaluatedAs(group, rules);
    return [group];
  });
  return { status: 'success', data: { groups: kept }, ...notes(body) };
};

/**
 * A group some of whose rules were left out: its evaluation time and start
 * are those of the rules kept (the sum of their times, the earliest of their
 * starts), since the group's own include the time spent on the other rules,
 * which tells how many and how costly they are. Left out when a kept rule
 * lacks one.
 */
function evaluatedAs(group: Json, rules: readonly Json[]): void {
  delete group['evaluationTime'];
  delete group['lastEvaluation'];
  const times = rules.map((r) => r['evaluationTime']);
  if (times.every((t): t is number => typeof t === 'number' && Number.isFinite(t))) group['evaluationTime'] = times.reduce((a, b) => a + b, 0);
  const starts = rules.map((r) => r['lastEvaluation']);
  if (starts.every((t): t is string => typeof t === 'string' && !Number.isNaN(Date.parse(t)))) {
    group['lastEvaluation'] = starts.reduce((a, b) => (Date.parse(b) < Date.parse(a) ? b : a));
  }
}

/**
 * One rule the policy keeps: its alerts filtered and its state recomputed
 * from them; its last evaluation error withheld, since the error text quotes
 * the series involved, which may be other teams' (e.g. "found duplicate series
 * for the match group … [{…namespace="team-b"…}]").
 */
function filterRule(r: Json, visible: (labels: Readonly<Record<string, string>>) => boolean, excludeAlerts: boolean): Json {
  const out: Json = pick(r, RULE_FIELDS);
  if (typeof r['lastError'] === 'string' && r['lastError'] !== '') out['lastError'] = WITHHELD_RULE_ERROR;
  if (r['alerts'] === null) out['alerts'] = null;
  if (Array.isArray(r['alerts'])) {
    const alerts = r['alerts'].filter((a): a is Json => isRecord(a) && visible(labelsOf(a['labels']))).map((a) => pick(a, ALERT_FIELDS));
    // An alerting rule's state is its alerts' (firing over pending over inactive).
    if (alerts.length !== r['alerts'].length && typeof r['state'] === 'string') out['state'] = ruleState(alerts);
    out['alerts'] = alerts;
  }
  if (excludeAlerts && r['type'] === 'alerting') out['alerts'] = null;
  return out;
}

/** What a restricted subject reads instead of a rule's evaluation error. */
export const WITHHELD_RULE_ERROR = 'rule evaluation failed (the error text is withheld by the gateway: it may quote series outside your access)';

function ruleState(alerts: readonly Json[]): string {
  const states = new Set(alerts.map((a) => (isRecord(a) ? a['state'] : undefined)));
  return states.has('firing') ? 'firing' : states.has('pending') ? 'pending' : 'inactive';
}

/** /api/v1/alerts: active alerts whose labels the policy allows. */
export const filterAlerts: ResponseFilter = (body, { policy }) => {
  const data = successData(body);
  const alerts = isRecord(data) && Array.isArray(data['alerts']) ? data['alerts'] : [];
  const visible = policyLabelsTest(policy);
  return { status: 'success', data: { alerts: alerts.filter((a): a is Json => isRecord(a) && visible(labelsOf(a['labels']))).map((a) => pick(a, ALERT_FIELDS)) }, ...notes(body) };
};

/**
 * /api/v1/label/<name>/values: the query side already restricts values with
 * match[]; this second line of defence drops any value the policy's matchers on
 * that very label could not accept (RE2, fully anchored) — what Grafana's
 * dropdowns show.
 */
export const filterLabelValues: ResponseFilter = (body, { policy, pathParams }) => {
  const data = successData(body);
  const name = pathParams['name'] ?? '';
  const values = Array.isArray(data) ? data.filter((v): v is string => typeof v === 'string') : [];
  return { status: 'success', data: values.filter(policyValueTest(policy, name)), ...notes(body) };
};

/**
 * The series a metric family of each metadata type has under other names:
 * Prometheus keys metadata by family (`http_seconds`, OpenMetrics' `requests`
 * and `build`), while the series are `http_seconds_bucket`, `requests_total`,
 * `build_info`. An entry is shown for a family whose own name is not a visible
 * series only when all of its type's series here are visible: a team's own
 * gauge `jobs_count` alone does not show another team's summary `jobs`.
 */
const FAMILY_SERIES_SUFFIXES: ReadonlyMap<string, readonly string[]> = new Map([
  ['counter', ['_total']],
  ['histogram', ['_bucket', '_count', '_sum']],
  ['gaugehistogram', ['_bucket', '_gcount', '_gsum']],
  ['summary', ['_count', '_sum']],
  ['info', ['_info']],
]);

/**
 * Prometheus `/api/v1/metadata` (`{metric: [{type, help, unit}]}`) keeps only the
 * metrics the policy can see: `ctx.lookup` is the answer of
 * `/api/v1/label/__name__/values` with the policy's selectors as `match[]`,
 * a family matched by its name or by its type's series (FAMILY_SERIES_SUFFIXES);
 * then the client's `limit` (held back from Prometheus, which would count
 * other teams' metrics towards it).
 * Anything unexpected in either answer leaves nothing (fail closed).
 */
export const filterMetadata: ResponseFilter = (body, { lookup, held }) => {
  const data = successData(body);
  const names = successData(lookup);
  const visible = new Set(Array.isArray(names) ? names.filter((n): n is string => typeof n === 'string') : []);
  let entries: [string, unknown[]][] = [];
  if (isRecord(data)) {
    for (const [family, list] of Object.entries(data)) {
      if (!Array.isArray(list)) continue;
      const shown = visible.has(family) ? list : list.filter((m) => isRecord(m) && typeof m['type'] === 'string' && (FAMILY_SERIES_SUFFIXES.get(m['type'])?.every((suffix) => visible.has(family + suffix)) ?? false));
      if (shown.length > 0) entries.push([family, shown]);
    }
  }
  // `limit` is held back (RouteSpec.heldParams) and applied here, to the visible metrics only; negative: none (as Prometheus).
  const limit = held?.['limit'] === undefined ? -1 : Number(held['limit']);
  if (Number.isInteger(limit) && limit >= 0) entries = entries.slice(0, limit);
  return { status: 'success', data: Object.fromEntries(entries), ...notes(body) };
};
