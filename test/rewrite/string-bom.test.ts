// A byte-order mark (U+FEFF) at the start of a string's value is part of the value for Prometheus,
// Loki and Tempo (Go's strconv and Prometheus' strutil.Unquote keep it). A TextDecoder drops a leading
// BOM unless told not to, and the gateway then read `env!="\ufeffprod"` as `env!="prod"`: the policy's
// own matcher, "already enforced", so nothing was added and the tenant saw what `env!="prod"` denies
// (found by the session 30 red-team pass against Loki's parser).
import { describe, expect, it } from 'vitest';
import { GO_STRINGS, PROMQL_STRINGS, unquoteStringLiteral } from '../../src/rewrite/lezer.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { rewritePromQL, rewriteSeriesSelectors } from '../../src/rewrite/promql.ts';
import { rewriteLogQL } from '../../src/rewrite/logql.ts';
import { rewriteTraceQL } from '../../src/rewrite/traceql.ts';

// The value "\ufeffprod" spelled as each backend's strings allow (a raw BOM, then an escape too).
const SPELLINGS = ['\\ufeffprod', '\\xef\\xbb\\xbfprod', '\\357\\273\\277prod', '\ufeff\\x70rod', '\\U0000feffprod'];

describe('a leading U+FEFF stays in a string value', () => {
  it('unquoteStringLiteral keeps it, in both dialects', () => {
    for (const s of SPELLINGS) {
      expect(unquoteStringLiteral(`"${s}"`, PROMQL_STRINGS), s).toBe('\ufeffprod');
      expect(unquoteStringLiteral(`"${s}"`, GO_STRINGS), s).toBe('\ufeffprod');
    }
    expect(unquoteStringLiteral('`\ufeffprod`', GO_STRINGS)).toBe('\ufeffprod');
  });

  const policy: SelectorPolicy = [
    [
      { name: 'namespace', op: '=', value: 'shared' },
      { name: 'env', op: '!=', value: 'prod' },
    ],
  ];
  const twoGroups: SelectorPolicy = [
    [
      { name: 'namespace', op: '=', value: 'a' },
      { name: 'env', op: '!~', value: 'prod' },
    ],
    [
      { name: 'namespace', op: '=', value: 'shared' },
      { name: 'env', op: '!=', value: 'prod' },
    ],
  ];

  it('PromQL: a matcher whose value only looks like the policy\'s is not taken for it', () => {
    for (const s of SPELLINGS) {
      expect(rewritePromQL(`up{namespace="shared", env!="${s}"}`, policy), s).toBe(`up{namespace="shared", env!="${s}",env!="prod"}`);
      expect(rewritePromQL(`up{env!~"${s}"}`, twoGroups), s).toContain('env!~"prod"');
      expect(rewriteSeriesSelectors([`{namespace="shared", env!="${s}"}`], policy)[0], s).toContain('env!="prod"');
    }
  });

  it('LogQL: the same, in log and metric queries', () => {
    for (const s of SPELLINGS) {
      expect(rewriteLogQL(`{namespace="shared", env!="${s}"}`, policy), s).toBe(`{namespace="shared", env!="${s}", env!="prod"}`);
      expect(rewriteLogQL(`sum(rate({namespace="shared", env!="${s}"}[5m]))`, policy), s).toContain('env!="prod"');
      expect(rewriteLogQL(`sum(rate({app="x", env!~"${s}"}[5m]))`, twoGroups), s).toContain('env!~"prod"');
    }
  });

  it('TraceQL: the enforced form with a look-alike value is wrapped again', () => {
    const tracePolicy: SelectorPolicy = [[{ name: 'resource.env', op: '!=', value: 'prod' }]];
    for (const s of SPELLINGS.filter((x) => !x.startsWith('\ufeff'))) {
      expect(rewriteTraceQL(`{ (.a = 1) && resource.env != "${s}" }`, tracePolicy), s).toBe(`{ ((.a = 1) && resource.env != "${s}") && resource.env != "prod" }`);
    }
  });

  it('a policy value that starts with U+FEFF is written escaped, and the output is taken as enforced when sent again', () => {
    const bomPolicy = (name: string): SelectorPolicy => [[{ name, op: '=', value: '\ufeffprod' }]];
    const cases: [(q: string, p: SelectorPolicy) => string, string, string][] = [
      [rewritePromQL, 'up', 'env'],
      [rewriteLogQL, '{app="x"}', 'env'],
      [rewriteTraceQL, '{ .a = 1 }', 'resource.env'],
    ];
    for (const [rewrite, query, name] of cases) {
      const out = rewrite(query, bomPolicy(name));
      expect(out, query).toContain('"\\ufeffprod"');
      expect(out, query).not.toContain('\ufeff');
      expect(rewrite(out, bomPolicy(name)), query).toBe(out);
    }
  });
});
