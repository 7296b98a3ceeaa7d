import { bool, decodeJson, list, num, obj, oneOf, optional, port, str, type Decoder } from '../core/decode.js';
import type { Lsn } from '../core/lsn.js';
import { parseLsn } from '../core/lsn.js';
import { DEFAULT_DYNAMIC_CONFIG, DYNAMIC_CONFIG_BOUNDS, timingRuleViolation, type DynamicConfig, type SettingBounds } from './dynamic-config.js';
import type { ScheduledRestartRecord } from './scheduled-restart.js';

/** The DCS key names under `/warden/<cluster>/` (docs/architecture.md, 'DCS keys'). */
export const KEYS = {
  initialize: 'initialize',
  config: 'config',
  leader: 'leader',
  membersDir: 'members/',
  status: 'status',
  sync: 'sync',
  failover: 'failover',
  history: 'history',
  /**
   * Members the controller is about to move or remove (a draining node, a scale down): {"members":
   * [...]}. Advisory: the leader ranks them last for the synchronous set, nothing else reads it.
   */
  leaving: 'leaving',
  /** Planned-switchover announcement for routers: {"from","to","untilMs"}. */
  routerPause: 'router/pause',
  /** The one backup running for the cluster, under its runner's lease (`warden backup`). */
  backupRunning: 'backup/running',
  /** The WAL archive's health as the leader's agent last saw it (pg_stat_archiver); shown by `warden list`, never used by a decision. */
  backupArchive: 'backup/archive',
  /** The backup schedules and where their commands run, published by `warden up` (`SchedulesRecord` in src/backup). */
  backupSchedules: 'backup/schedules',
  /** One create-only key per schedule slot fired: `backup/slots/<repo>/<type>/<slot time>` (a slot fires once). */
  backupSlotsDir: 'backup/slots/',
  /** The last backup that completed (`LastBackup` in src/backup), written by `warden backup`; shown by `warden list` and the leader's /metrics. */
  backupLast: 'backup/last',
} as const;

/** The key prefix of one cluster. */
export function clusterPrefix(cluster: string): string {
  return `/warden/${cluster}/`;
}

/** Member tags, Patroni's names in camelCase. */
export interface MemberTags {
  readonly nofailover: boolean;
  /** Higher wins ties in the leader race; 0 means never promote (like nofailover). */
  readonly failoverPriority: number;
  readonly nosync: boolean;
  readonly noloadbalance: boolean;
  /** Cascading replication: stream from this member while it streams itself, else from the leader. */
  readonly replicatefrom?: string;
  /** New replicas prefer to clone from a running replica with this tag. */
  readonly clonefrom?: boolean;
}

/** What each agent publishes in `members/<name>` under its lease. */
export interface MemberRecord {
  readonly name: string;
  readonly apiUrl: string;
  /** Where PostgreSQL is reached. */
  readonly host: string;
  readonly port: number;
  readonly role: 'primary' | 'replica' | 'uninitialized';
  /** running, streaming, starting, stopped, crashed, creating replica, bootstrapping, rewinding, … */
  readonly state: string;
  readonly timeline?: number;
  /** Primary: flushed LSN; replica: max(receive, replay). "X/Y" text. */
  readonly walPosition?: string;
  readonly tags: MemberTags;
  readonly reason?: { readonly code: string; readonly message: string };
  readonly pendingRestart?: boolean;
  /**
   * The hot-standby parameters its pending restart lowers (max_connections, …): a standby may not
   * run below its primary, so a rolling restart restarts the primary first (docs/architecture.md,
   * "Rolling changes").
   */
  readonly restartLowers?: readonly string[];
  /** A restart the operator scheduled on this member (see scheduled-restart.ts). */
  readonly scheduledRestart?: ScheduledRestartRecord;
  /** The operation the member's agent runs in the background (a clone, a rewind, a start), with its progress. */
  readonly operation?: MemberOperationRecord;
  readonly agentPid?: number;
  readonly version: string;
}

/** A member's operation in flight as published (see InFlightOperation). */
export interface MemberOperationRecord {
  readonly kind: string;
  readonly startedBy: string;
  readonly startedAtMs: number;
  readonly source?: string;
  readonly doneBytes?: number;
  readonly totalBytes?: number;
}

