import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { eventually } from '../core/deadline.js';
import { isWardenError } from '../core/errors.js';
import type { WardenErrorCode } from '../core/errors.js';
import type { Dcs, WatchEvent } from './dcs.js';

/** One store under test, made fresh for each contract test. */
export interface DcsContractSubject {
  readonly dcs: Dcs;
  /** Makes `leaseId` expire now (a fake clock); a real store's expiry is tested with real time instead. */
  readonly expireLease?: (leaseId: string) => Promise<void>;
  /** Compacts the store's history up to `revision`. */
  readonly compact?: (revision: number) => Promise<void>;
  /** Makes the store stop answering; the returned function makes it answer again. */
  readonly stall?: () => Promise<() => Promise<void>>;
  readonly cleanup: () => Promise<void>;
}

/** The behaviour every Dcs implementation must have: one suite, run against the fake and against real etcd. */
export function dcsContract(name: string, make: () => Promise<DcsContractSubject>): void {
  describe(`Dcs contract: ${name}`, () => {
    const runId = randomUUID().slice(0, 8);
    let testNo = 0;
    let subject: DcsContractSubject;
    let dcs: Dcs;
    // Each test has its own prefix, so one real store can serve the whole suite.
    let p: string;

    beforeEach(async () => {
      subject = await make();
      dcs = subject.dcs;
      p = `/contract/${runId}/${++testNo}/`;
    });
    afterEach(async () => {
      await subject.cleanup();
    });

    it('reads every key under a prefix at one revision, in key order', async () => {
      await dcs.put(`${p}b`, '2');
      await dcs.put(`${p}a`, '1');
      await dcs.put(`${p.slice(0, -1)}x`, 'outside the prefix');
      const last = await dcs.put(`${p}c/d`, '3');
      const snap = await dcs.range(p);
      assert.ok(snap.revision >= last, `snapshot revision ${snap.revision} is before the last write ${last}`);
      assert.deepEqual(
        snap.kvs.map((kv) => [kv.key, kv.value]),
        [[`${p}a`, '1'], [`${p}b`, '2'], [`${p}c/d`, '3']],
      );
      assert.deepEqual(await dcs.range(`${p}nothing/`), { revision: snap.revision, kvs: [] });
    });

    it('tracks create revision, mod revision and version across updates', async () => {
      const created = await dcs.put(`${p}k`, 'v1');
      const updated = await dcs.put(`${p}k`, 'v2');
      assert.ok(updated > created);
      assert.deepEqual(await dcs.get(`${p}k`), {
        key: `${p}k`,
        value: 'v2',
        createRevision: created,
        modRevision: updated,
        version: 2,
        lease: '0',
      });
      assert.equal(await dcs.get(`${p}missing`), undefined);
      await dcs.put(`${p}empty`, '');
      assert.equal((await dcs.get(`${p}empty`))?.value, '');
    });

    it('creates a key only when it does not exist', async () => {
      assert.equal(await dcs.create(`${p}leader`, 'a'), true);
      assert.equal(await dcs.create(`${p}leader`, 'b'), false);
      assert.equal((await dcs.get(`${p}leader`))?.value, 'a');
    });

    it('gives exactly one winner when two members create the same key at once', async () => {
      const results = await Promise.all([dcs.create(`${p}leader`, 'a'), dcs.create(`${p}leader`, 'b')]);
      assert.equal(results.filter(Boolean).length, 1);
      assert.equal((await dcs.get(`${p}leader`))?.value, results[0] ? 'a' : 'b');
    });

    it('swaps a value only while its mod revision still matches', async () => {
      await dcs.put(`${p}k`, 'v1');
      const before = (await dcs.get(`${p}k`))!;
      assert.equal(await dcs.compareAndSwap(`${p}k`, 'v2', before.modRevision), true);
      const after = (await dcs.get(`${p}k`))!;
      assert.equal(after.value, 'v2');
      assert.ok(after.modRevision > before.modRevision);
      assert.equal(await dcs.compareAndSwap(`${p}k`, 'stale', before.modRevision), false);
      assert.equal((await dcs.get(`${p}k`))?.value, 'v2');
    });

    it('deletes a key only while its mod revision still matches', async () => {
      await dcs.put(`${p}k`, 'v1');
      const kv = (await dcs.get(`${p}k`))!;
      assert.equal(await dcs.delete(`${p}k`, { expectModRevision: kv.modRevision - 1 }), false);
      assert.notEqual(await dcs.get(`${p}k`), undefined);
      assert.equal(await dcs.delete(`${p}k`, { expectModRevision: kv.modRevision }), true);
      assert.equal(await dcs.get(`${p}k`), undefined);
      assert.equal(await dcs.delete(`${p}k`), false);
      await dcs.put(`${p}k`, 'again');
      assert.equal(await dcs.delete(`${p}k`), true);
    });

    it('grants a lease, renews it, and deletes its keys when it is revoked', async () => {
      const lease = await dcs.grantLease(1_000);
      assert.ok(lease.ttlMs >= 1_000 && lease.ttlMs % 1_000 === 0, `granted ttlMs ${lease.ttlMs}`);
      assert.equal(await dcs.create(`${p}leader`, 'me', { leaseId: lease.id }), true);
      await dcs.put(`${p}status`, 'up', { leaseId: lease.id });
      await dcs.put(`${p}config`, 'kept');
      assert.equal((await dcs.get(`${p}leader`))?.lease, lease.id);
      assert.equal((await dcs.keepAlive(lease.id)).ttlMs, lease.ttlMs);
      await dcs.revokeLease(lease.id);
      assert.deepEqual((await dcs.range(p)).kvs.map((kv) => kv.key), [`${p}config`]);
      await dcs.revokeLease(lease.id); // already gone: still revoked, not an error
    });

    it('reports lease-not-found when keeping alive a revoked lease', async () => {
      const lease = await dcs.grantLease(5_000);
      await dcs.revokeLease(lease.id);
      await assertCode(dcs.keepAlive(lease.id), 'lease-not-found');
    });

    it('refuses to attach a key to a lease that does not exist', async () => {
      const lease = await dcs.grantLease(5_000);
      await dcs.revokeLease(lease.id);
      await assertCode(dcs.put(`${p}k`, 'v', { leaseId: lease.id }), 'lease-not-found');
      assert.equal(await dcs.get(`${p}k`), undefined);
    });

    it('deletes the keys of a lease that expires and then reports it lost', async (t) => {
      if (subject.expireLease === undefined) return t.skip('this store cannot expire a lease on demand');
      const lease = await dcs.grantLease(1_000);
      await dcs.put(`${p}leader`, 'me', { leaseId: lease.id });
      await subject.expireLease(lease.id);
      assert.equal(await dcs.get(`${p}leader`), undefined);
      await assertCode(dcs.keepAlive(lease.id), 'lease-not-found');
    });

    it('watches puts and deletes in order from a given revision, then live changes', async () => {
      const first = await dcs.put(`${p}a`, '1');
      await dcs.put(`${p}b`, '2');
      await dcs.delete(`${p}a`);
      await dcs.put(`${p.slice(0, -1)}x`, 'outside the prefix');
      const watch = record(dcs, p, first);
      try {
        await watch.waitFor(3);
        await dcs.put(`${p}c`, '3');
        await watch.waitFor(4);
      } finally {
        await watch.stop();
      }
      assert.deepEqual(watch.events.map(describeEvent), [`put ${p}a=1`, `put ${p}b=2`, `delete ${p}a`, `put ${p}c=3`]);
      assert.equal(watch.events[0]?.kv.modRevision, first);
      assert.deepEqual([...watch.revisions].sort((x, y) => x - y), watch.revisions, 'batch revisions go up');
    });

    it('resumes a watch from a later revision without replaying earlier events', async () => {
      await dcs.put(`${p}a`, '1');
      const second = await dcs.put(`${p}b`, '2');
      await dcs.delete(`${p}a`);
      const watch = record(dcs, p, second);
      try {
        await watch.waitFor(2);
      } finally {
        await watch.stop();
      }
      assert.deepEqual(watch.events.map(describeEvent), [`put ${p}b=2`, `delete ${p}a`]);
    });

    it('sees the deletes that revoking a lease causes', async () => {
      const lease = await dcs.grantLease(5_000);
      const rev = await dcs.put(`${p}leader`, 'me', { leaseId: lease.id });
      const watch = record(dcs, p, rev);
      try {
        await watch.waitFor(1);
        await dcs.revokeLease(lease.id);
        await watch.waitFor(2);
      } finally {
        await watch.stop();
      }
      assert.deepEqual(watch.events.map(describeEvent), [`put ${p}leader=me`, `delete ${p}leader`]);
    });

    it('resolves a watch when its signal aborts', async () => {
      const ac = new AbortController();
      const watching = dcs.watch(p, 0, () => undefined, ac.signal);
      await dcs.put(`${p}k`, 'v');
      ac.abort();
      assert.equal(await withinMs(watching, 2_000), undefined);
      assert.equal(await dcs.watch(p, 0, () => undefined, AbortSignal.abort()), undefined);
    });

    it('rejects a watch from a compacted revision, naming the compact revision', async (t) => {
      if (subject.compact === undefined) return t.skip('this store cannot compact on demand');
      const old = await dcs.put(`${p}k`, '1');
      const current = await dcs.put(`${p}k`, '2');
      await subject.compact(current);
      const error = await withinMs(
        dcs.watch(p, old, () => undefined, new AbortController().signal).then(
          () => assert.fail('watch resolved'),
          (e: unknown) => e,
        ),
        5_000,
      );
      assert.ok(isWardenError(error, 'dcs-unavailable'), String(error));
      assert.equal(error.details['compactRevision'], current);
    });

    it('fails at once with dcs-timeout when the caller has already aborted', async () => {
      await assertCode(dcs.get(`${p}k`, { signal: AbortSignal.abort() }), 'dcs-timeout');
    });

    it('fails a call with dcs-timeout when the store does not answer within timeoutMs', async (t) => {
      if (subject.stall === undefined) return t.skip('this store cannot be stalled');
      const resume = await subject.stall();
      try {
        const started = Date.now();
        await assertCode(dcs.get(`${p}k`, { timeoutMs: 300 }), 'dcs-timeout');
        const elapsed = Date.now() - started;
        // It gives up near its timeout, never before; the upper bound is loose (a loaded machine
        // may run the timer late): this checks behaviour, the figures are for benchmarks.
        assert.ok(elapsed >= 250 && elapsed < 10_000, `gave up after ${elapsed} ms`);
        const abortedAt = Date.now();
        await assertCode(dcs.put(`${p}k`, 'v', { signal: AbortSignal.timeout(100), timeoutMs: 60_000 }), 'dcs-timeout');
        assert.ok(Date.now() - abortedAt < 20_000, 'the signal, not the 60 s timeout, ended the call');
      } finally {
        await resume();
      }
      // A store that was stalled may need a moment to serve again (etcd re-elects its leader).
      await eventually(async () => {
        await dcs.put(`${p}k`, 'after');
        return (await dcs.get(`${p}k`))?.value === 'after' ? true : undefined;
      }, { timeoutMs: 30_000, what: 'the store to serve again after the stall' });
    });
  });
}

