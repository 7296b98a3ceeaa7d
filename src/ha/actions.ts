/** A member to stream from or rewind against. */
export interface Upstream {
  readonly name: string;
  readonly host: string;
  readonly port: number;
}

import type { FailoverRequest } from './cluster-view.js';
import type { SyncSet } from './sync.js';

/**
 * Everything the HA loop can ask the shell to do, as data (docs/architecture.md, 'Code shapes'). The shell executes a
 * list in order and stops at the first failure; the next loop starts from a fresh observation.
 */
export type Action =
  /** Create-only write of `initialize` (empty while bootstrapping): the bootstrap race. */
  | { readonly kind: 'acquire-initialize' }
  /** Create-only write of `leader` under this agent's lease: the leader race. */
  | { readonly kind: 'acquire-leader' }
  /** Compare-and-swap the leader key (which names this member) onto this agent's new lease. */
  | { readonly kind: 'take-over-leader'; readonly modRevision: number }
  /** Delete the leader key if it is still ours, so that others may race at once. */
  | { readonly kind: 'release-leader'; readonly modRevision: number }
  /** initdb, configure as primary, start, create roles, write config, publish the system identifier. */
  | { readonly kind: 'bootstrap' }
  /** pg_basebackup from the upstream into the empty data dir. */
  | { readonly kind: 'clone'; readonly from: Upstream }
  /** Write the server's configuration for the given role. */
  | { readonly kind: 'configure'; readonly role: 'primary' }
  /** `cascade`: the upstream is another replica (replicatefrom), so no slot is used on it. */
  | { readonly kind: 'configure'; readonly role: 'replica'; readonly upstream?: Upstream; readonly cascade?: boolean }
  /**
   * Start PostgreSQL; `timeoutMs` bounds the wait for it to accept connections (the leader's
   * in-place start gets what is left of primary_start_timeout, so a start that hangs cannot hold
   * the loop past it).
   */
  | { readonly kind: 'start'; readonly timeoutMs?: number }
  | { readonly kind: 'stop'; readonly mode: 'fast' | 'immediate' }
  /**
   * Promote the local standby (after the pre_promote hook) and append the timeline switch to
   * `history`; `standbyNames` is set first so that strict synchronous mode never acknowledges a commit
   * on the new primary alone.
   */
  | { readonly kind: 'promote'; readonly reason: string; readonly standbyNames?: string }
  /** Tell routers (router/pause key) that a planned switchover is under way, so they hold new connections. */
  | { readonly kind: 'announce-switchover'; readonly to: string; readonly untilMs: number }
  /** After a fast shutdown: wait until the candidate has received the shutdown checkpoint (lossless switchover). */
  | { readonly kind: 'await-caught-up'; readonly candidate: Upstream & { readonly apiUrl: string } }
  /**
   * Name the chosen candidate in the `failover` key (compare-and-swap on its revision) before the
   * leader key is handed over, so that only that member promotes: a request without a candidate
   * would otherwise end in a leader race the old leader itself may win.
   */
  | { readonly kind: 'name-failover-candidate'; readonly request: FailoverRequest; readonly modRevision: number }
  /** Delete the `failover` key (request done, failed or stale). */
  | { readonly kind: 'delete-failover'; readonly modRevision: number }
  /** Set synchronous_standby_names on the primary (reload). */
  | { readonly kind: 'set-standby-names'; readonly set: SyncSet; readonly value: string }
  /** Write the `sync` key (compare-and-swap on its revision; create when absent). */
  | { readonly kind: 'write-sync-key'; readonly set: SyncSet; readonly modRevision?: number }
  /** Apply the cluster's PostgreSQL parameters (rewrite warden.conf, reload). */
  | { readonly kind: 'update-parameters'; readonly parameters: Readonly<Record<string, string | number | boolean>> }
  /** Crash-recover if needed, then pg_rewind against the upstream. */
  | { readonly kind: 'rewind'; readonly from: Upstream }
  /** Rename the data directory aside (never delete) so that it can be cloned anew. */
  | { readonly kind: 'move-data-aside' }
  /**
   * Abort the operation in flight (its child process is ended; a cancelled start leaves no
   * postmaster) and wait until it has stopped; only ever first in a list. The rest of the list runs
   * once it has.
   */
  | { readonly kind: 'cancel-operation'; readonly why: string }
  /** Create the physical slots of these members on the leader and drop stale inactive ones. */
  | { readonly kind: 'sync-slots'; readonly slots: readonly string[] };

/** The kinds of action, for logs and failure records. */
export type ActionKind = Action['kind'];
