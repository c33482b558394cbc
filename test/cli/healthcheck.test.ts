// bin/healthcheck.js, the image's HEALTHCHECK: healthy only when /healthz on LBAC_LISTEN's port answers 200,
// over plain HTTP or, when server.tls makes the port speak TLS, over HTTPS.
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestPki, type TestPki } from '../../e2e/harness/certs.ts';

let pki: TestPki;
const servers: Server[] = [];
beforeAll(() => {
  pki = createTestPki('/CN=Healthcheck CA');
});
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  pki?.cleanup();
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}
const answering = (status: number) => (req: { url?: string }, res: { writeHead(s: number): { end(b?: string): void } }) => void res.writeHead(req.url === '/healthz' ? status : 404).end('{}');
/** The exit code (run asynchronously: the servers answer from this process). */
const check = (port: number) =>
  new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, ['bin/healthcheck.js'], { env: { ...process.env, LBAC_LISTEN: `0.0.0.0:${port}` }, stdio: 'ignore', timeout: 15_000 });
    child.on('exit', (code) => resolve(code));
  });

it('exit 0 when /healthz answers 200 over HTTP; 1 when it answers otherwise', async () => {
  expect(await check(await listen(createServer(answering(200))))).toBe(0);
  expect(await check(await listen(createServer(answering(503))))).toBe(1);
});

it('exit 0 when the port speaks TLS (server.tls) and /healthz answers 200; 1 with 503', async () => {
  const cert = pki.issue('gateway', { subject: '/CN=gateway.example', san: ['DNS:gateway.example'], serverAuth: true });
  const tls = (status: number) => createHttpsServer({ cert: cert.certPem, key: cert.keyPem }, answering(status)) as unknown as Server;
  expect(await check(await listen(tls(200)))).toBe(0);
  expect(await check(await listen(tls(503)))).toBe(1);
});

it('exit 1 when nothing listens', async () => {
  const port = await listen(createServer(answering(200)));
  await new Promise((r) => servers.pop()!.close(r));
  expect(await check(port)).toBe(1);
});
