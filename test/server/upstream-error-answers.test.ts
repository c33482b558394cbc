// An upstream's error answer on a route whose answer is filtered: a restricted subject gets the
// backend's error message (Prometheus' error envelope rebuilt from its fields, a text line), never
// a body the filter has not seen, such as what a cache or proxy in front of the backend stored
// under an error status. The gateway's own errors carry none of the upstream's headers, and a
// filtered answer none of the validators of the unfiltered bytes.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relayableError } from '../../src/backends/error-answers.ts';
import { testApp, upstreamsConfig, type TestApp } from './helpers.ts';

/** The upstream's next answer. */
let next: { status: number; headers: Record<string, string>; body: string | Buffer } = { status: 200, headers: {}, body: '' };
let up: Server;
let gw: TestApp;

const ALERTS = JSON.stringify({
  status: 'success',
  data: {
    alerts: [
      { labels: { alertname: 'A', namespace: 'team-a-x' }, state: 'firing' },
      { labels: { alertname: 'B', namespace: 'team-b-secret' }, state: 'firing' },
    ],
  },
});
const TRACE = JSON.stringify({ batches: [{ resource: { attributes: [{ key: 'k8s.namespace.name', value: { stringValue: 'team-b-secret' } }] }, scopeSpans: [] }] });

beforeAll(async () => {
  up = createServer((_req, res) => {
    res.writeHead(next.status, next.headers).end(next.body);
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(up.address() as AddressInfo).port}`;
  gw = await testApp(upstreamsConfig(`{ name: metrics, kind: prometheus, url: "${url}", mount: /prometheus }`, `{ name: traces, kind: tempo, url: "${url}", mount: /tempo }`));
});
afterAll(async () => {
  await gw?.app.close();
  await new Promise<void>((r) => (up === undefined ? r() : up.close(() => r())));
});

const get = (who: string, url: string) => gw.app.inject({ url, headers: { authorization: `Bearer ${who}` } });
const JSON_HEADERS = { 'content-type': 'application/json' };

describe('a filtered route, an upstream error answer with data in it', () => {
  for (const status of [400, 404, 422, 500, 503]) {
    it(`Prometheus alerts answered ${status} with both teams' alerts: withheld from a restricted subject, the status kept`, async () => {
      next = { status, headers: { ...JSON_HEADERS, 'x-upstream-note': 'team-b-secret', 'retry-after': '3' }, body: ALERTS };
      const r = await get('alice', '/prometheus/api/v1/alerts');
      expect(r.statusCode).toBe(status);
      expect(r.body).not.toContain('team-b-secret');
      expect(r.json()).toMatchObject({ status: 'error', errorType: expect.any(String), error: `upstream answered ${status}; its answer is not an error message and is withheld` });
      // The gateway's own answer: none of the upstream's headers but Retry-After.
      expect(r.headers['x-upstream-note']).toBeUndefined();
      expect(r.headers['retry-after']).toBe('3');
    });
  }

  it('an unrestricted subject still gets the upstream\'s error answer as it wrote it (nothing is filtered for it)', async () => {
    next = { status: 500, headers: JSON_HEADERS, body: ALERTS };
    const r = await get('carol', '/prometheus/api/v1/alerts');
    expect([r.statusCode, r.body]).toEqual([500, ALERTS]);
  });

  it('label values answered 404 with another team\'s values: withheld', async () => {
    next = { status: 404, headers: JSON_HEADERS, body: JSON.stringify({ status: 'success', data: ['team-a-x', 'team-b-secret'] }) };
    const r = await get('alice', '/prometheus/api/v1/label/namespace/values');
    expect(r.statusCode).toBe(404);
    expect(r.body).not.toContain('team-b-secret');
  });

  it('Tempo search answered 500 with another team\'s trace: withheld', async () => {
    next = { status: 500, headers: JSON_HEADERS, body: JSON.stringify({ traces: [{ traceID: '1', rootServiceName: 'team-b-secret' }] }) };
    const r = await get('alice', '/tempo/api/search?q=%7B%7D');
    expect(r.statusCode).toBe(500);
    expect(r.body).not.toContain('team-b-secret');
  });

  it('Tempo trace by id answered 400 with a whole trace (JSON, or protobuf): withheld; Tempo\'s own 400 message passes', async () => {
    const url = '/tempo/api/traces/abcdef00000000000000000000000001';
    next = { status: 400, headers: JSON_HEADERS, body: TRACE };
    let r = await get('alice', url);
    expect(r.statusCode).toBe(400);
    expect(r.body).not.toContain('team-b-secret');
    // Protobuf: length-delimited fields, binary tags.
    next = { status: 400, headers: { 'content-type': 'application/protobuf' }, body: Buffer.concat([Buffer.from([0x0a, 0x20, 0x12, 0x0e]), Buffer.from('team-b-secret')]) };
    r = await get('alice', url);
    expect(r.statusCode).toBe(400);
    expect(r.body).not.toContain('team-b-secret');
    next = { status: 400, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'invalid start/end: start must be before end\n' };
    r = await get('alice', url);
    expect([r.statusCode, r.body, r.headers['content-type']]).toEqual([400, 'invalid start/end: start must be before end\n', 'text/plain; charset=utf-8']);
  });
});

