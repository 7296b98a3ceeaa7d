import assert from 'node:assert/strict';
import { chmod, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PgBackRestRepository } from '../../src/backup/index.js';
import { eventually, holdsFor } from '../../src/core/deadline.js';
import { signalPid } from '../../src/core/process-info.js';
import { lookupRunUser } from '../../src/controller/runtime-layout.js';
import type { ListMember } from '../../src/cli/list.js';
import type { RestoreDrillOutput } from '../../src/cli/backup-commands.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { listCluster, postmasterPid, processTree, readState, sql } from '../support/cluster.js';
import { backupClusterSpec } from '../support/backup-spec.js';

// Archive continuity across a failover, against real pgBackRest 2.45, PostgreSQL 15 and etcd: the
// repository is made unwritable so the archive falls behind, the primary is killed with SIGKILL,
// and the repository comes back after the failover. Every WAL segment the dead primary never pushed
// must reach the repository from the new primary (the standby's `.done` markers turned back to
// `.ready` before its promotion), and the backup taken before the failover must restore through
// the timeline switch with every row.

const SPEC = backupClusterSpec('ac', 3);

/** Every directory under `dir`, `dir` included. */
async function dirsUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return [dir, ...entries.filter((e) => e.isDirectory()).map((e) => join(e.parentPath, e.name))];
}

