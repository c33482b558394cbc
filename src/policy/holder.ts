/**
 * The active policy, swappable at run time (bundle updates, local reloads).
 *
 * A decision is one synchronous `evaluate` on whichever engine is current when
 * the request asks: a swap (a single reference assignment) can never split one
 * evaluation between two policies, a request that already decided keeps its
 * decision (it finishes "on the old policy"), and every later request uses the
 * new one. Until the first policy is activated, `decide` fails closed with
 * `policy_unavailable` (503) and the gateway is not ready.
 */
import { GatewayError } from '../errors.ts';
import type { Decision, DecisionInput } from './decision.ts';
import type { PolicyEngine } from './engine.ts';

export interface ActivationInfo {
  revision: string;
  /** Where it came from: "file:/path", "bundle:<url>", "persisted:/path". */
  source: string;
  activatedAt: Date;
}

export type SwapListener = (next: ActivationInfo, previous: ActivationInfo | undefined) => void;

export class PolicyHolder {
  #engine: PolicyEngine | undefined;
  #info: ActivationInfo | undefined;
  readonly #listeners = new Set<SwapListener>();
  /** Every header name a policy active in this process has owned (see ownedHeaders). */
  #everOwned: ReadonlySet<string> = new Set();
  /** The engine's owned set last merged into #everOwned (a new set on new data or a new engine). */
  #ownedFrom: ReadonlySet<string> | undefined;

  constructor(engine?: PolicyEngine, source = 'initial') {
    if (engine !== undefined) this.activate(engine, source);
  }

  /** The current engine, or undefined before the first activation. */
  get engine(): PolicyEngine | undefined {
    return this.#engine;
  }

  get info(): ActivationInfo | undefined {
    return this.#info;
  }

  get revision(): string | undefined {
    return this.#engine?.revision;
  }

  get ready(): boolean {
    return this.#engine !== undefined;
  }

  /**
   * The tenant and policy header names (headerKey form) the gateway owns: a
   * client's copy is never forwarded. These are the names the active policy's
   * data sets (PolicyEngine.ownedHeaders) and every name an earlier policy of
   * this process set: removing the last team that sets `X-Tenant` must not make
   * that header the client's to choose while the tenant's data is still in the
   * backend (nor can a request decided just before the swap forward its copy).
   */
  get ownedHeaders(): ReadonlySet<string> {
    this.#mergeOwned();
    return this.#everOwned;
  }

  /** Adds the current engine's owned names to #everOwned (once per owned set: new data or a new engine makes a new one). */
  #mergeOwned(): void {
    const current = this.#engine?.ownedHeaders;
    if (current === undefined || current === this.#ownedFrom) return;
    this.#ownedFrom = current;
    for (const name of current) {
      if (!this.#everOwned.has(name)) {
        this.#everOwned = new Set([...this.#everOwned, ...current]);
        return;
      }
    }
  }

  /** Makes `engine` the policy for every later decision. Listeners run after the swap. */
  activate(engine: PolicyEngine, source: string): ActivationInfo {
    const previous = this.#info;
    const info: ActivationInfo = { revision: engine.revision, source, activatedAt: new Date() };
    this.#mergeOwned(); // the outgoing policy's names stay owned
    this.#engine = engine;
    this.#info = info;
    this.#mergeOwned();
    for (const l of this.#listeners) {
      try {
        l(info, previous);
      } catch {
        // a listener (cache invalidation, metrics) must not undo an activation
      }
    }
    return info;
  }

  /** Subscribe to swaps (e.g. to invalidate a decision cache on revision change); returns unsubscribe. */
  onSwap(listener: SwapListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  decide(input: DecisionInput): Decision {
    const engine = this.#engine;
    if (engine === undefined) throw new GatewayError('policy_unavailable', 'no policy loaded yet (waiting for the first bundle)');
    return engine.evaluate(input);
  }
}
