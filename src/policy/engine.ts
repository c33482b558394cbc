/**
 * The OPA-WASM policy engine: runs a policy compiled with
 * `opa build -t wasm -e lbac/decision` (wasm/policy.wasm by default) and turns
 * its answer into a validated `Decision`.
 *
 * Fail closed: a wasm that does not load, an evaluation that throws, an
 * undefined or malformed result — every one of them is a
 * `GatewayError('policy_error')`, never an allow.
 *
 * Concurrency: a WebAssembly instance is not reentrant (one linear memory, one
 * heap pointer that every evaluation resets). `evaluate` is synchronous and
 * Node runs it on one thread, so no two evaluations can ever interleave and a
 * single instance per engine is correct; a pool would only pay off with worker
 * threads, which would each hold their own engine.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { GatewayError, isGatewayError } from '../errors.ts';
import { headerKey } from '../util/header-name.ts';
import { DecisionCache } from './decision-cache.ts';
import { validateDecision } from './decision.ts';
import type { Decision, DecisionInput } from './decision.ts';
import { BUILTIN_POLICY_WASM_SHA256, builtinPolicyProjection, grantingEntries, type SubjectProjection } from './input-projection.ts';
import { isRecord } from '../util/is-record.ts';

// The package's ESM entry only re-exports `loadPolicy` (async, compiles every
// time); `loadPolicySync` — instantiate an already compiled module — lives on
// its CommonJS export. The types describe both.
const opaWasm = createRequire(import.meta.url)('@open-policy-agent/opa-wasm') as typeof import('@open-policy-agent/opa-wasm');

/**
 * The slice of the WebAssembly JS API used here. The project's tsconfig `lib`
 * (ES2023, no DOM) carries no WebAssembly declarations, so it is typed locally;
 * a compiled module is opaque to this file and only handed back to opa-wasm.
 */
interface CompiledModule {
  readonly [Symbol.toStringTag]: string;
}
type PolicyWasmSource = Parameters<typeof opaWasm.loadPolicySync>[0];
const WebAssemblyApi = (
  globalThis as unknown as {
    WebAssembly: { compile(bytes: Uint8Array): Promise<CompiledModule>; Module: { exports(module: CompiledModule): { name: string; kind: string }[] } };
  }
).WebAssembly;

/** Exports that every wasm produced by `opa build -t wasm` has and opa-wasm relies on (OPA Wasm ABI 1.0 and later). */
const OPA_ABI_EXPORTS = ['eval', 'entrypoints', 'builtins', 'opa_malloc', 'opa_heap_ptr_get', 'opa_heap_ptr_set', 'opa_json_parse', 'opa_json_dump'];

export const DEFAULT_ENTRYPOINT = 'lbac/decision';

/** WebAssembly pages are 64 KiB. */
const DEFAULT_INITIAL_PAGES = 5; // the SDK's own default
const DEFAULT_MAXIMUM_PAGES = 2048; // 128 MiB: data + one evaluation; beyond that, fail instead of growing forever

export interface PolicyEngineOptions {
  /** Entrypoint to evaluate; default `lbac/decision`. Must be one the wasm was built with. */
  entrypoint?: string;
  /** Revision to report (e.g. a bundle's revision); default: first 12 hex of the wasm's sha256. */
  revision?: string;
  /** Linear memory bounds in 64 KiB pages; default 5 initial, 2048 (128 MiB) maximum. */
  memory?: { initialPages?: number; maximumPages?: number };
  /**
   * false: give the built-in policy the subject whole, as any other policy
   * (src/policy/input-projection.ts; for comparisons and tests). Default true.
   */
  projectInput?: boolean;
}

function errorText(e: unknown): string {
  // opa-wasm throws strings (opa_abort messages) as well as Errors.
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  if (typeof e === 'object' && e !== null && 'message' in e && typeof e.message === 'string') return e.message;
  return String(e);
}

function policyError(message: string, cause: unknown, details?: Record<string, unknown>): GatewayError {
  return new GatewayError('policy_error', `${message}: ${errorText(cause)}`, { cause, ...(details === undefined ? {} : { details }) });
}

function toBytes(wasm: Uint8Array | ArrayBuffer): Uint8Array {
  return wasm instanceof Uint8Array ? wasm : new Uint8Array(wasm);
}

/**
 * The data document, serialised once: opa-wasm accepts an ArrayBuffer of JSON
 * text, so re-creating an instance does not stringify the data again.
 */
