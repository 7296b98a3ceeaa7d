import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseLsn } from '../core/lsn.js';
import type { ClusterView, HistoryEntry, MemberRecord, MemberTags } from './cluster-view.js';
import { decide, MAX_BOOTSTRAP_ATTEMPTS } from './decide.js';
import { DEFAULT_DYNAMIC_CONFIG, type DynamicConfig } from './dynamic-config.js';
import type { AgentMemory, LocalPostgresFacts, Observation, PeerFacts } from './observation.js';

const TAGS: MemberTags = { nofailover: false, failoverPriority: 1, nosync: false, noloadbalance: false };
const NOW = 1_000_000;
const SYSID = '7300000000000000001';

function member(name: string, over: Partial<MemberRecord> = {}): MemberRecord & { lease: string } {
  const port = 5000 + Number(name.slice(-1));
  return { name, apiUrl: `http://127.0.0.1:${port + 100}`, host: '127.0.0.1', port, role: 'replica', state: 'streaming', timeline: 1, walPosition: '0/3000000', tags: TAGS, version: 'test', lease: `lease-${name}`, ...over };
}

interface World {
  leader?: string;
  leaderLease?: string;
  initialize?: string;
  members?: (MemberRecord & { lease: string })[];
  config?: Partial<DynamicConfig>;
  statusLsn?: string;
  history?: HistoryEntry[];
}

function view(w: World): ClusterView {
  const members = w.members ?? [member('demo-1', { role: 'primary', state: 'running' }), member('demo-2'), member('demo-3')];
  return {
    revision: 10,
    config: { ...DEFAULT_DYNAMIC_CONFIG, ...w.config },
    members: new Map(members.map((m) => [m.name, m])),
    invalid: new Map(),
    history: w.history ?? [],
    ...(w.initialize === undefined ? {} : { initialize: { value: w.initialize, modRevision: 2 } }),
    ...(w.leader === undefined ? {} : { leader: { name: w.leader, modRevision: 7, lease: w.leaderLease ?? `lease-${w.leader}` } }),
    ...(w.statusLsn === undefined ? {} : { status: { lsn: parseLsn(w.statusLsn), timeline: 1, leader: 'demo-1' } }),
  };
}

const replicaPg = (pos = '0/3000000', over: Partial<LocalPostgresFacts> = {}): LocalPostgresFacts => ({
  dataDir: { kind: 'initialized', systemIdentifier: SYSID, clusterState: 'in archive recovery' },
  process: 'running',
  server: { inRecovery: true, timeline: 1, walPosition: parseLsn(pos), streaming: true, systemIdentifier: SYSID },
  configuredAs: { kind: 'replica', upstream: 'demo-1' },
  ...over,
});
const primaryPg = (over: Partial<LocalPostgresFacts> = {}): LocalPostgresFacts => ({
  dataDir: { kind: 'initialized', systemIdentifier: SYSID, clusterState: 'in production' },
  process: 'running',
  server: { inRecovery: false, timeline: 1, walPosition: parseLsn('0/3000000'), streaming: false, systemIdentifier: SYSID },
  configuredAs: { kind: 'primary' },
  ...over,
});

function obs(name: string, w: World, pg: LocalPostgresFacts, over: Partial<Observation> = {}): Observation {
  return {
    nowMs: NOW,
    self: { name, tags: TAGS, host: '127.0.0.1', port: 5000 },
    dcs: { ok: true, view: view({ initialize: SYSID, ...w }) },
    lease: { id: `lease-${name}`, deadlineMs: NOW + 2000 },
    pg,
    ...over,
  };
}

const kinds = (d: { actions: readonly { kind: string }[] }): string[] => d.actions.map((a) => a.kind);
const peer = (name: string, pos: string, over: Partial<PeerFacts> = {}): PeerFacts => ({ name, reachable: true, role: 'replica', running: true, walPosition: parseLsn(pos), timeline: 1, tags: TAGS, ...over });

