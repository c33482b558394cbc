/**
 * What one request went through, recorded as it happens so the audit log and
 * the metrics can report it afterwards (onResponse) without re-deriving it.
 * The upstream plugin calls `noteDecision`, `noteOriginalParams` and
 * `noteForwardedParams`; the identity plugin times authentication; everything
 * else reads `req.lbac`.
 */
import type { FastifyRequest } from 'fastify';
import type { BackendKind, RouteSpec } from '../backends/routes.ts';
import type { Decision, RequestInfo } from '../policy/decision.ts';
import type { Params } from '../backends/form-params.ts';

export type Stage = 'identity' | 'policy' | 'rewrite' | 'upstream';

export interface LbacRequestState {
  /** performance.now() when the request arrived. */
  readonly startedAt: number;
  /** Stage durations in milliseconds (only the stages the request reached). */
  readonly timings: Partial<Record<Stage, number>>;
  /** Set once a policy decision was made. */
  request?: RequestInfo;
  decision?: Decision;
  /** The policy revision the decision ran on. */
  revision?: string;
  /** The team/admin data revision the decision ran on (a reload may come before the response ends). */
  dataRevision?: string;
  /** Query-bearing parameters as the client sent them (route.enforced names only; at most maxQueryLength characters in all). */
  original?: Record<string, string[]>;
  /** `original` was cut: the client sent more (a query refused as too long, most often). */
  originalTruncated?: true;
  /** The same parameters as forwarded (after enforcement); absent when rewriting failed. */
  rewritten?: Record<string, string[]>;
  /** performance.now() when enforcement (rewriting) started. */
  rewriteStartedAt?: number;
  /** performance.now() when the request was handed to the upstream. */
  forwardedAt?: number;
  /** Error code of the request's failure (GatewayError.code), if any. */
  errorCode?: string;
  /** Why the request was refused by load shedding or a concurrency limit. */
  shed?: string;
  /** The upstream route the request matched (from the route index), before any decision. */
  route?: { readonly upstream: string; readonly kind: BackendKind; readonly endpoint: string };
  /** Outcome of authentication, when it ran. */
  identity?: 'accepted' | 'rejected' | 'unavailable';
  /**
   * The client went away before the answer was complete: the request was
   * recorded (audit, metrics) at that moment, and nothing more is forwarded.
   */
  clientClosed?: boolean;
  /** The answer was sent whole (onResponse ran; a response's 'close' after that is not the client leaving). */
  answered?: boolean;
  /** Cancels the forwarded request's upstream request (src/server/upstream-dispatcher.ts). */
  cancelUpstream?: { fire(): void };
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Per-request record for audit and metrics (src/server/request-state.ts). */
    lbac: LbacRequestState;
  }
}

export function newRequestState(now = performance.now()): LbacRequestState {
  return { startedAt: now, timings: {} };
}

function pick(route: RouteSpec, params: Params): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const spec of route.enforced) {
    const values = params.getAll(spec.name);
    if (values.length > 0) out[spec.name] = values;
  }
  return out;
}

/** Record the decision; `decideStartedAt` is performance.now() just before the policy ran. */
export function noteDecision(req: FastifyRequest, request: RequestInfo, decision: Decision, decideStartedAt: number): void {
  const s = req.lbac as LbacRequestState | null;
  if (s === null) return;
  const now = performance.now();
  s.timings.policy = now - decideStartedAt;
  s.request = request;
  s.decision = decision;
  // Synchronous since the decision: no swap can have happened in between.
  const server = req.server as { policyHolder?: { revision: string | undefined }; lbacDataRevision?: () => string | undefined };
  const revision = server.policyHolder?.revision;
  if (revision !== undefined) s.revision = revision;
  const dataRevision = server.lbacDataRevision?.();
  if (dataRevision !== undefined) s.dataRevision = dataRevision;
  s.rewriteStartedAt = now;
}

/**
 * Record the query parameters as the client sent them (copied: enforcement
 * then changes `params` in place), at most `maxChars` characters of values in
 * all: a query refused as too long is not written to the audit whole (a form
 * body of `bodyLimitBytes` would make a line that size).
 */
export function noteOriginalParams(req: FastifyRequest, route: RouteSpec, params: Params, maxChars: number): void {
  const s = req.lbac as LbacRequestState | null;
  if (s === null) return;
  const original = pick(route, params);
  let left = maxChars;
  let truncated = false;
  for (const name of Object.keys(original)) {
    const kept: string[] = [];
    for (const v of original[name]!) {
      if (v.length <= left) {
        kept.push(v);
        left -= v.length;
        continue;
      }
      truncated = true;
      // Values past the budget are left out, not recorded as "" (which a client may have sent).
      if (left > 0) kept.push(cutAt(v, left));
      left = 0;
    }
    if (kept.length > 0) original[name] = kept;
    else delete original[name];
  }
  s.original = original;
  if (truncated) s.originalTruncated = true;
}

/** The first `chars` UTF-16 units of `text`, not splitting a surrogate pair. */
function cutAt(text: string, chars: number): string {
  const end = Math.max(0, chars);
  const last = text.charCodeAt(end - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? end - 1 : end);
}

/** Record the parameters as forwarded (after enforcement); ends the rewrite stage and starts the upstream one. */
export function noteForwardedParams(req: FastifyRequest, route: RouteSpec, params: Params): void {
  const s = req.lbac as LbacRequestState | null;
  if (s === null) return;
  s.rewritten = pick(route, params);
  const now = performance.now();
  if (s.rewriteStartedAt !== undefined) s.timings.rewrite = now - s.rewriteStartedAt;
  s.forwardedAt = now;
}
