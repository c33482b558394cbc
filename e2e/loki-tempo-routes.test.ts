// Loki and Tempo route tables through the real gateway process. The backends
// here are canned stand-ins that record what they receive (real Loki and Tempo
// cannot run on these machines: docs/operations.md); the rewriting itself is
// covered by test/rewrite and its corpora.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startCannedUpstream, type CannedUpstream } from './harness/canned-upstream.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';
import { mixedTrace, spanNamesJson, spanNamesProto, teamBOnlyTrace, traceByIdProto, traceJsonV1, traceJsonV2, traceProto, type ResourceSpec } from '../test/backends/traces-fixtures.ts';

let loki: CannedUpstream;
let tempo: CannedUpstream;
let gw: GatewayInstance;
let idp: TestIssuer;
const tok: Record<string, string> = {};

const json = (body: unknown): [number, string, string] => [200, 'application/json', JSON.stringify(body)];

// Canned trace-by-id answers in Tempo's documented shapes: protobuf when the
// request's Accept asks for it, JSON otherwise; unknown ids → Tempo's 404.
const MIXED_ID = '0123456789abcdef0123456789abcdef';
const TEAM_B_ID = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';
const TRACES: Record<string, ResourceSpec[]> = { [MIXED_ID]: mixedTrace, [TEAM_B_ID]: teamBOnlyTrace };
function traceAnswer(path: string, accept: string): [number, string, string | Uint8Array] {
  const m = /^\/api\/(v2\/)?traces\/([0-9a-f]+)$/.exec(path);
  const trace = m ? TRACES[m[2]!] : undefined;
  if (!m || trace === undefined) return [404, 'text/plain; charset=utf-8', 'trace not found'];
  const v2 = m[1] !== undefined;
  if (accept.includes('application/protobuf')) return [200, 'application/protobuf', v2 ? traceByIdProto(trace) : traceProto(trace)];
  return json(v2 ? traceJsonV2(trace) : traceJsonV1(trace));
}

beforeAll(async () => {
  loki = await startCannedUpstream((path, req) =>
    path.includes('/label/')
      ? json({ status: 'success', data: ['team-a-web', 'team-b-api'] })
      : path.endsWith('/index/stats')
      ? // Index counters of the streams the query selects (here: by namespace).
        json(req.params.get('query')?.includes('namespace="y"') ? { streams: 1, chunks: 3, bytes: 700, entries: 9 } : { streams: 2, chunks: 2, bytes: 50, entries: 4 })
      : path.endsWith('/labels')
      ? // The label names of the streams the query selects (here: by namespace).
        json({ status: 'success', data: req.params.get('query')?.includes('namespace="y"') ? ['cluster', 'namespace', 'y_only'] : ['app', 'namespace'] })
      : json({ status: 'success', data: { resultType: 'streams', result: [] } }),
  );
  tempo = await startCannedUpstream((path, req) =>
    path.includes('/traces/')
      ? traceAnswer(path, String(req.headers['accept'] ?? ''))
      : path.includes('/values')
      ? json({
          tagValues: [{ type: 'string', value: 'team-a-web' }, { type: 'string', value: 'team-b-api' }, ...(req.params.get('q')?.includes('"y"') ? [{ type: 'string', value: 'y' }] : [])],
          metrics: { inspectedBytes: '7' },
        })
      : path.endsWith('/search/tags')
      ? // The tag names of the spans q selects (here: by namespace), as Tempo's v2 tag API answers.
        json({ scopes: [{ name: 'resource', tags: req.params.get('q')?.includes('"y"') ? ['k8s.cluster.name', 'y.only'] : ['service.name'] }], metrics: { inspectedBytes: '5' } })
      : path.startsWith('/api/metrics/')
      ? // A TraceQL metrics answer with Tempo's counters of the data it read (the whole tenant's).
        json({ series: [{ labels: [], samples: [{ timestampMs: '1000', value: 1 }] }], metrics: { inspectedBytes: '987654', inspectedSpans: '31' } })
      : json({ traces: [], metrics: {} }),
  );
  idp = await createTestIssuer({ issuer: 'https://idp.routes', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [
        { name: 'logs', kind: 'loki', url: loki.url, mount: '/loki' },
        { name: 'traces', kind: 'tempo', url: tempo.url, mount: '/tempo' },
      ],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      // Tempo filters on attributes: map label names per backend kind.
      policy: { attributes: { tempo: { namespace: 'resource.k8s.namespace.name', cluster: 'resource.k8s.cluster.name' } } },
      admins: { groups: ['admins'] },
      teams: {
        'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }], headers: { 'X-Scope-OrgID': 'tenant-a' } },
        'team-dnf': { groups: ['dnf'], selectors: [{ namespace: 'x' }, { namespace: 'y', cluster: 'z' }] },
      },
    },
  });
  tok['alice'] = await idp.mint({ sub: 'alice', groups: ['team-a'] });
  tok['dana'] = await idp.mint({ sub: 'dana', groups: ['dnf'] });
  tok['carol'] = await idp.mint({ sub: 'carol', groups: ['admins'] });
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await loki?.stop();
  await tempo?.stop();
});

