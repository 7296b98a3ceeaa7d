// Runs the backup schedules from the leader's agent until a controller exists (docs/architecture.md,
// "Backups"). Each slot fires once across failovers (invariant 9): the slot is claimed with a
// create-only key before the backup starts, so a new leader never repeats a slot its predecessor
// claimed, and picks up one it had not (within SLOT_LOOK_BACK_MS). The backup itself is
// `warden backup --wait` in a child process: the same source choice (a healthy standby first) and
// the same one-at-a-time lock (`backup/running`; pgBackRest's expire runs inside backup, under it).
// Beside the HA loop, never in it: nothing here feeds decide().
import { spawn } from 'node:child_process';
import { abandonedOutcome, decodeSchedules, decodeSlotRecord, dueSlots, isAbandonedClaim, slotDir, slotKey, slotKeysToPrune, type BackupSchedule, type SlotRecord } from '../backup/index.js';
import { runEvery, type Clock, type Periodic } from '../core/clock.js';
import { describeError } from '../core/errors.js';
import type { Dcs } from '../dcs/dcs.js';
import { KEYS } from '../ha/index.js';
import type { Logger } from '../agent/logger.js';
import { wardenArgv } from './supervisor.js';

/** A claim older than this, by another member, with no backup holding the lock, was abandoned (the backup lock's lease is 15 s). */
const ABANDONED_GRACE_MS = 30_000;

/** What the scheduler needs: the DCS, the cluster prefix, whether this member leads now, and a clock. */
export interface BackupSchedulerDeps {
  readonly dcs: Pick<Dcs, 'get' | 'create' | 'compareAndSwap' | 'range' | 'delete'>;
  /** `/warden/<cluster>/`. */
  readonly prefix: string;
  /** The cluster's name, passed to `warden backup --cluster`. */
  readonly cluster: string;
  readonly member: string;
  /** True while this member holds the leader key and runs read-write. */
  readonly isLeader: () => boolean;
  readonly clock: Clock;
  readonly log: Logger;
  readonly intervalMs: number;
  readonly dcsTimeoutMs: number;
  /** Bound of one backup run. */
  readonly backupTimeoutMs: number;
  /** Runs `warden backup …` (a seam for tests); resolves with its exit code and output. */
  readonly runBackup?: (args: readonly string[], timeoutMs: number) => Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** The leader's backup scheduler: one tick every `intervalMs`, one backup at a time. */
export class BackupScheduler {
  private runner: Periodic | undefined;
  private stopped = false;
  /** Slots already seen claimed (by anyone): not asked about again. */
  private readonly seen = new Set<string>();
  private lastProblem: string | undefined;

  constructor(private readonly deps: BackupSchedulerDeps) {}

  start(): void {
    this.runner = runEvery(this.deps.clock, this.deps.intervalMs, () => this.tick());
  }

  stop(): void {
    this.stopped = true;
    this.runner?.stop();
  }

  private problem(why: string): void {
    if (why !== this.lastProblem) this.deps.log.warn({ err: why }, 'backup schedules: cannot run them');
    this.lastProblem = why;
  }

  /** One pass: read the schedules, and run the due slots this leader can claim, one after the other. */
  async tick(): Promise<void> {
    const d = this.deps;
    if (!d.isLeader()) return;
    try {
      const kv = await d.dcs.get(`${d.prefix}${KEYS.backupSchedules}`, { timeoutMs: d.dcsTimeoutMs });
      if (kv === undefined) return;
      const decoded = decodeSchedules(kv.value);
      if (!decoded.ok) return this.problem(`${KEYS.backupSchedules}: ${decoded.error}`);
      for (const { schedule, slotMs } of dueSlots(decoded.value.schedules, d.clock.nowMs())) {
        if (this.stopped || !d.isLeader()) return;
        await this.fire(decoded.value.dir, schedule, slotMs);
      }
      this.lastProblem = undefined;
    } catch (e) {
      this.problem(describeError(e));
    }
  }

