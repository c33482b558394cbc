// Grafana-datasource replay (issue 5, item 6): the requests Grafana's Loki and
// Tempo datasources send — method, path, parameters in Grafana's order and
// encoding, and Grafana's headers — replayed through the real gateway process
// as two users of different teams. The catalogue, with the Grafana source each
// shape was confirmed against, is e2e/fixtures/grafana/requests.ts.
//
// Real Loki and Tempo cannot run on these machines (AGPL; docs/operations.md):
// the backends are canned stand-ins that record what they receive and answer
// in the backends' documented shapes (e2e/fixtures/grafana/answers.ts). For
// every replay the suite checks what reached the backend — the path, every
// non-query parameter unchanged, every LogQL stream selector / TraceQL spanset
// filter carrying the team's matcher (read by the independent test oracles,
// not by the gateway's rewriter), the policy's tenant header instead of the
// client's, no Authorization / X-ID-Token / X-Grafana-Id, Grafana's informational headers
// kept — and what Grafana gets back: status, content type and a body Grafana
// can read, filtered to the team where the gateway filters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCannedUpstream, type CannedRequest, type CannedUpstream } from './harness/canned-upstream.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';
import { lokiAnswer, tempoAnswer } from './fixtures/grafana/answers.ts';
import {
  LOKI_REQUESTS,
  MIXED_ID,
  NOW_S,
  TEAM_A_ONLY_ID,
  TEAM_B_ONLY_ID,
  TEAMS,
  TEMPO_REQUESTS,
  UNSUPPORTED,
  type GrafanaRequest,
  type Team,
  type UnsupportedRequest,
} from './fixtures/grafana/requests.ts';
import { carries, oracleParse, oracleSelectors } from '../test/rewrite/logql-oracle.ts';
import { filterEnforced, filterText, oracleAnalyze, type Tok } from '../test/rewrite/traceql-oracle.ts';
import { spanNamesJson, spanNamesProto } from '../test/backends/traces-fixtures.ts';
import type { Matcher } from '../src/rewrite/matcher.ts';

const MOUNT = { loki: '/loki', tempo: '/tempo' } as const;
const DS_UID = { loki: 'lbac-loki', tempo: 'lbac-tempo' } as const;
const QUERY_GROUP = 'd26e337d-cb53-481a-9212-0112537b3c1a';
/** Grafana's informational headers: forwarded as sent (never used for authorisation). */
const PASSED_HEADERS = ['x-grafana-org-id', 'x-datasource-uid', 'x-dashboard-uid', 'x-panel-id', 'x-query-group-id', 'x-query-tags', 'x-loki-response-encoding-flags', 'accept', 'user-agent'];
/** Span names of the mixed trace each team may see (test/backends/traces-fixtures.ts mixedTrace). */
const MIXED_SPANS: Record<string, string[]> = { 'team-a': ['a-root', 'a-db'], 'team-b': ['b-handler', 'b-cache'] };

/** A user in team-eu and team-us: Grafana's requests built as for team A, sent with her token. */
const TWO_TEAMS: Team = { ...(TEAMS[0] as Team), name: 'team-eu + team-us', user: 'dana' };
const DANA_ALTERNATIVES: readonly (readonly Matcher[])[] = [
  [{ name: 'cluster', op: '=', value: 'eu' }, { name: 'namespace', op: '=', value: 'team-a-web' }],
  [{ name: 'cluster', op: '=', value: 'us' }, { name: 'namespace', op: '=', value: 'team-b-api' }],
];

let loki: CannedUpstream;
let tempo: CannedUpstream;
let gw: GatewayInstance;
let idp: TestIssuer;
const access: Record<string, string> = {};
const idToken: Record<string, string> = {};

