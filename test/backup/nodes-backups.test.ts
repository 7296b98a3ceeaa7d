import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BackupsOutput, InPlaceRestoreOutput } from '../../src/cli/backup-commands.js';
import type { ListOutput } from '../../src/cli/list.js';
import { eventually } from '../../src/core/deadline.js';
import { signalPid } from '../../src/core/process-info.js';
import { runWarden } from '../support/cli.js';
import { postmasterPid, sql } from '../support/cluster.js';
import { NodesRuntimeUnderTest } from '../support/nodes-runtime.js';

// Backups on node daemons (`warden up --nodes`) against real pgBackRest 2.45, PostgreSQL 15 and
// etcd: the controller's members archive from the first minute into the cluster's repository under
// the nodes' backups.repo_path, the leader's agent creates the stanza, a backup is taken from a
// standby, the seed's "delete the primary member" exercise re-creates the member from the
// repository (the primary is not read for it), and an in-place restore brings every member onto a
// new timeline with the rows of the backup and the archive.

const spec = (retention: number): string => `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: nbk
spec:
  instances: [{ name: instance1, replicas: 3 }]
  warden: { etcd: { members: 1 } }
  backups:
    pgbackrest:
      global: { repo1-retention-full: ${retention} }
      repos:
        - name: repo1
          volume: {}
          schedules: { full: "0 0 1 1 *" }
`;

