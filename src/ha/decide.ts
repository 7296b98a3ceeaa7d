import { assertNever } from '../core/errors.js';
import { lagBytes } from '../core/lsn.js';
import type { Action, Upstream } from './actions.js';
import { latestHistoryTimeline, slotNameFor, type ClusterView, type MemberRecord } from './cluster-view.js';
import { DEFAULT_DYNAMIC_CONFIG as DEFAULT_FALLBACK, type DynamicConfig } from './dynamic-config.js';
import type { AgentMemory, InFlightOperation, LocalOperation, Observation, PeerFacts, SelfFacts, ServerFacts } from './observation.js';
import { desiredSyncSet, keyFor, nextSyncStep, standbyNamesFor, type SyncCandidate } from './sync.js';
import type { Reason, ReasonCode } from './reason.js';

/** The output of one HA loop: what to do, in order, why, and what to remember. */
export interface Decision {
  readonly actions: readonly Action[];
  readonly reason: Reason;
  readonly memory: AgentMemory;
  /** The operator's request these actions carry out; the shell answers it when they finish. */
  readonly operation?: LocalOperation['kind'];
}

/** Failed bootstrap attempts after which an agent stops trying (see 'bootstrap-gave-up'). */
export const MAX_BOOTSTRAP_ATTEMPTS = 3;

/** How long other members wait for a named switchover / failover candidate before racing normally. */
export const CANDIDATE_WAIT_MS = 30_000;
/** How long routers hold new connections for a planned switchover at most. */
export const SWITCHOVER_PAUSE_MS = 10_000;

/** A replica that has not streamed for this long while behind the leader's timeline is rewound. */
export const REPLICA_STALL_MS = 10_000;