describe('decide: bootstrap', () => {
  it('races for initialize and the leader key, then bootstraps, when the cluster is not initialized', () => {
    const o = obs('demo-1', { members: [] }, { dataDir: { kind: 'missing' }, process: 'stopped' });
    const d = decide({ ...o, dcs: { ok: true, view: view({ members: [] }) } }, {});
    assert.equal(d.reason.code, 'bootstrap-racing');
    assert.deepEqual(kinds(d), ['acquire-initialize', 'acquire-leader', 'bootstrap']);
  });

  it('stops racing after MAX_BOOTSTRAP_ATTEMPTS failed bootstraps and says why, instead of moving data aside forever', () => {
    const missing = { dataDir: { kind: 'missing' as const }, process: 'stopped' as const };
    let memory: AgentMemory = {};
    const codes: string[] = [];
    for (let i = 0; i < MAX_BOOTSTRAP_ATTEMPTS + 2; i++) {
      // The shell reports a failure on the loop after actions failed; a loop without actions clears it.
      const failure = codes.at(-1) === 'bootstrap-racing' ? { lastFailure: { action: 'bootstrap', message: 'postgres: invalid value for parameter "max_connections": "-1"' } } : {};
      const o = obs('demo-1', { members: [] }, missing, failure);
      const d = decide({ ...o, dcs: { ok: true, view: view({ members: [] }) } }, memory);
      codes.push(d.reason.code);
      memory = d.memory;
      if (d.reason.code === 'bootstrap-gave-up') {
        assert.deepEqual(d.actions, []);
        assert.match(d.reason.message, /bootstrap failed 3 times, last: postgres: invalid value for parameter "max_connections"/);
      }
    }
    assert.deepEqual(codes, ['bootstrap-racing', 'bootstrap-racing', 'bootstrap-racing', 'bootstrap-gave-up', 'bootstrap-gave-up']);
  });

  it('waits while another member bootstraps', () => {
    const d = decide(obs('demo-2', { initialize: '', leader: 'demo-1' }, { dataDir: { kind: 'missing' }, process: 'stopped' }), {});
    assert.equal(d.reason.code, 'bootstrap-waiting');
    assert.deepEqual(d.actions, []);
  });

  it('refuses a data directory that belongs to another cluster and touches nothing', () => {
    const pg = replicaPg('0/1', { dataDir: { kind: 'initialized', systemIdentifier: '999', clusterState: 'shut down' }, process: 'stopped' });
    const d = decide(obs('demo-2', { leader: 'demo-1' }, pg), {});
    assert.equal(d.reason.code, 'data-dir-foreign');
    assert.deepEqual(d.actions, []);
  });

  it('refuses to guess when data exists but the DCS has no cluster', () => {
    const o = obs('demo-1', {}, primaryPg({ process: 'stopped' }));
    const d = decide({ ...o, dcs: { ok: true, view: view({ members: [] }) } }, {});
    assert.equal(d.reason.code, 'data-dir-without-cluster');
    assert.deepEqual(d.actions, []);
  });

  it('clones an empty member from the running leader', () => {
    const d = decide(obs('demo-2', { leader: 'demo-1' }, { dataDir: { kind: 'empty' }, process: 'stopped' }), {});
    assert.equal(d.reason.code, 'creating-replica');
    assert.deepEqual(kinds(d), ['clone', 'configure', 'start']);
  });

  it('moves an incomplete data directory aside instead of deleting it', () => {
    const d = decide(obs('demo-2', { leader: 'demo-1' }, { dataDir: { kind: 'invalid' }, process: 'stopped' }), {});
    assert.deepEqual(kinds(d), ['move-data-aside']);
  });
});

