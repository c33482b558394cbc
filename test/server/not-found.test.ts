// Unknown paths: 404 in the backend's own error format, never forwarded, and the body never
// repeats the path (client-controlled text a link could fill with markup or a message).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { startUpstream, testApp, TEST_IDENTITY_AND_TEAMS, type TestApp, type Upstream } from './helpers.ts';

let up: Upstream;
let t: TestApp;

beforeAll(async () => {
  up = await startUpstream();
  const config = parseConfig(
    `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: metrics, kind: prometheus, url: "${up.url}", mount: /prometheus }
  - { name: logs, kind: loki, url: "${up.url}", mount: /loki, version: "3.6.0" }
  - { name: traces, kind: tempo, url: "${up.url}", mount: /tempo }
${TEST_IDENTITY_AND_TEAMS}`,
    { env: {} },
  );
  t = await testApp(config);
});
afterAll(async () => {
  await t?.app.close();
  await up?.close();
});

const PROBE = '/<script>alert(1)</script>Your-session-expired-call-555-0100';

describe('unknown paths', () => {
  it('404 in each backend\'s format without the path in the body; nothing forwarded', async () => {
    const answers = new Map<string, { status: number; type: string; body: string }>();
    for (const mount of ['', '/prometheus', '/loki', '/tempo']) {
      const r = await t.app.inject({ url: `${mount}${PROBE}?q=${encodeURIComponent('<b>x</b>')}`, headers: { authorization: 'Bearer alice' } });
      answers.set(mount, { status: r.statusCode, type: String(r.headers['content-type']), body: r.body });
      expect(r.statusCode, mount).toBe(404);
      expect(r.body, mount).not.toMatch(/script|alert|session|555|<b>/i);
      expect(r.body, mount).toMatch(/unknown path \(not forwarded\)/);
    }
    expect(JSON.parse(answers.get('')!.body)).toEqual({ status: 'error', errorType: 'not_found', error: 'unknown path (not forwarded)' });
    expect(JSON.parse(answers.get('/prometheus')!.body)).toEqual({ status: 'error', errorType: 'not_found', error: 'unknown path (not forwarded)' });
    expect(JSON.parse(answers.get('/loki')!.body)).toMatchObject({ code: 404, status: 'error', message: 'unknown path (not forwarded)' });
    expect(answers.get('/tempo')).toMatchObject({ type: expect.stringMatching(/^text\/plain/), body: 'unknown path (not forwarded)\n' });
    expect(up.requests).toHaveLength(0);
  });
});
