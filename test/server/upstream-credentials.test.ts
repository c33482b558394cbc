// upstreams[].auth and upstreams[].tls end to end, in-process: a real gateway app
// against real loopback upstreams (plain HTTP, SigV4-verifying, HTTPS with a
// private CA, mutual TLS, a wss:// Loki tail), with every log line captured at
// debug level to prove no secret is ever written.
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { createTestPki, type TestPki } from '../../e2e/harness/certs.ts';
import { main } from '../../src/cli/main.ts';
import { parseConfig, type GatewayConfig } from '../../src/config/load.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { PolicyHolder } from '../../src/policy/holder.ts';
import { buildApp } from '../../src/server/app.ts';
import { createMetrics, type GatewayMetrics } from '../../src/server/metrics.ts';
import { AuditLog } from '../../src/server/plugins/audit.ts';
import { dataRevision } from '../../src/server/reload.ts';
import { fakeSource, TEST_IDENTITY_AND_TEAMS } from './helpers.ts';

// The secrets under test: none of these strings may appear in any log line, audit line, metric or CLI output.
const BASIC_PASSWORD = 'basic-pw-5f3c9e1a';
const BEARER_TOKEN = 'bearer-tok-8d2b7a64';
const AWS_KEY_ID = 'AKIDLBACTEST0001';
const AWS_SECRET = 'aws-secret-0c7d4e9b/Kx+Q';
const AWS_SESSION = 'aws-session-3e8f1b2c';
const WRONG_SECRET = 'a-different-secret-key';

/** What one upstream request looked like on arrival. */
interface Seen {
  method: string;
  url: string;
  body: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  clientCert: string | undefined;
}

interface TestServer {
  url: string;
  seen: Seen[];
  server: Server;
  close(): Promise<void>;
}

const PROM_OK = '{"status":"success","data":{"resultType":"vector","result":[]}}';

async function listen(server: Server, scheme: 'http' | 'https', seen: Seen[]): Promise<TestServer> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    seen,
    server,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections?.();
        server.close(() => r());
      }),
  };
}

function record(req: IncomingMessage, body: Buffer): Seen {
  const peer = (req.socket as TLSSocket).getPeerCertificate?.();
  return {
    method: req.method ?? '',
    url: req.url ?? '',
    body: body.toString('utf8'),
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    clientCert: peer?.subject === undefined ? undefined : String(peer.subject.CN),
  };
}

function handler(seen: Seen[], answer: (req: IncomingMessage, body: Buffer) => Promise<[number, string]>) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push(record(req, body));
      answer(req, body).then(
        ([status, text]) => res.writeHead(status, { 'content-type': 'application/json' }).end(text),
        (e: unknown) => res.writeHead(500).end(String(e)),
      );
    });
  };
}

/** A plain upstream that records requests and answers 200. */
async function recordingUpstream(): Promise<TestServer> {
  const seen: Seen[] = [];
  return listen(createHttpServer(handler(seen, async () => [200, PROM_OK])), 'http', seen);
}

/**
 * Verify a SigV4 request as AWS would, with an independent implementation
 * (@smithy/signature-v4, the AWS SDK's signer): recompute the signature from the
 * method, raw path, query, signed headers and body received. Returns the problem, if any.
 */
