/**
 * The bundle client: downloads the policy bundle from a bundle service the way
 * OPA's bundle plugin does, and activates every good one in a PolicyHolder.
 *
 * - GET <url>/<resource>, with `If-None-Match: <etag>` once a bundle is
 *   active: 304 keeps the current policy, 200 carries a new bundle.
 * - Authorization: none, or `<scheme> <token>` (token inline or from a file
 *   re-read on every request).
 * - Polling: after a success, wait uniformly at random in [minDelay, maxDelay]
 *   (jitter spreads replicas); after a failure (network, timeout, non-2xx/304,
 *   or a bundle that is rejected), back off exponentially from min(1 s,
 *   minDelay), doubling per consecutive failure, capped at maxDelay, with
 *   jitter. A rejected bundle never replaces the active policy, and its ETag is
 *   not remembered, so the next poll downloads again.
 * - Long polling (polling.longPollingTimeoutSeconds), as OPA's downloader does
 *   it: every request says `Prefer: modes=snapshot`; once the service has
 *   answered a 200 with Content-Type application/vnd.openpolicyagent.bundles,
 *   conditional requests add `;wait=<seconds>` (the service may hold them
 *   until a new bundle is published or the wait ends with a 304) and, while
 *   that lasts (a 304 to a long-poll request keeps it), the next request is
 *   sent at once instead of after the polling delay. Such a request's timeout
 *   is the wait plus timeoutMs. A 200 with another content type or any failure
 *   switches back to plain polling (failures back off as usual).
 * - TLS (tls): a private CA and/or a client certificate for an https service,
 *   through this client's own undici Agent; the files are read at start.
 * - Persistence (persistDir): each activated bundle's bytes are written to
 *   <dir>/bundle.tar.gz (temporary file + fsync + rename: a crash never leaves
 *   a half-written bundle) with its ETag and (shown) URL in <dir>/bundle.json.
 *   At start the persisted bundle is verified and activated before the first
 *   download, if it came from the bundle URL configured now, so a restart with
 *   the service down still has the last good policy; that first download is
 *   unconditional (the persisted ETag is not reused), and a 304 to it is a
 *   failure, not "not modified".
 * - Config data: each bundle is merged with the gateway's data (teams,
 *   admins). A config reload that changes it loads the active bundle again
 *   with the new data (prepareReload) and activates it in the reload's
 *   swap; loads and activations are serialised, so a download is never
 *   activated with data a reload has replaced.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, fetch, type Response } from 'undici';
import type { BundleConfig } from '../config/schema.ts';
import { redactUrls, shownUrl } from '../util/shown-url.ts';
import { BAD_HEADER_VALUE_CHAR } from '../util/header-name.ts';
import { GatewayError } from '../errors.ts';
import { VERSION } from '../version.ts';
import { loadBundle, readBundle, type BundleArchive, type LoadedBundle } from './bundle.ts';
import { prepareVerification, type VerificationConfig } from './bundle-signature.ts';
import type { PolicyHolder } from './holder.ts';

export interface BundleLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface BundleClientOptions {
  config: BundleConfig;
  holder: PolicyHolder;
  entrypoint: string;
  /** The gateway's own data ({lbac: …}), merged with each bundle's data (a config reload replaces it: prepareReload). */
  configData: Record<string, unknown>;
  logger: BundleLogger;
  /** For tests: a source of uniform [0, 1) numbers (jitter). */
  random?: () => number;
}

export type PollOutcome =
  | { kind: 'activated'; revision: string; etag: string | undefined }
  | { kind: 'not-modified' }
  | { kind: 'failed'; error: string };

export interface BundleClientStatus {
  url: string;
  etag: string | undefined;
  revision: string | undefined;
  lastSuccessfulDownload: Date | undefined;
  lastSuccessfulRequest: Date | undefined;
  lastError: string | undefined;
  consecutiveFailures: number;
  /** The service announced long polling; requests are long-poll requests. */
  longPolling: boolean;
}

/** OPA's bundle content type; a 200 carrying it announces long-polling support. */
export const BUNDLE_CONTENT_TYPE = 'application/vnd.openpolicyagent.bundles';

const PERSIST_BUNDLE = 'bundle.tar.gz';
const PERSIST_META = 'bundle.json';

