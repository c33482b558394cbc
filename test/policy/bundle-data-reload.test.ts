// Bundle mode: a config reload that changes the team data (a user's group removed from a team)
// applies to the active bundle at the reload's swap (BundleClient.prepareReload), and a
// download running meanwhile is never activated with the data the reload replaced.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle, generateSigningKey, serveBundles, type SigningKeyPair } from '../../e2e/harness/bundles.ts';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { BundleConfig } from '../../src/config/schema.ts';
import { isGatewayError } from '../../src/errors.ts';
import { BundleClient } from '../../src/policy/bundle-client.ts';
import type { DecisionInput, Subject } from '../../src/policy/decision.ts';
import { PolicyHolder } from '../../src/policy/holder.ts';

const quiet = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };
const alice: Subject = Object.freeze({ sub: 'u-alice', username: 'alice', groups: Object.freeze(['team-a']), roles: Object.freeze([]), auth: 'fake', claims: {} });
const input: DecisionInput = { subject: alice, request: Object.freeze({ upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' }) };

function data(teams: string): Record<string, unknown> {
  const config = parseConfig(
    `
upstreams:
  - { name: metrics, kind: prometheus, url: "http://127.0.0.1:1", mount: /prometheus }
identity:
  providers:
    - type: apikey
      keys: [{ name: unused, hash: "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" }]
teams:
${teams}
`,
    { env: {} },
  );
  return { lbac: config.policyData };
}
// Alice is in team-a and team-b; the reload takes her out of team-b.
const WIDE = data(`  team-a: { groups: [team-a], selectors: [{ namespace: a }] }\n  team-b: { groups: [team-a], selectors: [{ namespace: b }] }`);
const NARROW = data(`  team-a: { groups: [team-a], selectors: [{ namespace: a }] }\n  team-b: { groups: [others], selectors: [{ namespace: b }] }`);
const namespaces = (holder: PolicyHolder): string[] =>
  holder
    .decide(input)
    .selectors.flatMap((g) => g.map((m) => m.value))
    .sort();

let service: { url: string; close(): Promise<void> };
let b1: Buffer;
let b2: Buffer;
let withTeamB: Buffer;
let k1: SigningKeyPair;
let k2: SigningKeyPair;
/** Signed with k1 (the retired key): the wide revision; with k2 (the new key): the narrow one. */
let oldWide: Buffer;
let newNarrow: Buffer;
let served: { body: Buffer; etag: string };
let hold: Promise<void> = Promise.resolve();

beforeAll(async () => {
  b1 = readFileSync(await buildBundle({ revision: 'one' }));
  b2 = readFileSync(await buildBundle({ revision: 'two' }));
  // A bundle whose own data.json sets team-b: config data that also sets it conflicts.
  withTeamB = readFileSync(await buildBundle({ revision: 'own-team-b', data: { lbac: { teams: { 'team-b': { groups: ['x'], users: [], upstreams: [], selectors: [[{ name: 'namespace', op: '=', value: 'b' }]], headers: {} } } } } }));
  k1 = generateSigningKey('RS256');
  k2 = generateSigningKey('RS256');
  oldWide = readFileSync(await buildBundle({ revision: 'old-wide', signingKey: k1 }));
  newNarrow = readFileSync(await buildBundle({ revision: 'new-narrow', signingKey: k2 }));
  served = { body: b1, etag: '"1"' };
  service = await serveBundles(() => served, () => hold);
}, 60_000);
afterAll(() => service?.close());

function config(): BundleConfig {
  return { url: service.url, resource: 'b.tar.gz', auth: { type: 'none', scheme: 'Bearer' }, polling: { minDelaySeconds: 60, maxDelaySeconds: 120 }, timeoutMs: 5_000, maxSizeBytes: 10 * 1024 * 1024 };
}

describe('BundleClient.prepareReload', () => {
  it('a narrowed team applies to the active bundle at commit (same revision), not before', async () => {
    served = { body: b1, etag: '"1"' };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: config(), holder, entrypoint: 'lbac/decision', configData: WIDE, logger: quiet });
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'one' });
    expect(namespaces(holder)).toEqual(['a', 'b']);
    const prepared = await client.prepareReload(NARROW);
    expect(namespaces(holder)).toEqual(['a', 'b']); // the reload has not swapped yet
    prepared.commit();
    expect(namespaces(holder)).toEqual(['a']);
    expect(holder.revision).toBe('one');
    // The next download is merged with the new data too.
    served = { body: b2, etag: '"2"' };
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'two' });
    expect(namespaces(holder)).toEqual(['a']);
  });

  it('a download that arrives while a reload is pending is activated after it, with the new data', async () => {
    served = { body: b1, etag: '"1"' };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: config(), holder, entrypoint: 'lbac/decision', configData: WIDE, logger: quiet });
    await client.poll();
    const prepared = await client.prepareReload(NARROW);
    served = { body: b2, etag: '"2"' };
    let polled = false;
    const poll = client.poll().then((o) => ((polled = true), o));
    await new Promise((r) => setTimeout(r, 500));
    expect(polled).toBe(false); // waits for the reload: activating now would merge the replaced data
    expect(holder.revision).toBe('one');
    prepared.commit();
    expect(await poll).toMatchObject({ kind: 'activated', revision: 'two' });
    expect(namespaces(holder)).toEqual(['a']);
  });

  it('a rejected reload (release) changes nothing and lets downloads go on', async () => {
    served = { body: b1, etag: '"1"' };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: config(), holder, entrypoint: 'lbac/decision', configData: WIDE, logger: quiet });
    await client.poll();
    const prepared = await client.prepareReload(NARROW);
    prepared.release();
    prepared.commit(); // after release: nothing
    expect(namespaces(holder)).toEqual(['a', 'b']);
    served = { body: b2, etag: '"2"' };
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'two' });
    expect(namespaces(holder)).toEqual(['a', 'b']);
  });

  it('data the active bundle does not load with rejects the reload (config_invalid); the policy stays', async () => {
    served = { body: withTeamB, etag: '"b"' };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: config(), holder, entrypoint: 'lbac/decision', configData: data(`  team-a: { groups: [team-a], selectors: [{ namespace: a }] }`), logger: quiet });
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'own-team-b' });
    const e = await client.prepareReload(WIDE).catch((err: unknown) => err);
    expect(isGatewayError(e) && e.code).toBe('config_invalid');
    expect(holder.revision).toBe('own-team-b');
    expect(namespaces(holder)).toEqual(['a']);
    // Not left locked: the next download is activated.
    served = { body: b2, etag: '"2"' };
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'two' });
  });

  it('before any bundle is active, the new data is what the first download is merged with', async () => {
    served = { body: b1, etag: '"1"' };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: config(), holder, entrypoint: 'lbac/decision', configData: WIDE, logger: quiet });
    (await client.prepareReload(NARROW)).commit();
    expect(holder.ready).toBe(false);
    await client.poll();
    expect(namespaces(holder)).toEqual(['a']);
  });
});

