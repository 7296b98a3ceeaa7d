import pg from 'pg';
import type { Clock } from '../core/clock.js';
import { assertNever, describeError, isWardenError, WardenError } from '../core/errors.js';
import { formatLsn } from '../core/lsn.js';
import type { Dcs } from '../dcs/dcs.js';
import { KEYS, slotNameFor, type Action, type ClusterView, type DynamicConfig, type HistoryEntry, type SyncSet } from '../ha/index.js';
import { parseLsn } from '../core/lsn.js';
import type { OperationOptions, PostgresInstance, ReplicationRole } from '../postgres/postgres.js';
import { cancelledError } from '../postgres/progress.js';
import type { Logger } from './logger.js';

/** Timeouts of the long PostgreSQL operations, in ms. */
export const PG_TIMEOUTS = {
  initdb: 120_000,
  start: 120_000,
  stop: 60_000,
  /** Immediate stop (a fence): SIGQUIT, then SIGKILL at 75 % of this if the postmaster has not gone. */
  fence: 4_000,
  basebackup: 600_000,
  promote: 60_000,
  rewind: 600_000,
  recover: 300_000,
  query: 5_000,
} as const;

/** How long a replica's start may hold the loop before it goes on watching the recovering server. */
const REPLICA_START_WAIT_MS = 15_000;

/** How long the leader lets routers react to a switchover announcement before it stops PostgreSQL. */
const ROUTER_PAUSE_GRACE_MS = 150;

/** How long a switchover waits for the candidate to receive the last WAL. */
const AWAIT_CAUGHT_UP_MS = 5_000;

/** Operator hooks run around role changes (Patroni's pre_promote and callbacks). */
export interface Hooks {
  /** Runs before a promotion; a failure blocks the promotion. */
  readonly prePromote?: () => Promise<void>;
  /** Told after PostgreSQL started, stopped, or changed role (Patroni's callbacks); never blocks the loop. */
  readonly onEvent?: (event: 'on_start' | 'on_stop' | 'on_role_change', role: 'primary' | 'replica') => void;
}

/**
 * Seeds an empty replica from the backup repository (a standby restore of the newest backup of
 * this system) instead of a base backup of the primary; resolves with why it could not, in which
 * case nothing is left in the data directory. Cancelled through the operation's signal.
 */
export type ReplicaSeeder = (req: { readonly systemIdentifier: string }, op: OperationOptions) => Promise<{ readonly restored: true; readonly label: string } | { readonly restored: false; readonly why: string }>;

/**
 * Makes the bootstrapping member's data directory from another cluster's backup instead of initdb
 * (bootstrap.method pgbackrest, spec.dataSource): restores it into the empty data directory,
 * recovers it to its target and promotes it privately, and leaves it stopped cleanly with the new
 * cluster's passwords and archiving settings. Resolves with a sentence for the log. What it wrote
 * is moved aside by the bootstrap's failure path.
 */
export type BootstrapRestorer = (op: OperationOptions) => Promise<{ readonly message: string; readonly fields: Readonly<Record<string, unknown>> }>;

/** Asks a switchover candidate's PostgreSQL how far it has received WAL. */
export type CandidateReceiveLsn = (candidate: { readonly host: string; readonly port: number }, timeoutMs: number) => Promise<string | null>;

/** What the executor needs from the agent for one loop. */
export interface ExecutionContext {
  readonly view: ClusterView | undefined;
  readonly leaseId: string | undefined;
  readonly nowMs: number;
  readonly bootstrapConfig: DynamicConfig;
}

/**
 * Carries out the actions of one decision in order, stopping at the first failure (docs/architecture.md, 'Code shapes').
 * It is the only place where the HA loop touches the DCS keys and PostgreSQL.
 */
export class Executor {
  /** What this agent run last configured the server as; an observation input for the next loop. */
  configuredAs: { kind: 'primary' } | { kind: 'replica'; upstream?: string } | undefined;
  /** The action running now, for the published state ("creating replica", "rewinding", …). */
  current: Action['kind'] | undefined;
  /** The synchronous standby set last given to PostgreSQL. */
  standbyNames: SyncSet | undefined;
  /** JSON of the parameters last applied. */
  appliedParameters: string;

