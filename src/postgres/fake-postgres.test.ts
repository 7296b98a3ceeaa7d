import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock, type TimerHandle } from '../core/clock.js';
import { isWardenError } from '../core/errors.js';
import { DEFAULT_FAKE_TIMINGS, FakePgNetwork, FakePostgres } from './fake-postgres.js';
import { postgresContract } from './postgres-contract.js';
import type { PostgresInstanceConfig } from './postgres.js';

/**
 * A FakeClock that moves itself by `stepMs` on every turn of the event loop while timers are
 * pending, so that code awaiting fake time (the contract suite, written for real servers) runs
 * through without a driver; promise continuations run between steps, as they would in real time.
 */
class SelfAdvancingClock extends FakeClock {
  private pumping = false;

  constructor(private readonly stepMs = 5) {
    super();
  }

  override setTimer(fn: () => void, delayMs: number): TimerHandle {
    const handle = super.setTimer(fn, delayMs);
    this.pump();
    return handle;
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    const turn = (): void => {
      if (this.pendingTimers() === 0) {
        this.pumping = false;
        return;
      }
      this.advance(this.stepMs);
      setImmediate(turn);
    };
    setImmediate(turn);
  }
}

let nextPort = 15_432;

function configFor(name: string): PostgresInstanceConfig {
  return {
    name,
    dataDir: `/fake/${name}/data`,
    binDir: '/fake/bin',
    listen: { host: '127.0.0.1', port: nextPort++ },
    socketDir: `/fake/${name}/run`,
    superuser: { username: 'postgres', password: 'su' },
    replication: { username: 'replicator', password: 're' },
    parameters: {},
  };
}

function asFake(pg: unknown): FakePostgres {
  assert.ok(pg instanceof FakePostgres);
  return pg;
}

postgresContract('FakePostgres', async () => {
  const clock = new SelfAdvancingClock();
  const network = new FakePgNetwork();
  return {
    instance: async (name) => new FakePostgres(configFor(name), { network, clock }),
    write: async (pg) => void asFake(pg).writeWal(64 * 1024),
    crash: async (pg) => asFake(pg).crash(),
    freezeStarts: async (pg) => {
      asFake(pg).freezeStarts();
      return async () => asFake(pg).unfreezeStarts();
    },
    makeLarge: async (pg) => asFake(pg).growDatabase(300 * 1024 * 1024),
    plantDataDir: async (pg, kind) => asFake(pg).plantDataDir(kind),
    holdsCluster: async (pg, path) => asFake(pg).movedAsideHoldsCluster(path),
    leftoverCommands: async (pg) => (asFake(pg).operationsInFlight() > 0 ? [`${asFake(pg).operationsInFlight()} operation(s) in flight`] : []),
    cleanup: async () => undefined,
  };
});

/** A primary and a streaming replica on one network, driven by hand on a FakeClock. */
async function pair(clock: FakeClock): Promise<{ network: FakePgNetwork; a: FakePostgres; b: FakePostgres }> {
  const network = new FakePgNetwork();
  const a = new FakePostgres(configFor('a'), { network, clock });
  const b = new FakePostgres(configFor('b'), { network, clock });
  await drive(clock, a.initdb(10_000));
  await a.configure({ kind: 'primary' });
  await drive(clock, a.start(10_000));
  await a.createRoles(1_000);
  await drive(clock, b.basebackup(a.config.listen, 10_000));
  await b.configure({ kind: 'replica', upstream: a.config.listen });
  await drive(clock, b.start(10_000));
  return { network, a, b };
}

/** Advances `clock` in 10 ms steps until `p` settles (at most `limitMs` of fake time). */
async function drive<T>(clock: FakeClock, p: Promise<T>, limitMs = 60_000): Promise<T> {
  let settled = false;
  const tracked = p.finally(() => {
    settled = true;
  });
  tracked.catch(() => undefined);
  for (let t = 0; !settled && t <= limitMs; t += 10) {
    await new Promise<void>((r) => setImmediate(r));
    if (!settled) clock.advance(10);
  }
  return tracked;
}

