import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import pg from 'pg';
import type { ListOutput } from '../../src/cli/list.js';
import { CLUSTER_SECRETS, CONTROL_PREFIX, parseControlSnapshot, secretsKey, type ClusterSecrets, type NodeRecord } from '../../src/controller/records.js';
import { decodeJson } from '../../src/core/decode.js';
import { eventually, holdsFor } from '../../src/core/deadline.js';
import { isProcessAlive, signalPid, waitForExit } from '../../src/core/process-info.js';
import { EtcdClient } from '../../src/dcs/etcd-client.js';
import { runWarden, traversableTempDir, WARDEN_BIN } from '../support/cli.js';
import { postmasterPid } from '../support/cluster.js';
import { startTestEtcd, type TestEtcd } from '../support/etcd.js';
import { itKeepingLogs } from '../support/kept-logs.js';
import { longestGapMs, startRouterWriter, type RouterWriter } from '../support/router-writer.js';

// The must-show exercises of "Nodes and a controller" under a writer, on three `warden node`
// daemons and one real etcd: a scale 3 → 5 → 2 with `warden apply` loses no acknowledged write and
// never removes the leader (its leader is first moved onto a member the scale down removes), and
// two clusters on the same nodes stay apart: the SIGKILLed primary of one (strict synchronous mode:
// nothing acknowledged may be lost) leaves the other's leader, timeline and writes alone; a
// parameter that needs a restart, raised then lowered with `warden apply`, rolls through the
// members of the strict one (replicas first and one switchover; lowered: the primary in place first). Writers go through each cluster's router (src/chaos/writer.ts); the
// checker (src/chaos/checker.ts) compares their acknowledgements with the final leader's table.

const spec = (name: string, replicas: number, sync: boolean, parameters: Record<string, number> = {}): string => `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: ${name}
spec:
  instances:
  - name: instance1
    replicas: ${replicas}
  proxy:
    router:
      replicas: 1
  patroni:
    dynamicConfiguration:
      ttl: 5
      loop_wait: 1
      retry_timeout: 2
${sync ? '      synchronous_mode: true\n      synchronous_mode_strict: true\n' : ''}${Object.keys(parameters).length === 0 ? '' : `      postgresql:\n        parameters:\n${Object.entries(parameters).map(([k, v]) => `          ${k}: ${v}\n`).join('')}`}`;