  constructor(
    private readonly dcs: Dcs,
    private readonly pg: PostgresInstance,
    private readonly opts: {
      name: string;
      prefix: string;
      dcsTimeoutMs: () => number;
      log: Logger;
      initialParameters: Readonly<Record<string, string | number | boolean>>;
      hooks?: Hooks;
      /** Every wait of the executor runs on this clock (a test's FakeClock moves it). */
      clock: Clock;
      /**
       * The candidate's pg_last_wal_receive_lsn() as text (null: it has received none), asked of
       * its PostgreSQL itself; default: a direct connection as the superuser. Throws when it cannot
       * be asked.
       */
      candidateReceiveLsn?: CandidateReceiveLsn;
      /** With a backup repository: replicas are seeded from it (see ReplicaSeeder). */
      seedReplica?: ReplicaSeeder;
      /** bootstrap.method pgbackrest: the bootstrap restores instead of running initdb (see BootstrapRestorer). */
      restoreBootstrap?: BootstrapRestorer;
    },
  ) {
    this.appliedParameters = JSON.stringify(opts.initialParameters);
  }

  /**
   * Runs `actions`; resolves with the failed action and error, or undefined when all succeeded.
   * Aborting `op.signal` ends the running PostgreSQL command and runs nothing after it (the failure
   * is 'operation-cancelled').
   */
  async run(actions: readonly Action[], ctx: ExecutionContext, op: OperationOptions = {}): Promise<{ action: Action; error: unknown } | undefined> {
    for (const action of actions) {
      if (op.signal?.aborted === true) return { action, error: cancelledError(action.kind, op.signal) };
      this.current = action.kind;
      try {
        await this.execute(action, ctx, op);
      } catch (error) {
        return { action, error };
      } finally {
        this.current = undefined;
      }
    }
    return undefined;
  }

  private key(k: string): string {
    return this.opts.prefix + k;
  }

  private dcsOpts(leaseId?: string): { timeoutMs: number; leaseId?: string } {
    return leaseId === undefined ? { timeoutMs: this.opts.dcsTimeoutMs() } : { timeoutMs: this.opts.dcsTimeoutMs(), leaseId };
  }

  private requireLease(ctx: ExecutionContext): string {
    if (ctx.leaseId === undefined) throw new WardenError('lease-not-found', 'no lease held');
    return ctx.leaseId;
  }

