import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings the gateway runs with, applied by bin/lbac-gateway.js before any
 * of its code runs (so in every cluster worker too).
 *
 * `--no-allocation-site-pretenuring`: V8 may decide that objects made at one
 * allocation site live long and allocate them in the old generation from then
 * on. In a busy gateway that decision turned per-request objects old, and
 * every young-generation collection then kept the last second of requests
 * alive through them (≈ 11 MB copied, 20–30 ms pauses once a second instead of
 * ≈ 1 ms) until a full collection: in about half of the runs under the same
 * load, never without pretenuring (docs/performance.md#garbage-collection).
 * The gateway allocates nothing long-lived per request, so nothing is lost.
 */
export const RUNTIME_V8_FLAGS: readonly string[] = ['--no-allocation-site-pretenuring'];

/** Applies RUNTIME_V8_FLAGS unless `LBAC_V8_PRETENURING=1` keeps V8's default (for comparisons); returns what was applied. */
export function applyRuntimeFlags(env: NodeJS.ProcessEnv = process.env): readonly string[] {
  if (env['LBAC_V8_PRETENURING'] === '1') return [];
  for (const flag of RUNTIME_V8_FLAGS) setFlagsFromString(flag);
  return RUNTIME_V8_FLAGS;
}
