/**
 * Router benchmark (issue 4). One `warden up` cluster; the router it starts is what is measured.
 *
 * 1. Throughput: `pgbench -S` (select-only, -c 8 -j 2) for --seconds each, directly against the
 *    primary, through the router's read-write port and through Debian's HAProxy running the config
 *    `warden haproxy-config` prints — interleaved, the order rotated every round, --rounds rounds.
 *    Prints TPS and average latency per mode, router TPS / HAProxy TPS and each proxy's added latency
 *    over direct (medians of the per-round figures).
 * 2. Planned switchovers (--switchovers, `warden switchover --force`) while a client opens a new
 *    connection through the router for every statement (an INSERT): failed attempts are counted.
 * 3. Unplanned failovers (--failovers): the primary (agent + every PostgreSQL process) is frozen with
 *    SIGSTOP under the same kind of client. Persistent sessions poll pg_is_in_recovery() on the
 *    replicas every 5 ms: the first `false` is the moment the new leader became writable; the figure
 *    is the time from then to the first INSERT through the router acknowledged by the new leader.
 * 4. Memory: a second router process (`warden router --config`, maxHeld above --held) holds --held
 *    connections (each sent a startup packet) during a far-reaching router/pause announcement; its
 *    VmRSS idle and with every connection held is read from /proc.
 */
import { etcdClientFromState } from '../src/controller/state-file.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { freePorts } from '../src/core/free-port.js';
import { announceSwitchover, clearSwitchover, encodeStartupMessage, type RouterStatus } from '../src/router/index.js';
import {
  clusterUp,
  fmt,
  Freezer,
  logger,
  now,
  onCleanup,
  parseOptions,
  postmasterPid,
  processTree,
  queryOnce,
  readState,
  rssBytes,
  run,
  runBench,
  signal,
  sleep,
  summarize,
  superuserPassword,
  table,
  waitHealthy,
  warden,
  WARDEN_BIN,
  type StateFile,
  type StateMember,
} from './support.js';

const opts = parseOptions({ dir: '/tmp/warden-bench-router', rounds: 3, seconds: 20, clients: 8, threads: 2, scale: 10, switchovers: 10, failovers: 10, held: 2000 });
const log = logger('router');
const INSERT = 'INSERT INTO bench_router(at) VALUES (now()) RETURNING inet_server_port() AS port';

type Mode = 'direct' | 'router' | 'haproxy';
interface PgbenchResult {
  readonly mode: Mode;
  readonly round: number;
  readonly tps: number;
  readonly latencyMs: number;
}

async function pgbench(port: number, password: string, mode: Mode, round: number): Promise<PgbenchResult> {
  const r = await run('pgbench', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-S', '-n', '-c', String(opts.clients), '-j', String(opts.threads), '-T', String(opts.seconds), 'postgres'], {
    timeoutMs: (opts.seconds + 60) * 1000,
    env: { PGPASSWORD: password },
  });
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout)?.[1];
  const lat = /latency average = ([\d.]+) ms/.exec(r.stdout)?.[1];
  if (r.code !== 0 || tps === undefined || lat === undefined) throw new Error(`pgbench ${mode} failed (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  return { mode, round, tps: Number(tps), latencyMs: Number(lat) };
}

/** Starts a child and registers its kill (by PID) as a cleanup step. */
function startChild(command: string, args: readonly string[], name: string): ChildProcess {
  // Its own session, like the router under the supervisor: each proxy gets its own CPU share under autogroup scheduling.
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  child.once('exit', (code, sig) => {
    if (code !== 0 && sig !== 'SIGTERM') log(`${name} exited (${code ?? sig}): ${output.trim()}`);
  });
  onCleanup(async () => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    signal(child.pid, 'SIGTERM');
    const deadline = now() + 10_000;
    while (child.exitCode === null && child.signalCode === null && now() < deadline) await sleep(50);
    if (child.exitCode === null && child.signalCode === null) signal(child.pid, 'SIGKILL');
  });
  return child;
}

async function routerStatus(admin: { host: string; port: number }): Promise<RouterStatus | undefined> {
  try {
    const res = await fetch(`http://${admin.host}:${admin.port}/status`, { signal: AbortSignal.timeout(1000) });
    return (await res.json()) as RouterStatus;
  } catch {
    return undefined;
  }
}

