import { describe, expect, it } from 'vitest';
import { codeOf, errorOf } from './query-errors.ts';
import type { Matcher, SelectorPolicy } from '../../src/rewrite/matcher.ts';
import {
  clearPromQLCache,
  formatMatcher,
  parseMatcherExpression,
  promqlRewriter,
  rewritePromQL,
  rewritePromQLPerGroup,
  rewriteSeriesSelectors,
  verifyPromQL,
} from '../../src/rewrite/promql.ts';
import { REWRITE_CACHES } from '../../src/rewrite/cache.ts';
import { DEFAULT_LIMITS } from '../../src/rewrite/rewriter.ts';
import { parseStrict } from '../../src/rewrite/lezer.ts';
import { parser } from '@prometheus-io/lezer-promql';
import { joinBalanced } from '../../src/rewrite/promql-dnf.ts';
import { PROMQL_CHAINS } from '../../src/rewrite/promql-analysis.ts';
import { chainWeight } from '../../src/rewrite/chain-weight.ts';
import { carries, oracleParse, oracleSelectors } from './promql-oracle.ts';
import { cpuMs } from '../cpu-time.ts';

const NS: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'team-a' }]];
const M = 'namespace="team-a"';
/** What info(base, sel) becomes when the policy's label (namespace) is not one of the data labels sel names: it is kept as base had it. */
const infoKeeping = (base: string, sel: string, label = 'namespace'): string =>
  `label_replace(label_replace(info(label_replace(${base}, "__lbac_info_0__", "$1", "${label}", "(.*)"), ${sel}), "${label}", "$1", "__lbac_info_0__", "(.*)"), "__lbac_info_0__", "", "", "")`;

/**
 * Rewriting the output again changes nothing. An output holding the gateway's own labels (`__lbac_…`, around
 * info() and for several metric names) is refused as input (reserved label names), so it is compared again
 * with those labels renamed (same length: same limits, same rewrite).
 */
function expectIdempotent(out: string, policy: SelectorPolicy, limits = DEFAULT_LIMITS): void {
  if (!out.includes('"__lbac_')) {
    expect(rewritePromQL(out, policy, limits)).toBe(out);
    return;
  }
  expect(errorOf(() => rewritePromQL(out, policy, limits)).message).toMatch(/label names starting with "__lbac_" are reserved by the gateway/);
  const renamed = out.replaceAll('"__lbac_', '"__xxxx_');
  expect(rewritePromQL(renamed, policy, limits)).toBe(renamed);
}

/** [query, expected] with policy namespace="team-a". */
const TABLE: [string, string][] = [
  // plain selectors
  ['up', `up{${M}}`],
  ['up{}', `up{${M}}`],
  ['up{job="api"}', `up{job="api",${M}}`],
  ['up{job="api",}', `up{job="api",${M},}`],
  ['up{ job = "api" }', `up{ job = "api",${M} }`],
  ['up { job="api" }', `up { job="api",${M} }`],
  ['{job="api"}', `{job="api",${M}}`],
  ['{__name__="up"}', `{__name__="up",${M}}`],
  ['{__name__=~"node_cpu.*", mode!="idle"}', `{__name__=~"node_cpu.*", mode!="idle",${M}}`],
  ['{"my.metric"}', `{"my.metric",${M}}`],
  ['{"my.metric", "service.name"="checkout"}', `{"my.metric", "service.name"="checkout",${M}}`],
  ['job:http_requests:rate5m{job="api"}', `job:http_requests:rate5m{job="api",${M}}`],
  ['sum', `sum{${M}}`],
  // user matchers on the enforced label are kept; identical ones are not duplicated
  ['up{namespace="team-b"}', `up{namespace="team-b",${M}}`],
  ['up{namespace!="team-a"}', `up{namespace!="team-a",${M}}`],
  ['up{namespace=~"team-a"}', `up{namespace=~"team-a",${M}}`],
  ['up{namespace="team-a"}', 'up{namespace="team-a"}'],
  ["up{namespace='team-a'}", "up{namespace='team-a'}"],
  ['up{namespace=`team-a`}', 'up{namespace=`team-a`}'],
  ['up{namespace="te\\x61m-\\u0061"}', 'up{namespace="te\\x61m-\\u0061"}'],
  ['up{namespace="team-a"} / up', `up{namespace="team-a"} / up{${M}}`],
  // rates and aggregations (dashboards)
  ['rate(http_requests_total[5m])', `rate(http_requests_total{${M}}[5m])`],
  ['sum(rate(http_requests_total{code=~"5.."}[5m])) by (service)', `sum(rate(http_requests_total{code=~"5..",${M}}[5m])) by (service)`],
  ['sum by (service) (rate(http_requests_total[5m]))', `sum by (service) (rate(http_requests_total{${M}}[5m]))`],
  [
    'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[5m])))',
    `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="api",${M}}[5m])))`,
  ],
  ['histogram_quantile(0.9, rate(x_bucket[10m]))', `histogram_quantile(0.9, rate(x_bucket{${M}}[10m]))`],
  [
    'topk(10, sum by (pod) (rate(container_cpu_usage_seconds_total{container!=""}[5m])))',
    `topk(10, sum by (pod) (rate(container_cpu_usage_seconds_total{container!="",${M}}[5m])))`,
  ],
  ['bottomk(3, up)', `bottomk(3, up{${M}})`],
  ['count_values("version", build_info)', `count_values("version", build_info{${M}})`],
  ['quantile(0.95, rate(x[5m]))', `quantile(0.95, rate(x{${M}}[5m]))`],
  ['avg without (instance) (node_load1)', `avg without (instance) (node_load1{${M}})`],
  ['count(up) without (instance)', `count(up{${M}}) without (instance)`],
  ['group(up) by (job)', `group(up{${M}}) by (job)`],
  ['sum by ("k8s.pod.name") (x)', `sum by ("k8s.pod.name") (x{${M}})`],
  ['limitk(5, x)', `limitk(5, x{${M}})`],
  ['sort_desc(sum by (job) (up))', `sort_desc(sum by (job) (up{${M}}))`],
  ['clamp_max(x, 100)', `clamp_max(x{${M}}, 100)`],
  ['scalar(up)', `scalar(up{${M}})`],
  ['predict_linear(node_filesystem_free_bytes[6h], 4 * 3600)', `predict_linear(node_filesystem_free_bytes{${M}}[6h], 4 * 3600)`],
  ['deriv(x[10m])', `deriv(x{${M}}[10m])`],
  ['increase(x[1h])', `increase(x{${M}}[1h])`],
  ['changes(x[1h])', `changes(x{${M}}[1h])`],
  ['stddev_over_time(x[1h])', `stddev_over_time(x{${M}}[1h])`],
  ['quantile_over_time(0.9, x[1h])', `quantile_over_time(0.9, x{${M}}[1h])`],
  ['double_exponential_smoothing(x[1h], 0.5, 0.5)', `double_exponential_smoothing(x{${M}}[1h], 0.5, 0.5)`],
  ['time() - process_start_time_seconds', `time() - process_start_time_seconds{${M}}`],
  ['timestamp(up)', `timestamp(up{${M}})`],
  ['day_of_week(timestamp(up))', `day_of_week(timestamp(up{${M}}))`],
  // offset and @
  ['up offset 1h', `up{${M}} offset 1h`],
  ['up offset -5m', `up{${M}} offset -5m`],
  ['x{a="b"}offset 5m', `x{a="b",${M}}offset 5m`],
  ['rate(x[5m] offset 1d)', `rate(x{${M}}[5m] offset 1d)`],
  ['x @ 1609746000', `x{${M}} @ 1609746000`],
  ['x @ start()', `x{${M}} @ start()`],
  ['rate(x[5m] @ end())', `rate(x{${M}}[5m] @ end())`],
  ['x @ end() offset 1h', `x{${M}} @ end() offset 1h`],
  // subqueries, incl. nested
  ['max_over_time(x[1h:5m])', `max_over_time(x{${M}}[1h:5m])`],
  ['max_over_time(rate(x[5m])[1h:1m])', `max_over_time(rate(x{${M}}[5m])[1h:1m])`],
  ['min_over_time(max_over_time(rate(x[1m])[10m:1m])[1h:5m])', `min_over_time(max_over_time(rate(x{${M}}[1m])[10m:1m])[1h:5m])`],
  ['x[5m:] offset 1h', `x{${M}}[5m:] offset 1h`],
  ['x[1h:5m] @ end()', `x{${M}}[1h:5m] @ end()`],
  ['avg_over_time((a / b)[30m:])', `avg_over_time((a{${M}} / b{${M}})[30m:])`],
  // duration expressions, extended range selectors
  ['rate(x[5m * 2])', `rate(x{${M}}[5m * 2])`],
  ['rate(x[step()])', `rate(x{${M}}[step()])`],
  ['x[min_of(5m, 1h)]', `x{${M}}[min_of(5m, 1h)]`],
  ['rate(x[5m] anchored)', `rate(x{${M}}[5m] anchored)`],
  ['x smoothed', `x{${M}} smoothed`],
  // label manipulation, absent, info
  ['label_replace(up, "host", "$1", "instance", "(.*):.*")', `label_replace(up{${M}}, "host", "$1", "instance", "(.*):.*")`],
  ['label_join(up, "ij", "-", "instance", "job")', `label_join(up{${M}}, "ij", "-", "instance", "job")`],
  // absent(s) builds its result labels from s's matchers: the policy's `=` matcher is taken back out of them.
  ['absent(up{job="api"})', `label_replace(absent(up{job="api",${M}}), "namespace", "", "", "")`],
  ['absent_over_time(up[5m])', `label_replace(absent_over_time(up{${M}}[5m]), "namespace", "", "", "")`],
  ['absent(up{namespace="team-a"})', 'absent(up{namespace="team-a"})'],
  // Prometheus unwraps parentheses around a call's arguments before absent reads the labels: the same fix.
  ['absent((up{job="api"}))', `label_replace(absent((up{job="api",${M}})), "namespace", "", "", "")`],
  ['absent_over_time(((up[5m])))', `label_replace(absent_over_time(((up{${M}}[5m]))), "namespace", "", "", "")`],
  ['absent(sum(up))', `absent(sum(up{${M}}))`],
  // Two arguments (Lezer parses it, Prometheus refuses it): plain insertion, no call wrapped around another selector.
  ['absent(up{job="api"}, x)', `absent(up{job="api",${M}}, x{${M}})`],
  // info(): the policy's label is not one of the data labels asked for: put back as the base vector had it.
  ['info(x, {k8s_cluster_name=~".+"})', infoKeeping(`x{${M}}`, `{k8s_cluster_name=~".+",${M}}`)],
  ['info(sum by (instance, job) (x), {k=~".+"} offset 5m)', infoKeeping(`sum by (instance, job) (x{${M}})`, `{k=~".+",${M}} offset 5m`)],
  // ... unless the user asks for it.
  ['info(x, {k=~".+", namespace=~".+"})', `info(x{${M}}, {k=~".+", namespace=~".+",${M}})`],
  // Nested: each call keeps its own base's labels (the inner call's copy is gone before the outer one's).
  ['info(info(a, {k=~".+"}), {j="x"})', infoKeeping(infoKeeping(`a{${M}}`, `{k=~".+",${M}}`), `{j="x",${M}}`)],
  // binary operators and modifiers
  ['a / on(instance) group_left(node) b', `a{${M}} / on(instance) group_left(node) b{${M}}`],
  ['a * ignoring(code) group_right b', `a{${M}} * ignoring(code) group_right b{${M}}`],
  ['x and y unless z or w', `x{${M}} and y{${M}} unless z{${M}} or w{${M}}`],
  ['a > bool 0', `a{${M}} > bool 0`],
  ['up == 0', `up{${M}} == 0`],
  ['sum(up) by (job) > 1', `sum(up{${M}}) by (job) > 1`],
  ['a + fill(0) b', `a{${M}} + fill(0) b{${M}}`],
  ['{__name__="up", job="x"} or on() vector(0)', `{__name__="up", job="x",${M}} or on() vector(0)`],
  ['count by (le) (x) unless on(le) y', `count by (le) (x{${M}}) unless on(le) y{${M}}`],
  ['x / on() group_left y', `x{${M}} / on() group_left y{${M}}`],
  // unary, parentheses
  ['-x', `-x{${M}}`],
  ['+x', `+x{${M}}`],
  ['(x)', `(x{${M}})`],
  ['((x + y))', `((x{${M}} + y{${M}}))`],
  ['abs(-x)', `abs(-x{${M}})`],
  // comments, whitespace, quoting styles — preserved byte for byte
  ['sum(x) # comment\n/ sum(y)', `sum(x{${M}}) # comment\n/ sum(y{${M}})`],
  ['# leading comment\nup', `# leading comment\nup{${M}}`],
  ['up # trailing comment', `up{${M}} # trailing comment`],
  ['up{job="api" # inside\n}', `up{job="api",${M} # inside\n}`],
  ['up{# only a comment\n}', `up{${M}# only a comment\n}`],
  ['up # between\n{job="api"}', `up # between\n{job="api",${M}}`],
  ['sum(x) # c\r\n+ y', `sum(x{${M}}) # c\r\n+ y{${M}}`],
  ['up{path=~`/api/.*`}', `up{path=~\`/api/.*\`,${M}}`],
  ["up{job='api'}", `up{job='api',${M}}`],
  ['up{msg="say \\"hi\\""}', `up{msg="say \\"hi\\"",${M}}`],
  ["up{msg='it\\'s'}", `up{msg='it\\'s',${M}}`],
  ['up{city="Zürich"}', `up{city="Zürich",${M}}`],
  ['up{city="Z\\u00fcrich"}', `up{city="Z\\u00fcrich",${M}}`],
  ['up{emoji="🚀"}', `up{emoji="🚀",${M}}`],
  ['up{\'quoted\'="x"}', `up{'quoted'="x",${M}}`],
  [
    'sum by (job) (\n  rate(\n    http_requests_total{code="500"}[5m]\n  )\n)\n',
    `sum by (job) (\n  rate(\n    http_requests_total{code="500",${M}}[5m]\n  )\n)\n`,
  ],
  ['\t up \t', `\t up{${M}} \t`],
  // no selectors: unchanged
  ['1+1', '1+1'],
  ['vector(1)', 'vector(1)'],
  ['time() - 3600', 'time() - 3600'],
  ['"just a string"', '"just a string"'],
  ['-Inf', '-Inf'],
  ['0x1F + 1e3', '0x1F + 1e3'],
];

