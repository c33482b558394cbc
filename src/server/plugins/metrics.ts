import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayMetrics } from '../metrics.ts';
import { recordOnResponse } from './hook.ts';

/** Records each answered request into the registry (served by the admin listener only). */
export const metricsPlugin = fp<{ metrics: GatewayMetrics }>(
  async (app, { metrics }) => {
    const record = (req: FastifyRequest, reply: FastifyReply): void => {
      const s = req.lbac;
      if (s === null || s === undefined) return;
      const upstream = s.request?.upstream ?? s.route?.upstream ?? '';
      // Root routes (health) by their path; unmatched paths as one value: bounded cardinality.
      const endpoint = s.request?.endpoint ?? s.route?.endpoint ?? req.routeOptions.url ?? 'unmatched';
      const d = s.decision;
      const decision = d === undefined ? 'none' : !d.allow ? 'deny' : d.unrestricted ? 'unrestricted' : 'allow';
      metrics.requests.inc({ upstream, endpoint, status: String(reply.statusCode), decision });
      metrics.requestDuration.observe({ upstream, endpoint }, (performance.now() - s.startedAt) / 1000);
      for (const [stage, ms] of Object.entries(s.timings)) metrics.stageDuration.observe({ stage }, ms / 1000);
      if (d?.allow === true && s.original !== undefined && s.rewritten === undefined && s.errorCode !== undefined) {
        metrics.rewriteRejections.inc({ upstream, code: s.errorCode });
      }
      if (s.identity !== undefined) {
        metrics.identityResults.inc({ result: s.identity, auth: req.subject?.auth ?? '' });
        if (s.identity === 'unavailable') metrics.identityProviderErrors.inc();
      }
    };
    app.addHook('onResponse', recordOnResponse('metrics update', record));
  },
  { name: 'lbac-metrics', dependencies: ['lbac-context'] },
);
