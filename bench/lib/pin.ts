// CPU pinning for bench/latency.ts: the load generator on a CPU of its own,
// the servers (upstreams and proxies under test) on the others. Without it the
// generator competes with the servers for the same cores, and every request it
// sends late or reads late adds that wait to the latency of whichever target
// it was measuring (docs/performance.md#added-latency-at-microsecond-resolution).
// Linux only (sched_setaffinity through util-linux's taskset).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface Pinning {
  /** CPU list (taskset -c syntax) of the load generator. */
  generator: string;
  /** CPU list of everything else: this process and the servers it starts (upstreams, proxies under test). */
  servers: string;
}

/** CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status), in order. */
export function allowedCpus(): number[] {
  const line = /^Cpus_allowed_list:\s*(.+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
  const out: number[] = [];
  for (const part of line.split(',')) {
    const [a, b] = part.trim().split('-').map(Number);
    if (a === undefined || !Number.isInteger(a)) continue;
    for (let c = a; c <= (b ?? a); c++) out.push(c);
  }
  return out;
}

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * 'generator': pinned where it can be (Linux, taskset, at least 2 allowed CPUs):
 * the first CPU for the generator, the others for the servers; 'off' (or no way to pin): undefined.
 */
export function pinningPlan(mode: 'generator' | 'off'): Pinning | undefined {
  if (mode === 'off' || process.platform !== 'linux' || !hasTaskset()) return undefined;
  const cpus = allowedCpus();
  if (cpus.length < 2) return undefined;
  return { generator: String(cpus[0]), servers: cpus.slice(1).join(',') };
}

/** `pid` and its descendants (a gateway's cluster workers), from /proc/<pid>/task/<tid>/children. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue; // exited meanwhile
    }
    for (const tid of tasks) {
      try {
        for (const c of readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').split(/\s+/)) if (c !== '') out.push(Number(c));
      } catch {
        // the thread ended between listing and reading
      }
    }
  }
  return out;
}

/** Moves every thread of `pid` and of its descendants onto `cpus`; threads and processes started later inherit it. */
export function pinTree(pid: number, cpus: string): void {
  for (const p of processTree(pid)) execFileSync('taskset', ['-a', '-p', '-c', cpus, String(p)], { stdio: 'ignore' });
}

/** The CPU list every thread of `pid` may run on now, as taskset prints it (for checks). */
export function cpusOf(pid: number): string {
  return /^Cpus_allowed_list:\s*(.+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.trim() ?? '';
}
