import type { Clock, TimerHandle } from '../core/clock.js';
import { WardenError } from '../core/errors.js';
import { formatLsn, type Lsn } from '../core/lsn.js';
import type {
  DataDirState,
  Endpoint,
  OperationOptions,
  PostgresInstance,
  PostgresInstanceConfig,
  ProcessState,
  ReplicationRole,
  RuntimeSettings,
  ServerStatus,
} from './postgres.js';
import { cancelledError } from './progress.js';
import { SLOT_NAME } from './server-config.js';

/** How much clock time each operation of a FakePostgres takes, in ms (and how fast it copies). */
export interface FakePostgresTimings {
  readonly initdbMs: number;
  /** From spawning the postmaster until it accepts connections. */
  readonly startMs: number;
  readonly stopFastMs: number;
  readonly stopImmediateMs: number;
  readonly promoteMs: number;
  /** Fixed part of a base backup (checkpoint, connection); the copy adds dataBytes / copyBytesPerSecond. */
  readonly basebackupMs: number;
  readonly copyBytesPerSecond: number;
  readonly rewindMs: number;
  readonly recoverMs: number;
}

/** Fast enough for scenario tests, slow enough that every operation spans several loop steps. */
export const DEFAULT_FAKE_TIMINGS: FakePostgresTimings = {
  initdbMs: 300,
  startMs: 200,
  stopFastMs: 100,
  stopImmediateMs: 20,
  promoteMs: 100,
  basebackupMs: 200,
  copyBytesPerSecond: 256 * 1024 * 1024,
  rewindMs: 300,
  recoverMs: 200,
};

/** Bytes of a fresh cluster (initdb). */
const INITIAL_DATA_BYTES = 32 * 1024 * 1024;
/** The first WAL position of a fresh cluster, near where initdb leaves a real one. */
const INITIAL_WAL_POSITION: Lsn = 0x1_6f_a0_00n;
/** WAL a shutdown checkpoint, an end-of-recovery record or a CHECKPOINT writes. */
const CHECKPOINT_RECORD_BYTES = 0x28n;
/** Parameters that need a restart (context 'postmaster'); the rest apply on reload. */
const RESTART_PARAMETERS: ReadonlySet<string> = new Set([
  'shared_buffers',
  'max_connections',
  'max_wal_senders',
  'max_replication_slots',
  'max_worker_processes',
  'wal_level',
  'port',
  'listen_addresses',
  'archive_mode',
  'hot_standby',
  'wal_log_hints',
  'shared_preload_libraries',
]);
const PROGRESS_INTERVAL_MS = 1_000;

/** A FakePostgres as a test sees it at one instant (FakePostgres.facts()). */
export interface FakePostgresFacts {
  readonly process: ProcessState['kind'];
  /** The postmaster accepts connections (started, not stopping). */
  readonly accepting: boolean;
  /** A primary that accepts connections: it takes writes. */
  readonly writable: boolean;
  readonly dataDir: DataDirState['kind'];
  readonly systemIdentifier?: string;
  readonly timeline?: number;
  readonly walPosition?: Lsn;
  readonly clusterState?: string;
  /** The member whose WAL this standby streams now. */
  readonly streamingFrom?: string;
}

/** One timeline switch of a cluster's history: `timeline` began at `forkLsn` (pg's NNNNNNNN.history). */
interface TimelineSwitch {
  readonly timeline: number;
  readonly forkLsn: Lsn;
}

/** What a data directory holds when it holds a cluster (what pg_control, pg_wal and the catalogs would say). */
interface ClusterData {
  systemIdentifier: string;
  timeline: number;
  history: TimelineSwitch[];
  walPosition: Lsn;
  /** Position of the latest checkpoint record; after a clean shutdown, the shutdown checkpoint. */
  checkpointLsn: Lsn;
  clusterState: string;
  standbySignal: boolean;
  rolesCreated: boolean;
  dataBytes: number;
  slots: Set<string>;
  /** The WAL position at which a receiver last got WAL (undefined: never, as for pg_last_wal_receive_lsn). */
  receivedLsn: Lsn | undefined;
}

type DataDir =
  | { readonly kind: 'missing' }
  | { readonly kind: 'empty' }
  /** Files that are not a cluster: a foreign directory, or a copy in progress. */
  | { readonly kind: 'invalid' }
  | { readonly kind: 'initialized'; readonly cluster: ClusterData };

interface Postmaster {
  readonly pid: number;
  ready: boolean;
  inRecovery: boolean;
  /** Frozen at spawn (freezeStarts): it never accepts connections until it is stopped. */
  frozen: boolean;
  stopping: 'fast' | 'immediate' | undefined;
  /** JSON of the restart-only parameters it was started with (pending_restart when they change). */
  startedWith: string;
  readonly timers: TimerHandle[];
}

/** Why a long operation ends early. */
interface Guard {
  readonly what: string;
  readonly deadlineMs: number;
  readonly signal: AbortSignal | undefined;
  readonly onTimeout: () => WardenError;
}

/**
 * The fakes that can reach each other by endpoint, like servers on one network: a base backup or a
 * rewind copies from the instance at the source endpoint, and a replica streams from the instance
 * its role names as upstream. WAL moves at once: a streaming replica's position is its upstream's.
 */
export class FakePgNetwork {
  private readonly byEndpoint = new Map<string, FakePostgres>();
  private nextPid = 40_000;
  private nextSystem = 7_300_000_000_000_000_000n;