/** True when the replica's WAL receiver streams the leader's timeline (or nothing tells otherwise). */
export function streamsLeaderTimeline(server: { streaming: boolean; receivedTimeline?: number }, leaderTimeline: number): boolean {
  return server.streaming && (server.receivedTimeline === undefined || leaderTimeline === 0 || server.receivedTimeline >= leaderTimeline);
}

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
 * The HA decision: observation in, ordered actions and one reason out (docs/architecture.md,
 * 'Invariants' and 'Code shapes'). Pure: no I/O, no clock, no randomness.
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

  // Stops PostgreSQL at once (invariant 1), cancelling whatever runs first; an immediate stop
  // already under way for a fencing reason is left to finish rather than started again.
  const fenceNow = (code: ReasonCode, message: string, mem: AgentMemory = memory): Decision => {
    const f = obs.inFlight;
    if (f !== undefined && f.plan.includes('stop') && FENCING_CODES.has(f.startedBy)) return done(code, `${message} (the stop is under way)`, [], mem);
    return done(code, message, [...(f === undefined ? [] : [{ kind: 'cancel-operation', why: message } as const]), { kind: 'stop', mode: 'immediate' }], mem);
  };

  if (!obs.dcs.ok) {
    // failsafe_mode: every other member confirmed, over the REST API, that it cannot reach the DCS
    // either and still follows this leader — nobody can be promoted, so the primary keeps serving.
    if (runningPrimary && obs.failsafeUntilMs !== undefined && obs.nowMs < obs.failsafeUntilMs) {
      return done('failsafe-mode', `DCS unreachable (${obs.dcs.error}); failsafe_mode: every member confirmed it cannot reach the DCS either, so this primary keeps serving`);
    }
    // Invariant 1: without the DCS we cannot renew; keep writing only while the lease is still ours.
    if (runningPrimary && (obs.lease === undefined || obs.nowMs >= obs.lease.deadlineMs - fenceMarginMs(defaultsFor(obs)))) {
      return fenceNow('dcs-unreachable-demoting', `DCS unreachable (${obs.dcs.error}) and the lease deadline has passed: stopping PostgreSQL`);
    }
    return done('dcs-unreachable', `DCS unreachable: ${obs.dcs.error}${obs.inFlight === undefined ? '' : `; ${describeInFlight(obs.inFlight)}`}`);
  }
  const view = obs.dcs.view;
  const config = view.config;
  const me = obs.self.name;
  const self = obs.self;
  const leaseOk = hasValidLease(obs, config);
  const iHoldLeaderKey = view.leader !== undefined && view.leader.name === me && obs.lease !== undefined && view.leader.lease === obs.lease.id;

  // Invariant 1 before anything else: a primary without a valid lease stops now.
  if (runningPrimary && !leaseOk) {
    return fenceNow('lease-expired-demoting', 'the lease could not be renewed before its deadline: stopping PostgreSQL (fencing)', { ...memory, slotNames: undefined });
  }
  if (runningPrimary && view.leader !== undefined && view.leader.name !== me) {
    return fenceNow('demoting-other-leader', `${view.leader.name} holds the leader key but this member runs as primary: stopping it to rejoin as a replica`, { ...memory, slotNames: undefined });
  }

  // One operation at a time: while it runs, nothing else touches PostgreSQL (only the checks above
  // may cut it short); it is let run, cancelled, or acted around.
  if (obs.inFlight !== undefined) return decideAroundInFlight(obs, obs.inFlight, memory, view, iHoldLeaderKey);

  if (config.pause) {
    return done('paused', 'maintenance mode: nothing is started, stopped or promoted automatically');
  }

  // ---- bootstrap ---------------------------------------------------------------------------
  // A bootstrap that keeps failing (an invalid parameter, a full disk) must not loop: every attempt
  // moves a data directory aside. After MAX_BOOTSTRAP_ATTEMPTS this agent stops and says why.
  const failed = obs.lastFailure?.action === 'bootstrap' ? { count: (memory.bootstrapFailures?.count ?? 0) + 1, lastError: obs.lastFailure.message } : memory.bootstrapFailures;
  if ((view.initialize === undefined || view.initialize.value === '') && failed !== undefined && failed.count >= MAX_BOOTSTRAP_ATTEMPTS && pg.dataDir.kind !== 'initialized') {
    return done(
      'bootstrap-gave-up',
      `bootstrap failed ${failed.count} times, last: ${failed.lastError}; not trying again (each attempt moves a data directory aside): fix the cause, then restart this agent`,
      [],
      { ...memory, bootstrapFailures: failed },
    );
  }
  if (failed !== memory.bootstrapFailures) memory = { ...memory, bootstrapFailures: failed };
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
    // A streaming replica tagged clonefrom spares the leader the base backup.
    const source = [...view.members.values()].find((m) => m.tags.clonefrom === true && m.name !== me && m.role === 'replica' && m.state === 'streaming') ?? leaderRecord;
    const follow = followTarget(view, self, leaderRecord);
    return done('creating-replica', `cloning from ${source === leaderRecord ? 'leader ' : ''}${source.name} with pg_basebackup`, [
      { kind: 'clone', from: upstreamOf(source) },
      follow.configure,
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
  const mem: AgentMemory = { ...memory, primaryDownSinceMs: undefined, slotNames: undefined, notAnsweringSinceMs: undefined };

  // ---- an operator's request on a non-leader -------------------------------------------------
  const op = obs.operation;
  if (op !== undefined && op.kind === 'reinitialize') {
    if (view.leader === undefined || leaderRecord === undefined) {
      return { ...done('reinitialize-refused', 'cannot reinitialize without a running leader to clone from', [], mem), operation: 'reinitialize' };
    }
    // The old data is moved aside (never deleted); the next loop clones from the leader.
    return { ...done('reinitializing', `reinitializing from leader ${view.leader.name}: stopping PostgreSQL and moving the data aside`, [
      ...(pg.process === 'running' ? [{ kind: 'stop', mode: 'immediate' } as const] : []),
      { kind: 'move-data-aside' },
    ], { ...mem, mustRewind: undefined }), operation: 'reinitialize' };
  }
  if (op !== undefined && op.kind === 'reload') {
    return { ...done('reloading', 'reloading the PostgreSQL configuration', [{ kind: 'update-parameters', parameters: config.postgresql.parameters }], mem), operation: 'reload' };
  }

  // ---- another member leads ------------------------------------------------------------------
  if (view.leader !== undefined) {
    if (leaderRecord === undefined) {
      return done('waiting-for-leader-record', `${view.leader.name} holds the leader key but has not published where it listens yet`, [], mem);
    }
    const up = upstreamOf(leaderRecord);
    const follow = followTarget(view, self, leaderRecord);
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
          follow.configure,
          { kind: 'start' },
        ], { ...mem, mustRewind: undefined, notStreamingSinceMs: undefined });
      }
      return done('starting-as-replica', `starting PostgreSQL as a replica of ${up.name}`, [
        follow.configure,
        { kind: 'start' },
      ], { ...mem, notStreamingSinceMs: undefined });
    }
    if (server === undefined) {
      // A restart is what an operator tries first on a stuck replica: it must not wait forever.
      if (op !== undefined && op.kind === 'restart') {
        return { ...done('restarting', 'restarting PostgreSQL as the operator asked (it was not answering)', [{ kind: 'stop', mode: 'fast' }, follow.configure, { kind: 'start' }], mem), operation: 'restart' };
      }
      const since = memory.notAnsweringSinceMs ?? obs.nowMs;
      const waitedS = Math.round((obs.nowMs - since) / 1000);
      if (obs.nowMs - since >= config.replica_start_timeout * 1000) {
        // Its data is moved aside, never deleted (invariant 5); the next loop clones anew.
        return done('replica-reseeding', `PostgreSQL ran ${waitedS} s without becoming consistent (replica_start_timeout ${config.replica_start_timeout} s; often WAL it needs is gone from ${up.name}): stopping it and moving the data aside to clone anew`, [
          { kind: 'stop', mode: 'immediate' },
          { kind: 'move-data-aside' },
        ], { ...mem, notAnsweringSinceMs: undefined });
      }
      return done('postgres-not-answering', `PostgreSQL runs but does not answer status queries yet (${waitedS} s; re-seeded after replica_start_timeout ${config.replica_start_timeout} s)`, [], { ...mem, notAnsweringSinceMs: since });
    }
    const configured = pg.configuredAs;
    if (configured === undefined || configured.kind !== 'replica' || configured.upstream !== follow.upstream.name) {
      // primary_conninfo is reloadable (PostgreSQL 13+): rewriting it and reloading repoints the
      // WAL receiver without a restart, so read-only sessions on this replica survive a failover.
      return done('replica-repointing', `following ${follow.upstream.name === up.name ? 'the new leader ' : ''}${follow.upstream.name}`, [
        follow.configure,
      ], { ...mem, notStreamingSinceMs: undefined });
    }
    if (op !== undefined && op.kind === 'restart') {
      return { ...done('restarting', 'restarting PostgreSQL as the operator asked', [
        { kind: 'stop', mode: 'fast' },
        follow.configure,
        { kind: 'start' },
      ], mem), operation: 'restart' };
    }
    const params = JSON.stringify(config.postgresql.parameters);
    if (pg.appliedParameters !== undefined && pg.appliedParameters !== params) {
      return done('parameters-changed', 'the cluster parameters changed: applying them (reload)', [{ kind: 'update-parameters', parameters: config.postgresql.parameters }], mem);
    }
    const leaderTimeline = leaderRecord.timeline ?? view.status?.timeline ?? 0;
    const received = server.receivedTimeline ?? memory.lastReceivedTimeline;
    const remembered = { ...mem, ...(server.receivedTimeline === undefined ? {} : { lastReceivedTimeline: server.receivedTimeline }) };
    // A WAL receiver streaming an older timeline than the leader's cannot follow it (this replica
    // has WAL past the fork point): it reconnects every second and looks "streaming" each time.
    if (streamsLeaderTimeline(server, leaderTimeline)) {
      return done('replica-streaming', `streaming from ${follow.upstream.name === up.name ? 'leader ' : ''}${follow.upstream.name}`, [], { ...remembered, notStreamingSinceMs: undefined });
    }
    const since = memory.notStreamingSinceMs ?? obs.nowMs;
    if (obs.nowMs - since >= REPLICA_STALL_MS && (received ?? server.timeline) < leaderTimeline) {
      return done('replica-diverged', `not following the leader for ${Math.round((obs.nowMs - since) / 1000)} s and its WAL receiver is on timeline ${received ?? server.timeline}, behind the leader's ${leaderTimeline}: stopping to rewind`, [
        { kind: 'stop', mode: 'fast' },
      ], { ...remembered, mustRewind: true, notStreamingSinceMs: undefined, lastReceivedTimeline: undefined });
    }
    return done('replica-not-streaming', `replica of ${up.name}, not streaming ${server.streaming ? `the leader's timeline ${leaderTimeline} yet` : 'yet'}`, [], { ...remembered, notStreamingSinceMs: since });
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
  const promoteAction = (reason: string): Action => {
    const standbyNames = config.synchronous_mode !== 'off' && config.synchronous_mode_strict ? '*' : undefined;
    return standbyNames === undefined ? { kind: 'promote', reason } : { kind: 'promote', reason, standbyNames };
  };
  const request = view.failover;
  if (request !== undefined && request.candidate !== undefined) {
    if (request.candidate === me) {
      // The operator named this member: it promotes without the race (a switchover's leader has
      // already verified it holds every WAL byte; a failover was confirmed by the operator).
      if (self.tags.nofailover) return done('race-nofailover', 'named as candidate, but this member is tagged nofailover', [], mem);
      return done('promoting', `the ${request.kind} names this member as candidate: acquiring the leader key and promoting`, [
        { kind: 'acquire-leader' },
        promoteAction(`${request.kind} to ${me}${request.leader !== undefined ? ` from ${request.leader}` : ''}`),
        { kind: 'delete-failover', modRevision: request.modRevision },
      ], mem);
    }
    if (obs.nowMs - request.requestedAtMs < CANDIDATE_WAIT_MS) {
      return done('race-waiting-for-candidate', `no leader: waiting for ${request.candidate}, the candidate of the requested ${request.kind}`, [], mem);
    }
  }
  const verdict = raceVerdict(obs, view, server);
  if (verdict !== undefined) return done(verdict.code, verdict.message, [], mem);
  return done('promoting', 'the leader key is gone and this member is the most advanced eligible one: acquiring it and promoting', [
    { kind: 'acquire-leader' },
    promoteAction(`leader ${view.status?.leader ?? 'unknown'} lost; ${me} promoted`),
  ], mem);
}

