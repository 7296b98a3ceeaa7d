import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../core/deadline.js';
import { isWardenError } from '../core/errors.js';
import type { WardenErrorCode } from '../core/errors.js';
import type { OperationProgress, PostgresInstance, ServerStatus } from './postgres.js';

/**
 * What the suite needs beyond the port: instances, and the few things a test does to a server from
 * outside (write, kill, freeze, fill). One subject serves the whole suite, whose tests build on each
 * other in order (a primary, its replica, a promotion, a rewind), as starting PostgreSQL is slow.
 */
export interface PostgresContractSubject {
  /** A new instance with its own endpoint and a missing data dir; every instance of a subject shares the credentials. */
  readonly instance: (name: string) => Promise<PostgresInstance>;
  /** Writes some WAL on a running primary. */
  readonly write: (pg: PostgresInstance) => Promise<void>;
  /** Kills the postmaster, as kill -9 does. */
  readonly crash: (pg: PostgresInstance) => Promise<void>;
  /** Every later start of `pg` spawns a postmaster that never accepts connections; returns the undo. */
  readonly freezeStarts: (pg: PostgresInstance) => Promise<() => Promise<void>>;
  /** Makes the database of a running primary large enough that a base backup takes a few seconds. */
  readonly makeLarge: (pg: PostgresInstance) => Promise<void>;
  /** Creates the missing data dir of `pg`: empty, or holding a file that is no cluster. */
  readonly plantDataDir: (pg: PostgresInstance, kind: 'empty' | 'foreign') => Promise<void>;
  /** True when the directory at `path` (one that `pg` moved aside) still holds its cluster's files. */
  readonly holdsCluster: (pg: PostgresInstance, path: string) => Promise<boolean>;
  /** Commands (a pg_basebackup, a postmaster) still running on the data dir of `pg`. */
  readonly leftoverCommands: (pg: PostgresInstance) => Promise<string[]>;
  readonly cleanup: () => Promise<void>;
}

/** How long a real server may take for what the suite waits on (a fake takes clock time, far less). */
const WAIT_MS = 30_000;

function code(c: WardenErrorCode): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(isWardenError(e, c), `expected a WardenError ${c}, got ${String(e)}`);
    return true;
  };
}

function until<T>(what: string, fn: () => Promise<T | undefined>): Promise<T> {
  return eventually(
    async () => {
      try {
        return await fn();
      } catch {
        return undefined;
      }
    },
    { timeoutMs: WAIT_MS, intervalMs: 50, what },
  );
}

/** Waits until `pg` is a standby streaming `timeline` (and, when given, has WAL up to `atLeast`). */
function streamingOn(pg: PostgresInstance, timeline: number, atLeast = 0n): Promise<ServerStatus> {
  return until(`${pg.config.name} streaming on timeline ${timeline}`, async () => {
    const s = await pg.status(2_000);
    return s.inRecovery && s.streaming === true && s.receivedTimeline === timeline && s.timeline === timeline && s.walPosition >= atLeast ? s : undefined;
  });
}

async function slotList(pg: PostgresInstance): Promise<string[]> {
  const rows = await pg.query('SELECT slot_name::text AS slot_name, active FROM pg_replication_slots ORDER BY 1', [], 5_000);
  return rows.map((r) => String(r['slot_name']));
}

