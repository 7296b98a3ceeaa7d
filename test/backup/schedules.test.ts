import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../../src/core/deadline.js';
import { signalPid } from '../../src/core/process-info.js';
import { etcdClientFromState } from '../../src/controller/state-file.js';
import { decodeSlotRecord } from '../../src/backup/index.js';
import type { BackupsOutput } from '../../src/cli/backup-commands.js';
import type { SlotRecord } from '../../src/backup/index.js';
import { runWarden, traversableTempDir } from '../support/cli.js';
import { listCluster, postmasterPid, processTree, readState } from '../support/cluster.js';

// Backup schedules run by the leader's agent, against real pgBackRest 2.45, PostgreSQL 15 and etcd:
// an every-minute schedule across a switchover and a kill -9 of the leader in the middle of a
// scheduled backup. Each slot fires once (one create-only key per slot, one backup per succeeded
// slot), no minute is lost when the leadership moves, the backups read from a standby, and the
// backup the kill interrupted is not reported as succeeded (nor repeated).

const SPEC = `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: sch
spec:
  instances: [{ name: instance1, replicas: 3 }]
  warden: { etcd: { members: 1 } }
  backups:
    pgbackrest:
      global: { repo1-retention-full: 9 }
      repos:
        - name: repo1
          volume: {}
          schedules:
            incremental: "* * * * *"
`;

