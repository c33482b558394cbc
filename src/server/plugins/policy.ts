import fp from 'fastify-plugin';
import type { Decision, DecisionInput } from '../../policy/decision.ts';
import type { PolicyEngine } from '../../policy/engine.ts';
import type { PolicyHolder } from '../../policy/holder.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Evaluate the active policy; throws GatewayError('policy_error') on any
     * failure and 'policy_unavailable' (503) before the first policy is loaded
     * (fail closed).
     */
    decide(input: DecisionInput): Decision;
    /** The active engine (undefined until a policy is loaded; changes on every swap). */
    readonly policyEngine: PolicyEngine | undefined;
    /** The swappable holder of the active policy. */
    policyHolder: PolicyHolder;
  }
}

/**
 * Policy: the in-process OPA-WASM engine behind one `decide` function. The
 * engine lives in a PolicyHolder, so bundle updates and local reloads swap it
 * atomically: each decision runs entirely on the engine that was current when
 * it started.
 */
export const policyPlugin = fp<{ holder: PolicyHolder }>(
  async (app, { holder }) => {
    app.decorate('policyHolder', holder);
    app.decorate('policyEngine', { getter: () => holder.engine });
    app.decorate('decide', (input: DecisionInput) => holder.decide(input));
  },
  { name: 'lbac-policy' },
);
