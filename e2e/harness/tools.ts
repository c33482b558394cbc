// Resolves the pinned real tools (Prometheus, promtool, OPA, Loki, Tempo,
// prom-label-proxy, Node 24) that scripts/tools.sh installs into the tools cache:
//   ${LBAC_TOOLS_DIR:-~/.cache/lbac-gateway/tools}/<name>-<version>/
// Versions come from scripts/versions.env, never hard-coded here. A missing tool
// is an error naming the make target that installs it: e2e tests never skip.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type ToolName = 'prometheus' | 'promtool' | 'opa' | 'prom-label-proxy' | 'node';

/** Absolute path of the repository checkout this harness lives in. */
export const repoRoot: string = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface ToolSpec {
  /** variable in scripts/versions.env */
  versionVar: string;
  /** directory name prefix in the tools cache */
  dirPrefix: string;
  /** binary path inside <prefix>-<version>/ */
  binary: string;
  /** argument of scripts/tools.sh that installs it */
  installer: string;
}

const TOOLS: Readonly<Record<ToolName, ToolSpec>> = {
  prometheus: { versionVar: 'PROMETHEUS_VERSION', dirPrefix: 'prometheus', binary: 'prometheus', installer: 'prometheus' },
  promtool: { versionVar: 'PROMETHEUS_VERSION', dirPrefix: 'prometheus', binary: 'promtool', installer: 'prometheus' },
  opa: { versionVar: 'OPA_VERSION', dirPrefix: 'opa', binary: 'opa', installer: 'opa' },
  'prom-label-proxy': {
    versionVar: 'PROM_LABEL_PROXY_VERSION',
    dirPrefix: 'prom-label-proxy',
    binary: 'prom-label-proxy',
    installer: 'prom-label-proxy',
  },
  node: { versionVar: 'NODE_VERSION', dirPrefix: 'node', binary: join('bin', 'node'), installer: 'node' },
};

/** The tools cache root: $LBAC_TOOLS_DIR or ~/.cache/lbac-gateway/tools. */
export function toolsDir(): string {
  const fromEnv = process.env['LBAC_TOOLS_DIR'];
  return fromEnv !== undefined && fromEnv !== '' ? resolve(fromEnv) : join(homedir(), '.cache', 'lbac-gateway', 'tools');
}

let versionsCache: Record<string, string> | undefined;

/** KEY=VALUE pairs of scripts/versions.env (comments and blank lines ignored). */
export function pinnedVersions(): Readonly<Record<string, string>> {
  if (versionsCache !== undefined) return versionsCache;
  const file = join(repoRoot, 'scripts', 'versions.env');
  const out: Record<string, string> = {};
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m === null) continue;
    const key = m[1] as string;
    let value = (m[2] as string).trim();
    if ((value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'"))) {
      value = value.slice(1, -1);
    }
    out[key] = value;
  }
  versionsCache = out;
  return out;
}

/** The pinned version of a tool, e.g. toolVersion('prometheus') === 'v0.316.0'. */
export function toolVersion(name: ToolName): string {
  const spec = TOOLS[name];
  const version = pinnedVersions()[spec.versionVar];
  if (version === undefined || version === '') {
    throw new Error(`${spec.versionVar} is not set in ${join(repoRoot, 'scripts', 'versions.env')}`);
  }
  return version;
}

/** The directory <toolsDir>/<name>-<version>/ a tool is (or would be) installed in. */
export function toolDir(name: ToolName): string {
  return join(toolsDir(), `${TOOLS[name].dirPrefix}-${toolVersion(name)}`);
}

/** The Makefile target whose recipe runs `scripts/tools.sh … <installer>`, if any. */
function makeTargetFor(installer: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(join(repoRoot, 'Makefile'), 'utf8');
  } catch {
    return undefined;
  }
  let target: string | undefined;
  const word = new RegExp(`scripts/tools\\.sh\\b[^\\n#]*(?:\\s)${installer.replace(/[-]/g, '\\-')}(?:\\s|$)`);
  for (const line of text.split('\n')) {
    const t = /^([A-Za-z0-9_.-]+)\s*:(?!=)/.exec(line);
    if (t !== null) {
      target = t[1];
      continue;
    }
    if (line.startsWith('\t') && target !== undefined && word.test(`${line} `)) return target;
  }
  return undefined;
}

/** How to install a tool, for error messages: the make target if the Makefile has one, else the script. */
export function installHint(name: ToolName): string {
  const { installer } = TOOLS[name];
  const target = makeTargetFor(installer);
  return target !== undefined
    ? `run \`make ${target}\` (it runs \`scripts/tools.sh ${installer}\`)`
    : `run \`bash scripts/tools.sh ${installer}\` (no make target installs ${installer} yet; add it to \`make tools\`)`;
}

/**
 * Absolute path of a pinned tool's executable. Throws (never returns a
 * fallback) when the tool is not installed or its install is incomplete.
 */
export function toolPath(name: ToolName): string {
  const spec = TOOLS[name];
  const dir = toolDir(name);
  const bin = join(dir, spec.binary);
  const complete = existsSync(join(dir, '.complete'));
  let executable = false;
  try {
    accessSync(bin, constants.X_OK);
    executable = true;
  } catch {
    executable = false;
  }
  if (complete && executable) return bin;
  const why = !existsSync(dir)
    ? `${dir} does not exist`
    : !complete
      ? `${dir} has no .complete marker (install unfinished or still running)`
      : `${bin} is missing or not executable`;
  throw new Error(`${name} ${toolVersion(name)} is not installed: ${why}. To install it, ${installHint(name)}.`);
}

/** Whether toolPath(name) would succeed. */
export function hasTool(name: ToolName): boolean {
  try {
    toolPath(name);
    return true;
  } catch {
    return false;
  }
}
