// Rewrite latency over the query corpora: `make bench-rewrite` (node bench/rewrite.ts).
//
// For every language that has a corpus and a rewriter, for each policy shape
// (one AND-group; a two-group DNF), every corpus query the rewriter accepts is
// rewritten many times and every call is timed on its own
// (process.hrtime.bigint), both
//   cold:   the rewrite cache cleared before each call (parse + splice + verify),
//   cached: the same query again (a cache hit, what a refreshing dashboard costs),
//   parse:  one strict Lezer parse of the query and nothing else: the floor a
//           cold rewrite cannot go below (it parses the query, then verifies
//           its output by parsing that again).
// Percentiles (p50/p99) are over all calls of a group: per language, per policy,
// per mode, per query-size bucket (bytes), plus "dashboard" (corpus tag) for the
// issue's target. Results: a table on stdout and bench/results/rewrite-<date>.json.
//
// Options (environment): BENCH_REPS_COLD (default 100), BENCH_REPS_CACHED (200),
// BENCH_WARMUP (passes over a corpus before timing it; default 30, scaled like the reps),
// BENCH_OUT (output file; default bench/results/rewrite-<YYYY-MM-DD>.json).
// A hand-rolled loop rather than tinybench/mitata: the figures needed are
// percentiles over individual calls pooled across many queries (size buckets),
// which those report per task only; the timer's own overhead is measured and printed.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCorpus, type CorpusEntry } from '../e2e/isolation/corpus.ts';
import type { SelectorPolicy } from '../src/rewrite/matcher.ts';
import { clearPromQLCache, rewritePromQL } from '../src/rewrite/promql.ts';
import { parser as logqlParser } from '@grafana/lezer-logql';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import { parseStrict } from '../src/rewrite/lezer.ts';
import { parseTraceQLTree } from '../src/rewrite/traceql-syntax.ts';
import { sampleStats } from './lib/report.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** One language's entry: its corpus file and rewriter. LogQL/TraceQL plug in here. */
interface LanguageBench {
  language: 'promql' | 'logql' | 'traceql';
  corpus: string;
  /** A group name every query of this corpus is also counted under (e.g. "real-world"). */
  group?: string;
  /** Calls per query relative to the defaults (a large corpus needs fewer for the same number of samples). */
  repsScale?: number;
  /** Loaded lazily so a language without a rewriter yet is simply skipped. */
  load(): Promise<{ rewrite: (q: string, p: SelectorPolicy) => string; clearCache: () => void } | undefined>;
  /** One strict parse of a query with the grammar its rewriter uses (the `parse` mode). */
  parse(q: string): void;
  policies: Readonly<Record<string, SelectorPolicy>>;
}

/** Deeply frozen, as the gateway's decisions are (src/policy/decision.ts), so policies are prepared as in production. */
const frozenPolicy = (groups: SelectorPolicy): SelectorPolicy => Object.freeze(groups.map((g) => Object.freeze(g.map((m) => Object.freeze({ ...m })))));
const NS_POLICY: SelectorPolicy = frozenPolicy([[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]]);
const DNF_POLICY: SelectorPolicy = frozenPolicy([
  [{ name: 'namespace', op: '=~', value: 'team-a-.*' }],
  [
    { name: 'namespace', op: '=', value: 'platform' },
    { name: 'job', op: '=', value: 'api' },
  ],
]);

/** Imports src/rewrite/<lang>.ts if it exists and exports rewrite<Lang>/clear<Lang>Cache. */
async function optionalRewriter(file: string, rewriteName: string, clearName: string) {
  const path = join(root, 'src', 'rewrite', file);
  if (!existsSync(path)) return undefined;
  const mod = (await import(path)) as Record<string, unknown>;
  const rewrite = mod[rewriteName];
  const clear = mod[clearName];
  if (typeof rewrite !== 'function') return undefined;
  return {
    rewrite: rewrite as (q: string, p: SelectorPolicy) => string,
    clearCache: typeof clear === 'function' ? (clear as () => void) : () => {},
  };
}

