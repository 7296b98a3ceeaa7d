import type { SyncState } from './cluster-view.js';
import type { DynamicConfig } from './dynamic-config.js';

/** A synchronous standby set: the members and, in quorum mode, how many of them each commit waits for. */
export interface SyncSet {
  readonly members: readonly string[];
  readonly quorum: number;
}

/** One step towards the desired synchronous set; at most one per loop, in the order that keeps commits safe. */
export type SyncStep =
  | { readonly kind: 'write-sync-key'; readonly set: SyncSet }
  | { readonly kind: 'set-standby-names'; readonly set: SyncSet; readonly value: string }
  | { readonly kind: 'none' };

/** A replica as the leader sees it in pg_stat_replication, joined with its member record. */
export interface SyncCandidate {
  readonly name: string;
  readonly streaming: boolean;
  /** pg_stat_replication.sync_state: 'sync', 'quorum', 'potential' or 'async'. */
  readonly syncState: string;
  readonly nosync: boolean;
  /** Named in the controller's `leaving` key: about to be moved off its node or removed. */
  readonly leaving: boolean;
  readonly lagBytes: number;
}

const same = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x) => b.includes(x));
const subset = (a: readonly string[], b: readonly string[]): boolean => a.every((x) => b.includes(x));

/** PostgreSQL's identifier quoting for member names in synchronous_standby_names. */
function quoteName(n: string): string {
  return `"${n.replace(/"/g, '""')}"`;
}

/**
 * The synchronous_standby_names value for a set. 'on': FIRST n of exactly n members, so every commit
 * is on every member of the set. 'quorum': ANY k of the set. Strict mode with no member: '*' (some
 * standby must acknowledge, so commits block rather than run with none).
 */
export function standbyNamesFor(mode: DynamicConfig['synchronous_mode'], set: SyncSet, strict: boolean): string {
  if (set.members.length === 0) return strict ? '*' : '';
  const list = [...set.members].sort().map(quoteName).join(', ');
  return mode === 'quorum' ? `ANY ${set.quorum} (${list})` : `FIRST ${set.members.length} (${list})`;
}

/**
 * The set the leader wants: healthy streaming candidates not tagged nosync; members that stay before
 * members the controller is about to move or remove (so that taking one away never blocks a commit
 * in strict mode), then current members, then the least lag. In quorum mode the leaving ones are
 * left out while enough others stream.
 */
export function desiredSyncSet(config: DynamicConfig, candidates: readonly SyncCandidate[], current: readonly string[]): SyncSet {
  const eligible = candidates.filter((c) => c.streaming && !c.nosync);
  const ranked = [...eligible].sort(
    (a, b) => Number(a.leaving) - Number(b.leaving) || Number(current.includes(b.name)) - Number(current.includes(a.name)) || a.lagBytes - b.lagBytes || a.name.localeCompare(b.name),
  );
  const n = Math.max(1, config.synchronous_node_count);
  if (config.synchronous_mode === 'quorum') {
    // Quorum: every healthy candidate joins the set; each commit waits for n of them.
    const staying = ranked.filter((c) => !c.leaving);
    const members = (staying.length >= n ? staying : ranked).map((c) => c.name);
    return { members, quorum: Math.min(n, Math.max(1, members.length)) };
  }
  const members = ranked.slice(0, n).map((c) => c.name);
  return { members, quorum: members.length };
}

/**
 * The next safe step from (key, what PostgreSQL runs) to `desired` (invariant 4: every acknowledged
 * commit stays on some member the `sync` key lets be promoted).
 * - 'on': commits are on every member of the PostgreSQL set, so the key must stay a subset of it:
 *   shrink the key first, then change PostgreSQL, then grow the key once the new members are sync.
 * - 'quorum': a commit is on `k` members of the PostgreSQL set, and a candidate must reach
 *   |key| − k_key + 1 key members; safe while pgSet ⊆ key and k_pg ≥ k_key: grow the key (with the
 *   smaller k) first, then change PostgreSQL, then shrink the key to match.
 */
export function nextSyncStep(
  mode: 'on' | 'quorum',
  strict: boolean,
  key: SyncSet,
  pg: SyncSet,
  desired: SyncSet,
  isSyncNow: (name: string) => boolean,
): SyncStep {
  if (mode === 'on') {
    if (!subset(key.members, desired.members)) {
      return { kind: 'write-sync-key', set: { members: key.members.filter((m) => desired.members.includes(m)), quorum: 0 } };
    }
    if (!same(pg.members, desired.members)) {
      // Strict mode never lowers the guard to nothing while a key member still exists.
      return { kind: 'set-standby-names', set: desired, value: standbyNamesFor('on', desired, strict) };
    }
    if (!same(key.members, desired.members) && desired.members.every(isSyncNow)) {
      return { kind: 'write-sync-key', set: { members: desired.members, quorum: desired.members.length } };
    }
    return { kind: 'none' };
  }
  const union = [...new Set([...key.members, ...desired.members])];
  if (!subset(desired.members, key.members) || key.quorum > desired.quorum) {
    return { kind: 'write-sync-key', set: { members: union, quorum: Math.min(key.members.length === 0 ? desired.quorum : key.quorum, desired.quorum) } };
  }
  if (!same(pg.members, desired.members) || pg.quorum !== desired.quorum) {
    return { kind: 'set-standby-names', set: desired, value: standbyNamesFor('quorum', desired, strict) };
  }
  if (!same(key.members, desired.members) || key.quorum !== desired.quorum) {
    return { kind: 'write-sync-key', set: desired };
  }
  return { kind: 'none' };
}

/** The key as this leader may rely on it: a key written by another leader counts as empty. */
export function keyFor(leader: string, sync: SyncState | undefined): SyncSet {
  return sync !== undefined && sync.leader === leader ? { members: sync.members, quorum: sync.quorum } : { members: [], quorum: 0 };
}
