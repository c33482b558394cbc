// Tempo's tag APIs (v2): Tempo reads `q` only as the conditions of one spanset
// filter without `||` (traceql.ExtractConditions) and otherwise answers from
// every span; v1 reads no `q` at all. What the gateway forwards, and how the
// answers of one request per policy alternative are merged.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { thrownCode as codeOf } from '../rewrite/query-errors.ts';
import { enforceParams } from '../../src/backends/params.ts';
import { mergeTagScopeAnswers, mergeTagValueAnswers, tagValueOf } from '../../src/backends/tag-answers.ts';
import { tempoRoutes } from '../../src/backends/tempo.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { isConjunctiveFilter, isPlainConditionFilter, tagField } from '../../src/rewrite/traceql-syntax.ts';
import { DEFAULT_LIMITS } from '../../src/rewrite/rewriter.ts';

const route = (endpoint: string) => tempoRoutes.routes.find((r) => r.endpoint === endpoint)!;

const corpus: string[] = readFileSync(join(import.meta.dirname, '..', '..', 'e2e', 'corpus', 'traceql.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => (JSON.parse(l) as { q: string }).q);

const NS = 'resource.k8s.namespace.name';
const policies: Record<string, SelectorPolicy> = {
  single: [[{ name: NS, op: '=~', value: 'team-a-.*' }]],
  negative: [[{ name: NS, op: '!~', value: 'kube-.*' }, { name: 'span.tier', op: '!=', value: 'internal' }]],
  dnf: [[{ name: NS, op: '=', value: 'x' }], [{ name: NS, op: '=', value: 'y' }, { name: 'resource.k8s.cluster.name', op: '=', value: 'z' }]],
};

describe('isConjunctiveFilter: what Tempo reads as conditions that must all hold', () => {
  it.each([
    ['{}', true],
    ['{ .a = "x" && (.b = 1 && !(.c > 2)) }', true],
    ['{ .a = "x" } // comment', true],
    ['{ .a = "x" || true }', false],
    ['{ .a || .b }', false],
    ['{ (.a = "x") && (.b = "y" || .c = "z") }', false],
    ['{ .a } >> { .b }', false],
    ['{ } && { }', false],
    ['{ .a = "x" } | count() > 1', false],
    ['({ .a = "x" })', false],
    ['{ .a = "}" }', false],
    ['{ span."a{b" = 1 }', false],
    ['{ .a = "x" && resource.', false],
  ])('%s → %s', (q, expected) => {
    expect(isConjunctiveFilter(q)).toBe(expected);
  });
});

describe('isPlainConditionFilter: conditions Tempo reads and validates as written', () => {
  it.each([
    ['{}', true],
    ['{ resource.service.name = "api" && (span.http.method = "GET" && span.x !~ "a.*") }', true],
    ['{ name = "GET /" && span:name != "x" }', true],
    ['{ event.a = "x" && instrumentation.b = "y" && trace:rootService = "z" }', true],
    // Conditions Tempo's block readers cannot place by scope ("mingled"): the lookup then ignores every condition.
    ['{ .x !~ "a.*" }', false],
    ['{ resource.service.name = "api" && .x = "y" }', false],
    ['{ span:parentID = "x" }', false],
    ['{ event:name = "x" }', false],
    ['{ link:traceID = "x" }', false],
    ['{ instrumentation:name = "x" }', false],
    // Tempo's validation rejects these, and then answers from every span.
    ['{ status = "error" }', false],
    ['{ .a = nil }', false],
    ['{ 1 = "x" }', false],
    ['{ "x" }', false],
    ['{ childCount > 1 }', false],
    ['{ .a =~ "(" }', false],
    ['{ kind = 1 }', false],
    ['{ .a = -"x" }', false],
    // Not plain string comparisons: kept out too.
    ['{ span.http.status_code = 200 }', false],
    ['{ !(.a = "x") }', false],
    ['{ parent.resource.service.name = "x" }', false],
    ['{ .a = "x" || .b = "y" }', false],
    [`{ .a =~ "${'\\pL{1000}'.repeat(3)}" }`, false],
  ])('%s → %s', (q, expected) => {
    expect(isPlainConditionFilter(q)).toBe(expected);
  });
});

describe('tagField: a v2 tag name read as Tempo reads it ({ + name + })', () => {
  it.each([
    ['resource.k8s.namespace.name', NS],
    ['resource."k8s.namespace.name"', NS],
    [' resource.k8s.namespace.name ', NS],
    ['span."http method"', 'span.http method'],
    ['.a', '.a'],
    ['name', 'name'],
    ['span:name', 'span:name'],
    ['k8s.namespace.name', null],
    ['.a } >> { .b', null],
    ['.a && .b', null],
    ['', null],
  ])('%j → %j', (name, expected) => {
    expect(tagField(name)).toBe(expected);
  });
});

describe('v2 tag lookups: every forwarded q is one conjunctive filter carrying one alternative', () => {
  for (const [policyName, policy] of Object.entries(policies)) {
    for (const endpoint of ['search_tags_v2', 'search_tag_values_v2']) {
      it(`${policyName}, ${endpoint}: over the TraceQL corpus and random text`, () => {
        const check = (client: string | undefined) => {
          const params = new URLSearchParams(client === undefined ? 'scope=resource' : [['q', client], ['scope', 'resource']]);
          let forwarded: string[];
          try {
            forwarded = enforceParams(route(endpoint), params, policy, DEFAULT_LIMITS, 'traceql').getAll('q');
          } catch (e) {
            // Only a refusal of the client's text itself (too long, too deep) is acceptable.
            expect((e as { code?: string }).code, String(e)).toBe('query_too_large');
            return;
          }
          // One part per alternative (the route fans out and merges), each the alternative's conjunction.
          expect(forwarded).toHaveLength(policy.length);
          policy.forEach((group, i) => {
            const q = forwarded[i]!;
            expect(isConjunctiveFilter(q), q).toBe(true);
            expect(isPlainConditionFilter(q), q).toBe(true);
            for (const m of group) expect(q).toContain(`${m.name} ${m.op} `);
          });
          expect(params.get('scope')).toBe('resource');
        };
        check(undefined);
        for (const q of corpus) check(q);
        fc.assert(
          fc.property(fc.string({ unit: fc.constantFrom(...'{}()|&=!~<>". \n.abxy12'.split('')), maxLength: 40 }), (q) => check(q)),
          { numRuns: 300 },
        );
      });
    }
  }

  it('the client filter is kept where Tempo would read it as conditions, dropped where it would not', () => {
    const q = (client: string) => enforceParams(route('search_tags_v2'), new URLSearchParams([['q', client]]), policies['single']!, DEFAULT_LIMITS, 'traceql').getAll('q');
    expect(q('{ span.http.method = "GET" }')).toEqual([`{ (span.http.method = "GET") && ${NS} =~ "^(?s:team-a-.*)$" }`]);
    for (const client of ['{ .a = "x" } >> { .b = "y" }', '{ .a = "x" || true }', '{ .a = "}" }', '{ span.http.method = ', '{ status = "error" }', '{ .a = nil }', '{ .a =~ "(" }', '{ childCount > 1 }']) {
      expect(q(client), client).toEqual([`{ ${NS} =~ "^(?s:team-a-.*)$" }`]);
    }
  });

  it('a client condition on an unscoped attribute is dropped: Tempo would list every value of the block (mingled conditions)', () => {
    for (const endpoint of ['search_tags_v2', 'search_tag_values_v2']) {
      const forwarded = enforceParams(route(endpoint), new URLSearchParams([['q', '{ .service.name = "api" }']]), policies['single']!, DEFAULT_LIMITS, 'traceql').getAll('q');
      expect(forwarded).toEqual([`{ ${NS} =~ "^(?s:team-a-.*)$" }`]);
    }
  });

  it('a policy with an unscoped attribute or an intrinsic Tempo cannot place is refused on the tag APIs, not forwarded unfiltered', () => {
    for (const name of ['.k8s.namespace.name', 'span:parentID', 'event:name', 'link:traceID', 'instrumentation:name', 'span:id', 'trace:id']) {
      const policy: SelectorPolicy = [[{ name: NS, op: '=', value: 'a' }], [{ name, op: '=', value: 'a' }]];
      for (const endpoint of ['search_tags_v2', 'search_tag_values_v2']) {
        expect(codeOf(() => enforceParams(route(endpoint), new URLSearchParams(), policy, DEFAULT_LIMITS, 'traceql')), `${name} ${endpoint}`).toBe('rewrite_unsupported');
      }
      // Searches read the policy as written: only the tag APIs are affected.
      expect(enforceParams(route('search'), new URLSearchParams(), policy, DEFAULT_LIMITS, 'traceql').get('q')).toContain(name);
    }
    const scoped: SelectorPolicy = [[{ name: NS, op: '=', value: 'a' }, { name: 'trace:rootService', op: '=', value: 'x' }, { name: 'span:name', op: '!=', value: 'y' }]];
    expect(enforceParams(route('search_tags_v2'), new URLSearchParams(), scoped, DEFAULT_LIMITS, 'traceql').getAll('q')).toHaveLength(1);
  });

  it('tag values of an unscoped attribute or an unplaceable intrinsic are refused for restricted subjects (Tempo adds the tag as a condition)', () => {
    const restricted = route('search_tag_values_v2').restrictedPathParam!;
    for (const tag of ['.service.name', ' .service.name', '."k8s.namespace.name"', 'span:parentID', 'event:name', 'link:spanID', 'instrumentation:version', 'childCount', 'nestedSetParent', 'span:id', 'trace:id']) {
      expect(restricted('tag', tag), tag).toMatch(/cannot be restricted/);
    }
    for (const tag of ['resource.service.name', 'span."http.method"', 'event.exception.type', 'link.x', 'instrumentation.y', 'span.a:b', 'name', 'status', 'kind', 'duration', 'statusMessage', 'rootServiceName', 'rootName', 'traceDuration', 'span:name', 'span:status', 'trace:rootService', 'trace:duration']) {
      expect(restricted('tag', tag), tag).toBeUndefined();
    }
  });

  it('tag values of an unscoped attribute are asked as those of resource.<key> and span.<key> (each under the policy), never as sent', () => {
    const expand = route('search_tag_values_v2').expandPathParam!;
    expect(expand('tag', '.service.name')).toEqual(['resource.service.name', 'span.service.name']);
    expect(expand('tag', ' .service.name ')).toEqual(['resource.service.name', 'span.service.name']);
    expect(expand('tag', '."my key"')).toEqual(['resource."my key"', 'span."my key"']);
    for (const tag of ['resource.service.name', 'span.x', 'name', 'span:parentID', '.a } >> { .b']) expect(expand('tag', tag), tag).toBeUndefined();
    // Each expansion is a tag the route accepts and Tempo filters.
    const route_ = route('search_tag_values_v2');
    for (const v of expand('tag', '."my key"')!) {
      expect(route_.validatePathParam!('tag', v)).toBeUndefined();
      expect(route_.restrictedPathParam!('tag', v)).toBeUndefined();
    }
  });

  it("values of the policy's attribute asked unscoped are filtered as the policy's attribute", () => {
    const filter = route('search_tag_values_v2').responseFilter!;
    const body = { tagValues: [{ type: 'string', value: 'team-a-web' }, { type: 'string', value: 'team-b-api' }] };
    for (const tag of ['.k8s.namespace.name', '."k8s.namespace.name"', 'resource.k8s.namespace.name']) {
      expect(filter(body, { policy: policies['single']!, pathParams: { tag } }), tag).toEqual({ tagValues: [{ type: 'string', value: 'team-a-web' }] });
    }
    expect(filter(body, { policy: policies['single']!, pathParams: { tag: 'span.other' } })).toEqual(body);
  });

  it('v1 tag names and values (Tempo reads no q there) are refused for restricted subjects, passed for unrestricted ones', () => {
    for (const endpoint of ['search_tags', 'search_tag_values']) {
      expect(codeOf(() => enforceParams(route(endpoint), new URLSearchParams(), policies['single']!, DEFAULT_LIMITS, 'traceql'))).toBe('forbidden');
      expect(enforceParams(route(endpoint), new URLSearchParams('q=x'), undefined, DEFAULT_LIMITS, 'traceql').get('q')).toBe('x');
    }
  });

  it('a v2 tag name that is not one field is refused before anything is forwarded', () => {
    const validate = route('search_tag_values_v2').validatePathParam!;
    expect(validate('tag', 'resource."k8s.namespace.name"')).toBeUndefined();
    expect(validate('tag', '.a } >> { .b')).toMatch(/invalid tag/);
    expect(validate('tag', 'k8s.namespace.name')).toMatch(/invalid tag/);
  });
});

describe('v2 tag answers of one request per alternative, merged', () => {
  it('tag names: per scope (first-seen order), the union in Go string order; bytes inspected (the whole tenant\'s) left out', () => {
    const merged = mergeTagScopeAnswers([
      { scopes: [{ name: 'resource', tags: ['service.name', 'b'] }, { name: 'span', tags: ['http.method'] }], metrics: { inspectedBytes: '5' } },
      { scopes: [{ name: 'resource', tags: ['a', 'service.name'] }, { name: 'intrinsic', tags: ['duration'] }], metrics: { inspectedBytes: '7' } },
    ]);
    expect(merged).toEqual({
      scopes: [
        { name: 'resource', tags: ['a', 'b', 'service.name'] },
        { name: 'span', tags: ['http.method'] },
        { name: 'intrinsic', tags: ['duration'] },
      ],
    });
  });
  it('tag values: the union of (type, value), sorted by value', () => {
    expect(
      mergeTagValueAnswers([
        { tagValues: [{ type: 'string', value: 'b' }, { type: 'int', value: '200' }] },
        { tagValues: [{ type: 'string', value: 'a' }, { type: 'string', value: 'b' }, { type: 'string', value: '200' }] },
      ]),
    ).toEqual({ tagValues: [{ type: 'int', value: '200' }, { type: 'string', value: '200' }, { type: 'string', value: 'a' }, { type: 'string', value: 'b' }] });
  });
  it("tag values: the request's limit applies to the union too", () => {
    const parts = [{ tagValues: [{ type: 'string', value: 'c' }, { type: 'string', value: 'a' }] }, { tagValues: [{ type: 'string', value: 'b' }] }];
    expect(mergeTagValueAnswers(parts, 2).tagValues.map(tagValueOf)).toEqual(['a', 'b']);
    expect(route('search_tag_values_v2').fanOut!.merge!(parts, new URLSearchParams('limit=1'))).toEqual({ tagValues: [{ type: 'string', value: 'a' }] });
    expect(route('search_tag_values_v2').fanOut!.merge!(parts, new URLSearchParams('limit=x'))).toMatchObject({ tagValues: [{ value: 'a' }, { value: 'b' }, { value: 'c' }] });
  });
  it('tag values: odd entries and answers are left out of a merge as the single-answer filter leaves them out, never relayed unfiltered', () => {
    const policy: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=~', value: 'team-a.*' }]];
    const ctx = { policy, pathParams: { tag: 'resource.k8s.namespace.name' } };
    const filter = route('search_tag_values_v2').responseFilter!;
    const merge = (parts: unknown[]) => route('search_tag_values_v2').fanOut!.merge!(parts, new URLSearchParams());
    const odd = [
      { type: 'string', value: 'team-a-1', extra: 'team-b-x' },
      'team-a-2',
      'team-b-bare',
      { value: 'team-a-3' },
      { type: 'string', value: 'team-b-1' },
      { type: 'string', value: 7 },
      { type: 'string' },
      null,
      ['team-b-nested'],
      { type: 'string', value: { v: 'team-b-obj' } },
    ];
    const parts: unknown[] = [{ tagValues: odd }, { tagValues: [{ type: 'string', value: 'team-a-1' }] }, null, { tagValues: 'team-b-str' }, { metrics: { inspectedBytes: '1' } }, ['team-b-list']];
    // Each part read alone: what the single-answer filter relays.
    const single = parts.flatMap((p) => (filter(p, ctx) as { tagValues: unknown[] }).tagValues);
    expect(single).toEqual([{ type: 'string', value: 'team-a-1' }, 'team-a-2', { value: 'team-a-3' }, { type: 'string', value: 'team-a-1' }]);
    // Merged (no 502), then filtered as every merged answer is: the same values, once each.
    const merged = filter(merge(parts), ctx);
    expect(merged).toEqual({ tagValues: [{ type: 'string', value: 'team-a-1' }, 'team-a-2', { value: 'team-a-3' }] });
    expect(JSON.stringify(merged)).not.toMatch(/team-b|extra|metrics/);
    expect(merge([null, { tagValues: 'x' }])).toEqual({ tagValues: [] });
  });
  it('tag names: an answer of another shape is not left out: 502', () => {
    expect(codeOf(() => mergeTagScopeAnswers([{ scopes: [] }, { tagNames: ['x'] }]))).toBe('upstream_error');
    expect(codeOf(() => mergeTagScopeAnswers([{ scopes: [{ name: 'span', tags: [1] }] }]))).toBe('upstream_error');
    // Nothing found: Tempo's JSON leaves the empty list out.
    expect(mergeTagScopeAnswers([{}, { metrics: { inspectedBytes: '3' } }, { scopes: [{ name: 'span', tags: ['a'] }] }])).toEqual({ scopes: [{ name: 'span', tags: ['a'] }] });
  });
});
