import type { Lsn } from '../core/lsn.js';
import type { HotStandbyParameter } from './server-status.js';

/** Where a PostgreSQL server listens. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** Credentials of a PostgreSQL role. */
export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** Everything the adapter needs to manage one instance. */
export interface PostgresInstanceConfig {
  /** Member name; also the application_name used for streaming replication. */
  readonly name: string;
  readonly dataDir: string;
  /** Directory of initdb, pg_ctl, postgres, pg_basebackup, pg_rewind, pg_controldata. */
  readonly binDir: string;
  /** listen_addresses and the address other members reach this one on. */
  readonly listen: Endpoint;
  /** Directory for the unix socket (must be writable by the run user). */
  readonly socketDir: string;
  /** OS user that owns the data and runs the server; required when the agent runs as root. */
  readonly runAsUser?: string;
  readonly superuser: Credentials;
  readonly replication: Credentials;
  /** User-chosen parameters (spec's postgresql.parameters); Warden's own required ones win. */
  readonly parameters: Readonly<Record<string, string | number | boolean>>;
  /**
   * Continuous archiving: archive_mode=on with these shell commands. Only a primary archives (a
   * server in recovery does not run archive_command with archive_mode=on); a replica runs
   * restoreCommand when streaming cannot serve it. Absent: archiving stays as the parameters say.
   */
  readonly archive?: ArchiveCommands;
  /**
   * A private postmaster whose roles are not this cluster's yet (a bootstrap from a repository
   * whose passwords are not known): the superuser is trusted on the unix socket, whose directory
   * only PostgreSQL's user (and root) can enter, and every connection to this server goes there.
   */
  readonly trustSuperuserOnSocket?: boolean;
}

/** PostgreSQL's archive_command and restore_command for a backup engine's WAL archive. */
export interface ArchiveCommands {
  readonly archiveCommand: string;
  readonly restoreCommand: string;
}

/** What pg_controldata says about a data directory. */
export interface DataDirState {
  /** 'missing' (no dir), 'empty' (dir without files), 'initialized' (has PG_VERSION + global/pg_control), 'invalid' (files but no pg_control). */
  readonly kind: 'missing' | 'empty' | 'initialized' | 'invalid';
  readonly systemIdentifier?: string;
  /** "Database cluster state" line, e.g. 'in production', 'shut down', 'shut down in recovery', 'in archive recovery'. */
  readonly clusterState?: string;
  /** "Latest checkpoint's TimeLineID". */
  readonly timeline?: number;
  /** "Latest checkpoint location": after a clean shutdown, the shutdown checkpoint record. */
  readonly checkpointLsn?: Lsn;
  /**
   * The hot-standby parameters (max_connections, …) as pg_control holds them: the values the
   * primary last ran with, as far as this directory has replayed its WAL. A standby may not start
   * below them.
   */
  readonly controlSettings?: Readonly<Partial<Record<HotStandbyParameter, number>>>;
}

/** How this server should run next time it is configured. */
export type ReplicationRole =
  | { readonly kind: 'primary' }
  /** A replica without an upstream (no leader known yet) replays local WAL and waits. */
  | { readonly kind: 'replica'; readonly upstream?: Endpoint; readonly slotName?: string };

/** Settings that change while the server runs: the cluster's parameters and the synchronous standbys. */
export interface RuntimeSettings {
  readonly parameters?: Readonly<Record<string, string | number | boolean>>;
  /** The exact synchronous_standby_names value ('' for asynchronous). */
  readonly synchronousStandbyNames?: string;
}

/** A status read of a running server; every LSN that applies to its role. */
export interface ServerStatus {
  readonly inRecovery: boolean;
  readonly timeline: number;
  /** Primary: pg_current_wal_flush_lsn(); replica: the greater of receive and replay LSN. */
  readonly walPosition: Lsn;
  /** Replica only: pg_last_wal_receive_lsn() (undefined when never received). */
  readonly receiveLsn?: Lsn;
  /** Replica only: pg_last_wal_replay_lsn(). */
  readonly replayLsn?: Lsn;
  /** Replica only: true when a WAL receiver is streaming. */
  readonly streaming?: boolean;
  /** Replica only: pg_stat_wal_receiver.received_tli, the timeline the WAL receiver streams (undefined without one). */
  readonly receivedTimeline?: number;
  /** Primary only: application_name of each connected walsender and its flush LSN. */
  readonly replicas?: readonly { readonly applicationName: string; readonly flushLsn?: Lsn; readonly state: string; readonly syncState: string }[];
  readonly systemIdentifier: string;
  /** pending_restart from pg_settings. */
  readonly pendingRestart: boolean;
  /** The hot-standby parameters (HOT_STANDBY_PARAMETERS) the pending restart lowers; absent: none. */
  readonly restartLowers?: readonly string[];
}

