// What an identity provider answers is bounded and judged strictly: oversized bodies (introspection,
// userinfo, discovery, JWKS), non-boolean `active`, a provider that hangs; and Basic credentials
// are decoded as UTF-8 strictly.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { Agent, getGlobalDispatcher, setGlobalDispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki } from '../../e2e/harness/certs.ts';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { basicProviderSchema, grafanaProviderSchema, introspectionProviderSchema, oidcProviderSchema } from '../../src/config/schema.ts';
import { GatewayError } from '../../src/errors.ts';
import { Authenticator, createSource } from '../../src/identity/authenticator.ts';
import { boundedFetch, MAX_PROVIDER_RESPONSE_BYTES } from '../../src/identity/bounded-fetch.ts';
import { hashSecret } from '../../src/identity/secrets.ts';
import type { IdentitySource } from '../../src/identity/source.ts';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;
let server: Server;
let base: string;
let handler: Handler = (_req, res) => res.end();
let idp: TestIssuer;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => handler(req, res, body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  base = `http://127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}`;
  idp = await createTestIssuer({ issuer: `${base}/realm`, audience: 'lbac-gateway', alg: 'RS256' });
});
afterAll(() => {
  server?.closeAllConnections();
  server?.close();
  idp?.cleanup();
});

const json = (res: ServerResponse, value: unknown) => res.setHeader('content-type', 'application/json').end(JSON.stringify(value));

/** Streams a JSON object whose one string member is `mib` MiB long, without Content-Length. */
function endless(res: ServerResponse, head: Record<string, unknown>, mib: number): void {
  res.setHeader('content-type', 'application/json');
  res.write(`${JSON.stringify(head).slice(0, -1)},"padding":"`);
  const chunk = 'a'.repeat(1 << 20);
  let n = 0;
  const more = (): void => {
    while (n < mib) {
      n++;
      if (!res.write(chunk)) {
        res.once('drain', more);
        return;
      }
    }
    res.end('"}');
  };
  res.on('error', () => undefined);
  more();
}

const bearer = (t: string) => ({ headers: {}, bearer: t, basic: undefined });

async function outcome(p: Promise<unknown>): Promise<{ status: number; code: string; message: string } | 'accepted'> {
  return p.then(
    () => 'accepted' as const,
    (e: unknown) => {
      expect(e).toBeInstanceOf(GatewayError);
      const ge = e as GatewayError;
      return { status: ge.status, code: ge.code, message: ge.message };
    },
  );
}

describe('boundedFetch', () => {
  it('passes bodies up to the bound; beyond it (declared, streamed or compressed) the body fails', async () => {
    handler = (req, res) => {
      const n = Number(new URL(req.url!, base).searchParams.get('n'));
      if (req.url!.startsWith('/gz')) return res.setHeader('content-encoding', 'gzip').end(gzipSync(Buffer.alloc(n, 0x61)));
      if (req.url!.startsWith('/chunked')) {
        res.write(Buffer.alloc(n - 1, 0x61));
        return res.end('a');
      }
      res.setHeader('content-length', String(n)).end(Buffer.alloc(n, 0x61));
    };
    const f = boundedFetch(1000);
    for (const path of ['/plain', '/chunked', '/gz']) {
      expect((await (await f(`${base}${path}?n=1000`)).arrayBuffer()).byteLength, path).toBe(1000);
      const err = await f(`${base}${path}?n=1001`).then((r) => r.arrayBuffer()).then(() => undefined, (e: unknown) => e);
      expect(err, path).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).code).toBe('identity_unavailable');
    }
    handler = (_req, res) => res.writeHead(304).end();
    expect((await f(`${base}/nm`)).status).toBe(304);
  });
});

