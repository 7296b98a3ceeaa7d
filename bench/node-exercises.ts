/**
 * Nodes and a controller, the must-show exercises under a writer: three `warden node` daemons on
 * loopback, one real etcd, a cluster applied in strict synchronous mode (synchronous_mode: true,
 * synchronous_mode_strict: true; default timings, ttl 2 s) and a chaos writer (src/chaos/writer.ts)
 * sending INSERTs through the cluster's router. After each exercise the writer stops, the final
 * table is read from the leader and the checker (src/chaos/checker.ts) counts lost acknowledged
 * writes and overlapping writable primaries.
 *
 *   npm run build && node --import tsx bench/node-exercises.ts [--runs 3] [--fill-mb 100] [--big-mb 0] [--routers 2] [--only abcdef] [--dir /var/tmp/warden-bench-node-exercises]
 *
 * `--routers` is the cluster's spec.proxy.router.replicas; the writer (but a's, pinned to router-1)
 * reconnects to the first router address that accepts a connection, as libpq does with every
 * router in a multi-host connection string. `--only` picks exercises (letters below).
 *
 *   a. router delete (--runs times): SIGKILL the router by the PID its node daemon publishes, rm -rf
 *      its directory; time until an INSERT through the same rw port is acknowledged again.
 *   b. primary member delete: SIGKILL its agent (by the published PID) and its postmaster (by
 *      postmaster.pid), rm -rf its member directory; failover = kill → first acknowledged write on
 *      a newer timeline; heal = kill → the member recreated (a new agent PID) and streaming. Run at
 *      the initial size (--runs times: the reference), then after filling to --fill-mb, then (when
 *      --big-mb > 0, e.g. 1024) once more after filling to that size.
 *   c. scale 3 → 5 → 2 with `warden apply`: the leader before/after, never a removed member.
 *   d. `warden node drain` of the leader's node: timelines before/after, the write gap.
 *   e. a second cluster on the same etcd and nodes with its own writer; SIGKILL of cluster A's
 *      primary (agent and postmaster): cluster B's leader and timeline, and its write gap during
 *      A's failover against its gap over a quiet window of the same length just before (reference).
 *   f. crash of the leader's node daemon (--runs times): SIGKILL of the daemon alone (its agents,
 *      PostgreSQL and router keep running), started again at once as systemd's Restart=always
 *      would; time until it is registered again with every workload adopted under its old PID, the
 *      leader and timeline after, and the write gap against a quiet window of the same length
 *      just before (reference).
 *
 * Write gap: the longest interval between two consecutive acknowledgements (ackAtMs) from the
 * fault to recovery. Times are on the bench's monotonic clock; `warden list` is polled every 250 ms.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkHistory, type AckedWrite } from '../src/chaos/checker.js';
import { ChaosWriter, prepareTable, queryOnce, readFinalValues, type PgAddress, type WriteTarget } from '../src/chaos/writer.js';
import type { ListOutput } from '../src/cli/list.js';
import { CLUSTER_SECRETS, CONTROL_PREFIX, parseControlSnapshot, secretsKey, type NodeRecord } from '../src/controller/records.js';
import { decodeJson } from '../src/core/decode.js';
import { startEtcdCluster } from '../src/dcs/etcd-server.js';
import { EtcdClient } from '../src/dcs/etcd-client.js';
import { fmt, logger, machine, machineLine, now, onCleanup, parseOptions, postmasterPid, processTree, procStat, requireBuild, runBench, signal, sleep, summarize, table, warden, WARDEN_BIN } from './support.js';

const opts = parseOptions({ runs: 3, 'fill-mb': 100, 'big-mb': 0, routers: 2, only: 'abcdef', dir: '/var/tmp/warden-bench-node-exercises' });
/** Whether exercise `x` (a … f) runs: `--only bd` runs b and d. */
const runs = (x: string): boolean => opts.only.includes(x);
const log = logger('node-exercises');