describe('decide: the leader', () => {
  it('creates the slots of the other members once and then does nothing', () => {
    const d1 = decide(obs('demo-1', { leader: 'demo-1' }, primaryPg()), {});
    assert.equal(d1.reason.code, 'leader-healthy');
    assert.deepEqual(d1.actions, [{ kind: 'sync-slots', slots: ['demo_2', 'demo_3'] }]);
    const d2 = decide(obs('demo-1', { leader: 'demo-1' }, primaryPg()), d1.memory);
    assert.deepEqual(d2.actions, []);
  });

  it('demotes when the lease cannot be renewed before its deadline', () => {
    const o = obs('demo-1', { leader: 'demo-1' }, primaryPg(), { lease: { id: 'lease-demo-1', deadlineMs: NOW + 100 } });
    const d = decide(o, {});
    assert.equal(d.reason.code, 'lease-expired-demoting');
    assert.deepEqual(d.actions, [{ kind: 'stop', mode: 'immediate' }]);
  });

  it('keeps serving while the DCS is unreachable and the lease is still valid, and fences at the deadline', () => {
    const base = obs('demo-1', { leader: 'demo-1' }, primaryPg());
    const d1 = decide({ ...base, dcs: { ok: false, error: 'timeout' } }, {});
    assert.equal(d1.reason.code, 'dcs-unreachable');
    assert.deepEqual(d1.actions, []);
    const d2 = decide({ ...base, nowMs: NOW + 1900, dcs: { ok: false, error: 'timeout' } }, {});
    assert.equal(d2.reason.code, 'dcs-unreachable-demoting');
    assert.deepEqual(d2.actions, [{ kind: 'stop', mode: 'immediate' }]);
  });

  it('promotes its standby right after winning the leader key', () => {
    const d = decide(obs('demo-2', { leader: 'demo-2' }, replicaPg()), {});
    assert.equal(d.reason.code, 'promoting');
    assert.deepEqual(kinds(d), ['promote']);
  });

  it('restarts a crashed primary in place, then releases the key after primary_start_timeout', () => {
    const crashed = primaryPg({ process: 'crashed' });
    delete (crashed as { server?: unknown }).server;
    const d1 = decide(obs('demo-1', { leader: 'demo-1' }, crashed), {});
    assert.equal(d1.reason.code, 'leader-restarting-postgres');
    assert.deepEqual(d1.actions, [{ kind: 'configure', role: 'primary' }, { kind: 'start', timeoutMs: 30_000 }]);
    // A start attempted later gets only what is left of primary_start_timeout: it cannot hold the loop past it.
    const retry = decide({ ...obs('demo-1', { leader: 'demo-1' }, crashed), nowMs: NOW + 26_000 }, d1.memory);
    assert.deepEqual(retry.actions[1], { kind: 'start', timeoutMs: 4_000 });
    const later = { ...obs('demo-1', { leader: 'demo-1' }, crashed), nowMs: NOW + 31_000 };
    const d2 = decide(later, d1.memory);
    assert.equal(d2.reason.code, 'primary-start-timeout');
    assert.deepEqual(d2.actions, [{ kind: 'release-leader', modRevision: 7 }]);
    // A start that hangs (the server runs but never answers) is stopped before the key is released.
    const hung = { ...obs('demo-1', { leader: 'demo-1' }, { ...crashed, process: 'running' }), nowMs: NOW + 31_000 };
    assert.deepEqual(kinds(decide(hung, d1.memory)), ['stop', 'release-leader']);
  });

  it('takes the leader key over after an agent restart while its old lease lives', () => {
    const d = decide(obs('demo-1', { leader: 'demo-1', leaderLease: 'old-lease' }, primaryPg({ process: 'stopped' })), {});
    assert.equal(d.reason.code, 'leader-taking-over');
    assert.deepEqual(d.actions, [{ kind: 'take-over-leader', modRevision: 7 }]);
  });
});

describe('decide: rejoin (invariant 5)', () => {
  it('stops at once a primary when another member holds the leader key', () => {
    const d = decide(obs('demo-1', { leader: 'demo-2' }, primaryPg()), {});
    assert.equal(d.reason.code, 'demoting-other-leader');
    assert.deepEqual(d.actions, [{ kind: 'stop', mode: 'immediate' }]);
  });

  it('rewinds a former primary before it streams from the new leader', () => {
    const stopped = primaryPg({ process: 'stopped' });
    const d = decide(obs('demo-1', { leader: 'demo-2' }, stopped), {});
    assert.equal(d.reason.code, 'rewinding');
    assert.deepEqual(kinds(d), ['rewind', 'configure', 'start']);
  });

  it('moves the data aside to clone anew when pg_rewind failed', () => {
    const o = obs('demo-1', { leader: 'demo-2' }, primaryPg({ process: 'stopped' }), { lastFailure: { action: 'rewind', message: 'boom' } });
    const d = decide(o, {});
    assert.equal(d.reason.code, 'reclone');
    assert.deepEqual(kinds(d), ['move-data-aside']);
  });

  it('repoints a replica to the new leader', () => {
    const d = decide(obs('demo-3', { leader: 'demo-2' }, replicaPg()), {});
    assert.equal(d.reason.code, 'replica-repointing');
    assert.deepEqual(kinds(d), ['configure']);
  });

  it('marks a replica for rewind when it cannot follow the leader timeline for long', () => {
    const members = [member('demo-2', { role: 'primary', state: 'running', timeline: 2 }), member('demo-3')];
    const pg = replicaPg('0/3000000', { configuredAs: { kind: 'replica', upstream: 'demo-2' } });
    const notStreaming = { ...pg, server: { ...pg.server!, streaming: false } };
    const d1 = decide(obs('demo-3', { leader: 'demo-2', members }, notStreaming), {});
    assert.equal(d1.reason.code, 'replica-not-streaming');
    const d2 = decide({ ...obs('demo-3', { leader: 'demo-2', members }, notStreaming), nowMs: NOW + 16_000 }, d1.memory);
    assert.equal(d2.reason.code, 'replica-diverged');
    assert.equal(d2.memory.mustRewind, true);
  });
});

