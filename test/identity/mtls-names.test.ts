// Client certificates whose names try to read as other names: a CN holding ", OU=admins", a "+"
// that is not a multi-valued RDN, a SAN DNS name holding " URI:spiffe://…". The fields come from
// the certificate's structure, never from splitting a printed DN, so none of them grants more.
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, type CertFiles, type TestPki } from '../../e2e/harness/certs.ts';
import { mtlsProviderSchema } from '../../src/config/schema.ts';
import { MtlsSource, tlsInfoOf } from '../../src/identity/mtls.ts';
import type { TlsInfo } from '../../src/identity/source.ts';

let pki: TestPki;
let server: ReturnType<typeof createServer>;
let port: number;
const seen: (TlsInfo | undefined)[] = [];
const c: Record<string, CertFiles> = {};

beforeAll(async () => {
  pki = createTestPki('/CN=names CA');
  c['server'] = pki.issue('server', { subject: '/CN=server', san: ['IP:127.0.0.1'], serverAuth: true });
  c['comma'] = pki.issue('comma', { subject: '/OU=team-a/CN=alice\\, OU=admins' });
  c['plus'] = pki.issue('plus', { subject: '/CN=bob\\+OU=admins' });
  c['slash'] = pki.issue('slash', { subject: '/CN=carol\\/OU=admins' });
  c['san'] = pki.issue('san', { subject: '/CN=dave', san: ['DNS:dave.svc URI:spiffe://td/admin', 'URI:spiffe://td/dave'] });
  server = createServer({ cert: c['server'].certPem, key: c['server'].keyPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    seen.push(tlsInfoOf(req.socket));
    res.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
}, 60_000);
afterAll(() => {
  server?.close();
  pki?.cleanup();
});

const hit = (client: CertFiles) =>
  new Promise<TlsInfo | undefined>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', ca: pki.ca.certPem, agent: false, cert: client.certPem, key: client.keyPem }, (res) => {
      res.resume();
      res.on('end', () => resolve(seen.at(-1)));
    });
    req.on('error', reject);
    req.end();
  });

describe('certificate names that imitate other attributes', () => {
  const source = new MtlsSource(
    mtlsProviderSchema.parse({ type: 'mtls', subjectFrom: ['uri', 'cn'], ouAsGroups: true, mapping: [{ subject: 'spiffe://td/admin', groups: ['admins'] }, { subject: 'admins', groups: ['admins'] }] }),
  );
  const subjectOf = async (name: string) => source.authenticate({ headers: {}, bearer: undefined, basic: undefined, tls: await hit(c[name]!) });

  it('a CN holding ", OU=admins" is one CN; the OUs are the certificate\'s own', async () => {
    const info = await hit(c['comma']!);
    expect(info?.certificate).toMatchObject({ cn: 'alice, OU=admins', cnCount: 1, ou: ['team-a'] });
    expect(await subjectOf('comma')).toMatchObject({ sub: 'alice, OU=admins', groups: ['team-a'] });
  });

  it('"+" and "/" inside a CN are characters of it, not further attributes', async () => {
    expect((await hit(c['plus']!))?.certificate).toMatchObject({ cn: 'bob+OU=admins', ou: [] });
    expect((await hit(c['slash']!))?.certificate).toMatchObject({ cn: 'carol/OU=admins', ou: [] });
    expect((await subjectOf('plus'))?.groups).toEqual([]);
  });

  it('a SAN DNS name holding " URI:spiffe://…" is a DNS name; the URI is the certificate\'s own', async () => {
    expect((await hit(c['san']!))?.certificate).toMatchObject({ dns: ['dave.svc URI:spiffe://td/admin'], uri: ['spiffe://td/dave'] });
    expect(await subjectOf('san')).toMatchObject({ sub: 'spiffe://td/dave', groups: [] });
  });
});
