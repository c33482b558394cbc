// WWW-Authenticate on 401s: Bearer always; Basic too when a basic source is configured.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { hashSecret } from '../../src/identity/secrets.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { buildApp } from '../../src/server/app.ts';

async function app(providers: string) {
  const config = parseConfig(
    `
server: { loadShedding: { enabled: false } }
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
${providers}
`,
    { env: {} },
  );
  const engine = await PolicyEngine.fromFile(config.policyWasm, { lbac: config.policyData });
  const a = await buildApp({ config, authenticator: await Authenticator.fromConfig(config), engine, logger: pino({ level: 'silent' }) });
  await a.ready();
  return a;
}

const get = (a: Awaited<ReturnType<typeof app>>, headers: Record<string, string> = {}) => a.inject({ method: 'GET', url: '/prometheus/api/v1/query?query=up', headers });

describe('WWW-Authenticate challenges', () => {
  it('JWT-only setups challenge with Bearer alone', async () => {
    const a = await app('    - { type: jwt, jwksUrl: "http://127.0.0.1:9/jwks", issuer: i, audience: a }');
    const none = await get(a);
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="lbac-gateway"');
    const bad = await get(a, { authorization: 'Bearer nonsense' });
    expect(bad.headers['www-authenticate']).toBe('Bearer realm="lbac-gateway", error="invalid_token"');
    await a.close();
  });

  it('with a basic source: Bearer and Basic, as two header lines, for missing and refused credentials', async () => {
    const hash = await hashSecret('pw', { N: 1024 });
    const a = await app(`    - { type: jwt, jwksUrl: "http://127.0.0.1:9/jwks", issuer: i, audience: a }\n    - { type: basic, users: [{ username: erin, hash: "${hash}" }] }`);
    const none = await get(a);
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toEqual(['Bearer realm="lbac-gateway"', 'Basic realm="lbac-gateway"']);
    const wrong = await get(a, { authorization: `Basic ${Buffer.from('erin:nope').toString('base64')}` });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.headers['www-authenticate']).toEqual(['Bearer realm="lbac-gateway", error="invalid_token"', 'Basic realm="lbac-gateway"']);
    const malformed = await get(a, { authorization: 'Digest x' });
    expect(malformed.headers['www-authenticate']).toEqual(['Bearer realm="lbac-gateway", error="invalid_token"', 'Basic realm="lbac-gateway"']);
    await a.close();
  });
});