  /** Claims the slot (create-only) and runs its backup; a slot claimed already, by anyone, is left alone. */
  private async fire(dir: string, s: BackupSchedule, slotMs: number): Promise<void> {
    const d = this.deps;
    const key = `${d.prefix}${slotKey(s.repo, s.type, slotMs)}`;
    if (this.seen.has(key)) return;
    const opts = { timeoutMs: d.dcsTimeoutMs };
    if ((await d.dcs.get(key, opts)) !== undefined) {
      this.seen.add(key);
      return;
    }
    // Another backup runs (a manual one, or a slot before this one): wait for it rather than claim a slot that would only fail on the lock.
    if ((await d.dcs.get(`${d.prefix}${KEYS.backupRunning}`, opts)) !== undefined) return;
    const claim: SlotRecord = { member: d.member, slotMs, claimedAtMs: d.clock.nowMs(), state: 'claimed', label: null, error: null, finishedAtMs: null };
    if (!(await d.dcs.create(key, JSON.stringify(claim), opts))) {
      this.seen.add(key);
      return;
    }
    this.seen.add(key);
    d.log.info({ slot: new Date(slotMs).toISOString(), repo: s.repo, type: s.type }, `backup schedules: slot claimed, starting a ${s.type} backup`);
    const run = d.runBackup ?? runWarden;
    // --cluster: a `--nodes` runtime dir may hold several clusters (the runtime's own is the default).
    const args = ['backup', '--dir', dir, '--cluster', d.cluster, '--type', s.type, '--repo', s.repo, '--wait', '--format', 'json', '--timeout-seconds', String(Math.ceil(d.backupTimeoutMs / 1000))];
    let outcome: SlotRecord;
    try {
      const r = await run(args, d.backupTimeoutMs + 30_000);
      const out = r.code === 0 ? parseBackupOutput(r.stdout) : undefined;
      outcome =
        out !== undefined
          ? { ...claim, state: 'succeeded', label: out.label, fromStandby: out.from !== out.primary, finishedAtMs: d.clock.nowMs() }
          : { ...claim, state: 'failed', error: (r.stderr.trim() || r.stdout.trim() || `exit ${String(r.code)}`).slice(-500), finishedAtMs: d.clock.nowMs() };
    } catch (e) {
      outcome = { ...claim, state: 'failed', error: describeError(e), finishedAtMs: d.clock.nowMs() };
    }
    // The outcome replaces our claim only if it is still our claim (compare-and-swap on its revision).
    const now = await d.dcs.get(key, opts);
    const mine = now === undefined ? undefined : decodeSlotRecord(now.value);
    if (now !== undefined && mine?.ok === true && mine.value.member === d.member && mine.value.state === 'claimed') {
      await d.dcs.compareAndSwap(key, JSON.stringify(outcome), now.modRevision, opts);
    }
    if (outcome.state === 'succeeded') d.log.info({ slot: new Date(slotMs).toISOString(), label: outcome.label }, 'backup schedules: backup done');
    else d.log.warn({ slot: new Date(slotMs).toISOString(), error: outcome.error }, 'backup schedules: backup failed');
    await this.prune(s);
  }

  /**
   * Keeps the newest slot keys of a schedule (every agent reads the whole cluster prefix each loop),
   * and marks the claims a stopped runner abandoned as failed (compare-and-swap), so that no
   * interrupted backup ever reads as running or succeeded.
   */
  private async prune(s: BackupSchedule): Promise<void> {
    const d = this.deps;
    const opts = { timeoutMs: d.dcsTimeoutMs };
    const dirKey = `${d.prefix}${slotDir(s.repo, s.type)}`;
    const snap = await d.dcs.range(dirKey, opts);
    const running = (await d.dcs.get(`${d.prefix}${KEYS.backupRunning}`, opts)) !== undefined;
    for (const kv of snap.kvs) {
      const r = decodeSlotRecord(kv.value);
      if (r.ok && isAbandonedClaim(r.value, d.member, running, d.clock.nowMs(), ABANDONED_GRACE_MS)) {
        await d.dcs.compareAndSwap(kv.key, JSON.stringify(abandonedOutcome(r.value, d.clock.nowMs())), kv.modRevision, opts);
        d.log.warn({ slot: new Date(r.value.slotMs).toISOString(), member: r.value.member }, 'backup schedules: a slot claimed by a runner that stopped is marked failed (interrupted)');
      }
    }
    for (const key of slotKeysToPrune(snap.kvs.map((kv) => kv.key))) await d.dcs.delete(key, opts);
  }
}

/** The label and source from `warden backup --format json`, or undefined when it is not that output. */
function parseBackupOutput(stdout: string): { label: string; from: string; primary: string } | undefined {
  try {
    const o = JSON.parse(stdout) as { from?: unknown; primary?: unknown; set?: { label?: unknown } };
    if (typeof o.from === 'string' && typeof o.primary === 'string' && typeof o.set?.label === 'string') return { label: o.set.label, from: o.from, primary: o.primary };
  } catch {
    // not JSON: reported as a failure by the caller
  }
  return undefined;
}

/** Runs this Warden's CLI with `args`; killed (its process group) after `timeoutMs`. */
function runWarden(args: readonly string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { command, args: argv } = wardenArgv(args);
  return new Promise((resolve) => {
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout = (stdout + b.toString()).slice(-1_000_000)));
    child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-100_000)));
    const t = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          // gone already
        }
      }
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(t);
      resolve({ code: 127, stdout, stderr: String(e) });
    });
    child.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}
