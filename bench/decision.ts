// `make bench-decision`: what a policy decision costs per request.
//
// The engine is built the way the server builds it (src/server/index.ts):
// PolicyEngine.fromFile(config.policyWasm, { lbac: config.policyData }) behind
// a PolicyHolder, from an example config (default examples/gateway.yaml: two
// teams and an admin group) and the committed wasm/policy.wasm. Timed per call
// with process.hrtime.bigint(), after a warm-up; exact percentiles over all calls:
//   cached:    holder.decide() for a subject already decided (the same Subject
//              instance, as the identity cache returns it, and a fresh request
//              object per call): the DecisionCache hit every dashboard refresh takes;
//   uncached:  holder.decide() with a Subject instance never seen before (a new
//              token): DecisionCache miss, OPA-WASM evaluation, validateDecision,
//              cache insert.
// And, to see where an uncached decision goes, the pieces on their own:
//   wasm-raw:        opa-wasm LoadedPolicy.evaluate on a separate instance (same
//                    wasm and data): input JSON.stringify + encode into wasm
//                    memory, opa_eval, result JSON dump + parse;
//   uncached-groups: uncached, for a team-a member whose token carries 50 or 200
//              more groups (as enterprise IdPs issue them), in `groups` and the claims.
//   wasm-raw-noclaims: the same with subject.claims emptied (the default policy
//                    does not read them; claims mode does);
//   wasm-preencoded: the same with the input already serialised (an ArrayBuffer),
//                    i.e. without the JavaScript-side input serialisation;
//   serialise:       JSON.stringify(input) + TextEncoder.encode alone;
//   validate:        validateDecision() of a raw result alone.
// Results: a table on stdout and bench/results/decision-<date>.json.
//
//   node bench/decision.ts [--config examples/gateway.yaml] [--cached 50000] [--uncached 20000] [--only cached,uncached,...]
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { repoRoot } from '../e2e/harness/tools.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { validateDecision, type DecisionInput, type RequestInfo, type Subject } from '../src/policy/decision.ts';
import { PolicyEngine } from '../src/policy/engine.ts';
import { PolicyHolder } from '../src/policy/holder.ts';
import { machineInfo, row, sampleStats, writeResult, type SampleStats } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    config: { type: 'string', default: join(repoRoot, 'examples', 'gateway.yaml') },
    cached: { type: 'string', default: '50000' },
    uncached: { type: 'string', default: '20000' },
    only: { type: 'string' },
    out: { type: 'string' },
  },
});
const N_CACHED = Number(args.cached);
const N_UNCACHED = Number(args.uncached);
const ONLY = args.only === undefined ? undefined : new Set(args.only.split(','));

/** The principals of examples/gateway.yaml: a team-a member, bob (team-b by user name), an admin, someone no team grants. */
const PRINCIPALS = [
  { kind: 'team-a', username: 'alice', groups: ['team-a', 'viewers'] },
  { kind: 'team-b', username: 'bob', groups: ['viewers'] },
  { kind: 'admin', username: 'carol', groups: ['observability-admins'] },
  { kind: 'denied', username: 'mallory', groups: ['contractors'] },
] as const;

/** A Subject as the jwt source builds it: mapped fields plus every verified claim. */
function subject(p: (typeof PRINCIPALS)[number], i: number): Subject {
  const iat = 1_795_000_000 + i;
  const claims: Record<string, unknown> = {
    iss: 'https://idp.example.com',
    aud: 'lbac-gateway',
    sub: `${p.username}-${i}`,
    iat,
    exp: iat + 3600,
    jti: `jti-${i}`,
    azp: 'grafana',
    scope: 'openid profile email',
    preferred_username: p.username,
    email: `${p.username}@example.com`,
    groups: [...p.groups],
    realm_access: { roles: ['offline_access', 'uma_authorization'] },
  };
  return Object.freeze({
    sub: `${p.username}-${i}`,
    username: p.username,
    email: `${p.username}@example.com`,
    groups: [...p.groups],
    roles: ['offline_access', 'uma_authorization'],
    issuer: 'https://idp.example.com',
    auth: 'jwt',
    claims,
  });
}

/** Route-table requests a dashboard makes (src/backends/prometheus.ts). */
function requests(upstream: string): RequestInfo[] {
  const r = (endpoint: string, method: string, path: string): RequestInfo => ({ upstream, kind: 'prometheus', endpoint, method, path });
  return [
    r('query_range', 'POST', '/api/v1/query_range'),
    r('query', 'GET', '/api/v1/query'),
    r('series', 'GET', '/api/v1/series'),
    r('label_values', 'GET', '/api/v1/label/namespace/values'),
    r('labels', 'GET', '/api/v1/labels'),
  ];
}