async function verifySigV4(req: IncomingMessage, body: Buffer, secret: string): Promise<string | undefined> {
  const auth = req.headers.authorization ?? '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/.exec(auth);
  if (m === null) return 'missing or malformed Authorization';
  const [, keyId, , region, service, signedList] = m;
  if (keyId !== AWS_KEY_ID) return 'unknown access key';
  if (req.headers['x-amz-security-token'] !== AWS_SESSION) return 'bad security token';
  const amz = String(req.headers['x-amz-date'] ?? '');
  const d = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amz);
  if (d === null) return 'bad x-amz-date';
  const date = new Date(Date.UTC(+d[1]!, +d[2]! - 1, +d[3]!, +d[4]!, +d[5]!, +d[6]!));
  if (Math.abs(Date.now() - date.getTime()) > 5 * 60_000) return 'request expired';
  const signed = signedList!.split(';');
  for (const required of ['host', 'x-amz-date', 'x-amz-security-token']) if (!signed.includes(required)) return `${required} not signed`;
  const headers: Record<string, string> = {};
  for (const h of signed) {
    const v = req.headers[h];
    if (v === undefined) return `signed header ${h} missing`;
    headers[h] = Array.isArray(v) ? v.join(',') : v;
  }
  const raw = req.url ?? '/';
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const query: Record<string, string | string[]> = {};
  // Query values as AWS reads them: percent-decoded, "+" is a literal plus.
  for (const pair of q < 0 ? [] : raw.slice(q + 1).split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const k = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
    const v = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1));
    const prev = query[k];
    query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  const signer = new SignatureV4({ credentials: { accessKeyId: AWS_KEY_ID, secretAccessKey: secret, sessionToken: AWS_SESSION }, region: region!, service: service!, sha256: Sha256, applyChecksum: false });
  const expected = await signer.sign(
    { method: req.method ?? 'GET', protocol: 'http:', hostname: headers['host']!, path, query, headers, ...(body.length === 0 ? {} : { body: new Uint8Array(body) }) },
    { signingDate: date },
  );
  return expected.headers['authorization'] === auth ? undefined : 'signature mismatch';
}

/** An AWS-style endpoint: 403 unless the request is signed with `secret`. */
async function sigv4Upstream(secret: string): Promise<TestServer> {
  const seen: Seen[] = [];
  return listen(
    createHttpServer(
      handler(seen, async (req, body) => {
        const problem = await verifySigV4(req, body, secret);
        return problem === undefined ? [200, PROM_OK] : [403, JSON.stringify({ message: `The request signature we calculated does not match the signature you provided (${problem}).` })];
      }),
    ),
    'http',
    seen,
  );
}

let pki: TestPki;
let dir: string;
const servers: Record<string, TestServer> = {};
let wssSeen: Seen[] = [];
let wssProblem: string | undefined;
let app: FastifyInstance;
let config: GatewayConfig;
let metrics: GatewayMetrics;
const logLines: string[] = [];
const auditLines: string[] = [];
let clientKeyBody: string;

