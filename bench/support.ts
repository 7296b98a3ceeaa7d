/**
 * Shared pieces of the bench/ scripts: bringing a local cluster up and down with the built CLI,
 * reading DIR/state.json, freezing and thawing process trees, one-shot PostgreSQL connections,
 * agent REST calls, /proc sampling and small statistics. Nothing here is timed as a test.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { postmasterPid, processTree } from '../src/chaos/processes.js';
import type { StateFile, StateMember } from '../src/controller/state-file.js';

export type { StateFile, StateMember };

export const REPO = resolve(import.meta.dirname, '..');
export const WARDEN_BIN = join(REPO, 'bin', 'warden.js');
export const PG_BIN_DIR = process.env['WARDEN_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Milliseconds on a monotonic clock (immune to wall-clock steps). */
export const now = (): number => performance.now();

// ---------------------------------------------------------------- arguments

/** Reads `--name value` options (numbers or strings) with defaults; unknown options are an error. */
export function parseOptions<T extends Record<string, number | string>>(defaults: T, argv: readonly string[] = process.argv.slice(2)): T {
  const out: Record<string, number | string> = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    const key = m?.[1];
    if (m === null || key === undefined || !(key in defaults)) {
      throw new Error(`unknown argument ${arg}; options: ${Object.keys(defaults).map((k) => `--${k}`).join(' ')}`);
    }
    const raw = m[2] ?? argv[++i];
    if (raw === undefined) throw new Error(`--${key} needs a value`);
    if (typeof defaults[key] === 'number') {
      const n = Number(raw);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${key} must be a non-negative number, got ${raw}`);
      out[key] = n;
    } else {
      out[key] = raw;
    }
  }
  return out as T;
}

// ---------------------------------------------------------------- cleanup

type Cleanup = () => Promise<void> | void;
const cleanups: Cleanup[] = [];
let cleaningUp: Promise<void> | undefined;

/** Registers a cleanup step; steps run last-registered first, once, from runCleanups() or on SIGINT/SIGTERM. */
export function onCleanup(fn: Cleanup): void {
  cleanups.push(fn);
}

/** Runs every registered cleanup step once (later calls wait for the first). */
export function runCleanups(): Promise<void> {
  cleaningUp ??= (async () => {
    while (cleanups.length > 0) {
      const fn = cleanups.pop();
      try {
        await fn?.();
      } catch (e) {
        process.stderr.write(`cleanup step failed: ${String(e)}\n`);
      }
    }
  })();
  return cleaningUp;
}

let signalsInstalled = false;
/** On SIGINT/SIGTERM: run the cleanups, then exit 130/143. */
export function installSignalCleanup(): void {
  if (signalsInstalled) return;
  signalsInstalled = true;
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: cleaning up…\n`);
      void runCleanups().finally(() => process.exit(code));
    });
  }
}

/** Runs `main` with cleanup in a finally block and on signals; sets the exit code. */
export async function runBench(main: () => Promise<void>): Promise<void> {
  installSignalCleanup();
  try {
    await main();
  } catch (e) {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  } finally {
    await runCleanups();
  }
}

// ---------------------------------------------------------------- the CLI

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs a command, collects its output, kills it by PID after timeoutMs. */
export function run(command: string, args: readonly string[], opts: { timeoutMs: number; env?: NodeJS.ProcessEnv; cwd?: string }): Promise<CommandResult> {
  return new Promise((resolvePromise, reject) => {
    const started = now();
    const child = spawn(command, args, { cwd: opts.cwd ?? REPO, env: { ...process.env, NO_COLOR: '1', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      if (child.pid !== undefined) signal(child.pid, 'SIGKILL');
    }, opts.timeoutMs);
    child.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(t);
      resolvePromise({ code, stdout, stderr, ms: now() - started });
    });
  });
}

/** Runs `warden <args>` with the built bundle (npm run build first). */
export function warden(args: readonly string[], timeoutMs = 60_000): Promise<CommandResult> {
  return run(process.execPath, [WARDEN_BIN, ...args], { timeoutMs });
}

/** Fails early with a clear message when the bundle is missing. */
export function requireBuild(): void {
  if (!existsSync(join(REPO, 'dist', 'warden.js'))) throw new Error('dist/warden.js is missing: run `npm run build` first');
}

/**
 * `warden up --dir DIR` on a fresh dir (a leftover from an interrupted run is purged first), with
 * `down --purge` registered as a cleanup step. Returns the state file and how long `up` took.
 */
