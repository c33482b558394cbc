// Bringing a target to its steady state before it is measured.
//
// V8 optimises a function only after enough calls, and Node proxies warm up by
// request count, not by time: at saturation in front of the stub (session 21,
// 5-s windows in one process after 3 s of load), the bare pass-through went
// 96 → 83 → 81 µs of CPU per request and settled within ≈ 8 s (≈ 100 000
// requests); lbac-gateway, with more code to optimise, went 139 → 113 → 105
// µs and settled only after ≈ 13 s (≈ 120 000 requests). `make bench` warmed
// each target for 2 s before that, so half its rounds measured a gateway that
// was still being optimised, and the open-loop latency runs (1000 req/s at
// most) never reached that many requests at all.
import autocannon from 'autocannon';
import type { BenchRequest } from './mix.ts';

/** Seconds of saturating load that bring every target here to its steady state (above: ≈ 13 s). */
export const WARM_UP_SECONDS = 15;

/**
 * Closed-loop load at saturation (`connections` at a time, no rate limit) for
 * `seconds`; what it measured is discarded. Errors are ignored here: the
 * measurement that follows counts them.
 */
export async function warmUp(url: string, requests: readonly BenchRequest[], seconds: number = WARM_UP_SECONDS, connections = 16): Promise<void> {
  if (seconds <= 0) return;
  await autocannon({ url, requests: [...requests] as autocannon.Request[], connections, duration: seconds, pipelining: 1 }).catch(() => undefined);
}
