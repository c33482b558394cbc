import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { DECISION_LIMITS, FAIL_CLOSED_REASON, validateDecision } from '../../src/policy/decision.ts';
import type { Decision } from '../../src/policy/decision.ts';
import { cpuMs } from '../cpu-time.ts';

const ns = (value: string, op = '=~') => ({ name: 'namespace', op, value });

const valid = {
  allow: true,
  reason: 'teams: team-a',
  unrestricted: false,
  selectors: [[ns('team-a-.*')]],
  headers: { 'X-Scope-OrgID': 'tenant-a' },
};

/** Runs validateDecision expecting a policy_error whose message matches `message`. */
function rejects(raw: unknown, message: RegExp | string): void {
  let thrown: unknown;
  try {
    validateDecision(raw);
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected a policy_error for ${JSON.stringify(raw)}`).toBeInstanceOf(GatewayError);
  const err = thrown as GatewayError;
  expect(err.code).toBe('policy_error');
  expect(err.status).toBe(500);
  expect(err.message).toMatch(message);
}

function deepFrozen(x: unknown): boolean {
  if (typeof x !== 'object' || x === null) return true;
  return Object.isFrozen(x) && Object.values(x).every(deepFrozen);
}

describe('validateDecision: accepted shapes', () => {
  it('accepts the bare decision object', () => {
    expect(validateDecision(valid)).toEqual(valid);
  });

  it('accepts the opa-wasm result set [{result: decision}]', () => {
    expect(validateDecision([{ result: valid }])).toEqual(valid);
  });

  it('accepts the minimal deny', () => {
    expect(validateDecision({ allow: false })).toEqual({ allow: false, reason: 'denied by policy', unrestricted: false, selectors: [], headers: {} });
  });

  it('accepts an unrestricted allow without selectors, keeping its headers', () => {
    expect(validateDecision({ allow: true, unrestricted: true, headers: { 'X-Scope-OrgID': 'a|b' } })).toEqual({
      allow: true,
      reason: 'allowed by policy',
      unrestricted: true,
      selectors: [],
      headers: { 'X-Scope-OrgID': 'a|b' },
    });
  });

  it('accepts all four operators, DNF with several groups, and Tempo attribute names', () => {
    const d = validateDecision({
      allow: true,
      selectors: [
        [ns('a', '='), ns('b', '!='), ns('c|d', '=~'), ns('e.*', '!~')],
        [{ name: 'resource.k8s.namespace.name', op: '=', value: '' }],
      ],
    });
    expect(d.selectors).toHaveLength(2);
    expect(d.selectors[0]).toHaveLength(4);
  });

  it('does not treat = / != values as regexes', () => {
    expect(validateDecision({ allow: true, selectors: [[ns('(unbalanced', '='), ns('[', '!=')]] }).allow).toBe(true);
  });

  it('accepts header values with tabs and Latin-1, and token-character names', () => {
    const headers = { 'X-Scope-OrgID': 'a\tb', "x-odd!#$%&'*+.^_`|~": 'caf\u00e9' };
    expect(validateDecision({ allow: true, unrestricted: true, headers }).headers).toEqual(headers);
  });
});

