import type { Lsn } from '../core/lsn.js';
import type { ActionKind } from './actions.js';
import type { ClusterView, MemberTags } from './cluster-view.js';
import type { ReasonCode } from './reason.js';

/** What the data directory holds, as far as the decision needs to know. */
export interface DataDirFacts {
  readonly kind: 'missing' | 'empty' | 'initialized' | 'invalid';
  readonly systemIdentifier?: string;
  /** pg_controldata's "Database cluster state". */
  readonly clusterState?: string;
  readonly timeline?: number;
}

/** A status read of the local server while it runs. */
export interface ServerFacts {
  readonly inRecovery: boolean;
  readonly timeline: number;
  readonly walPosition: Lsn;
  readonly streaming: boolean;
  /** Replica: the timeline its WAL receiver streams; behind the leader's means it cannot follow it. */
  readonly receivedTimeline?: number;
  readonly systemIdentifier: string;
  /** Primary only: connected standbys from pg_stat_replication, by application_name (= member name). */
  readonly replicas?: readonly { readonly name: string; readonly state: string; readonly syncState: string; readonly flushLsn?: Lsn }[];
}

/** The local PostgreSQL as observed once per loop. */
export interface LocalPostgresFacts {
  readonly dataDir: DataDirFacts;
  readonly process: 'running' | 'stopped' | 'crashed';
  /** Present when the server runs and answered a status query. */
  readonly server?: ServerFacts;
  /** What the agent last configured this instance as (undefined: not configured by this agent run). */
  readonly configuredAs?: { readonly kind: 'primary' } | { readonly kind: 'replica'; readonly upstream?: string };
  /** The synchronous standby set this agent last gave PostgreSQL (undefined: none since start). */
  readonly standbyNames?: { readonly members: readonly string[]; readonly quorum: number };
  /** JSON of the parameters this agent last applied (undefined: the bootstrap ones). */
  readonly appliedParameters?: string;
}

/** An operation an operator asked this agent for through the REST API, handled by the next loop. */
export type LocalOperation = { readonly kind: 'restart' } | { readonly kind: 'reinitialize' } | { readonly kind: 'reload' };

/** Another member's answer to GET /patroni, read only when the leader key is missing. */
export interface PeerFacts {
  readonly name: string;
  readonly reachable: boolean;
  readonly role?: 'primary' | 'replica';
  readonly running?: boolean;
  readonly walPosition?: Lsn;
  readonly timeline?: number;
  readonly tags?: MemberTags;
}

/**
 * The one operation this agent runs in the background (docs/architecture.md, 'How one HA loop
 * runs'): the actions of one decision, started by `startedBy`. The loop goes on observing while it
 * runs; decide() lets it run, cancels it, or acts around it.
 */
export interface InFlightOperation {
  /** The action running now (clone, rewind, start, stop, promote, …). */
  readonly kind: ActionKind;
  /** Every action of the operation, in order. */
  readonly plan: readonly ActionKind[];
  /** The decision that started it. */
  readonly startedBy: ReasonCode;
  /** Wall-clock start time (for display). */
  readonly startedAtMs: number;
  /** How long it has run, on the monotonic clock. */
  readonly elapsedMs: number;
  /** The member a clone or rewind copies from. */
  readonly source?: string;
  /** Copy progress, when the running tool reports it. */
  readonly progress?: { readonly doneBytes: number; readonly totalBytes?: number };
}

/** Who this agent is. */
export interface SelfFacts {
  readonly name: string;
  readonly tags: MemberTags;
  readonly host: string;
  readonly port: number;
}

/** One immutable observation per loop (docs/architecture.md, 'Code shapes'): read once, passed down, never re-read. */
export interface Observation {
  readonly nowMs: number;
  readonly self: SelfFacts;
  readonly dcs: { readonly ok: true; readonly view: ClusterView } | { readonly ok: false; readonly error: string };
  /** This agent's lease and the local deadline computed from the send time of its last renewal. */
  readonly lease?: { readonly id: string; readonly deadlineMs: number };
  readonly pg: LocalPostgresFacts;
  readonly peers?: readonly PeerFacts[];
  /** failsafe_mode: until when every other member confirmed it cannot reach the DCS and follows this leader. */
  readonly failsafeUntilMs?: number;
  /** An operator's pending request (restart, reinitialize, reload), if any. */
  readonly operation?: LocalOperation;
  /** The operation running in the background, if any: while it runs, decide() starts no other. */
  readonly inFlight?: InFlightOperation;
  /** The action that failed in the previous loop, if any. */
  readonly lastFailure?: { readonly action: string; readonly message: string };
}

/** What the decision remembers between loops; returned anew by every decide(). */
export interface AgentMemory {
  /** When the leader's PostgreSQL was first seen down (for primary_start_timeout). */
  readonly primaryDownSinceMs?: number | undefined;
  /** When a running replica's PostgreSQL was first seen not answering (for replica_start_timeout). */
  readonly notAnsweringSinceMs?: number | undefined;
  /** When a running replica was first seen not streaming. */
  readonly notStreamingSinceMs?: number | undefined;
  /** Set when a replica could not follow the leader's timeline: rewind before streaming again. */
  readonly mustRewind?: boolean | undefined;
  /** The last timeline a WAL receiver was seen streaming (it vanishes between reconnects). */
  readonly lastReceivedTimeline?: number | undefined;
  /** Slot names last created on the leader (comma-joined), to avoid a query every loop. */
  readonly slotNames?: string | undefined;
  /** Failed bootstraps (initdb, first start) by this agent, and the last error: bounded by MAX_BOOTSTRAP_ATTEMPTS. */
  readonly bootstrapFailures?: { readonly count: number; readonly lastError: string } | undefined;
}
