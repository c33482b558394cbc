import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HistogramChild } from '../histogram.ts';
import type { GatewayMetrics } from '../metrics.ts';
import type { Stage } from '../request-state.ts';
import { addRecorder } from './hook.ts';

/** Records each answered request into the registry (served by the admin listener only). */
export const metricsPlugin = fp<{ metrics: GatewayMetrics }>(
  async (app, { metrics }) => {
    // Bound once per label set: an observation is then a few additions (src/server/histogram.ts).
    const durationChildren = new Map<string, Map<string, HistogramChild>>();
    const stageChildren = new Map<string, HistogramChild>();
    const record = (req: FastifyRequest, reply: FastifyReply): void => {
      const s = req.lbac;
      if (s === null || s === undefined) return;
      const upstream = s.request?.upstream ?? s.route?.upstream ?? '';
      // Root routes (health) by their path; unmatched paths as one value: bounded cardinality.
      const endpoint = s.request?.endpoint ?? s.route?.endpoint ?? req.routeOptions.url ?? 'unmatched';
      const d = s.decision;
      const decision = d === undefined ? 'none' : !d.allow ? 'deny' : d.unrestricted ? 'unrestricted' : 'allow';
      metrics.requests.inc({ upstream, endpoint, status: String(reply.statusCode), decision });
      let byEndpoint = durationChildren.get(upstream);
      if (byEndpoint === undefined) durationChildren.set(upstream, (byEndpoint = new Map()));
      let duration = byEndpoint.get(endpoint);
      if (duration === undefined) byEndpoint.set(endpoint, (duration = metrics.requestDuration.child({ upstream, endpoint })));
      duration.observe((performance.now() - s.startedAt) / 1000);
      for (const stage in s.timings) {
        const ms = s.timings[stage as Stage];
        if (ms === undefined) continue;
        let child = stageChildren.get(stage);
        if (child === undefined) stageChildren.set(stage, (child = metrics.stageDuration.child({ stage })));
        child.observe(ms / 1000);
      }
      if (d?.allow === true && s.original !== undefined && s.rewritten === undefined && s.errorCode !== undefined) {
        metrics.rewriteRejections.inc({ upstream, code: s.errorCode });
      }
      if (s.identity !== undefined) {
        metrics.identityResults.inc({ result: s.identity, auth: req.subject?.auth ?? '' });
        if (s.identity === 'unavailable') metrics.identityProviderErrors.inc();
      }
    };
    addRecorder(app, 'metrics update', record);
  },
  { name: 'lbac-metrics', dependencies: ['lbac-context'] },
);
