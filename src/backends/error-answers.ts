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
 * "error"}`, Loki and Tempo a line of text. That envelope is rebuilt from
 * those fields, and a text message passes as text. Any other body (JSON that
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

function errorEnvelope(text: string): RelayedError | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(body) || body['status'] !== 'error' || typeof body['error'] !== 'string') return undefined;
  const errorType = body['errorType'];
  const out = typeof errorType === 'string' ? { status: 'error', errorType, error: body['error'] } : { status: 'error', error: body['error'] };
  return { contentType: 'application/json', body: JSON.stringify(out) };
}
