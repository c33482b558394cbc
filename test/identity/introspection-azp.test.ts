// authorizedParties on introspection: the RFC 7662 `client_id` (the client the token was issued to) must be
// listed; a token naming no client, or another one, is refused (401) and never cached as valid.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { introspectionProviderSchema } from '../../src/config/schema.ts';
import { Authenticator } from '../../src/identity/authenticator.ts';
import { IntrospectionSource } from '../../src/identity/introspection.ts';
import { startCannedIntrospection, type CannedIntrospection } from './canned-introspection.ts';

const later = () => Math.floor(Date.now() / 1000) + 3600;
/** Canned RFC 7662 answers, by token. */
const answers: Record<string, () => Record<string, unknown>> = {
  grafana: () => ({ active: true, client_id: 'grafana', sub: 'u-alice', exp: later() }),
  other: () => ({ active: true, client_id: 'billing-app', sub: 'u-alice', exp: later() }),
  none: () => ({ active: true, sub: 'u-alice', exp: later() }),
  number: () => ({ active: true, client_id: 7, sub: 'u-alice', exp: later() }),
};

let canned: CannedIntrospection;
let url: string;
beforeAll(async () => {
  canned = await startCannedIntrospection(answers);
  url = canned.url;
});
afterAll(() => canned?.close());

const source = (extra: Record<string, unknown> = {}) =>
  IntrospectionSource.create(introspectionProviderSchema.parse({ type: 'introspection', introspectionUrl: url, clientId: 'gw', clientSecret: 's', negativeCacheTtlSeconds: 0, ...extra }));
const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

describe('introspection authorizedParties', () => {
  it('a listed client_id is accepted', async () => {
    const a = new Authenticator([await source({ authorizedParties: ['grafana', 'cli'] })]);
    expect(await a.authenticate(bearer('grafana'))).toMatchObject({ sub: 'u-alice', auth: 'introspection' });
  });

  it('another client_id, none, or one that is no string: 401 as other refusals, asked again each time (nothing cached as valid)', async () => {
    const src = await source({ authorizedParties: ['grafana'] });
    const a = new Authenticator([src]);
    for (const [token, reason] of [
      ['other', /unexpected "client_id"/],
      ['none', /missing "client_id"/],
      ['number', /"client_id" is not a string/],
    ] as const) {
      const before = src.calls;
      await expect(a.authenticate(bearer(token))).rejects.toMatchObject({ status: 401, message: expect.stringMatching(reason) });
      await expect(a.authenticate(bearer(token))).rejects.toMatchObject({ status: 401 });
      expect(src.calls - before).toBe(2);
    }
  });

  it('unset (the default): any client, or none', async () => {
    const a = new Authenticator([await source()]);
    for (const token of ['grafana', 'other', 'none']) expect(await a.authenticate(bearer(token))).toMatchObject({ sub: 'u-alice' });
  });

  it('schema: a non-empty list of non-empty strings', () => {
    const base = { type: 'introspection', introspectionUrl: 'https://idp.example.com/introspect', clientId: 'gw', clientSecret: 's' };
    expect(introspectionProviderSchema.safeParse({ ...base, authorizedParties: [] }).success).toBe(false);
    expect(introspectionProviderSchema.safeParse({ ...base, authorizedParties: [''] }).success).toBe(false);
    expect(introspectionProviderSchema.parse({ ...base, authorizedParties: ['grafana'] }).authorizedParties).toEqual(['grafana']);
  });
});
