/**
 * Backend versions, for routes whose enforcement depends on the upstream
 * reading a parameter that older releases ignore (RouteSpec.minVersion): Loki
 * before 3.0 answers `/labels` for the whole tenant whatever its `query`, and
 * before 3.2 `/detected_labels` reads every label of the tenant from the store.
 * Pure; no I/O (the server asks the upstream's buildinfo).
 */

export type Version = readonly [number, number, number];

/**
 * A release version as backends report it (`3.2.1`, `v3.2.1`, `3.2.1-rc.0`,
 * `2.9`); null for anything else (weekly or branch builds such as
 * `k218-1a2b3c4`, `main-1a2b3c4`), which cannot be compared.
 */
export function parseVersion(text: string): Version | null {
  const m = /^v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,6}))?(?:[-+][0-9A-Za-z.-]*)?$/.exec(text.trim());
  if (m === null) return null;
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

/** Is `have` at least `min`? A pre-release counts as its release (3.2.0-rc.1 ≥ 3.2.0): release candidates carry the change. */
export function versionAtLeast(have: Version, min: Version): boolean {
  for (let i = 0; i < 3; i++) {
    if (have[i]! !== min[i]!) return have[i]! > min[i]!;
  }
  return true;
}

/** The `version` of a buildinfo answer (`{"version": "3.4.2", …}`, Prometheus' `{"data": {"version"}}`), or undefined. */
export function buildinfoVersion(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const o = body as Record<string, unknown>;
  if (typeof o['version'] === 'string') return o['version'];
  const data = o['data'];
  if (typeof data === 'object' && data !== null && typeof (data as Record<string, unknown>)['version'] === 'string') return (data as Record<string, string>)['version'];
  return undefined;
}

/**
 * Why a request to a route needing `min` must be refused on an upstream of
 * version `reported` (the configured `upstreams[].version`, else buildinfo's),
 * or undefined when it may go ahead.
 */
export function versionProblem(kind: string, endpoint: string, min: string, reported: string | undefined): string | undefined {
  const need = parseVersion(min);
  if (need === null) throw new Error(`invalid minimum version ${JSON.stringify(min)}`);
  if (reported === undefined) return `the ${kind} version could not be read from its buildinfo; set upstreams[].version`;
  const have = parseVersion(reported);
  if (have === null) return `the ${kind} version ${JSON.stringify(reported)} cannot be compared; set upstreams[].version to the release it corresponds to`;
  if (!versionAtLeast(have, need)) return `${endpoint} needs ${kind} ${min} or later to be restricted to the policy (this one is ${reported}, which answers it for the whole tenant)`;
  return undefined;
}
