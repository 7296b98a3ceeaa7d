// Where a backup reads from: a healthy standby by default, the primary only when there is none. Pure.

/** What the choice needs to know about each member (from its record in the DCS). */
export interface MemberHealth {
  readonly name: string;
  readonly isLeader: boolean;
  readonly role: string;
  readonly state: string;
  readonly timeline: number | undefined;
  /** Bytes behind the leader; undefined when unknown. */
  readonly lagBytes: number | undefined;
}

/** The members to back up from, or why there is no backup to take. */
export type BackupSourceChoice =
  | { readonly ok: true; readonly primary: string; readonly standby: string | undefined; readonly reason: string }
  | { readonly ok: false; readonly reason: string };

/**
 * The leader is always part of it (pgBackRest starts and stops the backup there, so it must be
 * reachable); the files come from the streaming replica on the leader's timeline that is least
 * behind (ties: name), so the primary's disks are spared; from the primary itself when none is.
 */
export function chooseBackupSource(members: readonly MemberHealth[]): BackupSourceChoice {
  const leader = members.find((m) => m.isLeader);
  if (leader === undefined) return { ok: false, reason: 'the cluster has no leader: a backup needs a running primary (pgBackRest starts and stops it there)' };
  if (leader.role !== 'primary' || leader.state !== 'running') return { ok: false, reason: `the leader ${leader.name} is ${leader.state}, not a running primary` };
  const standbys = members
    .filter((m) => !m.isLeader && m.role === 'replica' && m.state === 'streaming' && m.timeline === leader.timeline && m.lagBytes !== undefined)
    .sort((a, b) => (a.lagBytes ?? 0) - (b.lagBytes ?? 0) || a.name.localeCompare(b.name, 'en', { numeric: true }));
  const standby = standbys[0];
  if (standby === undefined) return { ok: true, primary: leader.name, standby: undefined, reason: `no streaming standby: backing up from the primary ${leader.name}` };
  return { ok: true, primary: leader.name, standby: standby.name, reason: `backing up from the standby ${standby.name} (${standby.lagBytes ?? 0} bytes behind); the primary ${leader.name} starts and stops it` };
}
