// A key-set endpoint on loopback for identity tests: serves what `keySet` returns (undefined → 503,
// the provider is down) after `delayMs()` (a slow provider), and counts the fetches.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface JwksServer {
  readonly url: string;
  /** Requests answered so far (including 503s). */
  fetches(): number;
  close(): Promise<void>;
}

export async function startJwksServer(keySet: () => Buffer | string | undefined, opts: { delayMs?: () => number } = {}): Promise<JwksServer> {
  let fetches = 0;
  const server = createServer((_req, res) => {
    fetches++;
    const answer = (): void => {
      const body = keySet();
      if (body === undefined) return void res.writeHead(503).end();
      res.setHeader('content-type', 'application/json').end(body);
    };
    const delay = opts.delayMs?.() ?? 0;
    if (delay > 0) setTimeout(answer, delay);
    else answer();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`,
    fetches: () => fetches,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
