// Upstream credentials (src/backends/credentials.ts): header building, SigV4 signing
// (AWS' published test vectors and an independent signer), secret handling, TLS material.
import { inspect } from 'node:util';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, type TestPki } from '../../e2e/harness/certs.ts';
import { CredentialsError, resolveAuth, resolveTls, trimSecret, UpstreamCredentials, UpstreamTls, type AuthSecrets } from '../../src/backends/credentials.ts';
import type { ResolvedUpstream } from '../../src/config/load.ts';
import type { Decision } from '../../src/policy/decision.ts';
import { upstreamHeaders } from '../../src/server/upstream-headers.ts';

// AWS' SigV4 test suite credentials (aws-sig-v4-test-suite): not real secrets.
const SUITE: AuthSecrets = { type: 'sigv4', region: 'us-east-1', service: 'service', accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const SUITE_DATE = new Date('2015-08-30T12:36:00Z');

function thrown(f: () => unknown): CredentialsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CredentialsError);
    return e as CredentialsError;
  }
  throw new Error('expected a CredentialsError');
}

/** Sign with @smithy/signature-v4 (the AWS SDK's signer) for comparison. */
async function smithySign(
  secrets: Extract<AuthSecrets, { type: 'sigv4' }>,
  req: { method: string; host: string; path: string; query: Record<string, string | string[]>; headers: Record<string, string>; body?: string },
  date: Date,
): Promise<string> {
  const signer = new SignatureV4({
    credentials: { accessKeyId: secrets.accessKeyId, secretAccessKey: secrets.secretAccessKey, ...(secrets.sessionToken === undefined ? {} : { sessionToken: secrets.sessionToken }) },
    region: secrets.region,
    service: secrets.service,
    sha256: Sha256,
    applyChecksum: false,
  });
  const signed = await signer.sign(
    { method: req.method, protocol: 'https:', hostname: req.host, path: req.path, query: req.query, headers: { host: req.host, ...req.headers }, ...(req.body === undefined ? {} : { body: req.body }) },
    { signingDate: date },
  );
  return String(signed.headers['authorization']);
}

describe('basic and bearer', () => {
  it('build exactly one Authorization header', () => {
    const basic = new UpstreamCredentials({ type: 'basic', username: 'tenant-1', password: 'pa:ss wörd' });
    expect(basic.headers()).toEqual({ authorization: `Basic ${Buffer.from('tenant-1:pa:ss wörd', 'utf8').toString('base64')}` });
    expect(basic.signsRequests).toBe(false);
    expect(basic.sign({ method: 'GET', url: 'http://x/', headers: {} })).toEqual(basic.headers());
    expect(basic.query('a=b+c')).toBe('a=b+c');
    const bearer = new UpstreamCredentials({ type: 'bearer', token: 'tok-123' });
    expect(bearer.headers()).toEqual({ authorization: 'Bearer tok-123' });
  });

  it('never show their secrets when serialised or inspected', () => {
    const a = new UpstreamCredentials({ type: 'basic', username: 'u', password: 'hunter2-secret' });
    const b = new UpstreamCredentials({ type: 'basic', username: 'u', password: 'other-secret' });
    for (const text of [JSON.stringify({ a }), inspect(a), inspect({ nested: { a } }, { depth: 5 }), String(a)]) {
      expect(text).not.toContain('hunter2-secret');
      expect(text).not.toContain(Buffer.from('u:hunter2-secret').toString('base64'));
    }
    expect(JSON.parse(JSON.stringify(a))).toMatchObject({ type: 'basic', username: 'u' });
    // The fingerprint tells a rotated secret from the same one (config reload), nothing more.
    expect(JSON.stringify(a)).toBe(JSON.stringify(new UpstreamCredentials({ type: 'basic', username: 'u', password: 'hunter2-secret' })));
    expect(JSON.stringify(a)).not.toBe(JSON.stringify(b));
  });
});

