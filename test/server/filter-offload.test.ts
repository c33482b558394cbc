// Large upstream answers are filtered on a worker thread (src/server/filter-offload.ts): the same
// result as filtering inline, and the event loop keeps serving other requests meanwhile.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { routeOf } from '../../src/backends/tables.ts';
import { responseFilterOf } from '../../src/backends/routes.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { GatewayError, QueryError } from '../../src/errors.ts';
import { assertFilterWorker, closeFilterPool, filterAnswer, FilterThread, mergeAnswers, OFFLOAD_MIN_BYTES, type FilterTask } from '../../src/server/filter-offload.ts';
import { mergeParts } from '../../src/server/merge-parts.ts';
import { mixedTrace, spanNamesJson, spanNamesProto, traceByIdProto, traceJsonV1, type ResourceSpec } from '../backends/traces-fixtures.ts';
import { startUpstream, SUBJECTS, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

const TEAM_A: SelectorPolicy = [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]];
const utf8 = new TextEncoder();

/** A label-values answer of about `bytes`, every fourth value team-a's. */
function labelValues(bytes: number): string {
  const data: string[] = [];
  for (let i = 0, size = 0; size < bytes; i++) {
    const v = `${i % 4 === 0 ? 'team-a' : 'team-b'}-ns-${i}`;
    data.push(v);
    size += v.length + 3;
  }
  return JSON.stringify({ status: 'success', data });
}

const task = (kind: FilterTask['kind'], endpoint: string, body: Uint8Array, contentType: string, policy: SelectorPolicy, pathParams: Record<string, string> = {}): FilterTask => ({
  kind,
  endpoint,
  raw: body,
  contentType,
  ctx: { policy, pathParams },
});

afterAll(() => closeFilterPool());

describe('filterAnswer', () => {
  it('filters a large answer on the thread exactly as inline', async () => {
    const filter = responseFilterOf(routeOf('prometheus', 'label_values')!)!;
    const raw = utf8.encode(labelValues(2 * OFFLOAD_MIN_BYTES));
    const inline = filter(raw, 'application/json', { policy: TEAM_A, pathParams: { name: 'namespace' } });
    // The bytes are transferred to the thread: hand it a copy.
    const offloaded = await filterAnswer(filter, task('prometheus', 'label_values', raw.slice(), 'application/json', TEAM_A, { name: 'namespace' }));
    expect(offloaded).toEqual(inline);
    const values = (JSON.parse(String(offloaded.body)) as { data: string[] }).data;
    expect(values.length).toBeGreaterThan(10_000);
    expect(values.every((v) => v.startsWith('team-a-'))).toBe(true);
  });

  it('filters large traces (JSON and protobuf) on the thread exactly as inline', async () => {
    const policy: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=~', value: 'team-a-.*' }]];
    // The mixed trace, repeated until it is large: team-a's spans kept, team-b's removed.
    const big: ResourceSpec[] = Array.from({ length: 1300 }, () => mixedTrace).flat();
    const json = utf8.encode(JSON.stringify(traceJsonV1(big)));
    const proto = traceByIdProto(big);
    for (const [endpoint, body, type] of [
      ['trace_by_id', json, 'application/json'],
      ['trace_by_id_v2', proto, 'application/protobuf'],
    ] as const) {
      expect(body.byteLength).toBeGreaterThanOrEqual(OFFLOAD_MIN_BYTES);
      const filter = responseFilterOf(routeOf('tempo', endpoint)!)!;
      const inline = filter(body, type, { policy, pathParams: {} });
      const offloaded = await filterAnswer(filter, task('tempo', endpoint, body.slice(), type, policy));
      expect(offloaded.status).toBe(inline.status);
      if (type === 'application/json') expect(spanNamesJson(JSON.parse(String(offloaded.body)))).toEqual(spanNamesJson(JSON.parse(String(inline.body))));
      else expect(spanNamesProto(offloaded.body as Uint8Array, true)).toEqual(spanNamesProto(inline.body as Uint8Array, true));
    }
  });

  it('filters small answers inline, and fails closed when the thread cannot filter', async () => {
    const filter = responseFilterOf(routeOf('prometheus', 'label_values')!)!;
    const small = utf8.encode(labelValues(1000));
    const r = await filterAnswer(filter, task('prometheus', 'label_values', small, 'application/json', TEAM_A, { name: 'namespace' }));
    expect(small.byteLength).toBeGreaterThan(0); // not transferred: still readable
    expect((JSON.parse(String(r.body)) as { data: string[] }).data.every((v) => v.startsWith('team-a-'))).toBe(true);
    // Not JSON: the thread's filter throws, and so does the call (the gateway answers 502).
    const junk = new Uint8Array(OFFLOAD_MIN_BYTES).fill(0x7b);
    await expect(filterAnswer(filter, task('prometheus', 'label_values', junk, 'application/json', TEAM_A, { name: 'namespace' }))).rejects.toThrow();
    // A route that has no filter: refused on the thread, never answered unfiltered.
    await expect(filterAnswer(filter, task('prometheus', 'query', new Uint8Array(OFFLOAD_MIN_BYTES), 'application/json', TEAM_A))).rejects.toThrow(/no response filter/);
  });

  it('refuses more waiting answers than it may hold (503 overloaded), and answers the rest', async () => {
    const filter = responseFilterOf(routeOf('prometheus', 'label_values')!)!;
    const raw = utf8.encode(labelValues(2 * OFFLOAD_MIN_BYTES));
    const results = await Promise.allSettled(
      Array.from({ length: 14 }, () => filterAnswer(filter, task('prometheus', 'label_values', raw.slice(), 'application/json', TEAM_A, { name: 'namespace' }))),
    );
    const refused = results.filter((r) => r.status === 'rejected');
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'overloaded', status: 503 });
    expect(results.filter((r) => r.status === 'fulfilled').length).toBeGreaterThanOrEqual(8);
  });
});

