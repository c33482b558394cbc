// The mtls identity source: certificate fields → subject, and the TLS layer's
// verdict (a real HTTPS server with requestCert, certificates from openssl).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, TLSSocket } from 'node:tls';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, type CertFiles, type TestPki } from '../../e2e/harness/certs.ts';
import { configSchema, mtlsProviderSchema } from '../../src/config/schema.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { InvalidTokenError } from '../../src/identity/jwt.ts';
import { MtlsSource, clientCertificateOf, parseSubjectAltName, tlsInfoOf } from '../../src/identity/mtls.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import type { ClientCertificate, TlsInfo } from '../../src/identity/source.ts';
import { httpsOptions } from '../../src/server/tls.ts';

const cert = (c: Partial<ClientCertificate>): TlsInfo => ({
  authorized: true,
  error: undefined,
  certificate: { cn: undefined, ou: [], o: [], email: [], dns: [], uri: [], sanEmail: [], issuerCN: 'CA', serialNumber: '01', fingerprint256: 'AA', validTo: new Date(Date.now() + 3_600_000).toUTCString(), ...c },
});
const creds = (tls: TlsInfo | undefined) => ({ headers: {}, bearer: undefined, basic: undefined, tls });
const source = (cfg: Record<string, unknown> = {}) => new MtlsSource(mtlsProviderSchema.parse({ type: 'mtls', ...cfg }));

describe('parseSubjectAltName', () => {
  it('splits DNS, URI and email entries, JSON-quoted values included', () => {
    expect(parseSubjectAltName('DNS:a.example, URI:spiffe://td/ns/x, email:a@b.c, IP Address:127.0.0.1, DNS:"we, ird"')).toEqual({
      dns: ['a.example', 'we, ird'],
      uri: ['spiffe://td/ns/x'],
      email: ['a@b.c'],
    });
    expect(parseSubjectAltName(undefined)).toEqual({ dns: [], uri: [], email: [] });
  });
});

