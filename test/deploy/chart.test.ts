import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import { configWarnings } from '../../src/config/warnings.ts';
import { crdToJsonSchemas } from './crd-schema.ts';
import { deployTools, ROOT, type DeployTools } from './tools.ts';

// The Helm chart's checks (make deploy-check; part of make test): helm lint,
// helm template with the default values and with every option on, the output
// validated by kubeconform -strict against Kubernetes' JSON schemas (offline,
// from the tools cache), plus what kubeconform cannot know: the rendered
// gateway config passes the gateway's own config schema, probes and security
// settings are as documented.

const CHART = path.join(ROOT, 'deploy', 'helm', 'lbac-gateway');
const ALL_VALUES = path.join(CHART, 'ci', 'all-enabled-values.yaml');

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; annotations?: Record<string, string> }; [k: string]: unknown };

let tools: DeployTools;
let crdDir: string;

function run(cmd: string, args: string[], input?: string): { status: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function helm(...args: string[]): string {
  const r = run(tools.helm, args);
  if (r.status !== 0) throw new Error(`helm ${args.join(' ')} failed:\n${r.out}`);
  return r.out;
}

function template(...extra: string[]): string {
  return helm('template', 'gw', CHART, '--namespace', 'observability', ...extra);
}

function manifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

function kubeconform(text: string): { status: number; out: string } {
  const k8s = path.join(tools.schemas, '{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}', '{{ .ResourceKind }}{{ .KindSuffix }}.json');
  const crds = path.join(crdDir, '{{ .ResourceKind }}{{ .KindSuffix }}.json');
  return run(tools.kubeconform, ['-strict', '-summary', '-kubernetes-version', tools.kubernetesVersion, '-schema-location', k8s, '-schema-location', crds, '-'], text);
}

function expectValid(text: string, count: number): void {
  const r = kubeconform(text);
  expect(r.out).toContain(`Valid: ${count}, Invalid: 0, Errors: 0, Skipped: 0`);
  expect(r.status).toBe(0);
}

function byKind(ms: Manifest[], kind: string, name?: string): Manifest {
  const m = ms.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  if (!m) throw new Error(`no ${kind} ${name ?? ''} in the rendered chart`);
  return m;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

beforeAll(() => {
  tools = deployTools();
  crdDir = mkdtempSync(path.join(os.tmpdir(), 'lbac-crd-schemas-'));
  const crd = readFileSync(path.join(tools.schemas, 'crds', 'monitoring.coreos.com_servicemonitors.yaml'), 'utf8');
  for (const [file, schema] of crdToJsonSchemas(crd)) writeFileSync(path.join(crdDir, file), JSON.stringify(schema));
});

afterAll(() => {
  if (crdDir) rmSync(crdDir, { recursive: true, force: true });
});

describe('helm chart deploy/helm/lbac-gateway', () => {
  it('passes helm lint --strict with the default and the all-enabled values', () => {
    expect(helm('lint', '--strict', CHART)).toContain('0 chart(s) failed');
    expect(helm('lint', '--strict', CHART, '-f', ALL_VALUES)).toContain('0 chart(s) failed');
  });

  it('renders valid objects with the default values (kubeconform -strict)', () => {
    const text = template();
    const kinds = manifests(text).map((m) => m.kind).sort();
    expect(kinds).toEqual(['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Service', 'Service', 'ServiceAccount']);
    expectValid(text, kinds.length);
  });

  it('renders valid objects with every option on (kubeconform -strict, ServiceMonitor against its CRD)', () => {
    const text = template('-f', ALL_VALUES);
    const kinds = manifests(text).map((m) => m.kind).sort();
    expect(kinds).toEqual([
      'ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'NetworkPolicy', 'PodDisruptionBudget',
      'Secret', 'Service', 'Service', 'ServiceAccount', 'ServiceMonitor',
    ]);
    expectValid(text, kinds.length);
  });

  it('kubeconform -strict really rejects unknown fields and wrong types (the check is not vacuous)', () => {
    const ms = manifests(template('-f', ALL_VALUES));
    const dep = structuredClone(byKind(ms, 'Deployment')) as Any;
    dep.spec.template.spec.containers[0].securityContext.readOnlyRootFS = true; // typo of readOnlyRootFilesystem
    let r = kubeconform(JSON.stringify(dep));
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/readOnlyRootFS/);

    const svc = structuredClone(byKind(ms, 'Service')) as Any;
    svc.spec.ports[0].port = 'eighty';
    r = kubeconform(JSON.stringify(svc));
    expect(r.status).not.toBe(0);

    const sm = structuredClone(byKind(ms, 'ServiceMonitor')) as Any;
    sm.spec.endpoints[0].scrapeIntervall = '10s';
    r = kubeconform(JSON.stringify(sm));
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/scrapeIntervall/);
  });

  it('renders a gateway config the gateway accepts, for both value sets', () => {
    for (const extra of [[], ['-f', ALL_VALUES]]) {
      const cm = byKind(manifests(template(...extra)), 'ConfigMap') as Any;
      const text = cm.data['gateway.yaml'] as string;
      const cfg = parseConfig(text, { env: { UPSTREAM_TOKEN: 'x' }, file: 'gateway.yaml', baseDir: '/etc/lbac-gateway/config' });
      expect(cfg.server.listen).toBe('0.0.0.0:8080');
      expect(cfg.server.adminListen).toBe('0.0.0.0:9091');
      // What the chart documents as a complete setup draws no warning (e.g. two issuers without prefixes).
      expect(configWarnings(cfg).filter((w) => !/listen|0\.0\.0\.0|loopback/i.test(w)), extra.join(' ')).toEqual([]);
    }
  });

  it('wires bundle settings to the mounted Secret files and the persist volume', () => {
    const ms = manifests(template('-f', ALL_VALUES));
    const cfg = parseConfig((byKind(ms, 'ConfigMap') as Any).data['gateway.yaml'], { env: { UPSTREAM_TOKEN: 'x' } });
    const b = cfg.policy.bundle!;
    expect(b.url).toBe('https://bundles.example.com');
    expect(b.auth).toMatchObject({ type: 'bearer', tokenFile: '/etc/lbac-gateway/secrets/bundle-token' });
    expect(b.signing?.keys[0]).toMatchObject({ keyid: 'lbac', algorithm: 'ES256', publicKeyFile: '/etc/lbac-gateway/secrets/bundle-signing.pem' });
    expect(b.persistDir).toBe('/var/lib/lbac-gateway/bundle');
    const pod = (byKind(ms, 'Deployment') as Any).spec.template.spec;
    const mounts = pod.containers[0].volumeMounts.map((m: Any) => m.mountPath);
    expect(mounts).toEqual(expect.arrayContaining(['/etc/lbac-gateway/config', '/etc/lbac-gateway/secrets', '/var/lib/lbac-gateway/bundle', '/tmp']));
    expect(pod.volumes.find((v: Any) => v.name === 'secrets').secret.secretName).toBe('gw-lbac-gateway');
    expect(pod.containers[0].env).toContainEqual({ name: 'UPSTREAM_TOKEN', valueFrom: { secretKeyRef: { name: 'gw-lbac-gateway', key: 'upstream-token' } } });
  });

  it('runs hardened: non-root, read-only root fs, no capabilities, RuntimeDefault seccomp, probes on /healthz and /readyz', () => {
    const pod = (byKind(manifests(template()), 'Deployment') as Any).spec.template.spec;
    const c = pod.containers[0];
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } });
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(c.resources.requests).toBeDefined();
    expect(c.resources.limits.memory).toBeDefined();
    expect(c.args).toEqual(['serve', '--config', '/etc/lbac-gateway/config/gateway.yaml']);
    expect(c.env).toContainEqual({ name: 'LBAC_LISTEN', value: '0.0.0.0:8080' });
    expect(pod.automountServiceAccountToken).toBe(false);
    // SIGTERM handling fits in the grace period: shutdownDelayMs + shutdownTimeoutMs < terminationGracePeriodSeconds.
    const cm = byKind(manifests(template()), 'ConfigMap') as Any;
    const cfg = parseConfig(cm.data['gateway.yaml'], { env: {} });
    expect(cfg.server.shutdownDelayMs + cfg.server.shutdownTimeoutMs).toBeLessThan(pod.terminationGracePeriodSeconds * 1000);
    expect(byKind(manifests(template()), 'Deployment').spec).toMatchObject({ replicas: 2 });
  });

  it('with several workers, readiness is probed on the admin port (the primary checks every worker); with one, on the main port', () => {
    const probe = (...extra: string[]) => (byKind(manifests(template(...extra)), 'Deployment') as Any).spec.template.spec.containers[0].readinessProbe.httpGet;
    expect(probe()).toEqual({ path: '/readyz', port: 'http' });
    expect(probe('--set', 'config.server.workers=2')).toEqual({ path: '/readyz', port: 'admin' });
    expect(probe('--set', 'config.server.workers=auto')).toEqual({ path: '/readyz', port: 'admin' });
    // No admin listener: the main port is all there is.
    expect(probe('--set', 'config.server.workers=2', '--set', 'metrics.enabled=false')).toEqual({ path: '/readyz', port: 'http' });
  });

  it('keeps /metrics off the main Service; the ServiceMonitor scrapes the admin Service only', () => {
    const ms = manifests(template('-f', ALL_VALUES));
    const main = byKind(ms, 'Service', 'gw-lbac-gateway') as Any;
    expect(main.spec.ports.map((p: Any) => p.targetPort)).toEqual(['http']);
    const admin = byKind(ms, 'Service', 'gw-lbac-gateway-metrics') as Any;
    expect(admin.spec.ports.map((p: Any) => p.targetPort)).toEqual(['admin']);
    const sm = byKind(ms, 'ServiceMonitor') as Any;
    expect(sm.spec.endpoints[0]).toMatchObject({ port: 'admin', path: '/metrics' });
    expect(sm.spec.selector.matchLabels['app.kubernetes.io/component']).toBe('metrics');
    expect(admin.metadata.labels['app.kubernetes.io/component']).toBe('metrics');
    expect(main.metadata.labels['app.kubernetes.io/component']).toBeUndefined();
  });

  it('lets the HPA own the replica count, and rolls pods on config changes only when asked', () => {
    const withHpa = manifests(template('-f', ALL_VALUES));
    expect((byKind(withHpa, 'Deployment') as Any).spec.replicas).toBeUndefined();
    expect((byKind(withHpa, 'HorizontalPodAutoscaler') as Any).spec.scaleTargetRef.name).toBe('gw-lbac-gateway');
    expect((byKind(withHpa, 'Deployment') as Any).spec.template.metadata.annotations['checksum/config']).toBeUndefined();
    const a = (byKind(manifests(template()), 'Deployment') as Any).spec.template.metadata.annotations['checksum/config'];
    const b = (byKind(manifests(template('--set', 'config.server.logLevel=debug')), 'Deployment') as Any).spec.template.metadata.annotations['checksum/config'];
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(b).not.toBe(a);
  });

  it('refuses inconsistent values with a clear message', () => {
    const cases: [string[], RegExp][] = [
      [['--set', 'bundle.enabled=true'], /bundle.enabled needs bundle.url/],
      [['--set', 'bundle.enabled=true', '--set', 'bundle.url=https://b', '--set', 'bundle.tokenSecretKey=t'], /needs secret.create or secret.existingSecret/],
      [['--set', 'metrics.enabled=false', '--set', 'metrics.serviceMonitor.enabled=true'], /needs metrics.enabled/],
    ];
    for (const [args, message] of cases) {
      const r = run(tools.helm, ['template', 'gw', CHART, ...args]);
      expect(r.status).not.toBe(0);
      expect(r.out).toMatch(message);
    }
  });

  it('keeps an explicit podDisruptionBudget.maxUnavailable of 0 (no voluntary evictions); unset, 1', () => {
    const pdbSpec = (...extra: string[]) => (byKind(manifests(template('--set', 'podDisruptionBudget.enabled=true', ...extra)), 'PodDisruptionBudget') as Any).spec;
    // Sprig's `default 1` would take the 0 for unset and render 1.
    const none = pdbSpec('--set', 'podDisruptionBudget.maxUnavailable=0');
    expect(none.maxUnavailable).toBe(0);
    expect(none.minAvailable).toBeUndefined();
    expect(pdbSpec().maxUnavailable).toBe(1);
    expect(pdbSpec('--set', 'podDisruptionBudget.maxUnavailable=null').maxUnavailable).toBe(1);
    expect(pdbSpec('--set', 'podDisruptionBudget.maxUnavailable=2').maxUnavailable).toBe(2);
  });

  it('uses an existing Secret instead of creating one', () => {
    const ms = manifests(template('--set', 'secret.existingSecret=gw-keys', '--set', 'secret.create=true'));
    expect(ms.some((m) => m.kind === 'Secret')).toBe(false);
    const pod = (byKind(ms, 'Deployment') as Any).spec.template.spec;
    expect(pod.volumes.find((v: Any) => v.name === 'secrets').secret.secretName).toBe('gw-keys');
  });

  it('deploys the package version by default', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const dep = byKind(manifests(template()), 'Deployment') as Any;
    expect(dep.spec.template.spec.containers[0].image).toBe(`lbac-gateway:${pkg.version}`);
  });
});