/** The actions of a switchover; one of them failing ends the request (see 'switchover-failed'). */
const SWITCHOVER_STEPS: readonly string[] = ['name-failover-candidate', 'announce-switchover', 'stop', 'await-caught-up', 'release-leader'];

/** Decision reasons whose immediate stop is a fence: one under way is not restarted. */
const FENCING_CODES: ReadonlySet<ReasonCode> = new Set(['dcs-unreachable-demoting', 'lease-expired-demoting', 'demoting-other-leader']);

/** "clone in progress for 12 s (creating-replica, 412 of 1024 MB)". */
export function describeInFlight(f: InFlightOperation): string {
  const p = f.progress;
  const mb = (b: number): string => String(Math.round(b / (1024 * 1024)));
  const progress = p === undefined ? '' : p.totalBytes === undefined ? `, ${mb(p.doneBytes)} MB` : `, ${mb(p.doneBytes)} of ${mb(p.totalBytes)} MB`;
  return `${f.kind} in progress for ${Math.round(f.elapsedMs / 1000)} s (${f.startedBy}${f.source === undefined ? '' : ` from ${f.source}`}${progress})`;
}

/**
 * While an operation runs: let it run, unless it can no longer end well — the leader's in-place
 * start past primary_start_timeout (cancelled, leader key released), a copy whose source left the
 * cluster, a promotion of a member that lost the leader key meanwhile.
 */
