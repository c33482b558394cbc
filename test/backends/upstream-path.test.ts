import { describe, expect, it } from 'vitest';
import { lokiRoutes } from '../../src/backends/loki.ts';
import { prometheusRoutes } from '../../src/backends/prometheus.ts';
import { pathParamProblem, upstreamPath, type RouteSpec } from '../../src/backends/routes.ts';
import { tempoRoutes } from '../../src/backends/tempo.ts';

const route = (path: string): RouteSpec => ({ endpoint: 'test', path, methods: ['GET'], enforced: [] });

describe('upstreamPath', () => {
  it('fills each path parameter, percent-encoded, and keeps the literal text around it', () => {
    expect(upstreamPath(route('/api/v1/label/:name/values'), { name: 'job' })).toBe('/api/v1/label/job/values');
    expect(upstreamPath(route('/api/v1/label/:name/values'), { name: 'a/b?c#d %' })).toBe('/api/v1/label/a%2Fb%3Fc%23d%20%25/values');
    expect(upstreamPath(route('/api/:a/x/:b_2'), { a: '1', b_2: 'é' })).toBe('/api/1/x/%C3%A9');
    expect(upstreamPath(route('/api/v1/query'), {})).toBe('/api/v1/query');
  });

  it('never builds a path that is not the route: a missing parameter or a dot segment throws', () => {
    expect(() => upstreamPath(route('/api/traces/:traceId'), {})).toThrow(/missing path parameter traceId/);
    for (const v of ['.', '..']) expect(() => upstreamPath(route('/api/v1/label/:name/values'), { name: v })).toThrow(/dot segment/);
  });

  it('refuses a parameter holding a dot segment between slashes or backslashes (a proxy decoding %2F would resolve it)', () => {
    const r = route('/api/v2/search/tag/:tag/values');
    for (const v of ['resource./../.service.name', '../x', 'x/..', 'a/./b', 'x\\..\\y', '..\\x']) {
      expect(pathParamProblem(r, 'tag', v)).toMatch(/dot segment/);
      expect(() => upstreamPath(r, { tag: v })).toThrow(/dot segment/);
    }
    // Dots that are not a whole segment are names.
    for (const v of ['...', '.service.name', 'a..b', 'x/.y', '..x/y.']) {
      expect(pathParamProblem(r, 'tag', v)).toBeUndefined();
      expect(upstreamPath(r, { tag: v })).toBe(`/api/v2/search/tag/${encodeURIComponent(v)}/values`);
    }
  });

  it('agrees with substituting the pattern textually, for every route of every backend', () => {
    for (const r of [...prometheusRoutes.routes, ...lokiRoutes.routes, ...tempoRoutes.routes]) {
      const params: Record<string, string> = {};
      for (const [, name] of r.path.matchAll(/:([A-Za-z_][A-Za-z0-9_]*)/g)) params[name!] = `v ${name}/`;
      const expected = r.path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (_m, name: string) => encodeURIComponent(params[name]!));
      expect(upstreamPath(r, params)).toBe(expected);
    }
  });

  it('a label name in a Prometheus or Loki path holds no "/" (their routers redirect a decoded one elsewhere)', () => {
    const labelValues = [...prometheusRoutes.routes, ...lokiRoutes.routes].filter((r) => r.path.includes('/label/:name/values') || r.path.includes('/detected_field/:name/values'));
    expect(labelValues.length).toBe(3);
    for (const r of labelValues) {
      for (const v of ['namespace/', 'a/b', '/x']) expect(pathParamProblem(r, 'name', v)).toMatch(/invalid label name/);
      for (const v of ['namespace', 'U__http_2f_path', 'service.name']) expect(pathParamProblem(r, 'name', v)).toBeUndefined();
    }
  });
});
