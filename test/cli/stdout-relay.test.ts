// Workers' stdout relayed by the primary whole lines at a time: on a pipe (a
// container runtime's log FIFO) two workers' audit batches over 4 KiB would
// otherwise interleave mid-line, and log collectors drop the torn records.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, openSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { Socket, type AddressInfo } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { LineJoiner, StdoutRelay } from '../../src/cli/stdout-relay.ts';
import { apiKeyDigest } from '../../src/identity/secrets.ts';

describe('LineJoiner', () => {
  it('writes only whole lines, all of them, in order, however the output is cut', () => {
    const line = fc.string({ unit: fc.constantFrom('a', 'é', '{', '"', ' '), maxLength: 40 });
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 10 }), (lines, cuts) => {
        const text = Buffer.from(lines.map((l) => l + '\n').join(''));
        const writes: Buffer[] = [];
        const joiner = new LineJoiner((b) => writes.push(b));
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        let at = 0;
        for (const p of [...points, text.length]) {
          joiner.push(text.subarray(at, p));
          at = p;
        }
        joiner.end();
        for (const w of writes) expect(w.at(-1)).toBe(0x0a);
        expect(Buffer.concat(writes).equals(text)).toBe(true);
      }),
    );
  });

  it('ends a last unterminated line, so the next output starts a line of its own', () => {
    const writes: string[] = [];
    const joiner = new LineJoiner((b) => writes.push(b.toString()));
    joiner.push(Buffer.from('{"a":1}\n{"b":'));
    joiner.end();
    expect(writes).toEqual(['{"a":1}\n', '{"b":\n']);
  });

  it('writes a line longer than the bound in parts instead of holding it without limit', () => {
    const writes: string[] = [];
    const joiner = new LineJoiner((b) => writes.push(b.toString()), 8);
    joiner.push(Buffer.from('0123'));
    joiner.push(Buffer.from('45678'));
    expect(writes).toEqual(['012345678']);
    joiner.push(Buffer.from('9\n'));
    expect(writes).toEqual(['012345678', '9\n']);
  });
});

describe('StdoutRelay', () => {
  /** A stdout whose writes complete only when `release` is called: a full pipe. */
  function slowStdout(highWaterMark = 16): { out: Writable; written: string[]; release: () => void } {
    const written: string[] = [];
    const pending: (() => void)[] = [];
    const out = new Writable({
      highWaterMark,
      write: (chunk: Buffer, _enc, done) => {
        written.push(chunk.toString());
        pending.push(done);
      },
    });
    return { out, written, release: () => pending.splice(0).forEach((done) => done()) };
  }

  it('pauses every worker while stdout does not keep up, and resumes them when it drains', async () => {
    const { out, written, release } = slowStdout();
    const relay = new StdoutRelay(out);
    const a = new PassThrough();
    const b = new PassThrough();
    const done = Promise.all([relay.relay(a), relay.relay(b)]);
    a.write('x'.repeat(40) + '\n');
    await new Promise((r) => setImmediate(r));
    expect(a.isPaused() && b.isPaused()).toBe(true);
    release();
    await new Promise((r) => setImmediate(r));
    expect(a.isPaused() || b.isPaused()).toBe(false);
    b.end('{"b":1}\n');
    a.end();
    for (let i = 0; i < 5; i++) {
      release();
      await new Promise((r) => setImmediate(r));
    }
    await done;
    const flushed = relay.flushed();
    release();
    await flushed;
    expect(written.join('')).toBe('x'.repeat(40) + '\n{"b":1}\n');
  });

  it('is flushed once a queue shorter than the high-water mark is written (no drain comes for it)', async () => {
    const { out, written, release } = slowStdout(64 * 1024);
    const relay = new StdoutRelay(out);
    const a = new PassThrough();
    const done = relay.relay(a);
    a.end('{"a":1}\n{"a":2}\n');
    await done;
    let flushed = false;
    const settled = relay.flushed().then(() => (flushed = true));
    await new Promise((r) => setImmediate(r));
    expect(flushed).toBe(false);
    for (let i = 0; i < 3 && !flushed; i++) {
      release();
      await new Promise((r) => setImmediate(r));
    }
    await settled;
    expect(written.join('')).toBe('{"a":1}\n{"a":2}\n');
  });

  it('drops output once stdout is gone (EPIPE), reading on so workers never block', async () => {
    const out = new Writable({ write: (_c, _e, done) => done(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })) });
    const relay = new StdoutRelay(out);
    const a = new PassThrough();
    const done = relay.relay(a);
    a.write('{"a":1}\n');
    await new Promise((r) => setImmediate(r));
    a.end('{"a":2}\n');
    await done;
    await relay.flushed();
    expect(a.isPaused()).toBe(false);
  });
});

const bin = new URL('../../bin/lbac-gateway.js', import.meta.url).pathname;