describe('token introspection answers', () => {
  let src: IdentitySource;
  beforeAll(async () => {
    src = await createSource(
      introspectionProviderSchema.parse({ type: 'introspection', introspectionUrl: `${base}/introspect`, clientId: 'gw', clientSecret: 'client-secret-value', negativeCacheTtlSeconds: 0, timeoutMs: 1000 }),
    );
  });

  it('"active" that is not the boolean true is never accepted (fail closed, 503: the provider is broken)', async () => {
    for (const active of ['true', 1, 'yes', null, [true], { value: true }]) {
      handler = (_req, res) => json(res, { active, sub: 'a', exp: Math.floor(Date.now() / 1000) + 60 });
      const r = await outcome(src.authenticate(bearer(`tok-${JSON.stringify(active)}`)));
      expect(r, JSON.stringify(active)).not.toBe('accepted');
    }
  });

  it('a token_type other than Bearer is refused, and named only when it is a short token name (the reason reaches the log and the 401)', async () => {
    const exp = Math.floor(Date.now() / 1000) + 60;
    handler = (_req, res) => json(res, { active: true, sub: 'a', exp, token_type: 'DPoP' });
    expect(await outcome(src.authenticate(bearer('tok-dpop')))).toMatchObject({ status: 401, message: 'introspection: unexpected token_type "DPoP"' });
    // An IdP echoing its request (the gateway's Basic client credential, the token) there.
    const echoed = `Basic ${Buffer.from('gw:client-secret-value').toString('base64')} tok-echo`;
    handler = (_req, res) => json(res, { active: true, sub: 'a', exp, token_type: echoed });
    const r = await outcome(src.authenticate(bearer('tok-echo')));
    expect(r).toMatchObject({ status: 401, message: 'introspection: unexpected token_type' });
  });

  it('an answer larger than the bound is a 503 quickly, whether declared or streamed, and is not cached', async () => {
    const mib = 64;
    handler = (_req, res) => endless(res, { active: true, sub: 'big' }, mib);
    const before = process.memoryUsage().rss;
    const started = performance.now();
    const r = await outcome(src.authenticate(bearer('tok-endless')));
    expect(r).toMatchObject({ status: 503, code: 'identity_unavailable', message: expect.stringMatching(/larger than/) });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(process.memoryUsage().rss - before).toBeLessThan(32 * MAX_PROVIDER_RESPONSE_BYTES);
    handler = (_req, res) => {
      const body = JSON.stringify({ active: true, sub: 'big', padding: 'a'.repeat(MAX_PROVIDER_RESPONSE_BYTES) });
      res.setHeader('content-type', 'application/json').setHeader('content-length', String(Buffer.byteLength(body))).end(body);
    };
    expect(await outcome(src.authenticate(bearer('tok-declared')))).toMatchObject({ status: 503, message: expect.stringMatching(/larger than/) });
    // Just under the bound is an ordinary answer.
    handler = (_req, res) => json(res, { active: true, sub: 'fits', padding: 'a'.repeat(MAX_PROVIDER_RESPONSE_BYTES - 100) });
    await expect(src.authenticate(bearer('tok-endless'))).resolves.toMatchObject({ sub: 'fits' });
  });

  it('an answer without exp is cached for cacheTtlSeconds only: a revocation at the provider applies after it', async () => {
    const short = await createSource(
      introspectionProviderSchema.parse({ type: 'introspection', introspectionUrl: `${base}/introspect`, clientId: 'gw', clientSecret: 'client-secret-value', cacheTtlSeconds: 1, negativeCacheTtlSeconds: 0 }),
    );
    let active = true;
    let calls = 0;
    handler = (_req, res) => {
      calls++;
      json(res, { active, sub: 'no-exp' });
    };
    await expect(short.authenticate(bearer('tok-no-exp'))).resolves.toMatchObject({ sub: 'no-exp' });
    active = false;
    // Within the TTL the cached answer stands (documented), without asking again.
    await expect(short.authenticate(bearer('tok-no-exp'))).resolves.toMatchObject({ sub: 'no-exp' });
    expect(calls).toBe(1);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await outcome(short.authenticate(bearer('tok-no-exp')))).toMatchObject({ status: 401, message: expect.stringMatching(/not active/) });
    expect(calls).toBe(2);
  });

  it('a provider that accepts the connection and never answers is a 503 after the timeout, not a hang', async () => {
    handler = () => undefined;
    const started = performance.now();
    expect(await outcome(src.authenticate(bearer('tok-hang')))).toMatchObject({ status: 503, code: 'identity_unavailable' });
    expect(performance.now() - started).toBeLessThan(5000);
  });
});

