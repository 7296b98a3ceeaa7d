import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { systemClock } from '../core/clock.js';
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
        return l !== undefined && l.deadlineMs > first.deadlineMs + 300 ? l : undefined;
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
      firedAt ??= Date.now();
      deadlineAtFire ??= keeper.current()?.deadlineMs;
    });
    try {
      keeper.start();
      await eventually(() => keeper.current(), { timeoutMs: 2000, intervalMs: 10 });
      dcs.setAvailable(false);
      const lastDeadline = keeper.current()!.deadlineMs;
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