describe('rewritePromQL: table', () => {
  it('has at least 80 cases', () => {
    expect(TABLE.length).toBeGreaterThanOrEqual(80);
  });

  it.each(TABLE)('%j', (query, expected) => {
    const out = rewritePromQL(query, NS);
    expect(out).toBe(expected);
    // Idempotent, and every selector carries the enforcement (independent oracle).
    expectIdempotent(out, NS);
    const sels = oracleSelectors(out);
    expect(sels.length).toBe(oracleSelectors(query).length);
    for (const s of sels) expect(carries(s, { name: 'namespace', op: '=', value: 'team-a' })).toBe(true);
  });

  it('acceptance example: namespace=~"a|b" on both selectors, nothing else changed', () => {
    const q = 'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))';
    const policy: SelectorPolicy = [[{ name: 'namespace', op: '=~', value: 'a|b' }]];
    expect(rewritePromQL(q, policy)).toBe(
      'sum(rate(http_requests_total{code=~"5..",namespace=~"a|b"}[5m])) / sum(rate(http_requests_total{namespace=~"a|b"}[5m]))',
    );
    expect(promqlRewriter.language).toBe('promql');
    expect(promqlRewriter.rewrite(q, policy)).toBe(rewritePromQL(q, policy));
  });

  it('adds every matcher of a multi-matcher group, in policy order, skipping ones present', () => {
    const policy: SelectorPolicy = [
      [
        { name: 'cluster', op: '=', value: 'eu1' },
        { name: 'namespace', op: '=~', value: 'a|b' },
        { name: 'cluster', op: '=', value: 'eu1' },
      ],
    ];
    expect(rewritePromQL('up', policy)).toBe('up{cluster="eu1",namespace=~"a|b"}');
    expect(rewritePromQL('up{namespace=~"a|b"}', policy)).toBe('up{namespace=~"a|b",cluster="eu1"}');
  });

  it('uses quoted label names for non-legacy names', () => {
    const policy: SelectorPolicy = [[{ name: 'k8s.namespace.name', op: '=', value: 'a' }]];
    expect(rewritePromQL('up', policy)).toBe('up{"k8s.namespace.name"="a"}');
    expect(rewritePromQL('up{"k8s.namespace.name"="a"}', policy)).toBe('up{"k8s.namespace.name"="a"}');
  });

  it('a __name__ policy matcher moves a bare metric name inside the braces', () => {
    const policy: SelectorPolicy = [[{ name: '__name__', op: '=~', value: 'up|node_.*' }]];
    expect(rewritePromQL('node_cpu{mode="idle"}', policy)).toBe('{__name__="node_cpu",mode="idle",__name__=~"up|node_.*"}');
    expect(rewritePromQL('node_cpu', policy)).toBe('{__name__="node_cpu",__name__=~"up|node_.*"}');
    expect(rewritePromQL('node_cpu{}', policy)).toBe('{__name__="node_cpu",__name__=~"up|node_.*"}');
    expect(rewritePromQL('{__name__="x"}', policy)).toBe('{__name__="x",__name__=~"up|node_.*"}');
    // The identical equality matcher is implied by the metric name.
    expect(rewritePromQL('up', [[{ name: '__name__', op: '=', value: 'up' }]])).toBe('up');
    expect(rewritePromQL('rate(up[5m])', [[{ name: '__name__', op: '=', value: 'up' }, { name: 'a', op: '=', value: 'b' }]])).toBe(
      'rate(up{a="b"}[5m])',
    );
  });
});

describe('rewritePromQL: modifier precedence (lezer-promql vs Prometheus)', () => {
  // lezer-promql attaches offset/@ to the whole binary/unary expression, Prometheus to the
  // nearest operand. A single group is spliced into every VectorSelector node, which are the
  // same tokens under either reading, so every selector is enforced regardless.
  it.each([
    ['a - b offset 5m', `a{${M}} - b{${M}} offset 5m`],
    ['-b @ 100', `-b{${M}} @ 100`],
    ['a - b offset 5m @ 100 - c', `a{${M}} - b{${M}} offset 5m @ 100 - c{${M}}`],
    ['a * on(x) group_left b offset 1h', `a{${M}} * on(x) group_left b{${M}} offset 1h`],
    ['a - b[5m]', `a{${M}} - b{${M}}[5m]`],
  ])('%j', (q, expected) => {
    expect(rewritePromQL(q, NS)).toBe(expected);
  });
});

describe('rewritePromQL: selectors that match only the empty string', () => {
  const MSG = 'vector selector must contain at least one non-empty matcher';
  it.each([
    ['{}', 1],
    ['{job=~".*"}', 1],
    ['{a=""}', 1],
    ['{a!="x"}', 1],
    ['{a!~".+"}', 1],
    ['{a=~"x|"}', 1],
    ['{a=~"(?i)"}', 1],
    ['{__name__=~".*"}', 1],
    ['{a="", b=~".*",}', 1],
    ['sum(rate({job=~".*"}[5m]))', 10],
    ['up - {} offset 5m', 6],
    ['{namespace="team-a"} or {}', 25],
  ])('refuses %j at char %i, as Prometheus does', (q, pos) => {
    const e = errorOf(() => rewritePromQL(q, NS));
    expect(e.code).toBe('bad_query');
    expect(e.message).toBe(`parse error at char ${pos}: ${MSG}`);
  });

  it('refuses them under a multi-group policy too, before any rewriting', () => {
    const dnf: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'a' }], [{ name: 'team', op: '=', value: 'x' }]];
    expect(errorOf(() => rewritePromQL('{}', dnf)).message).toContain(MSG);
    // Even where the policy matchers alone would match "" (the rewritten query would be refused too).
    expect(errorOf(() => rewritePromQL('{a=""}', [[{ name: 'b', op: '=~', value: '.*' }]])).message).toContain(MSG);
  });

  it.each([
    ['up{a=""}', `up{a="",${M}}`], // a metric name is a non-empty matcher
    ['up{}', `up{${M}}`],
    ['{a!=""}', `{a!="",${M}}`],
    ['{a!~""}', `{a!~"",${M}}`],
    ['{a!~".*"}', `{a!~".*",${M}}`],
    ['{__name__=~".+"}', `{__name__=~".+",${M}}`],
    ['{"up"}', `{"up",${M}}`],
    ['{"up", a=""}', `{"up", a="",${M}}`],
    ['{a="", b="x"}', `{a="", b="x",${M}}`],
    // Not RE2: left to Prometheus, which reports the regular expression.
    ['{a=~"["}', `{a=~"[",${M}}`],
  ])('accepts %j', (q, expected) => {
    expect(rewritePromQL(q, NS)).toBe(expected);
  });

  it.each([
    ['info(up, {k=~".*"})', infoKeeping('up{namespace!="kube-system"}', '{k=~".*",namespace!="kube-system"}')],
    ['info(up, {k=""} offset 5m)', infoKeeping('up{namespace!="kube-system"}', '{k="",namespace!="kube-system"} offset 5m')],
  ])('info()\'s data-label selector is exempt in Prometheus: accepts %j (a policy matcher that holds for a missing label)', (q, expected) => {
    expect(rewritePromQL(q, [[{ name: 'namespace', op: '!=', value: 'kube-system' }]])).toBe(expected);
  });

  it('info() naming no data label is rewritten where the policy matches on __name__ only (the data labels stay all)', () => {
    const byName: SelectorPolicy = [[{ name: '__name__', op: '=~', value: 'up|target_info' }]];
    expect(rewritePromQL('info(up, {__name__="target_info"})', byName)).toBe('info({__name__="up",__name__=~"up|target_info"}, {__name__="target_info",__name__=~"up|target_info"})');
    expect(rewritePromQL('info(up, {__name__="target_info", k8s_cluster_name=~".+"})', NS)).toBe(infoKeeping(`up{${M}}`, `{__name__="target_info", k8s_cluster_name=~".+",${M}}`));
  });
  it('info() under a policy on __name__: the info metric is written out where the user named none (target_info) or only excluded some (.+_info)', () => {
    const byName: SelectorPolicy = [[{ name: '__name__', op: '=~', value: 'team_.*' }]];
    expect(rewritePromQL('info(team_x, {k=~".+"})', byName)).toBe('info({__name__="team_x",__name__=~"team_.*"}, {k=~".+",__name__="target_info",__name__=~"team_.*"})');
    expect(rewritePromQL('info(team_x, {__name__!="a_info", k=~".+"})', byName)).toBe(
      'info({__name__="team_x",__name__=~"team_.*"}, {__name__!="a_info", k=~".+",__name__=~".+_info",__name__=~"team_.*"})',
    );
    // A positive __name__ matcher of the user's is the info metric as written.
    for (const q of ['info(team_x, {__name__=~"team_.+", k=~".+"})', 'info(team_x, team_info{k=~".+"})']) {
      expect(rewritePromQL(q, byName)).not.toContain('target_info');
      expect(rewritePromQL(q, byName)).not.toContain('.+_info');
    }
    const both: SelectorPolicy = [[{ name: '__name__', op: '=~', value: 'team_.*' }, ...(NS[0] ?? [])]];
    expect(rewritePromQL('info(team_x, {k=~".+"})', both)).toContain(`{k=~".+",__name__="target_info",__name__=~"team_.*",${M}}`);
    // Idempotent.
    expectIdempotent(rewritePromQL('info(team_x, {k=~".+"})', both), both);
  });
  it('info(): only its second argument is exempt', () => {
    expect(errorOf(() => rewritePromQL('info({a=""}, {k="v"})', NS)).message).toContain(MSG);
    expect(errorOf(() => rewritePromQL('info(up, {k="v"}) + {}', NS)).message).toContain(MSG);
  });
});

