/**
 * Credentials and TLS material the gateway presents to an upstream
 * (`upstreams[].auth`, `upstreams[].tls`). Pure: the config loader reads the
 * files and hands their contents over; the upstream plugin only asks for
 * headers (`headers()`, `sign()`) and connect options (`connectOptions()`).
 *
 * Secrets live in private fields: JSON.stringify, pino and util.inspect see a
 * summary with a fingerprint (an HMAC under a per-process random key, so equal
 * secrets compare equal within one process — config reload notices a rotated
 * secret — and nothing about the secret can be learnt from it).
 */
import { createHmac, createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { inspect } from 'node:util';
import aws4 from 'aws4';
import type { UpstreamConfig } from '../config/schema.ts';
import { GatewayError } from '../errors.ts';
import { fileErrorCode } from '../util/file-error.ts';
import { BAD_HEADER_VALUE_CHAR, BAD_HEADER_VALUE_TEXT } from '../util/header-name.ts';

export type UpstreamAuthConfig = NonNullable<UpstreamConfig['auth']>;
export type UpstreamTlsConfig = NonNullable<UpstreamConfig['tls']>;

/** Why credentials could not be built: every reason but `sign_failed` is a config problem. */
export type CredentialsErrorReason = 'missing_credentials' | 'empty_secret' | 'unsendable_secret' | 'unreadable_file' | 'invalid_pem' | 'key_mismatch' | 'sign_failed';

/**
 * A credentials problem. `key` is the config key relative to the upstream
 * (e.g. "auth.passwordFile", "tls.caFile"); messages never contain secrets.
 */
export class CredentialsError extends GatewayError {
  readonly reason: CredentialsErrorReason;
  readonly key: string;
  constructor(reason: CredentialsErrorReason, key: string, message: string, options?: { cause?: unknown }) {
    super(reason === 'sign_failed' ? 'internal' : 'config_invalid', message, options);
    this.name = 'CredentialsError';
    this.reason = reason;
    this.key = key;
  }
}

/** Resolved secrets (files read, environment consulted). */
export type AuthSecrets =
  | { readonly type: 'basic'; readonly username: string; readonly password: string }
  | { readonly type: 'bearer'; readonly token: string }
  | {
      readonly type: 'sigv4';
      readonly region: string;
      readonly service: string;
      readonly accessKeyId: string;
      readonly secretAccessKey: string;
      readonly sessionToken?: string | undefined;
    };

/** A request as it goes on the wire: `url` is absolute, its path and query exactly as sent. */
export interface SignableRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | number | undefined>>;
  readonly body?: string | Buffer | undefined;
}

const FINGERPRINT_KEY = randomBytes(32);
function fingerprint(...parts: string[]): string {
  const h = createHmac('sha256', FINGERPRINT_KEY);
  for (const p of parts) h.update(`${p.length}:${p}`);
  return h.digest('hex').slice(0, 16);
}

/**
 * What a header value cannot carry (the HTTP client refuses the request: a 502 on every request otherwise),
 * said without the value.
 */
const UNSENDABLE = `${BAD_HEADER_VALUE_TEXT}, which a header cannot carry`;

/** Secret file contents: trailing newlines (as editors and `echo` leave them) removed. */
export function trimSecret(text: string): string {
  return text.replace(/(\r?\n)+$/, '');
}

/** Headers the credentials set: static headers configured for the same upstream must not name them. */
export function credentialHeaderNames(type: UpstreamAuthConfig['type']): readonly string[] {
  return type === 'sigv4' ? ['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'] : ['authorization'];
}

/** "20240102T030405Z" */
export function amzDate(d: Date): string {
  return d.toISOString().replace(/[:-]|\.\d{3}/g, '');
}

function headerValue(headers: SignableRequest['headers'], name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== name || v === undefined) continue;
    return Array.isArray(v) ? v.join(',') : String(v);
  }
  return undefined;
}

/** The credentials of one upstream. */
export class UpstreamCredentials {
  readonly type: AuthSecrets['type'];
  readonly #secrets: AuthSecrets;
  readonly #static: Readonly<Record<string, string>>;
  readonly #fingerprint: string;

