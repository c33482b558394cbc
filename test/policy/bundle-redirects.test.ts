// Redirects from the bundle service: the bundle credential never follows a redirect to another
// origin, and a redirect from HTTPS to plain HTTP (where anyone on the path could serve a policy
// and read the request) is refused.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../../e2e/harness/bundles.ts';
import { createTestPki, type TestPki } from '../../e2e/harness/certs.ts';
import type { BundleConfig } from '../../src/config/schema.ts';
import { BundleClient } from '../../src/policy/bundle-client.ts';
import { PolicyHolder } from '../../src/policy/holder.ts';

const quiet = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };
let bundle: Buffer;
let other: Server;
let otherUrl: string;
const otherSeen: IncomingHttpHeaders[] = [];
let origin: Server;
let originUrl: string;
let https: HttpsServer;
let httpsUrl: string;
let pki: TestPki;
let redirectTo = '';

function listen(s: Server | HttpsServer, scheme: string): Promise<string> {
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(`${scheme}://127.0.0.1:${(s.address() as AddressInfo).port}`)));
}

beforeAll(async () => {
  bundle = readFileSync(await buildBundle({ revision: 'r1' }));
  other = createServer((req, res) => {
    otherSeen.push(req.headers);
    res.writeHead(200, { etag: '"o"', 'content-type': 'application/gzip' }).end(bundle);
  });
  otherUrl = await listen(other, 'http');
  origin = createServer((req, res) => {
    if (req.url!.startsWith('/same/')) return void res.writeHead(302, { location: '/bundle.tar.gz' }).end();
    if (req.url!.startsWith('/to-https/')) return void res.writeHead(302, { location: `${httpsUrl}/hop` }).end();
    if (req.url === '/bundle.tar.gz') return void res.writeHead(200, { etag: '"s"', 'content-type': 'application/gzip' }).end(bundle);
    res.writeHead(302, { location: redirectTo }).end();
  });
  originUrl = await listen(origin, 'http');
  pki = createTestPki('/CN=Redirect Test CA');
  const cert = pki.issue('bundle-server', { subject: '/CN=127.0.0.1', san: ['IP:127.0.0.1'], serverAuth: true });
  https = createHttpsServer({ key: cert.keyPem, cert: cert.certPem }, (_req, res) => res.writeHead(302, { location: redirectTo }).end());
  httpsUrl = await listen(https, 'https');
}, 60_000);
afterAll(async () => {
  for (const s of [other, origin, https]) await new Promise<void>((r) => s.close(() => r()));
  pki.cleanup();
});

function client(url: string, holder: PolicyHolder, over: Partial<BundleConfig> = {}): Promise<BundleClient> {
  return BundleClient.create({
    config: {
      url,
      resource: '/bundle.tar.gz',
      auth: { type: 'bearer', token: 'bundle-s3cret-token', scheme: 'Bearer' },
      polling: { minDelaySeconds: 60, maxDelaySeconds: 120 },
      timeoutMs: 2_000,
      maxSizeBytes: 10 * 1024 * 1024,
      ...over,
    },
    holder,
    entrypoint: 'lbac/decision',
    configData: {},
    logger: quiet,
  });
}

describe('bundle service redirects', () => {
  it('a redirect within the origin is followed', async () => {
    const holder = new PolicyHolder();
    const c = await client(`${originUrl}/same/`, holder);
    expect(await c.poll()).toMatchObject({ kind: 'activated', revision: 'r1' });
    await c.stop();
  });

  it('a redirect to another origin never carries the bundle credential', async () => {
    redirectTo = `${otherUrl}/elsewhere.tar.gz`;
    otherSeen.length = 0;
    const c = await client(`${originUrl}/moved/`, new PolicyHolder());
    expect(await c.poll()).toMatchObject({ kind: 'activated' });
    await c.stop();
    expect(otherSeen.length).toBe(1);
    expect(otherSeen[0]!.authorization).toBeUndefined();
  });

  it('a redirect from HTTPS to plain HTTP is refused: nothing is requested over HTTP, the active policy stays', async () => {
    redirectTo = `${otherUrl}/downgraded.tar.gz`;
    otherSeen.length = 0;
    const holder = new PolicyHolder();
    const c = await client(httpsUrl, holder, { tls: { ca: pki.ca.cert } });
    const outcome = await c.poll();
    await c.stop();
    expect(outcome).toMatchObject({ kind: 'failed', error: expect.stringMatching(/redirect/i) });
    expect(otherSeen).toEqual([]);
    expect(holder.ready).toBe(false);
  });

  it('once a redirect chain has reached HTTPS it never goes back to plain HTTP, also from an http:// bundle URL', async () => {
    redirectTo = `${otherUrl}/downgraded-again.tar.gz`;
    otherSeen.length = 0;
    const holder = new PolicyHolder();
    const c = await client(`${originUrl}/to-https/`, holder, { tls: { ca: pki.ca.cert } });
    const outcome = await c.poll();
    await c.stop();
    expect(outcome).toMatchObject({ kind: 'failed', error: expect.stringMatching(/redirect/i) });
    expect(otherSeen).toEqual([]);
    expect(holder.ready).toBe(false);
  });
});