describe('rewritePromQL: number literals', () => {
  // Forms lezer-promql and Prometheus 3.16 both accept pass through byte for byte.
  it.each(['.5', '1e3', '1E+3', '0x1F', '0.5e-3', 'Inf', '+Inf', 'NaN', 'nan', 'iNf', '1_000', '0777', '1h30m', '5ms'])('accepts %j', (n) => {
    expect(rewritePromQL(`up * ${n}`, NS)).toBe(`up{${M}} * ${n}`);
  });
  it.each(['rate(x[5m*2])', 'rate(x[1h30m])', 'rate(x[90])', 'x offset -5m', 'x offset 90'])('durations: %j', (q) => {
    expect(rewritePromQL(q, NS)).toContain(`x{${M}}`);
  });
  // Prometheus accepts these, lezer-promql does not lex them: respelled in place (same length, same value).
  it.each([
    ['0X1f', '0x1f'],
    ['5.', '5 '],
    ['0x_1f', '0x01f'],
    ['0X_1F', '0x01F'],
    ['5.e3', '5e3 '],
    ['1_000.', '1_000 '],
    ['0X1f_ff', '0x01fff'],
    ['0x1_f', '0x01f'],
    ['0X_1_f_F', '0x0001fF'],
  ])('respells %j as %j (Prometheus accepts it; lezer-promql does not lex it)', (n, respelled) => {
    expect(rewritePromQL(`up * ${n}`, NS)).toBe(`up{${M}} * ${respelled}`);
    expect(rewritePromQL(`${n} > bool up`, NS)).toBe(`${respelled} > bool up{${M}}`);
  });
  it('respells several numbers and keeps strings, comments and the DNF path exact', () => {
    const q = 'sum(rate(x{a="5."}[5m])) * 0X1f + 5. # 0X1f 5.\n';
    expect(rewritePromQL(q, NS)).toBe(`sum(rate(x{a="5.",${M}}[5m])) * 0x1f + 5  # 0X1f 5.\n`);
    const dnf: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'a' }], [{ name: 'job', op: '=', value: 'b' }]];
    expect(rewritePromQL('up * 5.', dnf)).toBe('(up{namespace="a"} or up{job="b"}) * 5 ');
  });
  // Duration functions in another case: Prometheus reads keywords lower-cased, lezer-promql only lower case.
  it.each([
    ['x[MAX_OF(STEP(), 1m)]', `x{${M}}[max_of(step(), 1m)]`],
    ['rate(x[Range()]) offset -STEP()', `rate(x{${M}}[range()]) offset -step()`],
    ['max_over_time(up[1h:Step()])', `max_over_time(up{${M}}[1h:step()])`],
    // Not at a parse failure, or not a duration function call: left alone.
    ['STEP + x{a="STEP()"}', `STEP{${M}} + x{a="STEP()",${M}}`],
  ])('respells the duration function case in %j', (q, out) => {
    expect(rewritePromQL(q, NS)).toBe(out);
    for (const s of oracleSelectors(out)) expect(carries(s, { name: 'namespace', op: '=', value: 'team-a' })).toBe(true);
  });
  it.each(['STEP()', 'x[STEPS()]', 'x[Rate()]'])('no respelling for %j (Prometheus rejects it too)', (q) => {
    expect(errorOf(() => rewritePromQL(q, NS)).code).toBe('bad_query');
  });
  it('respells a subquery step too (after the range\'s colon)', () => {
    expect(rewritePromQL('max_over_time(up[5m:0X1f])', NS)).toBe(`max_over_time(up{${M}}[5m:0x1f])`);
    expect(rewritePromQL('up[1h:5.]', NS)).toBe(`up{${M}}[1h:5 ]`);
  });
  it.each([
    ['up[5.:1m]', `up{${M}}[5 :1m]`],
    ['up[5.:]', `up{${M}}[5 :]`],
    ['rate(up[5.e1:1m])', `rate(up{${M}}[5e1 :1m])`],
    ['rate(up[0X1f:1m])', `rate(up{${M}}[0x1f:1m])`],
    ['rate(up[0x1_f:1m])', `rate(up{${M}}[0x01f:1m])`],
    ['up[5.:1.]', `up{${M}}[5 :1 ]`],
    ['rate(a:b[5.:1m])', `rate(a:b{${M}}[5 :1m])`],
  ])('respells a subquery range before its colon: %j', (q, out) => {
    expect(rewritePromQL(q, NS)).toBe(out);
  });
  it('bounds the re-parses a query full of such numbers can cause', () => {
    const q = Array.from({ length: 17 }, () => '5.').join(' + ');
    const e = errorOf(() => rewritePromQL(q, NS));
    expect(e.code).toBe('bad_query');
    expect(e.message).toContain('more than 16 number literals');
    expect(rewritePromQL(Array.from({ length: 16 }, () => '5.').join(' + ') + ' + up', NS)).toContain(`up{${M}}`);
  });
  it.each(['up * 0X', 'up * 5.5.', 'a5.', 'up * 5.x', 'up * 0x1__f', 'up * 0x1f_', 'up * 5._5', 'up * 0b101'])('no number hint for %j (Prometheus rejects it too)', (q) => {
    const e = errorOf(() => rewritePromQL(q, NS));
    expect(e.code).toBe('bad_query');
    expect(e.message).not.toContain('number');
  });
  // Prometheus with unquoted UTF-8 names reads `bool.5` as one metric name (e2e/promql-utf8-names.test.ts).
  it.each(['up > bool.5', 'vector(1) * on() group_left.5', 'up * on(job) group_right.5e3', 'x offset.5', 'up > bool.5 + up'])('refuses a fraction right after a name: %j', (q) => {
    const e = errorOf(() => rewritePromQL(q, NS));
    expect(e.code).toBe('bad_query');
    expect(e.message).toContain('right after a name');
  });
  it.each(['up > bool .5', 'up > bool 0.5', 'up>.5', 'up*1.5', '(up).5 + 1', 'x[5m:.5m]', 'x offset .5m'])('a fraction after a separator is read alike by both: %j', (q) => {
    let out: string | undefined;
    try {
      out = rewritePromQL(q, NS);
    } catch (e) {
      // Invalid PromQL (as Prometheus would say too), but never for this reason.
      expect((e as Error).message).not.toContain('right after a name');
    }
    if (out !== undefined) for (const s of oracleSelectors(out)) expect(carries(s, { name: 'namespace', op: '=', value: 'team-a' })).toBe(true);
  });
});

describe('rewritePromQL: errors', () => {
  const cases: [string, string, string][] = [
    ['', 'bad_query', 'empty'],
    ['   \n\t', 'bad_query', 'empty'],
    ['sum(', 'bad_query', 'parse error at char 5'],
    ['up{a="b"', 'bad_query', 'parse error'],
    ['up{a="b}', 'bad_query', 'parse error'],
    ['"abc', 'bad_query', 'unterminated'],
    ['up{a="\\q"}', 'bad_query', 'unknown escape'],
    ['up{a="\\uD800"}', 'bad_query', 'invalid Unicode code point'],
    ["up{a='\\\"'}", 'bad_query', 'unknown escape'],
    ['up{a="x\\\ny"}', 'bad_query', 'parse error'],
    ['# only a comment', 'bad_query', 'parse error'],
    ['sum(x) # c\r or y', 'bad_query', 'carriage return'],
    ['up{a="\uD800"}', 'bad_query', 'UTF-8'],
    ['a$b', 'bad_query', 'unexpected "$"'],
    ['offset', 'bad_query', 'parse error at char 1'],
    ['rate(x[5m]', 'bad_query', 'parse error'],
    ['up}', 'bad_query', 'parse error at char 3'],
    ['x{a="b",,}', 'bad_query', 'parse error'],
    ['1 1', 'bad_query', 'parse error'],
    ['info(up)', 'rewrite_unsupported', 'target_info'],
    ['sum(info(rate(x[5m])))', 'rewrite_unsupported', 'target_info'],
    // Names no data label: Prometheus adds all of them, but only the policy's once its matchers are there.
    ['info(up, {__name__="target_info"})', 'rewrite_unsupported', 'names no data label'],
    ['info(up, target_info)', 'rewrite_unsupported', 'names no data label'],
    ['info(up, {__name__=~".+_info"} offset 5m)', 'rewrite_unsupported', 'names no data label'],
    // Every data label named may be missing: Prometheus keeps base series without an info series, the policy's matcher would drop them.
    ['info(up, {k=~".*"})', 'rewrite_unsupported', 'all match the empty string'],
    ['info(up, {__name__="target_info", k="", j!="x"})', 'rewrite_unsupported', 'all match the empty string'],
    // Also when the user names the policy's label: its matcher needs a value, so base series without a visible info series would go.
    ['info(up, {__name__="target_info", namespace!="b"})', 'rewrite_unsupported', 'all match the empty string'],
    ['info(up, {namespace=~".*"})', 'rewrite_unsupported', 'all match the empty string'],
  ];
  it.each(cases)('%j → %s', (q, code, msg) => {
    const e = errorOf(() => rewritePromQL(q, NS));
    expect(e.code).toBe(code);
    expect(e.language).toBe('promql');
    expect(e.message).toContain(msg);
  });

  it('too long (bytes, not characters)', () => {
    expect(codeOf(() => rewritePromQL('up{job="abcdef"}', NS, { maxQueryLength: 10, maxDepth: 128 }))).toBe('query_too_large');
    const q = 'up{a="éééééé"}'; // 14 characters, 20 bytes
    expect(codeOf(() => rewritePromQL(q, NS, { maxQueryLength: 16, maxDepth: 128 }))).toBe('query_too_large');
    expect(codeOf(() => rewritePromQL(q, NS, { maxQueryLength: 20, maxDepth: 128 }))).toBe('ok');
    expect(codeOf(() => rewritePromQL('x'.repeat(DEFAULT_LIMITS.maxQueryLength + 1), NS))).toBe('query_too_large');
  });

  it('too deep: brackets, function nesting, operator chains', () => {
    const parens = `${'('.repeat(200)}x${')'.repeat(200)}`;
    expect(codeOf(() => rewritePromQL(parens, NS))).toBe('query_too_large');
    expect(codeOf(() => rewritePromQL(`${'('.repeat(100)}x${')'.repeat(100)}`, NS))).toBe('ok');
    const lim = { maxQueryLength: 1000, maxDepth: 5 };
    expect(codeOf(() => rewritePromQL('abs(abs(x))', NS, lim))).toBe('ok');
    expect(codeOf(() => rewritePromQL('abs(abs(abs(abs(abs(x)))))', NS, lim))).toBe('query_too_large');
    expect(codeOf(() => rewritePromQL('a + b + c + d + e + f + g', NS, lim))).toBe('query_too_large');
    // Far beyond what Lezer can parse: reported as too large, not as a syntax error.
    expect(codeOf(() => rewritePromQL(`${'x+'.repeat(3000)}x`, NS))).toBe('query_too_large');
    // Hostile input is rejected quickly (strict parsing, no error recovery).
    const t0 = cpuMs();
    expect(codeOf(() => rewritePromQL(')'.repeat(60000), NS))).toBe('bad_query');
    expect(codeOf(() => rewritePromQL('x y '.repeat(15000), NS))).toBe('bad_query');
    expect(cpuMs() - t0).toBeLessThan(1000);
  });

  it('rejects malformed policies (fail closed)', () => {
    expect(codeOf(() => rewritePromQL('up', []))).toBe('policy_error');
    expect(codeOf(() => rewritePromQL('up', [[]]))).toBe('policy_error');
    expect(codeOf(() => rewritePromQL('up', [[{ name: '', op: '=', value: 'a' }]]))).toBe('policy_error');
    expect(codeOf(() => rewritePromQL('up', [[{ name: 'a', op: '==', value: 'a' } as unknown as Matcher]]))).toBe('policy_error');
    expect(codeOf(() => rewritePromQL('up', [[{ name: 'a', op: '=', value: 1 } as unknown as Matcher]]))).toBe('policy_error');
    expect(codeOf(() => rewritePromQL('up', [[{ name: 'a', op: '=', value: 'x\uD800' }]]))).toBe('policy_error');
  });
});

