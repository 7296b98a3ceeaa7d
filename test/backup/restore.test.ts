import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../../src/core/deadline.js';
import { signalPid } from '../../src/core/process-info.js';
import type { RestoreOutput } from '../../src/cli/backup-commands.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { listCluster, postmasterPid, processTree, readState, sql } from '../support/cluster.js';

// `warden restore --into NEW` (point-in-time recovery into a new data directory) against real
// pgBackRest 2.45, PostgreSQL 15 and etcd. A writer commits one row per transaction and the
// server records each commit's time (track_commit_timestamp): restoring to a row's commit time
// yields exactly the rows committed at or before it (before it with --exclusive), and to a
// transaction id, an LSN or a restore point exactly the rows up to there. A time in a quiet period
// (no commit after it anywhere in the archive) yields every row committed before it; a time after a
// failover is reached on the new timeline. Bad targets: exit 2, nothing created.

const SPEC = `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: pitr
spec:
  instances: [{ name: instance1, replicas: 2 }]
  warden: { etcd: { members: 1 } }
  patroni:
    dynamicConfiguration:
      postgresql:
        parameters:
          track_commit_timestamp: "on"
  backups:
    pgbackrest:
      repos:
        - name: repo1
          volume: {}
`;

/** Microseconds since the epoch of PostgreSQL's timestamptz text ('2026-12-02 03:04:05.12345+00'). */
function micros(ts: string): bigint {
  const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?\+00$/.exec(ts);
  assert.ok(m !== null && m[1] !== undefined && m[2] !== undefined, `timestamp ${ts}`);
  return BigInt(Date.parse(`${m[1]}T${m[2]}Z`)) * 1000n + BigInt((m[3] ?? '').padEnd(6, '0'));
}