describe('decide: the leader race (invariant 3)', () => {
  const race = (name: string, pos: string, peers: PeerFacts[], w: World = {}, tags: Partial<MemberTags> = {}) => {
    const o = obs(name, { statusLsn: '0/3000000', ...w }, replicaPg(pos), { peers });
    return decide({ ...o, self: { ...o.self, tags: { ...TAGS, ...tags } } }, {});
  };

  it('acquires the key and promotes when it is the most advanced eligible member', () => {
    const d = race('demo-2', '0/3000000', [peer('demo-3', '0/2000000'), { name: 'demo-1', reachable: false }]);
    assert.equal(d.reason.code, 'promoting');
    assert.deepEqual(kinds(d), ['acquire-leader', 'promote']);
  });

  it('stays out when tagged nofailover', () => {
    assert.equal(race('demo-2', '0/3000000', [], {}, { nofailover: true }).reason.code, 'race-nofailover');
  });

  it('stays out when lagging more than maximum_lag_on_failover', () => {
    const d = race('demo-2', '0/1000000', [], { config: { maximum_lag_on_failover: 1024 } });
    assert.equal(d.reason.code, 'race-lag-too-high');
    assert.match(d.reason.message, /33554432 bytes behind/);
  });

  it('stays out when a reachable member still reports running as primary', () => {
    const d = race('demo-2', '0/3000000', [peer('demo-1', '0/3000000', { role: 'primary' })]);
    assert.equal(d.reason.code, 'race-primary-still-running');
  });

  it('stays out when a reachable eligible member is further ahead', () => {
    const d = race('demo-2', '0/2000000', [peer('demo-3', '0/2000100')], { statusLsn: '0/2000100' });
    assert.equal(d.reason.code, 'race-peer-ahead');
  });

  it('ignores a more advanced peer that is tagged nofailover', () => {
    const d = race('demo-2', '0/2000000', [peer('demo-3', '0/2000100', { tags: { ...TAGS, nofailover: true } })], { statusLsn: '0/2000100' });
    assert.equal(d.reason.code, 'promoting');
  });

  it('breaks ties by failover priority, then by name', () => {
    assert.equal(race('demo-3', '0/3000000', [peer('demo-2', '0/3000000')]).reason.code, 'race-peer-ahead');
    assert.equal(race('demo-2', '0/3000000', [peer('demo-3', '0/3000000')]).reason.code, 'promoting');
    assert.equal(race('demo-3', '0/3000000', [peer('demo-2', '0/3000000')], {}, { failoverPriority: 5 }).reason.code, 'promoting');
  });

  it('stays out when its timeline is behind the history (stale-timeline guard)', () => {
    const history = [{ timeline: 2, lsn: '0/2000000', reason: 'x', timeMs: 1, leader: 'demo-3' }];
    assert.equal(race('demo-2', '0/3000000', [], { history }).reason.code, 'race-stale-timeline');
  });

  it('exactly one of three replicas promotes when they see each other', () => {
    const positions: Record<string, string> = { 'demo-1': '0/3000100', 'demo-2': '0/3000200', 'demo-3': '0/3000200' };
    const winners = Object.keys(positions).filter((name) => {
      const peers = Object.entries(positions).filter(([n]) => n !== name).map(([n, p]) => peer(n, p));
      return race(name, positions[name]!, peers).reason.code === 'promoting';
    });
    assert.deepEqual(winners, ['demo-2']);
  });

  it('starts a stopped member as a standby before it races', () => {
    const pg = replicaPg('0/1', { process: 'stopped' });
    const d = decide(obs('demo-2', {}, pg), {});
    assert.equal(d.reason.code, 'starting-as-replica');
    assert.deepEqual(d.actions, [{ kind: 'configure', role: 'replica' }, { kind: 'start' }]);
  });

  it('does not race without a valid lease', () => {
    const o = obs('demo-2', {}, replicaPg(), { peers: [] });
    const { lease: _ignored, ...noLease } = o;
    assert.equal(decide(noLease, {}).reason.code, 'waiting-for-lease');
  });
});

