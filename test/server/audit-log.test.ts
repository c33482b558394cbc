import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { auditLine } from '../../src/server/audit.ts';
import { AuditLog } from '../../src/server/plugins/audit.ts';
import { auditSchema } from '../../src/config/schema.ts';

const fileConfig = (extra: Record<string, unknown> = {}) => {
  const dir = tempDir('lbac-audit-');
  const file = join(dir, 'sub', 'audit.log');
  return { file, cfg: auditSchema.parse({ destination: 'file', file, ...extra }) };
};
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
const nextTurn = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('auditLine', () => {
  it('keeps the pino line shape: level and time first, the record, msg last', () => {
    const line = auditLine({ type: 't', input: { a: [1, 'x"y'] } }, new Date('2025-01-01T12:00:00.000Z'));
    expect(line).toBe('{"level":30,"time":"2025-01-01T12:00:00.000Z","type":"t","input":{"a":[1,"x\\"y"]},"msg":"Decision Log"}');
    expect(Object.keys(JSON.parse(line) as object)).toEqual(['level', 'time', 'type', 'input', 'msg']);
    expect(JSON.parse(auditLine({}, new Date(0)))).toEqual({ level: 30, time: '1970-01-01T00:00:00.000Z', msg: 'Decision Log' });
  });
});

