import type { Clock } from '../core/clock.js';
import { describeError, isWardenError, WardenError } from '../core/errors.js';
import { httpCall, type ClientTls } from '../core/http-app.js';
import { formatLsn } from '../core/lsn.js';
import type { Dcs } from '../dcs/dcs.js';
import {
  clusterPrefix,
  decide,
  fenceMarginMs,
  fencingVerdict,
  KEYS,
  leaseRenewalVerdict,
  renewalHeartbeatMs,
  streamsLeaderTimeline,
  parseClusterView,
  parseScheduledRestartRecord,
  restartBlocker,
  scheduledRestartRecord,
  type Action,
  type ActionKind,
  type AgentMemory,
  type ClusterView,
  type Decision,
  type DynamicConfig,
  type InFlightOperation,
  type LocalOperation,
  type LocalPostgresFacts,
  type MemberOperationRecord,
  type MemberRecord,
  type MemberTags,
  type Observation,
  type PeerFacts,
  type Reason,
  type ReasonCode,
  type ScheduledRestart,
  type ServerFacts,
} from '../ha/index.js';
import type { DataDirState, OperationProgress, PostgresInstance, ServerStatus } from '../postgres/postgres.js';
import { Executor, PG_TIMEOUTS, type CandidateReceiveLsn, type Hooks, type ReplicaSeeder, type BootstrapRestorer } from './executor.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { Logger } from './logger.js';
import { fetchPeer } from './peers.js';
import { validateDynamicConfig } from '../spec/index.js';

export const WARDEN_VERSION = '0.1.0';

/** From this many moved-aside data directories on, the agent warns (each one can be as large as the database). */
const MOVED_ASIDE_WARNING = 3;

/** The pause before the cycle after a failed operation (at most loop_wait). */
const FAILED_OPERATION_PAUSE_MS = 250;

/** How long cancelling the operation in flight waits for it to end (a cancelled start stops its postmaster: ≤ 4 s). */
const CANCEL_WAIT_MS = 15_000;

/** The operation this agent runs in the background (see InFlightOperation). */
interface RunningOperation {
  readonly plan: readonly ActionKind[];
  readonly startedBy: ReasonCode;
  readonly startedAtMs: number;
  readonly startedMonoMs: number;
  readonly source?: string;
  progress?: OperationProgress;
  readonly abort: AbortController;
  done: Promise<void>;
}

/** Asks one member (its REST API at `apiUrl`) whether it too cannot reach the DCS and follows `leader`; true = yes. */
export type PostFailsafe = (apiUrl: string, leader: string, timeoutMs: number) => Promise<boolean>;

/** Who this agent is and where it is reached. */
export interface AgentIdentity {
  readonly name: string;
  readonly cluster: string;
  readonly apiUrl: string;
  /** Where other members and clients reach this member's PostgreSQL. */
  readonly pgHost: string;
  readonly pgPort: number;
  readonly tags: MemberTags;
  /** Written to the `config` key by the member that bootstraps the cluster. */
  readonly bootstrapConfig: DynamicConfig;
}

/** Everything the REST API and metrics show about this agent, refreshed once per loop. */
export interface AgentSnapshot {
  readonly identity: AgentIdentity;
  readonly view: ClusterView | undefined;
  readonly dcsError: string | undefined;
  readonly pg: LocalPostgresFacts | undefined;
  readonly status: ServerStatus | undefined;
  readonly isLeader: boolean;
  readonly reason: Reason;
  readonly state: string;
  readonly role: 'primary' | 'replica' | 'uninitialized';
  readonly lastLoopAtMs: number;
  /** When a loop last completed without throwing (0: never). */
  readonly lastOkLoopAtMs: number;
  /** The operation running in the background (a clone, a rewind, a start, …), if any. */
  readonly operation?: InFlightOperation;
  readonly loopDurationMs: number;
  readonly leaseDeadlineMs: number | undefined;
  /** The TTL of the lease this agent holds, as granted: what a `ttl` change has put in force. */
  readonly leaseTtlMs?: number;
  /** Data directories this member moved aside (never deleted): they take disk space until an operator removes them. */
  readonly movedAside?: readonly string[];
  /** Why the `config` key in the DCS is not in force (the last valid configuration is), if it is not. */
  readonly configProblem?: string;
  readonly startedAtMs: number;
  /** A restart scheduled on this member, not yet due. */
  readonly scheduledRestart?: ScheduledRestart;
  readonly decisions: ReadonlyMap<string, number>;
}

/** The answer to an operator's request, once the loop has carried it out (or refused it). */
export interface OperationResult {
  readonly ok: boolean;
  readonly reason: Reason;
  readonly error?: string;
}

/**
 * The HA shell of one member: observe → decide → act → publish, once per loop_wait or as soon as
 * the leader key changes (docs/architecture.md, 'How one HA loop runs'). All judgement lives in `decide`; this class only gathers
 * the observation and runs the actions.
 */
