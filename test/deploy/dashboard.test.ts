import { readFileSync } from 'node:fs';
import path from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ROOT } from './tools.ts';

// deploy/grafana/lbac-gateway-dashboard.json queries only metrics that
// docs/operations.md documents (the table between <!-- metrics --> markers),
// or that prom-client's default metrics really export under the documented
// lbac_gateway_process_* / lbac_gateway_nodejs_* prefixes.

const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'deploy', 'grafana', 'lbac-gateway-dashboard.json'), 'utf8')) as Record<string, unknown>;
const operations = readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8');

/** Every PromQL expression in the dashboard: panel targets, template-variable queries, annotations. */
function expressions(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const x of node) expressions(x, out);
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if ((k === 'expr' || k === 'definition') && typeof v === 'string') out.push(v);
      else if (k === 'query' && typeof v === 'string' && v.includes('(')) out.push(v);
      else expressions(v, out);
    }
  }
  return out;
}

function documentedMetrics(): Set<string> {
  const m = /<!-- metrics -->([\s\S]*?)<!-- \/metrics -->/.exec(operations);
  if (!m) throw new Error('docs/operations.md has no <!-- metrics --> table');
  return new Set([...m[1]!.matchAll(/^\|\s*`(lbac_gateway_[a-z0-9_]+)`/gm)].map((x) => x[1]!));
}

function defaultProcessMetrics(): Set<string> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'lbac_gateway_' });
  return new Set(registry.getMetricsAsArray().map((x) => x.name));
}

/** A series name as queried → the metric it belongs to (histogram/summary series suffixes stripped). */
function baseName(series: string, known: Set<string>): string {
  if (known.has(series)) return series;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (series.endsWith(suffix) && known.has(series.slice(0, -suffix.length))) return series.slice(0, -suffix.length);
  }
  return series;
}

describe('Grafana dashboard deploy/grafana/lbac-gateway-dashboard.json', () => {
  const exprs = expressions(dashboard);
  const queried = new Set(exprs.flatMap((e) => [...e.matchAll(/\blbac_gateway_[a-z0-9_]+/g)].map((x) => x[0])));

  it('has queries', () => {
    expect(exprs.length).toBeGreaterThan(20);
    expect(queried.size).toBeGreaterThan(15);
  });

  it('queries only documented metrics (docs/operations.md) or real prom-client process metrics', () => {
    const documented = documentedMetrics();
    const processMetrics = defaultProcessMetrics();
    expect(operations).toContain('`lbac_gateway_process_*`');
    expect(operations).toContain('`lbac_gateway_nodejs_*`');
    const known = new Set([...documented, ...processMetrics]);
    const unknown = [...queried].map((s) => baseName(s, known)).filter((n) => !known.has(n));
    expect(unknown).toEqual([]);
  });

  it('uses the gateway metric families an operator needs', () => {
    const used = new Set([...queried].map((s) => baseName(s, documentedMetrics())));
    for (const m of [
      'lbac_gateway_requests_total',
      'lbac_gateway_request_duration_seconds',
      'lbac_gateway_stage_duration_seconds',
      'lbac_gateway_rewrite_rejections_total',
      'lbac_gateway_identity_provider_errors_total',
      'lbac_gateway_shed_requests_total',
      'lbac_gateway_policy_ready',
      'lbac_gateway_policy_info',
      'lbac_gateway_bundle_consecutive_failures',
      'lbac_gateway_config_reloads_total',
      'lbac_gateway_cache_lookups',
    ]) expect(used.has(m), m).toBe(true);
  });

  it('is an importable dashboard: a datasource variable, unique panel ids, every query bound to it', () => {
    const templating = (dashboard['templating'] as { list: { name: string; type: string }[] }).list;
    expect(templating.find((v) => v.name === 'datasource')?.type).toBe('datasource');
    const panels = dashboard['panels'] as { id: number; type: string; datasource?: { uid: string }; targets?: unknown[] }[];
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels.filter((x) => x.type !== 'row')) {
      expect(p.datasource?.uid, `panel ${p.id}`).toBe('${datasource}');
      expect(p.targets?.length, `panel ${p.id}`).toBeGreaterThan(0);
    }
    expect(dashboard['uid']).toBe('lbac-gateway');
  });
});
