// A canned-response Prometheus stand-in for benchmarks: answers every API path
// instantly with a fixed, realistic body, so the measured cost is the proxy's.
//   node bench/stub-upstream.ts PORT
import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? '0');
const now = 1_700_000_000;
const matrix = JSON.stringify({
  status: 'success',
  data: {
    resultType: 'matrix',
    result: ['team-a-frontend', 'team-a-backend'].map((namespace) => ({
      metric: { namespace },
      values: Array.from({ length: 60 }, (_, i) => [now + i * 15, String(i * 1.5)]),
    })),
  },
});
const vector = JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [{ metric: { namespace: 'team-a-frontend' }, value: [now, '1'] }] } });
const values = JSON.stringify({ status: 'success', data: ['team-a-backend', 'team-a-frontend'] });
const series = JSON.stringify({ status: 'success', data: [{ __name__: 'up', namespace: 'team-a-frontend', job: 'web', instance: 'web-0:8080' }] });
const buildinfo = JSON.stringify({ status: 'success', data: { version: '3.16.0' } });

const server = createServer((req, res) => {
  // Drain any body first so keep-alive connections stay usable.
  req.resume();
  req.on('end', () => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    const body = path.endsWith('/query_range')
      ? matrix
      : path.endsWith('/query')
        ? vector
        : path.endsWith('/values')
          ? values
          : path.endsWith('/series')
            ? series
            : path.endsWith('/buildinfo')
              ? buildinfo
              : undefined;
    if (body === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"status":"error","errorType":"not_found","error":"not found"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`stub listening on ${typeof addr === 'object' && addr ? addr.port : port}\n`);
});
