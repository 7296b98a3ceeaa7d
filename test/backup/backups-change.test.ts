import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BackupsOutput } from '../../src/cli/backup-commands.js';
import type { ListOutput } from '../../src/cli/list.js';
import { localSecrets } from '../../src/controller/local-nodes.js';
import { CONTROL_PREFIX, parseControlSnapshot, type NodeRecord } from '../../src/controller/records.js';
import { etcdClientFromState } from '../../src/controller/state-file.js';
import { eventually } from '../../src/core/deadline.js';
import { runWarden } from '../support/cli.js';
import { sql } from '../support/cluster.js';
import { NodesRuntimeUnderTest } from '../support/nodes-runtime.js';
import { longestGapMs, startRouterWriter, type RouterWriter } from '../support/router-writer.js';

// spec.backups changed on a running cluster on node daemons (`warden up`'s default runtime), real
// pgBackRest 2.45, PostgreSQL 15 and etcd, under a writer through the router in strict synchronous
// mode: archiving turned on rolls through the members (each agent restarted by its node daemon
// with the rewritten files, the replicas first, then one switchover), a backup works afterwards, a
// retention change rewrites pgbackrest.conf without restarting anything, a second repository rolls
// again, and archiving turned off rolls back to archive_mode off with the schedules gone and the
// repository's backups kept. No acknowledged write is lost.

const spec = (backups: string): string => `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: bkc
spec:
  instances: [{ name: instance1, replicas: 3 }]
  warden: { etcd: { members: 1 } }
  proxy: { router: { replicas: 1 } }
  patroni:
    dynamicConfiguration:
      ttl: 5
      loop_wait: 1
      retry_timeout: 2
      synchronous_mode: true
      synchronous_mode_strict: true
${backups}`;

const repo = (name: string, schedule: boolean): string => `        - name: ${name}\n          volume: {}\n${schedule ? '          schedules: { full: "0 0 1 1 *" }\n' : ''}`;
const withBackups = (opts: { retention?: number; repo2?: boolean }): string =>
  spec(`  backups:\n    pgbackrest:\n${opts.retention === undefined ? '' : `      global: { repo1-retention-full: ${opts.retention} }\n`}      repos:\n${repo('repo1', true)}${opts.repo2 === true ? repo('repo2', false) : ''}`);