describe('validateDecision: rejected shapes (each is a policy_error naming the problem)', () => {
  const table: [string, unknown, RegExp | string][] = [
    ['null', null, /decision must be an object, got null/],
    ['a string', 'allow', /decision must be an object, got string/],
    ['a number', 1, /decision must be an object/],
    ['true', true, /decision must be an object, got boolean/],
    ['an empty result set (undefined entrypoint)', [], /no result/],
    ['two results', [{ result: valid }, { result: valid }], /2 results/],
    ['a result set entry without result', [{}], /no "result" field/],
    ['a result set entry with extra fields', [{ result: valid, bindings: {} }], /unknown field "bindings"/],
    ['a result set holding an array', [{ result: [valid] }], /decision must be an object, got array/],
    ['the REST API envelope', { result: valid }, /unknown field "result"/],
    ['allow missing', { reason: 'x' }, /allow must be a boolean, got undefined/],
    ['allow as a string', { allow: 'true' }, /allow must be a boolean, got string/],
    ['allow as a number', { allow: 1 }, /allow must be a boolean, got number/],
    ['allow null', { allow: null }, /allow must be a boolean, got null/],
    ['unrestricted as a string', { allow: true, unrestricted: 'yes' }, /unrestricted must be a boolean/],
    ['unrestricted null', { allow: true, unrestricted: null }, /unrestricted must be a boolean/],
    ['reason as a number', { allow: false, reason: 5 }, /reason must be a string/],
    ['a misspelt field', { allow: true, selectors: [[ns('a')]], header: {} }, /unknown field "header"/],
    ['selectors as an object', { allow: true, selectors: {} }, /selectors must be an array of matcher groups, got object/],
    ['selectors as a string', { allow: true, selectors: 'namespace="a"' }, /selectors must be an array/],
    ['selectors null', { allow: true, selectors: null }, /selectors must be an array/],
    ['a flat list of matchers', { allow: true, selectors: [ns('a')] }, /selectors\[0\] must be an array of matchers, got object/],
    ['an empty group', { allow: true, selectors: [[ns('a')], []] }, /selectors\[1\] is empty/],
    ['a matcher that is a string', { allow: true, selectors: [['namespace="a"']] }, /selectors\[0\]\[0\] must be an object/],
    ['a matcher that is an array', { allow: true, selectors: [[['namespace', '=', 'a']]] }, /selectors\[0\]\[0\] must be an object/],
    ['a matcher without name', { allow: true, selectors: [[{ op: '=', value: 'a' }]] }, /selectors\[0\]\[0\]\.name must be a non-empty string/],
    ['a matcher with an empty name', { allow: true, selectors: [[{ name: '', op: '=', value: 'a' }]] }, /\.name must be a non-empty string/],
    ['a matcher with a numeric name', { allow: true, selectors: [[{ name: 1, op: '=', value: 'a' }]] }, /\.name must be a non-empty string/],
    ['a matcher name with NUL', { allow: true, selectors: [[{ name: 'a\u0000b', op: '=', value: 'a' }]] }, /\.name must not contain NUL/],
    ['an unknown operator', { allow: true, selectors: [[ns('a', '==')]] }, /selectors\[0\]\[0\]\.op must be one of = != =~ !~, got "=="/],
    ['a missing operator', { allow: true, selectors: [[{ name: 'a', value: 'a' }]] }, /\.op must be one of/],
    ['a numeric value', { allow: true, selectors: [[{ name: 'a', op: '=', value: 1 }]] }, /\.value must be a string, got number/],
    ['a null value', { allow: true, selectors: [[{ name: 'a', op: '=', value: null }]] }, /\.value must be a string, got null/],
    ['a matcher with extra keys', { allow: true, selectors: [[{ ...ns('a'), negate: true }]] }, /selectors\[0\]\[0\] has unknown field "negate"/],
    ['headers as an array', { allow: true, unrestricted: true, headers: [['X-Scope-OrgID', 'a']] }, /headers must be an object/],
    ['headers null', { allow: true, unrestricted: true, headers: null }, /headers must be an object/],
    ['a numeric header value', { allow: true, unrestricted: true, headers: { 'X-Scope-OrgID': 1 } }, /headers\["X-Scope-OrgID"\] must be a string, got number/],
    ['a header name with a space', { allow: true, unrestricted: true, headers: { 'X Scope': 'a' } }, /"X Scope" is not a valid HTTP header name/],
    ['a header name with a colon', { allow: true, unrestricted: true, headers: { 'X-A:': 'a' } }, /not a valid HTTP header name/],
    ['a header name with CRLF', { allow: true, unrestricted: true, headers: { 'X-A\r\nX-B': 'a' } }, /not a valid HTTP header name/],
    ['an empty header name', { allow: true, unrestricted: true, headers: { '': 'a' } }, /not a valid HTTP header name/],
    ['a header name that differs only in case', { allow: true, unrestricted: true, headers: { 'X-Scope-OrgID': 'a', 'x-scope-orgid': 'b' } }, /same header/],
    ['an empty tenant', { allow: true, selectors: [[{ name: 'namespace', op: '=', value: 'a' }]], headers: { 'THANOS-TENANT': '' } }, /headers\["THANOS-TENANT"\] is empty/],
    ['a "|" joining no tenant', { allow: true, selectors: [[{ name: 'namespace', op: '=', value: 'a' }]], headers: { 'X-Scope-OrgID': ' | ' } }, /headers\["X-Scope-OrgID"\] is empty/],
    ['Host', { allow: true, unrestricted: true, headers: { Host: 'evil.example' } }, /may not set "Host"/],
    ['Content-Length', { allow: true, unrestricted: true, headers: { 'content-length': '0' } }, /may not set/],
    ['Transfer-Encoding', { allow: true, unrestricted: true, headers: { 'Transfer-Encoding': 'chunked' } }, /may not set/],
    ['Connection', { allow: true, unrestricted: true, headers: { Connection: 'close' } }, /may not set/],
  ];
  it.each(table)('%s', (_label, raw, message) => rejects(raw, message));

  it('validates a deny as strictly as an allow', () => {
    rejects({ allow: false, selectors: [[ns('a', '~')]] }, /op must be one of/);
    rejects({ allow: false, headers: { 'X-A': 'a\nb' } }, /control character/);
  });
});

