/**
 * Nodes and a controller: the time from `warden apply` to every member streaming (through three
 * `warden node` daemons on loopback and one real etcd) for 3 members, then for `--members` more
 * (default 9), and the idle footprint of the node daemons (one of them the active controller).
 *
 *   npm run build && node --import tsx bench/nodes.ts [--members 9] [--seconds 30] [--dir /var/tmp/warden-bench-nodes]
 *
 * Apply → streaming: wall time from starting `warden apply` (without --wait) until `warden list`
 * shows one running leader and every other member streaming, polled every 250 ms.
 * RSS: VmRSS from /proc/<pid>/status sampled every second (median, max). CPU: (utime + stime) of the
 * daemon process alone (not its children) over the window, in % of one core.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startEtcdCluster } from '../src/dcs/etcd-server.js';
import { clockTicks, fmt, logger, machine, machineLine, now, onCleanup, parseOptions, procStat, processTree, requireBuild, rssBytes, runBench, signal, sleep, summarize, table, warden, WARDEN_BIN } from './support.js';

const opts = parseOptions({ members: 9, seconds: 30, dir: '/var/tmp/warden-bench-nodes' });
const log = logger('nodes');
const MB = 1024 * 1024;

const spec = (name: string, replicas: number): string =>
  `apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: ${name}\nspec:\n  instances:\n  - name: instance1\n    replicas: ${replicas}\n  proxy:\n    router:\n      replicas: 1\n`;

interface ListMember {
  readonly role: string;
  readonly state: string;
}

async function streamingAll(etcd: string, cluster: string, count: number): Promise<boolean> {
  const r = await warden(['list', '--etcd', etcd, '--cluster', cluster, '--format', 'json'], 10_000);
  if (r.code !== 0) return false;
  const members = (JSON.parse(r.stdout) as { members: ListMember[] }).members;
  return members.length === count && members.filter((m) => m.role === 'leader' && m.state === 'running').length === 1 && members.filter((m) => m.role !== 'leader' && m.state === 'streaming').length === count - 1;
}

async function applyToStreaming(etcd: string, dir: string, cluster: string, count: number): Promise<number> {
  const file = join(dir, `${cluster}.yaml`);
  await writeFile(file, spec(cluster, count));
  const t0 = now();
  const r = await warden(['apply', '-f', file, '--etcd', etcd], 30_000);
  if (r.code !== 0) throw new Error(`apply failed: ${r.stderr}`);
  const deadline = Date.now() + 600_000;
  while (!(await streamingAll(etcd, cluster, count))) {
    if (Date.now() > deadline) throw new Error(`${cluster}: not streaming within 600 s`);
    await sleep(250);
  }
  return now() - t0;
}

await runBench(async () => {
  requireBuild();
  const atStart = machine();
  await rm(opts.dir, { recursive: true, force: true });
  await mkdir(opts.dir, { recursive: true, mode: 0o755 });
  const etcdHandle = await startEtcdCluster({ dataDir: join(opts.dir, 'etcd'), members: 1 });
  onCleanup(() => etcdHandle.stop());
  const etcd = etcdHandle.endpoints.join(',');
  const daemons: number[] = [];
  onCleanup(async () => {
    for (const pid of daemons) signal(pid, 'SIGTERM');
    const until = Date.now() + 90_000;
    for (const pid of daemons) while ((await procStat(pid)) !== undefined && (await procStat(pid))?.state !== 'Z' && Date.now() < until) await sleep(200);
    for (const pid of daemons) for (const p of await processTree(pid)) signal(p, 'SIGKILL');
  });
  for (const i of [1, 2, 3]) {
    const name = `node-${i}`;
    const cfg = join(opts.dir, `${name}.yaml`);
    await writeFile(cfg, `name: ${name}\ndir: ${join(opts.dir, name)}\netcd:\n  endpoints: [${etcd}]\nlabels:\n  topology.kubernetes.io/zone: zone-${i}\nlog:\n  file: ${join(opts.dir, `${name}.log`)}\n`);
    const out = openSync(join(opts.dir, `${name}.out`), 'a');
    const child = spawn(process.execPath, [WARDEN_BIN, 'node', '--config', cfg], { stdio: ['ignore', out, out], detached: true });
    closeSync(out);
    child.unref();
    if (child.pid !== undefined) daemons.push(child.pid);
  }
  log('three node daemons started');
  const three = await applyToStreaming(etcd, opts.dir, 'bench3', 3);
  log(`3 members streaming after ${fmt(three / 1000, 1)} s; idle window ${opts.seconds} s`);
  const ticks = clockTicks();
  const before = await Promise.all(daemons.map((p) => procStat(p)));
  const rss = daemons.map(() => [] as number[]);
  const t0 = now();
  for (let s = 0; s < opts.seconds; s++) {
    for (const [i, pid] of daemons.entries()) {
      const b = await rssBytes(pid);
      if (b !== undefined) rss[i]?.push(b / MB);
    }
    await sleep(1000);
  }
  const wallS = (now() - t0) / 1000;
  const after = await Promise.all(daemons.map((p) => procStat(p)));
  const controller = await warden(['get', 'nodes', '--etcd', etcd, '--format', 'json'], 10_000);
  const active = (JSON.parse(controller.stdout) as { name: string; controller: boolean }[]).find((n) => n.controller)?.name;
  const rows = daemons.map((pid, i) => {
    const cpu = ((after[i]?.ticks ?? 0) - (before[i]?.ticks ?? 0)) / ticks / wallS * 100;
    const s = summarize(rss[i] ?? []);
    const name = `node-${i + 1}`;
    return [name + (name === active ? ' (controller)' : ''), fmt(s.median, 1), fmt(s.max, 1), fmt(cpu, 2)];
  });
  // The first cluster goes before the larger one is applied: the figure is for one cluster on the nodes.
  const del = await warden(['delete', 'cluster', 'bench3', '--confirm', 'bench3', '--etcd', etcd], 30_000);
  if (del.code !== 0) throw new Error(`delete failed: ${del.stderr}`);
  for (const until = Date.now() + 120_000; Date.now() < until; await sleep(500)) {
    const r = await warden(['get', 'nodes', '--etcd', etcd, '--format', 'json'], 10_000);
    if ((JSON.parse(r.stdout) as { workloads: unknown[] }[]).every((n) => n.workloads.length === 0)) break;
  }
  log(`bench3 deleted; applying ${opts.members} members`);
  const more = await applyToStreaming(etcd, opts.dir, `bench${opts.members}`, opts.members);
  const atEnd = machine();
  process.stdout.write(`${machineLine('start', atStart)}\n${machineLine('end', atEnd)}\n\n`);
  process.stdout.write(`apply → every member streaming, 3 node daemons on one machine:\n${table(['members', 'seconds'], [['3', fmt(three / 1000, 1)], [String(opts.members), fmt(more / 1000, 1)]])}\n\n`);
  process.stdout.write(`node daemons idle over ${fmt(wallS, 0)} s with a 3-member cluster (RSS MB median / max, CPU % of one core; the daemon process alone):\n${table(['daemon', 'RSS median', 'RSS max', 'CPU %'], rows)}\n`);
});