describe('backups on node daemons (warden up --nodes; real pgBackRest, PostgreSQL, etcd)', { timeout: 900_000 }, () => {
  const rt = new NodesRuntimeUnderTest();

  const list = async (): Promise<ListOutput> => {
    const r = await runWarden(['list', '--dir', rt.runtime, '--format', 'json'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListOutput;
  };
  const healthy = async (timeline?: number): Promise<ListOutput | undefined> => {
    const l = await list();
    const leaders = l.members.filter((m) => m.role === 'leader' && m.state === 'running');
    const streaming = l.members.filter((m) => m.role !== 'leader' && m.state === 'streaming');
    const onTimeline = timeline === undefined || l.members.every((m) => m.timeline === timeline);
    return l.members.length === 3 && leaders.length === 1 && streaming.length === 2 && onTimeline ? l : undefined;
  };
  const leaderOf = (l: ListOutput): ListOutput['members'][number] => {
    const m = l.members.find((x) => x.role === 'leader');
    assert.ok(m !== undefined, 'a leader');
    return m;
  };
  const backups = async (): Promise<BackupsOutput> => {
    const r = await runWarden(['backups', '--dir', rt.runtime, '--format', 'json'], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    return JSON.parse(r.stdout) as BackupsOutput;
  };
  const query = async (host: string, port: number, text: string): Promise<Record<string, unknown>[]> => (await sql(rt.runtime, host, port, text)).rows;
  const memberDir = async (name: string): Promise<string> => {
    const m = (await rt.state()).members.find((x) => x.name === name);
    assert.ok(m?.dir !== undefined, `${name} has a directory in state.json`);
    return m.dir;
  };

  before(() => rt.create('warden-nodes-backups-'));

  after(() => rt.cleanup());

  it('brings the cluster up on three nodes with every member archiving into DIR/backup/<cluster>, the stanza made by the leader\'s agent, and the schedule published', async () => {
    const file = join(rt.dir, 'nbk.yaml');
    await writeFile(file, spec(2));
    const r = await runWarden(['up', '--nodes', '3', '-f', file, '--dir', rt.runtime], { timeoutMs: 400_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`backups: stanza nbk ready; WAL is archived to ${join(rt.runtime, 'backup', 'nbk', 'repo1')}`));
    assert.match(r.stdout, /backups: full backup into repo1 at "0 0 1 1 \*" \(UTC\), run by the leader's agent/);
    const l = await eventually(() => healthy(), { timeoutMs: 60_000, what: 'nbk healthy' });
    for (const m of l.members) {
      const dir = await memberDir(m.name);
      const rows = await query(m.host, m.port, "SELECT current_setting('archive_mode') AS mode, current_setting('archive_command') AS cmd");
      assert.equal(rows[0]?.['mode'], 'on', `${m.name}: archive_mode`);
      assert.ok(String(rows[0]?.['cmd']).includes(`'--config=${join(dir, 'pgbackrest.conf')}' '--stanza=nbk' archive-push`), `${m.name}: ${String(rows[0]?.['cmd'])}`);
      const conf = await readFile(join(dir, 'pgbackrest.conf'), 'utf8');
      assert.match(conf, new RegExp(`^repo1-path=${join(rt.runtime, 'backup', 'nbk', 'repo1')}$`, 'm'));
      assert.match(conf, new RegExp(`^spool-path=${join(dir, 'pgbackrest', 'spool')}$`, 'm'));
    }
    const leaderLog = await readFile(join(await memberDir(leaderOf(l).name), 'agent.log'), 'utf8');
    assert.match(leaderLog, /archive: the stanza exists in the backup repositories/);
    const b = await eventually(async () => {
      const out = await backups();
      return 'bytesNotArchived' in out.recoveryPoint && out.archive !== null ? out : undefined;
    }, { timeoutMs: 60_000, what: 'the archive holding WAL' });
    assert.equal(b.stanza, 'nbk');
    assert.equal(b.backups.length, 0);
  });

  it('takes a full backup from a standby', async () => {
    const l = await list();
    const leader = leaderOf(l);
    await query(leader.host, leader.port, 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)');
    const r = await runWarden(['backup', '--dir', rt.runtime, '--type', 'full', '--wait', '--format', 'json'], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout) as { from: string; primary: string; set: { label: string; type: string } };
    assert.equal(out.set.type, 'full');
    assert.equal(out.primary, leader.name);
    assert.notEqual(out.from, leader.name, 'a standby is the source');
    assert.deepEqual((await backups()).backups.map((s) => s.label), [out.set.label]);
  });

  it('the seed\'s exercise: the primary\'s agent and PostgreSQL killed and its directory removed — a failover, and the member re-created from the repository streams again', async () => {
    const l0 = await list();
    const victim = leaderOf(l0);
    const dir = await memberDir(victim.name);
    const agentPid = (await rt.state()).members.find((m) => m.name === victim.name)?.agentPid ?? null;
    const pm = await postmasterPid(join(dir, 'data'));
    assert.ok(pm !== undefined && agentPid !== null, `${victim.name}: agent ${String(agentPid)}, postmaster ${String(pm)}`);
    signalPid(agentPid, 'SIGKILL');
    signalPid(pm, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
    const l1 = await eventually(async () => {
      const l = await healthy();
      return l !== undefined && leaderOf(l).name !== victim.name && (leaderOf(l).timeline ?? 0) > (victim.timeline ?? 0) ? l : undefined;
    }, { timeoutMs: 240_000, intervalMs: 1_000, what: `a new leader, and ${victim.name} re-created and streaming` });
    assert.ok(existsSync(join(dir, 'data')), `${dir} re-created`);
    const log = await readFile(join(dir, 'agent.log'), 'utf8');
    assert.match(log, /replica seeded from the backup repository \(standby restore\): the primary was not read/, `${victim.name} was cloned another way:\n${log.split('\n').filter((x) => /seed|clone|basebackup/.test(x)).join('\n')}`);
    const leader = leaderOf(l1);
    const count = await query(leader.host, leader.port, 'SELECT count(*)::int AS n FROM t');
    assert.equal(count[0]?.['n'], 100);
    // The new leader archives: its agent found the stanza there.
    const b = await eventually(async () => {
      const out = await backups();
      return 'bytesNotArchived' in out.recoveryPoint && out.recoveryPoint.primary === leader.name ? out : undefined;
    }, { timeoutMs: 60_000, what: `the recovery point reported on ${leader.name}` });
    assert.equal(b.backups.length, 1);
  });

  it('an in-place restore to the latest archived WAL: every member on the new timeline, the rows written after the failover there', async () => {
    const l0 = await list();
    const leader = leaderOf(l0);
    await query(leader.host, leader.port, 'INSERT INTO t SELECT generate_series(101, 150)');
    await query(leader.host, leader.port, 'SELECT pg_switch_wal()');
    await eventually(async () => {
      const out = await backups();
      return 'bytesNotArchived' in out.recoveryPoint && out.recoveryPoint.bytesNotArchived === 0 ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 1_000, what: 'the rows archived' });
    const r = await runWarden(['restore', '--dir', rt.runtime, '--latest', '--in-place', '--format', 'json'], { timeoutMs: 600_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout) as InPlaceRestoreOutput;
    assert.equal(out.leader, leader.name);
    assert.ok(out.timeline > out.fromTimeline, `timeline ${out.fromTimeline} → ${out.timeline}`);
    const l1 = await eventually(() => healthy(out.timeline), { timeoutMs: 180_000, intervalMs: 1_000, what: `every member on timeline ${out.timeline}` });
    for (const m of l1.members) {
      const rows = await eventually(async () => {
        const x = await query(m.host, m.port, 'SELECT count(*)::int AS n FROM t').catch(() => undefined);
        return x?.[0]?.['n'] === 150 ? x : undefined;
      }, { timeoutMs: 60_000, intervalMs: 1_000, what: `${m.name} holding the 150 rows` });
      assert.equal(rows[0]?.['n'], 150);
    }
  });
  it('a second cluster applied to the same nodes archives into a repository of its own; --cluster reaches it, its schedule names the dir, the first cluster\'s sets stay as they were', async () => {
    const before = (await backups()).backups.map((b) => b.label);
    const file = join(rt.dir, 'other.yaml');
    await writeFile(file, spec(2).replace('name: nbk', 'name: other').replace('replicas: 3', 'replicas: 2'));
    const a = await runWarden(['apply', '-f', file, '--dir', rt.runtime, '--wait', '--timeout', '300'], { timeoutMs: 330_000 });
    assert.equal(a.code, 0, `${a.stdout}\n${a.stderr}`);
    assert.match(a.stdout, /backups: full backup of other into repo1 at "0 0 1 1 \*" \(UTC\), run by its leader's agent/);
    const listOther = async (): Promise<ListOutput | undefined> => {
      const r = await runWarden(['list', '--dir', rt.runtime, '--cluster', 'other', '--format', 'json'], { timeoutMs: 30_000 });
      if (r.code !== 0) return undefined;
      const l = JSON.parse(r.stdout) as ListOutput;
      return l.members.length === 2 && l.members.some((m) => m.role === 'leader' && m.state === 'running') && l.members.some((m) => m.role !== 'leader' && m.state === 'streaming') ? l : undefined;
    };
    const l = await eventually(listOther, { timeoutMs: 180_000, intervalMs: 1_000, what: 'other streaming' });
    assert.equal(l.cluster, 'other');
    // Its stanza exists once its leader's agent made it; then a backup through --cluster.
    const r = await eventually(async () => {
      const x = await runWarden(['backup', '--dir', rt.runtime, '--cluster', 'other', '--type', 'full', '--wait', '--format', 'json'], { timeoutMs: 300_000 });
      return x.code === 0 ? x : undefined;
    }, { timeoutMs: 120_000, intervalMs: 2_000, what: 'a backup of other' });
    const out = JSON.parse(r.stdout) as { from: string; primary: string; set: { label: string } };
    assert.notEqual(out.from, out.primary, 'from other\'s standby');
    const b = await runWarden(['backups', '--dir', rt.runtime, '--cluster', 'other', '--format', 'json'], { timeoutMs: 120_000 });
    assert.equal(b.code, 0, b.stderr);
    const ob = JSON.parse(b.stdout) as BackupsOutput;
    assert.equal(ob.stanza, 'other');
    assert.deepEqual(ob.backups.map((x) => x.label), [out.set.label]);
    assert.ok(existsSync(join(rt.runtime, 'backup', 'other', 'repo1', 'backup', 'other', out.set.label)), 'the set is in DIR/backup/other/repo1');
    assert.deepEqual((await backups()).backups.map((x) => x.label), before, 'nbk\'s repository is untouched');
    const sched = await runWarden(['backups', '--dir', rt.runtime, '--cluster', 'nope', '--format', 'json'], { timeoutMs: 60_000 });
    assert.notEqual(sched.code, 0);
    assert.match(sched.stderr, /no cluster "nope" is stored/);
  });
});
