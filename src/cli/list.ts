import Table from 'cli-table3';
import pc from 'picocolors';
import { ARCHIVE_HEALTH, ARCHIVE_HEALTH_STALE_MS, describeArchiveHealth, describeLastBackup, LAST_BACKUP, type ArchiveHealth, type LastBackup } from '../backup/index.js';
import { decodeJson } from '../core/decode.js';
import { lagBytes, parseLsn } from '../core/lsn.js';
import { KEYS, type ClusterView, type MemberOperationRecord } from '../ha/index.js';

/** One row of `warden list --format json` (names are part of the public contract). */
export interface ListMember {
  readonly name: string;
  readonly role: 'leader' | 'sync_standby' | 'replica';
  readonly state: string;
  readonly host: string;
  readonly port: number;
  readonly timeline: number | null;
  readonly lagBytes: number | null;
  readonly apiUrl: string;
  readonly reason: { readonly code: string; readonly message: string } | null;
  readonly pendingRestart: boolean;
  /** When a scheduled restart is due (ISO-8601), or null. */
  readonly scheduledRestart: string | null;
  /** The operation the member's agent runs (a clone, a rewind, a start), with its progress, or null. */
  readonly operation: ListOperation | null;
}

/** A member's operation in flight in `warden list`. */
export interface ListOperation {
  readonly kind: string;
  readonly startedBy: string;
  readonly startedAt: string;
  readonly runningForS: number;
  readonly source: string | null;
  readonly doneBytes: number | null;
  readonly totalBytes: number | null;
  /** doneBytes / totalBytes in percent (capped at 100: pg_basebackup's total is an estimate), or null. */
  readonly percent: number | null;
}

function listOperation(op: MemberOperationRecord | undefined, nowMs: number): ListOperation | null {
  if (op === undefined) return null;
  const percent = op.doneBytes !== undefined && op.totalBytes !== undefined && op.totalBytes > 0 ? Math.min(100, Math.floor((op.doneBytes / op.totalBytes) * 100)) : null;
  return {
    kind: op.kind,
    startedBy: op.startedBy,
    startedAt: new Date(op.startedAtMs).toISOString(),
    runningForS: Math.max(0, Math.round((nowMs - op.startedAtMs) / 1000)),
    source: op.source ?? null,
    doneBytes: op.doneBytes ?? null,
    totalBytes: op.totalBytes ?? null,
    percent,
  };
}

/** "clone from demo-1 45% (460 of 1024 MB), 12 s". */
export function describeListOperation(op: ListOperation): string {
  const mb = (b: number): string => String(Math.round(b / 1048576));
  const size = op.doneBytes === null ? '' : op.totalBytes === null ? ` ${mb(op.doneBytes)} MB` : ` ${op.percent ?? 0}% (${mb(op.doneBytes)} of ${mb(op.totalBytes)} MB)`;
  return `${op.kind}${op.source === null ? '' : ` from ${op.source}`}${size}, ${op.runningForS} s`;
}

/** `warden list --format json`. */
export interface ListOutput {
  readonly cluster: string;
  readonly systemIdentifier: string | null;
  readonly members: readonly ListMember[];
  /** Maintenance mode (`warden pause`): nothing is started, stopped or promoted automatically. */
  readonly paused: boolean;
  /** Keys of the cluster that failed their decoder (`members/ghost`, `sync`, `config`), with why. */
  readonly invalidRecords: readonly { readonly key: string; readonly why: string }[];
  /**
   * The WAL archive as the leader's agent last reported it (`backup/archive`), with the sentence
   * `warden list` prints; null when the cluster does not archive (or no leader reported yet).
   */
  readonly archive: (ArchiveHealth & { readonly stale: boolean; readonly line: string }) | { readonly error: string } | null;
  /** The last completed backup (`backup/last`), with the line `warden list` prints; null when none was recorded. */
  readonly lastBackup: (LastBackup & { readonly ageSeconds: number; readonly line: string }) | { readonly error: string } | null;
}

/** The `lastBackup` field of ListOutput from the `backup/last` key's text (undefined: no key). */
export function lastBackupReportOf(text: string | undefined, nowMs: number): ListOutput['lastBackup'] {
  if (text === undefined) return null;
  const d = decodeJson(LAST_BACKUP, text);
  if (!d.ok) return { error: `invalid record ${KEYS.backupLast}: ${d.error}` };
  return { ...d.value, ageSeconds: Math.max(0, (nowMs - d.value.finishedAtMs) / 1000), line: describeLastBackup(d.value, nowMs) };
}

/** The `archive` field of ListOutput from the `backup/archive` key's text (undefined: no key). */
export function archiveReportOf(text: string | undefined, leader: string | undefined, nowMs: number): ListOutput['archive'] {
  if (text === undefined) return null;
  const d = decodeJson(ARCHIVE_HEALTH, text);
  if (!d.ok) return { error: `invalid record ${KEYS.backupArchive}: ${d.error}` };
  return { ...d.value, stale: nowMs - d.value.observedAtMs > ARCHIVE_HEALTH_STALE_MS || d.value.member !== leader, line: describeArchiveHealth(d.value, nowMs, leader) };
}

