// server.maxBufferedAnswerBytes: the upstream answers a process reads whole (to filter or merge
// them) share one byte budget, so many concurrent large answers cannot take all its memory.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstream, testApp, testConfig, type TestApp } from './helpers.ts';

const KIB = 1024;
/** A label-values answer of about `bytes` bytes, split where the test holds it. */
function answer(bytes: number): [string, string] {
  const values: string[] = [];
  for (let i = 0, n = 40; n < bytes; i++, n += 18) values.push(`team-a-${String(i).padStart(7, '0')}`);
  const text = JSON.stringify({ status: 'success', data: values });
  const cut = Math.floor(text.length * 0.8);
  return [text.slice(0, cut), text.slice(cut)];
}

let server: Server;
/** The bytes of the part every answer sends before it is held. */
let headBytes = 0;
let url = '';
let t: TestApp;
/** Answers whose first part was sent, waiting for `release()`. */
const held: { res: ServerResponse; rest: string }[] = [];
const release = () => {
  for (const h of held.splice(0)) h.res.end(h.rest);
};

beforeAll(async () => {
  const [head, rest] = answer(900 * KIB);
  headBytes = Buffer.byteLength(head);
  server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(head);
    held.push({ res, rest });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const config = testConfig(url);
  t = await testApp({ ...config, server: { ...config.server, maxBufferedAnswerBytes: 1024 * KIB } });
});
afterAll(async () => {
  release();
  await t?.app.close();
  await new Promise<void>((r) => server.close(() => r()));
});

/** lbac_gateway_shed_requests_total{reason} of the app under test. */
const shedCount = async (reason: string): Promise<number> => (await t.metrics.shed.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
const bufferedBytes = async (): Promise<number> => (await t.metrics.registry.getSingleMetric('lbac_gateway_buffered_answer_bytes')!.get()).values[0]?.value ?? 0;
const values = () => t.app.inject({ url: '/prometheus/api/v1/label/namespace/values', headers: { authorization: 'Bearer alice' } });
const until = async (cond: () => boolean) => {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
};

describe('server.maxBufferedAnswerBytes', () => {
  it('refuses with 503 + Retry-After an answer that does not fit beside one being read, and serves the first', async () => {
    const first = values();
    await until(() => held.length === 1);
    // The first part (≈ 700 KiB) is read and held: waited for on the gauge, not a fixed delay.
    await expect.poll(() => bufferedBytes(), { timeout: 10_000, interval: 10 }).toBeGreaterThanOrEqual(headBytes);
    const second = await values();
    expect(second.statusCode, second.body).toBe(503);
    expect(second.headers['retry-after']).toBeDefined();
    expect(second.json()).toMatchObject({ status: 'error', errorType: 'unavailable' });
    expect(second.body).toMatch(/too many large upstream answers/);
    // Counted as shed, under its own reason, once.
    expect(await shedCount('answer_budget')).toBe(1);
    // And named in its audit line (decided, then shed).
    await until(() => t.audit.some((r) => (r['response'] as { status: number }).status === 503));
    expect(t.audit.find((r) => (r['response'] as { status: number }).status === 503)).toMatchObject({ result: { allow: true }, response: { status: 503, error: 'overloaded', shed: 'answer_budget' } });
    release();
    const ok = await first;
    expect(ok.statusCode, ok.body.slice(0, 200)).toBe(200);
    expect((ok.json() as { data: string[] }).data.length).toBeGreaterThan(40_000);
  });

  it('gives the bytes back: the next answer is served', async () => {
    const next = values();
    await until(() => held.length === 1);
    release();
    expect((await next).statusCode).toBe(200);
    expect(await bufferedBytes()).toBe(0);
  });

  it('an answer larger than the budget alone is refused (503), not read past it', async () => {
    const big = await startUpstream();
    try {
      const [head, rest] = answer(1100 * KIB);
      big.answer = () => [200, head + rest];
      const config = testConfig(big.url);
      const small = await testApp({ ...config, server: { ...config.server, maxBufferedAnswerBytes: 1024 * KIB } });
      try {
        const r = await small.app.inject({ url: '/prometheus/api/v1/label/namespace/values', headers: { authorization: 'Bearer alice' } });
        expect(r.statusCode).toBe(503);
      } finally {
        await small.app.close();
      }
    } finally {
      await big.close();
    }
  });
});
