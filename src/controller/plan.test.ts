import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseClusterSpec, type ClusterSpec } from '../spec/index.js';
import type { DynamicConfig } from '../ha/index.js';
import { backupsFingerprint } from './records.js';
import { planCluster, routerName, type ClusterObservation, type CurrentAssignment, type ObservedMember, type Plan, type PlanInput, type PlanNode } from './plan.js';

function spec(replicas: number, opts: { antiAffinity?: boolean; routers?: number; name?: string } = {}): ClusterSpec {
  const name = opts.name ?? 'app';
  const anti = opts.antiAffinity === true
    ? `\n    affinity:\n      podAntiAffinity:\n        requiredDuringSchedulingIgnoredDuringExecution:\n        - labelSelector: { matchLabels: { warden.dev/cluster: ${name} } }\n          topologyKey: kubernetes.io/hostname`
    : '';
  const proxy = opts.routers === undefined ? '' : `\n  proxy:\n    router:\n      replicas: ${opts.routers}`;
  const r = parseClusterSpec(`apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: ${name}\nspec:\n  instances:\n  - name: instance1\n    replicas: ${replicas}${anti}${proxy}\n`, 'app.yaml');
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.spec;
}

const node = (name: string, over: Partial<PlanNode> = {}): PlanNode => ({ name, labels: { 'kubernetes.io/hostname': name }, taints: [], unschedulable: false, drain: false, capacity: 20, ...over });
const nodes3 = [node('n1'), node('n2'), node('n3')];
const noView: ClusterObservation = { members: new Map(), failoverPending: false };

function input(over: Partial<PlanInput> & { spec: ClusterSpec }): PlanInput {
  return { generation: 1, nodes: nodes3, lostForMs: new Map(), assignments: [], occupants: [], observation: noView, nodeLostMs: 30_000, ...over };
}

/** Assignments after applying a plan's assign/unassign changes (revisions bumped). */
function applyChanges(current: readonly CurrentAssignment[], plan: Plan): CurrentAssignment[] {
  let next = [...current];
  let rev = Math.max(0, ...current.map((a) => a.modRevision)) + 1;
  for (const c of plan.changes) {
    if (c.kind === 'assign') next = [...next.filter((a) => !(a.kind === c.workload && a.name === c.name)), { kind: c.workload, name: c.name, node: c.node, modRevision: rev++ }];
    if (c.kind === 'unassign') next = next.filter((a) => !(a.kind === c.workload && a.name === c.name));
  }
  return next;
}

const view = (leader: string, members: readonly string[], extra: Record<string, { role: string; state: string }> = {}): ClusterObservation => ({
  leader,
  members: new Map([...members.map((m) => [m, m === leader ? { role: 'primary', state: 'running' } : { role: 'replica', state: 'streaming' }] as const), ...Object.entries(extra)]),
  failoverPending: false,
});

const memberOn = (name: string, n: string, modRevision = 1): CurrentAssignment => ({ kind: 'member', name, node: n, modRevision });
const routerOn = (name: string, n: string, modRevision = 1): CurrentAssignment => ({ kind: 'router', name, node: n, modRevision });

