// Containers mode of the e2e harness (LBAC_E2E_MODE=containers) without a
// Docker engine: mode selection, image tags from scripts/versions.env, and the
// clear error (never a silent fallback to local binaries) when no engine answers.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { containerImages, e2eMode, prometheusImageTag, requireContainerRuntime } from '../../e2e/harness/mode.ts';
import { startNginx } from '../../e2e/harness/nginx.ts';
import { startPrometheus } from '../../e2e/harness/prometheus.ts';
import { repoRoot } from '../../e2e/harness/tools.ts';

const versions = Object.fromEntries(
  readFileSync(join(repoRoot, 'scripts', 'versions.env'), 'utf8')
    .split('\n')
    .map((l) => /^([A-Z_]+)=(\S+)$/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1], m[2]]),
) as Record<string, string>;

const NO_ENGINE = /LBAC_E2E_MODE=containers, but no Docker engine is reachable \(testcontainers: .+\)\..*never falls back to local binaries/s;

/** No engine configured on this machine (the CI/dev machines this project runs on have none). */
const noEngineHere =
  !existsSync('/var/run/docker.sock') &&
  (process.env['DOCKER_HOST'] ?? '') === '' &&
  !existsSync(join(homedir(), '.testcontainers.properties')) &&
  !existsSync(join(homedir(), '.docker', 'run', 'docker.sock'));

afterEach(() => {
  vi.unstubAllEnvs();
});

describe('mode selection', () => {
  it('local binaries are the default; containers only when asked for', () => {
    expect(e2eMode({})).toBe('local');
    expect(e2eMode({ LBAC_E2E_MODE: '' })).toBe('local');
    expect(e2eMode({ LBAC_E2E_MODE: 'local' })).toBe('local');
    expect(e2eMode({ LBAC_E2E_MODE: 'containers' })).toBe('containers');
    expect(e2eMode({ LBAC_E2E_MODE: ' containers\n' })).toBe('containers');
  });

  it('an unknown mode is an error naming the valid ones (not a silent default)', () => {
    expect(() => e2eMode({ LBAC_E2E_MODE: 'docker' })).toThrow(/LBAC_E2E_MODE="docker" is not a mode: use "local".*or "containers"/);
    expect(() => e2eMode({ LBAC_E2E_MODE: 'Containers' })).toThrow(/is not a mode/);
  });
});

describe('image tags from scripts/versions.env', () => {
  it('maps the Prometheus 3.x Go module version to the image tag', () => {
    expect(prometheusImageTag('v0.316.0')).toBe('v3.16.0');
    expect(prometheusImageTag('v0.300.1')).toBe('v3.0.1');
    expect(prometheusImageTag('v0.305.12')).toBe('v3.5.12');
    expect(prometheusImageTag('v3.16.0')).toBe('v3.16.0');
  });

  it('refuses what is not Prometheus 3.x', () => {
    expect(() => prometheusImageTag('v0.55.1')).toThrow(/not a Prometheus 3\.x version/); // 2.55.1
    expect(() => prometheusImageTag('v0.400.0')).toThrow(/not a Prometheus 3\.x version/);
    expect(() => prometheusImageTag('3.16.0')).toThrow(/not a Prometheus 3\.x version/);
    expect(() => prometheusImageTag('latest')).toThrow(/not a Prometheus 3\.x version/);
  });

  it('pins prom/prometheus and nginx:<version>-alpine from the pinned versions', () => {
    expect(containerImages({ PROMETHEUS_VERSION: 'v0.316.0', NGINX_VERSION: '1.22.1' })).toEqual({
      prometheus: 'prom/prometheus:v3.16.0',
      nginx: 'nginx:1.22.1-alpine',
    });
    const pinned = containerImages();
    const m = /^prom\/prometheus:v3\.(\d+)\.(\d+)$/.exec(pinned.prometheus);
    expect(m, pinned.prometheus).not.toBeNull();
    expect(`v0.3${m![1]!.padStart(2, '0')}.${m![2]}`).toBe(versions['PROMETHEUS_VERSION']);
    expect(pinned.nginx).toBe(`nginx:${versions['NGINX_VERSION']}-alpine`);
  });

  it('a missing or malformed NGINX_VERSION is an error', () => {
    expect(() => containerImages({ PROMETHEUS_VERSION: 'v0.316.0' })).toThrow(/NGINX_VERSION/);
    expect(() => containerImages({ PROMETHEUS_VERSION: 'v0.316.0', NGINX_VERSION: 'stable' })).toThrow(/NGINX_VERSION/);
    expect(() => containerImages({ NGINX_VERSION: '1.22.1' })).toThrow(/PROMETHEUS_VERSION/);
  });
});

describe('no reachable Docker engine', () => {
  it('the engine lookup failing becomes the clear error', async () => {
    await expect(requireContainerRuntime(async () => Promise.reject(new Error('Could not find a working container runtime strategy')))).rejects.toThrow(NO_ENGINE);
    await expect(requireContainerRuntime(async () => 'client')).resolves.toBeUndefined();
  });

  it.runIf(noEngineHere)("testcontainers' own lookup fails here, with our message", async () => {
    await expect(requireContainerRuntime()).rejects.toThrow(NO_ENGINE);
    await expect(requireContainerRuntime()).rejects.toThrow(/Could not find a working container runtime strategy/);
  });

  it.runIf(noEngineHere)('startPrometheus in containers mode fails clearly instead of starting the local binary', async () => {
    vi.stubEnv('LBAC_E2E_MODE', 'containers');
    await expect(startPrometheus({ openMetrics: '# EOF\n' })).rejects.toThrow(NO_ENGINE);
  });

  it.runIf(noEngineHere)('startNginx in containers mode fails clearly instead of starting the local binary', async () => {
    vi.stubEnv('LBAC_E2E_MODE', 'containers');
    await expect(startNginx()).rejects.toThrow(NO_ENGINE);
  });

  it('an unknown mode fails before anything starts', async () => {
    vi.stubEnv('LBAC_E2E_MODE', 'k8s');
    await expect(startPrometheus({ openMetrics: '# EOF\n' })).rejects.toThrow(/is not a mode/);
  });
});
