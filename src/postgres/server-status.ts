// The status queries LocalPostgres runs on its kept session, the rows they return, and how those
// rows become a ServerStatus. Pure: the queries are text, the mapping has no I/O.
import { parseLsn, type Lsn } from '../core/lsn.js';
import type { ServerStatus } from './postgres.js';

/** Asked first, on every server: recovery, system identifier, pending restart. */
export const BASE_STATUS_SQL = `SELECT pg_is_in_recovery() AS in_recovery,
                (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
                EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart) AS pending_restart`;

/** The row of BASE_STATUS_SQL. */
export interface BaseStatusRow {
  readonly in_recovery: boolean;
  readonly system_identifier: string;
  readonly pending_restart: boolean;
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