  /** Registers `pg` at its listen endpoint (the constructor of FakePostgres does this). */
  register(pg: FakePostgres): void {
    const key = endpointKey(pg.config.listen);
    if (this.byEndpoint.has(key)) throw new WardenError('port-in-use', `fake network: ${key} is already taken by ${this.byEndpoint.get(key)?.config.name ?? '?'}`);
    this.byEndpoint.set(key, pg);
  }

  /** The instance listening at `endpoint`, if any. */
  at(endpoint: Endpoint): FakePostgres | undefined {
    return this.byEndpoint.get(endpointKey(endpoint));
  }

  /** Every registered instance. */
  instances(): FakePostgres[] {
    return [...this.byEndpoint.values()];
  }

  /** A process id unique on this network. */
  pid(): number {
    return this.nextPid++;
  }

  /** A system identifier unique on this network, 19 digits like initdb's. */
  systemIdentifier(): string {
    return String(this.nextSystem++);
  }

  /** Lets every running standby connect to its upstream and catch up, until nothing changes (cascades). */
  propagate(): void {
    for (let pass = 0; pass < 10; pass++) {
      let changed = false;
      for (const pg of this.byEndpoint.values()) changed = pg.followUpstream() || changed;
      if (!changed) return;
    }
  }
}

/**
 * An in-memory PostgreSQL behind the same port as LocalPostgres (`PostgresInstance`), run on an
 * injected Clock so that a FakeClock drives every operation; it passes the same contract suite
 * (src/postgres/postgres-contract.ts). Faults for tests: crash(), freezeStarts(), failNextStart(),
 * hangStatus(), writeWal(). Long operations honour `OperationOptions` as the port documents.
 */
export class FakePostgres implements PostgresInstance {
  readonly config: PostgresInstanceConfig;
  private readonly network: FakePgNetwork;
  private readonly clock: Clock;
  private readonly timings: FakePostgresTimings;
  private dir: DataDir = { kind: 'missing' };
  private pm: Postmaster | undefined;
  /** Set when the postmaster died without being asked to ('crashed'), cleared by the next stop or start. */
  private exited: { exitCode: number | null; signal: string | null } | undefined;
  private role: ReplicationRole | undefined;
  private runtime: RuntimeSettings = {};
  /** The upstream this standby streams from now (its WAL receiver), if it streams. */
  private receiver: { readonly from: FakePostgres } | undefined;
  private readonly movedAside: { path: string; dir: DataDir }[] = [];
  private readonly listeners = new Set<() => void>();
  private frozenStarts = false;
  private failingStarts: { message: string; left: number } | undefined;
  /** The log line of the last start that failed (failNextStart), for the start's error. */
  private lastStartFailure: string | undefined;
  private statusHung = false;
  private inFlight = 0;

  constructor(config: PostgresInstanceConfig, opts: { network: FakePgNetwork; clock: Clock; timings?: Partial<FakePostgresTimings> }) {
    this.config = config;
    this.network = opts.network;
    this.clock = opts.clock;
    this.timings = { ...DEFAULT_FAKE_TIMINGS, ...opts.timings };
    this.network.register(this);
  }

  // ---- faults and test controls ----------------------------------------------------------------

  /** The postmaster dies (kill -9): processState says 'crashed', the data stays as a crash leaves it. */
  crash(): void {
    const pm = this.pm;
    if (pm === undefined) return;
    this.endPostmaster(pm);
    this.exited = { exitCode: null, signal: 'SIGKILL' };
    this.changed();
  }

  /** Every start from now on spawns a postmaster that never accepts connections (until it is stopped or unfrozen). */
  freezeStarts(): void {
    this.frozenStarts = true;
  }

  /** Starts behave again; a frozen postmaster that still runs goes on starting. */
  unfreezeStarts(): void {
    this.frozenStarts = false;
    const pm = this.pm;
    if (pm !== undefined && pm.frozen && pm.stopping === undefined) {
      pm.frozen = false;
      pm.timers.push(this.clock.setTimer(() => this.becomeReady(pm), this.timings.startMs));
    }
  }

  /** The next `times` starts fail: the postmaster exits during start with `message` in its log. */
  failNextStart(message: string, times = 1): void {
    this.failingStarts = times > 0 ? { message, left: times } : undefined;
  }

  /** While on, the server takes connections but never answers a query (status, promote, slots): each call runs into its timeout. */
  hangStatus(on = true): void {
    this.statusHung = on;
  }

  /** Writes `bytes` of WAL on a running primary (streaming standbys receive it at once). */
  writeWal(bytes: number): Lsn {
    const pm = this.pm;
    const c = this.cluster();
    if (pm === undefined || !pm.ready || pm.inRecovery || c === undefined) {
      throw new WardenError('postgres-command-failed', `${this.config.name}: cannot write WAL: not a running primary`);
    }
    c.walPosition += BigInt(Math.max(0, Math.floor(bytes)));
    c.dataBytes += Math.max(0, Math.floor(bytes));
    this.changed();
    return c.walPosition;
  }

  /** Grows the database by `bytes` (a base backup of it takes longer), writing as much WAL. */
  growDatabase(bytes: number): void {
    this.writeWal(bytes);
  }

  /** Puts files into a missing data directory: 'empty' makes the directory, 'foreign' leaves files that are not a cluster. */
  plantDataDir(kind: 'empty' | 'foreign'): void {
    if (this.dir.kind !== 'missing' && this.dir.kind !== 'empty') {
      throw new WardenError('internal', `${this.config.name}: plantDataDir needs a missing or empty data dir, it is ${this.dir.kind}`);
    }
    this.dir = kind === 'empty' ? { kind: 'empty' } : { kind: 'invalid' };
  }