describe('validateDecision: header injection', () => {
  const values = ['tenant-a\r\nX-Admin: true', 'tenant-a\nX-Admin: true', 'tenant-a\rx', 'a\u0000b', 'a\u0001b', 'a\u001bb', 'a\u007fb', 'a\u2028b', '\u20ac'];
  it.each(values)('rejects header value %j', (value) => {
    rejects({ allow: true, selectors: [[ns('a')]], headers: { 'X-Scope-OrgID': value } }, /X-Scope-OrgID.*control character/);
  });
});

describe('validateDecision: RE2 regex values', () => {
  // '\\Qabc' is valid as written but swallows the closing parenthesis the backends wrap it in.
  const invalid = ['(', 'a)', '[a-', 'a**', 'x{2,1}', '(?<=a)b', '(?!a)', '\\1', '(?P<n>a)(?P<n>b)', '\\p{NotAScript}', '\\Qabc', 'x)|(.*'];
  it.each(invalid)('rejects invalid regex %j for =~ and !~', (value) => {
    rejects({ allow: true, selectors: [[ns(value, '=~')]] }, /selectors\[0\]\[0\]\.value is not a valid RE2 regular expression/);
    rejects({ allow: true, selectors: [[ns('ok', '='), ns(value, '!~')]] }, /selectors\[0\]\[1\]\.value is not a valid RE2/);
  });

  const ok = ['', '.*', 'team-a|team-b', '(?i)prod', 'ns-[0-9]+', '(?P<x>a)', '\\d{1,3}', 'a{0,1000}', '\\pL+'];
  it.each(ok)('accepts valid RE2 regex %j', (value) => {
    expect(validateDecision({ allow: true, selectors: [[ns(value)]] }).selectors).toEqual([[ns(value)]]);
  });

  it('rejects an invalid regex that was seen valid before in another operator position', () => {
    validateDecision({ allow: true, selectors: [[ns('(a)', '=~')]] });
    rejects({ allow: true, selectors: [[ns('(a', '=~')]] }, /not a valid RE2/);
  });
});

