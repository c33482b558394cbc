// The cluster's /readyz (primary): every expected worker ready, and all on the same policy data.
import { describe, expect, it } from 'vitest';
import { groupReadiness, WORKERS_DISAGREE, type WorkerReadiness } from '../../src/server/cluster-admin.ts';

const worker = (dataRevision: string, over: Partial<WorkerReadiness> = {}): WorkerReadiness => ({ ready: true, status: 'ready', policyRevision: 'p1', dataRevision, ...over });

describe('groupReadiness', () => {
  it('ready when every expected worker is ready on the same data', () => {
    expect(groupReadiness([worker('d1'), worker('d1')], 2)).toEqual({ ready: true, status: 'ready' });
  });

  it('not ready while a worker is missing or not ready', () => {
    expect(groupReadiness([worker('d1')], 2).ready).toBe(false);
    expect(groupReadiness([worker('d1'), worker('d1', { ready: false, status: 'not ready' })], 2).ready).toBe(false);
  });

  it('not ready while workers run different team data (a reload rejected in one of them)', () => {
    expect(groupReadiness([worker('d2'), worker('d1')], 2)).toEqual({ ready: false, status: WORKERS_DISAGREE });
  });

  it('not ready while workers run different configuration with the same team data (API keys, identity providers)', () => {
    expect(groupReadiness([worker('d1', { configRevision: 'c2' }), worker('d1', { configRevision: 'c1' })], 2)).toEqual({ ready: false, status: WORKERS_DISAGREE });
    expect(groupReadiness([worker('d1', { configRevision: 'c1' }), worker('d1', { configRevision: 'c1' })], 2).ready).toBe(true);
  });

  it('bundle revisions may differ for a polling interval: that alone is not a disagreement', () => {
    expect(groupReadiness([worker('d1', { policyRevision: 'p2' }), worker('d1')], 2).ready).toBe(true);
  });
});