describe('decide: switchover and failover requests', () => {
  const request = (over: Record<string, unknown> = {}) => ({ kind: 'switchover' as const, leader: 'demo-1', candidate: 'demo-2', requestedAtMs: NOW - 100, modRevision: 9, ...over });
  const withRequest = (name: string, w: World, pg: LocalPostgresFacts, req: ReturnType<typeof request>, over: Partial<Observation> = {}): Observation => {
    const o = obs(name, w, pg, over);
    if (!o.dcs.ok) throw new Error('unreachable');
    return { ...o, dcs: { ok: true, view: { ...o.dcs.view, failover: req } } };
  };
  const peersOk = [peer('demo-2', '0/3000000'), peer('demo-3', '0/3000000')];

  it('hands over losslessly: announce, fast stop, wait for the candidate, release the key', () => {
    const d = decide(withRequest('demo-1', { leader: 'demo-1' }, primaryPg(), request(), { peers: peersOk }), {});
    assert.equal(d.reason.code, 'switching-over');
    assert.deepEqual(kinds(d), ['announce-switchover', 'stop', 'await-caught-up', 'release-leader']);
    assert.deepEqual(d.actions[1], { kind: 'stop', mode: 'fast' });
  });

  it('names the best replica in the request before handing over when none was named (Patroni-style POST /switchover {leader})', () => {
    const peers = [peer('demo-2', '0/2000000'), peer('demo-3', '0/3000000')];
    const d = decide(withRequest('demo-1', { leader: 'demo-1' }, primaryPg(), request({ candidate: undefined }), { peers }), {});
    assert.equal(d.reason.code, 'switching-over');
    assert.deepEqual(kinds(d), ['name-failover-candidate', 'announce-switchover', 'stop', 'await-caught-up', 'release-leader']);
    assert.deepEqual(d.actions[0], { kind: 'name-failover-candidate', request: { kind: 'switchover', leader: 'demo-1', candidate: 'demo-3', requestedAtMs: NOW - 100 }, modRevision: 9 });
    // The old leader, once it has released the key, waits for the named candidate like everyone else.
    const named = request({ candidate: 'demo-3', modRevision: 10 });
    const after = decide(withRequest('demo-1', {}, replicaPg('0/3000000'), named, { peers: [peer('demo-2', '0/2000000'), peer('demo-3', '0/3000000')] }), {});
    assert.equal(after.reason.code, 'race-waiting-for-candidate');
  });

  it('refuses an ineligible candidate with a reason per member, and clears the request', () => {
    const d = decide(withRequest('demo-1', { leader: 'demo-1' }, primaryPg(), request({ candidate: undefined }), {
      peers: [peer('demo-2', '0/3000000', { tags: { ...TAGS, nofailover: true } }), { name: 'demo-3', reachable: false }],
    }), {});
    assert.equal(d.reason.code, 'switchover-candidate-ineligible');
    assert.match(d.reason.message, /demo-2: tagged nofailover; demo-3: unreachable/);
    assert.deepEqual(d.actions, [{ kind: 'delete-failover', modRevision: 9 }]);
  });

  it('ignores a request made against another leader', () => {
    const d = decide(withRequest('demo-1', { leader: 'demo-1' }, primaryPg(), request({ leader: 'demo-3' }), { peers: peersOk }), {});
    assert.equal(d.reason.code, 'switchover-stale');
  });

  it('stays leader and clears the request when the candidate did not catch up', () => {
    const d = decide(withRequest('demo-1', { leader: 'demo-1' }, primaryPg(), request(), { peers: peersOk, lastFailure: { action: 'await-caught-up', message: 'late' } }), {});
    assert.equal(d.reason.code, 'switchover-failed');
    assert.deepEqual(kinds(d), ['delete-failover']);
  });

  it('drops the request while starting PostgreSQL again when the switchover failed after its fast stop (no second stop for it)', () => {
    const stopped: LocalPostgresFacts = { dataDir: { kind: 'initialized', systemIdentifier: SYSID, clusterState: 'shut down' }, process: 'stopped', configuredAs: { kind: 'primary' } };
    const d = decide(withRequest('demo-1', { leader: 'demo-1' }, stopped, request(), { peers: peersOk, lastFailure: { action: 'await-caught-up', message: 'demo-2 did not receive WAL past the shutdown checkpoint' } }), {});
    assert.equal(d.reason.code, 'switchover-failed');
    assert.deepEqual(kinds(d), ['delete-failover', 'configure', 'start']);
    assert.match(d.reason.message, /did not receive WAL/);
  });

  it('waits for a scheduled switchover', () => {
    const d = decide(withRequest('demo-1', { leader: 'demo-1' }, primaryPg(), request({ scheduledAtMs: NOW + 60_000 }), { peers: peersOk }), { slotNames: 'demo_2,demo_3' });
    assert.equal(d.reason.code, 'switchover-scheduled');
    assert.deepEqual(d.actions, []);
  });

  it('the named candidate promotes without the race and clears the request', () => {
    const d = decide(withRequest('demo-2', {}, replicaPg('0/2000000'), request(), { peers: [peer('demo-3', '0/3000000')] }), {});
    assert.equal(d.reason.code, 'promoting');
    assert.deepEqual(kinds(d), ['acquire-leader', 'promote', 'delete-failover']);
  });

  it('other members wait for the named candidate', () => {
    const d = decide(withRequest('demo-3', {}, replicaPg('0/3000000'), request(), { peers: [peer('demo-2', '0/2000000')] }), {});
    assert.equal(d.reason.code, 'race-waiting-for-candidate');
  });
});

