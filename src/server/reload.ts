/**
 * Config hot reload: what a new config may change at run time, and what needs
 * a restart. Pure; the swap itself is in src/server/index.ts.
 */
import { createHash } from 'node:crypto';
import type { GatewayConfig } from '../config/load.ts';

/**
 * Keys a reload cannot apply (the listener, the Fastify app's routes, the
 * bundle client): a change is logged as needing a restart and the running
 * value is kept. Everything else — teams, admins, janus, policy.wasm and
 * attributes (policy data; in bundle mode merged into the active bundle
 * again), identity providers, audit — is swapped.
 */
export function restartRequiredChanges(running: GatewayConfig, next: GatewayConfig): string[] {
  const changed: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  for (const key of Object.keys({ ...running.server, ...next.server }) as (keyof GatewayConfig['server'])[]) {
    if (!same(running.server[key], next.server[key])) changed.push(`server.${key}`);
  }
  if (!same(running.upstreams, next.upstreams)) changed.push('upstreams');
  if (!same(running.policy.bundle, next.policy.bundle)) changed.push('policy.bundle');
  if (running.policy.entrypoint !== next.policy.entrypoint) changed.push('policy.entrypoint');
  if ((running.policy.bundle === undefined) !== (next.policy.bundle === undefined)) changed.push('policy.wasm');
  return changed;
}

/**
 * The config a reload activates: the new file's reloadable parts on top of the
 * running config's restart-only parts, so what runs always matches what is
 * reported.
 */
export function mergeReloadable(running: GatewayConfig, next: GatewayConfig): GatewayConfig {
  return {
    ...next,
    server: running.server,
    upstreams: running.upstreams,
    policy: { ...next.policy, bundle: running.policy.bundle, entrypoint: running.policy.entrypoint },
  };
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
  const reloadable = { ...config, server: undefined, upstreams: undefined, policy: { ...config.policy, bundle: undefined, entrypoint: undefined } };
  return createHash('sha256').update(JSON.stringify(reloadable)).update('\n').update(keyDigest ?? '').digest('hex');
}

/** Short hash of the policy data (teams, admins): changes exactly when the data a decision reads changes. */
export function dataRevision(config: GatewayConfig): string {
  return createHash('sha256').update(JSON.stringify(config.policyData)).digest('hex').slice(0, 12);
}
