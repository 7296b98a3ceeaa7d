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