describe('decide: synchronous mode (invariant 4)', () => {
  const syncView = (name: string, members: string[], strict = false, pg: LocalPostgresFacts = replicaPg()): Observation => {
    const o = obs(name, { statusLsn: '0/3000000', config: { synchronous_mode: 'on', synchronous_mode_strict: strict } }, pg, { peers: [] });
    if (!o.dcs.ok) throw new Error('unreachable');
    return { ...o, dcs: { ok: true, view: { ...o.dcs.view, sync: { leader: 'demo-1', members, quorum: 1, modRevision: 4 } } } };
  };

  it('a replica outside the sync key never promotes', () => {
    assert.equal(decide(syncView('demo-3', ['demo-2']), {}).reason.code, 'race-not-synchronous');
  });

  it('a sync standby promotes even when it lags the last published position, and strict mode guards the new primary', () => {
    const d = decide(syncView('demo-2', ['demo-2'], true, replicaPg('0/1000000')), {});
    assert.equal(d.reason.code, 'promoting');
    assert.deepEqual(d.actions[1], { kind: 'promote', reason: 'leader demo-1 lost; demo-2 promoted', standbyNames: '*' });
  });

  it('a new leader first claims the sync key with an empty set', () => {
    const o = syncView('demo-2', ['demo-2'], false, primaryPg());
    const view = o.dcs.ok ? { ...o.dcs.view, leader: { name: 'demo-2', modRevision: 7, lease: 'lease-demo-2' } } : undefined;
    const d = decide({ ...o, dcs: { ok: true, view: view! } }, { slotNames: 'demo_1,demo_3' });
    assert.deepEqual(d.actions, [{ kind: 'write-sync-key', set: { members: [], quorum: 0 }, modRevision: 4 }]);
  });
});

describe('decide: failsafe_mode', () => {
  it('keeps the primary serving past its lease while every member confirmed, and fences without confirmation', () => {
    const base = obs('demo-1', { leader: 'demo-1' }, primaryPg(), { lease: { id: 'lease-demo-1', deadlineMs: NOW - 1 } });
    const dcsDown = { ...base, dcs: { ok: false as const, error: 'timeout' } };
    assert.equal(decide({ ...dcsDown, failsafeUntilMs: NOW + 1000 }, {}).reason.code, 'failsafe-mode');
    const fenced = decide(dcsDown, {});
    assert.equal(fenced.reason.code, 'dcs-unreachable-demoting');
    assert.deepEqual(fenced.actions, [{ kind: 'stop', mode: 'immediate' }]);
    const { lease: _gone, ...noLease } = dcsDown;
    assert.equal(decide(noLease, {}).reason.code, 'dcs-unreachable-demoting');
  });
});