/** How far a long copy (pg_basebackup, pg_rewind) has got, as the tool reports it. */
export interface OperationProgress {
  readonly doneBytes: number;
  /** The tool's estimate of the whole (pg_basebackup's grows while it copies); undefined when unknown. */
  readonly totalBytes?: number;
}

/**
 * Options of a long operation (docs/architecture.md, 'How one HA loop runs': one operation in
 * flight). Aborting `signal` ends the child process (its process group) and rejects with
 * 'operation-cancelled'; a start that is cancelled stops the postmaster it started (immediate).
 */
export interface OperationOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: OperationProgress) => void;
}

/** The running state of the managed postmaster process. */
export type ProcessState =
  | { readonly kind: 'stopped' }
  | { readonly kind: 'running'; readonly pid: number }
  | { readonly kind: 'crashed'; readonly exitCode: number | null; readonly signal: string | null };

/**
 * One PostgreSQL instance: files, the postmaster process and status queries. All commands run as
 * `runAsUser` when set. Each call is bounded by its timeout; failures are WardenErrors with code
 * 'postgres-command-failed' (with the command's stderr in the message) or 'postgres-unavailable'.
 */
export interface PostgresInstance {
  readonly config: PostgresInstanceConfig;
  /** Inspects the data directory with pg_controldata, without changing it. */
  inspectDataDir(): Promise<DataDirState>;
  /** initdb (scram-sha-256, data checksums off, wal_log_hints on) into an empty or missing dir. */
  initdb(timeoutMs: number, opts?: OperationOptions): Promise<void>;
  /** Creates or updates the superuser password and the replication role on a running primary. */
  createRoles(timeoutMs: number): Promise<void>;
  /** pg_basebackup from `source` into an empty or missing data dir, streaming WAL. */
  basebackup(source: Endpoint, timeoutMs: number, opts?: OperationOptions): Promise<void>;
  /** Writes warden.conf (ports, replication settings, parameters), pg_hba.conf and standby.signal as `role` says. */
  configure(role: ReplicationRole): Promise<void>;
  /**
   * Replaces the runtime settings (kept for every later configure()), rewrites warden.conf for the
   * role last configured and reloads a running server. Parameters that need a restart show up as
   * pendingRestart in status().
   */
  updateSettings(settings: RuntimeSettings): Promise<void>;
  /** Starts the postmaster as a child that dies with the agent; resolves when it accepts connections. */
  start(timeoutMs: number, opts?: OperationOptions): Promise<void>;
  /**
   * Stops the postmaster: 'fast' streams remaining WAL to standbys (switchover), 'immediate' fences.
   * Aborting `opts.signal` only stops the waiting: the shutdown that was asked for goes on.
   */
  stop(mode: 'fast' | 'immediate', timeoutMs: number, opts?: OperationOptions): Promise<void>;
  /** Current state of the postmaster process (also detects one left running by a previous agent). */
  processState(): Promise<ProcessState>;
  /** Promotes a running standby and waits until it accepts writes. */
  promote(timeoutMs: number): Promise<void>;
  /** Reads status over a fresh connection; throws 'postgres-unavailable' when it cannot connect. */
  status(timeoutMs: number): Promise<ServerStatus>;
  /** Creates missing physical replication slots in `names` and drops other non-active slots this agent manages. */
  syncSlots(names: readonly string[], timeoutMs: number): Promise<void>;
  /** Runs crash recovery in single-user mode so that pg_rewind accepts the directory. */
  recoverCrashed(timeoutMs: number, opts?: OperationOptions): Promise<void>;
  /** pg_rewind from `source`; resolves with pg_rewind's output. */
  rewind(source: Endpoint, timeoutMs: number, opts?: OperationOptions): Promise<string>;
  /** Renames the data dir to `<dataDir>.moved-<timestamp>` and returns the new path (never deletes). */
  moveDataDirAside(): Promise<string>;
  /** Data directories moved aside earlier (`<data_dir>.moved-<time>`), oldest first: never deleted by Warden, so they are reported. */
  listMovedAside(): Promise<string[]>;
  /** Runs one SQL statement as the superuser and returns the rows. */
  query(sql: string, params: readonly unknown[], timeoutMs: number): Promise<readonly Record<string, unknown>[]>;
}
