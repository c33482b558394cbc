// Regression tests for gateway bugs the Grafana replay (e2e/grafana-replay.test.ts) found.
//
// Finding 1 (fixed in src/server/error-format.ts) — Loki errors are not in Loki's error shape, so Grafana shows raw JSON.
//   Loki (≥ 2.9, pkg/util/server/error.go JSONError / NotFoundHandler) answers
//   errors as `{"code": <status>, "status": "error", "message": "<text>"}`.
//   Grafana reads exactly `message` (pkg/tsdb/loki/api.go makeLokiError: JSON
//   with a non-empty "message", else the whole body as the error text; the
//   resource path wraps that text again as {"message": …}). The gateway renders
//   Loki errors in Prometheus' envelope, `{"status":"error","errorType":…,
//   "error":…}` (src/server/error-format.ts renderError), which has no
//   `message`: a user with a typo in a dashboard query, or a Logs Drilldown
//   call the gateway refuses, sees the gateway's JSON verbatim instead of the
//   message. Fix (backward compatible): for kind 'loki' also emit
//   `code: <status>` and `message: <text>` next to the existing fields.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCannedUpstream, type CannedUpstream } from './harness/canned-upstream.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';
import { lokiAnswer } from './fixtures/grafana/answers.ts';
import { NOW_S, ns } from './fixtures/grafana/requests.ts';

let loki: CannedUpstream;
let gw: GatewayInstance;
let idp: TestIssuer;
let token = '';

beforeAll(async () => {
  loki = await startCannedUpstream(lokiAnswer);
  idp = await createTestIssuer({ issuer: 'https://idp.grafana-findings', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [{ name: 'logs', kind: 'loki', url: loki.url, mount: '/loki' }],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      teams: { 'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }], headers: { 'X-Scope-OrgID': 'tenant-a' } } },
    },
  });
  token = await idp.mint({ sub: 'u-alice', groups: ['team-a'] });
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await loki?.stop();
  idp?.cleanup();
});

/** What Grafana's makeLokiError extracts from an error body: `message`, or the whole text. */
function grafanaLokiError(body: string): string {
  try {
    const m = (JSON.parse(body) as { message?: unknown }).message;
    return typeof m === 'string' && m !== '' ? m : body;
  } catch {
    return body;
  }
}

describe('Finding 1: Loki errors in Loki\'s shape, readable by Grafana', () => {
  it.each([
    // A dashboard query with a typo, as Grafana's backend sends it (api.go makeDataRequest).
    ['bad LogQL (400)', `/loki/loki/api/v1/query_range?direction=backward&end=${ns(NOW_S)}&limit=1000&query=${encodeURIComponent('{app="api"')}&start=${ns(NOW_S - 3600)}&step=2000ms`, 400],
    // Data-source-managed alerting's ruler API, which the gateway does not serve.
    ['unknown path (404)', '/loki/loki/api/v1/rules', 404],
  ])('%s: {code, status: "error", message}', async (_name, path, status) => {
    const res = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${token}`, 'x-grafana-org-id': '1' } });
    const body = await res.text();
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const parsed = JSON.parse(body) as { code?: unknown; status?: unknown; message?: unknown };
    expect(parsed.status).toBe('error');
    expect(parsed.code).toBe(status);
    expect(typeof parsed.message).toBe('string');
    // What the Grafana user reads is the message, not the gateway's JSON.
    expect(grafanaLokiError(body)).not.toMatch(/^\{/);
    expect(loki.requests).toHaveLength(0);
  });
});
