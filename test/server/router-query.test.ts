// The query string is read once, Go-style, where it is enforced (backends/form-params.ts): the
// router must not parse it a second time (fast-querystring, another dialect: it cost ≈ 1 µs per
// request, and a second reading is one more place for the two to disagree).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startUpstream, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let t: TestApp;
const seen: unknown[] = [];

beforeAll(async () => {
  up = await startUpstream();
  t = await testApp(testConfig(up.url), {
    beforeReady: (app) =>
      app.addHook('preHandler', (req, _reply, done) => {
        seen.push(req.query);
        done();
      }),
  });
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});

it('request.query stays empty; the upstream gets the enforced query', async () => {
  const ok = await t.app.inject({ url: '/prometheus/api/v1/query?query=up&time=1&x=%41', headers: { authorization: 'Bearer alice' } });
  expect(ok.statusCode).toBe(200);
  expect(seen).toEqual([{}]);
  expect(up.requests).toHaveLength(1);
  expect(up.requests[0]!.params.get('query')).toBe('up{namespace=~"team-a-.*"}');
  expect(up.requests[0]!.params.get('x')).toBe('A');
});
