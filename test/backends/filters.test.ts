import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { thrownCode as codeOf } from '../rewrite/query-errors.ts';
import { WITHHELD_RULE_ERROR, filterAlerts, filterLabelValues, filterRules } from '../../src/backends/filters.ts';
import { MAX_FORWARDED_BYTES, MAX_FORWARDED_PARAMETERS, MAX_VALUES_PER_PARAMETER, encodeForwarded, enforceParams } from '../../src/backends/params.ts';
import { FormParams } from '../../src/backends/form-params.ts';
import { prometheusRoutes } from '../../src/backends/prometheus.ts';
import { tempoRoutes } from '../../src/backends/tempo.ts';
import { lokiRoutes } from '../../src/backends/loki.ts';
import { DEFAULT_LIMITS } from '../../src/rewrite/rewriter.ts';
import { policyAllowsValue, policyConstrainsLabel, policyMatchesLabels, type MatchOp, type SelectorPolicy } from '../../src/rewrite/matcher.ts';

const teamA: SelectorPolicy = [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]];
const dnf: SelectorPolicy = [
  [{ name: 'namespace', op: '=', value: 'a' }, { name: 'secret', op: '!=', value: 'true' }],
  [{ name: 'namespace', op: '=~', value: 'b|c' }],
];

describe('policyMatchesLabels', () => {
  it('RE2 regexes are fully anchored; a missing label is the empty string', () => {
    expect(policyMatchesLabels(teamA, { namespace: 'team-a-x' })).toBe(true);
    expect(policyMatchesLabels(teamA, { namespace: 'xteam-a-x' })).toBe(false);
    expect(policyMatchesLabels(teamA, {})).toBe(false);
    expect(policyMatchesLabels([[{ name: 'x', op: '!=', value: 'v' }]], {})).toBe(true);
    expect(policyMatchesLabels([[{ name: 'x', op: '!~', value: '.+' }]], {})).toBe(true);
  });
  it('`.` matches a newline, as in Prometheus (^(?s:re)$): a negative policy hides such values too', () => {
    const notTeamB: SelectorPolicy = [[{ name: 'namespace', op: '!~', value: 'team-b-.*' }]];
    expect(policyMatchesLabels(notTeamB, { namespace: 'team-b-api\nx' })).toBe(false);
    expect(policyMatchesLabels(notTeamB, { namespace: 'team-a-api\nx' })).toBe(true);
    expect(policyMatchesLabels([[{ name: 'namespace', op: '=~', value: 'a.b' }]], { namespace: 'a\nb' })).toBe(true);
    expect(policyAllowsValue(notTeamB, 'namespace', 'team-b-api\r\nx')).toBe(false);
  });

  it('label names that Object.prototype holds (constructor, toString, __proto__) are labels like any other: missing is the empty string', () => {
    // A label set is a plain object (parsed JSON): its inherited members are not labels.
    for (const name of ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__']) {
      expect(policyMatchesLabels([[{ name, op: '!=', value: '' }]], { namespace: 'team-b' })).toBe(false);
      expect(policyMatchesLabels([[{ name, op: '=~', value: '.+' }]], { namespace: 'team-b' })).toBe(false);
      expect(policyMatchesLabels([[{ name, op: '!~', value: '.+' }]], { namespace: 'team-b' })).toBe(true);
      expect(policyMatchesLabels([[{ name, op: '=', value: 'x' }]], JSON.parse(`{"${name}": "x"}`) as Record<string, string>)).toBe(true);
    }
    // Alerts and rules of the upstream's answer, through the route filters.
    const alerts = [{ labels: { namespace: 'team-b' } }, { labels: JSON.parse('{"namespace": "team-a", "__proto__": "x", "constructor": "y"}') as unknown }];
    const presence: SelectorPolicy = [[{ name: '__proto__', op: '=~', value: '.+' }, { name: 'constructor', op: '!=', value: '' }]];
    expect(filterAlerts({ status: 'success', data: { alerts } }, { policy: presence, pathParams: {} })).toMatchObject({ data: { alerts: [alerts[1]] } });
    const rules = { status: 'success', data: { groups: [{ name: 'g', rules: alerts.map((a, i) => ({ name: `r${i}`, type: 'recording', labels: a.labels })) }] } };
    expect((filterRules(rules, { policy: [[{ name: 'toString', op: '!=', value: '' }]], pathParams: {} }) as { data: { groups: unknown[] } }).data.groups).toEqual([]);
  });

  it('DNF: any group, all matchers of it', () => {
    expect(policyMatchesLabels(dnf, { namespace: 'a' })).toBe(true);
    expect(policyMatchesLabels(dnf, { namespace: 'a', secret: 'true' })).toBe(false);
    expect(policyMatchesLabels(dnf, { namespace: 'c', secret: 'true' })).toBe(true);
    expect(policyMatchesLabels(dnf, { namespace: 'd' })).toBe(false);
  });
  it('policyConstrainsLabel: when false, policyAllowsValue accepts every value of that label (its filter is skipped)', () => {
    const names = ['namespace', 'job', 'pod'];
    const matcher = fc.record({
      name: fc.constantFrom(...names),
      op: fc.constantFrom<MatchOp>('=', '!=', '=~', '!~'),
      value: fc.constantFrom('a', 'b', 'team-a-.*', '.*', '.+', '', 'a|b'),
    });
    const policy = fc.array(fc.array(matcher, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 });
    fc.assert(
      fc.property(policy, fc.constantFrom(...names, '__name__'), fc.array(fc.constantFrom('a', 'b', 'team-a-x', '', 'zz'), { maxLength: 6 }), (p, name, values) => {
        if (!policyConstrainsLabel(p, name)) for (const v of values) expect(policyAllowsValue(p, name, v)).toBe(true);
      }),
      { numRuns: 2000 },
    );
    expect(policyConstrainsLabel(dnf, 'namespace')).toBe(true);
    expect(policyConstrainsLabel(dnf, 'secret')).toBe(false);
    expect(policyConstrainsLabel([], 'namespace')).toBe(true);
  });

  it('policyAllowsValue judges only the matchers on that label', () => {
    expect(policyAllowsValue(dnf, 'namespace', 'a')).toBe(true);
    expect(policyAllowsValue(dnf, 'namespace', 'd')).toBe(false);
    expect(policyAllowsValue(dnf, 'secret', 'true')).toBe(true); // group 2 says nothing about `secret`
    expect(policyAllowsValue([[{ name: 'secret', op: '!=', value: 'true' }]], 'secret', 'true')).toBe(false);
  });
});