  constructor(secrets: AuthSecrets) {
    this.type = secrets.type;
    this.#secrets = secrets;
    switch (secrets.type) {
      case 'basic':
        if (secrets.password === '') throw new CredentialsError('empty_secret', 'auth.password', 'basic auth password is empty');
        this.#static = { authorization: `Basic ${Buffer.from(`${secrets.username}:${secrets.password}`, 'utf8').toString('base64')}` };
        this.#fingerprint = fingerprint('basic', secrets.username, secrets.password);
        break;
      case 'bearer':
        if (secrets.token === '') throw new CredentialsError('empty_secret', 'auth.token', 'bearer token is empty');
        if (BAD_HEADER_VALUE_CHAR.test(secrets.token)) throw new CredentialsError('unsendable_secret', 'auth.token', `bearer token holds ${UNSENDABLE}`);
        this.#static = { authorization: `Bearer ${secrets.token}` };
        this.#fingerprint = fingerprint('bearer', secrets.token);
        break;
      case 'sigv4':
        if (secrets.accessKeyId === '' || secrets.secretAccessKey === '') throw new CredentialsError('missing_credentials', 'auth', 'sigv4 needs an access key id and a secret access key');
        this.#static = {};
        this.#fingerprint = fingerprint('sigv4', secrets.accessKeyId, secrets.secretAccessKey, secrets.sessionToken ?? '');
        break;
    }
  }

  /** True when every request must be signed (`sign()`); false when `headers()` is all there is. */
  get signsRequests(): boolean {
    return this.type === 'sigv4';
  }

  /** Headers added to every request (basic, bearer); none for sigv4, whose headers depend on the request. */
  headers(): Readonly<Record<string, string>> {
    return this.#static;
  }

