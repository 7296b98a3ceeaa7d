import { spawn, execFile } from 'node:child_process';
import { getPriority } from 'node:os';
import type { ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  readlink,
  realpath,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import pg from 'pg';
import { WardenError, describeError } from '../core/errors.js';
import type { WardenErrorCode } from '../core/errors.js';
import { sleep } from '../core/deadline.js';
import { childPids, processCommandLine } from '../core/process-info.js';
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
import { dataDirStateFromControlData, isCleanShutdown } from './control-data.js';
import { cancelledError, parseCopyProgress } from './progress.js';
import {
  LIBPQ_CONNECT_TIMEOUT_S,
  SLOT_NAME,
  WARDEN_CONF,
  renderHba,
  renderPgpass,
  renderWardenConf,
  rewindSourceConninfo,
  wardenSettings,
  withIncludeLine,
  type RaisedSetting,
} from './server-config.js';
import {
  BASE_STATUS_SQL,
  PRIMARY_WAL_SQL,
  RECOVERY_STATUS_SQL,
  REPLICATION_SQL,
  primaryStatus,
  standbyStatus,
  type BaseStatusRow,
  type PrimaryWalRow,
  type RecoveryStatusRow,
  type ReplicationRow,
} from './server-status.js';

export { WARDEN_CONF };

/** The pino-shaped subset of a logger that LocalPostgres writes to. */
export interface PostgresLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

const INSPECT_TIMEOUT_MS = 10_000;
/** How often a replica running with raised hot-standby values rereads pg_control (followControlSettings). */
const CONTROL_REREAD_MS = 3_000;
/** Grace between SIGTERM and SIGKILL for a command that passed its timeout. */
const KILL_GRACE_MS = 2_000;
const POLL_MS = 50;
/** How long a cancelled start waits for the postmaster it started to go (SIGQUIT, then SIGKILL). */
const CANCEL_STOP_MS = 4_000;
const OUTPUT_TAIL_BYTES = 64 * 1024;
const MESSAGE_TAIL_CHARS = 2_000;
const ROLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;

interface RunIdentity {
  readonly uid: number;
  readonly gid: number;
}

interface OwnChild {
  readonly proc: ChildProcess;
  readonly pid: number;
  exit: { readonly code: number | null; readonly signal: string | null } | undefined;
  stopRequested: boolean;
}

interface CommandOptions {
  readonly timeoutMs: number;
  /** Short name of the operation, used in error messages. */
  readonly what: string;
  readonly env?: Readonly<Record<string, string>>;
  /** Aborting ends the command's process group and rejects with 'operation-cancelled'. */
  readonly signal?: AbortSignal;
  /** Called with each chunk of stderr (progress reports). */
  readonly onStderr?: (text: string) => void;
}

interface CommandOutput {
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * A PostgreSQL instance on this host, run as a child of the agent.
 *
 * Files next to the data dir (in its parent, the "state dir"; outside the data dir so that
 * pg_basebackup and pg_rewind never copy them and moveDataDirAside() leaves them in place):
 * - `<name>-postgres.log`: the postmaster's stderr (appended on every start);
 * - `<name>.pgpass`: the run user's password file (0600) for pg_basebackup, pg_rewind and primary_conninfo.
 */
export class LocalPostgres implements PostgresInstance {
  readonly config: PostgresInstanceConfig;
  /** The postmaster's log file. */
  readonly logPath: string;
  /** The run user's libpq password file. */
  readonly pgpassPath: string;
  private readonly logger: PostgresLogger | undefined;
  private identity: Promise<RunIdentity | undefined> | undefined;
  private child: OwnChild | undefined;
  private runtime: RuntimeSettings = {};
  private statusClient: pg.Client | undefined;
  private lastRole: ReplicationRole | undefined;
  /** pg_control's hot-standby values, read when last configured as a replica (see raiseToControl in server-config.ts). */
  private controlSettings: DataDirState['controlSettings'];
  /** What warden.conf raises above the configured values for them, and when pg_control was last read for it. */
  private raised: readonly RaisedSetting[] = [];
  private controlReadAtMs = 0;
  /** Set by a fast stop with archiving: archive_command is empty until the next configure(). */
  private archiveReleased = false;

  constructor(config: PostgresInstanceConfig, logger?: PostgresLogger) {
    validateConfig(config);
    this.config = config;
    this.logger = logger;
    const stateDir = dirname(config.dataDir);
    this.logPath = join(stateDir, `${config.name}-postgres.log`);
    this.pgpassPath = join(stateDir, `${config.name}.pgpass`);
  }

  async inspectDataDir(): Promise<DataDirState> {
    const dir = this.config.dataDir;
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return { kind: 'missing' };
      if (errnoOf(e) === 'ENOTDIR') return { kind: 'invalid' };
      throw new WardenError('postgres-command-failed', `cannot read data dir ${dir}: ${describeError(e)}`, { cause: e });
    }
    if (entries.length === 0) return { kind: 'empty' };
    if (!entries.includes('PG_VERSION') || !(await exists(join(dir, 'global', 'pg_control')))) return { kind: 'invalid' };
    const out = await this.runCommand('pg_controldata', ['-D', dir], { timeoutMs: INSPECT_TIMEOUT_MS, what: 'pg_controldata' });
    return dataDirStateFromControlData(out.stdout);
  }

  async initdb(timeoutMs: number, opts: OperationOptions = {}): Promise<void> {
    const { dataDir, superuser } = this.config;
    const before = await this.inspectDataDir();
    if (before.kind !== 'missing' && before.kind !== 'empty') {
      throw new WardenError('data-dir-foreign', `refusing to initdb into ${dataDir}: it is not empty (${before.kind})`, {
        details: { dataDir, kind: before.kind },
      });
    }
    const created = await this.makeDirs(dataDir, 0o700);
    // The password file must be readable by the run user only and must not outlive initdb.
    const tmp = await mkdtemp(join(tmpdir(), 'warden-initdb-'));
    try {
      await this.giveToRunUser(tmp);
      const pwfile = join(tmp, 'pwfile');
      await writeFile(pwfile, `${superuser.password}\n`, { mode: 0o600 });
      await this.giveToRunUser(pwfile);
      await this.runCommand(
        'initdb',
        [
          '-D',
          dataDir,
          '-U',
          superuser.username,
          `--pwfile=${pwfile}`,
          '--auth-local=peer',
          '--auth-host=scram-sha-256',
          '--encoding=UTF8',
          '--locale=C',
        ],
        { timeoutMs, what: 'initdb', ...withSignal(opts) },
      );
    } catch (e) {
      await removeWhatWeWrote(dataDir, created);
      throw e;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    this.log('info', { dataDir }, 'initdb done');
  }

  async createRoles(timeoutMs: number): Promise<void> {
    const { superuser, replication } = this.config;
    await this.withClient(timeoutMs, 'createRoles', async (c) => {
      const rec = await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
      if (rec.rows[0]?.r !== false) {
        throw new WardenError('postgres-command-failed', `createRoles: ${this.config.name} is in recovery, not a primary`);
      }
      // Utility statements take no bind parameters, so the passwords are escaped literals.
      await c.query(`ALTER ROLE ${pg.escapeIdentifier(superuser.username)} WITH PASSWORD ${pg.escapeLiteral(superuser.password)}`);
      const existing = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [replication.username]);
      const verb = existing.rowCount === 0 ? 'CREATE' : 'ALTER';
      await c.query(
        `${verb} ROLE ${pg.escapeIdentifier(replication.username)} WITH LOGIN REPLICATION PASSWORD ${pg.escapeLiteral(replication.password)}`,
      );
    });
    this.log('info', { replicationUser: replication.username }, 'roles created');
  }

  async basebackup(source: Endpoint, timeoutMs: number, opts: OperationOptions = {}): Promise<void> {
    const { dataDir, replication } = this.config;
    const before = await this.inspectDataDir();
    if (before.kind !== 'missing' && before.kind !== 'empty') {
      throw new WardenError('data-dir-foreign', `refusing to pg_basebackup into ${dataDir}: it is not empty (${before.kind})`, {
        details: { dataDir, kind: before.kind },
      });
    }
    const created = await this.makeDirs(dataDir, 0o700);
    await this.writePgpass();
    try {
      await this.runCommand(
        'pg_basebackup',
        ['-D', dataDir, '-h', source.host, '-p', String(source.port), '-U', replication.username, '-X', 'stream', '-c', 'fast', '--no-password', '--progress'],
        { timeoutMs, what: 'pg_basebackup', env: this.libpqEnv(), ...withSignal(opts), ...progressFrom(opts) },
      );
    } catch (e) {
      await removeWhatWeWrote(dataDir, created);
      throw e;
    }
    this.log('info', { source, dataDir }, 'basebackup done');
  }

  async configure(role: ReplicationRole): Promise<void> {
    const { dataDir } = this.config;
    if (!(await exists(join(dataDir, 'PG_VERSION')))) {
      throw new WardenError('postgres-command-failed', `cannot configure ${dataDir}: not an initialized data dir`);
    }
    await this.writePgpass();
    this.lastRole = role;
    this.archiveReleased = false;
    if (role.kind === 'replica') await this.readControlSettings();
    await this.writeOwned(join(dataDir, WARDEN_CONF), renderWardenConf(this.wardenSettings(role)), 0o600);
    const confPath = join(dataDir, 'postgresql.conf');
    const withInclude = withIncludeLine(await readFile(confPath, 'utf8'));
    if (withInclude !== undefined) await this.writeOwned(confPath, withInclude, 0o600);
    await this.writeOwned(join(dataDir, 'pg_hba.conf'), this.renderHba(), 0o600);
    const signal = join(dataDir, 'standby.signal');
    if (role.kind === 'replica') await this.writeOwned(signal, '', 0o600);
    else await rm(signal, { force: true });
    // A running server picks up pg_hba.conf and reloadable settings (primary_conninfo) now;
    // a changed role (standby.signal) takes effect at the next start.
    const state = await this.processState();
    if (state.kind === 'running') signalPid(state.pid, 'SIGHUP');
    this.log('info', { role: role.kind }, 'configured');
  }

  async start(timeoutMs: number, opts: OperationOptions = {}): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const signal = opts.signal;
    if (signal?.aborted === true) throw cancelledError('start', signal);
    const state = await this.processState();
    if (state.kind === 'running') {
      const own = this.child;
      if (own !== undefined && own.exit === undefined && own.pid === state.pid) {
        await this.waitAcceptingConnections(own, deadline, 0, signal);
        return;
      }
      throw new WardenError(
        'postgres-command-failed',
        `cannot start ${this.config.name}: a postmaster (pid ${state.pid}) not started by this agent runs on ${this.config.dataDir}; stop it first`,
        { details: { pid: state.pid } },
      );
    }
    if (!(await exists(join(this.config.dataDir, 'PG_VERSION')))) {
      throw new WardenError('postgres-command-failed', `cannot start ${this.config.name}: ${this.config.dataDir} is not an initialized data dir`);
    }
    await this.makeDirs(this.config.socketDir, 0o755);
    await this.makeDirs(dirname(this.logPath), 0o750);
    await this.waitForOrphanedBackends(deadline);

    const log = await open(this.logPath, 'a', 0o640);
    let proc: ChildProcess;
    let logOffset: number;
    try {
      await this.giveToRunUser(this.logPath);
      logOffset = (await log.stat()).size;
      const identity = await this.runIdentity();
      // setpriv sets the parent-death signal after switching user, then execs postgres: the
      // postmaster is killed when the agent dies (invariant 1: no primary without its agent).
      const args = [
        ...(identity === undefined ? [] : [`--reuid=${identity.uid}`, `--regid=${identity.gid}`, '--init-groups']),
        '--pdeathsig',
        'KILL',
        '--',
        join(this.config.binDir, 'postgres'),
        '-D',
        this.config.dataDir,
      ];
      // An agent that raised its own priority must not pass it on: `nice` brings PostgreSQL back to
      // the default niceness (nice and setpriv exec, so the PID stays the postmaster's).
      const agentNice = getPriority();
      const [cmd, argv] = agentNice < 0 ? ['nice', ['-n', String(-agentNice), 'setpriv', ...args]] : ['setpriv', args];
      proc = spawn(cmd, argv, { cwd: '/', env: this.childEnv(), stdio: ['ignore', log.fd, log.fd], detached: true });
    } finally {
      await log.close();
    }
    const pid = proc.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((resolve) => proc.once('error', resolve));
      throw new WardenError('postgres-command-failed', `cannot start postgres: ${err.message}`, { cause: err });
    }
    proc.unref();
    const own: OwnChild = { proc, pid, exit: undefined, stopRequested: false };
    this.child = own;
    proc.on('error', (e) => this.log('error', { pid, err: e.message }, 'postmaster process error'));
    proc.on('exit', (code, signal) => {
      own.exit = { code, signal };
      const level = own.stopRequested ? 'info' : 'error';
      this.log(level, { pid, code, signal }, own.stopRequested ? 'postmaster exited' : 'postmaster exited unexpectedly');
    });
    this.log('info', { pid, logPath: this.logPath }, 'postmaster started');
    try {
      await this.waitAcceptingConnections(own, deadline, logOffset, signal);
    } catch (e) {
      // A cancelled start leaves no postmaster behind: the loop chose to give up on it (a leader
      // past primary_start_timeout must not come back as a primary later).
      if (e instanceof WardenError && e.code === 'operation-cancelled') await this.stop('immediate', CANCEL_STOP_MS).catch(() => undefined);
      throw e;
    }
  }

  async stop(mode: 'fast' | 'immediate', timeoutMs: number, opts: OperationOptions = {}): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const own = this.child;
    const pid = own !== undefined && own.exit === undefined ? own.pid : await this.livePostmasterPid();
    if (own !== undefined && (own.exit !== undefined || own.pid === pid)) own.stopRequested = true;
    if (pid === undefined) return;
    if (mode === 'fast' && this.config.archive !== undefined) await this.releaseArchiver(pid);
    // SIGINT is PostgreSQL's fast shutdown (walsenders send what is flushed); SIGQUIT is immediate.
    signalPid(pid, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    // A stopped (SIGSTOP) postmaster acts on SIGQUIT only once continued: a fence must not wait
    // for whoever froze it.
    if (mode === 'immediate') signalPid(pid, 'SIGCONT');
    this.log('info', { pid, mode }, 'stopping postmaster');
    // An immediate stop is a fence: if the postmaster ignores SIGQUIT, SIGKILL it before the deadline.
    const killAt = mode === 'immediate' ? Date.now() + Math.floor(timeoutMs * 0.75) : Number.POSITIVE_INFINITY;
    let killed = false;
    for (;;) {
      const gone = own !== undefined && own.pid === pid ? own.exit !== undefined : !(await isProcessAlive(pid));
      if (gone) return;
      if (!killed && Date.now() >= killAt) {
        killed = true;
        this.log('warn', { pid }, 'postmaster ignored an immediate shutdown; sending SIGKILL');
        signalPid(pid, 'SIGKILL');
      }
      if (opts.signal?.aborted === true) throw cancelledError(`stop (${mode}) of postmaster ${pid}`, opts.signal);
      if (Date.now() >= deadline) {
        throw new WardenError('postgres-command-failed', `postmaster ${pid} did not stop (${mode}) within ${timeoutMs} ms`, {
          retryable: true,
          details: { pid, mode },
        });
      }
      await sleep(POLL_MS);
    }
  }

  /**
   * Before a fast shutdown with archiving: a shutdown waits for the archiver, which archives every
   * `.ready` segment first — with a slow or stuck repository a switchover would wait as long
   * (pgBackRest's archive-timeout, 60 s, per segment). So archive_command is emptied (archive_mode
   * stays on: PostgreSQL then keeps the segments `.ready` and archives nothing) and an
   * archive_command already running is ended (SIGTERM; the archiver exits on it and the postmaster
   * starts it again with the new settings). Nothing is lost: the segments stay `.ready` here, and a
   * standby that streamed them marks them for archiving before it is promoted (archive
   * continuity, docs/architecture.md "Backups"). The next configure() restores archive_command.
   */
  private async releaseArchiver(postmasterPid: number): Promise<void> {
    if (this.lastRole === undefined) return;
    this.archiveReleased = true;
    await this.rewriteWardenConf(this.lastRole);
    const ended: number[] = [];
    for (const child of await childPids(postmasterPid)) {
      const argv = await processCommandLine(child);
      if (argv?.[0]?.startsWith('postgres: ') !== true || !argv[0].includes('archiver')) continue;
      for (const shell of await childPids(child)) {
        // The shell running archive_command, and what it runs (pgbackrest archive-push).
        for (const p of [...(await childPids(shell)), shell]) {
          signalPid(p, 'SIGTERM');
          ended.push(p);
        }
      }
    }
    this.log('info', { endedArchiveCommand: ended }, ended.length === 0 ? 'fast shutdown with archiving: archive_command emptied so that the shutdown does not wait for the archive (.ready segments stay for the next primary)' : 'fast shutdown with archiving: the running archive_command ended and archive_command emptied, so that the shutdown does not wait for the archive (.ready segments stay for the next primary)');
  }

  async processState(): Promise<ProcessState> {
    const own = this.child;
    if (own !== undefined && own.exit === undefined) return { kind: 'running', pid: own.pid };
    const pid = await this.livePostmasterPid();
    if (pid !== undefined) return { kind: 'running', pid };
    if (own?.exit !== undefined && !own.stopRequested) return { kind: 'crashed', exitCode: own.exit.code, signal: own.exit.signal };
    return { kind: 'stopped' };
  }

  async promote(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await this.withClient(timeoutMs, 'promote', async (c) => {
      if (!(await isInRecovery(c))) return;
      const waitS = Math.max(1, Math.floor(timeoutMs / 1000) - 1);
      await c.query('SELECT pg_promote(true, $1)', [waitS]);
      while (await isInRecovery(c)) {
        if (Date.now() >= deadline) {
          throw new WardenError('postgres-command-failed', `promote: ${this.config.name} still in recovery after ${timeoutMs} ms`, {
            retryable: true,
          });
        }
        await sleep(POLL_MS);
      }
    });
    this.log('info', {}, 'promoted');
  }

  async status(timeoutMs: number): Promise<ServerStatus> {
    const status = await this.withStatusClient(timeoutMs, async (c) => {
      const base = await c.query<BaseStatusRow>(BASE_STATUS_SQL);
      const b = base.rows[0];
      if (b === undefined) throw new WardenError('postgres-command-failed', 'status: no row');
      if (!b.in_recovery) {
        const wal = await c.query<PrimaryWalRow>(PRIMARY_WAL_SQL);
        const w = wal.rows[0];
        if (w === undefined) throw new WardenError('postgres-command-failed', 'status: no WAL row');
        const reps = await c.query<ReplicationRow>(REPLICATION_SQL);
        return primaryStatus(b, w, reps.rows);
      }
      const rep = await c.query<RecoveryStatusRow>(RECOVERY_STATUS_SQL);
      const r = rep.rows[0];
      if (r === undefined) throw new WardenError('postgres-command-failed', 'status: no recovery row');
      return standbyStatus(b, r);
    });
    if (status.inRecovery) await this.followControlSettings();
    return status;
  }

  /**
   * While warden.conf raises a hot-standby parameter above its configured value (pg_control held
   * the primary's higher one when this replica started), rereads pg_control every few seconds;
   * once replay has brought it down, rewrites warden.conf, so the lower value shows as a pending
   * restart and the next restart applies it.
   */
  private async followControlSettings(): Promise<void> {
    if (this.raised.length === 0 || this.lastRole?.kind !== 'replica' || Date.now() - this.controlReadAtMs < CONTROL_REREAD_MS) return;
    const before = JSON.stringify(this.controlSettings ?? {});
    await this.readControlSettings();
    if (JSON.stringify(this.controlSettings ?? {}) === before) return;
    try {
      await this.rewriteWardenConf(this.lastRole);
      this.log('info', { controlSettings: this.controlSettings }, 'pg_control now holds lower hot-standby values: warden.conf follows (a restart applies them)');
    } catch (e) {
      this.log('warn', { err: describeError(e) }, 'cannot rewrite warden.conf for the hot-standby values of pg_control');
    }
  }

  private async readControlSettings(): Promise<void> {
    this.controlReadAtMs = Date.now();
    try {
      this.controlSettings = (await this.inspectDataDir()).controlSettings;
    } catch (e) {
      // Without pg_control's values the replica starts with the configured ones, as before.
      this.log('warn', { err: describeError(e) }, 'cannot read the hot-standby values of pg_control');
      this.controlSettings = undefined;
    }
  }

  async syncSlots(names: readonly string[], timeoutMs: number): Promise<void> {
    for (const n of names) {
      if (!SLOT_NAME.test(n)) {
        throw new WardenError('config-invalid', `invalid replication slot name ${JSON.stringify(n)}: use 1-63 of [a-z0-9_]`);
      }
    }
    const wanted = new Set(names);
    await this.withClient(timeoutMs, 'syncSlots', async (c) => {
      const rows = await c.query<{ slot_name: string; active: boolean }>(
        `SELECT slot_name::text AS slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical'`,
      );
      const have = new Map(rows.rows.map((r) => [r.slot_name, r.active]));
      for (const n of wanted) {
        if (have.has(n)) continue;
        // immediately_reserve: the slot holds WAL from now, before its replica first connects.
        await ignoreSqlState(c.query('SELECT pg_create_physical_replication_slot($1, true)', [n]), ['42710']);
        this.log('info', { slot: n }, 'created replication slot');
      }
      // Slots are only dropped on a primary; a standby keeps what it has until it is promoted.
      if (await isInRecovery(c)) return;
      for (const [n, active] of have) {
        if (wanted.has(n) || active) continue;
        // 55006: became active meanwhile; 42704: dropped by someone else. Both leave the goal met or retried next loop.
        await ignoreSqlState(c.query('SELECT pg_drop_replication_slot($1)', [n]), ['55006', '42704']);
        this.log('info', { slot: n }, 'dropped replication slot');
      }
    });
  }

  async recoverCrashed(timeoutMs: number, opts: OperationOptions = {}): Promise<void> {
    const { dataDir } = this.config;
    const state = await this.processState();
    if (state.kind === 'running') {
      throw new WardenError('postgres-command-failed', `cannot run crash recovery on ${dataDir}: postmaster ${state.pid} is running`);
    }
    const before = await this.inspectDataDir();
    if (before.kind !== 'initialized') {
      throw new WardenError('postgres-command-failed', `cannot run crash recovery on ${dataDir}: data dir is ${before.kind}`);
    }
    if (isCleanShutdown(before.clusterState)) return;
    // Single-user mode refuses standby mode; configure() writes standby.signal again before the next start.
    await rm(join(dataDir, 'standby.signal'), { force: true });
    await rm(join(dataDir, 'recovery.signal'), { force: true });
    // stdin is /dev/null: the backend replays WAL, reads EOF and shuts down with a checkpoint.
    await this.runCommand('postgres', ['--single', '-D', dataDir, 'template1'], { timeoutMs, what: 'postgres --single', ...withSignal(opts) });
    const after = await this.inspectDataDir();
    if (!isCleanShutdown(after.clusterState)) {
      throw new WardenError('postgres-command-failed', `crash recovery left ${dataDir} in state ${after.clusterState ?? 'unknown'}`);
    }
    this.log('info', { from: before.clusterState, to: after.clusterState }, 'crash recovery done');
  }

  async rewind(source: Endpoint, timeoutMs: number, opts: OperationOptions = {}): Promise<string> {
    const state = await this.processState();
    if (state.kind === 'running') {
      throw new WardenError('postgres-command-failed', `cannot pg_rewind ${this.config.dataDir}: postmaster ${state.pid} is running`);
    }
    const deadline = Date.now() + timeoutMs;
    // pg_rewind compares the timelines in the control files, and a just-promoted source's control
    // file keeps the old timeline until its next checkpoint: without this, a diverged target
    // would be reported as "no rewind required" (invariant 5).
    await this.withClient(timeoutMs, 'CHECKPOINT before pg_rewind', (c) => c.query('CHECKPOINT'), source);
    await this.writePgpass();
    const conninfo = rewindSourceConninfo(source, this.config.superuser.username);
    const out = await this.runCommand('pg_rewind', ['-D', this.config.dataDir, `--source-server=${conninfo}`, '--progress'], {
      timeoutMs: Math.max(1, deadline - Date.now()),
      what: 'pg_rewind',
      env: this.libpqEnv(),
      ...withSignal(opts),
      ...progressFrom(opts),
    });
    this.log('info', { source }, 'pg_rewind done');
    return `${out.stdout}${out.stderr}`;
  }

  async listMovedAside(): Promise<string[]> {
    const { dataDir } = this.config;
    const prefix = `${basename(dataDir)}.moved-`;
    const entries = await readdir(dirname(dataDir)).catch(() => [] as string[]);
    return entries.filter((e) => e.startsWith(prefix)).sort().map((e) => join(dirname(dataDir), e));
  }

  async moveDataDirAside(): Promise<string> {
    const { dataDir } = this.config;
    const state = await this.processState();
    if (state.kind === 'running') {
      throw new WardenError('postgres-command-failed', `cannot move ${dataDir} aside: postmaster ${state.pid} is running`);
    }
    if (!(await exists(dataDir))) throw new WardenError('not-found', `cannot move ${dataDir} aside: it does not exist`);
    const base = `${dataDir}.moved-${new Date().toISOString().replace(/:/g, '')}`;
    let target = base;
    for (let i = 2; await exists(target); i++) target = `${base}-${i}`;
    await rename(dataDir, target);
    this.log('warn', { dataDir, movedTo: target }, 'data dir moved aside');
    return target;
  }

  async query(sql: string, params: readonly unknown[], timeoutMs: number): Promise<readonly Record<string, unknown>[]> {
    return this.withClient(timeoutMs, 'query', async (c) => (await c.query<Record<string, unknown>>(sql, [...params])).rows);
  }

  async updateSettings(settings: RuntimeSettings): Promise<void> {
    this.runtime = { ...this.runtime, ...settings };
    if (this.lastRole === undefined) return; // applied by the next configure()
    await this.rewriteWardenConf(this.lastRole);
    this.log('info', { synchronousStandbyNames: this.runtime.synchronousStandbyNames ?? '' }, 'settings updated');
  }

  // ---- files -------------------------------------------------------------------------------

  /** warden.conf for `role` with the settings in force, and a reload of a running server. */
  private async rewriteWardenConf(role: ReplicationRole): Promise<void> {
    await this.writeOwned(join(this.config.dataDir, WARDEN_CONF), renderWardenConf(this.wardenSettings(role)), 0o600);
    const state = await this.processState();
    if (state.kind === 'running') signalPid(state.pid, 'SIGHUP');
  }

  private wardenSettings(role: ReplicationRole): Map<string, string | number | boolean> {
    const { settings, ignored, raised } = wardenSettings({
      config: this.config,
      runtime: this.runtime,
      role,
      pgpassPath: this.pgpassPath,
      ...(this.controlSettings === undefined ? {} : { controlSettings: this.controlSettings }),
    });
    for (const k of ignored) this.log('warn', { parameter: k }, 'ignoring a parameter that Warden sets itself');
    if (JSON.stringify(raised) !== JSON.stringify(this.raised) && raised.length > 0) {
      const what = raised.map((r) => `${r.name} ${r.control}, not ${r.configured}`).join(', ');
      this.log('warn', { raised }, `runs as a replica with ${what}: its pg_control holds the primary's higher value (a standby may not run below its primary; a restart applies the lower one once it has replayed the change)`);
    }
    this.raised = raised;
    if (this.archiveReleased && settings.has('archive_command')) settings.set('archive_command', '');
    return settings;
  }

  private renderHba(): string {
    const host = this.config.listen.host;
    const hba = renderHba({ superuser: this.config.superuser.username, replication: this.config.replication.username, listenHost: host, ...(this.config.trustSuperuserOnSocket === true ? { socketMethod: 'trust' as const } : {}) });
    if (hba.loopbackOnlyByName) {
      this.log('warn', { host }, 'listen host is a name or a wildcard; pg_hba.conf allows loopback only');
    }
    return hba.text;
  }

  private async writePgpass(): Promise<void> {
    await this.makeDirs(dirname(this.pgpassPath), 0o750);
    await this.writeOwned(this.pgpassPath, renderPgpass(this.config.replication, this.config.superuser), 0o600);
  }

  /** Writes a file atomically (temp + rename), owned by the run user with `mode`. */
  private async writeOwned(path: string, content: string, mode: number): Promise<void> {
    const tmp = `${path}.warden-tmp`;
    await writeFile(tmp, content, { mode });
    await chmod(tmp, mode);
    await this.giveToRunUser(tmp);
    await rename(tmp, path);
  }

  /** mkdir -p; every directory it creates belongs to the run user, `dir` itself gets `mode`. Returns whether `dir` was created. */
  private async makeDirs(dir: string, mode: number): Promise<boolean> {
    const missing: string[] = [];
    for (let cur = dir; !(await exists(cur)); cur = dirname(cur)) {
      missing.unshift(cur);
      if (dirname(cur) === cur) break;
    }
    for (const d of missing) {
      try {
        await mkdir(d);
      } catch (e) {
        if (errnoOf(e) !== 'EEXIST') throw e;
        if (d === dir) return false;
        continue;
      }
      await chmod(d, d === dir ? mode : 0o750);
      await this.giveToRunUser(d);
    }
    if (missing.length === 0 && mode === 0o700) {
      // An existing (empty) data dir: PostgreSQL insists on owner-only permissions.
      await chmod(dir, mode);
      await this.giveToRunUser(dir);
    }
    return missing.length > 0;
  }

  private async giveToRunUser(path: string): Promise<void> {
    const id = await this.runIdentity();
    if (id !== undefined) await chown(path, id.uid, id.gid);
  }

  // ---- processes ---------------------------------------------------------------------------

  /** uid/gid to switch to, or undefined when commands run as the current user. */
  private runIdentity(): Promise<RunIdentity | undefined> {
    this.identity ??= (async (): Promise<RunIdentity | undefined> => {
      const user = this.config.runAsUser;
      if (user === undefined || process.getuid?.() !== 0) return undefined;
      const [uid, gid] = await Promise.all([idOf(user, '-u'), idOf(user, '-g')]);
      return { uid, gid };
    })();
    return this.identity;
  }

  private childEnv(extra: Readonly<Record<string, string>> = {}): Record<string, string> {
    // A clean environment: PG* variables of the agent (PGDATA, PGHOST, ...) must not leak in.
    return { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C', ...extra };
  }

  private libpqEnv(): Record<string, string> {
    return { PGPASSFILE: this.pgpassPath, PGCONNECT_TIMEOUT: String(LIBPQ_CONNECT_TIMEOUT_S) };
  }

  /** Runs a binary from binDir as the run user, in its own process group, killed when it passes its timeout. */
  private async runCommand(binary: string, args: readonly string[], opts: CommandOptions): Promise<CommandOutput> {
    const identity = await this.runIdentity();
    const bin = join(this.config.binDir, binary);
    const [cmd, argv] =
      identity === undefined
        ? [bin, [...args]]
        : ['setpriv', [`--reuid=${identity.uid}`, `--regid=${identity.gid}`, '--init-groups', '--', bin, ...args]];
    return new Promise<CommandOutput>((resolve, reject) => {
      const started = Date.now();
      const proc = spawn(cmd, argv, { cwd: '/', env: this.childEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const stdout = new TailBuffer();
      const stderr = new TailBuffer();
      proc.stdout.on('data', (b: Buffer) => stdout.push(b));
      proc.stderr.on('data', (b: Buffer) => {
        stderr.push(b);
        opts.onStderr?.(b.toString('utf8'));
      });
      let timedOut = false;
      let cancelled = false;
      let settled = false;
      const timers: NodeJS.Timeout[] = [];
      const onAbort = (): void => {
        if (settled || opts.signal === undefined) return;
        cancelled = true;
        if (proc.pid !== undefined) killGroup(proc.pid, 'SIGTERM');
        timers.push(
          setTimeout(() => {
            if (proc.pid !== undefined) killGroup(proc.pid, 'SIGKILL');
            timers.push(setTimeout(() => settle(cancelledError(opts.what, opts.signal as AbortSignal)), KILL_GRACE_MS));
          }, KILL_GRACE_MS),
        );
      };
      const settle = (err: WardenError | undefined): void => {
        if (settled) return;
        settled = true;
        opts.signal?.removeEventListener('abort', onAbort);
        for (const t of timers) clearTimeout(t);
        if (err === undefined) resolve({ stdout: stdout.text(), stderr: stderr.text() });
        else reject(err);
      };
      const fail = (reason: string, cause?: unknown): WardenError => {
        const output = tail(stderr.text() || stdout.text());
        return new WardenError('postgres-command-failed', `${opts.what} ${reason}${output === '' ? '' : `: ${output}`}`, {
          retryable: timedOut,
          ...(cause === undefined ? {} : { cause }),
          details: { command: binary, args, elapsedMs: Date.now() - started },
        });
      };
      timers.push(
        setTimeout(() => {
          timedOut = true;
          if (proc.pid !== undefined) killGroup(proc.pid, 'SIGTERM');
          timers.push(
            setTimeout(() => {
              if (proc.pid !== undefined) killGroup(proc.pid, 'SIGKILL');
              // Give up waiting for pipes that a stray grandchild may hold open.
              timers.push(setTimeout(() => settle(fail(`timed out after ${opts.timeoutMs} ms`)), KILL_GRACE_MS));
            }, KILL_GRACE_MS),
          );
        }, opts.timeoutMs),
      );
      if (opts.signal?.aborted === true) onAbort();
      else opts.signal?.addEventListener('abort', onAbort, { once: true });
      proc.on('error', (e) => settle(fail(`could not run ${cmd}`, e)));
      proc.on('close', (code, signal) => {
        if (cancelled && opts.signal !== undefined) settle(cancelledError(opts.what, opts.signal));
        else if (timedOut) settle(fail(`timed out after ${opts.timeoutMs} ms`));
        else if (code === 0) settle(undefined);
        else settle(fail(code === null ? `was killed by ${signal ?? 'a signal'}` : `exited with code ${code}`));
      });
    });
  }

  /** PID of a live postmaster recorded in postmaster.pid for this data dir (started by anyone). */
  private async livePostmasterPid(): Promise<number | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.config.dataDir, 'postmaster.pid'), 'utf8');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return undefined;
      throw e;
    }
    const pid = Number.parseInt(text.split('\n')[0] ?? '', 10);
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    if (!(await isProcessAlive(pid))) return undefined;
    let cmdline: string;
    try {
      cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ESRCH') return undefined;
      throw e;
    }
    const argv0 = basename(cmdline.split('\0')[0] ?? '');
    if (!argv0.startsWith('postgres') && !argv0.startsWith('postmaster')) return undefined;
    // A reused PID may belong to another member's postmaster: the postmaster's cwd is its data dir.
    const cwd = await processCwd(pid);
    if (cwd !== undefined && cwd !== (await realpathOrSelf(this.config.dataDir))) return undefined;
    return pid;
  }

  /**
   * After a postmaster was killed, its backends notice and exit within moments; until they do,
   * a new postmaster refuses the still-attached shared memory. Waits (bounded) for them.
   */
  private async waitForOrphanedBackends(deadline: number): Promise<void> {
    if (!(await exists(join(this.config.dataDir, 'postmaster.pid')))) return;
    const dataDir = await realpathOrSelf(this.config.dataDir);
    const waitUntil = Math.min(deadline, Date.now() + 5_000);
    for (;;) {
      const left = await processesWithCwd(dataDir);
      if (left.length === 0) return;
      if (Date.now() >= waitUntil) {
        this.log('warn', { pids: left }, 'processes of an earlier postmaster still run in the data dir');
        return;
      }
      await sleep(POLL_MS);
    }
  }

  private async waitAcceptingConnections(own: OwnChild, deadline: number, logOffset: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      if (signal?.aborted === true) throw cancelledError(`start (postmaster ${own.pid})`, signal);
      if (own.exit !== undefined) {
        const logTail = await readTail(this.logPath, logOffset);
        throw new WardenError(
          'postgres-command-failed',
          `postgres exited during start (code ${own.exit.code ?? 'none'}, signal ${own.exit.signal ?? 'none'}); log ${this.logPath}: ${tail(logTail)}`,
          { details: { logPath: this.logPath } },
        );
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new WardenError(
          'postgres-unavailable',
          `postgres (pid ${own.pid}) did not accept connections before the start deadline; it is still running, see ${this.logPath}`,
          { retryable: true, details: { pid: own.pid, logPath: this.logPath } },
        );
      }
      if (await this.acceptsConnections(Math.min(1_000, remaining))) return;
      await sleep(Math.min(POLL_MS * 2, Math.max(0, deadline - Date.now())));
    }
  }

  private async acceptsConnections(timeoutMs: number): Promise<boolean> {
    try {
      await this.withClient(timeoutMs, 'probe', (c) => c.query('SELECT 1'));
      return true;
    } catch (e) {
      // A server that rejects our password still accepts connections; 57P03 (starting up,
      // not yet consistent) and refused connections do not.
      return e instanceof WardenError && typeof e.details['sqlstate'] === 'string' && e.details['sqlstate'].startsWith('28');
    }
  }

  // ---- SQL ---------------------------------------------------------------------------------

  /** One short-lived TCP connection as the superuser; the whole call is bounded by timeoutMs. */
  private async withClient<T>(
    timeoutMs: number,
    what: string,
    fn: (c: pg.Client) => Promise<T>,
    endpoint: Endpoint = this.config.listen,
  ): Promise<T> {
    const { superuser } = this.config;
    const client = new pg.Client({
      ...this.connectTo(endpoint),
      user: superuser.username,
      password: superuser.password,
      database: 'postgres',
      application_name: 'warden',
      connectionTimeoutMillis: Math.max(1, timeoutMs),
      query_timeout: Math.max(1, timeoutMs),
      statement_timeout: Math.max(1, timeoutMs),
    });
    // Errors on an idle client (server shut down) must not crash the agent.
    client.on('error', () => undefined);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      client.connection.stream.destroy();
    }, timeoutMs);
    let connected = false;
    try {
      await client.connect();
      connected = true;
      return await fn(client);
    } catch (e) {
      throw translatePgError(e, `${what} on ${endpoint.host}:${endpoint.port}`, { connected, timedOut, timeoutMs });
    } finally {
      clearTimeout(timer);
      await endClient(client);
    }
  }

  /**
   * The HA loop reads status twice a second: one kept session instead of a fresh connection (and a
   * SCRAM handshake and a backend fork) each time. A broken session (server restarted) is dropped
   * and the call retried once on a new one; every attempt is bounded by `timeoutMs`.
   */
  private async withStatusClient<T>(timeoutMs: number, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const where = `status on ${this.config.listen.host}:${this.config.listen.port}`;
    for (let attempt = 0; ; attempt++) {
      if (this.statusClient === undefined) {
        try {
          await this.openStatusClient(timeoutMs);
        } catch (e) {
          throw translatePgError(e, where, { connected: false, timedOut: false, timeoutMs });
        }
      }
      const kept = this.statusClient;
      if (kept === undefined) throw new WardenError('postgres-unavailable', `${where}: no session`, { retryable: true });
      const timer = setTimeout(() => kept.connection.stream.destroy(), timeoutMs);
      try {
        return await fn(kept);
      } catch (e) {
        this.dropStatusClient();
        if (attempt >= 1) throw translatePgError(e, where, { connected: true, timedOut: false, timeoutMs });
      } finally {
        clearTimeout(timer);
      }
    }
  }

  private async openStatusClient(timeoutMs: number): Promise<void> {
    const { superuser, listen } = this.config;
    const client = new pg.Client({
      ...this.connectTo(listen),
      user: superuser.username,
      password: superuser.password,
      database: 'postgres',
      application_name: 'warden',
      connectionTimeoutMillis: Math.max(1, timeoutMs),
    });
    client.on('error', () => this.dropStatusClient());
    await client.connect();
    this.statusClient = client;
  }

  /** Where a connection to `endpoint` goes: this server's unix socket when its superuser is trusted there. */
  private connectTo(endpoint: Endpoint): { host: string; port: number } {
    const own = endpoint.host === this.config.listen.host && endpoint.port === this.config.listen.port;
    if (own && this.config.trustSuperuserOnSocket === true) return { host: this.config.socketDir, port: endpoint.port };
    return { host: connectHost(endpoint.host), port: endpoint.port };
  }

  private dropStatusClient(): void {
    const c = this.statusClient;
    this.statusClient = undefined;
    if (c !== undefined) void endClient(c);
  }

  private log(level: keyof PostgresLogger, obj: Record<string, unknown>, msg: string): void {
    this.logger?.[level]({ member: this.config.name, ...obj }, msg);
  }
}