describe('chains longer than the parser can build (too complex)', () => {
  // Lezer gives up on a node that keeps growing from one start: after 300
  // reductions spanning 2000+ characters (chain-weight.ts). In lezer-promql a
  // binary operator, and a range, subquery or modifier after one, costs two,
  // so 150 of them with 2000-character operands parse and 151 do not. The
  // gateway counts instead (PROMQL_CHAINS): at most 128 at one bracket level,
  // on the query and again on the query with the policy's matchers, whatever
  // the operands' length and maxQueryDepth. Lists (matchers, arguments,
  // grouping labels) are repetitions, which Lezer builds balanced: not limited.
  const BIG = { maxQueryLength: 1 << 24, maxDepth: 100_000 };
  const LONG = 'x'.repeat(2000);
  const list = (k: number, f: (i: number) => string, sep: string): string => Array.from({ length: k }, (_, i) => f(i)).join(sep);
  const sel = (p: string): string => `m{a="${p}"}`;
  const TOO_COMPLEX = /^query is too complex: more than 128 binary operators, ranges, subqueries or offset\/@\/anchored\/smoothed modifiers at one level, at line \d+, col \d+; split it into smaller queries$/;
  const groups = (k: number, value = 'v'): SelectorPolicy => Array.from({ length: k }, (_, i) => [{ name: `l${i}`, op: '=', value }, { name: 'g', op: '=', value: String(i) }]);

  it("Lezer's own limit, which the count stays below: 150 operators between 2000-character operands parse, 151 do not", () => {
    expect(parseStrict(parser, list(151, () => sel(LONG), ' + ')).ok).toBe(true);
    expect(parseStrict(parser, list(152, () => sel(LONG), ' + ')).ok).toBe(false);
    // Short operands: the first 2000 characters do not count.
    expect(parseStrict(parser, list(333, () => sel('x'), ' + ')).ok).toBe(true);
    expect(parseStrict(parser, list(334, () => sel('x'), ' + ')).ok).toBe(false);
    // Lists never fail.
    expect(parseStrict(parser, `{${list(1000, (i) => `a${i}="${LONG}"`, ',')}}`).ok).toBe(true);
  });

  const cases: [string, (k: number, p: string) => string, number][] = [
    // [what, query with k operands, most operands accepted]
    ['+', (k, p) => list(k, () => sel(p), ' + '), 129],
    ['or', (k, p) => list(k, () => sel(p), ' or '), 129],
    ['and', (k, p) => list(k, () => sel(p), ' and '), 129],
    ['unless', (k, p) => list(k, () => sel(p), ' unless '), 129],
    ['/', (k, p) => list(k, () => sel(p), ' / '), 129],
    ['== bool', (k, p) => list(k, () => sel(p), ' == bool '), 129],
    ['>=', (k, p) => list(k, () => sel(p), ' >= '), 129],
    ['^ (right-associative)', (k, p) => list(k, () => sel(p), ' ^ '), 129],
    ['atan2', (k, p) => list(k, () => sel(p), ' atan2 '), 129],
    ['+ on() group_left()', (k, p) => list(k, () => sel(p), ' + on(a) group_left(b) '), 129],
    ['range function operands', (k, p) => list(k, () => `rate(${sel(p)}[5m])`, ' + '), 129],
    ['aggregation operands', (k, p) => list(k, () => `sum by (a) (${sel(p)})`, ' + '), 129],
    ['inside a call', (k, p) => `abs(${list(k, () => sel(p), ' + ')})`, 129],
    // Lezer reads `a + b offset 1m` as `(a + b) offset 1m`: a modifier or subquery after an operator extends the chain.
    ['operands with offset', (k, p) => list(k, () => `${sel(p)} offset 1m`, ' + '), 64],
    ['operands with @', (k, p) => list(k, () => `${sel(p)} @ 100`, ' + '), 64],
    ['subquery operands', (k, p) => list(k, () => `${sel(p)}[5m:]`, ' + '), 64],
    ['duration arithmetic', (k, p) => `rate(${sel(p)}[${list(k, () => '1s', ' + ')}])`, 129],
  ];
  for (const [what, q, max] of cases) {
    it(`${what}: ${max} operands accepted (also of 2000 characters), ${max + 1} refused as too complex`, () => {
      expect(codeOf(() => rewritePromQL(q(max, LONG), NS, BIG))).toBe('ok');
      expect(codeOf(() => rewritePromQL(q(max, 'x'), NS, BIG))).toBe('ok');
      for (const p of ['x', LONG]) {
        const e = errorOf(() => rewritePromQL(q(max + 1, p), NS, BIG));
        expect(e.code).toBe('query_too_large');
        expect(e.message).toMatch(TOO_COMPLEX);
      }
    });
  }

  it('a chain only the policy made too long for the parser: 400 too complex, before parsing, not a parse error or a failed verification (500)', () => {
    // Parsed as written (1331 characters), but not with the policy's matchers in each selector.
    expect(errorOf(() => rewritePromQL(list(333, () => 'a', ' + '), NS, BIG))).toMatchObject({ code: 'query_too_large', message: expect.stringMatching(TOO_COMPLEX) });
    // A policy of k groups that do not merge is an `or` of k per-group forms (promql-dnf.ts), nested in
    // halves above 8 (joinBalanced): no level holds more than 7 of them, whatever k.
    const q = 'rate(http_requests_total{job="api"}[5m])';
    for (const [k, p, lim] of [[129, 'v', DEFAULT_LIMITS], [130, 'v', DEFAULT_LIMITS], [1024, 'v', DEFAULT_LIMITS], [130, LONG, BIG], [300, LONG, BIG]] as const) {
      expect(codeOf(() => rewritePromQL(q, groups(k, p), lim))).toBe('ok');
    }
  });

  it('reports where the level goes over the limit (line and column)', () => {
    expect(errorOf(() => rewritePromQL(list(140, () => 'a', ' +\n'), NS)).message).toMatch(/at line 129, col 3;/);
    expect(errorOf(() => rewritePromQL(`sum(\n  ${list(130, () => 'a', ' or ')})`, NS)).message).toMatch(/at line 2, col 645;/);
  });

  it('lists are not limited: matchers of one selector, arguments, grouping labels, match[]', () => {
    expect(codeOf(() => rewritePromQL(`{${list(2000, (i) => `l${i}="v"`, ',')}}`, NS))).toBe('ok');
    expect(codeOf(() => rewritePromQL(`m{${list(301, (i) => `l${i}="${LONG}"`, ',')}}`, NS, BIG))).toBe('ok');
    expect(codeOf(() => rewritePromQL(`sum by (${list(2000, (i) => `l${i}`, ', ')}) (m)`, NS))).toBe('ok');
    expect(codeOf(() => rewritePromQL(`m + on (${list(2000, (i) => `l${i}`, ', ')}) group_left (${list(2000, (i) => `k${i}`, ', ')}) n`, NS))).toBe('ok');
    expect(codeOf(() => rewritePromQL(`label_join(m, "d", ",", ${list(2000, (i) => `"l${i}"`, ', ')})`, NS))).toBe('ok');
    expect(rewriteSeriesSelectors([`m{${list(2000, (i) => `l${i}="v"`, ',')}}`], NS)).toHaveLength(1);
    expect(rewriteSeriesSelectors(['up{job="x"}'], groups(1024))).toHaveLength(1024);
    // A match[] that is a chain is refused as too complex before it is refused as not a selector.
    expect(errorOf(() => rewriteSeriesSelectors([list(130, () => 'a', ' + ')], NS)).message).toMatch(/^invalid parameter "match\[\]": query is too complex/);
  });

  it('levels do not add up; strings, comments, matchers and names are not counted', () => {
    const half = list(100, () => 'a', ' + ');
    expect(codeOf(() => rewritePromQL(`sum(${half}) + sum(${half}) * (${half})`, NS))).toBe('ok');
    const op = '+-*/^ or and unless offset @ == != < >';
    expect(codeOf(() => rewritePromQL(`m{a="${op.repeat(20)}", b='${op.repeat(20)}', c=~\`${op.repeat(20)}\`} # ${op.repeat(20)}\n+ n`, NS))).toBe('ok');
    expect(codeOf(() => rewritePromQL(`m{${list(200, () => `or="x", offset!~"y"`, ',')}}`, NS))).toBe('ok');
    expect(codeOf(() => rewritePromQL(list(129, (i) => (i % 2 === 0 ? 'job:or:unless' : 'offset_total'), ' + '), NS, BIG))).toBe('ok');
    // Signs count as operators (an upper bound), also in exponents: 65 operators and 65 signs.
    expect(codeOf(() => rewritePromQL(`${list(65, () => '1e-5', ' * ')} * m`, NS, BIG))).toBe('query_too_large');
    expect(codeOf(() => rewritePromQL(`${list(64, () => '1e-5', ' * ')} * m`, NS, BIG))).toBe('ok');
  });

  it('an operator written against a number (`1or m`: Lezer ends the number there) is counted: too complex, not a failed verification (500)', () => {
    // 400 hidden `or`s after a sum whose selectors the policy lengthens: parsed as written, not with the policy's matchers.
    const sum = `(${list(100, () => 'x', '+')})`;
    for (const glued of ['1or ', '5mor ', '1e3or ', '0x1for ', '1.5or ', '1atan2 ', '1and ', '1unless ']) {
      const q = `${sum} or ${glued.repeat(400)}1`;
      expect(errorOf(() => rewritePromQL(q, NS, BIG)), glued).toMatchObject({ code: 'query_too_large', message: expect.stringMatching(TOO_COMPLEX) });
    }
    expect(codeOf(() => rewritePromQL(`1 or ${'5moffset 1m or '.repeat(64)}m`, NS, BIG))).toBe('query_too_large');
    // Numbers and durations Prometheus reads hold no keyword: not counted.
    expect(codeOf(() => rewritePromQL(`m{a="b"}[${list(120, () => '1h30m5s0ms', '+')}] offset 0x1fAbcDE`, NS, BIG))).toBe('ok');
  });
});

describe('absent(): result labels in either order the backend reads the matchers', () => {
  // Prometheus' TSDB sorts a selector's matchers in place while looking it up ("intersecting" ones first;
  // tsdb/querier.go PostingsForMatchers), and absent() builds its labels from them afterwards, but only
  // when some block covers the query's time range: `x{namespace!="b", namespace="c"}` gives namespace="c"
  // as written (`@ 100`, no data) and no label once sorted (the usual case). The label fix must be right
  // for both orders, or the query is refused.
  const DNF: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'a' }], [{ name: 'namespace', op: '=', value: 'b' }, { name: 'job', op: '=', value: 'j' }]];

  it.each([
    'absent(x{namespace!="b", namespace="c"})',
    'absent((x{namespace!="b", namespace="c"} offset 5m))',
    'absent_over_time(x{namespace!~"b.*", namespace="c"}[5m])',
  ])('%s: the policy label depends on the order → refused', (q) => {
    const e = errorOf(() => rewritePromQL(q, NS));
    expect(e.code).toBe('rewrite_unsupported');
    expect(e.message).toContain('order');
    expect(codeOf(() => rewritePromQL(q, DNF))).toBe('rewrite_unsupported');
  });

  it.each([
    // "=" first: no label in either order.
    ['absent(x{namespace="c", namespace!="b"})', `absent(x{namespace="c", namespace!="b",${M}})`],
    // A label the policy does not touch: Prometheus reads the user's matchers of it in its own order.
    ['absent(x{job!="j", job="api"})', `label_replace(absent(x{job!="j", job="api",${M}}), "namespace", "", "", "")`],
    // The added namespace="team-a" shows as written, not once sorted: removing it is right for both.
    ['absent(x{namespace!="z"})', `label_replace(absent(x{namespace!="z",${M}}), "namespace", "", "", "")`],
  ])('%s → %s', (q, want) => {
    expect(rewritePromQL(q, NS)).toBe(want);
  });

  it('several groups: the part whose labels can be put back leads, whatever the order of the groups (generative seed 2200)', () => {
    // Group B adds job="api" next to the user's job!~ and job="ingress": its absent() labels depend on
    // the order; group A's do not. `and on()` keeps only the leading part's labels, so A leads.
    const A = [{ name: 'namespace', op: '=~', value: 'team-a-.*' }] as const;
    const B = [
      { name: 'namespace', op: '=', value: 'platform' },
      { name: 'job', op: '=', value: 'api' },
    ] as const;
    const q = '-(absent_over_time(x{job!~"api|web", job="ingress"}[10m]))';
    const want = '-((absent_over_time(x{job!~"api|web", job="ingress",namespace=~"team-a-.*"}[10m]) and on() absent_over_time(x{job!~"api|web", job="ingress",namespace="platform",job="api"}[10m])))';
    expect(rewritePromQL(q, [[...A], [...B]])).toBe(want);
    expect(rewritePromQL(q, [[...B], [...A]])).toBe(want);
    expect(rewritePromQLPerGroup(q, [[...B], [...A]])).toEqual([want]);
    // No group's labels can be put back: refused, in either order.
    const C = [{ name: 'job', op: '=~', value: 'a.*' }] as const;
    expect(codeOf(() => rewritePromQL(q, [[...B], [...C]]))).toBe('rewrite_unsupported');
    expect(codeOf(() => rewritePromQL(q, [[...C], [...B]]))).toBe('rewrite_unsupported');
  });
});