describe('FilterThread', () => {
  it('a thread that cannot start rejects the waiting answers (→ 502), never hangs them or the process', async () => {
    const missing = new URL('./no-such-filter-worker.js', import.meta.url);
    expect(() => assertFilterWorker(missing)).toThrow(/module is missing/);
    expect(() => assertFilterWorker()).not.toThrow();
    const thread = new FilterThread(missing);
    try {
      const raw = () => new Uint8Array(OFFLOAD_MIN_BYTES);
      const waiting = [thread.run(task('prometheus', 'label_values', raw(), 'application/json', TEAM_A)), thread.run(task('prometheus', 'label_values', raw(), 'application/json', TEAM_A))];
      for (const r of await Promise.allSettled(waiting)) expect(r.status).toBe('rejected');
      // And again: a new attempt, rejected the same way.
      await expect(thread.run(task('prometheus', 'label_values', raw(), 'application/json', TEAM_A))).rejects.toThrow();
    } finally {
      await thread.close();
    }
  });
});

describe('FilterThread out of memory', () => {
  it('a thread that runs out of heap fails its answer (→ 502), not the process; the next answer gets a new thread', async () => {
    // A small heap, and an answer that parses into far more than it: ≈ 8 MB of short distinct values.
    const thread = new FilterThread(undefined, { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 });
    try {
      const policy: SelectorPolicy = [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]];
      const huge = utf8.encode(labelValues(8 * 1024 * 1024));
      const err = await thread.run(task('prometheus', 'label_values', huge, 'application/json', policy, { name: 'namespace' })).then(
        () => undefined,
        (e: unknown) => e as { code?: string },
      );
      expect(err?.code).toBe('ERR_WORKER_OUT_OF_MEMORY');
      const small = utf8.encode(JSON.stringify({ status: 'success', data: ['team-a-x', 'team-b-y'] }));
      const next = await thread.run(task('prometheus', 'label_values', small, 'application/json', policy, { name: 'namespace' }));
      expect(JSON.parse(String(next.body))).toEqual({ status: 'success', data: ['team-a-x'] });
    } finally {
      await thread.close();
    }
  }, 60_000);
});