  /** What a test may assert on at any instant, read without a query (and so without fake time passing). */
  facts(): FakePostgresFacts {
    const pm = this.pm;
    const c = this.cluster();
    const state = pm !== undefined ? 'running' : this.exited !== undefined ? 'crashed' : 'stopped';
    return {
      process: state,
      accepting: pm !== undefined && pm.ready && pm.stopping === undefined,
      writable: pm !== undefined && pm.ready && pm.stopping === undefined && !pm.inRecovery,
      dataDir: this.dir.kind,
      ...(c === undefined ? {} : { systemIdentifier: c.systemIdentifier, timeline: c.timeline, walPosition: c.walPosition, clusterState: c.clusterState }),
      ...(this.receiver === undefined ? {} : { streamingFrom: this.receiver.from.config.name }),
    };
  }

  /** Long operations (initdb, basebackup, start, stop, promote, recovery, rewind) still running. */
  operationsInFlight(): number {
    return this.inFlight;
  }

  // ---- the port ----------------------------------------------------------------------------------

  async inspectDataDir(): Promise<DataDirState> {
    const d = this.dir;
    if (d.kind !== 'initialized') return { kind: d.kind };
    const c = d.cluster;
    return { kind: 'initialized', systemIdentifier: c.systemIdentifier, clusterState: c.clusterState, timeline: c.timeline, checkpointLsn: c.checkpointLsn };
  }

  async initdb(timeoutMs: number, opts: OperationOptions = {}): Promise<void> {
    const g = this.guard('initdb', timeoutMs, opts.signal, () => this.commandTimedOut('initdb', timeoutMs));
    this.refuseUnlessEmpty('initdb');
    const before = this.dir;
    await this.operation(async () => {
      try {
        this.dir = { kind: 'invalid' };
        await this.delay(this.timings.initdbMs, g);
      } catch (e) {
        this.dir = before;
        throw e;
      }
    });
    this.dir = {
      kind: 'initialized',
      cluster: {
        systemIdentifier: this.network.systemIdentifier(),
        timeline: 1,
        history: [],
        walPosition: INITIAL_WAL_POSITION,
        checkpointLsn: INITIAL_WAL_POSITION - CHECKPOINT_RECORD_BYTES,
        clusterState: 'shut down',
        standbySignal: false,
        rolesCreated: false,
        dataBytes: INITIAL_DATA_BYTES,
        slots: new Set(),
        receivedLsn: undefined,
      },
    };
  }

  async createRoles(timeoutMs: number): Promise<void> {
    const c = await this.sqlSession('createRoles', timeoutMs);
    if (this.pm?.inRecovery !== false) throw new WardenError('postgres-command-failed', `createRoles: ${this.config.name} is in recovery, not a primary`);
    c.rolesCreated = true;
  }

  async basebackup(source: Endpoint, timeoutMs: number, opts: OperationOptions = {}): Promise<void> {
    const what = 'pg_basebackup';
    const g = this.guard(what, timeoutMs, opts.signal, () => this.commandTimedOut(what, timeoutMs));
    this.refuseUnlessEmpty(what);
    const before = this.dir;
    await this.operation(async () => {
      try {
        const from = this.reachableSource(source, what);
        if (!from.cluster.rolesCreated) throw this.commandFailed(what, `FATAL: password authentication failed for user "${this.config.replication.username}"`);
        this.dir = { kind: 'invalid' };
        const totalBytes = from.cluster.dataBytes;
        const copyMs = this.timings.basebackupMs + Math.ceil((totalBytes / this.timings.copyBytesPerSecond) * 1000);
        // Like pg_basebackup --progress: a first report at once, then about one a second.
        for (let doneMs = 0; ; ) {
          opts.onProgress?.({ doneBytes: Math.floor((totalBytes * doneMs) / copyMs), totalBytes });
          if (doneMs >= copyMs) break;
          const step = Math.min(PROGRESS_INTERVAL_MS, copyMs - doneMs);
          await this.delay(step, g);
          doneMs += step;
          // The source must stay up for the whole copy, as the replication connection must.
          this.reachableSource(source, what);
        }
        const src = this.reachableSource(source, what).cluster;
        const inRecovery = this.network.at(source)?.pm?.inRecovery === true;
        this.dir = {
          kind: 'initialized',
          cluster: {
            systemIdentifier: src.systemIdentifier,
            timeline: src.timeline,
            history: [...src.history],
            walPosition: src.walPosition,
            checkpointLsn: src.walPosition,
            // pg_control is copied from a running server, as it says while running.
            clusterState: inRecovery ? 'in archive recovery' : 'in production',
            standbySignal: false,
            rolesCreated: src.rolesCreated,
            dataBytes: src.dataBytes,
            // pg_basebackup leaves pg_replslot out of the copy.
            slots: new Set(),
            receivedLsn: undefined,
          },
        };
      } catch (e) {
        this.dir = before;
        throw e;
      }
    });
  }

  async configure(role: ReplicationRole): Promise<void> {
    const c = this.cluster();
    if (c === undefined) throw new WardenError('postgres-command-failed', `cannot configure ${this.config.dataDir}: not an initialized data dir`);
    if (role.kind === 'replica' && role.slotName !== undefined && !SLOT_NAME.test(role.slotName)) {
      throw new WardenError('config-invalid', `invalid replication slot name ${JSON.stringify(role.slotName)}: use 1-63 of [a-z0-9_]`);
    }
    this.role = role;
    c.standbySignal = role.kind === 'replica';
    // A running server reloads: primary_conninfo and slot take effect now, standby.signal at the next start.
    this.changed();
  }

