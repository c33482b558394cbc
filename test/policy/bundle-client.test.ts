// The bundle client against a local HTTP server (nginx-backed e2e lives in
// e2e/bundles.test.ts): ETag/304, auth, failures, persistence, delays; and the
// bundle section of the config.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { buildBundle, generateSigningKey, type SigningKeyPair } from '../../e2e/harness/bundles.ts';
import { createTestPki, type CertFiles, type TestPki } from '../../e2e/harness/certs.ts';
import { parseConfig } from '../../src/config/load.ts';
import { bundleSchema, type BundleConfig } from '../../src/config/schema.ts';
import { BUNDLE_CONTENT_TYPE, BundleClient, bundleUrl, displayUrl, nextDelayMs } from '../../src/policy/bundle-client.ts';
import { PolicyHolder } from '../../src/policy/holder.ts';

const quiet = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };
let server: Server;
let url: string;
let served: { body: Buffer; etag: string; status?: number } = { body: Buffer.alloc(0), etag: '"0"' };
const seen: IncomingHttpHeaders[] = [];
let key: SigningKeyPair;
let b1: Buffer;
let b2: Buffer;

beforeAll(async () => {
  key = generateSigningKey('RS256');
  b1 = readFileSync(await buildBundle({ revision: 'one', signingKey: key }));
  b2 = readFileSync(await buildBundle({ revision: 'two', signingKey: key }));
  server = createServer((req, res) => {
    seen.push(req.headers);
    if (served.status !== undefined) return void res.writeHead(served.status).end();
    if (req.headers.authorization !== 'Bearer t0k') return void res.writeHead(401).end();
    if (req.headers['if-none-match'] === served.etag) return void res.writeHead(304).end();
    // An empty etag: a service that sends none.
    res.writeHead(200, { ...(served.etag === '' ? {} : { etag: served.etag }), 'content-type': 'application/gzip' }).end(served.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  url = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`;
}, 60_000);
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function config(over: Partial<BundleConfig> = {}): BundleConfig {
  return {
    url: `${url}/`,
    resource: '/b.tar.gz',
    auth: { type: 'bearer', token: 't0k', scheme: 'Bearer' },
    polling: { minDelaySeconds: 60, maxDelaySeconds: 120 },
    timeoutMs: 2_000,
    maxSizeBytes: 10 * 1024 * 1024,
    signing: { keys: [{ keyid: 'default', algorithm: 'RS256', publicKey: key.publicKeyPem }], excludeFiles: [] },
    ...over,
  };
}

describe('BundleClient', () => {
  it('downloads with auth, activates, then sends If-None-Match and keeps the policy on 304', async () => {
    served = { body: b1, etag: '"e1"' };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: config(), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect(client.url).toBe(`${url}/b.tar.gz`);
    expect(await client.poll()).toEqual({ kind: 'activated', revision: 'one', etag: '"e1"' });
    expect(holder.info).toMatchObject({ revision: 'one', source: `bundle:${url}/b.tar.gz` });
    expect(await client.poll()).toEqual({ kind: 'not-modified' });
    expect(seen.at(-1)!['if-none-match']).toBe('"e1"');
    served = { body: b2, etag: '"e2"' };
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'two' });
  });

  it('keeps the active policy on HTTP errors, wrong auth and rejected bundles, counting failures', async () => {
    served = { body: b1, etag: '"e1"' };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: config(), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    await client.poll();
    served = { body: b2, etag: '"e2"', status: 500 };
    expect(await client.poll()).toEqual({ kind: 'failed', error: 'bundle service answered HTTP 500' });
    served = { body: Buffer.from('junk'), etag: '"e3"' };
    expect(await client.poll()).toMatchObject({ kind: 'failed', error: expect.stringMatching(/not a gzip file/) });
    const noAuth = await BundleClient.create({ config: config({ auth: { type: 'none', scheme: 'Bearer' } }), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect(await noAuth.poll()).toMatchObject({ kind: 'failed', error: 'bundle service answered HTTP 401' });
    expect(holder.revision).toBe('one');
    expect(client.status.consecutiveFailures).toBe(2);
    expect(client.status.etag).toBe('"e1"'); // a rejected bundle's ETag is not remembered
  });

  it('a secret in the bundle URL (pre-signed query, userinfo) is used to download but never shown', async () => {
    served = { body: b1, etag: '"e-sig"' };
    const holder = new PolicyHolder();
    const lines: string[] = [];
    const record = (level: string) => (o: unknown, msg?: string) => void lines.push(`${level} ${JSON.stringify(o)} ${msg ?? ''}`);
    const logger = { info: record('info'), warn: record('warn'), error: record('error'), debug: record('debug') };
    const client = await BundleClient.create({ config: config({ resource: '/b.tar.gz?X-Amz-Signature=s3cr3t' }), holder, entrypoint: 'lbac/decision', configData: {}, logger });
    served = { ...served, status: 503 };
    await client.poll();
    served = { body: b1, etag: '"e-sig"' };
    await client.poll();
    expect(holder.revision).toBe('one');
    expect(client.url).toContain('s3cr3t');
    expect(`${holder.info?.source} ${client.status.url} ${lines.join('')}`).not.toContain('s3cr3t');
    expect(holder.info?.source).toBe(`bundle:${url}/b.tar.gz`);
    expect(displayUrl('https://user:pa55@bundles.example/p/b.tar.gz?sig=x#f')).toBe('https://bundles.example/p/b.tar.gz');
  });

  it('persists the last good bundle atomically and starts from it when the service is down', async () => {
    const dir = join(tempDir('lbac-persist-'), 'state');
    served = { body: b2, etag: '"e2"' };
    const first = await BundleClient.create({ config: config({ persistDir: dir }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    await first.poll();
    expect(readFileSync(join(dir, 'bundle.tar.gz')).equals(b2)).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'bundle.json'), 'utf8'))).toMatchObject({ etag: '"e2"', revision: 'two' });
    served = { ...served, status: 503 };
    const holder = new PolicyHolder();
    const second = await BundleClient.create({ config: config({ persistDir: dir }), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect(await second.loadPersisted()).toBe('two');
    expect(holder.info?.source).toBe(`persisted:${join(dir, 'bundle.tar.gz')}`);
    // The persisted ETag is not reused: the first download after a start is unconditional, so an
    // older bundle placed in persistDir cannot stay active through 304s.
    expect(second.status.etag).toBeUndefined();
    served = { body: b2, etag: '"e2"' };
    const before = seen.length;
    await second.poll();
    expect(seen.slice(before).map((h) => h['if-none-match'])).toEqual([undefined]);
    expect(second.status.etag).toBe('"e2"');
    // A persisted bundle that no longer verifies (key rotated) is not used.
    const other = generateSigningKey('RS256');
    const strict = await BundleClient.create({
      config: config({ persistDir: dir, signing: { keys: [{ keyid: 'default', algorithm: 'RS256', publicKey: other.publicKeyPem }], excludeFiles: [] } }),
      holder: new PolicyHolder(),
      entrypoint: 'lbac/decision',
      configData: {},
      logger: quiet,
    });
    expect(await strict.loadPersisted()).toBeUndefined();
    writeFileSync(join(dir, 'bundle.tar.gz'), 'corrupt');
    expect(await second.loadPersisted()).toBeUndefined();
    expect(existsSync(join(dir, 'bundle.json'))).toBe(true);
  });

  it('a persisted bundle from another bundle URL (or without its bundle.json) is not activated', async () => {
    const dir = join(tempDir('lbac-persist-'), 'state');
    served = { body: b2, etag: '"e2"' };
    const staging = await BundleClient.create({ config: config({ persistDir: dir, resource: '/staging.tar.gz' }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect((await staging.poll()).kind).toBe('activated');
    const lines: string[] = [];
    const logger = { ...quiet, error: (o: object, m: string) => void lines.push(`${JSON.stringify(o)} ${m}`) };
    const holder = new PolicyHolder();
    const production = await BundleClient.create({ config: config({ persistDir: dir }), holder, entrypoint: 'lbac/decision', configData: {}, logger });
    expect(await production.loadPersisted()).toBeUndefined();
    expect(holder.ready).toBe(false);
    expect(lines.join('')).toContain('another bundle URL');
    // The same URL still starts from it; without bundle.json, nothing says where it came from.
    const again = await BundleClient.create({ config: config({ persistDir: dir, resource: '/staging.tar.gz' }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect(await again.loadPersisted()).toBe('two');
    rmSync(join(dir, 'bundle.json'));
    expect(await again.loadPersisted()).toBeUndefined();
  });

  it('a persisted bundle from the same path with another query or other credentials is not activated (a service may choose the bundle by either)', async () => {
    const dir = join(tempDir('lbac-persist-'), 'state');
    served = { body: b2, etag: '"e2"' };
    const staging = await BundleClient.create({ config: config({ persistDir: dir, resource: '/b.tar.gz?env=staging' }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect((await staging.poll()).kind).toBe('activated');
    const start = async (over: Partial<BundleConfig>) => {
      const holder = new PolicyHolder();
      const client = await BundleClient.create({ config: config({ persistDir: dir, ...over }), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
      return { revision: await client.loadPersisted(), ready: holder.ready };
    };
    // The shown URL is the same for all of these (no query): only the source identity tells them apart.
    expect(await start({ resource: '/b.tar.gz?env=prod' })).toEqual({ revision: undefined, ready: false });
    expect(await start({ resource: '/b.tar.gz' })).toEqual({ revision: undefined, ready: false });
    expect(await start({ resource: '/b.tar.gz?env=staging', auth: { type: 'bearer', token: 'prod-token', scheme: 'Bearer' } })).toEqual({ revision: undefined, ready: false });
    expect(await start({ resource: '/b.tar.gz?env=staging' })).toEqual({ revision: 'two', ready: true });
    // Re-signing a pre-signed URL changes only its signature's parameters: the same bundle.
    const signed = await BundleClient.create({ config: config({ persistDir: dir, resource: '/b.tar.gz?env=staging&X-Amz-Signature=aa&X-Amz-Date=1&sig=x&se=1' }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect((await signed.poll()).kind).toBe('activated');
    expect(await start({ resource: '/b.tar.gz?env=staging&X-Amz-Signature=bb&X-Amz-Date=2&sig=y&se=2' })).toEqual({ revision: 'two', ready: true });
    expect(await start({ resource: '/b.tar.gz?env=prod&X-Amz-Signature=bb&X-Amz-Date=2' })).toEqual({ revision: undefined, ready: false });
    // A bundle.json written by an older gateway (no source) does not say: not used.
    const metaFile = join(dir, 'bundle.json');
    const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as Record<string, unknown>;
    delete meta['source'];
    writeFileSync(metaFile, JSON.stringify(meta));
    expect(await start({ resource: '/b.tar.gz?env=staging' })).toEqual({ revision: undefined, ready: false });
  });

  it('a token file whose content rotates keeps the persisted bundle: its path is the identity, not the token', async () => {
    const dir = join(tempDir('lbac-persist-'), 'state');
    const tokenFile = join(dir, '..', 'token');
    writeFileSync(tokenFile, 't0k\n');
    served = { body: b1, etag: '"e1"' };
    const auth = { type: 'bearer' as const, tokenFile, scheme: 'Bearer' };
    const first = await BundleClient.create({ config: config({ persistDir: dir, auth }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect((await first.poll()).kind).toBe('activated');
    writeFileSync(tokenFile, 'rotated\n');
    const again = await BundleClient.create({ config: config({ persistDir: dir, auth }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect(await again.loadPersisted()).toBe('one');
  });

  it('a 304 to the unconditional first download is a failure, not "not modified"', async () => {
    const dir = join(tempDir('lbac-persist-'), 'state');
    served = { body: b1, etag: '"e1"' };
    const first = await BundleClient.create({ config: config({ persistDir: dir }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    await first.poll();
    // After a restart the persisted bundle is active and the first request carries no If-None-Match.
    served = { body: b1, etag: '"e1"', status: 304 };
    const holder = new PolicyHolder();
    const restarted = await BundleClient.create({ config: config({ persistDir: dir }), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect(await restarted.loadPersisted()).toBe('one');
    const outcome = await restarted.poll();
    expect(outcome).toMatchObject({ kind: 'failed', error: expect.stringContaining('unconditional') });
    expect(restarted.status.consecutiveFailures).toBe(1);
    // A 304 to a conditional request is still "not modified".
    served = { body: b1, etag: '"e1"' };
    expect((await restarted.poll()).kind).toBe('activated');
    expect((await restarted.poll()).kind).toBe('not-modified');
    expect(restarted.status.consecutiveFailures).toBe(0);
  });

  it('errors quote URLs without credentials or query (a fetch error quotes the URL it was given)', async () => {
    const lines: string[] = [];
    const logger = { ...quiet, error: (o: object, m: string) => void lines.push(`${JSON.stringify(o)} ${m}`) };
    // Not through the config schema (which refuses credentials in URLs): what fetch says is still redacted.
    const client = await BundleClient.create({ config: config({ url: 'http://reader:PASSW0RD@127.0.0.1:9/', resource: 'b.tar.gz?X-Amz-Signature=PRESIGNED' }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger });
    const outcome = await client.poll();
    expect(outcome.kind).toBe('failed');
    const shown = `${JSON.stringify(outcome)} ${client.status.lastError} ${lines.join('')}`;
    expect(shown).toContain('127.0.0.1');
    expect(shown).not.toContain('PASSW0RD');
    expect(shown).not.toContain('PRESIGNED');
  });

  it('a token that a header cannot carry is not sent, and not quoted in the error or the log (the HTTP client\'s own error quotes it)', async () => {
    const tokenFile = join(tempDir('lbac-token-'), 'token');
    writeFileSync(tokenFile, 't0k\nSECRET-PART\n');
    const logged: string[] = [];
    const logger = { ...quiet, error: (o: object, m: string) => void logged.push(JSON.stringify(o) + m) };
    served = { body: b1, etag: '"e1"' };
    const client = await BundleClient.create({ config: config({ auth: { type: 'bearer', tokenFile, scheme: 'Bearer' } }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger });
    const before = seen.length;
    const outcome = await client.poll();
    expect(outcome).toMatchObject({ kind: 'failed', error: expect.stringMatching(/token is empty or holds a character a header cannot carry/) });
    expect(seen.length).toBe(before);
    expect(JSON.stringify([outcome, client.status, logged])).not.toContain('SECRET');
    expect(logged).toHaveLength(1);
    // An inline token is checked by the config.
    const inline = bundleSchema.safeParse({ url: 'http://b', auth: { type: 'bearer', token: 'a\nb' } });
    expect(inline.success).toBe(false);
    expect(JSON.stringify(inline.error?.issues)).toMatch(/CR, LF or NUL/);
  });

  it('a token file reached through symlinks (a Kubernetes Secret mount) is read; an inline token loses the newline of a ${VAR}', async () => {
    const dir = tempDir('lbac-token-');
    writeFileSync(join(dir, 'real'), 't0k\n');
    symlinkSync('real', join(dir, '..data'));
    symlinkSync('..data', join(dir, 'token'));
    served = { body: b1, etag: '"e1"' };
    const client = await BundleClient.create({ config: config({ auth: { type: 'bearer', tokenFile: join(dir, 'token'), scheme: 'Bearer' } }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    expect(await client.poll()).toMatchObject({ kind: 'activated' });
    const inline = bundleSchema.parse({ url: 'http://b', auth: { type: 'bearer', token: 't0k\n' } });
    expect(inline.auth.token).toBe('t0k');
  });

  it('a token file that is not a regular file (a FIFO would wait for a writer forever) fails the poll', async () => {
    const fifo = join(tempDir('lbac-token-'), 'fifo');
    execFileSync('mkfifo', [fifo]);
    const client = await BundleClient.create({ config: config({ auth: { type: 'bearer', tokenFile: fifo, scheme: 'Bearer' } }), holder: new PolicyHolder(), entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    const outcome = await Promise.race([client.poll(), new Promise((r) => setTimeout(() => r('still waiting'), 5_000))]);
    expect(outcome).toMatchObject({ kind: 'failed', error: expect.stringMatching(/is not a regular file/) });
  });

  it('a service without ETags: the same bundle again is "not modified", not activated again (which would close live tails and empty caches)', async () => {
    served = { body: b1, etag: '' };
    const activated: string[] = [];
    const logger = { ...quiet, info: (_o: object, m: string) => void (m === 'policy bundle activated' && activated.push(m)) };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: config(), holder, entrypoint: 'lbac/decision', configData: {}, logger });
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'one' });
    const since = holder.info?.activatedAt;
    expect(await client.poll()).toEqual({ kind: 'not-modified' });
    expect(await client.poll()).toEqual({ kind: 'not-modified' });
    expect(activated).toHaveLength(1);
    expect(holder.info?.activatedAt).toBe(since);
    served = { body: b2, etag: '' };
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'two' });
  });

  it('a service that builds the tarball at every request: the same files in other bytes are "not modified" too', async () => {
    // Other gzip bytes, and a tar whose headers differ (mtime) but whose files are the same.
    const tar = gunzipSync(b1);
    const rebuilt = (mtime: number, level: number) => {
      const t = Buffer.from(tar);
      for (let at = 0; at + 512 <= t.length && t[at] !== 0; ) {
        t.write(mtime.toString(8).padStart(11, '0') + '\0', at + 136, 'latin1');
        t.fill(' ', at + 148, at + 156);
        let sum = 0;
        for (let i = at; i < at + 512; i++) sum += t[i]!;
        t.write(sum.toString(8).padStart(6, '0') + '\0 ', at + 148, 'latin1');
        at += 512 + Math.ceil(parseInt(t.toString('latin1', at + 124, at + 135), 8) / 512) * 512;
      }
      return gzipSync(t, { level });
    };
    const activated: string[] = [];
    const logger = { ...quiet, info: (_o: object, m: string) => void (m === 'policy bundle activated' && activated.push(m)) };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: config(), holder, entrypoint: 'lbac/decision', configData: {}, logger });
    served = { body: rebuilt(1_700_000_000, 9), etag: '"a"' };
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'one' });
    for (const [mtime, level] of [[1_700_000_100, 1], [1_700_000_200, 6]] as const) {
      served = { body: rebuilt(mtime, level), etag: `"${mtime}"` };
      expect(Buffer.compare(gunzipSync(served.body), gunzipSync(rebuilt(1_700_000_000, 9)))).not.toBe(0);
      expect(await client.poll()).toEqual({ kind: 'not-modified' });
    }
    expect(activated).toHaveLength(1);
    // The ETag of the last answer is the one sent next.
    const before = seen.length;
    await client.poll();
    expect(seen[before]?.['if-none-match']).toBe('"1700000200"');
    // Other files: activated.
    served = { body: b2, etag: '"b"' };
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'two' });
    expect(activated).toHaveLength(2);
  });

  it('start() polls in the background until stop()', async () => {
    served = { body: b1, etag: '"e1"' };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: config({ polling: { minDelaySeconds: 0.05, maxDelaySeconds: 0.1 } }), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    const before = seen.length;
    await client.start();
    // Polled, not slept: on a loaded machine 0.5 s may hold fewer than three 0.05–0.1 s delays.
    const deadline = Date.now() + 10_000;
    while (seen.length - before < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await client.stop();
    expect(holder.revision).toBe('one');
    expect(seen.length - before).toBeGreaterThanOrEqual(3);
    const after = seen.length;
    await new Promise((r) => setTimeout(r, 200));
    expect(seen.length).toBe(after);
  });
});

/** Polls `cond` every 10 ms until it holds or `ms` pass. */
async function until(cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function listen(s: Server): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

/**
 * A bundle service that holds conditional requests carrying `Prefer: …wait=N`
 * until publish() or the wait ends (304), as a long-polling OPA bundle server
 * does; with longPoll false it answers at once with application/gzip.
 */
function longPollServer(longPoll: boolean) {
  let current: { body: Buffer; etag: string } = { body: Buffer.alloc(0), etag: '"0"' };
  const requests: { prefer: string | undefined; at: number }[] = [];
  const held = new Set<ServerResponse>();
  const contentType = longPoll ? BUNDLE_CONTENT_TYPE : 'application/gzip';
  const send = (res: ServerResponse) => void res.writeHead(200, { etag: current.etag, 'content-type': contentType }).end(current.body);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const prefer = [req.headers.prefer ?? []].flat().join(',') || undefined;
    requests.push({ prefer, at: Date.now() });
    const wait = /(?:^|;)\s*wait=(\d+)/.exec(prefer ?? '')?.[1];
    if (req.headers['if-none-match'] !== current.etag) return send(res);
    if (!longPoll || wait === undefined) return void res.writeHead(304).end();
    held.add(res);
    const timer = setTimeout(() => {
      held.delete(res);
      res.writeHead(304).end();
    }, Number(wait) * 1000);
    res.on('close', () => {
      clearTimeout(timer);
      held.delete(res);
    });
  });
  return {
    server,
    requests,
    held,
    publish(body: Buffer, etag: string) {
      current = { body, etag };
      for (const res of held) send(res);
      held.clear();
    },
  };
}

describe('long polling', () => {
  const lpConfig = (port: number, over: Partial<BundleConfig['polling']> = {}): BundleConfig =>
    config({ url: `http://127.0.0.1:${port}`, auth: { type: 'none', scheme: 'Bearer' }, timeoutMs: 300, polling: { minDelaySeconds: 30, maxDelaySeconds: 60, longPollingTimeoutSeconds: 1, ...over } });

  it('a long-polling service gets held requests and delivers a new bundle at once, without the polling delay', async () => {
    const svc = longPollServer(true);
    svc.publish(b1, '"lp1"');
    const port = await listen(svc.server);
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: lpConfig(port), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    try {
      await client.start();
      await until(() => holder.revision === 'one' && svc.held.size === 1);
      expect(client.status.longPolling).toBe(true);
      // The first request is plain, the next ones carry the wait.
      expect(svc.requests[0]!.prefer).toBe('modes=snapshot');
      expect(svc.requests[1]!.prefer).toBe('modes=snapshot;wait=1');
      // A held request outlives timeoutMs (300 ms): its timeout is the wait plus timeoutMs;
      // the wait ends with a 304 and the next long-poll request follows at once.
      await until(() => svc.requests.length >= 3, 10_000);
      await until(() => svc.held.size === 1);
      expect(client.status.consecutiveFailures).toBe(0);
      expect(client.status.lastError).toBeUndefined();
      const published = Date.now();
      svc.publish(b2, '"lp2"');
      await until(() => holder.revision === 'two', 2_000);
      expect(Date.now() - published).toBeLessThan(2_000); // polling delay is 30–60 s
      expect(client.status.etag).toBe('"lp2"');
    } finally {
      await client.stop();
      await new Promise<void>((r) => svc.server.close(() => r()));
    }
  });

  it('a service that answers long polls at once, or sends no ETag to long-poll with, is polled with the normal delays', async () => {
    for (const etag of ['"fast"', undefined]) {
      const requests: number[] = [];
      const server = createServer((req, res) => {
        requests.push(Date.now());
        if (etag !== undefined && req.headers['if-none-match'] === etag) return void res.writeHead(304).end();
        res.writeHead(200, { ...(etag === undefined ? {} : { etag }), 'content-type': BUNDLE_CONTENT_TYPE }).end(b1);
      });
      const port = await listen(server);
      const holder = new PolicyHolder();
      const client = await BundleClient.create({ config: lpConfig(port), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
      try {
        await client.start();
        await until(() => holder.revision === 'one');
        await new Promise((r) => setTimeout(r, 1_500));
        // The first download, at most one long poll answered at once, then the 30–60 s delay.
        expect(requests.length, `etag ${etag}`).toBeLessThanOrEqual(2);
      } finally {
        await client.stop();
        await new Promise<void>((r) => server.close(() => r()));
      }
    }
  });

  it('a service without long polling (plain content type) is polled with the normal delays', async () => {
    const svc = longPollServer(false);
    svc.publish(b1, '"p1"');
    const port = await listen(svc.server);
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: lpConfig(port), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    try {
      await client.start();
      await until(() => holder.revision === 'one');
      expect(client.status.longPolling).toBe(false);
      svc.publish(b2, '"p2"');
      await new Promise((r) => setTimeout(r, 700));
      // Still waiting out the 30–60 s polling delay: one request, no wait, old policy.
      expect(svc.requests).toHaveLength(1);
      expect(svc.requests[0]!.prefer).toBe('modes=snapshot');
      expect(holder.revision).toBe('one');
    } finally {
      await client.stop();
      await new Promise<void>((r) => svc.server.close(() => r()));
    }
  });

  it('without longPollingTimeoutSeconds no Prefer header is sent and the bundle content type changes nothing', async () => {
    const svc = longPollServer(true);
    svc.publish(b1, '"n1"');
    const port = await listen(svc.server);
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: lpConfig(port, { longPollingTimeoutSeconds: undefined }), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });
    try {
      expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'one' });
      expect(await client.poll()).toEqual({ kind: 'not-modified' });
      expect(svc.requests.map((r) => r.prefer)).toEqual([undefined, undefined]);
      expect(client.status.longPolling).toBe(false);
    } finally {
      await client.stop();
      await new Promise<void>((r) => svc.server.close(() => r()));
    }
  });
});

describe('TLS to the bundle service', () => {
  let pki: TestPki;
  let otherPki: TestPki;
  let clientCert: CertFiles;
  let foreignClient: CertFiles;
  let https: HttpsServer;
  let httpsUrl: string;
  const clients: string[] = [];

  beforeAll(async () => {
    pki = createTestPki('/CN=Bundle Test CA');
    const serverCert = pki.issue('bundle-server', { subject: '/CN=127.0.0.1', san: ['IP:127.0.0.1', 'DNS:localhost'], serverAuth: true });
    clientCert = pki.issue('gateway-client', { subject: '/CN=lbac-gateway' });
    otherPki = createTestPki('/CN=Other CA');
    foreignClient = otherPki.issue('foreign-client', { subject: '/CN=intruder' });
    https = createHttpsServer({ key: serverCert.keyPem, cert: serverCert.certPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      clients.push(String((req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? ''));
      // An empty etag: a service that sends none.
    res.writeHead(200, { ...(served.etag === '' ? {} : { etag: served.etag }), 'content-type': 'application/gzip' }).end(served.body);
    });
    await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
    httpsUrl = `https://127.0.0.1:${(https.address() as AddressInfo).port}`;
  }, 60_000);
  afterAll(async () => {
    await new Promise<void>((r) => https.close(() => r()));
    pki.cleanup();
    otherPki.cleanup();
  });

  const tlsClient = (tls: BundleConfig['tls'], holder: PolicyHolder) =>
    BundleClient.create({ config: config({ url: httpsUrl, auth: { type: 'none', scheme: 'Bearer' }, tls }), holder, entrypoint: 'lbac/decision', configData: {}, logger: quiet });

  it('downloads with the private CA and the client certificate; without them the active policy stays', async () => {
    served = { body: b1, etag: '"t1"' };
    const holder = new PolicyHolder();
    const good = await tlsClient({ ca: pki.ca.cert, cert: clientCert.cert, key: clientCert.key }, holder);
    expect(await good.poll()).toMatchObject({ kind: 'activated', revision: 'one' });
    expect(clients.at(-1)).toBe('lbac-gateway');
    await good.stop();

    served = { body: b2, etag: '"t2"' };
    const answered = clients.length;
    const noCert = await tlsClient({ ca: pki.ca.cert }, holder); // the server requires a client certificate
    expect(await noCert.poll()).toMatchObject({ kind: 'failed' });
    const foreign = await tlsClient({ ca: pki.ca.cert, cert: foreignClient.cert, key: foreignClient.key }, holder); // not signed by the server's client CA
    expect(await foreign.poll()).toMatchObject({ kind: 'failed' });
    const noCa = await tlsClient({ cert: clientCert.cert, key: clientCert.key }, holder); // server certificate not trusted
    expect(await noCa.poll()).toMatchObject({ kind: 'failed', error: expect.stringMatching(/certificate/i) });
    expect(clients.length).toBe(answered); // the TLS handshake refused them before any HTTP request
    expect(holder.revision).toBe('one');
    await Promise.all([noCert.stop(), foreign.stop(), noCa.stop()]);
  });
});

describe('polling delays', () => {
  const polling = { minDelaySeconds: 10, maxDelaySeconds: 20 };
  it('success: uniform in [min, max]', () => {
    expect(nextDelayMs(polling, 0, () => 0)).toBe(10_000);
    expect(nextDelayMs(polling, 0, () => 0.999)).toBeCloseTo(19_990);
  });
  it('failures: exponential from min(1 s, min), capped at max, jittered in [d/2, d]', () => {
    expect(nextDelayMs(polling, 1, () => 1)).toBe(1_000);
    expect(nextDelayMs(polling, 2, () => 1)).toBe(2_000);
    expect(nextDelayMs(polling, 4, () => 1)).toBe(8_000);
    expect(nextDelayMs(polling, 5, () => 1)).toBe(16_000);
    expect(nextDelayMs(polling, 50, () => 1)).toBe(20_000);
    expect(nextDelayMs(polling, 50, () => 0)).toBe(10_000);
    expect(nextDelayMs({ minDelaySeconds: 0.2, maxDelaySeconds: 0.4 }, 1, () => 1)).toBe(200);
  });
  it('bundleUrl joins with exactly one slash', () => {
    expect(bundleUrl({ url: 'http://h/x/', resource: '/b/c.tar.gz' })).toBe('http://h/x/b/c.tar.gz');
  });
});

describe('config: policy.bundle', () => {
  const base = `
upstreams: [{name: metrics, kind: prometheus, url: "http://127.0.0.1:9090"}]
identity: {providers: [{type: jwt, jwksFile: jwks.json, issuer: i, audience: a}]}
`;
  it('fills defaults and resolves files against the config directory', () => {
    const c = parseConfig(
      `${base}policy:\n  bundle:\n    url: https://bundles.example.com\n    auth: {type: bearer, tokenFile: token}\n    signing: {keys: [{keyid: ci, algorithm: ES256, publicKeyFile: keys/ci.pem}]}\n    persistDir: state\n`,
      { baseDir: '/etc/lbac', env: {} },
    );
    expect(c.policy.bundle).toMatchObject({
      url: 'https://bundles.example.com',
      resource: 'bundles/bundle.tar.gz',
      auth: { type: 'bearer', tokenFile: '/etc/lbac/token', scheme: 'Bearer' },
      polling: { minDelaySeconds: 60, maxDelaySeconds: 120 },
      timeoutMs: 30_000,
      persistDir: '/etc/lbac/state',
      signing: { keys: [{ keyid: 'ci', algorithm: 'ES256', publicKeyFile: '/etc/lbac/keys/ci.pem' }], excludeFiles: [] },
    });
  });
  it('rejects wasm together with bundle, bearer without token, min > max, keys without PEM', () => {
    const bad = (policy: string) => () => parseConfig(`${base}policy:\n${policy}`, { env: {} });
    expect(bad('  wasm: p.wasm\n  bundle: {url: "http://x"}\n')).toThrow(/either policy.wasm or policy.bundle/);
    expect(bad('  bundle: {url: "http://x", auth: {type: bearer}}\n')).toThrow(/exactly one of token or tokenFile/);
    expect(bad('  bundle: {url: "http://x", polling: {minDelaySeconds: 5, maxDelaySeconds: 1}}\n')).toThrow(/must not exceed/);
    expect(bad('  bundle: {url: "http://x", signing: {keys: [{keyid: k}]}}\n')).toThrow(/exactly one of publicKey or publicKeyFile/);
    expect(bad('  bundle: {url: "http://x", pollingg: {}}\n')).toThrow(/unknown key "pollingg"/);
  });
  it('long polling and tls: paths resolved, cert and key together, https only', () => {
    const c = parseConfig(
      `${base}policy:\n  bundle:\n    url: https://bundles.example.com\n    polling: {longPollingTimeoutSeconds: 30}\n    tls: {ca: pki/ca.pem, cert: pki/gw.pem, key: /abs/gw.key}\n`,
      { baseDir: '/etc/lbac', env: {} },
    );
    expect(c.policy.bundle).toMatchObject({
      polling: { minDelaySeconds: 60, maxDelaySeconds: 120, longPollingTimeoutSeconds: 30 },
      tls: { ca: '/etc/lbac/pki/ca.pem', cert: '/etc/lbac/pki/gw.pem', key: '/abs/gw.key' },
    });
    const bad = (policy: string) => () => parseConfig(`${base}policy:\n${policy}`, { env: {} });
    expect(bad('  bundle: {url: "https://x", tls: {cert: c.pem}}\n')).toThrow(/both cert and key/);
    expect(bad('  bundle: {url: "http://x", tls: {ca: ca.pem}}\n')).toThrow(/tls needs an https url/);
    expect(bad('  bundle: {url: "https://x", polling: {longPollingTimeoutSeconds: 0}}\n')).toThrow(/longPollingTimeoutSeconds/);
  });
  it('LBAC_POLICY_BUNDLE_URL sets the bundle url', () => {
    expect(parseConfig(base, { env: { LBAC_POLICY_BUNDLE_URL: 'http://b:8181' } }).policy.bundle?.url).toBe('http://b:8181');
  });
});
