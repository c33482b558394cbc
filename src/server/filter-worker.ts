/**
 * Worker-thread side of ./filter-offload.ts (piscina tasks): a route's
 * response filter applied to one large upstream answer, and a fan-out's
 * large parts merged. The filters are the
 * same pure functions the event loop runs for small answers (src/backends);
 * only data crosses the thread boundary, the route is found by name.
 */
import { responseFilterOf } from '../backends/routes.ts';
import { routeOf } from '../backends/tables.ts';
import type { FilterTask } from './filter-offload.ts';
import { mergeOutcome, type MergeOutcome, type MergeTask } from './merge-parts.ts';

export default function filterTask(task: FilterTask): ReturnType<NonNullable<ReturnType<typeof responseFilterOf>>> {
  const route = routeOf(task.kind, task.endpoint);
  const filter = route === undefined ? undefined : responseFilterOf(route);
  // Fail closed: a route without a filter never reaches here; if it did, nothing is answered from it.
  if (filter === undefined) throw new Error(`no response filter for ${task.kind} ${task.endpoint}`);
  return filter(task.raw, task.contentType, task.ctx);
}

/** A fanned-out request's parts merged by its route's merge (./filter-offload.ts mergeAnswers). */
export function mergeTask(task: MergeTask): MergeOutcome {
  const merge = routeOf(task.kind, task.endpoint)?.fanOut?.merge;
  if (merge === undefined) throw new Error(`no merge for ${task.kind} ${task.endpoint}`);
  return mergeOutcome(merge, task);
}
