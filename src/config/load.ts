import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { CredentialsError, resolveAuth, resolveTls, type UpstreamCredentials, type UpstreamTls } from '../backends/credentials.ts';
import { ConfigError } from '../errors.ts';
import { configSchema, type ParsedConfig, type UpstreamConfig } from './schema.ts';
import { buildPolicyData, TeamsError, type PolicyData } from './teams.ts';
import { fileErrorCode } from '../util/file-error.ts';

/** The package root, where the bundled wasm/policy.wasm lives. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_POLICY_WASM = path.join(PACKAGE_ROOT, 'wasm', 'policy.wasm');

export interface ResolvedUpstream extends Omit<UpstreamConfig, 'auth' | 'tls'> {
  /** Credentials presented upstream (secrets read); serialises without its secrets. */
  readonly auth?: UpstreamCredentials | undefined;
  /** TLS towards the upstream (files read); serialises without the private key. */
  readonly tls?: UpstreamTls | undefined;
  /** Gateway path prefix, "" for "/". */
  readonly mountPrefix: string;
  /** Scheme://host:port of the backend. */
  readonly origin: string;
  /** Path prefix on the backend ("" or "/prometheus"). */
  readonly pathPrefix: string;
}

export interface GatewayConfig extends Omit<ParsedConfig, 'upstreams'> {
  readonly file: string | undefined;
  readonly upstreams: readonly ResolvedUpstream[];
  /** Absolute path of the compiled policy. */
  readonly policyWasm: string;
  /** `data.lbac` for the default policy, built from teams/admins/janus. */
  readonly policyData: PolicyData;
}

/**
 * Environment overrides (documented in docs/configuration.md). They apply after
 * the file is read and before validation, so they are validated like the file.
 */
export const ENV_OVERRIDES: readonly { env: string; path: readonly string[]; type: 'string' | 'number' }[] = [
  { env: 'LBAC_LISTEN', path: ['server', 'listen'], type: 'string' },
  { env: 'LBAC_LOG_LEVEL', path: ['server', 'logLevel'], type: 'string' },
  { env: 'LBAC_POLICY_WASM', path: ['policy', 'wasm'], type: 'string' },
  { env: 'LBAC_POLICY_BUNDLE_URL', path: ['policy', 'bundle', 'url'], type: 'string' },
];

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** `${VAR}` and `${VAR:-default}` in string scalars; an unset variable without default is an error. */
function interpolate(doc: Document, env: NodeJS.ProcessEnv, where: (n: Node) => { line?: number }, file: string | undefined): void {
  const visit = (node: unknown, keyPath: string[]): void => {
    if (isMap(node)) for (const pair of node.items) visit(pair.value, [...keyPath, String(isScalar(pair.key) ? pair.key.value : pair.key)]);
    else if (isSeq(node)) node.items.forEach((item, i) => visit(item, [...keyPath, String(i)]));
    else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
      node.value = node.value.replace(ENV_REF, (_m, name: string, def: string | undefined) => {
        const v = env[name];
        if (v !== undefined) return v;
        if (def !== undefined) return def;
        throw new ConfigError(`environment variable ${name} is not set`, { file, ...where(node), key: keyPath.join('.') });
      });
    }
  };
  visit(doc.contents, []);
}

function setPath(obj: Record<string, unknown>, keys: readonly string[], value: unknown): void {
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    const next = cur[k];
    if (typeof next !== 'object' || next === null) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

/** Where resolveUpstream reads secrets and reports problems. */
interface UpstreamContext {
  readonly env: NodeJS.ProcessEnv;
  readonly file: string | undefined;
  readonly resolvePath: (p: string) => string;
  readonly locate: (keyPath: readonly PropertyKey[]) => { line?: number };
}

function resolveUpstream(u: UpstreamConfig, index: number, ctx: UpstreamContext): ResolvedUpstream {
  const url = new URL(u.url);
  const pathPrefix = url.pathname.replace(/\/+$/, '');
  const mount = u.mount ?? `/${u.name}`;
  const { auth, tls, ...rest } = u;
  // Secret and certificate files: relative to the config file, read now (never logged: see backends/credentials.ts).
  const readFile = (p: string) => readFileSync(ctx.resolvePath(p), 'utf8');
  try {
    return {
      ...rest,
      mount,
      mountPrefix: mount === '/' ? '' : mount,
      origin: url.origin,
      pathPrefix,
      ...(auth === undefined ? {} : { auth: resolveAuth(auth, { readFile, env: ctx.env }) }),
      ...(tls === undefined ? {} : { tls: resolveTls(tls, readFile) }),
    };
  } catch (e) {
    if (!(e instanceof CredentialsError)) throw e;
    const keyPath = ['upstreams', index, ...e.key.split('.')];
    throw new ConfigError(e.message, { file: ctx.file, ...ctx.locate(keyPath), key: keyPath.join('.') }, { cause: e });
  }
}

export interface LoadOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Name used in error messages (defaults to the path). */
  readonly file?: string;
  /** Directory relative paths resolve against. */
  readonly baseDir?: string;
}