  private async execute(action: Action, ctx: ExecutionContext, op: OperationOptions): Promise<void> {
    const log = this.opts.log;
    switch (action.kind) {
      case 'acquire-initialize': {
        if (!(await this.dcs.create(this.key(KEYS.initialize), '', this.dcsOpts()))) {
          throw new WardenError('conflict', 'another member won the bootstrap race');
        }
        log.info({}, 'won the bootstrap race');
        return;
      }
      case 'acquire-leader': {
        const lease = this.requireLease(ctx);
        if (!(await this.dcs.create(this.key(KEYS.leader), this.opts.name, this.dcsOpts(lease)))) {
          throw new WardenError('conflict', 'another member holds the leader key');
        }
        log.info({ leaseId: lease }, 'acquired the leader key');
        return;
      }
      case 'take-over-leader': {
        const lease = this.requireLease(ctx);
        if (!(await this.dcs.compareAndSwap(this.key(KEYS.leader), this.opts.name, action.modRevision, this.dcsOpts(lease)))) {
          throw new WardenError('conflict', 'the leader key changed while taking it over');
        }
        return;
      }
      case 'release-leader': {
        await this.dcs.delete(this.key(KEYS.leader), { timeoutMs: this.opts.dcsTimeoutMs(), expectModRevision: action.modRevision });
        log.warn({}, 'released the leader key');
        return;
      }
      case 'bootstrap':
        return this.bootstrap(ctx, op);
      case 'clone': {
        const sysid = ctx.view?.initialize?.value;
        if (this.opts.seedReplica !== undefined && sysid !== undefined && sysid !== '') {
          const seeded = await this.opts.seedReplica({ systemIdentifier: sysid }, op);
          if (seeded.restored) {
            log.info({ set: seeded.label }, 'replica seeded from the backup repository (standby restore): the primary was not read for the base copy; it replays the archive, then streams');
            return;
          }
          log.info({ why: seeded.why }, 'the backup repository cannot seed this replica: pg_basebackup instead');
        }
        log.info({ from: action.from.name }, 'cloning with pg_basebackup');
        await this.pg.basebackup({ host: action.from.host, port: action.from.port }, PG_TIMEOUTS.basebackup, op);
        return;
      }
      case 'configure': {
        // Configure with the cluster's current parameters, so a (re)started server needs no second restart.
        const params = ctx.view?.config.postgresql.parameters;
        if (params !== undefined && JSON.stringify(params) !== this.appliedParameters) {
          await this.pg.updateSettings({ parameters: params });
          this.appliedParameters = JSON.stringify(params);
        }
        let role: ReplicationRole;
        if (action.role === 'primary') role = { kind: 'primary' };
        else if (action.upstream === undefined) role = { kind: 'replica' };
        else if (action.cascade === true) role = { kind: 'replica', upstream: { host: action.upstream.host, port: action.upstream.port } };
        else role = { kind: 'replica', upstream: { host: action.upstream.host, port: action.upstream.port }, slotName: slotNameFor(this.opts.name) };
        await this.pg.configure(role);
        if (action.role === 'replica' && this.configuredAs?.kind === 'primary') this.opts.hooks?.onEvent?.('on_role_change', 'replica');
        if (action.role === 'replica' && this.standbyNames !== undefined) {
          // A demoted member forgets its synchronous set: a later promotion starts from the key.
          this.standbyNames = undefined;
          await this.pg.updateSettings({ synchronousStandbyNames: '' });
        }
        this.configuredAs = action.role === 'primary' ? { kind: 'primary' } : action.upstream ? { kind: 'replica', upstream: action.upstream.name } : { kind: 'replica' };
        return;
      }
      case 'start':
        log.info({}, 'starting PostgreSQL');
        if (this.configuredAs?.kind === 'replica') {
          // A standby accepts connections only once it is consistent, which after a rewind can need
          // WAL from the leader: do not hold the loop for it. A server still recovering after the
          // bound is left running; the next loops watch it ("PostgreSQL runs but does not answer").
          try {
            await this.pg.start(REPLICA_START_WAIT_MS, op);
          } catch (e) {
            if (!isWardenError(e, 'postgres-unavailable')) throw e;
            log.warn({ err: describeError(e) }, 'standby still recovering; the loop goes on');
            return;
          }
          this.opts.hooks?.onEvent?.('on_start', 'replica');
          return;
        }
        await this.pg.start(action.timeoutMs ?? PG_TIMEOUTS.start, op);
        this.opts.hooks?.onEvent?.('on_start', this.configuredAs?.kind ?? 'replica');
        return;
      case 'stop':
        log.warn({ mode: action.mode }, 'stopping PostgreSQL');
        // An immediate stop is a fence: it must end in seconds, not after the fast-stop budget.
        await this.pg.stop(action.mode, action.mode === 'immediate' ? PG_TIMEOUTS.fence : PG_TIMEOUTS.stop, op);
        this.opts.hooks?.onEvent?.('on_stop', this.configuredAs?.kind ?? 'replica');
        return;
      case 'promote':
        await this.promote(action.reason, action.standbyNames, ctx);
        // The switchover (if any) is over: routers need not hold connections any longer.
        await this.dcs.delete(this.key(KEYS.routerPause), { timeoutMs: this.opts.dcsTimeoutMs() }).catch(() => undefined);
        return;
      case 'rewind': {
        const state = await this.pg.inspectDataDir();
        if (state.clusterState !== 'shut down' && state.clusterState !== 'shut down in recovery') {
          log.warn({ clusterState: state.clusterState }, 'crash recovery in single-user mode before pg_rewind');
          await this.pg.recoverCrashed(PG_TIMEOUTS.recover, op);
        }
        const out = await this.pg.rewind({ host: action.from.host, port: action.from.port }, PG_TIMEOUTS.rewind, op);
        log.info({ from: action.from.name, output: out.slice(-500) }, 'pg_rewind finished');
        return;
      }
      case 'move-data-aside': {
        const moved = await this.pg.moveDataDirAside();
        log.warn({ movedTo: moved }, 'moved the data directory aside');
        return;
      }
      case 'sync-slots':
        await this.pg.syncSlots(action.slots, PG_TIMEOUTS.query);
        return;
      case 'announce-switchover':
        await this.dcs.put(this.key(KEYS.routerPause), JSON.stringify({ from: this.opts.name, to: action.to, untilMs: action.untilMs }), this.dcsOpts());
        // Routers see the key through their watch within milliseconds; a connection they handed to
        // this primary just before must finish logging in before the shutdown, or it fails.
        await this.sleep(ROUTER_PAUSE_GRACE_MS);
        return;
      case 'await-caught-up':
        return this.awaitCaughtUp(action.candidate, op.signal);
      case 'name-failover-candidate':
        if (!(await this.dcs.compareAndSwap(this.key(KEYS.failover), JSON.stringify(action.request), action.modRevision, this.dcsOpts()))) {
          throw new WardenError('conflict', 'the failover key changed while naming the candidate');
        }
        log.info({ candidate: action.request.candidate }, `${action.request.kind}: candidate ${action.request.candidate ?? '?'} named`);
        return;
      case 'delete-failover':
        await this.dcs.delete(this.key(KEYS.failover), { timeoutMs: this.opts.dcsTimeoutMs(), expectModRevision: action.modRevision });
        return;
      case 'set-standby-names':
        await this.pg.updateSettings({ synchronousStandbyNames: action.value });
        this.standbyNames = action.set;
        log.info({ synchronousStandbyNames: action.value }, 'synchronous_standby_names set');
        return;
      case 'write-sync-key': {
        const text = JSON.stringify({ leader: this.opts.name, members: action.set.members, quorum: action.set.quorum });
        const ok = action.modRevision === undefined
          ? await this.dcs.create(this.key(KEYS.sync), text, this.dcsOpts())
          : await this.dcs.compareAndSwap(this.key(KEYS.sync), text, action.modRevision, this.dcsOpts());
        if (!ok) throw new WardenError('conflict', 'the sync key changed under us');
        log.info({ members: action.set.members, quorum: action.set.quorum }, 'sync key written');
        return;
      }
      case 'cancel-operation':
        // The shell carries this one out itself (it ends the operation this executor runs).
        throw new WardenError('internal', 'cancel-operation reached the executor');
      case 'update-parameters':
        await this.pg.updateSettings({ parameters: action.parameters });
        this.appliedParameters = JSON.stringify(action.parameters);
        log.info({}, 'parameters applied (reload)');
        return;
      default:
        assertNever(action);
    }
  }