describe('escaping of policy values and names', () => {
  const values = [
    'a"b',
    'a\\b',
    'a\nb',
    'a\r\tb',
    '"}',
    'x"} or vector(1) or up{a="',
    '"} or {__name__=~".+',
    '\\"}',
    '`',
    "'",
    '# not a comment',
    '\u0000\u0001\u001f\u007f',
    '\u0085\u2028\u2029',
    'Zürich 🚀 𝔘',
    '',
    '.*',
    '\\',
  ];
  it.each(values)('value %j round-trips exactly', (value) => {
    for (const op of ['=', '!=', '=~', '!~'] as const) {
      const policy: SelectorPolicy = [[{ name: 'team', op, value }]];
      const out = rewritePromQL('sum(rate(x{a="b"}[5m])) / y', policy);
      oracleParse(out);
      const sels = oracleSelectors(out);
      expect(sels).toHaveLength(2);
      for (const s of sels) expect(carries(s, { name: 'team', op, value })).toBe(true);
      expect(rewritePromQL(out, policy)).toBe(out);
    }
  });

  it.each(['k8s.namespace', 'a"b', 'a\\b', 'ü', 'with space', '0digit', 'a}b'])('label name %j round-trips exactly', (name) => {
    const policy: SelectorPolicy = [[{ name, op: '=', value: 'v' }]];
    const out = rewritePromQL('up{job="x"}', policy);
    const [s] = oracleSelectors(out);
    expect(s && carries(s, { name, op: '=', value: 'v' })).toBe(true);
    expect(rewritePromQL(out, policy)).toBe(out);
  });

  it('formatMatcher renders PromQL syntax', () => {
    expect(formatMatcher({ name: 'namespace', op: '=~', value: 'a|b' })).toBe('namespace=~"a|b"');
    expect(formatMatcher({ name: 'k8s.ns', op: '=', value: 'x' })).toBe('"k8s.ns"="x"');
    expect(formatMatcher({ name: 'a', op: '!=', value: 'q"\\\n\t\u0007\u0000' })).toBe('a!="q\\"\\\\\\n\\t\\a\\x00"');
    expect(formatMatcher({ name: 'a', op: '!~', value: '\u2028' })).toBe('a!~"\\u2028"');
    expect(formatMatcher({ name: 'on', op: '=', value: 'x' })).toBe('on="x"');
  });
});

describe('rewriteSeriesSelectors (match[])', () => {
  const DNF: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'a' }], [{ name: 'team', op: '=', value: 'x' }]];

  it('single group: one selector per param', () => {
    expect(rewriteSeriesSelectors(['up', '{job="api"}'], NS)).toEqual([`up{${M}}`, `{job="api",${M}}`]);
    expect(rewriteSeriesSelectors(['up{namespace="team-a"}'], NS)).toEqual(['up{namespace="team-a"}']);
    expect(rewriteSeriesSelectors(['{__name__=~"node_.+"}'], NS)).toEqual([`{__name__=~"node_.+",${M}}`]);
  });

  it('DNF: n params × k groups', () => {
    expect(rewriteSeriesSelectors(['up', '{job="api"}'], DNF)).toEqual([
      'up{namespace="a"}',
      'up{team="x"}',
      '{job="api",namespace="a"}',
      '{job="api",team="x"}',
    ]);
  });

  it.each(['{}', '{a=~".*"}', '{a=""}', ' {job!="x"} '])('refuses %j as Prometheus does (no non-empty matcher)', (p) => {
    const e = errorOf(() => rewriteSeriesSelectors(['up', p], NS));
    expect(e.code).toBe('bad_query');
    expect(e.message).toBe('invalid parameter "match[]": match[] must contain at least one non-empty matcher');
  });

  it('a metric name or one non-empty matcher is enough', () => {
    expect(rewriteSeriesSelectors(['up{a=""}', '{a="", b!=""}', '{"up"}'], NS)).toEqual([`up{a="",${M}}`, `{a="", b!="",${M}}`, `{"up",${M}}`]);
  });

  it('no params: one selector per group', () => {
    expect(rewriteSeriesSelectors([], NS)).toEqual([`{${M}}`]);
    expect(rewriteSeriesSelectors([], DNF)).toEqual(['{namespace="a"}', '{team="x"}']);
  });

  it.each(['up[5m]', 'up or down', 'sum(up)', '1', '', 'rate(up[5m])', 'up offset 5m', '{a="b"', 'up} or {'])('rejects %j', (p) => {
    const e = errorOf(() => rewriteSeriesSelectors([p], NS));
    expect(e.code).toBe('bad_query');
    expect(e.message).toContain('match[]');
  });
});

describe('reserved label names (__lbac_…, the labels the rewriter writes)', () => {
  const RESERVED = /label names starting with "__lbac_" are reserved by the gateway/;
  const DNF: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'a' }], [{ name: 'team', op: '=', value: 'x' }]];
  it.each([
    // matchers, also quoted (UTF-8 names), spelt with escapes, and in info()'s data-label selector
    ['up{__lbac_x="v"}', '__lbac_x', 4],
    ['{__name__="up", __lbac_info_0__=~".+"}', '__lbac_info_0__', 17],
    ['up{"__lbac_metric_name__"="v"}', '__lbac_metric_name__', 4],
    ['{"up", "__lbac_x"!="v"}', '__lbac_x', 8],
    ['up{"\x5f_lbac_x"="v"}', '__lbac_x', 4],
    ['info(up, {__lbac_x=~".+"})', '__lbac_x', 11],
    ['info(up, {"__lbac_x"=~".+"})', '__lbac_x', 11],
    // grouping: by, without, on, ignoring, group_left, group_right (also quoted)
    ['sum by (job, __lbac_x) (up)', '__lbac_x', 14],
    ['sum without (__lbac_x) (up)', '__lbac_x', 14],
    ['sum(up) by ("__lbac_x")', '__lbac_x', 13],
    ['a * on (__lbac_x) b', '__lbac_x', 9],
    ['a * ignoring (__lbac_x) b', '__lbac_x', 15],
    ['a * on (x) group_left (__lbac_x) b', '__lbac_x', 24],
    ['a * on (x) group_right ("__lbac_x") b', '__lbac_x', 25],
    // label-name arguments: label_replace dst and src, label_join dst and sources, sort_by_label(_desc), count_values
    ['label_replace(up, "__lbac_metric_name__", "$1", "job", "(.*)")', '__lbac_metric_name__', 19],
    ['label_replace(up, "dst", "$1", "__lbac_info_0__", "(.*)")', '__lbac_info_0__', 32],
    ['label_replace(up, ("__lbac_x"), "", "", "")', '__lbac_x', 20],
    ["label_replace(up, 'dst', '$1', `__lbac_x`, '(.*)')", '__lbac_x', 32],
    ['label_join(up, "__lbac_x", ",", "a", "b")', '__lbac_x', 16],
    ['label_join(up, "dst", ",", "a", "__lbac_x")', '__lbac_x', 33],
    ['sort_by_label(up, "job", "__lbac_x")', '__lbac_x', 26],
    ['sort_by_label_desc(up, "__lbac_x")', '__lbac_x', 24],
    ['count_values("__lbac_x", up)', '__lbac_x', 14],
    ['histogram_quantiles(up, "__lbac_metric_name__", 0.5, 0.9)', '__lbac_metric_name__', 25],
    ['sum(rate(x[5m])) / count_values without (job) ("\u005f_lbac_x", up)', '__lbac_x', 48],
  ])('%j is refused (bad_query), naming %j at char %i', (q, name, char) => {
    const e = errorOf(() => rewritePromQL(q, NS));
    expect(e.code).toBe('bad_query');
    expect(e.message).toMatch(RESERVED);
    expect(e.message).toContain(`label name ${JSON.stringify(name)} at char ${char}:`);
    // With several groups too (the rewriter writing __lbac_metric_name__ itself).
    expect(errorOf(() => rewritePromQL(q, DNF)).code).toBe('bad_query');
  });

  it.each([
    // values, metric names and the other strings are not label names
    ['up{job="__lbac_x"}', `up{job="__lbac_x",${M}}`],
    ['up{job=~"__lbac_.*"}', `up{job=~"__lbac_.*",${M}}`],
    ['__lbac_x{job="a"}', `__lbac_x{job="a",${M}}`],
    ['{"__lbac_x"}', `{"__lbac_x",${M}}`],
    ['{__name__="__lbac_x"}', `{__name__="__lbac_x",${M}}`],
    ['label_replace(up, "dst", "__lbac_x", "src", "__lbac_(.*)")', `label_replace(up{${M}}, "dst", "__lbac_x", "src", "__lbac_(.*)")`],
    ['label_join(up, "dst", "__lbac_", "a", "b")', `label_join(up{${M}}, "dst", "__lbac_", "a", "b")`],
    ['sum by (__lbac) (up)', `sum by (__lbac) (up{${M}})`],
    ['sum by (_lbac_x, x__lbac_) (up)', `sum by (_lbac_x, x__lbac_) (up{${M}})`],
    ['count_values("x", up{job="__lbac_"})', `count_values("x", up{job="__lbac_",${M}})`],
  ])('%j is accepted', (q, want) => {
    expect(rewritePromQL(q, NS)).toBe(want);
  });

  it('match[] and the CLI --matcher refuse them too', () => {
    const e = errorOf(() => rewriteSeriesSelectors(['up', '{__lbac_x="v"}'], NS));
    expect(e.code).toBe('bad_query');
    expect(e.message).toBe('invalid parameter "match[]": label name "__lbac_x" at char 2: label names starting with "__lbac_" are reserved by the gateway');
    expect(rewriteSeriesSelectors(['{job="__lbac_x"}'], NS)).toEqual([`{job="__lbac_x",${M}}`]);
    expect(errorOf(() => parseMatcherExpression('a="b", "__lbac_x"="v"')).message).toContain('label name "__lbac_x" at char 8:');
  });
});

describe('parseMatcherExpression', () => {
  it('parses the CLI --matcher syntax', () => {
    expect(parseMatcherExpression('namespace=~"a|b"')).toEqual([{ name: 'namespace', op: '=~', value: 'a|b' }]);
    expect(parseMatcherExpression('a="x", b!="y"')).toEqual([
      { name: 'a', op: '=', value: 'x' },
      { name: 'b', op: '!=', value: 'y' },
    ]);
    expect(parseMatcherExpression(' "k8s.ns"!~`x.*` ')).toEqual([{ name: 'k8s.ns', op: '!~', value: 'x.*' }]);
    expect(parseMatcherExpression("a='q\\'s'")).toEqual([{ name: 'a', op: '=', value: "q's" }]);
    expect(parseMatcherExpression('a="\\u00fc\\n"')).toEqual([{ name: 'a', op: '=', value: 'ü\n' }]);
  });

  it.each(['', '  ', 'a', 'a=', 'a="b"} or {c="d"', 'a="b"}', 'a="b" # comment', '{a="b"}', 'a=b', 'a=="b"'])('rejects %j', (t) => {
    expect(codeOf(() => parseMatcherExpression(t))).toBe('bad_query');
  });

  it('reports positions relative to the matcher text', () => {
    expect(errorOf(() => parseMatcherExpression('a=')).message).toContain('char 3');
  });

  it('round-trips through formatMatcher', () => {
    const ms: Matcher[] = [
      { name: 'a', op: '=', value: 'x"}\n\\' },
      { name: 'k8s.ns', op: '!~', value: 'é|🚀' },
    ];
    expect(parseMatcherExpression(ms.map(formatMatcher).join(', '))).toEqual(ms);
  });
});

