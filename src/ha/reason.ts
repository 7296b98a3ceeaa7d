/** Stable codes for every decision (invariant 7): asserted in tests, shown by the API and the CLI. */
export type ReasonCode =
  | 'dcs-unreachable'
  | 'dcs-unreachable-demoting'
  | 'lease-expired-demoting'
  | 'demoting-other-leader'
  | 'paused'
  | 'data-dir-without-cluster'
  | 'waiting-for-lease'
  | 'bootstrap-racing'
  | 'bootstrap-retrying'
  | 'bootstrap-waiting'
  | 'data-dir-foreign'
  | 'data-dir-invalid'
  | 'clone-waiting-for-leader'
  | 'creating-replica'
  | 'leader-taking-over'
  | 'leader-healthy'
  | 'leader-restarting-postgres'
  | 'primary-start-timeout'
  | 'leader-reacquiring'
  | 'promoting'
  | 'waiting-for-leader-record'
  | 'reclone'
  | 'rewinding'
  | 'starting-as-replica'
  | 'postgres-not-answering'
  | 'replica-repointing'
  | 'replica-streaming'
  | 'replica-diverged'
  | 'replica-not-streaming'
  | 'race-nofailover'
  | 'race-stale-timeline'
  | 'race-lag-too-high'
  | 'race-primary-still-running'
  | 'race-peer-ahead'
  | 'starting';

/** One sentence that explains a loop, with a code that stays the same across releases. */
export interface Reason {
  readonly code: ReasonCode;
  readonly message: string;
}
