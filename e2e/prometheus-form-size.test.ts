// Go's Request.ParseForm reads at most 10 MiB of a form body; past that it
// reads no body parameter at all, and Prometheus' /api/v1/labels ignores the
// error: with no match[] it answers every label name of every series. The
// gateway forwards its own encoding of what it checked, which can be far
// larger than what the client sent (a raw invalid byte becomes U+FFFD, sent
// as %EF%BF%BD; a raw ":" becomes %3A; match[] is repeated per policy group),
// so a body within the gateway's request limit could reach Prometheus past
// Go's. The gateway refuses to forward more than MAX_FORWARDED_BYTES.
// Real gateway process, real Prometheus 3.16.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_FORWARDED_BYTES } from '../src/backends/params.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { rawRequest } from './harness/http.ts';
import { startPrometheus, type PrometheusInstance } from './harness/prometheus.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';

const SECRET_LABEL = 'team_b_only_label';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
let prom: PrometheusInstance;
let idp: TestIssuer;
let alice = '';
const gateways: GatewayInstance[] = [];

function seed(): string {
  const ts = Math.floor(Date.now() / 1000) - 600;
  return [
    '# TYPE up gauge',
    `up{job="web",namespace="team-a-web"} 1 ${ts}`,
    `up{job="shared",namespace="shared"} 1 ${ts}`,
    `up{job="api",namespace="team-b-api",${SECRET_LABEL}="s3cr3t"} 1 ${ts}`,
    '# EOF',
    '',
  ].join('\n');
}

async function gateway(selectors: Record<string, string>[], server: Record<string, unknown> = {}): Promise<GatewayInstance> {
  const gw = await startGateway({
    config: {
      server: { logLevel: 'warn', ...server },
      upstreams: [{ name: 'metrics', kind: 'prometheus', url: prom.url, mount: '/prometheus' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      teams: { 'team-a': { groups: ['team-a'], selectors } },
    },
  });
  gateways.push(gw);
  return gw;
}

beforeAll(async () => {
  prom = await startPrometheus({ openMetrics: seed() });
  idp = await createTestIssuer({ issuer: 'https://idp.form-size', audience: 'lbac-gateway', alg: 'ES256' });
  alice = await idp.mint({ sub: 'alice', groups: ['team-a'] });
}, 120_000);
afterAll(async () => {
  for (const g of gateways) await g.stop();
  await prom?.stop();
  idp?.cleanup();
});

/** 100 match[] selectors whose label values are raw ":" bytes (forwarded as %3A), `total` bytes in all. */
function paddedMatches(total: number): Buffer {
  const per = Math.floor(total / 100) - 40;
  return Buffer.concat(Array.from({ length: 100 }, (_, i) => Buffer.concat([Buffer.from(`${i ? '&' : ''}match%5B%5D=%7Bjob%3D%22${i}`), Buffer.alloc(per, 0x3a), Buffer.from('%22%7D')])));
}

/** One match[] and a padding parameter of raw 0xFF bytes (each forwarded as %EF%BF%BD). */
function paddedParam(total: number): Buffer {
  return Buffer.concat([Buffer.from('match%5B%5D=up&pad='), Buffer.alloc(total - 20, 0xff)]);
}

async function labelNames(url: string, body: Buffer, auth = true): Promise<{ status: number; names: string[] }> {
  const r = await rawRequest(url, `${auth ? '/prometheus' : ''}/api/v1/labels`, { method: 'POST', headers: { ...FORM, ...(auth ? { authorization: `Bearer ${alice}` } : {}) }, body, timeoutMs: 30_000 });
  let names: string[] = [];
  try {
    names = (JSON.parse(r.body) as { data?: string[] }).data ?? [];
  } catch {
    // error answers
  }
  return { status: r.status, names };
}

describe('forwarded forms stay below Go\'s 10 MiB form limit', () => {
  it('the gap is real: Prometheus asked directly with a form past 10 MiB reads no match[] and answers every label name', async () => {
    const body = Buffer.concat([Buffer.from('match%5B%5D=up%7Bnamespace%3D%22team-a-web%22%7D&pad='), Buffer.alloc(10 * 1024 * 1024 + 1, 0x61)]);
    const r = await labelNames(prom.url, body, false);
    expect(r.status).toBe(200);
    expect(r.names).toContain(SECRET_LABEL);
  });

  it('four policy groups, default body limit: a 1 MiB body whose match[] grows past the limit is refused, never forwarded', async () => {
    // Four alternatives on different labels (they do not merge into one matcher): each match[] is sent four times.
    // maxQueryLength raised: at its default the match[] values (1 MiB together) are refused before any is parsed.
    const gw = await gateway([{ namespace: '~team-a-.*' }, { job: 'shared' }, { instance: 'shared-0' }, { env: 'shared' }], { maxQueryLength: 2 * 1024 * 1024 });
    const small = await labelNames(gw.url, Buffer.from('match%5B%5D=up'));
    expect(small.status).toBe(200);
    expect(small.names).not.toContain(SECRET_LABEL);
    const r = await labelNames(gw.url, paddedMatches(1024 * 1024 - 1024));
    expect(r.status).toBe(400);
    expect(r.names).not.toContain(SECRET_LABEL);
  }, 60_000);

  it('default limits: match[] values over maxQueryLength together are refused before they are parsed', async () => {
    const gw = await gateway([{ namespace: '~team-a-.*' }]);
    const r = await rawRequest(gw.url, '/prometheus/api/v1/labels', { method: 'POST', headers: { ...FORM, authorization: `Bearer ${alice}` }, body: paddedMatches(1024 * 1024 - 1024), timeoutMs: 30_000 });
    expect(r.status).toBe(400);
    expect(r.body).toMatch(/bytes together; at most 65536 are accepted/);
  }, 60_000);

  it('one group, a 2 MiB body limit: a padding parameter of raw 0xFF bytes (nine bytes each once encoded) is refused', async () => {
    const gw = await gateway([{ namespace: '~team-a-.*' }], { bodyLimitBytes: 2 * 1024 * 1024 });
    const body = paddedParam(1_300_000);
    expect(body.length * 9).toBeGreaterThan(MAX_FORWARDED_BYTES);
    const r = await labelNames(gw.url, body);
    expect(r.status).toBe(400);
    expect(r.names).not.toContain(SECRET_LABEL);
    // Below the limit the same shape is forwarded and enforced.
    const ok = await labelNames(gw.url, paddedParam(100_000));
    expect(ok.status).toBe(200);
    expect(ok.names).not.toContain(SECRET_LABEL);
  }, 60_000);
});
