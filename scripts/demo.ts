// `make run`: a seeded Prometheus, a test JWT issuer and the gateway (started
// through its CLI with examples/demo-teams.yaml), then tokens and ready-to-paste
// curl commands showing that the same query answers differently per user.
//
//   node scripts/demo.ts            run until Ctrl-C (files in .run/demo/)
//   node scripts/demo.ts --smoke    start, check isolation with real requests, exit 0/1
//                                   (files in a temp dir, free ports: safe beside a running demo)
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parse } from 'yaml';
import { NAMESPACES, SEED_TARGETS, TEAM_NAMESPACES, buildTeamsOpenMetrics } from '../e2e/fixtures/seed.ts';
import { gatewayBin, startGateway } from '../e2e/harness/gateway.ts';
import type { GatewayInstance } from '../e2e/harness/gateway.ts';
import { freePort, isPortFree } from '../e2e/harness/ports.ts';
import { startPrometheus } from '../e2e/harness/prometheus.ts';
import type { PrometheusInstance } from '../e2e/harness/prometheus.ts';
import { createTestIssuer } from '../e2e/harness/tokens.ts';
import { repoRoot } from '../e2e/harness/tools.ts';

const smoke = process.argv.includes('--smoke');
const QUERY = 'sum by (namespace) (rate(http_requests_total[5m]))';
const ISSUER = 'https://issuer.demo.lbac-gateway.invalid';
const AUDIENCE = 'lbac-gateway';
const TOKEN_HOURS = 12;
const PREFERRED_PORT = 8080;
const PREFERRED_ADMIN_PORT = 9091;
const CONFIG_TEMPLATE = join(repoRoot, 'examples', 'demo-teams.yaml');

const USERS = [
  { name: 'alice', env: 'ALICE', groups: ['team-a'], sees: 'team-a namespaces (team-a-.*)' },
  { name: 'bob', env: 'BOB', groups: ['team-b'], sees: 'team-b namespaces (team-b-.*)' },
  { name: 'carol', env: 'CAROL', groups: ['admins'], sees: 'everything (admin, no rewriting)' },
  { name: 'dana', env: 'DANA', groups: ['team-a', 'team-b'], sees: 'one team per request, named by X-Lbac-Team (the teams are on different tenants); 403 without it' },
] as const;

function log(msg: string): void {
  process.stderr.write(`[demo] ${msg}\n`);
}

/**
 * examples/demo-teams.yaml with this run's Prometheus and admin port; its `jwksFile:
 * jwks.json` resolves next to the written config, where the test issuer puts its keys.
 */
function demoConfig(promUrl: string, adminPort: number): Record<string, unknown> {
  const config = parse(readFileSync(CONFIG_TEMPLATE, 'utf8')) as {
    server: Record<string, unknown>;
    upstreams: Array<Record<string, unknown>>;
    identity: { providers: Array<Record<string, unknown>> };
  };
  const provider = config.identity.providers[0];
  if (config.upstreams.length !== 1 || provider?.['jwksFile'] !== 'jwks.json' || provider['issuer'] !== ISSUER || provider['audience'] !== AUDIENCE) {
    throw new Error(`${relative(process.cwd(), CONFIG_TEMPLATE)} no longer has the one upstream and the jwt provider (jwksFile jwks.json, issuer ${ISSUER}, audience ${AUDIENCE}) the demo fills in`);
  }
  config.upstreams[0]!['url'] = promUrl;
  config.server['adminListen'] = `127.0.0.1:${adminPort}`;
  return config;
}

// ---- smoke checks ------------------------------------------------------------

interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

async function call(url: string, token: string | undefined, extraHeaders: Record<string, string> = {}): Promise<{ status: number; body: unknown; text: string }> {
  const headers: Record<string, string> = { ...extraHeaders };
  if (token !== undefined) headers['Authorization'] = `Bearer ${token}`;
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, body, text };
}