  async updateSettings(settings: RuntimeSettings): Promise<void> {
    this.runtime = { ...this.runtime, ...settings };
    this.changed();
  }

  async start(timeoutMs: number, opts: OperationOptions = {}): Promise<void> {
    const signal = opts.signal;
    if (signal?.aborted === true) throw cancelledError('start', signal);
    const g = this.guard('start', timeoutMs, signal, () => {
      const pid = this.pm?.pid;
      return new WardenError('postgres-unavailable', `postgres (pid ${pid ?? '?'}) did not accept connections before the start deadline; it is still running`, {
        retryable: true,
        details: { pid },
      });
    });
    let pm = this.pm;
    if (pm === undefined) {
      const c = this.cluster();
      if (c === undefined) throw new WardenError('postgres-command-failed', `cannot start ${this.config.name}: ${this.config.dataDir} is not an initialized data dir`);
      pm = this.spawn(c);
    }
    const mine = pm;
    await this.operation(async () => {
      try {
        await this.waitFor(g, () => {
          if (this.pm !== mine) {
            const how = this.exited;
            const failure = this.lastStartFailure;
            return new WardenError(
              'postgres-command-failed',
              `postgres exited during start (code ${how?.exitCode ?? 'none'}, signal ${how?.signal ?? 'none'}); log: ${failure ?? 'the postmaster was stopped'}`,
            );
          }
          return mine.ready && mine.stopping === undefined ? true : undefined;
        });
      } catch (e) {
        // A cancelled start leaves no postmaster behind (the port's contract): immediate stop.
        if (e instanceof WardenError && e.code === 'operation-cancelled' && this.pm === mine) {
          this.endPostmaster(mine);
          this.changed();
        }
        throw e;
      }
    });
  }

  async stop(mode: 'fast' | 'immediate', timeoutMs: number, opts: OperationOptions = {}): Promise<void> {
    const pm = this.pm;
    this.exited = undefined;
    if (pm === undefined) return;
    if (pm.stopping === undefined || (pm.stopping === 'fast' && mode === 'immediate')) {
      pm.stopping = mode;
      // A frozen postmaster acts on an immediate stop (SIGCONT follows SIGQUIT) but never on a fast one.
      if (mode === 'immediate' || !pm.frozen) {
        pm.timers.push(this.clock.setTimer(() => this.finishShutdown(pm, mode), mode === 'fast' ? this.timings.stopFastMs : this.timings.stopImmediateMs));
      }
      this.changed();
    }
    const g = this.guard(`stop (${mode}) of postmaster ${pm.pid}`, timeoutMs, opts.signal, () =>
      new WardenError('postgres-command-failed', `postmaster ${pm.pid} did not stop (${mode}) within ${timeoutMs} ms`, { retryable: true, details: { pid: pm.pid, mode } }),
    );
    // Aborting only stops the waiting: the shutdown that was asked for goes on.
    await this.operation(() => this.waitFor(g, () => (this.pm !== pm ? true : undefined)));
  }

  async processState(): Promise<ProcessState> {
    if (this.pm !== undefined) return { kind: 'running', pid: this.pm.pid };
    if (this.exited !== undefined) return { kind: 'crashed', exitCode: this.exited.exitCode, signal: this.exited.signal };
    return { kind: 'stopped' };
  }

  async promote(timeoutMs: number): Promise<void> {
    await this.sqlSession('promote', timeoutMs);
    const pm = this.pm;
    if (pm === undefined || !pm.inRecovery) return;
    const g = this.guard('promote', timeoutMs, undefined, () =>
      new WardenError('postgres-command-failed', `promote: ${this.config.name} still in recovery after ${timeoutMs} ms`, { retryable: true }),
    );
    await this.operation(async () => {
      await this.delay(this.timings.promoteMs, g);
      const c = this.cluster();
      if (this.pm !== pm || pm.stopping !== undefined || c === undefined) throw new WardenError('postgres-unavailable', `promote on ${this.endpointText()}: the server went away`, { retryable: true });
      // A new timeline, one past every timeline this cluster knows, begins where replay ended.
      const timeline = Math.max(c.timeline, ...c.history.map((h) => h.timeline)) + 1;
      c.history = [...c.history, { timeline, forkLsn: c.walPosition }];
      c.timeline = timeline;
      c.walPosition += CHECKPOINT_RECORD_BYTES;
      c.checkpointLsn = c.walPosition;
      c.clusterState = 'in production';
      c.standbySignal = false;
      pm.inRecovery = false;
      this.receiver = undefined;
      this.changed();
    });
  }

