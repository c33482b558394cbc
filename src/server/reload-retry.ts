/**
 * Retrying a rejected config reload: which rejections are worth retrying, and
 * when. Pure; the timer is in GatewayRuntime (src/server/index.ts).
 *
 * A reload rejected while the running config stays may leave a team or admin
 * the new file narrows or removes in force: in a cluster, one worker whose
 * reload failed for a passing reason would keep the old (wider) policy while
 * its siblings serve the new one. A transient rejection is therefore retried
 * by the same process; a config error is not (it would fail alike forever).
 */
import { isGatewayError, type ErrorCode } from '../errors.ts';

/**
 * Errno codes of a read that may succeed a moment later: a file replaced by an
 * editor or a ConfigMap swap (ENOENT, ENOTDIR, EISDIR while a path is
 * rebuilt), permissions being set up (EACCES, EPERM), the device or network
 * filesystem (EIO, ESTALE, EBUSY, EAGAIN, EINTR, ETIMEDOUT), descriptors
 * exhausted for a moment (EMFILE, ENFILE), and a peer that could not be
 * reached (ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ENETUNREACH, EAI_AGAIN, EPIPE).
 */
export const TRANSIENT_ERRNO_CODES: ReadonlySet<string> = new Set([
  'ENOENT',
  'ENOTDIR',
  'EISDIR',
  'EACCES',
  'EPERM',
  'EIO',
  'ESTALE',
  'EBUSY',
  'EAGAIN',
  'EINTR',
  'ETIMEDOUT',
  'EMFILE',
  'ENFILE',
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EPIPE',
]);

/**
 * Gateway error codes that mean "could not be reached", not "is wrong": an
 * identity provider that did not answer, answered 5xx or timed out
 * (`identity_unavailable`), a policy that could not be read or fetched
 * (`policy_unavailable`).
 */
export const TRANSIENT_ERROR_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['identity_unavailable', 'policy_unavailable']);

export interface ReloadFailureKind {
  /** Retrying may succeed without anyone changing the config. */
  readonly transient: boolean;
  /** The code the decision rests on: an errno code (EISDIR), a gateway error code (config_invalid), or "unknown". */
  readonly code: string;
}

/** Errors chained by `cause`, outermost first (bounded, cycles cut). */
function causeChain(e: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let cur = e; cur !== undefined && cur !== null && chain.length < 8 && !chain.includes(cur); cur = (cur as { cause?: unknown }).cause) {
    chain.push(cur);
    if (typeof cur !== 'object') break;
  }
  return chain;
}

/** A Node.js system error's errno code (`ENOENT`), else undefined; gateway errors' codes are not errno codes. */
function errnoCode(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null || isGatewayError(e)) return undefined;
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && /^E[A-Z0-9_]+$/.test(code) ? code : undefined;
}

/**
 * Whether a reload rejected with `e` is retried. Transient: the outermost
 * gateway error's code is in TRANSIENT_ERROR_CODES, or an error in the cause
 * chain is a system error with a code in TRANSIENT_ERRNO_CODES (the loaders
 * keep the failed read as the `cause` of their `config_invalid` error: config
 * file, jwksFile, clientSecretFile, upstream secret and certificate files).
 * Everything else — YAML syntax, schema and team errors, a policy that does
 * not load, a bundle that does not take the new data — is not, and so is any
 * error that cannot be classified (no code, an unknown code): retrying a
 * config that is wrong would only repeat the same rejection.
 */
export function classifyReloadError(e: unknown): ReloadFailureKind {
  const chain = causeChain(e);
  const gateway = chain.find(isGatewayError);
  if (gateway !== undefined && TRANSIENT_ERROR_CODES.has(gateway.code)) return { transient: true, code: gateway.code };
  for (const link of chain) {
    const errno = errnoCode(link);
    if (errno !== undefined && TRANSIENT_ERRNO_CODES.has(errno)) return { transient: true, code: errno };
  }
  const errno = chain.map(errnoCode).find((c) => c !== undefined);
  return { transient: false, code: gateway?.code ?? errno ?? 'unknown' };
}

export interface ReloadRetrySchedule {
  /** Wait before the first retry. */
  readonly minDelayMs: number;
  /** Longest wait (the doubling's cap). */
  readonly maxDelayMs: number;
}

/**
 * The wait before retry number `attempt` (1 for the first retry after the
 * rejected reload): `minDelayMs` doubling per attempt, capped at `maxDelayMs`
 * (`server.reloadRetry`, whose defaults give 1 s, 2 s, 4 s, … up to 30 s).
 * No jitter: the retries of one process read its own file and reach its
 * identity providers at most once per `maxDelayMs`.
 */
export function reloadRetryDelayMs(attempt: number, schedule: ReloadRetrySchedule): number {
  const n = Math.max(1, Math.floor(attempt));
  const max = Math.max(schedule.minDelayMs, schedule.maxDelayMs);
  // 2 ** 40 times any positive delay is past any cap: no overflow to Infinity for a long outage.
  return Math.min(max, schedule.minDelayMs * 2 ** Math.min(n - 1, 40));
}
