import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { isWardenError, WardenError } from '../core/errors.js';
import { MemoryDcs } from '../dcs/memory-dcs.js';
import { clusterPrefix, DEFAULT_DYNAMIC_CONFIG, KEYS } from '../ha/index.js';
import { FakePgNetwork, FakePostgres } from '../postgres/fake-postgres.js';
import { Executor, type BootstrapRestorer } from './executor.js';
import { silentLogger } from './logger.js';

// bootstrap.method pgbackrest (spec.dataSource) in the executor: the restorer replaces initdb and
// nothing else — the empty-directory check before it, the initialize key after it, and the undo
// (data moved aside, the key freed) when it fails are the bootstrap's own.

const PREFIX = clusterPrefix('ds');

function setUp(restorer: BootstrapRestorer): { clock: FakeClock; dcs: MemoryDcs; pg: FakePostgres; executor: Executor } {
  const clock = new FakeClock();
  const dcs = new MemoryDcs({ clock });
  const pg = new FakePostgres(
    {
      name: 'ds-1',
      dataDir: '/var/lib/warden/ds-1/data',
      binDir: '/usr/lib/postgresql/15/bin',
      listen: { host: '10.0.0.1', port: 5432 },
      socketDir: '/run/warden/ds-1',
      superuser: { username: 'postgres', password: 'su' },
      replication: { username: 'replicator', password: 're' },
      parameters: {},
    },
    { network: new FakePgNetwork(), clock },
  );
  const executor = new Executor(dcs, pg, { name: 'ds-1', prefix: PREFIX, dcsTimeoutMs: () => 1000, log: silentLogger, initialParameters: {}, clock, restoreBootstrap: restorer });
  return { clock, dcs, pg, executor };
}

/** Awaits `p` while the fake clock moves in 10 ms steps (the fake's commands take fake time); bounded. */
async function drive<T>(clock: FakeClock, p: Promise<T>): Promise<T> {
  let settled = false;
  const watched = p.finally(() => (settled = true));
  for (let i = 0; i < 10_000 && !settled; i++) {
    clock.advance(10);
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(settled, 'the operation ended within 100 s of fake time');
  return watched;
}

const ctx = { view: undefined, leaseId: undefined, nowMs: 0, bootstrapConfig: DEFAULT_DYNAMIC_CONFIG };

describe('executor: a bootstrap that restores instead of running initdb', () => {
  it('publishes the restored system identifier in the initialize key, as after initdb', async () => {
    let calls = 0;
    const s = setUp(async (op) => {
      calls++;
      // The fake's stand-in for a restore: an initialized data directory appears.
      await s.pg.initdb(10_000, op);
      return { message: 'restored', fields: {} };
    });
    const failed = await drive(s.clock, s.executor.run([{ kind: 'acquire-initialize' }, { kind: 'bootstrap' }], ctx));
    assert.equal(failed, undefined, failed === undefined ? '' : String(failed.error));
    assert.equal(calls, 1);
    const sysid = (await s.pg.inspectDataDir()).systemIdentifier;
    assert.ok(sysid !== undefined);
    assert.equal((await s.dcs.get(PREFIX + KEYS.initialize))?.value, sysid);
    assert.ok((await s.dcs.get(PREFIX + KEYS.config)) !== undefined);
  });

  it('moves what a failed restore wrote aside and frees the initialize key for another member', async () => {
    const s = setUp(async (op) => {
      await s.pg.initdb(10_000, op);
      throw new WardenError('backup-command-failed', 'recovery stopped short');
    });
    const failed = await drive(s.clock, s.executor.run([{ kind: 'acquire-initialize' }, { kind: 'bootstrap' }], ctx));
    assert.equal(failed?.action.kind, 'bootstrap');
    assert.ok(isWardenError(failed.error, 'backup-command-failed'));
    assert.equal((await s.pg.listMovedAside()).length, 1, 'moved aside, never deleted');
    assert.equal((await s.pg.inspectDataDir()).kind, 'missing');
    assert.equal(await s.dcs.get(PREFIX + KEYS.initialize), undefined);
  });

  it('never restores over a data directory that holds anything', async () => {
    let calls = 0;
    const s = setUp(async () => {
      calls++;
      return { message: 'restored', fields: {} };
    });
    await drive(s.clock, s.pg.initdb(10_000));
    const failed = await drive(s.clock, s.executor.run([{ kind: 'acquire-initialize' }, { kind: 'bootstrap' }], ctx));
    assert.ok(failed !== undefined && isWardenError(failed.error, 'data-dir-foreign'), String(failed?.error));
    assert.equal(calls, 0);
  });
});