  async status(timeoutMs: number): Promise<ServerStatus> {
    const c = await this.sqlSession('status', timeoutMs);
    const pm = this.pm;
    if (pm === undefined) throw this.unavailable('status');
    const pendingRestart = pm.startedWith !== this.restartParameters();
    if (!pm.inRecovery) {
      const names = parseStandbyNames(this.synchronousStandbyNames());
      const streamers = this.network.instances().filter((r) => r.receiver?.from === this).sort((a, b) => a.config.name.localeCompare(b.config.name));
      const syncOrder = streamers.map((r) => r.config.name).filter((n) => names.matches(n)).sort((a, b) => names.rank(a) - names.rank(b));
      return {
        inRecovery: false,
        timeline: c.timeline,
        walPosition: c.walPosition,
        replicas: streamers.map((r) => ({
          applicationName: r.config.name,
          flushLsn: r.cluster()?.walPosition ?? 0n,
          state: 'streaming',
          syncState: !names.matches(r.config.name) ? 'async' : names.quorum ? 'quorum' : syncOrder.indexOf(r.config.name) < names.count ? 'sync' : 'potential',
        })),
        systemIdentifier: c.systemIdentifier,
        pendingRestart,
      };
    }
    const streaming = this.receiver !== undefined;
    return {
      inRecovery: true,
      timeline: c.timeline,
      walPosition: c.walPosition,
      ...(c.receivedLsn === undefined ? {} : { receiveLsn: c.receivedLsn }),
      replayLsn: c.walPosition,
      streaming,
      ...(streaming ? { receivedTimeline: c.timeline } : {}),
      systemIdentifier: c.systemIdentifier,
      pendingRestart,
    };
  }

  async syncSlots(names: readonly string[], timeoutMs: number): Promise<void> {
    for (const n of names) {
      if (!SLOT_NAME.test(n)) throw new WardenError('config-invalid', `invalid replication slot name ${JSON.stringify(n)}: use 1-63 of [a-z0-9_]`);
    }
    const c = await this.sqlSession('syncSlots', timeoutMs);
    for (const n of names) c.slots.add(n);
    // Slots are only dropped on a primary; a standby keeps what it has until it is promoted.
    if (this.pm?.inRecovery === false) {
      const active = this.activeSlots();
      for (const n of [...c.slots]) if (!names.includes(n) && !active.has(n)) c.slots.delete(n);
    }
    this.changed();
  }

  async recoverCrashed(timeoutMs: number, opts: OperationOptions = {}): Promise<void> {
    const dataDir = this.config.dataDir;
    if (this.pm !== undefined) throw new WardenError('postgres-command-failed', `cannot run crash recovery on ${dataDir}: postmaster ${this.pm.pid} is running`);
    const c = this.cluster();
    if (c === undefined) throw new WardenError('postgres-command-failed', `cannot run crash recovery on ${dataDir}: data dir is ${this.dir.kind}`);
    if (isCleanShutdown(c.clusterState)) return;
    const g = this.guard('postgres --single', timeoutMs, opts.signal, () => this.commandTimedOut('postgres --single', timeoutMs));
    await this.operation(() => this.delay(this.timings.recoverMs, g));
    // Single-user mode refuses standby mode: standby.signal goes, configure() writes it again.
    c.standbySignal = false;
    c.walPosition += CHECKPOINT_RECORD_BYTES;
    c.checkpointLsn = c.walPosition;
    c.clusterState = 'shut down';
  }

  async rewind(source: Endpoint, timeoutMs: number, opts: OperationOptions = {}): Promise<string> {
    const what = 'pg_rewind';
    if (this.pm !== undefined) throw new WardenError('postgres-command-failed', `cannot pg_rewind ${this.config.dataDir}: postmaster ${this.pm.pid} is running`);
    const target = this.cluster();
    if (target === undefined) throw this.commandFailed(what, `fatal: ${this.config.dataDir} is not a data directory`);
    const g = this.guard(what, timeoutMs, opts.signal, () => this.commandTimedOut(what, timeoutMs));
    return this.operation(async () => {
      const from = this.reachableSource(source, 'CHECKPOINT before pg_rewind');
      const src = from.cluster;
      if (src.systemIdentifier !== target.systemIdentifier) throw this.commandFailed(what, 'fatal: source and target clusters are from different systems');
      if (!isCleanShutdown(target.clusterState)) {
        // pg_rewind (13+) runs crash recovery on the target itself first, in single-user mode.
        await this.delay(this.timings.recoverMs, g);
        target.standbySignal = false;
        target.clusterState = 'shut down';
      }
      const fork = divergence(target, src);
      if (fork === undefined) return `${what}: source and target cluster are on the same timeline\n${what}: no rewind required\n`;
      const totalBytes = Math.min(target.dataBytes, 64 * 1024 * 1024);
      opts.onProgress?.({ doneBytes: 0, totalBytes });
      await this.delay(this.timings.rewindMs, g);
      opts.onProgress?.({ doneBytes: totalBytes, totalBytes });
      const now = this.reachableSource(source, what).cluster;
      // The target now holds the source's blocks and must replay the source's WAL from the fork on.
      target.timeline = now.timeline;
      target.history = [...now.history];
      target.walPosition = now.walPosition;
      target.checkpointLsn = fork.lsn;
      target.clusterState = 'in archive recovery';
      target.dataBytes = now.dataBytes;
      target.rolesCreated = now.rolesCreated;
      target.slots = new Set();
      return `${what}: servers diverged at WAL location ${formatLsn(fork.lsn)} on timeline ${fork.timeline}\n${what}: Done!\n`;
    });
  }

  async moveDataDirAside(): Promise<string> {
    const { dataDir } = this.config;
    if (this.pm !== undefined) throw new WardenError('postgres-command-failed', `cannot move ${dataDir} aside: postmaster ${this.pm.pid} is running`);
    if (this.dir.kind === 'missing') throw new WardenError('not-found', `cannot move ${dataDir} aside: it does not exist`);
    const base = `${dataDir}.moved-${new Date(this.clock.nowMs()).toISOString().replace(/:/g, '')}`;
    let path = base;
    for (let i = 2; this.movedAside.some((m) => m.path === path); i++) path = `${base}-${i}`;
    // Kept, never deleted (invariant 5 in docs/architecture.md).
    this.movedAside.push({ path, dir: this.dir });
    this.dir = { kind: 'missing' };
    return path;
  }

