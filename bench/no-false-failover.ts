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
import { spawn, type ChildProcess } from 'node:child_process';
import { EtcdClient } from '../src/dcs/etcd-client.js';
import {
  clusterUp,
  fmt,
  getJson,
  logger,
  now,
  onCleanup,
  parseOptions,
  patroni,
  PG_BIN_DIR,
  run,
  runBench,
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

/** Samples the cluster every second: the leader per `warden list --format json`, and its remaining lease. */
class Monitor {
  readonly leaders: { at: number; leader: string | undefined }[] = [];
  readonly leaseRemaining: number[] = [];
  readonly notes: string[] = [];
  listFailures = 0;
  listMs: number[] = [];
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(private readonly dir: string, private readonly state: StateFile) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        const started = now();
        await Promise.all([this.sampleList(), this.sampleLease()]);
        await sleep(Math.max(0, 1000 - (now() - started)));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async sampleList(): Promise<void> {
    const r = await warden(['list', '--dir', this.dir, '--format', 'json'], 10_000);
    this.listMs.push(r.ms);
    if (r.code !== 0) {
      this.listFailures++;
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
      if (w?.isLeader === true && typeof w.leaseRemainingMs === 'number') this.leaseRemaining.push(w.leaseRemainingMs);
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
  const etcd = new EtcdClient({ endpoints: [...state.etcd], defaultTimeoutMs: 2000 });
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
  const historyBefore = await getJson<unknown[]>(leader.apiUrl, '/history', 2000);

  const monitor = new Monitor(dir, state);
  monitor.start();
  onCleanup(() => monitor.stop());

  log(`pgbench -i -s ${opts.scale} on the leader ${leader.name} (${leader.host}:${leader.port})`);
  const init = await run(pgbench, ['-i', '-s', String(opts.scale), '-q', ...conn], { timeoutMs: 600_000, env });
  if (init.code !== 0) throw new Error(`pgbench -i failed (exit ${init.code}): ${init.stderr}`);
  log(`pgbench -i took ${(init.ms / 1000).toFixed(1)} s`);

  const loadArgs = (seconds: number): string[] => ['-c', String(opts.clients), '-j', String(opts.threads), '-T', String(seconds), ...conn];
  log(`reference: pgbench ${loadArgs(opts['reference-seconds']).slice(0, 6).join(' ')} without burners`);
  const reference = parsePgbench('reference (no burners)', await run(pgbench, loadArgs(opts['reference-seconds']), { timeoutMs: (opts['reference-seconds'] + 120) * 1000, env }));
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
  let loaded: PgbenchResult;
  try {
    loaded = parsePgbench('under load (2 burners)', await run(pgbench, loadArgs(loadSeconds), { timeoutMs: (loadSeconds + 180) * 1000, env }));
  } finally {
    killBurners();
  }
  log(`loaded TPS ${fmt(loaded.tps, 1)} (exit ${loaded.code})`);
  await sleep(2000);
  await monitor.stop();
  const historyAfter = await getJson<unknown[]>(leader.apiUrl, '/history', 2000);
  const healthyAfter = await waitHealthy(state, 30_000, { password }).then(
    (h) => `healthy, leader ${h.leader.name}, timeline ${h.timeline}`,
    (e: unknown) => `NOT healthy: ${String(e)}`,
  );

  const listChanges = monitor.changes();
  const keyChanges = keyEvents.filter((e) => e.type === 'delete' || e.value !== initialKey).length;
  const historyAdded = (Array.isArray(historyAfter?.body) ? historyAfter.body.length : 0) - (Array.isArray(historyBefore?.body) ? historyBefore.body.length : 0);
  const leaderChanges = Math.max(listChanges, historyAdded, keyEvents.filter((e) => e.type === 'put' && e.value !== initialKey).length);
  const lease = summarize(monitor.leaseRemaining);
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
  process.stdout.write(`warden list: ${monitor.listFailures} failed samples; took median ${fmt(listMs.median, 0)} ms, max ${fmt(listMs.max, 0)} ms\n`);
  process.stdout.write(`after the run: ${healthyAfter}\n`);
  for (const n of monitor.notes) process.stdout.write(`  ${n}\n`);
  if (loaded.code !== 0) process.stdout.write(`pgbench under load exited ${loaded.code}:\n${loaded.tail}\n`);
  process.stdout.write(`target: 0 leader changes → ${leaderChanges === 0 ? 'met' : 'NOT met'}\n`);
  process.stdout.write(`wall time ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  process.stdout.write(
    `${JSON.stringify({
      bench: 'no-false-failover',
      minutes: opts.minutes,
      leaderChanges,
      listChanges,
      listSamples: monitor.leaders.length,
      listFailures: monitor.listFailures,
      keyEvents,
      historyAdded,
      referenceTps: reference.tps,
      loadedTps: loaded.tps,
      tpsRatio: loaded.tps / reference.tps,
      reference,
      loaded,
      leaseRemainingMs: lease,
      healthyAfter,
    })}\n`,
  );
});
