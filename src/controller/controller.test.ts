import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { MemoryDcs } from '../dcs/memory-dcs.js';
import { ControllerCandidate, memberAgentSettings, type ControllerLog } from './controller.js';
import { parseClusterSpec } from '../spec/index.js';
import { assignmentKey, CONTROL_KEYS, CONTROL_PREFIX, nodeKey, parseControlSnapshot, secretsKey, specKey, statusKey, type ClusterStatus, type NodeRecord, type StoredSpec } from './records.js';

const quiet: ControllerLog = { info: () => undefined, warn: () => undefined, error: () => undefined };

const SPEC = (replicas: number): string => `apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: app\nspec:\n  instances:\n  - name: instance1\n    replicas: ${replicas}\n    affinity:\n      podAntiAffinity:\n        requiredDuringSchedulingIgnoredDuringExecution:\n        - labelSelector: { matchLabels: { warden.dev/cluster: app } }\n          topologyKey: kubernetes.io/hostname\n  proxy:\n    router:\n      replicas: 1\n`;

async function registerNode(dcs: MemoryDcs, name: string): Promise<string> {
  const lease = await dcs.grantLease(10_000);
  const record: NodeRecord = { name, labels: { 'kubernetes.io/hostname': name }, taints: [], addresses: ['127.0.0.1'], capacity: { workloads: 10 }, version: 'test', daemonId: name, pid: 1, dir: `/n/${name}`, startedAtMs: 0, workloads: [] };
  assert.ok(await dcs.create(nodeKey(name), JSON.stringify(record), { leaseId: lease.id }));
  return lease.id;
}

async function storeSpec(dcs: MemoryDcs, text: string, generation: number): Promise<void> {
  const stored: StoredSpec = { cluster: 'app', generation, text, file: 'app.yaml', uid: 'uid-1', appliedAtMs: 0 };
  await dcs.put(specKey('app'), JSON.stringify(stored));
}

async function snapshot(dcs: MemoryDcs): Promise<ReturnType<typeof parseControlSnapshot>> {
  const raw = await dcs.range(CONTROL_PREFIX);
  return parseControlSnapshot(raw.revision, raw.kvs);
}

function candidate(dcs: MemoryDcs, clock: FakeClock, node: string, nodeLostMs = 30_000): ControllerCandidate {
  return new ControllerCandidate({ dcs, clock, node, candidateId: `c-${node}`, log: quiet, ttlMs: 4_000, passIntervalMs: 500, nodeLostMs });
}