describe('verifyPromQL', () => {
  it('accepts enforced queries and rejects unenforced ones', () => {
    expect(codeOf(() => verifyPromQL(`up{${M}}`, NS))).toBe('ok');
    expect(codeOf(() => verifyPromQL('1 + 1', NS))).toBe('ok');
    expect(codeOf(() => verifyPromQL('up', NS))).toBe('rewrite_verification_failed');
    expect(codeOf(() => verifyPromQL(`up{${M}} / down`, NS))).toBe('rewrite_verification_failed');
    expect(codeOf(() => verifyPromQL('up{namespace=~"team-a"}', NS))).toBe('rewrite_verification_failed');
    expect(codeOf(() => verifyPromQL('up{namespace="team-b"}', NS))).toBe('rewrite_verification_failed');
    expect(codeOf(() => verifyPromQL(`up{${M}`, NS))).toBe('rewrite_verification_failed');
    expect(codeOf(() => verifyPromQL(`up{${M}} # x\r or y`, NS))).toBe('rewrite_verification_failed');
    expect(codeOf(() => verifyPromQL(`info(up{${M}})`, NS))).toBe('rewrite_verification_failed');
    // Compares unescaped values, not text.
    expect(codeOf(() => verifyPromQL("up{namespace='team\\x2da'}", NS))).toBe('ok');
  });

  it('DNF: every selector must carry one whole group', () => {
    const DNF: SelectorPolicy = [
      [
        { name: 'namespace', op: '=', value: 'a' },
        { name: 'cluster', op: '=', value: 'c1' },
      ],
      [{ name: 'team', op: '=', value: 'x' }],
    ];
    expect(codeOf(() => verifyPromQL('(up{namespace="a",cluster="c1"} or up{team="x"})', DNF))).toBe('ok');
    expect(codeOf(() => verifyPromQL('up{namespace="a",team="y"}', DNF))).toBe('rewrite_verification_failed');
  });
});

describe('DNF (multi-group) policies', () => {
  const A = 'namespace="a"';
  const B = 'team="x"';
  const DNF: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'a' }], [{ name: 'team', op: '=', value: 'x' }]];
  const exact: [string, string][] = [
    ['up', `(up{${A}} or up{${B}})`],
    ['up{job="api"}', `(up{job="api",${A}} or up{job="api",${B}})`],
    ['{__name__="up"}', `({__name__="up",${A}} or {__name__="up",${B}})`],
    ['{"my.metric"}', `({"my.metric",${A}} or {"my.metric",${B}})`],
    ['rate(x[5m])', `(rate(x{${A}}[5m]) or rate(x{${B}}[5m]))`],
    ['sum by (job) (rate(x{code="500"}[5m]))', `sum by (job) ((rate(x{code="500",${A}}[5m]) or rate(x{code="500",${B}}[5m])))`],
    [
      'histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))',
      `histogram_quantile(0.9, sum by (le) ((rate(x_bucket{${A}}[5m]) or rate(x_bucket{${B}}[5m]))))`,
    ],
    ['a / b', `(a{${A}} or a{${B}}) / (b{${A}} or b{${B}})`],
    ['x offset 5m', `(x{${A}} offset 5m or x{${B}} offset 5m)`],
    ['x @ start()', `(x{${A}} @ start() or x{${B}} @ start())`],
    ['rate(x[5m] offset 1h)', `(rate(x{${A}}[5m] offset 1h) or rate(x{${B}}[5m] offset 1h))`],
    ['rate((x[5m]))', `(rate((x{${A}}[5m])) or rate((x{${B}}[5m])))`],
    ['timestamp(x)', `(timestamp(x{${A}}) or timestamp(x{${B}}))`],
    ['timestamp((x @ 100))', `(timestamp((x{${A}} @ 100)) or timestamp((x{${B}} @ 100)))`],
    ['max_over_time(x[1h:])', `max_over_time((x{${A}} or x{${B}})[1h:])`],
    ['max_over_time(rate(x[5m])[1h:])', `max_over_time((rate(x{${A}}[5m]) or rate(x{${B}}[5m]))[1h:])`],
    ['quantile_over_time(0.9, x[5m])', `(quantile_over_time(0.9, x{${A}}[5m]) or quantile_over_time(0.9, x{${B}}[5m]))`],
    ['predict_linear(x[1h], 3600)', `(predict_linear(x{${A}}[1h], 3600) or predict_linear(x{${B}}[1h], 3600))`],
    [
      'quantile_over_time(scalar(q), x[5m])',
      `(quantile_over_time(scalar((q{${A}} or q{${B}})), x{${A}}[5m]) or quantile_over_time(scalar((q{${A}} or q{${B}})), x{${B}}[5m]))`,
    ],
    ['last_over_time(x[5m])', `(last_over_time(x{${A}}[5m]) or last_over_time(x{${B}}[5m]))`],
    ['absent(sum(x))', `absent(sum((x{${A}} or x{${B}})))`],
    // Several metric names: `or` compares labels without the name, so the name rides along in a label.
    [
      '{job="x"}',
      `label_replace((label_replace({job="x",${A}}, "__lbac_metric_name__", "$1", "__name__", "(.+)") or label_replace({job="x",${B}}, "__lbac_metric_name__", "$1", "__name__", "(.+)")), "__lbac_metric_name__", "", "", "")`,
    ],
    [
      'sum({__name__=~"node_.*"} offset 1m)',
      `sum(label_replace((label_replace({__name__=~"node_.*",${A}} offset 1m, "__lbac_metric_name__", "$1", "__name__", "(.+)") or label_replace({__name__=~"node_.*",${B}} offset 1m, "__lbac_metric_name__", "$1", "__name__", "(.+)")), "__lbac_metric_name__", "", "", ""))`,
    ],
    // absent over the union is absent over every part; the first part's labels put back to those of x as written.
    ['absent(x)', `label_replace((absent(x{${A}}) and on() absent(x{${B}})), "namespace", "", "", "")`],
    ['absent(x{job="j"}) + 1', `label_replace((absent(x{job="j",${A}}) and on() absent(x{job="j",${B}})), "namespace", "", "", "") + 1`],
    ['absent((x))', `label_replace((absent((x{${A}})) and on() absent((x{${B}}))), "namespace", "", "", "")`],
    ['absent({job="j"})', `label_replace((absent({job="j",${A}}) and on() absent({job="j",${B}})), "namespace", "", "", "")`],
    ['absent_over_time(x[5m] offset 1h)', `label_replace((absent_over_time(x{${A}}[5m] offset 1h) and on() absent_over_time(x{${B}}[5m] offset 1h)), "namespace", "", "", "")`],
    ['absent_over_time(x[5m:])', `absent_over_time((x{${A}} or x{${B}})[5m:])`],
    ['count_over_time(x[1h:1m] offset 1d)', `count_over_time((x{${A}} or x{${B}})[1h:1m] offset 1d)`],
    ['label_replace(x, "a", "$1", "b", "(.*)")', `label_replace((x{${A}} or x{${B}}), "a", "$1", "b", "(.*)")`],
    // Already inside one alternative: s ⊆ G1, so s ∩ (G1 ∪ G2) = s.
    ['up{namespace="a"}', 'up{namespace="a"}'],
    ['up{team="x"} / up', `up{team="x"} / (up{${A}} or up{${B}})`],
    ['1 + 1', '1 + 1'],
    // Prometheus binds offset/@/anchored to the nearest selector: `a - b offset 5m` is
    // `a - (b offset 5m)` (lezer-promql reads `(a - b) offset 5m`); the modifier goes inside b's `or`.
    ['a - b offset 5m', `(a{${A}} or a{${B}}) - (b{${A}} offset 5m or b{${B}} offset 5m)`],
    ['a - b @ 100', `(a{${A}} or a{${B}}) - (b{${A}} @ 100 or b{${B}} @ 100)`],
    ['a - b offset 5m @ 100', `(a{${A}} or a{${B}}) - (b{${A}} offset 5m @ 100 or b{${B}} offset 5m @ 100)`],
    ['-b offset 5m', `-(b{${A}} offset 5m or b{${B}} offset 5m)`],
    ['a - -b @ end()', `(a{${A}} or a{${B}}) - -(b{${A}} @ end() or b{${B}} @ end())`],
    ['a * b - c offset 5m', `(a{${A}} or a{${B}}) * (b{${A}} or b{${B}}) - (c{${A}} offset 5m or c{${B}} offset 5m)`],
    ['a - b * c offset 5m', `(a{${A}} or a{${B}}) - (b{${A}} or b{${B}}) * (c{${A}} offset 5m or c{${B}} offset 5m)`],
    ['a - b offset 5m - c', `(a{${A}} or a{${B}}) - (b{${A}} offset 5m or b{${B}} offset 5m) - (c{${A}} or c{${B}})`],
    ['a > bool b offset 5m', `(a{${A}} or a{${B}}) > bool (b{${A}} offset 5m or b{${B}} offset 5m)`],
    ['a offset 1m - b offset 5m', `(a{${A}} offset 1m or a{${B}} offset 1m) - (b{${A}} offset 5m or b{${B}} offset 5m)`],
    ['rate(a[5m]) - b offset 1h', `(rate(a{${A}}[5m]) or rate(a{${B}}[5m])) - (b{${A}} offset 1h or b{${B}} offset 1h)`],
    ['a - b # c\n offset 5m', `(a{${A}} or a{${B}}) - (b{${A}} # c\n offset 5m or b{${B}} # c\n offset 5m)`],
    // Prometheus rejects an offset on a parenthesised expression; so does the output (no change of meaning).
    ['a - (b) offset 5m', `(a{${A}} or a{${B}}) - ((b{${A}} or b{${B}})) offset 5m`],
    // A bare group_left/group_right takes an optional label list: an `or` group right after it
    // would be read as one, so an explicit empty list comes first.
    ['a * on(x) group_left b', `(a{${A}} or a{${B}}) * on(x) group_left () (b{${A}} or b{${B}})`],
    ['a * ignoring(x) group_right b', `(a{${A}} or a{${B}}) * ignoring(x) group_right () (b{${A}} or b{${B}})`],
    ['a * on(x) group_left rate(b[5m])', `(a{${A}} or a{${B}}) * on(x) group_left () (rate(b{${A}}[5m]) or rate(b{${B}}[5m]))`],
    ['a > bool on(x) group_left b', `(a{${A}} or a{${B}}) > bool on(x) group_left () (b{${A}} or b{${B}})`],
    ['a + on(x) group_left b * c', `(a{${A}} or a{${B}}) + on(x) group_left () (b{${A}} or b{${B}}) * (c{${A}} or c{${B}})`],
    ['a - on(x) group_left b offset 5m', `(a{${A}} or a{${B}}) - on(x) group_left () (b{${A}} offset 5m or b{${B}} offset 5m)`],
    ['a * on(x) group_left # c\n b', `(a{${A}} or a{${B}}) * on(x) group_left # c\n () (b{${A}} or b{${B}})`],
    ['a * on(x) group_left (l) b', `(a{${A}} or a{${B}}) * on(x) group_left (l) (b{${A}} or b{${B}})`],
    ['a * on(x) group_left() b', `(a{${A}} or a{${B}}) * on(x) group_left() (b{${A}} or b{${B}})`],
    ['a * on(x) group_left -b', `(a{${A}} or a{${B}}) * on(x) group_left -(b{${A}} or b{${B}})`],
    ['a > bool b', `(a{${A}} or a{${B}}) > bool (b{${A}} or b{${B}})`],
    ['a * on(x) b', `(a{${A}} or a{${B}}) * on(x) (b{${A}} or b{${B}})`],
    // A name regex without metacharacters pins one metric name, as `__name__="up"` does.
    ['changes({__name__=~"up"}[10m])', `(changes({__name__=~"up",${A}}[10m]) or changes({__name__=~"up",${B}}[10m]))`],
    ['timestamp({__name__=~"up", instance=~".+"})', `(timestamp({__name__=~"up", instance=~".+",${A}}) or timestamp({__name__=~"up", instance=~".+",${B}}))`],
  ];
  it.each(exact)('%j', (q, expected) => {
    const out = rewritePromQL(q, DNF);
    expect(out).toBe(expected);
    expectIdempotent(out, DNF);
    for (const s of oracleSelectors(out)) {
      expect(carries(s, { name: 'namespace', op: '=', value: 'a' }) || carries(s, { name: 'team', op: '=', value: 'x' })).toBe(true);
    }
  });

  const rejected: [string, string][] = [
    ['rate({job="x"}[5m])', 'single metric name'],
    ['timestamp({__name__=~"a|b"})', 'single metric name'],
    ['x[5m]', 'range function'],
    ['x[5m] offset 1h', 'range function'],
    ['info(x, {k="v"})', 'info()'],
    ['start_timestamp(x)', 'start_timestamp'],
    ['sort(x[5m])', 'not computed per series'],
    ['rate(x[5m], y[5m])', 'unexpected arguments'],
    ['sum(info(rate(x[5m]), {k="v"}))', 'info()'],
  ];
  it.each(rejected)('rejects %j', (q, msg) => {
    const e = errorOf(() => rewritePromQL(q, DNF));
    expect(e.code).toBe('rewrite_unsupported');
    expect(e.message).toContain(msg);
  });

  it('group_left () is read as an empty label list, the following `or` group as the operand', () => {
    const out = rewritePromQL('a * on(x) group_left b', DNF);
    const tree = oracleParse(out);
    const labels: string[] = [];
    tree.iterate({
      enter(n) {
        if (n.name === 'GroupingLabels') labels.push(out.slice(n.from, n.to));
      },
    });
    expect(labels).toEqual(['(x)', '()']);
    expect(oracleSelectors(out)).toHaveLength(4);
  });

  it('normalises the policy: duplicate and subsumed groups collapse to one', () => {
    expect(rewritePromQL('up', [[{ name: 'namespace', op: '=', value: 'a' }], [{ name: 'namespace', op: '=', value: 'a' }]])).toBe(`up{${A}}`);
    const subsumed: SelectorPolicy = [
      [
        { name: 'namespace', op: '=', value: 'a' },
        { name: 'team', op: '=', value: 'x' },
      ],
      [{ name: 'namespace', op: '=', value: 'a' }],
    ];
    expect(rewritePromQL('{job="x"}', subsumed)).toBe(`{job="x",${A}}`);
  });

  it('__name__ groups', () => {
    const p: SelectorPolicy = [[{ name: '__name__', op: '=', value: 'up' }], [{ name: 'namespace', op: '=', value: 'a' }]];
    expect(rewritePromQL('up', p)).toBe('up');
    expect(rewritePromQL('node_cpu', p)).toBe(`({__name__="node_cpu",__name__="up"} or node_cpu{${A}})`);
  });

  it('bounds the output of nested expansions', () => {
    let q = 'x[5m]';
    for (let i = 0; i < 8; i++) q = `quantile_over_time(scalar(quantile_over_time(0.5, y[1m])), ${i === 0 ? q : `(${q})[5m:]`})`;
    // Two labels per group, so the groups do not merge into one (mergeGroups).
    const groups: SelectorPolicy = Array.from({ length: 6 }, (_, i) => [{ name: 'g', op: '=', value: String(i) }, { name: 'h', op: '=', value: String(i) }]);
    expect(['ok', 'query_too_large']).toContain(codeOf(() => rewritePromQL(q, groups)));
    const wide = Array.from({ length: 8 }, (_, i) => `quantile_over_time(scalar(quantile_over_time(scalar(q${i}), y[1m])), x[5m])`).join(' + ');
    expect(['ok', 'query_too_large']).toContain(codeOf(() => rewritePromQL(wide, groups, { maxQueryLength: 2000, maxDepth: 128 })));
    // The expansion is bounded by 4 × maxQueryLength.
    const three: SelectorPolicy = [0, 1, 2].map((i) => [{ name: 'g', op: '=', value: String(i) }, { name: 'h', op: '=', value: String(i) }]);
    expect(codeOf(() => rewritePromQL('a + b + c + d', three, { maxQueryLength: 20, maxDepth: 128 }))).toBe('query_too_large');
    expect(codeOf(() => rewritePromQL('a + b', three, { maxQueryLength: 60, maxDepth: 128 }))).toBe('ok');
  });
});