beforeAll(async () => {
  loki = await startCannedUpstream(lokiAnswer);
  tempo = await startCannedUpstream(tempoAnswer);
  idp = await createTestIssuer({ issuer: 'https://idp.grafana-replay', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [
        { name: 'logs', kind: 'loki', url: loki.url, mount: MOUNT.loki },
        { name: 'traces', kind: 'tempo', url: tempo.url, mount: MOUNT.tempo },
      ],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      policy: { attributes: { tempo: { namespace: 'resource.k8s.namespace.name' } } },
      teams: {
        'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }], headers: { 'X-Scope-OrgID': 'tenant-a' } },
        'team-b': { groups: ['team-b'], selectors: [{ namespace: ['team-b-api', 'team-b-db'] }], headers: { 'X-Scope-OrgID': 'tenant-b' } },
        // Two teams whose selectors differ in two labels: no single stream selector expresses their union.
        'team-eu': { groups: ['team-eu'], selectors: [{ cluster: 'eu', namespace: 'team-a-web' }], headers: { 'X-Scope-OrgID': 'tenant-a' } },
        'team-us': { groups: ['team-us'], selectors: [{ cluster: 'us', namespace: 'team-b-api' }], headers: { 'X-Scope-OrgID': 'tenant-a' } },
      },
    },
  });
  access[TWO_TEAMS.user] = await idp.mint({ sub: 'u-dana', preferred_username: 'dana', groups: ['team-eu', 'team-us'] });
  idToken[TWO_TEAMS.user] = await idp.mint({ sub: 'u-dana', aud: 'grafana', nonce: 'n' });
  for (const t of TEAMS) {
    access[t.user] = await idp.mint({ sub: `u-${t.user}`, preferred_username: t.user, groups: [...t.groups] });
    // Grafana forwards the ID token next to the access token; the gateway must not pass it on.
    idToken[t.user] = await idp.mint({ sub: `u-${t.user}`, aud: 'grafana', nonce: 'n' });
  }
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await loki?.stop();
  await tempo?.stop();
  idp?.cleanup();
});

/** The other team's tenant (and a pipe list of both): what a client might try to set itself. */
const spoofedTenant = (t: Team): string => (t.tenant === 'tenant-a' ? 'tenant-b|tenant-a' : 'tenant-a');

/** The headers Grafana's server sends for this request (see `Via` in the catalogue). */
function grafanaHeaders(row: GrafanaRequest, t: Team): Record<string, string> {
  const h: Record<string, string> = {
    authorization: `Bearer ${access[t.user]}`,
    'x-id-token': idToken[t.user]!,
    // With ID forwarding on, Grafana also sends its own signed user token.
    'x-grafana-id': idToken[t.user]!,
    'user-agent': 'Grafana/12.1.0',
    'accept-encoding': 'gzip',
    'x-scope-orgid': spoofedTenant(t),
  };
  if (row.via === 'query' || row.via === 'health' || row.via === 'proxy') {
    h['x-grafana-org-id'] = '1';
    h['x-datasource-uid'] = DS_UID[row.ds];
  }
  if (row.panel === 'explore') h['x-query-group-id'] = QUERY_GROUP;
  if (row.panel === 'dashboard') Object.assign(h, { 'x-dashboard-uid': 'lbac-overview', 'x-panel-id': '7' });
  for (const [k, v] of Object.entries(row.headers ?? {})) h[k.toLowerCase()] = v;
  return h;
}

interface Replayed {
  status: number;
  contentType: string;
  body: Buffer;
  sentHeaders: Record<string, string>;
  sentParams: URLSearchParams;
  forwarded: CannedRequest[];
}

async function send(ds: 'loki' | 'tempo', method: string, path: string, params: ReadonlyArray<readonly [string, string]>, headers: Record<string, string>): Promise<Replayed> {
  loki.clear();
  tempo.clear();
  const sentParams = new URLSearchParams(params.map(([k, v]): [string, string] => [k, v]));
  const qs = sentParams.toString();
  const res = await fetch(`${gw.url}${MOUNT[ds]}${path}${qs === '' ? '' : `?${qs}`}`, { method, headers, ...(method === 'POST' ? { body: '' } : {}) });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', body, sentHeaders: headers, sentParams, forwarded: [...(ds === 'loki' ? loki : tempo).requests] };
}

