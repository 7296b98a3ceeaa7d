/**
 * Restarts asked for now or at a given time (`warden restart --scheduled`, POST /restart with
 * `schedule`), with Patroni's optional conditions: only while the member has a given role, only
 * while a restart is pending. A scheduled restart lives in the agent and in its member key (so that
 * an agent restarted within the lease ttl picks it up again); its conditions are checked when the
 * time comes, not when it is asked for.
 */

/** Parses an ISO-8601 time that names its time zone; a string naming `field` and what is wrong otherwise. */
export function parseScheduledAt(text: unknown, field = 'scheduled_at'): number | string {
  if (typeof text !== 'string') return `${field} must be an ISO-8601 string`;
  if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(text.trim())) return `${field} ${JSON.stringify(text)} has no time zone (add Z or +hh:mm)`;
  const t = Date.parse(text);
  return Number.isNaN(t) ? `${field} ${JSON.stringify(text)} is not an ISO-8601 time` : t;
}

export interface RestartConditions {
  /** Restart only while this member has this role. */
  readonly role?: 'primary' | 'replica';
  /** Restart only while PostgreSQL reports a parameter change that needs a restart. */
  readonly restartPending?: boolean;
}

export interface ScheduledRestart extends RestartConditions {
  readonly atMs: number;
  readonly requestedAtMs: number;
}

/** How a scheduled restart is kept in the member key (times as ISO-8601). */
export interface ScheduledRestartRecord {
  readonly at: string;
  readonly requestedAt: string;
  readonly role?: 'primary' | 'replica';
  readonly restartPending?: boolean;
}

export function scheduledRestartRecord(s: ScheduledRestart): ScheduledRestartRecord {
  return {
    at: new Date(s.atMs).toISOString(),
    requestedAt: new Date(s.requestedAtMs).toISOString(),
    ...(s.role === undefined ? {} : { role: s.role }),
    ...(s.restartPending === undefined ? {} : { restartPending: s.restartPending }),
  };
}

/** Reads a record back (from a member key written by an earlier run of this agent); undefined when malformed. */
export function parseScheduledRestartRecord(raw: unknown): ScheduledRestart | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as Partial<Record<keyof ScheduledRestartRecord, unknown>>;
  const atMs = typeof r.at === 'string' ? Date.parse(r.at) : Number.NaN;
  const requestedAtMs = typeof r.requestedAt === 'string' ? Date.parse(r.requestedAt) : Number.NaN;
  if (Number.isNaN(atMs) || Number.isNaN(requestedAtMs)) return undefined;
  if (r.role !== undefined && r.role !== 'primary' && r.role !== 'replica') return undefined;
  if (r.restartPending !== undefined && typeof r.restartPending !== 'boolean') return undefined;
  return { atMs, requestedAtMs, ...(r.role === undefined ? {} : { role: r.role }), ...(r.restartPending === undefined ? {} : { restartPending: r.restartPending }) };
}

/**
 * Reads the conditions of a POST /restart body (`role`, `restart_pending`; Patroni's `master` is
 * `primary`); a string saying what is wrong otherwise.
 */
export function parseRestartConditions(body: Readonly<Record<string, unknown>>): RestartConditions | string {
  const role = body.role === 'master' ? 'primary' : body.role;
  if (role !== undefined && role !== null && role !== 'primary' && role !== 'replica' && role !== 'any') {
    return `role must be primary, replica or any (got ${JSON.stringify(body.role)})`;
  }
  const pending = body.restart_pending;
  if (pending !== undefined && pending !== null && typeof pending !== 'boolean') return `restart_pending must be true or false (got ${JSON.stringify(pending)})`;
  return {
    ...(role === 'primary' || role === 'replica' ? { role } : {}),
    ...(pending === true ? { restartPending: true } : {}),
  };
}

/** Why a restart with these conditions must not run now (Patroni answers 412 with it); undefined: it may. */
export function restartBlocker(c: RestartConditions, facts: { readonly role: 'primary' | 'replica'; readonly pendingRestart: boolean }): string | undefined {
  if (c.role !== undefined && c.role !== facts.role) return `restart conditions are not satisfied: this member is ${facts.role}, not ${c.role}`;
  if (c.restartPending === true && !facts.pendingRestart) return 'restart conditions are not satisfied: no restart is pending';
  return undefined;
}