export async function clusterUp(dir: string, log: (s: string) => void = () => undefined, specFile?: string): Promise<{ state: StateFile; upMs: number }> {
  requireBuild();
  if (existsSync(dir)) {
    log(`${dir} exists (an earlier run?): warden down --purge first`);
    await warden(['down', '--dir', dir, '--purge'], 180_000);
  }
  onCleanup(() => clusterDown(dir, log));
  log(`warden up --dir ${dir} …`);
  const up = await warden(['up', '--static', ...(specFile === undefined ? [] : ['-f', specFile]), '--dir', dir], 300_000);
  if (up.code !== 0) throw new Error(`warden up failed (exit ${up.code}):\n${up.stdout}\n${up.stderr}`);
  log(`cluster healthy after ${(up.ms / 1000).toFixed(1)} s`);
  return { state: await readState(dir), upMs: up.ms };
}

/** `warden down --dir DIR --purge` (bounded). */
export async function clusterDown(dir: string, log: (s: string) => void = () => undefined): Promise<void> {
  if (!existsSync(dir)) return;
  log(`warden down --dir ${dir} --purge`);
  const r = await warden(['down', '--dir', dir, '--purge'], 180_000);
  if (r.code !== 0) log(`warden down exited ${r.code}: ${r.stderr.trim()}`);
}

/**
 * Copies the logs of a runtime dir (supervisor.log, etcd/<name>/etcd.log, members/<name>/agent.log
 * and PostgreSQL logs)
 * to `dest` before a purge, so that a failed run can be explained afterwards. Returns `dest`.
 */
export async function saveLogs(dir: string, dest: string): Promise<string> {
  await mkdir(dest, { recursive: true });
  for (const f of ['supervisor.log', 'state.json']) await cp(join(dir, f), join(dest, f)).catch(() => undefined);
  const etcds = await readdir(join(dir, 'etcd')).catch(() => [] as string[]);
  for (const e of etcds) {
    await mkdir(join(dest, 'etcd', e), { recursive: true });
    await cp(join(dir, 'etcd', e, 'etcd.log'), join(dest, 'etcd', e, 'etcd.log')).catch(() => undefined);
  }
  const members = await readdir(join(dir, 'members')).catch(() => [] as string[]);
  for (const m of members) {
    const files = await readdir(join(dir, 'members', m)).catch(() => [] as string[]);
    for (const f of files.filter((x) => x.endsWith('.log') || x === 'agent.out')) {
      await mkdir(join(dest, m), { recursive: true });
      await cp(join(dir, 'members', m, f), join(dest, m, f)).catch(() => undefined);
    }
  }
  return dest;
}

/** Reads DIR/state.json. */
export async function readState(dir: string): Promise<StateFile> {
  return JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as StateFile;
}

/** The superuser password written by `warden up`. */
export async function superuserPassword(dir: string): Promise<string> {
  return (await readFile(join(dir, 'secrets', 'superuser.password'), 'utf8')).trim();
}

// ---------------------------------------------------------------- agents' REST API

/** The parts of GET /patroni the benches read. */
export interface PatroniStatus {
  readonly role?: string;
  readonly state?: string;
  readonly timeline?: number;
  readonly cluster_unlocked?: boolean;
  readonly warden?: { readonly isLeader?: boolean; readonly state?: string; readonly reason?: { readonly code?: string; readonly message?: string } };
}