function configText(): string {
  const u = servers;
  const https = (name: string, url: string, tls: string) => `  - { name: ${name}, kind: prometheus, url: "${url}", ${tls} }`;
  return `
server:
  loadShedding: { enabled: false }
upstreams:
  - { name: mimir, kind: prometheus, url: "${u['basic']!.url}/prometheus", auth: { type: basic, username: "tenant-1", passwordFile: secrets/mimir-password } }
  - { name: bearer, kind: prometheus, url: "${u['bearer']!.url}", auth: { type: bearer, tokenFile: secrets/token } }
  - name: amp
    kind: prometheus
    url: "${u['amp']!.url}/workspaces/ws-test"
    auth: { type: sigv4, region: eu-west-1 }
  - name: amp-wrong
    kind: prometheus
    url: "${u['ampWrong']!.url}/workspaces/ws-test"
    auth: { type: sigv4, region: eu-west-1 }
${https('tls-noca', u['tls']!.url, 'headers: { X-Probe: "1" }')}
${https('tls-ca', u['tls']!.url, 'tls: { caFile: pki/ca.crt }')}
${https('tls-insecure', u['tls']!.url, 'tls: { insecureSkipVerify: true }')}
${https('mtls-nocert', u['mtls']!.url, 'tls: { caFile: pki/ca.crt }')}
${https('mtls-cert', u['mtls']!.url, 'tls: { caFile: pki/ca.crt, certFile: pki/client.crt, keyFile: pki/client.key }, auth: { type: bearer, tokenFile: secrets/token }')}
${https('sni-none', u['dnsOnly']!.url, 'tls: { caFile: pki/ca.crt }')}
${https('sni-name', u['dnsOnly']!.url, 'tls: { caFile: pki/ca.crt, serverName: prom.internal }')}
  - name: logs
    kind: loki
    url: "${u['wss']!.url}/loki-prefix"
    tls: { caFile: pki/ca.crt }
    auth: { type: sigv4, region: eu-west-1, service: logs }
${TEST_IDENTITY_AND_TEAMS}`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lbac-upcred-'));
  pki = createTestPki('/CN=Upstream Test CA', mkdtempSync(join(dir, 'pki-')));
  const serverCert = pki.issue('server', { subject: '/CN=127.0.0.1', san: ['IP:127.0.0.1', 'DNS:localhost'], serverAuth: true });
  const dnsOnly = pki.issue('dns-only', { subject: '/CN=prom.internal', san: ['DNS:prom.internal'], serverAuth: true });
  const client = pki.issue('client', { subject: '/CN=lbac-gateway' });
  clientKeyBody = client.keyPem.split('\n')[1]!;
  // Config-relative files: secrets/ and pki/ next to the config.
  mkdirSync(join(dir, 'secrets'));
  mkdirSync(join(dir, 'pki'));
  writeFileSync(join(dir, 'secrets', 'mimir-password'), `${BASIC_PASSWORD}\n`);
  writeFileSync(join(dir, 'secrets', 'token'), `${BEARER_TOKEN}\n`);
  writeFileSync(join(dir, 'pki', 'ca.crt'), pki.ca.certPem);
  writeFileSync(join(dir, 'pki', 'client.crt'), client.certPem);
  writeFileSync(join(dir, 'pki', 'client.key'), client.keyPem);

  servers['basic'] = await recordingUpstream();
  servers['bearer'] = await recordingUpstream();
  servers['amp'] = await sigv4Upstream(AWS_SECRET);
  servers['ampWrong'] = await sigv4Upstream(WRONG_SECRET);
  const tlsSeen: Seen[] = [];
  servers['tls'] = await listen(createHttpsServer({ cert: serverCert.certPem, key: serverCert.keyPem }, handler(tlsSeen, async () => [200, PROM_OK])), 'https', tlsSeen);
  const mtlsSeen: Seen[] = [];
  servers['mtls'] = await listen(
    createHttpsServer({ cert: serverCert.certPem, key: serverCert.keyPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true }, handler(mtlsSeen, async () => [200, PROM_OK])),
    'https',
    mtlsSeen,
  );
  const dnsSeen: Seen[] = [];
  servers['dnsOnly'] = await listen(createHttpsServer({ cert: dnsOnly.certPem, key: dnsOnly.keyPem }, handler(dnsSeen, async () => [200, PROM_OK])), 'https', dnsSeen);
  // wss:// Loki stand-in: verifies the SigV4-signed upgrade, then sends one tail message.
  const wssServer = createHttpsServer({ cert: serverCert.certPem, key: serverCert.keyPem }, (_req, res) => res.writeHead(404).end());
  const wss = new WebSocketServer({
    server: wssServer,
    verifyClient: (info, cb) => {
      wssSeen.push(record(info.req, Buffer.alloc(0)));
      verifySigV4(info.req, Buffer.alloc(0), AWS_SECRET).then((problem) => {
        wssProblem = problem;
        if (problem === undefined) cb(true);
        else cb(false, 403, 'Forbidden');
      });
    },
  });
  wss.on('connection', (ws) => ws.send(JSON.stringify({ streams: [{ stream: { namespace: 'team-a-web' }, values: [['1700000000000000000', 'hello over wss']] }] })));
  servers['wss'] = await listen(wssServer, 'https', wssSeen);

  writeFileSync(join(dir, 'gateway.yaml'), configText());
  config = parseConfig(configText(), {
    file: 'gateway.yaml',
    baseDir: dir,
    env: { AWS_ACCESS_KEY_ID: AWS_KEY_ID, AWS_SECRET_ACCESS_KEY: AWS_SECRET, AWS_SESSION_TOKEN: AWS_SESSION },
  });
  const engine = await PolicyEngine.fromFile(config.policyWasm, { lbac: config.policyData }, { entrypoint: config.policy.entrypoint });
  metrics = createMetrics({ defaultMetrics: false });
  app = await buildApp({
    config,
    authenticator: new Authenticator([fakeSource]),
    engine: new PolicyHolder(engine, 'test'),
    // Every line at debug level, without the production logger's redaction: the secrets must not reach the logger at all.
    logger: pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) }),
    metrics,
    auditLog: new AuditLog((line) => auditLines.push(line)),
    dataRevision: () => dataRevision(config),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
}, 60_000);

