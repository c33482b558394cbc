import { describe, expect, it } from 'vitest';
import { filterAlerts, filterLabelValues, filterRules } from '../../src/backends/filters.ts';
import { policyAllowsValue, policyMatchesLabels, type SelectorPolicy } from '../../src/rewrite/matcher.ts';

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

  it('DNF: any group, all matchers of it', () => {
    expect(policyMatchesLabels(dnf, { namespace: 'a' })).toBe(true);
    expect(policyMatchesLabels(dnf, { namespace: 'a', secret: 'true' })).toBe(false);
    expect(policyMatchesLabels(dnf, { namespace: 'c', secret: 'true' })).toBe(true);
    expect(policyMatchesLabels(dnf, { namespace: 'd' })).toBe(false);
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
