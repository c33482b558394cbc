import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConcurrencyGate, SingleFlight } from '../../src/util/gate.ts';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ConcurrencyGate', () => {
  it('never runs more than maxRunning at once, runs every queued call, refuses beyond the queue', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 6 }), fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 20 }), async (maxRunning, maxQueued, delays) => {
        const gate = new ConcurrencyGate(maxRunning, maxQueued, 'things');
        let now = 0;
        let peak = 0;
        const results = await Promise.allSettled(
          delays.map((d) =>
            gate.run(async () => {
              now++;
              peak = Math.max(peak, now);
              await tick(d);
              now--;
              return d;
            }),
          ),
        );
        const refused = results.filter((r) => r.status === 'rejected');
        expect(peak).toBeLessThanOrEqual(maxRunning);
        // All calls were started in one go: exactly those beyond running + queue are refused.
        expect(refused.length).toBe(Math.max(0, delays.length - maxRunning - maxQueued));
        for (const r of refused) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'overloaded', status: 503, message: expect.stringMatching(/too many things/) });
        expect(gate.running).toBe(0);
        expect(gate.queued).toBe(0);
      }),
      { numRuns: 40 },
    );
  });

  it('calls whose clients went away are dropped from the queue: never run, and a full queue makes room', async () => {
    const gate = new ConcurrencyGate(1, 2, 'checks');
    let release!: () => void;
    const ran: string[] = [];
    const first = gate.run(() => new Promise<void>((r) => (release = r)).then(() => void ran.push('first')));
    let goneA = false;
    const a = gate.run(async () => void ran.push('a'), () => goneA);
    const b = gate.run(async () => void ran.push('b'), () => true);
    // The queue is full (a, b); b's client is gone, so c gets its place instead of a 503.
    const c = gate.run(async () => void ran.push('c'));
    await expect(b).rejects.toMatchObject({ code: 'overloaded', message: expect.stringMatching(/went away/) });
    goneA = true;
    release();
    await first;
    await expect(a).rejects.toMatchObject({ code: 'overloaded' });
    await c;
    expect(ran).toEqual(['first', 'c']);
    expect(gate.running).toBe(0);
    expect(gate.queued).toBe(0);
  });

  it('a failing call frees its slot', async () => {
    const gate = new ConcurrencyGate(1, 1, 'x');
    const a = gate.run(async () => {
      throw new Error('boom');
    });
    const b = gate.run(async () => 'b');
    await expect(a).rejects.toThrow('boom');
    await expect(b).resolves.toBe('b');
    expect(gate.running).toBe(0);
  });
});

describe('SingleFlight', () => {
  it('shares one in-flight call per key and forgets it when settled', async () => {
    const f = new SingleFlight<string, number>();
    let calls = 0;
    const work = async () => {
      const id = ++calls;
      await tick(5);
      return id;
    };
    const [a, b, c] = await Promise.all([f.run('k', work), f.run('k', work), f.run('other', work)]);
    expect(a).toBe(b);
    expect(calls).toBe(2);
    expect(c).not.toBe(a);
    expect(f.size).toBe(0);
    await f.run('k', work);
    expect(calls).toBe(3);
  });

  it('a shared call is abandoned only when every caller sharing it has gone', async () => {
    const f = new SingleFlight<string, boolean>();
    let seen!: () => boolean;
    let finish!: () => void;
    let goneA = false;
    let goneB = false;
    const p = f.run('k', (abandoned) => {
      seen = abandoned;
      return new Promise<boolean>((r) => (finish = () => r(true)));
    }, () => goneA);
    void f.run('k', async () => false, () => goneB);
    goneA = true;
    expect(seen()).toBe(false);
    goneB = true;
    expect(seen()).toBe(true);
    // A caller that cannot tell (no gone function) keeps it wanted.
    void f.run('k', async () => false);
    expect(seen()).toBe(false);
    finish();
    await p;
  });

  it('after forget, a caller starts a new call; the old call still answers its own callers and does not remove the new one', async () => {
    const f = new SingleFlight<string, number>();
    let calls = 0;
    const finish: (() => void)[] = [];
    const work = () => {
      const id = ++calls;
      return new Promise<number>((r) => finish.push(() => r(id)));
    };
    const old = f.run('k', work);
    f.forget();
    const fresh = f.run('k', work);
    expect(calls).toBe(2);
    finish[0]!();
    expect(await old).toBe(1);
    // The old call settling leaves the new one in place: a third caller joins it.
    const joined = f.run('k', work);
    expect(calls).toBe(2);
    finish[1]!();
    expect([await fresh, await joined]).toEqual([2, 2]);
    expect(f.size).toBe(0);
  });

  it('shares a failure too, and a synchronous throw becomes a rejection', async () => {
    const f = new SingleFlight<string, number>();
    const boom = () => {
      throw new Error('sync');
    };
    await expect(f.run('k', boom)).rejects.toThrow('sync');
    expect(f.size).toBe(0);
  });
});