function post(port: number, path: string, body: string, key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    // A new connection each time, so the cluster spreads the requests over both workers.
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

interface Cluster {
  readonly port: number;
  readonly key: string;
  readonly child: ChildProcess;
  readonly reader: Socket;
  /** What the gateway wrote to stdout so far. */
  output(): string;
  readonly exited: Promise<void>;
  readonly drained: Promise<void>;
  close(): void;
}

/**
 * `serve` with two workers whose stdout is a named pipe (as a container
 * runtime's log FIFO), read slowly as a busy log shipper does: a full pipe is
 * where the kernel splits a write over 4 KiB and lets another writer's in.
 */
async function startCluster(): Promise<Cluster> {
  const upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"success","data":{"resultType":"vector","result":[]}}'));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  const key = `lbac_${'k'.repeat(43)}`;
  const dir = tempDir('lbac-relay-');
  const file = join(dir, 'gateway.yaml');
  writeFileSync(
    file,
    `server: { listen: "127.0.0.1:${port}", workers: 2, logLevel: info, accessLog: true, watchConfig: false, loadShedding: { enabled: false } }
upstreams:
  - { name: metrics, kind: prometheus, url: "http://127.0.0.1:${(upstream.address() as AddressInfo).port}", mount: /prometheus }
identity:
  providers:
    - type: apikey
      keys: [{ name: k, hash: "${apiKeyDigest(key)}", subject: { groups: [team-a] } }]
teams:
  team-a: { groups: [team-a], selectors: [{ namespace: "a" }] }
`,
  );
  const fifo = join(dir, 'stdout');
  execFileSync('mkfifo', [fifo]);
  const reader = new Socket({ fd: openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
  const writeEnd = openSync(fifo, 'w');
  const child = spawn(process.execPath, [bin, 'serve', '--config', file], { stdio: ['ignore', writeEnd, 'pipe'] });
  closeSync(writeEnd);
  const out: Buffer[] = [];
  reader.on('data', (d: Buffer) => {
    out.push(d);
    reader.pause();
    setTimeout(() => reader.resume(), 2);
  });
  const drained = new Promise<void>((r) => reader.once('close', () => r()));
  child.stderr?.resume();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const output = (): string => Buffer.concat(out).toString();
  // Until both workers listen.
  const deadline = Date.now() + 30_000;
  while ((output().match(/lbac-gateway listening/g) ?? []).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return {
    port,
    key,
    child,
    reader,
    output,
    exited,
    drained,
    close: () => {
      child.kill('SIGKILL');
      reader.destroy();
      upstream.close();
    },
  };
}

const isExited = (c: Cluster): boolean => c.child.exitCode !== null || c.child.signalCode !== null;

describe('serve with two workers on a pipe', () => {
  it('every line of stdout stays whole: audit lines over 4 KiB from both workers, each a JSON object', async () => {
    const c = await startCluster();
    try {
      // Queries of ~6 KiB: each audit line holds the query sent and rewritten (~12 KiB), well over PIPE_BUF.
      const query = `sum(rate(http_requests_total{handler=~"${Array.from({ length: 600 }, (_, i) => `h${i}`).join('|')}"}[5m]))`;
      const rounds = 4;
      const perRound = 24;
      for (let r = 0; r < rounds; r++) {
        const codes = await Promise.all(Array.from({ length: perRound }, () => post(c.port, '/prometheus/api/v1/query', `query=${encodeURIComponent(query)}`, c.key)));
        expect(codes.every((code) => code === 200)).toBe(true);
      }
      c.child.kill('SIGTERM');
      await c.exited;
      await c.drained;
      const lines = c.output().split('\n').filter((l) => l !== '');
      const torn = lines.filter((l) => {
        try {
          return typeof JSON.parse(l) !== 'object';
        } catch {
          return true;
        }
      });
      expect(torn.map((l) => l.slice(0, 80))).toEqual([]);
      const audited = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['decision_id'] !== undefined);
      expect(audited).toHaveLength(rounds * perRound);
      // Both workers wrote (the process log's access lines carry the pid).
      const servedBy = new Set(lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['msg'] === 'request completed').map((l) => l['pid']));
      expect(servedBy.size).toBe(2);
    } finally {
      c.close();
    }
  }, 90_000);

  it('keeps serving when the stdout reader goes away (EPIPE), and still stops on SIGTERM', async () => {
    const c = await startCluster();
    try {
      c.reader.destroy();
      await new Promise((r) => setTimeout(r, 200));
      for (let i = 0; i < 6; i++) expect(await post(c.port, '/prometheus/api/v1/query', 'query=up', c.key)).toBe(200);
      expect(isExited(c)).toBe(false);
      c.child.kill('SIGTERM');
      await c.exited;
      expect(c.child.exitCode).toBe(0);
    } finally {
      c.close();
    }
  }, 90_000);

  it('a stop while a crashed worker waits to be replaced stops the group: no replacement serves on', async () => {
    const c = await startCluster();
    try {
      const pids = [...new Set([...c.output().matchAll(/"pid":(\d+)[^\n]*"msg":"lbac-gateway listening"/g)].map((m) => Number(m[1])))];
      expect(pids).toHaveLength(2);
      process.kill(pids[0]!, 'SIGKILL');
      // Inside the replacement's delay (at least 500 ms).
      await new Promise((r) => setTimeout(r, 150));
      c.child.kill('SIGTERM');
      const stopped = await Promise.race([c.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
      expect(stopped).toBe(true);
    } finally {
      c.close();
    }
  }, 90_000);
});
