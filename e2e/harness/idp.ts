// A real OpenID provider for tests: `oidc-provider` in-process on a loopback
// port (the gateway, a child process, talks to it over real HTTP). It serves
// discovery, JWKS, client_credentials, RFC 7662 introspection and userinfo,
// and offers test-only helpers: mint user access tokens (JWT or opaque) with
// extra claims such as groups, sign arbitrary (also deliberately bad) JWTs with
// the provider's own key, rotate keys while running, count requests per
// endpoint, and go "down" (connections reset) to test fail-closed behaviour.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CompactSign, base64url, exportJWK, exportSPKI, generateKeyPair, type CryptoKey, type JWK } from 'jose';

/** The gateway's client (introspection, discovery). */
export const GATEWAY_CLIENT = { id: 'lbac-gateway', secret: 'gateway-secret-0123456789' } as const;
/** A machine client allowed the client_credentials grant. */
export const MACHINE_CLIENT = { id: 'batch-job', secret: 'batch-secret-0123456789' } as const;
/** The client user tokens are minted for (e.g. Grafana). */
export const USER_CLIENT = { id: 'grafana', secret: 'grafana-secret-0123456789' } as const;
/** Resource indicators: JWT access tokens (aud = JWT_AUDIENCE) and opaque ones. */
export const JWT_RESOURCE = 'urn:lbac:jwt';
export const OPAQUE_RESOURCE = 'urn:lbac:opaque';
export const JWT_AUDIENCE = 'lbac-gateway';

interface KeyEntry {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  privateJwk: JWK;
}

export interface MintAccessTokenOptions {
  sub: string;
  /** 'jwt': a JWT access token for JWT_RESOURCE (aud lbac-gateway); 'opaque': an opaque token without audience (usable at userinfo). Default 'jwt'. */
  format?: 'jwt' | 'opaque';
  /** Extra claims in the token (JWT payload / introspection response), e.g. { groups: [...] }. */
  claims?: Record<string, unknown>;
  /** Default 'openid profile groups'. */
  scope?: string;
  /** Token lifetime. Default 3600. */
  ttlSeconds?: number;
}

export interface SignOptions {
  alg?: 'RS256' | 'none' | 'HS256';
  /** Header kid; default the current key's; null omits. */
  kid?: string | null;
  header?: Record<string, unknown>;
  /** 'foreign' signs with a key the provider does not publish. */
  key?: 'current' | 'foreign';
}

export interface TestIdp {
  /** e.g. http://127.0.0.1:41235 (no trailing slash) — also the `iss`. */
  issuer: string;
  port: number;
  /** Kid of the key tokens are signed with now. */
  readonly currentKid: string;
  /** Requests per endpoint since start (or the last resetCounts()). */
  readonly requests: { discovery: number; jwks: number; introspection: number; userinfo: number; token: number };
  resetCounts(): void;
  /** Claims returned by userinfo for this subject (only scope-permitted ones: sub, preferred_username, email, groups). */
  setAccount(sub: string, claims: Record<string, unknown>): void;
  /** Test-only: a user access token issued directly by the provider's models (no browser flow). */
  mintAccessToken(opts: MintAccessTokenOptions): Promise<string>;
  /** A real client_credentials grant at the token endpoint. */
  clientCredentials(resource?: string): Promise<string>;
  /** Signs any payload (iss/aud/exp defaults filled in) with the provider's current key, or deliberately badly. */
  sign(payload: Record<string, unknown>, opts?: SignOptions): Promise<string>;
  /** The current public key as SPKI PEM (for the HS256 key-confusion attack). */
  publicKeyPem(): Promise<string>;
  /** Generates a new key and makes it current; older keys stay published (and usable) until retired. */
  rotateKeys(): Promise<string>;
  /** Stops publishing a key. */
  retireKey(kid: string): Promise<void>;
  /** false: every connection is reset (provider unreachable). */
  setAvailable(up: boolean): void;
  stop(): Promise<void>;
}

type ProviderLike = {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  Grant: new (init: { accountId: string; clientId: string }) => { addOIDCScope(s: string): void; save(): Promise<string> };
  Client: { find(id: string): Promise<unknown> };
  AccessToken: new (init: Record<string, unknown>) => { save(): Promise<string> };
  ResourceServer: new (id: string, data: Record<string, unknown>) => unknown;
  proxy?: boolean;
};
type ProviderCtor = new (issuer: string, config: Record<string, unknown>) => ProviderLike;

async function newKey(): Promise<KeyEntry> {
  const kid = `idp-${randomUUID().slice(0, 8)}`;
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  return { kid, privateKey, publicKey, privateJwk };
}

