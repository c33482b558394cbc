// Self-test of the e2e harness against real Prometheus/promtool (no gateway needed).
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DOWN_INSTANCE,
  HISTOGRAM_LE,
  NAMESPACES,
  SEED_TARGETS,
  TEAM_NAMESPACES,
  buildTeamsOpenMetrics,
  httpRequestsIncrement,
  seedEndSeconds,
  seedSeries,
  seedStartSeconds,
  seedValue,
} from './fixtures/seed.ts';
import { startCountingProxy } from './harness/counting-proxy.ts';
import type { CountingProxy } from './harness/counting-proxy.ts';
import { rawRequest } from './harness/http.ts';
import { freePort, isPortFree } from './harness/ports.ts';
import { runCommand, startProcess } from './harness/process.ts';
import { instantQuery, promGet, startPrometheus } from './harness/prometheus.ts';
import type { PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer } from './harness/tokens.ts';
import type { TestIssuer } from './harness/tokens.ts';
import { startGateway } from './harness/gateway.ts';
import type { GatewayInstance } from './harness/gateway.ts';
import { repoRoot, toolPath, toolVersion } from './harness/tools.ts';

describe('tools', () => {
  it('resolves pinned tools from scripts/versions.env', () => {
    const versions = readFileSync(new URL('../scripts/versions.env', import.meta.url), 'utf8');
    const promVersion = /^PROMETHEUS_VERSION=(.+)$/m.exec(versions)?.[1];
    expect(toolVersion('prometheus')).toBe(promVersion);
    expect(toolPath('prometheus')).toMatch(new RegExp(`prometheus-${promVersion}/prometheus$`));
    expect(toolPath('promtool')).toMatch(new RegExp(`prometheus-${promVersion}/promtool$`));
    expect(toolPath('node')).toMatch(/\/bin\/node$/);
  });

  it('names the make target when a tool is missing', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'lbac-no-tools-'));
    const saved = process.env['LBAC_TOOLS_DIR'];
    process.env['LBAC_TOOLS_DIR'] = empty;
    try {
      expect(() => toolPath('prom-label-proxy')).toThrow(/prom-label-proxy .* is not installed.*`make bench-tools`/s);
      expect(() => toolPath('promtool')).toThrow(new RegExp(`${empty}/prometheus-.*does not exist.*\`make tools\``));
      expect(() => toolPath('node')).toThrow(/`make node-runtime`/);
    } finally {
      if (saved === undefined) delete process.env['LBAC_TOOLS_DIR'];
      else process.env['LBAC_TOOLS_DIR'] = saved;
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('ports and processes', () => {
  it('freePort returns a bindable loopback port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(await isPortFree(port)).toBe(true);
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(port, '127.0.0.1', () => r()));
    expect(await isPortFree(port)).toBe(false);
    await new Promise<void>((r) => srv.close(() => r()));
  });

  it('a child that dies before readiness fails with the tail of its log', async () => {
    const port = await freePort();
    await expect(
      startProcess({
        name: 'dies-early',
        cmd: toolPath('node'),
        args: ['-e', "console.log('hello-from-child'); console.error('boom-on-stderr'); process.exit(3)"],
        readyUrl: `http://127.0.0.1:${port}/ready`,
        readyTimeoutMs: 10_000,
      }),
    ).rejects.toThrow(/exited before becoming ready \(code 3[\s\S]*hello-from-child[\s\S]*boom-on-stderr/);
  });

  it('a child that never becomes ready times out and is killed', async () => {
    const port = await freePort();
    const started = Date.now();
    await expect(
      startProcess({
        name: 'never-ready',
        cmd: toolPath('node'),
        args: ['-e', "console.log('waiting-forever'); setInterval(() => {}, 1000)"],
        readyUrl: `http://127.0.0.1:${port}/ready`,
        readyTimeoutMs: 800,
      }),
    ).rejects.toThrow(/not ready .* after 800 ms[\s\S]*waiting-forever/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('stop() escalates to SIGKILL when SIGTERM is ignored', async () => {
    const port = await freePort();
    const proc = await startProcess({
      name: 'stubborn',
      cmd: toolPath('node'),
      args: [
        '-e',
        `process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
         require('node:http').createServer((q, s) => s.end('ok')).listen(${port}, '127.0.0.1');`,
      ],
      readyUrl: `http://127.0.0.1:${port}/`,
      stopGraceMs: 300,
    });
    expect(proc.isRunning()).toBe(true);
    await proc.stop();
    expect(proc.isRunning()).toBe(false);
    expect((await proc.exited).signal).toBe('SIGKILL');
    expect(readFileSync(proc.logFile, 'utf8')).toContain('ignoring SIGTERM');
  });
});

describe('seeded Prometheus', () => {
  const now = Date.now();
  const end = seedEndSeconds(now);
  const start = seedStartSeconds(now);
  let prom: PrometheusInstance;
  let startupMs = 0;

  beforeAll(async () => {
    const t0 = Date.now();
    prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }) });
    startupMs = Date.now() - t0;
    console.log(`[harness] seed + promtool + Prometheus ready in ${startupMs} ms (${prom.url})`);
  });
  afterAll(async () => {
    await prom?.stop();
  });

  it('starts within a reasonable time', () => {
    expect(startupMs).toBeLessThan(30_000);
  });

  it('count(up) equals the number of seeded targets, right after start', async () => {
    const res = await instantQuery(prom.url, 'count(up)', { time: end });
    expect(res).toHaveLength(1);
    expect(Number(res[0]?.value[1])).toBe(SEED_TARGETS.length);
    const down = await instantQuery(prom.url, 'up == 0', { time: end });
    expect(down.map((s) => s.metric['instance'])).toEqual([DOWN_INSTANCE]);
  });

  it('every seeded series has the seed function value at grid timestamps (both blocks)', async () => {
    const series = seedSeries();
    for (const ts of [start, start + 15 * 7, end - 3600, end]) {
      const res = await instantQuery(prom.url, '{__name__=~".+"}', { time: ts });
      expect(res).toHaveLength(series.length);
      for (const sample of res) {
        const { __name__: name, ...labels } = sample.metric;
        const expected = seedValue(name as string, labels, ts);
        expect(expected, JSON.stringify(sample.metric)).toBeDefined();
        expect(Number(sample.value[1]), JSON.stringify(sample.metric)).toBe(expected);
      }
    }
  });

  it('holds all 481 points of every series', async () => {
    const names = [...new Set(seedSeries().map((s) => s.name))];
    let total = 0;
    for (const name of names) {
      // count_over_time drops __name__, so ask per metric name (_sum and _count share labels).
      const res = await instantQuery(prom.url, `count_over_time(${name}[3h]) != 481`, { time: end });
      expect(res, name).toEqual([]);
      const sum = await instantQuery(prom.url, `sum(count_over_time(${name}[3h]))`, { time: end });
      total += Number(sum[0]?.value[1]);
    }
    expect(total).toBe(481 * seedSeries().length);
  });

  it('rates are the exact per-step increments', async () => {
    const res = await instantQuery(prom.url, 'sum by (namespace) (rate(http_requests_total[5m]))', { time: end });
    const got = Object.fromEntries(res.map((s) => [s.metric['namespace'], Number(s.value[1])]));
    const want: Record<string, number> = {};
    for (const t of SEED_TARGETS) {
      for (const m of ['GET', 'POST']) {
        for (const c of ['200', '404', '500']) {
          want[t.namespace] = (want[t.namespace] ?? 0) + httpRequestsIncrement(t, m, c) / 15;
        }
      }
    }
    expect(Object.keys(got).sort()).toEqual([...NAMESPACES].sort());
    for (const ns of NAMESPACES) expect(got[ns]).toBeCloseTo(want[ns] as number, 9);
  });

  it('exposes the seeded label values and histogram buckets', async () => {
    const ns = await promGet<string[]>(prom.url, '/api/v1/label/namespace/values');
    expect(ns.body.data).toEqual([...NAMESPACES].sort());
    const le = await promGet<string[]>(prom.url, '/api/v1/label/le/values');
    expect([...(le.body.data ?? [])].sort()).toEqual([...HISTOGRAM_LE].sort());
    const q = await instantQuery(
      prom.url,
      'histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="team-a-frontend"}[5m])))',
      { time: end },
    );
    expect(Number(q[0]?.value[1])).toBeGreaterThan(0.05);
    expect(Number(q[0]?.value[1])).toBeLessThanOrEqual(0.1);
    expect(TEAM_NAMESPACES['team-a']).toContain('team-a-frontend');
  });

  it('records executed PromQL in the query log (and only engine queries)', async () => {
    prom.clearQueryLog();
    expect(await prom.queriesSeen()).toEqual([]);
    const marker = `sum(up{namespace="team-b-db"}) + ${Date.now() % 1000}`;
    await instantQuery(prom.url, marker, { time: end });
    await promGet(prom.url, '/api/v1/query_range', {
      query: 'count(up)',
      start: String(end - 600),
      end: String(end),
      step: '60',
    });
    await promGet(prom.url, '/api/v1/labels'); // not a PromQL evaluation: not logged
    await promGet(prom.url, '/api/v1/format_query', { query: 'sum(up)by(job)' }); // parse only: not logged
    // The log line is written before the HTTP response: no waiting needed.
    expect(await prom.queriesSeen()).toEqual([marker, 'count(up)']);
    const log = await prom.queryLog();
    expect(log[0]?.httpRequest?.path).toBe('/api/v1/query');
    expect(log[1]?.params.step).toBe(60);
  });

  it('serves format_query and parse_query without feature flags', async () => {
    const f = await promGet<string>(prom.url, '/api/v1/format_query', { query: 'sum(rate(up[5m]))by(job)' });
    expect(f.status).toBe(200);
    expect(f.body.data).toBe('sum by (job) (rate(up[5m]))');
    const p = await promGet<{ type: string }>(prom.url, '/api/v1/parse_query', { query: 'up{a="b"}' });
    expect(p.status).toBe(200);
    expect(p.body.data?.type).toBe('vectorSelector');
    const bad = await promGet(prom.url, '/api/v1/parse_query', { query: 'sum(' });
    expect(bad.status).toBe(400);
    expect(bad.body.errorType).toBe('bad_data');
    // Experimental functions stay off by default.
    const exp = await promGet(prom.url, '/api/v1/query', { query: 'sort_by_label(up, "instance")' });
    expect(exp.status).toBe(400);
  });

  describe('counting proxy', () => {
    let proxy: CountingProxy;
    beforeAll(async () => {
      proxy = await startCountingProxy({ upstream: prom.url });
    });
    afterAll(async () => {
      await proxy?.stop();
    });

    it('forwards and records GET and POST-form requests', async () => {
      proxy.clear();
      const direct = await instantQuery(proxy.url, 'count(up)', {
        time: end,
        headers: { 'X-Scope-OrgID': 'tenant-a', Authorization: 'Bearer not-a-jwt' },
      });
      expect(Number(direct[0]?.value[1])).toBe(SEED_TARGETS.length);

      const res = await fetch(`${proxy.url}/api/v1/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ query: 'count(up{namespace=~"team-a-.*"})', time: String(end) }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { data: { result: Array<{ value: [number, string] }> } };
      expect(Number(body.data.result[0]?.value[1])).toBe(
        SEED_TARGETS.filter((t) => t.team === 'team-a').length,
      );

      expect(proxy.count()).toBe(2);
      const [get, post] = proxy.requests;
      expect(get?.method).toBe('GET');
      expect(get?.path).toBe('/api/v1/query');
      expect(get?.params.get('query')).toBe('count(up)');
      expect(get?.headers['x-scope-orgid']).toBe('tenant-a');
      expect(get?.headers['authorization']).toBe('Bearer not-a-jwt');
      expect(get?.status).toBe(200);
      expect(post?.method).toBe('POST');
      expect(post?.query.get('query')).toBeNull();
      expect(post?.params.get('query')).toBe('count(up{namespace=~"team-a-.*"})');
      expect(post?.bodyText).toContain('query=count');
      expect(proxy.count((r) => r.headers['x-scope-orgid'] !== undefined)).toBe(1);
      expect(await prom.queriesSeen()).toContain('count(up{namespace=~"team-a-.*"})');
    });

    it('receives raw paths byte for byte from rawRequest (fetch would normalise them)', async () => {
      proxy.clear();
      const res = await rawRequest(proxy.url, '/api/v1/../v1/query?query=up');
      // Prometheus (Go's router) answers a dot-segment path with a 307 to the cleaned path.
      expect(res.status).toBe(307);
      expect(res.headers['location']).toBe('/api/v1/query?query=up');
      expect(proxy.requests[0]?.url).toBe('/api/v1/../v1/query?query=up');
      const viaFetch = await fetch(`${proxy.url}/api/v1/../v1/query?query=up`);
      expect(viaFetch.status).toBe(200);
      expect(proxy.requests[1]?.url).toBe('/api/v1/query?query=up');
    });

    it('reports upstream failures as 502 and records them', async () => {
      const dead = await startCountingProxy({ upstream: `http://127.0.0.1:${await freePort()}` });
      try {
        const res = await fetch(`${dead.url}/api/v1/query?query=up`);
        expect(res.status).toBe(502);
        expect(dead.requests[0]?.status).toBe(502);
      } finally {
        await dead.stop();
      }
    });
  });

  describe('gateway via the CLI, behind a counting proxy', () => {
    let proxy: CountingProxy;
    let gw: GatewayInstance;
    let issuer: TestIssuer;
    beforeAll(async () => {
      proxy = await startCountingProxy({ upstream: prom.url });
      issuer = await createTestIssuer({ issuer: 'https://issuer.test', audience: 'lbac-gateway', alg: 'ES256' });
      gw = await startGateway({
        config: {
          server: { logLevel: 'warn' },
          upstreams: [{ name: 'prometheus', kind: 'prometheus', url: proxy.url, mount: '/prometheus' }],
          identity: {
            providers: [
              { type: 'jwt', jwksFile: issuer.jwksPath, issuer: issuer.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] },
            ],
          },
          teams: {
            'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }], headers: { 'X-Scope-OrgID': 'tenant-a' } },
          },
        },
      });
    });
    afterAll(async () => {
      await gw?.stop();
      await proxy?.stop();
      issuer?.cleanup();
    });

    it('is ready on a free port and writes its config as YAML', () => {
      expect(gw.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(readFileSync(gw.configFile, 'utf8')).toContain(`listen: 127.0.0.1:${gw.port}`);
    });

    it('lets tests see exactly what reached the upstream', async () => {
      proxy.clear();
      const token = await issuer.mint({ sub: 'u-alice', preferred_username: 'alice', groups: ['team-a'] });
      const auth = { Authorization: `Bearer ${token}` };
      const res = await instantQuery(`${gw.url}/prometheus`, 'count(up)', {
        time: end,
        headers: { ...auth, 'X-Scope-OrgID': 'tenant-b' },
      });
      expect(Number(res[0]?.value[1])).toBe(SEED_TARGETS.filter((t) => t.team === 'team-a').length);
      const forwarded = proxy.requests.filter((r) => r.path === '/api/v1/query');
      expect(forwarded).toHaveLength(1);
      expect(forwarded[0]?.headers['x-scope-orgid']).toBe('tenant-a');
      expect(forwarded[0]?.params.get('query')).toMatch(/namespace=~"team-a-\.\*"/);
      expect(await prom.queriesSeen()).toContain(forwarded[0]?.params.get('query'));

      proxy.clear();
      const bad = await promGet(`${gw.url}/prometheus`, '/api/v1/query', { query: 'sum(' }, auth);
      expect(bad.status).toBe(400);
      const none = await promGet(`${gw.url}/prometheus`, '/api/v1/query', { query: 'up' });
      expect(none.status).toBe(401);
      expect(proxy.count((r) => r.path === '/api/v1/query')).toBe(0);
    });
  });
});

describe('scripts/demo.ts --smoke', () => {
  it('starts everything and proves per-user isolation (exit 0)', async () => {
    const { stdout } = await runCommand(toolPath('node'), ['scripts/demo.ts', '--smoke'], { cwd: repoRoot, timeoutMs: 60_000 });
    expect(stdout).toMatch(/smoke: \d+ passed, 0 failed/);
  });
});

describe('seed far in the past', () => {
  it('stays queryable (retention counts from the newest block, not the wall clock)', async () => {
    const now = Date.UTC(2024, 0, 15, 12, 34, 56);
    const end = seedEndSeconds(now);
    expect(end).toBe(Date.UTC(2024, 0, 15, 12, 34, 0) / 1000);
    expect(seedEndSeconds(Math.floor(now / 1000))).toBe(end); // epoch seconds work too
    expect(buildTeamsOpenMetrics({ now: Math.floor(now / 1000) })).toBe(buildTeamsOpenMetrics({ now }));
    const prom = await startPrometheus({ openMetrics: buildTeamsOpenMetrics({ now }) });
    try {
      const res = await instantQuery(prom.url, 'count(up)', { time: end });
      expect(Number(res[0]?.value[1])).toBe(SEED_TARGETS.length);
      const labels = { namespace: 'team-b-api', job: 'api', instance: 'api-1.team-b-api:8080', code: '500', method: 'POST' };
      const v = await instantQuery(prom.url, `http_requests_total{instance="api-1.team-b-api:8080",code="500",method="POST"}`, {
        time: end - 45,
      });
      expect(Number(v[0]?.value[1])).toBe(seedValue('http_requests_total', labels, end - 45));
    } finally {
      await prom.stop();
    }
  });
});

describe('test issuer', () => {
  for (const alg of ['RS256', 'ES256'] as const) {
    describe(alg, () => {
      let iss: TestIssuer;
      const verify = (token: string, algorithms: string[] = [alg]) => {
        const jwks = JSON.parse(readFileSync(iss.jwksPath, 'utf8')) as JSONWebKeySet;
        return jwtVerify(token, createLocalJWKSet(jwks), {
          issuer: 'https://issuer.test',
          audience: 'lbac-gateway',
          algorithms,
        });
      };
      beforeAll(async () => {
        iss = await createTestIssuer({ issuer: 'https://issuer.test', audience: 'lbac-gateway', alg });
      });
      afterAll(() => iss?.cleanup());

      it('writes a JWKS file with public keys only', () => {
        const jwks = JSON.parse(readFileSync(iss.jwksPath, 'utf8')) as JSONWebKeySet;
        expect(jwks.keys).toHaveLength(1);
        const key = jwks.keys[0];
        expect(key?.kid).toBe(iss.kid);
        expect(key?.alg).toBe(alg);
        expect(key && 'd' in key).toBe(false);
        expect(iss.jwks).toEqual(jwks);
      });

      it('mints tokens that verify', async () => {
        const token = await iss.mint({ sub: 'u-1', preferred_username: 'alice', groups: ['team-a'] });
        const { payload, protectedHeader } = await verify(token);
        expect(payload['preferred_username']).toBe('alice');
        expect(payload['groups']).toEqual(['team-a']);
        expect(protectedHeader.kid).toBe(iss.kid);
        expect(protectedHeader.alg).toBe(alg);
        expect((payload.exp ?? 0) - Math.floor(Date.now() / 1000)).toBeGreaterThan(3500);
        const long = await iss.mint({ sub: 'u-1' }, { expiresIn: '12h' });
        expect(((await verify(long)).payload.exp ?? 0) - Math.floor(Date.now() / 1000)).toBeGreaterThan(12 * 3600 - 60);
      });

      const bad: Array<[string, (i: TestIssuer) => Promise<string>, RegExp]> = [
        ['expired', (i) => i.mint({ sub: 'x' }, { expiresIn: '-10m' }), /"exp" claim timestamp check failed/],
        ['not yet valid', (i) => i.mint({ sub: 'x' }, { notBefore: '+10m' }), /"nbf" claim timestamp check failed/],
        ['wrong issuer', (i) => i.mint({ sub: 'x' }, { issuer: 'https://evil.test' }), /unexpected "iss" claim value/],
        ['wrong audience', (i) => i.mint({ sub: 'x' }, { audience: 'other' }), /unexpected "aud" claim value/],
        ['issuer as claim', (i) => i.mint({ sub: 'x', iss: 'https://evil.test' }), /unexpected "iss" claim value/],
        ['alg none', (i) => i.mint({ sub: 'x' }, { alg: 'none' }), /alg|Unsupported|not allowed/i],
        ['HS256 keyed with the public key', (i) => i.mint({ sub: 'x' }, { alg: 'HS256' }), /alg.*not allowed|no applicable key/i],
        ['unknown kid', (i) => i.mint({ sub: 'x' }, { kid: 'nope' }), /no applicable key found/],
        ['foreign key, known kid', (i) => i.mint({ sub: 'x' }, { key: 'foreign' }), /signature verification failed/],
      ];
      for (const [name, make, why] of bad) {
        it(`rejects: ${name}`, async () => {
          const token = await make(iss);
          await expect(verify(token)).rejects.toThrow(why);
        });
      }

      it('HS256 confusion token is really HMAC over the public key', async () => {
        const token = await iss.mint({ sub: 'x' }, { alg: 'HS256' });
        expect(decodeProtectedHeader(token).alg).toBe('HS256');
        // Even a verifier that allowed HS256 has no HMAC key in the JWKS.
        await expect(verify(token, ['HS256', alg])).rejects.toThrow(/Unsupported "alg" value for a JSON Web Key Set|no applicable key found/);
      });

      it('supports key rotation in the JWKS file', async () => {
        const old = await iss.mint({ sub: 'x' });
        const kid2 = await iss.addKey({ makeCurrent: true });
        const fresh = await iss.mint({ sub: 'x' });
        expect(decodeProtectedHeader(fresh).kid).toBe(kid2);
        await verify(old);
        await verify(fresh);
        const firstKid = decodeProtectedHeader(old).kid as string;
        iss.removeKey(firstKid);
        await expect(verify(old)).rejects.toThrow(/no applicable key found/);
        await verify(fresh);
      });
    });
  }
});