function decideAroundInFlight(obs: Observation, f: InFlightOperation, memory: AgentMemory, view: ClusterView, iHoldLeaderKey: boolean): Decision {
  const config = view.config;
  const me = obs.self.name;
  const wait: Decision = { actions: [], reason: { code: 'operation-in-progress', message: describeInFlight(f) }, memory };
  if (config.pause) return { ...wait, reason: { code: 'operation-in-progress', message: `${describeInFlight(f)}; maintenance mode: it is left to finish` } };
  if (iHoldLeaderKey && view.leader !== undefined && f.startedBy === 'leader-restarting-postgres') {
    const since = memory.primaryDownSinceMs ?? obs.nowMs - f.elapsedMs;
    if (obs.nowMs - since > config.primary_start_timeout * 1000) {
      const why = `PostgreSQL did not come back within primary_start_timeout (${config.primary_start_timeout} s)`;
      return {
        actions: [{ kind: 'cancel-operation', why }, { kind: 'release-leader', modRevision: view.leader.modRevision }],
        reason: { code: 'primary-start-timeout', message: `${why}: cancelling the start and releasing the leader key for a failover` },
        memory: { ...memory, primaryDownSinceMs: undefined, slotNames: undefined },
      };
    }
    return wait;
  }
  if (f.source !== undefined && (f.kind === 'clone' || f.kind === 'rewind') && !view.members.has(f.source)) {
    const why = `${f.source}, the source of the ${f.kind}, is no longer a member`;
    return { actions: [{ kind: 'cancel-operation', why }], reason: { code: 'operation-cancelled', message: `${why}: cancelling the ${f.kind}` }, memory };
  }
  // The leader key is read before the operation's state (see the shell's observe), so a promotion
  // whose acquire-leader has succeeded always sees the key here.
  if (f.kind === 'promote' && !iHoldLeaderKey && view.leader !== undefined && view.leader.name !== me) {
    const why = `${view.leader.name} holds the leader key`;
    return { actions: [{ kind: 'cancel-operation', why }], reason: { code: 'operation-cancelled', message: `${why}: cancelling this member's promotion` }, memory };
  }
  return wait;
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
    // A switchover that failed after its fast stop (the candidate never got the last WAL, the key
    // could not be handed over) leaves the leader stopped with the request still there: drop the
    // request while starting again, or the next cycle would stop the primary for it once more.
    const failedRequest = view.failover !== undefined && obs.lastFailure !== undefined && SWITCHOVER_STEPS.includes(obs.lastFailure.action) ? view.failover : undefined;
    const wasStandby = pg.dataDir.clusterState !== undefined && pg.dataDir.clusterState !== 'in production' && pg.dataDir.clusterState !== 'shut down';
    // A standby's data must be promoted (new timeline), never simply started read-write on the old
    // one, or a diverged former primary could not be told apart by pg_rewind.
    // The start may hang (a crash recovery stuck on its disk): it gets what is left of
    // primary_start_timeout, and the next loop releases the key if it did not come back.
    const startTimeoutMs = Math.max(1000, config.primary_start_timeout * 1000 - (obs.nowMs - since));
    const startActions: Action[] = wasStandby
      ? [{ kind: 'configure', role: 'replica' }, { kind: 'start', timeoutMs: startTimeoutMs }]
      : [{ kind: 'configure', role: 'primary' }, { kind: 'start', timeoutMs: startTimeoutMs }];
    if (failedRequest !== undefined && obs.lastFailure !== undefined) {
      return {
        actions: [{ kind: 'delete-failover', modRevision: failedRequest.modRevision }, ...startActions],
        reason: { code: 'switchover-failed', message: `the ${failedRequest.kind} failed (${obs.lastFailure.message}): staying leader, starting PostgreSQL again and dropping the request` },
        memory: { ...memory, primaryDownSinceMs: since },
      };
    }
    return {
      actions: startActions,
      reason: {
        code: 'leader-restarting-postgres',
        message: `this member holds the leader key and PostgreSQL is ${pg.process}: starting it in place${wasStandby ? ' as a standby, to promote it next' : ''}`,
      },
      memory: { ...memory, primaryDownSinceMs: since },
    };
  }
  if (server.inRecovery) {
    const strict = config.synchronous_mode !== 'off' && config.synchronous_mode_strict;
    return {
      actions: [strict ? { kind: 'promote', reason: `${obs.self.name} holds the leader key`, standbyNames: '*' } : { kind: 'promote', reason: `${obs.self.name} holds the leader key` }],
      reason: { code: 'promoting', message: 'this member holds the leader key: promoting PostgreSQL' },
      memory: { ...memory, primaryDownSinceMs: undefined },
    };
  }
  const me = obs.self.name;
  const mem: AgentMemory = { ...memory, primaryDownSinceMs: undefined };
  const op = obs.operation;
  if (op !== undefined && op.kind === 'restart') {
    return {
      actions: [{ kind: 'stop', mode: 'fast' }, { kind: 'configure', role: 'primary' }, { kind: 'start' }],
      reason: { code: 'restarting', message: 'restarting PostgreSQL on the leader as the operator asked (the leader key is kept)' },
      memory: mem,
      operation: 'restart',
    };
  }
  if (op !== undefined && op.kind === 'reinitialize') {
    return { actions: [], reason: { code: 'reinitialize-refused', message: 'the leader cannot be reinitialized: switch over first' }, memory: mem, operation: 'reinitialize' };
  }

  // ---- a requested switchover / failover away from this leader -------------------------------
  const request = view.failover;
  if (request !== undefined) {
    const drop = (code: ReasonCode, message: string): Decision => ({
      actions: [{ kind: 'delete-failover', modRevision: request.modRevision }],
      reason: { code, message },
      memory: mem,
    });
    if (obs.lastFailure !== undefined && SWITCHOVER_STEPS.includes(obs.lastFailure.action)) {
      return drop('switchover-failed', `the ${request.kind} failed (${obs.lastFailure.message}): staying leader`);
    }
    if (request.leader !== undefined && request.leader !== me) {
      return drop('switchover-stale', `a ${request.kind} was requested from ${request.leader}, but ${me} leads: ignoring it`);
    }
    if (request.scheduledAtMs !== undefined && obs.nowMs < request.scheduledAtMs) {
      // Not yet: lead normally below; the reason tells when.
    } else {
      const verdict = candidateVerdict(obs, view, request.candidate, request.kind);
      if ('problem' in verdict) return drop('switchover-candidate-ineligible', verdict.problem);
      const c = verdict.candidate;
      const { modRevision: failoverRevision, ...requested } = request;
      return {
        actions: [
          // Without a named candidate the others would race once the key is released; name it first.
          ...(request.candidate === undefined ? [{ kind: 'name-failover-candidate' as const, request: { ...requested, candidate: c.name }, modRevision: failoverRevision }] : []),
          { kind: 'announce-switchover', to: c.name, untilMs: obs.nowMs + SWITCHOVER_PAUSE_MS },
          // Fast shutdown streams the remaining WAL to connected standbys before it ends.
          { kind: 'stop', mode: 'fast' },
          { kind: 'await-caught-up', candidate: { name: c.name, host: c.host, port: c.port, apiUrl: c.apiUrl } },
          { kind: 'release-leader', modRevision: leaderModRevision },
        ],
        reason: { code: 'switching-over', message: `${request.kind} to ${c.name}: stopping PostgreSQL (fast), checking ${c.name} has every WAL byte, then handing over the leader key` },
        memory: { ...mem, slotNames: undefined },
      };
    }
  }

  // ---- housekeeping of a healthy leader ------------------------------------------------------
  const actions: Action[] = [];
  const params = JSON.stringify(config.postgresql.parameters);
  if ((pg.appliedParameters !== undefined && pg.appliedParameters !== params) || op?.kind === 'reload') {
    actions.push({ kind: 'update-parameters', parameters: config.postgresql.parameters });
  }
  // Members that cascade from a streaming replica need no slot here (an unused slot would pin WAL).
  const slots = [...view.members.values()].filter((m) => m.name !== me && !cascades(view, m, me)).map((m) => slotNameFor(m.name)).sort();
  const slotKey = slots.join(',');
  if (slotKey !== memory.slotNames) actions.push({ kind: 'sync-slots', slots });
  const syncAction = syncStepFor(obs, view, server);
  if (syncAction !== undefined) actions.push(syncAction);
  const scheduled = request?.scheduledAtMs !== undefined && obs.nowMs < request.scheduledAtMs;
  return {
    actions,
    reason: scheduled
      ? { code: 'switchover-scheduled', message: `leader; a ${request.kind} to ${request.candidate ?? 'the best replica'} is scheduled at ${new Date(request.scheduledAtMs).toISOString()}` }
      : { code: 'leader-healthy', message: 'no action: this member is the leader with a valid lease' },
    memory: { ...mem, slotNames: slotKey },
    ...(op?.kind === 'reload' ? { operation: 'reload' as const } : {}),
  };
}

