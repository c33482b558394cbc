// Raw HTTP requests for tests that must send a path exactly as written.
// fetch() (WHATWG URL) normalises paths before sending: "/api/v1/../v1/query"
// goes out as "/api/v1/query", "%2e%2e" segments are resolved, and so on, so
// path-traversal tests built on fetch test nothing. node:http sends the
// request-target byte for byte.
import { request } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * Sends `method rawPath HTTP/1.1` to the host:port of `baseUrl` (its path is
 * ignored: put everything in rawPath, e.g. "/prometheus/api/v1/../v1/query?query=up").
 */
export function rawRequest(
  baseUrl: string,
  rawPath: string,
  opts: { method?: string; headers?: Readonly<Record<string, string>>; body?: string | Buffer; timeoutMs?: number } = {},
): Promise<RawResponse> {
  const u = new URL(baseUrl);
  return new Promise((resolveRes, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: Number(u.port === '' ? 80 : u.port),
        method: opts.method ?? 'GET',
        path: rawPath,
        headers: { ...opts.headers },
        timeout: opts.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolveRes({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`raw request to ${rawPath} timed out`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}