/** Builds the list rows from a cluster view: lag against the leader's last published position. */
export function listFromView(cluster: string, view: ClusterView, archive: ListOutput['archive'] = null, nowMs: number = Date.now()): ListOutput {
  const leaderName = view.leader?.name;
  const leaderRecord = leaderName !== undefined ? view.members.get(leaderName) : undefined;
  const leaderPos = leaderRecord?.walPosition !== undefined ? parseLsn(leaderRecord.walPosition) : view.status?.lsn;
  const members = [...view.members.values()]
    .sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }))
    .map((m): ListMember => {
      const isLeader = m.name === leaderName;
      const isSync = view.config.synchronous_mode !== 'off' && view.sync !== undefined && view.sync.leader === leaderName && view.sync.members.includes(m.name);
      const lag = isLeader ? 0 : m.walPosition !== undefined && leaderPos !== undefined ? lagBytes(leaderPos, parseLsn(m.walPosition)) : null;
      return {
        name: m.name,
        role: isLeader ? 'leader' : isSync ? 'sync_standby' : 'replica',
        state: m.state,
        host: m.host,
        port: m.port,
        timeline: m.timeline ?? null,
        lagBytes: lag,
        apiUrl: m.apiUrl,
        reason: m.reason ?? null,
        pendingRestart: m.pendingRestart === true,
        scheduledRestart: m.scheduledRestart?.at ?? null,
        operation: listOperation(m.operation, nowMs),
      };
    });
  // A member key that does not decode still names a member someone expects to see: show it, with why.
  const invalidMembers = [...view.invalid.entries()]
    .filter(([key]) => key.startsWith(KEYS.membersDir) && !view.members.has(key.slice(KEYS.membersDir.length)))
    .map(([key, why]): ListMember => ({
      name: key.slice(KEYS.membersDir.length),
      role: 'replica',
      state: `invalid record: ${why}`,
      host: '',
      port: 0,
      timeline: null,
      lagBytes: null,
      apiUrl: '',
      reason: null,
      pendingRestart: false,
      scheduledRestart: null,
      operation: null,
    }));
  const invalidRecords = [...view.invalid.entries()].map(([key, why]) => ({ key, why }));
  if (view.configError !== undefined) invalidRecords.push({ key: KEYS.config, why: view.configError });
  const sysid = view.initialize?.value;
  return {
    cluster,
    systemIdentifier: sysid === undefined || sysid === '' ? null : sysid,
    paused: view.config.pause,
    members: [...members, ...invalidMembers].sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true })),
    invalidRecords,
    archive,
    lastBackup: null,
  };
}

/** The human table: header with cluster and system identifier, one row per member. */
export function renderList(out: ListOutput, opts: { extended: boolean; color: boolean; paused?: boolean }): string {
  const c = opts.color ? pc : pc.createColors(false);
  const head = ['Member', 'Host', 'Role', 'State', 'TL', 'Lag (bytes)', 'Pending restart'];
  if (opts.extended) head.push('Reason');
  const table = new Table({ head, style: { head: [], border: [] } });
  for (const m of out.members) {
    const role = m.role === 'leader' ? c.bold(c.green('Leader')) : m.role === 'sync_standby' ? 'Sync Standby' : 'Replica';
    const stateText = m.operation === null ? m.state : `${m.state} (${describeListOperation(m.operation)})`;
    const state = m.state === 'running' || m.state === 'streaming' ? stateText : c.yellow(stateText);
    const lag = m.lagBytes === null ? 'unknown' : m.role === 'leader' ? '' : String(m.lagBytes);
    const restart = [m.pendingRestart ? '*' : '', m.scheduledRestart === null ? '' : `scheduled ${m.scheduledRestart}`].filter((x) => x !== '').join(' ');
    const row = [m.name, m.port === 0 ? '' : `${m.host}:${m.port}`, role, state, m.timeline === null ? '' : String(m.timeline), lag, restart];
    if (opts.extended) row.push(m.reason === null ? '' : `${m.reason.code}: ${m.reason.message}`);
    table.push(row);
  }
  const header = `+ Cluster: ${out.cluster} (${out.systemIdentifier ?? 'not initialized'})${opts.paused === true || out.paused ? ' — maintenance mode (paused)' : ''}`;
  const others = out.invalidRecords.filter((r) => !r.key.startsWith(KEYS.membersDir)).map((r) => c.yellow(`! invalid record ${r.key}: ${r.why}`));
  const archive = out.archive === null ? [] : 'error' in out.archive ? [c.yellow(`! ${out.archive.error}`)] : [out.archive.failing ? c.red(out.archive.line) : out.archive.line];
  const last = out.lastBackup === null ? [] : 'error' in out.lastBackup ? [c.yellow(`! ${out.lastBackup.error}`)] : [out.lastBackup.line];
  return [header, table.toString(), ...archive, ...last, ...others].join('\n');
}