  /**
   * Headers to add to `req` (lower-case names). For sigv4: AWS Signature Version 4
   * over the method, path, query and body of `req` and its `host` (plus
   * `content-type` and any x-amz-* header it carries), so call it with the request
   * exactly as it will be sent. For basic/bearer: `headers()`.
   *
   * A query must not use "+" for spaces (ambiguous under SigV4): see `query()`.
   */
  sign(req: SignableRequest, now: Date = new Date()): Record<string, string> {
    const s = this.#secrets;
    if (s.type !== 'sigv4') return { ...this.#static };
    const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)([^#]*)/i.exec(req.url);
    if (m === null) throw new CredentialsError('sign_failed', 'auth', 'cannot sign a request without an absolute URL');
    const host = headerValue(req.headers, 'host') ?? m[1]!;
    const target = m[2] === '' ? '/' : m[2]!;
    const date = amzDate(now);
    // Sign only what the gateway controls and sends unchanged: host, content type, x-amz-* (AWS requires those signed).
    const toSign: Record<string, string> = { host };
    const contentType = headerValue(req.headers, 'content-type');
    if (contentType !== undefined) toSign['content-type'] = contentType;
    for (const name of Object.keys(req.headers)) {
      const lower = name.toLowerCase();
      if (lower.startsWith('x-amz-') && !credentialHeaderNames('sigv4').includes(lower)) toSign[lower] = headerValue(req.headers, lower)!;
    }
    toSign['x-amz-date'] = date;
    if (s.sessionToken !== undefined) toSign['x-amz-security-token'] = s.sessionToken;
    let signed;
    try {
      signed = aws4.sign(
        {
          method: req.method.toUpperCase(),
          host,
          path: target,
          headers: toSign,
          body: req.body === undefined ? '' : req.body,
          service: s.service,
          region: s.region,
          // aws4 adds Content-Length for a body; the HTTP client sets its own, so it is not signed.
          extraHeadersToIgnore: { 'content-length': true },
        } as aws4.Request,
        { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, ...(s.sessionToken === undefined ? {} : { sessionToken: s.sessionToken }) },
      );
    } catch (e) {
      throw new CredentialsError('sign_failed', 'auth', 'request could not be signed', { cause: e });
    }
    const h = (signed.headers ?? {}) as Record<string, unknown>;
    const out: Record<string, string> = { authorization: String(h['Authorization']), 'x-amz-date': date };
    if (s.sessionToken !== undefined) out['x-amz-security-token'] = s.sessionToken;
    // aws4 defaults (and signs) a content type for a body without one: send what was signed.
    if (contentType === undefined && typeof h['Content-Type'] === 'string') out['content-type'] = h['Content-Type'];
    return out;
  }

  /**
   * The query string to send: for sigv4, spaces as %20 instead of "+" (a "+" is
   * a space to a form decoder but a literal "+" to SigV4's canonical query, so the
   * AWS SDKs send %20; URLSearchParams encodes a literal "+" as %2B). Unchanged otherwise.
   */
  query(encoded: string): string {
    return this.type === 'sigv4' ? encoded.replace(/\+/g, '%20') : encoded;
  }

  /** What logs, reload comparisons and inspections see. */
  toJSON(): Record<string, string> {
    const s = this.#secrets;
    const shown: Record<string, string> = { type: s.type };
    if (s.type === 'basic') shown['username'] = s.username;
    if (s.type === 'sigv4') {
      shown['region'] = s.region;
      shown['service'] = s.service;
    }
    shown['fingerprint'] = this.#fingerprint;
    return shown;
  }

  [inspect.custom](): string {
    return `UpstreamCredentials ${JSON.stringify(this.toJSON())}`;
  }
}

/** Where the secrets of an `auth` block come from: files (resolved by the caller) and the environment. */
export interface SecretSources {
  /** Read a secret file named in the config (relative to the config file); throw when unreadable. */
  readonly readFile: (file: string) => string;
  /** For sigv4 without keys in the config: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN. */
  readonly env: NodeJS.ProcessEnv;
}

/**
 * A secret file's one line. `inHeader`: sent as it is in a header (a bearer token), so held to what a header
 * can carry; a basic password is sent base64-encoded (as UTF-8) and may hold any other character.
 */
function readSecret(src: SecretSources, file: string, key: string, inHeader: boolean): string {
  let text: string;
  try {
    text = src.readFile(file);
  } catch (e) {
    throw new CredentialsError('unreadable_file', key, `cannot read ${key.split('.').pop()} ${JSON.stringify(file)}: ${fileErrorCode(e)}`, { cause: e });
  }
  const secret = trimSecret(text);
  if (secret === '') throw new CredentialsError('empty_secret', key, `${key.split('.').pop()} ${JSON.stringify(file)} is empty`);
  if (/[\r\n\0]/.test(secret)) throw new CredentialsError('empty_secret', key, `${key.split('.').pop()} ${JSON.stringify(file)} must hold a single line`);
  if (inHeader && BAD_HEADER_VALUE_CHAR.test(secret)) throw new CredentialsError('unsendable_secret', key, `${key.split('.').pop()} ${JSON.stringify(file)} holds ${UNSENDABLE}`);
  return secret;
}

/** Build the credentials of a validated `auth` block (exactly-one and both-or-neither rules are the schema's). */
export function resolveAuth(auth: UpstreamAuthConfig, src: SecretSources): UpstreamCredentials {
  switch (auth.type) {
    case 'basic':
      return new UpstreamCredentials({
        type: 'basic',
        username: auth.username,
        password: auth.password ?? readSecret(src, auth.passwordFile!, 'auth.passwordFile', false),
      });
    case 'bearer':
      return new UpstreamCredentials({ type: 'bearer', token: auth.token ?? readSecret(src, auth.tokenFile!, 'auth.tokenFile', true) });
    case 'sigv4': {
      if (auth.accessKeyId !== undefined && auth.secretAccessKey !== undefined) {
        return new UpstreamCredentials({ type: 'sigv4', region: auth.region, service: auth.service, accessKeyId: auth.accessKeyId, secretAccessKey: auth.secretAccessKey, sessionToken: auth.sessionToken });
      }
      const accessKeyId = src.env['AWS_ACCESS_KEY_ID'];
      const secretAccessKey = src.env['AWS_SECRET_ACCESS_KEY'];
      if (accessKeyId === undefined || accessKeyId === '' || secretAccessKey === undefined || secretAccessKey === '') {
        throw new CredentialsError(
          'missing_credentials',
          'auth',
          'sigv4 needs credentials: set accessKeyId and secretAccessKey, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment',
        );
      }
      const token = src.env['AWS_SESSION_TOKEN'];
      // The key id (in Authorization) and the session token (X-Amz-Security-Token) are sent as they are; the config's are checked by the schema.
      for (const [name, value] of [['AWS_ACCESS_KEY_ID', accessKeyId], ['AWS_SESSION_TOKEN', token]] as const) {
        if (value !== undefined && BAD_HEADER_VALUE_CHAR.test(value)) throw new CredentialsError('unsendable_secret', 'auth', `sigv4: the environment variable ${name} holds ${UNSENDABLE}`);
      }
      return new UpstreamCredentials({ type: 'sigv4', region: auth.region, service: auth.service, accessKeyId, secretAccessKey, sessionToken: token === undefined || token === '' ? undefined : token });
    }
  }
}

/** Options for tls.connect (undici's `connect`, ws' client options). */
export interface TlsConnectOptions {
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  rejectUnauthorized: boolean;
}

/** TLS material read from the files of a `tls` block. */
export interface TlsMaterial {
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly serverName?: string | undefined;
  readonly insecureSkipVerify: boolean;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function parseCertificates(pem: string, key: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new CredentialsError('invalid_pem', key, `${key.split('.').pop()} holds no PEM certificate`);
  return blocks.map((b) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw new CredentialsError('invalid_pem', key, `${key.split('.').pop()} holds an invalid PEM certificate`, { cause: e });
    }
  });
}

/** TLS towards one upstream. */
export class UpstreamTls {
  readonly insecureSkipVerify: boolean;
  readonly serverName: string | undefined;
  readonly #options: TlsConnectOptions;
  readonly #summary: Record<string, unknown>;

