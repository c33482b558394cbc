// The bar for the route tables: every endpoint has at least one
// end-to-end test. A route added without an e2e request naming its path fails
// here. (A lexical check: the path, or its tail after the API prefix, with
// path parameters as wildcards, must appear in e2e/.)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lokiRoutes } from '../../src/backends/loki.ts';
import { prometheusRoutes } from '../../src/backends/prometheus.ts';
import { tempoRoutes } from '../../src/backends/tempo.ts';

const e2eDir = join(import.meta.dirname, '..', '..', 'e2e');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === 'results' || f === 'corpus' ? [] : sources(p);
    return /\.ts$/.test(f) ? [readFileSync(p, 'utf8')] : [];
  });
}

const text = sources(e2eDir).join('\n');
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
/** `/loki/api/v1/label/:name/values` → matches `/loki/api/v1/label/x/values` and `label/x/values`. */
function mentioned(path: string): boolean {
  const tail = path.replace(/^\/(loki\/)?api\/(v\d\/)?/, '');
  return [path, tail].some((p) => new RegExp(p.split(/:[A-Za-z]+/).map(escape).join('[^/\'"`?\\s]+')).test(text));
}

describe('route tables', () => {
  for (const table of [prometheusRoutes, lokiRoutes, tempoRoutes]) {
    it.each(table.routes.map((r) => [r.endpoint, r.path] as const))(`${table.kind} %s (%s) is requested by an e2e suite`, (_endpoint, path) => {
      expect(mentioned(path), `${path}: no e2e request names it`).toBe(true);
    });
  }
  it('the check is not vacuous', () => {
    expect(mentioned('/api/v1/not_a_route')).toBe(false);
    expect(mentioned('/loki/api/v1/label/:name/values')).toBe(true);
  });
});
