// /api/v1/label/<name>/values: the response filter judges only the values of a
// label the policy restricts. For any other label (job, pod, __name__ for the
// metric browser) the filter could not drop anything: the answer is streamed as
// the upstream sent it, not read whole and re-encoded. (The values are those of
// the series match[] already limits to the policy's.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstream, testApp, testConfig, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let t: TestApp;
const JOB_VALUES = '{"status":"success","data":["api","db"],"extra":{"kept":"as sent"}}';
const NAMESPACE_VALUES = '{"status":"success","data":["team-a-x","team-b-y"],"extra":1}';

beforeAll(async () => {
  up = await startUpstream();
  up.answer = (path) => (path === '/api/v1/label/job/values' ? [200, JOB_VALUES] : path === '/api/v1/label/namespace/values' ? [200, NAMESPACE_VALUES] : undefined);
  t = await testApp(testConfig(up.url));
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});

const values = (name: string) => t.app.inject({ url: `/prometheus/api/v1/label/${name}/values`, headers: { authorization: 'Bearer alice' } });

describe('label values', () => {
  it('of a label the policy does not restrict: the upstream answer, byte for byte (match[] enforced on the request)', async () => {
    up.requests.splice(0);
    const r = await values('job');
    expect(r.statusCode).toBe(200);
    expect(r.body).toBe(JOB_VALUES);
    expect(up.requests[0]!.params.getAll('match[]')).toEqual(['{namespace=~"team-a-.*"}']);
  });

  it('of the policy label: filtered (a value the policy cannot match is dropped) and rebuilt', async () => {
    const r = await values('namespace');
    expect(JSON.parse(r.body)).toEqual({ status: 'success', data: ['team-a-x'] });
  });

  it('of the policy label written in Prometheus 3 underscore escaping: filtered too', async () => {
    up.answer = () => [200, NAMESPACE_VALUES];
    const r = await values('U__namespace');
    expect(JSON.parse(r.body)).toEqual({ status: 'success', data: ['team-a-x'] });
  });
});
