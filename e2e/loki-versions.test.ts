// Loki releases that answer an endpoint for the whole tenant whatever its
// `query`: label names before 3.0 (grafana/loki#11982), label values of
// recent data before 3.0 (#10759), detected_labels' store side before 3.2
// (#14012). The gateway reads the upstream's version (its `version` setting,
// else buildinfo, kept for minutes) and refuses those endpoints to restricted
// subjects on older or unknown releases instead of relaying every team's
// labels. Recording Loki stand-ins answering buildinfo as each release does
// (Loki is AGPL: no binary here).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { lokiAnswer } from './fixtures/grafana/answers.ts';
import { startCannedUpstream, type CannedUpstream } from './harness/canned-upstream.ts';
import { startGateway, type GatewayInstance } from './harness/gateway.ts';
import { createTestIssuer, type TestIssuer } from './harness/tokens.ts';

const LOKIS: Record<string, { version: string | null; pinned?: string }> = {
  loki29: { version: '2.9.4' },
  loki31: { version: '3.1.2' },
  loki32: { version: '3.2.0' },
  weekly: { version: 'k218-1a2b3c4' },
  pinned: { version: 'k218-1a2b3c4', pinned: '3.4.0' },
  broken: { version: null },
};
const stand: Record<string, CannedUpstream> = {};
let gw: GatewayInstance;
let idp: TestIssuer;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  for (const [name, { version }] of Object.entries(LOKIS)) {
    // `broken`: buildinfo answered by `answer` (a 500), as a Loki whose frontend fails.
    stand[name] = await startCannedUpstream((path, req) => (path.endsWith('/status/buildinfo') ? [500, 'text/plain', 'boom'] : lokiAnswer(path, req)), { lokiVersion: version });
  }
  idp = await createTestIssuer({ issuer: 'https://idp.loki-versions', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: Object.entries(LOKIS).map(([name, { pinned }]) => ({ name, kind: 'loki', url: stand[name]!.url, mount: `/${name}`, ...(pinned === undefined ? {} : { version: pinned }) })),
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      admins: { groups: ['admins'] },
      teams: { 'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }], headers: { 'X-Scope-OrgID': 'tenant-a' } } },
    },
  });
  tokens['alice'] = await idp.mint({ sub: 'u-alice', groups: ['team-a'] });
  tokens['root'] = await idp.mint({ sub: 'u-root', groups: ['admins'] });
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  for (const s of Object.values(stand)) await s.stop();
  idp?.cleanup();
});

beforeEach(() => {
  for (const s of Object.values(stand)) s.clear();
});

const get = (loki: string, path: string, who = 'alice') => fetch(`${gw.url}/${loki}/loki/api/v1/${path}`, { headers: { authorization: `Bearer ${tokens[who]}` } });
const LABELS = 'labels?start=1&end=2';
const VALUES = 'label/job/values?start=1&end=2';
const DETECTED = `detected_labels?query=${encodeURIComponent('{app="web"}')}&start=1&end=2`;
const QUERY = `query_range?query=${encodeURIComponent('{app="web"}')}&start=1&end=2`;

describe('endpoints older Loki releases answer for the whole tenant', () => {
  it('Loki 2.9: label names and values are refused (403, naming the release needed), nothing forwarded; queries go ahead', async () => {
    for (const path of [LABELS, VALUES]) {
      const r = await get('loki29', path);
      expect(r.status, path).toBe(403);
      expect(((await r.json()) as { error: string }).error).toMatch(/needs loki 3\.0\.0 or later .*this one is 2\.9\.4/);
    }
    expect(stand['loki29']!.requests).toEqual([]);
    expect((await get('loki29', QUERY)).status).toBe(200);
    expect(stand['loki29']!.requests.map((r) => r.path)).toEqual(['/loki/api/v1/query_range']);
  });

  it('admins are not restricted: forwarded whatever the release', async () => {
    expect((await get('loki29', LABELS, 'root')).status).toBe(200);
    expect(stand['loki29']!.requests.map((r) => r.path)).toEqual(['/loki/api/v1/labels']);
  });

  it('Loki 3.1: label names enforced by its query; detected_labels refused until 3.2', async () => {
    expect((await get('loki31', LABELS)).status).toBe(200);
    expect(stand['loki31']!.requests.at(-1)!.params.get('query')).toContain('namespace=~"team-a-.*"');
    const r = await get('loki31', DETECTED);
    expect(r.status).toBe(403);
    expect(((await r.json()) as { error: string }).error).toMatch(/needs loki 3\.2\.0 or later/);
    expect((await get('loki32', DETECTED)).status).toBe(200);
  });

  it('a version that is not a release is refused until upstreams[].version names one', async () => {
    const r = await get('weekly', LABELS);
    expect(r.status).toBe(403);
    expect(((await r.json()) as { error: string }).error).toMatch(/"k218-1a2b3c4" cannot be compared; set upstreams\[\]\.version/);
    expect((await get('pinned', LABELS)).status).toBe(200);
    // With the version configured, buildinfo is not asked.
    expect(stand['pinned']!.buildinfoRequests).toEqual([]);
  });

  it('a buildinfo that fails is an upstream failure (502), never a pass', async () => {
    expect((await get('broken', LABELS)).status).toBe(502);
    expect(stand['broken']!.requests.map((r) => r.path)).toEqual(['/loki/api/v1/status/buildinfo']);
  });

  it('buildinfo is asked once and kept, not per request', async () => {
    const before = stand['loki32']!.buildinfoRequests.length;
    for (let i = 0; i < 3; i++) expect((await get('loki32', LABELS)).status).toBe(200);
    expect(stand['loki32']!.buildinfoRequests.length - before).toBeLessThanOrEqual(1);
    expect(stand['loki32']!.buildinfoRequests.length).toBe(1);
  });
});
