// Reading `perf script` for `make bench-profile` (bench/profile.ts): where the
// gateway's CPU per request goes next to the bare pass-through's, by symbol and
// by kind of code. Pure functions: the text in, figures out.
//
// Why perf and not V8's `--cpu-prof`: at the interval that resolves a
// 100-µs request (50 µs), V8's sampler itself cost 70–90 µs per request in
// session 21 and compressed the difference between the two proxies
// (profiled 176 against 193 µs per request, 0.91; unprofiled 84 against
// 125, 0.67). `perf record` also sees the kernel and V8's native code; with
// call stacks (-g) it too adds CPU time, which no sample shows, so shares
// are scaled by CPU per request measured without it.

/** Self-time shares of one profile: symbol → percent of all samples. */
export type SymbolShares = Map<string, number>;

/** Whether a frame is JavaScript (or a regular expression JavaScript ran), as `--perf-basic-prof` names them. */
const isScriptFrame = (symbol: string): boolean => symbol.startsWith('JS:') || symbol.startsWith('RegExp');

/**
 * Self time per symbol from `perf script -F comm,tid,period,ip,sym` of a
 * `perf record -g` profile (samples are a header line with the period, then
 * one line per frame, leaf first, then a blank line), weighted by period.
 * `fold`: a sample whose leaf is not JavaScript (a V8 builtin such as a
 * megamorphic property load, the runtime, Node's C++, the kernel under a
 * syscall) counts for the nearest JavaScript frame above it, so what a
 * function costs includes the machinery it calls; samples with no JavaScript
 * frame (GC threads, the event loop's own polling) stay with their leaf.
 */
export function parsePerfScript(text: string, fold: boolean): SymbolShares {
  const weights = new Map<string, number>();
  let total = 0;
  let period = 0;
  let frames: string[] = [];
  const finish = (): void => {
    if (frames.length > 0 && period > 0) {
      const leaf = frames[0] as string;
      const symbol = fold && !isScriptFrame(leaf) ? (frames.find(isScriptFrame) ?? leaf) : leaf;
      weights.set(symbol, (weights.get(symbol) ?? 0) + period);
      total += period;
    }
    frames = [];
    period = 0;
  };
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      finish();
      continue;
    }
    const frame = /^\s+[0-9a-f]+\s+(.+?)\s*$/.exec(line);
    if (/^\s/.test(line) && frame !== null) {
      frames.push(frame[1] as string);
      continue;
    }
    finish();
    const head = /\s(\d+)\s*$/.exec(line);
    period = head === null ? 0 : Number(head[1]);
  }
  finish();
  const shares: SymbolShares = new Map();
  for (const [symbol, w] of weights) shares.set(symbol, (w / total) * 100);
  return shares;
}

/**
 * The kind of code a symbol is, as `node --perf-basic-prof` names JavaScript
 * (`JS:*'name file:line:col`): the gateway's own modules (src/…), a package
 * (npm:<name>), Node's JavaScript (node:<module>), V8's builtins (inline
 * caches, string and collection operations the JavaScript above calls), V8's
 * C++ runtime (GC, compilation), Node's C++ (node::), WebAssembly (undici's
 * llhttp parser; OPA's policy too, when a decision is not cached), and the
 * kernel and C library.
 */
export function symbolKind(symbol: string): string {
  if (isScriptFrame(symbol)) {
    if (/wasm-function/.test(symbol)) return 'wasm';
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(symbol);
    if (pkg !== null) return `npm:${pkg[1]}`;
    // The last /src/ of the path: the checkout itself may live under a src/ directory.
    const at = symbol.lastIndexOf('/src/');
    const dir = at < 0 ? null : /^([\w-]+)\//.exec(symbol.slice(at + 5));
    if (dir !== null) return `src/${dir[1]}`;
    const nodeModule = /\bnode:(?:internal\/)?([\w-]+)/.exec(symbol);
    if (nodeModule !== null) return `node:${nodeModule[1]}`;
    return symbol.startsWith('RegExp') ? 'regexp' : 'js (other)';
  }
  if (symbol.startsWith('Builtins_')) return 'v8 builtins';
  if (symbol.startsWith('v8::') || symbol.startsWith('cppgc::')) return 'v8 runtime';
  if (symbol.startsWith('node::') || symbol.startsWith('uv_') || symbol.startsWith('llhttp')) return 'node native';
  return 'kernel, libc';
}

export interface ProfileSide {
  readonly shares: SymbolShares;
  /** CPU µs per request of the profiled process (bench/profile.ts: measured without perf, under the same load). */
  readonly cpuPerRequest: number;
}

export interface DiffRow {
  readonly key: string;
  readonly gateway: number;
  readonly passthrough: number;
  /** gateway − passthrough, µs per request. */
  readonly added: number;
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

/**
 * µs per request by `keyOf(symbol)`, gateway against pass-through, largest
 * addition first: each side's share of samples times its CPU per request.
 */
export function diffProfiles(gateway: ProfileSide, passthrough: ProfileSide, keyOf: (symbol: string) => string = (s) => s): DiffRow[] {
  const micros = (side: ProfileSide): Map<string, number> => {
    const out = new Map<string, number>();
    for (const [symbol, percent] of side.shares) {
      const key = keyOf(symbol);
      out.set(key, (out.get(key) ?? 0) + (percent / 100) * side.cpuPerRequest);
    }
    return out;
  };
  const g = micros(gateway);
  const p = micros(passthrough);
  const rows: DiffRow[] = [];
  for (const key of new Set([...g.keys(), ...p.keys()])) {
    const a = g.get(key) ?? 0;
    const b = p.get(key) ?? 0;
    rows.push({ key, gateway: round2(a), passthrough: round2(b), added: round2(a - b) });
  }
  return rows.sort((x, y) => y.added - x.added || x.key.localeCompare(y.key));
}
