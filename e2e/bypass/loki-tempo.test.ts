// Bypass suite, Loki and Tempo (issue 8, item 3): one table row per attack,
// sent to the REAL gateway process. The backends are canned stand-ins that
// record what they receive (real Loki and Tempo cannot run on these machines:
// docs/operations.md), so the oracle is what reached them:
//   - the tenant header is the policy's, owned headers and upgrades are absent;
//   - LogQL: every stream selector of every forwarded `query` / `match[]`, as
//     Grafana's own LogQL grammar (@grafana/lezer-logql) reads it, carries
//     namespace=~"team-a-.*", and the gateway's rewriter finds nothing to add;
//   - TraceQL: every search/metrics/tag request carries a non-empty `q`, no
//     legacy `tags`, and the rewriter finds nothing to add (every spanset
//     filter already is `C` or `( … ) && C`, docs/rewriting-traceql.md);
//   - answers the gateway filters (label/tag values, trace by id) hold no
//     other team's value;
// or nothing was forwarded at all.
import { connect } from 'node:net';
import { parser as logqlParser } from '@grafana/lezer-logql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startCannedUpstream, type CannedRequest, type CannedUpstream } from '../harness/canned-upstream.ts';
import { startGateway, type GatewayInstance } from '../harness/gateway.ts';
import { rawRequest } from '../harness/http.ts';
import { createTestIssuer, type TestIssuer } from '../harness/tokens.ts';
import { writeBypassSummary } from '../harness/results.ts';
import { rewriteLogQL } from '../../src/rewrite/logql.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';
import { rewriteTraceQL } from '../../src/rewrite/traceql.ts';
import { mixedTrace, spanNamesJson, spanNamesProto, teamBOnlyTrace, traceByIdProto, traceJsonV1, traceJsonV2, traceProto, type ResourceSpec } from '../../test/backends/traces-fixtures.ts';

const LOKI_POLICY: SelectorPolicy = [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]];
const TEMPO_POLICY: SelectorPolicy = [[{ name: 'resource.k8s.namespace.name', op: '=~', value: 'team-a-.*' }]];
const LOKI_MATCHER = 'namespace=~"team-a-.*"';

let loki: CannedUpstream;
let tempo: CannedUpstream;
let gw: GatewayInstance;
let idp: TestIssuer;
const tok: Record<string, string> = {};

const json = (body: unknown): [number, string, string] => [200, 'application/json', JSON.stringify(body)];
const MIXED_ID = '0123456789abcdef0123456789abcdef';
const TEAM_B_ID = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';
const TRACES: Record<string, ResourceSpec[]> = { [MIXED_ID]: mixedTrace, [TEAM_B_ID]: teamBOnlyTrace };
function traceAnswer(path: string, accept: string): [number, string, string | Uint8Array] {
  const m = /^\/api\/(v2\/)?traces\/([0-9a-fA-F]+)$/.exec(path);
  const trace = m ? TRACES[m[2]!.toLowerCase().padStart(32, '0')] : undefined;
  if (!m || trace === undefined) return [404, 'text/plain; charset=utf-8', 'trace not found'];
  const v2 = m[1] !== undefined;
  if (accept.includes('application/protobuf')) return [200, 'application/protobuf', v2 ? traceByIdProto(trace) : traceProto(trace)];
  return json(v2 ? traceJsonV2(trace) : traceJsonV1(trace));
}

beforeAll(async () => {
  loki = await startCannedUpstream(
    (path) =>
      path.includes('/values') ? json({ status: 'success', data: ['team-a-web', 'team-b-api', 'platform'] }) : json({ status: 'success', data: { resultType: 'streams', result: [] } }),
    // Live tail: one (allowed) batch, then the tail ends.
    { websocket: (ws) => ws.send(JSON.stringify({ streams: [{ stream: { namespace: 'team-a-web' }, values: [['1', 'line']] }] }), () => ws.close(1000)) },
  );
  tempo = await startCannedUpstream((path, req) =>
    path.includes('/traces/')
      ? traceAnswer(path, String(req.headers['accept'] ?? ''))
      : path.includes('/values')
        ? // With Grafana's limit, as Tempo writes it; without, with an odd entry the filter must not pass on.
          json({ tagValues: [{ type: 'string', value: 'team-a-web' }, { type: 'string', value: 'team-b-api' }, ...(req.params.has('limit') ? [] : ['team-b-db'])] })
        : path.endsWith('/search/tags')
          ? json({ scopes: [{ name: 'resource', tags: ['service.name'] }], metrics: { inspectedBytes: '5' } })
          : json({ traces: [], metrics: {} }),
  );
  idp = await createTestIssuer({ issuer: 'https://idp.bypass-lt', audience: 'lbac-gateway', alg: 'ES256' });
  gw = await startGateway({
    config: {
      server: { logLevel: 'warn' },
      upstreams: [
        { name: 'logs', kind: 'loki', url: loki.url, mount: '/loki' },
        { name: 'traces', kind: 'tempo', url: tempo.url, mount: '/tempo' },
      ],
      identity: { providers: [{ type: 'jwt', jwksFile: idp.jwksPath, issuer: idp.issuer, audience: 'lbac-gateway', algorithms: ['ES256'] }] },
      policy: { attributes: { tempo: { namespace: 'resource.k8s.namespace.name' } } },
      admins: { groups: ['admins'] },
      teams: { 'team-a': { groups: ['team-a'], selectors: [{ namespace: '~team-a-.*' }], headers: { 'X-Scope-OrgID': 'tenant-a' } } },
    },
  });
  tok['alice'] = await idp.mint({ sub: 'alice', groups: ['team-a'] });
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await loki?.stop();
  await tempo?.stop();
});

interface Res {
  status: number;
  body: string;
  contentType: string;
  raw: Buffer;
}

