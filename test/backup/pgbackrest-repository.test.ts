import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { archiveCommand, PgBackRestRepository, renderPgBackRestConf, restoreCommand, type PgServer, type RunIdentity } from '../../src/backup/index.js';
import { eventually } from '../../src/core/deadline.js';
import { isWardenError } from '../../src/core/errors.js';
import type { LocalPostgres } from '../../src/postgres/postgres-instance.js';
import { PgSandbox, PG_RUN_USER } from '../support/pg.js';

// The pgBackRest adapter behind the backup port, against the real pgbackrest 2.45 and PostgreSQL 15:
// what each call does, and how pgBackRest's failures reach Warden.

const isRoot = process.getuid?.() === 0;
const identity: RunIdentity | undefined = isRoot
  ? { uid: Number(execFileSync('id', ['-u', PG_RUN_USER], { encoding: 'utf8' }).trim()), gid: Number(execFileSync('id', ['-g', PG_RUN_USER], { encoding: 'utf8' }).trim()) }
  : undefined;

describe('PgBackRestRepository against real pgBackRest and PostgreSQL', { timeout: 600_000 }, () => {
  let sandbox: PgSandbox;
  let a: LocalPostgres;
  let other: LocalPostgres;
  let repo: PgBackRestRepository;
  let root = '';
  const serverOf = (pg: LocalPostgres): PgServer => ({ dataDir: pg.config.dataDir, port: pg.config.listen.port, socketDir: pg.config.socketDir });

  /** A dir the run user owns. */
  const ownedDir = async (path: string): Promise<string> => {
    await mkdir(path, { recursive: true, mode: 0o750 });
    if (identity !== undefined) await chown(path, identity.uid, identity.gid);
    return path;
  };

  before(async () => {
    sandbox = await PgSandbox.create();
    root = sandbox.root;
    const backupDir = await ownedDir(join(root, 'backup'));
    const repos = [{ name: 'repo1', path: await ownedDir(join(backupDir, 'repo1')) }];
    const lockPath = await ownedDir(join(backupDir, 'lock'));
    const logPath = await ownedDir(join(backupDir, 'log'));
    const configFile = join(backupDir, 'pgbackrest.conf');
    await writeFile(configFile, renderPgBackRestConf({ stanza: 't', repos, globalOptions: { 'repo1-retention-full': '1' }, lockPath, logPath }).text, { mode: 0o644 });
    repo = new PgBackRestRepository({ stanza: 't', configFile, ...(identity === undefined ? {} : { identity }) });

    const [ca, cb] = await sandbox.configs(['a', 'b']);
    assert.ok(ca !== undefined && cb !== undefined);
    const memberBase = await ownedDir(join(root, 'a-pgbackrest'));
    const memberConf = join(root, 'a-pgbackrest.conf');
    const member = {
      lockPath: await ownedDir(join(memberBase, 'lock')),
      logPath: await ownedDir(join(memberBase, 'log')),
      spoolPath: await ownedDir(join(memberBase, 'spool')),
    };
    await writeFile(
      memberConf,
      renderPgBackRestConf({ stanza: 't', repos, globalOptions: {}, ...member, member: { spoolPath: member.spoolPath, server: { dataDir: ca.dataDir, port: ca.listen.port, socketDir: ca.socketDir } } }).text,
      { mode: 0o644 },
    );
    a = sandbox.instance({ ...ca, archive: { archiveCommand: archiveCommand(memberConf, 't'), restoreCommand: restoreCommand(memberConf, 't') } });
    other = sandbox.instance(cb);
    for (const pg of [a, other]) {
      await pg.initdb(60_000);
      await pg.configure({ kind: 'primary' });
      await pg.start(30_000);
      await pg.createRoles(10_000);
    }
  });

  after(async () => {
    await sandbox.cleanup();
  });

  it('reports a stanza that does not exist yet as status 1, not as a failure', async () => {
    const info = await repo.info({ timeoutMs: 30_000 });
    assert.equal(info.statusCode, 1, info.statusMessage);
    assert.deepEqual(info.sets, []);
  });

  it('creates the stanza, again without harm, and checks that WAL reaches the repository', async () => {
    await repo.createStanza(serverOf(a), { timeoutMs: 60_000 });
    await repo.createStanza(serverOf(a), { timeoutMs: 60_000 });
    await repo.check(serverOf(a), { timeoutMs: 120_000 });
    const info = await repo.info({ timeoutMs: 30_000 });
    assert.equal(info.systemIds.length, 1);
    assert.match(info.systemIds[0] ?? '', /^\d{16,20}$/);
    assert.ok(info.archive !== undefined, 'WAL is archived');
  });

  it('refuses the repository for a cluster of another system identifier, as a conflict', async () => {
    await assert.rejects(repo.createStanza(serverOf(other), { timeoutMs: 60_000 }), (e: unknown) => {
      assert.ok(isWardenError(e, 'conflict'), String(e));
      assert.match(e.message, /pgbackrest stanza-create \(stanza t\): .*\[pgBackRest error \d+\]/);
      return true;
    });
  });

  it('takes a full backup and returns its set with sizes and WAL range', async () => {
    await a.query('CREATE TABLE rows_t (id int)', [], 10_000);
    await a.query('INSERT INTO rows_t SELECT generate_series(1, 1000)', [], 10_000);
    const set = await repo.backup({ primary: serverOf(a) }, 'full', { timeoutMs: 300_000 });
    assert.equal(set.type, 'full');
    assert.ok(set.databaseBytes > 1_000_000 && set.repositoryBytes > 0);
    assert.match(set.walStart, /^[0-9A-F]{24}$/);
    const info = await repo.info({ timeoutMs: 30_000 });
    assert.deepEqual(info.sets.map((s) => s.label), [set.label]);
  });

  it('restores to an LSN: exactly the rows committed before it', async () => {
    await a.query('INSERT INTO rows_t SELECT generate_series(1001, 1500)', [], 10_000);
    const lsn = String((await a.query('SELECT pg_current_wal_lsn()::text AS l', [], 10_000))[0]?.['l']);
    await a.query('INSERT INTO rows_t SELECT generate_series(1501, 2000)', [], 10_000);
    await a.query('SELECT pg_switch_wal()', [], 10_000);
    // The restore needs the WAL past the target in the repository: wait for the archiver.
    await eventually(
      async () => ((await a.query('SELECT last_archived_wal >= pg_walfile_name($1::pg_lsn) AS done FROM pg_stat_archiver', [lsn], 10_000))[0]?.['done'] === true ? true : undefined),
      { timeoutMs: 120_000, intervalMs: 500, what: "the target's WAL in the repository" },
    );
    const [cr] = await sandbox.configs(['r']);
    assert.ok(cr !== undefined);
    await ownedDir(join(root, 'r'));
    await repo.restore(
      { dataDir: cr.dataDir, target: { kind: 'lsn', lsn }, archiveMode: 'off', lockPath: await ownedDir(join(root, 'r-lock')), logPath: await ownedDir(join(root, 'r-log')) },
      { timeoutMs: 300_000 },
    );
    assert.ok(existsSync(join(cr.dataDir, 'recovery.signal')));
    const r = sandbox.instance({ ...cr, superuser: a.config.superuser, replication: a.config.replication });
    await r.configure({ kind: 'primary' });
    await r.start(60_000);
    await eventually(async () => ((await r.query('SELECT pg_is_in_recovery() AS rec', [], 5_000))[0]?.['rec'] === false ? true : undefined), { timeoutMs: 120_000, intervalMs: 200, what: 'the end of recovery' });
    const count = (await r.query('SELECT count(*)::int AS n FROM rows_t', [], 10_000))[0]?.['n'];
    assert.equal(count, 1500);
    const archiveMode = (await r.query("SELECT current_setting('archive_mode') AS m", [], 10_000))[0]?.['m'];
    assert.equal(archiveMode, 'off', 'a restored copy with archive-mode=off never archives into the repository');
    await r.stop('fast', 30_000);
  });

  it('says no set fits a time before the first backup, as not-found', async () => {
    const [cx] = await sandbox.configs(['x']);
    assert.ok(cx !== undefined);
    await assert.rejects(
      repo.restore({ dataDir: cx.dataDir, target: { kind: 'time', time: '2020-01-01 00:00:00+00' }, archiveMode: 'off', lockPath: await ownedDir(join(root, 'x-lock')), logPath: await ownedDir(join(root, 'x-log')) }, { timeoutMs: 60_000 }),
      (e: unknown) => {
        assert.ok(isWardenError(e, 'not-found'), String(e));
        assert.match(e.message, /unable to find backup set with stop time less than '2020-01-01 00:00:00\+00' \[pgBackRest error 75\]/);
        return true;
      },
    );
  });

  it('stops pgbackrest when the signal aborts, with a retryable error', async () => {
    // The caller's signal aborts 300 ms into the backup.
    const running = repo.backup({ primary: serverOf(a) }, 'full', { timeoutMs: 300_000, signal: AbortSignal.timeout(300) });
    await assert.rejects(running, (e: unknown) => {
      assert.ok(isWardenError(e, 'backup-command-failed'), String(e));
      assert.equal(e.retryable, true);
      assert.match(e.message, /was cancelled/);
      return true;
    });
    // The lock is released: the next backup runs.
    await eventually(async () => (await repo.info({ timeoutMs: 30_000 })).backupRunning ? undefined : true, { timeoutMs: 30_000, what: 'the backup lock to be released' });
    const set = await repo.backup({ primary: serverOf(a) }, 'incr', { timeoutMs: 300_000 });
    assert.equal(set.type, 'incr');
  });

  it('keeps what retention says: one full (repo1-retention-full 1) and nothing that depended on an older one', async () => {
    const full = await repo.backup({ primary: serverOf(a) }, 'full', { timeoutMs: 300_000 });
    await repo.expire({ timeoutMs: 120_000 });
    const info = await repo.info({ timeoutMs: 30_000 });
    assert.deepEqual(info.sets.map((s) => s.label), [full.label]);
  });
});
