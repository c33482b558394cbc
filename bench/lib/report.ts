// Small helpers the µs-resolution benchmarks share: the machine description
// stored with every result, and writing a result file.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { dirname, join } from 'node:path';
import { repoRoot } from '../../e2e/harness/tools.ts';

export interface MachineInfo {
  node: string;
  cpu: string;
  cores: number;
  os: string;
  loadavg1m: number;
}

export function machineInfo(): MachineInfo {
  return { node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, os: release(), loadavg1m: Math.round((loadavg()[0] ?? 0) * 100) / 100 };
}

/** bench/results/<name>-<YYYY-MM-DD>.json, or `override`; returns the path written. */
export function writeResult(name: string, result: unknown, override?: string): string {
  const file = override ?? join(repoRoot, 'bench', 'results', `${name}-${new Date().toISOString().slice(0, 10)}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

/** Right-aligned columns after a left-aligned first one. */
export function row(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i] ?? 0) : String(c).padStart(widths[i] ?? 0))).join(' ');
}

/**
 * The middle sample, the upper of the two for an even count (NaN for none): the
 * median the round-based CPU benchmarks report (bench/cpu.ts, ab.ts,
 * cluster-cpu.ts, soak.ts), always a measured round, never an average of two.
 */
export function upperMedian(xs: readonly number[]): number {
  return xs.length === 0 ? Number.NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** Sample statistics in the samples' unit (µs): nearest-rank percentiles, mean, max. */
export interface SampleStats {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  mean: number;
  max: number;
}

/** Nearest-rank percentiles of per-call samples, rounded to `digits` decimals. */
export function sampleStats(samples: Float64Array, digits = 2): SampleStats {
  const s = Float64Array.from(samples).sort();
  const at = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
  const k = 10 ** digits;
  const r = (x: number): number => Math.round(x * k) / k;
  let sum = 0;
  for (const x of s) sum += x;
  return { n: s.length, p50: r(at(50)), p90: r(at(90)), p99: r(at(99)), p999: r(at(99.9)), mean: r(sum / s.length), max: r(s[s.length - 1] ?? NaN) };
}