async function send(method: string, path: string, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<Res> {
  const r = await rawRequest(gw.url, path, { method, headers: { authorization: `Bearer ${tok['alice']}`, ...opts.headers }, ...(opts.body === undefined ? {} : { body: opts.body }) });
  return { status: r.status, body: r.body, contentType: String(r.headers['content-type'] ?? ''), raw: Buffer.from(r.body, 'utf8') };
}

/** Raw bytes (binary-safe) for protobuf answers. */
async function sendBinary(path: string, headers: Record<string, string>): Promise<Res> {
  const res = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${tok['alice']}`, ...headers } });
  const raw = Buffer.from(await res.arrayBuffer());
  return { status: res.status, body: raw.toString('latin1'), contentType: res.headers.get('content-type') ?? '', raw };
}

function socket(data: string, timeoutMs = 3_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    const s = connect(gw.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = () => {
      const raw = Buffer.concat(chunks);
      const text = raw.toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, body: text, contentType: '', raw });
    };
    s.setTimeout(timeoutMs, () => s.destroy());
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('close', done);
    s.on('error', (e) => (chunks.length > 0 ? done() : reject(e)));
    s.write(data);
  });
}

const q = (x: string) => encodeURIComponent(x);
const auth = `Authorization: Bearer `;

/** A WebSocket client: 101 and the messages received until the tail ended, or the HTTP refusal. */
function wsTail(path: string, headers: Record<string, string>): Promise<Res> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${gw.url.replace(/^http/, 'ws')}${path}`, { headers: { authorization: `Bearer ${tok['alice']}`, ...headers } });
    const messages: string[] = [];
    ws.on('message', (d) => messages.push(String(d)));
    ws.on('close', () => resolve({ status: 101, body: messages.join('\n'), contentType: '', raw: Buffer.from(messages.join('\n')) }));
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += String(c)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, contentType: String(res.headers['content-type'] ?? ''), raw: Buffer.from(body) }));
    });
    ws.on('error', (e) => (ws.readyState === WebSocket.CLOSED ? undefined : reject(e)));
  });
}

// ---------------------------------------------------------------- oracle

/**
 * The query as Loki's scanner sees it: Go comments (`// …`, `/* … *\/`), which
 * Loki skips between any two tokens and Grafana's grammar does not know, blanked
 * (same length). Strings and `#` comments are stepped over, never blanked into.
 */
