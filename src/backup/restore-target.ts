// The target of `warden restore`, read from the command line and checked against the repository
// before anything is restored (bad input: a clear error, exit 2, nothing changed). Pure.
import type { Lsn } from '../core/lsn.js';
import { parseLsn } from '../core/lsn.js';
import type { RepositoryInfo, RestoreTarget } from './backup-repository.js';
import { segmentEndLsn } from './recovery-point.js';

/** The target options as given: exactly one of them must be set. */
export interface RestoreTargetOptions {
  readonly time?: string;
  readonly lsn?: string;
  readonly xid?: string;
  readonly name?: string;
  readonly latest?: boolean;
  readonly exclusive?: boolean;
}

/**
 * An instant with its time zone, as PostgreSQL reads recovery_target_time: `2026-12-02 03:04:05`
 * or with `T`, optional fraction (up to microseconds), then `Z` or `±HH[:MM]`. The text is passed
 * on as given (a Date would drop the microseconds commit times carry).
 */
const TIME = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?(Z|[+-]\d{2}(?::?\d{2})?)$/;

/** The instant of a target time text in ms (fraction truncated), or undefined when it is not one. */
export function targetTimeMs(text: string): number | undefined {
  const m = TIME.exec(text.trim());
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  let offsetMs = 0;
  let z = 'Z';
  if (zone !== undefined && zone !== 'Z') {
    const digits = zone.slice(1).replace(':', '');
    const hh = digits.slice(0, 2);
    const mm = digits.slice(2, 4) || '00';
    z = `${zone[0] ?? '+'}${hh}:${mm}`;
    offsetMs = (zone.startsWith('-') ? -1 : 1) * (Number(hh) * 3600_000 + Number(mm) * 60_000);
  }
  const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s ?? '00'}${(frac ?? '').slice(0, 4)}${z}`);
  if (!Number.isFinite(ms)) return undefined;
  // Date.parse rolls 2026-02-30 over to March: a date that does not exist is not a target.
  const local = new Date(ms + offsetMs);
  if (local.getUTCDate() !== Number(d) || local.getUTCMonth() + 1 !== Number(mo) || local.getUTCHours() !== Number(h)) return undefined;
  return ms;
}

/** The restore target from the options, or the sentence that says what is wrong with them. */
export function parseRestoreTarget(o: RestoreTargetOptions): { ok: true; value: RestoreTarget } | { ok: false; error: string } {
  const given = (['time', 'lsn', 'xid', 'name'] as const).filter((k) => o[k] !== undefined);
  const count = given.length + (o.latest === true ? 1 : 0);
  if (count !== 1) return { ok: false, error: `give exactly one target: --time T, --lsn L, --xid X, --name N or --latest (got ${count === 0 ? 'none' : [...given.map((g) => `--${g}`), ...(o.latest === true ? ['--latest'] : [])].join(' and ')})` };
  const exclusive = o.exclusive === true;
  if (exclusive && (o.latest === true || o.name !== undefined)) return { ok: false, error: '--exclusive applies to --time, --lsn and --xid only' };
  if (o.latest === true) return { ok: true, value: { kind: 'latest' } };
  if (o.time !== undefined) {
    if (targetTimeMs(o.time) === undefined) return { ok: false, error: `--time ${JSON.stringify(o.time)}: not an instant with a time zone, e.g. 2026-12-02T03:04:05Z or "2026-12-02 03:04:05.123456+00"` };
    return { ok: true, value: { kind: 'time', time: o.time.trim(), exclusive } };
  }
  if (o.lsn !== undefined) {
    try {
      parseLsn(o.lsn);
    } catch {
      return { ok: false, error: `--lsn ${JSON.stringify(o.lsn)}: not an LSN, e.g. 0/3000060` };
    }
    return { ok: true, value: { kind: 'lsn', lsn: o.lsn.trim(), exclusive } };
  }
  if (o.xid !== undefined) {
    if (!/^\d{1,20}$/.test(o.xid.trim()) || BigInt(o.xid.trim()) < 3n) return { ok: false, error: `--xid ${JSON.stringify(o.xid)}: not a transaction id (a whole number from 3)` };
    return { ok: true, value: { kind: 'xid', xid: o.xid.trim(), exclusive } };
  }
  const name = o.name ?? '';
  if (name === '' || name.length > 63) return { ok: false, error: `--name ${JSON.stringify(name)}: a restore point name (pg_create_restore_point) has 1 to 63 characters` };
  return { ok: true, value: { kind: 'name', name } };
}

/** What is known of the newest WAL: the end of the archive's newest segment and when the leader last archived. */
export interface ArchiveReach {
  readonly lastArchivedAtMs: number | undefined;
  readonly nowMs: number;
}

/**
 * Why `target` cannot be reached from what the repository holds, or undefined when it can (as
 * far as can be told before restoring): before the end of the first backup, after the newest
 * archived WAL, or no backup at all.
 */
export function unreachableTarget(target: RestoreTarget, info: RepositoryInfo, reach: ArchiveReach): string | undefined {
  const first = info.sets[0];
  if (first === undefined) return `the repository of stanza ${info.stanza} has no backup yet: run \`warden backup --wait\` first`;
  const iso = (ms: number): string => new Date(ms).toISOString();
  switch (target.kind) {
    case 'time': {
      const t = targetTimeMs(target.time) ?? 0;
      // A backup is consistent only from its end: an earlier instant has no backup to start from.
      if (t < first.stoppedAtMs) return `--time ${target.time} is before the end of the first backup (${first.label}, ${iso(first.stoppedAtMs)}): nothing to restore from`;
      if (t > reach.nowMs) return `--time ${target.time} is in the future (now ${iso(reach.nowMs)})`;
      if (reach.lastArchivedAtMs !== undefined && t > reach.lastArchivedAtMs) return `--time ${target.time} is after the latest WAL in the repository (last archived ${iso(reach.lastArchivedAtMs)}): recovery could not reach it`;
      return undefined;
    }
    case 'lsn': {
      const l: Lsn = parseLsn(target.lsn);
      const stop = first.lsnStop === undefined ? undefined : parseLsn(first.lsnStop);
      if (stop !== undefined && l < stop) return `--lsn ${target.lsn} is before the end of the first backup (${first.label}, ${first.lsnStop ?? '?'}): nothing to restore from`;
      const end = info.archive === undefined ? undefined : segmentEndLsn(info.archive.max);
      if (end !== undefined && l > end) return `--lsn ${target.lsn} is after the latest WAL in the repository (${info.archive?.max ?? '?'}): recovery could not reach it`;
      return undefined;
    }
    case 'xid':
    case 'name':
    case 'latest':
      // Only recovery can tell where an xid or a restore point is; PostgreSQL stops with an error if it never comes.
      return undefined;
  }
}