describe('validateDecision: normalisation', () => {
  it('de-duplicates identical matchers in a group, keeping the first occurrence order', () => {
    const d = validateDecision({ allow: true, selectors: [[ns('b'), ns('a'), ns('b'), ns('a', '=')]] });
    expect(d.selectors).toEqual([[ns('b'), ns('a'), ns('a', '=')]]);
  });

  it('de-duplicates identical groups, also when their matchers are ordered differently', () => {
    const x = ns('x', '=');
    const y = ns('y', '!=');
    const d = validateDecision({ allow: true, selectors: [[x, y], [ns('z')], [y, x], [x, y, x]] });
    expect(d.selectors).toEqual([[x, y], [ns('z')]]);
  });

  it('keeps groups that differ', () => {
    const d = validateDecision({ allow: true, selectors: [[ns('a')], [ns('a', '=')], [ns('a'), ns('b')]] });
    expect(d.selectors).toHaveLength(3);
  });

  it('fails closed on an allow without selectors', () => {
    const expected = { allow: false, reason: FAIL_CLOSED_REASON, unrestricted: false, selectors: [], headers: {} };
    expect(validateDecision({ allow: true, headers: { 'X-Scope-OrgID': 'a' } })).toEqual(expected);
    expect(validateDecision({ allow: true, selectors: [], reason: 'teams: x' })).toEqual(expected);
    expect(validateDecision({ allow: true, unrestricted: false, selectors: [] })).toEqual(expected);
    expect(FAIL_CLOSED_REASON).toBe('policy allowed without selectors (fail closed)');
  });

  it('strips selectors and headers from a deny, and never reports it unrestricted', () => {
    expect(validateDecision({ allow: false, reason: 'no', unrestricted: true, selectors: [[ns('a')]], headers: { 'X-Scope-OrgID': 'a' } })).toEqual({
      allow: false,
      reason: 'no',
      unrestricted: false,
      selectors: [],
      headers: {},
    });
  });

  it('drops selectors from an unrestricted allow (nothing is enforced)', () => {
    expect(validateDecision({ allow: true, unrestricted: true, selectors: [[ns('a')]] }).selectors).toEqual([]);
  });

  it('returns deeply frozen objects that share nothing mutable with the input', () => {
    const raw = structuredClone(valid);
    const d = validateDecision(raw);
    expect(deepFrozen(d)).toBe(true);
    raw.selectors[0]![0]!.value = 'changed';
    raw.headers['X-Scope-OrgID'] = 'changed';
    expect(d.selectors[0]![0]!.value).toBe('team-a-.*');
    expect(d.headers['X-Scope-OrgID']).toBe('tenant-a');
    expect(deepFrozen(validateDecision({ allow: false }))).toBe(true);
    expect(deepFrozen(validateDecision({ allow: true }))).toBe(true);
  });
});

describe('validateDecision: properties', () => {
  function checkInvariants(d: Decision): void {
    expect(deepFrozen(d)).toBe(true);
    if (d.allow) expect(d.unrestricted || d.selectors.length > 0).toBe(true);
    else expect(d.unrestricted || d.selectors.length > 0 || Object.keys(d.headers).length > 0).toBe(false);
    if (d.unrestricted) expect(d.selectors).toEqual([]);
    for (const g of d.selectors) expect(g.length).toBeGreaterThan(0);
  }

  it('any JSON value is either a policy_error or a decision that satisfies the contract', () => {
    const decisionLike = fc.record(
      {
        allow: fc.oneof(fc.boolean(), fc.jsonValue()),
        unrestricted: fc.oneof(fc.boolean(), fc.jsonValue()),
        reason: fc.oneof(fc.string(), fc.jsonValue()),
        selectors: fc.oneof(
          fc.array(fc.array(fc.record({ name: fc.string(), op: fc.constantFrom('=', '!=', '=~', '!~', '=='), value: fc.string() }, { requiredKeys: ['name', 'op'] }))),
          fc.jsonValue(),
        ),
        headers: fc.oneof(fc.dictionary(fc.string(), fc.string()), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), decisionLike, decisionLike.map((result) => [{ result }])), (raw) => {
        let d: Decision;
        try {
          d = validateDecision(raw);
        } catch (e) {
          expect(e).toBeInstanceOf(GatewayError);
          expect((e as GatewayError).code).toBe('policy_error');
          return;
        }
        checkInvariants(d);
      }),
      { numRuns: 2000 },
    );
  });

  it('is idempotent on what it returns', () => {
    const matcher = fc.record({ name: fc.constantFrom('a', 'b', 'namespace'), op: fc.constantFrom('=', '!=', '=~', '!~'), value: fc.constantFrom('x', 'y|z', '.*', '') });
    fc.assert(
      fc.property(fc.boolean(), fc.boolean(), fc.array(fc.array(matcher, { minLength: 1, maxLength: 4 }), { maxLength: 5 }), (allow, unrestricted, selectors) => {
        const once = validateDecision({ allow, unrestricted, selectors, headers: { 'X-Scope-OrgID': 't' } });
        checkInvariants(once);
        expect(validateDecision(once)).toEqual(once);
      }),
    );
  });
});

