/**
 * Upstream answers read whole (to filter or merge them): each bounded in
 * size, and all of them together by one budget (server.maxBufferedAnswerBytes).
 */
import { finished } from 'node:stream';
import { GatewayError } from '../errors.ts';

/**
 * Bytes of upstream answers the process is reading whole (to filter or merge
 * them) at once. Each answer is bounded (64 MiB), but without this their sum
 * was bounded only by the requests in flight: fifty clients asking for large
 * label-value lists held 3 GiB. A chunk that does not fit fails its request
 * with 503 (`overloaded`); the bytes come back when the read ends (the filter
 * queue bounds the answers held after it: filter-offload.ts).
 */
export class ByteBudget {
  #used = 0;
  readonly max: number;
  constructor(max: number) {
    this.max = max;
  }
  get used(): number {
    return this.#used;
  }
  take(n: number): boolean {
    if (this.#used + n > this.max) return false;
    this.#used += n;
    return true;
  }
  give(n: number): void {
    this.#used -= n;
  }
}

/** server.maxBufferedAnswerBytes' default. */
export const DEFAULT_BUFFERED_ANSWER_BYTES = 256 * 1024 * 1024;

/** Largest upstream answer the gateway buffers to filter. */
export const MAX_FILTERED_BODY = 64 * 1024 * 1024;

/** readBounded's refusal of an answer over its limit. */
export class AnswerTooLarge extends Error {
  constructor() {
    super('response too large');
    this.name = 'AnswerTooLarge';
  }
}

export function readBounded(stream: NodeJS.ReadableStream, limit: number, budget: ByteBudget): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let taken = 0;
    const stop = (e: Error) => {
      reject(e);
      (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
    };
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) return stop(new AnswerTooLarge());
      if (!budget.take(c.length)) return stop(new GatewayError('overloaded', 'the gateway is reading too many large upstream answers at once; retry later', { details: { shed: 'answer_budget' } }));
      taken += c.length;
      chunks.push(c);
    });
    // Settles on the end, an error, or a close before the end (a destroyed stream need not emit 'error').
    finished(stream, (err) => {
      budget.give(taken);
      taken = 0;
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    });
  });
}
