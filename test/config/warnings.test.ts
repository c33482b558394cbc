import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { configWarnings } from '../../src/config/warnings.ts';

const config = (provider: string) =>
  parseConfig(
    `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
    - ${provider}
`,
    { env: {} },
  );

describe('config warnings', () => {
  it('a subject mapped from a claim its holder may choose is flagged, unless the provider is trusted for it', () => {
    for (const subject of ['preferred_username', 'email', 'attributes.preferred_username']) {
      const w = configWarnings(config(`{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a, claims: { subject: "${subject}" } }`));
      expect(w).toHaveLength(1);
      expect(w[0]).toMatch(new RegExp(`identity.providers\\[0\\] \\(jwt\\): claims.subject is "${subject.replace('.', '\\.')}"`));
    }
    // The same claim as the username: as mutable as the username.
    expect(configWarnings(config(`{ type: oidc, issuer: "http://127.0.0.1:9", audience: a, claims: { subject: "login_id", username: "login_id" } }`))).toHaveLength(1);
    expect(configWarnings(config(`{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a, claims: { subject: preferred_username, trustUsername: true } }`))).toEqual([]);
    expect(configWarnings(config(`{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a }`))).toEqual([]);
    expect(configWarnings(config(`{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a, claims: { subject: oid } }`))).toEqual([]);
  });

  it('identity providers reached over plain HTTP on another host are flagged; loopback and https are not', () => {
    const w = configWarnings(config('{ type: jwt, jwksUrl: "http://idp.example.com/keys", issuer: i, audience: a }'));
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/identity\.providers\[0\] \(jwt\): "http:\/\/idp\.example\.com\/keys" is plain HTTP to another host/);
    const withToken = configWarnings(config('{ type: jwt, jwksUrl: "http://idp.example.com/keys?token=tok-secret", issuer: i, audience: a }'));
    expect(withToken[0]).toMatch(/"http:\/\/idp\.example\.com\/keys" is plain HTTP/);
    expect(withToken.join('\n')).not.toMatch(/secret/);
    expect(configWarnings(config('{ type: oidc, issuer: "http://10.0.0.5:8080/realms/r", audience: a }'))[0]).toMatch(/\(oidc\): "http:\/\/10\.0\.0\.5:8080\/realms\/r" is plain HTTP/);
    expect(configWarnings(config('{ type: grafana, url: "http://grafana:3000", orgs: [1] }'))[0]).toMatch(/\(grafana\).*plain HTTP/);
    expect(configWarnings(config('{ type: introspection, introspectionUrl: "http://idp/i", clientId: gw, clientSecret: s, audience: gw }'))[0]).toMatch(/\(introspection\).*plain HTTP/);
    const locals = ['http://127.0.0.1:9/j', 'http://127.1.2.3:9/j', 'http://localhost:9/j', 'http://idp.localhost:9/j', 'http://[::1]:9/j', 'https://idp.example.com/keys'];
    // Other spellings of loopback: IPv4-mapped IPv6, IPv6 written out, upper case, a trailing dot.
    locals.push('http://[::ffff:127.0.0.1]:9/j', 'http://[::FFFF:127.9.9.9]/j', 'http://[0:0:0:0:0:0:0:1]/j', 'http://LOCALHOST:9/j', 'http://localhost.:9/j');
    for (const local of locals) {
      expect(configWarnings(config(`{ type: jwt, jwksUrl: "${local}", issuer: i, audience: a }`)), local).toEqual([]);
    }
    for (const remote of ['http://[::ffff:10.0.0.1]/j', 'http://[::2]/j', 'http://localhost.example.com/j', 'http://128.0.0.1/j']) {
      expect(configWarnings(config(`{ type: jwt, jwksUrl: "${remote}", issuer: i, audience: a }`)), remote).toHaveLength(1);
    }
  });

  it('a policy bundle fetched over plain HTTP from another host is flagged, saying what an on-path attacker can do', () => {
    const withBundle = (bundle: string) =>
      parseConfig(
        `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity: { providers: [{ type: jwt, jwksUrl: "https://idp/j", issuer: i, audience: a }] }
policy: { bundle: ${bundle} }
`,
        { env: {} },
      );
    const unsigned = configWarnings(withBundle('{ url: "http://bundles.internal" }'));
    expect(unsigned).toHaveLength(1);
    expect(unsigned[0]).toMatch(/policy\.bundle\.url "http:\/\/bundles\.internal\/" is plain HTTP to another host: without policy\.bundle\.signing anyone on the path can serve the gateway a policy\. Use https\./);
    // Shown without credentials in its query or user part.
    const presigned = configWarnings(withBundle('{ url: "http://bundles.internal/b?X-Amz-Signature=sig-secret" }'));
    expect(presigned[0]).toMatch(/policy\.bundle\.url "http:\/\/bundles\.internal\/b" is plain HTTP/);
    expect(presigned.join('\n')).not.toMatch(/secret/);
    const signedWithToken = configWarnings(
      withBundle('{ url: "http://bundles.internal", auth: { type: bearer, token: t }, signing: { keys: [{ keyid: default, publicKey: "-----BEGIN PUBLIC KEY-----" }] } }'),
    );
    expect(signedWithToken[0]).toMatch(/an older signed one can be replayed, and the bundle credential is sent in the clear/);
    expect(configWarnings(withBundle('{ url: "https://bundles.internal" }'))).toEqual([]);
    expect(configWarnings(withBundle('{ url: "http://127.0.0.1:8181" }'))).toEqual([]);
  });

  it('an upstream sent a credential over plain HTTP to another host is flagged, never with the secret; sigv4, loopback and https are not', () => {
    const withUpstream = (url: string, extra: string) =>
      parseConfig(
        `
upstreams: [{ name: metrics, kind: prometheus, url: "${url}", ${extra} }]
identity: { providers: [{ type: jwt, jwksUrl: "https://idp/j", issuer: i, audience: a }] }
`,
        { env: { PW: 'pw-secret' } },
      );
    const bearer = configWarnings(withUpstream('http://prom.example.com:9090/prom', 'auth: { type: bearer, token: tok-secret }'));
    expect(bearer).toEqual([
      'upstreams[0] (metrics): "http://prom.example.com:9090/prom" is plain HTTP to another host, and the bearer credential of auth is sent in the clear: anyone on the path can read it and use it. Use https.',
    ]);
    expect(configWarnings(withUpstream('http://10.0.0.5:9090', 'auth: { type: basic, username: u, password: "${PW}" }'))[0]).toMatch(/^upstreams\[0\] \(metrics\): "http:\/\/10\.0\.0\.5:9090\/" is plain HTTP to another host, and the basic credential of auth is sent in the clear/);
    // An Authorization header (any case), or the clients' own forwarded.
    expect(configWarnings(withUpstream('http://mimir.svc:8080', 'headers: { AUTHORIZATION: "Bearer tok-secret" }'))[0]).toMatch(/and the "AUTHORIZATION" of headers is sent in the clear/);
    expect(configWarnings(withUpstream('http://mimir.svc:8080', 'forwardAuthorization: true'))[0]).toMatch(/and the clients' own Authorization \(forwardAuthorization\) is sent in the clear/);
    // The secret itself never (an upstream URL holds no query or userinfo: the schema refuses them).
    expect(bearer.join('\n')).not.toMatch(/secret/);
    // SigV4 sends a signature, not its key; other headers are not credentials; loopback and https are not on a path.
    expect(configWarnings(withUpstream('http://prom.example.com', 'auth: { type: sigv4, region: eu-west-1, accessKeyId: AKIA, secretAccessKey: s }'))).toEqual([]);
    expect(configWarnings(withUpstream('http://prom.example.com', 'headers: { X-Scope-OrgID: tenant-a }'))).toEqual([]);
    expect(configWarnings(withUpstream('http://prom.example.com', ''))).toEqual([]);
    for (const url of ['http://127.0.0.1:9090', 'http://localhost:9090', 'http://[::1]:9090', 'https://prom.example.com']) {
      expect(configWarnings(withUpstream(url, 'auth: { type: bearer, token: t }')), url).toEqual([]);
    }
  });

  it('an introspection source without an audience is flagged (providers call other services\' tokens active)', () => {
    const base = 'type: introspection, introspectionUrl: "http://127.0.0.1:9/i", clientId: gw, clientSecret: s';
    const w = configWarnings(config(`{ ${base} }`));
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/identity\.providers\[0\] \(introspection\): no audience/);
    expect(configWarnings(config(`{ ${base}, audience: gw }`))).toEqual([]);
  });

  it('an mtls source that leaves ouAsGroups unset is flagged (its default changed to false); set either way, it is not', () => {
    const withMtls = (provider: string) =>
      parseConfig(
        `
server: { tls: { cert: s.crt, key: s.key, clientCA: ca.crt } }
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity: { providers: [{ type: jwt, jwksUrl: "https://idp/j", issuer: i, audience: a }, ${provider}] }
`,
        { env: {} },
      );
    const w = configWarnings(withMtls('{ type: mtls, subjectFrom: [uri, cn] }'));
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/^identity\.providers\[1\] \(mtls\): ouAsGroups is not set; certificate OU values are not used as groups by default \(they were before\)\. Set ouAsGroups: true to keep the old behaviour .*, or ouAsGroups: false to silence this warning\.$/);
    expect(configWarnings(withMtls('{ type: mtls, ouAsGroups: false }'))).toEqual([]);
    expect(configWarnings(withMtls('{ type: mtls, ouAsGroups: true }'))).toEqual([]);
  });

  describe('token providers of different issuers whose groups and subjects share one namespace', () => {
    const withProviders = (...providers: string[]) =>
      parseConfig(
        `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
${providers.map((p) => `    - ${p}`).join('\n')}
`,
        { env: {} },
      );
    const corp = (extra = '') => `{ type: oidc, issuer: "https://corp.test/realms/main", audience: gw${extra} }`;
    const partner = (extra = '') => `{ type: jwt, jwksUrl: "https://partner.test/keys", issuer: "https://partner.test", audience: gw${extra} }`;
    const shared = (w: string[]) => w.filter((x) => x.includes('share one namespace'));

    it('two issuers, no prefixes: flagged once, naming both providers, what they share and the keys to set', () => {
      const w = configWarnings(withProviders(corp(), partner()));
      expect(w).toHaveLength(1);
      expect(w[0]).toBe(
        'identity.providers[0] (oidc, issuer "https://corp.test/realms/main") and identity.providers[1] (jwt, issuer "https://partner.test") are different issuers whose groups and subjects share one namespace (groupsPrefix and usersPrefix unset or equal on both): ' +
          "team and admin groups entries grant to either issuer's tokens carrying that group, and users entries match either issuer's sub (and trusted username). " +
          'Set groupsPrefix and usersPrefix on one of them (e.g. "partner:") and write the team and admin entries for its subjects with that prefix (docs/identity.md#several-identity-providers-prefixes).',
      );
    });

    it('equal prefixes are no prefixes; one part told apart leaves the other flagged; both told apart: no warning', () => {
      expect(shared(configWarnings(withProviders(corp(', groupsPrefix: "x:", usersPrefix: "x:"'), partner(', groupsPrefix: "x:", usersPrefix: "x:"'))))).toHaveLength(1);
      const groupsOnly = shared(configWarnings(withProviders(corp(), partner(', groupsPrefix: "partner:"'))));
      expect(groupsOnly).toEqual([expect.stringMatching(/whose subjects share one namespace \(usersPrefix unset or equal on both\): users entries match either issuer's sub .*Set usersPrefix on one of them/)]);
      const usersOnly = shared(configWarnings(withProviders(corp(', usersPrefix: "corp:"'), partner())));
      expect(usersOnly).toEqual([expect.stringMatching(/whose groups share one namespace \(groupsPrefix unset or equal on both\): team and admin groups entries grant .*Set groupsPrefix on one/)]);
      expect(configWarnings(withProviders(corp(), partner(', groupsPrefix: "partner:", usersPrefix: "partner:"')))).toEqual([]);
      expect(configWarnings(withProviders(corp(', groupsPrefix: "corp:", usersPrefix: "corp:"'), partner(', groupsPrefix: "partner:", usersPrefix: "partner:"')))).toEqual([]);
    });

    it('every pair of token providers (jwt, oidc, introspection, grafana) with different issuers is judged', () => {
      const grafana = '{ type: grafana, url: "https://grafana.test/", orgs: [1] }';
      const intro = '{ type: introspection, issuer: "https://other.test", clientId: gw, clientSecret: s, audience: gw }';
      const w = shared(configWarnings(withProviders(corp(), partner(', groupsPrefix: "p:", usersPrefix: "p:"'), grafana, intro)));
      // corp–grafana, corp–introspection, grafana–introspection; the prefixed partner differs from all.
      expect(w.map((x) => x.slice(0, x.indexOf(' are different issuers')))).toEqual([
        'identity.providers[0] (oidc, issuer "https://corp.test/realms/main") and identity.providers[2] (grafana, issuer "https://grafana.test")',
        'identity.providers[0] (oidc, issuer "https://corp.test/realms/main") and identity.providers[3] (introspection, issuer "https://other.test")',
        'identity.providers[2] (grafana, issuer "https://grafana.test") and identity.providers[3] (introspection, issuer "https://other.test")',
      ]);
    });

    it('not flagged: a single token provider, the same issuer twice, an introspection endpoint under the issuer, or static and mtls sources only', () => {
      expect(configWarnings(withProviders(corp()))).toEqual([]);
      // One issuer, two sources: JWT access tokens and opaque tokens, or two audiences (trailing "/" aside).
      expect(configWarnings(withProviders(corp(), '{ type: introspection, issuer: "https://corp.test/realms/main/", clientId: gw, clientSecret: s, audience: gw }'))).toEqual([]);
      expect(configWarnings(withProviders(partner(), partner().replace('audience: gw', 'audience: other')))).toEqual([]);
      // An introspection source known by its endpoint only: the same provider when the endpoint lies under the issuer.
      expect(
        configWarnings(withProviders(corp(), '{ type: introspection, introspectionUrl: "https://corp.test/realms/main/protocol/openid-connect/token/introspect", clientId: gw, clientSecret: s, audience: gw }')),
      ).toEqual([]);
      expect(
        shared(configWarnings(withProviders(corp(), '{ type: introspection, introspectionUrl: "https://corp.test/realms/mainx/introspect", clientId: gw, clientSecret: s, audience: gw }'))),
      ).toEqual([expect.stringMatching(/^identity\.providers\[0\] \(oidc, .*identity\.providers\[1\] \(introspection, introspection endpoint "https:\/\/corp\.test\/realms\/mainx\/introspect"\)/)]);
      // Named without its query (a credential there is never shown).
      const withKey = configWarnings(withProviders(corp(), '{ type: introspection, introspectionUrl: "https://corp.test/realms/mainx/introspect?api_key=S3CRET", clientId: gw, clientSecret: s, audience: gw }'));
      expect(shared(withKey)).toEqual([expect.stringMatching(/introspection endpoint "https:\/\/corp\.test\/realms\/mainx\/introspect"\)/)]);
      expect(withKey.join('\n')).not.toContain('S3CRET');
      // The operator writes the subjects of these: no third party chooses them.
      const key = `scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB`;
      const apikey = `{ type: apikey, keys: [{ name: k, hash: "${key}", subject: { groups: [team-a] } }] }`;
      const basic = `{ type: basic, users: [{ username: u, hash: "${key}" }] }`;
      expect(configWarnings(withProviders(apikey, basic))).toEqual([]);
      expect(configWarnings(withProviders(corp(), apikey, basic))).toEqual([]);
    });
  });

  describe('claims mode and the token issuers whose claims count', () => {
    const withMode = (mode: string, ...providers: string[]) =>
      parseConfig(
        `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
${providers.map((p) => `    - ${p}`).join('\n')}
policy: { claimsMode: ${mode} }
`,
        { env: {} },
      );
    // Prefixed, so the shared-namespace warning stays out of the way.
    const corp = '{ type: oidc, issuer: "https://corp.test/realms/main", audience: gw, groupsPrefix: "corp:", usersPrefix: "corp:" }';
    const partner = '{ type: jwt, jwksUrl: "https://partner.test/keys", issuer: "https://partner.test", audience: gw, groupsPrefix: "p:", usersPrefix: "p:" }';
    const grafana = '{ type: grafana, url: "https://grafana.test/", orgs: [1], groupsPrefix: "g:", usersPrefix: "g:" }';
    const key = `scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB`;
    const apikey = `{ type: apikey, keys: [{ name: k, hash: "${key}", subject: { groups: [team-a] } }], groupsPrefix: "k:", usersPrefix: "k:" }`;
    const claims = (w: string[]) => w.filter((x) => x.includes('claimsMode'));

    it('issuers unset with two token issuers: flagged once, naming them and the key to set', () => {
      const w = configWarnings(withMode('{ enabled: true }', corp, partner, apikey));
      expect(w).toEqual([
        'policy.claimsMode reads the namespaces and labels claims of every token issuer, and identity.providers[0] (oidc, issuer "https://corp.test/realms/main"), identity.providers[1] (jwt, issuer "https://partner.test") are different issuers: ' +
          'each can grant its tokens any namespace and label through those claims (provider prefixes do not apply to them). Set policy.claimsMode.issuers to the issuer(s) whose claims should decide (docs/identity.md#claims-driven-policy-mode).',
      ]);
      expect(claims(configWarnings(withMode('{}', corp, partner, grafana)))[0]).toMatch(/identity\.providers\[2\] \(grafana, issuer "https:\/\/grafana\.test"\) are different issuers/);
    });

    it('issuers unset, not flagged: one token issuer (with static sources, or as several sources), or the mode off', () => {
      expect(configWarnings(withMode('{}', corp, apikey))).toEqual([]);
      const introspectSameIssuer = '{ type: introspection, issuer: "https://corp.test/realms/main/", clientId: gw, clientSecret: s, audience: gw, groupsPrefix: "corp:", usersPrefix: "corp:" }';
      const introspectUnder = '{ type: introspection, introspectionUrl: "https://corp.test/realms/main/protocol/openid-connect/token/introspect", clientId: gw, clientSecret: s, audience: gw, groupsPrefix: "corp:", usersPrefix: "corp:" }';
      expect(configWarnings(withMode('{}', corp, introspectSameIssuer, introspectUnder))).toEqual([]);
      expect(configWarnings(withMode('{ enabled: false }', corp, partner))).toEqual([]);
    });

    it('issuers set to configured issuers (trailing "/" aside): no warning', () => {
      expect(configWarnings(withMode('{ issuers: ["https://corp.test/realms/main/"] }', corp, partner))).toEqual([]);
      expect(configWarnings(withMode('{ issuers: ["https://corp.test/realms/main", "https://grafana.test"] }', corp, partner, grafana, apikey))).toEqual([]);
    });

    it('an entry no token provider has is flagged (a typo); all of them: every subject is refused, or decided by the teams', () => {
      const one = configWarnings(withMode('{ issuers: ["https://corp.test/realms/main", "https://partnr.test"] }', corp, partner));
      expect(one).toEqual([
        'policy.claimsMode.issuers[1] "https://partnr.test" is the issuer of no configured token provider (jwt, oidc, introspection, grafana; trailing "/" aside): no subject carries it. A typo? Configured: "https://corp.test/realms/main", "https://partner.test".',
      ]);
      const all = configWarnings(withMode('{ issuers: ["https://corp.test/realms/mian"] }', corp, partner));
      expect(all).toEqual([expect.stringMatching(/^policy\.claimsMode\.issuers\[0\] "https:\/\/corp\.test\/realms\/mian" .* No entry is a configured issuer: claims decide for no one, every non-admin subject is refused \(403\)\. A typo\?/)]);
      expect(configWarnings(withMode('{ issuers: [x], teamsFallback: true }', corp))).toEqual([expect.stringMatching(/every non-admin subject is decided by the teams\. A typo\? Configured: "https:\/\/corp\.test\/realms\/main"\.$/)]);
      // Only static sources: no token issuer at all.
      expect(configWarnings(withMode('{ issuers: [x] }', apikey))).toEqual([expect.stringMatching(/A typo\? Configured: none\.$/)]);
    });

    it('an introspection source without issuer can name any issuer: flagged when it could carry a listed one not its own; typos then unknowable', () => {
      const partnerIntrospect = '{ type: introspection, introspectionUrl: "https://partner.test/introspect", clientId: gw, clientSecret: s, audience: gw, groupsPrefix: "p:", usersPrefix: "p:" }';
      const w = configWarnings(withMode('{ issuers: ["https://corp.test/realms/main", "https://typo.test"] }', corp, partnerIntrospect));
      expect(w).toEqual([
        'identity.providers[1] (introspection, introspection endpoint "https://partner.test/introspect") has no issuer: the "iss" of its answers is not checked and becomes the subject\'s issuer as the endpoint sends it, ' +
          'so its tokens can carry "https://corp.test/realms/main", "https://typo.test" from policy.claimsMode.issuers and be decided by their claims. Set issuer on it (its answers\' "iss" must then equal it).',
      ]);
      // Listing only its own issuer (its endpoint lies under it): nothing it could pass for.
      expect(configWarnings(withMode('{ issuers: ["https://partner.test"] }', partnerIntrospect))).toEqual([]);
      // With issuer set, its answers' "iss" must equal it: known, and checked like the others.
      const checked = '{ type: introspection, issuer: "https://partner.test", clientId: gw, clientSecret: s, audience: gw, groupsPrefix: "p:", usersPrefix: "p:" }';
      expect(configWarnings(withMode('{ issuers: ["https://corp.test/realms/main"] }', corp, checked))).toEqual([]);
    });
  });

  describe('every prefix reserves its namespace: nested prefixes, and static names in another provider\'s namespace', () => {
    const withProviders = (providers: string[], server = '') =>
      parseConfig(
        `
${server}
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity:
  providers:
${providers.map((p) => `    - ${p}`).join('\n')}
`,
        { env: {} },
      );
    const token = (iss: string, extra = '') => `{ type: jwt, jwksUrl: "https://${iss}/keys", issuer: "https://${iss}", audience: gw${extra} }`;
    const hash = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAAAA$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB';
    const reserves = (w: string[]) => w.filter((x) => x.includes('reserve'));

    it('a prefix inside another\'s namespace is flagged, per kind, saying what the outer provider loses', () => {
      const w = configWarnings(withProviders([token('corp.test', ', groupsPrefix: "p:", usersPrefix: "p:"'), token('partner.test', ', groupsPrefix: "p:q:", usersPrefix: "p:q:"')]));
      expect(w).toEqual([
        'identity.providers[1] (jwt) groupsPrefix "p:q:" lies inside identity.providers[0] (jwt)\'s namespace "p:": every prefix reserves its namespace, so the groups identity.providers[0] yields that start with "q:" are dropped, and entries "p:q:…" name identity.providers[1]\'s only. If that is not meant, use prefixes neither of which starts with the other (e.g. "corp:" and "partner:") (docs/identity.md#several-identity-providers-prefixes).',
        expect.stringMatching(/^identity\.providers\[1\] \(jwt\) usersPrefix "p:q:" lies inside identity\.providers\[0\] \(jwt\)'s namespace "p:": .*the subject ids identity\.providers\[0\] yields that start with "q:" are refused \(401; a username there is dropped\)/),
      ]);
      // Only groups nested: one warning; the order of the providers does not matter.
      expect(reserves(configWarnings(withProviders([token('partner.test', ', groupsPrefix: "p:q:", usersPrefix: "x:"'), token('corp.test', ', groupsPrefix: "p:", usersPrefix: "y:"')])))).toEqual([
        expect.stringMatching(/^identity\.providers\[0\] \(jwt\) groupsPrefix "p:q:" lies inside identity\.providers\[1\] \(jwt\)'s namespace "p:"/),
      ]);
    });

    it('not flagged: one provider unprefixed and the others prefixed (the recommended setup), equal prefixes, prefixes apart', () => {
      expect(configWarnings(withProviders([token('corp.test'), token('partner.test', ', groupsPrefix: "partner:", usersPrefix: "partner:"')]))).toEqual([]);
      expect(reserves(configWarnings(withProviders([token('corp.test', ', groupsPrefix: "x:", usersPrefix: "x:"'), token('partner.test', ', groupsPrefix: "x:", usersPrefix: "x:"')])))).toEqual([]);
      expect(configWarnings(withProviders([token('corp.test', ', groupsPrefix: "p:", usersPrefix: "p:"'), token('partner.test', ', groupsPrefix: "pq:", usersPrefix: "q:"')]))).toEqual([]);
    });

    it('apikey and basic subjects written into another provider\'s namespace: groups and usernames dropped, subject ids refused', () => {
      const partner = token('partner.test', ', groupsPrefix: "partner:", usersPrefix: "partner:"');
      const apikey = `{ type: apikey, keys: [{ name: ci, hash: "${hash}", subject: { groups: [team-a, "partner:ci"] } }, { name: "partner:k", hash: "${hash}" }, { name: k2, hash: "${hash}", subject: { sub: bot, username: "partner:bot" } }] }`;
      const basic = `{ type: basic, users: [{ username: bob, hash: "${hash}", subject: { sub: "partner:bob" } }] }`;
      expect(configWarnings(withProviders([apikey, basic, partner]))).toEqual([
        'identity.providers[0] (apikey) keys[0] ("ci"): the group "partner:ci" lies in identity.providers[2]\'s namespace "partner:", which every prefix reserves for its provider: it is dropped when the key authenticates.',
        // The key name is its sub and username: refused once (the username of a refused subject does not matter).
        'identity.providers[0] (apikey) keys[1] ("partner:k"): the subject id "partner:k" lies in identity.providers[2]\'s namespace "partner:", which every prefix reserves for its provider: the key is refused (401).',
        'identity.providers[0] (apikey) keys[2] ("k2"): the username "partner:bot" lies in identity.providers[2]\'s namespace "partner:", which every prefix reserves for its provider: it is dropped from the subject.',
        'identity.providers[1] (basic) users[0] ("bob"): the subject id "partner:bob" lies in identity.providers[2]\'s namespace "partner:", which every prefix reserves for its provider: the user is refused (401).',
      ]);
      // In its own namespace (the same prefix), or outside any other: nothing to say.
      const own = `{ type: apikey, groupsPrefix: "partner:", usersPrefix: "partner:", keys: [{ name: ci, hash: "${hash}", subject: { sub: "x", groups: [ci] } }] }`;
      expect(configWarnings(withProviders([own, partner]))).toEqual([]);
    });

    it('a static name with its own prefix that lands in a nested namespace shows both spellings; mtls mapping subjects and groups are judged', () => {
      const inner = token('partner.test', ', groupsPrefix: "p:q:", usersPrefix: "p:q:"');
      const apikey = `{ type: apikey, groupsPrefix: "p:", keys: [{ name: ci, hash: "${hash}", subject: { groups: ["q:x", y] } }] }`;
      expect(reserves(configWarnings(withProviders([apikey, inner])))).toContain(
        'identity.providers[0] (apikey) keys[0] ("ci"): the group "q:x" ("p:q:x" with its prefix) lies in identity.providers[1]\'s namespace "p:q:", which every prefix reserves for its provider: it is dropped when the key authenticates.',
      );
      const mtls = '{ type: mtls, ouAsGroups: false, mapping: [{ subject: "partner:svc", groups: ["partner:ops", ops] }] }';
      const w = configWarnings(withProviders([mtls, token('partner.test', ', groupsPrefix: "partner:", usersPrefix: "partner:"')], 'server: { tls: { cert: s.crt, key: s.key, clientCA: ca.crt } }'));
      expect(w).toEqual([
        'identity.providers[0] (mtls) mapping[0] ("partner:svc"): the certificate subject "partner:svc" lies in identity.providers[1]\'s namespace "partner:", which every prefix reserves for its provider: certificates with it are refused (401).',
        'identity.providers[0] (mtls) mapping[0] ("partner:svc"): the group "partner:ops" lies in identity.providers[1]\'s namespace "partner:", which every prefix reserves for its provider: it is dropped when such a certificate authenticates.',
      ]);
    });
  });

  it('teams that share a member, set different tenants and grant different selectors are flagged (their common members are denied)', () => {
    const withTeams = (teams: string) =>
      parseConfig(
        `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity: { providers: [{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a }] }
teams:
${teams}
`,
        { env: {} },
      );
    const conflict = withTeams(`  a: { groups: [ops, a], selectors: [{ namespace: "~.+" }], headers: { X-Scope-OrgID: tenant-a } }
  b: { groups: [ops], selectors: [{ namespace: shared }], headers: { X-Scope-OrgID: tenant-b } }`);
    expect(configWarnings(conflict)).toEqual([expect.stringMatching(/^teams a and b share group "ops" but set different headers/)]);
    // Same tenant, or same selectors, or no shared member: they merge (or never meet).
    expect(configWarnings(withTeams(`  a: { groups: [ops], selectors: [{ namespace: "~.+" }], headers: { X-Scope-OrgID: t } }
  b: { groups: [ops], selectors: [{ namespace: shared }], headers: { x-scope-orgid: t } }`))).toEqual([]);
    expect(configWarnings(withTeams(`  a: { groups: [ops], selectors: [{ namespace: shared }], headers: { X-Scope-OrgID: t1 } }
  b: { groups: [ops], selectors: [{ namespace: shared }], headers: { X-Scope-OrgID: t2 } }`))).toEqual([]);
    // On different upstreams they never meet in one decision.
    expect(configWarnings(withTeams(`  a: { groups: [ops], selectors: [{ namespace: "~.+" }], headers: { X-Scope-OrgID: t1 }, upstreams: [metrics] }
  b: { groups: [ops], selectors: [{ namespace: shared }], headers: { X-Scope-OrgID: t2 }, upstreams: [logs] }`)).filter((w) => w.startsWith('teams a and b'))).toEqual([]);
    expect(configWarnings(withTeams(`  a: { groups: [a], selectors: [{ namespace: "~.+" }], headers: { X-Scope-OrgID: t1 } }
  b: { groups: [b], selectors: [{ namespace: shared }], headers: { X-Scope-OrgID: t2 } }`))).toEqual([]);
  });

  it('a labels allowlist is flagged as not enforced', () => {
    const cfg = parseConfig(
      `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity: { providers: [{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a }] }
teams:
  a: { groups: [a], selectors: [{ namespace: a }], labels: [service, namespace] }
  b: { groups: [b], selectors: [{ namespace: b }] }
`,
      { env: {} },
    );
    expect(configWarnings(cfg)).toEqual([expect.stringMatching(/^teams\.a\.labels \(\["service","namespace"\]\) is not enforced/)]);
  });

  it('an alternative without a positive matcher, and an upstream name that is not configured, are flagged', () => {
    const cfg = parseConfig(
      `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity: { providers: [{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a }] }
teams:
  a: { groups: [a], selectors: [{ namspace: "!kube-system" }, { namespace: a, env: "!prod" }], upstreams: [metrics, metrcs] }
  b: { groups: [b], selectors: [{ namespace: "*" }] }
`,
      { env: {} },
    );
    const w = configWarnings(cfg);
    expect(w).toHaveLength(3);
    expect(w[0]).toMatch(/^teams\.a\.selectors\[0\] has no positive matcher \(namspace!="kube-system"\)/);
    expect(w[1]).toMatch(/^teams\.a\.upstreams names no configured upstream: "metrcs"/);
    expect(w[2]).toMatch(/^teams\.b\.selectors\[0\] has no positive matcher/);
  });

  it('a regex that matches the empty string, and teams that can never grant, are flagged', () => {
    const cfg = parseConfig(
      `
upstreams: [{ name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }]
identity: { providers: [{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a }] }
teams:
  a: { groups: [a], selectors: [{ namespace: "~team-a|", app: x }] }
  b: { selectors: [{ namespace: b }] }
  c: { groups: [c], selectors: [{ namespace: c }], upstreams: [] }
  d: { groups: [d] }
`,
      { env: {} },
    );
    const w = configWarnings(cfg);
    expect(w).toEqual([
      expect.stringMatching(/^teams\.a\.selectors\[0\]\.namespace: the regex "team-a\|" matches the empty string/),
      'teams.b names no groups and no users: it grants nothing.',
      'teams.c.upstreams is empty: it grants nothing.',
      'teams.d has no selectors: it grants nothing.',
    ]);
  });

  it("a Tempo attribute Tempo's tag APIs cannot filter on (unscoped, or an unplaceable intrinsic) is flagged: tag lookups are refused under it", () => {
    const withAttributes = (attributes: string, kind = 'tempo') =>
      parseConfig(
        `
upstreams: [{ name: traces, kind: ${kind}, url: "http://127.0.0.1:9", mount: /tempo }]
identity: { providers: [{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a }] }
policy: { attributes: { tempo: ${attributes} } }
`,
        { env: {} },
      );
    expect(configWarnings(withAttributes('{ namespace: .k8s.namespace.name, team: "span:parentID" }'))).toEqual([
      expect.stringMatching(/^policy\.attributes\.tempo\.namespace is "\.k8s\.namespace\.name": Tempo's tag APIs cannot be restricted .* e\.g\. resource\.k8s\.namespace\.name\.$/),
      expect.stringMatching(/^policy\.attributes\.tempo\.team is "span:parentID"/),
    ]);
    expect(configWarnings(withAttributes('{ namespace: resource.k8s.namespace.name, team: span.team, svc: "trace:rootService" }'))).toEqual([]);
    // Without a Tempo upstream, nothing to say.
    expect(configWarnings(withAttributes('{ namespace: .k8s.namespace.name }', 'prometheus'))).toEqual([]);
  });
});

describe('team labels that are TraceQL intrinsics on Tempo', () => {
  const cfg = (team: string, attributes = '') =>
    parseConfig(
      `
upstreams:
  - { name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }
  - { name: traces, kind: tempo, url: "http://127.0.0.1:9", mount: /tempo }
identity:
  providers:
    - { type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a }
teams:
  d: ${team}
${attributes}`,
      { env: {} },
    );
  const intrinsic = (w: string[]) => w.filter((x) => x.includes('intrinsic on Tempo'));

  it('"name" (cAdvisor\'s container label) reaching Tempo unmapped is flagged: it is the span name there', () => {
    const w = intrinsic(configWarnings(cfg('{ groups: [gd], selectors: [{ name: x, namespace: a }] }')));
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/teams\.d: the selector label "name" is TraceQL's "name" intrinsic on Tempo \("traces"\)/);
  });

  it('not flagged when mapped, when the team does not reach Tempo, or for ordinary labels', () => {
    expect(intrinsic(configWarnings(cfg('{ groups: [gd], selectors: [{ name: x }] }', 'policy: { attributes: { tempo: { name: resource.k8s.container.name } } }')))).toEqual([]);
    expect(intrinsic(configWarnings(cfg('{ groups: [gd], upstreams: [metrics], selectors: [{ name: x }] }')))).toEqual([]);
    expect(intrinsic(configWarnings(cfg('{ groups: [gd], selectors: [{ namespace: a, app: b }] }')))).toEqual([]);
  });
});
