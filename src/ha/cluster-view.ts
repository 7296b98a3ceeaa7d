import type { Lsn } from '../core/lsn.js';
import { parseLsn } from '../core/lsn.js';
import { DEFAULT_DYNAMIC_CONFIG, type DynamicConfig } from './dynamic-config.js';
import type { ScheduledRestartRecord } from './scheduled-restart.js';

/** The DCS key names under `/warden/<cluster>/` (DESIGN.md §3). */
export const KEYS = {
  initialize: 'initialize',
  config: 'config',
  leader: 'leader',
  membersDir: 'members/',
  status: 'status',
  sync: 'sync',
  failover: 'failover',
  history: 'history',
  /** Planned-switchover announcement for routers: {"from","to","untilMs"}. */
  routerPause: 'router/pause',
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
  /** A restart the operator scheduled on this member (see scheduled-restart.ts). */
  readonly scheduledRestart?: ScheduledRestartRecord;
  readonly agentPid?: number;
  readonly version: string;
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
  /** A `config` key that could not be parsed; the defaults are used meanwhile. */
  readonly configError?: string;
  readonly leader?: { readonly name: string; readonly modRevision: number; readonly lease: string };
  readonly members: ReadonlyMap<string, MemberRecord & { readonly lease: string }>;
  readonly status?: LeaderStatus;
  readonly history: readonly HistoryEntry[];
  readonly historyModRevision?: number;
  readonly failover?: FailoverRequest & { readonly modRevision: number };
  readonly sync?: SyncState & { readonly modRevision: number };
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
  } = { revision, config: DEFAULT_DYNAMIC_CONFIG, members: new Map(), history: [] };
  const members = new Map<string, MemberRecord & { lease: string }>();
  for (const kv of kvs) {
    if (!kv.key.startsWith(prefix)) continue;
    const k = kv.key.slice(prefix.length);
    if (k === KEYS.initialize) view.initialize = { value: kv.value, modRevision: kv.modRevision };
    else if (k === KEYS.leader) view.leader = { name: kv.value, modRevision: kv.modRevision, lease: kv.lease };
    else if (k === KEYS.config) {
      view.configModRevision = kv.modRevision;
      const parsed = parseDynamicConfigJson(kv.value);
      if (typeof parsed === 'string') view.configError = parsed;
      else view.config = parsed;
    } else if (k === KEYS.status) {
      const s = parseStatus(kv.value);
      if (s) view.status = s;
    } else if (k === KEYS.history) {
      view.history = parseHistory(kv.value);
      view.historyModRevision = kv.modRevision;
    } else if (k === KEYS.failover) {
      const f = parseJson<FailoverRequest>(kv.value);
      if (f !== undefined && (f.kind === 'switchover' || f.kind === 'failover') && typeof f.requestedAtMs === 'number') {
        view.failover = { ...f, modRevision: kv.modRevision };
      }
    } else if (k === KEYS.sync) {
      const y = parseJson<SyncState>(kv.value);
      if (y !== undefined && typeof y.leader === 'string' && Array.isArray(y.members)) {
        view.sync = { leader: y.leader, members: y.members.filter((m) => typeof m === 'string'), quorum: typeof y.quorum === 'number' ? y.quorum : 1, modRevision: kv.modRevision };
      }
    } else if (k.startsWith(KEYS.membersDir)) {
      const m = parseMember(kv.value);
      if (m && m.name === k.slice(KEYS.membersDir.length)) members.set(m.name, { ...m, lease: kv.lease });
    }
  }
  view = { ...view, members };
  return view;
}

/** Parses the `config` key over the defaults; returns an error sentence when it is not valid JSON. */
export function parseDynamicConfigJson(text: string): DynamicConfig | string {
  try {
    const raw = JSON.parse(text) as Partial<DynamicConfig> & { postgresql?: Partial<DynamicConfig['postgresql']> };
    if (typeof raw !== 'object' || raw === null) return 'config key is not a JSON object';
    return {
      ...DEFAULT_DYNAMIC_CONFIG,
      ...raw,
      postgresql: {
        ...DEFAULT_DYNAMIC_CONFIG.postgresql,
        ...(raw.postgresql ?? {}),
        parameters: { ...(raw.postgresql?.parameters ?? {}) },
      },
    };
  } catch (e) {
    return `config key is not valid JSON: ${(e as Error).message}`;
  }
}

function parseStatus(text: string): LeaderStatus | undefined {
  try {
    const raw = JSON.parse(text) as { lsn?: unknown; timeline?: unknown; leader?: unknown };
    if (typeof raw.lsn !== 'string' || typeof raw.timeline !== 'number') return undefined;
    return { lsn: parseLsn(raw.lsn), timeline: raw.timeline, leader: typeof raw.leader === 'string' ? raw.leader : '' };
  } catch {
    // A malformed status key only weakens the lag check; the race still compares live peers.
    return undefined;
  }
}

function parseHistory(text: string): HistoryEntry[] {
  try {
    const raw = JSON.parse(text) as unknown;
    return Array.isArray(raw) ? (raw as HistoryEntry[]).filter((h) => typeof h?.timeline === 'number') : [];
  } catch {
    return [];
  }
}

function parseMember(text: string): MemberRecord | undefined {
  try {
    const raw = JSON.parse(text) as MemberRecord;
    if (typeof raw?.name !== 'string' || typeof raw.host !== 'string' || typeof raw.port !== 'number') return undefined;
    return raw;
  } catch {
    return undefined;
  }
}

function parseJson<T>(text: string): T | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null ? (v as T) : undefined;
  } catch {
    // Malformed keys are ignored (and reported by the CLI), never fatal to the loop.
    return undefined;
  }
}

/** A replication slot name for a member (PostgreSQL allows [a-z0-9_] only). */
export function slotNameFor(member: string): string {
  return member.toLowerCase().replace(/[^a-z0-9_]/g, '_');
}

/** The highest timeline recorded in the history (1 when none). */
export function latestHistoryTimeline(history: readonly HistoryEntry[]): number {
  return history.reduce((max, h) => Math.max(max, h.timeline), 1);
}
