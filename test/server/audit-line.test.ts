import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Decision, Subject } from '../../src/policy/decision.ts';
import { auditLine, buildAuditRecord, buildRefusalRecord, decisionAuditLine, isoTime, millisJson, type AuditContext } from '../../src/server/audit.ts';
import type { LbacRequestState } from '../../src/server/request-state.ts';

// Text that JSON escapes: quotes, backslashes, control characters, lone surrogates, non-ASCII.
const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('a"b', 'c\\d', '\n\t\u0000', '\ud800', 'ü€𝄞'));
/** Query texts: long ones too (the audit line keeps the JSON of recent long texts), repeated across runs. */
const queryText = fc.oneof(
  text,
  fc.string({ unit: 'binary', minLength: 24, maxLength: 80 }),
  fc.constantFrom('sum by (pod) (rate(http_requests_total{namespace="team-a",code=~"5.."}[5m]))', `{app="x"} |= "\\"quoted\\" \ud800 ü"`),
);
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const ms = maybe(fc.double({ min: 0, max: 1e5, noNaN: true }));

const subjectArb = fc
  .record({
    sub: text,
    username: maybe(text),
    usernameTrusted: maybe(fc.boolean()),
    groups: fc.array(text, { maxLength: 3 }),
    roles: fc.array(text, { maxLength: 2 }),
    issuer: maybe(text),
    auth: fc.constantFrom('jwt', 'apikey', 'grafana', 'mtls'),
    grafanaOrg: maybe(fc.integer({ min: 1, max: 1000 })),
    email: maybe(text),
    frozen: fc.boolean(),
  })
  .map(({ frozen, ...s }): Subject => {
    const subject = Object.fromEntries(Object.entries({ ...s, claims: { secret: 'claim' } }).filter(([, v]) => v !== undefined)) as unknown as Subject;
    if (!frozen) return subject;
    return Object.freeze({ ...subject, groups: Object.freeze([...subject.groups]), roles: Object.freeze([...subject.roles]) });
  });

const decisionArb = fc
  .record({
    allow: fc.boolean(),
    reason: text,
    unrestricted: fc.boolean(),
    selectors: fc.array(fc.array(fc.record({ name: text, op: fc.constantFrom('=', '!=', '=~', '!~'), value: text }), { minLength: 1, maxLength: 2 }), { maxLength: 2 }),
    headers: fc.dictionary(text, text, { maxKeys: 2 }),
    frozen: fc.boolean(),
  })
  .map(({ frozen, ...d }): Decision => {
    if (!frozen) return d as Decision;
    return Object.freeze({ ...d, selectors: Object.freeze(d.selectors.map((g) => Object.freeze(g.map((m) => Object.freeze(m))))), headers: Object.freeze(d.headers) }) as Decision;
  });

const params = maybe(fc.dictionary(fc.constantFrom('query', 'match[]', 'q'), fc.array(queryText, { minLength: 1, maxLength: 2 }), { maxKeys: 2 }));

const contextArb = fc.record({
  requestId: text,
  decisionId: fc.uuid(),
  subject: fc.option(subjectArb, { nil: null }),
  status: fc.integer({ min: 100, max: 599 }),
  durationMs: fc.double({ min: 0, max: 1e5, noNaN: true }),
  entrypoint: text,
  dataRevision: maybe(text),
  time: fc.date({ min: new Date(0), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }),
  decision: decisionArb,
  // Frozen, as the gateway's shared request objects are (their JSON is then kept by identity).
  request: fc
    .tuple(fc.record({ upstream: text, kind: fc.constantFrom('prometheus', 'loki', 'tempo'), endpoint: text, method: fc.constantFrom('GET', 'POST'), path: text }), fc.boolean())
    .map(([r, frozen]) => (frozen ? Object.freeze(r) : r)),
  revision: maybe(text),
  original: params,
  rewritten: params,
  errorCode: maybe(text),
  shed: maybe(fc.constantFrom('concurrency', 'subject_concurrency', 'answer_budget', 'filter_queue', 'heapUsedBytes')),
  timings: fc.record({ identity: ms, policy: ms, rewrite: ms, upstream: ms }, { requiredKeys: [] }),
});

type GeneratedContext = typeof contextArb extends fc.Arbitrary<infer T> ? T : never;

function toContext(c: GeneratedContext): AuditContext {
  const timings = Object.fromEntries(Object.entries(c.timings).filter(([, v]) => v !== undefined));
  const state = { startedAt: 0, timings, request: c.request, decision: c.decision } as LbacRequestState;
  if (c.revision !== undefined) state.revision = c.revision;
  if (c.original !== undefined) state.original = c.original;
  if (c.original !== undefined && c.rewritten !== undefined) state.rewritten = c.rewritten;
  if (c.errorCode !== undefined) state.errorCode = c.errorCode;
  if (c.shed !== undefined) state.shed = c.shed;
  return {
    requestId: c.requestId,
    decisionId: c.decisionId,
    subject: c.subject,
    state,
    status: c.status,
    durationMs: c.durationMs,
    entrypoint: c.entrypoint,
    time: c.time,
    ...(c.dataRevision === undefined ? {} : { dataRevision: c.dataRevision }),
  };
}

