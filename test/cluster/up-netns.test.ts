import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ListOutput } from '../../src/cli/list.js';
import { readLayout, type RuntimeLayout } from '../../src/controller/runtime-layout.js';
import type { StateFile } from '../../src/controller/state-file.js';
import { eventually } from '../../src/core/deadline.js';
import { isProcessAlive } from '../../src/core/process-info.js';
import { runWarden } from '../support/cli.js';
import { NetnsNetwork, netnsUnavailable } from '../support/netns-network.js';
import { NodesRuntimeUnderTest } from '../support/nodes-runtime.js';
import { probe } from '../support/pg-probe.js';

// `warden up --nodes 3 --netns` (root): each node daemon in a network namespace of its own with its
// own address on a private bridge, etcd on the root namespace's address on that bridge — several
// hosts on one machine, the way `warden up` builds them for users. The members listen on their
// nodes' addresses, a client in the root namespace reaches the primary through the router, and
// `warden down` removes the namespaces, the veth and the route with the processes.

const skip = netnsUnavailable();
const spec = `apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: net\nspec:\n  instances:\n  - name: instance1\n    replicas: 3\n  proxy:\n    router:\n      replicas: 1\n`;

/** The names `ip netns list` shows. */
function namespaces(): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n !== '');
}

describe('warden up --netns: node daemons in network namespaces of their own', { timeout: 600_000, skip }, () => {
  const rt = new NodesRuntimeUnderTest();
  let layout: RuntimeLayout | undefined;
  const state = (): Promise<StateFile> => rt.state();

  before(() => rt.create('warden-up-netns-'));

  after(() =>
    rt.cleanup(() => {
      // Whatever down left of the network (it failed half-way): removed here, processes in it first.
      if (layout?.netns !== undefined) NetnsNetwork.fromPlan(layout.netns).destroySync();
    }),
  );

  it('brings up three nodes, each in its own namespace with its own address; the members listen there and the router reaches the primary from the root namespace', async () => {
    const file = join(rt.dir, 'net.yaml');
    await writeFile(file, spec);
    const r = await runWarden(['up', '--netns', '-f', file, '--dir', rt.runtime], { timeoutMs: 400_000 });
    layout = await readLayout(rt.runtime);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /3 node daemons \(node-1, node-2, node-3\)/);
    assert.match(r.stdout, /network namespaces on 10\.213\.\d+\.0\/24: node-1 10\.213\.\d+\.1 \(ns [\w-]+\)/);
    assert.match(r.stdout, /cluster is healthy/);
    const net = layout?.netns;
    assert.ok(net !== undefined, 'runtime.json names no network');
    for (const ns of [net.bridgeNs, ...net.hosts.map((h) => h.ns)]) assert.ok(namespaces().includes(ns), `namespace ${ns} missing`);
    assert.ok(layout?.etcd.members.every((m) => new URL(m.clientUrl).hostname === net.testerIp), 'etcd listens on the root namespace\'s bridge address');

    const s = await state();
    const addresses = (s.nodes ?? []).map((n) => n.address);
    assert.deepEqual(addresses, net.hosts.map((h) => h.ip));
    for (const n of s.nodes ?? []) {
      assert.ok(n.pid !== null && (await isProcessAlive(n.pid)), `${n.name}'s daemon runs`);
      const inNs = spawnSync('ip', ['netns', 'identify', String(n.pid)], { encoding: 'utf8' }).stdout.trim();
      assert.equal(inNs, net.hosts.find((h) => h.name === n.name)?.ns, `${n.name}'s daemon runs in its own namespace`);
    }
    // Each member listens on its node's address: three different hosts, as across machines.
    const l = await eventually(async () => {
      const x = await runWarden(['list', '--dir', rt.runtime, '--format', 'json'], { timeoutMs: 15_000 });
      if (x.code !== 0) return undefined;
      const out = JSON.parse(x.stdout) as ListOutput;
      const streaming = out.members.filter((m) => m.role !== 'leader' && m.state === 'streaming').length;
      return out.members.length === 3 && streaming === 2 ? out : undefined;
    }, { timeoutMs: 120_000, intervalMs: 1_000, what: 'three members, two streaming' });
    assert.deepEqual(l.members.map((m) => m.host).sort(), [...net.hosts.map((h) => h.ip)].sort());
    for (const m of s.members) {
      const node = s.nodes?.find((n) => n.name === m.node);
      assert.equal(m.host, node?.address, `${m.name} listens on ${m.node ?? '?'}'s address`);
    }

    const rw = s.router?.rw;
    assert.ok(rw !== undefined && net.hosts.some((h) => h.ip === rw.host), `the router listens on a node's address (${rw?.host ?? 'none'})`);
    const password = (await readFile(join(rt.runtime, 'secrets', 'superuser.password'), 'utf8')).trim();
    const primary = await eventually(
      () => probe<{ a: string; r: boolean }>({ host: rw.host, port: rw.port, user: 'postgres', password }, 'CREATE TABLE IF NOT EXISTS netns_probe (v int)', 'INSERT INTO netns_probe VALUES (1)', 'SELECT host(inet_server_addr()) AS a, pg_is_in_recovery() AS r'),
      { timeoutMs: 60_000, what: 'a write through the router' },
    );
    assert.equal(primary.r, false, 'the router\'s read-write port reaches the primary');
    assert.equal(primary.a, l.members.find((m) => m.role === 'leader')?.host, 'the primary serves on its node\'s address');
  });

  it('warden down stops everything and removes the namespaces, the veth and the route', async () => {
    const net = layout?.netns;
    assert.ok(net !== undefined);
    const s = await state();
    const started = [s.supervisorPid, ...(s.nodes ?? []).map((n) => n.pid), ...s.members.map((m) => m.agentPid), ...(s.etcdPids ?? [])].filter((p): p is number => typeof p === 'number');
    const r = await runWarden(['down', '--dir', rt.runtime], { timeoutMs: 240_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /removed the network namespaces 10\.213\.\d+\.0\/24/);
    for (const pid of started) assert.equal(await isProcessAlive(pid), false, `pid ${pid} still runs after down`);
    const left = namespaces();
    for (const ns of [net.bridgeNs, ...net.hosts.map((h) => h.ns)]) assert.ok(!left.includes(ns), `namespace ${ns} left behind`);
    assert.equal(spawnSync('ip', ['route', 'show', net.subnet], { encoding: 'utf8' }).stdout.trim(), '', 'the blackhole route is left behind');
    assert.equal(spawnSync('ip', ['link', 'show', net.hostVeth], { encoding: 'utf8' }).status !== 0, true, 'the veth is left behind');
  });
});
