import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { eventually } from '../../src/core/deadline.js';
import { isWardenError } from '../../src/core/errors.js';
import { lagBytes } from '../../src/core/lsn.js';
import { LocalPostgres } from '../../src/postgres/postgres-instance.js';
import type { PostgresInstanceConfig, ProcessState, ServerStatus } from '../../src/postgres/postgres.js';
import { PgSandbox } from '../support/pg.js';

const isRoot = process.getuid?.() === 0;

async function count(pgi: LocalPostgres, where = 'true'): Promise<number> {
  const rows = await pgi.query(`SELECT count(*)::int AS n FROM t WHERE ${where}`, [], 5_000);
  return Number(rows[0]?.['n']);
}

function first<T>(xs: readonly T[]): T {
  const x = xs[0];
  assert.ok(x !== undefined);
  return x;
}

/** Waits until `pgi` is a replica streaming on `timeline`. */
function streamingOn(pgi: LocalPostgres, timeline: number): Promise<ServerStatus> {
  return eventually(
    async () => {
      const s = await pgi.status(2_000);
      return s.inRecovery && s.streaming === true && s.timeline === timeline ? s : undefined;
    },
    { timeoutMs: 30_000, what: `${pgi.config.name} streaming on timeline ${timeline}` },
  );
}

describe('LocalPostgres against a real PostgreSQL 15', () => {
  let sandbox: PgSandbox;
  let a: LocalPostgres;
  let b: LocalPostgres;

  before(async () => {
    sandbox = await PgSandbox.create();
    const [ca, cb] = await sandbox.configs(['pg-a', 'pg-b']);
    assert.ok(ca !== undefined && cb !== undefined);
    a = sandbox.instance(ca);
    b = sandbox.instance(cb);
  });

  after(async () => {
    await sandbox.cleanup();
  });

  it('initializes, configures and starts a primary whose status says timeline 1', async () => {
    assert.deepEqual(await a.inspectDataDir(), { kind: 'missing' });
    await a.initdb(60_000);
    const inspected = await a.inspectDataDir();
    assert.equal(inspected.kind, 'initialized');
    assert.equal(inspected.clusterState, 'shut down');
    assert.equal(inspected.timeline, 1);
    const dirStat = await stat(a.config.dataDir);
    assert.equal(dirStat.mode & 0o777, 0o700);
    if (isRoot) assert.notEqual(dirStat.uid, 0);

    await a.configure({ kind: 'primary' });
    await a.configure({ kind: 'primary' });
    const conf = await readFile(join(a.config.dataDir, 'postgresql.conf'), 'utf8');
    assert.equal(conf.split('\n').filter((l) => l === "include_if_exists = 'warden.conf'").length, 1);
    assert.equal(existsSync(join(a.config.dataDir, 'standby.signal')), false);
    const hba = await readFile(join(a.config.dataDir, 'pg_hba.conf'), 'utf8');
    assert.doesNotMatch(hba, /0\.0\.0\.0\/0/);
    const pgpass = await stat(a.pgpassPath);
    assert.equal(pgpass.mode & 0o777, 0o600);

    await a.start(30_000);
    await a.createRoles(10_000);
    const s = await a.status(5_000);
    assert.equal(s.inRecovery, false);
    assert.equal(s.timeline, 1);
    assert.equal(s.systemIdentifier, inspected.systemIdentifier);
    assert.equal(s.pendingRestart, false);
    assert.deepEqual(s.replicas, []);
    assert.equal((await a.processState()).kind, 'running');
    assert.ok(existsSync(a.logPath));

    // The replication role exists and logs in with its password over TCP.
    const repl = new pg.Client({
      host: a.config.listen.host,
      port: a.config.listen.port,
      user: a.config.replication.username,
      password: a.config.replication.password,
      database: 'postgres',
      connectionTimeoutMillis: 5_000,
    });
    await repl.connect();
    try {
      const r = await repl.query<{ rolreplication: boolean }>('SELECT rolreplication FROM pg_roles WHERE rolname = current_user');
      assert.equal(r.rows[0]?.rolreplication, true);
    } finally {
      await repl.end();
    }
  });

  it('refuses to initdb or clone into a directory that is not empty', async () => {
    const config = first(await sandbox.configs(['pg-foreign']));
    const x = sandbox.instance(config);
    await mkdir(config.dataDir, { recursive: true });
    await writeFile(join(config.dataDir, 'precious.txt'), 'keep me');
    await assert.rejects(x.initdb(30_000), (e: unknown) => isWardenError(e, 'data-dir-foreign'));
    await assert.rejects(x.basebackup(a.config.listen, 30_000), (e: unknown) => isWardenError(e, 'data-dir-foreign'));
    assert.equal(await readFile(join(config.dataDir, 'precious.txt'), 'utf8'), 'keep me');
  });

  it('rejects start with the server log when postgres exits during start, and reports it crashed', async () => {
    const good = first(await sandbox.configs(['pg-bad']));
    const config: PostgresInstanceConfig = { ...good, parameters: { ...good.parameters, shared_buffers: 'plenty' } };
    const x = sandbox.instance(config);
    await x.initdb(60_000);
    await x.configure({ kind: 'primary' });
    await assert.rejects(x.start(30_000), (e: unknown) => {
      assert.ok(isWardenError(e, 'postgres-command-failed'));
      assert.match(e.message, /shared_buffers/);
      return true;
    });
    const state = await x.processState();
    assert.equal(state.kind, 'crashed');
  });

  it('clones a replica through a slot; it streams and its lag is reported', async () => {
    await a.query('CREATE TABLE t (id int PRIMARY KEY, note text)', [], 5_000);
    await a.query("INSERT INTO t SELECT g, 'before clone' FROM generate_series(1, 100) g", [], 5_000);
    await a.syncSlots(['pg_b'], 5_000);

    await b.basebackup(a.config.listen, 60_000);
    await b.configure({ kind: 'replica', upstream: a.config.listen, slotName: 'pg_b' });
    assert.ok(existsSync(join(b.config.dataDir, 'standby.signal')));
    await b.start(30_000);
    const first = await streamingOn(b, 1);
    assert.equal(first.systemIdentifier, (await a.status(2_000)).systemIdentifier);

    await a.query("INSERT INTO t SELECT g, 'after clone' FROM generate_series(101, 200) g", [], 5_000);
    const target = (await a.status(2_000)).walPosition;
    await eventually(
      async () => {
        const s = await b.status(2_000);
        return s.replayLsn !== undefined && s.replayLsn >= target && s.walPosition >= target ? s : undefined;
      },
      { timeoutMs: 20_000, what: 'pg-b replaying up to the primary' },
    );
    assert.equal(await count(b), 200);

    const rep = await eventually(
      async () => {
        const s = await a.status(2_000);
        const r = s.replicas?.find((x) => x.applicationName === 'pg-b');
        return r?.state === 'streaming' && r.flushLsn !== undefined ? { s, r } : undefined;
      },
      { timeoutMs: 20_000, what: 'pg-b in pg_stat_replication' },
    );
    assert.ok(rep.r.flushLsn !== undefined);
    assert.ok(lagBytes(rep.s.walPosition, rep.r.flushLsn) >= 0);
    const slot = await a.query('SELECT active FROM pg_replication_slots WHERE slot_name = $1', ['pg_b'], 5_000);
    assert.equal(slot[0]?.['active'], true);
  });

  it('syncs slots: creates missing ones, drops inactive unknown ones and keeps active ones', async () => {
    const slots = async (): Promise<string[]> =>
      (await a.query('SELECT slot_name::text AS s FROM pg_replication_slots ORDER BY 1', [], 5_000)).map((r) => String(r['s']));
    await a.syncSlots(['pg_b', 'spare'], 5_000);
    assert.deepEqual(await slots(), ['pg_b', 'spare']);
    await a.syncSlots(['pg_b'], 5_000);
    assert.deepEqual(await slots(), ['pg_b']);
    await a.syncSlots([], 5_000);
    assert.deepEqual(await slots(), ['pg_b']);
    await assert.rejects(a.syncSlots(['Bad-Name'], 5_000), (e: unknown) => isWardenError(e, 'config-invalid'));
  });

  it("reports 'crashed' after the postmaster is SIGKILLed, and start() brings it back", async () => {
    const running = await a.processState();
    assert.equal(running.kind, 'running');
    if (running.kind !== 'running') return;
    process.kill(running.pid, 'SIGKILL');
    const crashed = await eventually(
      async () => {
        const s = await a.processState();
        return s.kind === 'crashed' ? s : undefined;
      },
      { timeoutMs: 10_000, what: 'pg-a crashed' },
    );
    assert.equal(crashed.signal, 'SIGKILL');
    await assert.rejects(a.status(2_000), (e: unknown) => isWardenError(e, 'postgres-unavailable') && e.retryable);

    await a.start(30_000);
    const again = await a.processState();
    assert.equal(again.kind, 'running');
    assert.equal((await a.status(2_000)).inRecovery, false);
    assert.equal(await count(a), 200);
    await streamingOn(b, 1);
  });

  it('promotes the replica to timeline 2, where it accepts writes', async () => {
    await b.promote(30_000);
    const s = await b.status(2_000);
    assert.equal(s.inRecovery, false);
    assert.equal(s.timeline, 2);
    await b.query("INSERT INTO t VALUES (1001, 'on the new primary')", [], 5_000);
    assert.equal(await count(b), 201);
  });

  it('recovers and rewinds the diverged old primary, which then streams from the new primary', async () => {
    // pg-a still runs as a primary on timeline 1: rows written there now never reach pg-b.
    await a.query("INSERT INTO t SELECT g, 'diverged' FROM generate_series(2001, 2100) g", [], 5_000);
    await a.stop('immediate', 10_000);
    assert.equal((await a.inspectDataDir()).clusterState, 'in production');

    await a.recoverCrashed(60_000);
    assert.equal((await a.inspectDataDir()).clusterState, 'shut down');

    await b.syncSlots(['pg_a'], 5_000);
    const output = await a.rewind(b.config.listen, 60_000);
    assert.match(output, /Done!/);
    await a.configure({ kind: 'replica', upstream: b.config.listen, slotName: 'pg_a' });
    await a.start(30_000);
    await streamingOn(a, 2);

    await b.query("INSERT INTO t VALUES (1002, 'after the rewind')", [], 5_000);
    await eventually(async () => ((await count(a, 'id = 1002')) === 1 ? true : undefined), {
      timeoutMs: 20_000,
      what: 'row 1002 on pg-a',
    });
    assert.equal(await count(a, "note = 'diverged'"), 0);
    assert.equal(await count(a), 202);
  });

  it("stops with 'fast' and 'immediate', also a postmaster this object did not start", async () => {
    await a.stop('fast', 30_000);
    assert.deepEqual(await a.processState(), { kind: 'stopped' });
    assert.equal((await a.inspectDataDir()).clusterState, 'shut down in recovery');
    await a.stop('fast', 5_000);

    await b.stop('immediate', 10_000);
    assert.deepEqual(await b.processState(), { kind: 'stopped' });
    assert.equal((await b.inspectDataDir()).clusterState, 'in production');

    // A second adapter for the same data dir (as after an agent restart) finds b's postmaster by its pid file.
    await b.start(30_000);
    const mine = await b.processState();
    const other = new LocalPostgres(b.config);
    assert.deepEqual(await other.processState(), mine);
    await assert.rejects(other.start(5_000), (e: unknown) => isWardenError(e, 'postgres-command-failed'));
    await other.stop('fast', 30_000);
    assert.deepEqual(await other.processState(), { kind: 'stopped' });
    assert.equal((await b.inspectDataDir()).clusterState, 'shut down');
  });

  it('kills the postmaster when the process that started it dies (invariant 1 watchdog)', async () => {
    const modulePath = fileURLToPath(new URL('../../src/postgres/postgres-instance.ts', import.meta.url));
    const agentCode = [
      `import { LocalPostgres } from ${JSON.stringify(modulePath)};`,
      `const pg = new LocalPostgres(JSON.parse(process.env.PG_CONFIG));`,
      `await pg.start(30000);`,
      `console.log(JSON.stringify(await pg.processState()));`,
      `setInterval(() => undefined, 60000);`,
    ].join('\n');
    const agent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', agentCode], {
      env: { ...process.env, PG_CONFIG: JSON.stringify(b.config) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    agent.stdout.on('data', (d: Buffer) => (out += d.toString()));
    agent.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      const line = await eventually(() => (out.includes('\n') ? out.trim() : undefined), {
        timeoutMs: 30_000,
        what: `the agent process to start postgres (stderr: ${err})`,
      });
      const started = JSON.parse(line) as ProcessState;
      assert.equal(started.kind, 'running');
      const observer = new LocalPostgres(b.config);
      assert.deepEqual(await observer.processState(), started);
      agent.kill('SIGKILL');
      await eventually(async () => ((await observer.processState()).kind === 'stopped' ? true : undefined), {
        timeoutMs: 10_000,
        what: 'the postmaster to die with its agent',
      });
    } finally {
      agent.kill('SIGKILL');
    }
  });

  it('moves a data dir aside and keeps its files', async () => {
    const moved = await a.moveDataDirAside();
    assert.ok(moved.startsWith(`${a.config.dataDir}.moved-`));
    assert.doesNotMatch(moved.slice(a.config.dataDir.length), /:/);
    assert.ok(existsSync(join(moved, 'PG_VERSION')));
    assert.ok(existsSync(join(moved, 'global', 'pg_control')));
    assert.deepEqual(await a.inspectDataDir(), { kind: 'missing' });
    assert.ok(existsSync(a.logPath));
  });
});