/** One timeline switch, appended by the new leader after a promotion. */
export interface HistoryEntry {
  readonly timeline: number;
  /** The LSN at which the new timeline began ("X/Y"). */
  readonly lsn: string;
  readonly reason: string;
  readonly timeMs: number;
  readonly leader: string;
}

/** A requested switchover or failover (the `failover` key, written by the CLI / REST API). */
export interface FailoverRequest {
  readonly kind: 'switchover' | 'failover';
  /** The leader the request was made against; a request naming another leader is stale. */
  readonly leader?: string;
  readonly candidate?: string;
  readonly scheduledAtMs?: number;
  readonly requestedAtMs: number;
}

/** The `sync` key: who may be promoted in synchronous mode (invariant 4). */
export interface SyncState {
  readonly leader: string;
  readonly members: readonly string[];
  /** Quorum mode: commits wait for this many of `members`. */
  readonly quorum: number;
}

/** The leader's last published position. */
export interface LeaderStatus {
  readonly lsn: Lsn;
  readonly timeline: number;
  readonly leader: string;
}

/** The whole cluster as read from the DCS at one revision. */
export interface ClusterView {
  readonly revision: number;
  readonly initialize?: { readonly value: string; readonly modRevision: number };
  readonly config: DynamicConfig;
  readonly configModRevision?: number;
  /** Why the `config` key was refused (invalid JSON, a type, a bound, the timing rule); `config` then holds the defaults. */
  readonly configError?: string;
  readonly leader?: { readonly name: string; readonly modRevision: number; readonly lease: string };
  readonly members: ReadonlyMap<string, MemberRecord & { readonly lease: string }>;
  readonly status?: LeaderStatus;
  readonly history: readonly HistoryEntry[];
  readonly historyModRevision?: number;
  readonly failover?: FailoverRequest & { readonly modRevision: number };
  readonly sync?: SyncState & { readonly modRevision: number };
  /** The controller's `leaving` key: members about to be moved off their node or removed. */
  readonly leaving?: { readonly members: readonly string[]; readonly modRevision: number };
  /**
   * Keys that failed their decoder, by key name relative to the prefix (`members/ghost`, `sync`):
   * why each was refused. They are left out of the view above, never half-used (invariant 10).
   */
  readonly invalid: ReadonlyMap<string, string>;
}

/** Raw key/value pairs, as any DCS returns them. */
export interface RawKv {
  readonly key: string;
  readonly value: string;
  readonly modRevision: number;
  readonly lease: string;
}