describe('validateDecision: size bounds (DECISION_LIMITS)', () => {
  const groups = (n: number, size = 1) => Array.from({ length: n }, (_, i) => Array.from({ length: size }, (_, j) => ({ name: `l${j}`, op: '=', value: `v${i}` })));

  it('accepts a decision at every bound', () => {
    const { maxGroups, maxMatchersPerGroup, maxHeaders } = DECISION_LIMITS;
    expect(validateDecision({ allow: true, selectors: groups(maxGroups) }).selectors).toHaveLength(maxGroups);
    expect(validateDecision({ allow: true, selectors: groups(1, maxMatchersPerGroup) }).selectors[0]).toHaveLength(maxMatchersPerGroup);
    const headers = Object.fromEntries(Array.from({ length: maxHeaders }, (_, i) => [`X-H${i}`, 'v']));
    expect(Object.keys(validateDecision({ allow: true, unrestricted: true, headers }).headers)).toHaveLength(maxHeaders);
    // Exactly the byte bound: one value filling what the name "n" leaves.
    expect(validateDecision({ allow: true, selectors: [[{ name: 'n', op: '=', value: 'x'.repeat(DECISION_LIMITS.maxStringBytes - 1) }]] }).allow).toBe(true);
  });

  it('one more group, matcher, header or byte is malformed (policy_error), for an allow and a deny alike', () => {
    const { maxGroups, maxMatchersPerGroup, maxHeaders, maxStringBytes } = DECISION_LIMITS;
    for (const allow of [true, false]) {
      rejects({ allow, selectors: groups(maxGroups + 1) }, /selectors has 1025 groups, more than 1024/);
      rejects({ allow, selectors: groups(1, maxMatchersPerGroup + 1) }, /selectors\[0\] has 65 matchers, more than 64/);
      rejects({ allow, unrestricted: true, headers: Object.fromEntries(Array.from({ length: maxHeaders + 1 }, (_, i) => [`X-H${i}`, 'v'])) }, /headers has 65 entries, more than 64/);
      rejects({ allow, selectors: [[{ name: 'n', op: '=', value: 'x'.repeat(maxStringBytes) }]] }, /more than 262144 bytes \(at selectors\[0\]\[0\]\.value\)/);
      // Bytes, not characters: 'é' is two.
      rejects({ allow, selectors: [[{ name: 'n', op: '=', value: 'é'.repeat(maxStringBytes / 2) }]] }, /more than 262144 bytes/);
      // Summed over the whole decision: reason, matchers and headers.
      const third = 'x'.repeat(Math.ceil(maxStringBytes / 3));
      rejects({ allow, reason: third, selectors: [[{ name: 'n', op: '=', value: third }]], headers: { 'X-A': third } }, /more than 262144 bytes \(at headers\["X-A"\]\)/);
    }
  });

  it('a policy returning 100 000 groups is refused at once, without validating them', () => {
    const huge = groups(100_000);
    const started = cpuMs();
    expect(() => validateDecision({ allow: true, selectors: huge })).toThrow(/100000 groups/);
    // Validating them took about 0.3 s of CPU; the bound is one length check (the margin is for a GC).
    expect(cpuMs() - started).toBeLessThan(100);
  });
});