describe('a replica restarted before it replayed its primary lowering max_connections (real PostgreSQL 15)', () => {
  let sandbox: PgSandbox;
  let p: LocalPostgres;
  let r: LocalPostgres;
  const show = async (x: LocalPostgres): Promise<string> => String((await x.query('SHOW max_connections', [], 5_000))[0]?.['max_connections']);

  before(async () => {
    sandbox = await PgSandbox.create();
    const [cp, cr] = await sandbox.configs(['pg-lp', 'pg-lr']);
    assert.ok(cp !== undefined && cr !== undefined);
    p = sandbox.instance(cp);
    r = sandbox.instance(cr);
  });

  after(async () => {
    await sandbox.cleanup();
  });

  it('starts with pg_control\'s higher value instead of refusing, then shows the lower one as a pending restart that a restart applies', async () => {
    const at = (n: number): Record<string, string | number | boolean> => ({ ...p.config.parameters, max_connections: n });
    await p.initdb(60_000);
    await p.updateSettings({ parameters: at(150) });
    await p.configure({ kind: 'primary' });
    await p.start(30_000);
    await p.createRoles(10_000);
    await p.syncSlots(['pg_lr'], 5_000);
    await r.basebackup(p.config.listen, 60_000);
    await r.updateSettings({ parameters: at(150) });
    await r.configure({ kind: 'replica', upstream: p.config.listen, slotName: 'pg_lr' });
    await r.start(30_000);
    await streamingOn(r, 1);
    assert.equal(await show(r), '150');

    // The replica stops before the primary restarts with 120: its pg_control keeps 150.
    await r.stop('fast', 30_000);
    await p.updateSettings({ parameters: at(120) });
    await p.stop('fast', 30_000);
    await p.configure({ kind: 'primary' });
    await p.start(30_000);
    assert.equal(await show(p), '120');
    assert.equal((await r.inspectDataDir()).controlSettings?.max_connections, 150);

    await r.updateSettings({ parameters: at(120) });
    await r.configure({ kind: 'replica', upstream: p.config.listen, slotName: 'pg_lr' });
    assert.match(await readFile(join(r.config.dataDir, 'warden.conf'), 'utf8'), /^max_connections = '150'$/m);
    await r.start(30_000);
    await streamingOn(r, 1);
    assert.equal(await show(r), '150', 'the replica runs with its primary\'s old value until it has replayed the change');

    // Replay of the primary's parameter change brings pg_control down to 120: warden.conf follows.
    await p.query('SELECT pg_switch_wal()', [], 5_000);
    const pending = await eventually(
      async () => {
        const s = await r.status(2_000);
        return s.pendingRestart ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500, what: 'pg-lr: the lower max_connections pending a restart' },
    );
    assert.deepEqual(pending.restartLowers, ['max_connections']);
    assert.equal((await r.inspectDataDir()).controlSettings?.max_connections, 120);

    await r.stop('fast', 30_000);
    await r.configure({ kind: 'replica', upstream: p.config.listen, slotName: 'pg_lr' });
    await r.start(30_000);
    const s = await streamingOn(r, 1);
    assert.equal(s.pendingRestart, false);
    assert.equal(await show(r), '120');
  });

  it('one change that lowers max_connections and raises max_worker_processes: primary first, then the paused replica restarts with both and replays on', async () => {
    const both = { ...p.config.parameters, max_connections: 110, max_worker_processes: 16 };
    await p.updateSettings({ parameters: both });
    await r.updateSettings({ parameters: both });
    await p.stop('fast', 30_000);
    await p.configure({ kind: 'primary' });
    await p.start(30_000);
    await p.query('CREATE TABLE IF NOT EXISTS mixed (id int)', [], 5_000);
    await p.query('INSERT INTO mixed VALUES (1)', [], 5_000);
    // The running replica (120 / 8) replays the primary's 16 workers: PostgreSQL records them in its
    // pg_control and pauses its recovery there (a hot standby below its primary) until it restarts.
    assert.equal((await r.status(2_000)).pendingRestart, true);
    await eventually(async () => ((await r.inspectDataDir()).controlSettings?.max_worker_processes === 16 ? true : undefined), { timeoutMs: 30_000, intervalMs: 500, what: 'pg-lr: the primary\'s 16 workers replayed into pg_control' });
    await r.stop('fast', 30_000);
    await r.configure({ kind: 'replica', upstream: p.config.listen, slotName: 'pg_lr' });
    await r.start(30_000);
    await streamingOn(r, 1);
    const target = (await p.status(2_000)).walPosition;
    await eventually(async () => {
      const st = await r.status(2_000);
      return st.replayLsn !== undefined && st.replayLsn >= target ? st : undefined;
    }, { timeoutMs: 30_000, intervalMs: 500, what: 'pg-lr replaying past the change' });
    assert.equal(await show(r), '110');
    assert.equal(String((await r.query('SHOW max_worker_processes', [], 5_000))[0]?.['max_worker_processes']), '16');
    assert.equal(Number((await r.query('SELECT count(*)::int AS n FROM mixed', [], 5_000))[0]?.['n']), 1);
  });
});
