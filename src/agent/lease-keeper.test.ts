import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock, systemClock } from '../core/clock.js';
import { eventually } from '../core/deadline.js';
import { MemoryDcs } from '../dcs/memory-dcs.js';
import { LeaseKeeper } from './lease-keeper.js';
import { silentLogger } from './logger.js';

const make = (dcs: MemoryDcs, onDeadline: () => void): LeaseKeeper =>
  new LeaseKeeper(dcs, systemClock, {
    ttlMs: () => 1000,
    intervalMs: () => 200,
    callTimeoutMs: () => 150,
    marginMs: () => 200,
    onDeadline,
    log: silentLogger,
  });

describe('LeaseKeeper', () => {
  it('keeps the lease alive and moves the deadline forward with each renewal', async () => {
    const dcs = new MemoryDcs();
    const keeper = make(dcs, () => assert.fail('no deadline expected while the DCS answers'));
    try {
      keeper.start();
      const first = await eventually(() => keeper.current(), { timeoutMs: 2000, intervalMs: 10 });
      const later = await eventually(() => {
        const l = keeper.current();
        return l !== undefined && l.deadlineMonoMs > first.deadlineMonoMs + 300 ? l : undefined;
      }, { timeoutMs: 3000, intervalMs: 20 });
      assert.equal(later.id, first.id);
    } finally {
      keeper.stop();
      dcs.close();
    }
  });

  it('fires the fence before the lease can expire when the DCS stops answering', async () => {
    const dcs = new MemoryDcs();
    let firedAt: number | undefined;
    let deadlineAtFire: number | undefined;
    const keeper = make(dcs, () => {
      firedAt ??= performance.now();
      deadlineAtFire ??= keeper.current()?.deadlineMonoMs;
    });
    try {
      keeper.start();
      await eventually(() => keeper.current(), { timeoutMs: 2000, intervalMs: 10 });
      dcs.setAvailable(false);
      const lastDeadline = keeper.current()!.deadlineMonoMs;
      await eventually(() => firedAt, { timeoutMs: 3000, intervalMs: 10, what: 'the fence' });
      // The fence fires ahead of the local deadline (send time of the last renewal + TTL).
      assert.ok(firedAt! < (deadlineAtFire ?? lastDeadline), `fired at ${firedAt}, deadline ${deadlineAtFire ?? lastDeadline}`);
    } finally {
      keeper.stop();
      dcs.close();
    }
  });

  it('reports a revoked lease as lost at once and grants a new one', async () => {
    const dcs = new MemoryDcs();
    let fired = 0;
    const keeper = make(dcs, () => (fired += 1));
    try {
      keeper.start();
      const first = await eventually(() => keeper.current(), { timeoutMs: 2000, intervalMs: 10 });
      await dcs.revokeLease(first.id);
      const second = await eventually(() => {
        const l = keeper.current();
        return l !== undefined && l.id !== first.id ? l : undefined;
      }, { timeoutMs: 3000, intervalMs: 10, what: 'a new lease' });
      assert.notEqual(second.id, first.id);
      assert.ok(fired >= 1);
    } finally {
      keeper.stop();
      dcs.close();
    }
  });
});

