import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../e2e/harness/temp-dir.ts';

const bin = new URL('../../bin/lbac-gateway.js', import.meta.url).pathname;

function run(args: string[], input?: string | Buffer) {
  const r = spawnSync(process.execPath, [bin, ...args], { input, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('lbac-gateway CLI', () => {
  it('--help lists the commands; no command is a usage error', () => {
    const help = run(['--help']);
    expect(help.code).toBe(0);
    for (const c of ['serve', 'rewrite', 'policy eval', 'check-config']) expect(help.stdout).toContain(c);
    expect(run([]).code).toBe(2);
    expect(run(['frobnicate']).code).toBe(2);
  });

  it('rewrite: the acceptance example carries the matcher on both selectors and changes nothing else', () => {
    const q = 'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))';
    const r = run(['rewrite', '--lang', 'promql', '--matcher', 'namespace=~"a|b"', q]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('sum(rate(http_requests_total{code=~"5..",namespace=~"a|b"}[5m])) / sum(rate(http_requests_total{namespace=~"a|b"}[5m]))');
  });

  it('rewrite: several --matcher flags form one AND-group', () => {
    const r = run(['rewrite', '--lang', 'promql', '--matcher', 'namespace="a"', '--matcher', 'cluster!="prod"', 'up']);
    expect(r.stdout.trim()).toBe('up{namespace="a",cluster!="prod"}');
  });

  it('rewrite: a parse error goes to stderr with exit 1', () => {
    const r = run(['rewrite', '--lang', 'promql', '--matcher', 'namespace="a"', 'sum(rate(up[5m])']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/parse error/i);
  });

  it('rewrite: bad flags are usage errors (exit 2)', () => {
    expect(run(['rewrite', '--lang', 'sql', '--matcher', 'a="b"', 'x']).code).toBe(2);
    expect(run(['rewrite', '--lang', 'promql', 'up']).code).toBe(2);
    expect(run(['rewrite', '--lang', 'promql', '--matcher', 'not a matcher', 'up']).code).toBe(2);
  });

  it('rewrite: a --matcher regex that is not RE2 is a usage error in every language, as in --policy', () => {
    // PromQL used to print the query with the broken regex (which Prometheus then refuses) and exit 0.
    for (const lang of ['promql', 'logql']) {
      // In the matcher's string "\\1" is the regex \1: a backreference, which RE2 does not have.
      for (const re of ['a(b', '(?P<x>a)\\\\1']) {
        const r = run(['rewrite', '--lang', lang, '--matcher', `ns=~"${re}"`, '{job="x"}']);
        expect({ lang, re, code: r.code, stdout: r.stdout }).toEqual({ lang, re, code: 2, stdout: '' });
        expect(r.stderr).toMatch(/^rewrite: --matcher: .*not a valid RE2 regular expression/);
      }
    }
    const bad = run(['rewrite', '--lang', 'promql', '--matcher', 'ns="a"', '--matcher', 'team!~"x)|(.*"', '--jsonl'], '"up"\n');
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe('');
    const ok = run(['rewrite', '--lang', 'promql', '--matcher', 'ns=~"a|b"', '--matcher', 'team!~"x.*"', '{job="x"}']);
    expect(ok).toMatchObject({ code: 0, stdout: '{job="x",ns=~"a|b",team!~"x.*"}\n' });
  });

  it('rewrite --jsonl: record N answers input line N, whatever the line holds', () => {
    const lines = [
      Buffer.from('\uFEFF"up"'), // a BOM at the start of the input is dropped
      Buffer.from('"up{job=\\"a\u2028b\u2029c\\"}"'), // U+2028/U+2029 are allowed unescaped in a JSON string: not line ends
      Buffer.from(''), // an empty line is answered, not skipped
      Buffer.from('   '),
      Buffer.from('"rate(x[1m])"\r'), // CRLF
      Buffer.from([0x22, 0x75, 0x70, 0x7b, 0x61, 0x3d, 0x5c, 0x22, 0xc3, 0x28, 0x5c, 0x22, 0x7d, 0x22]), // "up{a=\"\xc3(\"}": invalid UTF-8
      Buffer.from('"\uFEFFup"'), // a BOM inside the input is the line's own (and no query)
      Buffer.from('"last"'), // no "\n" after the last line
    ];
    const r = run(['rewrite', '--lang', 'promql', '--matcher', 'ns="a"', '--jsonl'], Buffer.concat(lines.flatMap((l, i) => (i === 0 ? [l] : [Buffer.from('\n'), l]))));
    const records = r.stdout.split('\n').slice(0, -1).map((l) => JSON.parse(l) as { query?: string; error?: string });
    expect(records).toHaveLength(lines.length);
    expect(records[0]).toEqual({ query: 'up{ns="a"}' });
    expect(records[1]).toEqual({ query: 'up{job="a\u2028b\u2029c",ns="a"}' });
    expect(records[2]).toEqual({ error: 'empty line' });
    expect(records[3]).toEqual({ error: 'empty line' });
    expect(records[4]).toEqual({ query: 'rate(x{ns="a"}[1m])' });
    // Not rewritten with U+FFFD in place of the bad byte: that would be another query, reported as a success.
    expect(records[5]).toEqual({ error: 'line is not valid UTF-8' });
    expect(records[6]!.error).toBeDefined();
    expect(records[7]).toEqual({ query: 'last{ns="a"}' });
    expect(r.code).toBe(1);
    // The "\n" that ends the input starts no line of its own.
    const clean = run(['rewrite', '--lang', 'promql', '--matcher', 'ns="a"', '--jsonl'], '"up"\n"down"\n');
    expect(clean).toMatchObject({ code: 0, stdout: '{"query":"up{ns=\\"a\\"}"}\n{"query":"down{ns=\\"a\\"}"}\n', stderr: '' });
    expect(run(['rewrite', '--lang', 'promql', '--matcher', 'ns="a"', '--jsonl'], '')).toMatchObject({ code: 0, stdout: '' });
  });

  it('rewrite --jsonl: one JSON result per input line, same order, errors inline, exit 1 after all lines if any failed', () => {
    const input = ['"up"', '"sum(rate(x[5m]"', '42', '"rate(y[1m])"'].join('\n') + '\n';
    const r = run(['rewrite', '--lang', 'promql', '--matcher', 'ns="a"', '--jsonl'], input);
    expect(r.code).toBe(1);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { query?: string; error?: string });
    expect(lines).toHaveLength(4);
    expect(lines[0]).toEqual({ query: 'up{ns="a"}' });
    expect(lines[1]!.error).toMatch(/parse error/i);
    expect(lines[2]!.error).toMatch(/JSON string/);
    expect(lines[3]).toEqual({ query: 'rate(y{ns="a"}[1m])' });
  });

  it('rewrite --policy takes a DNF decision file', () => {
    const dir = tempDir('lbac-cli-');
    const file = join(dir, 'policy.json');
    writeFileSync(file, JSON.stringify({ selectors: [[{ name: 'ns', op: '=', value: 'a' }]] }));
    const r = run(['rewrite', '--lang', 'promql', '--policy', file, 'up']);
    expect(r.stdout.trim()).toBe('up{ns="a"}');
  });

  it('check-config: OK for every example config, file/line/key on error', () => {
    const examples = readdirSync(new URL('../../examples/', import.meta.url)).filter((f) => f.endsWith('.yaml'));
    expect(examples).toEqual(expect.arrayContaining(['gateway.yaml', 'demo-teams.yaml']));
    for (const f of examples) {
      const ok = run(['check-config', new URL(`../../examples/${f}`, import.meta.url).pathname]);
      expect({ f, code: ok.code, stderr: ok.stderr }).toEqual({ f, code: 0, stderr: '' });
      expect(ok.stdout).toMatch(/OK \(1 upstream\(s\), 2 team\(s\)\)/);
    }
    const dir = tempDir('lbac-cli-');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'upstreams:\n  - name: p\n    kind: prometheus\n    url: http://x:1\n    colour: red\nidentity:\n  providers: []\n');
    const r = run(['check-config', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('line 5');
    expect(r.stderr).toContain('upstreams.0.colour');
  });

  it('check-config takes the file as serve does: --config/-c, $LBAC_CONFIG, ./lbac-gateway.yaml', () => {
    const example = new URL('../../examples/gateway.yaml', import.meta.url).pathname;
    for (const args of [['--config', example], ['-c', example]]) {
      const r = run(['check-config', ...args]);
      expect({ args, code: r.code, stdout: r.stdout.trim() }).toEqual({ args, code: 0, stdout: `${example}: OK (1 upstream(s), 2 team(s))` });
    }
    const dir = tempDir('lbac-cli-');
    writeFileSync(join(dir, 'lbac-gateway.yaml'), readFileSync(example, 'utf8'));
    const { LBAC_CONFIG: _unset, ...env } = process.env;
    const byDefault = spawnSync(process.execPath, [bin, 'check-config'], { cwd: dir, encoding: 'utf8', env });
    expect({ code: byDefault.status, stdout: byDefault.stdout.trim() }).toEqual({ code: 0, stdout: 'lbac-gateway.yaml: OK (1 upstream(s), 2 team(s))' });
    const fromEnv = spawnSync(process.execPath, [bin, 'check-config'], { cwd: dir, encoding: 'utf8', env: { ...env, LBAC_CONFIG: example } });
    expect(fromEnv.stdout.trim()).toBe(`${example}: OK (1 upstream(s), 2 team(s))`);
    expect(run(['check-config', example, '--config', example]).code).toBe(2);
    expect(run(['check-config', '--help']).stdout).toContain('check-config [FILE | --config FILE]');
  });

  it('--help / -h after any command prints the usage and exits 0 (serve starts nothing)', () => {
    for (const args of [['rewrite', '--help'], ['rewrite', '--lang', 'promql', '-h'], ['policy', 'eval', '--help'], ['policy', '-h'], ['serve', '--help'], ['serve', '-h', '--config', 'missing.yaml'], ['check-config', '-h']]) {
      const r = run(args);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
      expect(r.stdout).toContain('Usage:');
      expect(r.stdout).toContain('lbac-gateway policy eval --input FILE');
    }
    expect(run(['--help']).stdout).toMatch(/--jsonl: one output record per input line.*\n.*exit 1 if any line failed/);
  });

  it('check-config reads the files only serve reads (listener TLS, bundle keys) and prints warnings', () => {
    const dir = tempDir('lbac-cli-');
    const base = 'upstreams: [{ name: p, kind: prometheus, url: "http://127.0.0.1:9", mount: / }]\n';
    const jwt = (claims = '') => `identity: { providers: [{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a${claims} }] }\n`;
    const tls = join(dir, 'tls.yaml');
    writeFileSync(tls, `server: { tls: { cert: ${join(dir, 'missing.crt')}, key: ${join(dir, 'missing.key')} } }\n${base}${jwt()}`);
    const t = run(['check-config', tls]);
    expect(t.code).toBe(1);
    expect(t.stderr).toMatch(/missing\.crt/);
    const bundle = join(dir, 'bundle.yaml');
    writeFileSync(bundle, `${base}${jwt()}policy: { bundle: { url: "http://127.0.0.1:9", signing: { keys: [{ keyid: k, publicKeyFile: ${join(dir, 'missing.pem')} }] } } }\n`);
    const b = run(['check-config', bundle]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/missing\.pem/);
    // The identity sources' local files: until 2026-11-27 a missing jwksFile passed check-config and stopped serve.
    const jwksFile = (file: string) => `identity: { providers: [{ type: jwt, jwksFile: ${file}, issuer: i, audience: a }] }\n`;
    const noJwks = join(dir, 'no-jwks.yaml');
    writeFileSync(noJwks, `${base}${jwksFile('missing-jwks.json')}`);
    const j = run(['check-config', noJwks]);
    expect(j.code).toBe(1);
    expect(j.stderr).toMatch(/cannot read jwksFile .*missing-jwks\.json: ENOENT/);
    writeFileSync(join(dir, 'not-a-jwks.json'), '{"kty": "RSA"}');
    const notJwks = join(dir, 'not-jwks.yaml');
    writeFileSync(notJwks, `${base}${jwksFile('not-a-jwks.json')}`);
    const nj = run(['check-config', notJwks]);
    expect(nj.code).toBe(1);
    expect(nj.stderr).toMatch(/jwksFile .*not-a-jwks\.json is not a JSON Web Key Set/);
    const noSecret = join(dir, 'no-secret.yaml');
    writeFileSync(
      noSecret,
      `${base}identity: { providers: [{ type: introspection, introspectionUrl: "http://127.0.0.1:9/i", clientId: c, clientSecretFile: missing-secret, audience: a }] }\n`,
    );
    const s = run(['check-config', noSecret]);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/cannot read clientSecretFile .*missing-secret: ENOENT/);
    const warn = join(dir, 'warn.yaml');
    writeFileSync(warn, `${base}${jwt(', claims: { subject: preferred_username }')}`);
    const w = run(['check-config', warn]);
    expect(w.code).toBe(0);
    expect(w.stderr).toMatch(/warning: identity.providers\[0\] \(jwt\): claims.subject is "preferred_username"/);
    // Teams over the policy decision bounds: alone, an error (the default policy would fail every request of its
    // members); together through one group, a warning.
    const alts = (n: number, from: number) => Array.from({ length: n }, (_, i) => `{ namespace: ns-${from + i} }`).join(', ');
    const huge = join(dir, 'huge.yaml');
    writeFileSync(huge, `${base}${jwt()}teams:\n  huge: { groups: [h], selectors: [${alts(1025, 0)}] }\n`);
    const hu = run(['check-config', huge]);
    expect(hu.code).toBe(1);
    expect(hu.stderr).toMatch(/line 4, key teams\.huge: teams\.huge: the decision for its members would hold 1025 selector alternatives/);
    const pair = join(dir, 'pair.yaml');
    writeFileSync(pair, `${base}${jwt()}teams:\n  a: { groups: [g], selectors: [${alts(600, 0)}] }\n  b: { groups: [g], selectors: [${alts(600, 1000)}] }\n`);
    const pa = run(['check-config', pair]);
    expect(pa.code).toBe(0);
    expect(pa.stderr).toMatch(/warning: teams a, b together \(group "g" is in all of them\) make a decision of 1200 selector alternatives/);
  });

  describe('check-config looks at audit.file (creating and changing nothing)', () => {
    const base = 'upstreams: [{ name: p, kind: prometheus, url: "http://127.0.0.1:9", mount: / }]\nidentity: { providers: [{ type: jwt, jwksUrl: "http://127.0.0.1:9/j", issuer: i, audience: a }] }\n';
    const check = (dir: string, audit: string) => {
      const cfg = join(dir, `audit-${Math.random().toString(36).slice(2)}.yaml`);
      writeFileSync(cfg, `${base}audit: ${audit}\n`);
      return run(['check-config', cfg]);
    };

    it('a directory, or a path through a regular file, is an error naming audit.file', () => {
      const dir = tempDir('lbac-cli-');
      mkdirSync(join(dir, 'logs'));
      const d = check(dir, '{ destination: file, file: logs }');
      expect(d.code).toBe(1);
      expect(d.stderr).toMatch(/key audit\.file: .*logs is a directory/);
      writeFileSync(join(dir, 'plain'), '');
      const f = check(dir, '{ destination: file, file: plain/sub/audit.log }');
      expect(f.code).toBe(1);
      expect(f.stderr).toMatch(/key audit\.file: cannot create .*plain\/sub\/audit\.log: .*plain is not a directory/);
      // Not written to: the audit log is off, or goes to stdout.
      expect(check(dir, '{ enabled: false, destination: file, file: logs }')).toMatchObject({ code: 0, stderr: '' });
      expect(check(dir, '{ destination: stdout, file: logs }')).toMatchObject({ code: 0, stderr: '' });
    });

    it('a missing directory is a warning (serve creates it) and is not created; an existing file is left as it is', () => {
      const dir = tempDir('lbac-cli-');
      const m = check(dir, '{ destination: file, file: new/deeper/audit.log }');
      expect(m.code).toBe(0);
      expect(m.stderr).toMatch(/warning: audit\.file: directory .*new\/deeper does not exist; serve creates it/);
      expect(existsSync(join(dir, 'new'))).toBe(false);
      const file = join(dir, 'audit.log');
      writeFileSync(file, 'earlier line\n');
      const before = statSync(file).mtimeMs;
      expect(check(dir, '{ destination: file, file: audit.log }')).toMatchObject({ code: 0, stderr: '' });
      expect(readFileSync(file, 'utf8')).toBe('earlier line\n');
      expect(statSync(file).mtimeMs).toBe(before);
    });

    // Root may write anywhere: the permission cases only mean something for another user.
    it.skipIf(process.getuid?.() === 0)('an unwritable file or directory is an error', () => {
      const dir = tempDir('lbac-cli-');
      writeFileSync(join(dir, 'ro.log'), '');
      chmodSync(join(dir, 'ro.log'), 0o444);
      const f = check(dir, '{ destination: file, file: ro.log }');
      expect(f.code).toBe(1);
      expect(f.stderr).toMatch(/key audit\.file: .*ro\.log is not writable: EACCES/);
      mkdirSync(join(dir, 'ro'), 0o555);
      const d = check(dir, '{ destination: file, file: ro/audit.log }');
      expect(d.code).toBe(1);
      expect(d.stderr).toMatch(/key audit\.file: cannot create .*directory .*ro is not writable: EACCES/);
    });
  });

  it('policy eval: prints the validated decision of the bundled policy for the config teams', () => {
    const dir = tempDir('lbac-cli-');
    const input = join(dir, 'input.json');
    writeFileSync(
      input,
      JSON.stringify({
        subject: { sub: '4c1d2a7e-bob', username: 'someone', groups: [], roles: [], auth: 'jwt', claims: {} },
        request: { upstream: 'prometheus', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' },
      }),
    );
    const r = run(['policy', 'eval', '--input', input, '--config', new URL('../../examples/gateway.yaml', import.meta.url).pathname]);
    expect(r.stderr).toBe('');
    const d = JSON.parse(r.stdout) as { allow: boolean; selectors: unknown; headers: unknown };
    expect(d.allow).toBe(true);
    expect(d.selectors).toEqual([[{ name: 'namespace', op: '=~', value: 'team-b-api|team-b-db' }]]);
    expect(d.headers).toEqual({ 'X-Scope-OrgID': 'tenant-b' });
  });
});

describe('lbac-gateway policy eval --provider', () => {
  // Two providers: the in-house issuer without prefixes, a partner's with "partner:" on groups and subject ids.
  const dir = tempDir('lbac-cli-provider-');
  const jwks = join(dir, 'jwks.json');
  writeFileSync(jwks, JSON.stringify({ keys: [] }));
  const config = join(dir, 'gateway.yaml');
  writeFileSync(
    config,
    [
      'upstreams:',
      '  - { name: metrics, kind: prometheus, url: "http://127.0.0.1:9", mount: /prometheus }',
      'identity:',
      '  providers:',
      `    - { type: jwt, issuer: "https://idp.example", audience: gw, jwksFile: ${JSON.stringify(jwks)} }`,
      `    - { type: jwt, issuer: "https://partner.example", audience: gw, jwksFile: ${JSON.stringify(jwks)}, groupsPrefix: "partner:", usersPrefix: "partner:" }`,
      'teams:',
      '  team-a: { groups: [team-a], selectors: [{ namespace: team-a }] }',
      '  partner-a: { groups: ["partner:team-a"], selectors: [{ namespace: partner-a }] }',
    ].join('\n'),
  );
  const inputWith = (subject: Record<string, unknown>): string => {
    const f = join(dir, `input-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(f, JSON.stringify({ subject: { roles: [], auth: 'jwt', claims: {}, ...subject }, request: { upstream: 'metrics', kind: 'prometheus', endpoint: 'query', method: 'GET', path: '/api/v1/query' } }));
    return f;
  };
  const evalAs = (subject: Record<string, unknown>, provider?: string) =>
    run(['policy', 'eval', '--input', inputWith(subject), '--config', config, ...(provider === undefined ? [] : ['--provider', provider])]);

  it('puts the subject in the provider\'s namespace before deciding, as the server does', () => {
    const asPartner = evalAs({ sub: 'u-1', groups: ['team-a'] }, '1');
    expect(asPartner.code).toBe(0);
    expect(asPartner.stderr).toContain('"sub":"partner:u-1"');
    expect(asPartner.stderr).toContain('"groups":["partner:team-a"]');
    expect((JSON.parse(asPartner.stdout) as { selectors: unknown }).selectors).toEqual([[{ name: 'namespace', op: '=', value: 'partner-a' }]]);
    // The same groups from the in-house issuer are its own team-a; without --provider the input is taken as given.
    for (const r of [evalAs({ sub: 'u-1', groups: ['team-a'] }, '0'), evalAs({ sub: 'u-1', groups: ['team-a'] })]) {
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as { selectors: unknown }).selectors).toEqual([[{ name: 'namespace', op: '=', value: 'team-a' }]]);
    }
  });

  it('drops what the provider may not yield, and refuses a subject id in another provider\'s namespace', () => {
    // An unprefixed issuer minting "partner:team-a" does not get the partner's team.
    const forged = evalAs({ sub: 'u-2', groups: ['partner:team-a'] }, '0');
    expect(forged.code).toBe(0);
    expect((JSON.parse(forged.stdout) as { allow: boolean }).allow).toBe(false);
    const refused = evalAs({ sub: 'partner:u-1', groups: [] }, '0');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/another identity provider's namespace/);
  });

  it('refuses the signature options without --bundle (and the key\'s options without the key) as a usage error', () => {
    const input = inputWith({ sub: 'u-1', groups: ['team-a'] });
    const key = join(dir, 'unused.pub.pem');
    writeFileSync(key, 'not read: the flags are refused first');
    // They used to be ignored silently for a plain wasm, printing a decision as if a signature had been checked.
    for (const extra of [['--verification-key', key], ['--verification-key', key, '--scope', 's'], ['--policy', 'x.wasm', '--verification-key', key]]) {
      const r = run(['policy', 'eval', '--input', input, '--config', config, ...extra]);
      expect({ extra, code: r.code, stdout: r.stdout }).toEqual({ extra, code: 2, stdout: '' });
      expect(r.stderr).toMatch(/^policy eval: --verification-key(, --scope)? without --bundle: give the bundle as --bundle FILE\.tar\.gz/);
    }
    for (const extra of [['--verification-key-id', 'k'], ['--signing-alg', 'ES256'], ['--scope', 's']]) {
      expect(run(['policy', 'eval', '--input', input, '--config', config, ...extra]).stderr).toMatch(new RegExp(`^policy eval: ${extra[0]} without --bundle`));
      const withBundle = run(['policy', 'eval', '--input', input, '--bundle', 'b.tar.gz', ...extra]);
      expect(withBundle.code).toBe(2);
      expect(withBundle.stderr).toMatch(new RegExp(`^policy eval: ${extra[0]} without --verification-key PEM`));
    }
    // Without the options the same call decides.
    expect(run(['policy', 'eval', '--input', input, '--config', config]).code).toBe(0);
  });

  it('needs --config and an index the config has', () => {
    expect(run(['policy', 'eval', '--input', inputWith({ sub: 'u-1', groups: [] }), '--provider', '0']).code).toBe(2);
    for (const bad of ['2', '01', '1.5', 'partner']) {
      const r = evalAs({ sub: 'u-1', groups: [] }, bad);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('identity.providers[0] to [1]');
    }
  });
});
