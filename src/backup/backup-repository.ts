// The backup port: what Warden asks of a backup engine (pgBackRest today, another one later), in
// Warden's own terms. Every call is bounded by a timeout and may be cancelled by an AbortSignal
// (docs/architecture.md, "Code shapes" 7); failures are WardenErrors with the engine's message
// (docs/architecture.md, "Code shapes" 6).

/** The kinds of backup: a whole copy, changes since the last full, changes since the last backup of any type. */
export const BACKUP_TYPES = ['full', 'diff', 'incr'] as const;
export type BackupType = (typeof BACKUP_TYPES)[number];

/** Bounds every call: it finishes, fails, or is cancelled within `timeoutMs` or when `signal` aborts. */
export interface BackupCallOptions {
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

/** One PostgreSQL server on this host, as the engine reaches it: its data dir and its unix socket. */
export interface PgServer {
  readonly dataDir: string;
  readonly port: number;
  readonly socketDir: string;
}

/** Where a backup reads from: the primary always (backup start and stop run there), a standby's files when given. */
export interface BackupSource {
  readonly primary: PgServer;
  /** When set, the data files are copied from this standby and the primary is only asked to start and stop the backup. */
  readonly standby?: PgServer;
}

/** Where recovery of a restored copy stops. `latest` replays every archived WAL segment. */
export type RestoreTarget =
  | { readonly kind: 'latest' }
  /** An instant with its time zone, e.g. `2026-12-01 10:00:00+00`. */
  | { readonly kind: 'time'; readonly time: string; readonly exclusive?: boolean }
  | { readonly kind: 'lsn'; readonly lsn: string; readonly exclusive?: boolean }
  | { readonly kind: 'xid'; readonly xid: string; readonly exclusive?: boolean }
  /** A restore point made with pg_create_restore_point(). */
  | { readonly kind: 'name'; readonly name: string };

/** What to restore and how the restored copy behaves. */
export interface RestoreRequest {
  /** The directory to restore into; it must be empty or missing unless `delta` is set. */
  readonly dataDir: string;
  readonly target: RestoreTarget;
  /** Restore from this backup set (its label); the newest one that fits the target when absent. */
  readonly setLabel?: string;
  /** Restore from this repository (its index), default the first. */
  readonly repo?: number;
  /** Reuse the files already in `dataDir` that match (checksums), copying only what differs. */
  readonly delta?: boolean;
  /**
   * `off`: the restored copy never archives (a drill, a clone being checked — it must push nothing into
   * this cluster's repository); `preserve`: it keeps the archive settings of its configuration.
   */
  readonly archiveMode: 'off' | 'preserve';
  /**
   * Restore as a standby of the running cluster (target `latest` only): recovery replays the
   * archive, then follows the primary it is configured for, and never promotes. For a replica
   * seeded from the repository instead of a base backup of the primary.
   */
  readonly standby?: boolean;
  /**
   * Recover along this timeline's history (pgBackRest --target-timeline=N). An in-place restore
   * names the running cluster's timeline: PostgreSQL's default `latest` would follow the newest
   * history file in the archive, and `current` would stay on the backup's own timeline, which
   * after an earlier in-place restore no longer holds the cluster's present.
   */
  readonly targetTimeline?: number;
  /** Lock and log files of this restore (a scratch restore must not share the cluster's own); absent: the config file's. */
  readonly lockPath?: string;
  readonly logPath?: string;
}

/** One backup set in the repository. */
export interface BackupSet {
  readonly label: string;
  readonly type: BackupType;
  /** Label of the set this one depends on (diff and incr), undefined for a full. */
  readonly prior: string | undefined;
  readonly startedAtMs: number;
  readonly stoppedAtMs: number;
  /** stoppedAtMs − startedAtMs: how long the backup ran. */
  readonly durationMs: number;
  /** Size of the database when it was backed up. */
  readonly databaseBytes: number;
  /** Bytes of the database this set copied (a full copies all of it). */
  readonly copiedBytes: number;
  /** Size in the repository (compressed) of this set with what it references, and of this set alone. */
  readonly repositoryBytes: number;
  readonly repositoryDeltaBytes: number;
  /** The WAL segments needed to make the set consistent. */
  readonly walStart: string;
  readonly walStop: string;
  readonly lsnStart: string | undefined;
  readonly lsnStop: string | undefined;
  /** The engine saw page checksum or other errors while copying (the set is still usable, with a warning). */
  readonly hadErrors: boolean;
}

/** The repository's view of one stanza (one cluster's backups and WAL archive). */
export interface RepositoryInfo {
  readonly stanza: string;
  /** 0 ok; otherwise the engine's status code (2 = no valid backups, 1 = missing stanza, …). */
  readonly statusCode: number;
  readonly statusMessage: string;
  /** A backup (or expire) holds the repository's lock right now. */
  readonly backupRunning: boolean;
  /** The PostgreSQL system identifier(s) the stanza belongs to, as decimal text (exact beyond 2^53). */
  readonly systemIds: readonly string[];
  /** Oldest first. */
  readonly sets: readonly BackupSet[];
  /** The oldest and newest WAL segments in the archive of the current database, when any. */
  readonly archive: { readonly min: string; readonly max: string } | undefined;
}

/**
 * A backup repository for one cluster: creates and checks the stanza, takes backups, lists them,
 * restores one into a directory, and removes what retention no longer keeps.
 */
export interface BackupRepository {
  /** Creates the stanza for `primary`'s cluster, or checks that the existing one belongs to it (idempotent). */
  createStanza(primary: PgServer, opts: BackupCallOptions): Promise<void>;
  /** Checks the configuration end to end: forces a WAL switch on `primary` and waits until that segment is archived. */
  check(primary: PgServer, opts: BackupCallOptions): Promise<void>;
  /**
   * Takes a backup of `type` (into repository `repo`, default the first) and resolves with its set
   * once it is complete in the repository. The set's type may differ: pgBackRest takes a full when
   * a diff or incr has no full to build on.
   */
  backup(source: BackupSource, type: BackupType, opts: BackupCallOptions & { readonly repo?: number }): Promise<BackupSet>;
  /** Reads the stanza's sets and WAL archive range. */
  info(opts: BackupCallOptions): Promise<RepositoryInfo>;
  /** Restores a set into `request.dataDir`, set up to recover to `request.target` when started. */
  restore(request: RestoreRequest, opts: BackupCallOptions): Promise<void>;
  /**
   * Pushes one file of `dataDir`'s pg_wal (a `.history` file, a segment) into the repository now,
   * synchronously: for a server that ran with archiving off and whose new timeline must reach the
   * repository before anything restores from it.
   */
  pushWal(dataDir: string, fileName: string, opts: BackupCallOptions & { readonly lockPath?: string; readonly logPath?: string }): Promise<void>;
  /**
   * Removes the sets (and their WAL) that the retention options no longer keep; with `set`, that
   * set and the sets that depend on it. `repo`: only in that repository (default every one).
   */
  expire(opts: BackupCallOptions & { readonly repo?: number; readonly set?: string }): Promise<void>;
  /**
   * Which of `names` (WAL files as pg_wal names them: segments, `.partial`, `.history`, `.backup`)
   * every repository holds in the current database's archive. Read-only; used just before a
   * promotion (src/backup/archive-continuity.ts), so it must be quick.
   */
  archivedWal(names: readonly string[], opts: BackupCallOptions): Promise<ReadonlySet<string>>;
}