  /** True when the directory moved aside to `path` holds a cluster (tests: nothing was deleted). */
  movedAsideHoldsCluster(path: string): boolean {
    return this.movedAside.find((m) => m.path === path)?.dir.kind === 'initialized';
  }

  async listMovedAside(): Promise<string[]> {
    return this.movedAside.map((m) => m.path).sort();
  }

  /**
   * The few statements Warden and its tests send: SELECT 1, pg_is_in_recovery(), the current /
   * received WAL position, CHECKPOINT, pg_switch_wal() and the slot list. Anything else fails with
   * 'unsupported in the fake', so a new statement shows up as a test failure, not a wrong answer.
   */
  async query(sql: string, params: readonly unknown[], timeoutMs: number): Promise<readonly Record<string, unknown>[]> {
    const c = await this.sqlSession('query', timeoutMs);
    const inRecovery = this.pm?.inRecovery === true;
    const text = sql.trim().replace(/\s+/g, ' ').replace(/;$/, '');
    const alias = /\bAS ("?)(\w+)\1\s*$/i.exec(text)?.[2];
    const row = (fallback: string, value: unknown): Record<string, unknown>[] => [{ [alias ?? fallback]: value }];
    if (/^SELECT 1$/i.test(text)) return [{ '?column?': 1 }];
    if (/^SELECT pg_is_in_recovery\(\)( AS \w+)?$/i.test(text)) return row('pg_is_in_recovery', inRecovery);
    if (/^SELECT pg_current_wal_(flush_)?lsn\(\)(::text)?( AS \w+)?$/i.test(text)) {
      if (inRecovery) throw this.sqlError('recovery is in progress', '55000');
      return row('pg_current_wal_lsn', formatLsn(c.walPosition));
    }
    if (/^SELECT pg_last_wal_(receive|replay)_lsn\(\)(::text)?( AS \w+)?$/i.test(text)) {
      const lsn = !inRecovery ? undefined : /receive/i.test(text) ? c.receivedLsn : c.walPosition;
      return row('pg_last_wal_receive_lsn', lsn === undefined ? null : formatLsn(lsn));
    }
    if (/^CHECKPOINT$/i.test(text)) {
      c.checkpointLsn = c.walPosition;
      return [];
    }
    if (/^SELECT pg_switch_wal\(\)(::text)?( AS \w+)?$/i.test(text)) {
      if (inRecovery) throw this.sqlError('recovery is in progress', '55000');
      const before = c.walPosition;
      this.writeWal(Number(16n * 1024n * 1024n - (c.walPosition % (16n * 1024n * 1024n))));
      return row('pg_switch_wal', formatLsn(before));
    }
    if (/^SELECT slot_name(::text)?( AS slot_name)?, active FROM pg_replication_slots\b/i.test(text)) {
      const active = this.activeSlots();
      return [...c.slots].sort().map((s) => ({ slot_name: s, active: active.has(s) }));
    }
    throw new WardenError('postgres-command-failed', `query: unsupported in the fake: ${JSON.stringify(text)}${params.length > 0 ? ` with ${params.length} parameter(s)` : ''}`);
  }

  // ---- replication -------------------------------------------------------------------------------

  /**
   * Called by the network: a running standby connects to the upstream its role names (same system,
   * a timeline it can follow, its slot present) and takes its WAL. True when anything changed.
   */
  followUpstream(): boolean {
    const pm = this.pm;
    const c = this.cluster();
    const before = this.receiver?.from;
    const beforePos = c?.walPosition;
    const beforeTl = c?.timeline;
    this.receiver = undefined;
    if (pm !== undefined && pm.ready && pm.inRecovery && c !== undefined && this.role?.kind === 'replica' && this.role.upstream !== undefined) {
      const up = this.network.at(this.role.upstream);
      const src = up?.cluster();
      const upRunning = up !== undefined && up !== this && up.pm !== undefined && up.pm.ready && up.pm.stopping !== 'immediate';
      const slotOk = this.role.slotName === undefined || src?.slots.has(this.role.slotName) === true;
      if (upRunning && src !== undefined && slotOk && src.systemIdentifier === c.systemIdentifier && canFollow(c, src)) {
        this.receiver = { from: up };
        if (src.timeline !== c.timeline) {
          c.timeline = src.timeline;
          c.history = [...src.history];
        }
        if (src.walPosition > c.walPosition) c.walPosition = src.walPosition;
        c.receivedLsn = c.walPosition;
      }
    }
    return before !== this.receiver?.from || beforePos !== c?.walPosition || beforeTl !== c?.timeline;
  }

  private activeSlots(): Set<string> {
    const active = new Set<string>();
    for (const r of this.network.instances()) {
      if (r.receiver?.from === this && r.role?.kind === 'replica' && r.role.slotName !== undefined) active.add(r.role.slotName);
    }
    return active;
  }

  private synchronousStandbyNames(): string {
    // warden.conf carries synchronous_standby_names for a primary role only.
    return this.role?.kind === 'primary' ? (this.runtime.synchronousStandbyNames ?? '') : '';
  }

  private restartParameters(): string {
    const params = this.runtime.parameters ?? this.config.parameters;
    return JSON.stringify(Object.entries(params).filter(([k]) => RESTART_PARAMETERS.has(k)).sort(([a], [b]) => a.localeCompare(b)));
  }

  // ---- processes ---------------------------------------------------------------------------------

  private spawn(c: ClusterData): Postmaster {
    this.exited = undefined;
    this.lastStartFailure = undefined;
    const pm: Postmaster = {
      pid: this.network.pid(),
      ready: false,
      inRecovery: c.standbySignal,
      frozen: this.frozenStarts,
      stopping: undefined,
      startedWith: this.restartParameters(),
      timers: [],
    };
    this.pm = pm;
    const failing = this.failingStarts;
    if (failing !== undefined) {
      failing.left--;
      if (failing.left <= 0) this.failingStarts = undefined;
      pm.timers.push(
        this.clock.setTimer(() => {
          if (this.pm !== pm) return;
          this.lastStartFailure = failing.message;
          this.endPostmaster(pm);
          this.exited = { exitCode: 1, signal: null };
          this.changed();
        }, Math.ceil(this.timings.startMs / 2)),
      );
    } else if (!pm.frozen) {
      pm.timers.push(this.clock.setTimer(() => this.becomeReady(pm), this.timings.startMs));
    }
    this.changed();
    return pm;
  }

  private becomeReady(pm: Postmaster): void {
    const c = this.cluster();
    if (this.pm !== pm || pm.stopping !== undefined || c === undefined) return;
    pm.ready = true;
    c.clusterState = pm.inRecovery ? 'in archive recovery' : 'in production';
    this.changed();
  }

  private finishShutdown(pm: Postmaster, mode: 'fast' | 'immediate'): void {
    if (this.pm !== pm) return;
    const c = this.cluster();
    if (mode === 'fast' && pm.ready && c !== undefined) {
      // The shutdown checkpoint; walsenders send it to the standbys before the primary goes. As in
      // pg_controldata, the checkpoint location is where its record starts: a standby that has it
      // has received past that location (what a switchover checks).
      if (!pm.inRecovery) {
        c.checkpointLsn = c.walPosition;
        c.walPosition += CHECKPOINT_RECORD_BYTES;
      } else {
        c.checkpointLsn = c.walPosition;
      }
      this.changed();
      c.clusterState = pm.inRecovery ? 'shut down in recovery' : 'shut down';
    }
    this.endPostmaster(pm);
    this.changed();
  }

  private endPostmaster(pm: Postmaster): void {
    for (const t of pm.timers) this.clock.clearTimer(t);
    if (this.pm === pm) this.pm = undefined;
    this.receiver = undefined;
  }

  // ---- helpers -----------------------------------------------------------------------------------

  private cluster(): ClusterData | undefined {
    return this.dir.kind === 'initialized' ? this.dir.cluster : undefined;
  }

  /** Something changed: standbys re-follow, and waiting operations check their condition. */
  private changed(): void {
    this.network.propagate();
    for (const l of [...this.listeners]) l();
  }

  private async operation<T>(fn: () => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await fn();
    } finally {
      this.inFlight--;
    }
  }

