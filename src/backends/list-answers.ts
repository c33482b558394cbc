/**
 * Merging the answers of one list request sent once per policy alternative
 * (RouteSpec.fanOut): Loki's label names and label values, `{"status":
 * "success","data":[…strings]}`. Pure; no I/O.
 */
import { GatewayError } from '../errors.ts';

export interface ListAnswer {
  readonly status: 'success';
  readonly data: string[];
}

/** Go's string order (UTF-8 bytes, i.e. code points), as Loki sorts names and values; JS `<` compares UTF-16 units. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (U+D800–DFFF) encodes a code point above U+FFFF: it sorts after every other unit.
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

/**
 * The sorted union of the answers' `data` lists. Any answer of another shape
 * throws (→ 502): a part of the answer that cannot be read is not left out.
 */
export function mergeListAnswers(answers: readonly unknown[]): ListAnswer {
  const all = new Set<string>();
  for (const a of answers) {
    const data = (a as { status?: unknown; data?: unknown } | null)?.data;
    if ((a as { status?: unknown } | null)?.status !== 'success' || !Array.isArray(data) || !data.every((v) => typeof v === 'string')) {
      throw new GatewayError('upstream_error', 'upstream answer could not be read');
    }
    for (const v of data as string[]) all.add(v);
  }
  return { status: 'success', data: [...all].sort(compareCodePoints) };
}