describe('warden restore --into: point-in-time recovery (real pgBackRest, PostgreSQL, etcd)', { timeout: 600_000 }, () => {
  let dir = '';
  let rt = '';
  const ROWS_SQL = "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM rows";
  let rows: { id: number; xid: string; ts: string }[] = [];
  let leader = { host: '', port: 0 };
  let lsnAfter40 = '';

  const restore = async (args: readonly string[]): Promise<{ code: number | null; out: RestoreOutput | undefined; stderr: string }> => {
    const r = await runWarden(['restore', '--dir', rt, '--format', 'json', ...args], { timeoutMs: 300_000 });
    return { code: r.code, out: r.code === 0 ? (JSON.parse(r.stdout) as RestoreOutput) : undefined, stderr: `${r.stdout}\n${r.stderr}` };
  };
  /** Switches out the current segment (after a record that is no commit) and waits until it is archived. */
  const archiveCurrentSegment = async (at: { host: string; port: number }): Promise<void> => {
    await sql(rt, at.host, at.port, 'CHECKPOINT');
    const last = String((await sql(rt, at.host, at.port, 'SELECT pg_walfile_name(pg_switch_wal()) AS w')).rows[0]?.['w']);
    await eventually(async () => {
      const a = await sql(rt, at.host, at.port, 'SELECT last_archived_wal FROM pg_stat_archiver');
      // A whole segment at or past the switched one: after a failover the old timeline's
      // 0000000N…XX.partial (archived at the promotion) must not count as the segment just switched.
      const w = String(a.rows[0]?.['last_archived_wal']);
      return /^[0-9A-F]{24}$/.test(w) && w >= last ? true : undefined;
    }, { timeoutMs: 120_000, intervalMs: 500, what: `${last} archived` });
  };
  const ids = (pred: (r: { id: number; ts: string }) => boolean): string => rows.filter(pred).map((r) => r.id).join(',');

  before(async () => {
    dir = await traversableTempDir('warden-restore-');
    rt = join(dir, 'rt');
    await writeFile(join(dir, 'cluster.yaml'), SPEC);
  });

  after(async () => {
    if (dir !== '') {
      await runWarden(['down', '--dir', rt, '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('sets up: a backup, then 60 transactions of one row each with their commit times, all archived', async () => {
    const up = await runWarden(['up', '--static', '-f', join(dir, 'cluster.yaml'), '--dir', rt], { timeoutMs: 400_000 });
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
    const l = (await listCluster(rt)).members.find((m) => m.role === 'leader');
    assert.ok(l);
    leader = { host: l.host, port: l.port };
    await sql(rt, leader.host, leader.port, 'CREATE TABLE rows (id int PRIMARY KEY)');
    const b = await runWarden(['backup', '--dir', rt, '--type', 'full', '--wait'], { timeoutMs: 600_000 });
    assert.equal(b.code, 0, `${b.stdout}\n${b.stderr}`);
    for (let i = 1; i <= 60; i++) {
      await sql(rt, leader.host, leader.port, 'INSERT INTO rows VALUES ($1)', [i]);
      if (i === 40) lsnAfter40 = String((await sql(rt, leader.host, leader.port, 'SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]?.['l']);
      if (i === 50) await sql(rt, leader.host, leader.port, "SELECT pg_create_restore_point('after-50')");
    }
    const r = await sql(rt, leader.host, leader.port, 'SELECT id, xmin::text AS xid, pg_xact_commit_timestamp(xmin)::text AS ts FROM rows ORDER BY id');
    rows = r.rows.map((x) => ({ id: Number(x['id']), xid: String(x['xid']), ts: String(x['ts']) }));
    assert.equal(rows.length, 60);
    const last = String((await sql(rt, leader.host, leader.port, 'SELECT pg_walfile_name(pg_switch_wal()) AS w')).rows[0]?.['w']);
    await eventually(async () => {
      const a = await sql(rt, leader.host, leader.port, 'SELECT last_archived_wal FROM pg_stat_archiver');
      return String(a.rows[0]?.['last_archived_wal']) >= last ? true : undefined;
    }, { timeoutMs: 120_000, intervalMs: 500, what: `${last} archived` });
  });

  it('restores to a commit time: exactly the rows committed at or before it', async () => {
    const t = rows[29]?.ts ?? '';
    const r = await restore(['--into', 'at-time', '--time', t, '--check-sql', ROWS_SQL]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.out?.check?.value, ids((x) => micros(x.ts) <= micros(t)));
    assert.ok((r.out?.timeline ?? 0) >= 2, 'the restored copy was promoted onto a timeline of its own');
    process.stdout.write(`# restore --time: ${r.out?.restoreSeconds ?? '?'} s restore + ${r.out?.recoverySeconds ?? '?'} s recovery\n`);
  });

  it('with --exclusive: exactly the rows committed before it', async () => {
    const t = rows[29]?.ts ?? '';
    const r = await restore(['--into', 'before-time', '--time', t, '--exclusive', '--check-sql', ROWS_SQL]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.out?.check?.value, ids((x) => micros(x.ts) < micros(t)));
  });

  it('restores to a transaction id: the rows up to and including that transaction', async () => {
    const x = rows[44];
    assert.ok(x);
    const r = await restore(['--into', 'at-xid', '--xid', x.xid, '--check-sql', ROWS_SQL]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.out?.check?.value, ids((y) => y.id <= 45));
  });

  it('restores to an LSN and to a named restore point', async () => {
    const l = await restore(['--into', 'at-lsn', '--lsn', lsnAfter40, '--check-sql', ROWS_SQL]);
    assert.equal(l.code, 0, l.stderr);
    assert.equal(l.out?.check?.value, ids((y) => y.id <= 40));
    const n = await restore(['--into', 'at-name', '--name', 'after-50', '--check-sql', ROWS_SQL]);
    assert.equal(n.code, 0, n.stderr);
    assert.equal(n.out?.check?.value, ids((y) => y.id <= 50));
  });

  it('a time in a quiet period, after the last commit the archive holds: every row, and the text output says what it did', async () => {
    // Nothing commits after this instant; only a checkpoint and a segment switch reach the archive.
    const quiet = String((await sql(rt, leader.host, leader.port, 'SELECT clock_timestamp()::text AS t')).rows[0]?.['t']);
    await archiveCurrentSegment(leader);
    const r = await runWarden(['restore', '--dir', rt, '--into', 'quiet', '--time', quiet, '--check-sql', ROWS_SQL], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2, r.stdout);
    const escaped = (x: string): string => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    assert.match(lines[0] ?? '', new RegExp(`^restored \\S+ into ${escaped(join(rt, 'restores', 'quiet', 'data'))} and recovered it to ${escaped(quiet)}.* \\(timeline \\d+\\) in \\d+\\.\\d \\+ \\d+\\.\\d s; it is stopped, with archiving off$`));
    assert.equal(lines[1], `check: ${ROWS_SQL} → ${ids(() => true)}`);
  });

  it('refuses bad targets with exit 2 and creates nothing', async () => {
    const before = await readdir(join(rt, 'restores'));
    const now = String((await sql(rt, leader.host, leader.port, 'SELECT clock_timestamp()::text AS t')).rows[0]?.['t']);
    const cases: ReadonlyArray<readonly [string[], RegExp]> = [
      [['--into', 'early', '--time', '2020-01-01T00:00:00Z'], /is before the end of the first backup/],
      [['--into', 'late', '--time', now], /is after the latest WAL in the repository|is in the future/],
      [['--into', 'future', '--time', '2999-01-01T00:00:00Z'], /is in the future/],
      [['--into', 'badtime', '--time', 'yesterday'], /--time "yesterday": not an instant with a time zone/],
      [['--into', 'lsnearly', '--lsn', '0/1'], /--lsn 0\/1 is before the end of the first backup/],
      [['--into', 'lsnlate', '--lsn', 'FF/0'], /--lsn FF\/0 is after the latest WAL in the repository/],
      [['--into', 'xidnever', '--xid', '99999999'], /the commit of transaction 99999999 is not in the archived WAL after backup \S+: recovery replayed all of it \(up to LSN [0-9A-F]+\/[0-9A-F]+\) without reaching it; nothing was restored/],
      [['--into', 'nameless', '--name', 'never-made'], /restore point never-made is not in the archived WAL after backup/],
      [['--into', 'norepo', '--latest', '--repo', 'repo3'], /--repo "repo3": not a repository of cluster "pitr"/],
      [['--into', 'at-time', '--latest'], /exists already/],
      [['--into', 'Bad_Name', '--latest'], /--into "Bad_Name"/],
      [['--into', 'two', '--latest', '--xid', '5'], /give exactly one target/],
      [['--latest'], /say where to restore: --into NEW/],
      [['--into', 'inplace', '--latest', '--in-place'], /give --into NEW or --in-place, not both/],
    ];
    for (const [args, re] of cases) {
      const r = await restore(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
    }
    assert.deepEqual(await readdir(join(rt, 'restores')), before, 'nothing was created');
    assert.ok(!existsSync(join(rt, 'restores', 'early')));
  });

  it('after a failover: a time on the new timeline yields exactly the rows committed by then on either timeline', async () => {
    const state = await readState(rt);
    const old = (await listCluster(rt)).members.find((m) => m.role === 'leader');
    const oldMember = state.members.find((m) => m.name === old?.name);
    assert.ok(old !== undefined && oldMember !== undefined && oldMember.agentPid !== undefined && oldMember.agentPid !== null);
    const pids = [...(await processTree(oldMember.agentPid))];
    const pm = await postmasterPid(oldMember.dataDir);
    if (pm !== undefined && !pids.includes(pm)) pids.push(...(await processTree(pm)));
    for (const pid of pids) signalPid(pid, 'SIGKILL');
    const next = await eventually(async () => {
      const l = await listCluster(rt);
      const lead = l.members.find((x) => x.role === 'leader' && x.state === 'running' && x.name !== old.name);
      return lead !== undefined && (lead.timeline ?? 0) > (old.timeline ?? 0) ? lead : undefined;
    }, { timeoutMs: 120_000, intervalMs: 200, what: 'a new leader on a new timeline' });
    leader = { host: next.host, port: next.port };
    for (let i = 61; i <= 70; i++) await sql(rt, leader.host, leader.port, 'INSERT INTO rows VALUES ($1)', [i]);
    const r = await sql(rt, leader.host, leader.port, 'SELECT id, xmin::text AS xid, pg_xact_commit_timestamp(xmin)::text AS ts FROM rows ORDER BY id');
    rows = r.rows.map((x) => ({ id: Number(x['id']), xid: String(x['xid']), ts: String(x['ts']) }));
    assert.equal(rows.length, 70, 'the 60 rows replicated long before the kill survived it');
    await archiveCurrentSegment(leader);
    const t = rows[64]?.ts ?? '';
    const res = await restore(['--into', 'after-failover', '--time', t, '--check-sql', ROWS_SQL]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.out?.check?.value, ids((x) => micros(x.ts) <= micros(t)));
    assert.ok((res.out?.timeline ?? 0) > (next.timeline ?? 0), `promoted past the new leader's timeline ${next.timeline ?? '?'}: ${res.out?.timeline ?? '?'}`);
    // And a time before the failover still resolves on the old timeline.
    const early = rows[19]?.ts ?? '';
    const e = await restore(['--into', 'before-failover', '--time', early, '--check-sql', ROWS_SQL]);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(e.out?.check?.value, ids((x) => micros(x.ts) <= micros(early)));
  });
});
