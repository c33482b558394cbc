// `serve` that cannot start exits non-zero, with one process or several workers: a
// supervisor must see the failure (CrashLoopBackOff), not a primary waiting forever.
import { fork, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';

const bin = new URL('../../bin/lbac-gateway.js', import.meta.url).pathname;

async function busyPort(): Promise<{ port: number; close: () => void }> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const a = s.address();
  return { port: typeof a === 'object' && a !== null ? a.port : 0, close: () => s.close() };
}

function serve(config: string, timeoutMs = 20_000): Promise<{ code: number | null; output: string }> {
  const dir = tempDir('lbac-serve-');
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, config);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not exit within ${timeoutMs} ms:\n${output.slice(-2000)}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

const config = (listen: string, workers: number) => `
server: { listen: "${listen}", workers: ${workers}, logLevel: info }
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
    - { type: jwt, jwksUrl: "http://127.0.0.1:9/jwks", issuer: i, audience: a }
`;

describe('serve that cannot start', () => {
  for (const workers of [1, 2]) {
    it(`exits non-zero when the port is taken (workers: ${workers})`, async () => {
      const busy = await busyPort();
      try {
        const r = await serve(config(`127.0.0.1:${busy.port}`, workers));
        expect(r.code, r.output.slice(-2000)).not.toBe(0);
        expect(r.code).not.toBeNull();
        expect(r.output).toMatch(/EADDRINUSE/);
        if (workers > 1) expect(r.output).toMatch(/a worker failed to start; stopping/);
      } finally {
        busy.close();
      }
    }, 30_000);
  }
});

describe('serve whose admin listener cannot start', () => {
  it('exits non-zero instead of serving without it', async () => {
    const busy = await busyPort();
    try {
      const r = await serve(`${config('127.0.0.1:0', 1)}`.replace('logLevel: info }', `logLevel: info, adminListen: "127.0.0.1:${busy.port}" }`));
      expect(r.code, r.output.slice(-2000)).not.toBe(0);
      expect(r.output).toMatch(/EADDRINUSE/);
    } finally {
      busy.close();
    }
  }, 30_000);
});

/**
 * Waits until process `pid` has a handler for `signal` (Linux: its bit in /proc/PID/status
 * SigCgt); elsewhere, 500 ms.
 */
async function untilCatching(pid: number, signal: 'SIGHUP'): Promise<void> {
  const bit = 1n << BigInt(osConstants.signals[signal] - 1);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      await new Promise((r) => setTimeout(r, 500));
      return;
    }
    const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    if (caught !== undefined && (BigInt(`0x${caught}`) & bit) !== 0n) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`process ${pid} installed no ${signal} handler within 10 s`);
}

describe('an early SIGHUP', () => {
  it('does not kill a gateway that is still starting', async () => {
    const dir = tempDir('lbac-serve-');
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, config('127.0.0.1:0', 1));
    const child = spawn(process.execPath, [bin, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
    // As soon as the process handles SIGHUP (the entry file's first statement; before that Node
    // itself is starting, and no program can catch a signal), long before it has read its
    // config; then again while it starts. A fixed delay instead was too short on a loaded machine.
    await untilCatching(child.pid!, 'SIGHUP');
    expect(output).not.toContain('lbac-gateway listening');
    for (let i = 0; i < 5; i++) {
      child.kill('SIGHUP');
      await new Promise((r) => setTimeout(r, 50));
    }
    const deadline = Date.now() + 15_000;
    while (!output.includes('lbac-gateway listening') && child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(output, `${JSON.stringify({ exitCode: child.exitCode, signal: child.signalCode })}\n${output.slice(-2000)}`).toContain('lbac-gateway listening');
    child.kill('SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
  }, 30_000);
});

describe('serve started with an IPC channel (child_process.fork: pm2 fork mode, nodemon)', () => {
  // Only a cluster worker listens for the primary's messages: a 'message' listener would keep the
  // channel, and so the process, alive after serve returns.
  const run = (args: string[], stopWhenListening: boolean): Promise<number | null> =>
    new Promise((resolve, reject) => {
      const child = fork(bin, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
      let output = '';
      let stopped = false;
      const onData = (d: Buffer): void => {
        output += d.toString();
        // One SIGTERM, as a supervisor sends: one per later chunk of output would be a second signal
        // (exit 1 without waiting) or arrive as the process exits (killed by it, exit code null).
        if (stopWhenListening && !stopped && output.includes('lbac-gateway listening')) {
          stopped = true;
          child.kill('SIGTERM');
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`still running after 15 s:\n${output.slice(-2000)}`));
      }, 15_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });

  it('exits when it cannot start, and after a graceful stop', async () => {
    const dir = tempDir('lbac-serve-');
    expect(await run(['serve', '--config', join(dir, 'missing.yaml')], false)).toBe(1);
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, config('127.0.0.1:0', 1));
    expect(await run(['serve', '--config', file], true)).toBe(0);
  }, 40_000);
});
