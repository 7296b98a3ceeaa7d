/**
 * No false failover under load: a healthy cluster runs pgbench against the leader while two CPU
 * burners keep both cores busy; any leader change is a false failover (nothing failed).
 *
 *   npm run build && node --import tsx bench/no-false-failover.ts [--minutes 10] [--dir /tmp/warden-bench-nff]
 *
 * Steps: warden up; pgbench -i -s 10 on the leader; reference: pgbench -c 8 -j 2 -T 30 without
 * burners; then pgbench -c 8 -j 2 -T <minutes × 60> with 2 busy-loop node processes. Throughout,
 * leader changes are counted three ways: `warden list --format json` polled every second, an etcd
 * watch on the leader key (sees changes shorter than a second), and GET /history at the end. The
 * leader's remaining lease (GET /patroni warden.leaseRemainingMs) is sampled each second too: its
 * minimum says how close the leader came to losing the key.
 */
import { etcdClientFromState } from '../src/controller/state-file.js';
import { spawn, type ChildProcess } from 'node:child_process';
import {
  clusterUp,
  fmt,
  getJson,
  logger,
  machine,
  machineLine,
  now,
  onCleanup,
  parseOptions,
  patroni,
  PG_BIN_DIR,
  run,
  runBench,
  saveLogs,
  signal,
  sleep,
  summarize,
  superuserPassword,
  table,
  waitHealthy,
  warden,
  type StateFile,
} from './support.js';

const opts = parseOptions({ minutes: 10, dir: '/tmp/warden-bench-nff', 'reference-seconds': 30, burners: 2, clients: 8, threads: 2, scale: 10 });
const log = logger('no-false-failover');

interface PgbenchResult {
  readonly phase: string;
  readonly code: number | null;
  readonly tps: number;
  readonly transactions: number;
  readonly failed: number;
  readonly latencyMs: number;
  readonly seconds: number;
  readonly tail: string;
}

function parsePgbench(phase: string, r: { code: number | null; stdout: string; stderr: string; ms: number }): PgbenchResult {
  const num = (re: RegExp): number => {
    const m = re.exec(r.stdout);
    return m?.[1] === undefined ? Number.NaN : Number(m[1]);
  };
  return {
    phase,
    code: r.code,
    tps: num(/tps = ([\d.]+) \(without initial connection time\)/),
    transactions: num(/number of transactions actually processed: (\d+)/),
    failed: num(/number of failed transactions: (\d+)/),
    latencyMs: num(/latency average = ([\d.]+) ms/),
    seconds: r.ms / 1000,
    tail: `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-6).join('\n'),
  };
}

/**
 * Samples the cluster every second: the leader per `warden list --format json` (a new Node process
 * each time, which takes longer than a second on a loaded machine: the loop then runs back to back),
 * and the leader's remaining lease from the agents' REST API.
 */
class Monitor {
  readonly leaders: { at: number; leader: string | undefined }[] = [];
  readonly leaseRemaining: number[] = [];
  readonly notes: string[] = [];
  listFailures = 0;
  /** `warden list` runs killed after 10 s (a loaded machine), counted apart from failures. */
  listTimeouts = 0;
  listMs: number[] = [];
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(private readonly dir: string, private readonly state: StateFile) {}

  /** Two independent loops, each at most once a second: `warden list` (slower under load) and the lease. */
  start(): void {
    const every = async (fn: () => Promise<void>): Promise<void> => {
      while (!this.stopped) {
        const started = now();
        await fn();
        await sleep(Math.max(0, 1000 - (now() - started)));
      }
    };
    this.loop = Promise.all([every(() => this.sampleList()), every(() => this.sampleLease())]).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async sampleList(): Promise<void> {
    const r = await warden(['list', '--dir', this.dir, '--format', 'json'], 10_000);
    this.listMs.push(r.ms);
    if (r.code === null) {
      this.listTimeouts++;
      return;
    }
    if (r.code !== 0) {
      this.listFailures++;
      log(`warden list exited ${r.code}: ${r.stderr.trim().slice(0, 300)}`);
      return;
    }
    try {
      const out = JSON.parse(r.stdout) as { members: { name: string; role: string; state: string; timeline: number | null }[] };
      const leader = out.members.find((m) => m.role === 'leader')?.name;
      const prev = this.leaders.at(-1);
      if (prev !== undefined && prev.leader !== leader) {
        const note = `${new Date().toISOString()}: list shows leader ${prev.leader ?? 'none'} → ${leader ?? 'none'} (${out.members.map((m) => `${m.name} ${m.role}/${m.state}/tl ${m.timeline}`).join(', ')})`;
        this.notes.push(note);
        log(note);
      }
      this.leaders.push({ at: now(), leader });
    } catch {
      this.listFailures++;
    }
  }

  private async sampleLease(): Promise<void> {
    const sts = await Promise.all(this.state.members.map((m) => patroni(m.apiUrl, 900)));
    for (const p of sts) {
      const w = p?.warden as { isLeader?: boolean; leaseRemainingMs?: number | null } | undefined;
      if (w?.isLeader === true && typeof w.leaseRemainingMs === 'number') {
        this.leaseRemaining.push(w.leaseRemainingMs);
        if (w.leaseRemainingMs < 750) log(`leader's remaining lease only ${w.leaseRemainingMs} ms`);
      }
    }
  }

  /** Leader changes seen by polling (none → X at the start is not a change). */
  changes(): number {
    let n = 0;
    for (let i = 1; i < this.leaders.length; i++) if (this.leaders[i]?.leader !== this.leaders[i - 1]?.leader) n++;
    return n;
  }
}

