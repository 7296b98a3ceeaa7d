import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkHistory } from '../../src/chaos/checker.js';
import { ChaosWriter, prepareTable, readFinalValues, type WriteTarget } from '../../src/chaos/writer.js';
import type { ListOutput } from '../../src/cli/list.js';
import { CLUSTER_SECRETS, CONTROL_PREFIX, parseControlSnapshot, secretsKey, type ControlSnapshot } from '../../src/controller/records.js';
import { decodeJson } from '../../src/core/decode.js';
import { eventually } from '../../src/core/deadline.js';
import { signalPid, waitForExit } from '../../src/core/process-info.js';
import { EtcdClient } from '../../src/dcs/etcd-client.js';
import { spawnEtcdMember, waitForEtcdHealth, type EtcdProcess } from '../../src/dcs/etcd-server.js';
import { runWarden, traversableTempDir, WARDEN_BIN } from '../support/cli.js';
import { kill, NetnsNetwork, netnsUnavailable, waitGone } from '../support/netns-network.js';

// Host loss, for real: four `warden node` daemons, each in a network namespace of its own (its own
// address on a private bridge), and etcd in a fifth. Losing a host = every packet of its namespace
// dropped and every process in it killed with -9. The cluster (3 members, required anti-affinity per
// host, synchronous mode strict) fails over as usual; after nodeLostSeconds the controller re-creates
// the lost member on the spare host, and a writer through the routers loses no acknowledged write.
// Losing a second host leaves no feasible one: the member stays Pending with the reason.

const unavailable = netnsUnavailable();
const TTL_S = 5;
const NODE_LOST_S = 10;
const spec = `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: app
spec:
  instances:
  - name: instance1
    replicas: 3
    affinity:
      podAntiAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
        - labelSelector: { matchLabels: { warden.dev/cluster: app } }
          topologyKey: kubernetes.io/hostname
  proxy:
    router:
      replicas: 2
  patroni:
    dynamicConfiguration:
      ttl: ${TTL_S}
      loop_wait: 1
      retry_timeout: 2
      synchronous_mode: true
      synchronous_mode_strict: true
`;