describe('decide: cascading replication and clonefrom', () => {
  const members = () => [member('demo-1', { role: 'primary', state: 'running' }), member('demo-2'), member('demo-3', { tags: { ...TAGS, replicatefrom: 'demo-2' } })];

  it('streams from the replicatefrom member while it streams, without a slot, and the leader keeps no slot for it', () => {
    const o = obs('demo-3', { leader: 'demo-1', members: members() }, replicaPg('0/3000000', { configuredAs: { kind: 'replica', upstream: 'demo-1' } }));
    const d = decide({ ...o, self: { ...o.self, tags: { ...TAGS, replicatefrom: 'demo-2' } } }, {});
    assert.equal(d.reason.code, 'replica-repointing');
    assert.deepEqual(d.actions, [{ kind: 'configure', role: 'replica', upstream: { name: 'demo-2', host: '127.0.0.1', port: 5002 }, cascade: true }]);
    const lead = decide(obs('demo-1', { leader: 'demo-1', members: members() }, primaryPg()), {});
    assert.deepEqual(lead.actions, [{ kind: 'sync-slots', slots: ['demo_2'] }]);
  });

  it('falls back to the leader when the replicatefrom member is not streaming', () => {
    const ms = [member('demo-1', { role: 'primary', state: 'running' }), member('demo-2', { state: 'stopped' })];
    const o = obs('demo-3', { leader: 'demo-1', members: ms }, replicaPg('0/3000000', { configuredAs: { kind: 'replica', upstream: 'demo-2' } }));
    const d = decide({ ...o, self: { ...o.self, tags: { ...TAGS, replicatefrom: 'demo-2' } } }, {});
    assert.deepEqual(d.actions, [{ kind: 'configure', role: 'replica', upstream: { name: 'demo-1', host: '127.0.0.1', port: 5001 } }]);
  });

  it('clones from a streaming replica tagged clonefrom instead of the leader', () => {
    const ms = [member('demo-1', { role: 'primary', state: 'running' }), member('demo-2', { tags: { ...TAGS, clonefrom: true } })];
    const d = decide(obs('demo-3', { leader: 'demo-1', members: ms }, { dataDir: { kind: 'empty' }, process: 'stopped' }), {});
    assert.deepEqual(d.actions[0], { kind: 'clone', from: { name: 'demo-2', host: '127.0.0.1', port: 5002 } });
    assert.match(d.reason.message, /cloning from demo-2/);
  });
});

describe('decide: a replica that cannot follow the new timeline', () => {
  it('is not reported streaming while its WAL receiver streams an older timeline, and is rewound after the stall limit', () => {
    const members = [member('demo-2', { role: 'primary', state: 'running', timeline: 11 }), member('demo-3')];
    const pg = replicaPg('0/5033CD8', { configuredAs: { kind: 'replica', upstream: 'demo-2' } });
    // The newest history file makes its timeline look current (11) while the receiver streams 10.
    const stuck = { ...pg, server: { ...pg.server!, timeline: 11, streaming: true, receivedTimeline: 10 } };
    const d1 = decide(obs('demo-3', { leader: 'demo-2', members }, stuck), {});
    assert.equal(d1.reason.code, 'replica-not-streaming');
    const reconnecting = { ...stuck, server: { ...pg.server!, timeline: 11, streaming: false } };
    const d2 = decide({ ...obs('demo-3', { leader: 'demo-2', members }, reconnecting), nowMs: NOW + 11_000 }, d1.memory);
    assert.equal(d2.reason.code, 'replica-diverged');
    assert.deepEqual(d2.actions, [{ kind: 'stop', mode: 'fast' }]);
    assert.equal(d2.memory.mustRewind, true);
  });
});

