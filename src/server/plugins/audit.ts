import { pino, type Logger } from 'pino';
import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AuditConfig } from '../../config/schema.ts';
import { buildAuditRecord, buildAuthFailureRecord, shouldAudit } from '../audit.ts';
import type { GatewayMetrics } from '../metrics.ts';
import { recordOnResponse } from './hook.ts';

/** Where audit lines go: a dedicated pino logger (stdout or an appended file), separate from the process log. */
export class AuditLog {
  #key = '';
  #logger: Logger | undefined;
  #dest: ReturnType<typeof pino.destination> | undefined;
  /** Test hook: replaces the destination (receives each JSON line). */
  readonly #sink: ((line: string) => void) | undefined;

  constructor(sink?: (line: string) => void) {
    this.#sink = sink;
  }

  /** (Re)opens the destination when it changed; called at start and on every config reload. */
  configure(cfg: AuditConfig): void {
    const key = cfg.enabled ? `${cfg.destination}:${cfg.file ?? ''}` : 'off';
    if (key === this.#key) return;
    this.close();
    this.#key = key;
    if (!cfg.enabled) return;
    const sink = this.#sink;
    const stream =
      sink !== undefined
        ? { write: (s: string) => sink(s.endsWith('\n') ? s.slice(0, -1) : s) }
        : (this.#dest = pino.destination(cfg.destination === 'file' ? { dest: cfg.file!, mkdir: true, append: true, sync: true } : { dest: 1, sync: true }));
    this.#logger = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, stream);
  }

  write(record: Record<string, unknown>): void {
    this.#logger?.info(record, 'Decision Log');
  }

  close(): void {
    this.#logger = undefined;
    const d = this.#dest;
    this.#dest = undefined;
    if (d !== undefined && this.#key.startsWith('file:')) d.end();
    this.#key = '';
  }
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

/** One structured line per policy decision, written when the response is finished (status and duration known). */
export const auditPlugin = fp<AuditPluginOptions>(
  async (app, opts) => {
    opts.log.configure(opts.config());
    /**
     * A decision's record (allowed ones sampled), or, for a request refused before any
     * decision (authentication), its record: always written, never sampled.
     */
    const audit = (req: FastifyRequest, reply: FastifyReply): void => {
      const state = req.lbac;
      if (state === null || state === undefined) return;
      const cfg = opts.config();
      if (!cfg.enabled) return;
      let record;
      if (state.decision === undefined) {
        const auth = req.headers.authorization;
        record = buildAuthFailureRecord(
          {
            requestId: req.id,
            state,
            status: reply.statusCode,
            durationMs: performance.now() - state.startedAt,
            method: req.method,
            path: (req.raw.url ?? '').split('?')[0] ?? '',
            remoteAddress: req.ip,
            authorizationScheme: typeof auth === 'string' && auth.trim() !== '' ? (auth.trim().split(/\s+/)[0] ?? '').slice(0, 32) : undefined,
          },
          cfg,
        );
      } else if (!shouldAudit(state, reply.statusCode, cfg.sampleRate, opts.random)) {
        opts.metrics?.auditRecords.inc({ result: 'sampled_out' });
        return;
      } else {
        record = buildAuditRecord(
          {
            requestId: req.id,
            subject: req.subject,
            state,
            status: reply.statusCode,
            durationMs: performance.now() - state.startedAt,
            entrypoint: opts.entrypoint(),
            ...(opts.dataRevision() === undefined ? {} : { dataRevision: opts.dataRevision()! }),
          },
          cfg,
        );
      }
      if (record === undefined) return;
      opts.log.write(record);
      opts.metrics?.auditRecords.inc({ result: 'written' });
    };
    app.addHook('onResponse', recordOnResponse('audit record', audit));
    app.addHook('onClose', async () => opts.log.close());
  },
  { name: 'lbac-audit', dependencies: ['lbac-context'] },
);