describe('backup schedules across switchovers (real pgBackRest, PostgreSQL, etcd)', { timeout: 600_000 }, () => {
  let dir = '';
  let rt = '';

  const backups = async (): Promise<BackupsOutput> => {
    const r = await runWarden(['backups', '--dir', rt, '--format', 'json'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    return JSON.parse(r.stdout) as BackupsOutput;
  };
  const slots = async (): Promise<{ key: string; record: SlotRecord }[]> => {
    const s = (await backups()).slots;
    assert.ok(!('error' in s), JSON.stringify(s));
    return s.map((x) => {
      assert.ok(x.record !== null, `slot ${x.key}: ${x.invalid ?? ''}`);
      return { key: x.key, record: x.record };
    });
  };
  /** Waits until a slot after `afterMs` claimed by `member` has finished, and returns it. */
  const finishedSlotBy = async (member: string, afterMs: number): Promise<SlotRecord> =>
    eventually(async () => (await slots()).map((s) => s.record).find((r) => r.member === member && r.slotMs > afterMs && r.state !== 'claimed'), { timeoutMs: 150_000, intervalMs: 2000, what: `a scheduled backup run by ${member}` });
  const switchover = async (): Promise<string> => {
    const l = await listCluster(rt);
    const candidate = l.members.find((m) => m.role !== 'leader' && m.state === 'streaming');
    assert.ok(candidate);
    const r = await runWarden(['switchover', '--dir', rt, '--candidate', candidate.name, '--force'], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    await eventually(async () => {
      const x = await listCluster(rt);
      return x.members.some((m) => m.role === 'leader' && m.name === candidate.name && m.state === 'running') && x.members.filter((m) => m.state === 'streaming').length === 2 ? true : undefined;
    }, { timeoutMs: 120_000, intervalMs: 500, what: `${candidate.name} leading with two streaming replicas` });
    return candidate.name;
  };

  before(async () => {
    dir = await traversableTempDir('warden-schedules-');
    rt = join(dir, 'rt');
    await writeFile(join(dir, 'cluster.yaml'), SPEC);
  });

  after(async () => {
    if (dir !== '') {
      await runWarden(['down', '--dir', rt, '--purge'], { timeoutMs: 180_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fires every slot of an every-minute schedule exactly once across a switchover and a crash, from a standby', async () => {
    const up = await runWarden(['up', '--static', '-f', join(dir, 'cluster.yaml'), '--dir', rt], { timeoutMs: 400_000 });
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
    assert.match(up.stdout, /backups: incr backup into repo1 at "\* \* \* \* \*" \(UTC\), run by the leader's agent/);
    const startedAt = Date.now();
    const first = leaderName(await listCluster(rt));
    const r1 = await finishedSlotBy(first, 0);
    const second = await switchover();
    const r2 = await finishedSlotBy(second, r1.slotMs);
    // The next slot: kill -9 its runner (the leader's agent, its PostgreSQL and the backup it runs) mid-backup.
    const state = await readState(rt);
    const etcd = etcdClientFromState(state, 3000);
    let interrupted: SlotRecord;
    try {
      interrupted = await eventually(async () => {
        const snap = await etcd.range('/warden/sch/backup/slots/', { timeoutMs: 3000 });
        for (const kv of snap.kvs) {
          const d = decodeSlotRecord(kv.value);
          if (d.ok && d.value.member === second && d.value.slotMs > r2.slotMs && d.value.state === 'claimed') return d.value;
        }
        return undefined;
      }, { timeoutMs: 120_000, intervalMs: 100, what: `a scheduled backup in flight on ${second}` });
    } finally {
      etcd.close();
    }
    const victim = state.members.find((m) => m.name === second);
    assert.ok(victim?.agentPid !== undefined && victim.agentPid !== null);
    const pids = [...(await processTree((await readState(rt)).members.find((m) => m.name === second)?.agentPid ?? victim.agentPid))];
    const pm = await postmasterPid(victim.dataDir);
    if (pm !== undefined && !pids.includes(pm)) pids.push(...(await processTree(pm)));
    for (const pid of pids) signalPid(pid, 'SIGKILL');
    const third = await eventually(async () => {
      const l = await listCluster(rt);
      return l.members.find((m) => m.role === 'leader' && m.state === 'running' && m.name !== second)?.name;
    }, { timeoutMs: 90_000, intervalMs: 200, what: 'a new leader after the kill' });
    const r3 = await finishedSlotBy(third, interrupted.slotMs);
    for (const r of [r1, r2, r3]) assert.equal(r.state, 'succeeded', JSON.stringify(r));
    // Let whatever is in flight finish, so that every slot but the interrupted one has an outcome.
    const all = await eventually(async () => {
      const s = await slots();
      return s.every((x) => x.record.state !== 'claimed' || x.record.slotMs === interrupted.slotMs) ? s : undefined;
    }, { timeoutMs: 120_000, intervalMs: 2000, what: 'no scheduled backup in flight' });
    // The next leader marks the abandoned claim failed (interrupted): never succeeded, never run again.
    const after = await eventually(async () => (await slots()).find((x) => x.record.slotMs === interrupted.slotMs && x.record.state !== 'claimed'), { timeoutMs: 120_000, intervalMs: 2000, what: 'the interrupted slot marked' });
    assert.equal(after.record.state, 'failed', JSON.stringify(after));
    assert.equal(after.record.label, null);
    assert.match(after.record.error ?? '', new RegExp(`^interrupted: ${second} stopped`));
    process.stdout.write(`# ${all.length} slots in ${((Date.now() - startedAt) / 1000).toFixed(0)} s, claimed by ${[...new Set(all.map((s) => s.record.member))].join(', ')}: ${all.map((s) => `${s.key.slice(-14, -8)} ${s.record.state}`).join('; ')}\n`);

    // No minute lost: one slot per minute from the first to the last.
    const minutes = all.map((s) => s.record.slotMs).sort((a, b) => a - b);
    for (let i = 1; i < minutes.length; i++) assert.equal((minutes[i] ?? 0) - (minutes[i - 1] ?? 0), 60_000, `slots ${minutes.map((m) => new Date(m).toISOString()).join(', ')}`);
    assert.ok(minutes.length >= 3 && new Set(all.map((s) => s.record.member)).size >= 2, 'three slots or more, run by the leaders in turn');
    // Exactly once: each succeeded slot is one set in the repository, and no set exists that no slot claims.
    const info = await backups();
    const labels = info.backups.map((b) => b.label);
    const succeeded = all.filter((s) => s.record.state === 'succeeded');
    for (const s of succeeded) {
      assert.ok(s.record.label !== null && labels.includes(s.record.label), `slot ${s.key} reports ${s.record.label ?? 'no'} set; the repository has ${labels.join(', ')}`);
      assert.equal(s.record.fromStandby, true, `slot ${s.key} read from a standby`);
    }
    assert.equal(new Set(succeeded.map((s) => s.record.label)).size, succeeded.length, 'one set per slot');
    assert.equal(info.backups.length, succeeded.length, `sets ${labels.join(', ')} vs succeeded slots ${succeeded.map((s) => s.record.label).join(', ')}`);
  });
});

function leaderName(l: { members: readonly { name: string; role: string }[] }): string {
  const m = l.members.find((x) => x.role === 'leader');
  assert.ok(m);
  return m.name;
}