await runBench(async () => {
  const machineAtStart = machine();
  const { dir } = opts;
  const started = Date.now();
  const { state } = await clusterUp(dir, log);
  const password = await superuserPassword(dir);
  const healthy = await waitHealthy(state, 90_000, { password });
  const leader = healthy.leader;
  const env = { PGPASSFILE: state.pgpassFile, PGCONNECT_TIMEOUT: '5' };
  const conn = ['-h', leader.host, '-p', String(leader.port), '-U', state.superuser, 'postgres'];
  const pgbench = `${PG_BIN_DIR}/pgbench`;

  // Every change of the leader key from now on, with arrival time.
  const etcd = etcdClientFromState(state, 2000);
  const leaderKey = `/warden/${state.cluster}/leader`;
  const snap = await etcd.range(leaderKey, { timeoutMs: 2000 });
  const keyEvents: { type: string; value: string; iso: string }[] = [];
  const watchAbort = new AbortController();
  const watchDone = etcd
    .watch(leaderKey, snap.revision + 1, (evs) => {
      for (const e of evs) {
        if (e.kv.key !== leaderKey) continue;
        keyEvents.push({ type: e.type, value: e.kv.value, iso: new Date().toISOString() });
        log(`leader key ${e.type} ${e.kv.value}`);
      }
    }, watchAbort.signal)
    .catch((e: unknown) => log(`leader-key watch ended: ${String(e)}`));
  onCleanup(async () => {
    watchAbort.abort();
    await watchDone;
    etcd.close();
  });
  const initialKey = snap.kvs.find((kv) => kv.key === leaderKey)?.value;
  // The longest history any agent reports (a member that just restarted may not have read it yet).
  const historyLength = async (): Promise<number> => {
    const hs = await Promise.all(state.members.map((m) => getJson<unknown[]>(m.apiUrl, '/history', 2000)));
    return Math.max(0, ...hs.map((h) => (Array.isArray(h?.body) ? h.body.length : 0)));
  };
  const historyBefore = await historyLength();

  const monitor = new Monitor(dir, state);
  monitor.start();
  onCleanup(() => monitor.stop());

  log(`pgbench -i -s ${opts.scale} on the leader ${leader.name} (${leader.host}:${leader.port})`);
  const init = await run(pgbench, ['-i', '-s', String(opts.scale), '-q', ...conn], { timeoutMs: 600_000, env });
  if (init.code !== 0) throw new Error(`pgbench -i failed (exit ${init.code}): ${init.stderr}`);
  log(`pgbench -i took ${(init.ms / 1000).toFixed(1)} s`);

  const refArgs = ['-c', String(opts.clients), '-j', String(opts.threads), '-T', String(opts['reference-seconds']), ...conn];
  log(`reference: pgbench ${refArgs.slice(0, 6).join(' ')} without burners`);
  const reference = parsePgbench('reference (no burners)', await run(pgbench, refArgs, { timeoutMs: (opts['reference-seconds'] + 120) * 1000, env }));
  log(`reference TPS ${fmt(reference.tps, 1)} (exit ${reference.code})`);

  const burners: ChildProcess[] = [];
  const killBurners = (): void => {
    for (const b of burners) if (b.pid !== undefined && b.exitCode === null && b.signalCode === null) signal(b.pid, 'SIGKILL');
  };
  onCleanup(killBurners);
  for (let i = 0; i < opts.burners; i++) burners.push(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
  log(`burners started (pids ${burners.map((b) => b.pid).join(', ')}); loaded run: ${opts.minutes} min`);
  const loadSeconds = Math.round(opts.minutes * 60);
  const changesBeforeLoad = monitor.changes();
  // pgbench aborts when its server goes away (a failover): the rest of the window then runs in new
  // segments against whoever leads, so that leader changes are watched for the whole duration.
  const segments: PgbenchResult[] = [];
  const loadEnd = now() + loadSeconds * 1000;
  try {
    while (loadEnd - now() >= 5000) {
      const lead = (await waitHealthy(state, 60_000).catch(() => undefined))?.leader ?? leader;
      const seconds = Math.floor((loadEnd - now()) / 1000);
      const args = ['-c', String(opts.clients), '-j', String(opts.threads), '-T', String(seconds), '-h', lead.host, '-p', String(lead.port), '-U', state.superuser, 'postgres'];
      const seg = parsePgbench(`segment ${segments.length + 1} on ${lead.name}`, await run(pgbench, args, { timeoutMs: (seconds + 180) * 1000, env }));
      segments.push(seg);
      if (seg.code !== 0) log(`pgbench segment on ${lead.name} exited ${seg.code} after ${fmt(seg.seconds, 0)} s: ${seg.tail.split('\n').slice(0, 2).join(' | ')}`);
      if (seg.code !== 0) await sleep(2000);
    }
  } finally {
    killBurners();
  }
  const segSeconds = segments.reduce((a, g) => a + g.seconds, 0);
  const segTx = segments.reduce((a, g) => a + (Number.isFinite(g.transactions) ? g.transactions : 0), 0);
  const loaded: PgbenchResult = {
    phase: `under load (${opts.burners} burners)${segments.length > 1 ? `, ${segments.length} segments` : ''}`,
    code: segments.every((g) => g.code === 0) ? 0 : (segments.find((g) => g.code !== 0)?.code ?? null),
    // One segment: pgbench's own figure; several: transactions over their wall time.
    tps: segments.length === 1 ? (segments[0]?.tps ?? Number.NaN) : segTx / segSeconds,
    transactions: segTx,
    failed: segments.reduce((a, g) => a + (Number.isFinite(g.failed) ? g.failed : 0), 0),
    latencyMs: segments.length === 1 ? (segments[0]?.latencyMs ?? Number.NaN) : Number.NaN,
    seconds: segSeconds,
    tail: segments.map((g) => `${g.phase}: exit ${g.code}\n${g.tail}`).join('\n'),
  };
  log(`loaded TPS ${fmt(loaded.tps, 1)} (exit ${loaded.code})`);
  await sleep(2000);
  await monitor.stop();
  const historyAfter = await historyLength();
  const healthyAfter = await waitHealthy(state, 30_000, { password }).then(
    (h) => `healthy, leader ${h.leader.name}, timeline ${h.timeline}`,
    (e: unknown) => `NOT healthy: ${String(e)}`,
  );

  const listChanges = monitor.changes();
  const keyChanges = keyEvents.filter((e) => e.type === 'delete' || e.value !== initialKey).length;
  const historyAdded = historyAfter - historyBefore;
  const leaderChanges = Math.max(listChanges, historyAdded, keyEvents.filter((e) => e.type === 'put' && e.value !== initialKey).length);
  const lease = summarize(monitor.leaseRemaining);
  const troubled = leaderChanges > 0 || keyChanges > 0 || loaded.code !== 0 || reference.code !== 0 || !healthyAfter.startsWith('healthy');
  const savedLogs = troubled ? await saveLogs(dir, `${dir}-logs-${new Date().toISOString().replace(/[:.]/g, '-')}`) : undefined;
  if (savedLogs !== undefined) log(`logs of this cluster saved to ${savedLogs}`);
  const listMs = summarize(monitor.listMs);

  process.stdout.write(`\nNo false failover: pgbench -c ${opts.clients} -j ${opts.threads} against the leader, ${opts.burners} CPU burners, ${opts.minutes} min\n\n`);
  process.stdout.write(
    `${table(
      ['phase', 'seconds', 'TPS', 'transactions', 'failed', 'latency ms', 'exit'],
      [reference, loaded].map((r) => [r.phase, fmt(r.seconds, 0), fmt(r.tps, 1), String(r.transactions), String(r.failed), fmt(r.latencyMs, 2), String(r.code)]),
    )}\n\n`,
  );
  process.stdout.write(`TPS under load / reference TPS: ${fmt(loaded.tps / reference.tps, 2)}\n`);
  process.stdout.write(`leader changes: ${leaderChanges} (list polling: ${listChanges} in ${monitor.leaders.length} samples, ${changesBeforeLoad} of them before the burners; leader-key DELETE/new-holder events: ${keyChanges}; /history entries added: ${historyAdded})\n`);
  process.stdout.write(`leader's remaining lease when sampled: median ${fmt(lease.median, 0)} ms, min ${fmt(lease.min, 0)} ms, p10 ${fmt(lease.p10, 0)} ms (${lease.n} samples)\n`);
  process.stdout.write(`warden list: ${monitor.listFailures} failed, ${monitor.listTimeouts} killed after 10 s; ${monitor.listMs.length} runs over ${fmt(loadSeconds + opts['reference-seconds'], 0)}+ s, each took median ${fmt(listMs.median, 0)} ms, max ${fmt(listMs.max, 0)} ms\n`);
  process.stdout.write(`after the run: ${healthyAfter}\n`);
  for (const n of monitor.notes) process.stdout.write(`  ${n}\n`);
  if (loaded.code !== 0) process.stdout.write(`pgbench under load exited ${loaded.code}:\n${loaded.tail}\n`);
  if (segments.length > 1) {
    process.stdout.write(`${table(['segment', 'seconds', 'TPS', 'exit'], segments.map((g) => [g.phase, fmt(g.seconds, 0), fmt(g.tps, 1), String(g.code)]))}\n`);
  }
  if (savedLogs !== undefined) process.stdout.write(`agent, PostgreSQL and etcd logs saved to ${savedLogs}\n`);
  process.stdout.write(`target: 0 leader changes → ${leaderChanges === 0 ? 'met' : 'NOT met'}\n`);
  process.stdout.write(`wall time ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  const machineAtEnd = machine();
  process.stdout.write(`${machineLine('machine at start', machineAtStart)}\n${machineLine('machine at end', machineAtEnd)}\n`);
  process.stdout.write(
    `${JSON.stringify({
      bench: 'no-false-failover',
      machine: { start: machineAtStart, end: machineAtEnd },
      minutes: opts.minutes,
      leaderChanges,
      listChanges,
      listSamples: monitor.leaders.length,
      listFailures: monitor.listFailures,
      listTimeouts: monitor.listTimeouts,
      keyEvents,
      historyAdded,
      referenceTps: reference.tps,
      loadedTps: loaded.tps,
      tpsRatio: loaded.tps / reference.tps,
      reference,
      loaded,
      segments,
      leaseRemainingMs: lease,
      healthyAfter,
      savedLogs: savedLogs ?? null,
    })}\n`,
  );
});
