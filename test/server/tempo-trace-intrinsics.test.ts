// upstreams[].refuseTraceLevelIntrinsics: trace-level intrinsics (trace:rootService, rootName, …)
// and those computed from the trace's structure (span:childCount, nestedSet*) describe whole traces,
// other teams' spans included; with the setting on, a restricted subject's TraceQL that reads one is
// refused with a Tempo-style 400 and nothing is forwarded, and search results lose the trace-level
// fields Tempo computes over the whole trace.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { PARTIAL_TRACE_MESSAGE } from '../../src/backends/traces.ts';
import { mixedTrace, spanNamesJson, traceJsonV2 } from '../backends/traces-fixtures.ts';
import { startUpstream, TEST_IDENTITY_AND_TEAMS, testApp, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let on: TestApp;
let off: TestApp;

const config = (refuse: boolean | undefined) =>
  parseConfig(
    `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: traces, kind: tempo, url: "${up.url}", mount: /tempo${refuse === undefined ? '' : `, refuseTraceLevelIntrinsics: ${refuse}`} }
${TEST_IDENTITY_AND_TEAMS}`,
    { env: {} },
  );

beforeAll(async () => {
  up = await startUpstream();
  up.answer = (path) =>
    path.startsWith('/api/v2/traces/')
      ? [200, JSON.stringify({ ...traceJsonV2(mixedTrace), status: 'PARTIAL', message: 'Trace exceeds maximum size of 4242421 bytes, a partial trace is returned', metrics: { inspectedBytes: '9191919' } })]
      : path.endsWith('/values') ? [200, '{"tagValues":[]}'] : path.endsWith('/search/tags') ? [200, '{"scopes":[]}'] : path.startsWith('/api/metrics/') ? [200, '{"series":[]}'] : [200, JSON.stringify(SEARCH_ANSWER)];
  on = await testApp(config(true));
  off = await testApp(config(undefined));
});
afterAll(async () => {
  await on?.app.close();
  await off?.app.close();
  await up?.close();
});
beforeEach(() => {
  up.requests.splice(0);
});

// A search result whose root span is another team's: Tempo computes the root's service and name, the
// trace's start and its duration over the whole trace; the spansets hold the team's matched spans.
const SEARCH_ANSWER = {
  traces: [
    {
      traceID: 'abc',
      rootServiceName: 'payments',
      rootTraceName: 'POST /charge',
      startTimeUnixNano: '1700000000000000000',
      durationMs: 60000,
      spanSets: [{ spans: [{ spanID: 's1', name: 'GET /', startTimeUnixNano: '1700000001000000000', durationNanos: '5000000', attributes: [] }], matched: 1 }],
    },
  ],
  metrics: { inspectedTraces: 1 },
};

const get = (t: TestApp, who: string, url: string) => t.app.inject({ url, headers: { authorization: `Bearer ${who}` } });
const q = (s: string) => encodeURIComponent(s);

describe('refuseTraceLevelIntrinsics', () => {
  const refused = [
    `/tempo/api/search?q=${q('{ trace:rootService = "payments" }')}`,
    `/tempo/api/search?q=${q('{ .a } | select(traceDuration)')}`,
    `/tempo/api/metrics/query_range?q=${q('{} | rate() by (rootServiceName)')}`,
    `/tempo/api/metrics/query?q=${q('{ trace:duration > 1s } | count_over_time()')}`,
    `/tempo/api/v2/search/tags?q=${q('{ rootName = "GET /" }')}`,
    `/tempo/api/v2/search/tag/resource.service.name/values?q=${q('{ trace:rootName = "GET /" }')}`,
    // Computed from the whole trace's structure: a span's children (whoever's), its place in a walk of every span.
    `/tempo/api/search?q=${q('{ span:childCount > 1 }')}`,
    `/tempo/api/search?q=${q('{ .a } | select(nestedSetLeft, nestedSetRight)')}`,
    `/tempo/api/metrics/query_range?q=${q('{ nestedSetParent = -1 } | rate()')}`,
    `/tempo/api/search?q=${q('{ childCount = 0 }')}`,
    // compare() answers with every attribute of the spans it observes: Tempo loads the trace-level ones onto each.
    `/tempo/api/metrics/query_range?q=${q('{ } | compare({ status = error })')}`,
    `/tempo/api/metrics/query?q=${q('{ .a = 1 } | compare({ .b = 2 }, 10)')}`,
    '/tempo/api/v2/search/tag/trace:rootService/values',
    '/tempo/api/v2/search/tag/rootServiceName/values',
    // The tag-based search's bounds on the whole trace's duration.
    `/tempo/api/search?q=${q('{ }')}&minDuration=1s`,
    '/tempo/api/search?maxDuration=5s',
    '/tempo/api/search?minDuration=&minDuration=1ms',
  ];
  it('on: a restricted subject reading one is refused (400, plain text as Tempo), nothing forwarded', async () => {
    for (const url of refused) {
      const r = await get(on, 'alice', url);
      expect(r.statusCode, url).toBe(400);
      expect(r.headers['content-type'], url).toMatch(/^text\/plain/);
      expect(r.body, url).toMatch(/trace-level intrinsic|the whole trace's duration/);
    }
    expect(up.requests).toEqual([]);
  });
  it('on: queries without one pass; admins pass with one', async () => {
    expect((await get(on, 'alice', `/tempo/api/search?q=${q('{ resource.service.name = "api" && span.rootName = "x" }')}`)).statusCode).toBe(200);
    expect((await get(on, 'alice', `/tempo/api/search?q=${q('{ .a = "trace:rootService" }')}`)).statusCode).toBe(200);
    // The parent's id: the trace-by-id answer shows it anyway (parentSpanId).
    expect((await get(on, 'alice', `/tempo/api/search?q=${q('{ span:parentID = "abc" }')}`)).statusCode).toBe(200);
    expect((await get(on, 'carol', `/tempo/api/search?q=${q('{ trace:rootService = "payments" }')}`)).statusCode).toBe(200);
    expect((await get(on, 'carol', `/tempo/api/search?q=${q('{ span:childCount > 1 }')}`)).statusCode).toBe(200);
    expect((await get(on, 'carol', `/tempo/api/metrics/query_range?q=${q('{ } | compare({ status = error })')}`)).statusCode).toBe(200);
    expect((await get(on, 'alice', `/tempo/api/metrics/query_range?q=${q('{ .compare = 1 } | rate()')}`)).statusCode).toBe(200);
    expect(up.requests).toHaveLength(7);
  });
  it('on: a tag lookup whose q the gateway replaces by the policy alone (Traces Drilldown\'s root-span filter) is answered, not refused', async () => {
    const drilldown = q('{nestedSetParent<0 && true}');
    for (const url of [`/tempo/api/v2/search/tags?scope=span&q=${drilldown}`, `/tempo/api/v2/search/tag/resource.service.name/values?q=${drilldown}`]) {
      up.requests.splice(0);
      expect((await get(on, 'alice', url)).statusCode, url).toBe(200);
      // What reaches Tempo is the policy's condition, nothing trace-level.
      for (const r of up.requests) {
        expect(r.params.get('q'), url).toMatch(/k8s\.namespace\.name/);
        expect(r.params.get('q'), url).not.toMatch(/nestedSet/);
      }
      expect(up.requests.length, url).toBeGreaterThan(0);
    }
  });
  it('off (the default): answered as before', async () => {
    for (const url of refused.filter((u) => !u.endsWith('/values'))) expect((await get(off, 'alice', url)).statusCode, url).toBe(200);
  });
  it('minDuration/maxDuration: inert beside the q the gateway always sends (Tempo applies them to tag-based search only), so never forwarded for restricted subjects; admins\' as sent', async () => {
    expect((await get(on, 'alice', '/tempo/api/search?minDuration=')).statusCode).toBe(200);
    expect((await get(off, 'alice', `/tempo/api/search?minDuration=1s&maxDuration=9s&limit=5`)).statusCode).toBe(200);
    expect((await get(on, 'carol', `/tempo/api/search?minDuration=1s`)).statusCode).toBe(200);
    const [empty, offed, admin] = up.requests;
    for (const r of [empty!, offed!]) {
      expect(r.params.has('minDuration')).toBe(false);
      expect(r.params.has('maxDuration')).toBe(false);
      // The policy's own filter: Tempo runs the TraceQL engine, which reads no duration bound.
      expect(r.params.get('q')).toMatch(/k8s\.namespace\.name/);
    }
    expect(offed!.params.get('limit')).toBe('5');
    expect(admin!.params.get('minDuration')).toBe('1s');
  });
  it('on: search results lose the root span\'s service and name; start and duration are the matched spans\'', async () => {
    const r = await get(on, 'alice', `/tempo/api/search?q=${q('{ }')}`);
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ traces: [{ traceID: 'abc', spanSets: SEARCH_ANSWER.traces[0]!.spanSets, startTimeUnixNano: '1700000001000000000', durationMs: 5 }] });
    // Admins get Tempo's answer.
    expect((await get(on, 'carol', `/tempo/api/search?q=${q('{ }')}`)).json()).toEqual(SEARCH_ANSWER);
  });
  it('off: search results keep Tempo\'s trace-level fields (documented residual)', async () => {
    const { metrics: _, ...rest } = SEARCH_ANSWER;
    expect((await get(off, 'alice', `/tempo/api/search?q=${q('{ }')}`)).json()).toEqual(rest);
  });
  it('v2 trace by id: a PARTIAL trace with the team\'s spans; on: no status or message (the whole trace exceeds Tempo\'s size limit); off: the status, in the gateway\'s words', async () => {
    const url = '/tempo/api/v2/traces/0123456789abcdef0123456789abcdef';
    const withheld = await get(on, 'alice', url);
    expect(withheld.statusCode).toBe(200);
    expect(spanNamesJson(withheld.json())).toEqual(['a-root', 'a-db']);
    expect(Object.keys(withheld.json() as object)).toEqual(['trace']);
    const kept = await get(off, 'alice', url);
    expect(kept.json()).toMatchObject({ status: 'PARTIAL', message: PARTIAL_TRACE_MESSAGE });
    expect(kept.body).not.toMatch(/4242421|9191919|exceeds/);
    // Read-time span pruning asked off for restricted subjects; admins get Tempo's answer as it wrote it.
    expect(up.requests.map((r) => r.params.get('span_pruning'))).toEqual(['false', 'false']);
    expect((await get(on, 'carol', url)).json()).toMatchObject({ status: 'PARTIAL', message: expect.stringMatching(/4242421/) });
  });
  it('is for Tempo upstreams only', () => {
    expect(() =>
      parseConfig(
        `
upstreams:
  - { name: logs, kind: loki, url: "http://loki:3100", refuseTraceLevelIntrinsics: true }
${TEST_IDENTITY_AND_TEAMS}`,
        { env: {} },
      ),
    ).toThrow(/refuseTraceLevelIntrinsics is for Tempo upstreams/);
  });
});