export class Agent {
  private readonly prefix: string;
  private readonly lease: LeaseKeeper;
  private readonly executor: Executor;
  private memory: AgentMemory = {};
  private lastFailure: { action: string; message: string } | undefined;
  private snap: AgentSnapshot;
  private config: DynamicConfig;
  private wake: (() => void) | undefined;
  private wakePending = false;
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private readonly watchAbort = new AbortController();
  private lastPublished = '';
  private lastStatusPublish = 0;
  private dataDirCache: DataDirState | undefined;
  private readonly decisions = new Map<string, number>();
  /** Records from the DCS refused by their decoder, per kind (shown by /metrics). */
  private readonly invalidRecords = new Map<string, number>();
  private validConfig: DynamicConfig | undefined;
  private failsafeUntilMs = 0;
  private pendingOp: { op: LocalOperation; resolve: (r: OperationResult) => void; queuedAtMs: number } | undefined;
  private scheduledRestart: ScheduledRestart | undefined;
  /** modRevision of the `config` key last checked, and why it was refused (undefined: in force). */
  private configCheckedRevision: number | undefined = -1;
  private configProblem: string | undefined;
  /** The one operation in flight (docs/architecture.md, 'How one HA loop runs'). */
  private op: RunningOperation | undefined;
  /** Monotonic time of the end of the last cycle that did not throw: the loop's heartbeat. */
  private lastOkCycleMonoMs: number;

  constructor(
    private readonly id: AgentIdentity,
    private readonly deps: { dcs: Dcs; pg: PostgresInstance; clock: Clock; log: Logger; hooks?: Hooks; restAuth?: { username: string; password: string }; peerTls?: ClientTls; fetchPeer?: typeof fetchPeer; candidateReceiveLsn?: CandidateReceiveLsn; postFailsafe?: PostFailsafe; seedReplica?: ReplicaSeeder; restoreBootstrap?: BootstrapRestorer },
  ) {
    this.prefix = clusterPrefix(id.cluster);
    this.config = id.bootstrapConfig;
    this.lease = new LeaseKeeper(deps.dcs, deps.clock, {
      ttlMs: () => this.config.ttl * 1000,
      intervalMs: () => this.config.loop_wait * 1000,
      callTimeoutMs: () => this.config.retry_timeout * 1000,
      marginMs: () => fenceMarginMs(this.config),
      onDeadline: () => this.fence('lease deadline passed without a renewal'),
      mayRenew: () =>
        leaseRenewalVerdict({
          nowMonoMs: this.deps.clock.monotonicMs(),
          lastOkCycleMonoMs: this.lastOkCycleMonoMs,
          heartbeatMs: renewalHeartbeatMs(this.config.ttl),
          holdsLeaderKey: this.snap.isLeader,
          paused: this.config.pause,
          servesAsPrimary: this.snap.pg?.process === 'running' && this.snap.pg.server?.inRecovery === false,
          operationInFlight: this.op !== undefined,
        }),
      log: deps.log,
    });
    this.executor = new Executor(deps.dcs, deps.pg, {
      name: id.name,
      prefix: this.prefix,
      dcsTimeoutMs: () => this.config.retry_timeout * 1000,
      log: deps.log,
      initialParameters: id.bootstrapConfig.postgresql.parameters,
      clock: deps.clock,
      ...(deps.hooks === undefined ? {} : { hooks: deps.hooks }),
      ...(deps.candidateReceiveLsn === undefined ? {} : { candidateReceiveLsn: deps.candidateReceiveLsn }),
      ...(deps.seedReplica === undefined ? {} : { seedReplica: deps.seedReplica }),
      ...(deps.restoreBootstrap === undefined ? {} : { restoreBootstrap: deps.restoreBootstrap }),
    });
    const now = deps.clock.nowMs();
    this.lastOkCycleMonoMs = deps.clock.monotonicMs();
    this.snap = {
      identity: id,
      view: undefined,
      dcsError: undefined,
      pg: undefined,
      status: undefined,
      isLeader: false,
      reason: { code: 'starting', message: 'agent starting' },
      state: 'starting',
      role: 'uninitialized',
      lastLoopAtMs: 0,
      lastOkLoopAtMs: 0,
      loopDurationMs: 0,
      leaseDeadlineMs: undefined,
      startedAtMs: now,
      decisions: this.decisions,
    };
  }

  /** The latest snapshot for the REST API and metrics. */
  snapshot(): AgentSnapshot {
    const lease = this.lease.current();
    const operation = this.inFlightFacts();
    return { ...this.snap, leaseDeadlineMs: this.lease.deadlineWallMs(), ...(operation === undefined ? {} : { operation }), ...(lease === undefined ? {} : { leaseTtlMs: lease.ttlMs }), ...(this.configProblem === undefined ? {} : { configProblem: this.configProblem }), ...(this.scheduledRestart === undefined ? {} : { scheduledRestart: this.scheduledRestart }) };
  }

  /** Schedules a restart of PostgreSQL (one at a time); its conditions are checked when it is due. */
  scheduleRestart(s: ScheduledRestart): { ok: true } | { ok: false; conflict: string } {
    const existing = this.scheduledRestart;
    if (existing !== undefined) {
      return { ok: false, conflict: `a restart is already scheduled at ${new Date(existing.atMs).toISOString()}: cancel it first (DELETE /restart, warden restart --cancel)` };
    }
    this.scheduledRestart = s;
    this.deps.log.info({ at: new Date(s.atMs).toISOString(), role: s.role, restartPending: s.restartPending }, 'restart scheduled');
    this.poke();
    return { ok: true };
  }

