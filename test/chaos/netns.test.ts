import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { checkHistory } from '../../src/chaos/checker.js';
import { etcdHealthy, memberStatuses, type ChaosMember } from '../../src/chaos/cluster.js';
import type { Injected } from '../../src/chaos/faults.js';
import { firstPrimary, runChaos, waitHealthy } from '../../src/chaos/run.js';
import { ChaosWriter, prepareTable, readFinalValues, type WriteTarget } from '../../src/chaos/writer.js';
import { eventually } from '../../src/core/deadline.js';
import { NetnsCluster, netnsUnavailable } from './netns.js';

const unavailable = netnsUnavailable();
const log = (s: string): void => {
  if (process.env['WARDEN_TEST_LOG'] !== undefined) process.stderr.write(`[netns ${new Date().toISOString().slice(11, 23)}] ${s}\n`);
};

if (unavailable !== undefined) process.stderr.write(`skipping the network-namespace chaos tests: ${unavailable}\n`);

describe('chaos in network namespaces (each node its own network)', { skip: unavailable ?? false, timeout: 900_000 }, () => {
  let c: NetnsCluster | undefined;
  const cluster = (): NetnsCluster => {
    assert.ok(c, 'the namespace cluster was created');
    return c;
  };
  const addr = (m: ChaosMember) => ({ host: m.host, port: m.port, user: cluster().user, password: cluster().password });

  before(async () => {
    c = await NetnsCluster.create(log);
    await waitHealthy(c, 180_000, log);
  });

  after(async () => {
    await c?.destroy();
  });

  it('partitioning the primary elects a new one elsewhere, the old one demotes itself and rejoins after the heal, with no overlap', async () => {
    const nc = cluster();
    const { healthy, members } = await waitHealthy(nc, 120_000, log);
    const old = healthy.leader;
    const firstValue = await prepareTable(addr(old));
    const provider = (timeoutMs: number): Promise<WriteTarget | undefined> => firstPrimary(members, timeoutMs);
    const writer = new ChaosWriter(
      {
        target: provider,
        probeTargets: () => members.map((m) => ({ host: m.host, port: m.port, member: m.name })),
        memberOf: (host) => members.find((m) => m.host === host)?.name,
        user: nc.user,
        password: nc.password,
      },
      firstValue,
    );
    const roundStartMs = performance.now();
    writer.start();
    try {
      await eventually(() => (writer.acks.length >= 20 ? true : undefined), { timeoutMs: 30_000, what: 'writes before the fault' });
      const injectedAtMs = performance.now();
      nc.partition(old.name);
      log(`partitioned ${old.name}`);

      // A new primary elsewhere; the old one stops being one (it cannot renew its lease).
      const next = await eventually(
        async () => {
          const st = await memberStatuses(members.filter((m) => m.name !== old.name));
          return st.find((s) => s.isLeader && s.role === 'primary' && s.state === 'running')?.member;
        },
        { timeoutMs: 60_000, intervalMs: 100, what: 'a new primary on another member' },
      );
      assert.notEqual(next.name, old.name);
      const oldStatus = await eventually(
        async () => {
          const [s] = await memberStatuses(members.filter((m) => m.name === old.name));
          return s !== undefined && s.answered && !s.isLeader && s.role !== 'primary' ? s : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100, what: `${old.name} to demote itself` },
      );
      log(`new primary ${next.name}; ${old.name} is ${oldStatus.role ?? '?'}/${oldStatus.state ?? '?'}`);
      await eventually(() => (writer.acks.some((a) => a.member === next.name && a.sentAtMs > injectedAtMs) ? true : undefined), { timeoutMs: 30_000, what: `writes on ${next.name}` });

      nc.heal(old.name);
      const healedAtMs = performance.now();
      const rejoined = await waitHealthy(nc, 180_000, log);
      const recoveredAtMs = performance.now();
      assert.equal(rejoined.healthy.leader.name, next.name);
      assert.ok(rejoined.healthy.replicas.some((m) => m.name === old.name), `${old.name} streams again`);
      await eventually(() => (writer.acks.filter((a) => a.sentAtMs > recoveredAtMs).length >= 10 ? true : undefined), { timeoutMs: 30_000, what: 'writes after the heal' });
      await writer.stop();

      const values = await readFinalValues(addr(rejoined.healthy.leader), firstValue);
      const report = checkHistory(
        {
          acks: writer.acks,
          failures: writer.failures,
          faults: [{ id: '1', kind: 'partition', target: old.name, roundStartMs, injectedAtMs, healedAtMs }],
          recoveries: [{ faultId: '1', allStreamingAtMs: recoveredAtMs }],
          final: { primary: rejoined.healthy.leader.name, values },
        },
        { lossAllowed: true, maxLagBytes: 1024 * 1024 },
      );
      const round = report.rounds[0];
      process.stderr.write(
        `partition of ${old.name}: unavailable ${round?.unavailableMs?.toFixed(0) ?? '?'} ms, lost ${report.lostWrites.length} acknowledged write(s) (~${round?.lostWalBytes ?? 0} B WAL), ` +
          `overlap ${report.overlapMs.toFixed(0)} ms, rejoin ${round?.rejoinMs?.toFixed(0) ?? '?'} ms, ${report.acked} writes\n`,
      );
      assert.deepEqual(report.overlaps, [], 'no two writable primaries');
      assert.deepEqual(report.phantomValues, []);
      assert.ok(round?.unavailableMs !== null && round?.unavailableMs !== undefined);
      assert.ok(report.lostWrites.length === 0 || round.lostWalBytes <= 1024 * 1024, `lost WAL ${round.lostWalBytes} B within maximum_lag_on_failover`);
    } finally {
      await writer.stop();
      nc.heal();
    }
  });

  it('survives a seeded round of partition, cut-from-etcd and lost etcd quorum without overlapping primaries', async () => {
    const nc = cluster();
    const inject = async (kind: string, ctx: { health: { leader: ChaosMember }; rng: { between(lo: number, hi: number): number }; ttlMs: number }): Promise<Injected> => {
      const holdMs = Math.round(ctx.rng.between(1.5 * ctx.ttlMs + 1000, 3 * ctx.ttlMs + 1000));
      const target = ctx.health.leader.name;
      switch (kind) {
        case 'partition':
          nc.partition(target);
          return { target, holdMs, heal: async () => nc.heal(target), isCleared: async () => true };
        case 'cut-etcd':
          nc.cutFromEtcd(target);
          return { target, holdMs, heal: async () => nc.heal(target), isCleared: async () => true };
        case 'lose-quorum': {
          const victims = nc.loseQuorum();
          return { target: victims.join('+'), holdMs, heal: async () => victims.forEach((v) => nc.heal(v)), isCleared: async () => etcdHealthy(await nc.etcd()) };
        }
        default:
          throw new Error(`unknown namespace fault ${kind}`);
      }
    };
    const report = await runChaos({ cluster: nc, faults: ['partition', 'cut-etcd', 'lose-quorum'], rounds: 3, seed: 4242, inject, log, recoveryTimeoutMs: 180_000 });
    for (const r of report.rounds) {
      process.stderr.write(`${r.fault} ${r.target}: unavailable ${r.unavailableMs ?? '?'} ms, lost ${r.lostWrites}, overlap ${r.overlapMs} ms, recovered ${r.recoveredMs ?? '?'} ms\n`);
    }
    assert.equal(report.rounds.length, 3, report.summary.notes.join('\n'));
    assert.equal(report.summary.overlaps, 0, report.summary.violations.join('\n'));
    assert.equal(report.summary.ok, true, report.summary.violations.join('\n'));
  });
});