describe('sigv4', () => {
  const suite = new UpstreamCredentials(SUITE);

  it('matches AWS test vector get-vanilla', () => {
    const h = suite.sign({ method: 'GET', url: 'https://example.amazonaws.com/', headers: { host: 'example.amazonaws.com' } }, SUITE_DATE);
    expect(h).toEqual({
      authorization:
        'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
      'x-amz-date': '20150830T123600Z',
    });
  });

  it('matches AWS test vector post-x-www-form-urlencoded', () => {
    const h = suite.sign(
      { method: 'POST', url: 'https://example.amazonaws.com/', headers: { host: 'example.amazonaws.com', 'content-type': 'application/x-www-form-urlencoded' }, body: 'Param1=value1' },
      SUITE_DATE,
    );
    expect(h['authorization']).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a',
    );
  });

  it('is deterministic for a fixed date and agrees with the AWS SDK signer (path prefix, repeated and encoded query, body, session token)', async () => {
    const secrets = { type: 'sigv4', region: 'eu-west-1', service: 'aps', accessKeyId: 'AKIATEST', secretAccessKey: 'secret/key+1', sessionToken: 'session-tok' } as const;
    const creds = new UpstreamCredentials(secrets);
    const date = new Date('2024-02-29T23:59:59.123Z');
    const host = 'aps-workspaces.eu-west-1.amazonaws.com';
    const path = '/workspaces/ws-1/api/v1/series';
    const query = creds.query(new URLSearchParams([['match[]', 'up{job="a b"}'], ['match[]', 'process_start_time_seconds'], ['start', '1']]).toString());
    expect(query).not.toContain('+');
    const get = { method: 'GET', url: `https://${host}${path}?${query}`, headers: { host, accept: 'application/json' } };
    const h1 = creds.sign(get, date);
    expect(creds.sign(get, date)).toEqual(h1);
    expect(h1['x-amz-date']).toBe('20240229T235959Z');
    expect(h1['x-amz-security-token']).toBe('session-tok');
    expect(h1['authorization']).toContain('SignedHeaders=host;x-amz-date;x-amz-security-token,');
    const expected = await smithySign(secrets, { method: 'GET', host, path, query: { 'match[]': ['up{job="a b"}', 'process_start_time_seconds'], start: '1' }, headers: {} }, date);
    expect(h1['authorization']).toBe(expected);

    const body = new URLSearchParams([['query', 'sum(rate(x{namespace="a"}[5m]))'], ['step', '15']]).toString();
    const post = { method: 'POST', url: `https://${host}/workspaces/ws-1/api/v1/query_range`, headers: { host, 'content-type': 'application/x-www-form-urlencoded' }, body };
    const h2 = creds.sign(post, date);
    expect(h2['authorization']).toBe(
      await smithySign(secrets, { method: 'POST', host, path: '/workspaces/ws-1/api/v1/query_range', query: {}, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body }, date),
    );
    // Every signed part matters.
    const sig = (h: Record<string, string>) => h['authorization'];
    expect(sig(creds.sign({ ...post, body: `${body}&x=1` }, date))).not.toBe(sig(h2));
    expect(sig(creds.sign({ ...post, method: 'PUT' }, date))).not.toBe(sig(h2));
    expect(sig(creds.sign({ ...post, url: post.url.replace('ws-1', 'ws-2') }, date))).not.toBe(sig(h2));
    expect(sig(creds.sign({ ...post, headers: { ...post.headers, host: 'other.example' } }, date))).not.toBe(sig(h2));
    expect(sig(creds.sign({ ...get, url: `${get.url}&end=2` }, date))).not.toBe(sig(h1));
    expect(sig(creds.sign(get, new Date('2024-03-01T00:00:00Z')))).not.toBe(sig(h1));
  });

  it('adds no static header, writes spaces in queries as %20 and hides the secret key', () => {
    const creds = new UpstreamCredentials({ type: 'sigv4', region: 'us-east-1', service: 'aps', accessKeyId: 'AKIAVISIBLE', secretAccessKey: 'very-secret-key' });
    expect(creds.headers()).toEqual({});
    expect(creds.signsRequests).toBe(true);
    expect(creds.query('query=a+b&x=%2B')).toBe('query=a%20b&x=%2B');
    expect(JSON.parse(JSON.stringify(creds))).toMatchObject({ type: 'sigv4', region: 'us-east-1', service: 'aps' });
    expect(JSON.stringify(creds) + inspect(creds)).not.toMatch(/very-secret-key/);
  });

  it('cannot sign without an absolute URL', () => {
    expect(thrown(() => suite.sign({ method: 'GET', url: '/relative', headers: {} })).reason).toBe('sign_failed');
  });
});

