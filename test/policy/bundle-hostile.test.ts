// Bundles from a hostile bundle server or network path (the signing key not in hand): read as
// OPA reads them (Go's archive/tar, OPA's signature rules), and at the cost of reading them.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { CompactSign, importPKCS8 } from 'jose';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildBundle, editBundle, generateSigningKey, type SigningKeyPair } from '../../e2e/harness/bundles.ts';
import { GatewayError } from '../../src/errors.ts';
import { loadBundle } from '../../src/policy/bundle.ts';
import { bundleFileHash, canonicalJson } from '../../src/policy/bundle-digest.ts';
import { bundleFileHashes } from '../../src/policy/bundle-hash.ts';
import type { VerificationConfig } from '../../src/policy/bundle-signature.ts';
import { readTar } from '../../src/policy/bundle-tar.ts';

const configData = { lbac: { admins: { groups: ['admins'], users: [], headers: {} }, teams: {}, attributes: {} } };
let rsa: SigningKeyPair;
let ec: SigningKeyPair;
let signed: Buffer; // RS256, keyid default, no scope
let scoped: Buffer; // ES256, keyid ec-1, scope staging
const rsaKeys = (): VerificationConfig => ({ keys: [{ keyid: 'default', algorithm: 'RS256', publicKey: rsa.publicKeyPem }] });

beforeAll(async () => {
  rsa = generateSigningKey('RS256');
  ec = generateSigningKey('ES256');
  const data = { lbac: { teams: {} } };
  const files = await Promise.all([
    buildBundle({ revision: 'signed-1', data, signingKey: rsa }),
    buildBundle({ revision: 'staging-1', data, signingKey: ec, claims: { keyid: 'ec-1', scope: 'staging' } }),
  ]);
  [signed, scoped] = files.map((f) => readFileSync(f)) as [Buffer, Buffer];
}, 60_000);

async function rejection(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected the bundle to be rejected').toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe('policy_error');
  return (err as GatewayError).message;
}

// ---- a tar writer for members Go's reader and a careless one read differently ------------

function header(name: string, size: number, type: string): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100, 8, 'ascii');
  h.write('0000000\0', 108, 8, 'ascii');
  h.write('0000000\0', 116, 8, 'ascii');
  h.write(size.toString(8).padStart(11, '0') + '\0', 124, 12, 'ascii');
  h.write('00000000000\0', 136, 12, 'ascii');
  h.write(type, 156, 1, 'latin1');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}
const pad = (data: Buffer): Buffer => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
const member = (name: string, data: Buffer, type = '0'): Buffer => Buffer.concat([header(name, data.length, type), pad(data)]);
const paxRecord = (key: string, value: string): string => {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return `${len}${body}`;
};
const pax = (records: Record<string, string>): Buffer => member('PaxHeaders/x', Buffer.from(Object.entries(records).map(([k, v]) => paxRecord(k, v)).join('')), 'x');
const END = Buffer.alloc(1024);