describe('AuditLog to a file', () => {
  it('gathers lines for flushIntervalMs and writes them together, each a whole JSON line', async () => {
    // 500 ms, not less: the empty check below must run before the timer even when CI's busy
    // cores stall this process for a while.
    const { file, cfg } = fileConfig({ flushIntervalMs: 500 });
    const log = new AuditLog();
    log.configure(cfg);
    for (let i = 0; i < 3; i++) log.write({ type: 'lbac-gateway/decision_logs', req_id: `r${i}` });
    await nextTurn();
    expect(lines(file)).toEqual([]);
    await expect.poll(() => lines(file).length).toBe(3);
    expect(lines(file).map((l) => (JSON.parse(l) as { req_id: string }).req_id)).toEqual(['r0', 'r1', 'r2']);
    log.write({ req_id: 'r3', query: 'up{ns="ü€𝄞"}' });
    expect(lines(file)).toHaveLength(3);
    await expect.poll(() => lines(file).length).toBe(4);
    expect((JSON.parse(lines(file)[3]!) as { query: string }).query).toBe('up{ns="ü€𝄞"}');
    log.close();
  });

  it('writes at once when 64 KiB are pending, and with flushIntervalMs 0 every line at once', () => {
    const { file, cfg } = fileConfig({ flushIntervalMs: 10_000 });
    const log = new AuditLog();
    log.configure(cfg);
    const big = 'x'.repeat(1000);
    let n = 0;
    while (lines(file).length === 0 && n < 100) log.write({ req_id: `r${n++}`, pad: big });
    expect(n).toBeGreaterThan(60);
    expect(n).toBeLessThan(70);
    expect(lines(file)).toHaveLength(n);
    log.close();
    const immediate = fileConfig({ flushIntervalMs: 0 });
    const log0 = new AuditLog();
    log0.configure(immediate.cfg);
    log0.write({ req_id: 'now' });
    expect(lines(immediate.file)).toHaveLength(1);
    log0.close();
  });

  it('a reload after log rotation (the file renamed) writes to a new file at the path; the file is not world-readable', () => {
    const { file, cfg } = fileConfig();
    const log = new AuditLog();
    log.configure(cfg);
    log.write({ req_id: 'before' });
    expect(statSync(file).mode & 0o777).toBe(0o640);
    renameSync(file, `${file}.1`); // logrotate's default: rename, then signal
    log.write({ req_id: 'between' }); // still the open file: the rotated one
    log.prepare(cfg)(); // the SIGHUP reload, same config
    log.write({ req_id: 'after' });
    log.close();
    expect(lines(`${file}.1`).map((l) => (JSON.parse(l) as { req_id: string }).req_id)).toEqual(['before', 'between']);
    expect(lines(file).map((l) => (JSON.parse(l) as { req_id: string }).req_id)).toEqual(['after']);
  });

  it('close() writes what is pending (shutdown, reload) and nothing is written after it', async () => {
    const { file, cfg } = fileConfig();
    const log = new AuditLog();
    log.configure(cfg);
    log.write({ req_id: 'pending' });
    log.close();
    expect(lines(file).map((l) => (JSON.parse(l) as { req_id: string }).req_id)).toEqual(['pending']);
    log.write({ req_id: 'after-close' });
    await sleep(250);
    expect(lines(file)).toHaveLength(1);
  });

  it('a reload that disables it writes what was pending first, then nothing', async () => {
    const { file, cfg } = fileConfig();
    const log = new AuditLog();
    log.configure(cfg);
    log.write({ req_id: 'before' });
    log.configure(auditSchema.parse({ enabled: false }));
    log.write({ req_id: 'while-off' });
    await sleep(250);
    expect(lines(file).map((l) => (JSON.parse(l) as { req_id: string }).req_id)).toEqual(['before']);
  });

  it('writeLater serialises at flush time, in the order lines were written, and counts toward the 64 KiB', async () => {
    const { file, cfg } = fileConfig({ flushIntervalMs: 30 });
    const log = new AuditLog();
    log.configure(cfg);
    const calls: string[] = [];
    const later = (id: string) => () => {
      calls.push(id);
      return JSON.stringify({ req_id: id });
    };
    log.writeLater(later('a'));
    log.write({ req_id: 'b' });
    log.writeLater(later('c'));
    log.writeLater(() => undefined); // nothing to write: no line, no empty line
    expect(calls).toEqual([]);
    await sleep(60);
    expect(calls).toEqual(['a', 'c']);
    expect(lines(file).map((l) => (JSON.parse(l) as { req_id: string }).req_id)).toEqual(['a', 'b', 'c']);
    log.close();
    // 64 deferred lines reach the bound (each counted as 1 KiB) and are written without waiting.
    const bound = fileConfig({ flushIntervalMs: 10_000 });
    const big = new AuditLog();
    big.configure(bound.cfg);
    for (let i = 0; i < 63; i++) big.writeLater(later(`x${i}`));
    expect(lines(bound.file)).toHaveLength(0);
    big.writeLater(later('x63'));
    expect(lines(bound.file)).toHaveLength(64);
    // close() serialises and writes what is pending.
    big.writeLater(later('last'));
    big.close();
    expect(lines(bound.file).at(-1)).toBe('{"req_id":"last"}');
  });

  it('writeLater counts a line by its query size: one with a 1 MiB query is written at once, not held for the interval', () => {
    const { file, cfg } = fileConfig({ flushIntervalMs: 10_000 });
    const log = new AuditLog();
    log.configure(cfg);
    const query = 'x'.repeat(1024 * 1024);
    log.writeLater(() => JSON.stringify({ req_id: 'small' }));
    expect(lines(file)).toHaveLength(0);
    log.writeLater(() => JSON.stringify({ req_id: 'big', query }), query.length);
    expect(lines(file).map((l) => (JSON.parse(l) as { req_id: string }).req_id)).toEqual(['small', 'big']);
    log.close();
  });

  it('writeLater writes at once with flushIntervalMs 0 and to a sink', () => {
    const immediate = fileConfig({ flushIntervalMs: 0 });
    const log = new AuditLog();
    log.configure(immediate.cfg);
    log.writeLater(() => '{"req_id":"now"}');
    expect(lines(immediate.file)).toEqual(['{"req_id":"now"}']);
    log.close();
    const seen: string[] = [];
    const sinkLog = new AuditLog((l) => seen.push(l));
    sinkLog.configure(auditSchema.parse({}));
    sinkLog.writeLater(() => '{"req_id":"sunk"}');
    expect(seen).toEqual(['{"req_id":"sunk"}']);
  });

  it('pending lines are written when the process exits (process.exit with the interval not over)', () => {
    const { file } = fileConfig();
    const script = [
      `import { AuditLog } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, '../../src/server/plugins/audit.ts')).href)};`,
      `import { auditSchema } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, '../../src/config/schema.ts')).href)};`,
      `const log = new AuditLog();`,
      `log.configure(auditSchema.parse({ destination: 'file', file: ${JSON.stringify(file)}, flushIntervalMs: 10000 }));`,
      `log.write({ req_id: 'last' });`,
      `process.exit(3);`,
    ].join('\n');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(3);
    expect(lines(file).map((l) => (JSON.parse(l) as { req_id: string }).req_id)).toEqual(['last']);
  });
});
