/**
 * The listed keys `o` has of its own, copied; every other key is dropped
 * (response filters rebuild answers from what they checked: fail closed).
 */
export function pick(o: Readonly<Record<string, unknown>>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (Object.hasOwn(o, k)) out[k] = o[k];
  return out;
}