  constructor(m: TlsMaterial) {
    this.insecureSkipVerify = m.insecureSkipVerify;
    this.serverName = m.serverName;
    const summary: Record<string, unknown> = {};
    const options: TlsConnectOptions = { rejectUnauthorized: !m.insecureSkipVerify };
    if (m.ca !== undefined) {
      summary['ca'] = parseCertificates(m.ca, 'tls.caFile').map((c) => c.fingerprint256);
      options.ca = m.ca;
    }
    if ((m.cert === undefined) !== (m.key === undefined)) throw new CredentialsError('key_mismatch', 'tls.certFile', 'set both certFile and keyFile, or neither');
    if (m.cert !== undefined && m.key !== undefined) {
      const [leaf] = parseCertificates(m.cert, 'tls.certFile');
      let privateKey: KeyObject;
      try {
        privateKey = createPrivateKey(m.key);
      } catch (e) {
        throw new CredentialsError('invalid_pem', 'tls.keyFile', 'keyFile holds no valid unencrypted PEM private key', { cause: e });
      }
      if (!leaf!.checkPrivateKey(privateKey)) throw new CredentialsError('key_mismatch', 'tls.keyFile', 'keyFile does not match the certificate in certFile');
      summary['cert'] = leaf!.fingerprint256;
      summary['key'] = fingerprint('key', m.key);
      options.cert = m.cert;
      options.key = m.key;
    }
    if (m.serverName !== undefined) {
      summary['serverName'] = m.serverName;
      options.servername = m.serverName;
    }
    summary['insecureSkipVerify'] = m.insecureSkipVerify;
    this.#options = options;
    this.#summary = summary;
  }

  /** tls.connect options: a fresh object each call. */
  connectOptions(): TlsConnectOptions {
    return { ...this.#options };
  }

  toJSON(): Record<string, unknown> {
    return { ...this.#summary };
  }

  [inspect.custom](): string {
    return `UpstreamTls ${JSON.stringify(this.#summary)}`;
  }
}

/** Build the TLS material of a validated `tls` block; `readFile` resolves paths relative to the config file. */
export function resolveTls(tls: UpstreamTlsConfig, readFile: (file: string) => string): UpstreamTls {
  const read = (file: string | undefined, key: string): string | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFile(file);
    } catch (e) {
      throw new CredentialsError('unreadable_file', key, `cannot read ${key.split('.').pop()} ${JSON.stringify(file)}: ${fileErrorCode(e)}`, { cause: e });
    }
  };
  return new UpstreamTls({
    ca: read(tls.caFile, 'tls.caFile'),
    cert: read(tls.certFile, 'tls.certFile'),
    key: read(tls.keyFile, 'tls.keyFile'),
    serverName: tls.serverName,
    insecureSkipVerify: tls.insecureSkipVerify,
  });
}

