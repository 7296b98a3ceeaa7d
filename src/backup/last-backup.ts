// The last backup that completed, as `warden backup` (manual or scheduled) records it in the
// `backup/last` key: `warden list` prints it and the leader's /metrics exports its age, size and
// duration. Like the archive's health it is reported, never used by a decision. Pure.
import { bool, num, obj, oneOf, str, type DecodedType } from '../core/decode.js';
import { BACKUP_TYPES } from './backup-repository.js';

/** The decoder of the `backup/last` key (invariant 10 in docs/architecture.md: decode at the edge). */
export const LAST_BACKUP = obj({
  label: str,
  type: oneOf(...BACKUP_TYPES),
  /** The member it read, and whether that was a standby. */
  from: str,
  fromStandby: bool,
  databaseBytes: num({ min: 0 }),
  repositoryBytes: num({ min: 0 }),
  durationSeconds: num({ min: 0 }),
  finishedAtMs: num({ min: 0 }),
});

export type LastBackup = DecodedType<typeof LAST_BACKUP>;

/** "12 s", "4 min", "3.5 h", "2.0 d": how long ago, for a human. */
export function describeAge(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 120) return `${s.toFixed(0)} s`;
  if (s < 7200) return `${(s / 60).toFixed(0)} min`;
  if (s < 172_800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86_400).toFixed(1)} d`;
}

/** The line `warden list` prints, e.g. `last backup: 20261202-003250F full from bk-1 (a standby): 26.6 MB in 4 s, finished 2026-12-02T00:32:54Z (3 min ago)`. */
export function describeLastBackup(b: LastBackup, nowMs: number): string {
  const at = new Date(b.finishedAtMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return `last backup: ${b.label} ${b.type} from ${b.from} (${b.fromStandby ? 'a standby' : 'the primary'}): ${(b.databaseBytes / 1e6).toFixed(1)} MB in ${b.durationSeconds.toFixed(0)} s, finished ${at} (${describeAge(nowMs - b.finishedAtMs)} ago)`;
}