// ---- pure helpers --------------------------------------------------------------------------

function validateConfig(c: PostgresInstanceConfig): void {
  const bad = (msg: string): never => {
    throw new WardenError('config-invalid', `postgres config for ${JSON.stringify(c.name)}: ${msg}`);
  };
  if (!/^[A-Za-z0-9_.-]{1,63}$/.test(c.name)) bad('name must be 1-63 of [A-Za-z0-9_.-]');
  for (const [k, p] of [
    ['dataDir', c.dataDir],
    ['binDir', c.binDir],
    ['socketDir', c.socketDir],
  ] as const) {
    if (!isAbsolute(p)) bad(`${k} must be an absolute path, got ${JSON.stringify(p)}`);
    if (/[\s'"\\]/.test(p)) bad(`${k} must not contain spaces, quotes or backslashes`);
  }
  for (const [k, r] of [
    ['superuser', c.superuser],
    ['replication', c.replication],
  ] as const) {
    if (!ROLE_NAME.test(r.username)) bad(`${k}.username must match ${ROLE_NAME.source}`);
    if (r.password.length === 0 || /[\r\n\0]/.test(r.password)) bad(`${k}.password must be non-empty and on one line`);
  }
  if (c.superuser.username === c.replication.username) bad('superuser and replication users must differ');
  if (!Number.isInteger(c.listen.port) || c.listen.port <= 0 || c.listen.port > 65535) bad(`invalid port ${c.listen.port}`);
  if (c.listen.host.length === 0 || /[\s,'"\\]/.test(c.listen.host)) bad(`invalid listen host ${JSON.stringify(c.listen.host)}`);
  for (const [k, v] of Object.entries(c.parameters)) {
    if (!PARAM_NAME.test(k)) bad(`invalid parameter name ${JSON.stringify(k)}`);
    if (typeof v === 'string' && /[\r\n\0]/.test(v)) bad(`parameter ${k} must be on one line`);
  }
}

/** Where the agent connects to reach a server listening on `host`. */
function connectHost(host: string): string {
  if (host === '*' || host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

function tail(text: string): string {
  const t = text.trim();
  return t.length <= MESSAGE_TAIL_CHARS ? t : `…${t.slice(-MESSAGE_TAIL_CHARS)}`;
}

class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.size > OUTPUT_TAIL_BYTES && this.chunks.length > 1) this.size -= this.chunks.shift()?.length ?? 0;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

// ---- I/O helpers ---------------------------------------------------------------------------

function errnoOf(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return false;
    throw e;
  }
}

async function realpathOrSelf(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return path;
    throw e;
  }
}

/** True when `pid` exists and is not a zombie. */
async function isProcessAlive(pid: number): Promise<boolean> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ESRCH') return false;
    throw e;
  }
  // Format: "pid (comm) S ...": the comm may contain spaces and parentheses.
  const state = stat.slice(stat.lastIndexOf(')') + 1).trim().split(' ')[0];
  return state !== undefined && state !== 'Z' && state !== 'X';
}

/** The cwd of `pid`, or undefined when it is gone or not ours to read. */
async function processCwd(pid: number): Promise<string | undefined> {
  try {
    return await readlink(`/proc/${pid}/cwd`);
  } catch (e) {
    const code = errnoOf(e);
    if (code === 'ENOENT' || code === 'ESRCH' || code === 'EACCES' || code === 'EPERM') return undefined;
    throw e;
  }
}

async function processesWithCwd(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if ((await processCwd(pid)) === dir && (await isProcessAlive(pid))) pids.push(pid);
  }
  return pids;
}

