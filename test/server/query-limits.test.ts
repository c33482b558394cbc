// server.maxQueryLength / maxQueryDepth apply to every query-bearing parameter the gateway
// rewrites: `query`, and `match[]` of series, labels and label values too.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startUpstream, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let t: TestApp;

beforeAll(async () => {
  up = await startUpstream();
  const config = testConfig(up.url);
  t = await testApp({ ...config, server: { ...config.server, maxQueryLength: 40, maxQueryDepth: 4 } });
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});
beforeEach(() => void up.requests.splice(0));

const get = (path: string) => t.app.inject({ url: `/prometheus${path}`, headers: { authorization: 'Bearer alice' } });
const long = `up{job="${'x'.repeat(40)}"}`;

describe('configured query limits', () => {
  it.each([
    ['query', `/api/v1/query?query=${encodeURIComponent(long)}`],
    ['series match[]', `/api/v1/series?match[]=${encodeURIComponent(long)}`],
    ['labels match[]', `/api/v1/labels?match[]=${encodeURIComponent(long)}`],
    ['label values match[]', `/api/v1/label/job/values?match[]=${encodeURIComponent(long)}`],
  ])('a %s longer than server.maxQueryLength is refused (400), never forwarded', async (_name, path) => {
    const r = await get(path);
    expect(r.statusCode, r.body).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ status: 'error', errorType: 'bad_data' });
    expect(r.body).toMatch(/too long/);
    expect(up.requests).toHaveLength(0);
  });

  it('a match[] within the limits is forwarded with the policy', async () => {
    const r = await get(`/api/v1/series?match[]=${encodeURIComponent('up{job="x"}')}`);
    expect(r.statusCode, r.body).toBe(200);
    expect(up.requests[0]!.params.getAll('match[]')).toEqual(['up{job="x",namespace=~"team-a-.*"}']);
  });

  it('match[] values that together pass server.maxQueryLength are refused (400) before any is parsed, never forwarded', async () => {
    // Three values of 15–16 bytes each: each within the limit (40), 46 bytes together.
    const ms = ['up{job="aaaaa"}', 'up{job="bbbbb"}', 'up{job="cccccc"}'];
    for (const path of ['/api/v1/series', '/api/v1/labels', '/api/v1/label/job/values']) {
      const r = await get(`${path}?${ms.map((m) => `match[]=${encodeURIComponent(m)}`).join('&')}`);
      expect(r.statusCode, r.body).toBe(400);
      expect(JSON.parse(r.body)).toMatchObject({ status: 'error', errorType: 'bad_data' });
      expect(r.body, path).toMatch(/46 bytes together; at most 40/);
    }
    expect(up.requests).toHaveLength(0);
    // Two of them (30 bytes) are forwarded.
    const ok = await get(`/api/v1/series?${ms.slice(0, 2).map((m) => `match[]=${encodeURIComponent(m)}`).join('&')}`);
    expect(ok.statusCode, ok.body).toBe(200);
    expect(up.requests[0]!.params.getAll('match[]')).toHaveLength(2);
  });

  it('counts UTF-8 bytes: values of multi-byte characters under 40 UTF-16 units together (48 bytes) are refused when their bytes pass it', async () => {
    // 2 × (8 + 8 × "é" (2 bytes each)) = 48 bytes, 32 UTF-16 units.
    const m = `up{j="${'é'.repeat(8)}"}`;
    const r = await get(`/api/v1/series?match[]=${encodeURIComponent(m)}&match[]=${encodeURIComponent(m)}`);
    expect(r.statusCode, r.body).toBe(400);
    expect(r.body).toMatch(/bytes together/);
    expect(up.requests).toHaveLength(0);
  });
});