  /**
   * initdb (or a restore of another cluster's backup, recovered to its target) → primary → roles →
   * config key → system identifier; undone (data moved aside, keys freed) on failure. Either way
   * the data directory must be empty first: one that holds anything is refused.
   */
  private async bootstrap(ctx: ExecutionContext, op: OperationOptions): Promise<void> {
    const log = this.opts.log;
    try {
      const before = await this.pg.inspectDataDir();
      if (before.kind === 'initialized' || before.kind === 'invalid') {
        throw new WardenError('data-dir-foreign', `refusing to bootstrap over an existing data directory (${this.pg.config.dataDir})`);
      }
      const restore = this.opts.restoreBootstrap;
      if (restore === undefined) {
        log.info({}, 'bootstrapping a new cluster with initdb');
        await this.pg.initdb(PG_TIMEOUTS.initdb, op);
      } else {
        log.info({}, "bootstrapping a new cluster from another cluster's backup (bootstrap.method pgbackrest)");
        const r = await restore(op);
        log.info(r.fields, r.message);
      }
      await this.pg.configure({ kind: 'primary' });
      this.configuredAs = { kind: 'primary' };
      await this.pg.start(PG_TIMEOUTS.start, op);
      await this.pg.createRoles(PG_TIMEOUTS.query);
      await this.dcs.create(this.key(KEYS.config), JSON.stringify(ctx.bootstrapConfig), this.dcsOpts());
      const after = await this.pg.inspectDataDir();
      if (after.systemIdentifier === undefined) throw new WardenError('internal', 'the bootstrap produced no system identifier');
      const init = await this.dcs.get(this.key(KEYS.initialize), this.dcsOpts());
      if (init === undefined || init.value !== '' ||
        !(await this.dcs.compareAndSwap(this.key(KEYS.initialize), after.systemIdentifier, init.modRevision, this.dcsOpts()))) {
        throw new WardenError('conflict', 'the initialize key changed during bootstrap');
      }
      log.info({ systemIdentifier: after.systemIdentifier }, 'cluster bootstrapped');
    } catch (e) {
      log.error({ err: String(e) }, 'bootstrap failed: stopping, moving the data aside and freeing the bootstrap lock');
      await this.pg.stop('immediate', PG_TIMEOUTS.fence).catch(() => undefined);
      const st = await this.pg.inspectDataDir().catch(() => undefined);
      if (st !== undefined && st.kind !== 'missing' && st.kind !== 'empty') await this.pg.moveDataDirAside().catch(() => undefined);
      const init = await this.dcs.get(this.key(KEYS.initialize), this.dcsOpts()).catch(() => undefined);
      if (init !== undefined && init.value === '') {
        await this.dcs.delete(this.key(KEYS.initialize), { timeoutMs: this.opts.dcsTimeoutMs(), expectModRevision: init.modRevision }).catch(() => undefined);
      }
      const leader = await this.dcs.get(this.key(KEYS.leader), this.dcsOpts()).catch(() => undefined);
      if (leader !== undefined && leader.value === this.opts.name) {
        await this.dcs.delete(this.key(KEYS.leader), { timeoutMs: this.opts.dcsTimeoutMs(), expectModRevision: leader.modRevision }).catch(() => undefined);
      }
      throw e;
    }
  }