/** GET <apiUrl><path> as JSON; undefined when unreachable, slow or not JSON. */
export async function getJson<T>(apiUrl: string, path: string, timeoutMs = 1000): Promise<{ status: number; body: T } | undefined> {
  try {
    const res = await fetch(new URL(path, apiUrl), { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: (await res.json()) as T };
  } catch {
    return undefined;
  }
}

/** GET /patroni of one member; undefined when it does not answer within timeoutMs. */
export async function patroni(apiUrl: string, timeoutMs = 1000): Promise<PatroniStatus | undefined> {
  return (await getJson<PatroniStatus>(apiUrl, '/patroni', timeoutMs))?.body;
}

export interface Healthy {
  readonly leader: StateMember;
  readonly replicas: readonly StateMember[];
  readonly timeline: number;
  /** now() when the healthy stretch that ended the wait began. */
  readonly since: number;
}

/**
 * Waits (bounded) until the cluster is healthy and stays so for `stableMs`: exactly one member is
 * the leader, a running primary, and every other member is a streaming replica on the leader's
 * timeline, as each agent's GET /patroni says. With `password`, each replica is also asked over SQL
 * (pg_stat_wal_receiver: status streaming, received_tli = the leader's timeline), which does not
 * rely on what the agents report: a replica whose WAL receiver reconnects and fails every second
 * shows "streaming" for an instant, and a fetched history file can make its reported timeline
 * look current while it still replays an old one.
 */
export async function waitHealthy(state: StateFile, timeoutMs: number, opts: { password?: string; stableMs?: number } = {}): Promise<Healthy> {
  const deadline = now() + timeoutMs;
  const stableMs = opts.stableMs ?? 600;
  let last = '';
  let since: { at: number; leader: string; timeline: number } | undefined;
  while (now() < deadline) {
    const sts = await Promise.all(state.members.map(async (m) => ({ m, p: await patroni(m.apiUrl, 1000) })));
    last = sts.map(({ m, p }) => `${m.name}: ${p === undefined ? 'no answer' : `${p.warden?.isLeader === true ? 'leader ' : ''}${p.role}/${p.warden?.state ?? p.state} tl ${p.timeline ?? '?'}`}`).join('; ');
    const leaders = sts.filter(({ p }) => p?.warden?.isLeader === true && p.role === 'primary' && p.state === 'running');
    const lead = leaders[0];
    let ok = false;
    if (leaders.length === 1 && lead !== undefined && lead.p?.timeline !== undefined) {
      const tl = lead.p.timeline;
      const others = sts.filter((s) => s !== lead);
      ok = others.every(({ p }) => p?.role === 'replica' && p.warden?.state === 'streaming' && p.timeline === tl);
      if (ok && opts.password !== undefined) {
        const pw = opts.password;
        const wr = await Promise.all(
          others.map(({ m }) => queryOnce({ host: m.host, port: m.port, password: pw }, 'SELECT status, received_tli FROM pg_stat_wal_receiver', { queryTimeoutMs: 1000 })),
        );
        const bad = wr.map((r, i) => ({ r, m: others[i]?.m })).filter(({ r }) => !r.ok || r.rows[0]?.['status'] !== 'streaming' || Number(r.rows[0]?.['received_tli']) !== tl);
        if (bad.length > 0) {
          ok = false;
          last = `${last} — but pg_stat_wal_receiver says ${bad.map(({ r, m }) => `${m?.name}: ${r.ok ? JSON.stringify(r.rows[0] ?? 'no WAL receiver') : r.error}`).join('; ')}`;
        }
      }
      if (ok) {
        if (since === undefined || since.leader !== lead.m.name || since.timeline !== tl) since = { at: now(), leader: lead.m.name, timeline: tl };
        if (now() - since.at >= stableMs) return { leader: lead.m, replicas: others.map((s) => s.m), timeline: tl, since: since.at };
      }
    }
    if (!ok) since = undefined;
    await sleep(200);
  }
  throw new Error(`the cluster did not become healthy within ${timeoutMs / 1000} s (last: ${last})`);
}

// ---------------------------------------------------------------- processes

/** Sends a signal; false when the process is gone. */
export function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}

// Process trees and postmaster PIDs are read the same way the chaos faults read them.
export { postmasterPid, processTree };

/** One process's fields from /proc/<pid>/stat (after the parenthesised command name). */
export async function procStat(pid: number): Promise<{ state: string; ppid: number; ticks: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // After ")": state(3) ppid(4) … utime(14) stime(15): index = field number - 3.
    return { state: f[0] ?? '?', ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined;
  }
}

/** VmRSS of a process in bytes (undefined when gone). */
export async function rssBytes(pid: number): Promise<number | undefined> {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] === undefined ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** Clock ticks per second for /proc/<pid>/stat times (getconf CLK_TCK; 100 on Linux). */
export function clockTicks(): number {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout.trim());
  return r.status === 0 && Number.isInteger(n) && n > 0 ? n : 100;
}

/**
 * A frozen set of processes. freeze() stops the roots first (an agent, a postmaster: a stopped
 * postmaster forks no more children), then every descendant, re-reading the tree until a pass finds
 * nothing new; thaw() sends SIGCONT to all of them. The thaw is registered as a cleanup step.
 */
export class Freezer {
  private readonly pids: number[] = [];
  private thawed = true;

  get frozenPids(): readonly number[] {
    return this.pids;
  }

  /**
   * Stops `known` at once (a tree read just before, so that the stop itself is a tight synchronous
   * loop), then re-reads the trees under `roots` and stops anything new until a pass finds nothing.
   * Returns the stopped PIDs.
   */
  async freeze(roots: readonly number[], known: readonly number[] = []): Promise<readonly number[]> {
    if (this.thawed) onCleanup(() => void this.thaw());
    this.thawed = false;
    const seen = new Set<number>();
    const stop = (pid: number): void => {
      if (seen.has(pid)) return;
      seen.add(pid);
      if (signal(pid, 'SIGSTOP')) this.pids.push(pid);
    };
    for (const r of roots) stop(r);
    for (const pid of known) stop(pid);
    for (let pass = 0; pass < 10; pass++) {
      const before = seen.size;
      for (const r of roots) for (const pid of await processTree(r)) stop(pid);
      if (seen.size === before) break;
    }
    return this.pids;
  }