describe('functions newer than the Lezer grammar (integral)', () => {
  const DNF: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'a' }], [{ name: 'team', op: '=', value: 'x' }]];

  it('are rewritten with their real name, every selector enforced, in one group and under several', () => {
    const cases: [string, string][] = [
      ['integral(x[5m])', `integral(x{${M}}[5m])`],
      ['integral(x{code="500"}[5m], 0)', `integral(x{code="500",${M}}[5m], 0)`],
      ['sum by (job) (integral (x[5m] offset 1h))', `sum by (job) (integral (x{${M}}[5m] offset 1h))`],
      ['integral(rate(x[5m])[1h:1m]) / integral(y[1h])', `integral(rate(x{${M}}[5m])[1h:1m]) / integral(y{${M}}[1h])`],
    ];
    for (const [q, want] of cases) {
      const out = rewritePromQL(q, NS);
      expect(out, q).toBe(want);
      // Verified through the same reading, and idempotent.
      expect(rewritePromQL(out, NS)).toBe(out);
    }
    expect(rewritePromQL('integral(x[5m])', DNF)).toBe('(integral(x{namespace="a"}[5m]) or integral(x{team="x"}[5m]))');
  });

  it('only as a call: the name elsewhere is what it was (a metric, a label), and other spellings stay parse errors as in Prometheus', () => {
    expect(rewritePromQL('integral', NS)).toBe(`integral{${M}}`);
    expect(rewritePromQL('integral{integral="1"}', NS)).toBe(`integral{integral="1",${M}}`);
    expect(rewritePromQL('sum by (integral) (x)', NS)).toBe(`sum by (integral) (x{${M}})`);
    // Function names are case-sensitive in Prometheus; a recording-rule name with ":" is a metric name; a
    // comment between name and "(" is refused (the safe direction), as is an unknown function.
    for (const q of ['Integral(x[5m])', 'job:integral(x[5m])', 'integral # c\n(x[5m])', 'integrals(x[5m])', 'x[integral(5m)]']) {
      expect(codeOf(() => rewritePromQL(q, NS)), q).toBe('bad_query');
    }
  });
});

describe('max_of / min_of as functions (experimental in Prometheus; Lezer knows them only in a range or offset)', () => {
  it('are forwarded as written, with every selector in and around them enforced', () => {
    for (const q of ['max_of(1, 2)', 'min_of(step(), 5m)', 'max_of (range(), 1h)']) {
      expect(rewritePromQL(q, NS), q).toBe(q);
    }
    expect(rewritePromQL('max_of(scalar(sum(up)), 1)', NS)).toBe(`max_of(scalar(sum(up{${M}})), 1)`);
    // Function names are case-sensitive in Prometheus ("unknown function with name MAX_OF").
    expect(codeOf(() => rewritePromQL('MAX_OF(1m, 2m)', NS))).toBe('bad_query');
    expect(rewritePromQL('sum(rate(x[5m])) * max_of(step(), 1m)', NS)).toBe(`sum(rate(x{${M}}[5m])) * max_of(step(), 1m)`);
    // Inside a range they were already read (lezer-promql's durations).
    expect(rewritePromQL('x[max_of(1m, step())]', NS)).toBe(`x{${M}}[max_of(1m, step())]`);
    // A selector as an argument (Prometheus refuses it) is still enforced, never forwarded bare.
    expect(rewritePromQL('max_of(up, 2)', NS)).toBe(`max_of(up{${M}}, 2)`);
    // The metric and label named so are what they were.
    expect(rewritePromQL('max_of{max_of="1"}', NS)).toBe(`max_of{max_of="1",${M}}`);
  });
});

describe('rewritePromQLPerGroup (instant queries: one query per group for a bare range selector)', () => {
  const GA: Matcher[] = [{ name: 'namespace', op: '=', value: 'a' }];
  const GB: Matcher[] = [{ name: 'team', op: '=', value: 'x' }];
  const DNF: SelectorPolicy = [GA, GB];

  it('is the one rewrite wherever there is one (one group, or an exact "or" form)', () => {
    for (const q of ['up[5m]', 'rate(x[5m])', 'sum(up)', 'up{namespace="a"}[5m]']) {
      expect(rewritePromQLPerGroup(q, NS)).toEqual([rewritePromQL(q, NS)]);
    }
    for (const q of ['rate(x[5m])', 'up', 'max_over_time(x[1h:])', 'up{namespace="a"}[5m]']) expect(rewritePromQLPerGroup(q, DNF)).toEqual([rewritePromQL(q, DNF)]);
  });

  it('a query that is only a range selector becomes each group\'s own rewrite, every part enforced by its group', () => {
    const cases = ['up[5m]', 'up{job="api"}[5m]', '{job="api"}[5m]', '{__name__=~"node_.*"}[1m]', 'up[5m] offset 1h', '(up[5m] @ 100)', 'up[5m] @ end()', '((up[5m])) # raw samples', 'up[5m] anchored'];
    for (const q of cases) {
      expect(codeOf(() => rewritePromQL(q, DNF)), q).toBe('rewrite_unsupported');
      const parts = rewritePromQLPerGroup(q, DNF);
      expect(parts, q).toEqual([rewritePromQL(q, [GA]), rewritePromQL(q, [GB])]);
      parts.forEach((part, i) => {
        const sels = oracleSelectors(part);
        expect(sels, part).toHaveLength(1);
        for (const m of DNF[i]!) expect(carries(sels[0]!, m), `${part} carries ${m.name}`).toBe(true);
      });
    }
  });

  it('one part per alternative: duplicate groups, and groups that contain another, are not asked', () => {
    expect(rewritePromQLPerGroup('up[5m]', [GA, GB, GA])).toHaveLength(2);
    expect(rewritePromQLPerGroup('up[5m]', [GA, GB, [...GA, ...GB]])).toEqual([rewritePromQL('up[5m]', [GA]), rewritePromQL('up[5m]', [GB])]);
  });

  it('anything else without an exact form stays refused', () => {
    // Range vectors as operands or arguments of functions that are not per series, offset before the range
    // (Prometheus refuses these three too), several metric names under a range function, info().
    for (const q of ['up[5m] + 1', 'label_replace(up[5m], "a", "b", "c", "d")', 'up offset 1h[5m]', 'rate({job="x"}[5m])', 'info(up)']) {
      expect(codeOf(() => rewritePromQLPerGroup(q, DNF)), q).not.toBe('ok');
    }
    // Parse errors stay parse errors.
    expect(codeOf(() => rewritePromQLPerGroup('up[5m', DNF))).toBe('bad_query');
  });
});