/** What a config reload changes in the bundle client (policy data, signing keys read again), waiting for the reload's swap. */
export interface PreparedReload {
  /**
   * Makes the data the one every later bundle is merged with and activates
   * the active bundle with it; makes the keys read again the ones every later
   * bundle is verified with. Synchronous.
   */
  commit(): void;
  /** The reload was rejected: nothing changes. */
  release(): void;
}

interface PersistedMeta {
  /** For people: the URL as shown (no credentials, query or fragment). */
  url: string;
  /** What decides the match at start: bundleSource, hashed. */
  source?: string;
  etag?: string;
  revision: string;
  savedAt: string;
}

/**
 * Query parameters that sign a pre-signed URL rather than choose what it
 * names: AWS (SigV4 `X-Amz-*`, SigV2 `Signature`, `Expires`,
 * `AWSAccessKeyId`), Google Cloud Storage (`X-Goog-*`, `GoogleAccessId`) and
 * Azure SAS tokens. Re-signing changes them; the bundle stays the same.
 */
const SIGNING_PARAM = /^(x-amz-.*|x-goog-.*|signature|expires|awsaccesskeyid|googleaccessid|sv|ss|srt|sp|se|st|spr|sig|sr|si|sdd|sip|skoid|sktid|skt|ske|sks|skv|ses|rscc|rscd|rsce|rscl|rsct)$/i;

/**
 * The identity of the bundle service a bundle was downloaded from, hashed: the
 * URL with its query (a service may choose the bundle by it, `?env=prod`)
 * less the parameters of a URL signature (SIGNING_PARAM: a re-signed URL
 * still names the same bundle), the auth scheme and the token's origin (the
 * token itself when configured inline; the file's path for tokenFile, whose
 * content rotates). A persisted bundle is activated at start only under the
 * same identity: one saved by a staging configuration sharing persistDir is
 * not prod's policy.
 */
export function bundleSource(config: BundleConfig): string {
  const url = new URL(bundleUrl(config));
  const query = [...url.searchParams].filter(([name]) => !SIGNING_PARAM.test(name));
  const auth = config.auth;
  const who = auth.type === 'none' ? 'none' : auth.tokenFile !== undefined ? `file:${auth.tokenFile}` : `token:${createHash('sha256').update(auth.token ?? '').digest('hex')}`;
  const identity = [url.protocol, url.username, url.host, url.pathname, query, auth.type, auth.type === 'none' ? '' : auth.scheme, who];
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex');
}

/** A "not modified" answer to a long poll sooner than this is the service not holding requests: the next one waits the poll delay. */
const LONG_POLL_MIN_MS = 500;

/** An error as logged and kept in the status: URLs in it shown without credentials or query (fetch errors quote them). */
function errorText(e: unknown): string {
  if (e instanceof Error) {
    const cause = e.cause instanceof Error && !e.message.includes(e.cause.message) ? `: ${e.cause.message}` : '';
    return redactUrls(e.name === 'TimeoutError' ? `timed out (${e.message})` : `${e.message}${cause}`);
  }
  return redactUrls(String(e));
}

/** The bundle URL: service url and resource joined by exactly one "/". */
export function bundleUrl(config: Pick<BundleConfig, 'url' | 'resource'>): string {
  return `${config.url.replace(/\/+$/, '')}/${config.resource.replace(/^\/+/, '')}`;
}

/** Delay (ms) before the next poll: jittered interval after success, exponential backoff after failures. */
export function nextDelayMs(polling: BundleConfig['polling'], consecutiveFailures: number, random: () => number = Math.random): number {
  const min = polling.minDelaySeconds * 1000;
  const max = polling.maxDelaySeconds * 1000;
  if (consecutiveFailures === 0) return min + (max - min) * random();
  const base = Math.min(1000, min);
  const capped = Math.min(max, base * 2 ** Math.min(consecutiveFailures - 1, 30));
  return capped / 2 + (capped / 2) * random();
}

/**
 * The persisted bundle's bytes: a regular file no larger than a download may
 * be (maxSizeBytes). What else sits there (a device, a FIFO, a file grown on
 * disk) is refused before it is read, not read whole into memory.
 */
