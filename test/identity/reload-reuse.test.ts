// A reload keeps the identity sources whose provider config did not change: their key sets
// survive (refetched, the old ones kept when the provider is down), so a reload while the
// identity provider is down does not turn every cached user into a 503, while a key the
// provider removed stops working at the reload.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';
import { startJwksServer, type JwksServer } from '../../e2e/harness/jwks-server.ts';
import { createTestIssuer, type TestIssuer } from '../../e2e/harness/tokens.ts';
import { parseConfig } from '../../src/config/load.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';

let idp: TestIssuer;
let jwks: JwksServer;
let jwksUrl: string;
let up = true;
/** Key set served instead of the issuer's own (a rotation at the provider). */
let served: Buffer | undefined;

beforeAll(async () => {
  idp = await createTestIssuer({ issuer: 'https://idp.test', audience: 'lbac-gateway', alg: 'ES256' });
  jwks = await startJwksServer(() => (up ? (served ?? readFileSync(idp.jwksPath)) : undefined));
  jwksUrl = jwks.url;
});
afterAll(async () => {
  await jwks?.close();
  idp?.cleanup();
});

const config = (audience: string, extra = '') =>
  parseConfig(
    `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
    - { type: jwt, jwksUrl: "${jwksUrl}", issuer: "https://idp.test", audience: ${audience}, algorithms: [ES256] }
${extra}
teams: { a: { groups: [team-a], selectors: [{ namespace: a }] } }
`,
    { env: {} },
  );

const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

describe('Authenticator.fromConfig on reload', () => {
  it('reuses an unchanged source: a cached token still works while the key set is unreachable', async () => {
    up = true;
    const first = await Authenticator.fromConfig(config('lbac-gateway'));
    const token = await idp.mint({ sub: 'u-1', groups: ['team-a'] });
    const subject = await first.authenticate(bearer(token));
    up = false;
    const reloaded = await Authenticator.fromConfig(config('lbac-gateway'), first);
    await reloaded.refreshKeptSources();
    // Verified again against the key set it holds (the refetch failed): no fetch needed.
    expect(await reloaded.authenticate(bearer(token))).toEqual(subject);
    // A source built afresh has no key set and cannot reach it: 503, not the cached answer.
    await expect(Authenticator.fromConfig(config('lbac-gateway')).then((a) => a.authenticate(bearer(token)))).rejects.toMatchObject({ status: 503 });
  });

  it('refetches the key set of a kept source: a key the provider removed stops working at the reload', async () => {
    up = true;
    served = undefined;
    const first = await Authenticator.fromConfig(config('lbac-gateway'));
    const token = await idp.mint({ sub: 'u-4' });
    await first.authenticate(bearer(token));
    // The provider rotates: the old key is gone from its key set (e.g. it leaked).
    const rotated = await createTestIssuer({ issuer: 'https://idp.test', audience: 'lbac-gateway', alg: 'ES256' });
    try {
      served = readFileSync(rotated.jwksPath);
      // Until the reload the verified token stays cached (at most 5 minutes, never past exp).
      await expect(first.authenticate(bearer(token))).resolves.toMatchObject({ sub: 'u-4' });
      const reloaded = await Authenticator.fromConfig(config('lbac-gateway'), first);
      // Built, not yet applied: nothing refreshed (a reload that is then rejected changes nothing).
      await expect(first.authenticate(bearer(token))).resolves.toMatchObject({ sub: 'u-4' });
      await reloaded.refreshKeptSources();
      await expect(reloaded.authenticate(bearer(token))).rejects.toMatchObject({ status: 401 });
      await expect(reloaded.authenticate(bearer(await rotated.mint({ sub: 'u-5' })))).resolves.toMatchObject({ sub: 'u-5' });
    } finally {
      served = undefined;
      rotated.cleanup();
    }
  });

  it('rebuilds a source whose provider config changed', async () => {
    up = true;
    const first = await Authenticator.fromConfig(config('lbac-gateway'));
    const token = await idp.mint({ sub: 'u-2' });
    await first.authenticate(bearer(token));
    const changed = await Authenticator.fromConfig(config('other-audience'), first);
    await expect(changed.authenticate(bearer(token))).rejects.toMatchObject({ status: 401 });
  });

  it('rebuilds a source that reads a file, so the file is read again', async () => {
    const dir = tempDir('lbac-reuse-');
    const file = join(dir, 'jwks.json');
    writeFileSync(file, readFileSync(idp.jwksPath));
    const withFile = (aud: string) =>
      parseConfig(
        `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
    - { type: jwt, jwksFile: "${file}", issuer: "https://idp.test", audience: ${aud}, algorithms: [ES256] }
`,
        { env: {} },
      );
    const first = await Authenticator.fromConfig(withFile('lbac-gateway'));
    const other = await createTestIssuer({ issuer: 'https://idp.test', audience: 'lbac-gateway', alg: 'ES256' });
    try {
      await expect(first.authenticate(bearer(await other.mint({ sub: 'u-3' })))).rejects.toMatchObject({ status: 401 });
      writeFileSync(file, readFileSync(other.jwksPath));
      const reloaded = await Authenticator.fromConfig(withFile('lbac-gateway'), first);
      await expect(reloaded.authenticate(bearer(await other.mint({ sub: 'u-3' })))).resolves.toMatchObject({ sub: 'u-3' });
    } finally {
      other.cleanup();
    }
  });
});