describe('LeaseKeeper after a ttl change', () => {
  const makeWith = (dcs: MemoryDcs, ttl: { ms: number }, interval: { ms: number }): LeaseKeeper =>
    new LeaseKeeper(dcs, systemClock, {
      ttlMs: () => ttl.ms,
      intervalMs: () => interval.ms,
      callTimeoutMs: () => 300,
      marginMs: () => 200,
      onDeadline: () => assert.fail('no deadline expected'),
      log: silentLogger,
    });

  it('renews at least four times per granted ttl even when loop_wait is sized for a longer one', async () => {
    const dcs = new MemoryDcs();
    const ttl = { ms: 1000 };
    const interval = { ms: 200 };
    const keeper = makeWith(dcs, ttl, interval);
    try {
      keeper.start();
      await eventually(() => keeper.current(), { timeoutMs: 2000, intervalMs: 10 });
      // ttl 1 s → 30 s with loop_wait 10 s, before the lease is rotated.
      ttl.ms = 30_000;
      interval.ms = 10_000;
      assert.equal(keeper.renewIntervalMs(), 250);
      assert.equal(keeper.needsRotation(), true);
    } finally {
      keeper.stop();
      dcs.close();
    }
  });

  it('moves the keys to a lease with the new ttl, the leader key last, then revokes the old lease', async () => {
    const dcs = new MemoryDcs();
    const ttl = { ms: 30_000 };
    const keeper = makeWith(dcs, ttl, { ms: 200 });
    try {
      keeper.start();
      const old = await eventually(() => keeper.current(), { timeoutMs: 2000, intervalMs: 10 });
      assert.equal(await dcs.create('/c/leader', 'm1', { leaseId: old.id }), true);
      ttl.ms = 2_000;
      const order: string[] = [];
      const outcome = await keeper.rotate(async (newLease, oldLease) => {
        assert.equal(oldLease, old.id);
        const kv = await dcs.get('/c/leader');
        order.push('leader');
        assert.equal(await dcs.compareAndSwap('/c/leader', 'm1', kv!.modRevision, { leaseId: newLease }), true);
      });
      assert.equal(outcome, 'rotated');
      const now = keeper.current()!;
      assert.notEqual(now.id, old.id);
      assert.equal(now.requestedTtlMs, 2_000);
      assert.equal(keeper.needsRotation(), false);
      assert.equal((await dcs.get('/c/leader'))?.lease, now.id);
      await assert.rejects(dcs.keepAlive(old.id), /lease/);
      assert.deepEqual(order, ['leader']);
    } finally {
      keeper.stop();
      dcs.close();
    }
  });

  it('keeps the old lease (and the leader key on it) when moving the keys fails', async () => {
    const dcs = new MemoryDcs();
    const ttl = { ms: 1000 };
    const keeper = makeWith(dcs, ttl, { ms: 200 });
    try {
      keeper.start();
      const old = await eventually(() => keeper.current(), { timeoutMs: 2000, intervalMs: 10 });
      await dcs.create('/c/leader', 'm1', { leaseId: old.id });
      ttl.ms = 5_000;
      let offered = '';
      const outcome = await keeper.rotate(async (newLease) => {
        offered = newLease;
        throw new Error('leader key changed');
      });
      assert.equal(outcome, 'failed');
      assert.equal(keeper.current()?.id, old.id);
      assert.equal((await dcs.get('/c/leader'))?.lease, old.id);
      await assert.rejects(dcs.keepAlive(offered), /lease/);
      assert.equal(keeper.needsRotation(), true);
    } finally {
      keeper.stop();
      dcs.close();
    }
  });

  it('renews the new, shorter lease on its own interval right after a rotation (30 s → 1 s)', async () => {
    const dcs = new MemoryDcs();
    const ttl = { ms: 30_000 };
    const interval = { ms: 10_000 };
    const keeper = makeWith(dcs, ttl, interval);
    try {
      keeper.start();
      await eventually(() => keeper.current(), { timeoutMs: 2000, intervalMs: 10 });
      ttl.ms = 1_000;
      interval.ms = 250;
      assert.equal(await keeper.rotate(async () => undefined), 'rotated');
      const rotated = keeper.current()!;
      // Before the fix the renewal timed for the 30 s lease (7.5 s away) let this one lapse.
      const renewed = await eventually(() => {
        const l = keeper.current();
        return l !== undefined && l.id === rotated.id && l.deadlineMonoMs > rotated.deadlineMonoMs + 200 ? l : undefined;
      }, { timeoutMs: 900, intervalMs: 20, what: 'a renewal of the 1 s lease within its ttl' });
      assert.equal(renewed.ttlMs, 1_000);
    } finally {
      keeper.stop();
      dcs.close();
    }
  });
});

describe('LeaseKeeper on a fake clock', () => {
  const flush = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };

  it('renews every interval, and fences at the last renewal send time + ttl − margin once renewals stop', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    let firedAtMs: number | undefined;
    const keeper = new LeaseKeeper(dcs, clock, {
      ttlMs: () => 1000,
      intervalMs: () => 200,
      callTimeoutMs: () => 150,
      marginMs: () => 200,
      onDeadline: () => (firedAtMs ??= clock.monotonicMs()),
      log: silentLogger,
    });
    try {
      keeper.start();
      await flush();
      const first = keeper.current()!;
      assert.equal(first.deadlineMonoMs, clock.monotonicMs() + 1000);
      // Ten intervals: ten renewals, each moving the deadline to its send time + ttl.
      for (let i = 0; i < 10; i++) {
        clock.advance(200);
        await flush();
      }
      const renewed = keeper.current()!;
      assert.equal(renewed.id, first.id);
      assert.equal(renewed.deadlineMonoMs, clock.monotonicMs() + 1000);
      assert.equal(firedAtMs, undefined);
      dcs.setAvailable(false);
      const lastDeadline = renewed.deadlineMonoMs;
      for (let i = 0; i < 40 && firedAtMs === undefined; i++) {
        clock.advance(25);
        await flush();
      }
      assert.equal(firedAtMs, lastDeadline - 200, 'the fence fires at the deadline minus the margin, not a tick later');
    } finally {
      keeper.stop();
      dcs.close();
    }
  });

  it('withholds renewals while mayRenew says no, lets the lease lapse into a fence, and renews again once it says yes', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    let fired = 0;
    let healthy = true;
    const keeper = new LeaseKeeper(dcs, clock, {
      ttlMs: () => 1000,
      intervalMs: () => 200,
      callTimeoutMs: () => 150,
      marginMs: () => 200,
      onDeadline: () => fired++,
      mayRenew: () => (healthy ? { renew: true } : { renew: false, why: 'the loop is wedged' }),
      log: silentLogger,
    });
    try {
      keeper.start();
      await flush();
      const granted = keeper.current()!;
      healthy = false;
      for (let i = 0; i < 20; i++) {
        clock.advance(50);
        await flush();
      }
      assert.equal(keeper.current()?.deadlineMonoMs, granted.deadlineMonoMs, 'no renewal while withheld');
      assert.equal(fired, 1, 'the guard fenced at the deadline minus the margin');
      healthy = true;
      for (let i = 0; i < 6; i++) {
        clock.advance(50);
        await flush();
      }
      // The local deadline passed; etcd's lease may still live (it is renewed) or be gone (a new one is granted).
      const after = keeper.current();
      assert.ok(after !== undefined && after.deadlineMonoMs > granted.deadlineMonoMs, 'renewals resume once the loop is healthy');
    } finally {
      keeper.stop();
      dcs.close();
    }
  });
});