afterAll(async () => {
  await app?.close();
  for (const s of Object.values(servers)) await s.close();
  pki?.cleanup();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  for (const s of Object.values(servers)) s.seen.splice(0);
  wssProblem = undefined;
});

const alice = { authorization: 'Bearer alice' };
const queryUrl = (mount: string, q = 'up') => `/${mount}/api/v1/query?query=${encodeURIComponent(q)}`;
const authorizationLines = (s: Seen) => s.rawHeaders.filter((_, i) => i % 2 === 0 && s.rawHeaders[i]!.toLowerCase() === 'authorization').length;

describe('basic and bearer', () => {
  it('the upstream sees exactly the configured basic credential (file relative to the config), never the client\'s', async () => {
    const res = await app.inject({ method: 'GET', url: queryUrl('mimir'), headers: alice });
    expect(res.statusCode).toBe(200);
    const s = servers['basic']!.seen[0]!;
    expect(s.url).toMatch(/^\/prometheus\/api\/v1\/query\?/);
    expect(s.headers.authorization).toBe(`Basic ${Buffer.from(`tenant-1:${BASIC_PASSWORD}`).toString('base64')}`);
    expect(authorizationLines(s)).toBe(1);
    expect(s.headers['x-scope-orgid']).toBe('tenant-a');
  });

  it('the upstream sees exactly the configured bearer token, also for a POST, whatever Authorization the client sent', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/bearer/api/v1/query',
      headers: { ...alice, 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'query=up',
    });
    expect(res.statusCode).toBe(200);
    const s = servers['bearer']!.seen[0]!;
    expect(s.headers.authorization).toBe(`Bearer ${BEARER_TOKEN}`);
    expect(authorizationLines(s)).toBe(1);
    expect(s.body).toContain('team-a-');
  });
});

