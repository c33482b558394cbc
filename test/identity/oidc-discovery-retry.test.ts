// A discovery failure is remembered for retryMs; the error given meanwhile repeats the first one's redacted text.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { OidcDiscovery } from '../../src/identity/oidc.ts';

const SECRET = 's3cr3t-in-a-url';
let issuer: string;
let requests = 0;
const server = createServer((_req, res) => {
  requests++;
  // An issuer mismatch: openid-client refuses the document (its error's cause carries the body).
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: `https://idp.example/?token=${SECRET}` }));
});

beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

it('a failed discovery is not retried within retryMs, and the repeated error is the first one, redacted', async () => {
  const d = new OidcDiscovery({ issuer, clientId: 'c', timeoutMs: 1000, retryMs: 60_000 });
  const first = await d.get().catch((e: unknown) => e);
  const again = await d.get().catch((e: unknown) => e);
  expect(first).toBeInstanceOf(GatewayError);
  expect(again).toBeInstanceOf(GatewayError);
  expect(again).toMatchObject({ code: 'identity_unavailable' });
  expect((again as Error).message.startsWith((first as Error).message)).toBe(true);
  expect((again as Error).message).toContain('recently');
  expect(d.attempts).toBe(1);
  expect(requests).toBe(1);
});