describe('spec.backups changed on a running cluster (node daemons; real pgBackRest, PostgreSQL, etcd)', { timeout: 900_000 }, () => {
  const rt = new NodesRuntimeUnderTest();
  const writers: RouterWriter[] = [];

  const list = async (): Promise<ListOutput> => {
    const r = await runWarden(['list', '--dir', rt.runtime, '--format', 'json'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListOutput;
  };
  const healthy = async (): Promise<ListOutput | undefined> => {
    const l = await list();
    const leaders = l.members.filter((m) => m.role === 'leader' && m.state === 'running');
    const streaming = l.members.filter((m) => m.role !== 'leader' && m.state === 'streaming');
    return l.members.length === 3 && leaders.length === 1 && streaming.length === 2 ? l : undefined;
  };
  const leaderOf = (l: ListOutput): ListOutput['members'][number] => {
    const m = l.members.find((x) => x.role === 'leader');
    assert.ok(m !== undefined, 'a leader');
    return m;
  };
  const nodes = async (): Promise<NodeRecord[]> => {
    const client = etcdClientFromState(await rt.state(), 5_000);
    try {
      const raw = await client.range(CONTROL_PREFIX, { timeoutMs: 5_000 });
      return [...parseControlSnapshot(raw.revision, raw.kvs).nodes.values()].map((n) => n.record);
    } finally {
      client.close();
    }
  };
  /** Each member's agent PID, as its node daemon publishes it. */
  const agentPids = async (): Promise<Map<string, number | null>> =>
    new Map((await nodes()).flatMap((n) => n.workloads).filter((w) => w.cluster === 'bkc' && w.kind === 'member').map((w) => [w.name, w.pid]));
  const memberDir = async (name: string): Promise<string> => {
    const m = (await rt.state()).members.find((x) => x.name === name);
    assert.ok(m?.dir !== undefined, `${name} has a directory in state.json`);
    return m.dir;
  };
  const archiveSettings = async (): Promise<Map<string, { mode: string; cmd: string }>> => {
    const out = new Map<string, { mode: string; cmd: string }>();
    for (const m of (await list()).members) {
      const rows = (await sql(rt.runtime, m.host, m.port, "SELECT current_setting('archive_mode') AS mode, current_setting('archive_command') AS cmd")).rows;
      out.set(m.name, { mode: String(rows[0]?.['mode']), cmd: String(rows[0]?.['cmd']) });
    }
    return out;
  };
  const file = (): string => join(rt.dir, 'bkc.yaml');
  /** Applies `text` under a writer; the apply's output, the writer's figures and the leaders before and after. */
  const applyUnderWriter = async (text: string): Promise<{ stdout: string; lost: number; overlaps: number; acked: number; gapMs: number; before: ListOutput; after: ListOutput; pidsBefore: Map<string, number | null> }> => {
    const before = await eventually(healthy, { timeoutMs: 120_000, intervalMs: 1_000, what: 'bkc healthy' });
    const pidsBefore = await agentPids();
    const w = await startRouterWriter({ cluster: 'bkc', secrets: await localSecrets(rt.runtime), nodes, list });
    writers.push(w);
    await eventually(() => (w.writer.acks.length > 50 ? true : undefined), { timeoutMs: 60_000, what: 'the writer writing' });
    const t = performance.now();
    await writeFile(file(), text);
    const r = await runWarden(['apply', '-f', file(), '--dir', rt.runtime, '--wait', '--timeout', '400'], { timeoutMs: 430_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const after = await eventually(healthy, { timeoutMs: 120_000, intervalMs: 1_000, what: 'bkc healthy after the change' });
    const done = performance.now();
    const gapMs = longestGapMs(w.writer.acks, t, done);
    const figures = await w.finish();
    process.stdout.write(`# spec.backups change: ${((done - t) / 1000).toFixed(1)} s, longest write gap ${(gapMs / 1000).toFixed(2)} s, ${figures.acked} acknowledged, ${figures.lost} lost\n`);
    return { stdout: r.stdout, ...figures, gapMs, before, after, pidsBefore };
  };

  before(() => rt.create('warden-backups-change-'));

  after(async () => {
    await Promise.all(writers.map((w) => w.stop()));
    await rt.cleanup();
  });

  it('brings a cluster without backups up on three node daemons: no member archives', async () => {
    await writeFile(file(), spec(''));
    const r = await runWarden(['up', '-f', file(), '--dir', rt.runtime], { timeoutMs: 400_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    await eventually(healthy, { timeoutMs: 60_000, what: 'bkc healthy' });
    for (const [name, s] of await archiveSettings()) assert.equal(s.mode, 'off', `${name}: archive_mode`);
    const b = await runWarden(['backups', '--dir', rt.runtime], { timeoutMs: 60_000 });
    assert.notEqual(b.code, 0);
    assert.match(b.stderr, /cluster "bkc" in .* has no spec\.backups: add spec\.backups\.pgbackrest\.repos/);
  });

  it('turns archiving on under a writer: every agent restarted once by its node daemon, replicas first, one switchover, nothing lost; then a backup from a standby', async () => {
    const r = await applyUnderWriter(withBackups({}));
    assert.match(r.stdout, /spec\.backups: archiving turns on \(into repo1\): each member's agent restarts with the new settings, one at a time/);
    assert.match(r.stdout, /backups: full backup of bkc into repo1 at "0 0 1 1 \*" \(UTC\), run by its leader's agent/);
    assert.equal(r.lost, 0, `${r.lost} acknowledged writes lost`);
    assert.equal(r.overlaps, 0);
    assert.ok(r.gapMs < 10_000, `longest write gap ${r.gapMs} ms`);
    // One switchover: the leader moved, one timeline on.
    assert.notEqual(leaderOf(r.after).name, leaderOf(r.before).name);
    assert.equal(leaderOf(r.after).timeline, (leaderOf(r.before).timeline ?? 0) + 1);
    const pids = await agentPids();
    for (const [name, pid] of r.pidsBefore) assert.notEqual(pids.get(name), pid, `${name}'s agent restarted`);
    for (const [name, s] of await archiveSettings()) {
      assert.equal(s.mode, 'on', `${name}: archive_mode`);
      assert.ok(s.cmd.includes(`'--config=${join(await memberDir(name), 'pgbackrest.conf')}' '--stanza=bkc' archive-push`), `${name}: ${s.cmd}`);
    }
    // The new leader's agent made the stanza; a backup then works, from a standby.
    const b = await eventually(async () => {
      const x = await runWarden(['backup', '--dir', rt.runtime, '--type', 'full', '--wait', '--format', 'json'], { timeoutMs: 300_000 });
      return x.code === 0 ? x : undefined;
    }, { timeoutMs: 180_000, intervalMs: 2_000, what: 'a backup of bkc' });
    const out = JSON.parse(b.stdout) as { from: string; primary: string; set: { type: string } };
    assert.equal(out.set.type, 'full');
    assert.notEqual(out.from, out.primary, 'from a standby');
  });

  it('changes the retention alone: every pgbackrest.conf rewritten, no agent restarted', async () => {
    const pidsBefore = await agentPids();
    await writeFile(file(), withBackups({ retention: 3 }));
    const r = await runWarden(['apply', '-f', file(), '--dir', rt.runtime, '--wait', '--timeout', '120'], { timeoutMs: 150_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /spec\.backups: only pgBackRest options change: every member's pgbackrest\.conf is rewritten in place, nothing restarts/);
    for (const m of (await list()).members) {
      const conf = join(await memberDir(m.name), 'pgbackrest.conf');
      await eventually(async () => (/^repo1-retention-full=3$/m.test(await readFile(conf, 'utf8')) ? true : undefined), { timeoutMs: 30_000, what: `${conf} with the new retention` });
    }
    assert.deepEqual(await agentPids(), pidsBefore);
  });

  it('adds a second repository under a writer: a roll again, WAL reaches both repositories, nothing lost', async () => {
    const r = await applyUnderWriter(withBackups({ retention: 3, repo2: true }));
    assert.match(r.stdout, /spec\.backups: the repositories change \(repo1 → repo1, repo2\)/);
    assert.equal(r.lost, 0, `${r.lost} acknowledged writes lost`);
    assert.equal(r.overlaps, 0);
    for (const m of (await list()).members) assert.match(await readFile(join(await memberDir(m.name), 'pgbackrest.conf'), 'utf8'), new RegExp(`^repo2-path=${join(rt.runtime, 'backup', 'bkc', 'repo2')}$`, 'm'));
    // The leader's agent made the stanza in repo2 too; a backup into it works.
    const b = await eventually(async () => {
      const x = await runWarden(['backup', '--dir', rt.runtime, '--repo', 'repo2', '--type', 'full', '--wait', '--format', 'json'], { timeoutMs: 300_000 });
      return x.code === 0 ? x : undefined;
    }, { timeoutMs: 180_000, intervalMs: 2_000, what: 'a backup into repo2' });
    assert.equal((JSON.parse(b.stdout) as { set: { type: string } }).set.type, 'full');
  });

  it('turns archiving off under a writer: a roll back to archive_mode off, the schedules gone, the repository keeping its backups', async () => {
    const before: BackupsOutput = JSON.parse((await runWarden(['backups', '--dir', rt.runtime, '--format', 'json'], { timeoutMs: 120_000 })).stdout) as BackupsOutput;
    assert.ok(before.backups.length >= 1);
    const r = await applyUnderWriter(spec(''));
    assert.match(r.stdout, /spec\.backups: archiving turns off \(the repositories keep what they hold\)/);
    assert.match(r.stdout, /backups: bkc has no backup schedules any more/);
    assert.equal(r.lost, 0, `${r.lost} acknowledged writes lost`);
    assert.equal(r.overlaps, 0);
    for (const [name, s] of await archiveSettings()) assert.equal(s.mode, 'off', `${name}: archive_mode`);
    assert.ok(existsSync(join(rt.runtime, 'backup', 'bkc', 'repo1', 'backup', 'bkc', 'backup.info')), 'repo1 keeps its backups');
  });
});