describe('sigv4', () => {
  it('a verifying upstream accepts a POST query_range whose PromQL the gateway rewrote (the signed body is not the client\'s)', async () => {
    const clientBody = new URLSearchParams({ query: 'sum by (job) (rate(http_requests_total{code="500"}[5m]))', start: '1700000000', end: '1700003600', step: '60' }).toString();
    const res = await app.inject({ method: 'POST', url: '/amp/api/v1/query_range', headers: { ...alice, 'content-type': 'application/x-www-form-urlencoded' }, payload: clientBody });
    expect(res.body).toBe(PROM_OK);
    expect(res.statusCode).toBe(200);
    const s = servers['amp']!.seen[0]!;
    expect(s.method).toBe('POST');
    expect(s.url).toBe('/workspaces/ws-test/api/v1/query_range');
    expect(s.body).not.toBe(clientBody);
    expect(new URLSearchParams(s.body).get('query')).toContain('namespace=~"team-a-.*"');
    expect(s.headers.authorization).toMatch(new RegExp(`^AWS4-HMAC-SHA256 Credential=${AWS_KEY_ID}/\\d{8}/eu-west-1/aps/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, `));
    expect(authorizationLines(s)).toBe(1);
  });

  it('a verifying upstream accepts a GET with a query string (spaces, quotes, repeated parameters) under the path prefix', async () => {
    const url = `/amp/api/v1/series?${new URLSearchParams([
      ['match[]', 'up{job="node exporter"}'],
      ['match[]', 'process_start_time_seconds{job=~"a+b"}'],
      ['start', '1700000000'],
    ]).toString()}`;
    const res = await app.inject({ method: 'GET', url, headers: alice });
    expect(res.statusCode).toBe(200);
    const s = servers['amp']!.seen[0]!;
    expect(s.url.startsWith('/workspaces/ws-test/api/v1/series?')).toBe(true);
    expect(s.url).toContain('team-a-');
    expect(s.url).not.toContain('+'); // spaces as %20 under SigV4 (a literal "+" is %2B)
  });

  it('an upstream verifying with another secret answers 403, and the client gets that answer', async () => {
    const res = await app.inject({ method: 'GET', url: queryUrl('amp-wrong'), headers: alice });
    expect(res.statusCode).toBe(403);
    expect(res.body).toMatch(/signature we calculated does not match.*signature mismatch/);
    expect(servers['ampWrong']!.seen).toHaveLength(1);
  });

  it('a request changed after signing is refused by the verifying upstream (the check is not vacuous)', async () => {
    const target = new URL(`${servers['amp']!.url}/workspaces/ws-test/api/v1/query?query=up`);
    // Sign a request, then send a different query with the same signature.
    const auth = config.upstreams.find((u) => u.name === 'amp')!.auth!;
    const headers = { host: target.host };
    const signed = auth.sign({ method: 'GET', url: target.href, headers });
    const send = (path: string) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: target.port, path, method: 'GET', headers: { ...headers, ...signed } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await send(`${target.pathname}${target.search}`)).toBe(200);
    expect(await send(`${target.pathname}?query=secret_metric`)).toBe(403);
  });
});