describe('MtlsSource', () => {
  it('CN → sub/username, OU → groups (ouAsGroups), SAN email → email', async () => {
    const s = await source({ ouAsGroups: true }).authenticate(creds(cert({ cn: 'alice', ou: ['team-a', 'ops'], sanEmail: ['alice@example.com'] })));
    expect(s).toMatchObject({ sub: 'alice', username: 'alice', usernameTrusted: true, email: 'alice@example.com', groups: ['team-a', 'ops'], roles: [], auth: 'mtls', issuer: 'CA' });
    expect(s?.claims).toMatchObject({ cn: 'alice', ou: ['team-a', 'ops'], fingerprint256: 'AA' });
  });
  it('OU values are no groups unless ouAsGroups is set: a CA that copies a requested subject would let the holder choose them', async () => {
    // Unset (undefined, so that configWarnings can tell it from false) is false.
    expect(mtlsProviderSchema.parse({ type: 'mtls' }).ouAsGroups).toBeUndefined();
    const s = await source().authenticate(creds(cert({ cn: 'mallory', ou: ['admins'] })));
    expect(s).toMatchObject({ sub: 'mallory', groups: [] });
    expect(s?.claims).toMatchObject({ ou: ['admins'] });
    const mapped = await source({ mapping: [{ subject: 'mallory', groups: ['team-a'] }] }).authenticate(creds(cert({ cn: 'mallory', ou: ['admins'] })));
    expect(mapped?.groups).toEqual(['team-a']);
  });
  it('a fallback field that imitates an earlier one is refused: a CN "spiffe://…" is not a URI identity', async () => {
    const admin = 'spiffe://td/admin';
    const src = source({ subjectFrom: ['uri', 'cn'], mapping: [{ subject: admin, groups: ['admins'] }] });
    // No URI SAN: the CN is the fallback, and it must not look like a URI.
    for (const cn of [admin, 'urn:example:admin', 'SPIFFE://td/admin', 'x:y']) {
      await expect(src.authenticate(creds(cert({ cn, fingerprint256: `F-${cn}` }))), cn).rejects.toThrow(/has no uri for the subject, and its cn .* looks like one/);
    }
    // The certificate's own URI SAN wins as before; a plain CN still falls back, and the subject says which field named it.
    const workload = await src.authenticate(creds(cert({ cn: admin, uri: [admin], fingerprint256: 'W' })));
    expect(workload).toMatchObject({ sub: admin, groups: ['admins'], claims: { subjectField: 'uri' } });
    expect(await src.authenticate(creds(cert({ cn: 'alice', fingerprint256: 'A' })))).toMatchObject({ sub: 'alice', groups: [], claims: { subjectField: 'cn' } });
    // email and dns before a fallback: an address, a dotted host name.
    await expect(source({ subjectFrom: ['email', 'cn'] }).authenticate(creds(cert({ cn: 'root@example.com' })))).rejects.toThrow(/has no email .* looks like one/);
    await expect(source({ subjectFrom: ['dns', 'cn'] }).authenticate(creds(cert({ cn: 'prometheus.monitoring.svc' })))).rejects.toThrow(/has no dns .* looks like one/);
    expect((await source({ subjectFrom: ['dns', 'cn'] }).authenticate(creds(cert({ cn: 'alice' }))))?.sub).toBe('alice');
    // Not only the one just before: any earlier field; and usernameFrom alike.
    await expect(source({ subjectFrom: ['uri', 'dns', 'cn'] }).authenticate(creds(cert({ cn: admin })))).rejects.toThrow(/has no uri/);
    await expect(source({ subjectFrom: ['cn'], usernameFrom: ['uri', 'cn'] }).authenticate(creds(cert({ cn: admin })))).rejects.toThrow(/has no uri for the username/);
    // The first field has no earlier one to imitate: subjectFrom [cn] keeps any CN.
    expect((await source().authenticate(creds(cert({ cn: admin }))))?.sub).toBe(admin);
  });
  it('one certificate is one Subject object (its decisions are cached), another certificate another', async () => {
    const src = source();
    const valid = { validTo: new Date(Date.now() + 3_600_000).toUTCString() };
    const a = await src.authenticate(creds(cert({ cn: 'alice', fingerprint256: 'F1', ...valid })));
    expect(await src.authenticate(creds(cert({ cn: 'alice', fingerprint256: 'F1', ...valid })))).toBe(a);
    const b = await src.authenticate(creds(cert({ cn: 'alice', fingerprint256: 'F2', ...valid })));
    expect(b).not.toBe(a);
    expect(b).toEqual(expect.objectContaining({ sub: 'alice' }));
  });
  it('subjectFrom is tried in order; usernameFrom separately; mapping adds groups and roles', async () => {
    const src = source({ subjectFrom: ['uri', 'dns', 'cn'], usernameFrom: ['dns'], ouAsGroups: false, mapping: [{ subject: 'spiffe://td/x', groups: ['team-b'], roles: ['viewer'] }] });
    const s = await src.authenticate(creds(cert({ cn: 'x', ou: ['ignored'], uri: ['spiffe://td/x'], dns: ['x.svc'] })));
    expect(s).toMatchObject({ sub: 'spiffe://td/x', username: 'x.svc', groups: ['team-b'], roles: ['viewer'] });
    expect((await src.authenticate(creds(cert({ cn: 'only-cn', fingerprint256: 'AB' }))))?.sub).toBe('only-cn');
  });
  it("a username from another field than sub's is display only (not trusted): a CN naming another workload's SPIFFE id matches no users entry", async () => {
    const src = source({ subjectFrom: ['uri'], usernameFrom: ['cn'], ouAsGroups: false });
    const evil = await src.authenticate(creds(cert({ cn: 'spiffe://td/ns/ops/sa/admin', uri: ['spiffe://td/ns/dev/sa/evil'] })));
    expect(evil).toMatchObject({ sub: 'spiffe://td/ns/dev/sa/evil', username: 'spiffe://td/ns/ops/sa/admin' });
    expect(evil?.usernameTrusted).toBeUndefined();
    // The same field as sub's, or no username field present (the username is sub): trusted.
    const same = source({ subjectFrom: ['uri', 'cn'], usernameFrom: ['uri'], ouAsGroups: false });
    expect((await same.authenticate(creds(cert({ uri: ['spiffe://td/a'], fingerprint256: 'AC' }))))?.usernameTrusted).toBe(true);
    expect(await src.authenticate(creds(cert({ uri: ['spiffe://td/b'], fingerprint256: 'AD' })))).toMatchObject({ username: 'spiffe://td/b', usernameTrusted: true });
    // With the default policy: the admin entry names the CN's SPIFFE id, and the certificate is not admitted as admin.
    const engine = await PolicyEngine.fromFile('wasm/policy.wasm', { lbac: { teams: {}, admins: { groups: [], users: ['spiffe://td/ns/ops/sa/admin'], headers: {} } } });
    const decision = engine.evaluate({ subject: evil!, request: { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' } });
    expect(decision.allow && decision.unrestricted).toBe(false);
  });

  it('no usable field, unmapped subject with requireMapping, unverified certificate → 401', async () => {
    await expect(source({ subjectFrom: ['uri'] }).authenticate(creds(cert({ cn: 'a' })))).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(source({ requireMapping: true }).authenticate(creds(cert({ cn: 'a' })))).rejects.toThrow(/not in mtls.mapping/);
    await expect(source().authenticate(creds({ authorized: false, certificate: undefined, error: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }))).rejects.toThrow(/not verified/);
  });
  it('a certificate past its notAfter is refused on every request, though the TLS handshake verified it (keep-alive connections, tails); also once its subject was cached', async () => {
    const src = source();
    const notAfter = Math.ceil((Date.now() + 2000) / 1000) * 1000;
    const c = cert({ cn: 'alice', fingerprint256: 'F9', validTo: new Date(notAfter).toUTCString() });
    expect((await src.authenticate(creds(c)))?.sub).toBe('alice');
    await new Promise((r) => setTimeout(r, notAfter - Date.now() + 20));
    expect(src.peek(creds(c))).not.toMatchObject({ sub: 'alice' });
    await expect(src.authenticate(creds(c))).rejects.toThrow(/client certificate expired/);
    await expect(src.authenticate(creds(cert({ cn: 'bob', validTo: 'Jan  1 00:00:00 2020 GMT' })))).rejects.toThrow(/client certificate expired/);
    // One whose notAfter does not parse is not trusted for ever.
    await expect(src.authenticate(creds(cert({ cn: 'bob', validTo: 'x' })))).rejects.toThrow(/client certificate expired/);
  });
  it('a certificate with more than one CN is refused (readers disagree on which one names the holder)', async () => {
    await expect(source().authenticate(creds(cert({ cn: 'root', cnCount: 2 })))).rejects.toThrow(/2 CN attributes/);
    await expect(source({ subjectFrom: ['uri'] }).authenticate(creds(cert({ cn: 'root', cnCount: 2, uri: ['spiffe://td/x'] })))).rejects.toBeInstanceOf(InvalidTokenError);
    expect((await source().authenticate(creds(cert({ cn: 'alice', cnCount: 1 }))))?.sub).toBe('alice');
    expect(clientCertificateOf({ subject: { CN: ['root', 'nobody'] }, issuer: {}, serialNumber: '1', fingerprint256: 'F', valid_to: 'x' } as never).cnCount).toBe(2);
  });
  it('no TLS, or no certificate: nothing to judge', async () => {
    expect(await source().authenticate(creds(undefined))).toBeUndefined();
    expect(await source().authenticate(creds({ authorized: false, certificate: undefined, error: undefined }))).toBeUndefined();
  });
  it('Authenticator: no certificate and no other credential is "missing" (401 with a plain challenge)', async () => {
    const auth = new Authenticator([source()]);
    const err = await auth.authenticate({ headers: {}, tls: { authorized: false, certificate: undefined, error: undefined } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidTokenError);
    expect((err as InvalidTokenError).missing).toBe(true);
    expect((await auth.authenticate({ headers: {}, tls: cert({ cn: 'bob' }) })).sub).toBe('bob');
  });
  it('config: an mtls provider needs server.tls.clientCA; requestClientCert needs clientCA', () => {
    const base = { upstreams: [{ name: 'm', kind: 'prometheus', url: 'http://127.0.0.1:9090' }], identity: { providers: [{ type: 'mtls' }] } };
    expect(configSchema.safeParse(base).success).toBe(false);
    expect(configSchema.safeParse({ ...base, server: { tls: { cert: 'c', key: 'k', clientCA: 'ca' } } }).success).toBe(true);
    expect(configSchema.safeParse({ ...base, server: { tls: { cert: 'c', key: 'k', requestClientCert: true } } }).success).toBe(false);
  });
});

describe('tlsInfoOf on a real TLS socket', () => {
  let pki: TestPki;
  let other: TestPki;
  let server: ReturnType<typeof createServer>;
  let port: number;
  const seen: (TlsInfo | undefined)[] = [];
  const c: Record<string, CertFiles> = {};

  beforeAll(async () => {
    pki = createTestPki('/CN=unit CA');
    other = createTestPki('/CN=unit CA');
    c['server'] = pki.issue('server', { subject: '/CN=server', san: ['IP:127.0.0.1'], serverAuth: true });
    c['good'] = pki.issue('good', { subject: '/OU=team-a/OU=ops/CN=good', san: ['URI:spiffe://td/good', 'DNS:good.svc', 'email:good@example.com'] });
    c['bad'] = other.issue('bad', { subject: '/OU=team-a/CN=good' });
    server = createServer({ cert: c['server'].certPem, key: c['server'].keyPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      seen.push(tlsInfoOf(req.socket));
      res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => {
    server?.close();
    pki?.cleanup();
    other?.cleanup();
  });

  const hit = (client?: CertFiles) =>
    new Promise<TlsInfo | undefined>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', ca: pki.ca.certPem, agent: false, ...(client ? { cert: client.certPem, key: client.keyPem } : {}) }, (res) => {
        res.resume();
        res.on('end', () => resolve(seen.at(-1)));
      });
      req.on('error', reject);
      req.end();
    });

  it('a certificate chaining to the CA is authorized and parsed', async () => {
    const info = await hit(c['good']);
    expect(info?.authorized).toBe(true);
    expect(info?.certificate).toMatchObject({ cn: 'good', ou: ['team-a', 'ops'], uri: ['spiffe://td/good'], dns: ['good.svc'], sanEmail: ['good@example.com'], issuerCN: 'unit CA' });
  });
  it('a certificate from another CA (same names) is not, and says why', async () => {
    const info = await hit(c['bad']);
    expect(info).toMatchObject({ authorized: false, certificate: undefined });
    expect(info?.error).toMatch(/UNABLE_TO_VERIFY|unable to verify|self.signed|certificate/i);
  });
  it('no certificate: nothing', async () => {
    expect(await hit()).toEqual({ authorized: false, certificate: undefined, error: undefined });
  });
});

describe('a connection keeps the certificate it was first verified with (TLS 1.2 renegotiation)', () => {
  // A stand-in TLSSocket: Node keeps `authorized` from the first handshake, while getPeerCertificate
  // answers with the certificate of the latest one.
  const socket = () => {
    const s = Object.create(TLSSocket.prototype) as TLSSocket & { peer: Record<string, unknown> };
    Object.defineProperty(s, 'authorized', { value: true, writable: true });
    Object.defineProperty(s, 'authorizationError', { value: undefined, writable: true });
    s.getPeerCertificate = (() => s.peer) as unknown as TLSSocket['getPeerCertificate'];
    return s;
  };
  const peer = (cn: string, fingerprint256: string) => ({ subject: { CN: cn }, issuer: { CN: 'unit CA' }, fingerprint256, serialNumber: '01', valid_to: new Date(Date.now() + 3_600_000).toUTCString() });

  it('another certificate on the same connection is refused, however the socket still reads', () => {
    const s = socket();
    s.peer = peer('bob', 'B0:B0');
    expect(tlsInfoOf(s)).toMatchObject({ authorized: true, certificate: { cn: 'bob' } });
    s.peer = peer('admin', 'AD:AD');
    expect(tlsInfoOf(s)).toEqual({ authorized: false, certificate: undefined, error: 'the client certificate changed on this connection' });
    // Its first certificate still counts.
    s.peer = peer('bob', 'B0:B0');
    expect(tlsInfoOf(s)).toMatchObject({ authorized: true, certificate: { cn: 'bob' } });
  });

  it('a verification error counts even while `authorized` is still true', () => {
    const s = socket();
    s.peer = peer('admin', 'AD:AD');
    Object.defineProperty(s, 'authorizationError', { value: new Error('self-signed certificate') });
    expect(tlsInfoOf(s)).toMatchObject({ authorized: false, certificate: undefined, error: expect.stringMatching(/self-signed/) });
  });

  /** An HTTPS server with the gateway's TLS options (httpsOptions), its certificate from a fresh CA that is also its clientCA. */
  async function gatewayListener(name: string, handshakeTimeoutMs: number) {
    const pki = createTestPki(`/CN=${name} CA`);
    const dir = mkdtempSync(join(tmpdir(), `lbac-${name}-`));
    const files = pki.issue('server', { subject: '/CN=server', san: ['IP:127.0.0.1'], serverAuth: true });
    writeFileSync(join(dir, 'cert.pem'), files.certPem);
    writeFileSync(join(dir, 'key.pem'), files.keyPem);
    writeFileSync(join(dir, 'ca.pem'), pki.ca.certPem);
    const tls = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem'), clientCA: join(dir, 'ca.pem') };
    const server = createServer(httpsOptions(tls as never, handshakeTimeoutMs), (_req, res) => res.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return { pki, server };
  }

  it("the gateway's listener ends a connection that sends no TLS hello within the request timeout (not Node's 120 s)", async () => {
    const { pki, server } = await gatewayListener('hello', 300);
    try {
      const silent = netConnect((server.address() as AddressInfo).port, '127.0.0.1');
      silent.on('error', () => undefined);
      const started = Date.now();
      await new Promise<void>((r) => silent.once('close', () => r()));
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      server.close();
      pki.cleanup();
    }
  });

  it("the gateway's listener refuses a client's renegotiation", async () => {
    const { pki, server } = await gatewayListener('reneg', 30_000);
    try {
      const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ca: pki.ca.certPem, maxVersion: 'TLSv1.2', servername: 'localhost', checkServerIdentity: () => undefined });
      client.on('error', () => undefined);
      await new Promise<void>((r) => client.once('secureConnect', () => r()));
      const outcome = await new Promise<string>((resolve) => {
        const started = client.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err === null || err === undefined ? 'renegotiated' : 'refused'));
        if (started === false) resolve('refused');
        client.once('close', () => resolve('refused'));
      });
      client.destroy();
      expect(outcome).toBe('refused');
    } finally {
      server.close();
      pki.cleanup();
    }
  });
});