const replay = (row: GrafanaRequest, t: Team): Promise<Replayed> => send(row.ds, 'GET', row.path(t), row.params(t), grafanaHeaders(row, t));

// ---------------------------------------------------------------------------
// Enforcement, read by the independent oracles (test/rewrite/*-oracle.ts)
// ---------------------------------------------------------------------------

/** Every stream selector carries the team's matcher, and keeps the user's own matchers. */
function expectLogQLEnforced(forwarded: string, original: string | null, m: Matcher): void {
  oracleParse(forwarded); // Grafana's LogQL grammar, strict, agrees with the lexical scan
  const out = oracleSelectors(forwarded);
  for (const s of out) expect(carries(s, m), `${forwarded.slice(s.from, s.to)} lacks ${m.name}${m.op}"${m.value}"`).toBe(true);
  if (original === null) {
    expect(out.length, `${forwarded}: the gateway's own selector`).toBe(1);
    return;
  }
  const inp = oracleSelectors(original);
  expect(out.length, `${original} → ${forwarded}`).toBe(inp.length);
  inp.forEach((s, i) => {
    for (const om of s.matchers) {
      expect(out[i]!.matchers.some((x) => x.name === om.name && x.op === om.op && x.value === om.value), `${om.name}${om.op} kept in ${forwarded}`).toBe(true);
    }
  });
}

const T = (k: Tok['k'], v: string): Tok => ({ k, v, from: 0, to: 0 });

/** Every spanset filter is `C` or `( … ) && C`, C being the team's matcher. */
function expectTraceQLEnforced(forwarded: string, m: Matcher): void {
  const r = oracleAnalyze(forwarded);
  // Policy regexes are written anchored (src/rewrite/traceql.ts enforcedRegex).
  const clause = [T('field', m.name), T('op', m.op), T('str', m.op === '=~' || m.op === '!~' ? `^(?s:${m.value})$` : m.value)];
  expect(r.filters.length, forwarded).toBeGreaterThan(0);
  for (const f of r.filters) expect(filterEnforced(r, f, clause, clause), `unenforced filter ${filterText(forwarded, r, f)} in ${forwarded}`).toBe(true);
  expect(r.badHead, `a pipeline without a leading filter in ${forwarded}`).toBe(false);
}

/** What reached the backend: one request, the policy's enforcement and tenant, Grafana's parameters and headers otherwise intact. */
function expectForwarded(row: GrafanaRequest, t: Team, r: Replayed): CannedRequest {
  expect(r.forwarded, 'exactly one upstream request').toHaveLength(1);
  const got = r.forwarded[0]!;
  expect(got.method).toBe('GET');
  expect(got.path).toBe(row.path(t));
  // Tenant from the policy; the client's copy and its credentials never reach the backend.
  expect(got.headers['x-scope-orgid']).toBe(t.tenant);
  expect(got.headers['authorization']).toBeUndefined();
  expect(got.headers['x-id-token']).toBeUndefined();
  expect(got.headers['x-grafana-id']).toBeUndefined();
  for (const h of PASSED_HEADERS) if (r.sentHeaders[h] !== undefined) expect(got.headers[h], h).toBe(r.sentHeaders[h]);
  // Parameters: Grafana's non-query ones untouched, nothing else added but the enforced ones.
  for (const k of new Set(r.sentParams.keys())) if (!row.enforced.includes(k)) expect(got.params.getAll(k), k).toEqual(r.sentParams.getAll(k));
  for (const k of new Set(got.params.keys())) expect(r.sentParams.has(k) || row.enforced.includes(k) || (row.derived ?? []).includes(k), `unexpected parameter ${k}`).toBe(true);
  for (const name of row.enforced) {
    const values = got.params.getAll(name);
    expect(values, `${name} forwarded once`).toHaveLength(1);
    if (row.ds === 'loki') expectLogQLEnforced(values[0]!, r.sentParams.get(name), t.loki);
    else expectTraceQLEnforced(values[0]!, t.tempo);
  }
  for (const [k, v] of Object.entries(row.forwarded?.(t) ?? {})) expect(got.params.get(k), k).toBe(v);
  return got;
}

