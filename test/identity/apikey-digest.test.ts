// API keys stored as SHA-256 (generated, random keys): an unknown key costs one digest, not one
// scrypt per configured key. Before, a flood of random bearer tokens kept the scrypt queue full
// (about 690 ms of CPU per token with five keys), so a valid key's first use got 503, and every
// new identity-provider token waited behind the scrypt checks before introspection saw it.
import { describe, expect, it } from 'vitest';
import { apiKeyProviderSchema, basicProviderSchema } from '../../src/config/schema.ts';
import { ApiKeySource } from '../../src/identity/static.ts';
import { apiKeyDigest, generateApiKey, hashSecret } from '../../src/identity/secrets.ts';

const creds = (bearer: string) => ({ bearer, headers: {} }) as unknown as Parameters<ApiKeySource['authenticate']>[0];
const refused = (p: Promise<unknown>) =>
  p.then(
    () => 'accepted',
    (e: { code?: string }) => e.code,
  );

describe('API keys stored as SHA-256', () => {
  it('a generated key is accepted by its digest; unknown and near keys are refused', async () => {
    const key = generateApiKey();
    const other = generateApiKey();
    const source = new ApiKeySource(
      apiKeyProviderSchema.parse({ type: 'apikey', keys: [{ name: 'ci', hash: apiKeyDigest(key), subject: { groups: ['team-a'] } }, { name: 'other', hash: apiKeyDigest(other) }] }),
    );
    expect(await source.authenticate(creds(key))).toMatchObject({ sub: 'ci', groups: ['team-a'], auth: 'apikey' });
    expect(await source.authenticate(creds(other))).toMatchObject({ sub: 'other' });
    for (const wrong of [key.slice(0, -1), `${key}x`, key.toUpperCase(), apiKeyDigest(key), 'opaque-idp-token']) expect(await refused(source.authenticate(creds(wrong)))).toBe('unauthenticated');
  });

  it('an unknown key costs no scrypt when every key is stored as SHA-256; scrypt keys beside them are still checked', async () => {
    const digestOnly = new ApiKeySource(apiKeyProviderSchema.parse({ type: 'apikey', keys: Array.from({ length: 5 }, (_, i) => ({ name: `k${i}`, hash: apiKeyDigest(generateApiKey()) })) }));
    const started = process.cpuUsage();
    for (let i = 0; i < 200; i++) expect(await refused(digestOnly.authenticate(creds(`random-${i}`)))).toBe('unauthenticated');
    const cpu = process.cpuUsage(started);
    // 200 unknown keys: one scrypt (N=2^15) alone is about 100 ms of CPU; 200 digests are well under it.
    expect((cpu.user + cpu.system) / 1000).toBeLessThan(100);
    const chosen = 'a key a person chose';
    const mixed = new ApiKeySource(apiKeyProviderSchema.parse({ type: 'apikey', keys: [{ name: 'gen', hash: apiKeyDigest(generateApiKey()) }, { name: 'chosen', hash: await hashSecret(chosen, { N: 1024 }) }] }));
    expect(await mixed.authenticate(creds(chosen))).toMatchObject({ sub: 'chosen' });
  });

  it('a key that is not of the generated shape never matches a sha256 hash (a chosen key stored so would be guessable)', async () => {
    const chosen = 'hunter2';
    const source = new ApiKeySource(apiKeyProviderSchema.parse({ type: 'apikey', keys: [{ name: 'weak', hash: apiKeyDigest(chosen) }, { name: 'test', hash: apiKeyDigest('test') }] }));
    for (const k of [chosen, 'test']) expect(await refused(source.authenticate(creds(k)))).toBe('unauthenticated');
  });

  it('two keys with one sha256 hash are a config error (either subject, depending on the map)', () => {
    const hash = apiKeyDigest(generateApiKey());
    const parsed = apiKeyProviderSchema.safeParse({ type: 'apikey', keys: [{ name: 'a', hash }, { name: 'b', hash }] });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues.map((i) => i.message)).toContain('key "b" has the hash of an earlier key');
  });

  it('the config takes sha256$<64 hex> for API keys only: basic-auth passwords stay scrypt', () => {
    expect(apiKeyProviderSchema.safeParse({ type: 'apikey', keys: [{ name: 'a', hash: `sha256$${'0'.repeat(64)}` }] }).success).toBe(true);
    expect(apiKeyProviderSchema.safeParse({ type: 'apikey', keys: [{ name: 'a', hash: `sha256$${'0'.repeat(63)}` }] }).success).toBe(false);
    expect(apiKeyProviderSchema.safeParse({ type: 'apikey', keys: [{ name: 'a', hash: 'plain-secret' }] }).success).toBe(false);
    expect(apiKeyDigest('abc')).toBe('sha256$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(basicProviderSchema.safeParse({ type: 'basic', users: [{ username: 'u', hash: apiKeyDigest('abc') }] }).success).toBe(false);
  });
});
