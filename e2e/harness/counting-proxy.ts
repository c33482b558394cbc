// A loopback HTTP proxy in front of one upstream that records every request it
// forwards (method, URL, headers, body, upstream status), so tests can assert
// what the backend actually received: that a spoofed X-Scope-OrgID never
// arrived, that an unparsable query was never forwarded, how many requests a
// cache saved. WebSocket upgrades (Loki tail) are tunnelled and recorded too.
import { request as httpRequest, createServer } from 'node:http';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { ReceivingCount } from './receiving.ts';

export interface RecordedRequest {
  /** Sequence number, from 0. */
  seq: number;
  method: string;
  /** Path and query string as received, e.g. /api/v1/query?query=up */
  url: string;
  path: string;
  /** The query-string parameters. */
  query: URLSearchParams;
  /** Query-string parameters plus an application/x-www-form-urlencoded body's (what Prometheus' FormValue sees). */
  params: URLSearchParams;
  /** Header names lower-cased (node's IncomingHttpHeaders). */
  headers: IncomingHttpHeaders;
  body: Buffer;
  bodyText: string;
  /** Upstream status; undefined while in flight, 502 if the upstream failed. */
  status?: number;
  upgrade: boolean;
  at: Date;
}

export interface CountingProxy {
  /** e.g. http://127.0.0.1:41236 — point the gateway's upstream url here. */
  url: string;
  upstream: string;
  /** Every request so far, in arrival order (live array). */
  requests: RecordedRequest[];
  /** Number of recorded requests, optionally matching a predicate. */
  count(pred?: (r: RecordedRequest) => boolean): number;
  /** Forgets the recorded requests. */
  clear(): void;
  /** Requests whose head arrived but whose body has not yet (recorded once it has). */
  receiving(): number;
  /** Resolves once `n` requests (matching pred) were recorded; rejects after timeoutMs (default 5 000). */
  waitFor(n: number, pred?: (r: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest[]>;
  stop(): Promise<void>;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function forwardHeaders(headers: IncomingHttpHeaders, host: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  out['host'] = host;
  return out;
}

/**
 * The media type Go's mime.ParseMediaType gives net/http's parsePostForm for a
 * Content-Type: lower-cased and trimmed, or "" when Go refuses the header (a
 * type that is not token/token, a parameter given twice with different values;
 * Go 1.26 allows equal repeats). A parameter Go cannot read otherwise keeps the
 * type (Go returns it with ErrInvalidMediaParameter). Checked against Go 1.26's
 * ParseForm (test/e2e-harness/go-media-type.test.ts).
 */
export function goMediaType(contentType: string): string {
  const semi = contentType.indexOf(';');
  const type = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  if (!/^[!#$%&'*+.^_`|~0-9a-z-]+\/[!#$%&'*+.^_`|~0-9a-z-]+$/.test(type)) return '';
  if (semi < 0) return type;
  const seen = new Map<string, string>();
  let rest = contentType.slice(semi);
  for (;;) {
    // `; key=value` (token or quoted string), as consumeMediaParam reads it.
    const m = /^\s*;\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+|"(?:[^"\\]|\\.)*")/.exec(rest);
    if (m === null) return type;
    const key = (m[1] as string).toLowerCase();
    const raw = m[2] as string;
    const value = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
    if (seen.has(key) && seen.get(key) !== value) return '';
    seen.set(key, value);
    rest = rest.slice(m[0].length);
  }
}

export async function startCountingProxy(opts: { upstream: string; port?: number }): Promise<CountingProxy> {
  const upstream = new URL(opts.upstream);
  if (upstream.protocol !== 'http:') throw new Error(`counting proxy supports http upstreams only, got ${opts.upstream}`);
  const basePath = upstream.pathname.replace(/\/$/, '');
  const upstreamPort = Number(upstream.port === '' ? 80 : upstream.port);
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let seq = 0;

  const record = (method: string, url: string, headers: IncomingHttpHeaders, body: Buffer, upgrade: boolean): RecordedRequest => {
    const parsed = new URL(url, 'http://proxy.invalid');
    const params = new URLSearchParams(parsed.search);
    const bodyText = body.toString('utf8');
    // Only what Go's ParseForm reads as a form body (the media type as mime.ParseMediaType reads it).
    if (method !== 'GET' && goMediaType(String(headers['content-type'] ?? '')) === 'application/x-www-form-urlencoded') {
      for (const [k, v] of new URLSearchParams(bodyText)) params.append(k, v);
    }
    const r: RecordedRequest = {
      seq: seq++,
      method,
      url,
      path: parsed.pathname,
      query: new URLSearchParams(parsed.search),
      params,
      headers: { ...headers },
      body,
      bodyText,
      upgrade,
      at: new Date(),
    };
    requests.push(r);
    return r;
  };

  const receiving = new ReceivingCount();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    receiving.track(req);
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const rec = record(req.method ?? 'GET', req.url ?? '/', req.headers, body, false);
      const headers = forwardHeaders(req.headers, upstream.host);
      if (body.length > 0 || req.headers['content-length'] !== undefined) headers['content-length'] = String(body.length);
      const up = httpRequest(
        {
          host: upstream.hostname,
          port: upstreamPort,
          method: req.method,
          path: `${basePath}${req.url ?? '/'}`,
          headers,
        },
        (upRes) => {
          rec.status = upRes.statusCode ?? 502;
          const resHeaders: OutgoingHttpHeaders = {};
          for (const [k, v] of Object.entries(upRes.headers)) {
            if (v !== undefined && !HOP_BY_HOP.has(k)) resHeaders[k] = v;
          }
          res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, resHeaders);
          upRes.pipe(res);
        },
      );
      up.on('error', (err) => {
        rec.status = 502;
        if (!res.headersSent) {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`counting proxy: upstream error: ${err.message}`);
        } else {
          res.destroy(err);
        }
      });
      up.end(body);
    });
  });

  server.on('upgrade', (req, client: Socket, head: Buffer) => {
    const rec = record(req.method ?? 'GET', req.url ?? '/', req.headers, Buffer.alloc(0), true);
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const target = connect(upstreamPort, upstream.hostname, () => {
      const lines = [`${req.method ?? 'GET'} ${basePath}${req.url ?? '/'} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i] as string;
        const value = req.rawHeaders[i + 1] as string;
        lines.push(`${name}: ${name.toLowerCase() === 'host' ? upstream.host : value}`);
      }
      target.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) target.write(head);
      target.pipe(client);
      client.pipe(target);
    });
    target.once('data', (d: Buffer) => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(d.subarray(0, 32).toString('latin1'));
      if (m !== null) rec.status = Number(m[1]);
    });
    sockets.add(target);
    target.on('close', () => sockets.delete(target));
    target.on('error', () => client.destroy());
    client.on('error', () => target.destroy());
  });

  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolveListen());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('counting proxy: no address');

  const count = (pred?: (r: RecordedRequest) => boolean): number =>
    pred === undefined ? requests.length : requests.filter(pred).length;

  return {
    url: `http://127.0.0.1:${addr.port}`,
    upstream: opts.upstream,
    requests,
    count,
    clear: () => {
      requests.length = 0;
    },
    receiving: () => receiving.value,
    waitFor: async (n, pred, timeoutMs = 5_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const matching = pred === undefined ? [...requests] : requests.filter(pred);
        if (matching.length >= n) return matching;
        if (Date.now() > deadline) {
          throw new Error(`counting proxy: ${matching.length} of ${n} expected requests after ${timeoutMs} ms`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    stop: () =>
      new Promise<void>((resolveStop) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolveStop());
        server.closeAllConnections();
      }),
  };
}
