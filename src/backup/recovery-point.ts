// How much acknowledged WAL is not in the repository yet: the recovery point if the cluster were
// lost now (invariant 9 in docs/architecture.md). Pure: pg_stat_archiver's row in, figures out.
import type { Lsn } from '../core/lsn.js';

/** PostgreSQL's default WAL segment size (initdb --wal-segsize 16). */
export const WAL_SEGMENT_BYTES = 16 * 1024 * 1024;

/** The LSN just past the end of WAL segment `name` (`TTTTTTTTXXXXXXXXYYYYYYYY`, optionally with a suffix such as `.partial`), or undefined for other archive files (`.history`). */
export function segmentEndLsn(name: string, segmentBytes = WAL_SEGMENT_BYTES): Lsn | undefined {
  const m = /^[0-9A-F]{8}([0-9A-F]{8})([0-9A-F]{8})(?:\.|$)/i.exec(name);
  if (m === null || m[1] === undefined || m[2] === undefined) return undefined;
  const perLogId = 0x1_0000_0000n / BigInt(segmentBytes);
  const segNo = BigInt(`0x${m[1]}`) * perLogId + BigInt(`0x${m[2]}`);
  return (segNo + 1n) * BigInt(segmentBytes);
}

/** The primary's archiver facts, read in one query (pg_stat_archiver and pg_current_wal_lsn()). */
export interface ArchiverStatus {
  readonly currentLsn: Lsn;
  readonly lastArchivedWal: string | undefined;
  readonly lastArchivedAtMs: number | undefined;
  readonly lastFailedWal: string | undefined;
  readonly lastFailedAtMs: number | undefined;
  readonly failedCount: number;
  readonly nowMs: number;
  /**
   * The oldest segment waiting to be archived (`.ready` in pg_wal/archive_status), null when none
   * waits; undefined when not read. More exact than the last archived one: after a promotion the
   * archiver may push older segments last (those archive continuity marked again).
   */
  readonly oldestReadyWal?: string | null;
}

/** The recovery point now, as `warden backups` reports it. */
export interface RecoveryPoint {
  /**
   * WAL written on the primary past the end of the newest archived segment; undefined when that is
   * not known (nothing archived yet, or the last archived file was a timeline history file).
   */
  readonly bytesNotArchived: number | undefined;
  /**
   * How long that WAL has waited: the time since the last segment was archived while there is WAL
   * after it (0 when there is none); undefined when nothing was ever archived.
   */
  readonly secondsNotArchived: number | undefined;
  /** The last archive attempt failed after the last success: the archive is stuck (it retries). */
  readonly isFailing: boolean;
}

/** The recovery point from the archiver's status. */
export function recoveryPointOf(s: ArchiverStatus, segmentBytes = WAL_SEGMENT_BYTES): RecoveryPoint {
  let bytes: number | undefined;
  if (s.oldestReadyWal === null) {
    // Nothing waits: only the segment being written is not in the repository yet.
    bytes = Number(s.currentLsn % BigInt(segmentBytes));
  } else {
    const readyEnd = s.oldestReadyWal === undefined ? undefined : segmentEndLsn(s.oldestReadyWal, segmentBytes);
    // From the start of the oldest waiting segment, or (not read) from the end of the last archived one.
    const from = readyEnd !== undefined ? readyEnd - BigInt(segmentBytes) : s.lastArchivedWal === undefined ? undefined : segmentEndLsn(s.lastArchivedWal, segmentBytes);
    bytes = from === undefined ? undefined : Math.max(0, Number(s.currentLsn - from));
  }
  const isFailing = s.lastFailedAtMs !== undefined && (s.lastArchivedAtMs === undefined || s.lastFailedAtMs > s.lastArchivedAtMs);
  let seconds: number | undefined;
  if (bytes === 0) seconds = 0;
  // After a promotion the last archived file is the .history: the time since is still an upper bound.
  else if (s.lastArchivedAtMs !== undefined) seconds = Math.max(0, (s.nowMs - s.lastArchivedAtMs) / 1000);
  return { bytesNotArchived: bytes, secondsNotArchived: seconds, isFailing };
}