async function readPersisted(path: string, maxBytes: number): Promise<Uint8Array> {
  // Non-blocking: opening a FIFO for reading would otherwise wait for a writer.
  const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > maxBytes) throw new Error(`larger than maxSizeBytes ${maxBytes}`);
    const bytes = await fh.readFile();
    if (bytes.length > maxBytes) throw new Error(`larger than maxSizeBytes ${maxBytes}`);
    return bytes;
  } finally {
    await fh.close();
  }
}

/** bundle.json holds a URL and a few fields; anything larger is not one the gateway wrote. */
const PERSIST_META_MAX_BYTES = 64 * 1024;

async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** The verification a bundle config asks for, and the key files' contents it was built from. */
interface SigningKeys {
  readonly verification: VerificationConfig | undefined;
  /** The publicKeyFile contents, joined (undefined when no key is read from a file): tells a rotated key at a reload. */
  readonly files: string | undefined;
}

/** Reads the signing keys' files and checks the keys (a bad key is an error: at start, or a rejected reload). */
async function readSigningKeys(signing: BundleConfig['signing']): Promise<SigningKeys> {
  if (signing === undefined) return { verification: undefined, files: undefined };
  const keys = await Promise.all(
    signing.keys.map(async (k) => ({
      keyid: k.keyid,
      algorithm: k.algorithm,
      scope: k.scope,
      publicKey: k.publicKey ?? (await readFile(k.publicKeyFile!, 'utf8')),
      fromFile: k.publicKeyFile !== undefined,
    })),
  );
  const verification = prepareVerification({ keys: keys.map(({ fromFile: _, ...k }) => k), keyid: signing.keyid, scope: signing.scope, excludeFiles: signing.excludeFiles });
  const fromFiles = keys.filter((k) => k.fromFile);
  return { verification, files: fromFiles.length === 0 ? undefined : JSON.stringify(fromFiles.map((k) => [k.keyid, k.publicKey])) };
}

/**
 * The bundle URL as it may be shown (logs, /readyz, metrics labels): without
 * credentials, query string or fragment. A pre-signed URL carries its
 * signature in the query, which would let anyone download the policy.
 */
export const displayUrl = shownUrl;

/** Redirects the bundle client follows (#get), and how many in a row. */
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

export class BundleClient {
  readonly url: string;
  /** `url` without credentials or query (displayUrl): what logs, status and policy sources show. */
  readonly shownUrl: string;
  readonly #opts: BundleClientOptions;
  /** How bundles are verified; a reload reads publicKeyFile keys again (prepareReload). */
  #verification: VerificationConfig | undefined;
  /** The publicKeyFile contents #verification was built from (undefined: no key is read from a file). */
  #keyFiles: string | undefined;
  /** bundleSource of the configuration: recorded with a persisted bundle, and required of one at start. */
  readonly #source: string;
  readonly #random: () => number;
  readonly #agent: Agent;
  #longPolling = false;
  #etag: string | undefined;
  #revision: string | undefined;
  #lastSuccessfulDownload: Date | undefined;
  #lastSuccessfulRequest: Date | undefined;
  #lastError: string | undefined;
  #failures = 0;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #inflight: AbortController | undefined;
  #loop: Promise<void> | undefined;
  #configData: Record<string, unknown>;
  /** The active bundle, as activated: a config reload loads it again with its new data (and the keys it was verified with). */
  #active: { bytes: Uint8Array; contentDigest: string; source: string; etag: string | undefined; verification: VerificationConfig | undefined } | undefined;
  /** Loading and activating a bundle are exclusive: a download never activates with data a reload replaced meanwhile. */
  #lock: Promise<void> = Promise.resolve();

  private constructor(opts: BundleClientOptions, keys: SigningKeys, agent: Agent) {
    this.#opts = opts;
    this.#agent = agent;
    this.url = bundleUrl(opts.config);
    this.shownUrl = displayUrl(this.url);
    this.#source = bundleSource(opts.config);
    this.#verification = keys.verification;
    this.#keyFiles = keys.files;
    this.#random = opts.random ?? Math.random;
    this.#configData = opts.configData;
  }