function blankGoComments(q: string): string {
  let out = '';
  let i = 0;
  while (i < q.length) {
    const c = q[i] as string;
    if (c === '"' || c === '`') {
      let j = i + 1;
      while (j < q.length && q[j] !== c) j += c === '"' && q[j] === '\\' ? 2 : 1;
      out += q.slice(i, j + 1);
      i = j + 1;
    } else if (c === '#' || (c === '/' && (q[i + 1] === '/' || q[i + 1] === '*'))) {
      const end = c === '/' && q[i + 1] === '*' ? (q.indexOf('*/', i + 2) < 0 ? q.length : q.indexOf('*/', i + 2) + 2) : q.indexOf('\n', i) < 0 ? q.length : q.indexOf('\n', i);
      out += c === '#' ? q.slice(i, end) : q.slice(i, end).replace(/[^\n]/g, ' ');
      i = end;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Stream selectors of a LogQL query as Grafana's grammar reads them (after Loki's comment rules), and whether it parsed cleanly. */
function logqlSelectors(raw: string): { selectors: string[]; errors: number } {
  const query = blankGoComments(raw);
  const tree = logqlParser.parse(query);
  const selectors: string[] = [];
  let errors = 0;
  tree.iterate({
    enter: (n) => {
      if (n.type.isError) errors++;
      if (n.name === 'Selector') selectors.push(query.slice(n.from, n.to));
    },
  });
  return { selectors, errors };
}

const LOKI_QUERY_PATHS = /^\/loki\/api\/v1\/(query|query_range|tail|labels|label\/[^/]+\/values|index\/(stats|volume|volume_range)|patterns|detected_fields|detected_labels|detected_field\/[^/]+\/values)$/;
const TEMPO_Q_PATHS = /^\/api\/(search|search\/tags|v2\/search\/tags|(v2\/)?search\/tag\/[^/]+\/values|metrics\/query_range|metrics\/query)$/;

function commonProblems(r: CannedRequest, where: string): string[] {
  const p: string[] = [];
  if (r.headers['x-scope-orgid'] !== 'tenant-a') p.push(`${where}: X-Scope-OrgID ${JSON.stringify(r.headers['x-scope-orgid'])}`);
  for (const name of Object.keys(r.headers)) {
    const norm = name.replace(/_/g, '-');
    if (norm === 'x-prom-label-policy' || (norm === 'x-scope-orgid' && name !== 'x-scope-orgid')) p.push(`${where}: owned header ${name} forwarded`);
  }
  // Only the gateway's own upgrade for live tail (its query is checked like any other).
  if (r.headers['upgrade'] !== undefined && !(r.upgrade === true && r.path === '/loki/api/v1/tail')) p.push(`${where}: Upgrade forwarded`);
  return p;
}

function lokiProblems(reqs: readonly CannedRequest[]): string[] {
  const p: string[] = [];
  for (const r of reqs) {
    const where = `loki ${r.method} ${r.path}?${r.params}`;
    p.push(...commonProblems(r, where));
    // Loki's series endpoint answers for the union of `match` and `match[]` (loghttp.ParseSeriesQuery).
    const values = LOKI_QUERY_PATHS.test(r.path) ? r.params.getAll('query') : r.path === '/loki/api/v1/series' ? [...r.params.getAll('match'), ...r.params.getAll('match[]')] : null;
    if (values === null) {
      if (!['/loki/api/v1/format_query', '/loki/api/v1/status/buildinfo'].includes(r.path)) p.push(`${where}: path outside the route table`);
      continue;
    }
    if (values.length === 0) p.push(`${where}: no query/match[] (reads every stream)`);
    for (const v of values) {
      const { selectors, errors } = logqlSelectors(v);
      if (errors > 0) p.push(`${where}: forwarded query the LogQL grammar cannot parse: ${v}`);
      if (selectors.length === 0) p.push(`${where}: no stream selector in ${v}`);
      for (const s of selectors) if (!s.includes(LOKI_MATCHER)) p.push(`${where}: selector ${s} without the policy`);
      let again: string | undefined;
      try {
        again = rewriteLogQL(v, LOKI_POLICY);
      } catch (e) {
        p.push(`${where}: forwarded query does not re-parse: ${String(e)}`);
      }
      if (again !== undefined && again !== v) p.push(`${where}: rewriting the forwarded query adds matchers: ${again}`);
    }
  }
  return p;
}

/**
 * One `{ … }` that is only `&&`-joined `attribute op "string"` comparisons
 * (parentheses aside): what Tempo's tag APIs read and validate as conditions.
 * An independent reading, not the gateway's parser.
 */
function oneConjunctiveFilter(q: string): boolean {
  const bare = q.replace(/"(?:[^"\\]|\\.)*"|`[^`]*`/g, '""').trim();
  if (!bare.startsWith('{') || !bare.endsWith('}') || /[{}|]/.test(bare.slice(1, -1))) return false;
  const inside = bare.slice(1, -1).trim();
  if (inside === '') return true;
  // Scoped attributes only: a condition on an unscoped one (`.a`) makes Tempo's block readers ignore every condition ("mingled").
  const comparison = /^(?:(?:resource|span|event|link|instrumentation)\.[A-Za-z0-9_.\-/:]+|name|span:name) *(?:=|!=|=~|!~) *""$/;
  return inside.split('&&').every((part) => comparison.test(part.replace(/[()]/g, '').trim()));
}

function tempoProblems(reqs: readonly CannedRequest[]): string[] {
  const p: string[] = [];
  for (const r of reqs) {
    const where = `tempo ${r.method} ${r.path}?${r.params}`;
    p.push(...commonProblems(r, where));
    if (/^\/api\/(v2\/)?traces\/[0-9a-fA-F]{1,32}$/.test(r.path) || r.path === '/api/status/buildinfo' || r.path === '/api/echo') continue;
    if (!TEMPO_Q_PATHS.test(r.path)) {
      p.push(`${where}: path outside the route table`);
      continue;
    }
    if (r.params.has('tags')) p.push(`${where}: legacy tags forwarded`);
    if (r.params.has('query')) p.push(`${where}: query (an unenforced TraceQL alias) forwarded`);
    const qs = r.params.getAll('q');
    if (qs.length !== 1 || qs[0]!.trim() === '') p.push(`${where}: q must be present once and non-empty (else Tempo searches by other parameters)`);
    for (const v of qs) {
      let again: string | undefined;
      try {
        again = rewriteTraceQL(v, TEMPO_POLICY);
      } catch (e) {
        p.push(`${where}: forwarded q does not re-parse: ${String(e)}`);
      }
      if (again !== undefined && again !== v) p.push(`${where}: rewriting the forwarded q changes it: ${again}`);
      if (!v.includes('resource.k8s.namespace.name =~ "^(?s:team-a-.*)$"')) p.push(`${where}: policy missing from ${v}`);
      // Tempo's tag APIs read conditions only from one spanset filter without `||`; anything else is answered from every span.
      if (/\/search\/tags$|\/search\/tag\//.test(r.path) && !oneConjunctiveFilter(v)) p.push(`${where}: tag lookup q Tempo would read as no condition: ${v}`);
      // Tempo adds the tag as a condition: an unscoped one is "mingled" too.
      if (/\/search\/tag\/(?:%20|\s)*(?:\.|%2E)/i.test(r.path)) p.push(`${where}: tag values of an unscoped attribute, which Tempo lists from every span`);
    }
  }
  return p;
}

interface Attack {
  name: string;
  send: () => Promise<Res>;
  status: number | readonly number[];
  /** Default: true for 4xx. */
  blocked?: boolean;
  check?: (res: Res, lokiSeen: readonly CannedRequest[], tempoSeen: readonly CannedRequest[]) => void;
}

async function run(a: Attack): Promise<void> {
  loki.clear();
  tempo.clear();
  const res = await a.send();
  const want = typeof a.status === 'number' ? [a.status] : a.status;
  if (process.env['LBAC_BYPASS_VERBOSE'] === '1') console.log(`[bypass] ${res.status} ${a.name}`);
  expect(want, `${a.name}: HTTP ${res.status} ${res.body.slice(0, 300)}`).toContain(res.status);
  // A request still arriving (a fan-out part the answer did not wait for) is counted with this attack, not the next.
  for (const end = Date.now() + 5_000; loki.receiving() + tempo.receiving() > 0 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 10));
  const ls = [...loki.requests];
  const ts = [...tempo.requests];
  if (a.blocked ?? res.status >= 400) expect([...ls, ...ts].map((r) => `${r.method} ${r.path}?${r.params}`), `${a.name}: refused but forwarded`).toEqual([]);
  const problems = [...lokiProblems(ls), ...tempoProblems(ts)];
  // Answers the gateway filters (label/tag values, traces): no other team's values.
  if (res.status === 200 && /team-b|platform|b-handler|b-cache|b-only|p-ingress/.test(res.body)) problems.push(`leak in the answer: ${res.body.slice(0, 300)}`);
  expect(problems, a.name).toEqual([]);
  a.check?.(res, ls, ts);
}

// ---------------------------------------------------------------- Loki rows

const L = '/loki/loki/api/v1';
const lq = (query: string, endpoint = 'query_range', extra = '&start=1&end=2') => send('GET', `${L}/${endpoint}?query=${q(query)}${extra}`);
const EVIL_STREAM = '{namespace="team-b-api"}';

const LOKI_ATTACKS: Attack[] = [
  { name: 'spoofed X-Scope-OrgID (tenant-b and a tenant list)', send: () => send('GET', `${L}/query?query=${q('{app="x"}')}`, { headers: { 'X-Scope-OrgID': 'tenant-a|tenant-b' } }), status: 200 },
  { name: 'spoofed X-Prom-Label-Policy (Loki ≥ 3.7 would enforce it)', send: () => send('GET', `${L}/query?query=${q('{app="x"}')}`, { headers: { 'X-Prom-Label-Policy': `tenant-b:${q('{namespace=~".+"}')}` } }), status: 200 },
  { name: 'X_Scope_OrgID / X-Prom_Label_Policy with underscores', send: () => socket(`GET ${L}/query?query=${q('{app="x"}')} HTTP/1.1\r\nHost: x\r\n${auth}${tok['alice']}\r\nX_Scope_OrgID: tenant-b\r\nX-Prom_Label_Policy: x\r\nConnection: close\r\n\r\n`), status: 200 },
  { name: 'query twice', send: () => send('GET', `${L}/query?query=${q('{app="x"}')}&query=${q(EVIL_STREAM)}`), status: 400 },
  { name: 'query in the URL and the body', send: () => send('POST', `${L}/query?query=${q('{app="x"}')}`, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `query=${q(EVIL_STREAM)}` }), status: 400 },
  { name: '%71uery is query (enforced)', send: () => send('GET', `${L}/query?%71uery=${q(EVIL_STREAM)}`), status: 200 },
  { name: 'Query (mixed case) next to query', send: () => send('GET', `${L}/query?Query=${q(EVIL_STREAM)}&query=${q('{app="x"}')}`), status: 200 },
  { name: 'JSON body', send: () => send('POST', `${L}/query`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: EVIL_STREAM }) }), status: 415 },
  { name: 'label_format namespace="team-a-x"', send: () => lq(`${EVIL_STREAM} | label_format namespace="team-a-x"`), status: 200 },
  { name: 'label_format from another label', send: () => lq('{app="x"} | label_format namespace=`{{.pod}}`'), status: 200 },
  { name: 'line_format printing the namespace', send: () => lq(`${EVIL_STREAM} | line_format "{{.namespace}}"`), status: 200 },
  { name: 'json parser overwriting namespace, then a filter on it', send: () => lq('{app="x"} | json | namespace="team-b-api"'), status: 200 },
  { name: 'label_replace in a metric query', send: () => lq(`label_replace(rate(${EVIL_STREAM}[5m]), "namespace", "team-a-x", "", "")`), status: 200 },
  { name: 'metric query or another team\'s', send: () => lq(`sum(rate({app="x"}[5m])) or sum(rate(${EVIL_STREAM}[5m]))`), status: 200 },
  { name: 'vector(1) or …', send: () => lq(`vector(1) or sum(count_over_time(${EVIL_STREAM}[5m]))`), status: 200 },
  { name: 'absent_over_time of another team\'s stream', send: () => lq(`absent_over_time(${EVIL_STREAM}[5m])`), status: 200 },
  { name: 'log queries combined with or', send: () => lq(`{app="x"} or ${EVIL_STREAM}`), status: 400 },
  { name: '{__name__="x"}-like selector', send: () => lq('{__name__=~".+"}'), status: [200, 400] },
  { name: 'selector matching the empty string', send: () => lq('{namespace=~".*"}'), status: 400 },
  { name: 'empty selector {}', send: () => lq('{}'), status: 400 },
  { name: 'backtick-quoted value', send: () => lq('{namespace=`team-b-api`}'), status: 200 },
  { name: '# comment hiding a selector', send: () => lq(`{app="x"} # ${EVIL_STREAM}`), status: [200, 400] },
  { name: 'Go-style comment hiding a selector (Loki skips it; the selector before it is enforced)', send: () => lq(`{app="x"} /* } or ${EVIL_STREAM} */`), status: 200 },
  { name: 'Go line comment inside the braces', send: () => lq(`{// ${EVIL_STREAM}\napp="x"}`), status: 200 },
  { name: 'NUL in the query', send: () => lq('{app="x\u0000"}'), status: 400 },
  { name: 'unicode look-alike label name', send: () => lq('{n\u0430mespace="team-b-api"}'), status: 400 },
  { name: 'deeply nested parentheses', send: () => lq(`${'('.repeat(5000)}count_over_time({app="x"}[5m])${')'.repeat(5000)}`, 'query_range', ''), status: [400, 414, 431] },
  { name: 'deeply nested (POST, 10k)', send: () => send('POST', `${L}/query`, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `query=${q(`${'('.repeat(10_000)}count_over_time({app="x"}[5m])${')'.repeat(10_000)}`)}` }), status: 400 },
  { name: 'labels with a query naming another team', send: () => lq('{namespace=~".+"}', 'labels', ''), status: 200 },
  { name: 'labels without a query', send: () => send('GET', `${L}/labels`), status: 200 },
  { name: 'label values of namespace are filtered', send: () => send('GET', `${L}/label/namespace/values?query=${q('{namespace=~".+"}')}`), status: 200, check: (r) => expect(JSON.parse(r.body).data).toEqual(['team-a-web']) },
  // A dot segment as the whole name would be removed from the upstream URL (also as %2E): refused, nothing forwarded.
  ...['.', '%2E', '..'].flatMap((seg) => [
    { name: `label values of a dot-segment name (/label/${seg}/values)`, send: () => send('GET', `${L}/label/${seg}/values`), status: 400 },
    { name: `detected field values of a dot-segment name (/detected_field/${seg}/values)`, send: () => send('GET', `${L}/detected_field/${seg}/values`), status: 400 },
  ]),
  { name: 'series with many match[] incl. other teams', send: () => send('GET', `${L}/series?${Array.from({ length: 50 }, (_, i) => `match[]=${q(i % 2 ? EVIL_STREAM : '{namespace=~".+"}')}`).join('&')}`), status: 200 },
  { name: 'series without match[]', send: () => send('GET', `${L}/series`), status: 200 },
  { name: 'series with match (Loki reads it next to match[])', send: () => send('GET', `${L}/series?match=${q(EVIL_STREAM)}&start=1&end=2`), status: 200 },
  { name: 'series with match and match[] in a form body', send: () => send('POST', `${L}/series`, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `match=${q('{namespace=~".+"}')}&match[]=${q('{app="x"}')}` }), status: 200 },
  // A form Content-Type with a parameter given twice: Fastify reads the body by its media type, Go's mime.ParseMediaType
  // refuses it and Loki would read no body (labels and index stats of the whole tenant). The gateway sends its own type.
  ...['labels', 'series', 'index/stats', 'detected_labels'].map((ep): Attack => ({
    name: `${ep} POST with Content-Type "application/x-www-form-urlencoded; charset=a; charset=b"`,
    send: () => send('POST', `${L}/${ep}`, { headers: { 'content-type': 'application/x-www-form-urlencoded; charset=a; charset=b' }, body: `${ep === 'series' ? 'match[]' : 'query'}=${q('{app="x"}')}` }),
    status: 200,
  })),
  { name: 'index volume / stats / patterns / detected_* with other teams\' selectors', send: async () => {
    for (const ep of ['index/stats', 'index/volume', 'index/volume_range', 'patterns', 'detected_fields', 'detected_labels', 'detected_field/namespace/values']) {
      const r = await lq('{namespace=~".+"}', ep, '');
      if (r.status !== 200) return r;
    }
    return lq('{namespace=~".+"}', 'index/volume', '');
  }, status: 200 },
  { name: 'format_query reads no data', send: () => send('GET', `${L}/format_query?query=${q(EVIL_STREAM)}`), status: 200, blocked: false },
  {
    name: 'WebSocket tail with a forged query and tenant: enforced before the upgrade reaches Loki',
    send: () => wsTail(`${L}/tail?query=${q('{namespace=~".+"} |= "x"')}&limit=10`, { 'X-Scope-OrgID': 'tenant-b', 'X-Prom-Label-Policy': 'tenant-b:{}' }),
    status: 101,
    check: (_r, ls) => {
      expect(ls.map((r) => [r.upgrade, r.path, r.params.get('query'), r.headers['authorization']])).toEqual([[true, '/loki/api/v1/tail', '{namespace=~".+", namespace=~"team-a-.*"} |= "x"', undefined]]);
    },
  },
  { name: 'WebSocket tail with a second query', send: () => wsTail(`${L}/tail?query=${q('{app="x"}')}&query=${q(EVIL_STREAM)}`, {}), status: 400 },
  { name: 'WebSocket tail with a metric query', send: () => wsTail(`${L}/tail?query=${q(`count_over_time(${EVIL_STREAM}[1m])`)}`, {}), status: 400 },
  {
    name: 'WebSocket upgrade on a served route: answered as HTTP, no upgrade forwarded',
    send: () => socket(`GET ${L}/query?query=${q('{app="x"}')} HTTP/1.1\r\nHost: x\r\n${auth}${tok['alice']}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`),
    status: [0, 200, 400, 404],
    check: (r) => expect(r.body).not.toMatch(/^HTTP\/1\.1 101/),
  },
  { name: 'tail without upgrade', send: () => send('GET', `${L}/tail?query=${q('{app="x"}')}`), status: 400 },
  ...['/loki/loki/api/v1/push', '/loki/api/v1/query', '/loki/loki/api/v1/query/', '/loki//loki/api/v1/query', '/loki/loki/api/v1/../v1/query', '/loki/loki/api/v1/%2e%2e/v1/query', '/loki/loki/api/v1/delete', '/loki/loki/api/v1/rules', '/loki/loki/api/prom/tail', '/loki/loki/api/v1/LABELS'].map(
    (p): Attack => ({ name: `path ${p}`, send: () => send('GET', `${p}?query=${q(EVIL_STREAM)}`), status: [400, 404] }),
  ),
  ...['PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'].map((m): Attack => ({ name: `method ${m}`, send: () => send(m, `${L}/query?query=${q('{app="x"}')}`), status: [400, 404, 405] })),
];

