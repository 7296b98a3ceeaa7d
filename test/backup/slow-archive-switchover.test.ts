import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chown, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BackupsOutput } from '../../src/cli/backup-commands.js';
import type { ListMember } from '../../src/cli/list.js';
import { lookupRunUser } from '../../src/controller/runtime-layout.js';
import { eventually } from '../../src/core/deadline.js';
import { childPids, processCommandLine, signalPid } from '../../src/core/process-info.js';
import { backupClusterSpec } from '../support/backup-spec.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { listCluster, postmasterPid, sql } from '../support/cluster.js';

// A switchover does not wait for the archive (issue "Backups"), against real pgBackRest 2.45,
// PostgreSQL 15 and etcd: the leader's archive_command is held (its pgBackRest archive lock taken by
// a process of the test, so archive-push waits out its 60 s archive-timeout), a WAL segment waits
// for it, and a switchover is asked. A fast shutdown waits for the archiver, so before the fix the
// switchover timed out after 30 s. Now it completes at once; the segment is not lost: the new
// primary, which streamed it, archives it once the lock is gone.

const SPEC = backupClusterSpec('sa', 3);

describe('a switchover with the archive stuck (real pgBackRest, PostgreSQL, etcd)', { timeout: 600_000 }, () => {
  let dir = '';
  let rt = '';
  let holder: ChildProcess | undefined;

  const leaderOf = (members: readonly ListMember[]): ListMember => {
    const m = members.find((x) => x.role === 'leader' && x.state === 'running');
    assert.ok(m, `a running leader among ${JSON.stringify(members.map((x) => [x.name, x.role, x.state]))}`);
    return m;
  };
  const backups = async (): Promise<BackupsOutput> => {
    const r = await runWarden(['backups', '--dir', rt, '--format', 'json'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as BackupsOutput;
  };
  const releaseLock = (): void => {
    if (holder?.pid !== undefined && holder.exitCode === null) signalPid(holder.pid, 'SIGKILL');
  };

  before(async () => {
    dir = await traversableTempDir('warden-slow-archive-');
    rt = join(dir, 'rt');
    await writeFile(join(dir, 'cluster.yaml'), SPEC);
  });

  after(async () => {
    releaseLock();
    if (dir !== '') {
      await runWarden(['down', '--dir', rt, '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('switches over within seconds while archive_command hangs, and the waiting segment reaches the repository from the new primary', async () => {
    const up = await runWarden(['up', '--static', '-f', join(dir, 'cluster.yaml'), '--dir', rt], { timeoutMs: 400_000 });
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
    const lead = leaderOf((await listCluster(rt)).members);
    // The archive lock of the leader's pgBackRest (its own lock path): held, archive-push waits for the async process it believes runs.
    const lock = join(rt, 'members', lead.name, 'pgbackrest', 'lock', 'sa-archive.lock');
    await writeFile(lock, '');
    const run = lookupRunUser();
    if (run !== undefined) await chown(lock, run.uid, run.gid);
    holder = spawn('flock', [lock, 'sleep', '600'], { stdio: 'ignore' });
    await eventually(async () => ((await processCommandLine(holder?.pid ?? 0))?.includes('sleep') === true || (await childPids(holder?.pid ?? 0)).length > 0 ? true : undefined), { timeoutMs: 10_000, what: 'the lock held' });
    await sql(rt, lead.host, lead.port, 'CREATE TABLE t AS SELECT generate_series(1, 1000) AS i');
    const segment = String((await sql(rt, lead.host, lead.port, 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS w')).rows[0]?.['w']);
    await sql(rt, lead.host, lead.port, 'SELECT pg_switch_wal()');
    // The leader's archiver is inside archive_command for that segment, which now waits.
    const pm = await postmasterPid(join(rt, 'members', lead.name, 'data'));
    assert.ok(pm !== undefined);
    await eventually(async () => {
      for (const c of await childPids(pm)) {
        const argv = await processCommandLine(c);
        if (argv?.[0]?.includes('archiver') === true && (await childPids(c)).length > 0) return true;
      }
      return undefined;
    }, { timeoutMs: 30_000, what: `${lead.name}'s archiver running archive_command for ${segment}` });
    await new Promise((r) => setTimeout(r, 1_000));

    const t = Date.now();
    const sw = await runWarden(['switchover', '--dir', rt, '--force'], { timeoutMs: 90_000 });
    const tookMs = Date.now() - t;
    assert.equal(sw.code, 0, `${sw.stdout}\n${sw.stderr}`);
    assert.ok(tookMs < 15_000, `the switchover took ${tookMs} ms with the archive stuck`);
    process.stdout.write(`# switchover with the archive stuck: ${(tookMs / 1000).toFixed(2)} s (${sw.stdout.trim().split('\n').pop() ?? ''})\n`);
    const after1 = await eventually(async () => {
      const l = await listCluster(rt);
      const leader = l.members.find((m) => m.role === 'leader' && m.state === 'running');
      return leader !== undefined && leader.name !== lead.name && l.members.filter((m) => m.state === 'streaming').length === 2 ? l : undefined;
    }, { timeoutMs: 120_000, intervalMs: 1_000, what: 'a new leader, the old one streaming' });
    const newLeader = leaderOf(after1.members);

    // The lock goes: the new primary archives the segment the old one could not (it streamed it).
    releaseLock();
    const archived = async (): Promise<boolean> => {
      const tl = await readdir(join(rt, 'backup', 'repo1', 'archive', 'sa', '15-1'), { withFileTypes: true }).catch(() => []);
      for (const d of tl.filter((e) => e.isDirectory())) {
        const files = await readdir(join(d.parentPath, d.name)).catch(() => [] as string[]);
        if (files.some((f) => f.startsWith(`${segment}-`))) return true;
      }
      return false;
    };
    await eventually(async () => ((await archived()) ? true : undefined), { timeoutMs: 120_000, intervalMs: 1_000, what: `${segment} in the repository` });
    // Nothing left behind: the recovery point on the new primary comes back to the segment being written.
    const b = await eventually(async () => {
      const out = await backups();
      return 'bytesNotArchived' in out.recoveryPoint && out.recoveryPoint.primary === newLeader.name && (out.recoveryPoint.bytesNotArchived ?? Infinity) < 16 * 1024 * 1024 ? out : undefined;
    }, { timeoutMs: 120_000, intervalMs: 2_000, what: `the recovery point on ${newLeader.name} under one segment` });
    assert.ok('failing' in b.recoveryPoint && !b.recoveryPoint.failing, JSON.stringify(b.recoveryPoint));
    // The old leader's log says why its shutdown did not wait.
    const log = await readFile(join(rt, 'members', lead.name, 'agent.log'), 'utf8');
    assert.match(log, /fast shutdown with archiving: the running archive_command ended and archive_command emptied/);
  });
});