/** Sends `sig` to `pid`; false when it no longer exists. */
function signalPid(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch (e) {
    if (errnoOf(e) === 'ESRCH') return false;
    throw e;
  }
}

/** Signals the process group led by `pid` (commands run detached, so it is their own), else the PID. */
/** The signal of `opts`, as CommandOptions wants it (absent when there is none). */
function withSignal(opts: OperationOptions): { signal?: AbortSignal } {
  return opts.signal === undefined ? {} : { signal: opts.signal };
}

/** Feeds the copy progress a tool prints on stderr to `opts.onProgress`. */
function progressFrom(opts: OperationOptions): { onStderr?: (text: string) => void } {
  const cb = opts.onProgress;
  if (cb === undefined) return {};
  return {
    onStderr: (text) => {
      const p = parseCopyProgress(text);
      if (p !== undefined) cb(p);
    },
  };
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  if (!signalPid(-pid, sig)) signalPid(pid, sig);
}

function idOf(user: string, flag: '-u' | '-g'): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile('id', [flag, user], { timeout: 5_000 }, (err, stdout, stderr) => {
      const n = Number.parseInt(stdout.trim(), 10);
      if (err !== null || !Number.isInteger(n)) {
        reject(new WardenError('config-invalid', `runAsUser ${JSON.stringify(user)}: ${stderr.trim() || describeError(err)}`, { cause: err }));
      } else {
        resolve(n);
      }
    });
  });
}

