// Waiting for something asynchronous to happen without a fixed sleep: a fixed
// sleep followed by an assertion fails whenever the machine is slow (2 shared
// cores in CI), a poll with a generous deadline only when it never happens.

/** Polls `check` every `intervalMs` until it returns true; false if `timeoutMs` passes first. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await Promise.resolve().then(check).catch(() => false)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
