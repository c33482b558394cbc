// A PromQL query naming a label with the rewriter's reserved prefix (__lbac_) is refused as any bad query is:
// 400 in Prometheus' error envelope (bad_data), never forwarded.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startUpstream, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let t: TestApp;

beforeAll(async () => {
  up = await startUpstream();
  t = await testApp(testConfig(up.url));
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});
beforeEach(() => void up.requests.splice(0));

const get = (path: string) => t.app.inject({ url: `/prometheus${path}`, headers: { authorization: 'Bearer alice' } });

describe('reserved label names (__lbac_) over HTTP', () => {
  it.each([
    ['query', `/api/v1/query?query=${encodeURIComponent('sum by (__lbac_x) (up)')}`],
    ['query_range', `/api/v1/query_range?start=0&end=60&step=15&query=${encodeURIComponent('label_replace(up, "__lbac_metric_name__", "$1", "job", "(.*)")')}`],
    ['series match[]', `/api/v1/series?match[]=${encodeURIComponent('{"__lbac_x"="v"}')}`],
  ])('%s: 400 bad_data, not forwarded', async (_name, path) => {
    const r = await get(path);
    expect(r.statusCode, r.body).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ status: 'error', errorType: 'bad_data', error: expect.stringMatching(/label names starting with "__lbac_" are reserved by the gateway/) });
    expect(up.requests).toHaveLength(0);
  });

  it('a label value with the prefix is forwarded', async () => {
    const r = await get(`/api/v1/query?query=${encodeURIComponent('up{job="__lbac_x"}')}`);
    expect(r.statusCode, r.body).toBe(200);
    expect(up.requests).toHaveLength(1);
  });
});