describe('BundleClient.prepareReload: a signing key rotated in its file', () => {
  /** A client verifying with k1 read from a key file, the retired key's wide bundle served. */
  async function clientWithKeyFile() {
    const keyFile = join(tempDir('lbac-bundle-keys-'), 'bundle.pem');
    writeFileSync(keyFile, k1.publicKeyPem);
    const signing = { keys: [{ keyid: 'default', algorithm: 'RS256' as const, publicKeyFile: keyFile }], excludeFiles: [] };
    served = { body: oldWide, etag: '"w1"' };
    const holder = new PolicyHolder();
    const client = await BundleClient.create({ config: { ...config(), signing }, holder, entrypoint: 'lbac/decision', configData: WIDE, logger: quiet });
    return { keyFile, holder, client };
  }

  it('verifies later bundles with the new key and none with the retired one; the active bundle stays until then', async () => {
    const { keyFile, holder, client } = await clientWithKeyFile();
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'old-wide' });
    // Before the reload, the new key's bundle is refused.
    served = { body: newNarrow, etag: '"n1"' };
    expect(await client.poll()).toMatchObject({ kind: 'failed' });
    // The operator replaces the key file (same path) and reloads; nothing changes until the swap.
    writeFileSync(keyFile, k2.publicKeyPem);
    const prepared = await client.prepareReload(undefined);
    expect(holder.revision).toBe('old-wide');
    prepared.commit();
    expect(holder.revision).toBe('old-wide');
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'new-narrow' });
    // The retired key's bundle, served again (a stale mirror, a replay), is refused now.
    served = { body: oldWide, etag: '"w2"' };
    expect(await client.poll()).toMatchObject({ kind: 'failed', error: expect.stringMatching(/signature/) });
    expect(holder.revision).toBe('new-narrow');
  });

  it('after a key rotation the next request is unconditional: a 304 does not keep the retired key\'s bundle looking healthy', async () => {
    const { keyFile, holder, client } = await clientWithKeyFile();
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'old-wide' });
    expect(await client.poll()).toEqual({ kind: 'not-modified' });
    writeFileSync(keyFile, k2.publicKeyPem);
    (await client.prepareReload(undefined)).commit();
    // The service still has the retired key's bundle (same ETag): downloaded again, and refused.
    expect(await client.poll()).toMatchObject({ kind: 'failed', error: expect.stringMatching(/signature/) });
    expect(client.status.consecutiveFailures).toBe(1);
    expect(holder.revision).toBe('old-wide');
  });

  it('a reload that changes neither data nor keys holds up no download (the reload may wait on identity providers)', async () => {
    const { client } = await clientWithKeyFile();
    await client.poll();
    const prepared = await client.prepareReload(undefined);
    // Not committed yet: a download is activated all the same.
    served = { body: readFileSync(await buildBundle({ revision: 'old-wide-2', signingKey: k1 })), etag: '"w2"' };
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'old-wide-2' });
    prepared.commit();
  });

  it('team data can still change while the active bundle is one the retired key signed', async () => {
    const { keyFile, holder, client } = await clientWithKeyFile();
    await client.poll();
    writeFileSync(keyFile, k2.publicKeyPem);
    (await client.prepareReload(undefined)).commit();
    (await client.prepareReload(NARROW)).commit();
    expect(holder.revision).toBe('old-wide');
    expect(namespaces(holder)).toEqual(['a']);
  });

  it('a key file that no longer holds a key rejects the reload (config_invalid); the keys stay', async () => {
    const { keyFile, client } = await clientWithKeyFile();
    writeFileSync(keyFile, 'not a key\n');
    const e = await client.prepareReload(undefined).catch((err: unknown) => err);
    expect(isGatewayError(e) && e.code).toBe('config_invalid');
    // Not left locked, and still verifying with k1.
    expect(await client.poll()).toMatchObject({ kind: 'activated', revision: 'old-wide' });
  });
});