  private guard(what: string, timeoutMs: number, signal: AbortSignal | undefined, onTimeout: () => WardenError): Guard {
    return { what, deadlineMs: this.clock.monotonicMs() + timeoutMs, signal, onTimeout };
  }

  /** Waits `ms` of clock time, or fails at the guard's deadline or abort. */
  private delay(ms: number, g: Guard): Promise<void> {
    const at = this.clock.monotonicMs() + ms;
    return this.waitFor(g, () => (this.clock.monotonicMs() >= at ? true : undefined), ms);
  }

  /**
   * Resolves when `check` says true, rejects with the error it returns, or with the guard's timeout
   * or cancellation; `check` runs on every change of this fake and when `wakeInMs` passes.
   */
  private waitFor(g: Guard, check: () => true | WardenError | undefined, wakeInMs?: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timers: TimerHandle[] = [];
      const settle = (err: WardenError | undefined): void => {
        for (const t of timers) this.clock.clearTimer(t);
        this.listeners.delete(evaluate);
        g.signal?.removeEventListener('abort', onAbort);
        if (err === undefined) resolve();
        else reject(err);
      };
      const evaluate = (): void => {
        const r = check();
        if (r === true) settle(undefined);
        else if (r !== undefined) settle(r);
        else if (this.clock.monotonicMs() >= g.deadlineMs) settle(g.onTimeout());
      };
      const onAbort = (): void => settle(cancelledError(g.what, g.signal as AbortSignal));
      if (g.signal?.aborted === true) return onAbort();
      const first = check();
      if (first === true) return resolve();
      if (first !== undefined) return reject(first);
      this.listeners.add(evaluate);
      g.signal?.addEventListener('abort', onAbort, { once: true });
      const now = this.clock.monotonicMs();
      timers.push(this.clock.setTimer(evaluate, Math.max(0, g.deadlineMs - now)));
      if (wakeInMs !== undefined && now + wakeInMs < g.deadlineMs) timers.push(this.clock.setTimer(evaluate, wakeInMs));
    });
  }

  /** A session for SQL: the server must run and accept connections; a hung one answers nothing until the timeout. */
  private async sqlSession(what: string, timeoutMs: number): Promise<ClusterData> {
    if (this.statusHung && this.pm !== undefined) {
      const g = this.guard(what, timeoutMs, undefined, () => new WardenError('postgres-unavailable', `${what} on ${this.endpointText()}: no answer within ${timeoutMs} ms`, { retryable: true }));
      await this.waitFor(g, () => (this.pm === undefined ? this.unavailable(what) : undefined));
    }
    const pm = this.pm;
    const c = this.cluster();
    if (pm === undefined || !pm.ready || pm.stopping !== undefined || c === undefined) throw this.unavailable(what);
    return c;
  }

  private reachableSource(source: Endpoint, what: string): { pg: FakePostgres; cluster: ClusterData } {
    const pg = this.network.at(source);
    const cluster = pg?.cluster();
    if (pg === undefined || pg === this || pg.pm === undefined || !pg.pm.ready || pg.pm.stopping !== undefined || cluster === undefined) {
      throw this.commandFailed(what, `error: connection to server at "${source.host}", port ${source.port} failed: Connection refused`);
    }
    return { pg, cluster };
  }

  private refuseUnlessEmpty(what: string): void {
    const kind = this.dir.kind;
    if (kind !== 'missing' && kind !== 'empty') {
      throw new WardenError('data-dir-foreign', `refusing to ${what} into ${this.config.dataDir}: it is not empty (${kind})`, { details: { dataDir: this.config.dataDir, kind } });
    }
  }

  private unavailable(what: string): WardenError {
    const pm = this.pm;
    const why = pm === undefined ? 'Connection refused' : pm.stopping !== undefined ? 'the database system is shutting down' : 'the database system is starting up';
    return new WardenError('postgres-unavailable', `${what} on ${this.endpointText()}: ${why}`, { retryable: true });
  }

  private sqlError(message: string, sqlstate: string): WardenError {
    return new WardenError('postgres-command-failed', `query on ${this.endpointText()}: ${message} (SQLSTATE ${sqlstate})`, { details: { sqlstate } });
  }

  private commandFailed(what: string, output: string): WardenError {
    return new WardenError('postgres-command-failed', `${what} exited with code 1: ${output}`, { details: { command: what } });
  }

  private commandTimedOut(what: string, timeoutMs: number): WardenError {
    return new WardenError('postgres-command-failed', `${what} timed out after ${timeoutMs} ms`, { retryable: true, details: { command: what } });
  }

  private endpointText(): string {
    return `${this.config.listen.host}:${this.config.listen.port}`;
  }
}