const LANGUAGES: readonly LanguageBench[] = [
  {
    language: 'promql',
    corpus: join(root, 'e2e', 'corpus', 'promql.jsonl'),
    load: async () => ({ rewrite: rewritePromQL, clearCache: clearPromQLCache }),
    parse: (q) => void parseStrict(promqlParser, q),
    policies: { single: NS_POLICY, dnf2: DNF_POLICY },
  },
  {
    // Rule files and dashboards from public mixins (e2e/corpus/README.md): longer than the hand-written corpus.
    language: 'promql',
    corpus: join(root, 'e2e', 'corpus', 'promql-realworld.jsonl'),
    group: 'real-world',
    repsScale: 0.1,
    load: async () => ({ rewrite: rewritePromQL, clearCache: clearPromQLCache }),
    parse: (q) => void parseStrict(promqlParser, q),
    policies: { single: NS_POLICY },
  },
  {
    language: 'logql',
    corpus: join(root, 'e2e', 'corpus', 'logql.jsonl'),
    load: () => optionalRewriter('logql.ts', 'rewriteLogQL', 'clearLogQLCache'),
    parse: (q) => void parseStrict(logqlParser, q),
    policies: { single: NS_POLICY, dnf2: DNF_POLICY },
  },
  {
    // Dashboard panels, rules and tool examples from public repositories plus Grafana's editor grammar tests (e2e/corpus/README.md).
    language: 'logql',
    corpus: join(root, 'e2e', 'corpus', 'logql-realworld.jsonl'),
    group: 'real-world',
    load: () => optionalRewriter('logql.ts', 'rewriteLogQL', 'clearLogQLCache'),
    parse: (q) => void parseStrict(logqlParser, q),
    policies: { single: NS_POLICY, dnf2: DNF_POLICY },
  },
  {
    language: 'traceql',
    corpus: join(root, 'e2e', 'corpus', 'traceql.jsonl'),
    load: () => optionalRewriter('traceql.ts', 'rewriteTraceQL', 'clearTraceQLCache'),
    parse: (q) => void parseTraceQLTree(q),
    policies: {
      single: frozenPolicy([[{ name: 'resource.k8s.namespace.name', op: '=~', value: 'team-a-.*' }]]),
    },
  },
  {
    // Grafana's MCP server TraceQL examples and TraceQL editor grammar tests (e2e/corpus/README.md).
    language: 'traceql',
    corpus: join(root, 'e2e', 'corpus', 'traceql-realworld.jsonl'),
    group: 'real-world',
    load: () => optionalRewriter('traceql.ts', 'rewriteTraceQL', 'clearTraceQLCache'),
    parse: (q) => void parseTraceQLTree(q),
    policies: {
      single: frozenPolicy([[{ name: 'resource.k8s.namespace.name', op: '=~', value: 'team-a-.*' }]]),
    },
  },
];

const BUCKETS: readonly { name: string; max: number }[] = [
  { name: '<=32B', max: 32 },
  { name: '33-64B', max: 64 },
  { name: '65-128B', max: 128 },
  { name: '129-256B', max: 256 },
  { name: '>256B', max: Infinity },
];

function bucketOf(q: string): string {
  const n = Buffer.byteLength(q, 'utf8');
  return (BUCKETS.find((b) => n <= b.max) as { name: string }).name;
}

function intEnv(name: string, dflt: number): number {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v > 0 ? v : dflt;
}

interface Stats {
  n: number;
  queries: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  max_us: number;
  mean_us: number;
}

function stats(samples: Float64Array, queries: number): Stats {
  const s = sampleStats(samples, 3);
  return { n: s.n, queries, p50_us: s.p50, p90_us: s.p90, p99_us: s.p99, max_us: s.max, mean_us: s.mean };
}

