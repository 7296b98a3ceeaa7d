/**
 * Whether an agent must stop its PostgreSQL now, when its lease deadline has passed (or etcd says
 * the lease is gone) — invariant 1 in docs/architecture.md: PostgreSQL is read-write only on the
 * member holding the leader key, and only while its lease is valid. Pure: the shell calls it from
 * its lease guard with what it last knew, and carries out the verdict.
 */
export interface FencingFacts {
  readonly nowMs: number;
  /** Every other member confirmed it cannot reach etcd either and follows this leader, until then (failsafe_mode). */
  readonly failsafeUntilMs: number;
  /** This agent held the leader key at its last observation. */
  readonly wasLeader: boolean;
  /** What the server last said: false = read-write, true = in recovery, undefined = no answer. */
  readonly inRecovery: boolean | undefined;
  /** The server was last configured (or is being started) as a primary. */
  readonly configuredAsPrimary: boolean;
}

export type FencingVerdict =
  | { readonly kind: 'fence'; readonly why: string }
  | { readonly kind: 'spare'; readonly why: string };

export function fencingVerdict(f: FencingFacts): FencingVerdict {
  if (f.failsafeUntilMs > f.nowMs) {
    return { kind: 'spare', why: 'failsafe_mode: every member confirmed it cannot reach the DCS and follows this leader' };
  }
  // Anything that is or may become read-write is stopped: a leader, a server answering as primary,
  // or one configured as primary that has not answered yet (a start or promotion in progress).
  if (f.wasLeader) return { kind: 'fence', why: 'this member held the leader key' };
  if (f.inRecovery === false) return { kind: 'fence', why: 'PostgreSQL runs read-write' };
  if (f.configuredAsPrimary) return { kind: 'fence', why: 'PostgreSQL is configured as a primary (it may be starting or promoting)' };
  return { kind: 'spare', why: 'a replica: it cannot accept writes' };
}

/**
 * Whether the lease may be renewed now — the lease follows the loop (docs/architecture.md,
 * invariant 1): a member holding the leader key renews only while its loop completes cycles and
 * its last observation is healthy; otherwise the lease lapses and the lease guard fences this
 * primary before etcd can expire the lease anywhere else. Members without the key always renew
 * (their lease carries only their member key).
 */
export interface RenewalFacts {
  /** Monotonic time now, and when the loop last completed a cycle without throwing. */
  readonly nowMonoMs: number;
  readonly lastOkCycleMonoMs: number;
  /** A loop with no successful cycle for this long is wedged or failing (see renewalHeartbeatMs). */
  readonly heartbeatMs: number;
  readonly holdsLeaderKey: boolean;
  /** Maintenance mode: the operator is in charge, the leader keeps its key while the loop lives. */
  readonly paused: boolean;
  /** The last observation saw PostgreSQL answer as a primary. */
  readonly servesAsPrimary: boolean;
  /** An operation decide() started or let run is in flight (a start in place, a promotion, …). */
  readonly operationInFlight: boolean;
}

export type RenewalVerdict = { readonly renew: true } | { readonly renew: false; readonly why: string };

/** How long a leader's loop may go without a successful cycle before its lease is let lapse: 2 × ttl. */
export function renewalHeartbeatMs(ttlSeconds: number): number {
  return Math.max(1000, 2 * ttlSeconds * 1000);
}

export function leaseRenewalVerdict(f: RenewalFacts): RenewalVerdict {
  if (!f.holdsLeaderKey) return { renew: true };
  const silentMs = f.nowMonoMs - f.lastOkCycleMonoMs;
  if (silentMs > f.heartbeatMs) {
    return { renew: false, why: `the HA loop has not completed a cycle for ${Math.round(silentMs)} ms (limit ${f.heartbeatMs} ms): it is wedged or failing` };
  }
  if (f.paused || f.servesAsPrimary || f.operationInFlight) return { renew: true };
  return { renew: false, why: 'PostgreSQL does not answer as a primary and no operation to bring it back is in flight' };
}