/** After a failed initdb/basebackup into a dir that was missing or empty: everything in it is ours to remove. */
async function removeWhatWeWrote(dataDir: string, created: boolean): Promise<void> {
  if (created) {
    await rm(dataDir, { recursive: true, force: true });
    return;
  }
  for (const entry of await readdir(dataDir)) await rm(join(dataDir, entry), { recursive: true, force: true });
}

async function readTail(path: string, fromOffset: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const start = Math.max(fromOffset, size - 8 * 1024);
    const buf = Buffer.alloc(Math.max(0, size - start));
    await fh.read(buf, 0, buf.length, start);
    return buf.toString('utf8');
  } finally {
    await fh.close();
  }
}

async function isInRecovery(c: pg.Client): Promise<boolean> {
  const r = await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
  return r.rows[0]?.r === true;
}

async function ignoreSqlState(p: Promise<unknown>, states: readonly string[]): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (e instanceof pg.DatabaseError && e.code !== undefined && states.includes(e.code)) return;
    throw e;
  }
}

async function endClient(client: pg.Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.end(),
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          client.connection.stream.destroy();
          resolve();
        }, 1_000);
      }),
    ]);
  } catch {
    // Closing a connection that already failed has nothing left to report; the caller saw the real error.
  } finally {
    clearTimeout(timer);
  }
}

