// An upstream's 503 (Prometheus, Mimir or Loki overloaded) is relayed once, not
// retried: reply-from retries GETs answered 503 up to ten times by default,
// which multiplied the load on a backend that had just said it was overloaded
// and held the client meanwhile. Grafana shows the backend's error; retrying is
// the client's decision.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstream, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let t: TestApp;

beforeAll(async () => {
  up = await startUpstream();
  up.answer = () => [503, JSON.stringify({ status: 'error', errorType: 'unavailable', error: 'too many outstanding requests' })];
  t = await testApp(testConfig(up.url));
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});

describe('an upstream answering 503', () => {
  for (const [what, request] of [
    ['GET query', { method: 'GET' as const, url: '/prometheus/api/v1/query?query=up' }],
    ['GET series', { method: 'GET' as const, url: '/prometheus/api/v1/series?match[]=up' }],
    ['POST query_range', { method: 'POST' as const, url: '/prometheus/api/v1/query_range', payload: 'query=up&start=1&end=2&step=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
  ] as const) {
    it(`${what}: asked once, its answer relayed`, async () => {
      up.requests.splice(0);
      const r = await t.app.inject({ ...request, headers: { ...('headers' in request ? request.headers : {}), authorization: 'Bearer alice' } });
      expect(r.statusCode).toBe(503);
      expect(JSON.parse(r.body)).toMatchObject({ status: 'error', error: 'too many outstanding requests' });
      expect(up.requests).toHaveLength(1);
    });
  }
});