/** The synchronous-replication step of this loop, if any (invariant 4; see sync.ts for the order). */
function syncStepFor(obs: Observation, view: ClusterView, server: ServerFacts): Action | undefined {
  const config = view.config;
  const me = obs.self.name;
  const applied = obs.pg.standbyNames ?? { members: [], quorum: 0 };
  if (config.synchronous_mode === 'off') {
    return applied.members.length > 0 ? { kind: 'set-standby-names', set: { members: [], quorum: 0 }, value: '' } : undefined;
  }
  const leaderPos = server.walPosition;
  const candidates: SyncCandidate[] = (server.replicas ?? [])
    .filter((r) => view.members.has(r.name) && r.name !== me)
    .map((r) => ({
      name: r.name,
      streaming: r.state === 'streaming',
      syncState: r.syncState,
      nosync: view.members.get(r.name)?.tags.nosync ?? false,
      leaving: view.leaving?.members.includes(r.name) ?? false,
      lagBytes: r.flushLsn === undefined ? Number.MAX_SAFE_INTEGER : lagBytes(leaderPos, r.flushLsn),
    }));
  const key = keyFor(me, view.sync);
  if (view.sync === undefined || view.sync.leader !== me) {
    // A new leader first claims the key with an empty set: shrinking the promotable set is always safe.
    return { kind: 'write-sync-key', set: { members: [], quorum: 0 }, ...(view.sync === undefined ? {} : { modRevision: view.sync.modRevision }) };
  }
  const desired = desiredSyncSet(config, candidates, key.members);
  const strict = config.synchronous_mode_strict;
  const target = strict && desired.members.length === 0 && key.members.length > 0 ? key : desired;
  const isSync = (n: string): boolean => candidates.some((c) => c.name === n && (c.syncState === 'sync' || c.syncState === 'quorum'));
  const step = nextSyncStep(config.synchronous_mode, strict, key, applied, target, isSync);
  switch (step.kind) {
    case 'none':
      // Strict mode with nobody to wait for: make sure PostgreSQL blocks commits rather than run alone.
      if (strict && target.members.length === 0 && obs.pg.standbyNames === undefined) {
        return { kind: 'set-standby-names', set: target, value: standbyNamesFor(config.synchronous_mode, target, true) };
      }
      return undefined;
    case 'write-sync-key':
      return { kind: 'write-sync-key', set: step.set, modRevision: view.sync.modRevision };
    case 'set-standby-names':
      return { kind: 'set-standby-names', set: step.set, value: step.value };
    default:
      return assertNever(step);
  }
}

