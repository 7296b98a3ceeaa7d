// Backup schedules and their slots (invariant 9 in docs/architecture.md: one schedule slot fires
// once). A slot is one minute a schedule names; whoever runs schedules (the leader's agent until a
// controller exists) claims it with a create-only etcd key before it starts the backup, so a slot
// fires once however often the leadership moves. Pure.
import { bool, decode, list, nullable, num, obj, oneOf, optional, str } from '../core/decode.js';
import type { BackupType } from './backup-repository.js';
import { latestSlot, parseCron, type Cron, type CronError } from './cron.js';

/** The operators' schedule names (spec.backups.pgbackrest.repos[].schedules) and the backup type each takes. */
export const SCHEDULE_TYPES: Readonly<Record<'full' | 'differential' | 'incremental', BackupType>> = { full: 'full', differential: 'diff', incremental: 'incr' };

/** One schedule: a backup of `type` into `repo` at every minute `cron` names (UTC). */
export interface BackupSchedule {
  readonly repo: string;
  readonly type: BackupType;
  readonly cron: Cron;
}

/**
 * How long after its minute a slot may still start: a leader that took over late fires the slot its
 * predecessor had not claimed, but a slot missed for longer (the cluster was down) is skipped
 * rather than run hours late.
 */
export const SLOT_LOOK_BACK_MS = 5 * 60_000;

/** The slot of each schedule that is due at `nowMs` (its newest minute within SLOT_LOOK_BACK_MS), if any. */
export function dueSlots(schedules: readonly BackupSchedule[], nowMs: number, lookBackMs = SLOT_LOOK_BACK_MS): { schedule: BackupSchedule; slotMs: number }[] {
  const due: { schedule: BackupSchedule; slotMs: number }[] = [];
  for (const schedule of schedules) {
    const slotMs = latestSlot(schedule.cron, nowMs, lookBackMs);
    if (slotMs !== undefined) due.push({ schedule, slotMs });
  }
  return due;
}

/** The slot's key under the cluster prefix: `backup/slots/<repo>/<type>/<slot time, ISO-8601 UTC>`. */
export function slotKey(repo: string, type: BackupType, slotMs: number): string {
  return `${slotDir(repo, type)}${new Date(slotMs).toISOString()}`;
}

/** The prefix of one schedule's slot keys (they sort by time). */
export function slotDir(repo: string, type: BackupType): string {
  return `backup/slots/${repo}/${type}/`;
}

/** The record of a slot: who claimed it and how its backup ended (JSON names are the contract). */
export interface SlotRecord {
  readonly member: string;
  readonly slotMs: number;
  readonly claimedAtMs: number;
  /** `claimed` until the backup ends; a claim whose runner died stays `claimed` (never `succeeded`). */
  readonly state: 'claimed' | 'succeeded' | 'failed';
  readonly label: string | null;
  readonly error: string | null;
  readonly finishedAtMs: number | null;
  /** The backup read its files from a standby (pgBackRest backup-standby). */
  readonly fromStandby?: boolean;
}

/** The decoder of a slot key's value (invariant 10 in docs/architecture.md). */
export const SLOT_RECORD = obj({
  member: str,
  slotMs: num({ min: 0 }),
  claimedAtMs: num({ min: 0 }),
  state: oneOf('claimed', 'succeeded', 'failed'),
  label: nullable(str),
  error: nullable(str),
  finishedAtMs: nullable(num({ min: 0 })),
  fromStandby: optional(bool),
});

/** A slot record from its key's text, or why it cannot be read. */
export function decodeSlotRecord(text: string): { ok: true; value: SlotRecord } | { ok: false; error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  return decode(SLOT_RECORD, parsed);
}

/**
 * A claim left `claimed` by another member that no backup holds the lock for any more, and older
 * than `graceMs`: its runner stopped (lost the leadership, crashed) before it recorded an outcome.
 * Such a slot is marked failed, never succeeded, and never run again (it fired once).
 */
export function isAbandonedClaim(r: SlotRecord, me: string, backupRunning: boolean, nowMs: number, graceMs: number): boolean {
  return r.state === 'claimed' && r.member !== me && !backupRunning && nowMs - r.claimedAtMs > graceMs;
}

/** The record of an abandoned claim once marked. */
export function abandonedOutcome(r: SlotRecord, nowMs: number): SlotRecord {
  return { ...r, state: 'failed', error: `interrupted: ${r.member} stopped before it recorded an outcome (it lost the leadership or died); the slot is not run again`, finishedAtMs: nowMs };
}

/** How many slot keys of one schedule are kept (the newest): the agents read the whole cluster prefix every loop. */
export const SLOTS_KEPT = 20;

/** The keys to delete among one schedule's slot keys, so that the newest SLOTS_KEPT remain. */
export function slotKeysToPrune(keys: readonly string[], kept = SLOTS_KEPT): string[] {
  return [...keys].sort().slice(0, Math.max(0, keys.length - kept));
}

/** One schedule as the spec writes it, checked: the repo must be one of the spec's, the cron text valid. */
export function readSchedule(repo: string, kind: keyof typeof SCHEDULE_TYPES, text: string): { ok: true; value: BackupSchedule } | { ok: false; error: CronError } {
  const c = parseCron(text);
  if (!c.ok) return c;
  return { ok: true, value: { repo, type: SCHEDULE_TYPES[kind], cron: c.value } };
}

/** The `backup/schedules` key: where the backup commands run (the local runtime's dir) and the schedules (JSON names are the contract). */
export interface SchedulesRecord {
  readonly dir: string;
  readonly schedules: readonly { readonly repo: string; readonly type: BackupType; readonly cron: string }[];
}

const SCHEDULES_RECORD = obj({ dir: str, schedules: list(obj({ repo: str, type: oneOf('full', 'diff', 'incr'), cron: str })) });

/** The schedules from the `backup/schedules` key's text, every cron parsed, or why not. */
export function decodeSchedules(text: string): { ok: true; value: { dir: string; schedules: BackupSchedule[] } } | { ok: false; error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  const d = decode(SCHEDULES_RECORD, parsed);
  if (!d.ok) return d;
  const schedules: BackupSchedule[] = [];
  for (const [i, s] of d.value.schedules.entries()) {
    const c = parseCron(s.cron);
    if (!c.ok) return { ok: false, error: `schedules[${i}].cron: ${c.error.message}` };
    schedules.push({ repo: s.repo, type: s.type, cron: c.value });
  }
  return { ok: true, value: { dir: d.value.dir, schedules } };
}
