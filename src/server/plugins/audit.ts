import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AuditConfig } from '../../config/schema.ts';
import { ConfigError } from '../../errors.ts';
import { auditLine, authorizationSchemeOf, buildAuthFailureRecord, buildRefusalRecord, decisionAuditLine, shouldAudit } from '../audit.ts';
import type { GatewayMetrics } from '../metrics.ts';
import { addRecorder } from './hook.ts';
import { fileErrorCode } from '../../util/file-error.ts';

/** Pending audit text that is written at once, whatever the flush interval. */
const MAX_PENDING_CHARS = 64 * 1024;
/** What a line serialised at flush time is counted as against MAX_PENDING_CHARS (a typical decision line). */
const DEFERRED_LINE_CHARS = 1024;

/**
 * Where audit lines go: stdout or an appended file, separate from the process
 * log. Lines are gathered for up to `audit.flushIntervalMs` (or 64 KiB) and
 * written together: one write per line was the largest single per-request cost
 * in the gateway's profile (docs/performance.md). Writes are synchronous, so
 * lines never interleave with the process log on stdout (nor with other
 * workers' lines: on a pipe the primary relays them, ../../cli/stdout-relay.ts). Pending lines are
 * written on `close()` (shutdown, reload) and when the process exits, so only a
 * hard kill (SIGKILL, OOM) loses them: at most one interval's worth.
 */
export class AuditLog {
  #key = '';
  #dest: ReturnType<typeof pino.destination> | undefined;
  #flushMs = 0;
  /** Lines, or the serialisers of lines, in the order they were written. */
  #pending: (string | (() => string | undefined))[] = [];
  #pendingChars = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Test hook: replaces the destination (receives each JSON line, at once). */
  readonly #sink: ((line: string) => void) | undefined;

  constructor(sink?: (line: string) => void) {
    this.#sink = sink;
  }

  /** (Re)opens the destination; called at start and on every config reload. */
  configure(cfg: AuditConfig): void {
    this.prepare(cfg)();
  }