  /** SIGCONT to every PID stopped, in the order they were stopped; returns how many were alive. */
  thaw(): number {
    if (this.thawed) return 0;
    this.thawed = true;
    let n = 0;
    for (const pid of this.pids) if (signal(pid, 'SIGCONT')) n++;
    this.pids.length = 0;
    return n;
  }
}

// ---------------------------------------------------------------- PostgreSQL

export interface PgTarget {
  readonly host: string;
  readonly port: number;
  readonly password: string;
  readonly user?: string;
  readonly database?: string;
}

export type QueryOutcome = { ok: true; rows: Record<string, unknown>[]; ms: number } | { ok: false; error: string; code: string | undefined; ms: number };

/** An open session (connect timeout applied; no query timeout: bound each query yourself). Errors after connect are swallowed. */
export async function openSession(t: PgTarget, connectTimeoutMs = 2000): Promise<pg.Client> {
  const client = new pg.Client({
    host: t.host,
    port: t.port,
    user: t.user ?? 'postgres',
    password: t.password,
    database: t.database ?? 'postgres',
    connectionTimeoutMillis: connectTimeoutMs,
    application_name: 'warden-bench-session',
  });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Closes a session without waiting more than 500 ms. */
export async function closeSession(client: pg.Client): Promise<void> {
  await Promise.race([client.end().catch(() => undefined), sleep(500)]);
}

/**
 * One statement on a fresh connection (connect_timeout and a query bound), closed afterwards.
 * Never throws: the outcome says whether the server accepted it.
 */
export async function queryOnce(t: PgTarget, text: string, opts: { connectTimeoutMs?: number; queryTimeoutMs?: number } = {}): Promise<QueryOutcome> {
  const started = now();
  const client = new pg.Client({
    host: t.host,
    port: t.port,
    user: t.user ?? 'postgres',
    password: t.password,
    database: t.database ?? 'postgres',
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 1000,
    query_timeout: opts.queryTimeoutMs ?? 2000,
    application_name: 'warden-bench',
  });
  // A server that goes away mid-session emits 'error' on the client; the outcome already says it.
  client.on('error', () => undefined);
  try {
    await client.connect();
    const res = await client.query(text);
    return { ok: true, rows: res.rows as Record<string, unknown>[], ms: now() - started };
  } catch (e) {
    const err = e as Error & { code?: string };
    return { ok: false, error: err.message, code: err.code, ms: now() - started };
  } finally {
    await Promise.race([client.end().catch(() => undefined), sleep(500)]);
  }
}

// ---------------------------------------------------------------- statistics and output

/** Linear-interpolated percentile (p in [0, 100]) of the finite values; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  const xs = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return Number.NaN;
  const pos = ((xs.length - 1) * p) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return (xs[lo] ?? 0) + ((xs[hi] ?? 0) - (xs[lo] ?? 0)) * (pos - lo);
}

export interface Summary {
  readonly n: number;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly p10: number;
  readonly p90: number;
}

/** median, min/max and p10/p90 of the finite values. */
export function summarize(values: readonly number[]): Summary {
  const xs = values.filter((v) => Number.isFinite(v));
  return {
    n: xs.length,
    median: percentile(xs, 50),
    min: xs.length === 0 ? Number.NaN : Math.min(...xs),
    max: xs.length === 0 ? Number.NaN : Math.max(...xs),
    p10: percentile(xs, 10),
    p90: percentile(xs, 90),
  };
}

/** A fixed-width text table. */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padStart(widths[i] ?? 0)).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Fixed decimals; '—' for NaN/undefined. */
export function fmt(v: number | undefined, digits = 2): string {
  return v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits);
}

/** Cores and the 1/5/15-minute load averages now: other work on the machine shows up here. */
export function machine(): { cores: number; loadavg: number[]; at: string } {
  return { cores: availableParallelism(), loadavg: loadavg().map((x) => Math.round(x * 100) / 100), at: new Date().toISOString() };
}

/** Prints the machine line of a report. */
export function machineLine(label: string, m: ReturnType<typeof machine>): string {
  return `${label}: ${m.at}, ${m.cores} cores, load average ${m.loadavg.join(' / ')} (1/5/15 min)`;
}

/** A timestamped progress line on stderr (figures go to stdout). */
export function logger(name: string): (s: string) => void {
  return (s) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)} ${name}] ${s}\n`);
}