function candidateVerdict(
  obs: Observation,
  view: ClusterView,
  named: string | undefined,
  kind: 'switchover' | 'failover',
): { candidate: MemberRecord } | { problem: string } {
  return switchoverCandidate(view, obs.peers ?? [], obs.self.name, obs.pg.server?.walPosition, named, kind);
}

/**
 * The switchover / failover candidate: the named member if eligible, else the best eligible
 * replica (most WAL, then failover_priority, then name); or one reason per member why none
 * qualifies ("demo-2: lag 3145728 bytes > maximum_lag_on_failover 1048576"). Shared by the leader's
 * decision and the CLI, so both refuse the same way.
 */
export function switchoverCandidate(
  view: ClusterView,
  peerList: readonly PeerFacts[],
  me: string,
  leaderPos: bigint | undefined,
  named: string | undefined,
  kind: 'switchover' | 'failover',
): { candidate: MemberRecord } | { problem: string } {
  const config = view.config;
  const peers = new Map(peerList.map((p) => [p.name, p]));
  const problems: string[] = [];
  const eligible: { m: MemberRecord; pos: bigint }[] = [];
  for (const m of [...view.members.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    if (m.name === me) continue;
    if (named !== undefined && m.name !== named) continue;
    const p = peers.get(m.name);
    if (p === undefined || !p.reachable) problems.push(`${m.name}: unreachable`);
    else if (m.tags.nofailover || m.tags.failoverPriority <= 0 || p.tags?.nofailover === true) problems.push(`${m.name}: tagged nofailover`);
    else if (p.running !== true || p.role !== 'replica') problems.push(`${m.name}: not a running replica`);
    else if (kind === 'switchover' && config.synchronous_mode !== 'off' && view.sync !== undefined && !view.sync.members.includes(m.name)) {
      problems.push(`${m.name}: not a synchronous standby (synchronous_mode ${config.synchronous_mode})`);
    } else {
      const lag = p.walPosition === undefined || leaderPos === undefined ? Number.MAX_SAFE_INTEGER : lagBytes(leaderPos, p.walPosition);
      if (kind === 'switchover' && lag > config.maximum_lag_on_failover) {
        problems.push(`${m.name}: lag ${lag} bytes > maximum_lag_on_failover ${config.maximum_lag_on_failover}`);
      } else eligible.push({ m, pos: p.walPosition ?? 0n });
    }
  }
  if (named !== undefined && !view.members.has(named)) return { problem: `${named}: no such member` };
  if (named !== undefined && named === me) return { problem: `${named} is already the leader` };
  eligible.sort((a, b) => (a.pos === b.pos ? b.m.tags.failoverPriority - a.m.tags.failoverPriority || a.m.name.localeCompare(b.m.name) : a.pos > b.pos ? -1 : 1));
  const best = eligible[0];
  return best !== undefined ? { candidate: best.m } : { problem: `no member qualifies: ${problems.join('; ') || 'no other members'}` };
}

/** Why this member may not promote, or undefined when it may (invariant 3 in docs/architecture.md). */
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
  const syncMode = config.synchronous_mode;
  const syncMembers = view.sync?.members;
  const inSync = syncMembers !== undefined && syncMembers.includes(self.name);
  if (syncMode !== 'off' && view.sync !== undefined && !inSync) {
    // Invariant 4: only members in the sync key may be promoted.
    return { code: 'race-not-synchronous', message: `no leader, but synchronous_mode is ${syncMode} and this member is not in the sync key (${view.sync.members.join(', ') || 'empty'})` };
  }
  if (syncMode === 'quorum' && view.sync !== undefined) {
    // A commit is on `quorum` members of the set; seeing |set| − quorum + 1 of them (this one
    // included) is the only way to be sure of having seen the most advanced.
    const needed = view.sync.members.length - view.sync.quorum + 1;
    const seen = 1 + (obs.peers ?? []).filter((p) => p.reachable && p.name !== self.name && view.sync?.members.includes(p.name)).length;
    if (seen < needed) {
      return { code: 'race-quorum-not-reached', message: `no leader, but only ${seen} of the ${needed} sync members a quorum promotion needs are reachable` };
    }
  }
  if (view.status !== undefined && !(syncMode !== 'off' && inSync)) {
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
  const better = peers.find(
    (p) => (syncMode === 'off' || view.sync === undefined || view.sync.members.includes(p.name)) && isBetterCandidate(p, self.name, self.tags.failoverPriority, server.walPosition, latestTimeline, config),
  );
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

/** True when `m` streams from another replica (tag replicatefrom naming a streaming member other than the leader). */
function cascades(view: ClusterView, m: { name: string; tags: { replicatefrom?: string } }, leader: string): boolean {
  const target = m.tags.replicatefrom === undefined ? undefined : view.members.get(m.tags.replicatefrom);
  return target !== undefined && target.name !== m.name && target.name !== leader && target.state === 'streaming';
}

/** Whom a replica streams from: its replicatefrom member while that one streams, else the leader (with a slot). */
function followTarget(view: ClusterView, self: SelfFacts, leaderRecord: MemberRecord): { upstream: Upstream; configure: Action } {
  if (cascades(view, { name: self.name, tags: self.tags }, leaderRecord.name)) {
    const via = view.members.get(self.tags.replicatefrom ?? '');
    if (via !== undefined) {
      const upstream = upstreamOf(via);
      return { upstream, configure: { kind: 'configure', role: 'replica', upstream, cascade: true } };
    }
  }
  const upstream = upstreamOf(leaderRecord);
  return { upstream, configure: { kind: 'configure', role: 'replica', upstream } };
}

function upstreamOf(m: MemberRecord): Upstream {
  return { name: m.name, host: m.host, port: m.port };
}

function defaultsFor(obs: Observation): DynamicConfig {
  // Only reached when the DCS is unreadable: use the last config the shell knows, else the defaults.
  return obs.dcs.ok ? obs.dcs.view.config : DEFAULT_FALLBACK;
}
