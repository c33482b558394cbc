import Fastify from 'fastify';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { lazyRequestLogger } from '../../src/server/request-logger.ts';

function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

async function appWith(level: string) {
  const { logger, lines } = capture(level);
  const app = Fastify({ loggerInstance: logger, childLoggerFactory: lazyRequestLogger });
  app.get('/quiet', async (req) => {
    req.log.debug({ detail: 1 }, 'below the level');
    return 'ok';
  });
  app.get('/loud', async (req) => {
    req.log.warn({ detail: 2 }, 'at the level');
    req.log.child({ part: 'x' }).error('from a grandchild');
    return 'ok';
  });
  app.get('/fail', async () => {
    throw new Error('boom');
  });
  await app.ready();
  return { app, lines, logger };
}

describe('lazyRequestLogger', () => {
  it('writes what a pino child would, with the request id, only at enabled levels', async () => {
    const { app, lines } = await appWith('warn');
    await app.inject({ url: '/quiet' });
    expect(lines).toEqual([]);
    const loud = await app.inject({ url: '/loud' });
    expect(loud.statusCode).toBe(200);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 40, detail: 2, msg: 'at the level', reqId: expect.any(String) });
    expect(lines[1]).toMatchObject({ level: 50, part: 'x', msg: 'from a grandchild', reqId: lines[0]!['reqId'] });
    // Fastify's own error log for a failed request goes through it too.
    await app.inject({ url: '/fail' });
    expect(lines.at(-1)).toMatchObject({ level: 50, reqId: expect.any(String), err: expect.objectContaining({ message: 'boom' }) });
    await app.close();
  });

  it('makes no pino child for a request that logs nothing at an enabled level', async () => {
    const { app, logger } = await appWith('warn');
    const child = vi.spyOn(logger, 'child');
    await app.inject({ url: '/quiet' });
    expect(child).not.toHaveBeenCalled();
    await app.inject({ url: '/loud' });
    expect(child).toHaveBeenCalled();
    await app.close();
  });

  it('follows the parent level as it changes (a reload), and a per-route level', async () => {
    const { logger, lines } = capture('warn');
    const parent = logger.child({});
    const log = lazyRequestLogger(parent, { reqId: 'r1' }, {});
    log.info('dropped');
    expect((log as unknown as { isLevelEnabled(l: string): boolean }).isLevelEnabled('info')).toBe(false);
    parent.level = 'debug';
    expect(log.level).toBe('debug');
    log.debug('kept');
    expect(lines.map((l) => l['msg'])).toEqual(['kept']);
    const routeLevel = lazyRequestLogger(parent, { reqId: 'r2' }, { level: 'error' });
    routeLevel.warn('dropped by the route level');
    routeLevel.error('kept by the route level');
    const silent = lazyRequestLogger(parent, { reqId: 'r3' }, { level: 'silent' });
    silent.fatal('never');
    expect(lines.map((l) => l['msg'])).toEqual(['kept', 'kept by the route level']);
    expect(lines[1]).toMatchObject({ reqId: 'r2', level: 50 });
  });
});