describe('decisionAuditLine', () => {
  it('is the same text as auditLine(buildAuditRecord(…)), first and cached alike', () => {
    fc.assert(
      fc.property(contextArb, fc.boolean(), fc.date({ min: new Date(0), noInvalidDate: true }), (c, hashQueries, lineTime) => {
        const ctx = toContext(c);
        const config = { hashQueries, redact: [] };
        const expected = auditLine(buildAuditRecord(ctx, config)!, lineTime);
        expect(decisionAuditLine(ctx, config, lineTime.getTime())).toBe(expected);
        // Again: the subject's, the decision's and the request's JSON now come from the caches.
        expect(decisionAuditLine(ctx, config, lineTime.getTime())).toBe(expected);
      }),
      { numRuns: 400 },
    );
  });

  it('with redact paths takes the record route (erased listed)', () => {
    fc.assert(
      fc.property(contextArb, (c) => {
        const ctx = toContext(c);
        const config = { hashQueries: false, redact: ['input.subject', 'result.selectors'] };
        const t = new Date(0);
        const line = decisionAuditLine(ctx, config, t.getTime())!;
        expect(line).toBe(auditLine(buildAuditRecord(ctx, config)!, t));
        const parsed = JSON.parse(line) as { input: Record<string, unknown>; result: Record<string, unknown>; erased: string[] };
        expect(parsed.input).not.toHaveProperty('subject');
        expect(parsed.result).not.toHaveProperty('selectors');
        expect(parsed.erased).toEqual(['input.subject', 'result.selectors']);
      }),
      { numRuns: 100 },
    );
  });

  it('never serves stale JSON for a subject or decision that can still change', () => {
    const subject: Subject = { sub: 'u', groups: ['team-a'], roles: [], auth: 'jwt', claims: {} };
    const decision = { allow: true, reason: 'r', unrestricted: false, selectors: [[{ name: 'namespace', op: '=', value: 'a' }]], headers: {} } as Decision;
    const state = { startedAt: 0, timings: {}, request: { upstream: 'm', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/' }, decision } as LbacRequestState;
    const ctx: AuditContext = { requestId: 'r', decisionId: 'd', subject, state, status: 200, durationMs: 1, entrypoint: 'lbac/decision' };
    const config = { hashQueries: false, redact: [] };
    const first = JSON.parse(decisionAuditLine(ctx, config, 0)!) as { input: { subject: Subject }; result: Decision };
    expect(first.input.subject.groups).toEqual(['team-a']);
    (subject.groups as string[]).push('team-b');
    (decision.selectors[0] as { name: string; op: string; value: string }[])[0]!.value = 'b';
    const second = JSON.parse(decisionAuditLine(ctx, config, 0)!) as { input: { subject: Subject }; result: Decision };
    expect(second.input.subject.groups).toEqual(['team-a', 'team-b']);
    expect(second.result.selectors).toEqual([[{ name: 'namespace', op: '=', value: 'b' }]]);
  });

  it('never carries the raw claims, tokens or header values', () => {
    const subject = Object.freeze({ sub: 'u', groups: Object.freeze(['g']), roles: Object.freeze([]), auth: 'jwt', claims: Object.freeze({ secret: 'claim-value' }) }) as Subject;
    const decision = Object.freeze({ allow: true, reason: 'r', unrestricted: false, selectors: Object.freeze([]), headers: Object.freeze({ 'X-Scope-OrgID': 'tenant-secret' }) }) as Decision;
    const state = { startedAt: 0, timings: {}, request: { upstream: 'm', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/' }, decision } as LbacRequestState;
    const line = decisionAuditLine({ requestId: 'r', subject, state, status: 200, durationMs: 1, entrypoint: 'e' }, { hashQueries: false, redact: [] }, 0)!;
    expect(line).not.toContain('claim-value');
    expect(line).not.toContain('tenant-secret');
    expect(line).toContain('"headers":["X-Scope-OrgID"]');
  });
});

describe('shed requests', () => {
  it('a decided request that was shed names the reason in response.shed, in both serialisations', () => {
    const decision = Object.freeze({ allow: true, reason: 'r', unrestricted: false, selectors: Object.freeze([]), headers: Object.freeze({}) }) as Decision;
    const state = { startedAt: 0, timings: {}, request: { upstream: 'm', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/' }, decision, errorCode: 'overloaded', shed: 'answer_budget' } as LbacRequestState;
    const ctx: AuditContext = { requestId: 'r', subject: null, state, status: 503, durationMs: 1, entrypoint: 'e' };
    expect(buildAuditRecord(ctx, { hashQueries: false, redact: [] })!['response']).toEqual({ status: 503, duration_ms: 1, error: 'overloaded', shed: 'answer_budget' });
    expect(JSON.parse(decisionAuditLine(ctx, { hashQueries: false, redact: [] }, 0)!)).toMatchObject({ response: { status: 503, error: 'overloaded', shed: 'answer_budget' } });
  });
});

describe('buildRefusalRecord', () => {
  const subject = Object.freeze({ sub: 'u', username: 'a', groups: Object.freeze(['g']), roles: Object.freeze([]), auth: 'jwt', claims: Object.freeze({ secret: 'claim-value' }) }) as Subject;
  const route = { upstream: 'metrics', kind: 'prometheus', endpoint: 'query' } as const;
  const base = { requestId: 'r', status: 503, durationMs: 2, method: 'GET', path: '/prometheus/api/v1/query', remoteAddress: '10.0.0.1', time: new Date(0) };

  it('the decision\'s type and schema without the decision\'s fields; the shed reason; never the claims', () => {
    const state = { startedAt: 0, timings: { identity: 0.5 }, route, identity: 'accepted', errorCode: 'overloaded', shed: 'subject_concurrency' } as LbacRequestState;
    const record = buildRefusalRecord({ ...base, subject, state }, { redact: [] })!;
    expect(record).toEqual({
      type: 'lbac-gateway/decision_logs',
      req_id: 'r',
      timestamp: '1970-01-01T00:00:00.000Z',
      input: { subject: { sub: 'u', username: 'a', groups: ['g'], roles: [], auth: 'jwt' }, request: { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/prometheus/api/v1/query' }, remote_address: '10.0.0.1' },
      response: { status: 503, duration_ms: 2, error: 'overloaded', shed: 'subject_concurrency' },
      metrics: { timer_identity_ms: 0.5, timer_policy_ms: undefined, timer_rewrite_ms: undefined, timer_upstream_ms: undefined },
    });
    expect(auditLine(record, new Date(0))).not.toContain('claim-value');
    expect(buildRefusalRecord({ ...base, subject, state }, { redact: ['input.remote_address'] })).toMatchObject({ erased: ['input.remote_address'] });
  });

  it('none for a decided request, a refused authentication (it has its own line), a request outside the upstream routes or one whose client left first', () => {
    const decision = { allow: true } as Decision;
    expect(buildRefusalRecord({ ...base, subject, state: { startedAt: 0, timings: {}, route, decision } as LbacRequestState }, { redact: [] })).toBeUndefined();
    for (const identity of ['rejected', 'unavailable'] as const) expect(buildRefusalRecord({ ...base, subject: null, state: { startedAt: 0, timings: {}, route, identity } as LbacRequestState }, { redact: [] })).toBeUndefined();
    expect(buildRefusalRecord({ ...base, subject: null, state: { startedAt: 0, timings: {} } as LbacRequestState }, { redact: [] })).toBeUndefined();
    // Its client left before it was decided (499): nothing was refused, nor done, for it.
    expect(buildRefusalRecord({ ...base, subject, state: { startedAt: 0, timings: {}, route, identity: 'accepted', clientClosed: true, errorCode: 'client_closed' } as LbacRequestState }, { redact: [] })).toBeUndefined();
    expect(buildRefusalRecord({ ...base, subject: null, state: { startedAt: 0, timings: {}, route } as LbacRequestState }, { redact: [] })).toMatchObject({ input: { subject: null } });
  });
});

describe('isoTime', () => {
  it('is Date#toISOString, in any order of calls (the per-second cache never leaks into another second)', () => {
    const instant = fc.oneof(
      fc.integer({ min: -62198755200000, max: 253402300799999 }),
      fc.integer({ min: 1_700_000_000_000, max: 1_700_000_003_000 }),
      fc.constantFrom(-1, 0, 999, 1000, -62198755200001, 253402300800000, 8.64e15, -8.64e15),
      fc.double({ min: -1e13, max: 1e13, noNaN: true }),
    );
    fc.assert(
      fc.property(fc.array(instant, { minLength: 1, maxLength: 20 }), (times) => {
        for (const ms of times) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
      }),
      { numRuns: 500 },
    );
  });
});

describe('millisJson', () => {
  it('is JSON.stringify of the value rounded to the microsecond', () => {
    const ms = fc.oneof(
      fc.double({ min: 0, max: 1e6, noNaN: true }),
      fc.double({ noNaN: false }),
      fc.integer({ min: 0, max: 2 ** 53 }).map((n) => n / 1000),
      fc.constantFrom(0, -0, 0.0004, 0.0005, 0.001, 0.01, 0.1, 0.5, 1, 1.05, 12.3, 999999999999.999, 1e12, 1e15, 1e21, -1.5, Number.NaN, Infinity),
    );
    fc.assert(
      fc.property(ms, (x) => {
        expect(millisJson(x)).toBe(JSON.stringify(Math.round(x * 1000) / 1000));
      }),
      { numRuns: 5000 },
    );
  });
});
