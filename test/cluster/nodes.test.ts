import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import type { ListOutput } from '../../src/cli/list.js';
import type { NodeRecord } from '../../src/controller/records.js';
import { eventually } from '../../src/core/deadline.js';
import { EtcdClient } from '../../src/dcs/etcd-client.js';
import { isProcessAlive, signalPid, waitForExit } from '../../src/core/process-info.js';
import { runWarden, traversableTempDir, WARDEN_BIN } from '../support/cli.js';
import { processTree } from '../support/cluster.js';
import { startTestEtcd, type TestEtcd } from '../support/etcd.js';
import { itKeepingLogs } from '../support/kept-logs.js';

// Three `warden node` daemons on loopback (each with its own dir) and one real etcd: `warden apply`
// of a spec places the members on the nodes, the node daemons run them as their children, a killed
// agent is started again by its node daemon, a crashed node daemon's successor adopts its agents,
// and re-applying a larger spec adds a member.

const spec = (replicas: number): string => `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: app
spec:
  instances:
  - name: instance1
    replicas: ${replicas}
  proxy:
    router:
      replicas: 1
  patroni:
    dynamicConfiguration:
      ttl: 10
      loop_wait: 1
      retry_timeout: 3
`;

/** The parent PID of a process, from /proc. */
async function parentOf(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (stat === undefined) return undefined;
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

describe('warden node: three node daemons run a cluster applied with warden apply', { timeout: 900_000 }, () => {
  let dir = '';
  let etcd: TestEtcd | undefined;
  const daemons = new Map<string, number>();
  const seenPids = new Set<number>();
  // A failing case prints the tail of the daemons', agents' and routers' logs and keeps a copy.
  const it = itKeepingLogs(() => dir);
  const etcdArgs = (): string[] => ['--etcd', etcd?.etcd.endpoints.join(',') ?? ''];

  const list = async (): Promise<ListOutput> => {
    const r = await runWarden(['list', ...etcdArgs(), '--cluster', 'app', '--format', 'json'], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListOutput;
  };
  const nodes = async (): Promise<NodeRecord[]> => {
    const r = await runWarden(['get', 'nodes', ...etcdArgs(), '--format', 'json'], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    const records = JSON.parse(r.stdout) as NodeRecord[];
    for (const n of records) for (const w of n.workloads) if (w.pid !== null) seenPids.add(w.pid);
    return records;
  };
  /** Every member of `names` streams (or leads) and its agent is a child of a node daemon. */
  const streaming = async (names: readonly string[]): Promise<ListOutput | undefined> => {
    const l = await list();
    const ok = names.every((n) => l.members.some((m) => m.name === n && ((m.role === 'leader' && m.state === 'running') || (m.role !== 'leader' && m.state === 'streaming'))));
    return ok && l.members.length === names.length ? l : undefined;
  };

  /** Starts `warden node` for node-N's config, detached, and records its PID for cleanup. */
  const startDaemon = (name: string, cfg = join(dir, `${name}.yaml`)): ChildProcess => {
    const out = openSync(join(dir, `${name}.out`), 'a');
    try {
      const child = spawn(process.execPath, [WARDEN_BIN, 'node', '--config', cfg], { stdio: ['ignore', out, out], detached: true });
      child.unref();
      if (child.pid !== undefined) daemons.set(`${name}:${child.pid}`, child.pid);
      return child;
    } finally {
      closeSync(out);
    }
  };
  const nodeConfigText = (name: string, nodeDir: string, zone: number): string =>
    `name: ${name}\ndir: ${nodeDir}\netcd:\n  endpoints: [${etcd?.etcd.endpoints.join(', ') ?? ''}]\nlabels:\n  topology.kubernetes.io/zone: zone-${zone}\nleaseTtlSeconds: 5\nrestartDelaySeconds: 3\ncontroller:\n  ttlSeconds: 5\n  nodeLostSeconds: 10\nlog:\n  file: ${nodeDir}.log\n`;

  before(async () => {
    dir = await traversableTempDir('warden-nodes-');
    etcd = await startTestEtcd();
    for (const i of [1, 2, 3]) {
      const name = `node-${i}`;
      const cfg = join(dir, `${name}.yaml`);
      await writeFile(cfg, nodeConfigText(name, join(dir, name), i));
      startDaemon(name);
    }
  });

  after(async () => {
    // Node daemons stop their agents and routers on SIGTERM; anything left is killed by the PID we saw.
    await Promise.all(
      [...daemons.values()].map(async (pid) => {
        signalPid(pid, 'SIGTERM');
        if (!(await waitForExit(pid, 90_000))) signalPid(pid, 'SIGKILL');
      }),
    );
    for (const pid of seenPids) {
      if (await isProcessAlive(pid)) {
        signalPid(pid, 'SIGKILL');
        await waitForExit(pid, 5_000);
      }
    }
    await etcd?.cleanup();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('registers three nodes, one of them the active controller', async () => {
    const records = await eventually(async () => {
      const ns = await nodes();
      return ns.length === 3 ? ns : undefined;
    }, { timeoutMs: 30_000, what: 'three registered nodes' });
    assert.deepEqual(records.map((n) => n.name).sort(), ['node-1', 'node-2', 'node-3']);
    const r = await runWarden(['get', 'nodes', ...etcdArgs()], { timeoutMs: 15_000 });
    assert.equal((r.stdout.match(/active/g) ?? []).length, 1, r.stdout);
    // `warden plan` against the registered nodes: a dry run, nothing stored.
    const file = join(dir, 'plan.yaml');
    await writeFile(file, spec(3));
    const plan = await runWarden(['plan', '-f', file, ...etcdArgs(), '--format', 'json'], { timeoutMs: 30_000 });
    assert.equal(plan.code, 0, plan.stderr);
    const placed = (JSON.parse(plan.stdout) as { placements: { node: string | null }[] }).placements.map((p) => p.node).sort();
    assert.deepEqual(placed, ['node-1', 'node-2', 'node-3']);
  });

  it('refuses an invalid spec with file:line:col and changes nothing', async () => {
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, spec(3).replace('replicas: 3', 'replicas: three'));
    const r = await runWarden(['apply', '-f', bad, ...etcdArgs()], { timeoutMs: 30_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`${bad}:8:5: spec\\.instances\\[0\\]\\.replicas: `));
    const g = await runWarden(['get', 'clusters', ...etcdArgs(), '--format', 'json'], { timeoutMs: 15_000 });
    assert.deepEqual(JSON.parse(g.stdout), []);
  });

  it('applies a 3-member spec: every member streams, each agent a child of its node daemon, one per node', async () => {
    const file = join(dir, 'app.yaml');
    await writeFile(file, spec(3));
    const r = await runWarden(['apply', '-f', file, ...etcdArgs(), '--wait', '--timeout', '300'], { timeoutMs: 330_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /stored spec app generation 1/);
    await eventually(() => streaming(['app-1', 'app-2', 'app-3']), { timeoutMs: 120_000, what: 'three streaming members' });
    const ns = await nodes();
    const daemonPids = new Set(daemons.values());
    const members = ns.flatMap((n) => n.workloads.filter((w) => w.kind === 'member').map((w) => ({ node: n.name, ...w })));
    assert.equal(members.length, 3);
    assert.equal(new Set(members.map((m) => m.node)).size, 3, 'spread one member per node');
    for (const m of members) {
      assert.ok(m.pid !== null);
      assert.ok(daemonPids.has((await parentOf(m.pid)) ?? -1), `${m.name}'s agent is not a child of a node daemon`);
    }
    const again = await runWarden(['apply', '-f', file, ...etcdArgs()], { timeoutMs: 30_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /spec unchanged \(generation 1\): nothing stored/);
    assert.match(again.stdout, /changes: none/);
  });

  it('starts a member whose agent was killed with SIGKILL again, through its node daemon', async () => {
    const l = await list();
    const victim = l.members.find((m) => m.role !== 'leader');
    assert.ok(victim !== undefined);
    const before = (await nodes()).flatMap((n) => n.workloads).find((w) => w.name === victim.name);
    assert.ok(before?.pid !== null && before?.pid !== undefined);
    signalPid(before.pid, 'SIGKILL');
    const after = await eventually(async () => {
      const w = (await nodes()).flatMap((n) => n.workloads).find((x) => x.name === victim.name);
      return w !== undefined && w.pid !== null && w.pid !== before.pid && w.restarts > before.restarts ? w : undefined;
    }, { timeoutMs: 60_000, what: `${victim.name} started again` });
    assert.ok(after.pid !== null && (await isProcessAlive(after.pid)));
    await eventually(() => streaming(['app-1', 'app-2', 'app-3']), { timeoutMs: 120_000, what: `${victim.name} streaming again` });
  });

  it('scales 3 → 4 by re-applying: the new member streams', async () => {
    const file = join(dir, 'app.yaml');
    await writeFile(file, spec(4));
    const r = await runWarden(['apply', '-f', file, ...etcdArgs(), '--wait', '--timeout', '300'], { timeoutMs: 330_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /assign member app-4 → node-\d/);
    assert.match(r.stdout, /stored spec app generation 2/);
    await eventually(() => streaming(['app-1', 'app-2', 'app-3', 'app-4']), { timeoutMs: 120_000, what: 'four streaming members' });
    const status = await runWarden(['get', 'clusters', ...etcdArgs(), '--format', 'json'], { timeoutMs: 15_000 });
    const [cluster] = JSON.parse(status.stdout) as { name: string; generation: number; status: { desired: number; ready: number } }[];
    assert.equal(cluster?.generation, 2);
    assert.equal(cluster?.status.desired, 4);
  });

  it('drains the leader\'s node: one switchover first, then its members and router run on the other nodes', async () => {
    const all = ['app-1', 'app-2', 'app-3', 'app-4'];
    const l = await eventually(() => streaming(all), { timeoutMs: 120_000, what: 'four streaming members' });
    const oldLeader = l.members.find((m) => m.role === 'leader')?.name;
    const timelineBefore = Math.max(...l.members.map((m) => m.timeline ?? 0));
    const drained = (await nodes()).find((n) => n.workloads.some((w) => w.name === oldLeader))?.name;
    assert.ok(oldLeader !== undefined && drained !== undefined);
    const r = await runWarden(['node', 'drain', drained, ...etcdArgs()], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    await eventually(async () => {
      const ns = await nodes();
      const empty = ns.find((n) => n.name === drained)?.workloads.length === 0;
      return empty && (await streaming(all)) !== undefined ? true : undefined;
    }, { timeoutMs: 240_000, intervalMs: 1_000, what: `${drained} drained and every member streaming` });
    const after = await list();
    assert.notEqual(after.members.find((m) => m.role === 'leader')?.name, oldLeader, 'the leader moved by switchover');
    assert.equal(Math.max(...after.members.map((m) => m.timeline ?? 0)), timelineBefore + 1, 'exactly one switchover (one new timeline)');
    const shown = await runWarden(['get', 'nodes', ...etcdArgs()], { timeoutMs: 15_000 });
    assert.match(shown.stdout, new RegExp(`${drained}\\s+draining`));
    const u = await runWarden(['node', 'uncordon', drained, ...etcdArgs()], { timeoutMs: 15_000 });
    assert.equal(u.code, 0, u.stderr);
  });

  it('scales 4 → 3 by re-applying: the highest member is removed, never the leader, and its data is moved aside', async () => {
    const file = join(dir, 'app.yaml');
    await writeFile(file, spec(3));
    const r = await runWarden(['apply', '-f', file, ...etcdArgs(), '--wait', '--timeout', '300'], { timeoutMs: 330_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const l = await eventually(() => streaming(['app-1', 'app-2', 'app-3']), { timeoutMs: 180_000, what: 'three streaming members after scale down' });
    assert.equal(l.members.some((m) => m.name === 'app-4'), false);
    const ns = await nodes();
    assert.equal(ns.flatMap((n) => n.workloads).some((w) => w.name === 'app-4'), false);
    const asides = await Promise.all(['node-1', 'node-2', 'node-3'].map((n) => readdir(join(dir, n, 'moved-aside')).catch(() => [] as string[])));
    assert.ok(asides.flat().some((d) => d.startsWith('app-app-4-')), `app-4's directory was not moved aside: ${JSON.stringify(asides)}`);
  });

  it('refuses a second live node daemon with the same name', async () => {
    const cfg = join(dir, 'node-1-twin.yaml');
    await writeFile(cfg, nodeConfigText('node-1', join(dir, 'node-1-twin'), 1));
    const twin = startDaemon('node-1-twin', cfg);
    const code = await new Promise<number | null>((resolve) => twin.once('exit', (c) => resolve(c)));
    assert.equal(code, 1);
    assert.match(await readFile(join(dir, 'node-1-twin.out'), 'utf8'), /another live node daemon is registered as node-1 \(pid \d+, dir .*\/node-1,.*refusing to start a second one/);
  });

  it('a node daemon killed with SIGKILL is started again: it takes over its own key and adopts what the old one left (same agents, no failover); an adopted agent that dies is started again', async () => {
    const before = await eventually(() => streaming(['app-1', 'app-2', 'app-3']), { timeoutMs: 120_000, what: 'every member streaming' });
    const leader = before.members.find((m) => m.role === 'leader');
    assert.ok(leader !== undefined);
    const ns = await nodes();
    // The leader's node: its daemon's crash must not cost a failover.
    const victim = ns.find((n) => n.workloads.some((w) => w.kind === 'member' && w.name === leader.name));
    assert.ok(victim !== undefined, `no node runs ${leader.name}`);
    const oldAgents = victim.workloads.filter((w) => w.kind === 'member').map((w) => ({ name: w.name, pid: w.pid }));
    signalPid(victim.pid, 'SIGKILL');
    assert.ok(await waitForExit(victim.pid, 10_000));
    startDaemon(victim.name);
    await eventually(async () => {
      const n = (await nodes()).find((x) => x.name === victim.name);
      const members = n?.workloads.filter((w) => w.kind === 'member') ?? [];
      const same = oldAgents.every((o) => members.some((w) => w.name === o.name && w.pid === o.pid && w.state === 'running'));
      return n !== undefined && n.pid !== victim.pid && members.length === oldAgents.length && same ? n : undefined;
    }, { timeoutMs: 60_000, what: `${victim.name} back, its members adopted under their old PIDs` });
    for (const o of oldAgents) assert.ok(o.pid !== null && (await isProcessAlive(o.pid)), `${o.name}'s agent ${o.pid ?? '?'} no longer runs`);
    const after = await eventually(() => streaming(['app-1', 'app-2', 'app-3']), { timeoutMs: 60_000, what: 'every member streaming after the adoption' });
    const leaderAfter = after.members.find((m) => m.role === 'leader');
    assert.equal(leaderAfter?.name, leader.name, 'the leader changed: the daemon crash cost a failover');
    assert.equal(leaderAfter.timeline, leader.timeline, 'a new timeline: the daemon crash cost a failover');
    // The adopted agent is not the new daemon's child; its death is seen in /proc and it is started again.
    const adopted = oldAgents[0];
    assert.ok(adopted?.pid !== null && adopted?.pid !== undefined);
    signalPid(adopted.pid, 'SIGKILL');
    await eventually(async () => {
      const w = (await nodes()).find((x) => x.name === victim.name)?.workloads.find((x) => x.name === adopted.name);
      return w !== undefined && w.pid !== null && w.pid !== adopted.pid && w.state === 'running' && w.restarts >= 1 ? w : undefined;
    }, { timeoutMs: 60_000, what: `${adopted.name}'s agent started again by the new daemon` });
    await eventually(() => streaming(['app-1', 'app-2', 'app-3']), { timeoutMs: 120_000, what: 'every member streaming again' });
  });

  it('re-creates the members of a lost host (its daemon and everything under it killed) on the other nodes after nodeLostSeconds; the host ran the active controller, another takes over and carries out the heal', async () => {
    type Shown = NodeRecord & { controller?: boolean };
    const active = async (): Promise<Shown | undefined> => ((await nodes()) as Shown[]).find((n) => n.controller === true);
    // The host to lose runs the active controller and a member: its loss asks for a heal that only the
    // next controller can make. After the drain and the scale down the controller may sit on a node
    // that runs nothing; that daemon is then restarted (it stops nothing) so that another node's takes over.
    let lost = await eventually(active, { timeoutMs: 60_000, intervalMs: 500, what: 'an active controller' });
    if (!lost.workloads.some((w) => w.kind === 'member')) {
      const idle = lost;
      signalPid(idle.pid, 'SIGTERM');
      assert.ok(await waitForExit(idle.pid, 60_000), `${idle.name}'s daemon did not stop on SIGTERM`);
      lost = await eventually(async () => {
        const a = await active();
        return a !== undefined && a.name !== idle.name ? a : undefined;
      }, { timeoutMs: 60_000, intervalMs: 500, what: `a controller other than ${idle.name}'s active` });
      startDaemon(idle.name);
      await eventually(async () => ((await nodes()).some((n) => n.name === idle.name && n.pid !== idle.pid) ? true : undefined), { timeoutMs: 60_000, what: `${idle.name} registered again` });
    }
    const gone = lost.workloads.filter((w) => w.kind === 'member').map((w) => w.name);
    assert.ok(gone.length > 0, `${lost.name} runs the active controller and no member`);
    // Its workloads too: an agent adopted after an earlier daemon crash is no longer in the daemon's tree.
    const tree = [...new Set([...(await processTree(lost.pid)), ...(await Promise.all(lost.workloads.map((w) => (w.pid === null ? Promise.resolve([]) : processTree(w.pid))))).flat()])];
    for (const pid of tree) seenPids.add(pid);
    for (const pid of tree.reverse()) signalPid(pid, 'SIGKILL');
    const lostName = lost.name;
    await eventually(async () => {
      const a = await active();
      return a !== undefined && a.name !== lostName ? a : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500, what: `a controller other than ${lostName}'s active` });
    await eventually(async () => {
      const now = await nodes();
      if (now.some((n) => n.name === lostName)) return undefined;
      const placed = gone.every((m) => now.some((n) => n.workloads.some((w) => w.name === m && w.state === 'running')));
      return placed && (await streaming(['app-1', 'app-2', 'app-3'])) !== undefined ? true : undefined;
    }, { timeoutMs: 240_000, intervalMs: 1_000, what: `${gone.join(', ')} re-created on other nodes and streaming` });
  });

  it('deletes the cluster: its workloads stop, member data is moved aside, its keys go; applying it again makes a new cluster', async () => {
    const asides = async (): Promise<number> => (await Promise.all(['node-1', 'node-2', 'node-3'].map((n) => readdir(join(dir, n, 'moved-aside')).catch(() => [] as string[])))).flat().length;
    const asideBefore = await asides();
    const refused = await runWarden(['delete', 'cluster', 'app', '--confirm', 'ap', ...etcdArgs()], { timeoutMs: 15_000 });
    assert.equal(refused.code, 2, refused.stderr);
    const r = await runWarden(['delete', 'cluster', 'app', '--confirm', 'app', ...etcdArgs()], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    const client = new EtcdClient({ endpoints: etcd?.etcd.endpoints ?? [], defaultTimeoutMs: 3_000 });
    try {
      await eventually(async () => {
        const ns = await nodes();
        const keys = await client.range('/warden/app/');
        return ns.every((n) => n.workloads.length === 0) && keys.kvs.length === 0 ? true : undefined;
      }, { timeoutMs: 120_000, intervalMs: 1_000, what: 'every workload stopped and the cluster keys removed' });
    } finally {
      client.close();
    }
    assert.equal(await asides(), asideBefore + 3, 'each member\'s directory moved aside');
    const file = join(dir, 'app.yaml');
    const again = await runWarden(['apply', '-f', file, ...etcdArgs(), '--wait', '--timeout', '300'], { timeoutMs: 330_000 });
    assert.equal(again.code, 0, `${again.stdout}\n${again.stderr}`);
    assert.match(again.stdout, /stored spec app generation 1/);
    await eventually(() => streaming(['app-1', 'app-2', 'app-3']), { timeoutMs: 120_000, what: 'the new cluster streaming' });
  });
});
