// OPA bundles: tar reading, manifest, data merge, signatures — against bundles
// built by the real, pinned `opa build -t wasm` (signed with --signing-key).
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildBundle, editBundle, generateSigningKey, type SigningKeyPair } from '../../e2e/harness/bundles.ts';
import { GatewayError } from '../../src/errors.ts';
import { loadBundle, mergeData, parseManifest } from '../../src/policy/bundle.ts';
import { bundleFileHash, canonicalJson } from '../../src/policy/bundle-digest.ts';
import type { VerificationConfig } from '../../src/policy/bundle-signature.ts';
import { readTar, gunzipBundle, BundleFormatError } from '../../src/policy/bundle-tar.ts';
import type { DecisionInput, RequestInfo } from '../../src/policy/decision.ts';
import { PolicyHolder } from '../../src/policy/holder.ts';

const metrics: RequestInfo = { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' };
const asUser = (groups: string[]): DecisionInput => ({ subject: { sub: 'u', groups, roles: [], auth: 'jwt', claims: {} }, request: metrics });
const team = (group: string, ns: string) => ({
  groups: [group],
  users: [],
  upstreams: ['*'],
  selectors: [[{ name: 'namespace', op: '=', value: ns }]],
  headers: {},
  labels: ['*'],
});
/** What the gateway passes as its own data (config with no teams). */
const configData = { lbac: { admins: { groups: ['admins'], users: [], headers: {} }, teams: {}, attributes: {} } };

let rsa: SigningKeyPair;
let ec: SigningKeyPair;
let other: SigningKeyPair;
let plain: Buffer; // unsigned, data: team-a
let signed: Buffer; // RS256, keyid default
let signedEc: Buffer; // ES256, claims keyid "ec-1", scope "prod"
const rsaKeys = (): VerificationConfig => ({ keys: [{ keyid: 'default', algorithm: 'RS256', publicKey: rsa.publicKeyPem }] });

beforeAll(async () => {
  rsa = generateSigningKey('RS256');
  ec = generateSigningKey('ES256');
  other = generateSigningKey('RS256');
  const data = { lbac: { teams: { 'team-a': team('team-a', 'ns-a') } } };
  const files = await Promise.all([
    buildBundle({ revision: 'plain-1', data }),
    buildBundle({ revision: 'signed-1', data, signingKey: rsa }),
    buildBundle({ revision: 'ec-1', data, signingKey: ec, claims: { keyid: 'ec-1', scope: 'prod' } }),
  ]);
  [plain, signed, signedEc] = files.map((f) => readFileSync(f)) as [Buffer, Buffer, Buffer];
}, 60_000);

async function rejected(p: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected the bundle to be rejected').toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe('policy_error');
  expect((err as GatewayError).message).toMatch(message);
}

describe('bundle archive', () => {
  it('reads the members opa build writes (absolute paths)', () => {
    const files = readTar(gunzipBundle(plain));
    expect([...files.keys()].sort()).toEqual(['/.manifest', '/data.json', '/lbac/claims.rego', '/lbac/decision.rego', '/policy.wasm']);
  });

  it('rejects not-gzip, truncated gzip, truncated tar and bad checksums', async () => {
    await rejected(loadBundle(Buffer.from('hello')), /not a gzip file/);
    await rejected(loadBundle(plain.subarray(0, Math.floor(plain.length / 2))), /gzip: unexpected end of file/);
    const tar = Buffer.from(gunzipBundle(plain));
    await rejected(loadBundle(gzipSync(tar.subarray(0, 1000))), /truncated archive/);
    const corrupt = Buffer.from(tar);
    corrupt[10] = corrupt[10]! ^ 0x55;
    await rejected(loadBundle(gzipSync(corrupt)), /bad header checksum/);
  });

  it('rejects path escapes, duplicates and non-regular members', () => {
    const evil = editBundle(plain, (_n, d) => d, { '/../../etc/passwd': Buffer.from('x') });
    expect(() => readTar(gunzipBundle(evil))).toThrow(/escapes the bundle/);
    const dup = editBundle(plain, (_n, d) => d, { 'data.json': Buffer.from('{}') });
    expect(() => readTar(gunzipBundle(dup))).toThrow(/duplicate member \/data.json/);
    const tar = Buffer.from(gunzipBundle(plain));
    tar[156] = '2'.charCodeAt(0); // first member becomes a symlink (checksum now wrong, fix it)
    tar.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += tar[i]!;
    tar.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
    expect(() => readTar(tar)).toThrow(BundleFormatError);
    expect(() => readTar(tar)).toThrow(/unsupported type "2"/);
  });

  it('bounds the uncompressed size (gzip bombs)', async () => {
    const bomb = gzipSync(Buffer.alloc(10 * 1024 * 1024));
    await rejected(loadBundle(bomb, { maxUncompressedBytes: 1024 * 1024 }), /larger than 1048576 bytes uncompressed/);
  });
});

describe('manifest, wasm and data', () => {
  it('loads a real opa build bundle: revision from the manifest, bundle data merged with config data', async () => {
    const b = await loadBundle(plain, { configData });
    expect(b.revision).toBe('plain-1');
    expect(b.manifest.wasm).toEqual([{ entrypoint: 'lbac/decision', module: '/policy.wasm' }]);
    expect(b.engine.evaluate(asUser(['team-a'])).selectors).toEqual([[{ name: 'namespace', op: '=', value: 'ns-a' }]]);
    expect(b.engine.evaluate(asUser(['admins'])).unrestricted).toBe(true); // from the config data
    expect(b.engine.evaluate(asUser(['team-b'])).allow).toBe(false);
  });

  it('a value set by both the bundle and the config is a conflict', async () => {
    const clash = { lbac: { ...configData.lbac, teams: { 'team-a': team('team-a', 'other') } } };
    await rejected(loadBundle(plain, { configData: clash }), /data conflict at lbac\.teams\.team-a\.groups/);
    expect(() => mergeData({ a: { b: 1 } }, { a: { c: 2 } })).not.toThrow();
    expect(() => mergeData({ a: [1] }, { a: [1] })).toThrow(/conflict at a/);
  });

  it('many data files merge into one document (each at its directory, objects key by key); two files setting one value conflict', async () => {
    // 3 000 teams, one data.json each, plus one that adds to team-7 from above it.
    const extra: Record<string, Buffer> = {};
    for (let i = 0; i < 3000; i++) extra[`/lbac/teams/t-${i}/data.json`] = Buffer.from(JSON.stringify({ ...team(`g-${i}`, `ns-${i}`), labels: undefined }));
    extra['/lbac/data.json'] = Buffer.from(JSON.stringify({ teams: { 't-7': { labels: ['*'] } } }));
    const many = editBundle(plain, (n, d) => (n === '/data.json' ? null : d), extra);
    const b = await loadBundle(many, { configData });
    expect(b.engine.evaluate(asUser(['g-2999'])).selectors).toEqual([[{ name: 'namespace', op: '=', value: 'ns-2999' }]]);
    expect(b.engine.evaluate(asUser(['g-7'])).selectors).toEqual([[{ name: 'namespace', op: '=', value: 'ns-7' }]]);
    const clash = editBundle(plain, (n, d) => d, { '/lbac/teams/team-a/data.json': Buffer.from(JSON.stringify({ selectors: [] })) });
    await rejected(loadBundle(clash, { configData }), /data conflict at lbac\.teams\.team-a\.selectors/);
    const scalarAbove = editBundle(plain, (n, d) => d, { '/lbac/teams/team-a/groups/data.json': Buffer.from('{"x": 1}') });
    await rejected(loadBundle(scalarAbove, { configData }), /data conflict at lbac\.teams\.team-a\.groups/);
  });

  it('a merge never changes a data file\'s own objects: a YAML alias shared by two teams stays one team\'s value', async () => {
    // team-y's headers are an alias of team-x's; a nested file adds a tenant to team-x only (opa eval agrees).
    const yaml = `lbac:
  teams:
    team-x: { groups: [gx], users: [], upstreams: ["*"], labels: ["*"], selectors: [[{ name: namespace, op: "=", value: x }]], headers: &h {} }
    team-y: { groups: [gy], users: [], upstreams: ["*"], labels: ["*"], selectors: [[{ name: namespace, op: "=", value: y }]], headers: *h }
`;
    const b = editBundle(plain, (n, d) => (n === '/data.json' ? null : d), {
      '/data.yaml': Buffer.from(yaml),
      '/lbac/teams/team-x/headers/data.json': Buffer.from('{"X-Scope-OrgID": "tenant-x"}'),
    });
    const loaded = await loadBundle(b, { configData });
    expect(loaded.engine.evaluate(asUser(['gx'])).headers).toEqual({ 'X-Scope-OrgID': 'tenant-x' });
    expect(loaded.engine.evaluate(asUser(['gy'])).headers).toEqual({});
  });

  it('"__proto__" keys of data files are data like any other key, merged and never a prototype', async () => {
    const b = editBundle(plain, (n, d) => d, {
      '/x/data.json': Buffer.from('{"__proto__": {"polluted": true}, "a": {"__proto__": {"k": 1}}}'),
      '/x/a/data.json': Buffer.from('{"__proto__": {"j": 2}}'),
    });
    await loadBundle(b, { configData });
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('k');
    expect(Object.prototype).not.toHaveProperty('j');
  });

  it('data outside the manifest roots is rejected; data under them is accepted', async () => {
    // opa build itself enforces roots, so the "outside" case edits the manifest afterwards.
    const built = readFileSync(await buildBundle({ revision: 'roots-1', roots: ['lbac'], data: { lbac: { teams: { t: team('g', 'n') } } } }));
    const b = await loadBundle(built, { configData });
    expect(b.manifest.roots).toEqual(['lbac']);
    expect(b.engine.evaluate(asUser(['g'])).allow).toBe(true);
    const narrowed = editBundle(built, (n, d) => (n === '/.manifest' ? Buffer.from(JSON.stringify({ ...JSON.parse(d.toString()), roots: ['lbac/teams', 'lbac/decision'] })) : d));
    expect((await loadBundle(narrowed, { configData })).manifest.roots).toEqual(['lbac/teams', 'lbac/decision']);
    const outside = editBundle(narrowed, (n, d) => (n === '/data.json' ? Buffer.from('{"lbac": {"teams": {}, "admins": {"groups": ["x"]}}}') : d));
    await rejected(loadBundle(outside), /data at lbac\/admins is outside the manifest roots \[lbac\/teams, lbac\/decision\]/);
  });

  it('a bundle built for another entrypoint, or without wasm, or with a broken wasm is rejected', async () => {
    const otherEp = await buildBundle({ revision: 'ep', entrypoint: 'lbac/allow_all', rego: { 'lbac/extra.rego': 'package lbac\nallow_all := true\n' } });
    await rejected(loadBundle(readFileSync(otherEp)), /no wasm module for entrypoint lbac\/decision \(it has: lbac\/allow_all\)/);
    await rejected(loadBundle(editBundle(plain, (n, d) => (n === '/policy.wasm' ? null : d))), /lacks \/policy.wasm/);
    await rejected(loadBundle(editBundle(plain, (n, d) => (n === '/policy.wasm' ? Buffer.from('\0asm\x01\0\0\0') : d))), /not an OPA policy/);
    await rejected(loadBundle(editBundle(plain, (n, d) => (n === '/policy.wasm' ? Buffer.from('garbage') : d))), /not a valid WebAssembly module/);
    await rejected(loadBundle(editBundle(plain, (n, d) => (n === '/.manifest' ? Buffer.from('{"revision": 3}') : d))), /revision must be a string/);
    await rejected(loadBundle(editBundle(plain, (n, d) => (n === '/data.json' ? Buffer.from('{nope') : d))), /data.json: not valid JSON/);
  });

  it('parseManifest: defaults and overlapping roots', () => {
    expect(parseManifest(undefined)).toEqual({ revision: '', roots: [''], wasm: [] });
    expect(() => parseManifest(Buffer.from('{"roots": ["a", "a/b"]}'))).toThrow(/roots overlap/);
  });
});

describe('signatures (opa build --signing-key)', () => {
  it('accepts RS256 signed by opa build with the configured public key', async () => {
    const b = await loadBundle(signed, { configData, verification: rsaKeys() });
    expect(b.signedBy).toBe('default');
    expect(b.revision).toBe('signed-1');
  });

  it('accepts ES256 with keyid and scope from the claims file', async () => {
    const verification: VerificationConfig = { keys: [{ keyid: 'ec-1', algorithm: 'ES256', publicKey: ec.publicKeyPem }], scope: 'prod' };
    expect((await loadBundle(signedEc, { configData, verification })).signedBy).toBe('ec-1');
    await rejected(loadBundle(signedEc, { configData, verification: { ...verification, scope: 'staging' } }), /scope "prod" does not match the required scope "staging"/);
    await rejected(
      loadBundle(signedEc, { configData, verification: { keys: [{ keyid: 'ec-1', algorithm: 'ES256', publicKey: ec.publicKeyPem, scope: 'dev' }] } }),
      /does not match the required scope "dev"/,
    );
  });

  it('rejects an unsigned bundle when verification is configured', async () => {
    await rejected(loadBundle(plain, { configData, verification: rsaKeys() }), /not signed \(no \.signatures\.json\)/);
  });

  it('rejects a signature from another key, and an algorithm mismatch', async () => {
    await rejected(loadBundle(signed, { configData, verification: { keys: [{ keyid: 'default', algorithm: 'RS256', publicKey: other.publicKeyPem }] } }), /does not verify with key "default"/);
    await rejected(loadBundle(signed, { configData, verification: { keys: [{ keyid: 'k', algorithm: 'RS256', publicKey: rsa.publicKeyPem }] } }), /"default" is not a configured verification key/);
    await rejected(loadBundle(signed, { configData, verification: { keys: [{ keyid: 'default', algorithm: 'ES256', publicKey: ec.publicKeyPem }] } }), /does not verify/);
  });

  it('rejects tampered, added and removed files (exact file set)', async () => {
    const v = { configData, verification: rsaKeys() };
    const widen = Buffer.from(JSON.stringify({ lbac: { teams: { 'team-a': team('team-a', 'ns-b') } } }));
    await rejected(loadBundle(editBundle(signed, (n, d) => (n === '/data.json' ? widen : d)), v), /data.json: digest mismatch/);
    await rejected(loadBundle(editBundle(signed, (n, d) => (n === '/policy.wasm' ? Buffer.concat([d, Buffer.from([0])]) : d)), v), /policy.wasm: digest mismatch/);
    await rejected(loadBundle(editBundle(signed, (_n, d) => d, { '/extra/data.json': Buffer.from('{"x": 1}') }), v), /extra\/data.json is not covered/);
    await rejected(loadBundle(editBundle(signed, (n, d) => (n.endsWith('.rego') ? null : d)), v), /listed in the bundle signature but missing/);
    const forged = editBundle(signed, (n, d) => (n === '/.signatures.json' ? Buffer.from(d.toString().replace(/"ey[^"]+"/, '"e30.e30.AAAA"')) : d));
    await rejected(loadBundle(forged, v), /signature/);
  });

  it('hashes JSON files canonically, as OPA does: re-formatted data still verifies', async () => {
    const reformatted = editBundle(signed, (n, d) => (n === '/data.json' ? Buffer.from(JSON.stringify(JSON.parse(d.toString()), null, 4)) : d));
    expect((await loadBundle(reformatted, { configData, verification: rsaKeys() })).revision).toBe('signed-1');
    expect(canonicalJson('{ "b": 1.50, "a": [true, null, "x<&>\u2028"] }')).toBe('{"a":[true,null,"x<&>\\u2028"],"b":1.50}');
    expect(bundleFileHash('/data.json', Buffer.from('{}'))).toBe('44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
  });
});

describe('PolicyHolder', () => {
  it('is not ready and fails closed (503) before the first activation; swaps atomically and notifies', async () => {
    const holder = new PolicyHolder();
    expect(holder.ready).toBe(false);
    expect(() => holder.decide(asUser(['team-a']))).toThrow(expect.objectContaining({ code: 'policy_unavailable', status: 503 }));
    const seen: string[] = [];
    holder.onSwap((next, prev) => seen.push(`${prev?.revision ?? '-'}→${next.revision}`));
    const a = await loadBundle(plain, { configData });
    holder.activate(a.engine, 'bundle:test');
    expect(holder.decide(asUser(['team-a'])).allow).toBe(true);
    const b = await loadBundle(signed, { configData });
    holder.activate(b.engine, 'bundle:test');
    expect(seen).toEqual(['-→plain-1', 'plain-1→signed-1']);
    expect(holder.info).toMatchObject({ revision: 'signed-1', source: 'bundle:test' });
  });
});