  /** Cancels the scheduled restart; returns it, or undefined when none was scheduled. */
  cancelScheduledRestart(): ScheduledRestart | undefined {
    const s = this.scheduledRestart;
    this.scheduledRestart = undefined;
    if (s !== undefined) {
      this.deps.log.info({ at: new Date(s.atMs).toISOString() }, 'scheduled restart cancelled');
      this.poke();
    }
    return s;
  }

  /**
   * When the scheduled restart is due: drops it, checks its conditions against this loop's facts,
   * and queues the restart for this loop's observation (or logs why it was skipped).
   */
  private startDueRestart(): void {
    const s = this.scheduledRestart;
    if (s === undefined || this.deps.clock.nowMs() < s.atMs || this.pendingOp !== undefined) return;
    this.scheduledRestart = undefined;
    const at = new Date(s.atMs).toISOString();
    const blocker = restartBlocker(s, { role: this.snap.isLeader ? 'primary' : 'replica', pendingRestart: this.snap.status?.pendingRestart === true });
    if (blocker !== undefined) {
      this.deps.log.warn({ at }, `scheduled restart skipped: ${blocker}`);
      return;
    }
    this.deps.log.info({ at }, 'scheduled restart due: restarting PostgreSQL');
    void this.requestOperation({ kind: 'restart' }, 120_000).then((r) => {
      if (r.ok) this.deps.log.info({ at }, 'scheduled restart done');
      else this.deps.log.warn({ at, err: r.error ?? r.reason.message }, 'scheduled restart failed');
    });
  }

  /**
   * Refuses to start when another live agent already publishes this member name (a duplicate would
   * fight over the same slot and leader key), then starts the lease, the watch and the loop.
   */
  async start(): Promise<void> {
    await this.checkDuplicateName();
    await this.refreshMovedAside();
    this.lease.start();
    void this.watchLoop();
    this.loopDone = this.loop();
  }

  /** Stops the loop; PostgreSQL is stopped fast (WAL reaches the standbys) and the lease revoked. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.watchAbort.abort();
    this.poke();
    await this.loopDone;
    await this.cancelOperation('the agent is stopping');
    this.lease.stop();
    await this.deps.pg.stop('fast', PG_TIMEOUTS.stop).catch((e: unknown) => this.deps.log.error({ err: describeError(e) }, 'stopping PostgreSQL failed'));
    // Revoking deletes the leader and member keys at once, so a successor need not wait for the TTL.
    await this.lease.revoke().catch((e: unknown) => this.deps.log.warn({ err: describeError(e) }, 'lease revoke failed'));
  }

  private async checkDuplicateName(): Promise<void> {
    // etcd unreachable at start is not fatal: keep retrying (with a clear log line) until it answers.
    for (let attempt = 1; !this.stopping; attempt++) {
      try {
        const kv = await this.deps.dcs.get(this.prefix + KEYS.membersDir + this.id.name, { timeoutMs: this.config.retry_timeout * 1000 });
        if (kv !== undefined) {
          const rec = JSON.parse(kv.value) as Partial<MemberRecord>;
          if (rec.apiUrl !== undefined && rec.apiUrl !== this.id.apiUrl) {
            throw new WardenError('conflict', `member name ${this.id.name} is already in use by a live agent at ${rec.apiUrl} (pid ${rec.agentPid ?? '?'}): refusing to start a duplicate`);
          }
          // Our own key from an earlier run (still within its lease): keep the restart it scheduled.
          const kept = parseScheduledRestartRecord(rec.scheduledRestart);
          if (kept !== undefined && this.scheduledRestart === undefined) {
            this.scheduledRestart = kept;
            this.deps.log.info({ at: new Date(kept.atMs).toISOString() }, 'restart scheduled by an earlier run of this agent kept');
          }
        }
        return;
      } catch (e) {
        if (e instanceof WardenError && e.code === 'conflict') throw e;
        this.deps.log.warn({ attempt, err: describeError(e) }, `cannot reach etcd yet; retrying every ${Math.min(5, attempt)} s`);
        await this.sleep(Math.min(5, attempt) * 1000);
      }
    }
  }

  /**
   * Queues an operator's request for the next loop and resolves when it has been carried out; one
   * request at a time (a second one is refused), bounded by `timeoutMs`.
   */
  requestOperation(op: LocalOperation, timeoutMs: number): Promise<OperationResult> {
    if (this.pendingOp !== undefined) {
      return Promise.resolve({ ok: false, reason: { code: this.snap.reason.code, message: `another operation (${this.pendingOp.op.kind}) is in progress` } });
    }
    return new Promise((resolve) => {
      const t = this.deps.clock.setTimer(() => {
        if (this.pendingOp?.op === op) this.pendingOp = undefined;
        resolve({ ok: false, reason: this.snap.reason, error: `timed out after ${timeoutMs} ms` });
      }, timeoutMs);
      this.pendingOp = {
        op,
        queuedAtMs: this.deps.clock.nowMs(),
        resolve: (r) => {
          this.deps.clock.clearTimer(t);
          resolve(r);
        },
      };
      this.poke();
    });
  }

