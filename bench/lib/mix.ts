// The benchmark request mix shared by bench/gateway.ts (throughput, autocannon)
// and bench/latency.ts (added latency, open loop): what a Grafana dashboard
// sends, for two tenants.
import { rewritePromQL } from '../../src/rewrite/promql.ts';

export const TENANTS = ['team-a-frontend', 'team-b-api'] as const;

/** One request of the mix; structurally an autocannon request as well. */
export interface BenchRequest {
  method: 'GET' | 'POST';
  /** Path and query string. */
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/** How a target learns the tenant: a query parameter (prom-label-proxy) and/or headers (a bearer token). */
export type TenantAuth = (tenant: string) => { path: string; headers: Record<string, string> };

/** Grafana-like mix: per tenant four dashboard query_range POSTs, a label-values dropdown, a series lookup. */
export function requestMix(
  evalTime: number,
  tenantAuth: TenantAuth,
  /** For targets that enforce nothing, send the already-enforced queries so the backend does the same work. */
  preEnforce = false,
): BenchRequest[] {
  const range = `start=${evalTime - 3600}&end=${evalTime}&step=60`;
  const queries = [
    'sum by (namespace) (rate(http_requests_total[5m]))',
    'histogram_quantile(0.99, sum by (le, namespace) (rate(http_request_duration_seconds_bucket[5m])))',
    'sum by (code) (rate(http_requests_total{code=~"5.."}[5m])) / ignoring(code) group_left sum(rate(http_requests_total[5m]))',
    'avg by (instance) (node_memory_bytes)',
  ];
  const out: BenchRequest[] = [];
  for (const tenant of TENANTS) {
    const t = tenantAuth(tenant);
    const withParam = (p: string) => (t.path === '' ? p : `${p}${p.includes('?') ? '&' : '?'}${t.path}`);
    const policy = [[{ name: 'namespace', op: '=' as const, value: tenant }]];
    const enforce = (q: string) => (preEnforce ? rewritePromQL(q, policy) : q);
    const match = preEnforce ? `{__name__="up",namespace="${tenant}"}` : 'up';
    const valuesMatch = preEnforce ? `&match[]=${encodeURIComponent(`{namespace="${tenant}"}`)}` : '';
    for (const q of queries) {
      out.push({
        method: 'POST',
        path: withParam('/api/v1/query_range'),
        headers: { ...t.headers, 'content-type': 'application/x-www-form-urlencoded' },
        body: `query=${encodeURIComponent(enforce(q))}&${range}`,
      });
    }
    out.push({ method: 'GET', path: withParam(`/api/v1/label/namespace/values?start=${evalTime - 3600}&end=${evalTime}${valuesMatch}`), headers: t.headers });
    out.push({ method: 'GET', path: withParam(`/api/v1/series?match[]=${encodeURIComponent(match)}&start=${evalTime - 3600}&end=${evalTime}`), headers: t.headers });
  }
  return out;
}

/** The CPU benchmarks' one request (bench/cpu.ts, bench/ab.ts): a dashboard `query_range` POST, already enforced, so every target forwards the same text. */
export const CPU_BENCH_QUERY = 'sum by (pod) (rate(http_requests_total{namespace="team-a",code=~"5.."}[5m]))';

export function cpuBenchRequest(token: string): BenchRequest & { method: 'POST' } {
  return {
    method: 'POST',
    path: '/api/v1/query_range',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ query: CPU_BENCH_QUERY, start: '1700000000', end: '1700003600', step: '15' }).toString(),
  };
}