function serialiseData(data: unknown): ArrayBuffer {
  const root = data === undefined ? {} : data;
  if (typeof root !== 'object' || root === null || Array.isArray(root)) {
    throw new GatewayError('policy_error', `policy data must be a JSON object (the root data document), got ${Array.isArray(root) ? 'array' : root === null ? 'null' : typeof root}`);
  }
  let text: string;
  try {
    text = JSON.stringify(root);
  } catch (e) {
    throw policyError('policy data is not serialisable as JSON', e);
  }
  const bytes = new TextEncoder().encode(text);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** The header names the teams and admins of `data.lbac` set, as headerKey; other data shapes set none that can be known. */
export function policyHeaderNames(data: unknown): ReadonlySet<string> {
  const names = new Set<string>();
  for (const entry of grantingEntries(data)) {
    const headers = entry['headers'];
    if (isRecord(headers)) for (const name of Object.keys(headers)) names.add(headerKey(name));
  }
  return names;
}

export class PolicyEngine {
  /** Identifies the loaded policy in logs and /ready. */
  readonly revision: string;
  /** SHA-256 (hex) of the wasm bytes: the same policy code exactly when equal (`revision` may be a bundle's name or 12 hex). */
  readonly wasmSha256: string;
  readonly entrypoint: string;
  readonly #module: CompiledModule;
  readonly #initialPages: number;
  readonly #maximumPages: number;
  #data: ArrayBuffer;
  /** Decisions per Subject instance; cleared with new data, and a new engine (revision) starts empty. */
  readonly decisionCache = new DecisionCache();
  /**
   * Header names (headerKey form) that the data's teams or admins set
   * (`data.lbac.teams.*.headers`, `data.lbac.admins.headers`): the gateway owns
   * them for every request, whether or not this request's decision sets them,
   * so a client's own copy (e.g. another team's THANOS-TENANT) never passes.
   */
  #ownedHeaders: ReadonlySet<string>;
  /** The live instance, or undefined after a failed evaluation (rebuilt on next use). */
  #instance: { policy: LoadedPolicy; entrypointId: number } | undefined;
  /** The wasm is the built-in policy (its entrypoint): its input is projected (input-projection.ts). */
  readonly #builtin: boolean;
  /** What the built-in policy is given of a subject under the current data; undefined: the whole subject. */
  #project: SubjectProjection | undefined;

  private constructor(module: CompiledModule, data: ArrayBuffer, owned: ReadonlySet<string>, revision: string, opts: PolicyEngineOptions, builtin: boolean, rawData: unknown, wasmSha256: string) {
    this.wasmSha256 = wasmSha256;
    this.#module = module;
    this.#data = data;
    this.#ownedHeaders = owned;
    this.revision = revision;
    this.entrypoint = opts.entrypoint ?? DEFAULT_ENTRYPOINT;
    this.#builtin = builtin && this.entrypoint === DEFAULT_ENTRYPOINT && opts.projectInput !== false;
    this.#project = this.#builtin ? builtinPolicyProjection(rawData) : undefined;
    this.#initialPages = opts.memory?.initialPages ?? DEFAULT_INITIAL_PAGES;
    this.#maximumPages = opts.memory?.maximumPages ?? DEFAULT_MAXIMUM_PAGES;
    this.#instance = this.#instantiate(data);
  }

  /**
   * Compiles a policy wasm and loads `data` as its root data document (the
   * default policy reads `data.lbac`, so pass `{ lbac: … }`). Rejects with
   * `policy_error` if the bytes are not a policy wasm, lack the entrypoint, or
   * the data cannot be loaded.
   */
  static async fromBytes(wasm: Uint8Array | ArrayBuffer, data: unknown, opts: PolicyEngineOptions = {}): Promise<PolicyEngine> {
    const bytes = toBytes(wasm);
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
      throw new GatewayError('policy_error', 'policy is a gzip file (an OPA bundle?); pass the policy.wasm inside it');
    }
    let module: CompiledModule;
    try {
      module = await WebAssemblyApi.compile(bytes);
    } catch (e) {
      throw policyError('policy is not a valid WebAssembly module', e);
    }
    const exported = new Set(WebAssemblyApi.Module.exports(module).map((e) => e.name));
    const missing = OPA_ABI_EXPORTS.filter((name) => !exported.has(name));
    if (missing.length > 0) {
      throw new GatewayError('policy_error', `policy is a WebAssembly module but not an OPA policy (built with \`opa build -t wasm\`?): it lacks ${missing.join(', ')}`);
    }
    const digest = createHash('sha256').update(bytes).digest('hex');
    const revision = opts.revision ?? digest.slice(0, 12);
    return new PolicyEngine(module, serialiseData(data), policyHeaderNames(data), revision, opts, digest === BUILTIN_POLICY_WASM_SHA256, data, digest);
  }

  /** `fromBytes` for a file; a file that cannot be read is `policy_unavailable`. */
  static async fromFile(path: string, data: unknown, opts: PolicyEngineOptions = {}): Promise<PolicyEngine> {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (e) {
      throw new GatewayError('policy_unavailable', `cannot read policy ${path}: ${errorText(e)}`, { cause: e });
    }
    try {
      return await PolicyEngine.fromBytes(bytes, data, opts);
    } catch (e) {
      if (isGatewayError(e)) throw new GatewayError(e.code, `${path}: ${e.message}`, { cause: e });
      throw e;
    }
  }

  /**
   * Evaluates the policy for one request. Synchronous. Returns only a
   * validated decision; everything else throws `policy_error`.
   */
  evaluate(input: DecisionInput): Decision {
    const cached = this.decisionCache.get(input);
    if (cached !== undefined) return cached;
    const decision = this.#evaluateUncached(input);
    this.decisionCache.set(input, decision);
    return decision;
  }

  #evaluateUncached(input: DecisionInput): Decision {
    let raw: unknown;
    try {
      const instance = (this.#instance ??= this.#instantiate(this.#data));
      const project = this.#project;
      raw = instance.policy.evaluate(project === undefined ? input : { ...input, subject: project(input.subject) }, instance.entrypointId);
    } catch (e) {
      // An evaluation that threw may have left the instance's heap in any
      // state; never evaluate on it again. A fresh one is made on next use
      // from the compiled module (cheap: no recompilation).
      this.#instance = undefined;
      if (isGatewayError(e)) throw e;
      throw policyError(`policy evaluation failed (${this.entrypoint}, revision ${this.revision})`, e);
    }
    try {
      return validateDecision(raw);
    } catch (e) {
      if (isGatewayError(e)) throw e;
      throw policyError('policy decision could not be validated', e);
    }
  }

  /** See #ownedHeaders. */
  get ownedHeaders(): ReadonlySet<string> {
    return this.#ownedHeaders;
  }

  /** Whether the policy is given only what it reads of a subject (the built-in policy; input-projection.ts). */
  get projectsInput(): boolean {
    return this.#project !== undefined;
  }

  /**
   * Replaces the data document. Atomic: the new data is loaded into a fresh
   * instance, which replaces the current one only once that has succeeded; on
   * failure (`policy_error`) the engine keeps evaluating with the old data.
   */
  setData(data: unknown): void {
    const serialised = serialiseData(data);
    const instance = this.#instantiate(serialised);
    const owned = policyHeaderNames(data);
    this.#data = serialised;
    this.#instance = instance;
    this.#ownedHeaders = owned;
    if (this.#builtin) this.#project = builtinPolicyProjection(data);
    this.decisionCache.clear();
  }

  #instantiate(data: ArrayBuffer): { policy: LoadedPolicy; entrypointId: number } {
    let policy: LoadedPolicy;
    try {
      policy = opaWasm.loadPolicySync(this.#module as unknown as PolicyWasmSource, { initial: this.#initialPages, maximum: this.#maximumPages });
    } catch (e) {
      throw policyError('policy wasm could not be instantiated (not built with `opa build -t wasm`?)', e);
    }
    // opa-wasm's evaluate(input, entrypoint) takes the entrypoint's name or its
    // index in the wasm's entrypoint table; a name is looked up on every call and
    // throws if unknown. We resolve the name once here, failing at load time,
    // and pass the index. (A wasm built with only `-e lbac/decision` has it at
    // index 0, evaluate's default, but we do not rely on that.)
    const entrypoints = policy.entrypoints as unknown;
    const id = typeof entrypoints === 'object' && entrypoints !== null ? (entrypoints as Record<string, unknown>)[this.entrypoint] : undefined;
    if (typeof id !== 'number' || !Object.hasOwn(entrypoints as object, this.entrypoint)) {
      const known = typeof entrypoints === 'object' && entrypoints !== null ? Object.keys(entrypoints).join(', ') : '';
      throw new GatewayError('policy_error', `policy wasm has no entrypoint ${this.entrypoint} (it has: ${known || 'none'}); build it with -e ${this.entrypoint}`);
    }
    try {
      policy.setData(data);
    } catch (e) {
      throw policyError('policy data could not be loaded into the wasm', e);
    }
    return { policy, entrypointId: id };
  }
}
