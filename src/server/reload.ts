/**
 * Config hot reload: what a new config may change at run time, and what needs
 * a restart. Pure; the swap itself is in src/server/index.ts.
 */
import { createHash } from 'node:crypto';
import type { GatewayConfig } from '../config/load.ts';

/**
 * The config keys a reload cannot apply (the listener, the Fastify app's
 * routes, the bundle client): a change is logged as needing a restart and the
 * running value is kept. Everything else — teams, admins, janus, policy.wasm
 * and attributes (policy data; in bundle mode merged into the active bundle
 * again), identity providers, audit — is swapped. The one list the three
 * functions below read: a key in one and not another would make workers
 * disagree for good.
 */
const RESTART_ONLY = [['server'], ['upstreams'], ['policy', 'bundle'], ['policy', 'entrypoint']] as const;

type Path = (typeof RESTART_ONLY)[number];

function valueAt(config: GatewayConfig, path: Path): unknown {
  return path.length === 1 ? config[path[0]] : config[path[0]][path[1]];
}

/** `config` with every restart-only key holding its value in `from` (absent when `from` is). */
function withRestartOnlyOf(config: GatewayConfig, from: GatewayConfig | undefined): GatewayConfig {
  const out: Record<string, unknown> = { ...config, policy: { ...config.policy } };
  for (const path of RESTART_ONLY) {
    const value = from === undefined ? undefined : valueAt(from, path);
    if (path.length === 1) out[path[0]] = value;
    else (out[path[0]] as Record<string, unknown>)[path[1]] = value;
  }
  return out as unknown as GatewayConfig;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The restart-only keys `next` changes (`server` key by key), for the log. */
export function restartRequiredChanges(running: GatewayConfig, next: GatewayConfig): string[] {
  const changed: string[] = [];
  for (const path of RESTART_ONLY) {
    if (same(valueAt(running, path), valueAt(next, path))) continue;
    if (path[0] === 'server') {
      for (const key of Object.keys({ ...running.server, ...next.server }) as (keyof GatewayConfig['server'])[]) {
        if (!same(running.server[key], next.server[key])) changed.push(`server.${key}`);
      }
    } else changed.push(path.join('.'));
  }
  // Switching between file and bundle mode also changes what policy.wasm means.
  if ((running.policy.bundle === undefined) !== (next.policy.bundle === undefined)) changed.push('policy.wasm');
  return changed;
}

/**
 * The config a reload activates: the new file's reloadable parts on top of the
 * running config's restart-only parts, so what runs always matches what is
 * reported.
 */
export function mergeReloadable(running: GatewayConfig, next: GatewayConfig): GatewayConfig {
  return withRestartOnlyOf(next, running);
}

/**
 * Digest of everything a reload can change (the config but its restart-only
 * parts, which mergeReloadable keeps: a worker started after an edit reads
 * those anew) and of the key files it names (`keyDigest`): two workers with
 * the same digest serve alike, but for the policy wasm's bytes (the cluster
 * readiness adds the policy revision where a reload reads the file). It covers
 * secrets (API key hashes, client secrets): compared, never shown.
 */
export function configRevision(config: GatewayConfig, keyDigest: string | undefined): string {
  return createHash('sha256').update(JSON.stringify(withRestartOnlyOf(config, undefined))).update('\n').update(keyDigest ?? '').digest('hex');
}

/** Short hash of the policy data (teams, admins): changes exactly when the data a decision reads changes. */
export function dataRevision(config: GatewayConfig): string {
  return createHash('sha256').update(JSON.stringify(config.policyData)).digest('hex').slice(0, 12);
}
