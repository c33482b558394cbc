import type { SelectorPolicy } from './matcher.ts';

export type QueryLanguage = 'promql' | 'logql' | 'traceql';

export interface RewriteLimits {
  /** Maximum query length in bytes (UTF-8). */
  readonly maxQueryLength: number;
  /** Maximum syntax-tree nesting depth. */
  readonly maxDepth: number;
}

export const DEFAULT_LIMITS: RewriteLimits = { maxQueryLength: 64 * 1024, maxDepth: 128 };

/**
 * One interface for the three languages. `rewrite` returns the query with every
 * selector constrained by `policy`, or throws a `QueryError` (parse failure,
 * unsupported construct, limits) — it never returns a partially enforced query.
 * Pure: no I/O, no globals beyond caches.
 */
export interface QueryRewriter {
  readonly language: QueryLanguage;
  rewrite(query: string, policy: SelectorPolicy, limits?: RewriteLimits): string;
}
