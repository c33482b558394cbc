// A bundle that cannot be persisted (a full disk, a read-only volume) must not leave the older persisted
// bundle — possibly a revoked policy — as the one a start during a bundle-service outage activates.
// The failure is injected into node:fs/promises' rename (the last step of each atomic write).
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { buildBundle, serveBundles, type ServedBundle } from '../../e2e/harness/bundles.ts';
import type { BundleConfig } from '../../src/config/schema.ts';
import { BundleClient, type BundleLogger } from '../../src/policy/bundle-client.ts';
import { PolicyHolder } from '../../src/policy/holder.ts';

/** When set, renaming onto a file with this name fails (ENOSPC); `held`: waits for this promise first. */
const failing = vi.hoisted(() => ({ name: undefined as string | undefined, held: undefined as { name: string; until: Promise<void>; reached: () => void } | undefined }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...fs,
    rename: async (from: string, to: string) => {
      const held = failing.held;
      if (held !== undefined && basename(String(to)) === held.name) {
        held.reached();
        await held.until;
      }
      if (failing.name !== undefined && basename(String(to)) === failing.name) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      return fs.rename(from, to);
    },
  };
});

let service: { url: string; close(): Promise<void> };
let served: ServedBundle;
let wide: Buffer;
let narrow: Buffer;

beforeAll(async () => {
  wide = readFileSync(await buildBundle({ revision: 'wide' }));
  narrow = readFileSync(await buildBundle({ revision: 'narrow' }));
  service = await serveBundles(() => served);
}, 60_000);
afterAll(() => service?.close());

const silent = { info: () => {}, warn: () => {}, debug: () => {}, error: () => {} };
/** A client of the test service persisting to `dir` (a process, or a worker, sharing it). */
const clientIn = (dir: string, logger: BundleLogger = silent, holder = new PolicyHolder()): Promise<BundleClient> =>
  BundleClient.create({ config: config(dir), holder, entrypoint: 'lbac/decision', configData: {}, logger });

const config = (persistDir: string): BundleConfig => ({
  url: service.url,
  resource: 'b.tar.gz',
  auth: { type: 'none', scheme: 'Bearer' },
  polling: { minDelaySeconds: 60, maxDelaySeconds: 120 },
  timeoutMs: 2_000,
  maxSizeBytes: 10 * 1024 * 1024,
  persistDir,
});

it('a bundle that cannot be persisted invalidates the older one: a start with the service down waits, it does not activate the older policy', async () => {
  const dir = tempDir('lbac-persist-fail-');
  const errors: string[] = [];
  const logger = { info: () => {}, warn: () => {}, debug: () => {}, error: (_o: unknown, msg?: string) => void errors.push(msg ?? '') };
  const first = await clientIn(dir, logger);
  served = { body: wide, etag: '"w"' };
  expect(await first.poll()).toMatchObject({ kind: 'activated', revision: 'wide' });
  expect(existsSync(join(dir, 'bundle.json'))).toBe(true);
  // The narrowing bundle is activated, but its file cannot be written.
  failing.name = 'bundle.tar.gz';
  served = { body: narrow, etag: '"n"' };
  try {
    expect(await first.poll()).toMatchObject({ kind: 'activated', revision: 'narrow' });
  } finally {
    failing.name = undefined;
  }
  expect(errors.some((m) => /could not persist the policy bundle; no older persisted bundle will be activated/.test(m))).toBe(true);
  // A restart (or a replacement worker) while the service is down.
  served = undefined;
  const holder = new PolicyHolder();
  const restarted = await clientIn(dir, logger, holder);
  expect(await restarted.loadPersisted()).toBeUndefined();
  expect(holder.ready).toBe(false);
});

it('bundle.json that cannot be written leaves no persisted bundle a start would use either', async () => {
  const dir = tempDir('lbac-persist-fail-');
  const logger = silent;
  const first = await clientIn(dir, logger);
  served = { body: wide, etag: '"w"' };
  await first.poll();
  failing.name = 'bundle.json';
  served = { body: narrow, etag: '"n"' };
  try {
    await first.poll();
  } finally {
    failing.name = undefined;
  }
  served = undefined;
  const holder = new PolicyHolder();
  const restarted = await clientIn(dir, logger, holder);
  expect(await restarted.loadPersisted()).toBeUndefined();
  // Once persisting works again, the next activation is persisted as usual.
  served = { body: wide, etag: '"w2"' };
  expect(await first.poll()).toMatchObject({ kind: 'activated', revision: 'wide' });
  expect(await restarted.loadPersisted()).toBe('wide');
});

it('a worker starting from persistDir while a sibling writes a new bundle there finds the older bundle whole', async () => {
  const dir = tempDir('lbac-persist-race-');
  const logger = silent;
  const writer = await clientIn(dir, logger);
  served = { body: wide, etag: '"w"' };
  await writer.poll();
  // The next bundle's file is being written (held just before its rename) while a sibling starts.
  let release!: () => void;
  let reached!: () => void;
  const atRename = new Promise<void>((r) => (reached = r));
  failing.held = { name: 'bundle.tar.gz', until: new Promise<void>((r) => (release = r)), reached };
  served = { body: narrow, etag: '"n"' };
  const polling = writer.poll();
  try {
    await atRename;
    const sibling = await clientIn(dir, logger);
    expect(await sibling.loadPersisted()).toBe('wide');
  } finally {
    failing.held = undefined;
    release();
  }
  expect(await polling).toMatchObject({ kind: 'activated', revision: 'narrow' });
  const later = await clientIn(dir, logger);
  expect(await later.loadPersisted()).toBe('narrow');
});