const jsonBody = (r: Replayed): unknown => JSON.parse(r.body.toString('utf8'));
const cannedJson = (answer: [number, string, string | Uint8Array]): unknown => JSON.parse(String(answer[2]));

// ---------------------------------------------------------------------------
// Loki
// ---------------------------------------------------------------------------

describe.each(TEAMS)('Loki datasource as $user ($name)', (t) => {
  it.each(LOKI_REQUESTS)('$id: $feature', async (row) => {
    const r = await replay(row, t);
    expect(r.status, r.body.toString()).toBe(200);
    const got = expectForwarded(row, t, r);
    // Grafana parses every Loki answer as JSON (converter.ReadPrometheusStyleResult, or the resource body).
    expect(r.contentType).toMatch(/^application\/json/);
    let expected = cannedJson(lokiAnswer(got.path, got)) as Record<string, unknown>;
    // Label values are also filtered on the way back: only this team's namespaces.
    if (got.path.endsWith('/label/namespace/values')) expected = { ...expected, data: [...t.namespaces] };
    expect(jsonBody(r)).toEqual(expected);
  });
});

// ---------------------------------------------------------------------------
// Tempo
// ---------------------------------------------------------------------------

describe('Loki datasource as a user of two teams no single stream selector covers', () => {
  const outcomes = { split: [] as string[], single: [] as string[], refused: [] as string[] };
  it.each(LOKI_REQUESTS)('$id: answered from requests that each carry one whole team, or refused with nothing sent', async (row) => {
    const r = await replay(row, TWO_TEAMS);
    if (r.status === 400) {
      expect(r.forwarded, 'a refusal sends nothing').toHaveLength(0);
      outcomes.refused.push(row.id);
      return;
    }
    expect(r.status, r.body.toString('utf8').slice(0, 300)).toBe(200);
    expect(r.forwarded.length).toBeGreaterThan(0);
    (r.forwarded.length > 1 ? outcomes.split : outcomes.single).push(row.id);
    for (const got of r.forwarded) {
      expect(got.headers['x-scope-orgid']).toBe('tenant-a');
      expect(got.headers['authorization']).toBeUndefined();
      for (const name of row.enforced) {
        const values = got.params.getAll(name);
        // match[] is a list Loki unions (one selector per team); `query` is one value per request.
        if (name === 'match[]') expect(values.length).toBeGreaterThan(0);
        else expect(values, `${name} forwarded once per request`).toHaveLength(1);
        for (const value of values) {
          oracleParse(value);
          for (const sel of oracleSelectors(value)) {
            expect(DANA_ALTERNATIVES.some((g) => g.every((m) => carries(sel, m))), `${value.slice(sel.from, sel.to)} carries one whole team`).toBe(true);
          }
        }
      }
    }
    // Index totals: the teams' streams are disjoint (cluster eu or us), so the parts' answers add up.
    const canned = (path: string): unknown => cannedJson(lokiAnswer(path, r.forwarded[0]!));
    if (row.id === 'loki-index-stats') {
      const one = canned('/loki/api/v1/index/stats') as Record<string, number>;
      expect(jsonBody(r)).toEqual(Object.fromEntries(Object.entries(one).map(([k, v]) => [k, v * r.forwarded.length])));
    }
    if (row.id === 'loki-index-volume') {
      const one = canned('/loki/api/v1/index/volume') as { data: { result: { metric: unknown; value: [number, string] }[] } };
      const doubled = one.data.result.map((x) => ({ metric: x.metric, value: [x.value[0], String(Number(x.value[1]) * r.forwarded.length)] }));
      expect((jsonBody(r) as typeof one).data.result).toEqual(doubled);
    }
  });
  it('the label browser, Explore\'s log queries and the index totals are split per team; only the other aggregates are refused', () => {
    expect(outcomes.split).toEqual(
      expect.arrayContaining(['loki-explore-logs', 'loki-infinite-scroll', 'loki-explore-forward', 'loki-logs-sample', 'loki-labels', 'loki-labels-scoped', 'loki-label-values', 'loki-label-values-scoped', 'loki-index-stats', 'loki-index-volume']),
    );
    // Metric queries whose teams `cluster` tells apart: one exact "or" query.
    expect(outcomes.single).toEqual(expect.arrayContaining(['loki-logs-volume', 'loki-dashboard-metric']));
    // Per-stream aggregates that are not sums (distinct counts, clustered patterns): separate answers do not combine.
    expect([...outcomes.refused].sort()).toEqual(['loki-detected-field-values', 'loki-detected-fields', 'loki-detected-labels', 'loki-detected-labels-probe', 'loki-patterns']);
  });
});