  /** Waits for the loads and activations before it (see #lock); resolves to the function that lets the next one go. */
  async #acquire(): Promise<() => void> {
    const previous = this.#lock;
    let release!: () => void;
    this.#lock = new Promise<void>((r) => (release = r));
    await previous;
    return release;
  }

  /** Runs `fn` alone among loads and activations (see #lock). */
  async #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.#acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * What a config reload changes here, prepared before the reload swaps
   * anything and applied by `commit` in its synchronous swap:
   * - new policy data (teams, admins; `configData`, when it changed): the
   *   active bundle is loaded again with it (verified with the keys it was
   *   activated under), so a narrowed team applies at the reload, as in local
   *   mode. A bundle that does not load with the new data (a team the
   *   bundle's data.json also sets) rejects the reload: `config_invalid`.
   * - the signing keys' files, read again: a rotated key (the file replaced at
   *   the same path) verifies every later bundle, and the retired one none;
   *   the active bundle stays until a bundle signed with the new key arrives,
   *   which is asked for at once. A key file that cannot be read or is no key
   *   rejects the reload.
   * Until `commit` or `release`, no download is activated (it would be merged
   * with data, or verified with keys, being replaced).
   */
  async prepareReload(configData: Record<string, unknown> | undefined): Promise<PreparedReload> {
    let keys: SigningKeys;
    try {
      keys = await readSigningKeys(this.#opts.config.signing);
    } catch (e) {
      throw new GatewayError('config_invalid', `cannot read the bundle signing keys: ${errorText(e)}`, { cause: e });
    }
    // Nothing to change here: no lock, so downloads are not held up while the reload refetches identity keys.
    if (configData === undefined && keys.files === this.#keyFiles) return { commit: () => undefined, release: () => undefined };
    // Held until the reload commits or releases: no download is activated meanwhile.
    const unlock = await this.#acquire();
    const active = this.#active;
    let loaded: LoadedBundle | undefined;
    try {
      loaded = active === undefined || configData === undefined ? undefined : await this.#load(active.bytes, configData, active.verification);
    } catch (e) {
      unlock();
      throw new GatewayError('config_invalid', `the active policy bundle does not load with the new policy data (teams, admins): ${errorText(e)}`, { cause: e });
    }
    let settled = false;
    return {
      commit: () => {
        if (settled) return;
        settled = true;
        if (configData !== undefined) this.#configData = configData;
        if (loaded !== undefined && active !== undefined) this.#activate(loaded, active.source, active.etag, active.bytes, active.verification);
        const rotated = keys.files !== this.#keyFiles;
        this.#verification = keys.verification;
        this.#keyFiles = keys.files;
        unlock();
        if (rotated) {
          // The next request is unconditional: a 304 would keep the bundle the retired key signed, every poll looking healthy.
          this.#etag = undefined;
          this.#opts.logger.info({ url: this.shownUrl, activeRevision: this.#opts.holder.revision ?? null }, 'policy bundle signing keys changed; bundles are verified with the new keys from now on');
          // The bundle signed with the new key may be there already (rejected before the rotation): ask now.
          this.#wake?.();
        }
      },
      release: () => {
        if (settled) return;
        settled = true;
        unlock();
      },
    };
  }

  /** Reads key files and checks keys (a bad key is a startup error). */
  static async create(opts: BundleClientOptions): Promise<BundleClient> {
    const keys = await readSigningKeys(opts.config.signing);
    const tls = opts.config.tls;
    const read = (file: string | undefined) => (file === undefined ? undefined : readFile(file, 'utf8'));
    const [ca, cert, key] = await Promise.all([read(tls?.ca), read(tls?.cert), read(tls?.key)]);
    // Our own timeouts (timeoutMs, plus the wait of a long-poll request) bound each request.
    const agent = new Agent({
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: { ...(ca === undefined ? {} : { ca }), ...(cert === undefined ? {} : { cert }), ...(key === undefined ? {} : { key }) },
    });
    return new BundleClient(opts, keys, agent);
  }

  get status(): BundleClientStatus {
    return {
      url: this.shownUrl,
      etag: this.#etag,
      revision: this.#revision,
      lastSuccessfulDownload: this.#lastSuccessfulDownload,
      lastSuccessfulRequest: this.#lastSuccessfulRequest,
      lastError: this.#lastError,
      consecutiveFailures: this.#failures,
      longPolling: this.#longPolling,
    };
  }

  /** Activates the persisted bundle (if any and still valid), then starts polling (first download right away). */
  async start(): Promise<void> {
    await this.loadPersisted();
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#wake?.();
    this.#inflight?.abort();
    await this.#loop;
    await this.#agent.destroy().catch(() => {});
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const started = Date.now();
      const outcome = await this.poll();
      if (this.#stopped) break;
      // The service holds the next request. One that answers "not modified" to a long poll at once does not
      // hold them: the next request waits the poll delay (such a service made thousands of requests a second).
      const unheld = outcome.kind === 'not-modified' && Date.now() - started < LONG_POLL_MIN_MS;
      if (this.#failures === 0 && this.#longPolling && !unheld) continue;
      const delay = nextDelayMs(this.#opts.config.polling, this.#failures, this.#random);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, delay);
        this.#timer.unref();
      });
    }
  }

  async #authorization(signal: AbortSignal): Promise<string | undefined> {
    const auth = this.#opts.config.auth;
    if (auth.type === 'none') return undefined;
    let token = auth.token;
    if (token === undefined) {
      // A regular file only: reading a FIFO (or a device) would wait for a writer, beyond the download's timeout.
      if (!(await stat(auth.tokenFile!)).isFile()) throw new Error(`tokenFile ${JSON.stringify(auth.tokenFile)} is not a regular file`);
      token = (await readFile(auth.tokenFile!, { encoding: 'utf8', signal })).trim();
    }
    // Not sent, and not quoted: the HTTP client's error for such a header value quotes the whole value (the token).
    if (token === '' || BAD_HEADER_VALUE_CHAR.test(token)) throw new Error('the bundle service token is empty or holds a character a header cannot carry (control or non-Latin-1)');
    return `${auth.scheme} ${token}`;
  }

  async #readBody(res: Response): Promise<Uint8Array> {
    const max = this.#opts.config.maxSizeBytes;
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > max) throw new Error(`bundle is ${declared} bytes, more than maxSizeBytes ${max}`);
    if (res.body === null) return new Uint8Array(0);
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      total += chunk.length;
      if (total > max) throw new Error(`bundle is larger than maxSizeBytes ${max}`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  /** A request the service answered well (`downloaded`: with a bundle): the failure count and error cleared. */
  #succeeded(downloaded: boolean): void {
    this.#lastSuccessfulRequest = new Date();
    if (downloaded) this.#lastSuccessfulDownload = this.#lastSuccessfulRequest;
    this.#failures = 0;
    this.#lastError = undefined;
  }

  /** One download attempt; never throws. */
  async poll(): Promise<PollOutcome> {
    const log = this.#opts.logger;
    const controller = new AbortController();
    this.#inflight = controller;
    const headers: Record<string, string> = { 'user-agent': `lbac-gateway/${VERSION}`, accept: `application/gzip, ${BUNDLE_CONTENT_TYPE}, */*` };
    // Only conditional once a policy is active: a 304 before that would leave us with none.
    const conditional = this.#etag !== undefined && this.#opts.holder.ready;
    if (conditional) headers['if-none-match'] = this.#etag!;
    const longPollWait = this.#opts.config.polling.longPollingTimeoutSeconds;
    const wait = longPollWait !== undefined && this.#longPolling && conditional ? longPollWait : undefined;
    if (longPollWait !== undefined) headers['prefer'] = wait === undefined ? 'modes=snapshot' : `modes=snapshot;wait=${wait}`;
    const timeoutMs = this.#opts.config.timeoutMs + (wait ?? 0) * 1000;
    const timeout = setTimeout(() => controller.abort(new Error(`bundle download timed out after ${timeoutMs} ms`)), timeoutMs);
    try {
      const authorization = await this.#authorization(controller.signal);
      if (authorization !== undefined) headers['authorization'] = authorization;
      const res = await this.#get(headers, controller.signal);
      if (res.status === 304 && !conditional) {
        // RFC 9110 §15.4.5: a 304 answers only a conditional request. Taken as "not modified", it would keep
        // the persisted (possibly revoked) policy active indefinitely while every poll looked healthy.
        await res.body?.cancel();
        throw new Error('bundle service answered 304 Not Modified to an unconditional request');
      }
      if (res.status === 304) {
        // A 304 to a long-poll request keeps long polling; to a plain one it changes nothing.
        this.#longPolling = wait !== undefined;
        await res.body?.cancel();
        this.#succeeded(false);
        log.debug({ url: this.shownUrl, etag: this.#etag }, 'policy bundle not modified');
        return { kind: 'not-modified' };
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`bundle service answered HTTP ${res.status}`);
      }
      const etag = res.headers.get('etag') ?? undefined;
      const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      // Long polling needs an ETag to send (a long-poll request is a conditional one).
      this.#longPolling = longPollWait !== undefined && mediaType === BUNDLE_CONTENT_TYPE && etag !== undefined;
      const bytes = await this.#readBody(res);
      const active = this.#active;
      const source = `bundle:${this.shownUrl}`;
      // The bundle this service gave, again (a service without ETags, or one that ignores If-None-Match), or the same
      // files in another archive (one that builds the tarball at every request: new mtimes): not modified. Activating
      // it again would close every live tail and empty the caches at each poll.
      const comparable = active?.source === source && active.verification === this.#verification && this.#opts.holder.ready;
      const sameBytes = comparable && Buffer.compare(active.bytes, bytes) === 0;
      const archive = sameBytes ? undefined : readBundle(bytes, this.#opts.config.maxSizeBytes);
      if (comparable && (sameBytes || active.contentDigest === archive?.contentDigest)) {
        this.#etag = etag;
        this.#succeeded(true);
        log.debug({ url: this.shownUrl, etag: etag ?? null, rebuilt: !sameBytes }, 'policy bundle unchanged');
        return { kind: 'not-modified' };
      }
      const loaded = await this.#exclusive(async () => {
        const l = await this.#load(archive ?? bytes, this.#configData);
        this.#activate(l, source, etag, bytes);
        return l;
      });
      this.#succeeded(true);
      await this.#persist(bytes, etag, loaded.revision);
      return { kind: 'activated', revision: loaded.revision, etag };
    } catch (e) {
      const error = controller.signal.aborted && !this.#stopped ? errorText(controller.signal.reason) : errorText(e);
      this.#failures++;
      this.#lastError = error;
      this.#longPolling = false;
      if (!this.#stopped) {
        log.error({ url: this.shownUrl, error, consecutiveFailures: this.#failures, activeRevision: this.#opts.holder.revision ?? null }, 'policy bundle download failed; keeping the active policy');
      }
      return { kind: 'failed', error };
    } finally {
      clearTimeout(timeout);
      this.#inflight = undefined;
    }
  }

  /**
   * GET the bundle URL, following redirects here rather than in fetch: at most
   * MAX_REDIRECTS, never from HTTPS to anything else (a policy fetched in the
   * clear could be anyone's, and so could an unsigned one) — neither from an
   * https:// bundle URL nor once a chain that began over HTTP has reached
   * HTTPS —, and the credential (Authorization) only ever to the origin it is
   * configured for.
   */
  async #get(headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
    let target = new URL(this.url);
    let secure = target.protocol === 'https:';
    const sent = { ...headers };
    for (let hops = 0; ; hops++) {
      const res = await fetch(target, { headers: sent, signal, redirect: 'manual', dispatcher: this.#agent });
      if (!REDIRECT_STATUSES.has(res.status)) return res;
      await res.body?.cancel();
      const location = res.headers.get('location');
      if (location === null) throw new Error(`bundle service answered HTTP ${res.status} without a Location`);
      if (hops >= MAX_REDIRECTS) throw new Error(`bundle service redirected more than ${MAX_REDIRECTS} times`);
      let next: URL;
      try {
        next = new URL(location, target);
      } catch {
        throw new Error(`bundle service redirected to an invalid URL`);
      }
      if (next.protocol !== 'https:' && (secure || next.protocol !== 'http:')) {
        throw new Error(`bundle service redirected from ${target.protocol}// to ${shownUrl(next.href)}: refused (once a bundle URL or redirect is HTTPS, the policy is only fetched over HTTPS)`);
      }
      if (next.origin !== target.origin) delete sent['authorization'];
      target = next;
      if (target.protocol === 'https:') secure = true;
    }
  }

  #load(bytes: Uint8Array | BundleArchive, configData: Record<string, unknown>, verification = this.#verification): Promise<LoadedBundle> {
    return loadBundle(bytes, {
      configData,
      entrypoint: this.#opts.entrypoint,
      verification,
      maxUncompressedBytes: this.#opts.config.maxSizeBytes,
    });
  }

  #activate(loaded: LoadedBundle, source: string, etag: string | undefined, bytes: Uint8Array, verification = this.#verification): void {
    const previous = this.#opts.holder.revision;
    this.#opts.holder.activate(loaded.engine, source);
    this.#active = { bytes, contentDigest: loaded.contentDigest, source, etag, verification };
    this.#etag = etag;
    this.#revision = loaded.revision;
    this.#opts.logger.info(
      { revision: loaded.revision, previousRevision: previous ?? null, source, etag: etag ?? null, signedBy: loaded.signedBy ?? null, roots: loaded.manifest.roots },
      'policy bundle activated',
    );
  }

  async #persist(bytes: Uint8Array, etag: string | undefined, revision: string): Promise<void> {
    const dir = this.#opts.config.persistDir;
    if (dir === undefined) return;
    const metaFile = join(dir, PERSIST_META);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeAtomic(join(dir, PERSIST_BUNDLE), bytes);
      const meta: PersistedMeta = { url: this.shownUrl, source: this.#source, ...(etag === undefined ? {} : { etag }), revision, savedAt: new Date().toISOString() };
      await writeAtomic(metaFile, JSON.stringify(meta, null, 2) + '\n');
    } catch (e) {
      // Not persisted (a full disk, a read-only volume): the older bundle left there may be revoked, so without
      // its bundle.json a start does not activate it (loadPersisted). Removed only now: while a bundle is
      // written, a sibling worker starting from persistDir still finds the older one whole.
      const invalidated = await rm(metaFile, { force: true }).then(
        () => true,
        () => false,
      );
      this.#opts.logger.error(
        { dir, revision, error: errorText(e) },
        invalidated
          ? 'could not persist the policy bundle; no older persisted bundle will be activated at a start (one started while the bundle service is down waits for it)'
          : 'could not persist the policy bundle, nor invalidate the one persisted before: a start while the bundle service is down would activate that older policy',
      );
    }
  }

  /** Where bundle.json says the persisted bundle came from (shown URL, source identity); undefined if it is missing or unreadable. */
  async #persistedFrom(dir: string): Promise<{ url: string | undefined; source: string | undefined } | undefined> {
    try {
      // Read as the bundle is (readPersisted): a FIFO or device there must not hang or flood the start.
      const bytes = await readPersisted(join(dir, PERSIST_META), PERSIST_META_MAX_BYTES);
      const meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as Partial<PersistedMeta> | null;
      return { url: typeof meta?.url === 'string' ? meta.url : undefined, source: typeof meta?.source === 'string' ? meta.source : undefined };
    } catch {
      return undefined;
    }
  }

  /** Activates the persisted bundle, if there is one from this bundle URL that still loads and verifies. Returns its revision. */
  async loadPersisted(): Promise<string | undefined> {
    const dir = this.#opts.config.persistDir;
    if (dir === undefined) return undefined;
    const file = join(dir, PERSIST_BUNDLE);
    let bytes: Uint8Array;
    try {
      bytes = await readPersisted(file, this.#opts.config.maxSizeBytes);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.#opts.logger.warn({ file, error: errorText(e) }, 'cannot read the persisted policy bundle');
      return undefined;
    }
    // The bundle must have been downloaded from the bundle service configured now: one persisted from
    // another service (staging, an old resource) signed with the same key would otherwise become the policy.
    // The whole URL (query included) and the credentials' origin decide (bundleSource): a service may choose the
    // bundle by either. A bundle.json without `source` (an older gateway's) does not say, so it is not used either.
    const recorded = await this.#persistedFrom(dir);
    if (recorded?.source !== this.#source) {
      this.#opts.logger.error(
        { file, persistedFrom: recorded?.url ?? null, url: this.shownUrl },
        'persisted policy bundle was downloaded from another bundle URL, query or credentials (or its bundle.json is missing or from an older version); ignored, waiting for the bundle service',
      );
      return undefined;
    }
    try {
      const loaded = await this.#exclusive(async () => {
        const l = await this.#load(bytes, this.#configData);
        // No ETag from disk: the first download after a start is unconditional. A persisted ETag would let
        // an older (still validly signed) bundle placed in persistDir, or an ETag collision on the server,
        // keep the old policy active through 304s while everything looks healthy.
        this.#activate(l, `persisted:${file}`, undefined, bytes);
        return l;
      });
      return loaded.revision;
    } catch (e) {
      this.#opts.logger.error({ file, error: errorText(e) }, 'persisted policy bundle rejected; waiting for the bundle service');
      return undefined;
    }
  }
}
