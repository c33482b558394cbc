// The isolation oracle's tenants: each a team of the gateway config, the same
// policy as matchers, and which seeded series its reference backend holds.
// Shared by the corpus oracle (promql.test.ts) and the generative one.
import { TEAM_NAMESPACES } from '../fixtures/seed.ts';
import type { SelectorPolicy } from '../../src/rewrite/matcher.ts';

export interface Tenant {
  /** Team name in the gateway config and the token's group. */
  name: string;
  /** The team's `selectors` in the gateway config. */
  selectors: Record<string, string | string[]>[];
  /** The same policy as matchers, to tell a gateway refusal from a backend error. */
  policy: SelectorPolicy;
  /** Which seeded series the tenant may see (the reference backend's content). */
  keep: (labels: Readonly<Record<string, string>>) => boolean;
  /** Namespaces the tenant may see any series of (leak check). */
  namespaces: readonly string[];
}

const teamRegex = (ns: readonly string[]): string => ns.join('|');

export const TENANTS: readonly Tenant[] = [
  {
    name: 'team-a',
    selectors: [{ namespace: '~team-a-.*' }],
    policy: [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }]],
    keep: (l) => /^team-a-.*$/.test(l['namespace'] ?? ''),
    namespaces: TEAM_NAMESPACES['team-a'],
  },
  {
    name: 'team-b',
    selectors: [{ namespace: [...TEAM_NAMESPACES['team-b']] }],
    policy: [[{ name: 'namespace', op: '=~', value: teamRegex(TEAM_NAMESPACES['team-b']) }]],
    keep: (l) => TEAM_NAMESPACES['team-b'].includes(l['namespace'] ?? ''),
    namespaces: TEAM_NAMESPACES['team-b'],
  },
  {
    // An equality matcher (not a regex), as most configs write a single namespace.
    name: 'platform',
    selectors: [{ namespace: 'platform' }],
    policy: [[{ name: 'namespace', op: '=', value: 'platform' }]],
    keep: (l) => l['namespace'] === 'platform',
    namespaces: TEAM_NAMESPACES['platform'],
  },
  {
    // A DNF policy of two alternatives: all of team A, plus the platform `api` job.
    name: 'mixed',
    selectors: [{ namespace: '~team-a-.*' }, { namespace: 'platform', job: 'api' }],
    policy: [
      [{ name: 'namespace', op: '=~', value: 'team-a-.*' }],
      [
        { name: 'namespace', op: '=', value: 'platform' },
        { name: 'job', op: '=', value: 'api' },
      ],
    ],
    keep: (l) => /^team-a-.*$/.test(l['namespace'] ?? '') || (l['namespace'] === 'platform' && l['job'] === 'api'),
    namespaces: [...TEAM_NAMESPACES['team-a'], 'platform'],
  },
  {
    // A user in two teams: alternatives that differ only in the namespace, which the
    // rewriter merges into one regex group (src/rewrite/policy-prep.ts, mergeGroups).
    name: 'two-teams',
    selectors: [{ namespace: '~team-a-.*' }, { namespace: 'platform' }],
    policy: [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }], [{ name: 'namespace', op: '=', value: 'platform' }]],
    keep: (l) => /^team-a-.*$/.test(l['namespace'] ?? '') || l['namespace'] === 'platform',
    namespaces: [...TEAM_NAMESPACES['team-a'], 'platform'],
  },
  {
    // Overlapping alternatives: team A's `api` job is in both, so every `or` (and every
    // per-group instant query the gateway merges) sees those series twice.
    name: 'overlap',
    selectors: [{ namespace: '~team-a-.*' }, { job: 'api' }],
    policy: [[{ name: 'namespace', op: '=~', value: 'team-a-.*' }], [{ name: 'job', op: '=', value: 'api' }]],
    keep: (l) => /^team-a-.*$/.test(l['namespace'] ?? '') || l['job'] === 'api',
    namespaces: [...TEAM_NAMESPACES['team-a'], 'team-b-api', 'platform'],
  },
];