describe.each(TEAMS)('Tempo datasource as $user ($name)', (t) => {
  it.each(TEMPO_REQUESTS)('$id: $feature', async (row) => {
    const r = await replay(row, t);
    expect(r.status, r.body.toString()).toBe(200);
    const got = expectForwarded(row, t, r);
    if (row.trace === 'protobuf-v2') {
      // What Grafana's backend decodes (tempopb.TraceByIDResponse): only this team's spans.
      expect(got.headers['accept']).toBe('application/protobuf');
      expect(r.contentType).toMatch(/^application\/protobuf/);
      expect(spanNamesProto(new Uint8Array(r.body), true)).toEqual(MIXED_SPANS[t.name]);
      return;
    }
    if (row.trace === 'json-v2') {
      expect(r.contentType).toMatch(/^application\/json/);
      const body = jsonBody(r) as { status?: string };
      expect(spanNamesJson(body)).toEqual(MIXED_SPANS[t.name]);
      expect(body.status).toBe('COMPLETE');
      return;
    }
    if (got.path === '/api/echo') {
      // testDatasource only needs a 2xx.
      expect(r.body.toString()).toBe('echo');
      return;
    }
    expect(r.contentType).toMatch(/^application\/json/);
    const expected = cannedJson(tempoAnswer(got.path, got)) as { tagValues?: unknown[] };
    if (got.path === '/api/v2/search/tag/resource.k8s.namespace.name/values') {
      expect(jsonBody(r)).toEqual({ tagValues: t.namespaces.map((value) => ({ type: 'string', value })) });
    } else if (got.path === '/api/search/tag/k8s.namespace.name/values') {
      expect(jsonBody(r)).toEqual({ tagValues: [...t.namespaces] });
    } else if (got.path === '/api/search' || got.path === '/api/v2/search/tags' || got.path.startsWith('/api/metrics/')) {
      // Rebuilt for a restricted subject: Tempo's metrics (the whole tenant's bytes and jobs) left out.
      const { metrics: _tenantWide, ...rest } = expected as Record<string, unknown>;
      expect(jsonBody(r)).toEqual(rest);
    } else {
      expect(jsonBody(r)).toEqual(expected);
    }
  });

  it('trace view with no span of this team: v2 → 404, then Grafana\'s v1 fallback → 404, in Tempo\'s words', async () => {
    const other = t.name === 'team-a' ? TEAM_B_ONLY_ID : TEAM_A_ONLY_ID;
    const row = TEMPO_REQUESTS.find((x) => x.id === 'tempo-trace-v2-proto')!;
    const headers = grafanaHeaders(row, t);
    const range = row.params(t);
    // pkg/tsdb/tempo/trace.go: v2 first; on 404 the same request on /api/traces/<id>.
    for (const path of [`/api/v2/traces/${other}`, `/api/traces/${other}`]) {
      const r = await send('tempo', 'GET', path, range, headers);
      expect(r.status, path).toBe(404);
      expect(r.contentType, path).toMatch(/^text\/plain/);
      expect(r.body.toString(), path).toBe('trace not found');
      // The trace was fetched (the gateway decides on the spans), with the policy's tenant.
      expect(r.forwarded, path).toHaveLength(1);
      expect(r.forwarded[0]!.headers['x-scope-orgid']).toBe(t.tenant);
    }
  });

  it('the same trace id the other team gets spans of still shows only this team\'s spans over v1 (the fallback path)', async () => {
    const row = TEMPO_REQUESTS.find((x) => x.id === 'tempo-trace-v2-proto')!;
    const r = await send('tempo', 'GET', `/api/traces/${MIXED_ID}`, row.params(t), grafanaHeaders(row, t));
    expect(r.status).toBe(200);
    expect(spanNamesProto(new Uint8Array(r.body))).toEqual(MIXED_SPANS[t.name]);
  });

  it('an unknown trace id → Tempo\'s own 404, passed through', async () => {
    const row = TEMPO_REQUESTS.find((x) => x.id === 'tempo-trace-v2-proto')!;
    const r = await send('tempo', 'GET', '/api/v2/traces/0000000000000000000000000000dead', row.params(t), grafanaHeaders(row, t));
    expect(r.status).toBe(404);
    expect(r.contentType).toMatch(/^text\/plain/);
  });
});

