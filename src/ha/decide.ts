import { lagBytes } from '../core/lsn.js';
import type { Action, Upstream } from './actions.js';
import { latestHistoryTimeline, slotNameFor, type ClusterView, type MemberRecord } from './cluster-view.js';
import { DEFAULT_DYNAMIC_CONFIG as DEFAULT_FALLBACK, type DynamicConfig } from './dynamic-config.js';
import type { AgentMemory, Observation, PeerFacts, ServerFacts } from './observation.js';
import type { Reason, ReasonCode } from './reason.js';

/** The output of one HA loop: what to do, in order, why, and what to remember. */
export interface Decision {
  readonly actions: readonly Action[];
  readonly reason: Reason;
  readonly memory: AgentMemory;
}

/** A replica that has not streamed for this long while behind the leader's timeline is rewound. */
export const REPLICA_STALL_MS = 15_000;

/**
 * Time before the local lease deadline at which a leader stops PostgreSQL (invariant 1): the fence
 * (SIGQUIT, immediate shutdown) has this long to finish before etcd could expire the lease.
 */
export function fenceMarginMs(config: DynamicConfig): number {
  return Math.min(400, (config.ttl * 1000) / 5);
}

/** True when this agent holds a lease whose local deadline (minus the fence margin) is in the future. */
export function hasValidLease(obs: Observation, config: DynamicConfig): boolean {
  return obs.lease !== undefined && obs.nowMs < obs.lease.deadlineMs - fenceMarginMs(config);
}

/**
 * The HA decision: observation in, ordered actions and one reason out (DESIGN.md §4, STYLE.md
 * shape 1). Pure: no I/O, no clock, no randomness.
 */
