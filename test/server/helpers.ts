// Shared fixtures for server tests: a canned upstream, a fake identity source
// (bearer token → subject), the real default policy and buildApp.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { parseConfig, type GatewayConfig } from '../../src/config/load.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { InvalidTokenError } from '../../src/identity/jwt.ts';
import type { IdentitySource } from '../../src/identity/source.ts';
import type { Subject } from '../../src/policy/decision.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { PolicyHolder } from '../../src/policy/holder.ts';
import { buildApp } from '../../src/server/app.ts';
import { createMetrics, type GatewayMetrics } from '../../src/server/metrics.ts';
import { AuditLog } from '../../src/server/plugins/audit.ts';
import { dataRevision } from '../../src/server/reload.ts';

export const SUBJECTS: Record<string, Subject> = {
  alice: { sub: 'u-alice', username: 'alice', groups: ['team-a'], roles: [], auth: 'fake', claims: { secret: 'claim-value' } },
  carol: { sub: 'u-carol', username: 'carol', groups: ['admins'], roles: [], auth: 'fake', claims: {} },
  mallory: { sub: 'u-mallory', username: 'mallory', groups: ['nobody'], roles: [], auth: 'fake', claims: {} },
};

export const fakeSource: IdentitySource = {
  name: 'fake',
  authenticate: async (c) => {
    if (c.bearer === undefined) return undefined;
    const s = SUBJECTS[c.bearer];
    if (s === undefined) throw new InvalidTokenError('unknown token');
    return s;
  },
};

export interface Upstream {
  url: string;
  requests: { path: string; params: URLSearchParams; headers: IncomingHttpHeaders }[];
  /** Hold answers for this long (ms). */
  delayMs: number;
  /** Per-request answer [status, JSON body]; undefined → 200 with an empty vector. */
  answer?: (path: string, params: URLSearchParams) => [number, string] | undefined;
  /** Extra headers on every answer. */
  answerHeaders?: Record<string, string>;
  close(): Promise<void>;
}

export async function startUpstream(): Promise<Upstream> {
  const u: Upstream = { url: '', requests: [], delayMs: 0, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const params = new URLSearchParams(url.search);
      for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) params.append(k, v);
      u.requests.push({ path: url.pathname, params, headers: req.headers });
      const [status, body] = u.answer?.(url.pathname, params) ?? [200, '{"status":"success","data":{"resultType":"vector","result":[]}}'];
      setTimeout(() => res.writeHead(status, { 'content-type': 'application/json', ...u.answerHeaders }).end(body), u.delayMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  u.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  u.close = () => new Promise<void>((r) => server.close(() => r()));
  return u;
}

/**
 * The identity, admins and teams of every in-process test config: an API-key
 * source no test token matches (tests use fakeSource), admins, and team-a.
 */
export const TEST_IDENTITY_AND_TEAMS = `identity:
  providers:
    - type: apikey
      keys: [{ name: unused, hash: "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" }]
admins: { groups: [admins] }
teams:
  team-a: { groups: [team-a], selectors: [{ namespace: "~team-a-.*" }], headers: { X-Scope-OrgID: tenant-a } }
`;

/** A config of these upstreams (YAML flow maps, one per line) with the test identity and teams, load shedding off. */
export function upstreamsConfig(...upstreams: string[]): GatewayConfig {
  return parseConfig(`server:\n  loadShedding: { enabled: false }\nupstreams:\n${upstreams.map((u) => `  - ${u}\n`).join('')}${TEST_IDENTITY_AND_TEAMS}`, { env: {} });
}

export function testConfig(upstreamUrl: string, extra = ''): GatewayConfig {
  return parseConfig(
    `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: metrics, kind: prometheus, url: "${upstreamUrl}", mount: /prometheus, maxConcurrent: 2 }
${TEST_IDENTITY_AND_TEAMS}${extra}
`,
    { env: {} },
  );
}

export interface TestApp {
  app: FastifyInstance;
  audit: Record<string, unknown>[];
  metrics: GatewayMetrics;
  holder: PolicyHolder;
}

/** `authenticator`: instead of one over `identity` (default fakeSource), e.g. `Authenticator.fromConfig(config)`. */
export async function testApp(
  config: GatewayConfig,
  opts: {
    metrics?: GatewayMetrics;
    logger?: Logger;
    identity?: IdentitySource;
    authenticator?: Authenticator;
    dataRevision?: () => string;
    /** Runs on the built app before `ready()` (hooks a test observes requests with). */
    beforeReady?: (app: FastifyInstance) => void;
  } = {},
): Promise<TestApp> {
  const audit: Record<string, unknown>[] = [];
  const engine = await PolicyEngine.fromFile(config.policyWasm, { lbac: config.policyData }, { entrypoint: config.policy.entrypoint });
  const holder = new PolicyHolder(engine, 'test');
  const metrics = opts.metrics ?? createMetrics({ defaultMetrics: false });
  const app = await buildApp({
    config,
    authenticator: opts.authenticator ?? new Authenticator([opts.identity ?? fakeSource]),
    engine: holder,
    logger: opts.logger ?? pino({ level: 'silent' }),
    metrics,
    auditLog: new AuditLog((line) => audit.push(JSON.parse(line) as Record<string, unknown>)),
    dataRevision: opts.dataRevision ?? (() => dataRevision(config)),
  });
  opts.beforeReady?.(app);
  await app.ready();
  return { app, audit, metrics, holder };
}