/** Recovery that replayed every archived record without reaching its target (PostgreSQL's FATAL). */
export interface RecoveryEndedShort {
  /** Start LSN of the last record replayed ("redo done at"), when the log says. */
  readonly redoDoneLsn: string | undefined;
  /** Commit time of the last transaction replayed ("last completed transaction was at log time"). */
  readonly lastCommitAt: string | undefined;
}

/**
 * Reads a postmaster's log of a recovery that stopped with "recovery ended before configured
 * recovery target was reached": every archived record was replayed and none reached the target.
 * For a time target that the archive covers, this is a quiet period — no commit after the target
 * anywhere in the archive — and the state at the end of the replayed WAL is the state at the
 * target (docs/architecture.md, "Point-in-time recovery"). Undefined when the log says otherwise.
 */
export function recoveryEndedShort(log: string): RecoveryEndedShort | undefined {
  if (!/recovery ended before configured recovery target was reached/.test(log)) return undefined;
  const redo = [...log.matchAll(/redo done at ([0-9A-F]{1,8}\/[0-9A-F]{1,8})/g)].at(-1)?.[1];
  const last = [...log.matchAll(/last completed transaction was at log time (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?[+-]\d{2}(?::?\d{2})?)/g)].at(-1)?.[1];
  return { redoDoneLsn: redo, lastCommitAt: last };
}
