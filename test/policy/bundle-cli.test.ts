// `lbac-gateway policy eval --bundle`: a real signed bundle, verified or rejected.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { buildBundle, generateSigningKey, type SigningKeyPair } from '../../e2e/harness/bundles.ts';
import { main } from '../../src/cli/main.ts';

let bundle: string;
let key: SigningKeyPair;
let input: string;

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, { out: (s) => (out += s + '\n'), err: (s) => (err += s + '\n') });
  return { code, out, err };
}

beforeAll(async () => {
  key = generateSigningKey('RS256');
  const team = { groups: ['team-a'], users: [], upstreams: ['*'], selectors: [[{ name: 'namespace', op: '=', value: 'a' }]], headers: {}, labels: ['*'] };
  bundle = await buildBundle({ revision: 'cli-1', signingKey: key, data: { lbac: { teams: { a: team } } } });
  const dir = tempDir('lbac-cli-');
  input = join(dir, 'input.json');
  writeFileSync(input, JSON.stringify({ subject: { sub: 'u', groups: ['team-a'], roles: [], auth: 'jwt', claims: {} }, request: { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' } }));
}, 60_000);

describe('policy eval --bundle', () => {
  it('prints the decision of the bundle, with its data, verifying the signature', async () => {
    const r = await run(['policy', 'eval', '--input', input, '--bundle', bundle, '--verification-key', key.publicKeyFile]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ allow: true, selectors: [[{ name: 'namespace', op: '=', value: 'a' }]] });
    expect(r.err).toMatch(/revision cli-1, signature verified \(key default\)/);
  });
  it('without a key it says the signature was not checked; --policy takes a bundle too', async () => {
    const r = await run(['policy', 'eval', '--input', input, '--policy', bundle]);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/signature not checked/);
  });
  it('a foreign key is an error (exit 1)', async () => {
    const other = generateSigningKey('RS256');
    const r = await run(['policy', 'eval', '--input', input, '--bundle', bundle, '--verification-key', other.publicKeyFile]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/signature does not verify/);
  });
});