interface Summary extends Omit<SampleStats, 'n'> {
  name: string;
  calls: number;
}

function summarise(name: string, us: Float64Array): Summary {
  const { n, ...rest } = sampleStats(us);
  return { name, calls: n, ...rest };
}

/** Times call(i) for i in [0, n), each call on its own, in µs. */
function time(n: number, call: (i: number) => unknown): Float64Array {
  const out = new Float64Array(n);
  let sink = 0;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const r = call(i);
    out[i] = Number(process.hrtime.bigint() - t0) / 1000;
    if (r === undefined) sink++;
  }
  if (sink === -1) console.log(sink); // keeps results observable to the optimiser
  return out;
}

async function main(): Promise<void> {
  const config = await loadConfigFile(args.config);
  const data = { lbac: config.policyData };
  const engine = await PolicyEngine.fromFile(config.policyWasm, data, { entrypoint: config.policy.entrypoint });
  const holder = new PolicyHolder(engine, `file:${config.policyWasm}`);
  const reqs = requests(config.upstreams[0]!.name);
  const rows: Summary[] = [];
  const wants = (name: string) => ONLY === undefined || ONLY.has(name);
  const floor = summarise('timer floor', time(20_000, () => 0));
  const encoder = new TextEncoder();

  // Sanity: each principal gets the decision the example config means.
  const expected = PRINCIPALS.map((p) => holder.decide({ subject: subject(p, -1), request: reqs[0]! }));
  const shape = PRINCIPALS.map((p, k) => `${p.kind}: ${expected[k]!.allow ? (expected[k]!.unrestricted ? 'allow unrestricted' : `allow ${JSON.stringify(expected[k]!.selectors)}`) : 'deny'}`);

  /** Fresh request objects per call, as the server builds them; `subjects[i % subjects.length]`. */
  const inputs = (n: number, subjects: Subject[]): DecisionInput[] => Array.from({ length: n }, (_, i) => ({ subject: subjects[i % subjects.length]!, request: { ...reqs[i % reqs.length]! } }));

  if (wants('cached')) {
    const known = PRINCIPALS.map((p, k) => subject(p, k));
    const warm = inputs(20_000, known);
    for (const input of warm) holder.decide(input);
    const hitsBefore = engine.decisionCache.hits;
    const timed = inputs(N_CACHED, known);
    rows.push(summarise('cached (DecisionCache hit)', time(N_CACHED, (i) => holder.decide(timed[i]!))));
    if (engine.decisionCache.hits - hitsBefore !== N_CACHED) throw new Error('cached: not every timed call was a cache hit');
  }

  if (wants('uncached')) {
    const warm = inputs(5_000, Array.from({ length: 5_000 }, (_, i) => subject(PRINCIPALS[i % PRINCIPALS.length]!, 1_000_000 + i)));
    for (const input of warm) holder.decide(input);
    const fresh = Array.from({ length: N_UNCACHED }, (_, i) => subject(PRINCIPALS[i % PRINCIPALS.length]!, i));
    const timed = inputs(N_UNCACHED, fresh);
    const missesBefore = engine.decisionCache.misses;
    const us = time(N_UNCACHED, (i) => holder.decide(timed[i]!));
    if (engine.decisionCache.misses - missesBefore !== N_UNCACHED) throw new Error('uncached: not every timed call missed the cache');
    rows.push(summarise('uncached (miss: WASM eval + validate)', us));
    // Per principal: admins stop at the first rule, teams build selectors and headers, denials walk every team.
    PRINCIPALS.forEach((p, k) => rows.push(summarise(`uncached, ${p.kind}`, us.filter((_, i) => i % PRINCIPALS.length === k))));
  }

  if (wants('uncached-groups')) {
    // Enterprise IdPs put every group of the user in the token (Azure AD up to 200 before its "overage" claim):
    // a team-a member with that many more groups, in `groups` and in the raw claims, as the jwt source passes them.
    for (const extra of [50, 200]) {
      const many = (i: number): Subject => {
        const base = subject(PRINCIPALS[0], 2_000_000 + extra * 100_000 + i);
        const groups = [...base.groups, ...Array.from({ length: extra }, (_, k) => `5f0c7a3e-${String(extra).padStart(4, '0')}-4000-8000-${String(k).padStart(12, '0')}`)];
        return Object.freeze({ ...base, groups, claims: { ...base.claims, groups } });
      };
      const n = Math.min(N_UNCACHED, 5_000);
      for (let i = 0; i < 500; i++) holder.decide({ subject: many(n + i), request: { ...reqs[i % reqs.length]! } });
      const timed = inputs(n, Array.from({ length: n }, (_, i) => many(i)));
      if (!timed[0]!.subject.groups.includes('team-a') || !holder.decide({ subject: many(-1), request: reqs[0]! }).allow) throw new Error('uncached-groups: the team-a member is not granted');
      const missesBefore = engine.decisionCache.misses;
      const us = time(n, (i) => holder.decide(timed[i]!));
      if (engine.decisionCache.misses - missesBefore !== n) throw new Error('uncached-groups: not every timed call missed the cache');
      rows.push(summarise(`uncached, team-a + ${extra} groups (${encoder.encode(JSON.stringify(timed[0])).byteLength} B)`, us));
    }
  }

  // The pieces, on a separate opa-wasm instance of the same wasm and data.
  const opa = createRequire(import.meta.url)('@open-policy-agent/opa-wasm') as typeof import('@open-policy-agent/opa-wasm');
  const policy: LoadedPolicy = opa.loadPolicySync(readFileSync(config.policyWasm), { initial: 5, maximum: 2048 });
  policy.setData(data);
  const entrypoint = (policy.entrypoints as Record<string, number>)[config.policy.entrypoint]!;
  const pieces = inputs(N_UNCACHED, Array.from({ length: N_UNCACHED }, (_, i) => subject(PRINCIPALS[i % PRINCIPALS.length]!, i)));
  const encode = (x: unknown): ArrayBuffer => {
    const b = encoder.encode(JSON.stringify(x));
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  };
  const inputBytes = encode(pieces[0]).byteLength;
  if (wants('wasm-raw')) {
    for (let i = 0; i < 5_000; i++) policy.evaluate(pieces[i % pieces.length], entrypoint);
    rows.push(summarise('wasm-raw (opa-wasm evaluate)', time(N_UNCACHED, (i) => policy.evaluate(pieces[i], entrypoint))));
  }
  if (wants('wasm-raw-noclaims')) {
    // The default policy reads subject.groups, .username and .sub; `claims` (every verified claim) only matters to claims mode.
    const slim = pieces.map((p) => ({ subject: { ...p.subject, claims: {} }, request: p.request }));
    for (let i = 0; i < 5_000; i++) policy.evaluate(slim[i % slim.length], entrypoint);
    rows.push(summarise('wasm-raw, subject without claims', time(N_UNCACHED, (i) => policy.evaluate(slim[i], entrypoint))));
  }
  if (wants('wasm-preencoded')) {
    const encoded = pieces.map(encode);
    for (let i = 0; i < 5_000; i++) policy.evaluate(encoded[i % encoded.length], entrypoint);
    rows.push(summarise('wasm-preencoded (input as bytes)', time(N_UNCACHED, (i) => policy.evaluate(encoded[i], entrypoint))));
  }
  if (wants('serialise')) {
    for (let i = 0; i < 5_000; i++) encoder.encode(JSON.stringify(pieces[i % pieces.length]));
    rows.push(summarise('serialise (stringify + encode)', time(N_UNCACHED, (i) => encoder.encode(JSON.stringify(pieces[i])))));
  }
  if (wants('validate')) {
    const raws = PRINCIPALS.map((_, k) => policy.evaluate(pieces[k], entrypoint));
    for (let i = 0; i < 5_000; i++) validateDecision(raws[i % raws.length]);
    rows.push(summarise('validate (validateDecision)', time(N_UNCACHED, (i) => validateDecision(raws[i % raws.length]))));
  }

  const result = {
    date: new Date().toISOString(),
    command: `node bench/decision.ts --config ${args.config.replace(`${repoRoot}/`, '')} --cached ${N_CACHED} --uncached ${N_UNCACHED}${args.only === undefined ? '' : ` --only ${args.only}`}`,
    unit: 'µs',
    machine: machineInfo(),
    policy: { wasm: config.policyWasm.replace(`${repoRoot}/`, ''), revision: engine.revision, entrypoint: engine.entrypoint, teams: Object.keys(config.policyData.teams).length, inputBytes },
    decisions: shape,
    timerFloor: floor,
    rows,
  };
  const file = writeResult('decision', result, args.out);
  const m = result.machine;
  console.log(`decision cost per call, µs (${m.node}, ${m.cpu}, ${m.cores} cores, load ${m.loadavg1m}; timer floor p50 ${floor.p50} µs; input ${inputBytes} bytes of JSON)`);
  console.log(shape.map((s) => `  ${s}`).join('\n'));
  const w = [40, 7, 8, 8, 8, 8, 8, 9];
  console.log(row(['measure', 'calls', 'p50', 'p90', 'p99', 'p99.9', 'mean', 'max'], w));
  for (const r of rows) console.log(row([r.name, r.calls, r.p50, r.p90, r.p99, r.p999, r.mean, r.max], w));
  console.log(`wrote ${file}`);
}

await main();
