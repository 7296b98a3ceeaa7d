import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../../src/core/deadline.js';
import { etcdClientFromState } from '../../src/controller/state-file.js';
import type { ListOutput } from '../../src/cli/list.js';
import type { BackupsOutput, ExpireOutput, RestoreDrillOutput } from '../../src/cli/backup-commands.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { readState, sql } from '../support/cluster.js';

// Backups in the local runtime against real pgBackRest 2.45, PostgreSQL 15 and etcd: archiving from
// the first minute, a full backup from a standby, the report, and a restore drill that finds the rows.

const SPEC = `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: bk
spec:
  instances: [{ name: instance1, replicas: 3 }]
  warden: { etcd: { members: 1 } }
  backups:
    pgbackrest:
      global: { repo1-retention-full: 2 }
      repos:
        - name: repo1
          volume: {}
`;

/** Every file under `dir` (relative paths). */
async function filesUnder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

describe('backups with pgBackRest in the local runtime (real pgBackRest, PostgreSQL, etcd)', { timeout: 900_000 }, () => {
  let dir = '';
  let leader: { name: string; host: string; port: number } = { name: '', host: '', port: 0 };
  let fullLabel = '';

  const list = async (): Promise<ListOutput> => {
    const r = await runWarden(['list', '--dir', join(dir, 'rt'), '--format', 'json'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListOutput;
  };
  const backups = async (): Promise<BackupsOutput> => {
    const r = await runWarden(['backups', '--dir', join(dir, 'rt'), '--format', 'json'], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    return JSON.parse(r.stdout) as BackupsOutput;
  };

  before(async () => {
    dir = await traversableTempDir('warden-backup-it-');
    await writeFile(join(dir, 'cluster.yaml'), SPEC);
  });

  after(async () => {
    if (dir !== '') {
      await runWarden(['down', '--dir', join(dir, 'rt'), '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('brings the cluster up with archiving on and the stanza created', async () => {
    const r = await runWarden(['up', '--static', '-f', join(dir, 'cluster.yaml'), '--dir', join(dir, 'rt')], { timeoutMs: 400_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /backups: stanza bk ready; WAL is archived to .*\/rt\/backup\/repo1/);
    const l = await list();
    const m = l.members.find((x) => x.role === 'leader');
    assert.ok(m, 'a leader');
    leader = { name: m.name, host: m.host, port: m.port };
    for (const member of l.members) {
      const settings = await sql(join(dir, 'rt'), member.host, member.port, "SELECT current_setting('archive_mode') AS mode, current_setting('archive_command') AS cmd");
      assert.equal(settings.rows[0]?.['mode'], 'on', `${member.name}: archive_mode`);
      assert.match(String(settings.rows[0]?.['cmd']), new RegExp(`members/${member.name}/pgbackrest\\.conf' '--stanza=bk' archive-push`));
    }
  });

  it('refuses a second backup while one holds the cluster\'s backup/running key', async () => {
    const rt = join(dir, 'rt');
    const state = await readState(rt);
    const etcd = etcdClientFromState(state, 5000);
    try {
      const lease = await etcd.grantLease(60_000);
      const record = { type: 'full', from: 'elsewhere', primary: leader.name, startedAtMs: Date.now(), pid: 1 };
      assert.ok(await etcd.create('/warden/bk/backup/running', JSON.stringify(record), { leaseId: lease.id }));
      const r = await runWarden(['backup', '--dir', rt, '--type', 'full', '--wait'], { timeoutMs: 120_000 });
      assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stderr, /another backup holds the cluster's backup lock: a full backup from elsewhere started at .* \(pid 1\) is running/);
      const e = await runWarden(['expire', '--dir', rt], { timeoutMs: 120_000 });
      assert.equal(e.code, 1, `${e.stdout}\n${e.stderr}`);
      assert.match(e.stderr, /another backup holds the cluster's backup lock/, 'expire waits its turn too: pgBackRest may delete a backup in progress');
      await etcd.revokeLease(lease.id);
    } finally {
      etcd.close();
    }
  });

  it('takes a full backup from a standby and reports it', async () => {
    const rt = join(dir, 'rt');
    await sql(rt, leader.host, leader.port, 'CREATE TABLE drill_rows (id int PRIMARY KEY, note text)');
    await sql(rt, leader.host, leader.port, "INSERT INTO drill_rows SELECT g, 'before the backup' FROM generate_series(1, 50000) g");
    const r = await runWarden(['backup', '--dir', rt, '--type', 'full', '--wait', '--format', 'json'], { timeoutMs: 600_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout) as { from: string; primary: string; set: { label: string; type: string; databaseBytes: number; durationSeconds: number } };
    assert.equal(out.primary, leader.name);
    assert.notEqual(out.from, leader.name, 'a healthy standby serves the backup, not the primary');
    assert.equal(out.set.type, 'full');
    assert.ok(out.set.databaseBytes > 1_000_000, `database size ${out.set.databaseBytes}`);
    fullLabel = out.set.label;
    // warden list and the leader's /metrics report it (age, size, duration).
    const l = await list();
    assert.ok(l.lastBackup !== null && !('error' in l.lastBackup), JSON.stringify(l.lastBackup));
    assert.equal(l.lastBackup.label, fullLabel);
    assert.equal(l.lastBackup.from, out.from);
    assert.equal(l.lastBackup.fromStandby, true);
    const text = await runWarden(['list', '--dir', rt], { timeoutMs: 20_000 });
    assert.match(text.stdout, new RegExp(`^last backup: ${fullLabel} full from ${out.from} \\(a standby\\): [\\d.]+ MB in \\d+ s, finished \\S+Z \\(\\d+ s ago\\)$`, 'm'));
    const apiUrl = l.members.find((m) => m.name === leader.name)?.apiUrl ?? '';
    const metrics = await eventually(async () => {
      const body = await (await fetch(new URL('/metrics', apiUrl), { signal: AbortSignal.timeout(5000) })).text();
      return /warden_backup_last_size_bytes\{[^}]*\} [1-9]/.test(body) ? body : undefined;
    }, { timeoutMs: 30_000, intervalMs: 1000, what: "the last backup in the leader's /metrics" });
    assert.match(metrics, /warden_backup_last_duration_seconds\{[^}]*\} \d/);
    assert.match(metrics, /warden_backup_last_age_seconds\{[^}]*\} \d/);
    process.stdout.write(`# full backup ${out.set.label}: ${out.set.databaseBytes} bytes in ${out.set.durationSeconds} s from ${out.from}\n`);
  });

  it('lists the set, the recoverable window and a recovery point that reaches zero once WAL is archived', async () => {
    const rt = join(dir, 'rt');
    // Rows after the backup: the drill must find them too, replayed from the archive.
    await sql(rt, leader.host, leader.port, "INSERT INTO drill_rows SELECT g, 'after the backup' FROM generate_series(50001, 60000) g");
    await sql(rt, leader.host, leader.port, 'SELECT pg_switch_wal()');
    const b = await eventually(
      async () => {
        // WAL written after the switch (autoanalyze of the rows above, at its own time) would wait
        // for archive_timeout (60 s), and a second round of it can outlast the deadline: switch
        // again each time (a switch on an empty segment is a no-op).
        await sql(rt, leader.host, leader.port, 'SELECT pg_switch_wal()');
        const o = await backups();
        return 'bytesNotArchived' in o.recoveryPoint && o.recoveryPoint.bytesNotArchived === 0 ? o : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 1000, what: 'every WAL byte archived' },
    );
    assert.equal(b.status.code, 0, b.status.message);
    assert.equal(b.backups.length, 1);
    const set = b.backups[0];
    assert.ok(set !== undefined);
    assert.equal(set.label, fullLabel);
    assert.equal(set.type, 'full');
    assert.ok(set.databaseBytes > 0 && set.repositoryBytes > 0 && set.durationSeconds >= 0);
    assert.match(set.walStart, /^[0-9A-F]{24}$/);
    assert.ok(b.archive !== null && b.archive.min <= set.walStart && b.archive.max >= set.walStop);
    assert.ok(b.recoverableWindow.earliest !== null && b.recoverableWindow.latest !== null);
    assert.ok(Date.parse(b.recoverableWindow.latest) >= Date.parse(b.recoverableWindow.earliest), JSON.stringify(b.recoverableWindow));
    assert.ok('failing' in b.recoveryPoint && !b.recoveryPoint.failing);
    assert.equal(b.running, null);
  });

  it('restores the latest backup in a drill that finds every row and pushes nothing into the repository', async () => {
    const rt = join(dir, 'rt');
    const archiveBefore = await filesUnder(join(rt, 'backup', 'repo1', 'archive'));
    const r = await runWarden(['restore-drill', '--dir', rt, '--format', 'json', '--check-sql', 'SELECT count(*) FROM drill_rows'], { timeoutMs: 600_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const drill = JSON.parse(r.stdout) as RestoreDrillOutput;
    assert.equal(drill.label, fullLabel);
    assert.equal(drill.check.value, '60000', 'rows from before and after the backup');
    assert.ok(drill.megabytesPerSecond > 0 && drill.restoreSeconds > 0);
    assert.ok(drill.timeline >= 2, 'the restored copy ended recovery on a timeline of its own');
    process.stdout.write(`# restore drill: ${drill.databaseBytes} bytes restored in ${drill.restoreSeconds} s (${drill.megabytesPerSecond.toFixed(1)} MB/s), writable after ${drill.recoverySeconds} s more\n`);
    // The drill's promotion wrote a new timeline's .history: it must not be in the cluster's archive.
    const archiveAfter = await filesUnder(join(rt, 'backup', 'repo1', 'archive'));
    const added = archiveAfter.filter((f) => !archiveBefore.includes(f));
    assert.deepEqual(added.filter((f) => /\.history/.test(f) || /\/0{7}[2-9A-F]/.test(f)), [], `files the drill added: ${added.join(', ')}`);
    const scratch = (await readdir(join(rt, 'backup'))).filter((f) => f.startsWith('drill-'));
    assert.deepEqual(scratch, [], 'the scratch dir is removed');
  });

  it('takes an incremental backup on top of the full one', async () => {
    const rt = join(dir, 'rt');
    await sql(rt, leader.host, leader.port, "UPDATE drill_rows SET note = 'changed' WHERE id <= 100");
    const r = await runWarden(['backup', '--dir', rt, '--type', 'incr', '--wait', '--format', 'json'], { timeoutMs: 600_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout) as { set: { type: string; prior: string | null; copiedBytes: number; databaseBytes: number } };
    assert.equal(out.set.type, 'incr');
    assert.equal(out.set.prior, fullLabel);
    assert.ok(out.set.copiedBytes < out.set.databaseBytes, 'an incremental copies less than the whole database');
  });

  it('only the leader archived: replicas never ran archive-push', async () => {
    const rt = join(dir, 'rt');
    const l = await list();
    for (const m of l.members.filter((x) => x.role !== 'leader')) {
      const logs = await filesUnder(join(rt, 'members', m.name, 'pgbackrest', 'log'));
      assert.deepEqual(logs.filter((f) => f.includes('archive-push')), [], `${m.name} ran archive-push`);
    }
    const leaderLogs = await filesUnder(join(rt, 'members', leader.name, 'pgbackrest', 'log'));
    assert.ok(leaderLogs.some((f) => f.includes('archive-push')), `the leader's archive-push log: ${leaderLogs.join(', ')}`);
  });

  it('after a switchover the new leader archives: its timeline history and new WAL reach the repository', async () => {
    const rt = join(dir, 'rt');
    const before = await list();
    const candidate = before.members.find((m) => m.role !== 'leader' && m.state === 'streaming');
    assert.ok(candidate, 'a streaming replica');
    const r = await runWarden(['switchover', '--dir', rt, '--candidate', candidate.name, '--force'], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const l = await eventually(async () => {
      const x = await list();
      return x.members.some((m) => m.role === 'leader' && m.name === candidate.name && m.state === 'running') ? x : undefined;
    }, { timeoutMs: 120_000, intervalMs: 500, what: `${candidate.name} leading` });
    const now = l.members.find((m) => m.name === candidate.name);
    assert.ok(now !== undefined && (now.timeline ?? 0) >= 2);
    await sql(rt, now.host, now.port, "INSERT INTO drill_rows SELECT g, 'after the switchover' FROM generate_series(60001, 61000) g");
    await sql(rt, now.host, now.port, 'SELECT pg_switch_wal()');
    const b = await eventually(
      async () => {
        const o = await backups();
        return 'bytesNotArchived' in o.recoveryPoint && o.recoveryPoint.primary === candidate.name && o.recoveryPoint.bytesNotArchived === 0 ? o : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 1000, what: 'the new leader\'s WAL archived' },
    );
    assert.ok(b.archive !== null && b.archive.max.startsWith(`0000000${now.timeline ?? 0}`), `archive max ${b.archive?.max ?? 'none'} on timeline ${now.timeline ?? 0}`);
    const files = await filesUnder(join(rt, 'backup', 'repo1', 'archive'));
    assert.ok(files.some((f) => f.endsWith(`0000000${now.timeline ?? 0}.history`)), `no ${now.timeline ?? 0}.history among ${files.length} archive files`);
  });

  it('runs a backup in the background without --wait, and lists it when done', async () => {
    const rt = join(dir, 'rt');
    const r = await runWarden(['backup', '--dir', rt, '--type', 'diff'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /diff backup started in the background \(pid \d+\)/);
    const logFile = /its output: (\S+);/.exec(r.stdout)?.[1] ?? '';
    const b = await eventually(async () => {
      const o = await backups();
      return o.backups.some((s) => s.type === 'diff') && o.running === null ? o : undefined;
    }, { timeoutMs: 300_000, intervalMs: 1000, what: 'the background diff backup' }).catch(async (e: unknown) => {
      // What the background run said is the only account of why it did not finish.
      throw new Error(`${String(e)}\n${logFile}:\n${await readFile(logFile, 'utf8').catch((x: unknown) => String(x))}`);
    });
    const diff = b.backups.find((s) => s.type === 'diff');
    assert.equal(diff?.prior, fullLabel);
    // Right after the switchover above the standby's control file may still name the old timeline;
    // the backup then first brings it to the present one (pgBackRest would refuse, error 58).
    const said = await readFile(logFile, 'utf8');
    assert.doesNotMatch(said, /does not match pg_control timeline/);
    process.stdout.write(`# background diff backup: ${/control file named timeline .*$/m.exec(said)?.[0] ?? "the standby's control file was on the present timeline already"}\n`);
  });

  it('expires: nothing that retention keeps, one set by name (never the newest), unknown sets refused with exit 2', async () => {
    const rt = join(dir, 'rt');
    const sets = (await backups()).backups;
    const incr = sets.find((s) => s.type === 'incr');
    const newest = sets.at(-1);
    assert.ok(incr !== undefined && newest !== undefined && newest.type === 'diff', `sets: ${sets.map((s) => `${s.label} ${s.type}`).join(', ')}`);
    const expire = async (args: readonly string[]): Promise<{ code: number | null; out: string }> => {
      const r = await runWarden(['expire', '--dir', rt, ...args], { timeoutMs: 300_000 });
      return { code: r.code, out: `${r.stdout}\n${r.stderr}` };
    };
    const unknown = await expire(['--set', '20200101-000000F']);
    assert.equal(unknown.code, 2, unknown.out);
    assert.match(unknown.out, /--set "20200101-000000F": not a backup set of cluster "bk" \(it has .*\)/);
    const latest = await expire(['--set', newest.label]);
    assert.equal(latest.code, 2, latest.out);
    assert.match(latest.out, new RegExp(`--set ${newest.label} is the newest backup set`));
    const repo = await expire(['--repo', 'repo7']);
    assert.equal(repo.code, 2, repo.out);
    const kept = await expire(['--format', 'json']);
    assert.equal(kept.code, 0, kept.out);
    assert.deepEqual((JSON.parse(kept.out) as ExpireOutput).removed, [], 'repo1-retention-full: 2 keeps the one full and what depends on it');
    assert.equal((await backups()).backups.length, sets.length, 'nothing removed by the refusals either');
    const one = await expire(['--set', incr.label]);
    assert.equal(one.code, 0, one.out);
    assert.match(one.out, new RegExp(`^expired 1 set\\(s\\): ${incr.label} \\([\\d.]+ MB in the repository\\); ${sets.length - 1} kept`));
    const left = (await backups()).backups.map((s) => s.label);
    assert.deepEqual(left, sets.filter((s) => s.label !== incr.label).map((s) => s.label), 'only the incremental set went (the diff depends on the full)');
  });
});