function resultNamespaces(body: unknown): string[] | undefined {
  const result = (body as { data?: { result?: Array<{ metric?: Record<string, string> }> } } | undefined)?.data?.result;
  if (!Array.isArray(result)) return undefined;
  return [...new Set(result.map((r) => r.metric?.['namespace'] ?? '<none>'))].sort();
}

function sameSet(a: readonly string[] | undefined, b: readonly string[]): boolean {
  if (a === undefined) return false;
  const sb = [...b].sort();
  return a.length === sb.length && a.every((x, i) => x === sb[i]);
}

function short(text: string, max = 300): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

async function runSmoke(gw: string, admin: string, tokens: Record<string, string>): Promise<CheckResult[]> {
  const api = `${gw}/prometheus/api/v1`;
  const q = (query: string): string => `${api}/query?${new URLSearchParams({ query })}`;
  const checks: CheckResult[] = [];
  const add = (name: string, ok: boolean, detail: string): void => {
    checks.push({ name, ok, detail });
    process.stdout.write(`${ok ? 'PASS' : 'FAIL'}  ${name}\n      ${detail}\n`);
  };

  const expected: Record<string, readonly string[]> = {
    alice: TEAM_NAMESPACES['team-a'],
    bob: TEAM_NAMESPACES['team-b'],
    carol: NAMESPACES,
  };
  for (const user of ['alice', 'bob', 'carol'] as const) {
    const r = await call(q(QUERY), tokens[user]);
    const ns = resultNamespaces(r.body);
    add(
      `${user}: "${QUERY}" sees only ${expected[user]?.join(', ')}`,
      r.status === 200 && sameSet(ns, expected[user] ?? []),
      `HTTP ${r.status}, namespaces: ${ns?.join(', ') ?? short(r.text)}`,
    );
  }

  {
    const r = await call(`${api}/label/namespace/values`, tokens['alice']);
    const values = (r.body as { data?: unknown } | undefined)?.data;
    const list = Array.isArray(values) ? (values as string[]) : undefined;
    add(
      'alice: /api/v1/label/namespace/values lists only team-a namespaces',
      r.status === 200 && sameSet(list ? [...list].sort() : undefined, TEAM_NAMESPACES['team-a']),
      `HTTP ${r.status}, values: ${list?.join(', ') ?? short(r.text)}`,
    );
  }

  {
    const r = await call(q(QUERY), tokens['alice'], { 'X-Scope-OrgID': 'tenant-b' });
    const ns = resultNamespaces(r.body);
    add(
      'alice with a spoofed "X-Scope-OrgID: tenant-b" still sees only team-a',
      r.status === 200 && sameSet(ns, TEAM_NAMESPACES['team-a']),
      `HTTP ${r.status}, namespaces: ${ns?.join(', ') ?? short(r.text)}`,
    );
  }

  {
    const r = await call(q('up{namespace="team-b-db"}'), tokens['alice']);
    const ns = resultNamespaces(r.body);
    add(
      'alice asking for team-b-db explicitly gets nothing',
      r.status === 200 && ns !== undefined && ns.length === 0,
      `HTTP ${r.status}, series: ${ns === undefined ? short(r.text) : ns.length}`,
    );
  }

  {
    const r = await call(q(QUERY), tokens['dana']);
    add('dana (team-a and team-b, different tenants) without X-Lbac-Team → 403', r.status === 403, `HTTP ${r.status} ${short(r.text, 160)}`);
  }

  for (const team of ['team-a', 'team-b'] as const) {
    const r = await call(q(QUERY), tokens['dana'], { 'X-Lbac-Team': team });
    const ns = resultNamespaces(r.body);
    add(
      `dana with "X-Lbac-Team: ${team}" sees only ${TEAM_NAMESPACES[team].join(', ')}`,
      r.status === 200 && sameSet(ns, TEAM_NAMESPACES[team]),
      `HTTP ${r.status}, namespaces: ${ns?.join(', ') ?? short(r.text)}`,
    );
  }

  {
    const r = await call(q(QUERY), undefined);
    add('no token → 401', r.status === 401, `HTTP ${r.status} ${short(r.text, 160)}`);
  }

  {
    const r = await call(q(QUERY), tokens['forged']);
    add('a token claiming "admins", signed with a key the issuer does not publish → 401', r.status === 401, `HTTP ${r.status} ${short(r.text, 160)}`);
  }

  {
    const r = await call(q('sum(rate(http_requests_total[5m])'), tokens['alice']);
    add('unparsable query → 400', r.status === 400, `HTTP ${r.status} ${short(r.text, 160)}`);
  }

  {
    const r = await call(`${gw}/readyz`, undefined);
    add('/readyz on the main port → 200 "ready"', r.status === 200 && (r.body as { status?: unknown } | undefined)?.status === 'ready', `HTTP ${r.status} ${short(r.text, 160)}`);
    const main = await call(`${gw}/metrics`, undefined);
    const m = await call(`${admin}/metrics`, undefined);
    add(
      '/metrics only on the admin listener, counting the requests above',
      main.status === 404 && m.status === 200 && /^lbac_gateway_requests_total\{.*status="401"/m.test(m.text),
      `main port HTTP ${main.status}, admin HTTP ${m.status}`,
    );
  }
  return checks;
}

// ---- friendly output -----------------------------------------------------------

function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function printBanner(opts: {
  gw: string;
  admin: string;
  prom: PrometheusInstance;
  gateway: GatewayInstance;
  runDir: string;
  tokens: Record<string, string>;
  startedMs: number;
}): void {
  const rel = (p: string): string => relative(process.cwd(), p) || p;
  const curl = (envVar: string, path: string, params: Record<string, string>, extra = ''): string => {
    const data = Object.entries(params)
      .map(([k, v]) => ` --data-urlencode ${sq(`${k}=${v}`)}`)
      .join('');
    const auth = envVar === '' ? '' : ` -H "Authorization: Bearer $${envVar}"`;
    return `curl -s -G${auth}${extra} "$GW/prometheus${path}"${data}; echo`;
  };
  const lines: string[] = [];
  const hr = '─'.repeat(78);
  lines.push('', hr, ` lbac-gateway demo — ready in ${(opts.startedMs / 1000).toFixed(1)} s`, hr);
  lines.push(`  gateway     ${opts.gw}    (config ${rel(join(opts.runDir, 'config.yaml'))}, from ${rel(CONFIG_TEMPLATE)}; log ${rel(opts.gateway.logFile)})`);
  lines.push(`  admin       ${opts.admin}    (/metrics, /healthz, /readyz: docs/operations.md)`);
  lines.push(`  prometheus  ${opts.prom.url}    (direct, NO access control; ${SEED_TARGETS.length} targets in ${NAMESPACES.length} namespaces: ${NAMESPACES.join(', ')})`);
  lines.push(`  issuer      ${ISSUER}, audience ${AUDIENCE}, RS256, keys in ${rel(opts.runDir)}/`);
  for (const u of USERS) lines.push(`  ${u.name.padEnd(6)} groups [${u.groups.join(', ')}] → sees ${u.sees}`);
  lines.push('', `# Paste into a shell (tokens valid for ${TOKEN_HOURS} h):`, '');
  lines.push(`export GW=${opts.gw}`);
  for (const u of USERS) lines.push(`export ${u.env}=${opts.tokens[u.name]}`);
  lines.push(`export FORGED=${opts.tokens['forged']}`);
  lines.push(`export ADMIN=${opts.admin}`);
  lines.push('', '# 1. The same query, three users, three answers (pipe to jq for readability):');
  for (const u of USERS) if (u.name !== 'dana') lines.push(curl(u.env, '/api/v1/query', { query: QUERY }));
  lines.push('', '# 2. Label values are filtered too (Grafana dropdowns):');
  lines.push(curl('ALICE', '/api/v1/label/namespace/values', {}));
  lines.push(curl('BOB', '/api/v1/label/namespace/values', {}));
  lines.push('', '# 3. Spoofing does not help: the client X-Scope-OrgID is dropped, explicit matchers stay ANDed:');
  lines.push(curl('ALICE', '/api/v1/query', { query: QUERY }, ' -H "X-Scope-OrgID: tenant-b"'));
  lines.push(curl('ALICE', '/api/v1/query', { query: 'up{namespace="team-b-db"}' }));
  lines.push('', '# 4. dana is in both teams, which read different tenants: she names one per request (403 without):');
  lines.push(curl('DANA', '/api/v1/query', { query: QUERY }));
  lines.push(curl('DANA', '/api/v1/query', { query: QUERY }, ' -H "X-Lbac-Team: team-b"'));
  lines.push('', '# 5. No token → 401; nor does a forged one get in (FORGED claims "admins", signed with a key the issuer does not publish):');
  lines.push(curl('', '/api/v1/query', { query: 'up' }).replace('curl -s', 'curl -s -i'));
  lines.push(curl('FORGED', '/api/v1/query', { query: 'up' }));
  lines.push('', '# 6. A query the gateway cannot parse is never forwarded → 400:');
  lines.push(curl('ALICE', '/api/v1/query', { query: 'sum(rate(http_requests_total[5m])' }));
  lines.push('', '# 7. Operations (docs/operations.md): readiness on both ports, metrics only on the admin listener;');
  lines.push('#    edit the config file above and the gateway reloads it (its log: "config reloaded"):');
  lines.push('curl -s "$GW/readyz"; echo');
  lines.push('curl -s "$ADMIN/metrics" | grep "^lbac_gateway_requests_total"');
  lines.push('', `# Compare with Prometheus itself (no access control): curl -s -G ${opts.prom.url}/api/v1/query --data-urlencode ${sq(`query=${QUERY}`)}`);
  lines.push('', 'Stop with Ctrl-C.', hr, '');
  process.stdout.write(lines.join('\n'));
}

// ---- main ----------------------------------------------------------------------

async function main(): Promise<number> {
  const t0 = Date.now();
  const runDir = smoke ? await mkdtemp(join(tmpdir(), 'lbac-demo-smoke-')) : join(repoRoot, '.run', 'demo');
  mkdirSync(runDir, { recursive: true });
  for (const f of ['prometheus.log', 'gateway.log']) rmSync(join(runDir, f), { force: true });

  let prom: PrometheusInstance | undefined;
  let gateway: GatewayInstance | undefined;
  let shuttingDown = false;
  const shutdown = async (code: number): Promise<never> => {
    if (!shuttingDown) {
      shuttingDown = true;
      await gateway?.stop().catch(() => undefined);
      await prom?.stop().catch(() => undefined);
      if (smoke && process.env['LBAC_E2E_KEEP_TMP'] !== '1') rmSync(runDir, { recursive: true, force: true });
    }
    process.exit(code);
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (!smoke) process.stderr.write('\n');
      log(`${sig}: stopping the gateway and Prometheus`);
      void shutdown(0);
    });
  }

  try {
    const now = Date.now();
    // Seed ahead of "now" for as long as the tokens live, so instant queries
    // at the current time keep finding data while the demo runs.
    const futureSeconds = smoke ? 0 : TOKEN_HOURS * 3600;
    log(`seeding Prometheus (${NAMESPACES.length} namespaces, 2 h of history${futureSeconds > 0 ? `, ${TOKEN_HOURS} h ahead` : ''})`);
    prom = await startPrometheus({
      openMetrics: buildTeamsOpenMetrics({ now, futureSeconds }),
      workDir: join(runDir, 'prometheus'),
      logFile: join(runDir, 'prometheus.log'),
    });
    log(`Prometheus ready at ${prom.url}`);

    const issuer = await createTestIssuer({
      issuer: ISSUER,
      audience: AUDIENCE,
      alg: 'RS256',
      dir: runDir,
      kid: 'demo-1',
      writePrivateKey: !smoke,
    });
    const tokens: Record<string, string> = {};
    for (const u of USERS) {
      tokens[u.name] = await issuer.mint(
        { sub: `u-${u.name}`, preferred_username: u.name, email: `${u.name}@example.com`, groups: [...u.groups] },
        { expiresIn: `${TOKEN_HOURS}h` },
      );
    }
    // Well-formed, right issuer, audience and kid, but signed with a key not in jwks.json.
    tokens['forged'] = await issuer.mint(
      { sub: 'u-mallory', preferred_username: 'mallory', groups: ['admins'] },
      { expiresIn: `${TOKEN_HOURS}h`, key: 'foreign' },
    );
    if (!smoke) {
      writeFileSync(
        join(runDir, 'tokens.env'),
        [...USERS.map((u) => `export ${u.env}=${tokens[u.name]}\n`), `export FORGED=${tokens['forged']}\n`].join(''),
        { mode: 0o600 },
      );
    }

    const port = !smoke && (await isPortFree(PREFERRED_PORT)) ? PREFERRED_PORT : undefined;
    if (!smoke && port === undefined) log(`port ${PREFERRED_PORT} is taken, using a free port`);
    const adminPort = !smoke && (await isPortFree(PREFERRED_ADMIN_PORT)) ? PREFERRED_ADMIN_PORT : await freePort();
    if (!smoke && adminPort !== PREFERRED_ADMIN_PORT) log(`port ${PREFERRED_ADMIN_PORT} is taken, the admin listener uses ${adminPort}`);
    const admin = `http://127.0.0.1:${adminPort}`;
    log(`starting the gateway: ${relative(process.cwd(), gatewayBin)} serve --config ${join(runDir, 'config.yaml')}`);
    gateway = await startGateway({
      config: demoConfig(prom.url, adminPort),
      configFile: join(runDir, 'config.yaml'),
      ...(port !== undefined ? { port } : {}),
      logFile: join(runDir, 'gateway.log'),
    });
    const gw = gateway.url;
    log(`gateway ready at ${gw}`);

    if (smoke) {
      const checks = await runSmoke(gw, admin, tokens);
      const failed = checks.filter((c) => !c.ok);
      process.stdout.write(`\nsmoke: ${checks.length - failed.length} passed, ${failed.length} failed\n`);
      if (failed.length > 0) process.stdout.write(`gateway log tail:\n${gateway.tail(30)}\n`);
      return shutdown(failed.length === 0 ? 0 : 1);
    }

    printBanner({ gw, admin, prom, gateway, runDir, tokens, startedMs: Date.now() - t0 });
    const g = gateway;
    const p = prom;
    // Ctrl-C also reaches the children (same process group); give our own
    // SIGINT handler a moment to mark the shutdown before calling an exit unexpected.
    const watch = (what: string, exited: Promise<unknown>, tail: () => string): void => {
      void exited.then(() =>
        setTimeout(() => {
          if (shuttingDown) return;
          log(`${what} exited unexpectedly; last log lines:\n${tail()}`);
          void shutdown(1);
        }, 500),
      );
    };
    watch('the gateway', g.exited, () => g.tail(30));
    watch('Prometheus', p.exited, () => p.tail(30));
    // Keep running until a signal arrives.
    await new Promise<never>(() => {
      setInterval(() => undefined, 1 << 30);
    });
    return 0;
  } catch (err) {
    log(`failed: ${err instanceof Error ? err.message : String(err)}`);
    return shutdown(1);
  }
}

process.exitCode = await main();
