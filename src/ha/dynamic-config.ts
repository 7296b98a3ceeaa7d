/**
 * The cluster-wide dynamic configuration kept in the DCS `config` key. Key names follow Patroni's
 * (`ttl`, `loop_wait`, …) so that users' existing dynamicConfiguration blocks work; times are seconds
 * (fractions allowed), sizes are bytes.
 */
export interface DynamicConfig {
  /** Leader lease TTL in seconds. */
  readonly ttl: number;
  /** Seconds between HA loops. */
  readonly loop_wait: number;
  /** Bound on every DCS and PostgreSQL call, seconds. */
  readonly retry_timeout: number;
  /** A replica more than this many bytes behind the last known leader position may not be promoted. */
  readonly maximum_lag_on_failover: number;
  /** Seconds a crashed primary may take to start again before the leader key is released. */
  readonly primary_start_timeout: number;
  /**
   * Seconds a replica's PostgreSQL may run without answering (not yet consistent: often waiting for
   * WAL that is gone) before the agent moves its data aside and clones it anew.
   */
  readonly replica_start_timeout: number;
  readonly synchronous_mode: 'off' | 'on' | 'quorum';
  readonly synchronous_mode_strict: boolean;
  readonly synchronous_node_count: number;
  readonly check_timeline: boolean;
  readonly failsafe_mode: boolean;
  /** Maintenance mode: nothing is started, stopped or promoted automatically. */
  readonly pause: boolean;
  readonly postgresql: {
    readonly use_pg_rewind: boolean;
    readonly parameters: Readonly<Record<string, string | number | boolean>>;
  };
}

/**
 * Defaults chosen for fast failover that stays safe: with ttl 2 s, loop_wait 0.5 s and retry_timeout
 * 0.75 s the timing rule (loop_wait + 2 × retry_timeout ≤ ttl) holds with equality, the leader renews
 * four times per TTL, and etcd's default election timeout (1 s) grants a 2 s lease.
 */
export const DEFAULT_DYNAMIC_CONFIG: DynamicConfig = {
  ttl: 2,
  loop_wait: 0.5,
  retry_timeout: 0.75,
  maximum_lag_on_failover: 1024 * 1024,
  primary_start_timeout: 30,
  replica_start_timeout: 300,
  synchronous_mode: 'off',
  synchronous_mode_strict: false,
  synchronous_node_count: 1,
  check_timeline: true,
  failsafe_mode: false,
  pause: false,
  postgresql: { use_pg_rewind: true, parameters: {} },
};

/** Inclusive bounds of a numeric setting; `exclusiveMin` for settings that must be positive. */
export interface SettingBounds {
  readonly min: number;
  readonly exclusiveMin?: boolean;
  readonly max: number;
  readonly integer?: boolean;
}

/**
 * Bounds of the numeric dynamic settings, declared once for the spec, `edit-config`, PATCH /config
 * and the agent's check of the `config` key. The upper bounds keep every derived timer inside what
 * Node's timers can hold (2^31 − 1 ms ≈ 24.8 days: a longer delay fires at once) and every lease
 * grantable: an hour of ttl is far beyond any sane failover budget, yet far from any overflow.
 */
export const DYNAMIC_CONFIG_BOUNDS = {
  ttl: { min: 0, exclusiveMin: true, max: 3600 },
  loop_wait: { min: 0, exclusiveMin: true, max: 3600 },
  retry_timeout: { min: 0, exclusiveMin: true, max: 3600 },
  primary_start_timeout: { min: 0, max: 86_400 },
  replica_start_timeout: { min: 1, max: 86_400 },
  maximum_lag_on_failover: { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true },
  synchronous_node_count: { min: 1, max: 64, integer: true },
} as const satisfies Readonly<Record<string, SettingBounds>>;

/** A violated timing rule, or undefined when `c` satisfies invariant 2 of docs/architecture.md. */
export function timingRuleViolation(c: Pick<DynamicConfig, 'ttl' | 'loop_wait' | 'retry_timeout'>): string | undefined {
  if (!(c.ttl > 0) || !(c.loop_wait > 0) || !(c.retry_timeout > 0)) {
    return `ttl, loop_wait and retry_timeout must be positive (got ttl=${c.ttl}, loop_wait=${c.loop_wait}, retry_timeout=${c.retry_timeout})`;
  }
  // A tiny epsilon so that 0.5 + 2 × 0.75 = 2 passes despite binary fractions.
  if (c.loop_wait + 2 * c.retry_timeout > c.ttl + 1e-9) {
    return `loop_wait + 2 × retry_timeout must be ≤ ttl, got ${c.loop_wait} + 2 × ${c.retry_timeout} = ${c.loop_wait + 2 * c.retry_timeout} > ${c.ttl}`;
  }
  return undefined;
}

/**
 * An edit that asks for more synchronous standbys than the cluster has replicas, or undefined.
 * Only the edit is judged (`before` is the config in force): a cluster that shrank under a valid
 * setting is not blocked from unrelated edits.
 */
export function synchronousCountProblem(before: DynamicConfig, after: DynamicConfig, memberCount: number): string | undefined {
  if (after.synchronous_mode === 'off') return undefined;
  const changed = after.synchronous_node_count !== before.synchronous_node_count || after.synchronous_mode !== before.synchronous_mode;
  const replicas = Math.max(0, memberCount - 1);
  if (!changed || after.synchronous_node_count <= Math.max(1, replicas)) return undefined;
  return `synchronous_node_count: ${after.synchronous_node_count} is more than the cluster's ${replicas} replica(s) (${memberCount} members): at most ${Math.max(1, replicas)} can be synchronous`;
}