describe('groups that merge into one (a subject in several teams)', () => {
  const ns = (value: string): Matcher => ({ name: 'namespace', op: '=', value });
  const TWO: SelectorPolicy = [[ns('a')], [ns('b')]];
  const ONE = 'namespace=~"(?:a)|(?:b)"';
  it('differing only in one label\'s positive matcher: one regex, so queries with no exact "or" form work', () => {
    // Each of these is refused (rewrite_unsupported) when the groups are kept apart.
    expect(rewritePromQL('sum(rate({job="x"}[5m]))', TWO)).toBe(`sum(rate({job="x",${ONE}}[5m]))`);
    expect(rewritePromQL('absent(up)', TWO)).toBe(`absent(up{${ONE}})`);
    expect(rewritePromQL('max_over_time(rate(x[5m])[1h:])', TWO)).toBe(`max_over_time(rate(x{${ONE}}[5m])[1h:])`);
    // The same query under groups that do not merge: no exact rewrite.
    expect(codeOf(() => rewritePromQL('sum(rate({job="x"}[5m]))', [[ns('a'), { name: 'team', op: '=', value: 't' }], [ns('b')]]))).toBe('rewrite_unsupported');
  });
  it('common matchers stay, values are quoted as Go\'s regexp.QuoteMeta does, regexes are grouped', () => {
    const P: SelectorPolicy = [
      [{ name: 'team', op: '=', value: 't' }, ns('a.b')],
      [{ name: 'namespace', op: '=~', value: 'c|d' }, { name: 'team', op: '=', value: 't' }],
    ];
    expect(rewritePromQL('up', P)).toBe('up{team="t",namespace=~"(?:a\\\\.b)|(?:c|d)"}');
    // An empty value is "label absent or empty", as the regex's empty alternative is.
    expect(rewritePromQL('up', [[ns('')], [ns('b')]])).toBe('up{namespace=~"(?:)|(?:b)"}');
  });
  it('a selector already inside one of the groups is left as written; rewriting is idempotent', () => {
    expect(rewritePromQL('up{namespace="a"} / up', TWO)).toBe(`up{namespace="a"} / up{${ONE}}`);
    const before = '(up{namespace="a"} or up{namespace="b"})';
    expect(rewritePromQL(before, TWO)).toBe(before);
    const once = rewritePromQL('rate(x[5m])', TWO);
    expect(rewritePromQL(once, TWO)).toBe(once);
  });
  it('match[]: one selector per parameter, none added for one already inside a group', () => {
    expect(rewriteSeriesSelectors([], TWO)).toEqual([`{${ONE}}`]);
    expect(rewriteSeriesSelectors(['up', 'x{namespace="b"}'], TWO)).toEqual([`up{${ONE}}`, 'x{namespace="b"}']);
  });
  it('a metric-name alternative moves the written name into the braces, as for any __name__ matcher', () => {
    const names: SelectorPolicy = [[{ name: '__name__', op: '=', value: 'a' }], [{ name: '__name__', op: '=~', value: 'b_.*' }]];
    expect(rewritePromQL('x', names)).toBe('{__name__="x",__name__=~"(?:a)|(?:b_.*)"}');
    expect(rewritePromQL('{__name__="a",job="j"}', names)).toBe('{__name__="a",job="j"}');
  });
  it('does not merge what is not one label\'s positive alternatives', () => {
    const keptApart: SelectorPolicy[] = [
      [[{ name: 'namespace', op: '!=', value: 'a' }], [{ name: 'namespace', op: '!=', value: 'b' }]],
      [[ns('a')], [{ name: 'team', op: '=', value: 'b' }]],
      [[ns('a'), { name: 'team', op: '=', value: 'x' }], [ns('b'), { name: 'team', op: '=', value: 'y' }]],
      [[ns('a')], [{ name: 'namespace', op: '!~', value: 'b' }]],
    ];
    for (const p of keptApart) {
      const out = rewritePromQL('up', p);
      expect(out.startsWith('(up{')).toBe(true);
      expect(out).not.toContain('(?:');
    }
  });
});

describe('cache', () => {
  it('never serves one policy the rewrite of another, nor bypasses limits', () => {
    clearPromQLCache();
    const q = 'sum(rate(x[5m]))';
    const a = rewritePromQL(q, NS);
    const b = rewritePromQL(q, [[{ name: 'namespace', op: '=', value: 'team-b' }]]);
    expect(a).toContain('team-a');
    expect(b).toContain('team-b');
    expect(rewritePromQL(q, NS)).toBe(a);
    // A structurally equal policy object shares the entry.
    expect(rewritePromQL(q, [[{ name: 'namespace', op: '=', value: 'team-a' }]])).toBe(a);
    expect(codeOf(() => rewritePromQL(q, NS, { maxQueryLength: 5, maxDepth: 128 }))).toBe('query_too_large');
    expect(codeOf(() => rewritePromQL(q, NS, { maxQueryLength: 1000, maxDepth: 2 }))).toBe('query_too_large');
  });

  it('is keyed by policy content, so mutating a policy object between calls is safe', () => {
    const group: Matcher[] = [{ name: 'namespace', op: '=', value: 'team-a' }];
    const policy: Matcher[][] = [group];
    expect(rewritePromQL('up', policy)).toBe(`up{${M}}`);
    group[0] = { name: 'namespace', op: '=', value: 'team-b' };
    expect(rewritePromQL('up', policy)).toBe('up{namespace="team-b"}');
    policy.push([{ name: 'team', op: '=', value: 'x' }]);
    expect(rewritePromQL('up', policy)).toBe('(up{namespace="team-b"} or up{team="x"})');
    // In place, on the same objects (the preparation is also found by identity, after a content check).
    policy.pop();
    expect(rewritePromQL('up', policy)).toBe('up{namespace="team-b"}');
    (group[0] as { value: string }).value = 'team-d';
    expect(rewritePromQL('up', policy)).toBe('up{namespace="team-d"}');
    (group[0] as { op: string }).op = '!=';
    expect(rewritePromQL('up', policy)).toBe('up{namespace!="team-d"}');
    group.push({ name: 'job', op: '=', value: 'api' });
    expect(rewritePromQL('up', policy)).toBe('up{namespace!="team-d",job="api"}');
    (group[1] as { name: string }).name = 'pod';
    expect(rewritePromQL('up', policy)).toBe('up{namespace!="team-d",pod="api"}');
  });
  it('finds a frozen policy (as decisions are) by identity, and never confuses two of them', () => {
    const frozen = (v: string): SelectorPolicy => Object.freeze([Object.freeze([Object.freeze({ name: 'namespace', op: '=' as const, value: v })])]);
    const a = frozen('team-a');
    const b = frozen('team-b');
    for (let i = 0; i < 3; i++) {
      expect(rewritePromQL('up', a)).toBe(`up{${M}}`);
      expect(rewritePromQL('up', b)).toBe('up{namespace="team-b"}');
    }
    // A frozen outer array with a mutable group is keyed by content, not identity.
    const group: Matcher[] = [{ name: 'namespace', op: '=', value: 'team-a' }];
    const half = Object.freeze([group]);
    expect(rewritePromQL('up', half)).toBe(`up{${M}}`);
    group[0] = { name: 'namespace', op: '=', value: 'team-c' };
    expect(rewritePromQL('up', half)).toBe('up{namespace="team-c"}');
  });
});

describe('match[] cache', () => {
  const cacheOf = () => REWRITE_CACHES.get('promql')!;
  const TWO: SelectorPolicy = [[{ name: 'namespace', op: '=', value: 'a' }], [{ name: 'team', op: '=', value: 'b' }]];

  it('answers a repeated match[] from the cache with the same selectors, per policy and limits', () => {
    clearPromQLCache();
    const first = rewriteSeriesSelectors(['up', 'node_load1{job="x"}'], TWO);
    expect(first).toEqual(['up{namespace="a"}', 'up{team="b"}', 'node_load1{job="x",namespace="a"}', 'node_load1{job="x",team="b"}']);
    const hits = cacheOf().hits;
    expect(rewriteSeriesSelectors(['node_load1{job="x"}', 'up'], TWO)).toEqual(['node_load1{job="x",namespace="a"}', 'node_load1{job="x",team="b"}', 'up{namespace="a"}', 'up{team="b"}']);
    expect(cacheOf().hits - hits).toBe(2);
    // Another policy, or tighter limits, never gets these entries.
    expect(rewriteSeriesSelectors(['up'], NS)).toEqual([`up{${M}}`]);
    expect(codeOf(() => rewriteSeriesSelectors(['node_load1{job="x"}'], TWO, { maxQueryLength: 10, maxDepth: 128 }))).toBe('query_too_large');
    // No match[]: the policy's own selectors, cached too; a returned list is the caller's to change.
    const none = rewriteSeriesSelectors([], TWO);
    none.push('{__name__=~".+"}');
    expect(rewriteSeriesSelectors([], TWO)).toEqual(['{namespace="a"}', '{team="b"}']);
  });

  it('unions the parameters as Prometheus does: each selector once, in order of first appearance', () => {
    clearPromQLCache();
    expect(rewriteSeriesSelectors(['up', 'up', 'up{namespace="a"}'], NS)).toEqual([`up{${M}}`, `up{namespace="a",${M}}`]);
    expect(rewriteSeriesSelectors(['up', 'up'], NS)).toEqual([`up{${M}}`]);
  });

  it('does not cache refusals: a bad match[] is refused every time', () => {
    clearPromQLCache();
    for (let i = 0; i < 2; i++) {
      expect(codeOf(() => rewriteSeriesSelectors(['sum(up)'], NS))).toBe('bad_query');
      expect(codeOf(() => rewriteSeriesSelectors(['{job=""}'], NS))).toBe('bad_query');
    }
    expect(cacheOf().size).toBe(0);
  });
});

describe('DNF: many groups that do not merge, nested in halves (joinBalanced)', () => {
  // Two matchers per group on labels of their own: the groups never merge into one.
  const groups = (k: number): SelectorPolicy => Array.from({ length: k }, (_, i) => [{ name: `l${i}`, op: '=', value: 'v' }, { name: 'g', op: '=', value: String(i) }]);
  const big = { maxQueryLength: 1 << 24, maxDepth: 128 };
  /** The deepest nesting of `(…)` in `s` (no strings with parentheses in these texts). */
  const parenDepth = (s: string): number => {
    let d = 0;
    let max = 0;
    for (const c of s) {
      if (c === '(') max = Math.max(max, ++d);
      else if (c === ')') d--;
    }
    return max;
  };

  it('up to 8 forms one flat chain; above, two halves, each joined the same way; leaves in order', () => {
    const parts = (n: number): string[] => Array.from({ length: n }, (_, i) => `p${i}`);
    expect(joinBalanced(parts(1), ' or ')).toBe('(p0)');
    expect(joinBalanced(parts(8), ' or ')).toBe('(p0 or p1 or p2 or p3 or p4 or p5 or p6 or p7)');
    expect(joinBalanced(parts(9), ' or ')).toBe('((p0 or p1 or p2 or p3 or p4) or (p5 or p6 or p7 or p8))');
    expect(joinBalanced(parts(17), ' and on() ')).toBe(
      '(((p0 and on() p1 and on() p2 and on() p3 and on() p4) and on() (p5 and on() p6 and on() p7 and on() p8)) and on() (p9 and on() p10 and on() p11 and on() p12 and on() p13 and on() p14 and on() p15 and on() p16))',
    );
    for (let n = 1; n <= 1100; n += n < 40 ? 1 : 37) {
      const out = joinBalanced(parts(n), ' or ');
      // Without the parentheses: the flat chain, so the same operands in the same order.
      expect(out.replace(/[()]/g, '')).toBe(parts(n).join(' or '));
      expect(chainWeight(out, PROMQL_CHAINS, 7)).toBe(-1);
      expect(parenDepth(out)).toBeLessThanOrEqual(1 + Math.max(0, Math.ceil(Math.log2(n / 8))));
    }
  });

  const queries: [string, string, (g: string) => string][] = [
    // [query, operator, the per-group form for a group's matchers]
    ['rate(x[5m])', ' or ', (g) => `rate(x{${g}}[5m])`],
    ['absent(x)', ' and on() ', (g) => `absent(x{${g}})`],
    ['{__name__=~"x|y", job="a"}', ' or ', (g) => `label_replace({__name__=~"x|y", job="a",${g}}, "__lbac_metric_name__", "$1", "__name__", "(.+)")`],
  ];
  for (const [q, op, form] of queries) {
    it(`${q}: 9, 200 and 1024 groups are rewritten, verified, and the output passes the limits again (maxDepth 128, chains)`, () => {
      for (const k of [9, 200, 1024]) {
        const out = rewritePromQL(q, groups(k), big);
        const joined = joinBalanced(groups(k).map((g) => form(g.map((m) => `${m.name}="${m.value}"`).join(','))), op);
        expect(out).toContain(joined);
        expect(out.split(op.trim()).length - 1).toBe(k - 1);
        expect(chainWeight(out, PROMQL_CHAINS, 7)).toBe(-1);
        // The output is a query the gateway itself accepts under the default depth limit and the chain count.
        // (Its own __lbac_ labels renamed: a client may not send them.)
        expect(codeOf(() => rewritePromQL(out.replaceAll('"__lbac_', '"__xxxx_'), NS, big))).toBe('ok');
        expect(codeOf(() => verifyPromQL(out, groups(k)))).toBe('ok');
      }
    });
  }

  it('1024 groups fit the default limits (64 KiB query, 4x for the expansion)', () => {
    expect(codeOf(() => rewritePromQL('rate(x[5m])', groups(1024)))).toBe('ok');
    expect(codeOf(() => rewritePromQL('absent(x)', groups(1024)))).toBe('ok');
  });
});