function endpointKey(e: Endpoint): string {
  return `${e.host}:${e.port}`;
}

function isCleanShutdown(state: string | undefined): boolean {
  return state === 'shut down' || state === 'shut down in recovery';
}

/** The timeline switch `timeline` in `history` (undefined for timeline 1 or an unknown one). */
function switchOf(history: readonly TimelineSwitch[], timeline: number): TimelineSwitch | undefined {
  return history.find((h) => h.timeline === timeline);
}

/**
 * Where `target` left the history of `source`: undefined when the target's WAL is a prefix of the
 * source's (nothing to rewind), else the last common timeline and the LSN at which they parted.
 */
function divergence(target: ClusterData, source: ClusterData): { timeline: number; lsn: Lsn } | undefined {
  // The timelines both went through, with the same fork points, are common history.
  let common = 1;
  for (let t = 2; t <= Math.min(target.timeline, source.timeline); t++) {
    const a = switchOf(target.history, t);
    const b = switchOf(source.history, t);
    if (a === undefined || b === undefined || a.forkLsn !== b.forkLsn) break;
    common = t;
  }
  if (common === target.timeline && target.timeline === source.timeline) {
    return target.walPosition <= source.walPosition ? undefined : { timeline: common, lsn: source.walPosition };
  }
  // The source moved on from `common` at its next switch; the target is fine if it stopped before it.
  const next = source.history.filter((h) => h.timeline > common).sort((a, b) => a.timeline - b.timeline)[0];
  const forkLsn = next?.forkLsn ?? source.walPosition;
  if (common === target.timeline && target.walPosition <= forkLsn) return undefined;
  const targetSwitch = target.history.filter((h) => h.timeline > common).sort((a, b) => a.timeline - b.timeline)[0];
  return { timeline: common, lsn: targetSwitch !== undefined && targetSwitch.forkLsn < forkLsn ? targetSwitch.forkLsn : forkLsn };
}

/** True when a standby holding `mine` can stream `src` (recovery_target_timeline = latest). */
function canFollow(mine: ClusterData, src: ClusterData): boolean {
  if (src.timeline < mine.timeline) return false;
  return divergence(mine, src) === undefined;
}

/** synchronous_standby_names as PostgreSQL reads it: FIRST n (…), ANY n (…), n (…), a plain list, or '*'. */
function parseStandbyNames(value: string): { matches: (name: string) => boolean; rank: (name: string) => number; count: number; quorum: boolean } {
  const text = value.trim();
  if (text === '') return { matches: () => false, rank: () => 0, count: 0, quorum: false };
  const m = /^(?:(FIRST|ANY)\s+)?(\d+)\s*\((.*)\)$/i.exec(text);
  const quorum = m?.[1]?.toUpperCase() === 'ANY';
  const count = m === null ? 1 : Number(m[2]);
  const list = (m === null ? text : (m[3] ?? ''))
    .split(',')
    .map((s) => s.trim().replace(/^"(.*)"$/, '$1'))
    .filter((s) => s !== '');
  const rank = (name: string): number => {
    const i = list.findIndex((s) => s === '*' || s.toLowerCase() === name.toLowerCase());
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  return { matches: (name) => rank(name) !== Number.MAX_SAFE_INTEGER, rank, count, quorum };
}
