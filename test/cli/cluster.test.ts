import { describe, expect, it } from 'vitest';
import { ReloadRelay } from '../../src/cli/cluster.ts';

describe('ReloadRelay (which workers a SIGHUP reaches, and when)', () => {
  it('signals serving workers at once', () => {
    const r = new ReloadRelay();
    expect(r.ready(1)).toBe(false);
    expect(r.ready(2)).toBe(false);
    expect(r.reload([1, 2])).toEqual([1, 2]);
  });

  it('keeps a reload for a worker still starting and sends it once it is ready (listens, or waits for its first policy)', () => {
    const r = new ReloadRelay();
    r.ready(1);
    // Worker 2 was forked (a replacement) and is not ready yet: it may have read the old config.
    expect(r.reload([1, 2])).toEqual([1]);
    expect(r.reload([1, 2])).toEqual([1]);
    expect(r.ready(2)).toBe(true);
    // Sent once; later reloads reach it directly.
    expect(r.ready(2)).toBe(false);
    expect(r.reload([1, 2])).toEqual([1, 2]);
  });

  it('forgets a worker that exits before it listens', () => {
    const r = new ReloadRelay();
    expect(r.reload([3])).toEqual([]);
    r.exited(3);
    expect(r.ready(3)).toBe(false);
  });
});