describe('response filters', () => {
  const rules = {
    status: 'success',
    data: {
      groups: [
        {
          name: 'a',
          file: 'a.yml',
          rules: [
            { type: 'alerting', name: 'AErr', labels: { namespace: 'team-a-web' }, alerts: [{ labels: { namespace: 'team-a-web' } }, { labels: { namespace: 'team-b-api' } }] },
            { type: 'recording', name: 'r', labels: {} },
          ],
        },
        { name: 'b', rules: [{ type: 'alerting', name: 'BErr', labels: { namespace: 'team-b-api' }, alerts: [] }] },
        { name: 'broken', rules: 'not a list' },
      ],
    },
  };
  it('rules: keeps allowed rules and their allowed alerts, drops empty groups', () => {
    const out = filterRules(rules, { policy: teamA, pathParams: {} }) as typeof rules;
    expect(out.data.groups.map((g) => g.name)).toEqual(['a']);
    const r = out.data.groups[0]!.rules as { name: string; alerts?: unknown[] }[];
    expect(r.map((x) => x.name)).toEqual(['AErr']);
    expect(r[0]!.alerts).toEqual([{ labels: { namespace: 'team-a-web' } }]);
  });
  it('rules: a group some of whose rules are left out reports the evaluation time and start of the rules kept, not its own', () => {
    const rule = (ns: string, evaluationTime: number, lastEvaluation: string) => ({ type: 'recording', name: `r-${ns}`, labels: { namespace: ns }, evaluationTime, lastEvaluation });
    const group = (rules: ReturnType<typeof rule>[]) => ({ name: 'g', interval: 30, evaluationTime: 0.5, lastEvaluation: '2026-11-29T10:00:00.000Z', rules });
    const groupOf = (g: ReturnType<typeof group>) => (filterRules({ status: 'success', data: { groups: [g] } }, { policy: teamA, pathParams: {} }) as { data: { groups: Record<string, unknown>[] } }).data.groups[0]!;
    // Rules of team B run first and take most of the group's time.
    const mixed = groupOf(group([rule('team-b-x', 0.4, '2026-11-29T10:00:00.001Z'), rule('team-a-x', 0.03, '2026-11-29T10:00:00.401+00:00'), rule('team-a-y', 0.02, '2026-11-29T10:00:00.431Z')]));
    expect(mixed).toMatchObject({ name: 'g', interval: 30, lastEvaluation: '2026-11-29T10:00:00.401+00:00' });
    expect(mixed['evaluationTime']).toBeCloseTo(0.05);
    // A kept rule without a time: the group's time is left out, not made up.
    const partial = groupOf(group([rule('team-b-x', 0.4, 'x'), { ...rule('team-a-x', 0.03, 'not a time'), evaluationTime: undefined as unknown as number }]));
    expect(partial).not.toHaveProperty('evaluationTime');
    expect(partial).not.toHaveProperty('lastEvaluation');
    // Nothing left out: the group as Prometheus sent it.
    expect(groupOf(group([rule('team-a-x', 0.03, '2026-11-29T10:00:00.401Z')]))).toMatchObject({ evaluationTime: 0.5, lastEvaluation: '2026-11-29T10:00:00.000Z' });
  });
  it("rules: an alerting rule's state is recomputed from the alerts kept (a hidden firing alert leaves no trace)", () => {
    const notKube: SelectorPolicy = [[{ name: 'namespace', op: '!=', value: 'kube-system' }]];
    const rule = (alerts: { state: string; ns: string }[], state: string) => ({
      type: 'alerting',
      name: 'Down',
      state,
      labels: {},
      alerts: alerts.map((a) => ({ state: a.state, labels: { namespace: a.ns } })),
    });
    const stateOf = (r: ReturnType<typeof rule>) => {
      const out = filterRules({ status: 'success', data: { groups: [{ name: 'g', rules: [r] }] } }, { policy: notKube, pathParams: {} }) as { data: { groups: { rules: { state: string; alerts: unknown[] }[] }[] } };
      return out.data.groups[0]!.rules[0]!.state;
    };
    expect(stateOf(rule([{ state: 'firing', ns: 'kube-system' }], 'firing'))).toBe('inactive');
    expect(stateOf(rule([{ state: 'firing', ns: 'kube-system' }, { state: 'pending', ns: 'team-a' }], 'firing'))).toBe('pending');
    expect(stateOf(rule([{ state: 'firing', ns: 'team-a' }, { state: 'pending', ns: 'kube-system' }], 'firing'))).toBe('firing');
    // Nothing hidden: the rule as Prometheus sent it.
    expect(stateOf(rule([{ state: 'pending', ns: 'team-a' }], 'pending'))).toBe('pending');
  });
  it('rules with exclude_alerts (held back from Prometheus): the state is computed from the kept alerts, then the alerts are left out', () => {
    const notKube: SelectorPolicy = [[{ name: 'namespace', op: '!=', value: 'kube-system' }]];
    const body = {
      status: 'success',
      data: {
        groups: [
          {
            name: 'g',
            rules: [
              { type: 'alerting', name: 'Down', state: 'firing', labels: {}, alerts: [{ state: 'firing', labels: { namespace: 'kube-system' } }] },
              { type: 'recording', name: 'r', labels: {} },
            ],
          },
        ],
      },
    };
    const out = filterRules(body, { policy: notKube, pathParams: {}, held: { exclude_alerts: 'true' } }) as { data: { groups: { rules: Record<string, unknown>[] }[] } };
    expect(out.data.groups[0]!.rules[0]).toMatchObject({ name: 'Down', state: 'inactive', alerts: null });
    expect(out.data.groups[0]!.rules[1]).toEqual({ type: 'recording', name: 'r', labels: {} });
    const kept = filterRules(body, { policy: notKube, pathParams: {}, held: { exclude_alerts: 'false' } }) as typeof out;
    expect(kept.data.groups[0]!.rules[0]).toMatchObject({ state: 'inactive', alerts: [] });
  });
  it("rules: a rule's evaluation error is withheld (it quotes the series involved, which may be other teams')", () => {
    const body = { status: 'success', data: { groups: [{ name: 'g', rules: [{ type: 'recording', name: 'r', labels: { namespace: 'team-a-1' }, health: 'err', lastError: 'found duplicate series for the match group {job="api"} on the right hand-side of the operation: [{namespace="team-b-api"}]' }] }] } };
    const out = filterRules(body, { policy: teamA, pathParams: {} }) as { data: { groups: { rules: Record<string, unknown>[] }[] } };
    expect(out.data.groups[0]!.rules[0]).toMatchObject({ health: 'err', lastError: WITHHELD_RULE_ERROR });
    expect(JSON.stringify(out)).not.toContain('team-b');
  });
  it('alerts: only allowed alerts', () => {
    const out = filterAlerts({ status: 'success', data: { alerts: [{ labels: { namespace: 'team-a-1' } }, { labels: { namespace: 'team-b' } }, 'junk'] } }, { policy: teamA, pathParams: {} });
    expect(out).toEqual({ status: 'success', data: { alerts: [{ labels: { namespace: 'team-a-1' } }] } });
  });
  it('alerts under a negative policy: a value with a newline is judged as Prometheus judges it', () => {
    const notTeamB: SelectorPolicy = [[{ name: 'namespace', op: '!~', value: 'team-b-.*' }]];
    const alerts = [{ labels: { namespace: 'team-b-api\nx' } }, { labels: { namespace: 'team-a-1' } }];
    const out = filterAlerts({ status: 'success', data: { alerts } }, { policy: notTeamB, pathParams: {} });
    expect(out).toEqual({ status: 'success', data: { alerts: [{ labels: { namespace: 'team-a-1' } }] } });
  });
  it('rules and alerts keep only the fields Prometheus defines, at every level; a rule whose alerts are not a list is left out', () => {
    const ctx = { policy: teamA, pathParams: {} };
    const alert = { labels: { namespace: 'team-a-1' }, annotations: {}, state: 'firing', activeAt: 't', value: '1', peers: [{ namespace: 'team-b' }] };
    const rule = {
      state: 'firing', name: 'R', query: 'up', duration: 0, labels: { namespace: 'team-a-1' }, annotations: {}, alerts: [alert], health: 'ok', evaluationTime: 0, lastEvaluation: 't', type: 'alerting',
      related: { namespace: 'team-b' },
    };
    const group = { name: 'g', file: 'f', rules: [rule, { ...rule, name: 'odd', alerts: { 0: { labels: { namespace: 'team-b' } } } }], interval: 60, limit: 0, evaluationTime: 0, lastEvaluation: 't', sourceTenants: ['team-b'] };
    const out = filterRules({ status: 'success', data: { groups: [group] } }, ctx) as { data: { groups: Record<string, unknown>[] } };
    expect(JSON.stringify(out)).not.toContain('team-b');
    const { related: _r, ...ruleKept } = rule;
    const { peers: _p, ...alertKept } = alert;
    // 'odd' is left out, so the group's start is its kept rule's, and 't' is not a time: none.
    const { sourceTenants: _s, lastEvaluation: _l, ...groupKept } = group;
    expect(out.data.groups).toEqual([{ ...groupKept, rules: [{ ...ruleKept, alerts: [alertKept] }] }]);
    // alerts: null (exclude_alerts, or a recording rule's) stays null.
    const recording = { name: 'rec', query: 'x', labels: { namespace: 'team-a-1' }, health: 'ok', type: 'recording', alerts: null };
    expect(filterRules({ status: 'success', data: { groups: [{ name: 'g', rules: [recording] }] } }, ctx)).toEqual({ status: 'success', data: { groups: [{ name: 'g', rules: [recording] }] } });
    const alerts = filterAlerts({ status: 'success', data: { alerts: [alert] } }, ctx);
    expect(alerts).toEqual({ status: 'success', data: { alerts: [alertKept] } });
  });
  it('answers are rebuilt from what was checked: no page token, no unknown field, no other body shape', () => {
    const ctx = { policy: teamA, pathParams: { name: 'namespace' } };
    const rules = { status: 'success', data: { groups: [{ name: 'a', rules: [{ name: 'R', labels: { namespace: 'team-a-1' } }] }], groupNextToken: 'abc' }, warnings: ['w'], extra: { namespace: 'team-b' } };
    expect(filterRules(rules, ctx)).toEqual({ status: 'success', data: { groups: [{ name: 'a', rules: [{ name: 'R', labels: { namespace: 'team-a-1' } }] }] }, warnings: ['w'] });
    for (const filter of [filterRules, filterAlerts, filterLabelValues]) {
      for (const body of [['team-b-secret'], 'team-b-secret', { status: 'success', data: [], other: 'team-b-secret' }, { warnings: [{ namespace: 'team-b' }] }]) {
        expect(JSON.stringify(filter(body, ctx)), `${filter.name} ${JSON.stringify(body)}`).not.toContain('team-b');
      }
    }
    const tagValues = tempoRoutes.routes.find((r) => r.endpoint === 'search_tag_values_v2')?.responseFilter;
    expect(tagValues).toBeDefined();
    const tempoCtx = { policy: [[{ name: 'resource.k8s.namespace.name', op: '=' as const, value: 'team-a' }]], pathParams: { tag: 'resource.k8s.namespace.name' } };
    expect(tagValues!(['team-b'], tempoCtx)).toEqual({ tagValues: [] });
    // Tempo's metrics (bytes inspected) measure the whole tenant's data: left out too.
    expect(tagValues!({ tagValues: [{ type: 'string', value: 'team-a' }, { type: 'string', value: 'team-b' }], metrics: { inspectedBytes: '1' }, other: 'team-b' }, tempoCtx)).toEqual({
      tagValues: [{ type: 'string', value: 'team-a' }],
    });
    const tagNames = tempoRoutes.routes.find((r) => r.endpoint === 'search_tags_v2')?.responseFilter;
    expect(tagNames!({ scopes: [{ name: 'span', tags: ['b', 'a'], extra: 1 }], metrics: { inspectedBytes: '1' } }, tempoCtx)).toEqual({ scopes: [{ name: 'span', tags: ['b', 'a'] }] });
    expect(tagNames!({ metrics: { inspectedBytes: '1' } }, tempoCtx)).toEqual({ scopes: [] });
    expect(() => tagNames!({ other: 'x' }, tempoCtx)).toThrow();
  });
  it("dropped parameters go for every restricted subject, also where the upstream enforces the policy (not rewritten); not for unrestricted ones", () => {
    const route = lokiRoutes.routes.find((r) => r.endpoint === 'query_range')!;
    const sent = () => new FormParams('query=%7Bapp%3D%22x%22%7D&storeChunks=CgQIARAC&limit=5');
    // Header mode: checked, not rewritten, but the subject is restricted.
    expect([...enforceParams(route, sent(), undefined, DEFAULT_LIMITS, 'logql', true)]).toEqual([['limit', '5'], ['query', '{app="x"}']]);
    expect([...enforceParams(route, sent(), teamA, DEFAULT_LIMITS, 'logql')].map(([k]) => k)).toEqual(['limit', 'query']);
    expect([...enforceParams(route, sent(), undefined, DEFAULT_LIMITS, 'logql')].map(([k]) => k)).toEqual(['storeChunks', 'limit', 'query']);
  });
  it(`at most ${MAX_VALUES_PER_PARAMETER} values per query-bearing parameter (each is parsed and rewritten synchronously)`, () => {
    const route = prometheusRoutes.routes.find((r) => r.endpoint === 'series')!;
    const many = (n: number) => new URLSearchParams(Array.from({ length: n }, (_, i): [string, string] => ['match[]', `up{job="j${i}"}`]));
    expect(enforceParams(route, many(MAX_VALUES_PER_PARAMETER), teamA, DEFAULT_LIMITS, 'promql').getAll('match[]')).toHaveLength(MAX_VALUES_PER_PARAMETER);
    let code: string | undefined;
    try {
      enforceParams(route, many(MAX_VALUES_PER_PARAMETER + 1), teamA, DEFAULT_LIMITS, 'promql');
    } catch (e) {
      code = (e as { code?: string }).code;
    }
    expect(code).toBe('query_too_large');
  });
  it(`at most ${MAX_FORWARDED_PARAMETERS} parameters in all, after enforcement (Go refuses a form of > 10 000 and handlers that ignore that read no match[])`, () => {
    const route = prometheusRoutes.routes.find((r) => r.endpoint === 'labels')!;
    const padded = (n: number) => new URLSearchParams([...Array.from({ length: n }, (): [string, string] => ['x', '1']), ['match[]', 'up']]);
    // The limit counts what would be forwarded: the padding plus the enforced match[].
    expect(enforceParams(route, padded(MAX_FORWARDED_PARAMETERS - 1), teamA, DEFAULT_LIMITS, 'promql').size).toBe(MAX_FORWARDED_PARAMETERS);
    expect(codeOf(() => enforceParams(route, padded(MAX_FORWARDED_PARAMETERS), teamA, DEFAULT_LIMITS, 'promql'))).toBe('query_too_large');
    expect(() => enforceParams(route, padded(MAX_FORWARDED_PARAMETERS), teamA, DEFAULT_LIMITS, 'promql')).toThrow(`${MAX_FORWARDED_PARAMETERS + 1} parameters once enforced; at most ${MAX_FORWARDED_PARAMETERS} are forwarded`);
    expect(codeOf(() => enforceParams(route, padded(10_001), teamA, DEFAULT_LIMITS, 'promql'))).toBe('query_too_large');
    // Without match[], the policy's own selector is added: it counts too.
    const bare = new URLSearchParams(Array.from({ length: MAX_FORWARDED_PARAMETERS }, (): [string, string] => ['x', '1']));
    expect(codeOf(() => enforceParams(route, bare, teamA, DEFAULT_LIMITS, 'promql'))).toBe('query_too_large');
  });
  it(`at most ${MAX_FORWARDED_BYTES} bytes forwarded, as the gateway encodes them (Go reads no form body past 10 MiB)`, () => {
    const route = prometheusRoutes.routes.find((r) => r.endpoint === 'labels')!;
    // Raw bytes that are not UTF-8 reach the parser as U+FFFD (the body is decoded as UTF-8) and are sent as %EF%BF%BD: nine times their size.
    const raw = (n: number) => `match%5B%5D=up&pad=${'\uFFFD'.repeat(n)}`;
    const within = enforceParams(route, new FormParams(raw(100_000)), teamA, DEFAULT_LIMITS, 'promql');
    expect(encodeForwarded(within, 'promql')).toContain('match%5B%5D=up%7Bnamespace');
    const grown = enforceParams(route, new FormParams(raw(Math.ceil(MAX_FORWARDED_BYTES / 9) + 1)), teamA, DEFAULT_LIMITS, 'promql');
    expect(codeOf(() => encodeForwarded(grown, 'promql'))).toBe('query_too_large');
  });
  it('loki queries: the frontend\'s internal storeChunks (chunks to read instead of the index\'s) is not forwarded for restricted subjects', () => {
    for (const endpoint of ['query', 'query_range']) {
      const route = lokiRoutes.routes.find((r) => r.endpoint === endpoint)!;
      const params = () => new URLSearchParams('query={app="x"}&storeChunks=abc&limit=5');
      expect([...enforceParams(route, params(), teamA, DEFAULT_LIMITS, 'logql').keys()].sort()).toEqual(['limit', 'query']);
      expect(enforceParams(route, params(), undefined, DEFAULT_LIMITS, 'logql').get('storeChunks')).toBe('abc');
    }
  });
  it('rules: paging parameters are not forwarded for restricted subjects (Prometheus would page over every tenant)', () => {
    const route = prometheusRoutes.routes.find((r) => r.endpoint === 'rules')!;
    const params = () => new URLSearchParams('type=alert&group_limit=1&group_next_token=t&rule_name[]=X');
    expect([...enforceParams(route, params(), teamA, DEFAULT_LIMITS, 'promql').keys()]).toEqual(['type', 'rule_name[]']);
    expect([...enforceParams(route, params(), undefined, DEFAULT_LIMITS, 'promql').keys()]).toEqual(['type', 'group_limit', 'group_next_token', 'rule_name[]']);
  });
  it('label values: only values the policy accepts for that label', () => {
    const out = filterLabelValues({ status: 'success', data: ['team-a-x', 'team-b-y', 7] }, { policy: teamA, pathParams: { name: 'namespace' } });
    expect(out).toEqual({ status: 'success', data: ['team-a-x'] });
    const other = filterLabelValues({ status: 'success', data: ['GET', 'POST'] }, { policy: teamA, pathParams: { name: 'method' } });
    expect(other).toEqual({ status: 'success', data: ['GET', 'POST'] });
  });
  it('unexpected shapes fail closed to an empty result', () => {
    expect(filterRules({ status: 'error' }, { policy: teamA, pathParams: {} })).toMatchObject({ data: { groups: [] } });
    expect(filterAlerts(null, { policy: teamA, pathParams: {} })).toMatchObject({ data: { alerts: [] } });
    expect(filterLabelValues({ status: 'success', data: { x: 1 } }, { policy: teamA, pathParams: { name: 'namespace' } })).toMatchObject({ data: [] });
  });
});

describe('Prometheus U__ label-name escaping', async () => {
  const { unescapeLabelName } = await import('../../src/backends/prometheus.ts');
  it('decodes what Prometheus decodes, leaves the rest alone', () => {
    expect(unescapeLabelName('U__namespace')).toBe('namespace');
    expect(unescapeLabelName('U__k8s_2e_namespace')).toBe('k8s.namespace');
    expect(unescapeLabelName('U__a__b')).toBe('a_b');
    expect(unescapeLabelName('U__x_1f600_')).toBe('x😀');
    expect(unescapeLabelName('namespace')).toBe('namespace');
    expect(unescapeLabelName('U__bad_zz_')).toBe('U__bad_zz_');
  });
});