  /**
   * Lossless switchover check: after the fast shutdown, the candidate must have received WAL past
   * this server's shutdown checkpoint (the walsenders stream everything before the shutdown ends).
   */
  private async awaitCaughtUp(candidate: { name: string; host: string; port: number }, signal?: AbortSignal): Promise<void> {
    const st = await this.pg.inspectDataDir();
    if (st.clusterState !== 'shut down' || st.checkpointLsn === undefined) {
      throw new WardenError('conflict', `PostgreSQL did not shut down cleanly (${st.clusterState ?? 'unknown state'}): cannot prove the candidate is caught up`);
    }
    const target = st.checkpointLsn;
    const clock = this.opts.clock;
    const deadline = clock.monotonicMs() + AWAIT_CAUGHT_UP_MS;
    let last = 'no answer';
    // Asked of the candidate's PostgreSQL itself (not its agent, whose status is a loop old).
    const direct = this.opts.candidateReceiveLsn === undefined ? new DirectReceiveLsn(this.pg.config.superuser) : undefined;
    const ask: CandidateReceiveLsn = this.opts.candidateReceiveLsn ?? ((c, t) => (direct as DirectReceiveLsn).ask(c, t));
    try {
      while (clock.monotonicMs() < deadline) {
        if (signal?.aborted === true) throw cancelledError('await-caught-up', signal);
        try {
          const lsn = await ask(candidate, 1000);
          if (lsn !== null) {
            last = lsn;
            if (parseLsn(lsn) > target) return;
          }
        } catch (e) {
          if (isWardenError(e, 'operation-cancelled')) throw e;
          last = describeError(e);
        }
        await this.sleep(20);
      }
    } finally {
      await direct?.close();
    }
    throw new WardenError('conflict', `${candidate.name} did not receive WAL past the shutdown checkpoint ${formatLsn(target)} within ${AWAIT_CAUGHT_UP_MS} ms (last seen ${last})`);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.opts.clock.setTimer(resolve, ms));
  }

  /** Promotes, then records the timeline switch in `history` (compare-and-swap append). */
  private async promote(reason: string, standbyNames: string | undefined, ctx: ExecutionContext): Promise<void> {
    const log = this.opts.log;
    if (standbyNames !== undefined) {
      // Strict synchronous mode: no commit may be acknowledged by the new primary alone.
      await this.pg.updateSettings({ synchronousStandbyNames: standbyNames });
      this.standbyNames = { members: [], quorum: 0 };
    }
    if (this.opts.hooks?.prePromote !== undefined) await this.opts.hooks.prePromote();
    log.warn({ reason }, 'promoting PostgreSQL');
    await this.pg.promote(PG_TIMEOUTS.promote);
    this.configuredAs = { kind: 'primary' };
    await this.pg.configure({ kind: 'primary' });
    this.opts.hooks?.onEvent?.('on_role_change', 'primary');
    const st = await this.pg.status(PG_TIMEOUTS.query);
    const entry: HistoryEntry = { timeline: st.timeline, lsn: formatLsn(st.walPosition), reason, timeMs: ctx.nowMs, leader: this.opts.name };
    log.warn({ timeline: st.timeline, lsn: entry.lsn }, 'promoted');
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.dcs.get(this.key(KEYS.history), this.dcsOpts());
      const list: HistoryEntry[] = cur === undefined ? [] : (JSON.parse(cur.value) as HistoryEntry[]);
      if (list.some((h) => h.timeline === entry.timeline)) return;
      const next = JSON.stringify([...list, entry]);
      const ok = cur === undefined
        ? await this.dcs.create(this.key(KEYS.history), next, this.dcsOpts())
        : await this.dcs.compareAndSwap(this.key(KEYS.history), next, cur.modRevision, this.dcsOpts());
      if (ok) return;
    }
    throw new WardenError('conflict', 'could not append to the history key after 5 attempts');
  }
}

/** The default CandidateReceiveLsn: one kept connection to the candidate as the superuser, reopened after an error. */
class DirectReceiveLsn {
  private client: pg.Client | undefined;

  constructor(private readonly superuser: { readonly username: string; readonly password: string }) {}

  async ask(candidate: { readonly host: string; readonly port: number }, timeoutMs: number): Promise<string | null> {
    try {
      if (this.client === undefined) {
        const { username, password } = this.superuser;
        const c = new pg.Client({ host: candidate.host, port: candidate.port, user: username, password, database: 'postgres', connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
        c.on('error', () => undefined);
        this.client = c;
        await c.connect();
      }
      const r = await this.client.query<{ lsn: string | null }>('SELECT pg_last_wal_receive_lsn()::text AS lsn');
      return r.rows[0]?.lsn ?? null;
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }
}
