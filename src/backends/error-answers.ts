import { GatewayError } from '../errors.ts';
import { isRecord } from '../util/is-record.ts';

/** An upstream error answer as the client may get it: its content type and body. */
export interface RelayedError {
  readonly contentType: string;
  readonly body: string;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
/** Control characters other than tab, newline and carriage return: binary (protobuf), not a message. */
const BINARY = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/**
 * What of an upstream's non-2xx answer on a filtered route reaches a
 * restricted subject. The backends' own error answers carry a message, not
 * data: Prometheus-compatible stores answer `{"status":"error","errorType",
 * "error"}`, Loki and Tempo a line of text. That envelope (or another JSON
 * error's message fields) is rebuilt from those fields, and a text message
 * passes as text. Any other body (JSON that
 * is not the envelope, protobuf, a cache's or proxy's stored answer under an
 * error status) has not been through the route's filter: undefined, and the
 * caller answers its own error instead (fail closed).
 */
export function relayableError(raw: Uint8Array, contentType: string): RelayedError | undefined {
  let text: string;
  try {
    text = strictUtf8.decode(raw);
  } catch {
    return undefined;
  }
  const start = text.trimStart();
  if (start.startsWith('{') || start.startsWith('[')) return errorEnvelope(text);
  if (BINARY.test(text)) return undefined;
  return { contentType: /^text\//i.test(contentType) ? contentType : 'text/plain; charset=utf-8', body: text };
}

/**
 * A JSON error, rebuilt from its message fields only: Prometheus'
 * `{"status":"error","errorType","error"}`, Loki's `{"code","status","message"}`,
 * the `{"code","message"}` of gRPC-gateway style APIs, a bare `{"error"}` or
 * `{"message"}`.
 */
function errorEnvelope(text: string): RelayedError | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(body)) return undefined;
  const { status, errorType, error, code, message } = body;
  if ((status !== undefined && status !== 'error') || (typeof error !== 'string' && typeof message !== 'string')) return undefined;
  // In a fixed order, each field only when of its type: Loki's {code, status, message} too.
  const out: Record<string, unknown> = {};
  if (typeof code === 'number') out['code'] = code;
  if (status === 'error') out['status'] = status;
  if (typeof errorType === 'string') out['errorType'] = errorType;
  if (typeof error === 'string') out['error'] = error;
  if (typeof message === 'string') out['message'] = message;
  return { contentType: 'application/json', body: JSON.stringify(out) };
}

/**
 * An upstream's error answer (non-2xx) to a request whose answer is filtered:
 * the backend's error message (relayableError), else the gateway's own error
 * with the upstream's status (a body that is not a message is withheld).
 */
export function unfilteredErrorAnswer(raw: Uint8Array, contentType: string, status: number): RelayedError | GatewayError {
  const relayed = relayableError(raw, contentType);
  if (relayed !== undefined) return relayed;
  const message = `upstream answered ${status}; its answer is not an error message and is withheld`;
  return new GatewayError('upstream_error', message, status >= 400 && status <= 599 ? { status } : undefined);
}