describe('resolveAuth', () => {
  const files: Record<string, string> = { 'pw.txt': 'from-file\n', 'tok.txt': 'token-from-file\r\n\n', 'empty.txt': '\n', 'two.txt': 'a\nb\n' };
  const readFile = (f: string) => {
    const v = files[f];
    if (v === undefined) throw Object.assign(new Error(`ENOENT: ${f}`), { code: 'ENOENT' });
    return v;
  };

  it('reads secret files, trimming trailing newlines', () => {
    expect(trimSecret('x\n')).toBe('x');
    expect(trimSecret('x \r\n')).toBe('x ');
    const b = resolveAuth({ type: 'basic', username: 'u', passwordFile: 'pw.txt' }, { readFile, env: {} });
    expect(b.headers()['authorization']).toBe(`Basic ${Buffer.from('u:from-file').toString('base64')}`);
    const t = resolveAuth({ type: 'bearer', tokenFile: 'tok.txt' }, { readFile, env: {} });
    expect(t.headers()['authorization']).toBe('Bearer token-from-file');
  });

  it('reports unreadable, empty and multi-line secret files with the key, never the content', () => {
    const missing = thrown(() => resolveAuth({ type: 'bearer', tokenFile: 'nope.txt' }, { readFile, env: {} }));
    expect(missing).toMatchObject({ reason: 'unreadable_file', key: 'auth.tokenFile', code: 'config_invalid' });
    expect(missing.message).toMatch(/ENOENT/);
    expect(thrown(() => resolveAuth({ type: 'basic', username: 'u', passwordFile: 'empty.txt' }, { readFile, env: {} }))).toMatchObject({ reason: 'empty_secret', key: 'auth.passwordFile' });
    const two = thrown(() => resolveAuth({ type: 'basic', username: 'u', passwordFile: 'two.txt' }, { readFile, env: {} }));
    expect(two.key).toBe('auth.passwordFile');
    expect(two.message).not.toContain('a\nb');
  });

  it('refuses what a header cannot carry in a secret sent as it is (bearer, sigv4 key id and session token), never showing it; a basic password goes base64-encoded', () => {
    const odd: Record<string, string> = { 'snow.txt': 'S3CRET\u2603\n', 'ctl.txt': 'S3CRET\u0001\n', 'latin1.txt': 'caf\u00e9\tS3CRET\n' };
    const read = (f: string) => odd[f] ?? readFile(f);
    for (const file of ['snow.txt', 'ctl.txt']) {
      const e = thrown(() => resolveAuth({ type: 'bearer', tokenFile: file }, { readFile: read, env: {} }));
      expect(e, file).toMatchObject({ reason: 'unsendable_secret', key: 'auth.tokenFile', code: 'config_invalid' });
      expect(e.message, file).not.toContain('S3CRET');
    }
    expect(resolveAuth({ type: 'bearer', tokenFile: 'latin1.txt' }, { readFile: read, env: {} }).headers()['authorization']).toBe('Bearer caf\u00e9\tS3CRET');
    expect(thrown(() => new UpstreamCredentials({ type: 'bearer', token: 'S3CRET\u2603' }))).toMatchObject({ reason: 'unsendable_secret', key: 'auth.token' });
    const env = { AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 's' };
    for (const bad of [{ AWS_SESSION_TOKEN: 'S3CRET\u2603' }, { AWS_ACCESS_KEY_ID: 'AKIA\u0001' }]) {
      const e = thrown(() => resolveAuth({ type: 'sigv4', region: 'eu-west-1', service: 'aps' }, { readFile, env: { ...env, ...bad } }));
      expect(e).toMatchObject({ reason: 'unsendable_secret', key: 'auth' });
      expect(e.message).toMatch(new RegExp(`the environment variable ${Object.keys(bad)[0]} holds a control character`));
      expect(e.message).not.toMatch(/S3CRET|AKIA/);
    }
    const basic = resolveAuth({ type: 'basic', username: 'u', passwordFile: 'snow.txt' }, { readFile: read, env: {} });
    expect(basic.headers()['authorization']).toBe(`Basic ${Buffer.from('u:S3CRET\u2603', 'utf8').toString('base64')}`);
  });

  it('sigv4: config keys win over the environment; without them the environment is read; neither is an error', () => {
    const env = { AWS_ACCESS_KEY_ID: 'AKIAENV', AWS_SECRET_ACCESS_KEY: 'env-secret', AWS_SESSION_TOKEN: 'env-token' };
    const req = { method: 'GET', url: 'https://h/', headers: {} };
    const fromConfig = resolveAuth({ type: 'sigv4', region: 'us-east-1', service: 'aps', accessKeyId: 'AKIACONF', secretAccessKey: 'conf-secret' }, { readFile, env });
    const h1 = fromConfig.sign(req);
    expect(h1['authorization']).toContain('Credential=AKIACONF/');
    expect(h1['x-amz-security-token']).toBeUndefined(); // the environment's token does not go with other keys
    const fromEnv = resolveAuth({ type: 'sigv4', region: 'us-east-1', service: 'aps' }, { readFile, env });
    const h2 = fromEnv.sign(req);
    expect(h2['authorization']).toContain('Credential=AKIAENV/');
    expect(h2['x-amz-security-token']).toBe('env-token');
    const none = thrown(() => resolveAuth({ type: 'sigv4', region: 'us-east-1', service: 'aps' }, { readFile, env: { AWS_ACCESS_KEY_ID: 'AKIAENV' } }));
    expect(none).toMatchObject({ reason: 'missing_credentials', key: 'auth', code: 'config_invalid' });
  });
});