export function decide(obs: Observation, memory: AgentMemory): Decision {
  const done = (code: ReasonCode, message: string, actions: readonly Action[] = [], mem: AgentMemory = memory): Decision => ({
    actions,
    reason: { code, message },
    memory: mem,
  });
  const pg = obs.pg;
  const server = pg.process === 'running' ? pg.server : undefined;
  const runningPrimary = server !== undefined && !server.inRecovery;

  if (!obs.dcs.ok) {
    // Invariant 1: without the DCS we cannot renew; keep writing only while the lease is still ours.
    if (runningPrimary && obs.lease !== undefined && obs.nowMs >= obs.lease.deadlineMs - fenceMarginMs(defaultsFor(obs))) {
      return done('dcs-unreachable-demoting', `DCS unreachable (${obs.dcs.error}) and the lease deadline has passed: stopping PostgreSQL`, [
        { kind: 'stop', mode: 'immediate' },
      ]);
    }
    return done('dcs-unreachable', `DCS unreachable: ${obs.dcs.error}`);
  }
  const view = obs.dcs.view;
  const config = view.config;
  const me = obs.self.name;
  const leaseOk = hasValidLease(obs, config);
  const iHoldLeaderKey = view.leader !== undefined && view.leader.name === me && obs.lease !== undefined && view.leader.lease === obs.lease.id;

  // Invariant 1 before anything else: a primary without a valid lease stops now.
  if (runningPrimary && !leaseOk) {
    return done('lease-expired-demoting', 'the lease could not be renewed before its deadline: stopping PostgreSQL (fencing)', [
      { kind: 'stop', mode: 'immediate' },
    ], { ...memory, slotNames: undefined });
  }
  if (runningPrimary && view.leader !== undefined && view.leader.name !== me) {
    return done('demoting-other-leader', `${view.leader.name} holds the leader key but this member runs as primary: stopping it to rejoin as a replica`, [
      { kind: 'stop', mode: 'immediate' },
    ], { ...memory, slotNames: undefined });
  }

  if (config.pause) {
    return done('paused', 'maintenance mode: nothing is started, stopped or promoted automatically');
  }

  // ---- bootstrap ---------------------------------------------------------------------------
  if (view.initialize === undefined) {
    if (pg.dataDir.kind === 'initialized') {
      return done('data-dir-without-cluster', `the data directory holds system ${pg.dataDir.systemIdentifier ?? '?'} but the cluster is not initialized in the DCS: refusing to guess, touching nothing`);
    }
    if (!leaseOk) return done('waiting-for-lease', 'waiting for a DCS lease before joining the bootstrap race');
    return done('bootstrap-racing', 'the cluster is not initialized: racing to bootstrap it', [
      { kind: 'acquire-initialize' },
      { kind: 'acquire-leader' },
      { kind: 'bootstrap' },
    ]);
  }
  if (view.initialize.value === '') {
    if (iHoldLeaderKey && pg.dataDir.kind !== 'initialized') {
      // We won both races but the bootstrap failed before publishing: try again.
      return done('bootstrap-retrying', 'this member holds the bootstrap lock: running initdb again', [{ kind: 'bootstrap' }]);
    }
    return done('bootstrap-waiting', `waiting for ${view.leader?.name ?? 'the bootstrapping member'} to finish initdb`);
  }
  const sysid = view.initialize.value;

  // ---- data directory ------------------------------------------------------------------------
  if (pg.dataDir.kind === 'initialized' && pg.dataDir.systemIdentifier !== undefined && pg.dataDir.systemIdentifier !== sysid) {
    return done('data-dir-foreign', `the data directory belongs to system ${pg.dataDir.systemIdentifier}, not to this cluster (${sysid}): refusing to touch it`);
  }
  if (pg.dataDir.kind === 'invalid') {
    return done('data-dir-invalid', 'the data directory is incomplete (no pg_control): moving it aside to clone anew', [{ kind: 'move-data-aside' }]);
  }
  const leaderRecord = view.leader !== undefined ? view.members.get(view.leader.name) : undefined;
  if (pg.dataDir.kind === 'missing' || pg.dataDir.kind === 'empty') {
    if (view.leader === undefined || leaderRecord === undefined || view.leader.name === me) {
      return done('clone-waiting-for-leader', 'no data yet and no leader to clone from: waiting');
    }
    if (leaderRecord.role !== 'primary' || leaderRecord.state !== 'running') {
      return done('clone-waiting-for-leader', `no data yet; waiting for leader ${leaderRecord.name} to run as primary (it is ${leaderRecord.state})`);
    }
    const up = upstreamOf(leaderRecord);
    return done('creating-replica', `cloning from leader ${up.name} with pg_basebackup`, [
      { kind: 'clone', from: up },
      { kind: 'configure', role: 'replica', upstream: up },
      { kind: 'start' },
    ]);
  }

  // ---- leader: this member holds the key -----------------------------------------------------
  if (view.leader !== undefined && view.leader.name === me && !iHoldLeaderKey) {
    // The key names us but hangs on an older lease: this agent restarted while its lease lived on.
    if (!leaseOk) return done('waiting-for-lease', 'the leader key names this member; waiting for a lease to take it over');
    return done('leader-taking-over', 'the leader key names this member under an earlier lease: taking it over', [
      { kind: 'take-over-leader', modRevision: view.leader.modRevision },
    ]);
  }
  if (iHoldLeaderKey && view.leader !== undefined) {
    return decideAsLeader(obs, memory, view, server, view.leader.modRevision);
  }
  const mem: AgentMemory = { ...memory, primaryDownSinceMs: undefined, slotNames: undefined };

  // ---- another member leads ------------------------------------------------------------------
  if (view.leader !== undefined) {
    if (leaderRecord === undefined) {
      return done('waiting-for-leader-record', `${view.leader.name} holds the leader key but has not published where it listens yet`, [], mem);
    }
    const up = upstreamOf(leaderRecord);
    if (pg.process !== 'running') {
      const wasPrimary = pg.dataDir.clusterState === 'in production' || pg.dataDir.clusterState === 'shut down';
      if (memory.mustRewind || wasPrimary) {
        if (!config.postgresql.use_pg_rewind || obs.lastFailure?.action === 'rewind') {
          return done('reclone', `the data may have diverged from ${up.name} and ${obs.lastFailure?.action === 'rewind' ? `pg_rewind failed (${obs.lastFailure.message})` : 'use_pg_rewind is off'}: moving the data aside to clone anew`, [
            { kind: 'move-data-aside' },
          ], { ...mem, mustRewind: undefined });
        }
        // Invariant 5: a former primary never streams from the new leader without a timeline check.
        return done('rewinding', `rejoining ${up.name}: pg_rewind first, since this member was a primary or could not follow the new timeline`, [
          { kind: 'rewind', from: up },
          { kind: 'configure', role: 'replica', upstream: up },
          { kind: 'start' },
        ], { ...mem, mustRewind: undefined, notStreamingSinceMs: undefined });
      }
      return done('starting-as-replica', `starting PostgreSQL as a replica of ${up.name}`, [
        { kind: 'configure', role: 'replica', upstream: up },
        { kind: 'start' },
      ], { ...mem, notStreamingSinceMs: undefined });
    }
    if (server === undefined) {
      return done('postgres-not-answering', 'PostgreSQL runs but does not answer status queries yet', [], mem);
    }
    const configured = pg.configuredAs;
    if (configured === undefined || configured.kind !== 'replica' || configured.upstream !== up.name) {
      // primary_conninfo is reloadable (PostgreSQL 13+): rewriting it and reloading repoints the
      // WAL receiver without a restart, so read-only sessions on this replica survive a failover.
      return done('replica-repointing', `following the new leader ${up.name}`, [
        { kind: 'configure', role: 'replica', upstream: up },
      ], { ...mem, notStreamingSinceMs: undefined });
    }
    if (server.streaming) {
      return done('replica-streaming', `streaming from leader ${up.name}`, [], { ...mem, notStreamingSinceMs: undefined });
    }
    const since = memory.notStreamingSinceMs ?? obs.nowMs;
    const leaderTimeline = leaderRecord.timeline ?? view.status?.timeline ?? 0;
    if (obs.nowMs - since >= REPLICA_STALL_MS && server.timeline < leaderTimeline) {
      return done('replica-diverged', `not streaming for ${Math.round((obs.nowMs - since) / 1000)} s and behind the leader's timeline ${leaderTimeline}: stopping to rewind`, [
        { kind: 'stop', mode: 'fast' },
      ], { ...mem, mustRewind: true, notStreamingSinceMs: undefined });
    }
    return done('replica-not-streaming', `replica of ${up.name}, not streaming yet`, [], { ...mem, notStreamingSinceMs: since });
  }

  // ---- nobody leads: the leader race ---------------------------------------------------------
  if (!leaseOk) return done('waiting-for-lease', 'no leader, and this agent has no valid lease to race with', [], mem);
  if (pg.process !== 'running') {
    return done('starting-as-replica', 'no leader: starting PostgreSQL as a standby so that it can join the leader race', [
      { kind: 'configure', role: 'replica' },
      { kind: 'start' },
    ], mem);
  }
  if (server === undefined) return done('postgres-not-answering', 'no leader, and PostgreSQL does not answer status queries yet', [], mem);
  if (!server.inRecovery) {
    return done('leader-reacquiring', 'no leader key while this member runs as primary: taking the key back', [{ kind: 'acquire-leader' }], mem);
  }
  const verdict = raceVerdict(obs, view, server);
  if (verdict !== undefined) return done(verdict.code, verdict.message, [], mem);
  return done('promoting', 'the leader key is gone and this member is the most advanced eligible one: acquiring it and promoting', [
    { kind: 'acquire-leader' },
    { kind: 'promote', reason: `leader ${view.status?.leader ?? 'unknown'} lost; ${me} promoted` },
  ], mem);
}