/**
 * A YAML error's or warning's first line without what follows its colon (the
 * tag or text as written: a password `!Pa55w0rd`, `!a!Pa55w0rd`), with a hint
 * where it is about a tag.
 */
function yamlProblem(message: string): string {
  const hint = /tag/i.test(message) ? ' (an unquoted value starting with "!" is a YAML tag: quote it, e.g. "!prod")' : '';
  return `${message.split('\n')[0]!.replace(/:\s.*$/, '')}${hint}`;
}

/** Parse, interpolate, override, validate and resolve a YAML config text. */
export function parseConfig(text: string, opts: LoadOptions = {}): GatewayConfig {
  const env = opts.env ?? process.env;
  const file = opts.file;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const lineOf = (n: Node | null | undefined): { line?: number } => (n?.range ? { line: lineCounter.linePos(n.range[0]).line } : {});
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new ConfigError(`YAML syntax: ${yamlProblem(e.message)}`, { file, line: lineCounter.linePos(e.pos[0]).line });
  }
  // A warning is YAML read otherwise than written; the one that matters is an unquoted `!value`, a tag:
  // `env: !prod` would load as env: "" (a selector on series without the label), `!prod x` as "x".
  if (doc.warnings.length > 0) {
    const w = doc.warnings[0]!;
    throw new ConfigError(`YAML: ${yamlProblem(w.message)}`, { file, line: lineCounter.linePos(w.pos[0]).line });
  }
  // JavaScript objects cannot hold a `__proto__` key as data: a team or label of that name would vanish
  // on the way (a selector without one of its matchers is wider). Refused where it is written.
  visit(doc, {
    Pair(_key, pair) {
      if (isScalar(pair.key) && pair.key.value === '__proto__') throw new ConfigError('the key "__proto__" is not allowed', { file, ...lineOf(pair.key) });
    },
  });
  interpolate(doc, env, lineOf, file);
  let raw: Record<string, unknown>;
  try {
    raw = (doc.toJS() ?? {}) as Record<string, unknown>;
  } catch {
    // An alias naming no anchor: toJS's error names it, and it is the value as written (a password
    // `*Pa55w0rd`). Reported at its line, without it (nor the error as a cause).
    let line: { line?: number } = {};
    visit(doc, {
      Alias(_key, node) {
        if (node.resolve(doc) !== undefined) return undefined;
        line = lineOf(node);
        return visit.BREAK;
      },
    });
    throw new ConfigError('YAML: unresolved alias (an unquoted value starting with "*" is a YAML alias: quote it, e.g. "*prod")', { file, ...line });
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('the config must be a YAML mapping', { file });
  const applied: (typeof ENV_OVERRIDES)[number][] = [];
  for (const o of ENV_OVERRIDES) {
    const v = env[o.env];
    if (v === undefined || v === '') continue;
    setPath(raw, o.path, o.type === 'number' ? Number(v) : v);
    applied.push(o);
  }
  // A problem in a value an environment variable set is reported as that variable's, not at the
  // line of the file's (overridden) value.
  const overrideAt = (keyPath: readonly PropertyKey[]) => applied.find((o) => o.path.every((k, i) => keyPath[i] === k));

  // Point errors at the deepest YAML node that exists for the path.
  const locate = (keyPath: readonly PropertyKey[]): { line?: number } => {
    for (let i = keyPath.length; i >= 0; i--) {
      const node = doc.getIn(keyPath.slice(0, i) as (string | number)[], true) as Node | undefined;
      if (node && typeof node === 'object' && 'range' in node) return lineOf(node);
      // Keys of a map: find the pair's key node for better lines on unknown keys.
    }
    return {};
  };

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    let keyPath = issue.path;
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0]!;
      keyPath = [...issue.path, key];
      message = `unknown key "${key}"`;
      // Locate the key itself (its value may be absent or a scalar on the same line).
      const parent = doc.getIn(issue.path as (string | number)[], true);
      if (isMap(parent)) {
        const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === key);
        if (pair && isScalar(pair.key)) throw new ConfigError(message, { file, ...lineOf(pair.key), key: keyPath.join('.') });
      }
    }
    const more = result.error.issues.length > 1 ? ` (and ${result.error.issues.length - 1} more problem(s))` : '';
    const override = overrideAt(keyPath);
    if (override !== undefined) throw new ConfigError(`${message} (set by the environment variable ${override.env})${more}`, { key: keyPath.join('.') });
    // A problem of a section an override set a key in (policy.wasm and policy.bundle together): name it too.
    const within = applied.filter((o) => keyPath.every((k, i) => o.path[i] === k));
    const also = within.length === 0 ? '' : ` (with ${within.map((o) => `${o.env} setting ${o.path.join('.')}`).join(', ')})`;
    throw new ConfigError(message + also + more, { file, ...locate(keyPath), key: keyPath.join('.') || '(root)' });
  }
  const parsed = result.data;
  const baseDir = opts.baseDir ?? process.cwd();
  const resolvePath = (p: string) => (path.isAbsolute(p) ? p : path.resolve(baseDir, p));

  let policyData: PolicyData;
  try {
    policyData = buildPolicyData(parsed);
  } catch (e) {
    if (e instanceof TeamsError) throw new ConfigError(e.message, { file, ...locate(e.path), key: e.path.join('.') });
    throw e;
  }
  const identity = {
    providers: parsed.identity.providers.map((p) => {
      if (p.type === 'jwt' && p.jwksFile !== undefined) return { ...p, jwksFile: resolvePath(p.jwksFile) };
      if (p.type === 'introspection' && p.clientSecretFile !== undefined) return { ...p, clientSecretFile: resolvePath(p.clientSecretFile) };
      return p;
    }),
  };
  const bundle = parsed.policy.bundle;
  const policy =
    bundle === undefined
      ? parsed.policy
      : {
          ...parsed.policy,
          bundle: {
            ...bundle,
            auth: bundle.auth.tokenFile === undefined ? bundle.auth : { ...bundle.auth, tokenFile: resolvePath(bundle.auth.tokenFile) },
            ...(bundle.persistDir === undefined ? {} : { persistDir: resolvePath(bundle.persistDir) }),
            ...(bundle.tls === undefined
              ? {}
              : {
                  tls: {
                    ...(bundle.tls.ca === undefined ? {} : { ca: resolvePath(bundle.tls.ca) }),
                    ...(bundle.tls.cert === undefined ? {} : { cert: resolvePath(bundle.tls.cert) }),
                    ...(bundle.tls.key === undefined ? {} : { key: resolvePath(bundle.tls.key) }),
                  },
                }),
            ...(bundle.signing === undefined
              ? {}
              : { signing: { ...bundle.signing, keys: bundle.signing.keys.map((k) => (k.publicKeyFile === undefined ? k : { ...k, publicKeyFile: resolvePath(k.publicKeyFile) })) } }),
          },
        };
  const tls = parsed.server.tls;
  const server =
    tls === undefined
      ? parsed.server
      : { ...parsed.server, tls: { ...tls, cert: resolvePath(tls.cert), key: resolvePath(tls.key), ...(tls.clientCA === undefined ? {} : { clientCA: resolvePath(tls.clientCA) }) } };
  return {
    ...parsed,
    server,
    file,
    identity,
    policy,
    audit: parsed.audit.file === undefined ? parsed.audit : { ...parsed.audit, file: resolvePath(parsed.audit.file) },
    upstreams: parsed.upstreams.map((u, i) => resolveUpstream(u, i, { env, file, resolvePath, locate })),
    policyWasm: parsed.policy.wasm === undefined ? DEFAULT_POLICY_WASM : resolvePath(parsed.policy.wasm),
    policyData,
  };
}

export async function loadConfigFile(file: string, opts: Omit<LoadOptions, 'file' | 'baseDir'> = {}): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    // The failed read is kept as the cause: its errno code tells a reload whether to retry (server/reload-retry.ts).
    throw new ConfigError(`cannot read config: ${fileErrorCode(e)}`, { file }, { cause: e });
  }
  return parseConfig(text, { ...opts, file, baseDir: path.dirname(path.resolve(file)) });
}