async function assertCode(call: Promise<unknown>, code: WardenErrorCode): Promise<void> {
  await assert.rejects(call, (e: unknown) => {
    assert.ok(isWardenError(e, code), `expected ${code}, got ${String(e)}`);
    return true;
  });
}

function describeEvent(e: WatchEvent): string {
  return e.type === 'put' ? `put ${e.kv.key}=${e.kv.value}` : `delete ${e.kv.key}`;
}

/** `promise`, or a rejection when it takes longer than `ms`. */
async function withinMs<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A running watch that records what it sees. */
function record(dcs: Dcs, prefix: string, fromRevision: number) {
  const ac = new AbortController();
  const events: WatchEvent[] = [];
  const revisions: number[] = [];
  let notify = (): void => undefined;
  const watching = dcs.watch(
    prefix,
    fromRevision,
    (batch, revision) => {
      events.push(...batch);
      revisions.push(revision);
      notify();
    },
    ac.signal,
  );
  const ended = watching.then(
    () => new Error('watch ended before the events came'),
    (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
  );
  return {
    events,
    revisions,
    /** Waits (bounded) until at least `count` events arrived; fails if the watch ends first. */
    async waitFor(count: number, timeoutMs = 5_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (events.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`saw ${events.length} of ${count} events: ${events.map(describeEvent).join(', ')}`);
        const arrived = new Promise<void>((resolve) => (notify = resolve));
        const failure = await withinMs(Promise.race([arrived.then(() => undefined), ended]), left).catch(() => undefined);
        if (failure !== undefined) throw failure;
      }
    },
    /** Aborts the watch and checks it resolved. */
    async stop(): Promise<void> {
      ac.abort();
      assert.equal(await withinMs(watching, 2_000), undefined);
    },
  };
}
