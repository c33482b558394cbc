/**
 * Typed errors. Every error the gateway produces on purpose carries a stable
 * `code` (for logs, metrics and tests) and the HTTP status it maps to. The
 * server's error mapper renders them in the backend's own error format.
 */
export type ErrorCode =
  | 'bad_query' // the query could not be parsed or is not allowed
  | 'query_too_large' // length / depth limits
  | 'rewrite_unsupported' // a construct or policy shape with no exact rewrite
  | 'rewrite_verification_failed' // the rewriter produced something unenforced (bug) — fail closed
  | 'missing_parameter'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'payload_too_large'
  | 'policy_error' // evaluation failed or decision malformed — fail closed
  | 'policy_unavailable'
  | 'identity_unavailable'
  | 'config_invalid'
  | 'upstream_error'
  | 'upstream_timeout'
  | 'overloaded' // load shedding or a per-upstream concurrency limit (503 + Retry-After)
  | 'too_many_requests' // a per-subject count limit that waiting does not lift (live tails open): 429
  | 'client_closed' // the client went away before the answer was complete (recorded as 499, nginx's "client closed request")
  | 'internal';

const STATUS: Record<ErrorCode, number> = {
  bad_query: 400,
  query_too_large: 400,
  rewrite_unsupported: 400,
  rewrite_verification_failed: 500,
  missing_parameter: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  policy_error: 500,
  policy_unavailable: 503,
  identity_unavailable: 503,
  config_invalid: 500,
  upstream_error: 502,
  upstream_timeout: 504,
  overloaded: 503,
  too_many_requests: 429,
  client_closed: 499,
  internal: 500,
};

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra structured context for logs; never rendered to clients, never holds secrets. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown>; status?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = options?.status ?? STATUS[code];
    this.details = options?.details;
  }
}

/** A query the gateway cannot parse, or may not forward. Maps to 400 `bad_data`. */
export class QueryError extends GatewayError {
  readonly language: string;
  constructor(language: string, message: string, code: ErrorCode = 'bad_query', details?: Record<string, unknown>) {
    super(code, message, details === undefined ? undefined : { details });
    this.name = 'QueryError';
    this.language = language;
  }
}

export class ConfigError extends GatewayError {
  readonly file: string | undefined;
  readonly line: number | undefined;
  readonly key: string | undefined;
  /** `options.cause`: the error behind it (a failed read keeps its errno code there: see server/reload-retry.ts). */
  constructor(message: string, where: { file?: string; line?: number; key?: string } = {}, options?: { cause?: unknown }) {
    const loc = [where.file, where.line === undefined ? undefined : `line ${where.line}`, where.key === undefined ? undefined : `key ${where.key}`]
      .filter((x) => x !== undefined)
      .join(', ');
    super('config_invalid', loc ? `${loc}: ${message}` : message, options);
    this.name = 'ConfigError';
    this.file = where.file;
    this.line = where.line;
    this.key = where.key;
  }
}

export function isGatewayError(e: unknown): e is GatewayError {
  return e instanceof GatewayError;
}
