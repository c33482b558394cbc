import { lokiRoutes } from './loki.ts';
import { prometheusRoutes } from './prometheus.ts';
import type { BackendKind, RouteSpec, RouteTable } from './routes.ts';
import { tempoRoutes } from './tempo.ts';

/** The route table of each backend kind. */
export const ROUTE_TABLES: Record<BackendKind, RouteTable> = { prometheus: prometheusRoutes, loki: lokiRoutes, tempo: tempoRoutes };

/** A route by its kind and endpoint name (unique within a table), or undefined. */
export function routeOf(kind: BackendKind, endpoint: string): RouteSpec | undefined {
  return ROUTE_TABLES[kind]?.routes.find((r) => r.endpoint === endpoint);
}