/** SQLSTATE classes that mean "cannot talk to the server right now" rather than "the statement failed". */
function isConnectivitySqlState(code: string): boolean {
  return code.startsWith('08') || code.startsWith('57P') || code.startsWith('53') || code.startsWith('28');
}

function translatePgError(
  e: unknown,
  what: string,
  ctx: { connected: boolean; timedOut: boolean; timeoutMs: number },
): WardenError {
  if (e instanceof WardenError) return e;
  if (ctx.timedOut) {
    return new WardenError('postgres-unavailable', `${what}: no answer within ${ctx.timeoutMs} ms`, { retryable: true, cause: e });
  }
  if (e instanceof pg.DatabaseError && e.code !== undefined) {
    const sqlstate = e.code;
    const connectivity = !ctx.connected || isConnectivitySqlState(sqlstate);
    const code: WardenErrorCode = connectivity ? 'postgres-unavailable' : 'postgres-command-failed';
    return new WardenError(code, `${what}: ${e.message} (SQLSTATE ${sqlstate})`, {
      // Wrong credentials (class 28) do not fix themselves; a server that is starting does.
      retryable: connectivity && !sqlstate.startsWith('28'),
      cause: e,
      details: { sqlstate },
    });
  }
  return new WardenError('postgres-unavailable', `${what}: ${describeError(e)}`, { retryable: true, cause: e });
}
