import { Writable } from 'node:stream';
import Fastify from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { PolicyHolder } from '../../src/policy/holder.ts';
import { buildApp } from '../../src/server/app.ts';
import { GatewayLogController } from '../../src/server/log-controller.ts';
import { AuditLog } from '../../src/server/plugins/audit.ts';
import { lazyRequestLogger } from '../../src/server/request-logger.ts';
import { fakeSource, startUpstream, testConfig, type Upstream } from './helpers.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

const messages = (lines: Record<string, unknown>[]) => lines.map((l) => l['msg']);

describe('GatewayLogController', () => {
  async function plainApp(accessLog: boolean) {
    const { logger, lines } = capture();
    const app = Fastify({ loggerInstance: logger, childLoggerFactory: lazyRequestLogger, logController: new GatewayLogController({ accessLog }) });
    app.get('/ok', async () => 'ok');
    app.get('/fail', async () => {
      throw new Error('boom');
    });
    await app.ready();
    return { app, lines };
  }

  it('writes no per-request line for a successful request unless the access log is on', async () => {
    const off = await plainApp(false);
    expect((await off.app.inject({ url: '/ok' })).statusCode).toBe(200);
    expect(off.lines).toEqual([]);
    await off.app.close();

    const on = await plainApp(true);
    await on.app.inject({ url: '/ok' });
    expect(messages(on.lines)).toEqual(['incoming request', 'request completed']);
    expect(on.lines[1]).toMatchObject({ level: 30, reqId: on.lines[0]!['reqId'], res: { statusCode: 200 } });
    await on.app.close();
  });

  it('still logs a failed request with the access log off', async () => {
    const { app, lines } = await plainApp(false);
    expect((await app.inject({ url: '/fail' })).statusCode).toBe(500);
    expect(lines.some((l) => l['level'] === 50 && (l['err'] as { message?: string } | undefined)?.message === 'boom')).toBe(true);
    expect(messages(lines)).not.toContain('incoming request');
    await app.close();
  });
});

describe('server.accessLog in the gateway', () => {
  let upstream: Upstream;
  beforeAll(async () => {
    upstream = await startUpstream();
  });
  afterAll(async () => upstream.close());

  async function gateway(accessLog?: boolean) {
    const parsed = testConfig(upstream.url);
    const config = accessLog === undefined ? parsed : { ...parsed, server: { ...parsed.server, accessLog } };
    const { logger, lines } = capture();
    const engine = await PolicyEngine.fromFile(config.policyWasm, { lbac: config.policyData }, { entrypoint: config.policy.entrypoint });
    const app = await buildApp({
      config,
      authenticator: new Authenticator([fakeSource]),
      engine: new PolicyHolder(engine, 'test'),
      logger,
      auditLog: new AuditLog(() => undefined),
    });
    await app.ready();
    return { app, lines };
  }
  const query = { method: 'GET' as const, url: '/prometheus/api/v1/query?query=up', headers: { authorization: 'Bearer alice' } };

  it('is off by default: an answered query writes no log line at info', async () => {
    const { app, lines } = await gateway();
    const res = await app.inject(query);
    expect(res.statusCode).toBe(200);
    expect(upstream.requests.at(-1)?.params.get('query')).toContain('team-a-');
    expect(messages(lines)).not.toContain('request completed');
    expect(messages(lines)).not.toContain('incoming request');
    // A refused request is still logged (the gateway's error handler).
    expect((await app.inject({ ...query, headers: { authorization: 'Bearer nobody-knows' } })).statusCode).toBe(401);
    expect(lines.length).toBeGreaterThan(0);
    await app.close();
  });

  it('server.accessLog: true writes Fastify\'s two lines per request', async () => {
    const { app, lines } = await gateway(true);
    expect((await app.inject(query)).statusCode).toBe(200);
    expect(messages(lines)).toEqual(['incoming request', 'request completed']);
    await app.close();
  });
});
