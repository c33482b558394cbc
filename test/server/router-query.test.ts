// The query string is read once, Go-style, where it is enforced (backends/form-params.ts): the
// router must not parse it a second time (fast-querystring, another dialect: it cost ≈ 1 µs per
// request, and a second reading is one more place for the two to disagree).
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { buildApp } from '../../src/server/app.ts';
import { AuditLog } from '../../src/server/plugins/audit.ts';
import { fakeSource, startUpstream, TEST_IDENTITY_AND_TEAMS, type Upstream } from './helpers.ts';

let up: Upstream;
let app: FastifyInstance;
const seen: unknown[] = [];

beforeAll(async () => {
  up = await startUpstream();
  const config = parseConfig(
    `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: metrics, kind: prometheus, url: "${up.url}", mount: / }
${TEST_IDENTITY_AND_TEAMS}`,
    { env: {} },
  );
  const engine = await PolicyEngine.fromFile(config.policyWasm, { lbac: config.policyData }, { entrypoint: config.policy.entrypoint });
  app = await buildApp({ config, authenticator: new Authenticator([fakeSource]), engine, logger: pino({ level: 'silent' }), auditLog: new AuditLog(() => undefined) });
  app.addHook('preHandler', (req, _reply, done) => {
    seen.push(req.query);
    done();
  });
  await app.ready();
});
afterAll(async () => {
  await app?.close();
  await up?.close();
});

it('request.query stays empty; the upstream gets the enforced query', async () => {
  const ok = await app.inject({ url: '/api/v1/query?query=up&time=1&x=%41', headers: { authorization: 'Bearer alice' } });
  expect(ok.statusCode).toBe(200);
  expect(seen).toEqual([{}]);
  expect(up.requests).toHaveLength(1);
  expect(up.requests[0]!.params.get('query')).toBe('up{namespace=~"team-a-.*"}');
  expect(up.requests[0]!.params.get('x')).toBe('A');
});
