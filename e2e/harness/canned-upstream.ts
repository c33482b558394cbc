// A stand-in backend for route-table tests of kinds whose real binaries cannot
// run on these machines (Loki and Tempo are AGPL; see docs/operations.md). It
// answers each path with a fixed body and records what it received, so tests
// assert exactly what the gateway forwarded. Never used where a real backend exists.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { goMediaType } from './counting-proxy.ts';
import { ReceivingCount } from './receiving.ts';

export interface CannedRequest {
  method: string;
  path: string;
  params: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** True for a WebSocket upgrade request. */
  upgrade?: boolean;
}

export interface CannedOptions {
  /**
   * Accept WebSocket upgrades (recorded in `requests` like any request) and hand
   * each socket to this function. Without it an upgrade request is answered by
   * `answer` as plain HTTP (so the client's upgrade fails), and still recorded.
   */
  websocket?: (socket: WebSocket, request: CannedRequest) => void;
  /** With `websocket`: an upgrade this returns an answer for is refused with it (plain HTTP) instead. */
  refuseUpgrade?: (request: CannedRequest) => [number, string, string] | undefined;
  /**
   * Loki's `/loki/api/v1/status/buildinfo` answer, `{"version": …}` (the gateway asks it for
   * routes older releases answer for the whole tenant). Default "3.6.0"; null: left to `answer`.
   * These requests go to `buildinfoRequests`, not `requests`.
   */
  lokiVersion?: string | null;
}

export interface CannedUpstream {
  url: string;
  requests: CannedRequest[];
  clear(): void;
  /** Requests whose head arrived but whose body has not yet (recorded once it has). */
  receiving(): number;
  stop(): Promise<void>;
  /** Open WebSocket connections (with `websocket`). */
  sockets: Set<WebSocket>;
  /** Loki buildinfo requests answered with `lokiVersion`. */
  buildinfoRequests: CannedRequest[];
}

/** `answer(path, request)` returns [status, contentType, body]; the request lets an answer depend on e.g. Accept. */
export async function startCannedUpstream(answer: (path: string, request: CannedRequest) => [number, string, string | Uint8Array], opts: CannedOptions = {}): Promise<CannedUpstream> {
  const requests: CannedRequest[] = [];
  const buildinfoRequests: CannedRequest[] = [];
  const receiving = new ReceivingCount();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    receiving.track(req);
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const params = new URLSearchParams(url.search);
      // A body only where Go's ParseForm reads one (Loki and Tempo are Go servers).
      if (req.method !== 'GET' && goMediaType(req.headers['content-type'] ?? '') === 'application/x-www-form-urlencoded') {
        for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) params.append(k, v);
      }
      const recorded: CannedRequest = { method: req.method ?? '', path: url.pathname, params, headers: req.headers };
      const lokiVersion = opts.lokiVersion === undefined ? '3.6.0' : opts.lokiVersion;
      if (lokiVersion !== null && url.pathname === '/loki/api/v1/status/buildinfo') {
        buildinfoRequests.push(recorded);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ version: lokiVersion, revision: 'canned', branch: 'HEAD', buildUser: '', buildDate: '', goVersion: 'go1.24' }));
        return;
      }
      requests.push(recorded);
      const [status, type, body] = answer(url.pathname, recorded);
      res.writeHead(status, { 'content-type': type }).end(body);
    });
  });
  const sockets = new Set<WebSocket>();
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const recorded: CannedRequest = { method: req.method ?? '', path: url.pathname, params: new URLSearchParams(url.search), headers: req.headers, upgrade: true };
    requests.push(recorded);
    const handler = opts.websocket;
    const refusal = handler === undefined ? undefined : opts.refuseUpgrade?.(recorded);
    if (handler === undefined || refusal !== undefined) {
      const [status, type, body] = refusal ?? answer(url.pathname, recorded);
      const bytes = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body);
      socket.end(`HTTP/1.1 ${status} X\r\ncontent-type: ${type}\r\ncontent-length: ${bytes.length}\r\nconnection: close\r\n\r\n${bytes.toString('latin1')}`, 'latin1');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      handler(ws, recorded);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    buildinfoRequests,
    clear: () => void requests.splice(0),
    receiving: () => receiving.value,
    sockets,
    stop: () => {
      for (const ws of sockets) ws.terminate();
      wss.close();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