describe('a filtered route, the backend\'s own error answer', () => {
  it('Prometheus\' error envelope passes, rebuilt from status, errorType and error (an extra data field is not copied)', async () => {
    next = { status: 422, headers: JSON_HEADERS, body: JSON.stringify({ status: 'error', errorType: 'execution', error: 'query timed out', data: { alerts: [{ labels: { namespace: 'team-b-secret' } }] } }) };
    const r = await get('alice', '/prometheus/api/v1/alerts');
    expect([r.statusCode, r.json()]).toEqual([422, { status: 'error', errorType: 'execution', error: 'query timed out' }]);
  });

  it('a text message (Loki, Tempo, a proxy\'s 502 page) passes with its status', async () => {
    next = { status: 502, headers: { 'content-type': 'text/html' }, body: '<html><body>502 Bad Gateway</body></html>' };
    const r = await get('alice', '/tempo/api/search?q=%7B%7D');
    expect([r.statusCode, r.body, r.headers['content-type']]).toEqual([502, '<html><body>502 Bad Gateway</body></html>', 'text/html']);
  });
});

describe('headers of answers the gateway filters', () => {
  it('a filtered 200 carries no validator of the unfiltered bytes (ETag, Last-Modified, digests); other headers pass', async () => {
    next = { status: 200, headers: { ...JSON_HEADERS, etag: '"abc"', 'last-modified': 'Wed, 21 Oct 2015 07:28:00 GMT', digest: 'sha-256=x', 'x-kept': 'v' }, body: ALERTS };
    const r = await get('alice', '/prometheus/api/v1/alerts');
    expect(r.statusCode).toBe(200);
    expect(r.body).not.toContain('team-b-secret');
    expect(r.headers['etag']).toBeUndefined();
    expect(r.headers['last-modified']).toBeUndefined();
    expect(r.headers['digest']).toBeUndefined();
    expect(r.headers['x-kept']).toBe('v');
  });

  it('a redirect: the gateway\'s 502 without the upstream\'s headers (its Location, its cookies)', async () => {
    next = { status: 302, headers: { ...JSON_HEADERS, location: 'http://prometheus.internal/x', 'set-cookie': 'sid=upstream', 'www-authenticate': 'Basic realm="internal"' }, body: ALERTS };
    const r = await get('alice', '/prometheus/api/v1/alerts');
    expect(r.statusCode).toBe(502);
    expect(r.body).not.toContain('team-b-secret');
    for (const h of ['location', 'set-cookie', 'www-authenticate']) expect(r.headers[h], h).toBeUndefined();
  });

  it('an answer the filter cannot read: the gateway\'s 502 without the upstream\'s headers', async () => {
    next = { status: 200, headers: { ...JSON_HEADERS, 'set-cookie': 'sid=upstream', 'x-upstream-note': 'namespace=team-b-secret' }, body: 'not json' };
    const r = await get('alice', '/prometheus/api/v1/alerts');
    expect(r.statusCode).toBe(502);
    expect(r.headers['set-cookie']).toBeUndefined();
    expect(r.headers['x-upstream-note']).toBeUndefined();
  });
});

describe('relayableError', () => {
  const bytes = (s: string | number[]) => (typeof s === 'string' ? new TextEncoder().encode(s) : new Uint8Array(s));
  it('Prometheus\' envelope, rebuilt; errorType only when a string', () => {
    expect(relayableError(bytes('{"status":"error","errorType":"bad_data","error":"parse error","data":{"x":1},"warnings":["w"]}'), 'application/json')).toEqual({
      contentType: 'application/json',
      body: '{"status":"error","errorType":"bad_data","error":"parse error"}',
    });
    expect(relayableError(bytes(' {"status":"error","errorType":5,"error":"e"}'), '')?.body).toBe('{"status":"error","error":"e"}');
  });
  it('other JSON errors keep only their message fields: {code, message} (gRPC gateways), {error}, {message}', () => {
    const rebuilt = (body: unknown) => relayableError(bytes(JSON.stringify(body)), 'application/json')?.body;
    expect(rebuilt({ code: 3, message: 'invalid query', details: [{ namespace: 'team-b' }] })).toBe('{"code":3,"message":"invalid query"}');
    expect(rebuilt({ error: 'too many requests', data: ['team-b'] })).toBe('{"error":"too many requests"}');
    expect(rebuilt({ message: 'bad', code: '3' })).toBe('{"message":"bad"}');
    // Loki's JSON error (and the gateway's own for Loki).
    expect(rebuilt({ code: 400, status: 'error', message: 'parse error at line 1', streams: [{ namespace: 'team-b' }] })).toBe('{"code":400,"status":"error","message":"parse error at line 1"}');
    expect(rebuilt({ status: 'success', error: 'x', data: ['team-b'] })).toBeUndefined();
  });
  it('JSON that is not the envelope, malformed JSON, binary and invalid UTF-8 are not relayable', () => {
    for (const body of ['{"status":"success","data":[]}', '{"status":"error","error":{"msg":"x"}}', '[{"status":"error","error":"e"}]', '{"status":"error","error":"e"', '\n[1,2']) {
      expect(relayableError(bytes(body), 'application/json'), body).toBeUndefined();
    }
    expect(relayableError(bytes([0x0a, 0x02, 0x68, 0x69]), 'application/protobuf')).toBeUndefined();
    expect(relayableError(bytes([0x74, 0xff, 0x74]), 'text/plain')).toBeUndefined();
  });
  it('text passes, with its text content type, else as text/plain', () => {
    expect(relayableError(bytes('too many outstanding requests\n'), 'text/plain; charset=utf-8')).toEqual({ contentType: 'text/plain; charset=utf-8', body: 'too many outstanding requests\n' });
    expect(relayableError(bytes('rpc error: code = ResourceExhausted'), 'application/json')).toEqual({ contentType: 'text/plain; charset=utf-8', body: 'rpc error: code = ResourceExhausted' });
    expect(relayableError(bytes(''), '')).toEqual({ contentType: 'text/plain; charset=utf-8', body: '' });
  });
});
