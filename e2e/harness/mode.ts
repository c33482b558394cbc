// Which backends the e2e harness starts: the pinned local binaries (default)
// or the official container images through testcontainers
// (LBAC_E2E_MODE=containers). Containers mode never falls back to local
// binaries: without a reachable Docker engine it fails with containerModeError.
import { pinnedVersions } from './tools.ts';

export type E2EMode = 'local' | 'containers';

export const MODE_ENV = 'LBAC_E2E_MODE';

/** Where the host work directory appears inside the containers (containers mode). */
export const CONTAINER_WORK = '/lbac';
/** Where nginx's document root appears inside its container. */
export const CONTAINER_WWW = '/lbac-www';
/** The port nginx listens on inside its container. */
export const CONTAINER_NGINX_PORT = 8080;

/** The mode LBAC_E2E_MODE asks for: unset, '' or 'local' → local; 'containers'; anything else is an error. */
export function e2eMode(env: Readonly<Record<string, string | undefined>> = process.env): E2EMode {
  const value = (env[MODE_ENV] ?? '').trim();
  if (value === '' || value === 'local') return 'local';
  if (value === 'containers') return 'containers';
  throw new Error(
    `${MODE_ENV}=${JSON.stringify(value)} is not a mode: use "local" (the default: pinned binaries from the tools cache) ` +
      `or "containers" (official images through testcontainers; needs a Docker engine)`,
  );
}

/**
 * The prom/prometheus image tag for the pinned Go module version: Prometheus
 * 3.x is published to the module proxy as v0.3MM.P (v0.316.0 is 3.16.0), the
 * image as vMAJOR.MINOR.PATCH. A version already in v3.x.y form is kept.
 */
export function prometheusImageTag(version: string): string {
  if (/^v3\.\d+\.\d+$/.test(version)) return version;
  const m = /^v0\.(\d+)\.(\d+)$/.exec(version);
  const n = m === null ? NaN : Number(m[1]);
  if (m === null || Math.floor(n / 100) !== 3) {
    throw new Error(`PROMETHEUS_VERSION=${version} in scripts/versions.env is not a Prometheus 3.x version (v0.3MM.P module version or v3.MM.P)`);
  }
  return `v3.${n % 100}.${m[2] as string}`;
}

export interface ContainerImages {
  prometheus: string;
  nginx: string;
}

/** The pinned images of containers mode, from scripts/versions.env. */
export function containerImages(versions: Readonly<Record<string, string>> = pinnedVersions()): ContainerImages {
  const prom = versions['PROMETHEUS_VERSION'];
  const nginx = versions['NGINX_VERSION'];
  if (prom === undefined || prom === '') throw new Error('PROMETHEUS_VERSION is not set in scripts/versions.env');
  if (nginx === undefined || !/^\d+\.\d+\.\d+$/.test(nginx)) {
    throw new Error(`NGINX_VERSION in scripts/versions.env must be an nginx release such as 1.22.1 (got ${JSON.stringify(nginx ?? null)})`);
  }
  return { prometheus: `prom/prometheus:${prometheusImageTag(prom)}`, nginx: `nginx:${nginx}-alpine` };
}

/** The error containers mode fails with when no Docker engine answers. */
export function containerModeError(cause: unknown): Error {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new Error(
    `${MODE_ENV}=containers, but no Docker engine is reachable (testcontainers: ${why}). ` +
      'Start Docker, or point DOCKER_HOST (or ~/.testcontainers.properties) at an engine; ' +
      `or unset ${MODE_ENV} to run the pinned local binaries. Containers mode never falls back to local binaries.`,
    { cause },
  );
}

let runtimeCheck: Promise<void> | undefined;

/**
 * Resolves when a container engine is reachable (testcontainers'
 * getContainerRuntimeClient()); rejects with containerModeError otherwise.
 * `probe` replaces the engine lookup (tests); the default lookup is done once.
 */
export function requireContainerRuntime(probe?: () => Promise<unknown>): Promise<void> {
  const run = async (p: () => Promise<unknown>): Promise<void> => {
    try {
      await p();
    } catch (err) {
      throw containerModeError(err);
    }
  };
  if (probe !== undefined) return run(probe);
  runtimeCheck ??= run(async () => (await import('testcontainers')).getContainerRuntimeClient());
  return runtimeCheck;
}
