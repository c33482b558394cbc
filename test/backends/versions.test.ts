// Backend release versions, for endpoints older releases answer for the whole tenant.
import { describe, expect, it } from 'vitest';
import { lokiRoutes } from '../../src/backends/loki.ts';
import { buildinfoVersion, parseVersion, versionAtLeast, versionProblem } from '../../src/backends/versions.ts';

describe('parseVersion', () => {
  it.each([
    ['3.2.1', [3, 2, 1]],
    ['v3.2.1', [3, 2, 1]],
    ['2.9', [2, 9, 0]],
    ['3.2.0-rc.1', [3, 2, 0]],
    [' 3.10.4 ', [3, 10, 4]],
  ])('%j', (text, v) => expect(parseVersion(text)).toEqual(v));
  it.each(['k218-1a2b3c4', 'main-1a2b3c4', 'HEAD', '', '3', '3.x.1', '3.2.1.4'])('%j is not a release', (text) => expect(parseVersion(text)).toBeNull());
});

describe('versionAtLeast', () => {
  it('compares major, minor, patch numerically', () => {
    expect(versionAtLeast([3, 10, 0], [3, 2, 0])).toBe(true);
    expect(versionAtLeast([3, 2, 0], [3, 2, 0])).toBe(true);
    expect(versionAtLeast([3, 1, 9], [3, 2, 0])).toBe(false);
    expect(versionAtLeast([2, 99, 99], [3, 0, 0])).toBe(false);
  });
});

describe('buildinfoVersion and versionProblem', () => {
  it('reads Loki\'s and Prometheus\' buildinfo shapes', () => {
    expect(buildinfoVersion({ version: '3.4.2', revision: 'x' })).toBe('3.4.2');
    expect(buildinfoVersion({ status: 'success', data: { version: '3.16.0' } })).toBe('3.16.0');
    expect(buildinfoVersion({ status: 'success' })).toBeUndefined();
    expect(buildinfoVersion('3.4.2')).toBeUndefined();
  });
  it('refuses older, unknown and uncomparable versions; accepts the minimum and later', () => {
    expect(versionProblem('loki', 'labels', '3.0.0', '2.9.4')).toMatch(/labels needs loki 3\.0\.0 or later/);
    expect(versionProblem('loki', 'labels', '3.0.0', undefined)).toMatch(/could not be read/);
    expect(versionProblem('loki', 'labels', '3.0.0', 'k218-abc')).toMatch(/cannot be compared/);
    expect(versionProblem('loki', 'labels', '3.0.0', '3.0.0')).toBeUndefined();
    expect(versionProblem('loki', 'labels', '3.0.0', '3.6.1')).toBeUndefined();
  });
  it('Loki routes whose parameter older releases ignore carry their minimum; the others none', () => {
    const min = Object.fromEntries(lokiRoutes.routes.filter((r) => r.minVersion !== undefined).map((r) => [r.endpoint, r.minVersion]));
    expect(min).toEqual({ labels: '3.0.0', label_values: '3.0.0', detected_labels: '3.2.0' });
    expect(lokiRoutes.buildinfoPath).toBe('/loki/api/v1/status/buildinfo');
  });
});
