import { describe, expect, it } from 'vitest';
import { apiKeyProviderSchema, basicProviderSchema } from '../../src/config/schema.ts';
import { MAX_CONCURRENT_VERIFICATIONS, generateApiKey, hashSecret, parseSecretHash, verifySecret } from '../../src/identity/secrets.ts';

describe('scrypt secrets', () => {
  it('hashes in the scrypt$N$r$p$salt$hash format and verifies in constant time', async () => {
    const h = await hashSecret('correct horse', { N: 1024 });
    expect(h).toMatch(/^scrypt\$1024\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(await verifySecret('correct horse', h)).toBe(true);
    expect(await verifySecret('correct horsE', h)).toBe(false);
    expect(await verifySecret('', h)).toBe(false);
  });
  it('uses a fresh salt per hash and N=2^15 by default', async () => {
    const a = await hashSecret('x');
    const b = await hashSecret('x');
    expect(a).not.toBe(b);
    expect(parseSecretHash(a).N).toBe(32768);
  });
  it('rejects malformed or out-of-bounds hashes', () => {
    expect(() => parseSecretHash('plaintext')).toThrow(/not an scrypt hash/);
    expect(() => parseSecretHash(`scrypt$16$8$1$${'A'.repeat(22)}$${'B'.repeat(43)}`)).toThrow(/power of two/);
    expect(() => parseSecretHash(`scrypt$1000$8$1$${'A'.repeat(22)}$${'B'.repeat(43)}`)).toThrow(/power of two/);
    expect(() => parseSecretHash(`scrypt$1024$8$1$AAAA$${'B'.repeat(43)}`)).toThrow(/salt/);
  });
  it(`runs at most ${MAX_CONCURRENT_VERIFICATIONS} scrypt computations at once and refuses (503) beyond a bounded queue`, async () => {
    const stored = await hashSecret('k', { N: 1024 });
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => verifySecret(i === 0 ? 'k' : `guess-${i}`, stored)));
    const refused = results.filter((r) => r.status === 'rejected');
    // 2 running + 64 queued are verified; the other 34 are refused without costing a computation.
    expect(refused).toHaveLength(100 - MAX_CONCURRENT_VERIFICATIONS - 64);
    for (const r of refused) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'overloaded', status: 503 });
    expect(results[0]).toEqual({ status: 'fulfilled', value: true });
    expect(results.filter((r) => r.status === 'fulfilled' && r.value === false)).toHaveLength(MAX_CONCURRENT_VERIFICATIONS + 64 - 1);
    // The slots are free again afterwards.
    expect(await verifySecret('k', stored)).toBe(true);
  });
  it('generates recognisable random API keys', () => {
    const k = generateApiKey();
    expect(k).toMatch(/^lbac_[A-Za-z0-9_-]{43}$/);
    expect(generateApiKey()).not.toBe(k);
  });
  it('the config schema refuses plain-text keys and passwords', async () => {
    const h = await hashSecret('s3cret', { N: 1024 });
    expect(apiKeyProviderSchema.safeParse({ type: 'apikey', keys: [{ name: 'ci', hash: 's3cret' }] }).success).toBe(false);
    expect(apiKeyProviderSchema.safeParse({ type: 'apikey', keys: [{ name: 'ci', hash: h }] }).success).toBe(true);
    expect(basicProviderSchema.safeParse({ type: 'basic', users: [{ username: 'u', hash: 'pw' }] }).success).toBe(false);
    expect(basicProviderSchema.safeParse({ type: 'basic', users: [{ username: 'a:b', hash: h }] }).success).toBe(false);
    expect(apiKeyProviderSchema.safeParse({ type: 'apikey', keys: [{ name: 'ci', hash: h }, { name: 'ci', hash: h }] }).success).toBe(false);
  });
});