function decideAsLeader(
  obs: Observation,
  memory: AgentMemory,
  view: ClusterView,
  server: ServerFacts | undefined,
  leaderModRevision: number,
): Decision {
  const pg = obs.pg;
  const config = view.config;
  if (pg.process !== 'running' || server === undefined) {
    const since = memory.primaryDownSinceMs ?? obs.nowMs;
    if (obs.nowMs - since > config.primary_start_timeout * 1000) {
      return {
        actions: [...(pg.process === 'running' ? [{ kind: 'stop', mode: 'immediate' } as const] : []), { kind: 'release-leader', modRevision: leaderModRevision }],
        reason: { code: 'primary-start-timeout', message: `PostgreSQL did not come back within primary_start_timeout (${config.primary_start_timeout} s): releasing the leader key for a failover` },
        memory: { ...memory, primaryDownSinceMs: undefined, slotNames: undefined },
      };
    }
    if (pg.process === 'running') {
      return { actions: [], reason: { code: 'postgres-not-answering', message: 'PostgreSQL runs but does not answer yet' }, memory: { ...memory, primaryDownSinceMs: since } };
    }
    const wasStandby = pg.dataDir.clusterState !== undefined && pg.dataDir.clusterState !== 'in production' && pg.dataDir.clusterState !== 'shut down';
    // A standby's data must be promoted (new timeline), never simply started read-write on the old
    // one, or a diverged former primary could not be told apart by pg_rewind.
    return {
      actions: wasStandby ? [{ kind: 'configure', role: 'replica' }, { kind: 'start' }] : [{ kind: 'configure', role: 'primary' }, { kind: 'start' }],
      reason: {
        code: 'leader-restarting-postgres',
        message: `this member holds the leader key and PostgreSQL is ${pg.process}: starting it in place${wasStandby ? ' as a standby, to promote it next' : ''}`,
      },
      memory: { ...memory, primaryDownSinceMs: since },
    };
  }
  if (server.inRecovery) {
    return {
      actions: [{ kind: 'promote', reason: `${obs.self.name} holds the leader key` }],
      reason: { code: 'promoting', message: 'this member holds the leader key: promoting PostgreSQL' },
      memory: { ...memory, primaryDownSinceMs: undefined },
    };
  }
  const slots = [...view.members.keys()].filter((n) => n !== obs.self.name).map(slotNameFor).sort();
  const slotKey = slots.join(',');
  return {
    actions: slotKey !== memory.slotNames ? [{ kind: 'sync-slots', slots }] : [],
    reason: { code: 'leader-healthy', message: 'no action: this member is the leader with a valid lease' },
    memory: { ...memory, primaryDownSinceMs: undefined, slotNames: slotKey },
  };
}