describe('ControllerCandidate', () => {
  it('elects exactly one of three candidates, and another takes over within one ttl after the active one dies', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    const cs = ['node-1', 'node-2', 'node-3'].map((n) => candidate(dcs, clock, n));
    for (const c of cs) await c.tick();
    assert.deepEqual(cs.map((c) => c.isActive()), [true, false, false]);
    // node-1's candidate dies: it renews no more. Within one ttl of its last renewal another is active.
    let after = 0;
    while (!cs.slice(1).some((c) => c.isActive())) {
      clock.advance(500);
      after += 500;
      for (const c of cs.slice(1)) await c.tick();
      assert.ok(after <= 4_000, `no controller active ${after} ms after the active one died`);
    }
    assert.equal(cs.slice(1).filter((c) => c.isActive()).length, 1);
    assert.equal((await snapshot(dcs)).controller?.node, 'node-2');
  });

  it('stops being active once its lease cannot be renewed, even before etcd says so', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    const c = candidate(dcs, clock, 'node-1');
    await c.tick();
    assert.ok(c.isActive());
    dcs.setAvailable(false);
    clock.advance(3_700);
    await c.tick();
    assert.equal(c.isActive(), false);
  });

  it('hands over at once on a graceful stop (the lease is revoked)', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    const [a, b] = [candidate(dcs, clock, 'node-1'), candidate(dcs, clock, 'node-2')];
    await a.tick();
    await b.tick();
    await a.stop();
    await b.tick();
    assert.ok(b.isActive());
  });

  it('assigns a stored spec\'s members and router with create-only writes, writes status, and changes nothing on the next pass', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    for (const n of ['node-1', 'node-2', 'node-3']) await registerNode(dcs, n);
    await storeSpec(dcs, SPEC(3), 1);
    const c = candidate(dcs, clock, 'node-1');
    const first = await c.tick();
    assert.equal(first.clusters.get('app')?.applied, 4);
    const snap = await snapshot(dcs);
    const as = snap.assignments.get('app') ?? [];
    assert.deepEqual(as.filter((a) => a.kind === 'member').map((a) => a.node).sort(), ['node-1', 'node-2', 'node-3']);
    assert.equal(as.find((a) => a.name === 'app-1')?.clusterUid, 'uid-1');
    assert.equal(as.find((a) => a.name === 'app-1')?.agent?.instanceSet, 'instance1');
    const status = snap.statuses.get('app');
    assert.deepEqual({ desired: status?.desired, ready: status?.ready, routers: status?.routers, pending: status?.pending, controller: status?.controller }, { desired: 3, ready: 0, routers: { desired: 1, placed: 1 }, pending: [], controller: 'node-1' });
    clock.advance(500);
    const second = await c.tick();
    assert.equal(second.clusters.get('app')?.applied, 0);
    assert.deepEqual((await snapshot(dcs)).statuses.get('app')?.inProgress, [], 'the changes were applied: none in progress');
    const before = (await dcs.range(CONTROL_PREFIX)).revision;
    clock.advance(500);
    await c.tick();
    assert.equal((await dcs.range(CONTROL_PREFIX)).revision, before, 'an unchanged pass wrote something');
  });

  it('shows a member no node accepts as Pending with the reason in status', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    for (const n of ['node-1', 'node-2']) await registerNode(dcs, n);
    await storeSpec(dcs, SPEC(3), 1);
    await candidate(dcs, clock, 'node-1').tick();
    const status = (await snapshot(dcs)).statuses.get('app');
    assert.equal(status?.pending[0]?.name, 'app-3');
    assert.match(status?.pending[0]?.reason.message ?? '', /no node accepts it: node-1: .*; node-2: /);
  });

  it('re-creates the member of a node lost for longer than nodeLostSeconds on a spare node', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    const leases = new Map<string, string>();
    for (const n of ['node-1', 'node-2', 'node-3']) leases.set(n, await registerNode(dcs, n));
    await storeSpec(dcs, SPEC(2), 1);
    const c = candidate(dcs, clock, 'node-9', 5_000);
    await c.tick();
    const lostNode = (await snapshot(dcs)).assignments.get('app')?.find((a) => a.name === 'app-2')?.node ?? '';
    await dcs.revokeLease(leases.get(lostNode) ?? '');
    await c.tick();
    assert.equal((await snapshot(dcs)).assignments.get('app')?.find((a) => a.name === 'app-2')?.node, lostNode, 'moved before nodeLostSeconds');
    for (let t = 0; t < 6_000; t += 500) {
      clock.advance(500);
      await c.tick();
    }
    const moved = (await snapshot(dcs)).assignments.get('app')?.find((a) => a.name === 'app-2');
    assert.notEqual(moved?.node, lostNode);
    assert.match(moved?.reason ?? '', /^node .* of app-2 is gone for more than 5 s/);
  });

  it('removes a deleted cluster\'s assignments, then its keys once no agent is left, and leaves other clusters\' keys alone', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    for (const n of ['node-1', 'node-2', 'node-3']) await registerNode(dcs, n);
    await storeSpec(dcs, SPEC(2), 1);
    await dcs.put('/warden/app/initialize', '123');
    await dcs.put('/warden/demo/initialize', '456');
    const c = candidate(dcs, clock, 'node-1');
    await c.tick();
    await dcs.delete(specKey('app'));
    clock.advance(500);
    await c.tick();
    assert.equal((await snapshot(dcs)).assignments.get('app'), undefined);
    clock.advance(500);
    await c.tick();
    assert.equal(await dcs.get('/warden/app/initialize'), undefined);
    assert.equal(await dcs.get(statusKey('app')), undefined);
    assert.equal((await dcs.get('/warden/demo/initialize'))?.value, '456');
  });

  it('steps down when the election key is no longer its own', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    const c = candidate(dcs, clock, 'node-1');
    await c.tick();
    await dcs.delete(CONTROL_KEYS.controller);
    const other = await dcs.grantLease(60_000);
    assert.ok(await dcs.create(CONTROL_KEYS.controller, JSON.stringify({ node: 'node-2', candidateId: 'x', sinceMs: 0 }), { leaseId: other.id }));
    await storeSpec(dcs, SPEC(1), 1);
    await registerNode(dcs, 'node-1');
    const r = await c.tick();
    assert.equal(r.active, false);
    assert.equal(await dcs.get(assignmentKey('app', 'member', 'app-1')), undefined);
  });

  it('writes nothing once it is no longer active', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    await registerNode(dcs, 'node-1');
    const c = candidate(dcs, clock, 'node-1');
    await c.tick();
    const other = await dcs.grantLease(60_000);
    await dcs.delete(CONTROL_KEYS.controller);
    assert.ok(await dcs.create(CONTROL_KEYS.controller, JSON.stringify({ node: 'node-2', candidateId: 'x', sinceMs: 0 }), { leaseId: other.id }));
    // Its own lease expires (not renewed while its key is taken): it must not assign anything.
    await storeSpec(dcs, SPEC(1), 1);
    clock.advance(5_000);
    const r = await c.tick();
    assert.equal(r.active, false);
    assert.equal(await dcs.get(assignmentKey('app', 'member', 'app-1')), undefined);
  });

  it('asks for a switchover through the failover key before it removes a leader on scale down', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    for (const n of ['node-1', 'node-2', 'node-3']) await registerNode(dcs, n);
    await storeSpec(dcs, SPEC(3), 1);
    const c = candidate(dcs, clock, 'node-1');
    await c.tick();
    const member = (name: string, role: string, state: string): string =>
      JSON.stringify({ name, apiUrl: 'http://127.0.0.1:1', host: '127.0.0.1', port: 1, role, state, timeline: 1, walPosition: '0/3000000', tags: { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false }, version: 'test' });
    await dcs.put('/warden/app/leader', 'app-3');
    await dcs.put('/warden/app/members/app-1', member('app-1', 'replica', 'streaming'));
    await dcs.put('/warden/app/members/app-2', member('app-2', 'replica', 'streaming'));
    await dcs.put('/warden/app/members/app-3', member('app-3', 'primary', 'running'));
    await storeSpec(dcs, SPEC(2), 2);
    clock.advance(500);
    await c.tick();
    const failover = JSON.parse((await dcs.get('/warden/app/failover'))?.value ?? '{}') as Record<string, unknown>;
    assert.deepEqual({ kind: failover['kind'], leader: failover['leader'], candidate: failover['candidate'] }, { kind: 'switchover', leader: 'app-3', candidate: 'app-1' });
    assert.ok((await dcs.get(assignmentKey('app', 'member', 'app-3'))) !== undefined, 'the leader was removed before its switchover');
    assert.deepEqual((await snapshot(dcs)).statuses.get('app')?.inProgress.map((r) => r.code), ['leaving', 'switchover-before-move']);
    assert.deepEqual(JSON.parse((await dcs.get('/warden/app/leaving'))?.value ?? '{}'), { members: ['app-3'] }, 'the member about to go is announced to the leader');
    // The leader moved: the next pass removes app-3.
    await dcs.delete('/warden/app/failover');
    await dcs.put('/warden/app/leader', 'app-1');
    await dcs.put('/warden/app/members/app-1', member('app-1', 'primary', 'running'));
    await dcs.put('/warden/app/members/app-3', member('app-3', 'replica', 'streaming'));
    clock.advance(500);
    await c.tick();
    assert.equal(await dcs.get(assignmentKey('app', 'member', 'app-3')), undefined);
  });

  it('writes a changed dynamic configuration once and restarts a replica with a pending restart through its REST API', async () => {
    const requests: { url: string; auth: string; body: string }[] = [];
    let answer = 202;
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        requests.push({ url: `${req.method ?? ''} ${req.url ?? ''}`, auth: req.headers.authorization ?? '', body });
        res.writeHead(answer, { 'content-type': 'text/plain' }).end(answer === 202 ? 'restart scheduled' : 'a restart is already scheduled');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const clock = new FakeClock();
      const dcs = new MemoryDcs({ clock });
      for (const n of ['node-1', 'node-2', 'node-3']) await registerNode(dcs, n);
      await storeSpec(dcs, SPEC(3), 1);
      await dcs.put(secretsKey('app'), JSON.stringify({ superuser: { username: 'postgres', password: 'p' }, replication: { username: 'replicator', password: 'r' }, restApi: { username: 'warden', password: 's3cret' } }));
      const parsed = parseClusterSpec(SPEC(3), 'app.yaml');
      assert.ok(parsed.ok);
      await dcs.put('/warden/app/config', JSON.stringify(parsed.spec.dynamicConfig));
      const member = (name: string, role: string, state: string, pendingRestart = false): string =>
        JSON.stringify({ name, apiUrl, host: '127.0.0.1', port: 1, role, state, timeline: 1, walPosition: '0/3000000', tags: { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false }, version: 'test', pendingRestart });
      await dcs.put('/warden/app/leader', 'app-1');
      await dcs.put('/warden/app/members/app-1', member('app-1', 'primary', 'running'));
      await dcs.put('/warden/app/members/app-2', member('app-2', 'replica', 'streaming'));
      await dcs.put('/warden/app/members/app-3', member('app-3', 'replica', 'streaming'));
      const c = candidate(dcs, clock, 'node-1');
      await c.tick();
      const status = async (): Promise<ClusterStatus | undefined> => (await snapshot(dcs)).statuses.get('app');
      const mark = (await status())?.appliedConfig;
      assert.ok(mark !== undefined, 'the first pass marks the configuration the key holds');
      // A new spec generation changes a parameter: written into the config key once.
      await storeSpec(dcs, `${SPEC(3)}  patroni:\n    dynamicConfiguration:\n      postgresql:\n        parameters:\n          max_connections: 150\n`, 2);
      clock.advance(500);
      await c.tick();
      const written = JSON.parse((await dcs.get('/warden/app/config'))?.value ?? '{}') as { postgresql?: { parameters?: Record<string, unknown> }; pause?: boolean };
      assert.deepEqual({ params: written.postgresql?.parameters, pause: written.pause }, { params: { max_connections: 150 }, pause: false });
      assert.ok((await status())?.inProgress.some((r) => r.code === 'config-changed'));
      const rev = (await dcs.get('/warden/app/config'))?.modRevision;
      clock.advance(500);
      await c.tick();
      assert.equal((await dcs.get('/warden/app/config'))?.modRevision, rev, 'written once');
      // The agents report the restart pending: the controller asks app-2 (a replica) first.
      for (const [n, role, state] of [['app-1', 'primary', 'running'], ['app-2', 'replica', 'streaming'], ['app-3', 'replica', 'streaming']] as const) await dcs.put(`/warden/app/members/${n}`, member(n, role, state, true));
      clock.advance(500);
      await c.tick();
      assert.equal(requests.length, 1);
      assert.equal(requests[0]?.url, 'POST /restart');
      assert.equal(requests[0]?.auth, `Basic ${Buffer.from('warden:s3cret').toString('base64')}`);
      const body = JSON.parse(requests[0]?.body ?? '{}') as { schedule?: string; restart_pending?: boolean };
      assert.equal(body.restart_pending, true);
      assert.ok(Date.parse(body.schedule ?? '') > clock.nowMs(), `scheduled ahead: ${body.schedule ?? ''}`);
      assert.equal((await status())?.lastError, null);
      // An agent that refuses: a precise error in status, asked again next pass.
      answer = 409;
      clock.advance(500);
      await c.tick();
      assert.match((await status())?.lastError ?? '', /^restart app-2: the agent at http:\/\/127\.0\.0\.1:\d+ answered 409: a restart is already scheduled; asked again next pass$/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('places two clusters on the same nodes, each with its own anti-affinity, and counts both against capacity', async () => {
    const clock = new FakeClock();
    const dcs = new MemoryDcs({ clock });
    for (const n of ['node-1', 'node-2', 'node-3']) await registerNode(dcs, n);
    await storeSpec(dcs, SPEC(3), 1);
    const other: StoredSpec = { cluster: 'metrics', generation: 1, text: SPEC(3).replaceAll('app', 'metrics'), file: 'metrics.yaml', uid: 'uid-2', appliedAtMs: 0 };
    await dcs.put(specKey('metrics'), JSON.stringify(other));
    await candidate(dcs, clock, 'node-1').tick();
    const snap = await snapshot(dcs);
    for (const cluster of ['app', 'metrics']) {
      const nodes = (snap.assignments.get(cluster) ?? []).filter((a) => a.kind === 'member').map((a) => a.node).sort();
      assert.deepEqual(nodes, ['node-1', 'node-2', 'node-3'], cluster);
      assert.deepEqual(snap.statuses.get(cluster)?.pending, []);
    }
  });
});

describe('memberAgentSettings', () => {
  it('carries spec.backups into a member\'s assignment: stanza = cluster name, repositories, options', () => {
    const r = parseClusterSpec('apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: shop\nspec:\n  instances:\n  - name: instance1\n    replicas: 2\n  backups:\n    pgbackrest:\n      global: { repo1-retention-full: 3 }\n      repos:\n      - name: repo1\n        volume: {}\n', 'shop.yaml');
    assert.ok(r.ok);
    const a = memberAgentSettings(r.spec, 'instance1');
    assert.equal(a.instanceSet, 'instance1');
    assert.deepEqual(a.backups, { stanza: 'shop', repos: ['repo1'], global: { 'repo1-retention-full': '3' } });
    const plain = parseClusterSpec('apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: shop\nspec:\n  instances:\n  - name: instance1\n    replicas: 2\n', 'shop.yaml');
    assert.ok(plain.ok);
    assert.equal(memberAgentSettings(plain.spec, 'instance1').backups, undefined);
  });

  it('carries the stored data source into a member\'s assignment while the spec asks for one, without the cluster name', () => {
    const ds = { cluster: 'shop', sourceCluster: 'src', stanza: 'src', repo: 'repo1', repoPath: '/srv/backup/src/repo1', setLabel: 'L', target: { kind: 'latest' as const }, sourceSuperuserPassword: 'pw' };
    const clone = parseClusterSpec('apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: shop\nspec:\n  instances:\n  - name: instance1\n    replicas: 2\n  dataSource:\n    postgresCluster:\n      clusterName: src\n      repoName: repo1\n', 'shop.yaml');
    assert.ok(clone.ok, clone.ok ? '' : JSON.stringify(clone.errors));
    const { cluster: _c, ...want } = ds;
    assert.deepEqual(memberAgentSettings(clone.spec, 'instance1', ds).dataSource, want);
    assert.equal(memberAgentSettings(clone.spec, 'instance1').dataSource, undefined, 'no stored data source: none');
    const plain = parseClusterSpec('apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: shop\nspec:\n  instances:\n  - name: instance1\n    replicas: 2\n', 'shop.yaml');
    assert.ok(plain.ok);
    assert.equal(memberAgentSettings(plain.spec, 'instance1', ds).dataSource, undefined, 'a spec without dataSource bootstraps nothing from it');
  });
});