describe('the issuer of an introspection subject (what claimsMode.issuers and custom policies compare)', () => {
  const exp = () => Math.floor(Date.now() / 1000) + 60;

  it('with issuer: the answer\'s "iss" or the configured issuer, never one the userinfo answer adds', async () => {
    let answer: Record<string, unknown> = {};
    handler = (req, res) => {
      if (req.url!.endsWith('openid-configuration')) {
        return json(res, { issuer: `${base}/realm`, jwks_uri: `${base}/realm/jwks`, introspection_endpoint: `${base}/realm/introspect`, userinfo_endpoint: `${base}/realm/userinfo` });
      }
      if (req.url === '/realm/introspect') return json(res, answer);
      // The userinfo answer names another issuer (and claims): nothing checks it against the configured one.
      json(res, { sub: 'u-1', iss: 'https://corp.example.com', namespaces: ['payments'] });
    };
    const src = await createSource(introspectionProviderSchema.parse({ type: 'introspection', issuer: `${base}/realm`, clientId: 'gw', clientSecret: 'client-s3cret', audience: 'gw', userinfo: {} }));
    answer = { active: true, sub: 'u-1', aud: 'gw', exp: exp() };
    const merged = await src.authenticate(bearer('tok-no-iss'));
    expect(merged).toMatchObject({ issuer: `${base}/realm`, auth: 'introspection', claims: { iss: 'https://corp.example.com', namespaces: ['payments'] } });
    answer = { active: true, sub: 'u-1', aud: 'gw', exp: exp(), iss: `${base}/realm` };
    await expect(src.authenticate(bearer('tok-own-iss'))).resolves.toMatchObject({ issuer: `${base}/realm` });
    answer = { active: true, sub: 'u-1', aud: 'gw', exp: exp(), iss: 'https://corp.example.com' };
    expect(await outcome(src.authenticate(bearer('tok-other-iss')))).toMatchObject({ status: 401, message: expect.stringMatching(/unexpected "iss"/) });
  });

  it('without issuer (introspectionUrl only): the answer\'s "iss" as the endpoint sends it, or none', async () => {
    let answer: Record<string, unknown> = {};
    handler = (_req, res) => json(res, answer);
    const src = await createSource(introspectionProviderSchema.parse({ type: 'introspection', introspectionUrl: `${base}/introspect`, clientId: 'gw', clientSecret: 'client-s3cret', audience: 'gw' }));
    answer = { active: true, sub: 'u-1', aud: 'gw', exp: exp(), iss: 'https://anyone.example.com' };
    await expect(src.authenticate(bearer('tok-any-iss'))).resolves.toMatchObject({ issuer: 'https://anyone.example.com' });
    answer = { active: true, sub: 'u-1', aud: 'gw', exp: exp() };
    expect(await src.authenticate(bearer('tok-none'))).not.toHaveProperty('issuer');
  });
});

