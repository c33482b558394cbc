import fp from 'fastify-plugin';
import type { Decision, DecisionInput } from '../../policy/decision.ts';
import type { PolicyEngine } from '../../policy/engine.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Evaluate the policy; throws GatewayError('policy_error') on any failure (fail closed). */
    decide(input: DecisionInput): Decision;
    policyEngine: PolicyEngine;
  }
}

/** Policy: the in-process OPA-WASM engine behind one `decide` function. */
export const policyPlugin = fp<{ engine: PolicyEngine }>(
  async (app, { engine }) => {
    app.decorate('policyEngine', engine);
    app.decorate('decide', (input: DecisionInput) => engine.evaluate(input));
  },
  { name: 'lbac-policy' },
);