const spec = (name: string, replicas: number): string =>
  `apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: ${name}\nspec:\n  instances:\n  - name: instance1\n    replicas: ${replicas}\n  proxy:\n    router:\n      replicas: ${opts.routers}\n  patroni:\n    dynamicConfiguration:\n      synchronous_mode: true\n      synchronous_mode_strict: true\n`;

/** Polls `fn` every `intervalMs` until it returns a value; throws after `timeoutMs`. */
async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s`);
    await sleep(intervalMs);
  }
}

/** Whether `t` accepts a TCP connection within `timeoutMs` (how libpq moves on to the next host). */
function accepts(t: WriteTarget, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: t.host, port: t.port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

interface Figures {
  readonly exercise: string;
  readonly values: readonly number[];
  readonly unit: string;
  readonly note: string;
}

await runBench(async () => {
  requireBuild();
  const atStart = machine();
  await rm(opts.dir, { recursive: true, force: true });
  await mkdir(opts.dir, { recursive: true, mode: 0o755 });
  const etcdHandle = await startEtcdCluster({ dataDir: join(opts.dir, 'etcd'), members: 1 });
  onCleanup(() => etcdHandle.stop());
  const etcd = etcdHandle.endpoints.join(',');
  const client = new EtcdClient({ endpoints: etcdHandle.endpoints, defaultTimeoutMs: 3_000 });
  onCleanup(() => client.close());
  const daemons: number[] = [];
  onCleanup(async () => {
    for (const pid of daemons) signal(pid, 'SIGTERM');
    const deadline = Date.now() + 90_000;
    for (const pid of daemons) while ((await procStat(pid)) !== undefined && (await procStat(pid))?.state !== 'Z' && Date.now() < deadline) await sleep(200);
    for (const pid of daemons) for (const p of await processTree(pid)) signal(p, 'SIGKILL');
  });
  const startDaemon = (name: string): number | undefined => {
    const out = openSync(join(opts.dir, `${name}.out`), 'a');
    const child = spawn(process.execPath, [WARDEN_BIN, 'node', '--config', join(opts.dir, `${name}.yaml`)], { stdio: ['ignore', out, out], detached: true });
    closeSync(out);
    child.unref();
    if (child.pid !== undefined) daemons.push(child.pid);
    return child.pid;
  };
  for (const i of [1, 2, 3]) {
    const name = `node-${i}`;
    await writeFile(join(opts.dir, `${name}.yaml`), `name: ${name}\ndir: ${join(opts.dir, name)}\netcd:\n  endpoints: [${etcd}]\nlabels:\n  topology.kubernetes.io/zone: zone-${i}\nrestartDelaySeconds: 1\nlog:\n  file: ${join(opts.dir, `${name}.log`)}\n`);
    startDaemon(name);
  }
  log('three node daemons started');

  const nodes = async (): Promise<NodeRecord[]> => {
    const raw = await client.range(CONTROL_PREFIX, { timeoutMs: 3_000 });
    return [...parseControlSnapshot(raw.revision, raw.kvs).nodes.values()].map((n) => n.record);
  };
  const list = async (cluster: string): Promise<ListOutput> => {
    const r = await warden(['list', '--etcd', etcd, '--cluster', cluster, '--format', 'json'], 15_000);
    if (r.code !== 0) throw new Error(`warden list ${cluster}: ${r.stderr}`);
    return JSON.parse(r.stdout) as ListOutput;
  };
  /** The list once every member of `count` streams (or leads); undefined before. */
  const streaming = async (cluster: string, count: number): Promise<ListOutput | undefined> => {
    const l = await list(cluster);
    const leaders = l.members.filter((m) => m.role === 'leader' && m.state === 'running').length;
    const replicas = l.members.filter((m) => m.role !== 'leader' && m.state === 'streaming').length;
    return l.members.length === count && leaders === 1 && replicas === count - 1 ? l : undefined;
  };
  const apply = async (cluster: string, replicas: number): Promise<void> => {
    const file = join(opts.dir, `${cluster}.yaml`);
    await writeFile(file, spec(cluster, replicas));
    const r = await warden(['apply', '-f', file, '--etcd', etcd], 30_000);
    if (r.code !== 0) throw new Error(`apply ${cluster} ${replicas}: ${r.stderr}`);
  };
  const leaderOf = (l: ListOutput): { name: string; timeline: number; host: string; port: number } => {
    const m = l.members.find((x) => x.role === 'leader');
    if (m === undefined) throw new Error(`${l.cluster}: no leader`);
    return { name: m.name, timeline: Math.max(...l.members.map((x) => x.timeline ?? 0)), host: m.host, port: m.port };
  };
  const workload = async (cluster: string, name: string): Promise<{ node: NodeRecord; pid: number | null; address: string | undefined; dir: string }> => {
    for (const n of await nodes()) {
      const w = n.workloads.find((x) => x.cluster === cluster && x.name === name);
      if (w !== undefined) return { node: n, pid: w.pid, address: w.address, dir: join(n.dir, 'workloads', cluster, `${w.kind}s`, name) };
    }
    throw new Error(`${cluster}/${name} runs on no node`);
  };
  const password = async (cluster: string): Promise<{ user: string; password: string }> => {
    const kv = await client.get(secretsKey(cluster));
    const d = kv === undefined ? undefined : decodeJson(CLUSTER_SECRETS, kv.value);
    if (d?.ok !== true) throw new Error(`no secrets for ${cluster}`);
    return { user: d.value.superuser.username, password: d.value.superuser.password };
  };

  /**
   * A writer through the cluster's routers. `pinned`: always router-1's address (exercise a measures
   * that port serving again). Otherwise, like a client with every router in a multi-host connection
   * string (libpq's host=a,b): each reconnect takes the first router address that accepts a TCP
   * connection. Addresses are read from the node records every 300 ms.
   */
  const startWriter = async (cluster: string, how: 'pinned' | 'any-router' = 'any-router'): Promise<{ writer: ChaosWriter; auth: PgAddress; finish: () => Promise<{ lost: number; overlaps: number; acked: number }> }> => {
    const creds = await password(cluster);
    const routersAt = async (): Promise<WriteTarget[] | undefined> => {
      const found = (await nodes())
        .flatMap((n) => n.workloads)
        .filter((x) => x.cluster === cluster && x.kind === 'router' && x.address !== undefined && (how === 'any-router' || x.name === `${cluster}-router-1`))
        .sort((x, y) => x.name.localeCompare(y.name))
        .map((x) => /^(.*):(\d+)$/.exec(x.address ?? ''))
        .flatMap((m) => (m?.[1] === undefined || m[2] === undefined ? [] : [{ host: m[1], port: Number(m[2]) }]));
      return found.length === 0 ? undefined : found;
    };
    let targets = await until(`${cluster}'s router addresses`, 60_000, routersAt);
    const target = async (timeoutMs: number): Promise<WriteTarget | undefined> => {
      for (const t of targets) if (await accepts(t, Math.min(timeoutMs, 300))) return t;
      return targets[0];
    };
    let members = new Map<string, string>();
    const refreshMembers = async (): Promise<void> => {
      members = new Map((await list(cluster)).members.map((m) => [`${m.host}:${m.port}`, m.name]));
    };
    await refreshMembers();
    let stopped = false;
    // One poll at a time: overlapping CLI runs pile up on a loaded machine.
    const poll = (async () => {
      for (let i = 0; !stopped; i++) {
        targets = (await routersAt().catch(() => undefined)) ?? targets;
        if (i % 6 === 5) await refreshMembers().catch(() => undefined);
        await sleep(300);
      }
    })();
    const first0 = targets[0];
    if (first0 === undefined) throw new Error(`${cluster}: no router address`);
    const auth: PgAddress = { host: first0.host, port: first0.port, ...creds };
    const first = await until(`${cluster}: the writer's table through the router`, 60_000, () => prepareTable(auth));
    const writer = new ChaosWriter({ target, memberOf: (h, p) => members.get(`${h}:${p}`), ...creds, intervalMs: 5, statementTimeoutMs: 3_000 }, first);
    writer.start();
    // A failed exercise leaves its writer running: stopped here, or the process would never exit.
    onCleanup(async () => {
      stopped = true;
      await writer.stop();
      await poll;
    });
    return {
      writer,
      auth,
      finish: async () => {
        await writer.stop();
        stopped = true;
        await poll;
        const l = await until(`${cluster}: a leader to read the final table from`, 60_000, async () => streaming(cluster, (await list(cluster)).members.length));
        const leader = leaderOf(l);
        const values = await readFinalValues({ host: leader.host, port: leader.port, ...creds }, first);
        const main = writer.acks.filter((a) => a.lane === 'main');
        const report = checkHistory({ acks: main, failures: writer.failures, faults: [], recoveries: [], final: { primary: leader.name, values } }, { lossAllowed: false, maxLagBytes: 0 });
        return { lost: report.lostWrites.length, overlaps: report.overlaps.length, acked: main.length };
      },
    };
  };
  /** The longest interval (ms) between consecutive acknowledgements from fromMs (the fault) to toMs, the first ack after toMs included. */
  const gapMs = (acks: readonly AckedWrite[], fromMs: number, toMs: number): number => {
    const at = acks.map((a) => a.ackAtMs).filter((x) => x > fromMs).sort((x, y) => x - y);
    const after = at.findIndex((x) => x > toMs);
    const points = [fromMs, ...(after === -1 ? at : at.slice(0, after + 1))];
    let gap = 0;
    for (let i = 1; i < points.length; i++) gap = Math.max(gap, (points[i] ?? 0) - (points[i - 1] ?? 0));
    return gap;
  };
  /** Every interval between consecutive acknowledgements within [fromMs, toMs] longer than `minMs`. */
  const gaps = (acks: readonly AckedWrite[], fromMs: number, toMs: number, minMs: number): { fromMs: number; ms: number; timelines: string }[] => {
    const at = acks.filter((a) => a.ackAtMs > fromMs && a.ackAtMs <= toMs).sort((x, y) => x.ackAtMs - y.ackAtMs);
    const out: { fromMs: number; ms: number; timelines: string }[] = [];
    for (let i = 1; i < at.length; i++) {
      const a = at[i - 1];
      const b = at[i];
      if (a !== undefined && b !== undefined && b.ackAtMs - a.ackAtMs > minMs) out.push({ fromMs: a.ackAtMs, ms: b.ackAtMs - a.ackAtMs, timelines: `${a.timeline} → ${b.timeline}` });
    }
    return out;
  };
  const firstAckAfter = (acks: readonly AckedWrite[], tMs: number, pred: (a: AckedWrite) => boolean = () => true): number | undefined => acks.find((a) => a.sentAtMs >= tMs && pred(a))?.ackAtMs;

  const figures: Figures[] = [];
  const safety: string[][] = [];
  // Applied before every node registered, the members would crowd onto the first nodes.
  await until('three registered nodes', 60_000, async () => ((await nodes()).length === 3 ? true : undefined));
  const t0 = now();
  await apply('app', 3);
  const up = await until('app streaming', 600_000, () => streaming('app', 3));
  log(`app: 3 members streaming after ${fmt((now() - t0) / 1000, 1)} s, leader ${leaderOf(up).name}`);

  // a. Router delete.
  if (runs('a')) {
    const w = await startWriter('app', 'pinned');
    const times: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      await until('acks through the router', 30_000, async () => (w.writer.acksSince(now() - 500).length > 0 ? true : undefined));
      const r = await workload('app', 'app-router-1');
      if (r.pid === null) throw new Error('the router has no PID');
      const t = now();
      signal(r.pid, 'SIGKILL');
      await rm(r.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
      const back = await until('a router serving the rw port again', 60_000, async () => firstAckAfter(w.writer.acks, t), 20);
      const again = await workload('app', 'app-router-1');
      if (again.address !== r.address) throw new Error(`the router came back on ${again.address}, not ${r.address}`);
      times.push((back - t) / 1000);
      log(`a${i + 1}: router ${r.pid} killed and its dir removed; an INSERT through ${r.address} acknowledged again after ${fmt((back - t) / 1000, 2)} s`);
    }
    const res = await w.finish();
    figures.push({ exercise: 'a. router delete → rw port serves again', values: times, unit: 's', note: `same port each time; ${res.acked} writes acked` });
    safety.push(['a. router delete', String(res.acked), String(res.lost), String(res.overlaps)]);
  }

  // b. Primary member delete, at several database sizes.
  const deletePrimary = async (label: string): Promise<{ failoverMs: number; healMs: number; gapMs: number; lost: number; overlaps: number; acked: number }> => {
    const w = await startWriter('app');
    await until('acks through the router', 30_000, async () => (w.writer.acksSince(now() - 500).length > 0 ? true : undefined));
    const before = leaderOf(await until('app streaming', 300_000, () => streaming('app', 3)));
    const victim = await workload('app', before.name);
    if (victim.pid === null) throw new Error(`${before.name} has no agent PID`);
    const pm = await postmasterPid(join(victim.dir, 'data'));
    const t = now();
    signal(victim.pid, 'SIGKILL');
    if (pm !== undefined) signal(pm, 'SIGKILL');
    // Its dying backends may still write into it: rm retries on ENOTEMPTY.
    await rm(victim.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    const failedOver = await until('a write on a newer timeline', 120_000, async () => firstAckAfter(w.writer.acks, t, (a) => a.timeline > before.timeline), 20);
    const healed = await until(`${before.name} recreated and streaming`, 1_800_000, async () => {
      const l = await streaming('app', 3);
      // A stale record of the killed leader (its lease not yet expired) is not a recovery.
      if (l === undefined || leaderOf(l).name === before.name) return undefined;
      const again = await workload('app', before.name);
      return again.pid !== null && again.pid !== victim.pid ? now() : undefined;
    });
    const gap = gapMs(w.writer.acks, t, healed);
    const res = await w.finish();
    log(`b ${label}: ${before.name} (agent ${victim.pid}, postmaster ${pm}) killed and its dir removed; failover ${fmt((failedOver - t) / 1000, 2)} s, recreated and streaming after ${fmt((healed - t) / 1000, 1)} s, ${res.lost} lost`);
    return { failoverMs: failedOver - t, healMs: healed - t, gapMs: gap, ...res };
  };
  const dbSizeMb = async (): Promise<number> => {
    const w = await startWriter('app');
    const rows = await queryOnce<{ mb: string }>(w.auth, 'SELECT (pg_database_size(current_database()) / 1048576)::text AS mb');
    await w.finish();
    return Number(rows[0]?.mb ?? Number.NaN);
  };
  const fillTo = async (mb: number): Promise<number> => {
    const w = await startWriter('app');
    await queryOnce(w.auth, 'CREATE TABLE IF NOT EXISTS fill (id bigint, pad text)');
    // ~ 10 MB per statement (pgbench-like rows of about 130 bytes): each statement is short enough for its timeout.
    for (let size = Number.NaN; ; ) {
      const rows = await queryOnce<{ mb: string }>(w.auth, 'SELECT (pg_database_size(current_database()) / 1048576)::text AS mb');
      size = Number(rows[0]?.mb ?? 0);
      if (size >= mb) break;
      await queryOnce(w.auth, "INSERT INTO fill SELECT g, repeat('x', 84) FROM generate_series(1, 80000) g", [], 120_000);
    }
    const res = await w.finish();
    if (res.lost > 0) throw new Error(`${res.lost} writes lost while filling`);
    return dbSizeMb();
  };
  if (runs('b')) {
    const sizes: { label: string; mb: number; runs: Awaited<ReturnType<typeof deletePrimary>>[] }[] = [];
    const base = await dbSizeMb();
    const small: Awaited<ReturnType<typeof deletePrimary>>[] = [];
    for (let i = 0; i < opts.runs; i++) small.push(await deletePrimary(`${base} MB run ${i + 1}`));
    sizes.push({ label: 'initial', mb: base, runs: small });
    for (const target of [opts['fill-mb'], opts['big-mb']].filter((x) => x > 0)) {
      log(`filling app to ${target} MB`);
      const mb = await fillTo(target);
      sizes.push({ label: `filled`, mb, runs: [await deletePrimary(`${mb} MB`)] });
    }
    for (const s of sizes) {
      figures.push({ exercise: `b. primary delete at ${s.mb} MB: failover (first ack, newer timeline)`, values: s.runs.map((r) => r.failoverMs / 1000), unit: 's', note: `max write gap ${fmt(Math.max(...s.runs.map((r) => r.gapMs)) / 1000, 2)} s` });
      figures.push({ exercise: `b. primary delete at ${s.mb} MB: recreated and streaming`, values: s.runs.map((r) => r.healMs / 1000), unit: 's', note: s.label === 'initial' ? 'reference for the sizes below' : '' });
      safety.push([`b. primary delete ${s.mb} MB`, String(s.runs.reduce((n, r) => n + r.acked, 0)), String(s.runs.reduce((n, r) => n + r.lost, 0)), String(s.runs.reduce((n, r) => n + r.overlaps, 0))]);
    }
  }

  // c. Scale 3 → 5 → 2.
  if (runs('c')) {
    const w = await startWriter('app');
    const l3 = leaderOf(await until('app streaming', 300_000, () => streaming('app', 3)));
    const t = now();
    await apply('app', 5);
    const l5 = leaderOf(await until('5 members streaming', 900_000, () => streaming('app', 5)));
    const up5 = now() - t;
    const t2 = now();
    await apply('app', 2);
    const two = await until('2 members streaming', 900_000, () => streaming('app', 2));
    const down2 = now() - t2;
    const l2 = leaderOf(two);
    const kept = two.members.map((m) => m.name).sort();
    const gap = gapMs(w.writer.acks, t, now());
    const res = await w.finish();
    log(`c: leader ${l3.name} (tl ${l3.timeline}) → 5 members ${fmt(up5 / 1000, 1)} s, leader ${l5.name} → 2 members ${fmt(down2 / 1000, 1)} s, leader ${l2.name} (tl ${l2.timeline}), kept ${kept.join(', ')}; ${res.lost} lost`);
    if (!kept.includes(l2.name)) throw new Error('the leader is not among the kept members');
    figures.push({ exercise: 'c. apply 3 → 5: every member streaming', values: [up5 / 1000], unit: 's', note: `leader ${l3.name} → ${l5.name}` });
    figures.push({ exercise: 'c. apply 5 → 2: 2 members streaming', values: [down2 / 1000], unit: 's', note: `leader ${l5.name} → ${l2.name} (tl ${l3.timeline} → ${l2.timeline}); kept ${kept.join(', ')}; max write gap ${fmt(gap / 1000, 2)} s` });
    safety.push(['c. scale 3 → 5 → 2', String(res.acked), String(res.lost), String(res.overlaps)]);
    // Back to three members for d and e.
    await apply('app', 3);
    await until('3 members streaming', 900_000, () => streaming('app', 3));
  }

  // d. Drain the leader's node.
  if (runs('d')) {
    const w = await startWriter('app');
    const before = leaderOf(await until('app streaming', 300_000, () => streaming('app', 3)));
    const node = (await workload('app', before.name)).node.name;
    const t = now();
    const r = await warden(['node', 'drain', node, '--etcd', etcd], 15_000);
    if (r.code !== 0) throw new Error(`drain: ${r.stderr}`);
    const switched = await until('a write on a newer timeline', 120_000, async () => firstAckAfter(w.writer.acks, t, (a) => a.timeline > before.timeline), 20);
    const done = await until(`${node} drained and every member streaming`, 900_000, async () => {
      const empty = (await nodes()).find((n) => n.name === node)?.workloads.length === 0;
      return empty && (await streaming('app', 3)) !== undefined ? now() : undefined;
    }, 500);
    const after = leaderOf(await list('app'));
    const gap = gapMs(w.writer.acks, t, done);
    const wall = (ms: number): string => new Date(Date.now() - now() + ms).toISOString().slice(11, 23);
    for (const g of gaps(w.writer.acks, t, done, 200)) log(`d: a ${fmt(g.ms, 0)} ms gap from ${fmt((g.fromMs - t) / 1000, 2)} s after the drain, ${wall(g.fromMs)}–${wall(g.fromMs + g.ms)} (timeline ${g.timelines})`);
    for (const f of w.writer.failures.filter((x) => x.sentAtMs >= t)) log(`d: write failed at ${fmt((f.failedAtMs - t) / 1000, 2)} s via ${f.target}: ${f.error}`);
    const res = await w.finish();
    const u = await warden(['node', 'uncordon', node, '--etcd', etcd], 15_000);
    if (u.code !== 0) throw new Error(`uncordon: ${u.stderr}`);
    log(`d: drained ${node} (leader ${before.name} tl ${before.timeline} → ${after.name} tl ${after.timeline}); max write gap ${fmt(gap, 0)} ms; done after ${fmt((done - t) / 1000, 1)} s; ${res.lost} lost`);
    figures.push({ exercise: 'd. drain the leader\'s node: max write gap', values: [gap / 1000], unit: 's', note: `timelines ${before.timeline} → ${after.timeline} (${after.timeline - before.timeline} switchover); first write on the new timeline ${fmt((switched - t) / 1000, 2)} s after the drain` });
    figures.push({ exercise: 'd. drain the leader\'s node: node empty, all streaming', values: [(done - t) / 1000], unit: 's', note: '' });
    safety.push(['d. drain', String(res.acked), String(res.lost), String(res.overlaps)]);
  }

  // e. Two clusters: a failover of A leaves B alone.
  if (runs('e')) {
    await apply('other', 3);
    await until('other streaming', 600_000, () => streaming('other', 3));
    const wa = await startWriter('app');
    const wb = await startWriter('other');
    const a0 = leaderOf(await until('app streaming', 300_000, () => streaming('app', 3)));
    const b0 = leaderOf(await list('other'));
    // The reference: B's gap over a quiet window just before, as long as A's recovery takes below.
    const quietFrom = now();
    const victim = await workload('app', a0.name);
    if (victim.pid === null) throw new Error(`${a0.name} has no agent PID`);
    const pm = await postmasterPid(join(victim.dir, 'data'));
    await sleep(5_000);
    const t = now();
    signal(victim.pid, 'SIGKILL');
    if (pm !== undefined) signal(pm, 'SIGKILL');
    const failedOver = await until('app: a write on a newer timeline', 120_000, async () => firstAckAfter(wa.writer.acks, t, (a) => a.timeline > a0.timeline), 20);
    await until('app streaming again', 600_000, () => streaming('app', 3));
    const healed = now();
    const quietGap = gapMs(wb.writer.acks, quietFrom, t);
    const bGap = gapMs(wb.writer.acks, t, healed);
    const b1 = leaderOf(await list('other'));
    const ra = await wa.finish();
    const rb = await wb.finish();
    log(`e: app ${a0.name} killed: failover ${fmt((failedOver - t) / 1000, 2)} s; other leader ${b0.name} tl ${b0.timeline} → ${b1.name} tl ${b1.timeline}; other's max gap ${fmt(bGap, 0)} ms (quiet window before: ${fmt(quietGap, 0)} ms)`);
    figures.push({ exercise: 'e. kill -9 primary of A: A failover', values: [(failedOver - t) / 1000], unit: 's', note: '' });
    figures.push({ exercise: 'e. cluster B max write gap during A\'s failover', values: [bGap / 1000], unit: 's', note: `reference: ${fmt(quietGap / 1000, 3)} s over 5 s quiet just before; B leader ${b0.name} tl ${b0.timeline} → ${b1.name} tl ${b1.timeline}` });
    safety.push(['e. cluster A (killed primary)', String(ra.acked), String(ra.lost), String(ra.overlaps)]);
    safety.push(['e. cluster B (untouched)', String(rb.acked), String(rb.lost), String(rb.overlaps)]);
  }

  // f. The leader's node daemon crashes; its successor adopts what it ran.
  if (runs('f')) {
    const w = await startWriter('app');
    const back: number[] = [];
    const gapsF: number[] = [];
    const quiet: number[] = [];
    const changed: string[] = [];
    for (let i = 0; i < opts.runs; i++) {
      await until('acks through the router', 30_000, async () => (w.writer.acksSince(now() - 500).length > 0 ? true : undefined));
      const before = leaderOf(await until('app streaming', 300_000, () => streaming('app', 3)));
      const node = (await workload('app', before.name)).node;
      const held = node.workloads.map((x) => ({ name: x.name, pid: x.pid }));
      const quietFrom = now();
      await sleep(5_000);
      const t = now();
      signal(node.pid, 'SIGKILL');
      await until(`${node.name}'s daemon gone`, 10_000, async () => ((await procStat(node.pid))?.state !== undefined && (await procStat(node.pid))?.state !== 'Z' ? undefined : true), 20);
      startDaemon(node.name);
      const adopted = await until(`${node.name} back with its workloads adopted`, 120_000, async () => {
        const n = (await nodes()).find((x) => x.name === node.name);
        if (n === undefined || n.pid === node.pid) return undefined;
        return held.every((h) => n.workloads.some((x) => x.name === h.name && x.pid === h.pid && x.state === 'running')) ? now() : undefined;
      }, 50);
      await sleep(Math.max(0, 5_000 - (now() - t)));
      const end = now();
      const after = leaderOf(await list('app'));
      const g = gapMs(w.writer.acks, t, end);
      const q = gapMs(w.writer.acks, quietFrom, t);
      back.push((adopted - t) / 1000);
      gapsF.push(g / 1000);
      quiet.push(q / 1000);
      if (after.name !== before.name || after.timeline !== before.timeline) changed.push(`run ${i + 1}: ${before.name} tl ${before.timeline} → ${after.name} tl ${after.timeline}`);
      log(`f${i + 1}: ${node.name}'s daemon (pid ${node.pid}, running ${held.map((h) => h.name).join(', ')}) killed; registered again with every workload adopted after ${fmt((adopted - t) / 1000, 2)} s; max write gap ${fmt(g, 0)} ms (quiet 5 s before: ${fmt(q, 0)} ms); leader ${before.name} tl ${before.timeline} → ${after.name} tl ${after.timeline}`);
    }
    const res = await w.finish();
    figures.push({ exercise: 'f. leader\'s node daemon SIGKILLed and started again: registered, every workload adopted (same PIDs)', values: back, unit: 's', note: changed.length === 0 ? 'leader and timeline unchanged in every run' : changed.join('; ') });
    figures.push({ exercise: 'f. same: max write gap over 5 s from the kill', values: gapsF, unit: 's', note: `reference, 5 s quiet just before: median ${fmt(summarize(quiet).median, 3)} s` });
    safety.push(['f. node daemon crash', String(res.acked), String(res.lost), String(res.overlaps)]);
  }

  const atEnd = machine();
  process.stdout.write(`${machineLine('start', atStart)}\n${machineLine('end', atEnd)}\n\n`);
  process.stdout.write(
    `exercises under a writer through the router, 3 node daemons, strict synchronous mode, ttl 2 s:\n${table(
      ['exercise', 'n', 'median', 'min', 'max', 'unit', 'notes'],
      figures.map((f) => {
        const s = summarize(f.values);
        return [f.exercise, String(s.n), fmt(s.median), fmt(s.min), fmt(s.max), f.unit, f.note];
      }),
    )}\n\n`,
  );
  process.stdout.write(`acknowledged writes (main lane) checked against the final leader's table:\n${table(['exercise', 'acked', 'lost', 'overlaps'], safety)}\n`);
  if (safety.some((r) => r[2] !== '0' || r[3] !== '0')) process.exitCode = 1;
});
