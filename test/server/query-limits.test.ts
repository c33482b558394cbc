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
});
