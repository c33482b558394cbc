import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Paths of the pinned chart-check tools (scripts/versions.env, installed by scripts/tools.sh). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function pinnedVersions(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path.join(ROOT, 'scripts', 'versions.env'), 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(\S+)/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

export interface DeployTools {
  readonly helm: string;
  readonly kubeconform: string;
  /** Directory holding v<K8S>-local-strict/ and crds/. */
  readonly schemas: string;
  readonly kubernetesVersion: string;
}

/** The tools, or an error naming the make target that installs them (the chart checks fail, never skip). */
export function deployTools(): DeployTools {
  const v = pinnedVersions();
  const dir = process.env['LBAC_TOOLS_DIR'] ?? path.join(os.homedir(), '.cache', 'lbac-gateway', 'tools');
  const tools: DeployTools = {
    helm: path.join(dir, `helm-${v['HELM_VERSION']}`, 'helm'),
    kubeconform: path.join(dir, `kubeconform-${v['KUBECONFORM_VERSION']}`, 'kubeconform'),
    schemas: path.join(dir, `k8s-schemas-${v['KUBERNETES_SCHEMA_VERSION']}`),
    kubernetesVersion: v['KUBERNETES_SCHEMA_VERSION']!,
  };
  const missing = [tools.helm, tools.kubeconform, path.join(tools.schemas, '.complete')].filter((p) => !existsSync(p));
  if (missing.length > 0) {
    throw new Error(`chart-check tools missing (${missing.join(', ')}): run "make deploy-tools" (or "make tools")`);
  }
  return tools;
}