/** The behaviour every PostgresInstance must have: one suite, run against FakePostgres and against LocalPostgres with PostgreSQL 15. */
export function postgresContract(name: string, make: () => Promise<PostgresContractSubject>): void {
  describe(`PostgresInstance contract: ${name}`, () => {
    let s: PostgresContractSubject;
    let a: PostgresInstance;
    let b: PostgresInstance;

    before(async () => {
      s = await make();
      a = await s.instance('pg-a');
      b = await s.instance('pg-b');
    });
    after(async () => {
      await s.cleanup();
    });

    it('tells a missing, an empty and a foreign data dir apart, and refuses to initdb or clone into a foreign one', async () => {
      const x = await s.instance('pg-x');
      assert.deepEqual(await x.inspectDataDir(), { kind: 'missing' });
      await s.plantDataDir(x, 'empty');
      assert.deepEqual(await x.inspectDataDir(), { kind: 'empty' });
      const y = await s.instance('pg-y');
      await s.plantDataDir(y, 'foreign');
      assert.equal((await y.inspectDataDir()).kind, 'invalid');
      await assert.rejects(y.initdb(30_000), code('data-dir-foreign'));
      await assert.rejects(y.basebackup(a.config.listen, 30_000), code('data-dir-foreign'));
      assert.equal((await y.inspectDataDir()).kind, 'invalid', 'the foreign files are left alone');
      await assert.rejects(y.configure({ kind: 'primary' }), code('postgres-command-failed'));
      await assert.rejects(y.start(5_000), code('postgres-command-failed'));
      assert.deepEqual(await y.processState(), { kind: 'stopped' });
    });

    it('initializes a primary that starts on timeline 1, and refuses a second initdb over it', async () => {
      await a.initdb(60_000);
      const inspected = await a.inspectDataDir();
      assert.equal(inspected.kind, 'initialized');
      assert.equal(inspected.clusterState, 'shut down');
      assert.equal(inspected.timeline, 1);
      assert.ok(inspected.systemIdentifier !== undefined && /^\d+$/.test(inspected.systemIdentifier));
      await assert.rejects(a.initdb(60_000), code('data-dir-foreign'));
      await a.configure({ kind: 'primary' });
      assert.deepEqual(await a.processState(), { kind: 'stopped' });
      await assert.rejects(a.status(2_000), code('postgres-unavailable'));
      await a.start(WAIT_MS);
      assert.equal((await a.processState()).kind, 'running');
      await a.createRoles(10_000);
      const st = await a.status(5_000);
      assert.equal(st.inRecovery, false);
      assert.equal(st.timeline, 1);
      assert.equal(st.systemIdentifier, inspected.systemIdentifier);
      assert.equal(st.pendingRestart, false);
      assert.deepEqual(st.replicas, []);
      assert.deepEqual(await a.query('SELECT pg_is_in_recovery() AS r', [], 5_000), [{ r: false }]);
    });

    it('clones a replica that streams from the primary through its slot and follows its WAL', async () => {
      await a.syncSlots(['pg_b'], 5_000);
      await b.basebackup(a.config.listen, 120_000);
      assert.equal((await b.inspectDataDir()).systemIdentifier, (await a.inspectDataDir()).systemIdentifier);
      await b.configure({ kind: 'replica', upstream: a.config.listen, slotName: 'pg_b' });
      await b.start(WAIT_MS);
      const first = await streamingOn(b, 1);
      assert.equal(first.systemIdentifier, (await a.status(2_000)).systemIdentifier);
      await s.write(a);
      const target = (await a.status(2_000)).walPosition;
      assert.ok(target > first.walPosition, 'the write moved the primary on');
      await streamingOn(b, 1, target);
      const rep = await until('pg-b in the primary replica list', async () => {
        const r = (await a.status(2_000)).replicas?.find((x) => x.applicationName === 'pg-b');
        return r?.state === 'streaming' && r.flushLsn !== undefined ? r : undefined;
      });
      assert.equal(rep.syncState, 'async');
      const slots = await a.query('SELECT slot_name::text AS slot_name, active FROM pg_replication_slots ORDER BY 1', [], 5_000);
      assert.deepEqual(slots, [{ slot_name: 'pg_b', active: true }]);
      assert.deepEqual(await b.query('SELECT pg_is_in_recovery() AS r', [], 5_000), [{ r: true }]);
    });

    it("shows a synchronous standby as 'sync' in the primary's replica list", async () => {
      const syncStateOfB = async (): Promise<string | undefined> => (await a.status(2_000)).replicas?.find((x) => x.applicationName === 'pg-b')?.syncState;
      await a.updateSettings({ synchronousStandbyNames: 'FIRST 1 ("pg-b")' });
      await until('pg-b synchronous', async () => ((await syncStateOfB()) === 'sync' ? true : undefined));
      await a.updateSettings({ synchronousStandbyNames: '' });
      await until('pg-b asynchronous again', async () => ((await syncStateOfB()) === 'async' ? true : undefined));
    });

    it('syncs slots: creates missing ones, drops inactive unknown ones and keeps active ones', async () => {
      await a.syncSlots(['pg_b', 'spare'], 5_000);
      assert.deepEqual(await slotList(a), ['pg_b', 'spare']);
      await a.syncSlots(['pg_b'], 5_000);
      assert.deepEqual(await slotList(a), ['pg_b']);
      await a.syncSlots([], 5_000);
      assert.deepEqual(await slotList(a), ['pg_b'], 'the active slot stays');
      await assert.rejects(a.syncSlots(['Bad-Name'], 5_000), code('config-invalid'));
    });

    it("reports 'crashed' after the postmaster is killed; start() brings it back and the replica streams again", async () => {
      await s.crash(a);
      const crashed = await until('pg-a crashed', async () => {
        const p = await a.processState();
        return p.kind === 'crashed' ? p : undefined;
      });
      assert.equal(crashed.kind, 'crashed');
      await assert.rejects(a.status(2_000), code('postgres-unavailable'));
      assert.equal((await a.inspectDataDir()).clusterState, 'in production', 'a crash leaves no shutdown checkpoint');
      await a.start(WAIT_MS);
      assert.equal((await a.processState()).kind, 'running');
      assert.equal((await a.status(2_000)).inRecovery, false);
      await streamingOn(b, 1);
    });

    it('promotes the replica to the next timeline, where it writes', async () => {
      await b.promote(60_000);
      const st = await b.status(2_000);
      assert.equal(st.inRecovery, false);
      assert.equal(st.timeline, 2);
      await s.write(b);
      assert.ok((await b.status(2_000)).walPosition > st.walPosition);
    });

    it('recovers and rewinds the diverged old primary, which then streams from the new primary on its timeline', async () => {
      // pg-a still runs as a primary on timeline 1: what it writes now never reaches pg-b.
      await s.write(a);
      await a.stop('immediate', 10_000);
      assert.deepEqual(await a.processState(), { kind: 'stopped' });
      assert.equal((await a.inspectDataDir()).clusterState, 'in production');
      await a.recoverCrashed(60_000);
      assert.equal((await a.inspectDataDir()).clusterState, 'shut down');
      await b.syncSlots(['pg_a'], 5_000);
      const progress: OperationProgress[] = [];
      await a.rewind(b.config.listen, 60_000, { onProgress: (p) => progress.push(p) });
      await a.configure({ kind: 'replica', upstream: b.config.listen, slotName: 'pg_a' });
      await a.start(WAIT_MS);
      await s.write(b);
      await streamingOn(a, 2, (await b.status(2_000)).walPosition);
    });

    it("stops fast and immediately: a standby stopped fast says 'shut down in recovery', a primary stopped immediately 'in production'", async () => {
      await a.stop('fast', WAIT_MS);
      assert.deepEqual(await a.processState(), { kind: 'stopped' });
      assert.equal((await a.inspectDataDir()).clusterState, 'shut down in recovery');
      await a.stop('fast', 5_000);
      await b.stop('immediate', 10_000);
      assert.deepEqual(await b.processState(), { kind: 'stopped' });
      assert.equal((await b.inspectDataDir()).clusterState, 'in production');
      await b.start(WAIT_MS);
      assert.equal((await b.status(2_000)).timeline, 2);
    });

    it("fails a start that does not accept connections in time with 'postgres-unavailable' and leaves the postmaster running", async () => {
      const unfreeze = await s.freezeStarts(a);
      try {
        await assert.rejects(a.start(2_000), code('postgres-unavailable'));
        assert.equal((await a.processState()).kind, 'running');
        await assert.rejects(a.status(1_000), code('postgres-unavailable'));
        await a.stop('immediate', 10_000);
        assert.deepEqual(await a.processState(), { kind: 'stopped' });
      } finally {
        await unfreeze();
      }
    });

    it("cancels a start through its AbortSignal with 'operation-cancelled', leaving no postmaster", async () => {
      const unfreeze = await s.freezeStarts(a);
      try {
        const ac = new AbortController();
        const outcome = assert.rejects(a.start(120_000, { signal: ac.signal }), code('operation-cancelled'));
        await until('the frozen postmaster to run', async () => ((await a.processState()).kind === 'running' ? true : undefined));
        ac.abort(new Error('the test cancels the start'));
        await outcome;
        assert.deepEqual(await a.processState(), { kind: 'stopped' });
        await until('nothing left running on pg-a', async () => ((await s.leftoverCommands(a)).length === 0 ? true : undefined));
      } finally {
        await unfreeze();
      }
      await assert.rejects(a.start(5_000, { signal: AbortSignal.abort() }), code('operation-cancelled'));
      assert.deepEqual(await a.processState(), { kind: 'stopped' });
    });

    it('moves a data dir aside, never deleting it, and lists it', async () => {
      await assert.rejects(b.moveDataDirAside(), code('postgres-command-failed'), 'not while the server runs');
      const before = await a.listMovedAside();
      const moved = await a.moveDataDirAside();
      assert.ok(moved.startsWith(`${a.config.dataDir}.moved-`), moved);
      assert.deepEqual(await a.inspectDataDir(), { kind: 'missing' });
      assert.deepEqual(await a.listMovedAside(), [...before, moved].sort());
      assert.equal(await s.holdsCluster(a, moved), true, 'the moved-aside directory keeps its files');
      await assert.rejects(a.moveDataDirAside(), code('not-found'));
    });

    it("cancels a long base backup through its AbortSignal with 'operation-cancelled', after progress, leaving nothing behind", async () => {
      await s.makeLarge(b);
      const c = await s.instance('pg-c');
      const ac = new AbortController();
      const progress: OperationProgress[] = [];
      await assert.rejects(
        c.basebackup(b.config.listen, 300_000, {
          signal: ac.signal,
          onProgress: (p) => {
            progress.push(p);
            ac.abort(new Error('the test cancels the copy'));
          },
        }),
        code('operation-cancelled'),
      );
      assert.ok(progress.length >= 1, 'progress was reported before the cancellation');
      const total = progress[0]?.totalBytes;
      assert.ok(total !== undefined && total > 100 * 1024 * 1024, `the copy was large (${total ?? '?'} bytes)`);
      assert.ok(['missing', 'empty'].includes((await c.inspectDataDir()).kind), 'what the copy wrote is gone');
      await until('nothing left running on pg-c', async () => ((await s.leftoverCommands(c)).length === 0 ? true : undefined));
      assert.deepEqual(await c.processState(), { kind: 'stopped' });
    });
  });
}
