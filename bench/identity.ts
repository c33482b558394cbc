// Identity cost per request: `make bench-identity` (node bench/identity.ts).
//
// Times Authenticator.authenticate — what the gateway's onRequest hook calls —
// for a `jwt` source with a local JWKS file (no network), per algorithm:
//   cached:   the same verified token again (strict Authorization parsing,
//             SHA-256 digest of the token, LRU hit): what a dashboard pays on
//             every refresh after its first request;
//   uncached: a token never seen before (decode, JWKS key lookup, signature,
//             iss/aud/exp/nbf checks, claim mapping, cache insert).
// Every call is timed on its own (process.hrtime.bigint); p50/p90/p99 over all
// calls. Results: a table on stdout and bench/results/identity-<date>.json.
//
// Options (environment): BENCH_REPS_CACHED (default 20000), BENCH_REPS_UNCACHED
// (default 2000 distinct tokens per algorithm), BENCH_OUT (output file).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { jwtProviderSchema } from '../src/config/schema.ts';
import { Authenticator, createSource } from '../src/identity/authenticator.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const repsCached = Number(process.env['BENCH_REPS_CACHED'] ?? 20_000);
const repsUncached = Number(process.env['BENCH_REPS_UNCACHED'] ?? 2_000);
const ISSUER = 'https://idp.bench';
const AUDIENCE = 'lbac-gateway';

type Alg = 'ES256' | 'RS256';

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function summary(samples: Float64Array) {
  const s = Float64Array.from(samples).sort();
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  const r = (x: number) => Math.round(x * 100) / 100;
  return { calls: s.length, p50: r(percentile(s, 50)), p90: r(percentile(s, 90)), p99: r(percentile(s, 99)), mean: r(mean), max: r(s[s.length - 1]!) };
}

async function setup(alg: Alg, dir: string) {
  const { privateKey, publicKey } = await generateKeyPair(alg, alg === 'RS256' ? { modulusLength: 2048 } : {});
  const kid = `bench-${alg}`;
  const jwksFile = join(dir, `${alg}.json`);
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }] }));
  const source = await createSource(jwtProviderSchema.parse({ type: 'jwt', jwksFile, issuer: ISSUER, audience: AUDIENCE, algorithms: [alg] }));
  const auth = new Authenticator([source]);
  const mint = (i: number) =>
    new SignJWT({ preferred_username: `user-${i}`, groups: ['team-a', 'viewers'], realm_access: { roles: ['viewer'] }, email: `user-${i}@example.com` })
      .setProtectedHeader({ alg, kid, typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(`u-${i}`)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey);
  return { auth, mint };
}

async function timeCalls(n: number, call: (i: number) => Promise<unknown>): Promise<Float64Array> {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await call(i);
    out[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return out;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lbac-bench-identity-'));
  const rows: Record<string, unknown>[] = [];
  // The timer plus an awaited no-op: the floor under every figure.
  const floor = summary(await timeCalls(10_000, async () => undefined));
  try {
    for (const alg of ['ES256', 'RS256'] as const) {
      const { auth, mint } = await setup(alg, dir);
      const tokens = await Promise.all(Array.from({ length: repsUncached + 200 }, (_, i) => mint(i)));
      const req = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
      // Warm-up (JIT, key import) on tokens not used for the uncached figures.
      for (let i = 0; i < 200; i++) await auth.authenticate(req(tokens[repsUncached + i]!));
      const uncached = await timeCalls(repsUncached, (i) => auth.authenticate(req(tokens[i]!)));
      const hot = req(tokens[0]!);
      for (let i = 0; i < 1000; i++) await auth.authenticate(hot);
      const cached = await timeCalls(repsCached, () => auth.authenticate(hot));
      rows.push({ alg, mode: 'uncached', ...summary(uncached) }, { alg, mode: 'cached', ...summary(cached) });
      if (auth.stats.rejected !== 0) throw new Error(`${alg}: ${auth.stats.rejected} tokens were rejected`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const env = { node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, os: release(), loadavg1m: Math.round((loadavg()[0] ?? 0) * 100) / 100 };
  console.log(`identity: Authenticator.authenticate per call, µs (${env.node}, ${env.cpu}, ${env.cores} cores, load ${env.loadavg1m}; timer+await floor p50 ${floor.p50} µs)`);
  console.log('alg    mode      calls      p50      p90      p99     mean');
  for (const r of rows) {
    const f = (k: string) => String(r[k]).padStart(8);
    console.log(`${String(r['alg']).padEnd(6)} ${String(r['mode']).padEnd(8)} ${String(r['calls']).padStart(6)} ${f('p50')} ${f('p90')} ${f('p99')} ${f('mean')}`);
  }
  const out = process.env['BENCH_OUT'] ?? join(root, 'bench', 'results', `identity-${new Date().toISOString().slice(0, 10)}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), command: 'make bench-identity', unit: 'µs', env, repsCached, repsUncached, timerFloor: floor, rows }, null, 2)}\n`);
  console.log(`wrote ${out}`);
}

await main();