describe('FakePostgres', () => {
  it('takes its configured clock time to start, and not a moment less', async () => {
    const clock = new FakeClock();
    const pg = new FakePostgres(configFor('t'), { network: new FakePgNetwork(), clock, timings: { startMs: 1_000 } });
    await drive(clock, pg.initdb(10_000));
    await pg.configure({ kind: 'primary' });
    let started = false;
    const starting = pg.start(5_000).then(() => (started = true));
    clock.advance(999);
    await new Promise<void>((r) => setImmediate(r));
    assert.equal(started, false);
    await assert.rejects(pg.status(1_000), (e: unknown) => isWardenError(e, 'postgres-unavailable'));
    clock.advance(1);
    await starting;
    assert.equal((await pg.status(1_000)).inRecovery, false);
  });

  it('streams: a replica follows every WAL write of its primary at once, and a cascade follows the replica', async () => {
    const clock = new FakeClock();
    const { network, a, b } = await pair(clock);
    const c = new FakePostgres(configFor('c'), { network, clock });
    await drive(clock, c.basebackup(b.config.listen, 10_000));
    await c.configure({ kind: 'replica', upstream: b.config.listen });
    await drive(clock, c.start(10_000));
    const pos = a.writeWal(1_000_000);
    assert.equal((await b.status(100)).walPosition, pos);
    assert.equal((await c.status(100)).walPosition, pos);
    assert.deepEqual((await a.status(100)).replicas?.map((r) => r.applicationName), ['b']);
    assert.deepEqual((await b.status(100)).streaming, true);
    assert.throws(() => b.writeWal(1), (e: unknown) => isWardenError(e, 'postgres-command-failed'));
  });

  it('does not stream to a replica whose slot is missing on the upstream until the slot exists', async () => {
    const clock = new FakeClock();
    const { a, b } = await pair(clock);
    await b.configure({ kind: 'replica', upstream: a.config.listen, slotName: 'b' });
    assert.equal((await b.status(100)).streaming, false);
    await a.syncSlots(['b'], 1_000);
    assert.equal((await b.status(100)).streaming, true);
  });

  it('keeps a diverged former primary from streaming the new timeline until it is rewound', async () => {
    const clock = new FakeClock();
    const { a, b } = await pair(clock);
    await drive(clock, b.promote(10_000));
    a.writeWal(4096); // only on timeline 1
    await drive(clock, a.stop('fast', 10_000));
    await a.configure({ kind: 'replica', upstream: b.config.listen });
    await drive(clock, a.start(10_000));
    const diverged = await a.status(100);
    assert.equal(diverged.streaming, false);
    assert.equal(diverged.timeline, 1);
    await drive(clock, a.stop('fast', 10_000));
    const out = await drive(clock, a.rewind(b.config.listen, 10_000));
    assert.match(out, /servers diverged at WAL location .* on timeline 1/);
    await drive(clock, a.start(10_000));
    const rejoined = await a.status(100);
    assert.equal(rejoined.streaming, true);
    assert.equal(rejoined.receivedTimeline, 2);
  });

  it('lets a replica that stopped before the fork point follow the promoted one without a rewind', async () => {
    const clock = new FakeClock();
    const { network, a, b } = await pair(clock);
    const c = new FakePostgres(configFor('c'), { network, clock });
    await drive(clock, c.basebackup(a.config.listen, 10_000));
    await c.configure({ kind: 'replica', upstream: a.config.listen });
    await drive(clock, c.start(10_000));
    a.crash();
    await drive(clock, b.promote(10_000));
    await c.configure({ kind: 'replica', upstream: b.config.listen });
    const st = await c.status(100);
    assert.equal(st.streaming, true);
    assert.equal(st.timeline, 2);
  });

  it('fails the next start with the given message and reports the postmaster crashed', async () => {
    const clock = new FakeClock();
    const { a } = await pair(clock);
    await drive(clock, a.stop('fast', 10_000));
    a.failNextStart('FATAL: invalid value for parameter "shared_buffers"');
    await assert.rejects(drive(clock, a.start(10_000)), (e: unknown) => isWardenError(e, 'postgres-command-failed') && /shared_buffers/.test(e.message));
    assert.equal((await a.processState()).kind, 'crashed');
    await drive(clock, a.start(10_000));
    assert.equal((await a.processState()).kind, 'running');
  });

  it('runs a hung server into every query timeout while it keeps running', async () => {
    const clock = new FakeClock();
    const { a } = await pair(clock);
    a.hangStatus();
    const started = clock.monotonicMs();
    await assert.rejects(drive(clock, a.status(750)), (e: unknown) => isWardenError(e, 'postgres-unavailable') && e.retryable);
    assert.ok(clock.monotonicMs() - started >= 750);
    assert.equal((await a.processState()).kind, 'running');
    a.hangStatus(false);
    assert.equal((await a.status(100)).inRecovery, false);
  });

  it("answers the statements it knows and refuses others as 'unsupported in the fake'", async () => {
    const clock = new FakeClock();
    const { a, b } = await pair(clock);
    assert.deepEqual(await a.query('SELECT 1', [], 100), [{ '?column?': 1 }]);
    const lsn = await a.query('SELECT pg_current_wal_lsn()::text AS lsn', [], 100);
    assert.match(String(lsn[0]?.['lsn']), /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.deepEqual(await b.query('SELECT pg_last_wal_receive_lsn()::text AS lsn', [], 100), lsn);
    await assert.rejects(b.query('SELECT pg_current_wal_lsn()::text AS lsn', [], 100), (e: unknown) => isWardenError(e, 'postgres-command-failed'));
    await assert.rejects(a.query('DROP TABLE t', [], 100), (e: unknown) => isWardenError(e, 'postgres-command-failed') && /unsupported in the fake/.test(e.message));
  });

  it('reports pending_restart when a restart-only parameter changes, until the next start', async () => {
    const clock = new FakeClock();
    const { a } = await pair(clock);
    await a.updateSettings({ parameters: { work_mem: '8MB' } });
    assert.equal((await a.status(100)).pendingRestart, false);
    await a.updateSettings({ parameters: { shared_buffers: '256MB' } });
    assert.equal((await a.status(100)).pendingRestart, true);
    await drive(clock, a.stop('fast', 10_000));
    await drive(clock, a.start(10_000));
    assert.equal((await a.status(100)).pendingRestart, false);
  });

  it('copies at the configured rate and reports progress about once a second', async () => {
    const clock = new FakeClock();
    const { network, a } = await pair(clock);
    a.growDatabase(100 * 1024 * 1024);
    const c = new FakePostgres(configFor('c'), { network, clock, timings: { copyBytesPerSecond: 50 * 1024 * 1024 } });
    const reports: number[] = [];
    const started = clock.monotonicMs();
    await drive(clock, c.basebackup(a.config.listen, 60_000, { onProgress: (p) => reports.push(p.doneBytes) }));
    const tookMs = clock.monotonicMs() - started;
    assert.ok(tookMs >= 2_000 && tookMs < 3_000, `copy took ${tookMs} ms`);
    assert.ok(reports.length >= 3 && reports[0] === 0, `reports ${reports.join(',')}`);
    assert.ok(DEFAULT_FAKE_TIMINGS.basebackupMs > 0);
  });
});