describe('the archive, as Go\'s archive/tar (OPA) reads it', () => {
  const data = member('/d/data.json', Buffer.from('{"who":"hidden"}'));
  it('a PAX size record (Go reads the member\'s data by it) is refused, not ignored', () => {
    // Go: x.txt's data is the next 1024 bytes (d/data.json is swallowed); a reader ignoring it would load d/data.json.
    const tar = Buffer.concat([pax({ size: '1024' }), header('/x.txt', 0, '0'), data, END]);
    expect(() => readTar(tar)).toThrow(/PAX record "size" is not supported/);
    expect(() => readTar(Buffer.concat([pax({ 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0' }), member('/x.txt', Buffer.from('x')), END]))).toThrow(/PAX record "GNU.sparse.major"/);
    // Records that only describe a member are read as before.
    expect([...readTar(Buffer.concat([pax({ mtime: '1700000000.5', uname: 'ci', path: 'd/data.json' }), member('/ignored', Buffer.from('{}')), END])).keys()]).toEqual(['/d/data.json']);
  });
  it('members of a type OPA does not load (contiguous "7"; an old regular "\\0" named as a directory) are refused', () => {
    expect(() => readTar(Buffer.concat([member('/d/data.json', Buffer.from('{}'), '7'), END]))).toThrow(/unsupported type "7"/);
    expect(() => readTar(Buffer.concat([member('/d/data.json/', Buffer.from('{}'), '\0'), END]))).toThrow(/unsupported type/);
    expect([...readTar(Buffer.concat([member('/d/data.json', Buffer.from('{}'), '\0'), END])).keys()]).toEqual(['/d/data.json']);
  });
  it('a directory member is read without data whatever its size says, as Go reads it (the block after it is the next header)', () => {
    // A size over the member hidden "inside" the directory: a reader skipping the size would not see it; OPA does.
    const hidden = Buffer.concat([header('/x/data.json', 2, '0'), pad(Buffer.from('{}'))]);
    const dir = header('/x/', hidden.length, '5');
    expect([...readTar(Buffer.concat([dir, hidden, END])).keys()]).toEqual(['/x/data.json']);
    expect([...readTar(Buffer.concat([member('/x/', Buffer.alloc(0), '5'), member('/x/data.json', Buffer.from('{}')), END])).keys()]).toEqual(['/x/data.json']);
  });
  it('a lone zero block before a header is refused (Go: invalid header); the end is two zero blocks', () => {
    expect(() => readTar(Buffer.concat([member('/a.txt', Buffer.from('a')), Buffer.alloc(512), data, END]))).toThrow(/zero block before a header/);
    // After two zero blocks Go reads nothing more; one zero block at the very end is an end too.
    expect([...readTar(Buffer.concat([member('/a.txt', Buffer.from('a')), END, data])).keys()]).toEqual(['/a.txt']);
    expect([...readTar(Buffer.concat([member('/a.txt', Buffer.from('a')), Buffer.alloc(512)])).keys()]).toEqual(['/a.txt']);
  });
});

// ---- signature payloads the gateway read more loosely than OPA --------------------------

/** The bundle with its signature payload edited and signed again with the (trusted) RSA key. */
async function resigned(bundle: Buffer, edit: (payload: { files: { name: string; hash: string; algorithm?: string }[] }) => void): Promise<Buffer> {
  const sigs = JSON.parse(extract(bundle, '/.signatures.json').toString()) as { signatures: string[] };
  const payload = JSON.parse(Buffer.from(sigs.signatures[0]!.split('.')[1]!, 'base64url').toString()) as Parameters<typeof edit>[0];
  edit(payload);
  const jws = await new CompactSign(Buffer.from(JSON.stringify(payload))).setProtectedHeader({ alg: 'RS256' }).sign(await importPKCS8(rsa.privateKeyPem, 'RS256'));
  return editBundle(bundle, (n, d) => (n === '/.signatures.json' ? Buffer.from(JSON.stringify({ signatures: [jws] })) : d));
}
const extract = (bundle: Buffer, path: string): Buffer => readTar(gunzipSync(bundle)).get(path) as Buffer;

describe('signatures, as OPA verifies them', () => {
  it('a bundle signed for a scope is refused where no scope is required (a staging bundle replayed to production)', async () => {
    const unscoped: VerificationConfig = { keys: [{ keyid: 'ec-1', algorithm: 'ES256', publicKey: ec.publicKeyPem }] };
    expect(await rejection(loadBundle(scoped, { configData, verification: unscoped }))).toMatch(/signature scope "staging" does not match the required scope null/);
    expect((await loadBundle(scoped, { configData, verification: { ...unscoped, scope: 'staging' } })).revision).toBe('staging-1');
  });

  it('the re-signed payload as opa build writes it verifies (the edits below are what is refused)', async () => {
    expect((await loadBundle(await resigned(signed, () => undefined), { configData, verification: rsaKeys() })).revision).toBe('signed-1');
  });

  it('a file entry without its hashing algorithm is refused', async () => {
    const b = await resigned(signed, (p) => {
      for (const f of p.files) delete f.algorithm;
    });
    expect(await rejection(loadBundle(b, { configData, verification: rsaKeys() }))).toMatch(/names no hashing algorithm/);
  });

  it('a file named with a leading "/" does not cover the file (OPA looks names up as written)', async () => {
    const b = await resigned(signed, (p) => {
      for (const f of p.files) if (f.name === 'data.json') f.name = '/data.json';
    });
    expect(await rejection(loadBundle(b, { configData, verification: rsaKeys() }))).toMatch(/data.json is not covered by the bundle signature/);
  });
});

// ---- cost ------------------------------------------------------------------------------

describe('what a bundle costs before its signature says it is not the signed one', () => {
  it('a large structured file in place of a signed one: refused, without stalling the event loop', async () => {
    // 30 M numbers: 60 MB, about 130 KB gzipped. Canonicalised on the event loop this took a minute.
    const huge = Buffer.from('[' + '1,'.repeat(30_000_000) + '1]');
    const bundle = editBundle(signed, (n, d) => (n === '/data.json' ? huge : d));
    let last = performance.now();
    let maxGap = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 5);
    try {
      const message = await rejection(loadBundle(bundle, { configData, verification: rsaKeys(), maxUncompressedBytes: 128 * 1024 * 1024 }));
      expect(message).toMatch(/data.json: digest mismatch|too large to canonicalise/);
    } finally {
      // The gap up to now too: a rejection reached through microtasks alone never let the timer run.
      maxGap = Math.max(maxGap, performance.now() - last);
      clearInterval(timer);
    }
    // gunzip and the tar read stay on the event loop (a few hundred ms at this size); canonicalising took seconds.
    expect(maxGap).toBeLessThan(1500);
  }, 120_000);

  it('hashes large files on the worker as on the event loop; a large file that is not JSON is a signature error', async () => {
    const big = Buffer.from(JSON.stringify({ z: Array.from({ length: 40_000 }, (_, i) => ({ n: i, s: `v\u2028${i}` })), a: 1.5e3 }, null, 2));
    expect(big.length).toBeGreaterThan(256 * 1024);
    const jobs = [
      { path: '/data.json', bytes: big, algorithm: 'SHA-256' },
      { path: '/policy.wasm', bytes: big, algorithm: 'SHA-512' },
      { path: '/small/data.json', bytes: Buffer.from('{"b":1,"a":2}'), algorithm: 'SHA-256' },
    ];
    expect(await bundleFileHashes(jobs)).toEqual(jobs.map((j) => bundleFileHash(j.path, j.bytes, j.algorithm)));
    await expect(bundleFileHashes([{ path: '/data.json', bytes: Buffer.concat([big, Buffer.from('x')]), algorithm: 'SHA-256' }])).rejects.toThrow(/not valid JSON/);
  });
});

describe('canonicalJson', () => {
  /** The canonical form from a parsed document: keys in UTF-8 byte order, strings as Go writes them, numbers as JSON.stringify wrote them. */
  const reference = (v: unknown): string => {
    if (Array.isArray(v)) return `[${v.map(reference).join(',')}]`;
    if (v !== null && typeof v === 'object') {
      const keys = Object.keys(v).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      return `{${keys.map((k) => `${reference(k)}:${reference((v as Record<string, unknown>)[k])}`).join(',')}}`;
    }
    return typeof v === 'string' ? JSON.stringify(v).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029') : JSON.stringify(v);
  };
  const text = fc.string({ unit: fc.constantFrom('a', 'B', 'é', '\u2028', '\u{1F600}', '\ue000', '\uffff', '"', '\\', '\n', '\u0001', '<') });

  it('is the sorted, compact form of any document, however it is laid out', () => {
    const doc = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.boolean(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), text, fc.array(tie('v')), fc.dictionary(text, tie('v'))),
    })).v;
    fc.assert(
      fc.property(doc, fc.constantFrom(undefined, 2, '\t', ' \r\n'), (v, space) => {
        expect(canonicalJson(JSON.stringify(v, null, space))).toBe(reference(JSON.parse(JSON.stringify(v))));
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps numbers as written and the last of duplicate keys; refuses what is not JSON', () => {
    expect(canonicalJson('{"b": 1.50, "a": [1E+2, -0, 0.0e-1], "b": 2}')).toBe('{"a":[1E+2,-0,0.0e-1],"b":2}');
    for (const bad of ['01', '1.', '-', '1e', '[1,]', '{"a":1,}', '{"a" 1}', '"\u0001"', '"\\x"', '[1] 2', 'tru', '', '{"a":1', '"abc']) {
      expect(() => canonicalJson(bad), bad).toThrow(SyntaxError);
    }
  });
});