/** Builds the cluster view from one prefix snapshot; malformed keys are skipped, never fatal. */
export function parseClusterView(prefix: string, revision: number, kvs: readonly RawKv[]): ClusterView {
  let view: {
    -readonly [K in keyof ClusterView]: ClusterView[K];
  } = { revision, config: DEFAULT_DYNAMIC_CONFIG, members: new Map(), history: [], invalid: new Map() };
  const members = new Map<string, MemberRecord & { lease: string }>();
  const invalid = new Map<string, string>();
  for (const kv of kvs) {
    if (!kv.key.startsWith(prefix)) continue;
    const k = kv.key.slice(prefix.length);
    if (k === KEYS.initialize) view.initialize = { value: kv.value, modRevision: kv.modRevision };
    else if (k === KEYS.leader) {
      if (MEMBER_NAME.test(kv.value)) view.leader = { name: kv.value, modRevision: kv.modRevision, lease: kv.lease };
      else invalid.set(k, `leader key holds ${JSON.stringify(kv.value.slice(0, 60))}, not a member name`);
    } else if (k === KEYS.config) {
      view.configModRevision = kv.modRevision;
      const parsed = parseDynamicConfigJson(kv.value);
      if (typeof parsed === 'string') view.configError = parsed;
      else view.config = parsed;
    } else if (k === KEYS.status) {
      const s = decodeJson(STATUS_RECORD, kv.value);
      const lsn = s.ok ? parseLsnSafe(s.value.lsn) : undefined;
      if (s.ok && lsn !== undefined) view.status = { lsn, timeline: s.value.timeline, leader: s.value.leader ?? '' };
      else invalid.set(k, s.ok ? `lsn: ${JSON.stringify(s.value.lsn)} is not an LSN` : s.error);
    } else if (k === KEYS.history) {
      // The history is appended to by CAS on its revision: keep the revision even when it is bad.
      view.historyModRevision = kv.modRevision;
      const h = decodeJson(HISTORY_RECORD, kv.value);
      if (h.ok) view.history = h.value;
      else invalid.set(k, h.error);
    } else if (k === KEYS.failover) {
      const f = decodeJson(FAILOVER_RECORD, kv.value);
      if (f.ok) view.failover = { ...f.value, modRevision: kv.modRevision };
      else invalid.set(k, f.error);
    } else if (k === KEYS.sync) {
      const y = decodeJson(SYNC_RECORD, kv.value);
      if (y.ok) view.sync = { leader: y.value.leader, members: y.value.members, quorum: y.value.quorum ?? 1, modRevision: kv.modRevision };
      else invalid.set(k, y.error);
    } else if (k === KEYS.leaving) {
      const l = decodeJson(LEAVING_RECORD, kv.value);
      if (l.ok) view.leaving = { members: l.value.members, modRevision: kv.modRevision };
      else invalid.set(k, l.error);
    } else if (k.startsWith(KEYS.membersDir)) {
      const name = k.slice(KEYS.membersDir.length);
      const m = decodeJson(MEMBER_RECORD, kv.value);
      if (!m.ok) invalid.set(k, m.error);
      else if (m.value.name !== name) invalid.set(k, `name: ${JSON.stringify(m.value.name)} does not match the key's member name ${JSON.stringify(name)}`);
      else if (m.value.walPosition !== undefined && parseLsnSafe(m.value.walPosition) === undefined) invalid.set(k, `walPosition: ${JSON.stringify(m.value.walPosition)} is not an LSN`);
      else members.set(name, { ...m.value, lease: kv.lease });
    }
  }
  view = { ...view, members, invalid };
  return view;
}

/** Member names as agents and specs make them (DNS-label-like, see src/spec/dns-label.ts). */
const MEMBER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

function parseLsnSafe(text: string): Lsn | undefined {
  try {
    return parseLsn(text);
  } catch {
    return undefined;
  }
}

const TAGS_RECORD: Decoder<MemberTags> = obj({
  nofailover: bool,
  failoverPriority: num({ integer: true, min: 0 }),
  nosync: bool,
  noloadbalance: bool,
  replicatefrom: optional(str),
  clonefrom: optional(bool),
});

const SCHEDULED_RESTART_RECORD: Decoder<ScheduledRestartRecord> = obj({
  at: str,
  requestedAt: str,
  role: optional(oneOf('primary', 'replica')),
  restartPending: optional(bool),
});

/** The decoder of `members/<name>`: every field the core reads, with its type. */
export const MEMBER_RECORD: Decoder<MemberRecord> = obj({
  name: str,
  apiUrl: str,
  host: str,
  port,
  role: oneOf('primary', 'replica', 'uninitialized'),
  state: str,
  timeline: optional(num({ integer: true, min: 1 })),
  walPosition: optional(str),
  tags: TAGS_RECORD,
  reason: optional(obj({ code: str, message: str })),
  pendingRestart: optional(bool),
  restartLowers: optional(list(str)),
  scheduledRestart: optional(SCHEDULED_RESTART_RECORD),
  operation: optional(
    obj({
      kind: str,
      startedBy: str,
      startedAtMs: num(),
      source: optional(str),
      doneBytes: optional(num({ integer: true, min: 0 })),
      totalBytes: optional(num({ integer: true, min: 0 })),
    }),
  ),
  agentPid: optional(num({ integer: true, min: 1 })),
  version: str,
});

const STATUS_RECORD = obj({ lsn: str, timeline: num({ integer: true, min: 1 }), leader: optional(str) });