describe('mergeAnswers (a fan-out\'s parts merged)', () => {
  /** A raw-samples answer (Prometheus /api/v1/query of `x[5m]`) of `series` series, labels `ns` and `i`. */
  const matrix = (ns: string, series: number, from = 0): Uint8Array =>
    utf8.encode(
      JSON.stringify({
        status: 'success',
        data: { resultType: 'matrix', result: Array.from({ length: series }, (_, k) => ({ metric: { __name__: 'x', ns, i: String(from + k) }, values: Array.from({ length: 20 }, (_, t) => [1700000000 + t * 15, String(t)]) })) },
      }),
    );
  const promMerge = routeOf('prometheus', 'query')!.fanOut!.merge!;
  const volumeMerge = routeOf('loki', 'index_volume')!.fanOut!.merge!;

  it('large parts are merged on the thread exactly as inline (and small ones inline)', async () => {
    // Overlapping parts: series 1500–2999 of "a" are in both.
    const parts = [matrix('a', 3000), matrix('a', 3000, 1500), matrix('b', 2000)];
    expect(parts.reduce((n, p) => n + p.byteLength, 0)).toBeGreaterThanOrEqual(OFFLOAD_MIN_BYTES);
    const inline = mergeParts(promMerge, parts, 'limit=0');
    const offloaded = await mergeAnswers(promMerge, { kind: 'prometheus', endpoint: 'query', parts: parts.map((p) => p.slice()), params: 'limit=0' });
    expect(Buffer.from(offloaded).equals(Buffer.from(inline))).toBe(true);
    expect((JSON.parse(Buffer.from(offloaded).toString()) as { data: { result: unknown[] } }).data.result).toHaveLength(6500);
    // The thread's own task (what mergeAnswers hands over for large parts) gives the same bytes.
    const thread = new FilterThread();
    try {
      const out = await thread.merge({ kind: 'prometheus', endpoint: 'query', parts: parts.map((p) => p.slice()), params: 'limit=0' });
      expect('body' in out && Buffer.from(out.body).equals(Buffer.from(inline))).toBe(true);
    } finally {
      await thread.close();
    }
    const small = [matrix('a', 2), matrix('b', 2)];
    expect(Buffer.from(await mergeAnswers(promMerge, { kind: 'prometheus', endpoint: 'query', parts: small, params: '' })).equals(Buffer.from(mergeParts(promMerge, small, '')))).toBe(true);
  });

  it('what a merge refuses on the thread keeps its class, code and status; an unreadable part is 502', async () => {
    // Two volume parts that each reached limit=20000: the merge refuses (400), on the thread (the parts are large).
    const volume = (ns: string, n: number) =>
      utf8.encode(JSON.stringify({ status: 'success', data: { resultType: 'vector', result: Array.from({ length: n }, (_, k) => ({ metric: { service_name: `svc-${ns}-${k}` }, value: [1700000000, String(1000 + k)] })) } }));
    const parts = [volume('a', 20_000), volume('b', 20_000)];
    expect(parts.reduce((n, p) => n + p.byteLength, 0)).toBeGreaterThanOrEqual(OFFLOAD_MIN_BYTES);
    const refused = await mergeAnswers(volumeMerge, { kind: 'loki', endpoint: 'index_volume', parts, params: 'limit=20000' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(QueryError);
    expect((refused as QueryError).code).toBe('rewrite_unsupported');
    expect((refused as QueryError).status).toBe(400);
    expect((refused as QueryError).language).toBe('logql');
    // On the thread the refusal crosses as data, and comes back as the same error.
    const thread = new FilterThread();
    try {
      const out = await thread.merge({ kind: 'loki', endpoint: 'index_volume', parts: [volume('a', 20_000), volume('b', 20_000)], params: 'limit=20000' });
      expect(out).toEqual({ error: { code: 'rewrite_unsupported', message: (refused as QueryError).message, status: 400, language: 'logql' } });
    } finally {
      await thread.close();
    }
    const big = matrix('a', 3000);
    const unreadable = await mergeAnswers(promMerge, { kind: 'prometheus', endpoint: 'query', parts: [big, utf8.encode(`{"status":"success","data":${'['.repeat(10)}`)], params: '' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(unreadable).toBeInstanceOf(GatewayError);
    expect((unreadable as GatewayError).code).toBe('upstream_error');
    expect((unreadable as GatewayError).status).toBe(502);
  });
});

/**
 * Through the gateway as `user`: a request for a large answer (`largePath`), then,
 * once `arrived()` says the upstream has been asked (the answer is on its way
 * to being filtered or merged) and a moment later, a small one that must answer
 * 200. Which finished first, and the large answer.
 */
async function largeThenSmall<T>(t: TestApp, user: string, largePath: string, arrived: () => boolean): Promise<{ finished: string[]; large: { status: number; body: T } }> {
  const base = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}/prometheus`;
  const auth = { authorization: `Bearer ${user}` };
  const finished: string[] = [];
  const large = fetch(`${base}${largePath}`, { headers: auth }).then(async (r) => {
    finished.push('large');
    return { status: r.status, body: (await r.json()) as T };
  });
  const deadline = Date.now() + 10_000;
  while (!arrived() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 150));
  const small = await fetch(`${base}/api/v1/query?query=up`, { headers: auth });
  finished.push('small');
  expect(small.status).toBe(200);
  return { finished, large: await large };
}

describe('a large filtered answer in the gateway', () => {
  let up: Upstream;
  let t: TestApp;
  beforeAll(async () => {
    up = await startUpstream();
    // ≈ 24 MB: seconds of filtering; the other request asks for a small answer.
    const big = labelValues(24 * 1024 * 1024);
    up.answer = (path) => (path === '/api/v1/label/namespace/values' ? [200, big] : undefined);
    t = await testApp(testConfig(up.url));
    await t.app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    // The aborted fetch leaves the client's pool with a connection that never sent a request;
    // Node's server.close() waits for such a connection until its headers timeout: close it here.
    t?.app.server.closeAllConnections();
    await t?.app.close();
    await up?.close();
  });

  it('does not hold other requests while it is filtered', async () => {
    // Once the large answer has arrived and is being filtered, a small request.
    const { finished, large: l } = await largeThenSmall<{ data: string[] }>(t, 'alice', '/api/v1/label/namespace/values', () => up.requests.length > 0);
    expect(l.status).toBe(200);
    expect(l.body.data.length).toBeGreaterThan(100_000);
    expect(l.body.data.every((v) => v.startsWith('team-a-'))).toBe(true);
    expect(finished).toEqual(['small', 'large']);
  }, 60_000);

  it('a client that goes away while its answer is filtered does not stall the answers behind it', async () => {
    const base = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}/prometheus`;
    const auth = { authorization: 'Bearer alice' };
    up.requests.splice(0);
    const leaving = new AbortController();
    const first = fetch(`${base}/api/v1/label/namespace/values`, { headers: auth, signal: leaving.signal }).catch((e: unknown) => e);
    const deadline = Date.now() + 10_000;
    while (up.requests.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const behind = fetch(`${base}/api/v1/label/namespace/values`, { headers: auth });
    // While the first answer is on the filter thread (read in ≈ 0.2 s, filtered in ≈ 1 s), its client leaves.
    await new Promise((r) => setTimeout(r, 700));
    leaving.abort();
    await first;
    const r = await behind;
    expect(r.status).toBe(200);
    expect(((await r.json()) as { data: string[] }).data.length).toBeGreaterThan(100_000);
  }, 60_000);
});

describe('a large fan-out in the gateway', () => {
  let up: Upstream;
  let t: TestApp;
  beforeAll(async () => {
    up = await startUpstream();
    // ≈ 12 MB of raw samples per group: the two parts take a noticeable time to parse and merge.
    const result = Array.from({ length: 40_000 }, (_, k) => ({
      metric: { __name__: 'up', namespace: `team-a-${k % 7}`, job: 'api', instance: `i-${k}` },
      values: Array.from({ length: 12 }, (_, s) => [1700000000 + s * 15, '1']),
    }));
    const big = JSON.stringify({ status: 'success', data: { resultType: 'matrix', result } });
    up.answer = (path, params) => (path === '/api/v1/query' && params.get('query')?.endsWith('[5m]') === true ? [200, big] : undefined);
    // A user whose two groups do not merge: `up[5m]` is asked once per group.
    SUBJECTS['olga'] = { sub: 'u-olga', username: 'olga', groups: ['team-o'], roles: [], auth: 'fake', claims: {} };
    // Room for both parts and the small request (fan-out parts count against maxConcurrent).
    const config = testConfig(up.url, '  team-o: { groups: [team-o], selectors: [{ namespace: "~team-a-.*" }, { job: api }] }\n');
    t = await testApp({ ...config, upstreams: config.upstreams.map((u) => ({ ...u, maxConcurrent: 4 })) });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    delete SUBJECTS['olga'];
    t?.app.server.closeAllConnections();
    await t?.app.close();
    await up?.close();
  });

  it('does not hold other requests while its parts are merged', async () => {
    // Once both parts have been asked for, a small request.
    const { finished, large: l } = await largeThenSmall<{ data: { result: unknown[] } }>(
      t,
      'olga',
      `/api/v1/query?query=${encodeURIComponent('up[5m]')}&time=1700000180`,
      () => up.requests.filter((r) => r.path === '/api/v1/query').length >= 2,
    );
    expect(l.status).toBe(200);
    // The two parts are the same series: merged, each once.
    expect(l.body.data.result).toHaveLength(40_000);
    expect(finished).toEqual(['small', 'large']);
  }, 60_000);
});