  /**
   * Opens what `cfg` writes to (this throws when it cannot be opened: a
   * directory, a path through a file, no permission), and returns the step
   * that switches to it, which cannot fail. A config reload prepares before it
   * swaps anything in, so an audit file it cannot open rejects the reload
   * instead of leaving the new teams running with no audit destination. Run
   * the step once nothing else can fail (it is the last step of the swap).
   * A file is opened again even when its path did not change: a reload
   * (SIGHUP) after log rotation moved the file writes to a new one at the
   * path, not on into the moved (compressed, deleted) one.
   */
  prepare(cfg: AuditConfig): () => void {
    const key = cfg.enabled ? `${cfg.destination}:${cfg.file ?? ''}:${cfg.flushIntervalMs}` : 'off';
    const file = cfg.enabled && cfg.destination === 'file';
    if (key === this.#key && !(file && this.#sink === undefined)) return () => undefined;
    // Buffers in, so the destination does not measure each string's UTF-8 length before encoding it again.
    const mode = { sync: true, contentMode: 'buffer' as const };
    const dest =
      !cfg.enabled || this.#sink !== undefined
        ? undefined
        : // Created readable by owner and group only: the lines name users and hold their queries.
          pino.destination(file ? { dest: cfg.file!, mkdir: true, append: true, mode: 0o640, ...mode } : { dest: 1, ...mode });
    return () => {
      this.close();
      this.#key = key;
      this.#flushMs = cfg.flushIntervalMs;
      if (dest === undefined) return;
      this.#dest = dest;
      process.on('exit', this.flush);
    };
  }

  write(record: Record<string, unknown>): void {
    if (this.#key === '' || this.#key === 'off') return;
    this.writeLine(auditLine(record, new Date()));
  }

  /** One serialised line (no newline). */
  writeLine(line: string): void {
    if (this.#key === '' || this.#key === 'off') return;
    if (this.#sink !== undefined) this.#sink(line);
    else if (this.#flushMs === 0) this.#writeOut(line + '\n');
    else this.#enqueue(line, line.length);
  }

  /**
   * A line serialised when the batch is written rather than now: a batch is
   * serialised in one tight loop, which costs less CPU than the same work
   * interleaved with requests. `serialise` must read only what no longer
   * changes (a finished request's state, frozen subjects and decisions) and
   * must not throw. Written at once with a sink or `flushIntervalMs: 0`.
   * `approxChars`: what the line will be about (its query texts), counted
   * against the 64 KiB that are written at once, so pending lines never hold
   * much more than that: counted as 1 KiB each, 64 lines of 5 MiB queries
   * (1 MiB sent, 4 MiB rewritten) were held until the interval ended.
   */
  writeLater(serialise: () => string | undefined, approxChars = DEFERRED_LINE_CHARS): void {
    if (this.#key === '' || this.#key === 'off') return;
    if (this.#sink !== undefined || this.#flushMs === 0) {
      const line = serialise();
      if (line !== undefined) this.writeLine(line);
    } else this.#enqueue(serialise, Math.max(approxChars, DEFERRED_LINE_CHARS));
  }

  #enqueue(entry: string | (() => string | undefined), chars: number): void {
    this.#pending.push(entry);
    this.#pendingChars += chars;
    if (this.#pendingChars >= MAX_PENDING_CHARS) this.flush();
    else if (this.#timer === undefined) this.#timer = setTimeout(this.flush, this.#flushMs).unref();
  }

  /** Writes the pending lines now. */
  readonly flush = (): void => {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    this.#pending = [];
    this.#pendingChars = 0;
    let text = '';
    for (const entry of pending) {
      const line = typeof entry === 'string' ? entry : entry();
      if (line !== undefined) text += line + '\n';
    }
    if (text !== '') this.#writeOut(text);
  };

  #writeOut(text: string): void {
    // contentMode 'buffer' takes Buffers; SonicBoom's type declarations only list strings.
    this.#dest?.write(Buffer.from(text) as unknown as string);
  }

  close(): void {
    this.flush();
    process.off('exit', this.flush);
    const d = this.#dest;
    this.#dest = undefined;
    if (d !== undefined && this.#key.startsWith('file:')) d.end();
    this.#key = '';
  }
}

/**
 * check-config's look at `audit.file`, creating and changing nothing: `AuditLog.configure`
 * appends to the file and creates its missing directories (`mkdir`), so the file must be a
 * writable non-directory or, absent, the nearest existing ancestor a writable directory. Those
 * problems throw a ConfigError (key `audit.file`; `configFile` names the config file); missing
 * directories that serve would create are returned as a warning. Nothing when the audit log is
 * off or not a file.
 */
export async function checkAuditFile(cfg: AuditConfig, configFile?: string): Promise<string | undefined> {
  if (!cfg.enabled || cfg.destination !== 'file' || cfg.file === undefined) return undefined;
  const file = cfg.file;
  const fail = (message: string): never => {
    throw new ConfigError(message, { ...(configFile !== undefined ? { file: configFile } : {}), key: 'audit.file' });
  };
  const code = fileErrorCode;
  // A missing path component (ENOENT) or one that is no directory (ENOTDIR): look further up.
  const absent = (e: unknown) => code(e) === 'ENOENT' || code(e) === 'ENOTDIR';
  try {
    if ((await stat(file)).isDirectory()) fail(`${file} is a directory`);
    await access(file, constants.W_OK).catch((e: unknown) => fail(`${file} is not writable: ${code(e)}`));
    return undefined;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    if (!absent(e)) fail(`cannot use ${file}: ${code(e)}`);
  }
  let dir = path.dirname(file);
  const missing: string[] = [];
  for (;;) {
    try {
      if (!(await stat(dir)).isDirectory()) fail(`cannot create ${file}: ${dir} is not a directory`);
      break;
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      if (!absent(e) || path.dirname(dir) === dir) fail(`cannot create ${file}: ${dir}: ${code(e)}`);
      missing.push(dir);
      dir = path.dirname(dir);
    }
  }
  // Creating an entry needs write and search permission on the directory.
  await access(dir, constants.W_OK | constants.X_OK).catch((e: unknown) => fail(`cannot create ${file}: directory ${dir} is not writable: ${code(e)}`));
  return missing.length === 0 ? undefined : `audit.file: directory ${missing[0]} does not exist; serve creates it (under ${dir})`;
}

export interface AuditPluginOptions {
  /** Live audit settings (config reloads change them). */
  readonly config: () => AuditConfig;
  readonly log: AuditLog;
  readonly entrypoint: () => string;
  /** Short hash of the team/admin data the policy decides with. */
  readonly dataRevision: () => string | undefined;
  readonly metrics: GatewayMetrics | undefined;
  readonly random?: () => number;
}

/** Characters of a request's recorded parameter values (what its audit line's query block holds). */
function paramChars(params: Record<string, string[]> | undefined): number {
  if (params === undefined) return 0;
  let n = 0;
  for (const name in params) for (const v of params[name]!) n += v.length;
  return n;
}

/** One structured line per policy decision and per request to an upstream route refused without one, written when the response is finished (status and duration known). */
export const auditPlugin = fp<AuditPluginOptions>(
  async (app, opts) => {
    opts.log.configure(opts.config());
    // Read at decision time (request-state.ts noteDecision): the record names the data the decision ran on.
    app.decorate('lbacDataRevision', opts.dataRevision);
    /**
     * A decision's record (allowed ones sampled), or, for a request to an upstream route that
     * ended without a decision (authentication refused it; or it was shed, malformed, or the
     * policy failed; not one whose client left first), its record: always written, never sampled.
     */
    const audit = (req: FastifyRequest, reply: FastifyReply): void => {
      const state = req.lbac;
      if (state === null || state === undefined) return;
      const cfg = opts.config();
      if (!cfg.enabled) return;
      if (state.decision === undefined) {
        // Health checks and 404s (no upstream route) have no line.
        if (state.route === undefined) return;
        const refused = {
          requestId: req.id,
          state,
          status: reply.statusCode,
          durationMs: performance.now() - state.startedAt,
          method: req.method,
          path: (req.raw.url ?? '').split('?')[0] ?? '',
          remoteAddress: req.ip,
        };
        const record =
          buildAuthFailureRecord({ ...refused, authorizationScheme: authorizationSchemeOf(req.headers.authorization) }, cfg) ??
          buildRefusalRecord({ ...refused, subject: req.subject ?? null }, cfg);
        if (record === undefined) return;
        opts.log.write(record);
      } else if (!shouldAudit(state, reply.statusCode, cfg.sampleRate, opts.random)) {
        opts.metrics?.auditRecords.inc({ result: 'sampled_out' });
        return;
      } else {
        const ctx = {
          requestId: req.id,
          subject: req.subject,
          state,
          status: reply.statusCode,
          durationMs: performance.now() - state.startedAt,
          entrypoint: opts.entrypoint(),
          dataRevision: state.dataRevision ?? opts.dataRevision(),
        };
        const now = Date.now();
        // Serialised with the batch; the request is finished, so nothing it refers to changes any more.
        opts.log.writeLater(() => {
          try {
            return decisionAuditLine(ctx, cfg, now);
          } catch (e) {
            app.log.error({ err: e, reqId: ctx.requestId }, 'audit record failed');
            return undefined;
          }
        }, DEFERRED_LINE_CHARS + paramChars(state.original) + paramChars(state.rewritten));
      }
      opts.metrics?.auditRecords.inc({ result: 'written' });
    };
    addRecorder(app, 'audit record', audit);
    app.addHook('onClose', async () => opts.log.close());
  },
  { name: 'lbac-audit', dependencies: ['lbac-context'] },
);