const HISTORY_RECORD: Decoder<HistoryEntry[]> = list(obj({ timeline: num({ integer: true, min: 1 }), lsn: str, reason: str, timeMs: num(), leader: str }));

const FAILOVER_RECORD: Decoder<FailoverRequest> = obj({
  kind: oneOf('switchover', 'failover'),
  leader: optional(str),
  candidate: optional(str),
  scheduledAtMs: optional(num()),
  requestedAtMs: num(),
});

const SYNC_RECORD = obj({ leader: str, members: list(str), quorum: optional(num({ integer: true, min: 0 })) });
const LEAVING_RECORD = obj({ members: list(str) });

/**
 * Parses the `config` key over the defaults and checks what the core relies on (types, the bounds
 * of DYNAMIC_CONFIG_BOUNDS, the timing rule); returns a sentence naming the field when it fails.
 * PostgreSQL parameter values are checked by the agent on top (src/spec).
 */
export function parseDynamicConfigJson(text: string): DynamicConfig | string {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return `config key is not valid JSON: ${(e as Error).message}`;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'config key is not a JSON object';
  const r = raw as Record<string, unknown>;
  for (const [key, b] of Object.entries(DYNAMIC_CONFIG_BOUNDS) as [keyof typeof DYNAMIC_CONFIG_BOUNDS, SettingBounds][]) {
    const v = r[key];
    if (v === undefined) continue;
    const fits = typeof v === 'number' && Number.isFinite(v) && (b.exclusiveMin === true ? v > b.min : v >= b.min) && v <= b.max && (b.integer !== true || Number.isInteger(v));
    if (!fits) return `config key: ${key}: must be ${b.integer === true ? 'an integer' : 'a number'} ${b.exclusiveMin === true ? '>' : '≥'} ${b.min} and ≤ ${b.max}, got ${JSON.stringify(v)}`;
  }
  for (const key of ['synchronous_mode_strict', 'check_timeline', 'failsafe_mode', 'pause'] as const) {
    if (r[key] !== undefined && typeof r[key] !== 'boolean') return `config key: ${key}: must be true or false, got ${JSON.stringify(r[key])}`;
  }
  if (r.synchronous_mode !== undefined && !['off', 'on', 'quorum'].includes(r.synchronous_mode as string)) {
    return `config key: synchronous_mode: must be off, on or quorum, got ${JSON.stringify(r.synchronous_mode)}`;
  }
  const pg = r.postgresql;
  if (pg !== undefined && (typeof pg !== 'object' || pg === null || Array.isArray(pg))) return 'config key: postgresql: must be an object';
  const pgr = (pg ?? {}) as Record<string, unknown>;
  if (pgr.use_pg_rewind !== undefined && typeof pgr.use_pg_rewind !== 'boolean') return `config key: postgresql.use_pg_rewind: must be true or false, got ${JSON.stringify(pgr.use_pg_rewind)}`;
  const params = pgr.parameters ?? {};
  if (typeof params !== 'object' || params === null || Array.isArray(params)) return 'config key: postgresql.parameters: must be an object';
  for (const [name, v] of Object.entries(params)) {
    if (!['string', 'number', 'boolean'].includes(typeof v)) return `config key: postgresql.parameters.${name}: must be a string, number or boolean`;
  }
  const config: DynamicConfig = {
    ...DEFAULT_DYNAMIC_CONFIG,
    ...(r as Partial<DynamicConfig>),
    postgresql: {
      ...DEFAULT_DYNAMIC_CONFIG.postgresql,
      ...(pgr as Partial<DynamicConfig['postgresql']>),
      parameters: { ...(params as Record<string, string | number | boolean>) },
    },
  };
  const violation = timingRuleViolation(config);
  return violation === undefined ? config : `config key: ${violation}`;
}

/** A replication slot name for a member (PostgreSQL allows [a-z0-9_] only). */
export function slotNameFor(member: string): string {
  return member.toLowerCase().replace(/[^a-z0-9_]/g, '_');
}

/** The highest timeline recorded in the history (1 when none). */
export function latestHistoryTimeline(history: readonly HistoryEntry[]): number {
  return history.reduce((max, h) => Math.max(max, h.timeline), 1);
}