export async function startIdp(): Promise<TestIdp> {
  // oidc-provider ships no type declarations: import it through a variable specifier.
  const specifier = 'oidc-provider';
  const { default: Provider } = (await import(specifier)) as { default: ProviderCtor };

  let keys: KeyEntry[] = [await newKey()];
  let foreign: KeyEntry | undefined;
  const accounts = new Map<string, Record<string, unknown>>();
  const extras = new WeakMap<object, Record<string, unknown>>();
  const counts = { discovery: 0, jwks: 0, introspection: 0, userinfo: 0, token: 0 };
  let available = true;
  let provider: ProviderLike | undefined;
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;

  const server: Server = createServer((req, res) => {
    if (!available) {
      req.socket.destroy();
      return;
    }
    const path = (req.url ?? '').split('?')[0];
    if (path === '/.well-known/openid-configuration') counts.discovery++;
    else if (path === '/jwks') counts.jwks++;
    else if (path === '/token/introspection') counts.introspection++;
    else if (path === '/me') counts.userinfo++;
    else if (path === '/token') counts.token++;
    handler!(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;

  const resourceInfo = (resource: string): Record<string, unknown> => ({
    scope: 'api',
    audience: JWT_AUDIENCE,
    accessTokenTTL: 3600,
    accessTokenFormat: resource === OPAQUE_RESOURCE ? 'opaque' : 'jwt',
    jwt: { sign: { alg: 'RS256', kid: keys[0]!.kid } },
  });

  function build(): void {
    provider = new Provider(issuer, {
      clients: [
        { client_id: GATEWAY_CLIENT.id, client_secret: GATEWAY_CLIENT.secret, grant_types: [], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic' },
        { client_id: MACHINE_CLIENT.id, client_secret: MACHINE_CLIENT.secret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'api' },
        { client_id: USER_CLIENT.id, client_secret: USER_CLIENT.secret, grant_types: ['authorization_code'], response_types: ['code'], redirect_uris: ['https://grafana.test/login/generic_oauth'] },
      ],
      jwks: { keys: keys.map((k) => k.privateJwk) },
      findAccount: async (_ctx: unknown, sub: string) => {
        const claims = accounts.get(sub);
        if (claims === undefined) return undefined;
        return { accountId: sub, claims: async () => ({ ...claims, sub }) };
      },
      claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email'], groups: ['groups'] },
      scopes: ['openid', 'profile', 'email', 'groups', 'api', 'offline_access'],
      extraTokenClaims: async (_ctx: unknown, token: object) => extras.get(token),
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        introspection: {
          enabled: true,
          // Only the gateway may introspect, and any token.
          allowedPolicy: async (_ctx: unknown, client: { clientId: string }) => client.clientId === GATEWAY_CLIENT.id,
        },
        userinfo: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => undefined,
          useGrantedResource: () => true,
          getResourceServerInfo: async (_ctx: unknown, resource: string) => resourceInfo(resource),
        },
      },
      ttl: { AccessToken: 3600, ClientCredentials: 600, Grant: 3600, Session: 3600, Interaction: 600, IdToken: 3600 },
    });
    handler = provider.callback();
  }
  build();

  const idp: TestIdp = {
    issuer,
    port,
    get currentKid() {
      return keys[0]!.kid;
    },
    requests: counts,
    resetCounts() {
      for (const k of Object.keys(counts) as (keyof typeof counts)[]) counts[k] = 0;
    },
    setAccount(sub, claims) {
      accounts.set(sub, claims);
    },
    async mintAccessToken(o) {
      const p = provider!;
      const scope = o.scope ?? 'openid profile groups';
      if (!accounts.has(o.sub)) accounts.set(o.sub, {});
      const grant = new p.Grant({ accountId: o.sub, clientId: USER_CLIENT.id });
      grant.addOIDCScope(scope);
      const grantId = await grant.save();
      const client = await p.Client.find(USER_CLIENT.id);
      const at = new p.AccessToken({
        accountId: o.sub,
        client,
        grantId,
        scope,
        gty: 'authorization_code',
        expiresWithSession: false,
        ...(o.ttlSeconds !== undefined ? { expiresIn: o.ttlSeconds } : {}),
        ...((o.format ?? 'jwt') === 'jwt' ? { resourceServer: new p.ResourceServer(JWT_RESOURCE, resourceInfo(JWT_RESOURCE)), scope: 'api' } : {}),
      });
      if (o.claims !== undefined) extras.set(at, o.claims);
      return at.save();
    },
    async clientCredentials(resource = JWT_RESOURCE) {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${MACHINE_CLIENT.id}:${MACHINE_CLIENT.secret}`).toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'api', resource }),
      });
      const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!res.ok || body.access_token === undefined) throw new Error(`client_credentials failed: ${res.status} ${JSON.stringify(body)}`);
      return body.access_token;
    },
    async sign(payload, so = {}) {
      const now = Math.floor(Date.now() / 1000);
      const full = { iss: issuer, aud: JWT_AUDIENCE, iat: now, exp: now + 3600, ...payload };
      for (const [k, v] of Object.entries(full)) if (v === undefined) delete (full as Record<string, unknown>)[k];
      let signer = keys[0]!;
      if (so.key === 'foreign') {
        foreign ??= await newKey();
        signer = foreign;
      }
      const alg = so.alg ?? 'RS256';
      const header: Record<string, unknown> = { alg, typ: 'at+jwt' };
      const kid = so.kid === undefined ? keys[0]!.kid : so.kid;
      if (kid !== null) header['kid'] = kid;
      Object.assign(header, so.header ?? {});
      const body = new TextEncoder().encode(JSON.stringify(full));
      if (alg === 'none') return `${base64url.encode(JSON.stringify(header))}.${base64url.encode(body)}.`;
      const key = alg === 'HS256' ? new TextEncoder().encode(await exportSPKI(signer.publicKey)) : signer.privateKey;
      return new CompactSign(body).setProtectedHeader(header as { alg: string }).sign(key);
    },
    publicKeyPem: () => exportSPKI(keys[0]!.publicKey),
    async rotateKeys() {
      const k = await newKey();
      keys = [k, ...keys];
      build();
      return k.kid;
    },
    async retireKey(kid) {
      if (keys.length === 1) throw new Error('cannot retire the only key');
      keys = keys.filter((k) => k.kid !== kid);
      build();
    },
    setAvailable(up) {
      available = up;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return idp;
}