/** Polls until `fn` returns a value or the deadline passes. */
async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, intervalMs = 50): Promise<T> {
  const deadline = now() + timeoutMs;
  while (now() < deadline) {
    const v = await fn();
    if (v !== undefined) return v;
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * A client that opens a new connection through `port` for every INSERT, one after another, until
 * stopped; records each attempt's outcome with its completion time.
 */
class PerStatementWriter {
  readonly attempts: { at: number; ok: boolean; phase?: 'connect' | 'statement'; port?: number; error?: string }[] = [];
  private stopped = false;
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly port: number, private readonly password: string) {}

  start(): void {
    this.done = (async () => {
      while (!this.stopped) {
        const client = new pg.Client({ host: '127.0.0.1', port: this.port, user: 'postgres', password: this.password, database: 'postgres', connectionTimeoutMillis: 60_000, query_timeout: 10_000, application_name: 'warden-bench-router' });
        client.on('error', () => undefined);
        let phase: 'connect' | 'statement' = 'connect';
        try {
          await client.connect();
          phase = 'statement';
          const r = await client.query<{ port: number }>(INSERT);
          this.attempts.push({ at: now(), ok: true, port: Number(r.rows[0]?.port) });
        } catch (e) {
          const err = e as Error & { code?: string };
          this.attempts.push({ at: now(), ok: false, phase, error: `${phase}: ${err.code ?? ''} ${err.message}`.replace(/\s+/g, ' ').trim() });
          await sleep(10);
        } finally {
          await Promise.race([client.end().catch(() => undefined), sleep(500)]);
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

/** Persistent sessions to each member that poll pg_is_in_recovery(); records when each first answered false. */
class WritablePoller {
  readonly writableAt = new Map<string, number>();
  private stopped = false;
  private loops: Promise<void>[] = [];

  constructor(private readonly members: readonly StateMember[], private readonly password: string) {}

  async start(): Promise<void> {
    const sessions = await Promise.all(
      this.members.map(async (m) => {
        const c = new pg.Client({ host: m.host, port: m.port, user: 'postgres', password: this.password, database: 'postgres', connectionTimeoutMillis: 2000, query_timeout: 2000 });
        c.on('error', () => undefined);
        await c.connect();
        return { m, c };
      }),
    );
    this.loops = sessions.map(async ({ m, c }) => {
      try {
        while (!this.stopped && !this.writableAt.has(m.name)) {
          const r = await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
          if (r.rows[0]?.r === false) this.writableAt.set(m.name, now());
          else await sleep(5);
        }
      } catch {
        // a replica that restarts: no figure from it
      } finally {
        await Promise.race([c.end().catch(() => undefined), sleep(500)]);
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

async function throughput(state: StateFile, password: string, haproxyPort: number): Promise<PgbenchResult[]> {
  const healthy = await waitHealthy(state, 90_000);
  const leader = healthy.leader;
  log(`pgbench -i -s ${opts.scale} on ${leader.name}`);
  const init = await run('pgbench', ['-h', leader.host, '-p', String(leader.port), '-U', 'postgres', '-i', '-q', '-s', String(opts.scale), 'postgres'], { timeoutMs: 300_000, env: { PGPASSWORD: password } });
  if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
  await queryOnce({ host: leader.host, port: leader.port, password }, 'VACUUM ANALYZE', { queryTimeoutMs: 120_000 });
  const ports: Record<Mode, number> = { direct: leader.port, router: state.router!.rw.port, haproxy: haproxyPort };
  const modes: Mode[] = ['direct', 'router', 'haproxy'];
  const results: PgbenchResult[] = [];
  // A short warm-up of each path so that the first measured run pays no cold cache.
  for (const m of modes) await run('pgbench', ['-h', '127.0.0.1', '-p', String(ports[m]), '-U', 'postgres', '-S', '-n', '-c', '2', '-T', '2', 'postgres'], { timeoutMs: 60_000, env: { PGPASSWORD: password } });
  for (let round = 1; round <= opts.rounds; round++) {
    const order = modes.map((_, i) => modes[(i + round - 1) % modes.length]!);
    for (const mode of order) {
      const r = await pgbench(ports[mode], password, mode, round);
      log(`round ${round} ${mode.padEnd(7)} ${r.tps.toFixed(0)} tps, ${r.latencyMs.toFixed(3)} ms`);
      results.push(r);
    }
  }
  return results;
}

interface SwitchoverRun {
  readonly run: number;
  readonly from: string;
  readonly to: string | undefined;
  readonly attempts: number;
  /** Connection attempts that failed (connect or startup refused). */
  readonly failed: number;
  /** Statements that failed on an established session (the old primary's shutdown). */
  readonly sessionErrors: number;
  readonly errors: string[];
  /** Longest time between two acknowledged writes through the router, ms. */
  readonly maxGapMs: number;
  readonly switchoverMs: number;
}

async function plannedSwitchovers(dir: string, password: string): Promise<SwitchoverRun[]> {
  const out: SwitchoverRun[] = [];
  for (let i = 1; i <= opts.switchovers; i++) {
    const state = await readState(dir);
    const healthy = await waitHealthy(state, 120_000, { stableMs: 1000 }).catch((e: unknown) => {
      log(`switchover ${i}: skipped, and the rest with it: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    });
    if (healthy === undefined) break;
    const writer = new PerStatementWriter(state.router!.rw.port, password);
    writer.start();
    await until('writes through the router', 30_000, async () => (writer.attempts.some((a) => a.ok) ? true : undefined));
    const started = now();
    const sw = await warden(['switchover', '--dir', dir, '--force'], 120_000);
    const switchoverMs = now() - started;
    if (sw.code !== 0) log(`switchover ${i}: exit ${sw.code}: ${sw.stdout.trim()} ${sw.stderr.trim()}`);
    // Keep writing until a write lands on a member other than the old leader, then a little longer.
    const newLeader = await until('a write on the new leader', 60_000, async () => writer.attempts.find((a) => a.ok && a.port !== healthy.leader.port && a.at > started)?.port).catch(() => undefined);
    await sleep(500);
    await writer.stop();
    const within = writer.attempts;
    const okTimes = within.filter((a) => a.ok).map((a) => a.at);
    let maxGapMs = 0;
    for (let k = 1; k < okTimes.length; k++) maxGapMs = Math.max(maxGapMs, okTimes[k]! - okTimes[k - 1]!);
    const failed = within.filter((a) => !a.ok && a.phase === 'connect');
    const sessionErrors = within.filter((a) => !a.ok && a.phase === 'statement');
    const to = state.members.find((m) => m.port === newLeader)?.name;
    const errors = [...new Set([...failed, ...sessionErrors].map((f) => f.error ?? ''))];
    log(`switchover ${i}: ${healthy.leader.name} → ${to ?? '?'} in ${(switchoverMs / 1000).toFixed(2)} s; ${within.length} attempts, ${failed.length} failed connection attempts, ${sessionErrors.length} statement errors, longest gap ${maxGapMs.toFixed(0)} ms${errors.length > 0 ? `: ${errors.join(' | ')}` : ''}`);
    out.push({ run: i, from: healthy.leader.name, to, attempts: within.length, failed: failed.length, sessionErrors: sessionErrors.length, errors, maxGapMs, switchoverMs });
  }
  return out;
}

interface FailoverRun {
  readonly run: number;
  readonly from: string;
  readonly to: string | undefined;
  /** New leader writable (pg_is_in_recovery() false) → first write through the router acknowledged by it. */
  readonly routerLagMs: number;
  /** Freeze → new leader writable. */
  readonly failoverMs: number;
  readonly attempts: number;
  readonly failed: number;
  readonly errors: string[];
}

async function unplannedFailovers(dir: string, password: string): Promise<FailoverRun[]> {
  const out: FailoverRun[] = [];
  const freezer = new Freezer();
  for (let i = 1; i <= opts.failovers; i++) {
    const state = await readState(dir);
    const healthy = await waitHealthy(state, 120_000, { stableMs: 1000, password }).catch((e: unknown) => {
      log(`failover ${i}: skipped, and the rest with it — the cluster did not heal: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    });
    if (healthy === undefined) break;
    const old = healthy.leader;
    const agentPid = state.members.find((m) => m.name === old.name)?.agentPid;
    const pm = await postmasterPid(old.dataDir);
    if (typeof agentPid !== 'number' || pm === undefined) throw new Error(`failover ${i}: no agent or postmaster PID for ${old.name}`);
    const poller = new WritablePoller(healthy.replicas, password);
    await poller.start();
    const writer = new PerStatementWriter(state.router!.rw.port, password);
    writer.start();
    await until('writes through the router', 30_000, async () => (writer.attempts.some((a) => a.ok) ? true : undefined));
    const known = [...(await processTree(agentPid)), ...(await processTree(pm))];
    const t0 = now();
    await freezer.freeze([agentPid, pm], known);
    const newPort = await until('a write through the router on a new leader', 90_000, async () => writer.attempts.find((a) => a.ok && a.at > t0 && a.port !== old.port)?.port, 20).catch(() => undefined);
    await writer.stop();
    await poller.stop();
    const to = state.members.find((m) => m.port === newPort);
    const writableAt = to === undefined ? undefined : poller.writableAt.get(to.name);
    const firstWrite = writer.attempts.find((a) => a.ok && a.at > t0 && a.port === newPort)?.at;
    const routerLagMs = writableAt === undefined || firstWrite === undefined ? Number.NaN : firstWrite - writableAt;
    const afterFreeze = writer.attempts.filter((a) => a.at > t0);
    const r: FailoverRun = {
      run: i,
      from: old.name,
      to: to?.name,
      routerLagMs,
      failoverMs: writableAt === undefined ? Number.NaN : writableAt - t0,
      attempts: afterFreeze.length,
      failed: afterFreeze.filter((a) => !a.ok).length,
      errors: [...new Set(afterFreeze.filter((a) => !a.ok).map((a) => a.error ?? ''))],
    };
    log(`failover ${i}: ${old.name} → ${r.to ?? '?'}: writable ${fmt(r.failoverMs / 1000)} s after the freeze; first write through the router ${fmt(routerLagMs, 0)} ms after that (${r.failed}/${r.attempts} attempts failed${r.errors.length > 0 ? `: ${r.errors.join(' | ')}` : ''})`);
    out.push(r);
    freezer.thaw();
  }
  return out;
}

async function heldMemory(state: StateFile): Promise<{ idleRss: number; heldRss: number; held: number; perConnKiB: number; releasedHeld: number }> {
  const [rwPort, adminPort] = await freePorts(2);
  const cfg = join(opts.dir, 'bench-router.yaml');
  await writeFile(
    cfg,
    `cluster: ${state.cluster}\netcd: { endpoints: [${state.etcd.join(', ')}] }\nlisten: { rw: 127.0.0.1:${rwPort}, admin: 127.0.0.1:${adminPort} }\nholdTimeoutMs: 600000\nmaxHeld: ${opts.held + 100}\nlog: { level: warn, file: ${join(opts.dir, 'bench-router.log')} }\n`,
  );
  const child = startChild(process.execPath, [WARDEN_BIN, 'router', '--config', cfg], 'bench router');
  const admin = { host: '127.0.0.1', port: adminPort! };
  await until('the bench router', 30_000, async () => ((await routerStatus(admin))?.rw.open === true ? true : undefined));
  await sleep(2000);
  const idleRss = (await rssBytes(child.pid!)) ?? Number.NaN;
  const etcd = etcdClientFromState(state, 2000);
  const sockets: net.Socket[] = [];
  const startup = encodeStartupMessage({ user: 'postgres', database: 'postgres', application_name: 'warden-bench-held' });
  try {
    const leader = (await routerStatus(admin))!.rw.backend!.name;
    await announceSwitchover(etcd, state.cluster, leader, null, Date.now() + 600_000);
    await until('the pause', 10_000, async () => ((await routerStatus(admin))?.rw.held?.code === 'switchover-pause' ? true : undefined));
    for (let i = 0; i < opts.held; i++) {
      const s = net.connect({ host: '127.0.0.1', port: rwPort! });
      s.on('error', () => undefined);
      s.on('connect', () => s.write(startup));
      sockets.push(s);
      if (i % 200 === 199) await sleep(20);
    }
    const held = await until(`${opts.held} held connections`, 60_000, async () => {
      const n = (await routerStatus(admin))?.held.rw ?? 0;
      return n >= opts.held ? n : undefined;
    }, 200);
    await sleep(1000);
    const heldRss = (await rssBytes(child.pid!)) ?? Number.NaN;
    log(`router RSS: idle ${(idleRss / 1048576).toFixed(1)} MiB, with ${held} held connections ${(heldRss / 1048576).toFixed(1)} MiB`);
    for (const s of sockets) s.destroy();
    const releasedHeld = await until('the held queue to empty', 30_000, async () => {
      const n = (await routerStatus(admin))?.held.rw;
      return n === 0 ? 0 : undefined;
    }, 200);
    return { idleRss, heldRss, held, perConnKiB: (heldRss - idleRss) / held / 1024, releasedHeld };
  } finally {
    for (const s of sockets) s.destroy();
    await clearSwitchover(etcd, state.cluster).catch(() => undefined);
    etcd.close();
    if (child.pid !== undefined) signal(child.pid, 'SIGTERM');
  }
}

await runBench(async () => {
  const startedAt = Date.now();
  const { state } = await clusterUp(opts.dir, log);
  if (state.router === null) throw new Error('warden up started no router');
  const password = await superuserPassword(opts.dir);
  const healthy = await waitHealthy(state, 90_000);
  const created = await queryOnce({ host: healthy.leader.host, port: healthy.leader.port, password }, 'CREATE TABLE IF NOT EXISTS bench_router(id bigserial PRIMARY KEY, at timestamptz NOT NULL)', { queryTimeoutMs: 10_000 });
  if (!created.ok) throw new Error(`CREATE TABLE failed: ${created.error}`);

  // ---- HAProxy with the generated config
  const [hRw, hRo] = await freePorts(2);
  const hcfg = await warden(['haproxy-config', '--dir', opts.dir, '--rw-port', String(hRw), '--ro-port', String(hRo)], 30_000);
  if (hcfg.code !== 0) throw new Error(`warden haproxy-config failed: ${hcfg.stderr}`);
  const hfile = join(opts.dir, 'haproxy.cfg');
  await writeFile(hfile, hcfg.stdout);
  startChild('haproxy', ['-db', '-f', hfile], 'haproxy');
  await until('HAProxy to reach the primary', 30_000, async () => {
    const r = await queryOnce({ host: '127.0.0.1', port: hRw!, password }, 'SELECT pg_is_in_recovery() AS r');
    return r.ok && r.rows[0]?.['r'] === false ? true : undefined;
  }, 200);

  const tp = await throughput(state, password, hRw!);
  const switchovers = opts.switchovers > 0 ? await plannedSwitchovers(opts.dir, password) : [];
  const failovers = opts.failovers > 0 ? await unplannedFailovers(opts.dir, password) : [];
  const memory = opts.held > 0 ? await heldMemory(await readState(opts.dir)) : undefined;

  // ---- report
  const byMode = (m: Mode): PgbenchResult[] => tp.filter((r) => r.mode === m);
  const rounds = [...new Set(tp.map((r) => r.round))];
  const perRound = rounds.map((round) => {
    const get = (m: Mode): PgbenchResult => tp.find((r) => r.round === round && r.mode === m)!;
    return { round, ratio: get('router').tps / get('haproxy').tps, routerAdded: get('router').latencyMs - get('direct').latencyMs, haproxyAdded: get('haproxy').latencyMs - get('direct').latencyMs };
  });
  const med = (xs: number[]): number => summarize(xs).median;
  process.stdout.write(`\npgbench -S -c ${opts.clients} -j ${opts.threads} -T ${opts.seconds}, scale ${opts.scale}, ${opts.rounds} interleaved rounds (order rotated each round)\n\n`);
  process.stdout.write(
    `${table(
      ['mode', 'TPS (median)', 'TPS per round', 'latency ms (median)', 'latency per round'],
      (['direct', 'router', 'haproxy'] as const).map((m) => [
        m,
        fmt(med(byMode(m).map((r) => r.tps)), 0),
        byMode(m).map((r) => r.tps.toFixed(0)).join(' '),
        fmt(med(byMode(m).map((r) => r.latencyMs)), 3),
        byMode(m).map((r) => r.latencyMs.toFixed(3)).join(' '),
      ]),
    )}\n\n`,
  );
  const ratio = med(perRound.map((r) => r.ratio));
  const routerAdded = med(perRound.map((r) => r.routerAdded));
  const haproxyAdded = med(perRound.map((r) => r.haproxyAdded));
  process.stdout.write(`router TPS / HAProxy TPS: ${fmt(ratio, 3)} (per round: ${perRound.map((r) => r.ratio.toFixed(3)).join(' ')}) → target ≥ 1.0 ${ratio >= 1 ? 'met' : 'NOT met'}\n`);
  process.stdout.write(`added latency over direct: router ${fmt(routerAdded, 3)} ms, HAProxy ${fmt(haproxyAdded, 3)} ms → target router ≤ HAProxy ${routerAdded <= haproxyAdded ? 'met' : 'NOT met'}\n\n`);

  if (switchovers.length > 0) {
    const attempts = switchovers.reduce((n, r) => n + r.attempts, 0);
    const failed = switchovers.reduce((n, r) => n + r.failed, 0);
    const sessionErrors = switchovers.reduce((n, r) => n + r.sessionErrors, 0);
    process.stdout.write(
      `${table(
        ['switchover', 'from → to', 'took s', 'attempts', 'failed connects', 'statement errors', 'longest gap ms', 'errors'],
        switchovers.map((r) => [String(r.run), `${r.from} → ${r.to ?? '?'}`, fmt(r.switchoverMs / 1000), String(r.attempts), String(r.failed), String(r.sessionErrors), r.maxGapMs.toFixed(0), r.errors.join(' | ').slice(0, 100)]),
      )}\n`,
    );
    process.stdout.write(`planned switchovers: ${switchovers.length}, connection attempts ${attempts}, failed connection attempts ${failed} → target zero ${failed === 0 ? 'met' : 'NOT met'}; statements that failed on an established session (the old primary's shutdown) ${sessionErrors}; longest write gap median ${fmt(med(switchovers.map((r) => r.maxGapMs)), 0)} ms\n\n`);
  }
  if (failovers.length > 0) {
    const lag = summarize(failovers.map((r) => r.routerLagMs));
    process.stdout.write(
      `${table(
        ['failover', 'from → to', 'writable after freeze s', 'first router write after writable ms', 'failed attempts'],
        failovers.map((r) => [String(r.run), `${r.from} → ${r.to ?? '?'}`, fmt(r.failoverMs / 1000), fmt(r.routerLagMs, 0), `${r.failed}/${r.attempts}`]),
      )}\n`,
    );
    process.stdout.write(`unplanned failovers: ${lag.n}/${opts.failovers} measured; new leader writable → first write through the router: median ${fmt(lag.median, 0)} ms, p90 ${fmt(lag.p90, 0)} ms, max ${fmt(lag.max, 0)} ms → target ≤ 300 ms ${lag.max <= 300 ? 'met (every run)' : lag.median <= 300 ? 'met (median), not every run' : 'NOT met'}\n\n`);
  }
  if (memory !== undefined) {
    process.stdout.write(`router memory: VmRSS idle ${(memory.idleRss / 1048576).toFixed(1)} MiB; with ${memory.held} held connections ${(memory.heldRss / 1048576).toFixed(1)} MiB (${memory.perConnKiB.toFixed(1)} KiB per held connection)\n`);
  }
  process.stdout.write(`wall time ${((Date.now() - startedAt) / 1000).toFixed(0)} s\n`);
  process.stdout.write(`${JSON.stringify({ bench: 'router', opts, throughput: tp, perRound, ratio, routerAddedMs: routerAdded, haproxyAddedMs: haproxyAdded, switchovers, failovers, memory })}\n`);
});
