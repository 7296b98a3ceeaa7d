// The health of the WAL archive as the leader sees it (pg_stat_archiver): reported by the agent in
// /metrics and GET /patroni, written to the `backup/archive` key for `warden list`. It never takes
// part in a decision: a failing archive must never cause a failover (docs/architecture.md,
// "Backups"). Pure: rows in, values and sentences out.
import { decode, nullable, num, obj, optional, str, bool } from '../core/decode.js';
import { parseLsn, type Lsn } from '../core/lsn.js';
import { recoveryPointOf, type ArchiverStatus } from './recovery-point.js';

/** pg_stat_archiver with the current WAL position and the server's clock, in one row of text columns. */
export const ARCHIVER_QUERY = `SELECT pg_current_wal_lsn()::text AS lsn, last_archived_wal, (extract(epoch FROM last_archived_time) * 1000)::bigint::text AS archived_ms,
       last_failed_wal, (extract(epoch FROM last_failed_time) * 1000)::bigint::text AS failed_ms, failed_count::text AS failed_count,
       (extract(epoch FROM now()) * 1000)::bigint::text AS now_ms,
       (SELECT min(name) FROM pg_ls_archive_statusdir() WHERE name ~ '^[0-9A-F]{24}\\.ready$') AS oldest_ready
  FROM pg_stat_archiver`;

const ARCHIVER_ROW = obj({
  lsn: str,
  last_archived_wal: nullable(str),
  archived_ms: nullable(str),
  last_failed_wal: nullable(str),
  failed_ms: nullable(str),
  failed_count: str,
  now_ms: str,
  oldest_ready: optional(nullable(str)),
});

/** The ARCHIVER_QUERY row decoded, or why it cannot be. */
export function archiverStatusOfRow(row: unknown): { ok: true; value: ArchiverStatus } | { ok: false; error: string } {
  const d = decode(ARCHIVER_ROW, row);
  if (!d.ok) return { ok: false, error: `pg_stat_archiver: ${d.error}` };
  const r = d.value;
  let lsn: Lsn | undefined;
  try {
    lsn = parseLsn(r.lsn);
  } catch {
    lsn = undefined;
  }
  if (lsn === undefined) return { ok: false, error: `pg_stat_archiver: lsn: ${JSON.stringify(r.lsn)} is not an LSN` };
  const ms = (v: string | null): number | undefined => (v === null ? undefined : Number(v));
  return {
    ok: true,
    value: {
      currentLsn: lsn,
      lastArchivedWal: r.last_archived_wal ?? undefined,
      lastArchivedAtMs: ms(r.archived_ms),
      lastFailedWal: r.last_failed_wal ?? undefined,
      lastFailedAtMs: ms(r.failed_ms),
      failedCount: Number(r.failed_count),
      nowMs: Number(r.now_ms),
      ...(r.oldest_ready === undefined ? {} : { oldestReadyWal: r.oldest_ready === null ? null : r.oldest_ready.replace(/\.ready$/, '') }),
    },
  };
}

/** The archive's health on the leader at one moment (the `backup/archive` key; JSON names are the contract). */
export interface ArchiveHealth {
  /** The member that archives (the leader) and when it looked. */
  readonly member: string;
  readonly observedAtMs: number;
  /** The last archive attempt failed after the last success (PostgreSQL retries; WAL piles up in pg_wal). */
  readonly failing: boolean;
  /** The first failure of the current failing spell as this leader saw it (null while not failing). */
  readonly failingSinceMs: number | null;
  readonly failedCount: number;
  readonly lastArchivedWal: string | null;
  readonly lastArchivedAtMs: number | null;
  readonly lastFailedWal: string | null;
  readonly lastFailedAtMs: number | null;
  /** The recovery point now: WAL bytes not in the repository, and how long they have waited (null: not known). */
  readonly bytesNotArchived: number | null;
  readonly secondsNotArchived: number | null;
}

/**
 * The health from `s`, carrying the start of a failing spell over from `prev`: pg_stat_archiver
 * keeps only the last failure, so the spell starts at the oldest last failure seen since it began.
 */
export function nextArchiveHealth(prev: ArchiveHealth | undefined, member: string, s: ArchiverStatus): ArchiveHealth {
  const point = recoveryPointOf(s);
  const continuing = prev !== undefined && prev.member === member && prev.failing && prev.failingSinceMs !== null;
  return {
    member,
    observedAtMs: s.nowMs,
    failing: point.isFailing,
    failingSinceMs: !point.isFailing ? null : continuing ? prev.failingSinceMs : (s.lastFailedAtMs ?? s.nowMs),
    failedCount: s.failedCount,
    lastArchivedWal: s.lastArchivedWal ?? null,
    lastArchivedAtMs: s.lastArchivedAtMs ?? null,
    lastFailedWal: s.lastFailedWal ?? null,
    lastFailedAtMs: s.lastFailedAtMs ?? null,
    bytesNotArchived: point.bytesNotArchived ?? null,
    secondsNotArchived: point.secondsNotArchived ?? null,
  };
}

const ms = nullable(num({ min: 0 }));

/** The decoder of the `backup/archive` key (invariant 10 in docs/architecture.md). */
export const ARCHIVE_HEALTH = obj({
  member: str,
  observedAtMs: num({ min: 0 }),
  failing: bool,
  failingSinceMs: ms,
  failedCount: num({ min: 0, integer: true }),
  lastArchivedWal: nullable(str),
  lastArchivedAtMs: ms,
  lastFailedWal: nullable(str),
  lastFailedAtMs: ms,
  bytesNotArchived: nullable(num({ min: 0 })),
  secondsNotArchived: nullable(num({ min: 0 })),
});

/** A report older than this is stale: its leader stopped writing it (the agent writes one every few seconds). */
export const ARCHIVE_HEALTH_STALE_MS = 30_000;

/** The line `warden list` prints under its table, e.g. `archive: FAILING since 2026-12-02T02:40:01Z (12 failures) — recovery point 35 s / 50331648 bytes not archived (on demo-1)`. */
export function describeArchiveHealth(h: ArchiveHealth, nowMs: number, leader: string | undefined): string {
  const iso = (v: number | null): string => (v === null ? '?' : new Date(v).toISOString().replace(/\.\d{3}Z$/, 'Z'));
  const point = `recovery point ${h.secondsNotArchived === null ? '?' : h.secondsNotArchived.toFixed(0)} s / ${h.bytesNotArchived ?? '?'} bytes not archived`;
  const where = `on ${h.member}${h.member === leader ? '' : ', not the leader now'}${nowMs - h.observedAtMs > ARCHIVE_HEALTH_STALE_MS ? `, as of ${iso(h.observedAtMs)}` : ''}`;
  if (h.failing) {
    return `archive: FAILING since ${iso(h.failingSinceMs)} (${h.failedCount} failures, last ${h.lastFailedWal ?? '?'}; last success ${iso(h.lastArchivedAtMs)}) — ${point} (${where})`;
  }
  return `archive: ok, last ${h.lastArchivedWal ?? 'none yet'} at ${iso(h.lastArchivedAtMs)} — ${point} (${where})`;
}
