// Who an introspection answer without `sub` names: the client of a client-credentials token, never
// the client a user logged in with (all its users would become one subject, the client's).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { introspectionProviderSchema } from '../../src/config/schema.ts';
import { Authenticator, createSource } from '../../src/identity/authenticator.ts';
import { namesResourceOwner } from '../../src/identity/introspection.ts';
import { startCannedIntrospection, type CannedIntrospection } from './canned-introspection.ts';

const later = () => Math.floor(Date.now() / 1000) + 3600;
/** Canned RFC 7662 answers, by token. */
const answers: Record<string, () => Record<string, unknown>> = {
  machine: () => ({ active: true, client_id: 'batch-job', exp: later() }),
  'user-rfc7662': () => ({ active: true, client_id: 'grafana', username: 'alice', groups: ['team-a'], exp: later() }),
  'user-preferred': () => ({ active: true, client_id: 'grafana', preferred_username: 'alice', exp: later() }),
  'user-email-only': () => ({ active: true, client_id: 'grafana', email: 'alice@example.com', exp: later() }),
  'user-name-only': () => ({ active: true, client_id: 'grafana', name: 'Alice Example', exp: later() }),
  'user-with-sub': () => ({ active: true, client_id: 'grafana', sub: 'u-alice', username: 'alice', exp: later() }),
};

let canned: CannedIntrospection;
let url: string;
beforeAll(async () => {
  canned = await startCannedIntrospection(answers);
  url = canned.url;
});
afterAll(() => canned?.close());

const auth = async (claims: Record<string, unknown> = {}) =>
  new Authenticator([await createSource(introspectionProviderSchema.parse({ type: 'introspection', introspectionUrl: url, clientId: 'gw', clientSecret: 's', claims }))]);
const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

describe('introspection answers without sub', () => {
  it('a client-credentials token (no user named): its client_id is the subject', async () => {
    expect(await (await auth()).authenticate(bearer('machine'))).toMatchObject({ sub: 'batch-job', auth: 'introspection' });
  });

  it('a user\'s token without sub is refused (401), not taken for its client: every user of the client would be one subject', async () => {
    const a = await auth();
    for (const token of ['user-rfc7662', 'user-preferred', 'user-email-only', 'user-name-only']) {
      await expect(a.authenticate(bearer(token))).rejects.toMatchObject({ status: 401, message: expect.stringMatching(/no "sub" claim/) });
    }
  });

  it('a user\'s token with sub, or a subject claim the answer has, is accepted as before', async () => {
    expect(await (await auth()).authenticate(bearer('user-with-sub'))).toMatchObject({ sub: 'u-alice' });
    expect(await (await auth({ subject: 'username', trustUsername: true })).authenticate(bearer('user-rfc7662'))).toMatchObject({ sub: 'alice', groups: ['team-a'] });
  });

  it('namesResourceOwner: RFC 7662 username, the configured username or email claim, or a standard person claim, non-empty', () => {
    const paths = { username: 'preferred_username', email: 'email' };
    expect(namesResourceOwner({ username: 'alice' }, paths)).toBe(true);
    expect(namesResourceOwner({ ext: { login: 'alice' } }, { ...paths, username: 'ext.login' })).toBe(true);
    expect(namesResourceOwner({ ext: { mail: 'a@x' } }, { ...paths, email: 'ext.mail' })).toBe(true);
    expect(namesResourceOwner({ email: 'a@x' }, paths)).toBe(true);
    expect(namesResourceOwner({ given_name: 'Alice' }, paths)).toBe(true);
    expect(namesResourceOwner({ username: '', client_id: 'x' }, paths)).toBe(false);
    expect(namesResourceOwner({ client_id: 'x', scope: 'read', groups: ['ci'] }, paths)).toBe(false);
  });
});
