import { lagBytes, parseLsn, type Lsn } from '../core/lsn.js';
import type { ClusterView, MemberRecord } from '../ha/index.js';
import type { SwitchoverPause } from './switchover-pause.js';

/** Where one PostgreSQL member is reached. */
export interface Backend {
  readonly name: string;
  readonly host: string;
  readonly port: number;
}

/** The router's settings that shape the table. */
export interface RouteSettings {
  /** A replica further behind the leader's position than this gets no read-only connections. */
  readonly roMaxLagBytes: number;
  /** With no eligible replica, send read-only connections to the leader. */
  readonly roFallbackToLeader: boolean;
}

/** Why read-write connections are not handed out, with a stable code. */
export interface RouteReason {
  readonly code:
    | 'no-leader-key'
    | 'leader-member-missing'
    | 'leader-lease-mismatch'
    | 'leader-not-running-primary'
    | 'leader-unconfirmed'
    | 'switchover-pause'
    | 'no-cluster-view';
  readonly message: string;
}

/** What the cluster view says about routing, before timing (fail-closed, pause) is applied. */
export interface RouteTable {
  /** Exactly the member named by the leader key, when its record says it runs as primary. */
  readonly rw?: Backend;
  /** Why there is no rw backend. */
  readonly rwMissing?: RouteReason;
  /** Streaming replicas within the lag limit and not tagged noloadbalance (or the leader as fallback), by name. */
  readonly ro: readonly Backend[];
}

/**
 * Computes the route table from one cluster view. Pure.
 *
 * rw is the member the leader key names, and only when its member record — published under the same
 * lease as the leader key — says role primary and state running: a leader that is still promoting,
 * or a record left from another term, gets no traffic (invariant 6 in docs/architecture.md).
 * ro lists replicas in state streaming, not tagged noloadbalance, whose lag behind the leader's
 * position (the leader's record, else the last published `status`) is at most roMaxLagBytes; when the
 * reference position is unknown the lag cannot be measured and streaming replicas are kept.
 */
export function computeRouteTable(view: ClusterView, settings: RouteSettings): RouteTable {
  const leaderName = view.leader?.name;
  const leaderRecord = leaderName === undefined ? undefined : view.members.get(leaderName);
  let rw: Backend | undefined;
  let rwMissing: RouteReason | undefined;
  if (view.leader === undefined || leaderName === undefined) {
    rwMissing = { code: 'no-leader-key', message: 'no member holds the leader key' };
  } else if (leaderRecord === undefined) {
    rwMissing = { code: 'leader-member-missing', message: `leader ${leaderName} has no member record` };
  } else if (leaderRecord.lease !== view.leader.lease) {
    rwMissing = { code: 'leader-lease-mismatch', message: `leader ${leaderName}'s member record is not on the leader key's lease` };
  } else if (leaderRecord.role !== 'primary' || leaderRecord.state !== 'running') {
    rwMissing = {
      code: 'leader-not-running-primary',
      message: `leader ${leaderName} is ${leaderRecord.role}/${leaderRecord.state}, not a running primary yet`,
    };
  } else {
    rw = backendOf(leaderRecord);
  }

  const reference = referencePosition(leaderRecord, view);
  const ro = [...view.members.values()]
    .filter((m) => m.name !== leaderName && m.role === 'replica' && m.state === 'streaming' && !m.tags.noloadbalance)
    .filter((m) => {
      if (reference === undefined) return true;
      const pos = safeLsn(m.walPosition);
      return pos !== undefined && lagBytes(reference, pos) <= settings.roMaxLagBytes;
    })
    .sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }))
    .map(backendOf);
  const roWithFallback = ro.length === 0 && settings.roFallbackToLeader && rw !== undefined ? [rw] : ro;
  return { ...(rw === undefined ? {} : { rw }), ...(rwMissing === undefined ? {} : { rwMissing }), ro: roWithFallback };
}

/** Everything that decides the routes at one moment. */
export interface RoutingInput {
  /** undefined until the first successful read. */
  readonly view: ClusterView | undefined;
  readonly pause: SwitchoverPause | undefined;
  /** Send time of the last successful (linearizable) read of the cluster prefix. */
  readonly confirmedAtMs: number | undefined;
  readonly nowMs: number;
  readonly settings: RouteSettings;
}

/** The routes the proxy applies. */
export interface Routes {
  /**
   * The leader sessions may stay on. Undefined when there is none or it cannot be confirmed: every
   * read-write session to any other backend is dropped at once.
   */
  readonly rw?: Backend;
  /** True when new read-write connections may go to `rw` now (not paused, not failing closed). */
  readonly rwOpen: boolean;
  /** Why new read-write connections are held, when they are. */
  readonly rwHeld?: RouteReason;
  readonly ro: readonly Backend[];
  /** The moment the routes change by time alone (fail-closed or pause expiry); the caller recomputes then. */
  readonly recomputeAtMs?: number;
}

/**
 * Applies timing to the route table. Pure. The leader is trusted only within one lease ttl of the
 * send time of the last successful read: a leader the router saw at t may have lost its lease by
 * t + ttl without the router hearing of it, so after that the router fails closed (no rw, sessions
 * dropped) until etcd answers again. A switchover pause holds new rw connections while the leader
 * key still names the announced old leader (see switchover-pause.ts).
 */
export function computeRoutes(input: RoutingInput): Routes {
  const { view, pause, confirmedAtMs, nowMs } = input;
  if (view === undefined || confirmedAtMs === undefined) {
    return { rwOpen: false, rwHeld: { code: 'no-cluster-view', message: 'the cluster has not been read from etcd yet' }, ro: [] };
  }
  const table = computeRouteTable(view, input.settings);
  const ttlMs = view.config.ttl * 1000;
  const confirmedUntilMs = confirmedAtMs + ttlMs;
  if (nowMs >= confirmedUntilMs) {
    const agoS = ((nowMs - confirmedAtMs) / 1000).toFixed(1);
    return {
      rwOpen: false,
      rwHeld: { code: 'leader-unconfirmed', message: `etcd has not confirmed the leader for ${agoS} s (ttl ${view.config.ttl} s)` },
      ro: table.ro,
    };
  }
  if (table.rw === undefined) {
    return { rwOpen: false, ...(table.rwMissing === undefined ? {} : { rwHeld: table.rwMissing }), ro: table.ro, recomputeAtMs: confirmedUntilMs };
  }
  const paused = pause !== undefined && nowMs < pause.untilMs && pause.from === table.rw.name;
  if (paused) {
    return {
      rw: table.rw,
      rwOpen: false,
      rwHeld: { code: 'switchover-pause', message: `switchover from ${pause.from}${pause.to === null ? '' : ` to ${pause.to}`} announced` },
      ro: table.ro,
      recomputeAtMs: Math.min(confirmedUntilMs, pause.untilMs),
    };
  }
  return { rw: table.rw, rwOpen: true, ro: table.ro, recomputeAtMs: confirmedUntilMs };
}

function backendOf(m: MemberRecord): Backend {
  return { name: m.name, host: m.host, port: m.port };
}

function referencePosition(leader: MemberRecord | undefined, view: ClusterView): Lsn | undefined {
  return safeLsn(leader?.walPosition) ?? view.status?.lsn;
}

function safeLsn(text: string | undefined): Lsn | undefined {
  if (text === undefined) return undefined;
  try {
    return parseLsn(text);
  } catch {
    return undefined;
  }
}
