import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ListOutput } from '../../src/cli/list.js';
import type { StateFile } from '../../src/controller/state-file.js';
import { eventually } from '../../src/core/deadline.js';
import { isProcessAlive, processCommandLine, signalPid } from '../../src/core/process-info.js';
import { runWarden } from '../support/cli.js';
import { NodesRuntimeUnderTest } from '../support/nodes-runtime.js';
import { probe } from '../support/pg-probe.js';

// `warden up --nodes 3`: the local runtime as etcd plus three node daemons on one machine, the code
// path of a deployment across hosts — the spec applied as `warden apply` would, state.json with
// nodes, members on nodes and routers, `warden up -f` on a running runtime carrying out a changed
// spec (replicas 3 → 4), a killed node daemon restarted by the supervisor (its successor adopts the
// agents it left), and `warden down` stopping everything it started.

const spec = (replicas: number): string =>
  `apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: shop\nspec:\n  instances:\n  - name: instance1\n    replicas: ${replicas}\n    affinity:\n      podAntiAffinity:\n        preferredDuringSchedulingIgnoredDuringExecution:\n        - weight: 100\n          podAffinityTerm:\n            labelSelector: { matchLabels: { warden.dev/cluster: shop } }\n            topologyKey: topology.kubernetes.io/zone\n`;