describe('OIDC discovery, JWKS and userinfo answers', () => {
  it('an oversized discovery document, key set or userinfo answer is a 503; the bounded ones work', async () => {
    let oversized: 'discovery' | 'jwks' | 'userinfo' | undefined = 'discovery';
    const discovery = { issuer: `${base}/realm`, jwks_uri: `${base}/realm/jwks`, userinfo_endpoint: `${base}/realm/userinfo` };
    handler = (req, res) => {
      const what = req.url!.endsWith('openid-configuration') ? 'discovery' : req.url!.endsWith('/jwks') ? 'jwks' : 'userinfo';
      const answer: Record<string, unknown> = what === 'discovery' ? discovery : what === 'jwks' ? { ...idp.jwks } : { sub: 'u1', groups: ['team-a'] };
      if (what === oversized) return endless(res, answer, 8);
      json(res, answer);
    };
    const make = () =>
      createSource(oidcProviderSchema.parse({ type: 'oidc', issuer: `${base}/realm`, audience: 'lbac-gateway', userinfo: { enabled: true } }));
    const token = await idp.mint({ sub: 'u1' });
    expect(await outcome((await make()).authenticate(bearer(token)))).toMatchObject({ status: 503, code: 'identity_unavailable', message: expect.stringMatching(/larger than/) });
    oversized = 'jwks';
    expect(await outcome((await make()).authenticate(bearer(token)))).toMatchObject({ status: 503, code: 'identity_unavailable' });
    oversized = 'userinfo';
    expect(await outcome((await make()).authenticate(bearer(token)))).toMatchObject({ status: 503, code: 'identity_unavailable', message: expect.stringMatching(/larger than/) });
    oversized = undefined;
    await expect((await make()).authenticate(bearer(token))).resolves.toMatchObject({ sub: 'u1', groups: ['team-a'] });
  });
});

describe('userinfo refusals', () => {
  it('a token the provider refuses (401, another sub) is refused again without a call for negativeCacheTtlSeconds; a 5xx is never cached; a reload forgets', async () => {
    const discovery = { issuer: `${base}/realm`, jwks_uri: `${base}/realm/jwks`, userinfo_endpoint: `${base}/realm/userinfo` };
    let answer: 'refuse' | 'refuse-bare' | 'blocked' | 'forbidden' | 'other-sub' | 'fail' | 'ok' = 'refuse';
    let calls = 0;
    handler = (req, res) => {
      if (req.url!.endsWith('openid-configuration')) return json(res, discovery);
      if (req.url!.endsWith('/jwks')) return json(res, idp.jwks);
      calls++;
      if (answer === 'refuse') return res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end();
      if (answer === 'refuse-bare') return res.writeHead(401).end();
      // A WAF's block page; and a 403 in OAuth terms.
      if (answer === 'blocked') return res.writeHead(403, { 'content-type': 'text/html' }).end('<h1>Request blocked</h1>');
      if (answer === 'forbidden') return res.writeHead(403, { 'www-authenticate': 'Bearer error="insufficient_scope"' }).end();
      if (answer === 'fail') return res.writeHead(502).end();
      json(res, { sub: answer === 'other-sub' ? 'someone-else' : 'u1', groups: ['team-a'] });
    };
    const make = (negativeCacheTtlSeconds?: number) =>
      createSource(oidcProviderSchema.parse({ type: 'oidc', issuer: `${base}/realm`, audience: 'lbac-gateway', userinfo: { enabled: true, ...(negativeCacheTtlSeconds === undefined ? {} : { negativeCacheTtlSeconds }) } }));
    const src = await make();
    const revoked = await idp.mint({ sub: 'u1' });
    for (let i = 0; i < 3; i++) expect(await outcome(src.authenticate(bearer(revoked)))).toMatchObject({ status: 401, code: 'unauthenticated' });
    expect(calls).toBe(1);
    answer = 'other-sub';
    const mismatched = await idp.mint({ sub: 'u1', jti: 'b' });
    for (let i = 0; i < 3; i++) expect(await outcome(src.authenticate(bearer(mismatched)))).toMatchObject({ status: 401, message: expect.stringMatching(/subject mismatch/) });
    expect(calls).toBe(2);
    // A provider failure says nothing about the token: the next request asks again, and is accepted.
    answer = 'fail';
    const fresh = await idp.mint({ sub: 'u1', jti: 'c' });
    expect(await outcome(src.authenticate(bearer(fresh)))).toMatchObject({ status: 503, code: 'identity_unavailable' });
    answer = 'ok';
    await expect(src.authenticate(bearer(fresh))).resolves.toMatchObject({ sub: 'u1', groups: ['team-a'] });
    expect(calls).toBe(4);
    // A reload forgets refusals (the provider may have been fixed).
    await src.reloaded?.();
    await expect(src.authenticate(bearer(revoked))).resolves.toMatchObject({ sub: 'u1' });
    expect(calls).toBe(5);
    // A 401 without a challenge is a refusal too (not "the provider failed"), cached as one.
    answer = 'refuse-bare';
    const bare = await idp.mint({ sub: 'u1', jti: 'd' });
    const callsBefore = calls;
    for (let i = 0; i < 2; i++) expect(await outcome(src.authenticate(bearer(bare)))).toMatchObject({ status: 401, code: 'unauthenticated' });
    expect(calls - callsBefore).toBe(1);
    // A bare 403 is the provider (or something in front of it) failing, not the token refused: 503, not cached.
    answer = 'blocked';
    const blocked = await idp.mint({ sub: 'u1', jti: 'e' });
    expect(await outcome(src.authenticate(bearer(blocked)))).toMatchObject({ status: 503, code: 'identity_unavailable' });
    answer = 'ok';
    await expect(src.authenticate(bearer(blocked))).resolves.toMatchObject({ sub: 'u1' });
    // A 403 with a Bearer challenge is a refusal.
    answer = 'forbidden';
    expect(await outcome(src.authenticate(bearer(await idp.mint({ sub: 'u1', jti: 'f' }))))).toMatchObject({ status: 401 });
    // A refusal by userinfo is final: a later source (introspection with tokens: all) is not asked.
    answer = 'refuse';
    const later = { name: 'later', authenticate: async () => ({ sub: 'later', groups: ['admins'], roles: [], auth: 'x', claims: {} }) };
    const chained = new Authenticator([await make(), later]);
    expect(await outcome(chained.authenticate({ headers: { authorization: `Bearer ${revoked}` } }))).toMatchObject({ status: 401 });
    // 0: not cached.
    const uncached = await make(0);
    const before = calls;
    for (let i = 0; i < 2; i++) expect(await outcome(uncached.authenticate(bearer(revoked)))).toMatchObject({ status: 401 });
    expect(calls - before).toBe(2);
  });
});