describe('archive continuity across a failover (real pgBackRest, PostgreSQL, etcd)', { timeout: 900_000 }, () => {
  let dir = '';
  let rt = '';
  let repo: PgBackRestRepository;
  let archiveDir = '';
  const lockedDirs: string[] = [];

  const leaderOf = (members: readonly ListMember[]): ListMember => {
    const m = members.find((x) => x.role === 'leader' && x.state === 'running');
    assert.ok(m, `a running leader among ${JSON.stringify(members.map((x) => [x.name, x.role, x.state]))}`);
    return m;
  };
  /** Makes the repository's WAL archive unwritable for PostgreSQL's user (pgBackRest runs as it); reading still works. */
  const lockRepository = async (): Promise<void> => {
    for (const d of await dirsUnder(archiveDir)) {
      lockedDirs.push(d);
      await chmod(d, 0o555);
    }
  };
  const unlockRepository = async (): Promise<void> => {
    for (const d of lockedDirs.splice(0)) await chmod(d, 0o750);
  };

  before(async () => {
    dir = await traversableTempDir('warden-archive-failover-');
    rt = join(dir, 'rt');
    await writeFile(join(dir, 'cluster.yaml'), SPEC);
  });

  after(async () => {
    await unlockRepository().catch(() => undefined);
    if (dir !== '') {
      await runWarden(['down', '--dir', rt, '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a failing archive is reported in warden list and /metrics, causes no failover, and catches up when the repository is back', async () => {
    const up = await runWarden(['up', '--static', '-f', join(dir, 'cluster.yaml'), '--dir', rt], { timeoutMs: 400_000 });
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
    const identity = lookupRunUser();
    repo = new PgBackRestRepository({ stanza: 'ac', configFile: join(rt, 'backup', 'pgbackrest.conf'), ...(identity === undefined ? {} : { identity }) });
    archiveDir = join(rt, 'backup', 'repo1', 'archive', 'ac');
    const lead = leaderOf((await listCluster(rt)).members);
    const ok = await eventually(async () => {
      const a = (await listCluster(rt)).archive;
      return a !== null && !('error' in a) && !a.failing && a.member === lead.name ? a : undefined;
    }, { timeoutMs: 60_000, intervalMs: 1000, what: 'the leader reporting a working archive' });
    assert.equal(ok.stale, false);

    await lockRepository();
    const lockedAt = Date.now();
    await sql(rt, lead.host, lead.port, 'CREATE TABLE health (at timestamptz DEFAULT now())');
    await sql(rt, lead.host, lead.port, 'INSERT INTO health DEFAULT VALUES');
    await sql(rt, lead.host, lead.port, 'SELECT pg_switch_wal()');
    const failing = await eventually(async () => {
      const a = (await listCluster(rt)).archive;
      return a !== null && !('error' in a) && a.failing && (a.bytesNotArchived ?? 0) > 0 ? a : undefined;
    }, { timeoutMs: 60_000, intervalMs: 1000, what: 'warden list reporting the archive failing' });
    process.stdout.write(`# failing archive reported by warden list ${((Date.now() - lockedAt) / 1000).toFixed(1)} s after the repository was locked: ${failing.line}\n`);
    assert.ok(failing.failingSinceMs !== null && failing.failingSinceMs >= lockedAt - 1000, `failing since ${failing.failingSinceMs ?? 'null'}, locked at ${lockedAt}`);
    const text = await runWarden(['list', '--dir', rt], { timeoutMs: 20_000 });
    assert.match(text.stdout, /archive: FAILING since \S+Z \(\d+ failures, last [0-9A-F]{24}; last success \S+\) — recovery point \d+ s \/ \d+ bytes not archived \(on /);
    const metrics = await (await fetch(new URL('/metrics', lead.apiUrl), { signal: AbortSignal.timeout(5000) })).text();
    assert.match(metrics, new RegExp(`warden_archive_failing\\{cluster="ac",member="${lead.name}"\\} 1`));
    assert.match(metrics, /warden_archive_recovery_point_bytes\{[^}]*\} [1-9]\d*/);
    const patroniBody = (await (await fetch(new URL('/patroni', lead.apiUrl), { signal: AbortSignal.timeout(5000) })).json()) as { warden: { archive?: { failing: boolean } } };
    assert.equal(patroniBody.warden.archive?.failing, true);
    // A replica does not archive: no archive samples there.
    const replica = (await listCluster(rt)).members.find((m) => m.role !== 'leader');
    assert.ok(replica);
    assert.doesNotMatch(await (await fetch(new URL('/metrics', replica.apiUrl), { signal: AbortSignal.timeout(5000) })).text(), /^warden_archive_failing\{/m);

    // Failing for two minutes is no reason to fail over: the same leader, the same timeline, and
    // the failure reported, throughout; the recovery point only grows.
    let lastSeconds = failing.secondsNotArchived ?? 0;
    const samples = await holdsFor(async () => {
      const l = await listCluster(rt);
      const now = leaderOf(l.members);
      assert.equal(now.name, lead.name, 'no failover while the archive fails');
      assert.equal(now.timeline, lead.timeline);
      const a = l.archive;
      assert.ok(a !== null && !('error' in a) && a.failing, `still reported failing: ${JSON.stringify(a)}`);
      assert.ok((a.secondsNotArchived ?? 0) >= lastSeconds, `the recovery point never shrinks while failing: ${a.secondsNotArchived ?? 'null'} after ${lastSeconds}`);
      lastSeconds = a.secondsNotArchived ?? 0;
    }, { durationMs: Math.max(0, 120_000 - (Date.now() - lockedAt)), intervalMs: 2000 });
    process.stdout.write(`# repository unwritable for ${((Date.now() - lockedAt) / 1000).toFixed(0)} s: ${samples} samples, no failover, recovery point ${lastSeconds} s\n`);
    const grown = (await listCluster(rt)).archive;
    assert.ok(grown !== null && !('error' in grown) && grown.failing && (grown.secondsNotArchived ?? 0) > (failing.secondsNotArchived ?? 0), `the recovery point grows: ${JSON.stringify(grown)}`);

    await unlockRepository();
    const caughtUp = await eventually(async () => {
      await sql(rt, lead.host, lead.port, 'INSERT INTO health DEFAULT VALUES');
      const a = (await listCluster(rt)).archive;
      return a !== null && !('error' in a) && !a.failing ? a : undefined;
    }, { timeoutMs: 120_000, intervalMs: 2000, what: 'the archive catching up' });
    process.stdout.write(`# archive caught up: ${caughtUp.line}\n`);
    assert.match(String(await runWarden(['list', '--dir', rt], { timeoutMs: 20_000 }).then((r) => r.stdout)), /archive: ok, last [0-9A-F]{24}/);
  });

  it('the WAL a dead primary never archived reaches the repository from the new primary, and the older backup restores through the failover', async () => {
    const old = leaderOf((await listCluster(rt)).members);
    await sql(rt, old.host, old.port, 'CREATE TABLE rows (id int PRIMARY KEY, phase text)');
    await sql(rt, old.host, old.port, "INSERT INTO rows SELECT g, 'before the backup' FROM generate_series(1, 1000) g");
    const b = await runWarden(['backup', '--dir', rt, '--type', 'full', '--wait', '--format', 'json'], { timeoutMs: 600_000 });
    assert.equal(b.code, 0, `${b.stdout}\n${b.stderr}`);
    const backupSet = (JSON.parse(b.stdout) as { set: { label: string; walStart: string } }).set;

    // The archive falls behind: three more segments the primary cannot push.
    await lockRepository();
    for (let i = 0; i < 3; i++) {
      await sql(rt, old.host, old.port, `INSERT INTO rows SELECT g, 'while the archive is stuck' FROM generate_series(${2000 + i * 1000}, ${2999 + i * 1000}) g`);
      await sql(rt, old.host, old.port, 'SELECT pg_switch_wal()');
    }
    // A last write crosses into the next segment, so the standbys close (and mark done) the previous one.
    await sql(rt, old.host, old.port, "INSERT INTO rows VALUES (9000, 'last before the crash')");
    const oldMember = (await readState(rt)).members.find((m) => m.name === old.name);
    assert.ok(oldMember);
    const statusDir = join(oldMember.dataDir, 'pg_wal', 'archive_status');
    const stuck = await eventually(async () => {
      const ready = (await readdir(statusDir)).filter((f) => /^[0-9A-F]{24}\.ready$/.test(f)).map((f) => f.slice(0, 24)).sort();
      const failing = await sql(rt, old.host, old.port, 'SELECT last_failed_time > coalesce(last_archived_time, \'-infinity\') AS failing FROM pg_stat_archiver');
      return ready.length >= 3 && failing.rows[0]?.['failing'] === true ? ready : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500, what: 'the primary to hold three unarchived segments and report failing archive_command' });
    const target = String((await sql(rt, old.host, old.port, 'SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]?.['lsn']);
    for (const m of (await listCluster(rt)).members.filter((x) => x.name !== old.name)) {
      await eventually(async () => {
        const r = await sql(rt, m.host, m.port, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS caught', [target]);
        return r.rows[0]?.['caught'] === true ? true : undefined;
      }, { timeoutMs: 60_000, intervalMs: 200, what: `${m.name} to replay past ${target}` });
    }
    assert.deepEqual([...(await repo.archivedWal(stuck, { timeoutMs: 30_000 }))], [], 'the stuck segments are not in the repository');

    // kill -9 the primary's agent and PostgreSQL: nothing of it runs again before the failover.
    const agentPid = (await readState(rt)).members.find((m) => m.name === old.name)?.agentPid;
    assert.ok(agentPid !== undefined && agentPid !== null);
    const pids = [...(await processTree(agentPid))];
    const pm = await postmasterPid(oldMember.dataDir);
    if (pm !== undefined && !pids.includes(pm)) pids.push(...(await processTree(pm)));
    for (const pid of pids) signalPid(pid, 'SIGKILL');
    const killedAt = Date.now();
    const next = await eventually(async () => {
      const l = await listCluster(rt);
      const lead = l.members.find((x) => x.role === 'leader' && x.state === 'running' && x.name !== old.name);
      return lead !== undefined && (lead.timeline ?? 0) > (old.timeline ?? 0) ? lead : undefined;
    }, { timeoutMs: 90_000, intervalMs: 200, what: 'a new leader on a new timeline' });
    process.stdout.write(`# failover to ${next.name} ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill\n`);

    await unlockRepository();
    await sql(rt, next.host, next.port, "INSERT INTO rows VALUES (10000, 'after the failover')");
    // The segment that holds row 10000, switched out so it is archived.
    const lastSegment = String((await sql(rt, next.host, next.port, 'SELECT pg_walfile_name(pg_switch_wal()) AS w')).rows[0]?.['w']);
    await sql(rt, next.host, next.port, 'CREATE TABLE pokes (at timestamptz DEFAULT now())');
    const history = `${(next.timeline ?? 0).toString(16).toUpperCase().padStart(8, '0')}.history`;
    const unlockedAt = Date.now();
    await eventually(async () => {
      // New WAL wakes the archiver, which otherwise waits up to a minute after a failure.
      await sql(rt, next.host, next.port, 'INSERT INTO pokes DEFAULT VALUES');
      const held = await repo.archivedWal([...stuck, history, lastSegment], { timeoutMs: 30_000 });
      return held.size === stuck.length + 2 ? true : undefined;
    }, { timeoutMs: 180_000, intervalMs: 2000, what: `the old timeline's segments ${stuck.join(', ')}, ${history} and ${lastSegment} in the repository` });
    process.stdout.write(`# the old timeline's missing segments reached the repository ${((Date.now() - unlockedAt) / 1000).toFixed(1)} s after it became writable\n`);
    // The new leader turned the markers back before promoting: its log says which.
    const logLine = await eventually(async () => {
      const log = await readFile(join(rt, 'members', next.name, 'agent.log'), 'utf8');
      return log.split('\n').find((l) => l.includes('archive continuity:'));
    }, { timeoutMs: 10_000, what: 'the archive continuity log line' });
    const logged = JSON.parse(logLine) as { markedReady?: string[]; elapsedMs?: number };
    for (const s of stuck) assert.ok(logged.markedReady?.includes(s), `${s} marked ready by ${next.name}: ${logLine}`);
    process.stdout.write(`# archive continuity before promotion: ${logged.markedReady?.length ?? 0} files marked ready in ${logged.elapsedMs ?? '?'} ms\n`);

    // The old timeline's last, partial segment is archived too (PostgreSQL marks it ready at promotion).
    const repoFiles = await readdir(archiveDir, { recursive: true });
    assert.ok(repoFiles.some((f) => f.includes(`${old.timeline?.toString(16).toUpperCase().padStart(8, '0') ?? ''}`) && f.includes('.partial-')), 'the old timeline\'s .partial segment is in the repository');

    // The backup taken before the failover recovers through the switch to the new timeline.
    const drill = await runWarden(['restore-drill', '--dir', rt, '--format', 'json', '--check-sql', "SELECT count(*) || ':' || max(id) FROM rows"], { timeoutMs: 600_000 });
    assert.equal(drill.code, 0, `${drill.stdout}\n${drill.stderr}`);
    const d = JSON.parse(drill.stdout) as RestoreDrillOutput;
    assert.equal(d.label, backupSet.label);
    assert.equal(d.check.value, '4002:10000', 'every row: before the backup, while the archive was stuck, and after the failover');
  });
});
