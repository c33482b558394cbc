// A stand-in backend for route-table tests of kinds whose real binaries cannot
// run on these machines (Loki and Tempo are AGPL; see docs/operations.md). It
// answers each path with a fixed body and records what it received, so tests
// assert exactly what the gateway forwarded. Never used where a real backend exists.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CannedRequest {
  method: string;
  path: string;
  params: URLSearchParams;
  headers: IncomingHttpHeaders;
}

export interface CannedUpstream {
  url: string;
  requests: CannedRequest[];
  clear(): void;
  stop(): Promise<void>;
}

/** `answer(path, request)` returns [status, contentType, body]; the request lets an answer depend on e.g. Accept. */
export async function startCannedUpstream(answer: (path: string, request: CannedRequest) => [number, string, string | Uint8Array]): Promise<CannedUpstream> {
  const requests: CannedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const params = new URLSearchParams(url.search);
      if ((req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
        for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) params.append(k, v);
      }
      const recorded: CannedRequest = { method: req.method ?? '', path: url.pathname, params, headers: req.headers };
      requests.push(recorded);
      const [status, type, body] = answer(url.pathname, recorded);
      res.writeHead(status, { 'content-type': type }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    clear: () => void requests.splice(0),
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
