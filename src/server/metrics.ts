/**
 * Prometheus metrics (prom-client), one registry per gateway (never the global
 * default registry, so tests can build several apps). Served only by the admin
 * listener (src/server/admin.ts), never on the main port. Every name starts
 * with `lbac_gateway_`; docs/operations.md lists them (a unit test checks).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { BoundHistogram } from './histogram.ts';
import { TalliedCounter } from './tally.ts';
import type { PolicyHolder } from '../policy/holder.ts';
import type { BundleClientStatus } from '../policy/bundle-client.ts';
import { REWRITE_CACHES } from '../rewrite/cache.ts';
import { VERSION } from '../version.ts';

export const METRIC_PREFIX = 'lbac_gateway_';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const STAGE_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface GatewayMetrics {
  readonly registry: Registry;
  readonly requests: TalliedCounter<'upstream' | 'endpoint' | 'status' | 'decision'>;
  readonly requestDuration: BoundHistogram<'upstream' | 'endpoint'>;
  readonly stageDuration: BoundHistogram<'stage'>;
  readonly rewriteRejections: Counter<'upstream' | 'code'>;
  readonly identityResults: TalliedCounter<'result' | 'auth'>;
  readonly identityProviderErrors: Counter;
  readonly shed: Counter<'reason'>;
  /**
   * Requests in flight per upstream name, kept by the limits plugin and copied
   * into `lbac_gateway_upstream_inflight_requests` when it is collected (no
   * prom-client call on the request path).
   */
  readonly inflight: Map<string, number>;
  readonly configReloads: Counter<'result'>;
  readonly configLastReload: Gauge<'result'>;
  readonly auditRecords: TalliedCounter<'result'>;
  /** Watch a policy holder: info gauge, readiness, activation count. */
  watchPolicy(holder: PolicyHolder): void;
  /** Report a bundle client's status (bundle mode). */
  watchBundle(status: () => BundleClientStatus): void;
  /** Report the identity sources' caches (read at scrape time, so a reload's new authenticator is seen). */
  watchIdentity(caches: () => Map<string, { hits: number; misses: number; size: number }>): void;
  /** Report the bytes of upstream answers held whole right now (server.maxBufferedAnswerBytes' budget). */
  watchAnswerBudget(used: () => number): void;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): GatewayMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  const registers = [registry];

  // Cache effectiveness: the rewrite caches (per language) and the active engine's decision cache.
  // Their own counters are read at scrape time; a new engine (policy swap) starts its counts anew.
  let cacheHolder: PolicyHolder | undefined;
  const cacheCounts = (): [string, { hits: number; misses: number; size?: number }][] => [
    ...[...REWRITE_CACHES].map(([lang, c]): [string, { hits: number; misses: number; size?: number }] => [`rewrite_${lang}`, c]),
    ...(cacheHolder?.engine !== undefined ? [['decision', cacheHolder.engine.decisionCache] as [string, { hits: number; misses: number }]] : []),
    ...(identityCaches?.() ?? []),
  ];
  const watchCaches = (h: PolicyHolder) => (cacheHolder = h);
  // The identity sources' caches of verified credentials (the current authenticator's: reloads swap it).
  let identityCaches: (() => Map<string, { hits: number; misses: number; size: number }>) | undefined;
  new Gauge({
    name: 'lbac_gateway_cache_lookups',
    help: 'Cache lookups since the cache was created, by cache (rewrite_<language>, decision, identity_<kind>) and result (hit, miss); hit ratio = hit / (hit + miss).',
    labelNames: ['cache', 'result'] as const,
    registers,
    collect() {
      this.reset();
      for (const [name, c] of cacheCounts()) {
        this.set({ cache: name, result: 'hit' }, c.hits);
        this.set({ cache: name, result: 'miss' }, c.misses);
      }
    },
  });
  new Gauge({
    name: 'lbac_gateway_cache_entries',
    help: 'Entries held, by cache (rewrite and identity caches).',
    labelNames: ['cache'] as const,
    registers,
    collect() {
      this.reset();
      for (const [name, c] of cacheCounts()) if (c.size !== undefined) this.set({ cache: name }, c.size);
    },
  });
  new Gauge({ name: 'lbac_gateway_build_info', help: 'Always 1; the gateway version as a label.', labelNames: ['version'], registers, aggregator: 'first' }).set({ version: VERSION }, 1);

  // Counted on every request: tallied, copied into prom-client's Counter when scraped (src/server/tally.ts).
  const requests = new TalliedCounter({
    name: 'lbac_gateway_requests_total',
    help: 'Requests answered, by upstream, route-table endpoint, HTTP status and policy decision (allow, unrestricted, deny, none).',
    labelNames: ['upstream', 'endpoint', 'status', 'decision'] as const,
    registers,
  });
  const requestDuration = new BoundHistogram({
    name: 'lbac_gateway_request_duration_seconds',
    help: 'Total time from request to response end, by upstream and endpoint.',
    labelNames: ['upstream', 'endpoint'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const stageDuration = new BoundHistogram({
    name: 'lbac_gateway_stage_duration_seconds',
    help: 'Time per request stage: identity, policy, rewrite, upstream (handing over to the backend until the response is sent).',
    labelNames: ['stage'] as const,
    buckets: STAGE_BUCKETS,
    registers,
  });
  const rewriteRejections = new Counter({
    name: 'lbac_gateway_rewrite_rejections_total',
    help: 'Requests refused while enforcing the policy on their query parameters, by error code.',
    labelNames: ['upstream', 'code'] as const,
    registers,
  });
  const identityResults = new TalliedCounter({
    name: 'lbac_gateway_identity_results_total',
    help: 'Authentication outcomes (accepted, rejected, unavailable), by identity source kind (auth).',
    labelNames: ['result', 'auth'] as const,
    registers,
  });
  const identityProviderErrors = new Counter({
    name: 'lbac_gateway_identity_provider_errors_total',
    help: 'Requests that could not be authenticated because an identity provider was unreachable or failed (503).',
    registers,
  });
  const shed = new Counter({
    name: 'lbac_gateway_shed_requests_total',
    help: 'Requests refused with 503 by load shedding (eventLoopDelay, heapUsedBytes, rssBytes, eventLoopUtilization) or a per-upstream concurrency limit (concurrency, subject_concurrency); connections: connections closed at server.maxConnections.',
    labelNames: ['reason'] as const,
    registers,
  });
  const inflight = new Map<string, number>();
  new Gauge({
    name: 'lbac_gateway_upstream_inflight_requests',
    help: 'Requests in flight per upstream.',
    labelNames: ['upstream'] as const,
    registers,
    collect() {
      for (const [upstream, n] of inflight) this.set({ upstream }, n);
    },
  });
  let answerBytes: (() => number) | undefined;
  new Gauge({
    name: 'lbac_gateway_buffered_answer_bytes',
    help: 'Bytes of upstream answers read whole (to filter or merge them) held right now; bounded by server.maxBufferedAnswerBytes per process (summed over cluster workers).',
    registers,
    collect() {
      if (answerBytes !== undefined) this.set(answerBytes());
    },
  });
  const configReloads = new Counter({ name: 'lbac_gateway_config_reloads_total', help: 'Config reloads (SIGHUP or file change), by result: success, failure.', labelNames: ['result'] as const, registers });
  const configLastReload = new Gauge({
    name: 'lbac_gateway_config_last_reload_timestamp_seconds',
    aggregator: 'max',
    help: 'Unix time of the last config reload attempt, by result.',
    labelNames: ['result'] as const,
    registers,
  });
  const auditRecords = new TalliedCounter({ name: 'lbac_gateway_audit_records_total', help: 'Lines of the audit log, by result: written (decisions, refused authentications, refusals without a decision), sampled_out (allowed decisions).', labelNames: ['result'] as const, registers });

  let holder: PolicyHolder | undefined;
  const policyInfo = new Gauge({
    name: 'lbac_gateway_policy_info',
    aggregator: 'max',
    help: 'Always 1 for the active policy: its revision and source.',
    labelNames: ['revision', 'source'] as const,
    registers,
    collect() {
      this.reset();
      const info = holder?.info;
      if (info !== undefined) this.set({ revision: info.revision, source: info.source }, 1);
    },
  });
  void policyInfo;
  new Gauge({
    name: 'lbac_gateway_policy_ready',
    aggregator: 'min',
    help: '1 when a policy is loaded and decisions can be made, else 0.',
    registers,
    collect() {
      this.set(holder?.ready === true ? 1 : 0);
    },
  });
  new Gauge({
    name: 'lbac_gateway_policy_last_activation_timestamp_seconds',
    aggregator: 'min',
    help: 'Unix time the active policy was activated.',
    registers,
    collect() {
      const at = holder?.info?.activatedAt;
      this.set(at === undefined ? 0 : at.getTime() / 1000);
    },
  });
  const activations = new Counter({ name: 'lbac_gateway_policy_activations_total', help: 'Policy activations (startup, bundle updates, config reloads).', registers });

  let bundleStatus: (() => BundleClientStatus) | undefined;
  new Gauge({
    name: 'lbac_gateway_bundle_consecutive_failures',
    aggregator: 'max',
    help: 'Bundle downloads that failed in a row (0 after a success, and without a bundle service).',
    registers,
    collect() {
      this.reset();
      if (bundleStatus !== undefined) this.set(bundleStatus().consecutiveFailures);
    },
  });
  new Gauge({
    name: 'lbac_gateway_bundle_last_success_timestamp_seconds',
    aggregator: 'min',
    help: 'Unix time of the last successful bundle request (200 or 304; 0 without a bundle service or before the first).',
    registers,
    collect() {
      this.reset();
      const at = bundleStatus?.().lastSuccessfulRequest;
      if (bundleStatus !== undefined) this.set(at === undefined ? 0 : at.getTime() / 1000);
    },
  });

  return {
    registry,
    requests,
    requestDuration,
    stageDuration,
    rewriteRejections,
    identityResults,
    identityProviderErrors,
    shed,
    inflight,
    configReloads,
    configLastReload,
    auditRecords,
    watchPolicy(h) {
      watchCaches(h);
      holder = h;
      if (h.ready) activations.inc();
      h.onSwap(() => activations.inc());
    },
    watchBundle(status) {
      bundleStatus = status;
    },
    watchIdentity(caches) {
      identityCaches = caches;
    },
    watchAnswerBudget(used) {
      answerBytes = used;
    },
  };
}