beforeEach(() => {
  loki.clear();
  tempo.clear();
});

const get = (path: string, user = 'alice', headers: Record<string, string> = {}) => fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${tok[user]}`, ...headers } });

describe('Loki routes', () => {
  it('query_range: the LogQL query is rewritten and the tenant header is the policy\'s', async () => {
    const q = encodeURIComponent('sum by (level) (count_over_time({app="api"} |= "error" | json [5m]))');
    const res = await get(`/loki/loki/api/v1/query_range?query=${q}&start=1&end=2`, 'alice', { 'X-Scope-OrgID': 'tenant-b' });
    expect(res.status).toBe(200);
    const r = loki.requests.at(-1)!;
    expect(r.path).toBe('/loki/api/v1/query_range');
    expect(r.params.get('query')).toBe('sum by (level) (count_over_time({app="api", namespace=~"team-a-.*"} |= "error" | json [5m]))');
    expect(r.headers['x-scope-orgid']).toBe('tenant-a');
  });

  it('labels and label values without a query get the policy selector; values are filtered', async () => {
    expect((await get('/loki/loki/api/v1/labels?start=1')).status).toBe(200);
    expect(loki.requests.at(-1)!.params.get('query')).toBe('{namespace=~"team-a-.*"}');
    const res = await get('/loki/loki/api/v1/label/namespace/values');
    expect(await res.json()).toEqual({ status: 'success', data: ['team-a-web'] });
    expect(loki.requests.at(-1)!.params.get('query')).toBe('{namespace=~"team-a-.*"}');
    // An empty query (Logs Drilldown without label filters) is "no selector" too.
    for (const ep of ['detected_labels', 'labels', 'index/volume']) {
      expect((await get(`/loki/loki/api/v1/${ep}?query=&start=1`)).status, ep).toBe(200);
      expect(loki.requests.at(-1)!.params.getAll('query'), ep).toEqual(['{namespace=~"team-a-.*"}']);
    }
  });

  it('series match[], index stats/volume, patterns and detected_* carry the policy', async () => {
    await get(`/loki/loki/api/v1/series?match[]=${encodeURIComponent('{app="api"}')}`);
    expect(loki.requests.at(-1)!.params.getAll('match[]')).toEqual(['{app="api", namespace=~"team-a-.*"}']);
    for (const ep of ['index/stats', 'index/volume', 'index/volume_range', 'patterns', 'detected_fields', 'detected_labels', 'detected_field/level/values']) {
      const res = await get(`/loki/loki/api/v1/${ep}?query=${encodeURIComponent('{app="api"}')}`);
      expect(res.status, ep).toBe(200);
      expect(loki.requests.at(-1)!.params.get('query'), ep).toBe('{app="api", namespace=~"team-a-.*"}');
    }
  });

  it('index volume keeps the client\'s grouping: targetLabels from its own selector, unless it sent one', async () => {
    for (const ep of ['index/volume', 'index/volume_range']) {
      await get(`/loki/loki/api/v1/${ep}?query=${encodeURIComponent('{service_name=~".+", env="prod"}')}&limit=100`);
      const r = loki.requests.at(-1)!;
      expect(r.params.get('query'), ep).toBe('{service_name=~".+", env="prod", namespace=~"team-a-.*"}');
      expect(r.params.get('targetLabels'), ep).toBe('service_name,env');
    }
    await get(`/loki/loki/api/v1/index/volume?query=${encodeURIComponent('{service_name=~".+"}')}&targetLabels=level`);
    expect(loki.requests.at(-1)!.params.getAll('targetLabels')).toEqual(['level']);
    await get(`/loki/loki/api/v1/index/volume?query=${encodeURIComponent('{service_name=~".+"}')}&targetLabels=`);
    expect(loki.requests.at(-1)!.params.getAll('targetLabels')).toEqual(['service_name']);
    await get(`/loki/loki/api/v1/index/volume?query=${encodeURIComponent('{service_name=~".+"}')}&aggregateBy=labels`);
    expect(loki.requests.at(-1)!.params.has('targetLabels')).toBe(false);
  });

  it('a bad LogQL query → 400 in Loki\'s format, nothing forwarded; unknown paths → 404; tail without an upgrade → 400', async () => {
    const res = await get(`/loki/loki/api/v1/query?query=${encodeURIComponent('{app="api"')}`);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ status: 'error', errorType: 'bad_data' });
    // Tail is a WebSocket (e2e/loki-tail.test.ts); a plain GET is refused.
    expect((await get('/loki/loki/api/v1/tail?query={a="b"}')).status).toBe(400);
    expect((await get('/loki/loki/api/v1/push')).status).toBe(404);
    expect(loki.requests).toHaveLength(0);
  });

  it('a multi-alternative policy: the label browser and index counters ask once per alternative; what needs one selector is refused, not widened', async () => {
    const res = await get('/loki/loki/api/v1/labels?start=1', 'dana');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'success', data: ['app', 'cluster', 'namespace', 'y_only'] });
    expect(loki.requests.map((r) => r.params.getAll('query')).sort()).toEqual([['{cluster="z", namespace="y"}'], ['{namespace="x"}']]);
    loki.clear();
    // Index counters: the alternatives select disjoint streams (namespace x or y), so one request each, added up.
    const stats = await get('/loki/loki/api/v1/index/stats?start=1', 'dana');
    expect(stats.status).toBe(200);
    expect(await stats.json()).toEqual({ streams: 3, chunks: 5, bytes: 750, entries: 13 });
    expect(loki.requests.map((r) => r.params.getAll('query')).sort()).toEqual([['{cluster="z", namespace="y"}'], ['{namespace="x"}']]);
    // Without `end`, Loki would take its own now per part: the gateway fixes one (Unix ns) for both.
    const ends = loki.requests.map((r) => r.params.getAll('end'));
    expect(ends[0]).toHaveLength(1);
    expect(ends[0]![0]).toMatch(/^\d{19}$/);
    expect(Math.abs(Number(BigInt(ends[0]![0]!) / 1_000_000n) - Date.now())).toBeLessThan(60_000);
    expect(ends[1]).toEqual(ends[0]);
    loki.clear();
    // An `end` the client sent is kept as sent.
    expect((await get('/loki/loki/api/v1/labels?start=1&end=1700000000', 'dana')).status).toBe(200);
    expect(loki.requests.map((r) => r.params.getAll('end'))).toEqual([['1700000000'], ['1700000000']]);
    loki.clear();
    // Detected labels count distinct values: not a sum, refused.
    expect((await get('/loki/loki/api/v1/detected_labels', 'dana')).status).toBe(400);
    expect(loki.requests).toHaveLength(0);
  });
});

describe('Tempo routes', () => {
  it('search: q is rewritten; a missing q searches only allowed spans; legacy tags are refused', async () => {
    await get(`/tempo/api/search?q=${encodeURIComponent('{ span.http.method = "GET" }')}&limit=20`);
    expect(tempo.requests.at(-1)!.params.get('q')).toBe('{ (span.http.method = "GET") && resource.k8s.namespace.name =~ "^(?s:team-a-.*)$" }');
    expect(tempo.requests.at(-1)!.params.get('limit')).toBe('20');
    await get('/tempo/api/search');
    expect(tempo.requests.at(-1)!.params.get('q')).toBe('{ resource.k8s.namespace.name =~ "^(?s:team-a-.*)$" }');
    const legacy = await get('/tempo/api/search?tags=service.name%3Dapi');
    expect(legacy.status).toBe(400);
    expect(legacy.headers.get('content-type')).toMatch(/^text\/plain/);
  });

  it('DNF policies are exact in TraceQL: alternatives become || inside the filter', async () => {
    await get(`/tempo/api/metrics/query_range?q=${encodeURIComponent('{ } | rate()')}`, 'dana');
    const q = tempo.requests.at(-1)!.params.get('q')!;
    expect(q).toBe('{ (resource.k8s.cluster.name = "z" && resource.k8s.namespace.name = "y") || (resource.k8s.namespace.name = "x") } | rate()');
  });

  it('TraceQL metrics answers lose Tempo\'s counters of the data read; a JSON-filtered answer is asked for in JSON', async () => {
    const res = await get(`/tempo/api/metrics/query_range?q=${encodeURIComponent('{ } | rate()')}`, 'alice', { accept: 'application/protobuf' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ series: [{ labels: [], samples: [{ timestampMs: '1000', value: 1 }] }] });
    expect(tempo.requests.at(-1)!.headers['accept']).toBe('application/json');
    // An admin's answer is Tempo's own, in the representation asked for.
    expect(await (await get(`/tempo/api/metrics/query?q=${encodeURIComponent('{ } | rate()')}`, 'carol')).json()).toMatchObject({ metrics: { inspectedBytes: '987654' } });
    expect(tempo.requests.at(-1)!.headers['accept']).toBe('*/*');
  });

  it('tag values are scoped by q and filtered by the policy', async () => {
    const res = await get('/tempo/api/v2/search/tag/resource.k8s.namespace.name/values');
    expect(await res.json()).toEqual({ tagValues: [{ type: 'string', value: 'team-a-web' }] });
    expect(tempo.requests.at(-1)!.params.get('q')).toBe('{ resource.k8s.namespace.name =~ "^(?s:team-a-.*)$" }');
  });

  it('tag APIs: a half-typed q (autocomplete) falls back to the policy alone; a typed filter is kept; v1 (which reads no q) is refused', async () => {
    await get(`/tempo/api/v2/search/tags?q=${encodeURIComponent('{ span.http.method = ')}`);
    expect(tempo.requests.at(-1)!.params.get('q')).toBe('{ resource.k8s.namespace.name =~ "^(?s:team-a-.*)$" }');
    await get(`/tempo/api/v2/search/tags?scope=span&q=${encodeURIComponent('{ resource.service.name = "api" }')}`);
    expect(tempo.requests.at(-1)!.params.get('q')).toBe('{ (resource.service.name = "api") && resource.k8s.namespace.name =~ "^(?s:team-a-.*)$" }');
    // Tempo extracts no condition from a structural query and would list every span's tags: the client's part is dropped.
    await get(`/tempo/api/v2/search/tags?q=${encodeURIComponent('{ .a = "x" } >> { .b = "y" }')}`);
    expect(tempo.requests.at(-1)!.params.get('q')).toBe('{ resource.k8s.namespace.name =~ "^(?s:team-a-.*)$" }');
    const before = tempo.requests.length;
    for (const path of ['/tempo/api/search/tag/k8s.namespace.name/values', '/tempo/api/search/tags']) {
      const v1 = await get(path);
      expect(v1.status, path).toBe(403);
      await v1.arrayBuffer();
    }
    expect(tempo.requests).toHaveLength(before);
    // An admin is not restricted: v1 passes.
    const admin = await get('/tempo/api/search/tags', 'carol');
    expect(admin.status).toBe(200);
    await admin.arrayBuffer();
  });

  it('tag APIs under two alternatives: one request per alternative, each q one filter without ||, the answers merged', async () => {
    const names = await get(`/tempo/api/v2/search/tags?scope=resource&q=${encodeURIComponent('{ span.http.method = "GET" }')}`, 'dana');
    expect(names.status).toBe(200);
    expect(await names.json()).toEqual({ scopes: [{ name: 'resource', tags: ['k8s.cluster.name', 'service.name', 'y.only'] }] });
    const qs = tempo.requests.map((r) => r.params.get('q')).sort();
    expect(qs).toEqual([
      '{ (span.http.method = "GET") && resource.k8s.cluster.name = "z" && resource.k8s.namespace.name = "y" }',
      '{ (span.http.method = "GET") && resource.k8s.namespace.name = "x" }',
    ]);
    expect(tempo.requests.every((r) => r.params.get('scope') === 'resource')).toBe(true);
    tempo.clear();
    // Values of the policy attribute: merged, then filtered to what either alternative allows.
    const values = await get(`/tempo/api/v2/search/tag/${encodeURIComponent('resource."k8s.namespace.name"')}/values`, 'dana');
    expect(await values.json()).toEqual({ tagValues: [{ type: 'string', value: 'y' }] });
    expect(tempo.requests).toHaveLength(2);
  });

  it('metrics need q', async () => {
    const noQ = await get('/tempo/api/metrics/query_range');
    expect(noQ.status).toBe(400);
    expect(tempo.requests).toHaveLength(0);
  });
});

describe('Tempo trace by id: spans outside the policy are removed', () => {
  const PROTO = { accept: 'application/protobuf' };

  it('v2 protobuf (what Grafana sends): team A sees only its spans; the upstream was asked for protobuf, uncompressed', async () => {
    const res = await get(`/tempo/api/v2/traces/${MIXED_ID}?start=1&end=2`, 'alice', PROTO);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/protobuf/);
    expect(spanNamesProto(new Uint8Array(await res.arrayBuffer()), true)).toEqual(['a-root', 'a-db']);
    const r = tempo.requests.at(-1)!;
    expect(r.path).toBe(`/api/v2/traces/${MIXED_ID}`);
    expect(r.headers['accept']).toBe('application/protobuf');
    expect(r.headers['accept-encoding']).toBe('identity');
    expect(r.params.get('start')).toBe('1');
    expect(r.params.get('end')).toBe('2');
    expect(r.headers['x-scope-orgid']).toBe('tenant-a');
  });

  it('v1 protobuf, v1 JSON and v2 JSON: the same spans', async () => {
    const v1p = await get(`/tempo/api/traces/${MIXED_ID}`, 'alice', PROTO);
    expect(spanNamesProto(new Uint8Array(await v1p.arrayBuffer()))).toEqual(['a-root', 'a-db']);
    const v1j = await get(`/tempo/api/traces/${MIXED_ID}`, 'alice', { accept: 'application/json' });
    expect(v1j.headers.get('content-type')).toMatch(/^application\/json/);
    expect(spanNamesJson(await v1j.json())).toEqual(['a-root', 'a-db']);
    const v2j = await get(`/tempo/api/v2/traces/${MIXED_ID}`);
    const body = (await v2j.json()) as { status?: string };
    expect(spanNamesJson(body)).toEqual(['a-root', 'a-db']);
    expect(body.status).toBe('COMPLETE');
  });

  it('a trace with only team B\'s spans, or an unknown trace → 404 "trace not found"', async () => {
    for (const [path, headers] of [
      [`/tempo/api/v2/traces/${TEAM_B_ID}`, PROTO],
      [`/tempo/api/traces/${TEAM_B_ID}`, {}],
      [`/tempo/api/v2/traces/ffff`, PROTO],
    ] as const) {
      const res = await get(path, 'alice', headers);
      expect(res.status, path).toBe(404);
      expect(res.headers.get('content-type'), path).toMatch(/^text\/plain/);
      expect(await res.text(), path).toBe('trace not found');
    }
  });

  it('the unrestricted admin sees every span, unfiltered', async () => {
    const res = await get(`/tempo/api/v2/traces/${MIXED_ID}`, 'carol', PROTO);
    expect(spanNamesProto(new Uint8Array(await res.arrayBuffer()), true)).toEqual(['a-root', 'a-db', 'b-handler', 'b-cache', 'p-ingress']);
    const b = await get(`/tempo/api/traces/${TEAM_B_ID}`, 'carol');
    expect(spanNamesJson(await b.json())).toEqual(['b-only']);
  });

  it('invalid trace ids → 400, not forwarded; a DNF policy filters too', async () => {
    for (const id of ['xyz', '0'.repeat(33), '..%2F..%2Fapi%2Fsearch']) {
      const res = await get(`/tempo/api/v2/traces/${id}`);
      expect(res.status, id).toBe(400);
    }
    expect(tempo.requests).toHaveLength(0);
    // dana: namespace x, or namespace y in cluster z — none of the mixed trace's spans.
    expect((await get(`/tempo/api/v2/traces/${MIXED_ID}`, 'dana', PROTO)).status).toBe(404);
  });
});
