// The status queries LocalPostgres runs on its kept session, the rows they return, and how those
// rows become a ServerStatus. Pure: the queries are text, the mapping has no I/O.
import { parseLsn, type Lsn } from '../core/lsn.js';
import type { ServerStatus } from './postgres.js';

/**
 * The parameters a standby must have at least as high as its primary (hot standby refuses to run
 * below the primary's values): lowering one needs the primary restarted first.
 */
export const HOT_STANDBY_PARAMETERS = ['max_connections', 'max_locks_per_transaction', 'max_prepared_transactions', 'max_wal_senders', 'max_worker_processes'] as const;

/** One of HOT_STANDBY_PARAMETERS. */
export type HotStandbyParameter = (typeof HOT_STANDBY_PARAMETERS)[number];

/**
 * Asked first, on every server: recovery, system identifier, pending restart, and which of the
 * hot-standby parameters the pending restart lowers (the last line for it in the configuration
 * files against the running value; pg_file_settings reads the files, so only while a restart is
 * pending).
 */
export const BASE_STATUS_SQL = `SELECT pg_is_in_recovery() AS in_recovery,
                (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
                EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart) AS pending_restart,
                CASE WHEN EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart) THEN
                  ARRAY(SELECT s.name FROM pg_settings s
                    JOIN LATERAL (SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name ORDER BY f.seqno DESC LIMIT 1) f ON true
                    WHERE s.pending_restart AND s.name IN (${HOT_STANDBY_PARAMETERS.map((n) => `'${n}'`).join(', ')})
                      AND f.setting ~ '^[0-9]+$' AND f.setting::bigint < s.setting::bigint
                    ORDER BY s.name)
                ELSE ARRAY[]::text[] END AS restart_lowers`;

/** The row of BASE_STATUS_SQL. */
export interface BaseStatusRow {
  readonly in_recovery: boolean;
  readonly system_identifier: string;
  readonly pending_restart: boolean;
  /** Absent in rows from an older query (tests). */
  readonly restart_lowers?: readonly string[];
}

/** A primary's flushed position and the WAL file being written (whose name carries the timeline). */
export const PRIMARY_WAL_SQL = `SELECT pg_current_wal_flush_lsn()::text AS flush, pg_walfile_name(pg_current_wal_lsn()) AS walfile`;

/** The row of PRIMARY_WAL_SQL. */
export interface PrimaryWalRow {
  readonly flush: string;
  readonly walfile: string;
}

/** A primary's connected walsenders. */
export const REPLICATION_SQL = `SELECT application_name, flush_lsn::text AS flush_lsn, state, sync_state FROM pg_stat_replication ORDER BY application_name`;

/** A row of REPLICATION_SQL. */
export interface ReplicationRow {
  readonly application_name: string;
  readonly flush_lsn: string | null;
  readonly state: string;
  readonly sync_state: string;
}

/** A standby's receive and replay positions and the three places its timeline shows. */
export const RECOVERY_STATUS_SQL = `SELECT pg_last_wal_receive_lsn()::text AS receive,
                pg_last_wal_replay_lsn()::text AS replay,
                (SELECT status FROM pg_stat_wal_receiver) AS wr_status,
                (SELECT received_tli FROM pg_stat_wal_receiver) AS received_tli,
                (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli,
                (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir()
                  WHERE name ~ '^[0-9A-F]{8}\\.history$') AS history_tli`;

/** The row of RECOVERY_STATUS_SQL. */
export interface RecoveryStatusRow {
  readonly receive: string | null;
  readonly replay: string | null;
  readonly wr_status: string | null;
  readonly received_tli: number | null;
  readonly checkpoint_tli: number;
  readonly history_tli: number | null;
}

function lowers(base: BaseStatusRow): { restartLowers?: readonly string[] } {
  return base.restart_lowers === undefined || base.restart_lowers.length === 0 ? {} : { restartLowers: base.restart_lowers };
}

/** The timeline in a WAL file name (its first 8 hex digits). */
export function timelineOfWalFile(walfile: string): number {
  return Number.parseInt(walfile.slice(0, 8), 16);
}

/**
 * A primary's status. The timeline comes from the WAL file being written: pg_control_checkpoint()
 * lags after a promotion until the next checkpoint.
 */
export function primaryStatus(base: BaseStatusRow, wal: PrimaryWalRow, replicas: readonly ReplicationRow[]): ServerStatus {
  return {
    systemIdentifier: base.system_identifier,
    pendingRestart: base.pending_restart,
    ...lowers(base),
    inRecovery: false,
    timeline: timelineOfWalFile(wal.walfile),
    walPosition: parseLsn(wal.flush),
    replicas: replicas.map((r) => ({
      applicationName: r.application_name,
      ...(r.flush_lsn === null ? {} : { flushLsn: parseLsn(r.flush_lsn) }),
      state: r.state,
      syncState: r.sync_state,
    })),
  };
}

/** A standby's status; its WAL position is the greater of what it received and what it replayed. */
export function standbyStatus(base: BaseStatusRow, r: RecoveryStatusRow): ServerStatus {
  const receiveLsn = r.receive === null ? undefined : parseLsn(r.receive);
  const replayLsn = r.replay === null ? undefined : parseLsn(r.replay);
  const walPosition: Lsn = maxLsn(receiveLsn ?? 0n, replayLsn ?? 0n);
  return {
    systemIdentifier: base.system_identifier,
    pendingRestart: base.pending_restart,
    ...lowers(base),
    inRecovery: true,
    // The checkpoint's timeline lags a timeline switch until the next restartpoint, and
    // received_tli vanishes with the WAL receiver (exactly when the leader is lost). A standby
    // with recovery_target_timeline=latest follows the newest history file in pg_wal, so the
    // highest of the three is the timeline its WAL is on; a stale value would wrongly trip the
    // stale-timeline guard of the leader race.
    timeline: Math.max(r.received_tli ?? 0, r.checkpoint_tli, r.history_tli ?? 0),
    walPosition,
    ...(receiveLsn === undefined ? {} : { receiveLsn }),
    ...(replayLsn === undefined ? {} : { replayLsn }),
    streaming: r.wr_status === 'streaming',
    ...(r.received_tli !== null && r.received_tli > 0 ? { receivedTimeline: r.received_tli } : {}),
  };
}

function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
