import { GatewayError } from '../errors.ts';
import type { BackendKind } from '../backends/routes.ts';

/** Prometheus' errorType vocabulary (Loki uses the same envelope). */
const PROM_ERROR_TYPE: Record<number, string> = {
  400: 'bad_data',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'bad_data',
  406: 'not_acceptable',
  413: 'bad_data',
  415: 'bad_data',
  422: 'execution',
  // Not in Prometheus' vocabulary (it sends no 429); Mimir's name for it (pkg/api/error), where Grafana meets it.
  429: 'too_many_requests',
  500: 'internal',
  502: 'unavailable',
  503: 'unavailable',
  504: 'timeout',
};

export interface RenderedError {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/** Normalise anything thrown into a status + client-safe message. Unknown errors never leak details. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const e = err as { statusCode?: unknown; code?: unknown; message?: unknown };
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500;
  if (status === 413) return new GatewayError('payload_too_large', 'request body too large', { cause: err });
  if (status === 415) return new GatewayError('bad_query', 'unsupported content type: send application/x-www-form-urlencoded', { cause: err, status: 415 });
  if (status === 404) return new GatewayError('not_found', 'not found', { cause: err });
  if (status >= 400 && status < 500) return new GatewayError('bad_query', typeof e.message === 'string' ? e.message : 'bad request', { cause: err, status });
  return new GatewayError('internal', 'internal error', { cause: err });
}

/**
 * Render an error in the backend's own format: Prometheus' JSON envelope, Tempo
 * plain text, and for Loki its own `{code, status, message}` (Loki's JSONError;
 * Grafana's Loki datasource shows `message`) plus the Prometheus-style
 * `errorType`/`error`, which Loki clients of the query API also read.
 */
export function renderError(kind: BackendKind | undefined, err: GatewayError): RenderedError {
  if (kind === 'tempo') return { status: err.status, contentType: 'text/plain; charset=utf-8', body: err.message + '\n' };
  const errorType = PROM_ERROR_TYPE[err.status] ?? (err.status >= 500 ? 'internal' : 'bad_data');
  const body =
    kind === 'loki'
      ? { code: err.status, status: 'error', message: err.message, errorType, error: err.message }
      : { status: 'error', errorType, error: err.message };
  return { status: err.status, contentType: 'application/json', body: JSON.stringify(body) };
}