/** Per-call latencies in µs for one query. */
function measure(fn: () => void, reps: number, before?: () => void): Float64Array {
  const out = new Float64Array(reps);
  for (let i = 0; i < reps; i++) {
    before?.();
    const t0 = process.hrtime.bigint();
    fn();
    out[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return out;
}

function concat(parts: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

interface Row {
  language: string;
  policy: string;
  mode: 'cold' | 'cached' | 'parse';
  group: string;
  stats: Stats;
}

async function main(): Promise<void> {
  const repsCold = intEnv('BENCH_REPS_COLD', 100);
  const repsCached = intEnv('BENCH_REPS_CACHED', 200);
  const warmup = intEnv('BENCH_WARMUP', 30);
  const rows: Row[] = [];
  const skipped: string[] = [];
  const accepted: Record<string, Record<string, { accepted: number; rejected: number }>> = {};
  // The timer's own cost, to read the cached figures against.
  const timer = stats(measure(() => {}, 100_000), 1);

  for (const lang of LANGUAGES) {
    if (!existsSync(lang.corpus)) {
      skipped.push(`${lang.language}: no corpus at ${lang.corpus}`);
      continue;
    }
    const impl = await lang.load();
    if (impl === undefined) {
      skipped.push(`${lang.language}: no rewriter module`);
      continue;
    }
    const corpus = loadCorpus(lang.corpus);
    for (const [pname, policy] of Object.entries(lang.policies)) {
      const ok: CorpusEntry[] = [];
      for (const e of corpus) {
        try {
          impl.rewrite(e.q, policy);
          ok.push(e);
        } catch {
          // refused queries (parse errors, no exact DNF form) are not timed
        }
      }
      (accepted[lang.group === undefined ? lang.language : `${lang.language} ${lang.group}`] ??= {})[pname] = { accepted: ok.length, rejected: corpus.length - ok.length };
      const scale = lang.repsScale ?? 1;
      // Warm up the JIT on the whole set, cold and cached.
      for (let i = 0; i < Math.max(Math.min(3, warmup), Math.round(warmup * scale)); i++) {
        for (const e of ok) {
          impl.clearCache();
          impl.rewrite(e.q, policy);
          impl.rewrite(e.q, policy);
        }
      }
      // The parse floor does not depend on the policy: measured with the first one only.
      const modes = pname === Object.keys(lang.policies)[0] ? (['cold', 'cached', 'parse'] as const) : (['cold', 'cached'] as const);
      for (const mode of modes) {
        const byQuery = new Map<CorpusEntry, Float64Array>();
        for (const e of ok) {
          const run = (): void => void impl.rewrite(e.q, policy);
          if (mode === 'cold') byQuery.set(e, measure(run, Math.max(1, Math.round(repsCold * scale)), impl.clearCache));
          else if (mode === 'parse') byQuery.set(e, measure(() => lang.parse(e.q), Math.max(1, Math.round(repsCold * scale))));
          else {
            impl.clearCache();
            run();
            byQuery.set(e, measure(run, Math.max(1, Math.round(repsCached * scale))));
          }
        }
        const groups = new Map<string, { samples: Float64Array[]; queries: number }>();
        const add = (g: string, s: Float64Array): void => {
          const x = groups.get(g) ?? { samples: [], queries: 0 };
          x.samples.push(s);
          x.queries++;
          groups.set(g, x);
        };
        for (const [e, s] of byQuery) {
          add(lang.group ?? 'all', s);
          add(`size ${bucketOf(e.q)}`, s);
          if (e.tags.includes('dashboard')) add('tag dashboard', s);
        }
        const order = [lang.group ?? 'all', 'tag dashboard', ...BUCKETS.map((b) => `size ${b.name}`)];
        for (const g of order) {
          const x = groups.get(g);
          if (x !== undefined && (lang.group === undefined || !g.startsWith('size '))) {
            rows.push({ language: lang.language, policy: pname, mode, group: g, stats: stats(concat(x.samples), x.queries) });
          }
        }
      }
    }
  }

  const date = new Date().toISOString().slice(0, 10);
  const out = process.env['BENCH_OUT'] ?? join(root, 'bench', 'results', `rewrite-${date}.json`);
  const env = { node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, os: release(), loadavg1m: Math.round((loadavg()[0] ?? 0) * 100) / 100 };
  console.log(`rewrite latency (µs per call; ${repsCold} cold / ${repsCached} cached calls per query) on ${env.cpu} x${env.cores}, Node ${env.node}, load ${env.loadavg1m}`);
  console.table(
    rows.map((r) => ({ lang: r.language, policy: r.policy, mode: r.mode, group: r.group, queries: r.stats.queries, calls: r.stats.n, p50: r.stats.p50_us, p90: r.stats.p90_us, p99: r.stats.p99_us, max: r.stats.max_us })),
  );
  console.log(`timer overhead: p50 ${timer.p50_us} µs, p99 ${timer.p99_us} µs (included in every figure)`);
  for (const s of skipped) console.log(`skipped ${s}`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), command: 'make bench-rewrite', env, repsCold, repsCached, timerOverhead: timer, accepted, skipped, rows }, null, 2)}\n`);
  console.log(`wrote ${out}`);
}

await main();