describe('JSON Web Key Sets that are not one', () => {
  it('a key set that is not JSON, has no keys array, or no usable key is a 503 or a 401, never an accept', async () => {
    const token = await idp.mint({ sub: 'u1' });
    const answers: [string, string][] = [
      ['text/html', '<html>login</html>'],
      ['application/json', '{"keys": "not-a-list"}'],
      ['application/json', '[]'],
      ['application/json', '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'],
      ['application/json', `{"keys": [${JSON.stringify({ ...idp.jwks.keys[0], use: 'enc' })}]}`],
    ];
    for (const [type, body] of answers) {
      handler = (req, res) => {
        if (req.url!.endsWith('openid-configuration')) return json(res, { issuer: `${base}/realm`, jwks_uri: `${base}/realm/jwks` });
        res.setHeader('content-type', type).end(body);
      };
      const src = await createSource(oidcProviderSchema.parse({ type: 'oidc', issuer: `${base}/realm`, audience: 'lbac-gateway' }));
      const r = await outcome(src.authenticate(bearer(token)));
      expect(r, body).not.toBe('accepted');
      expect([401, 503], body).toContain((r as { status: number }).status);
    }
  });
});

describe('an https issuer whose discovery document announces a plain-HTTP jwks_uri', () => {
  it('is refused (503): the keys are not fetched in the clear; an explicit jwksUrl is the operator\'s choice', async () => {
    const pki = createTestPki('/CN=Discovery CA');
    const cert = pki.issue('idp', { subject: '/CN=127.0.0.1', san: ['IP:127.0.0.1'], serverAuth: true });
    let jwksFetches = 0;
    let keys: unknown = { keys: [] };
    handler = (_req, res) => {
      jwksFetches++;
      json(res, keys);
    };
    const tls = createHttpsServer({ key: cert.keyPem, cert: cert.certPem }, (req, res) => {
      const issuer = `https://127.0.0.1:${(tls.address() as AddressInfo).port}`;
      if (req.url!.endsWith('openid-configuration')) return json(res, { issuer, jwks_uri: `${base}/jwks` });
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    const issuer = `https://127.0.0.1:${(tls.address() as AddressInfo).port}`;
    const previous = getGlobalDispatcher();
    setGlobalDispatcher(new Agent({ connect: { ca: pki.ca.certPem } }));
    try {
      const mint = await createTestIssuer({ issuer, audience: 'lbac-gateway', alg: 'RS256' });
      keys = mint.jwks;
      const token = await mint.mint({ sub: 'u1' });
      const src = await createSource(oidcProviderSchema.parse({ type: 'oidc', issuer, audience: 'lbac-gateway' }));
      expect(await outcome(src.authenticate(bearer(token)))).toMatchObject({ status: 503, code: 'identity_unavailable', message: expect.stringMatching(/jwks_uri .* not https: refused/) });
      expect(jwksFetches).toBe(0);
      const explicit = await createSource(oidcProviderSchema.parse({ type: 'oidc', issuer, audience: 'lbac-gateway', jwksUrl: `${base}/jwks` }));
      await expect(explicit.authenticate(bearer(token))).resolves.toMatchObject({ sub: 'u1' });
      mint.cleanup();
    } finally {
      setGlobalDispatcher(previous);
      tls.closeAllConnections();
      tls.close();
      pki.cleanup();
    }
  });
});

describe('a plain-HTTP loopback issuer whose discovery document announces plain-HTTP endpoints on another host', () => {
  it('is warned about once discovered (the endpoints this source calls only, shown without credentials or query)', async () => {
    const remote = 'http://user:hunter2@idp.example.invalid:8080';
    let discovered = 0;
    handler = (req, res) => {
      if (!req.url!.endsWith('openid-configuration')) return res.writeHead(404).end();
      discovered++;
      json(res, {
        issuer: `${base}/realm`,
        jwks_uri: `${remote}/jwks?sig=s3cret`,
        userinfo_endpoint: `${base}/realm/userinfo`,
        introspection_endpoint: `${remote}/introspect`,
      });
    };
    const warnings: [Record<string, unknown>, string][] = [];
    const log = { warn: (fields: object, message: string) => warnings.push([fields as Record<string, unknown>, message]) };
    await createSource(oidcProviderSchema.parse({ type: 'oidc', issuer: `${base}/realm`, audience: 'lbac-gateway' }), log);
    await expect.poll(() => warnings.length).toBe(1);
    const [fields, message] = warnings[0]!;
    expect(fields).toEqual({ issuer: `${base}/realm`, endpoints: { jwks_uri: 'http://idp.example.invalid:8080/jwks' } });
    expect(message).toMatch(/announces jwks_uri http:\/\/idp\.example\.invalid:8080\/jwks, plain HTTP to another host/);
    expect(JSON.stringify(warnings)).not.toMatch(/hunter2|s3cret|user:/);
    // Introspection: its endpoint is the one called (with the client secret).
    warnings.length = 0;
    await createSource(introspectionProviderSchema.parse({ type: 'introspection', issuer: `${base}/realm`, clientId: 'gw', clientSecret: 'client-s3cret', audience: 'gw' }), log);
    await expect.poll(() => warnings.length).toBe(1);
    expect(warnings[0]![0]).toMatchObject({ endpoints: { introspection_endpoint: 'http://idp.example.invalid:8080/introspect' } });
    expect(JSON.stringify(warnings)).not.toMatch(/hunter2|s3cret/);
    // Endpoints this source does not call (jwksUrl set; userinfo on loopback): nothing to warn about.
    warnings.length = 0;
    const before = discovered;
    await createSource(oidcProviderSchema.parse({ type: 'oidc', issuer: `${base}/realm`, audience: 'lbac-gateway', jwksUrl: `${base}/realm/jwks`, userinfo: { enabled: true } }), log);
    await expect.poll(() => discovered).toBe(before + 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(warnings).toEqual([]);
  });
});

describe('Grafana ID tokens naming orgs', () => {
  it('one accepted org decides; two accepted orgs are ambiguous (401); a grafana_org claim in the token is overridden', async () => {
    const grafana = await createTestIssuer({ issuer: `${base}/grafana`, audience: 'org:1', alg: 'ES256' });
    handler = (_req, res) => json(res, grafana.jwks);
    const src = await createSource(grafanaProviderSchema.parse({ type: 'grafana', url: `${base}/grafana`, jwksUrl: `${base}/keys`, orgs: [1, 2] }));
    const id = (aud: string[], claims: Record<string, unknown> = {}) => grafana.mint({ sub: 'user:7', ...claims }, { audience: aud });
    const withId = (t: string) => ({ headers: { 'x-grafana-id': t }, bearer: undefined, basic: undefined });
    await expect(src.authenticate(withId(await id(['org:1', 'org:3'], { grafana_org: 2 })))).resolves.toMatchObject({ sub: 'user:7', grafanaOrg: 1, claims: { grafana_org: 1 } });
    expect(await outcome(src.authenticate(withId(await id(['org:1', 'org:2']))))).toMatchObject({ status: 401, message: expect.stringMatching(/exactly one accepted org/) });
    expect(await outcome(src.authenticate(withId(await id(['org:3']))))).toMatchObject({ status: 401 });
    expect(await outcome(src.authenticate(withId(await id(['org:01']))))).toMatchObject({ status: 401 });
    grafana.cleanup();
  });
});

describe('Basic credentials', () => {
  let auth: Authenticator;
  beforeAll(async () => {
    auth = new Authenticator([
      await createSource(
        basicProviderSchema.parse({
          type: 'basic',
          users: [
            { username: 'jürgen', hash: await hashSecret('pässwörd:€'), subject: { groups: ['team-a'] } },
            { username: 'rep', hash: await hashSecret('p\uFFFDss'), subject: { groups: ['team-b'] } },
          ],
        }),
      ),
    ]);
  });
  const basic = (bytes: Buffer) => ({ headers: { authorization: `Basic ${bytes.toString('base64')}` } });

  it('UTF-8 user names and passwords (":" after the first belongs to the password) are accepted', async () => {
    await expect(auth.authenticate(basic(Buffer.from('jürgen:pässwörd:€')))).resolves.toMatchObject({ sub: 'jürgen', groups: ['team-a'] });
  });

  it('bytes that are not UTF-8 are refused, not turned into U+FFFD (which would make different passwords one)', async () => {
    await expect(auth.authenticate(basic(Buffer.from('rep:p\uFFFDss')))).resolves.toMatchObject({ sub: 'rep' });
    for (const bad of [0xff, 0xc3, 0x80, 0xed]) {
      const bytes = Buffer.concat([Buffer.from('rep:p'), Buffer.from([bad]), Buffer.from('ss')]);
      expect(await outcome(auth.authenticate(basic(bytes))), bad.toString(16)).toMatchObject({ status: 401, message: expect.stringMatching(/malformed/) });
    }
    // Latin-1 "jürgen" (0xfc) is not the UTF-8 user.
    expect(await outcome(auth.authenticate(basic(Buffer.from('j\xfcrgen:pässwörd:€', 'latin1'))))).toMatchObject({ status: 401 });
  });
});
