import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildAuditRecord, redact, shouldAudit } from '../../src/server/audit.ts';
import { newRequestState } from '../../src/server/request-state.ts';
import { startUpstream, testApp, testConfig, upstreamsConfig, SUBJECTS, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let t: TestApp;

beforeAll(async () => {
  up = await startUpstream();
  t = await testApp(testConfig(up.url));
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});
beforeEach(() => {
  up.requests.splice(0);
  t.audit.splice(0);
  up.delayMs = 0;
});

const bearer = (who: string) => ({ authorization: `Bearer ${who}` });
const query = (q: string) => `/prometheus/api/v1/query?query=${encodeURIComponent(q)}`;

describe('audit log', () => {
  it('writes one OPA-shaped record per decision, with subject, decision, queries, status and timings — never the token', async () => {
    const res = await t.app.inject({ method: 'GET', url: query('up'), headers: { ...bearer('alice'), 'x-request-id': 'req-123' } });
    expect(res.statusCode).toBe(200);
    expect(t.audit).toHaveLength(1);
    const r = t.audit[0]!;
    expect(r).toMatchObject({
      type: 'lbac-gateway/decision_logs',
      msg: 'Decision Log',
      req_id: 'req-123',
      path: 'lbac/decision',
      revision: t.holder.revision,
      input: {
        subject: { sub: 'u-alice', username: 'alice', groups: ['team-a'], auth: 'fake' },
        request: { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' },
      },
      result: { allow: true, unrestricted: false, headers: ['X-Scope-OrgID'] },
      query: { original: { query: ['up'] }, rewritten: { query: ['up{namespace=~"team-a-.*"}'] } },
      response: { status: 200 },
    });
    expect(typeof r['decision_id']).toBe('string');
    expect(typeof r['time']).toBe('string');
    expect(typeof r['data_revision']).toBe('string');
    expect((r['result'] as { reason: string }).reason).toBeTypeOf('string');
    const m = r['metrics'] as Record<string, number>;
    for (const k of ['timer_identity_ms', 'timer_policy_ms', 'timer_rewrite_ms', 'timer_upstream_ms']) expect(m[k]).toBeGreaterThanOrEqual(0);
    expect((r['response'] as { duration_ms: number }).duration_ms).toBeGreaterThan(0);
    const line = JSON.stringify(r);
    expect(line).not.toContain('Bearer');
    expect(line).not.toContain('claim-value'); // raw claims are never logged
    expect(line).not.toContain('tenant-a'); // policy header values are not logged, only names
  });

  it('records each request shape as asked, however many (the decision input objects are shared per shape, bounded per route)', async () => {
    // More label names than a route keeps shared request objects for (256), then the first ones again, by GET and POST.
    const names = Array.from({ length: 300 }, (_, i) => `label_${i}`);
    for (const name of [...names, ...names.slice(0, 5)]) {
      expect((await t.app.inject({ url: `/prometheus/api/v1/label/${name}/values`, headers: bearer('alice') })).statusCode).toBe(200);
    }
    const q = await t.app.inject({ method: 'POST', url: '/prometheus/api/v1/query', headers: { ...bearer('alice'), 'content-type': 'application/x-www-form-urlencoded' }, payload: 'query=up' });
    expect(q.statusCode).toBe(200);
    const requests = t.audit.map((r) => (r['input'] as { request: Record<string, unknown> }).request);
    expect(requests.slice(0, 305).map((r) => r['path'])).toEqual([...names, ...names.slice(0, 5)].map((n) => `/api/v1/label/${n}/values`));
    expect(requests.slice(0, 305).every((r) => r['endpoint'] === 'label_values' && r['method'] === 'GET' && r['upstream'] === 'metrics')).toBe(true);
    expect(requests[305]).toEqual({ upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'POST', path: '/api/v1/query' });
    expect(up.requests.map((r) => r.path).slice(0, 3)).toEqual(['/api/v1/label/label_0/values', '/api/v1/label/label_1/values', '/api/v1/label/label_2/values']);
  });

  it('logs denials (403) and rewrite rejections (400) with their error code', async () => {
    expect((await t.app.inject({ url: query('up'), headers: bearer('mallory') })).statusCode).toBe(403);
    expect((await t.app.inject({ url: query('sum(('), headers: bearer('alice') })).statusCode).toBe(400);
    expect(t.audit).toHaveLength(2);
    expect(t.audit[0]).toMatchObject({ result: { allow: false }, response: { status: 403, error: 'forbidden' } });
    expect(t.audit[1]).toMatchObject({ result: { allow: true }, query: { original: { query: ['sum(('] } }, response: { status: 400, error: 'bad_query' } });
    expect((t.audit[1]!['query'] as Record<string, unknown>)['rewritten']).toBeUndefined();
  });

  it('records at most maxQueryLength characters of a query refused as too long, and says it was cut', async () => {
    const long = `up{job="${'x'.repeat(70 * 1024)}"}`;
    const headers = { ...bearer('alice'), 'content-type': 'application/x-www-form-urlencoded' };
    const r = await t.app.inject({ method: 'POST', url: '/prometheus/api/v1/query', headers, payload: `query=${encodeURIComponent(long)}` });
    expect(r.statusCode).toBe(400);
    expect(t.audit).toHaveLength(1);
    const q = t.audit[0]!['query'] as { original: { query: string[] }; original_truncated?: boolean };
    expect(q.original.query).toEqual([long.slice(0, 64 * 1024)]);
    expect(q.original_truncated).toBe(true);
    // Several values: those past the budget are left out (not recorded as empty ones).
    const big = `up{job="${'x'.repeat(40 * 1024)}"}`;
    await t.app.inject({ method: 'POST', url: '/prometheus/api/v1/series', headers, payload: ['up', big, big, 'up'].map((m) => `match[]=${encodeURIComponent(m)}`).join('&') });
    const series = t.audit.at(-1)!['query'] as { original: { 'match[]': string[] }; original_truncated?: boolean };
    // Lengths, not texts: a failure would print megabytes.
    const rest = 64 * 1024 - 2 - big.length;
    expect(series.original['match[]'].map((v) => v.length)).toEqual([2, big.length, rest]);
    expect(series.original['match[]'][2] === big.slice(0, rest)).toBe(true);
    expect(series.original_truncated).toBe(true);
    t.audit.splice(0);
    // A query within the limit is recorded whole, without the mark.
    await t.app.inject({ method: 'POST', url: '/prometheus/api/v1/query', headers, payload: 'query=up' });
    expect(t.audit[0]!['query']).not.toHaveProperty('original_truncated');
  });

  it("answers the router's own refusals (bad percent-encoding, a path parameter over the limit) in its words: counted, never echoing the path", async () => {
    const cases = [
      { url: '/prometheus/api/v1/label/%FF/values', status: 400, message: 'the path is not valid percent-encoding (not forwarded)' },
      { url: '/prometheus/api/v1/label/%ZZ%3Cimg%20src=x%20onerror=alert(1)%3E/values', status: 400, message: 'the path is not valid percent-encoding (not forwarded)' },
      { url: `/prometheus/api/v1/label/${'n'.repeat(1025)}/values`, status: 414, message: 'a path parameter is too long (not forwarded)' },
    ];
    for (const c of cases) {
      const r = await t.app.inject({ url: c.url, headers: { ...bearer('alice'), 'x-request-id': 'bad-url-1' } });
      expect(r.statusCode).toBe(c.status);
      expect(JSON.parse(r.body)).toEqual({ status: 'error', errorType: 'bad_data', error: c.message });
      expect(r.headers['x-request-id']).toBe('bad-url-1');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
    }
    expect(up.requests).toHaveLength(0);
    expect(t.audit).toHaveLength(0);
    const counted = (await t.metrics.registry.getSingleMetric('lbac_gateway_requests_total')!.get()).values.filter((v) => v.labels['endpoint'] === 'unmatched');
    expect(counted.map((v) => [v.labels['status'], v.value])).toEqual(expect.arrayContaining([['400', 2], ['414', 1]]));
  });

  it("answers a router refusal under a Loki or Tempo mount in that backend's format", async () => {
    const own = await testApp(upstreamsConfig(`{ name: logs, kind: loki, url: "${up.url}", mount: /loki }`, `{ name: traces, kind: tempo, url: "${up.url}", mount: /tempo }`));
    try {
      const loki = await own.app.inject({ url: '/loki/api/v1/label/%FF/values', headers: bearer('alice') });
      expect(loki.statusCode).toBe(400);
      expect(JSON.parse(loki.body)).toMatchObject({ code: 400, status: 'error', message: 'the path is not valid percent-encoding (not forwarded)' });
      const tempo = await own.app.inject({ url: '/tempo/api/traces/%ZZ', headers: bearer('alice') });
      expect(tempo.statusCode).toBe(400);
      expect(tempo.headers['content-type']).toMatch(/^text\/plain/);
      expect(tempo.body).toBe('the path is not valid percent-encoding (not forwarded)\n');
    } finally {
      await own.app.close();
    }
  });

  it('writes nothing for requests outside the upstream routes (health, 404)', async () => {
    await t.app.inject({ url: '/healthz' });
    expect((await t.app.inject({ url: '/nowhere', headers: bearer('alice') })).statusCode).toBe(404);
    expect(t.audit).toHaveLength(0);
  });

  it('records refused authentication on upstream routes: scheme and path only, never the credential or the query', async () => {
    expect((await t.app.inject({ url: query('up') })).statusCode).toBe(401);
    expect((await t.app.inject({ url: query('secret_metric'), headers: { authorization: 'Bearer not-a-known-token-s3cr3t' } })).statusCode).toBe(401);
    expect(t.audit).toHaveLength(2);
    for (const r of t.audit.slice(0, 2)) {
      expect(r).toMatchObject({
        type: 'lbac-gateway/authentication',
        input: { request: { upstream: 'metrics', endpoint: 'query', method: 'GET', path: '/prometheus/api/v1/query' } },
        result: { authenticated: false },
        response: { status: 401 },
      });
      expect(typeof r['req_id']).toBe('string');
    }
    expect((t.audit[0]!['input'] as Record<string, unknown>)['authorization_scheme']).toBeNull();
    expect((t.audit[1]!['input'] as Record<string, unknown>)['authorization_scheme']).toBe('Bearer');
    // A credential without a scheme (or glued to one) is never taken for the scheme.
    for (const authorization of ['lbac_s3cr3tKEYs3cr3t', 'Bearer:s3cr3t', 'bearer   lbac_s3cr3t', 'X-s3cr3t-scheme value']) {
      expect((await t.app.inject({ url: query('up'), headers: { authorization } })).statusCode).toBe(401);
    }
    expect(t.audit.slice(2).map((r) => (r['input'] as Record<string, unknown>)['authorization_scheme'])).toEqual(['other', 'other', 'Bearer', 'other']);
    const text = JSON.stringify(t.audit);
    expect(text).not.toContain('s3cr3t');
    expect(text).not.toContain('secret_metric');
    expect(up.requests).toHaveLength(0);
  });

  it('hashes queries when configured, and redacts configured paths (listed in "erased")', async () => {
    const h = await testApp(testConfig(up.url, 'audit: { hashQueries: true, redact: [input.subject.username, result.selectors] }'));
    try {
      await h.app.inject({ url: query('up'), headers: bearer('alice') });
      const r = h.audit[0]!;
      const sha = (s: string) => createHash('sha256').update(s).digest('hex');
      expect(r['query']).toEqual({ hashed: 'sha256', original: { query: [sha('up')] }, rewritten: { query: [sha('up{namespace=~"team-a-.*"}')] } });
      expect((r['input'] as { subject: Record<string, unknown> }).subject['username']).toBeUndefined();
      expect((r['result'] as Record<string, unknown>)['selectors']).toBeUndefined();
      expect(r['erased']).toEqual(['input.subject.username', 'result.selectors']);
      expect(JSON.stringify(r)).not.toContain('"up"');
    } finally {
      await h.app.close();
    }
  });

  it('samples allowed decisions but always logs denials', () => {
    const allowed = { ...newRequestState(), decision: { allow: true, reason: 'x', unrestricted: false, selectors: [], headers: {} } };
    const denied = { ...newRequestState(), decision: { allow: false, reason: 'x', unrestricted: false, selectors: [], headers: {} } };
    expect(shouldAudit(allowed, 200, 0, () => 0.5)).toBe(false);
    expect(shouldAudit(allowed, 200, 0.6, () => 0.5)).toBe(true);
    expect(shouldAudit(allowed, 502, 0, () => 0.5)).toBe(true);
    expect(shouldAudit(denied, 403, 0, () => 0.99)).toBe(true);
    expect(shouldAudit(newRequestState(), 401, 1)).toBe(false);
  });

  it('redaction never touches shared objects', () => {
    const selectors = [[{ name: 'namespace', op: '=' as const, value: 'a' }]];
    const state = { ...newRequestState(), request: { upstream: 'm', kind: 'prometheus' as const, endpoint: 'query', method: 'GET', path: '/' }, decision: { allow: true, reason: 'r', unrestricted: false, selectors, headers: {} } };
    const r = buildAuditRecord({ requestId: '1', subject: SUBJECTS['alice']!, state, status: 200, durationMs: 1, entrypoint: 'lbac/decision' }, { hashQueries: false, redact: ['result.selectors.0'] });
    expect(r!['erased']).toEqual(['result.selectors.0']);
    expect(selectors).toHaveLength(1);
    expect(redact({ a: 1 }, ['b.c'])).toEqual([]);
  });
});

describe('request hygiene', () => {
  it('reuses a valid X-Request-Id, echoes it and forwards it upstream', async () => {
    const res = await t.app.inject({ url: query('up'), headers: { ...bearer('alice'), 'x-request-id': 'abc-123' } });
    expect(res.headers['x-request-id']).toBe('abc-123');
    expect(up.requests.at(-1)!.headers['x-request-id']).toBe('abc-123');
  });

  it('every answer of an upstream route is Cache-Control: private, no-store (it depends on who asked), whatever the upstream said', async () => {
    // And never sniffed, run or framed by a browser (an upstream's error page is relayed with its own Content-Type).
    const private_ = (res: { headers: Record<string, unknown> }) =>
      expect([res.headers['cache-control'], res.headers['x-content-type-options'], res.headers['content-security-policy']]).toEqual(['private, no-store', 'nosniff', "default-src 'none'; frame-ancestors 'none'; sandbox"]);
    private_(await t.app.inject({ url: query('up'), headers: bearer('alice') }));
    up.answerHeaders = { 'cache-control': 'public, max-age=600', 'content-security-policy': "script-src 'unsafe-inline'", 'x-content-type-options': 'sniff-away', 'x-request-id': 'the-upstream-s-own', 'set-cookie': 'session=for-the-gateway-s-credential' };
    try {
      const relayed = await t.app.inject({ url: query('up'), headers: { ...bearer('alice'), 'x-request-id': 'the-client-s' } });
      private_(relayed);
      // The id the client sent and the audit log has, not one a proxy in front of the backend answered.
      expect(relayed.headers['x-request-id']).toBe('the-client-s');
      // A session an auth proxy in front of the backend issued for the gateway's own credential.
      expect(relayed.headers['set-cookie']).toBeUndefined();
      private_(await t.app.inject({ url: '/prometheus/api/v1/label/namespace/values', headers: bearer('alice') }));
    } finally {
      delete up.answerHeaders;
    }
    // The gateway's own refusals too.
    for (const who of ['nobody', 'mallory']) {
      const refused = await t.app.inject({ url: query('up'), headers: bearer(who) });
      expect(refused.statusCode).toBe(who === 'nobody' ? 401 : 403);
      private_(refused);
    }
    private_(await t.app.inject({ url: query('up{'), headers: bearer('alice') }));
    private_(await t.app.inject({ url: query('up') }));
    // Not a route of an upstream: nothing said.
    expect((await t.app.inject({ url: '/healthz' })).headers['cache-control']).toBeUndefined();
    expect((await t.app.inject({ url: '/healthz' })).headers['content-security-policy']).toBeUndefined();
  });

  it('a client naming X-Request-Id in Connection does not remove the gateway\'s id from the upstream request', async () => {
    for (const headers of [{ connection: 'close, x-request-id', 'x-request-id': 'abc-456' }, { connection: 'keep-alive, X-Request-Id' }]) {
      const res = await t.app.inject({ url: query('up'), headers: { ...bearer('alice'), ...headers } });
      const id = res.headers['x-request-id'] as string;
      expect(up.requests.at(-1)!.headers['x-request-id']).toBe(id);
    }
  });

  it('replaces an invalid X-Request-Id with a generated one, everywhere', async () => {
    const res = await t.app.inject({ url: query('up'), headers: { ...bearer('alice'), 'x-request-id': 'bad id\twith spaces' } });
    const id = res.headers['x-request-id'] as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(up.requests.at(-1)!.headers['x-request-id']).toBe(id);
    expect(t.audit.at(-1)!['req_id']).toBe(id);
    const none = await t.app.inject({ url: '/healthz' });
    expect(none.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('an X-Request-Id that is too long, would break a JSON or logfmt line, or is sent twice is replaced; 128 characters are kept', async () => {
    const kept = 'a'.repeat(128);
    expect((await t.app.inject({ url: query('up'), headers: { ...bearer('alice'), 'x-request-id': kept } })).headers['x-request-id']).toBe(kept);
    for (const bad of ['a'.repeat(129), 'x","level":"fatal', 'x\\u000a', 'x level=error msg=forged', ['one', 'two']]) {
      const res = await t.app.inject({ url: query('up'), headers: { ...bearer('alice'), 'x-request-id': bad } });
      const id = res.headers['x-request-id'] as string;
      expect([bad, id]).toEqual([bad, expect.stringMatching(/^[0-9a-f-]{36}$/)]);
      expect(up.requests.at(-1)!.headers['x-request-id']).toBe(id);
      expect(t.audit.at(-1)!['req_id']).toBe(id);
    }
  });

  it('audits every request to an upstream route refused before a decision: one line, the decision\'s type and schema without its fields, the shed reason', async () => {
    const own = await testApp(testConfig(up.url));
    try {
      await refusedBeforeDecision(own);
    } finally {
      await own.app.close();
    }
  });
  async function refusedBeforeDecision(t: TestApp): Promise<void> {
    up.delayMs = 300;
    const results = await Promise.all([0, 1, 2].map(() => t.app.inject({ url: query('up'), headers: bearer('alice') })));
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, 200, 503]);
    up.delayMs = 0;
    // A method the route does not take (refused before authentication), a repeated team header (before the policy is asked).
    expect((await t.app.inject({ method: 'DELETE', url: query('secret_metric'), headers: bearer('alice') })).statusCode).toBe(405);
    expect((await t.app.inject({ url: query('up'), headers: { ...bearer('alice'), 'x-lbac-team': ['team-a', 'team-a'] } })).statusCode).toBe(400);
    await expect.poll(() => t.audit.length).toBe(5);
    const shed = t.audit.find((r) => (r['response'] as { status: number }).status === 503)!;
    expect(shed).toMatchObject({
      type: 'lbac-gateway/decision_logs',
      input: { subject: { sub: 'u-alice', username: 'alice', groups: ['team-a'] }, request: { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/prometheus/api/v1/query' }, remote_address: '127.0.0.1' },
      response: { status: 503, error: 'overloaded', shed: 'concurrency' },
      metrics: { timer_identity_ms: expect.any(Number) },
    });
    expect(typeof shed['req_id']).toBe('string');
    // What only a decision has is absent (not null): the policy was never asked.
    for (const key of ['decision_id', 'path', 'revision', 'data_revision', 'result', 'query']) expect(shed, key).not.toHaveProperty(key);
    const [methodLine, teamLine] = t.audit.slice(3);
    expect(methodLine).toMatchObject({ type: 'lbac-gateway/decision_logs', input: { subject: null, request: { endpoint: 'query', method: 'DELETE', path: '/prometheus/api/v1/query' } }, response: { status: 405, error: 'method_not_allowed' } });
    expect(methodLine).not.toHaveProperty('result');
    expect(teamLine).toMatchObject({ input: { subject: { sub: 'u-alice' } }, response: { status: 400, error: 'bad_query' } });
    expect(teamLine).not.toHaveProperty('result');
    // The decided lines name no shed reason; none carries the query string or the claims of a refused request.
    for (const r of t.audit.filter((r) => r['result'] !== undefined)) expect(r['response']).not.toHaveProperty('shed');
    const text = JSON.stringify(t.audit);
    expect(text).not.toContain('secret_metric');
    expect(text).not.toContain('claim-value');
  }

  it('answers 503 + Retry-After in Prometheus format beyond upstreams[].maxConcurrent', async () => {
    up.delayMs = 300;
    const results = await Promise.all([0, 1, 2].map(() => t.app.inject({ url: query('up'), headers: bearer('alice') })));
    const codes = results.map((r) => r.statusCode).sort();
    expect(codes).toEqual([200, 200, 503]);
    const shed = results.find((r) => r.statusCode === 503)!;
    expect(shed.headers['retry-after']).toBe('1');
    expect(shed.json()).toMatchObject({ status: 'error', errorType: 'unavailable' });
    expect(up.requests).toHaveLength(2);
    // Released afterwards.
    up.delayMs = 0;
    expect((await t.app.inject({ url: query('up'), headers: bearer('alice') })).statusCode).toBe(200);
    const text = await t.metrics.registry.metrics();
    expect(text).toMatch(/lbac_gateway_shed_requests_total\{reason="concurrency"\} 1/);
    expect(text).toMatch(/lbac_gateway_upstream_inflight_requests\{upstream="metrics"\} 0/);
  });

  /**
   * olga's two groups do not merge: a bare range selector is asked once per group (two upstream
   * requests, against the test config's maxConcurrent of 2). The upstream answers range queries.
   */
  async function withFanningOutUser(body: (t: TestApp, own: Upstream) => Promise<void>): Promise<void> {
    const own = await startUpstream();
    own.answer = (path, params) => (path === '/api/v1/query' && params.get('query')?.endsWith('[5m]') === true ? [200, '{"status":"success","data":{"resultType":"matrix","result":[]}}'] : undefined);
    SUBJECTS['olga'] = { sub: 'u-olga', username: 'olga', groups: ['team-o'], roles: [], auth: 'fake', claims: {} };
    const app = await testApp(testConfig(own.url, '  team-o: { groups: [team-o], selectors: [{ namespace: "~team-a-.*" }, { job: api }] }\n'));
    try {
      await body(app, own);
    } finally {
      delete SUBJECTS['olga'];
      await app.app.close();
      await own.close();
    }
  }

  it('a request asked once per policy group counts each extra upstream request against maxConcurrent', () =>
    withFanningOutUser(async (app, own) => {
      own.delayMs = 300;
      const fanned = app.app.inject({ url: query('up[5m]'), headers: bearer('olga') });
      while (own.requests.length < 2) await new Promise((r) => setTimeout(r, 5));
      // Both of maxConcurrent's 2 slots are olga's: another request is refused, not queued.
      const other = await app.app.inject({ url: query('up'), headers: bearer('alice') });
      expect(other.statusCode).toBe(503);
      expect(other.headers['retry-after']).toBe('1');
      expect((await fanned).statusCode).toBe(200);
      own.delayMs = 0;
      // Released with the answer.
      expect((await app.app.inject({ url: query('up'), headers: bearer('alice') })).statusCode).toBe(200);
      expect(await app.metrics.registry.metrics()).toMatch(/lbac_gateway_upstream_inflight_requests\{upstream="metrics"\} 0/);
    }));

  it('a fan-out refused because its extra upstream requests do not fit is counted as shed (concurrency)', () =>
    withFanningOutUser(async (app, own) => {
      own.delayMs = 300;
      // alice holds one of maxConcurrent's 2 slots; olga's request needs both.
      const slow = app.app.inject({ url: query('up'), headers: bearer('alice') });
      while (own.requests.length < 1) await new Promise((r) => setTimeout(r, 5));
      const fanned = await app.app.inject({ url: query('up[5m]'), headers: bearer('olga') });
      expect(fanned.statusCode).toBe(503);
      expect(fanned.headers['retry-after']).toBe('1');
      expect(await app.metrics.registry.metrics()).toMatch(/lbac_gateway_shed_requests_total\{reason="concurrency"\} 1/);
      // Decided, then shed: its decision's line names the reason.
      expect(app.audit.at(-1)).toMatchObject({ input: { subject: { sub: 'u-olga' } }, result: { allow: true }, response: { status: 503, error: 'overloaded', shed: 'concurrency' } });
      expect((await slow).statusCode).toBe(200);
    }));

  it('the audit line names the data revision its decision ran on, not the one current when the answer ends', async () => {
    const own = await startUpstream();
    let revision = 'before-reload';
    const app = await testApp(testConfig(own.url), { dataRevision: () => revision });
    try {
      own.delayMs = 200;
      const pending = app.app.inject({ url: query('up'), headers: bearer('alice') });
      while (own.requests.length < 1) await new Promise((r) => setTimeout(r, 5));
      revision = 'after-reload'; // a reload while the upstream answers
      expect((await pending).statusCode).toBe(200);
      await new Promise((r) => setTimeout(r, 50));
      expect(app.audit.at(-1)).toMatchObject({ data_revision: 'before-reload' });
    } finally {
      await app.app.close();
      await own.close();
    }
  });

  it('a request the gateway refuses (no credentials) never takes a concurrency slot; the request timeout is set', async () => {
    up.delayMs = 300;
    const busy = [0, 1].map(() => t.app.inject({ url: query('up'), headers: bearer('alice') }));
    await new Promise((r) => setTimeout(r, 50));
    // Both slots are taken: an unauthenticated request is still answered 401, not 503.
    expect((await t.app.inject({ url: query('up') })).statusCode).toBe(401);
    expect((await Promise.all(busy)).map((r) => r.statusCode)).toEqual([200, 200]);
    up.delayMs = 0;
    // Node's own bound on receiving a whole request (Fastify's default, 0, would disable it).
    expect(t.app.server.requestTimeout).toBe(30_000);
  });

  it('sheds load with 503 + Retry-After when under pressure, but never the health routes', async () => {
    const base = testConfig(up.url);
    const p = await testApp({ ...base, server: { ...base.server, loadShedding: { enabled: true, maxEventLoopDelayMs: 1000, maxHeapUsedBytes: 1, sampleIntervalMs: 100, retryAfterSeconds: 7 } } });
    try {
      await new Promise((r) => setTimeout(r, 250));
      const res = await p.app.inject({ url: query('up'), headers: bearer('alice') });
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('7');
      expect(res.json()).toMatchObject({ status: 'error', errorType: 'unavailable' });
      expect((await p.app.inject({ url: '/healthz' })).statusCode).toBe(200);
      expect(await p.metrics.registry.metrics()).toMatch(/lbac_gateway_shed_requests_total\{reason="heapUsedBytes"\} 1/);
      // Shed before authentication: no subject, but where it came from and why it was shed.
      expect(p.audit).toHaveLength(1);
      expect(p.audit[0]).toMatchObject({ type: 'lbac-gateway/decision_logs', input: { subject: null, request: { endpoint: 'query' }, remote_address: '127.0.0.1' }, response: { status: 503, error: 'overloaded', shed: 'heapUsedBytes' } });
    } finally {
      await p.app.close();
    }
  });
});

describe('load shedding right after the server listens', () => {
  it('a stall before listening (the start) does not shed the first requests; one after that does', async () => {
    const base = testConfig(up.url);
    const p = await testApp({ ...base, server: { ...base.server, loadShedding: { enabled: true, maxEventLoopDelayMs: 150, sampleIntervalMs: 500, retryAfterSeconds: 7 } } });
    const tick = () => new Promise((r) => setTimeout(r, 20));
    // The mean delay of the next sample over the bound: a stall past one interval lets the overdue sample run
    // (and reset the histogram) at the tick; the second stall is then nearly all that sample holds.
    const stall = async () => {
      for (let i = 0; i < 2; i++) {
        const until = performance.now() + 800;
        while (performance.now() < until);
        await tick();
      }
    };
    try {
      await stall();
      const url = await p.app.listen({ port: 0, host: '127.0.0.1' });
      const ask = () => fetch(`${url}/prometheus/api/v1/query?query=up`, { headers: bearer('alice') });
      // The sample the request is judged by measured the start, and its mean delay is over the bound: not shed.
      expect((await ask()).status).toBe(200);
      // Past the grace (two intervals), a stall sheds as always.
      await new Promise((r) => setTimeout(r, 1_100));
      await stall();
      const shed = await ask();
      expect(shed.status).toBe(503);
      expect(shed.headers.get('retry-after')).toBe('7');
    } finally {
      await p.app.close();
    }
  });

  it('event-loop utilisation is judged over the last interval, not since the start: a busy start does not shed an idle gateway once the grace is over', async () => {
    const base = testConfig(up.url);
    const p = await testApp({ ...base, server: { ...base.server, loadShedding: { enabled: true, maxEventLoopDelayMs: 60_000, maxEventLoopUtilization: 0.5, sampleIntervalMs: 200, retryAfterSeconds: 7 } } });
    try {
      const until = performance.now() + 2_000;
      while (performance.now() < until);
      const url = await p.app.listen({ port: 0, host: '127.0.0.1' });
      // Past the grace (400 ms) and two idle samples.
      await new Promise((r) => setTimeout(r, 900));
      expect((await fetch(`${url}/prometheus/api/v1/query?query=up`, { headers: bearer('alice') })).status).toBe(200);
    } finally {
      await p.app.close();
    }
  });

  it('during the grace, the memory limits still shed', async () => {
    const base = testConfig(up.url);
    const p = await testApp({ ...base, server: { ...base.server, loadShedding: { enabled: true, maxEventLoopDelayMs: 150, maxHeapUsedBytes: 1, sampleIntervalMs: 500, retryAfterSeconds: 7 } } });
    try {
      for (let i = 0; i < 2; i++) {
        const until = performance.now() + 800;
        while (performance.now() < until);
        await new Promise((r) => setTimeout(r, 20));
      }
      const url = await p.app.listen({ port: 0, host: '127.0.0.1' });
      const shed = await fetch(`${url}/prometheus/api/v1/query?query=up`, { headers: bearer('alice') });
      expect(shed.status).toBe(503);
      expect(await p.metrics.registry.metrics()).toMatch(/lbac_gateway_shed_requests_total\{reason="heapUsedBytes"\} 1/);
    } finally {
      await p.app.close();
    }
  });
});

describe('metrics', () => {
  it('records requests by upstream/endpoint/status/decision, stage latencies and rewrite rejections', async () => {
    await t.app.inject({ url: query('up'), headers: bearer('alice') });
    await t.app.inject({ url: query('up'), headers: bearer('carol') });
    await t.app.inject({ url: query('up'), headers: bearer('mallory') });
    await t.app.inject({ url: query('sum(('), headers: bearer('alice') });
    await t.app.inject({ url: query('up') });
    await t.app.inject({ url: '/nope' });
    const text = await t.metrics.registry.metrics();
    expect(text).toMatch(/lbac_gateway_requests_total\{upstream="metrics",endpoint="query",status="200",decision="allow"\} \d+/);
    expect(text).toMatch(/lbac_gateway_requests_total\{upstream="metrics",endpoint="query",status="200",decision="unrestricted"\} \d+/);
    expect(text).toMatch(/lbac_gateway_requests_total\{upstream="metrics",endpoint="query",status="403",decision="deny"\} \d+/);
    expect(text).toMatch(/lbac_gateway_requests_total\{upstream="metrics",endpoint="query",status="401",decision="none"\} \d+/);
    expect(text).toMatch(/lbac_gateway_requests_total\{upstream="",endpoint="unmatched",status="404",decision="none"\} \d+/);
    expect(text).toMatch(/lbac_gateway_rewrite_rejections_total\{upstream="metrics",code="bad_query"\} \d+/);
    for (const stage of ['identity', 'policy', 'rewrite', 'upstream']) expect(text).toContain(`lbac_gateway_stage_duration_seconds_count{stage="${stage}"}`);
    expect(text).toMatch(/lbac_gateway_identity_results_total\{result="accepted",auth="fake"\} \d+/);
    expect(text).toMatch(/lbac_gateway_identity_results_total\{result="rejected",auth=""\} \d+/);
    expect(text).toMatch(new RegExp(`lbac_gateway_policy_info\\{revision="${t.holder.revision}",source="test"\\} 1`));
    expect(text).toMatch(/lbac_gateway_policy_ready 1/);
    expect(text).toMatch(/lbac_gateway_audit_records_total\{result="written"\} \d+/);
  });

  it('every metric documented in docs/operations.md exists in the registry, and every registered one is documented', async () => {
    const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('<!-- metrics -->'), doc.indexOf('<!-- /metrics -->'));
    const documented = new Set([...section.matchAll(/`(lbac_gateway_[a-z_]+)`/g)].map((m) => m[1]!));
    expect(documented.size).toBeGreaterThan(10);
    const { createMetrics } = await import('../../src/server/metrics.ts');
    const registered = new Set((await createMetrics({ defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name));
    expect([...documented].filter((n) => !registered.has(n))).toEqual([]);
    expect([...registered].filter((n) => !documented.has(n))).toEqual([]);
  });
});
