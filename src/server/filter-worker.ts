/**
 * Worker-thread side of ./filter-offload.ts (a piscina task): a route's
 * response filter applied to one large upstream answer. The filters are the
 * same pure functions the event loop runs for small answers (src/backends);
 * only data crosses the thread boundary, the route is found by name.
 */
import { responseFilterOf } from '../backends/routes.ts';
import { routeOf } from '../backends/tables.ts';
import type { FilterTask } from './filter-offload.ts';

export default function filterTask(task: FilterTask): ReturnType<NonNullable<ReturnType<typeof responseFilterOf>>> {
  const route = routeOf(task.kind, task.endpoint);
  const filter = route === undefined ? undefined : responseFilterOf(route);
  // Fail closed: a route without a filter never reaches here; if it did, nothing is answered from it.
  if (filter === undefined) throw new Error(`no response filter for ${task.kind} ${task.endpoint}`);
  return filter(task.raw, task.contentType, task.ctx);
}