describe('host loss on network namespaces: a lost host\'s member is re-created on the spare host, nothing acknowledged lost', { skip: unavailable, timeout: 600_000 }, () => {
  const hosts = ['host-1', 'host-2', 'host-3', 'host-4'];
  let net: NetnsNetwork | undefined;
  let dir = '';
  let etcdProc: EtcdProcess | undefined;
  let client: EtcdClient | undefined;
  let endpoint = '';
  const daemons = new Map<string, number>();
  let writer: ChaosWriter | undefined;
  let lost = new Set<string>();

  const snapshot = async (): Promise<ControlSnapshot> => {
    assert.ok(client !== undefined);
    const raw = await client.range(CONTROL_PREFIX, { timeoutMs: 3_000 });
    return parseControlSnapshot(raw.revision, raw.kvs);
  };
  const list = async (): Promise<ListOutput> => {
    const r = await runWarden(['list', '--etcd', endpoint, '--cluster', 'app', '--format', 'json'], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ListOutput;
  };
  const healthy = async (): Promise<ListOutput | undefined> => {
    const l = await list();
    const leaders = l.members.filter((m) => m.role === 'leader' && m.state === 'running');
    const streaming = l.members.filter((m) => m.role !== 'leader' && m.state === 'streaming');
    return l.members.length === 3 && leaders.length === 1 && streaming.length === 2 ? l : undefined;
  };
  /** Where each member of app runs, from the node records of hosts not lost. */
  const placement = async (): Promise<Map<string, string>> => {
    const snap = await snapshot();
    return new Map([...snap.nodes.values()].filter((n) => !lost.has(n.record.name)).flatMap((n) => n.record.workloads.filter((w) => w.cluster === 'app' && w.kind === 'member' && w.state === 'running').map((w) => [w.name, n.record.name] as const)));
  };
  const loseHost = (name: string): void => {
    assert.ok(net !== undefined);
    lost = new Set([...lost, name]);
    net.partition(name);
    const pids = net.pids(name);
    for (const pid of pids) kill(pid, 'SIGKILL');
    waitGone(pids, 10_000);
  };

  before(async () => {
    net = new NetnsNetwork([{ name: 'etcd', suffix: 21 }, ...hosts.map((h, i) => ({ name: h, suffix: 11 + i }))]);
    net.build();
    dir = await traversableTempDir('warden-nodes-netns-');
    const e = net.host('etcd');
    endpoint = `http://${e.ip}:2379`;
    mkdirSync(join(dir, 'etcd'), { recursive: true });
    const etcdSpec = { token: `wnn-${e.ns}`, members: [{ name: 'etcd', clientUrl: endpoint, peerUrl: `http://${e.ip}:2380`, dataDir: join(dir, 'etcd', 'data'), logFile: join(dir, 'etcd', 'etcd.log') }] };
    const [member] = etcdSpec.members;
    assert.ok(member !== undefined);
    etcdProc = spawnEtcdMember(member, etcdSpec, { state: 'new', commandPrefix: net.exec('etcd') });
    await waitForEtcdHealth([endpoint], 30_000, [etcdProc]);
    client = new EtcdClient({ endpoints: [endpoint], defaultTimeoutMs: 3_000 });
    for (const [i, name] of hosts.entries()) {
      const h = net.host(name);
      const nodeDir = join(dir, name);
      const cfg = join(dir, `${name}.yaml`);
      await writeFile(cfg, `name: ${name}\ndir: ${nodeDir}\netcd:\n  endpoints: [${endpoint}]\naddress: ${h.ip}\nlabels:\n  topology.kubernetes.io/zone: zone-${i + 1}\nleaseTtlSeconds: ${TTL_S}\nrestartDelaySeconds: 8\ncontroller:\n  ttlSeconds: ${TTL_S}\n  nodeLostSeconds: ${NODE_LOST_S}\nlog:\n  file: ${nodeDir}.log\n`);
      const out = openSync(join(dir, `${name}.out`), 'a');
      try {
        const child = spawn(net.exec(name)[0] ?? 'ip', [...net.exec(name).slice(1), process.execPath, WARDEN_BIN, 'node', '--config', cfg], { stdio: ['ignore', out, out], detached: true });
        child.unref();
        if (child.pid !== undefined) daemons.set(name, child.pid);
      } finally {
        closeSync(out);
      }
    }
  });

  after(async () => {
    await writer?.stop().catch(() => undefined);
    client?.close();
    // Daemons of hosts still up stop their agents and routers on SIGTERM; the rest is killed by destroySync.
    await Promise.all([...daemons].filter(([n]) => !lost.has(n)).map(async ([, pid]) => {
      signalPid(pid, 'SIGTERM');
      if (!(await waitForExit(pid, 60_000))) signalPid(pid, 'SIGKILL');
    }));
    if (etcdProc !== undefined) await etcdProc.stop(10_000).catch(() => undefined);
    net?.destroySync();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('loses the leader\'s host under a writer: failover, the member re-created on the spare host after nodeLostSeconds, 0 lost', async () => {
    await eventually(async () => ((await snapshot()).nodes.size === 4 ? true : undefined), { timeoutMs: 60_000, what: 'four registered nodes' });
    const file = join(dir, 'app.yaml');
    await writeFile(file, spec);
    const applied = await runWarden(['apply', '-f', file, '--etcd', endpoint], { timeoutMs: 30_000 });
    assert.equal(applied.code, 0, `${applied.stdout}\n${applied.stderr}`);
    const l0 = await eventually(healthy, { timeoutMs: 240_000, intervalMs: 1_000, what: 'app healthy on three hosts' });
    const where0 = await eventually(async () => {
      const p = await placement();
      return p.size === 3 ? p : undefined;
    }, { timeoutMs: 60_000, what: 'three members placed' });
    const leader0 = l0.members.find((m) => m.role === 'leader');
    assert.ok(leader0 !== undefined);
    const victim = where0.get(leader0.name);
    assert.ok(victim !== undefined, `the host of ${leader0.name}`);
    const spare = hosts.find((h) => ![...where0.values()].includes(h));
    assert.ok(spare !== undefined, 'a spare host');

    // A writer through whichever router runs on a host not lost (re-read every second).
    const kv = await client?.get(secretsKey('app'));
    const secrets = kv === undefined ? undefined : decodeJson(CLUSTER_SECRETS, kv.value);
    assert.ok(secrets?.ok === true);
    const creds = { user: secrets.value.superuser.username, password: secrets.value.superuser.password };
    let target: WriteTarget | undefined;
    let members = new Map<string, string>();
    const refresh = async (): Promise<void> => {
      const snap = await snapshot();
      const r = [...snap.nodes.values()].filter((n) => !lost.has(n.record.name)).flatMap((n) => n.record.workloads).find((w) => w.cluster === 'app' && w.kind === 'router' && w.state === 'running' && w.address !== undefined);
      const m = r?.address === undefined ? null : /^(.*):(\d+)$/.exec(r.address);
      if (m?.[1] !== undefined && m[2] !== undefined) target = { host: m[1], port: Number(m[2]) };
      members = new Map((await list()).members.map((x) => [`${x.host}:${x.port}`, x.name]));
    };
    await eventually(async () => {
      await refresh();
      return target;
    }, { timeoutMs: 60_000, what: 'a running router' });
    const first = await eventually(() => (target === undefined ? undefined : prepareTable({ ...target, ...creds }).catch(() => undefined)), { timeoutMs: 60_000, what: 'the writer\'s table through the router' });
    const w = new ChaosWriter({ target: () => Promise.resolve(target), memberOf: (h, p) => members.get(`${h}:${p}`), ...creds, intervalMs: 10, statementTimeoutMs: 3_000 }, first);
    writer = w;
    w.start();
    let refreshing = true;
    const refresher = eventually(async () => (refreshing ? void (await refresh().catch(() => undefined)) : true), { timeoutMs: 600_000, intervalMs: 1_000, what: 'the writer stopped' });
    await eventually(() => (w.acks.length > 50 ? true : undefined), { timeoutMs: 60_000, what: 'writes acknowledged' });

    const t0 = performance.now();
    loseHost(victim);
    const failover = await eventually(async () => {
      const l = await list();
      const m = l.members.find((x) => x.role === 'leader' && x.state === 'running' && x.name !== leader0.name);
      return m === undefined ? undefined : { leader: m.name, atMs: performance.now() - t0 };
    }, { timeoutMs: 60_000, intervalMs: 500, what: `a new leader after ${victim} was lost` });
    // The lost member comes back on the spare host, streaming from the new leader.
    const healed = await eventually(async () => {
      const p = await placement();
      if (p.get(leader0.name) !== spare) return undefined;
      return (await healthy()) === undefined ? undefined : performance.now() - t0;
    }, { timeoutMs: 300_000, intervalMs: 1_000, what: `${leader0.name} re-created on ${spare} and streaming` });
    assert.ok(healed >= NODE_LOST_S * 1000, `re-created after ${Math.round(healed)} ms, before nodeLostSeconds (${NODE_LOST_S} s)`);

    refreshing = false;
    await w.stop();
    await refresher.catch(() => undefined);
    const l = await eventually(healthy, { timeoutMs: 60_000, what: 'a healthy cluster to read the final table from' });
    const leader = l.members.find((m) => m.role === 'leader');
    assert.ok(leader !== undefined);
    const values = await readFinalValues({ host: leader.host, port: leader.port, ...creds }, first);
    const acks = w.acks.filter((a) => a.lane === 'main');
    const report = checkHistory({ acks, failures: w.failures, faults: [], recoveries: [], final: { primary: leader.name, values } }, { lossAllowed: false, maxLagBytes: 0 });
    assert.deepEqual({ lost: report.lostWrites.length, overlaps: report.overlaps.length }, { lost: 0, overlaps: 0 }, `${acks.length} acknowledged`);
    console.log(`# host loss (${victim}, leader ${leader0.name}): new leader ${failover.leader} after ${(failover.atMs / 1000).toFixed(1)} s, ${leader0.name} re-created on ${spare} and streaming after ${(healed / 1000).toFixed(1)} s (nodeLostSeconds ${NODE_LOST_S}); ${acks.length} writes acknowledged, 0 lost`);
  });

  it('loses a second host: no feasible host is left, so its member stays Pending with the reason', async () => {
    const p = await placement();
    const l = await list();
    const replica = l.members.find((m) => m.role !== 'leader');
    assert.ok(replica !== undefined);
    const victim = p.get(replica.name);
    assert.ok(victim !== undefined);
    loseHost(victim);
    const pending = await eventually(async () => {
      const st = (await snapshot()).statuses.get('app');
      return st?.pending.find((x) => x.name === replica.name);
    }, { timeoutMs: 120_000, intervalMs: 1_000, what: `${replica.name} Pending` });
    assert.match(pending.reason.message, /anti-affinity|lost|unschedulable|didn't match/i, pending.reason.message);
    const get = await runWarden(['get', 'clusters', '--etcd', endpoint], { timeoutMs: 15_000 });
    assert.equal(get.code, 0, get.stderr);
    assert.match(get.stdout, new RegExp(`${replica.name}`));
    console.log(`# second host lost (${victim}): ${replica.name} Pending — ${pending.reason.message}`);
  });
});