describe('decide: a replica that never becomes consistent', () => {
  const stuck: LocalPostgresFacts = { dataDir: { kind: 'initialized', systemIdentifier: SYSID, clusterState: 'in archive recovery' }, process: 'running', configuredAs: { kind: 'replica', upstream: 'demo-1' } };
  it('waits up to replica_start_timeout, then moves the data aside to clone anew, saying why', () => {
    const first = decide(obs('demo-2', { leader: 'demo-1' }, stuck), {});
    assert.equal(first.reason.code, 'postgres-not-answering');
    assert.equal(first.memory.notAnsweringSinceMs, NOW);
    const later = decide({ ...obs('demo-2', { leader: 'demo-1' }, stuck), nowMs: NOW + 301_000 }, first.memory);
    assert.equal(later.reason.code, 'replica-reseeding');
    assert.deepEqual(kinds(later), ['stop', 'move-data-aside']);
    assert.match(later.reason.message, /ran 301 s without becoming consistent \(replica_start_timeout 300 s/);
  });

  it('carries out an operator restart of a replica that does not answer instead of leaving it waiting', () => {
    const d = decide({ ...obs('demo-2', { leader: 'demo-1' }, stuck), operation: { kind: 'restart' } }, {});
    assert.equal(d.reason.code, 'restarting');
    assert.equal(d.operation, 'restart');
    assert.deepEqual(kinds(d), ['stop', 'configure', 'start']);
  });
});

describe('decide: one operation in flight', () => {
  const inFlight = (over: Partial<NonNullable<Observation['inFlight']>> = {}): NonNullable<Observation['inFlight']> => ({
    kind: 'clone',
    plan: ['clone', 'configure', 'start'],
    startedBy: 'creating-replica',
    startedAtMs: NOW - 60_000,
    elapsedMs: 60_000,
    ...over,
  });
  const empty: LocalPostgresFacts = { dataDir: { kind: 'invalid' }, process: 'stopped' };

  it('lets a clone run, even though its half-copied data directory looks invalid (never moved aside mid-copy)', () => {
    const d = decide(obs('demo-3', { leader: 'demo-1' }, empty, { inFlight: inFlight({ source: 'demo-1', progress: { doneBytes: 400 * 1048576, totalBytes: 1024 * 1048576 } }) }), {});
    assert.equal(d.reason.code, 'operation-in-progress');
    assert.deepEqual(kinds(d), []);
    assert.match(d.reason.message, /clone in progress for 60 s \(creating-replica from demo-1, 400 of 1024 MB\)/);
  });

  it('cancels a clone whose source is no longer a member', () => {
    const members = [member('demo-2', { role: 'primary', state: 'running' }), member('demo-3')];
    const d = decide(obs('demo-3', { leader: 'demo-2', members }, empty, { inFlight: inFlight({ source: 'demo-1' }) }), {});
    assert.equal(d.reason.code, 'operation-cancelled');
    assert.deepEqual(kinds(d), ['cancel-operation']);
  });

  it("enforces primary_start_timeout while the leader's in-place start is in flight: cancel, then release the key", () => {
    const down: LocalPostgresFacts = { dataDir: { kind: 'initialized', systemIdentifier: SYSID, clusterState: 'in crash recovery' }, process: 'running' };
    const op = inFlight({ kind: 'start', plan: ['configure', 'start'], startedBy: 'leader-restarting-postgres', elapsedMs: 4_000 });
    const w = { leader: 'demo-1', config: { primary_start_timeout: 5 } };
    const early = decide(obs('demo-1', w, down, { inFlight: op }), { primaryDownSinceMs: NOW - 4_000 });
    assert.equal(early.reason.code, 'operation-in-progress');
    assert.equal(early.memory.primaryDownSinceMs, NOW - 4_000, 'the start is measured from when PostgreSQL was first seen down');
    const late = decide(obs('demo-1', w, down, { inFlight: { ...op, elapsedMs: 5_500 } }), { primaryDownSinceMs: NOW - 5_500 });
    assert.equal(late.reason.code, 'primary-start-timeout');
    assert.deepEqual(kinds(late), ['cancel-operation', 'release-leader']);
  });

  it('fences a primary whose lease lapsed even while an operation runs, cancelling it first, and does not restart a fencing stop', () => {
    const lapsed = { lease: { id: 'lease-demo-1', deadlineMs: NOW - 1 } };
    const op = inFlight({ kind: 'sync-slots', plan: ['sync-slots'], startedBy: 'leader-healthy' });
    const d = decide(obs('demo-1', { leader: 'demo-1' }, primaryPg(), { ...lapsed, inFlight: op }), {});
    assert.equal(d.reason.code, 'lease-expired-demoting');
    assert.deepEqual(kinds(d), ['cancel-operation', 'stop']);
    const again = decide(obs('demo-1', { leader: 'demo-1' }, primaryPg(), { ...lapsed, inFlight: inFlight({ kind: 'stop', plan: ['stop'], startedBy: 'lease-expired-demoting' }) }), {});
    assert.equal(again.reason.code, 'lease-expired-demoting');
    assert.deepEqual(kinds(again), [], 'the immediate stop under way is left to finish');
  });

  it("cancels a race winner's promotion when another member holds the leader key (its own lease lapsed meanwhile)", () => {
    const op = inFlight({ kind: 'promote', plan: ['acquire-leader', 'promote'], startedBy: 'promoting' });
    const d = decide(obs('demo-2', { leader: 'demo-3' }, replicaPg(), { inFlight: op }), {});
    assert.equal(d.reason.code, 'operation-cancelled');
    assert.deepEqual(kinds(d), ['cancel-operation']);
  });

  it('leaves an operation to finish in maintenance mode', () => {
    const d = decide(obs('demo-3', { leader: 'demo-2', members: [member('demo-2', { role: 'primary', state: 'running' })], config: { pause: true } }, empty, { inFlight: inFlight() }), {});
    assert.equal(d.reason.code, 'operation-in-progress');
    assert.deepEqual(kinds(d), []);
  });
});