describe('warden up --nodes: etcd and node daemons on one machine', { timeout: 900_000 }, () => {
  const rt = new NodesRuntimeUnderTest();

  const list = async (): Promise<ListOutput> => {
    const r = await runWarden(['list', '--dir', rt.runtime, '--format', 'json'], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListOutput;
  };
  const healthy = async (n: number): Promise<ListOutput | undefined> => {
    const l = await list();
    const leaders = l.members.filter((m) => m.role === 'leader' && m.state === 'running');
    const streaming = l.members.filter((m) => m.role !== 'leader' && m.state === 'streaming');
    return l.members.length === n && leaders.length === 1 && streaming.length === n - 1 ? l : undefined;
  };
  const state = (): Promise<StateFile> => rt.state();

  before(() => rt.create('warden-up-nodes-'));

  after(() => rt.cleanup());

  it('warden up without --static brings up three node daemons and etcd, applies the spec, and records nodes, members and routers in state.json', async () => {
    const file = join(rt.dir, 'shop.yaml');
    await writeFile(file, spec(3));
    const r = await runWarden(['up', '-f', file, '--dir', rt.runtime], { timeoutMs: 400_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /3 node daemons \(node-1, node-2, node-3\)/);
    assert.match(r.stdout, /stored spec shop generation 1/);
    assert.match(r.stdout, /3\/3 members ready, 2\/2 routers placed/);
    assert.match(r.stdout, /cluster is healthy/);
    const l = await eventually(() => healthy(3), { timeoutMs: 60_000, what: 'shop healthy' });
    assert.equal(l.cluster, 'shop');
    const s = await state();
    assert.equal(s.cluster, 'shop');
    assert.deepEqual((s.nodes ?? []).map((n) => [n.name, n.labels['topology.kubernetes.io/zone']]), [['node-1', 'zone-a'], ['node-2', 'zone-b'], ['node-3', 'zone-c']]);
    for (const n of s.nodes ?? []) assert.ok(n.pid !== null && (await isProcessAlive(n.pid)), `${n.name}'s daemon runs`);
    assert.deepEqual(s.members.map((m) => m.name), ['shop-1', 'shop-2', 'shop-3']);
    // The preferred zone spread puts one member on each node.
    assert.deepEqual(s.members.map((m) => m.node).sort(), ['node-1', 'node-2', 'node-3']);
    for (const m of s.members) assert.ok(m.dir?.startsWith(join(rt.runtime, 'nodes', m.node ?? '?', 'workloads', 'shop', 'members')) === true, `${m.name}: ${m.dir ?? 'no dir'}`);
    assert.equal(s.routers?.length, 2);
    assert.deepEqual(s.router, s.routers?.[0]);
    // A client through the first router reaches the primary, with the password in the runtime dir.
    const password = (await readFile(join(rt.runtime, 'secrets', 'superuser.password'), 'utf8')).trim();
    const rw = s.router?.rw;
    assert.ok(rw !== undefined);
    const value = await eventually(async () => {
      const row = await probe<{ r: boolean }>({ host: rw.host, port: rw.port, user: 'postgres', password }, 'SELECT pg_is_in_recovery() AS r');
      return row === undefined ? undefined : String(row.r);
    }, { timeoutMs: 30_000, what: 'a connection through the router' });
    assert.equal(value, 'false', 'the router\'s read-write port reaches the primary');
  });

  it('warden up -f with a changed spec on the running runtime carries it out (replicas 3 → 4)', async () => {
    const file = join(rt.dir, 'shop.yaml');
    await writeFile(file, spec(4));
    const r = await runWarden(['up', '-f', file, '--dir', rt.runtime], { timeoutMs: 400_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /already running/);
    assert.match(r.stdout, /stored spec shop generation 2/);
    await eventually(() => healthy(4), { timeoutMs: 120_000, what: 'four members' });
    await eventually(async () => ((await state()).members.length === 4 ? true : undefined), { timeoutMs: 30_000, what: 'state.json with four members' });
  });

  it('restarts a node daemon killed with -9; the new one adopts the agents the dead one left (same PIDs) and warden down still stops them', async () => {
    const s = await state();
    const victim = s.nodes?.find((n) => n.name === 'node-2');
    assert.ok(victim?.pid !== null && victim?.pid !== undefined);
    const before = s.members.filter((m) => m.node === 'node-2');
    assert.ok(before.length > 0 && before.every((m) => m.agentPid !== null), `node-2 runs ${before.map((m) => m.name).join(', ') || 'nothing'}`);
    signalPid(victim.pid, 'SIGKILL');
    const again = await eventually(async () => {
      const n = (await state()).nodes?.find((x) => x.name === 'node-2');
      return n?.pid !== null && n?.pid !== undefined && n.pid !== victim.pid && (await isProcessAlive(n.pid)) ? n : undefined;
    }, { timeoutMs: 60_000, what: 'node-2 running again under a new PID' });
    assert.notEqual(again.pid, victim.pid);
    // The members of node-2 keep running under their old agents, now watched by the new daemon.
    for (const b of before) assert.ok(b.agentPid !== null && (await isProcessAlive(b.agentPid)), `${b.name}'s agent (pid ${b.agentPid ?? '?'}) was stopped`);
    await eventually(async () => {
      const now = await state();
      const n = now.nodes?.find((x) => x.name === 'node-2');
      return n?.pid === again.pid && before.every((b) => now.members.some((m) => m.name === b.name && m.node === 'node-2' && m.agentPid === b.agentPid)) ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 1_000, what: `${before.map((m) => m.name).join(', ')} adopted under their old PIDs` });
    await eventually(() => healthy(4), { timeoutMs: 120_000, intervalMs: 1_000, what: 'four healthy members after node-2 came back' });
  });

  it('warden down stops every process it started: supervisor, node daemons, agents, routers, etcd', async () => {
    const s = await state();
    const started = [s.supervisorPid, ...(s.nodes ?? []).map((n) => n.pid), ...s.members.map((m) => m.agentPid), ...(s.routers ?? []).map((r) => r.pid ?? null), ...(s.etcdPids ?? [])].filter((p): p is number => typeof p === 'number');
    assert.ok(started.length >= 1 + 3 + 4 + 2 + 3, `PIDs in state.json: ${started.join(', ')}`);
    const r = await runWarden(['down', '--dir', rt.runtime], { timeoutMs: 240_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const alive = (await Promise.all(started.map(async (p) => ((await isProcessAlive(p)) ? `${p}: ${(await processCommandLine(p))?.join(' ') ?? '?'}` : undefined)))).filter((p) => p !== undefined);
    assert.deepEqual(alive, [], 'processes still alive after warden down');
  });
});
