/** A JSON object (not null, not an array): what parsed JSON, policy data and decision inputs are checked with. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