// ---------------------------------------------------------------------------
// What Grafana sends that the gateway does not serve
// ---------------------------------------------------------------------------

describe.each(TEAMS)('requests the gateway refuses, as $user', (t) => {
  it.each(UNSUPPORTED)('$id ($status): $feature', async (u: UnsupportedRequest) => {
    const headers = { authorization: `Bearer ${access[t.user]}`, 'x-grafana-org-id': '1', 'user-agent': 'Grafana/12.1.0', ...u.headers };
    const r = await send(u.ds, u.method, u.path, u.params, headers);
    expect(r.status, r.body.toString()).toBe(u.status);
    expect(r.forwarded, 'nothing forwarded').toHaveLength(0);
    if (u.ds === 'tempo') {
      // Tempo answers errors as plain text; so does the gateway on Tempo's mount.
      expect(r.contentType).toMatch(/^text\/plain/);
      expect(r.body.toString().trim()).not.toBe('');
    } else {
      // Loki answers errors as JSON; Grafana shows `message` when present, else the whole body.
      expect(r.contentType).toMatch(/^application\/json/);
      const body = jsonBody(r) as { status?: string; error?: unknown; message?: unknown };
      expect(body.status).toBe('error');
      expect(typeof (body.message ?? body.error)).toBe('string');
    }
  });
});

describe('the catalogue', () => {
  it('every replayed request names the Grafana source its shape was confirmed against, and the times are Grafana\'s units', () => {
    for (const row of [...LOKI_REQUESTS, ...TEMPO_REQUESTS]) {
      expect(row.source.length, row.id).toBeGreaterThan(10);
      for (const t of TEAMS) {
        const p = new URLSearchParams(row.params(t).map(([k, v]): [string, string] => [k, v]));
        for (const k of ['start', 'end', 'time']) {
          const v = p.get(k);
          if (v === null || /T/.test(v)) continue; // ISO times (Logs Drilldown)
          // Loki: nanoseconds (19 digits, or the 1 s..4 s health-check range); Tempo: seconds (10 digits).
          if (row.ds === 'loki') expect(v, `${row.id} ${k}`).toMatch(/^(\d{19}|[1-9]000000000)$/);
          else expect(v, `${row.id} ${k}`).toMatch(/^\d{10}$/);
        }
      }
    }
    expect(NOW_S).toBe(1_760_000_000);
  });
});