describe('upstreamHeaders with auth', () => {
  const decision: Decision = { allow: true, reason: 't', unrestricted: false, selectors: [], headers: { 'X-Scope-OrgID': 'tenant-a', Authorization: 'from-policy' } };
  it('the configured credential replaces the client\'s Authorization and wins over every other source', () => {
    const upstream = { headers: { 'X-Static': 's' }, forwardAuthorization: false, auth: new UpstreamCredentials({ type: 'bearer', token: 'upstream-token' }) } as unknown as ResolvedUpstream;
    const out = upstreamHeaders({ authorization: 'Bearer client-token', Authorization: 'Bearer x', 'x-kept': 'k' }, upstream, decision);
    expect(out['authorization']).toBe('Bearer upstream-token');
    expect(out['x-static']).toBe('s');
    expect(out['x-kept']).toBe('k');
    expect(JSON.stringify(out)).not.toContain('client-token');
  });

  it('a SigV4 upstream never gets the client\'s X-Amz-* headers (the signer owns them)', () => {
    const upstream = { headers: {}, forwardAuthorization: false, auth: new UpstreamCredentials({ ...SUITE }) } as unknown as ResolvedUpstream;
    const out = upstreamHeaders({ 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', X_Amz_Date: '20000101T000000Z', authorization: 'AWS4-HMAC-SHA256 forged', 'x-kept': 'k' }, upstream, { ...decision, headers: {} });
    expect(out).toEqual({ 'x-kept': 'k' });
  });
});

describe('UpstreamTls', () => {
  let pki: TestPki;
  let other: TestPki;
  beforeAll(() => {
    pki = createTestPki('/CN=Credentials Test CA');
    other = createTestPki('/CN=Other CA');
  });
  afterAll(() => {
    pki?.cleanup();
    other?.cleanup();
  });

  it('validates PEM material and builds tls.connect options without showing the key', () => {
    const client = pki.issue('client', { subject: '/CN=gateway' });
    const tls = new UpstreamTls({ ca: pki.ca.certPem + other.ca.certPem, cert: client.certPem, key: client.keyPem, serverName: 'prom.internal', insecureSkipVerify: false });
    expect(tls.connectOptions()).toEqual({ ca: pki.ca.certPem + other.ca.certPem, cert: client.certPem, key: client.keyPem, servername: 'prom.internal', rejectUnauthorized: true });
    const shown = JSON.stringify(tls) + inspect(tls);
    expect(shown).not.toContain('PRIVATE KEY');
    expect(shown).not.toContain(client.keyPem.split('\n')[1]!);
    expect((JSON.parse(JSON.stringify(tls)) as { ca: string[] }).ca).toHaveLength(2);
    expect(new UpstreamTls({ insecureSkipVerify: true }).connectOptions()).toEqual({ rejectUnauthorized: false });
  });

  it('rejects invalid PEM, a key that does not match the certificate and half a key pair, naming the key', () => {
    const client = pki.issue('client2', { subject: '/CN=gateway' });
    const stranger = other.issue('stranger', { subject: '/CN=stranger' });
    expect(thrown(() => new UpstreamTls({ ca: 'not a pem', insecureSkipVerify: false }))).toMatchObject({ reason: 'invalid_pem', key: 'tls.caFile' });
    expect(thrown(() => new UpstreamTls({ ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', insecureSkipVerify: false }))).toMatchObject({ reason: 'invalid_pem', key: 'tls.caFile' });
    expect(thrown(() => new UpstreamTls({ cert: client.certPem, key: 'garbage', insecureSkipVerify: false }))).toMatchObject({ reason: 'invalid_pem', key: 'tls.keyFile' });
    expect(thrown(() => new UpstreamTls({ cert: client.keyPem, key: client.keyPem, insecureSkipVerify: false }))).toMatchObject({ reason: 'invalid_pem', key: 'tls.certFile' });
    expect(thrown(() => new UpstreamTls({ cert: client.certPem, key: stranger.keyPem, insecureSkipVerify: false }))).toMatchObject({ reason: 'key_mismatch', key: 'tls.keyFile' });
    expect(thrown(() => new UpstreamTls({ cert: client.certPem, insecureSkipVerify: false }))).toMatchObject({ reason: 'key_mismatch', key: 'tls.certFile' });
    const unreadable = thrown(() =>
      resolveTls({ caFile: 'missing.pem', insecureSkipVerify: false }, () => {
        throw Object.assign(new Error('nope'), { code: 'ENOENT' });
      }),
    );
    expect(unreadable).toMatchObject({ reason: 'unreadable_file', key: 'tls.caFile' });
  });
});