describe('TLS', () => {
  it('an https upstream with a private CA: without caFile a 502 in the backend\'s format, with caFile a 200', async () => {
    const without = await app.inject({ method: 'GET', url: queryUrl('tls-noca'), headers: alice });
    expect(without.statusCode).toBe(502);
    expect(JSON.parse(without.body)).toMatchObject({ status: 'error', error: 'upstream unavailable' });
    expect(servers['tls']!.seen).toHaveLength(0);
    const withCa = await app.inject({ method: 'GET', url: queryUrl('tls-ca'), headers: alice });
    expect(withCa.statusCode).toBe(200);
    expect(servers['tls']!.seen).toHaveLength(1);
  });

  it('insecureSkipVerify connects without the CA and is logged as a warning at start', async () => {
    const res = await app.inject({ method: 'GET', url: queryUrl('tls-insecure'), headers: alice });
    expect(res.statusCode).toBe(200);
    const warnings = logLines.map((l) => JSON.parse(l) as { level: number; msg: string; upstream?: string }).filter((l) => l.level === 40 && /verification is disabled/.test(l.msg));
    expect(warnings.map((w) => w.upstream)).toEqual(['tls-insecure']);
  });

  it('an upstream requiring a client certificate: without certFile/keyFile a 502, with them a 200', async () => {
    const without = await app.inject({ method: 'GET', url: queryUrl('mtls-nocert'), headers: alice });
    expect(without.statusCode).toBe(502);
    expect(servers['mtls']!.seen).toHaveLength(0);
    const withCert = await app.inject({ method: 'GET', url: queryUrl('mtls-cert'), headers: alice });
    expect(withCert.statusCode).toBe(200);
    const s = servers['mtls']!.seen[0]!;
    expect(s.clientCert).toBe('lbac-gateway');
    expect(s.headers.authorization).toBe(`Bearer ${BEARER_TOKEN}`);
  });

  it('serverName: a certificate with only a DNS name verifies when the URL uses 127.0.0.1', async () => {
    const without = await app.inject({ method: 'GET', url: queryUrl('sni-none'), headers: alice });
    expect(without.statusCode).toBe(502);
    const withName = await app.inject({ method: 'GET', url: queryUrl('sni-name'), headers: alice });
    expect(withName.statusCode).toBe(200);
    expect(servers['dnsOnly']!.seen).toHaveLength(1);
  });

  it('a Loki tail over wss:// uses the CA and a SigV4-signed upgrade (rewritten query, path prefix)', async () => {
    const base = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const ws = new WebSocket(`${base}/logs/loki/api/v1/tail?query=${encodeURIComponent('{app="api"} |= "GET /"')}`, { headers: alice });
    const message = await new Promise<string>((resolve, reject) => {
      ws.once('message', (d) => resolve(String(d)));
      ws.once('unexpected-response', (_r, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
    ws.close();
    expect(message).toContain('hello over wss');
    expect(wssProblem).toBeUndefined();
    const s = wssSeen.at(-1)!;
    expect(s.url.startsWith('/loki-prefix/loki/api/v1/tail?query=')).toBe(true);
    expect(decodeURIComponent(s.url)).toContain('namespace=~"team-a-.*"');
    expect(s.headers.authorization).toMatch(/Credential=AKIDLBACTEST0001\/\d{8}\/eu-west-1\/logs\/aws4_request/);
  });
});

describe('secrets never leak', () => {
  const SECRETS = [BASIC_PASSWORD, BEARER_TOKEN, AWS_SECRET, AWS_SESSION, Buffer.from(`tenant-1:${BASIC_PASSWORD}`).toString('base64')];
  const leaks = (text: string) => [...SECRETS, clientKeyBody].filter((s) => text.includes(s));

  it('not in debug logs, audit lines, metrics, the config\'s serialisation or check-config output', async () => {
    // Exercise success and failure paths first (200, upstream 403, TLS 502).
    for (const m of ['mimir', 'bearer', 'amp', 'amp-wrong', 'mtls-cert', 'mtls-nocert']) await app.inject({ method: 'GET', url: queryUrl(m), headers: alice });
    expect(logLines.length).toBeGreaterThan(10);
    expect(logLines.some((l) => l.includes('"level":20'))).toBe(true); // debug lines were captured
    expect(leaks(logLines.join('\n'))).toEqual([]);
    expect(auditLines.length).toBeGreaterThan(5);
    expect(leaks(auditLines.join('\n'))).toEqual([]);
    expect(leaks(await metrics.registry.metrics())).toEqual([]);
    expect(leaks(JSON.stringify(config))).toEqual([]);

    const out: string[] = [];
    const io = { out: (s: string) => void out.push(s), err: (s: string) => void out.push(s) };
    const saved = { ...process.env };
    try {
      process.env['AWS_ACCESS_KEY_ID'] = AWS_KEY_ID;
      process.env['AWS_SECRET_ACCESS_KEY'] = AWS_SECRET;
      process.env['AWS_SESSION_TOKEN'] = AWS_SESSION;
      expect(await main(['check-config', join(dir, 'gateway.yaml')], io)).toBe(0);
      // A config error next to secrets: the message names the key, not the secrets.
      writeFileSync(join(dir, 'broken.yaml'), configText().replace('tokenFile: secrets/token }', `tokenFile: secrets/token, token: "${BEARER_TOKEN}" }`));
      expect(await main(['check-config', join(dir, 'broken.yaml')], io)).toBe(1);
    } finally {
      for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
    expect(out.join('\n')).toMatch(/gateway\.yaml: OK/);
    expect(out.join('\n')).toMatch(/key upstreams\.1\.auth: set exactly one of token or tokenFile/);
    expect(leaks(out.join('\n'))).toEqual([]);
  });
});