  /** Wakes the loop now (after an operator wrote a key the loop should see); during a cycle, the next one starts at once. */
  poke(): void {
    if (this.wake !== undefined) this.wake();
    else this.wakePending = true;
  }

  /** Immediate stop of a primary whose lease is about to lapse (invariant 1); the rule is fencingVerdict in src/ha. */
  private fence(why: string): void {
    const pgFacts = this.snap.pg;
    const verdict = fencingVerdict({
      nowMs: this.deps.clock.nowMs(),
      failsafeUntilMs: this.failsafeUntilMs,
      wasLeader: this.snap.isLeader,
      inRecovery: pgFacts?.server?.inRecovery,
      configuredAsPrimary: this.executor.configuredAs?.kind === 'primary',
    });
    if (verdict.kind === 'spare') {
      if (this.failsafeUntilMs > this.deps.clock.nowMs()) this.deps.log.warn({ why }, `not fencing: ${verdict.why}`);
      return;
    }
    this.deps.log.error({ why, because: verdict.why }, 'fencing: immediate stop of PostgreSQL');
    this.snap = { ...this.snap, isLeader: false };
    // Whatever runs (a start, a promotion) must not bring a primary back behind the fence.
    this.op?.abort.abort(new Error(`fencing: ${why}`));
    void this.deps.pg.stop('immediate', PG_TIMEOUTS.fence).catch((e: unknown) => this.deps.log.error({ err: describeError(e) }, 'fencing stop failed'));
    this.poke();
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      const started = this.deps.clock.nowMs();
      let ok = false;
      try {
        await this.runOnce();
        ok = true;
      } catch (e) {
        this.deps.log.error({ err: describeError(e) }, 'HA loop failed');
      }
      const took = this.deps.clock.nowMs() - started;
      const now = this.deps.clock.nowMs();
      if (ok) this.lastOkCycleMonoMs = this.deps.clock.monotonicMs();
      this.snap = { ...this.snap, loopDurationMs: took, lastLoopAtMs: now, ...(ok ? { lastOkLoopAtMs: now } : {}) };
      if (this.stopping) break;
      const waitMs = Math.max(0, this.config.loop_wait * 1000 - took);
      // A wake-up that came during the cycle (the leader key vanished, an operation ended) is not
      // lost: the next cycle starts at once instead of a loop_wait later.
      if (this.wakePending) {
        this.wakePending = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const t = this.deps.clock.setTimer(resolve, waitMs);
        this.wake = () => {
          this.deps.clock.clearTimer(t);
          resolve();
        };
      });
      this.wake = undefined;
      this.wakePending = false;
    }
  }

  /**
   * One cycle: observe, decide, publish, and start the decision's actions as the operation in
   * flight (docs/architecture.md, 'How one HA loop runs'). The cycle never waits for the operation:
   * the next one observes while it runs, and decide() lets it run or cancels it.
   */
  async runOnce(): Promise<Decision> {
    this.startDueRestart();
    let obs = await this.observe();
    // A ttl change is put in force at once, and the loop observes again, so that decide() and the
    // actions see the lease that is really held (the old one has just been revoked). Not while an
    // operation runs: it may be writing keys under the lease it started with.
    if (obs.dcs.ok) this.config = obs.dcs.view.config;
    if (this.op === undefined && this.lease.needsRotation()) {
      await this.rotateLease();
      obs = await this.observe();
    }
    const decision = decide(obs, this.memory);
    this.memory = decision.memory;
    // A failure is decided on once (outside an operation's cycles): the next decision starts afresh.
    if (obs.inFlight === undefined) this.lastFailure = undefined;
    const view = obs.dcs.ok ? obs.dcs.view : undefined;
    if (view !== undefined) this.config = view.config;
    this.decisions.set(decision.reason.code, (this.decisions.get(decision.reason.code) ?? 0) + 1);
    if (decision.reason.code !== this.snap.reason.code || decision.actions.length > 0) {
      this.deps.log.info({ code: decision.reason.code, actions: decision.actions.map((a) => a.kind) }, decision.reason.message);
    }
    const isLeader = view?.leader?.name === this.id.name && view.leader.lease === obs.lease?.id;
    this.updateSnapshot(obs, decision.reason, isLeader);
    let actions = decision.actions;
    const first = actions[0];
    if (first?.kind === 'cancel-operation') {
      const cancelled = await this.cancelOperation(first.why);
      actions = actions.slice(1);
      // The rest was decided on an operation still running; if it ended by itself meanwhile, the
      // next cycle decides on what it left (an immediate stop is always safe to carry out).
      const onlyFence = actions.length === 1 && actions[0]?.kind === 'stop' && actions[0].mode === 'immediate';
      if (!cancelled && !onlyFence) actions = [];
    }
    if (actions.length > 0 && this.op === undefined) {
      if (view !== undefined) await this.publishMember(obs, decision.reason, actions[0]?.kind);
      this.launch(decision, actions, obs);
    } else {
      if (this.op === undefined && decision.actions.length === 0) this.answerOperation(decision, undefined);
      if (view !== undefined) await this.publishMember(obs, decision.reason, undefined);
    }
    if (isLeader && this.snap.status !== undefined && !this.snap.status.inRecovery) await this.publishLeaderStatus(this.snap.status);
    return decision;
  }

  /** The operation in flight as decide() and the API see it. */
  private inFlightFacts(): InFlightOperation | undefined {
    const op = this.op;
    if (op === undefined) return undefined;
    return {
      kind: this.executor.current ?? op.plan[0] ?? 'configure',
      plan: op.plan,
      startedBy: op.startedBy,
      startedAtMs: op.startedAtMs,
      elapsedMs: this.deps.clock.monotonicMs() - op.startedMonoMs,
      ...(op.source === undefined ? {} : { source: op.source }),
      ...(op.progress === undefined ? {} : { progress: op.progress }),
    };
  }

  /** Starts `actions` as the operation in flight; it wakes the loop when it ends. */
  private launch(decision: Decision, actions: readonly Action[], obs: Observation): void {
    const view = obs.dcs.ok ? obs.dcs.view : undefined;
    const copy = actions.find((a) => a.kind === 'clone' || a.kind === 'rewind');
    const op: RunningOperation = {
      plan: actions.map((a) => a.kind),
      startedBy: decision.reason.code,
      startedAtMs: this.deps.clock.nowMs(),
      startedMonoMs: this.deps.clock.monotonicMs(),
      ...(copy !== undefined && (copy.kind === 'clone' || copy.kind === 'rewind') ? { source: copy.from.name } : {}),
      abort: new AbortController(),
      done: Promise.resolve(),
    };
    this.op = op;
    const ctx = { view, leaseId: obs.lease?.id, nowMs: obs.nowMs, bootstrapConfig: this.id.bootstrapConfig };
    op.done = this.executor
      .run(actions, ctx, { signal: op.abort.signal, onProgress: (p) => (op.progress = p) })
      .catch((error: unknown) => ({ action: actions[0] as Action, error }))
      .then((failed) => this.finishOperation(op, decision, actions, failed));
  }

  private async finishOperation(op: RunningOperation, decision: Decision, actions: readonly Action[], failed: { action: Action; error: unknown } | undefined): Promise<void> {
    this.lastFailure = failed === undefined ? undefined : { action: failed.action.kind, message: describeError(failed.error) };
    if (this.op === op) this.op = undefined;
    this.dataDirCache = undefined;
    const tookS = Math.round((this.deps.clock.monotonicMs() - op.startedMonoMs) / 100) / 10;
    if (failed === undefined) {
      if (tookS >= 1) this.deps.log.info({ plan: op.plan, tookS }, `${op.startedBy}: done`);
    } else if (isWardenError(failed.error, 'operation-cancelled')) {
      this.deps.log.warn({ action: failed.action.kind, tookS, err: this.lastFailure?.message }, 'operation cancelled');
    } else {
      this.deps.log.warn({ action: failed.action.kind, tookS, err: this.lastFailure?.message }, 'action failed');
    }
    this.answerOperation(decision, failed === undefined ? undefined : describeError(failed.error));
    if (actions.some((a) => a.kind === 'move-data-aside' || a.kind === 'bootstrap')) await this.refreshMovedAside();
    // The next cycle decides on what the operation left: at once after a success, after a short
    // pause after a failure (an action that fails at once must not be retried in a tight loop).
    if (failed === undefined) this.poke();
    else this.deps.clock.setTimer(() => this.poke(), Math.min(this.config.loop_wait * 1000, FAILED_OPERATION_PAUSE_MS));
  }

  /**
   * Aborts the operation in flight and waits (bounded) until it has ended; true when there was one
   * and it ended, false when none was running (it may have just ended by itself) or it outlived
   * the wait.
   */
  private async cancelOperation(why: string): Promise<boolean> {
    const op = this.op;
    if (op === undefined) return false;
    this.deps.log.warn({ plan: op.plan, why }, 'cancelling the operation in flight');
    op.abort.abort(new Error(why));
    let timer: ReturnType<Clock['setTimer']> | undefined;
    await Promise.race([op.done, new Promise<void>((resolve) => (timer = this.deps.clock.setTimer(resolve, CANCEL_WAIT_MS)))]);
    this.deps.clock.clearTimer(timer);
    return this.op !== op;
  }

  private answerOperation(decision: Decision, error: string | undefined): void {
    const p = this.pendingOp;
    if (p === undefined || decision.operation !== p.op.kind) return;
    this.pendingOp = undefined;
    const refused = decision.actions.length === 0 && decision.reason.code.endsWith('-refused');
    p.resolve(error === undefined && !refused ? { ok: true, reason: decision.reason } : { ok: false, reason: decision.reason, ...(error === undefined ? {} : { error }) });
  }

  private async observe(): Promise<Observation> {
    // Read before the DCS: an operation whose acquire-leader has succeeded is then always seen
    // together with the leader key it wrote.
    const inFlight = this.inFlightFacts();
    let dcs: Observation['dcs'];
    try {
      const snap = await this.deps.dcs.range(this.prefix, { timeoutMs: this.config.retry_timeout * 1000 });
      dcs = { ok: true, view: this.withConfigInForce(parseClusterView(this.prefix, snap.revision, snap.kvs)) };
      this.failsafeUntilMs = 0;
      this.watchFrom = snap.revision + 1;
    } catch (e) {
      dcs = { ok: false, error: describeError(e) };
    }
    const { facts, status } = await this.observePostgres();
    this.snap = { ...this.snap, status };
    let peers: PeerFacts[] | undefined;
    // Peers matter for the leader race (unless an operator named this member) and for a leader
    // checking a switchover candidate; otherwise they cost a round trip for nothing.
    const namedCandidate = dcs.ok && dcs.view.failover?.candidate === this.id.name;
    const needPeers =
      dcs.ok && dcs.view.initialize !== undefined && ((dcs.view.leader === undefined && !namedCandidate) || (dcs.view.failover !== undefined && dcs.view.leader?.name === this.id.name));
    if (needPeers && dcs.ok) {
      const others = [...dcs.view.members.values()].filter((m) => m.name !== this.id.name);
      const readPeer = this.deps.fetchPeer ?? fetchPeer;
      peers = await Promise.all(others.map((m) => readPeer(m.name, m.apiUrl, this.config.retry_timeout * 1000, this.deps.peerTls)));
    }
    if (!dcs.ok) await this.checkFailsafe();
    const lease = this.lease.current();
    const deadlineMs = this.lease.deadlineWallMs();
    return {
      nowMs: this.deps.clock.nowMs(),
      ...(this.failsafeUntilMs > 0 ? { failsafeUntilMs: this.failsafeUntilMs } : {}),
      self: { name: this.id.name, tags: this.id.tags, host: this.id.pgHost, port: this.id.pgPort },
      dcs,
      ...(lease === undefined || deadlineMs === undefined ? {} : { lease: { id: lease.id, deadlineMs } }),
      ...(inFlight === undefined ? {} : { inFlight }),
      pg: facts,
      ...(peers === undefined ? {} : { peers }),
      ...(this.lastFailure === undefined ? {} : { lastFailure: this.lastFailure }),
      ...(this.pendingOp === undefined ? {} : { operation: this.pendingOp.op }),
    };
  }

  /**
   * The view with the configuration that is in force: the `config` key when it decodes and passes
   * the same checks as `edit-config` (types, ranges, the timing rule), else the last valid one —
   * a bad key written behind the API's back must neither reach `decide()` nor overflow a timer.
   * Checked once per revision of the key; a refusal is logged once and shown by GET /patroni.
   */
  private withConfigInForce(view: ClusterView): ClusterView {
    if (view.configModRevision === undefined) return view;
    if (view.configModRevision !== this.configCheckedRevision) {
      this.configCheckedRevision = view.configModRevision;
      const checked = view.configError === undefined ? validateDynamicConfig(view.config) : { ok: false as const, errors: [view.configError] };
      if (checked.ok) {
        if (this.configProblem !== undefined) this.deps.log.info({ modRevision: view.configModRevision }, 'the config key is valid again and in force');
        this.configProblem = undefined;
        this.validConfig = checked.config;
      } else {
        this.configProblem = `config key (revision ${view.configModRevision}) refused: ${checked.errors.join('; ')}; the last valid configuration stays in force`;
        this.invalidRecords.set('config', (this.invalidRecords.get('config') ?? 0) + 1);
        this.deps.log.error({ modRevision: view.configModRevision, errors: checked.errors }, this.configProblem);
      }
    }
    return { ...view, config: this.validConfig ?? this.config };
  }

  /** Lists the data directories moved aside and says so when there are several: nothing deletes them. */
  private async refreshMovedAside(): Promise<void> {
    const dirs = await this.deps.pg.listMovedAside().catch(() => [] as string[]);
    if (dirs.length >= MOVED_ASIDE_WARNING && dirs.length !== this.snap.movedAside?.length) {
      this.deps.log.warn({ count: dirs.length, newest: dirs.at(-1) }, `${dirs.length} data directories moved aside beside ${this.id.name}'s data directory; Warden never deletes them: remove the ones you do not need`);
    }
    this.snap = { ...this.snap, movedAside: dirs };
  }

  /** Re-attaches this member's keys to a lease with the configured ttl (see LeaseKeeper.rotate). */
  private async rotateLease(): Promise<void> {
    const timeoutMs = this.config.retry_timeout * 1000;
    await this.lease.rotate(async (newLease, oldLease) => {
      const memberKey = this.prefix + KEYS.membersDir + this.id.name;
      const member = await this.deps.dcs.get(memberKey, { timeoutMs });
      if (member !== undefined && member.lease === oldLease) await this.deps.dcs.put(memberKey, member.value, { leaseId: newLease, timeoutMs });
      // The leader key last, by compare-and-swap: it moves only if it is still ours on the old lease.
      const leader = await this.deps.dcs.get(this.prefix + KEYS.leader, { timeoutMs });
      if (leader !== undefined && leader.value === this.id.name && leader.lease === oldLease) {
        if (!(await this.deps.dcs.compareAndSwap(leader.key, leader.value, leader.modRevision, { leaseId: newLease, timeoutMs }))) {
          throw new WardenError('conflict', 'the leader key changed while moving it to the new lease');
        }
      }
    });
  }

  /**
   * failsafe_mode, on a leader that lost the DCS: ask every member of the last known view whether it
   * too cannot reach the DCS and still follows this leader (POST /failsafe); only when all say yes
   * may the primary outlive its lease, for one more TTL.
   */
  private async checkFailsafe(): Promise<void> {
    const view = this.snap.view;
    const wasLeader = view?.leader?.name === this.id.name;
    if (view === undefined || !view.config.failsafe_mode || !wasLeader || this.snap.status?.inRecovery !== false) return;
    const others = [...view.members.values()].filter((m) => m.name !== this.id.name);
    if (others.length === 0) return;
    const sentAt = this.deps.clock.nowMs();
    const post = this.deps.postFailsafe ?? ((apiUrl, leader, timeoutMs) => this.postFailsafeHttp(apiUrl, leader, timeoutMs));
    const answers = await Promise.all(others.map((m) => post(m.apiUrl, this.id.name, Math.min(500, this.config.retry_timeout * 1000)).catch(() => false)));
    if (answers.every(Boolean)) {
      this.failsafeUntilMs = sentAt + this.config.ttl * 1000;
    } else {
      this.deps.log.warn({ confirmed: answers.filter(Boolean).length, of: answers.length }, 'failsafe_mode: not every member confirmed');
    }
  }

  /** The default PostFailsafe: POST /failsafe over HTTP(S), with the REST credentials. */
  private async postFailsafeHttp(apiUrl: string, leader: string, timeoutMs: number): Promise<boolean> {
    const auth = this.deps.restAuth;
    const res = await httpCall(new URL('/failsafe', apiUrl), {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(auth === undefined ? {} : { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` }),
      },
      body: JSON.stringify({ leader }),
      timeoutMs,
      ...(this.deps.peerTls === undefined ? {} : { tls: this.deps.peerTls }),
    });
    return res.status === 200;
  }

  private async observePostgres(): Promise<{ facts: LocalPostgresFacts; status: ServerStatus | undefined }> {
    const proc = await this.deps.pg.processState();
    let status: ServerStatus | undefined;
    let server: ServerFacts | undefined;
    if (proc.kind === 'running') {
      try {
        status = await this.deps.pg.status(Math.min(PG_TIMEOUTS.query, this.config.retry_timeout * 1000 * 2));
        server = {
          inRecovery: status.inRecovery,
          timeline: status.timeline,
          walPosition: status.walPosition,
          streaming: status.streaming ?? false,
          ...(status.receivedTimeline === undefined ? {} : { receivedTimeline: status.receivedTimeline }),
          systemIdentifier: status.systemIdentifier,
          ...(status.replicas === undefined
            ? {}
            : {
                replicas: status.replicas.map((r) => ({
                  name: r.applicationName,
                  state: r.state,
                  syncState: r.syncState,
                  ...(r.flushLsn === undefined ? {} : { flushLsn: r.flushLsn }),
                })),
              }),
        };
      } catch (e) {
        this.deps.log.debug({ err: describeError(e) }, 'status query failed');
      }
    }
    let dataDir: DataDirState;
    if (server !== undefined) {
      dataDir = { kind: 'initialized', systemIdentifier: server.systemIdentifier };
    } else {
      dataDir = this.dataDirCache ?? (await this.deps.pg.inspectDataDir());
      // pg_controldata only changes when the server runs or an action ran; cache it between loops.
      if (proc.kind !== 'running' && this.op === undefined) this.dataDirCache = dataDir;
    }
    const configuredAs = this.executor.configuredAs;
    const standbyNames = this.executor.standbyNames;
    const facts: LocalPostgresFacts = {
      dataDir,
      process: proc.kind,
      appliedParameters: this.executor.appliedParameters,
      ...(standbyNames === undefined ? {} : { standbyNames }),
      ...(server === undefined ? {} : { server }),
      ...(configuredAs === undefined ? {} : { configuredAs }),
    };
    return { facts, status };
  }

  private updateSnapshot(obs: Observation, reason: Reason, isLeader: boolean, status?: ServerStatus): void {
    const pg = obs.pg;
    const server = pg.server;
    const role: AgentSnapshot['role'] = pg.dataDir.kind !== 'initialized' ? 'uninitialized' : server !== undefined && !server.inRecovery ? 'primary' : 'replica';
    this.snap = {
      ...this.snap,
      view: obs.dcs.ok ? obs.dcs.view : this.snap.view,
      dcsError: obs.dcs.ok ? undefined : obs.dcs.error,
      pg,
      ...(status === undefined ? {} : { status }),
      isLeader,
      reason,
      role,
      state: this.stateLabel(pg),
    };
  }

  private stateLabel(pg: LocalPostgresFacts, during?: string): string {
    const kind: string = during ?? this.executor.current ?? '';
    switch (kind) {
      case 'clone':
        return 'creating replica';
      case 'bootstrap':
        return 'initializing new cluster';
      case 'rewind':
        return 'rewinding';
      case 'start':
        return 'starting';
      case 'stop':
        return 'stopping';
      case 'promote':
        return 'promoting';
      default:
        break;
    }
    if (pg.process === 'crashed') return 'crashed';
    if (pg.process === 'stopped') return 'stopped';
    if (pg.server === undefined) return 'starting';
    if (!pg.server.inRecovery) return 'running';
    const view = this.snap.view;
    const leaderTl = view?.leader === undefined ? 0 : (view.members.get(view.leader.name)?.timeline ?? view.status?.timeline ?? 0);
    return streamsLeaderTimeline(pg.server, leaderTl) ? 'streaming' : 'running';
  }

  private async publishMember(obs: Observation, reason: Reason, during: string | undefined): Promise<void> {
    const lease = this.lease.current();
    if (lease === undefined) return;
    const server = obs.pg.server;
    const record: MemberRecord = {
      name: this.id.name,
      apiUrl: this.id.apiUrl,
      host: this.id.pgHost,
      port: this.id.pgPort,
      role: this.snap.role,
      state: this.stateLabel(obs.pg, during),
      ...(server === undefined ? {} : { timeline: server.timeline, walPosition: formatLsn(server.walPosition) }),
      tags: this.id.tags,
      reason,
      pendingRestart: this.snap.status?.pendingRestart ?? false,
      ...(this.snap.status?.restartLowers === undefined ? {} : { restartLowers: this.snap.status.restartLowers }),
      ...(this.scheduledRestart === undefined ? {} : { scheduledRestart: scheduledRestartRecord(this.scheduledRestart) }),
      ...operationRecord(this.inFlightFacts()),
      agentPid: process.pid,
      version: WARDEN_VERSION,
    };
    const text = JSON.stringify(record);
    const key = this.prefix + KEYS.membersDir + this.id.name;
    const existing = obs.dcs.ok ? obs.dcs.view.members.get(this.id.name) : undefined;
    // Skip identical writes, but rewrite when the key vanished or hangs on another lease.
    if (text === this.lastPublished && existing !== undefined && existing.lease === lease.id) return;
    try {
      await this.deps.dcs.put(key, text, { leaseId: lease.id, timeoutMs: this.config.retry_timeout * 1000 });
      this.lastPublished = text;
    } catch (e) {
      this.deps.log.warn({ err: describeError(e) }, 'publishing the member key failed');
    }
  }

  private async publishLeaderStatus(status: ServerStatus): Promise<void> {
    const now = this.deps.clock.nowMs();
    if (now - this.lastStatusPublish < this.config.loop_wait * 1000 * 0.9) return;
    this.lastStatusPublish = now;
    const text = JSON.stringify({ lsn: formatLsn(status.walPosition), timeline: status.timeline, leader: this.id.name, timeMs: now });
    try {
      await this.deps.dcs.put(this.prefix + KEYS.status, text, { timeoutMs: this.config.retry_timeout * 1000 });
    } catch (e) {
      this.deps.log.warn({ err: describeError(e) }, 'publishing the status key failed');
    }
  }

  private watchFrom = 0;

  /** Waits on the agent's clock (a test's FakeClock moves it). */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.deps.clock.setTimer(resolve, ms));
  }

  /** Watches the prefix between loops so that a vanished leader key wakes the loop at once. */
  private async watchLoop(): Promise<void> {
    const signal = this.watchAbort.signal;
    while (!signal.aborted) {
      if (this.watchFrom === 0) {
        await this.sleep(100);
        continue;
      }
      try {
        await this.deps.dcs.watch(this.prefix, this.watchFrom, (events, revision) => {
          this.watchFrom = revision + 1;
          if (events.some((ev) => ev.kv.key === this.prefix + KEYS.leader || ev.kv.key === this.prefix + KEYS.config || ev.kv.key === this.prefix + KEYS.initialize)) {
            this.poke();
          }
        }, signal);
      } catch (e) {
        if (signal.aborted) return;
        this.deps.log.debug({ err: describeError(e) }, 'watch ended; resuming');
        // Resume from the next loop's snapshot revision, after a short pause.
        await this.sleep(Math.min(1000, this.config.loop_wait * 1000));
      }
    }
  }
}

/** The member record's `operation` field (progress rounded to MiB, so that a clone rewrites the key about once per MiB-change, not per byte). */
function operationRecord(f: InFlightOperation | undefined): { operation?: MemberOperationRecord } {
  if (f === undefined) return {};
  const mib = (b: number): number => Math.floor(b / 1048576) * 1048576;
  const p = f.progress;
  return {
    operation: {
      kind: f.kind,
      startedBy: f.startedBy,
      startedAtMs: f.startedAtMs,
      ...(f.source === undefined ? {} : { source: f.source }),
      ...(p === undefined ? {} : { doneBytes: mib(p.doneBytes), ...(p.totalBytes === undefined ? {} : { totalBytes: mib(p.totalBytes) }) }),
    },
  };
}