describe('warden node: exercises under a writer (scale 3 → 5 → 2, two clusters apart under a failover)', { timeout: 600_000 }, () => {
  let dir = '';
  let etcd: TestEtcd | undefined;
  let client: EtcdClient | undefined;
  const daemons: number[] = [];
  const seenPids = new Set<number>();
  /** Stops each writer and its refresh loop; the after hook runs them all (a failed case leaves its own running). */
  const stoppers: (() => Promise<void>)[] = [];
  const writing = new Map<string, () => Promise<void>>();
  const it = itKeepingLogs(() => dir);
  const etcdArgs = (): string[] => ['--etcd', etcd?.etcd.endpoints.join(',') ?? ''];

  const list = async (cluster: string): Promise<ListOutput> => {
    const r = await runWarden(['list', ...etcdArgs(), '--cluster', cluster, '--format', 'json'], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListOutput;
  };
  const nodes = async (): Promise<NodeRecord[]> => {
    assert.ok(client !== undefined);
    const raw = await client.range(CONTROL_PREFIX, { timeoutMs: 3_000 });
    const records = [...parseControlSnapshot(raw.revision, raw.kvs).nodes.values()].map((n) => n.record);
    for (const n of records) for (const w of n.workloads) if (w.pid !== null) seenPids.add(w.pid);
    return records;
  };
  /** The list once exactly `names` are members, one running leader and the others streaming. */
  const streaming = async (cluster: string, names: readonly string[]): Promise<ListOutput | undefined> => {
    const l = await list(cluster);
    const ok = names.every((n) => l.members.some((m) => m.name === n && ((m.role === 'leader' && m.state === 'running') || (m.role !== 'leader' && m.state === 'streaming'))));
    return ok && l.members.length === names.length ? l : undefined;
  };
  const leaderOf = (l: ListOutput): { name: string; timeline: number } => {
    const m = l.members.find((x) => x.role === 'leader');
    assert.ok(m !== undefined, `${l.cluster} has no leader`);
    return { name: m.name, timeline: m.timeline ?? 0 };
  };
  const apply = async (cluster: string, replicas: number, sync: boolean, parameters: Record<string, number> = {}): Promise<void> => {
    const file = join(dir, `${cluster}.yaml`);
    await writeFile(file, spec(cluster, replicas, sync, parameters));
    const r = await runWarden(['apply', '-f', file, ...etcdArgs()], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  };

  const secretsOf = async (cluster: string): Promise<ClusterSecrets> => {
    assert.ok(client !== undefined);
    const kv = await client.get(secretsKey(cluster));
    const secrets = kv === undefined ? undefined : decodeJson(CLUSTER_SECRETS, kv.value);
    assert.ok(secrets?.ok === true, `no secrets for ${cluster}`);
    return secrets.value;
  };
  /** Settings of one member, as its superuser sees them, joined by `/` (or why it could not be asked). */
  const settingsOf = async (cluster: string, host: string, port: number, names: readonly string[] = ['max_connections']): Promise<string> => {
    const secrets = await secretsOf(cluster);
    const c = new pg.Client({ host, port, user: secrets.superuser.username, password: secrets.superuser.password, database: 'postgres', connectionTimeoutMillis: 1_500, query_timeout: 3_000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      const values = await Promise.all(names.map(async (n) => String((await c.query<{ v: string }>('SELECT current_setting($1) AS v', [n])).rows[0]?.v)));
      return values.join('/');
    } catch (e) {
      return `unreachable: ${(e as Error).message}`;
    } finally {
      await c.end().catch(() => undefined);
    }
  };
  /** A chaos writer through the cluster's router (test/support/router-writer.ts). */
  const startWriter = async (cluster: string): Promise<RouterWriter> => {
    // A writer a failed test left running would write the same values as this one: stop it first.
    await writing.get(cluster)?.();
    const w = await startRouterWriter({ cluster, secrets: await secretsOf(cluster), nodes, list: () => list(cluster) });
    stoppers.push(w.stop);
    writing.set(cluster, w.stop);
    return w;
  };

  before(async () => {
    dir = await traversableTempDir('warden-node-exercises-');
    etcd = await startTestEtcd();
    client = new EtcdClient({ endpoints: etcd.etcd.endpoints, defaultTimeoutMs: 3_000 });
    for (const i of [1, 2, 3]) {
      const name = `node-${i}`;
      const nodeDir = join(dir, name);
      const cfg = join(dir, `${name}.yaml`);
      // A killed agent comes back after 8 s, past the cluster's ttl (5 s): its member then fails over
      // instead of taking its own leader key back and restarting PostgreSQL in place.
      await writeFile(cfg, `name: ${name}\ndir: ${nodeDir}\netcd:\n  endpoints: [${etcd.etcd.endpoints.join(', ')}]\nlabels:\n  topology.kubernetes.io/zone: zone-${i}\nleaseTtlSeconds: 5\nrestartDelaySeconds: 8\ncontroller:\n  ttlSeconds: 5\n  nodeLostSeconds: 30\nlog:\n  file: ${nodeDir}.log\n`);
      const out = openSync(join(dir, `${name}.out`), 'a');
      try {
        const child = spawn(process.execPath, [WARDEN_BIN, 'node', '--config', cfg], { stdio: ['ignore', out, out], detached: true });
        child.unref();
        if (child.pid !== undefined) daemons.push(child.pid);
      } finally {
        closeSync(out);
      }
    }
  });

  after(async () => {
    await Promise.all(stoppers.map((stop) => stop()));
    client?.close();
    // Node daemons stop their agents and routers on SIGTERM; anything left is killed by the PID we saw.
    await Promise.all(
      daemons.map(async (pid) => {
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

  it('applies two clusters on the same three nodes: app (3 members) and other (3 members, strict synchronous mode) both stream', async () => {
    await eventually(async () => ((await nodes()).length === 3 ? true : undefined), { timeoutMs: 30_000, what: 'three registered nodes' });
    await apply('app', 3, false);
    await apply('other', 3, true);
    await eventually(() => streaming('app', ['app-1', 'app-2', 'app-3']), { timeoutMs: 180_000, intervalMs: 500, what: 'app streaming' });
    await eventually(() => streaming('other', ['other-1', 'other-2', 'other-3']), { timeoutMs: 180_000, intervalMs: 500, what: 'other streaming' });
  });

  it('scales app 3 → 5 → 2 under a writer: no acknowledged write lost, and the leader (moved onto app-5 first) is switched over before its member is removed', async () => {
    const w = await startWriter('app');
    await eventually(() => (w.writer.acks.length > 20 ? true : undefined), { timeoutMs: 30_000, what: 'writes acknowledged through the router' });
    await apply('app', 5, false);
    const five = ['app-1', 'app-2', 'app-3', 'app-4', 'app-5'];
    await eventually(() => streaming('app', five), { timeoutMs: 240_000, intervalMs: 500, what: 'five streaming members' });
    // The case the scale down must handle: the leader on a member it removes.
    // The agents' REST API wants the cluster's credentials; with --etcd the CLI has no dir to read them from.
    const rest = await secretsOf('app');
    const env = { WARDEN_RESTAPI_USERNAME: rest.restApi.username, WARDEN_RESTAPI_PASSWORD: rest.restApi.password };
    // app-5 streams as soon as it connects, but may still be catching up on the writer's WAL: a
    // switchover refuses a candidate more than maximum_lag_on_failover behind, so ask again then.
    let sw = await runWarden(['switchover', ...etcdArgs(), '--cluster', 'app', '--candidate', 'app-5', '--force'], { timeoutMs: 60_000, env });
    for (const until = Date.now() + 60_000; sw.code !== 0 && /app-5: lag \d+ bytes > maximum_lag_on_failover/.test(sw.stderr) && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 1_000));
      sw = await runWarden(['switchover', ...etcdArgs(), '--cluster', 'app', '--candidate', 'app-5', '--force'], { timeoutMs: 60_000, env });
    }
    assert.equal(sw.code, 0, `${sw.stdout}\n${sw.stderr}`);
    const onFive = await eventually(async () => {
      const l = await streaming('app', five);
      return l !== undefined && leaderOf(l).name === 'app-5' ? l : undefined;
    }, { timeoutMs: 120_000, intervalMs: 500, what: 'app-5 leading' });
    const before = leaderOf(onFive);
    await apply('app', 2, false);
    const leaders = new Set<string>();
    const two = await eventually(async () => {
      const l = await list('app');
      for (const m of l.members) if (m.role === 'leader') leaders.add(m.name);
      // The members leave the DCS before their node daemons publish them gone: wait for both.
      const placed = (await nodes()).flatMap((n) => n.workloads).filter((x) => x.cluster === 'app' && x.kind === 'member').map((x) => x.name).sort();
      return placed.join(',') === 'app-1,app-2' ? streaming('app', ['app-1', 'app-2']) : undefined;
    }, { timeoutMs: 240_000, intervalMs: 500, what: 'app-1 and app-2 streaming and the only app members on the nodes, the others gone' });
    const afterLeader = leaderOf(two);
    assert.ok(['app-1', 'app-2'].includes(afterLeader.name), `the leader after the scale down is ${afterLeader.name}`);
    assert.equal(afterLeader.timeline, before.timeline + 1, 'one switchover (one new timeline) moved the leader off app-5');
    assert.deepEqual([...leaders].filter((n) => !['app-1', 'app-2', 'app-5'].includes(n)), [], `leaders seen: ${[...leaders].join(', ')}`);
    const asides = (await Promise.all(['node-1', 'node-2', 'node-3'].map((n) => readdir(join(dir, n, 'moved-aside')).catch(() => [] as string[])))).flat();
    for (const m of ['app-3', 'app-4', 'app-5']) assert.ok(asides.some((d) => d.startsWith(`app-${m}-`)), `${m}'s directory was not moved aside: ${asides.join(', ')}`);
    const r = await w.finish();
    assert.ok(r.acked > 0);
    assert.deepEqual({ lost: r.lost, overlaps: r.overlaps }, { lost: 0, overlaps: 0 }, `${r.acked} acknowledged`);
  });

  it('a SIGKILLed primary of other (strict synchronous) fails over losing nothing; app\'s leader and timeline stay, and its writer never stalls', async () => {
    const wa = await startWriter('app');
    const wo = await startWriter('other');
    await eventually(() => (wa.writer.acks.length > 20 && wo.writer.acks.length > 20 ? true : undefined), { timeoutMs: 60_000, what: 'writes acknowledged on both clusters' });
    const a0 = leaderOf(await list('app'));
    const o0 = leaderOf(await list('other'));
    const victim = (await nodes()).flatMap((n) => n.workloads.filter((x) => x.cluster === 'other' && x.name === o0.name).map((x) => ({ ...x, dataDir: join(n.dir, 'workloads', 'other', 'members', x.name, 'data') })))[0];
    assert.ok(victim?.pid !== null && victim?.pid !== undefined, `${o0.name} has no agent PID`);
    const pm = await postmasterPid(victim.dataDir);
    assert.ok(pm !== undefined, `${o0.name} has no postmaster`);
    const t = performance.now();
    signalPid(victim.pid, 'SIGKILL');
    signalPid(pm, 'SIGKILL');
    // While other fails over and its old primary comes back as a replica, app is checked every second.
    const appUnchanged = async (): Promise<void> => {
      assert.deepEqual(leaderOf(await list('app')), a0, 'app\'s leader or timeline changed during other\'s failover');
    };
    await eventually(() => wo.writer.acks.find((x) => x.sentAtMs > t && x.timeline > o0.timeline), { timeoutMs: 120_000, what: 'other: a write acknowledged on a newer timeline' });
    await holdsFor(appUnchanged, { durationMs: 5_000, intervalMs: 1_000 });
    await eventually(async () => {
      await appUnchanged();
      return streaming('other', ['other-1', 'other-2', 'other-3']);
    }, { timeoutMs: 180_000, intervalMs: 1_000, what: `other streaming again, ${o0.name} back as a replica` });
    const healed = performance.now();
    const gap = longestGapMs(wa.writer.acks, t, healed);
    const ro = await wo.finish();
    const ra = await wa.finish();
    assert.deepEqual({ lost: ro.lost, overlaps: ro.overlaps }, { lost: 0, overlaps: 0 }, `other: ${ro.acked} acknowledged`);
    assert.deepEqual({ lost: ra.lost, overlaps: ra.overlaps }, { lost: 0, overlaps: 0 }, `app: ${ra.acked} acknowledged`);
    // Generous for a loaded 2-core machine; app stalled behind other's failover would take seconds (ttl 5 s).
    assert.ok(gap < 3_000, `app's writes stalled for ${Math.round(gap)} ms during other's failover`);
  });
  it('a parameter that needs a restart, applied to other (strict synchronous), rolls through its members: replicas first, one switchover, nothing lost', async () => {
    const names = ['other-1', 'other-2', 'other-3'];
    const wo = await startWriter('other');
    await eventually(() => (wo.writer.acks.length > 20 ? true : undefined), { timeoutMs: 60_000, what: 'other: writes acknowledged' });
    const l0 = await eventually(() => streaming('other', names), { timeoutMs: 120_000, intervalMs: 500, what: 'other streaming' });
    const before = leaderOf(l0);
    const setting = (host: string, port: number): Promise<string> => settingsOf('other', host, port);
    for (const m of l0.members) assert.equal(await setting(m.host, m.port), '100', `${m.name} before the change`);
    const t = performance.now();
    await apply('other', 3, true, { max_connections: 150 });
    const leaders = new Set<string>();
    const done = await eventually(async () => {
      const l = await streaming('other', names);
      if (l === undefined) return undefined;
      leaders.add(leaderOf(l).name);
      if (l.members.some((m) => m.pendingRestart)) return undefined;
      const values = await Promise.all(l.members.map((m) => setting(m.host, m.port)));
      return values.every((v) => v === '150') ? l : undefined;
    }, { timeoutMs: 300_000, intervalMs: 1_000, what: 'every member of other restarted with max_connections 150' });
    const rolled = performance.now();
    const afterLeader = leaderOf(done);
    assert.notEqual(afterLeader.name, before.name, 'the leader was switched over before its own restart');
    assert.equal(afterLeader.timeline, before.timeline + 1, 'exactly one switchover (one new timeline)');
    const gap = longestGapMs(wo.writer.acks, t, rolled);
    const r = await wo.finish();
    assert.deepEqual({ lost: r.lost, overlaps: r.overlaps }, { lost: 0, overlaps: 0 }, `${r.acked} acknowledged`);
    // A stall as long as a ttl (5 s) would mean a restart took the synchronous standby away under the writer.
    assert.ok(gap < 5_000, `other's writes stalled for ${Math.round(gap)} ms during the rolling restart (took ${Math.round(rolled - t)} ms)`);
    console.log(`# rolling restart of other: ${Math.round(rolled - t)} ms from apply to every member on 150, longest write gap ${Math.round(gap)} ms, leader ${before.name} → ${afterLeader.name}`);
  });
  it('lowering it again restarts other\'s primary in place first (no standby may run below its primary), then the replicas; no switchover, nothing lost', async () => {
    const names = ['other-1', 'other-2', 'other-3'];
    const wo = await startWriter('other');
    await eventually(() => (wo.writer.acks.length > 20 ? true : undefined), { timeoutMs: 60_000, what: 'other: writes acknowledged' });
    const before = leaderOf(await eventually(() => streaming('other', names), { timeoutMs: 120_000, intervalMs: 500, what: 'other streaming' }));
    const setting = (host: string, port: number): Promise<string> => settingsOf('other', host, port);
    const t = performance.now();
    await apply('other', 3, true, { max_connections: 120 });
    const done = await eventually(async () => {
      const l = await streaming('other', names);
      if (l === undefined || l.members.some((m) => m.pendingRestart)) return undefined;
      const values = await Promise.all(l.members.map((m) => setting(m.host, m.port)));
      return values.every((v) => v === '120') ? l : undefined;
    }, { timeoutMs: 300_000, intervalMs: 1_000, what: 'every member of other restarted with max_connections 120' });
    const rolled = performance.now();
    assert.deepEqual(leaderOf(done), before, 'the primary restarted in place: same leader, same timeline');
    // The active controller said why the primary went first (its reason in the node daemon's log).
    const logs = (await Promise.all([1, 2, 3].map((i) => readFile(join(dir, `node-${i}.log`), 'utf8').catch(() => '')))).join('');
    assert.match(logs, new RegExp(`${before.name} restarts for a parameter change \\(it lowers max_connections, which no standby may run below its primary`));
    const gap = longestGapMs(wo.writer.acks, t, rolled);
    const r = await wo.finish();
    assert.deepEqual({ lost: r.lost, overlaps: r.overlaps }, { lost: 0, overlaps: 0 }, `${r.acked} acknowledged`);
    console.log(`# lowering rolled through other: ${Math.round(rolled - t)} ms from apply to every member on 120, longest write gap ${Math.round(gap)} ms (the primary's restart in place)`);
  });
  it('raising one hot-standby parameter and lowering another in one change: the primary in place first, then each replica; no switchover, nothing lost', async () => {
    const names = ['other-1', 'other-2', 'other-3'];
    const wo = await startWriter('other');
    await eventually(() => (wo.writer.acks.length > 20 ? true : undefined), { timeoutMs: 60_000, what: 'other: writes acknowledged' });
    const before = leaderOf(await eventually(() => streaming('other', names), { timeoutMs: 120_000, intervalMs: 500, what: 'other streaming' }));
    const t = performance.now();
    // max_connections 120 → 100 (a lowering), max_worker_processes 8 → 12 (a raise).
    await apply('other', 3, true, { max_connections: 100, max_worker_processes: 12 });
    const done = await eventually(async () => {
      const l = await streaming('other', names);
      if (l === undefined || l.members.some((m) => m.pendingRestart)) return undefined;
      const values = await Promise.all(l.members.map((m) => settingsOf('other', m.host, m.port, ['max_connections', 'max_worker_processes'])));
      return values.every((v) => v === '100/12') ? l : undefined;
    }, { timeoutMs: 300_000, intervalMs: 1_000, what: 'every member of other restarted with max_connections 100 and max_worker_processes 12' });
    const rolled = performance.now();
    assert.deepEqual(leaderOf(done), before, 'the primary restarted in place: same leader, same timeline');
    const logs = (await Promise.all([1, 2, 3].map((i) => readFile(join(dir, `node-${i}.log`), 'utf8').catch(() => '')))).join('');
    assert.match(logs, new RegExp(`${before.name} restarts for a parameter change \\(it lowers max_connections, which no standby may run below its primary`));
    const gap = longestGapMs(wo.writer.acks, t, rolled);
    const r = await wo.finish();
    assert.deepEqual({ lost: r.lost, overlaps: r.overlaps }, { lost: 0, overlaps: 0 }, `${r.acked} acknowledged`);
    assert.ok(gap < 5_000, `other's writes stalled for ${Math.round(gap)} ms during the mixed roll (took ${Math.round(rolled - t)} ms)`);
    console.log(`# raise and lower in one change rolled through other: ${Math.round(rolled - t)} ms from apply to every member on 100/12, longest write gap ${Math.round(gap)} ms`);
  });
});
