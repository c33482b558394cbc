/**
 * Merging the parts of a fanned-out request (RouteSpec.fanOut) by the route's
 * merge: the same pure code on the event loop (small parts) and on the filter
 * thread (./filter-offload.ts, ./filter-worker.ts). No I/O.
 */
import { FormParams } from '../backends/form-params.ts';
import type { BackendKind, FanOutSpec } from '../backends/routes.ts';
import { GatewayError, QueryError, type ErrorCode } from '../errors.ts';

/**
 * What the thread gets to merge the parts of a fanned-out request
 * (RouteSpec.fanOut): the route by name, each part's answer bytes, and the
 * enforced parameters, encoded.
 */
export interface MergeTask {
  readonly kind: BackendKind;
  readonly endpoint: string;
  readonly parts: readonly Uint8Array[];
  readonly params: string;
}

/** A merge's result as it crosses the thread: the merged JSON, or the refusal the merge raised, as data. */
export type MergeOutcome =
  | { readonly body: Uint8Array }
  | { readonly error: { readonly code: ErrorCode; readonly message: string; readonly status: number; readonly language?: string } };

/**
 * The route's merge of the parts' JSON answers, serialised; a refusal the merge
 * raises (a GatewayError, e.g. a part that reached `limit`) as it is, any other
 * failure (an unreadable part) as 502. Pure; the same on the event loop and on the thread.
 */
export function mergeParts(merge: NonNullable<FanOutSpec['merge']>, parts: readonly Uint8Array[], params: string): Uint8Array {
  const text = new TextDecoder();
  try {
    return Buffer.from(JSON.stringify(merge(parts.map((p) => JSON.parse(text.decode(p)) as unknown), new FormParams(params))));
  } catch (e) {
    throw e instanceof GatewayError ? e : new GatewayError('upstream_error', 'upstream answer could not be read', { cause: e });
  }
}

/** mergeParts for the thread: its GatewayError as data (an Error's class and code do not survive the thread boundary). */
export function mergeOutcome(merge: NonNullable<FanOutSpec['merge']>, task: MergeTask): MergeOutcome {
  try {
    return { body: mergeParts(merge, task.parts, task.params) };
  } catch (e) {
    if (!(e instanceof GatewayError)) throw e;
    return { error: { code: e.code, message: e.message, status: e.status, ...(e instanceof QueryError ? { language: e.language } : {}) } };
  }
}

