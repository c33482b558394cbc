import { GatewayError } from '../errors.ts';

/**
 * Largest answer read from an identity provider (discovery document, JWKS,
 * introspection, userinfo), after content decoding. Real ones are a few KiB;
 * without a bound a provider (or whatever answers at its address) could send
 * an endless body, held in memory whole and, for introspection and userinfo,
 * copied into every cached Subject's claims and every policy input.
 */
export const MAX_PROVIDER_RESPONSE_BYTES = 1024 * 1024;

/** Statuses whose Response carries no body (the Response constructor refuses one). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** An identity provider's answer exceeded the bound (503). */
export class ProviderResponseTooLargeError extends GatewayError {
  constructor(maxBytes: number) {
    super('identity_unavailable', `identity provider response is larger than ${maxBytes} bytes`);
    this.name = 'ProviderResponseTooLargeError';
  }
}

function tooLarge(maxBytes: number): GatewayError {
  return new ProviderResponseTooLargeError(maxBytes);
}

/**
 * A `fetch` for identity-provider calls (openid-client's and jose's
 * `customFetch`) whose response body fails once it exceeds `maxBytes`: at once
 * when Content-Length says so, else while it streams (so a compressed body
 * is bounded decoded). The error is `identity_unavailable` (503): a provider
 * answering that way cannot vouch for anyone.
 */
export function boundedFetch(maxBytes = MAX_PROVIDER_RESPONSE_BYTES): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    if (res.body === null || NULL_BODY.has(res.status)) return res;
    const declared = Number(res.headers.get('content-length') ?? '');
    // Content-Length counts encoded bytes, never more than decoded ones.
    if (Number.isFinite(declared) && declared > maxBytes) {
      await res.body.cancel().catch(() => undefined);
      throw tooLarge(maxBytes);
    }
    let seen = 0;
    const limited = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          seen += chunk.byteLength;
          if (seen > maxBytes) controller.error(tooLarge(maxBytes));
          else controller.enqueue(chunk);
        },
      }),
    );
    return new Response(limited, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

/** The error a bounded body failed with, if `e` is it or was caused by it (libraries wrap body errors). */
export function boundExceeded(e: unknown): ProviderResponseTooLargeError | undefined {
  let cur: unknown = e;
  for (let depth = 0; depth < 5 && typeof cur === 'object' && cur !== null; depth++) {
    if (cur instanceof ProviderResponseTooLargeError) return cur;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}
