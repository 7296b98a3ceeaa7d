import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { isWardenError } from '../core/errors.js';
import { dcsContract } from './dcs-contract.js';
import { MemoryDcs } from './memory-dcs.js';

dcsContract('MemoryDcs', async () => {
  const clock = new FakeClock();
  const dcs = new MemoryDcs({ clock });
  return {
    dcs,
    expireLease: async () => {
      clock.advance(3_600_000);
      dcs.expireLeases();
    },
    compact: async (revision) => dcs.compact(revision),
    stall: async () => {
      dcs.setStalled(true);
      return async () => dcs.setStalled(false);
    },
    cleanup: async () => dcs.close(),
  };
});

describe('MemoryDcs', () => {
  it('keeps a lease alive while it is renewed within its ttl and expires it by the clock', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    const lease = await dcs.grantLease(2_500);
    assert.equal(lease.ttlMs, 3_000, 'rounded up to whole seconds, like etcd');
    await dcs.put('/l', 'x', { leaseId: lease.id });
    clock.advance(2_999);
    await dcs.keepAlive(lease.id);
    clock.advance(2_999);
    assert.equal((await dcs.get('/l'))?.value, 'x');
    clock.advance(1);
    assert.equal(await dcs.get('/l'), undefined);
    await assert.rejects(dcs.keepAlive(lease.id), (e: unknown) => isWardenError(e, 'lease-not-found'));
  });

  it('raises a granted ttl to the store minimum', async () => {
    const dcs = new MemoryDcs({ clock: new FakeClock(), minLeaseTtlMs: 2_000 });
    assert.equal((await dcs.grantLease(500)).ttlMs, 2_000);
  });

  it('expires a lease in one write that a watch sees as deletes', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    const lease = await dcs.grantLease(1_000);
    await dcs.put('/w/a', '1', { leaseId: lease.id });
    const rev = await dcs.put('/w/b', '2', { leaseId: lease.id });
    const ac = new AbortController();
    const batches: [string[], number][] = [];
    const watching = dcs.watch('/w/', rev + 1, (events, revision) => batches.push([events.map((e) => `${e.type} ${e.kv.key}`), revision]), ac.signal);
    clock.advance(1_000);
    dcs.expireLeases();
    await Promise.resolve();
    ac.abort();
    await watching;
    assert.deepEqual(batches, [[['delete /w/a', 'delete /w/b'], rev + 1]]);
  });

  it('fails calls and running watches with dcs-unavailable while unavailable', async () => {
    const dcs = new MemoryDcs({ clock: new FakeClock() });
    const watching = dcs.watch('/', 0, () => undefined, new AbortController().signal);
    dcs.setAvailable(false);
    await assert.rejects(watching, (e: unknown) => isWardenError(e, 'dcs-unavailable'));
    await assert.rejects(dcs.range('/'), (e: unknown) => isWardenError(e, 'dcs-unavailable') && e.retryable);
    dcs.setAvailable(true);
    assert.equal((await dcs.range('/')).kvs.length, 0);
  });

  it('does not advance the revision for writes that change nothing', async () => {
    const dcs = new MemoryDcs({ clock: new FakeClock() });
    const rev = await dcs.put('/k', 'v');
    assert.equal(await dcs.create('/k', 'other'), false);
    assert.equal(await dcs.compareAndSwap('/k', 'other', rev - 1), false);
    assert.equal(await dcs.delete('/missing'), false);
    await dcs.revokeLease((await dcs.grantLease(1_000)).id);
    assert.equal((await dcs.range('/')).revision, rev);
  });
});