/** Why this member may not promote, or undefined when it may (invariant 3 in DESIGN.md). */
function raceVerdict(obs: Observation, view: ClusterView, server: ServerFacts): { code: ReasonCode; message: string } | undefined {
  const config = view.config;
  const self = obs.self;
  if (self.tags.nofailover || self.tags.failoverPriority <= 0) {
    return { code: 'race-nofailover', message: 'no leader, but this member is tagged nofailover' };
  }
  const latestTimeline = latestHistoryTimeline(view.history);
  if (config.check_timeline && server.timeline < latestTimeline) {
    return { code: 'race-stale-timeline', message: `no leader, but this member is on timeline ${server.timeline}, behind the cluster's timeline ${latestTimeline}` };
  }
  if (view.status !== undefined) {
    const lag = lagBytes(view.status.lsn, server.walPosition);
    if (lag > config.maximum_lag_on_failover) {
      return { code: 'race-lag-too-high', message: `no leader, but this member is ${lag} bytes behind the last known leader position (maximum_lag_on_failover ${config.maximum_lag_on_failover})` };
    }
  }
  const peers = obs.peers ?? [];
  const claimant = peers.find((p) => p.reachable && p.running === true && p.role === 'primary');
  if (claimant !== undefined) {
    return { code: 'race-primary-still-running', message: `no leader key, but ${claimant.name} still reports running as primary` };
  }
  const better = peers.find((p) => isBetterCandidate(p, self.name, self.tags.failoverPriority, server.walPosition, latestTimeline, config));
  if (better !== undefined) {
    return { code: 'race-peer-ahead', message: `no leader, but ${better.name} is a better candidate (WAL ${String(better.walPosition)} vs ${String(server.walPosition)})` };
  }
  return undefined;
}

function isBetterCandidate(p: PeerFacts, me: string, myPriority: number, myPos: bigint, latestTimeline: number, config: DynamicConfig): boolean {
  if (!p.reachable || p.running !== true || p.walPosition === undefined || p.role !== 'replica') return false;
  if (p.tags !== undefined && (p.tags.nofailover || p.tags.failoverPriority <= 0)) return false;
  if (config.check_timeline && (p.timeline ?? 0) < latestTimeline) return false;
  if (p.walPosition !== myPos) return p.walPosition > myPos;
  const theirPriority = p.tags?.failoverPriority ?? 1;
  if (theirPriority !== myPriority) return theirPriority > myPriority;
  return p.name < me;
}

function upstreamOf(m: MemberRecord): Upstream {
  return { name: m.name, host: m.host, port: m.port };
}

function defaultsFor(obs: Observation): DynamicConfig {
  // Only reached when the DCS is unreadable: use the last config the shell knows, else the defaults.
  return obs.dcs.ok ? obs.dcs.view.config : DEFAULT_FALLBACK;
}