// ---------------------------------------------------------------- Tempo rows

const T = '/tempo/api';
const tq = (query: string, endpoint = 'search') => send('GET', `${T}/${endpoint}?q=${q(query)}`);
const EVIL_SPANS = '{ resource.k8s.namespace.name = "team-b-api" }';

// Trace by id carries no query: it is forwarded and the ANSWER is filtered (404 when no span is left).
const TEMPO_ATTACKS: Attack[] = [
  { name: 'spoofed X-Scope-OrgID', send: () => send('GET', `${T}/search?q=${q('{ }')}`, { headers: { 'X-Scope-OrgID': 'tenant-b' } }), status: 200 },
  { name: 'legacy tags= search', send: () => send('GET', `${T}/search?tags=${q('resource.k8s.namespace.name=team-b-api')}`), status: 400 },
  { name: 'empty tags= next to q', send: () => send('GET', `${T}/search?tags=&q=${q('{ }')}`), status: 400 },
  // `query` is what Grafana 10.x sent for TraceQL metrics: a Tempo that reads it would run it unenforced.
  { name: 'query= next to an enforced q (search)', send: () => send('GET', `${T}/search?q=${q('{ }')}&query=${q('{ resource.k8s.namespace.name = "team-b-api" }')}`), status: 400 },
  { name: 'query= instead of q (metrics query_range)', send: () => send('GET', `${T}/metrics/query_range?query=${q('{ } | rate()')}&start=1&end=2&step=1`), status: 400 },
  { name: 'query= next to q (metrics instant)', send: () => send('GET', `${T}/metrics/query?q=${q('{ } | rate()')}&query=${q('{ } | rate()')}`), status: 400 },
  { name: 'empty q= (Tempo would fall back to other parameters as tags)', send: () => send('GET', `${T}/search?q=&k8s.namespace.name=team-b-api`), status: 400 },
  { name: 'whitespace q', send: () => send('GET', `${T}/search?q=%20%20&service.name=x`), status: 400 },
  { name: 'individual tag parameters without q', send: () => send('GET', `${T}/search?k8s.namespace.name=team-b-api&service.name=api`), status: 200 },
  { name: 'Q (mixed case) without q', send: () => send('GET', `${T}/search?Q=${q(EVIL_SPANS)}`), status: 200 },
  { name: 'q twice', send: () => send('GET', `${T}/search?q=${q('{ }')}&q=${q(EVIL_SPANS)}`), status: 400 },
  { name: '%71 (q) percent-encoded', send: () => send('GET', `${T}/search?%71=${q(EVIL_SPANS)}`), status: 200 },
  { name: 'select() of the tenant attribute', send: () => tq('select(resource.k8s.namespace.name)'), status: 200 },
  { name: 'pipeline starting with an aggregate', send: () => tq('count() > 0'), status: 200 },
  { name: 'pipeline starting with by()', send: () => tq('by(resource.k8s.namespace.name) | count() > 1'), status: 200 },
  { name: 'structural descendant of another team\'s span', send: () => tq(`{ } >> ${EVIL_SPANS}`), status: 200 },
  { name: 'negated structural operators', send: () => tq(`${EVIL_SPANS} !>> { } && { } !~ { }`), status: 200 },
  { name: 'spanset || another team\'s', send: () => tq(`{ .a = 1 } || ${EVIL_SPANS}`), status: 200 },
  { name: 'boolean true filter', send: () => tq('{ true }'), status: 200 },
  { name: 'condition || true inside a filter', send: () => tq('{ resource.k8s.namespace.name = "team-b-api" || true }'), status: 200 },
  { name: 'negated namespace', send: () => tq('{ !(resource.k8s.namespace.name = "team-a-x") }'), status: 200 },
  { name: 'unscoped .k8s.namespace.name (span attribute of the same name)', send: () => tq('{ .k8s.namespace.name = "team-b-api" }'), status: 200 },
  { name: 'trace-level intrinsics (residual flow, documented)', send: () => tq('{ trace:rootService = "payments" && trace:duration > 1s }'), status: 200 },
  { name: 'parent. attributes', send: () => tq('{ parent.resource.k8s.namespace.name = "team-b-api" }'), status: 400 },
  { name: 'comment closing the filter', send: () => tq('{ /* } || { true } */ .a = 1 }'), status: 200 },
  { name: 'line comment', send: () => tq('{ .a = 1 } // || { true }'), status: 200 },
  { name: 'quoted attribute with a brace', send: () => tq('{ span."a}b" = 1 }'), status: 200 },
  { name: 'backtick string', send: () => tq('{ resource.k8s.namespace.name = `team-b-api` }'), status: 200 },
  { name: 'metrics: compare()', send: () => tq(`{ } | compare(${EVIL_SPANS})`, 'metrics/query_range'), status: 200 },
  { name: 'metrics: rate by namespace', send: () => tq('{ } | rate() by (resource.k8s.namespace.name)', 'metrics/query_range'), status: 200 },
  { name: 'metrics arithmetic', send: () => tq(`({ } | rate()) / (${EVIL_SPANS} | rate())`, 'metrics/query'), status: 200 },
  { name: 'metrics without q', send: () => send('GET', `${T}/metrics/query_range`), status: 400 },
  { name: 'deeply nested filters', send: () => tq(`{ ${'('.repeat(2000)}.a = 1${')'.repeat(2000)} }`), status: [400, 414, 431] },
  { name: 'tag values of the tenant attribute are filtered (v2)', send: () => send('GET', `${T}/v2/search/tag/resource.k8s.namespace.name/values?q=${q(EVIL_SPANS)}`), status: 200, check: (r) => expect(JSON.parse(r.body).tagValues).toEqual([{ type: 'string', value: 'team-a-web' }]) },
  ...['.', '%2E', '..'].flatMap((seg) => [
    { name: `tag values of a dot-segment tag, v1 (/search/tag/${seg}/values)`, send: () => send('GET', `${T}/search/tag/${seg}/values`), status: 400 },
    { name: `tag values of a dot-segment tag, v2 (/v2/search/tag/${seg}/values)`, send: () => send('GET', `${T}/v2/search/tag/${seg}/values`), status: 400 },
  ]),
  // A name holding a dot segment between (encoded) slashes: a proxy that decodes and normalises the path (nginx
  // with a URI in proxy_pass) would send another route's path, e.g. Tempo's v1 tag values, which read no query.
  // Unscoped tags are expanded to resource./span. lookups: refused before those, too.
  ...['.%2F..%2F.service.name', 'span.x%2F..%2F..%2F..%2F..%2Fsearch%2Ftag%2Fservice.name', 'x%5C..%5Cy', '..%2Fx'].map((seg): Attack => ({
    name: `tag values of a tag holding a dot segment (/v2/search/tag/${seg}/values)`,
    send: () => send('GET', `${T}/v2/search/tag/${seg}/values`),
    status: 400,
  })),
  ...['x%2F..%2F..%2Fquery', '..%2Fquery'].flatMap((seg): Attack[] => [
    { name: `label values of a name holding a dot segment (/label/${seg}/values)`, send: () => send('GET', `${L}/label/${seg}/values`), status: 400 },
    { name: `detected field values of a name holding a dot segment (/detected_field/${seg}/values)`, send: () => send('GET', `${L}/detected_field/${seg}/values`), status: 400 },
  ]),
  // Tempo's v1 tag APIs take no query: nothing could restrict them.
  { name: 'tag values v1 are refused (Tempo reads no q there)', send: () => send('GET', `${T}/search/tag/k8s.namespace.name/values`), status: 403 },
  { name: 'tag names v1 are refused (Tempo reads no q there)', send: () => send('GET', `${T}/search/tags`), status: 403 },
  { name: 'tag values: a half-typed q falls back to the policy', send: () => send('GET', `${T}/v2/search/tags?q=${q('{ resource.k8s.namespace.name = "team-b-api" || ')}`), status: 200 },
  // Tempo extracts no condition from these (structural operator, ||, pipeline) and would answer from every span:
  // the oracle holds each forwarded q to one filter without || (the stand-in answers tag values whatever q says,
  // so these ask for the policy attribute, whose values the gateway filters besides).
  // So it does when the query fails Tempo's validation (an enum compared with a string, nil, a bad regex).
  ...['{ .a = "x" } >> { .b = "y" }', '{ } && { }', '{ .a = "x" || true }', '{ .a = "x" } | count() > 1', '{ .a = "}" }', '{ status = "error" }', '{ .a = nil }', '{ .a =~ "(" }', '{ childCount > 1 }'].flatMap((query) => [
    { name: `tag values v2 with q ${query}`, send: () => send('GET', `${T}/v2/search/tag/resource.k8s.namespace.name/values?q=${q(query)}`), status: 200 },
    { name: `tag names v2 with q ${query}`, send: () => send('GET', `${T}/v2/search/tags?scope=resource&q=${q(query)}`), status: 200 },
  ]),
  // Tempo reads the tag as TraceQL: these spell the policy's attribute, and its values are filtered as such.
  ...['resource."k8s.namespace.name"', ' resource.k8s.namespace.name', 'resource.k8s.namespace.name '].map((tag) => ({
    name: `tag values of the tenant attribute spelt ${JSON.stringify(tag)} are filtered`,
    send: () => send('GET', `${T}/v2/search/tag/${encodeURIComponent(tag)}/values?q=${q('{ } >> { }')}`),
    status: 200,
    check: (r: { body: string }) => expect(JSON.parse(r.body).tagValues).toEqual([{ type: 'string', value: 'team-a-web' }]),
  })),
  // Tempo's block readers ignore every condition of a lookup holding an unscoped attribute ("mingled" conditions) and list
  // every value of the block: an unscoped client condition is dropped, an unscoped tag refused.
  ...['{ .service.name = "api" }', '{ resource.service.name = "api" && .x = "y" }', '{ span:parentID = "x" }'].flatMap((query) => [
    { name: `tag values v2 with the mingled q ${query}`, send: () => send('GET', `${T}/v2/search/tag/resource.k8s.namespace.name/values?q=${q(query)}`), status: 200 },
    { name: `tag names v2 with the mingled q ${query}`, send: () => send('GET', `${T}/v2/search/tags?q=${q(query)}`), status: 200 },
  ]),
  ...['span:parentID', 'event:name'].map((tag) => ({
    name: `tag values v2 of ${JSON.stringify(tag)} (Tempo would list them from every span)`,
    send: () => send('GET', `${T}/v2/search/tag/${encodeURIComponent(tag)}/values`),
    status: 400,
  })),
  // An unscoped attribute's values are asked as its resource and span attribute's, each under the policy (the stand-in
  // answers whatever q says: these ask for the policy attribute, whose values the gateway filters besides).
  ...[
    ['.k8s.namespace.name', 'k8s.namespace.name'],
    [' .k8s.namespace.name', 'k8s.namespace.name'],
  ].map(([tag, key]) => ({
    name: `tag values v2 of ${JSON.stringify(tag)}: asked as resource.${key} and span.${key}`,
    send: () => send('GET', `${T}/v2/search/tag/${encodeURIComponent(tag!)}/values?limit=5000&q=${q('{ .x = "y" }')}`),
    status: 200,
    blocked: false,
    check: (r: { body: string }, _ls: readonly CannedRequest[], ts: readonly CannedRequest[]) => {
      expect(ts.map((t) => t.path).sort()).toEqual([`/api/v2/search/tag/resource.${key}/values`, `/api/v2/search/tag/span.${key}/values`]);
      expect(JSON.parse(r.body).tagValues).toEqual([{ type: 'string', value: 'team-a-web' }]);
    },
  })),
  { name: 'tag values v2 of a name that is not one field', send: () => send('GET', `${T}/v2/search/tag/${encodeURIComponent('.a } >> { .b')}/values`), status: 400 },
  { name: 'trace by id of another team → 404', send: () => sendBinary(`${T}/v2/traces/${TEAM_B_ID}`, { accept: 'application/protobuf' }), status: 404, blocked: false },
  // Newer Tempo evaluates a trace-by-id q over every span of the trace: only the time range may reach it.
  {
    name: 'trace by id with a q probing other spans (Tempo tracefilter) and keep_hierarchy',
    send: () => send('GET', `${T}/v2/traces/${MIXED_ID}?start=1&end=2&q=${q('{ span.card.last4 =~ "4.*" }')}&keep_hierarchy=false`),
    status: 200,
    blocked: false,
    check: (_r, _ls, ts) => expect([...ts.at(-1)!.params]).toEqual([['start', '1'], ['end', '2'], ['span_pruning', 'false']]),
  },
  // Newer Tempo's read-time span pruning summarises similar spans of the whole trace (other teams' too): asked off.
  {
    name: 'trace by id asking for span pruning',
    send: () => send('GET', `${T}/v2/traces/${MIXED_ID}?span_pruning=true&span_pruning_min_spans=2&span_pruning_group_by=*`),
    status: 200,
    blocked: false,
    check: (_r, _ls, ts) => expect([...ts.at(-1)!.params]).toEqual([['span_pruning', 'false']]),
  },
  // Tempo's trace redaction header: unmatched spans become placeholders a negative policy matcher could keep.
  {
    name: 'trace by id with X-Span-Matcher',
    send: () => send('GET', `${T}/v2/traces/${MIXED_ID}`, { headers: { 'x-span-matcher': '{resource.service.name="nothing"}' } }),
    status: 200,
    blocked: false,
    check: (_r, _ls, ts) => expect(ts.at(-1)!.headers['x-span-matcher']).toBeUndefined(),
  },
  // The tag-based search's bounds on the whole trace's duration: inert beside the gateway's q, never forwarded.
  {
    name: 'search with minDuration/maxDuration',
    send: () => send('GET', `${T}/search?minDuration=1s&maxDuration=1h`),
    status: 200,
    blocked: false,
    check: (_r, _ls, ts) => expect([...ts.at(-1)!.params.keys()]).toEqual(['q']),
  },
  // Search answers are filtered as JSON: asked uncompressed and as JSON whatever the client's Accept says.
  {
    name: 'search asked as protobuf, gzip-compressed: the gateway asks for uncompressed JSON',
    send: () => send('GET', `${T}/search?q=${q('{ }')}`, { headers: { accept: 'application/protobuf', 'accept-encoding': 'gzip' } }),
    status: 200,
    check: (r, _l, t) => {
      expect(r.contentType).toMatch(/^application\/json/);
      expect([t.at(-1)!.headers['accept'], t.at(-1)!.headers['accept-encoding']]).toEqual(['application/json', 'identity']);
    },
  },
  { name: 'trace by id of another team (v1 JSON) → 404', send: () => send('GET', `${T}/traces/${TEAM_B_ID}`), status: 404, blocked: false },
  { name: 'trace by id, upper-case hex', send: () => send('GET', `${T}/traces/${TEAM_B_ID.toUpperCase()}`), status: 404, blocked: false },
  { name: 'trace by id, short id (left-padded by Tempo)', send: () => send('GET', `${T}/v2/traces/ffff`), status: 404, blocked: false },
  {
    name: 'mixed trace: only team A\'s spans (protobuf)',
    send: () => sendBinary(`${T}/v2/traces/${MIXED_ID}`, { accept: 'application/protobuf' }),
    status: 200,
    check: (r) => expect(spanNamesProto(new Uint8Array(r.raw), true)).toEqual(['a-root', 'a-db']),
  },
  { name: 'mixed trace: only team A\'s spans (JSON, Accept */*)', send: () => send('GET', `${T}/traces/${MIXED_ID}`, { headers: { accept: '*/*' } }), status: 200, check: (r) => expect(spanNamesJson(JSON.parse(r.body))).toEqual(['a-root', 'a-db']) },
  { name: 'mixed trace with Accept: application/protobuf;q=0, application/json', send: () => send('GET', `${T}/traces/${MIXED_ID}`, { headers: { accept: 'application/protobuf;q=0, application/json' } }), status: [200, 502] },
  { name: 'mixed trace with Accept-Encoding: gzip (the gateway asks for identity)', send: () => send('GET', `${T}/traces/${MIXED_ID}`, { headers: { 'accept-encoding': 'gzip' } }), status: 200, check: (_r, _l, t) => expect(t.at(-1)!.headers['accept-encoding']).toBe('identity') },
  ...[`/api/traces/${MIXED_ID}/`, `/api/traces/${MIXED_ID}.json`, `/api/traces/..%2Fsearch`, `/api/traces/${MIXED_ID}%2F..%2F..%2Fsearch`, '/api/v2/traces/', '/api/search/', '/api//search', '/api/search%3Fq=x', '/api/SEARCH', '/api/v2/search', '/api/overrides', '/api/push', '/api/metrics/query_range/'].map(
    (p): Attack => ({ name: `path ${p}`, send: () => send('GET', `/tempo${p}?q=${q('{ true }')}`), status: [400, 404] }),
  ),
  ...['POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS'].map((m): Attack => ({ name: `method ${m} on search`, send: () => send(m, `${T}/search?q=${q('{ }')}`), status: [400, 404, 405] })),
];

describe('bypass attempts against Loki (canned stand-in; alice = namespace=~"team-a-.*")', () => {
  it.each(LOKI_ATTACKS.map((r) => [r.name, r] as const))('%s', async (_n, row) => run(row));
});

describe('bypass attempts against Tempo (canned stand-in; alice = resource.k8s.namespace.name=~"team-a-.*")', () => {
  it.each(TEMPO_ATTACKS.map((r) => [r.name, r] as const))('%s', async (_n, row) => run(row));
});

// For `make e2e-report`: rows per group (blocked / leaks / mismatches) → e2e/results/bypass-loki-tempo.json.
afterAll(({}, file) => {
  writeBypassSummary(file, { suite: 'bypass-loki-tempo', backend: (group) => (/Tempo/.test(group) ? 'tempo (stand-in)' : 'loki (stand-in)'), tenant: 'team-a' });
});
