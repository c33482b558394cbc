/**
 * Request and decision ids: UUID-shaped (version 4 and RFC 4122 variant bits,
 * as OPA's decision ids and most log tooling expect), unique without asking
 * the CSPRNG per request: 74 random bits chosen once per process, then a
 * 48-bit counter. Ids are correlation handles, not secrets: that they are
 * sequential within a process is harmless, and the random prefix keeps
 * processes (workers, restarts) apart.
 */
import { randomBytes } from 'node:crypto';

/** Groups 1–4 of the UUID: 74 random bits (72 in hex digits, 2 beside the variant bits), version 4. */
const prefix = (() => {
  const b = randomBytes(10).toString('hex');
  const variant = ((parseInt(b[15] as string, 16) & 0x3) | 0x8).toString(16);
  return `${b.slice(0, 8)}-${b.slice(8, 12)}-4${b.slice(12, 15)}-${variant}${b.slice(16, 19)}-`;
})();

let counter = 0;

/** A fresh id, e.g. `3f2a9c1e-07b4-4d21-9a3c-00000000002a`. */
export function newId(): string {
  counter = counter >= 0xffffffffffff ? 1 : counter + 1;
  const hex = counter.toString(16);
  return prefix + '000000000000'.slice(hex.length) + hex;
}