describe('planCluster', () => {
  it('places three new members on three nodes and two routers on two nodes, each with a reason', () => {
    const plan = planCluster(input({ spec: spec(3, { antiAffinity: true }) }));
    const members = plan.changes.filter((c) => c.kind === 'assign' && c.workload === 'member');
    assert.deepEqual(members.map((c) => (c.kind === 'assign' ? c.node : '')).sort(), ['n1', 'n2', 'n3']);
    assert.ok(members.every((c) => c.reason.code === 'new-member' && /placed on n\d/.test(c.reason.message)));
    const routers = plan.changes.filter((c) => c.kind === 'assign' && c.workload === 'router');
    assert.equal(routers.length, 2);
    assert.equal(new Set(routers.map((c) => (c.kind === 'assign' ? c.node : ''))).size, 2);
    assert.deepEqual(plan.desired, { members: 3, routers: 2 });
  });

  it('leaves a member Pending with each node\'s reason when required anti-affinity has no node left', () => {
    const plan = planCluster(input({ spec: spec(4, { antiAffinity: true }) }));
    assert.equal(plan.pending.length, 1);
    const p = plan.pending[0];
    assert.equal(p?.name, 'app-4');
    assert.equal(p.reason.code, 'unschedulable');
    assert.match(p.reason.message, /n1: .*anti-affinity.*; n2: .*; n3: /i);
  });

  it('gives a cordoned node nothing new, and says so', () => {
    const plan = planCluster(input({ spec: spec(3, { antiAffinity: true, routers: 1 }), nodes: [node('n1'), node('n2', { unschedulable: true }), node('n3')] }));
    assert.ok(plan.changes.every((c) => c.kind !== 'assign' || c.node !== 'n2'));
    assert.match(plan.pending[0]?.reason.message ?? '', /n2: .*unschedulable/i);
  });

  it('removes a replica on scale down and never the leader: the leader gets a switchover first', () => {
    const current = [memberOn('app-1', 'n1'), memberOn('app-2', 'n2'), memberOn('app-3', 'n3'), routerOn(routerName('app', 1), 'n1')];
    const down = planCluster(input({ spec: spec(2, { routers: 1 }), assignments: current, observation: view('app-1', ['app-1', 'app-2', 'app-3']) }));
    // The member about to go is announced in the `leaving` key in the same pass.
    assert.deepEqual(down.changes.map((c) => [c.kind, c.kind === 'switchover' ? c.from : c.kind === 'leaving' ? c.members.join(',') : c.kind === 'assign' || c.kind === 'unassign' ? c.name : c.kind]), [['leaving', 'app-3'], ['unassign', 'app-3']]);
    const leaderRemoved = planCluster(input({ spec: spec(2, { routers: 1 }), assignments: current, observation: { ...view('app-3', ['app-1', 'app-2', 'app-3']), leaving: ['app-3'] } }));
    assert.deepEqual(leaderRemoved.changes, [{ kind: 'switchover', from: 'app-3', candidate: 'app-1', reason: { code: 'switchover-before-move', message: 'switchover from app-3 to app-1 before app-3 is removed (scale down)' } }]);
    const during = planCluster(input({ spec: spec(2, { routers: 1 }), assignments: current, observation: { ...view('app-3', ['app-1', 'app-2', 'app-3']), failoverPending: true, leaving: ['app-3'] } }));
    assert.deepEqual(during.changes, []);
    assert.equal(during.waiting[0]?.code, 'waiting-for-switchover');
  });

  it('in synchronous mode switches over only to a synchronous standby (the leader refuses any other), and waits while none stays', () => {
    const current = [memberOn('app-1', 'n1'), memberOn('app-2', 'n2'), memberOn('app-3', 'n3'), routerOn(routerName('app', 1), 'n3')];
    const nodes = [node('n1', { drain: true, unschedulable: true }), node('n2'), node('n3')];
    const sync = (members: readonly string[]): ClusterObservation => ({ ...view('app-1', ['app-1', 'app-2', 'app-3']), syncMembers: members, leaving: ['app-1'] });
    const drain = planCluster(input({ spec: spec(3, { routers: 1 }), nodes, assignments: current, observation: sync(['app-3']) }));
    assert.deepEqual(drain.changes.map((c) => c.kind === 'switchover' && [c.from, c.candidate]), [['app-1', 'app-3']]);
    // Scale 3 → 1 with the leader on app-3 and app-2 its only synchronous standby: both go, so no
    // switchover yet, and app-2 is not stopped while app-1 (which stays) could be the synchronous
    // standby instead: the leader, told by the `leaving` key, names app-1 first (no commit waits on
    // a stopped standby); then app-2 goes and the switchover to app-1 follows.
    const obs = (syncMembers: string[]): ClusterObservation => ({ ...view('app-3', ['app-1', 'app-2', 'app-3']), syncMembers, leaving: ['app-2', 'app-3'] });
    const held = planCluster(input({ spec: spec(1, { routers: 1 }), assignments: current, observation: obs(['app-2']) }));
    assert.deepEqual(held.changes, []);
    assert.deepEqual(held.waiting.map((w) => w.code), ['waiting-for-sync-standby', 'no-switchover-candidate']);
    assert.match(held.waiting[0]?.message ?? '', /app-2 is a synchronous standby; waiting for the leader to name app-1 instead/);
    assert.match(held.waiting[1]?.message ?? '', /no synchronous standby/);
    const down = planCluster(input({ spec: spec(1, { routers: 1 }), assignments: current, observation: obs(['app-1']) }));
    assert.deepEqual(down.changes.map((c) => [c.kind, c.kind === 'switchover' ? c.candidate : c.kind === 'leaving' ? c.members.join(',') : c.kind === 'assign' || c.kind === 'unassign' ? c.name : c.kind]), [['unassign', 'app-2'], ['switchover', 'app-1']]);
  });

  it('writes a changed dynamic configuration of the spec into the config key once, keeping pause and a later edit-config', () => {
    const base = spec(3);
    const current = [memberOn('app-1', 'n1'), memberOn('app-2', 'n2'), memberOn('app-3', 'n3'), routerOn(routerName('app', 1), 'n1'), routerOn(routerName('app', 2), 'n2')];
    const obs = (config: DynamicConfig, modRevision = 7): ClusterObservation => ({ ...view('app-1', ['app-1', 'app-2', 'app-3']), config: { value: config, modRevision } });
    // Before the bootstrap wrote the key: nothing to write, nothing marked.
    const early = planCluster(input({ spec: base, assignments: current, observation: view('app-1', ['app-1', 'app-2', 'app-3']) }));
    assert.deepEqual(early.changes, []);
    assert.equal(early.appliedConfig, undefined);
    // The pass that first sees the key takes it as it is (an edit-config made before stays).
    const edited: DynamicConfig = { ...base.dynamicConfig, loop_wait: 2 };
    const first = planCluster(input({ spec: base, assignments: current, observation: obs(edited) }));
    assert.deepEqual(first.changes, []);
    const mark = first.appliedConfig;
    assert.ok(mark !== undefined);
    // The same spec again: the edit-config stays.
    assert.deepEqual(planCluster(input({ spec: base, assignments: current, observation: obs(edited), appliedConfig: mark })).changes, []);
    // The spec's configuration changes: written once, with the key's pause kept, on its revision.
    const changed: ClusterSpec = { ...base, dynamicConfig: { ...base.dynamicConfig, postgresql: { ...base.dynamicConfig.postgresql, parameters: { max_connections: 150 } } } };
    const paused: DynamicConfig = { ...edited, pause: true };
    const write = planCluster(input({ spec: changed, generation: 2, assignments: current, observation: obs(paused, 9), appliedConfig: mark }));
    assert.deepEqual(write.changes, [{ kind: 'config', config: { ...changed.dynamicConfig, pause: true }, modRevision: 9, reason: { code: 'config-changed', message: 'spec generation 2 changes the dynamic configuration: written to the config key (the agents apply it; parameters that need a restart are restarted one member at a time)' } }]);
    const mark2 = write.appliedConfig;
    assert.ok(mark2 !== undefined && mark2 !== mark);
    // Written (or already equal): nothing more; an edit-config after it stays too.
    assert.deepEqual(planCluster(input({ spec: changed, generation: 2, assignments: current, observation: obs({ ...changed.dynamicConfig, pause: true }, 10), appliedConfig: mark2 })).changes, []);
    assert.deepEqual(planCluster(input({ spec: changed, generation: 2, assignments: current, observation: obs({ ...changed.dynamicConfig, ttl: 9 }, 11), appliedConfig: mark2 })).changes, []);
    // A key that already matches the new spec is not written again, only marked.
    const same = planCluster(input({ spec: changed, generation: 2, assignments: current, observation: obs(changed.dynamicConfig), appliedConfig: mark }));
    assert.deepEqual(same.changes, []);
    assert.equal(same.appliedConfig, mark2);
  });

  it('rolls a restart out: replicas one at a time (outside the synchronous set first), each only while all are ready, then one switchover', () => {
    const current = [memberOn('app-1', 'n1'), memberOn('app-2', 'n2'), memberOn('app-3', 'n3'), routerOn(routerName('app', 1), 'n1'), routerOn(routerName('app', 2), 'n2')];
    const m = (role: string, state: string, over: Partial<ObservedMember> = {}): ObservedMember => ({ role, state, apiUrl: 'http://127.0.0.1:1', ...over });
    const obs = (ms: Record<string, ObservedMember>, extra: Partial<ClusterObservation> = {}): ClusterObservation => ({ leader: 'app-1', members: new Map(Object.entries(ms)), failoverPending: false, ...extra });
    const pend = { pendingRestart: true };
    const plan = (o: ClusterObservation): Plan => planCluster(input({ spec: spec(3), assignments: current, observation: o }));
    const restarts = (p: Plan): string[] => p.changes.flatMap((c) => (c.kind === 'restart' ? [c.member] : []));
    const all = { 'app-1': m('primary', 'running', pend), 'app-2': m('replica', 'streaming', pend), 'app-3': m('replica', 'streaming', pend) };
    const p1 = plan(obs(all));
    assert.deepEqual(restarts(p1), ['app-2']);
    assert.match(p1.changes[0]?.reason.message ?? '', /app-2 restarts for a parameter change \(replicas first, one at a time; then app-1, app-3\)/);
    // Its restart in flight (scheduled, then running): nothing else.
    const inFlight = plan(obs({ ...all, 'app-2': m('replica', 'streaming', { ...pend, busy: true }) }));
    assert.deepEqual(inFlight.changes, []);
    assert.match(inFlight.waiting[0]?.message ?? '', /waiting for app-2 \(a restart or another operation in flight\)/);
    const down = plan(obs({ ...all, 'app-2': m('replica', 'starting') }));
    assert.deepEqual(down.changes, []);
    assert.match(down.waiting[0]?.message ?? '', /app-1, app-3 need a restart .*waiting until every member is ready \(app-2: starting\)/);
    // app-2 done: app-3 next; then the leader, by a switchover to a restarted replica.
    assert.deepEqual(restarts(plan(obs({ ...all, 'app-2': m('replica', 'streaming') }))), ['app-3']);
    const leaderOnly = plan(obs({ ...all, 'app-2': m('replica', 'streaming'), 'app-3': m('replica', 'streaming') }));
    assert.deepEqual(leaderOnly.changes.map((c) => c.kind === 'switchover' && [c.from, c.candidate]), [['app-1', 'app-2']]);
    assert.match(leaderOnly.changes[0]?.reason.message ?? '', /before app-1 restarts for a parameter change/);
    // A switchover or failover in flight: nothing.
    assert.deepEqual(plan(obs(all, { failoverPending: true })).changes, []);
    // In synchronous mode the standby in the synchronous set goes last, and is announced in `leaving`
    // until the leader names another.
    const sync = obs(all, { syncMembers: ['app-2'], leaving: ['app-2', 'app-3'] });
    assert.deepEqual(restarts(plan(sync)), ['app-3']);
    const announce = plan(obs({ ...all, 'app-3': m('replica', 'streaming') }, { syncMembers: ['app-2'], leaving: ['app-2', 'app-3'] }));
    assert.deepEqual(announce.changes.map((c) => c.kind === 'leaving' && c.members), [['app-2']]);
    assert.equal(announce.waiting[0]?.code, 'waiting-for-sync-standby');
    const renamed = plan(obs({ ...all, 'app-3': m('replica', 'streaming') }, { syncMembers: ['app-3'], leaving: ['app-2'] }));
    assert.deepEqual(restarts(renamed), ['app-2']);
    // Not while members are placed or removed in the same pass.
    const scaling = planCluster(input({ spec: spec(4), assignments: current, observation: obs(all) }));
    assert.ok(scaling.changes.some((c) => c.kind === 'assign' && c.name === 'app-4'));
    assert.deepEqual(restarts(scaling), []);
    assert.ok(scaling.waiting.some((w) => w.code === 'rolling-restart-waiting'));
    // Lowering max_connections: the primary first, in place (no standby may run below it), then the replicas.
    const lower = { pendingRestart: true, restartLowers: ['max_connections'] };
    const lowering = { 'app-1': m('primary', 'running', lower), 'app-2': m('replica', 'streaming', lower), 'app-3': m('replica', 'streaming', lower) };
    const pl = plan(obs(lowering));
    assert.deepEqual(restarts(pl), ['app-1']);
    assert.match(pl.changes[0]?.reason.message ?? '', /app-1 restarts for a parameter change \(it lowers max_connections, which no standby may run below its primary: the primary restarts in place first/);
    assert.deepEqual(restarts(plan(obs({ ...lowering, 'app-1': m('primary', 'running') }))), ['app-2']);
    const lastOne = plan(obs({ ...lowering, 'app-1': m('primary', 'running'), 'app-2': m('replica', 'streaming') }));
    assert.deepEqual(lastOne.changes.map((c) => c.kind), ['restart']);
    assert.deepEqual(restarts(plan(obs({ 'app-1': m('primary', 'running'), 'app-2': m('replica', 'streaming'), 'app-3': m('replica', 'streaming') }))), []);
    // A cluster of one restarts its primary in place.
    const one = planCluster(input({ spec: spec(1), assignments: [memberOn('app-1', 'n1'), ...current.filter((a) => a.kind === 'router')], observation: obs({ 'app-1': m('primary', 'running', pend) }) }));
    assert.deepEqual(restarts(one), ['app-1']);
  });

  it('rolls a change of spec.backups: each agent restarts with it, replicas one at a time, waiting for each node daemon, then one switchover; options alone restart nothing', () => {
    const withBackups = (extra: string): ClusterSpec => {
      const r = parseClusterSpec(`apiVersion: warden.dev/v1\nkind: Cluster\nmetadata:\n  name: app\nspec:\n  instances:\n  - name: instance1\n    replicas: 3\n  backups:\n    pgbackrest:\n${extra}      repos:\n      - name: repo1\n        volume: {}\n`, 'app.yaml');
      if (!r.ok) throw new Error(JSON.stringify(r.errors));
      return r.spec;
    };
    const on = withBackups('');
    const repo1 = { stanza: 'app', repos: ['repo1'], global: {} };
    const had = (b: typeof repo1 | undefined) => (name: string, n: string, modRevision = 1): CurrentAssignment => ({ ...memberOn(name, n, modRevision), agent: b === undefined ? {} : { backups: b } });
    const none = had(undefined);
    const current = [none('app-1', 'n1'), none('app-2', 'n2'), none('app-3', 'n3'), routerOn(routerName('app', 1), 'n1'), routerOn(routerName('app', 2), 'n2')];
    const running = (entries: Record<string, string>): ReadonlyMap<string, string> => new Map(Object.entries(entries));
    const off = backupsFingerprint(undefined);
    const onPrint = backupsFingerprint(repo1);
    const plan = (assignments: CurrentAssignment[], o: ClusterObservation, runs: Record<string, string>, sp: ClusterSpec = on): Plan => planCluster(input({ spec: sp, generation: 2, assignments, observation: o, runningBackups: running(runs) }));
    const settings = (p: Plan): string[] => p.changes.flatMap((c) => (c.kind === 'settings' ? [`${c.member}${c.restarts ? '!' : ''}`] : []));
    // Archiving turned on: the first replica's assignment is rewritten (its agent restarts).
    const p1 = plan(current, view('app-1', ['app-1', 'app-2', 'app-3']), { 'app-1': off, 'app-2': off, 'app-3': off });
    assert.deepEqual(settings(p1), ['app-2!']);
    const c1 = p1.changes.find((c) => c.kind === 'settings');
    assert.ok(c1?.kind === 'settings');
    assert.deepEqual(c1.backups, repo1);
    assert.equal(c1.modRevision, 1);
    assert.match(c1.reason.message, /spec generation 2 changes spec\.backups \(archiving turned on, into repo1\): its node daemon restarts its agent with them \(replicas first, one at a time; then app-1, app-3\)/);
    // Rewritten, its node daemon still runs it with the former settings: nothing more, even though it still shows streaming.
    const routers = [routerOn(routerName('app', 1), 'n1'), routerOn(routerName('app', 2), 'n2')];
    const rewritten = [none('app-1', 'n1'), had(repo1)('app-2', 'n2', 7), none('app-3', 'n3'), ...routers];
    const wait1 = plan(rewritten, view('app-1', ['app-1', 'app-2', 'app-3']), { 'app-1': off, 'app-2': off, 'app-3': off });
    assert.deepEqual(wait1.changes, []);
    assert.match(wait1.waiting[0]?.message ?? '', /app-2 is restarting with the new spec\.backups; waiting until their node daemons have restarted them/);
    // Restarted, not streaming yet: still waiting.
    const wait2 = plan(rewritten, view('app-1', ['app-1', 'app-3'], { 'app-2': { role: 'replica', state: 'starting' } }), { 'app-1': off, 'app-2': onPrint, 'app-3': off });
    assert.deepEqual(wait2.changes, []);
    assert.match(wait2.waiting[0]?.message ?? '', /waiting until every member is ready \(app-2: starting\)/);
    // Streaming with them: the next replica, then the leader by a switchover to a restarted one.
    assert.deepEqual(settings(plan(rewritten, view('app-1', ['app-1', 'app-2', 'app-3']), { 'app-1': off, 'app-2': onPrint, 'app-3': off })), ['app-3!']);
    const leaderLeft = [none('app-1', 'n1'), had(repo1)('app-2', 'n2', 7), had(repo1)('app-3', 'n3', 8), ...routers];
    const sw = plan(leaderLeft, view('app-1', ['app-1', 'app-2', 'app-3']), { 'app-1': off, 'app-2': onPrint, 'app-3': onPrint });
    assert.deepEqual(sw.changes.map((c) => c.kind === 'switchover' && [c.from, c.candidate]), [['app-1', 'app-2']]);
    assert.match(sw.changes[0]?.reason.message ?? '', /before app-1 restarts with the new spec\.backups/);
    // The former leader, now a replica, last.
    assert.deepEqual(settings(plan(leaderLeft, view('app-2', ['app-1', 'app-2', 'app-3']), { 'app-1': off, 'app-2': onPrint, 'app-3': onPrint })), ['app-1!']);
    const done = [had(repo1)('app-1', 'n1', 9), had(repo1)('app-2', 'n2', 7), had(repo1)('app-3', 'n3', 8), routerOn(routerName('app', 1), 'n1'), routerOn(routerName('app', 2), 'n2')];
    const converged = plan(done, view('app-2', ['app-1', 'app-2', 'app-3']), { 'app-1': onPrint, 'app-2': onPrint, 'app-3': onPrint });
    assert.deepEqual(converged.changes, []);
    assert.deepEqual(converged.waiting, []);
    // In synchronous mode a member about to restart for it is announced in `leaving` first.
    const sync = plan(current, { ...view('app-1', ['app-1', 'app-2', 'app-3']), syncMembers: ['app-2'] }, { 'app-1': off, 'app-2': off, 'app-3': off });
    assert.deepEqual(sync.changes.flatMap((c) => (c.kind === 'leaving' ? [c.members] : [])), [['app-2', 'app-3']]);
    // … and the one outside the synchronous set goes first.
    assert.deepEqual(settings(sync), ['app-3!']);
    // A retention change alone: every member's files rewritten at once, nothing restarts, whatever their state.
    const retention = withBackups('      global:\n        repo1-retention-full: "4"\n');
    const opts = plan(done, view('app-2', ['app-1', 'app-2'], { 'app-3': { role: 'replica', state: 'starting' } }), { 'app-1': onPrint, 'app-2': onPrint, 'app-3': onPrint }, retention);
    assert.deepEqual(settings(opts), ['app-1', 'app-2', 'app-3']);
    assert.match(opts.changes[0]?.reason.message ?? '', /pgBackRest options repo1-retention-full\): app-1's pgBackRest config is rewritten in place, nothing restarts/);
    // Archiving turned off again: a roll, as for turning it on.
    assert.deepEqual(settings(plan(done, view('app-2', ['app-1', 'app-2', 'app-3']), { 'app-1': onPrint, 'app-2': onPrint, 'app-3': onPrint }, spec(3))), ['app-1!']);
    // A cluster of one: in place.
    const one = planCluster(input({ spec: { ...on, members: on.members.slice(0, 1) }, generation: 2, assignments: [none('app-1', 'n1'), ...routers], observation: view('app-1', ['app-1']), runningBackups: running({ 'app-1': off }) }));
    assert.deepEqual(settings(one), ['app-1!']);
  });

  it('waits nodeLostSeconds before re-creating the members of a lost node, then places them elsewhere', () => {
    const current = [memberOn('app-1', 'n1'), memberOn('app-2', 'n2'), memberOn('app-3', 'n3'), routerOn(routerName('app', 1), 'n1')];
    const nodes = [node('n1'), node('n2'), node('n4')];
    const early = planCluster(input({ spec: spec(3, { antiAffinity: true, routers: 1 }), nodes, assignments: current, lostForMs: new Map([['n3', 10_000]]), observation: view('app-1', ['app-1', 'app-2']) }));
    assert.deepEqual(early.changes, []);
    assert.equal(early.waiting[0]?.code, 'node-lost-waiting');
    const late = planCluster(input({ spec: spec(3, { antiAffinity: true, routers: 1 }), nodes, assignments: current, lostForMs: new Map([['n3', 31_000]]), observation: view('app-1', ['app-1', 'app-2']) }));
    assert.deepEqual(late.changes.map((c) => c.kind === 'assign' && [c.name, c.node, c.from?.node, c.reason.code]), [['app-3', 'n4', 'n3', 'node-lost']]);
  });

  it('keeps a lost node\'s member Pending with the reason when no other node is feasible', () => {
    const current = [memberOn('app-1', 'n1'), memberOn('app-2', 'n2'), memberOn('app-3', 'n3'), routerOn(routerName('app', 1), 'n1')];
    const plan = planCluster(input({ spec: spec(3, { antiAffinity: true, routers: 1 }), nodes: [node('n1'), node('n2')], assignments: current, lostForMs: new Map([['n3', 60_000]]), observation: view('app-1', ['app-1', 'app-2']) }));
    assert.deepEqual(plan.changes, []);
    assert.equal(plan.pending[0]?.name, 'app-3');
    assert.match(plan.pending[0]?.reason.message ?? '', /^node n3 of app-3 is gone .* but no node accepts it: n1: /);
  });

  it('drains a node: a replica moves at once, a primary is switched over first', () => {
    const current = [memberOn('app-1', 'n1'), memberOn('app-2', 'n2'), routerOn(routerName('app', 1), 'n3')];
    const nodes = [node('n1', { drain: true, unschedulable: true }), node('n2'), node('n3')];
    const replica = planCluster(input({ spec: spec(2, { routers: 1 }), nodes, assignments: current, observation: view('app-2', ['app-1', 'app-2']) }));
    assert.deepEqual(replica.changes.map((c) => (c.kind === 'assign' ? [c.name, c.from?.node, c.reason.code] : c.kind)), ['leaving', ['app-1', 'n1', 'node-draining']]);
    assert.deepEqual(replica.changes[0], { kind: 'leaving', members: ['app-1'], reason: { code: 'leaving', message: 'about to move or remove app-1: the leader ranks them last for the synchronous set' } });
    assert.notEqual(replica.changes[1]?.kind === 'assign' ? replica.changes[1].node : 'n1', 'n1');
    const primary = planCluster(input({ spec: spec(2, { routers: 1 }), nodes, assignments: current, observation: view('app-1', ['app-1', 'app-2']) }));
    assert.deepEqual(primary.changes.map((c) => c.kind), ['leaving', 'switchover']);
    // Once nothing is about to leave, the key is cleared.
    const done = planCluster(input({ spec: spec(2, { routers: 1 }), nodes: [node('n1'), node('n2'), node('n3')], assignments: current, observation: { ...view('app-2', ['app-1', 'app-2']), leaving: ['app-1'] } }));
    assert.deepEqual(done.changes.map((c) => c.kind === 'leaving' && c.members), [[]]);
  });

  it('keeps the node of a leader waiting for its switchover occupied: a replaced member does not land beside it', () => {
    // Found by the property below: n1 is lost, app-2 leads on n2 and is scaled away.
    const current = [memberOn('app-1', 'n1'), memberOn('app-2', 'n2')];
    const plan = planCluster(input({ spec: spec(1, { antiAffinity: true, routers: 0 }), nodes: [node('n2')], assignments: current, lostForMs: new Map([['n1', 60_000]]), observation: view('app-2', ['app-2']) }));
    assert.ok(plan.changes.every((c) => c.kind !== 'assign'), JSON.stringify(plan.changes));
    assert.equal(plan.pending[0]?.name, 'app-1');
    assert.match(plan.pending[0]?.reason.message ?? '', /n2: .*app-2/);
  });

  it('changes nothing when everything is where the spec wants it', () => {
    const current = [memberOn('app-1', 'n1'), memberOn('app-2', 'n2'), routerOn(routerName('app', 1), 'n1'), routerOn(routerName('app', 2), 'n2')];
    const plan = planCluster(input({ spec: spec(2), assignments: current, observation: view('app-1', ['app-1', 'app-2']) }));
    assert.deepEqual(plan.changes, []);
    assert.equal(plan.ready, 2);
  });

  it('counts other clusters\' workloads against a node\'s capacity', () => {
    const plan = planCluster(input({ spec: spec(1, { routers: 0 }), nodes: [node('n1', { capacity: 1 })], occupants: [{ name: 'db-1', node: 'n1', namespace: 'default', labels: {}, terminating: false }] }));
    assert.match(plan.pending[0]?.reason.message ?? '', /n1: at capacity \(1 workloads\)/);
  });
});

describe('planCluster properties', () => {
  const scenario = fc.record({
    nodeCount: fc.integer({ min: 1, max: 6 }),
    cordoned: fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }),
    replicas: fc.integer({ min: 1, max: 6 }),
    nextReplicas: fc.integer({ min: 1, max: 6 }),
    anti: fc.boolean(),
    routers: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
    leaderIndex: fc.integer({ min: 0, max: 5 }),
    lost: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
  });

  it('never puts two members on one node under required anti-affinity, never removes the leader, and re-planning an applied plan changes nothing', () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const nodes = Array.from({ length: s.nodeCount }, (_, i) => node(`n${i + 1}`, { unschedulable: s.cordoned[i] === true }));
        const sp = spec(s.replicas, { antiAffinity: s.anti, ...(s.routers === undefined ? {} : { routers: s.routers }) });
        let assignments = applyChanges([], planCluster(input({ spec: sp, nodes })));
        const placedMembers = assignments.filter((a) => a.kind === 'member').map((a) => a.name);
        const leader = placedMembers[s.leaderIndex % Math.max(1, placedMembers.length)];
        let obs: ClusterObservation = leader === undefined ? noView : view(leader, placedMembers);
        // A node is lost for good, and the spec is scaled.
        const lostNode = s.lost === undefined ? undefined : nodes[s.lost % nodes.length]?.name;
        const liveNodes = nodes.filter((n) => n.name !== lostNode);
        const lostForMs = new Map(lostNode === undefined ? [] : [[lostNode, 60_000]]);
        const next = spec(s.nextReplicas, { antiAffinity: s.anti, ...(s.routers === undefined ? {} : { routers: s.routers }) });
        for (let round = 0; round < 4; round++) {
          const plan = planCluster(input({ spec: next, nodes: liveNodes, lostForMs, assignments, observation: obs }));
          for (const c of plan.changes) {
            if (c.kind === 'assign') assert.equal(nodes.find((n) => n.name === c.node)?.unschedulable, false, `placed ${c.name} on cordoned ${c.node}`);
            if (c.kind === 'unassign' && c.workload === 'member') assert.notEqual(c.name, obs.leader, `removed the leader ${c.name}`);
            if (c.kind === 'assign' && c.from !== undefined) assert.notEqual(c.name, obs.leader, `moved the leader ${c.name}`);
          }
          assignments = applyChanges(assignments, plan);
          const sw = plan.changes.find((c) => c.kind === 'switchover');
          if (sw?.kind === 'switchover') obs = { ...view(sw.candidate, [...obs.members.keys()]), ...(obs.leaving === undefined ? {} : { leaving: obs.leaving }) };
          const lv = plan.changes.find((c) => c.kind === 'leaving');
          if (lv?.kind === 'leaving') obs = { ...obs, leaving: lv.members };
          if (s.anti) {
            const onLive = assignments.filter((a) => a.kind === 'member' && a.node !== lostNode).map((a) => a.node);
            assert.equal(new Set(onLive).size, onLive.length, `two members on one node: ${JSON.stringify(assignments)}`);
          }
          const routerNodes = assignments.filter((a) => a.kind === 'router' && a.node !== lostNode).map((a) => a.node);
          assert.equal(new Set(routerNodes).size, routerNodes.length, 'two routers on one node');
          if (plan.changes.length === 0) {
            // A fixpoint: planning again from what was applied changes nothing.
            assert.deepEqual(planCluster(input({ spec: next, nodes: liveNodes, lostForMs, assignments, observation: obs })).changes, []);
            return;
          }
        }
        assert.fail('did not converge within 4 passes');
      }),
      { numRuns: 300 },
    );
  });
});
