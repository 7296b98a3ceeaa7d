import { clusterInstances, placeInstances } from '../placement/index.js';
import type { InstanceToPlace, Occupant, Placement, PlacementNode, Taint } from '../placement/index.js';
import type { DynamicConfig } from '../ha/index.js';
import type { ClusterSpec } from '../spec/index.js';
import { backupsChangeRestarts, backupsFingerprint, type AssignmentBackups, type ReasonRecord, type WorkloadKind } from './records.js';

// The controller's pure plan (docs/architecture.md, "Nodes and the controller"): the desired state
// (a stored spec), what exists (nodes, assignments) and what agents report (leader, member states)
// in; the changes to make, each with its reason, out. No I/O, no clock: `nowMs` comes in. The
// apply step writes the changes with compare-and-swap; the next pass plans again from a fresh read
// (level-triggered), so a change that failed or was overtaken is simply planned again.

/** A node as the plan sees it: its record (when its daemon is alive) and its settings. */
export interface PlanNode {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly taints: readonly Taint[];
  /** Cordoned or draining: nothing new is placed on it. */
  readonly unschedulable: boolean;
  /** Draining: what it runs is moved off. */
  readonly drain: boolean;
  readonly capacity: number;
}

/** One assignment as it exists now (its revision is the precondition of any change to it). */
export interface CurrentAssignment {
  readonly kind: WorkloadKind;
  readonly name: string;
  readonly node: string;
  readonly modRevision: number;
  /** A member's agent settings as assigned (only the backups part matters to the plan). */
  readonly agent?: { readonly backups?: AssignmentBackups };
}

/** One member as its agent publishes it (the `members/<name>` key). */
export interface ObservedMember {
  readonly role: string;
  readonly state: string;
  /** PostgreSQL reports a changed parameter that takes effect only at a restart. */
  readonly pendingRestart?: boolean;
  /** The hot-standby parameters its pending restart lowers: the primary restarts first. */
  readonly restartLowers?: readonly string[];
  /** A restart is scheduled on it, or its agent runs an operation (a restart, a clone, a start). */
  readonly busy?: boolean;
  /** Its agent's REST API (the rolling restart asks it there). */
  readonly apiUrl?: string;
}

/** What the agents of the cluster report: the leader key and each member's role and state. */
export interface ClusterObservation {
  readonly leader?: string;
  readonly members: ReadonlyMap<string, ObservedMember>;
  /** A switchover or failover is already requested (the `failover` key exists). */
  readonly failoverPending: boolean;
  /**
   * In synchronous mode, the members of the `sync` key: the leader accepts a switchover only to one
   * of them (invariant 4 in docs/architecture.md). Absent: asynchronous mode, any streaming replica.
   */
  readonly syncMembers?: readonly string[];
  /** The cluster's `leaving` key as it is (undefined: no key). */
  readonly leaving?: readonly string[];
  /** The `config` key as the agents read it, with its revision; undefined until the bootstrap wrote it. */
  readonly config?: { readonly value: DynamicConfig; readonly modRevision: number };
}

export interface PlanInput {
  readonly spec: ClusterSpec;
  readonly generation: number;
  /** Nodes whose daemon is registered (alive). */
  readonly nodes: readonly PlanNode[];
  /** How long each node that is not registered has been seen missing, by name. */
  readonly lostForMs: ReadonlyMap<string, number>;
  readonly assignments: readonly CurrentAssignment[];
  /** Workloads of other clusters, for anti-affinity, spread and capacity. */
  readonly occupants: readonly Occupant[];
  readonly observation: ClusterObservation;
  /** Members of a node lost for longer than this are placed elsewhere (nodeLostSeconds, default 30). */
  readonly nodeLostMs: number;
  /**
   * The spec's dynamic configuration the controller last made the `config` key match (canonical
   * JSON, `pause` left out; from the cluster's status). Undefined: none yet.
   */
  readonly appliedConfig?: string;
  /**
   * Per member, the backups settings (backupsFingerprint) its node daemon reports the member runs
   * with. One that differs from its assignment is still being restarted with the assigned ones.
   */
  readonly runningBackups?: ReadonlyMap<string, string>;
}

/** One change to make, with its precondition. */
export type PlannedChange =
  | {
      readonly kind: 'assign';
      readonly workload: WorkloadKind;
      readonly name: string;
      readonly node: string;
      /** Set when it moves: the revision of the assignment it replaces. */
      readonly from?: { readonly node: string; readonly modRevision: number };
      readonly reason: ReasonRecord;
    }
  | { readonly kind: 'unassign'; readonly workload: WorkloadKind; readonly name: string; readonly node: string; readonly modRevision: number; readonly reason: ReasonRecord }
  | { readonly kind: 'switchover'; readonly from: string; readonly candidate: string; readonly reason: ReasonRecord }
  /** Rewrite the `leaving` key (empty: delete it): the members about to be moved or removed, ranked last for the synchronous set. */
  | { readonly kind: 'leaving'; readonly members: readonly string[]; readonly reason: ReasonRecord }
  /** Write the spec's dynamic configuration into the `config` key (compare-and-swap on its revision). */
  | { readonly kind: 'config'; readonly config: DynamicConfig; readonly modRevision: number; readonly reason: ReasonRecord }
  /** Ask a member's agent to restart it (a scheduled restart, only while a restart is pending). */
  | { readonly kind: 'restart'; readonly member: string; readonly apiUrl: string; readonly reason: ReasonRecord }
  /**
   * Rewrite a member's assignment with the spec's backups settings (same node, compare-and-swap on
   * its revision). `restarts`: its node daemon restarts the agent with them (archiving turned on or
   * off, other repositories); otherwise it only rewrites the member's pgBackRest files.
   */
  | { readonly kind: 'settings'; readonly member: string; readonly node: string; readonly modRevision: number; readonly backups: AssignmentBackups | undefined; readonly restarts: boolean; readonly reason: ReasonRecord };

export interface Plan {
  readonly changes: readonly PlannedChange[];
  /** Members and routers no node accepts, with the rule each node broke. */
  readonly pending: readonly { readonly name: string; readonly kind: WorkloadKind; readonly reason: ReasonRecord }[];
  /** What the plan waits on before it can change more (a switchover, a node that may come back). */
  readonly waiting: readonly ReasonRecord[];
  readonly desired: { readonly members: number; readonly routers: number };
  /** Members whose agent reports running as primary, or streaming as a replica. */
  readonly ready: number;
  /** What the status keeps as `appliedConfig` once this pass's changes are written (see PlanInput). */
  readonly appliedConfig?: string;
}

export const DEFAULT_NODE_LOST_SECONDS = 30;
/** Routers when the spec does not say: two across hosts (no single point of failure), fewer with fewer nodes. */
export const DEFAULT_ROUTER_REPLICAS = 2;
const HOSTNAME = 'kubernetes.io/hostname';
const ROUTER_LABEL = 'warden.dev/router';

/** Router names of a cluster: `<cluster>-router-1..N`. */
export function routerName(cluster: string, index: number): string {
  return `${cluster}-router-${index}`;
}

/** The backups part of every member's assignment for this spec: stanza (the cluster's name), repositories, options. */
export function assignmentBackupsOf(spec: ClusterSpec): AssignmentBackups | undefined {
  const b = spec.backups;
  if (b === undefined) return undefined;
  const cloud = b.repos.flatMap((r) => (r.cloud === undefined ? [] : [{ repo: r.name, storage: r.cloud }]));
  return { stanza: spec.name, repos: b.repos.map((r) => r.name), global: b.global, ...(cloud.length === 0 ? {} : { cloud }) };
}

/** True when a member's agent reports it serving: a running primary or a streaming replica. */
export function isReady(m: { readonly role: string; readonly state: string } | undefined): boolean {
  return m !== undefined && ((m.role === 'primary' && m.state === 'running') || (m.role === 'replica' && m.state === 'streaming'));
}

/** What the router instances of a cluster look like to placement: at most one per host. */
export function routerInstance(cluster: string, namespace: string, name: string): InstanceToPlace {
  const labels = { [ROUTER_LABEL]: cluster, 'warden.dev/cluster': cluster };
  return {
    member: name,
    instanceSet: 'router',
    namespace,
    labels,
    nodeSelector: {},
    affinity: { podAntiAffinity: { required: [{ labelSelector: { matchLabels: { [ROUTER_LABEL]: cluster }, matchExpressions: [] }, namespaces: [], topologyKey: HOSTNAME }], preferred: [] } },
    tolerations: [],
    topologySpreadConstraints: [],
  };
}

/** The workloads of a cluster as occupants of their nodes (for other clusters' plans, and its own kept ones). */
export function clusterOccupants(spec: ClusterSpec, assignments: readonly { kind: WorkloadKind; name: string; node: string }[]): Occupant[] {
  const instances = new Map(clusterInstances(spec).map((i) => [i.member, i]));
  /** A member the spec no longer names (scaled away): labelled as its instance set's members are. */
  const formerMember = (name: string): InstanceToPlace | undefined => {
    const set = spec.instanceSets.length === 1 ? spec.instanceSets[0] : spec.instanceSets.find((x) => name.startsWith(`${spec.name}-${x.name}-`));
    if (set === undefined) return undefined;
    return clusterInstances({ ...spec, members: [{ name, instanceSet: set.name }] })[0];
  };
  return assignments.map((a) => {
    const inst = a.kind === 'member' ? (instances.get(a.name) ?? formerMember(a.name)) : routerInstance(spec.name, spec.namespace, a.name);
    return {
      name: a.name,
      node: a.node,
      namespace: spec.namespace,
      labels: inst?.labels ?? { 'warden.dev/cluster': spec.name },
      ...(inst?.affinity === undefined ? {} : { affinity: inst.affinity }),
      terminating: false,
    };
  });
}

const reason = (code: string, message: string): ReasonRecord => ({ code, message });

/**
 * Plans one pass over one cluster: places new members and routers (the placement engine), removes
 * what the spec no longer asks for (never the leader: a switchover comes first), moves what runs on
 * a draining node (a leader by switchover first) or on a node lost for longer than nodeLostMs, and
 * leaves Pending, with each node's reason, what no node accepts. Pure.
 */
export function planCluster(input: PlanInput): Plan {
  const { spec, observation: obs } = input;
  const alive = new Map(input.nodes.map((n) => [n.name, n]));
  const changes: PlannedChange[] = [];
  const waiting: ReasonRecord[] = [];
  const pending: { name: string; kind: WorkloadKind; reason: ReasonRecord }[] = [];
  const desiredMembers = new Set(spec.members.map((m) => m.name));
  const members = input.assignments.filter((a) => a.kind === 'member');
  const routers = input.assignments.filter((a) => a.kind === 'router');
  const leader = obs.leader;
  // A switchover is asked for at most once per pass, and not while one is pending.
  let switchoverAsked = obs.failoverPending;
  /** A member that stays and serves, to hand the leader to; undefined when none. */
  // A candidate outside the sync key would be refused by the leader and asked for again each pass:
  // a drain or scale down would never finish.
  const candidateFor = (from: string, leaving: ReadonlySet<string>): string | undefined =>
    spec.members
      .map((m) => m.name)
      .find((n) => n !== from && !leaving.has(n) && obs.members.get(n)?.role === 'replica' && isReady(obs.members.get(n)) && (obs.syncMembers === undefined || obs.syncMembers.includes(n)));
  const askSwitchover = (from: string, leaving: ReadonlySet<string>, why: string): void => {
    if (switchoverAsked) {
      waiting.push(reason('waiting-for-switchover', `${from} leads; waiting for the switchover away from it before it ${why}`));
      return;
    }
    const candidate = candidateFor(from, leaving);
    if (candidate === undefined) {
      const none = obs.syncMembers === undefined ? 'no other member streams to take over' : `no synchronous standby that stays streams to take over (sync: ${obs.syncMembers.join(', ') || 'none'})`;
      waiting.push(reason('no-switchover-candidate', `${from} leads and ${none}; it ${why} once one does`));
      return;
    }
    switchoverAsked = true;
    changes.push({ kind: 'switchover', from, candidate, reason: reason('switchover-before-move', `switchover from ${from} to ${candidate} before ${from} ${why}`) });
  };

  // Members that must leave their node: the spec no longer has them, their node drains, or their node is lost.
  const removed = members.filter((a) => !desiredMembers.has(a.name));
  const leaving = new Set(removed.map((a) => a.name));
  // Announced in the `leaving` key before anything moves: the leader then names a synchronous standby
  // that stays, so stopping one that leaves never blocks a commit in strict mode.
  const goingAway = new Set([...leaving, ...members.filter((a) => desiredMembers.has(a.name) && alive.get(a.node)?.drain === true).map((a) => a.name)]);
  // In synchronous mode a replica that waits for a rolling restart is announced too: the leader then
  // names one that needs none (or was restarted), and the restart stalls no commit.
  const wantedBackups = assignmentBackupsOf(spec);
  /** A member that restarts its agent for the spec's backups settings (planRollingRestart). */
  const restartsForBackups = (a: CurrentAssignment): boolean => backupsChangeRestarts(a.agent?.backups, wantedBackups) || (input.runningBackups?.get(a.name) ?? backupsFingerprint(a.agent?.backups)) !== backupsFingerprint(a.agent?.backups);
  const restarting = obs.syncMembers === undefined ? [] : members.filter((a) => a.name !== leader && desiredMembers.has(a.name) && (obs.members.get(a.name)?.pendingRestart === true || restartsForBackups(a))).map((a) => a.name);
  const announced = [...new Set([...goingAway, ...restarting])].sort();
  if (announced.join(',') !== [...(obs.leaving ?? [])].sort().join(',')) {
    const moves = announced.filter((n) => goingAway.has(n));
    const restarts = announced.filter((n) => !goingAway.has(n));
    const what = [moves.length === 0 ? '' : `about to move or remove ${moves.join(', ')}`, restarts.length === 0 ? '' : `about to restart ${restarts.join(', ')}`].filter((x) => x !== '').join('; ');
    changes.push({ kind: 'leaving', members: announced, reason: reason('leaving', announced.length === 0 ? 'no member is about to leave its node' : `${what}: the leader ranks them last for the synchronous set`) });
  }
  /** Why `name` may not be stopped yet: it is a synchronous standby and another member that stays could take its place. */
  const syncHold = (name: string): ReasonRecord | undefined => {
    if (obs.syncMembers?.includes(name) !== true) return undefined;
    const other = spec.members.map((m) => m.name).find((n) => n !== leader && !goingAway.has(n) && !obs.syncMembers?.includes(n) && obs.members.get(n)?.role === 'replica' && isReady(obs.members.get(n)));
    return other === undefined ? undefined : reason('waiting-for-sync-standby', `${name} is a synchronous standby; waiting for the leader to name ${other} instead before ${name} stops`);
  };
  for (const a of removed) {
    const hold = a.name === leader ? undefined : syncHold(a.name);
    if (a.name === leader) askSwitchover(a.name, leaving, 'is removed (scale down)');
    else if (hold !== undefined) waiting.push(hold);
    else changes.push({ kind: 'unassign', workload: 'member', name: a.name, node: a.node, modRevision: a.modRevision, reason: reason('scale-down', `${a.name} is not in spec generation ${input.generation}: removed from ${a.node}`) });
  }
  const toPlace: { name: string; from?: CurrentAssignment; why: ReasonRecord }[] = [];
  const kept: CurrentAssignment[] = [];
  for (const m of spec.members) {
    const a = members.find((x) => x.name === m.name);
    if (a === undefined) {
      toPlace.push({ name: m.name, why: reason('new-member', `${m.name} is in spec generation ${input.generation} and runs nowhere yet`) });
      continue;
    }
    const node = alive.get(a.node);
    if (node === undefined) {
      const lostMs = input.lostForMs.get(a.node) ?? 0;
      if (lostMs < input.nodeLostMs) {
        waiting.push(reason('node-lost-waiting', `node ${a.node} of ${m.name} is gone for ${Math.round(lostMs / 1000)} s; replaced after ${Math.round(input.nodeLostMs / 1000)} s`));
        kept.push(a);
      } else if (a.name === leader) {
        // The leader key outlives its node only until its lease expires; failover comes first.
        waiting.push(reason('node-lost-leader', `${m.name} on lost node ${a.node} still holds the leader key; waiting for the failover`));
        kept.push(a);
      } else {
        toPlace.push({ name: m.name, from: a, why: reason('node-lost', `node ${a.node} of ${m.name} is gone for more than ${Math.round(input.nodeLostMs / 1000)} s: re-created on another node`) });
      }
      continue;
    }
    if (node.drain) {
      const hold = a.name === leader ? undefined : syncHold(a.name);
      if (a.name === leader) {
        askSwitchover(a.name, new Set([a.name]), `moves off draining node ${a.node}`);
        kept.push(a);
      } else if (hold !== undefined) {
        waiting.push(hold);
        kept.push(a);
      } else {
        toPlace.push({ name: m.name, from: a, why: reason('node-draining', `node ${a.node} drains: ${m.name} moves off it`) });
      }
      continue;
    }
    kept.push(a);
  }

  // Placement sees every other workload where it is, this cluster's kept members and routers included.
  const keptRouters = routers.filter((r) => alive.has(r.node) && alive.get(r.node)?.drain !== true);
  // Members on their way out still run until their node daemon stops them: they count for
  // anti-affinity (as terminating pods do in kube-scheduler), so nothing new shares their node.
  const leavingOccupants = clusterOccupants(spec, removed).map((o) => ({ ...o, terminating: true }));
  const occupants = [...input.occupants, ...clusterOccupants(spec, [...kept, ...keptRouters]), ...leavingOccupants];
  const load = new Map<string, number>();
  for (const o of occupants) load.set(o.node, (load.get(o.node) ?? 0) + 1);
  const placementNodes = (): PlacementNode[] => input.nodes.map((n) => ({ name: n.name, labels: n.labels, taints: n.taints, unschedulable: n.unschedulable || n.drain || (load.get(n.name) ?? 0) >= n.capacity }));
  const explain = (p: Placement): string => {
    const parts = p.nodes.map((v) => {
      const n = alive.get(v.node);
      const full = n !== undefined && !n.unschedulable && !n.drain && (load.get(n.name) ?? 0) >= n.capacity;
      return `${v.node}: ${full ? `at capacity (${n.capacity} workloads)` : v.reason}`;
    });
    return parts.length === 0 ? 'no node is registered' : parts.join('; ');
  };

  if (toPlace.length > 0) {
    const byName = new Map(clusterInstances(spec).map((i) => [i.member, i]));
    const instances = toPlace.map((t) => byName.get(t.name)).filter((i): i is InstanceToPlace => i !== undefined);
    const result = placeInstances({ nodes: placementNodes(), occupants, instances });
    for (const t of toPlace) {
      const p = result.placements.find((x) => x.member === t.name);
      if (p?.node === null || p === undefined) {
        pending.push({ name: t.name, kind: 'member', reason: reason('unschedulable', `${t.why.message}, but no node accepts it: ${p === undefined ? 'not placed' : explain(p)}`) });
        continue;
      }
      load.set(p.node, (load.get(p.node) ?? 0) + 1);
      changes.push({ kind: 'assign', workload: 'member', name: t.name, node: p.node, ...(t.from === undefined ? {} : { from: { node: t.from.node, modRevision: t.from.modRevision } }), reason: reason(t.why.code, `${t.why.message}: placed on ${p.node}`) });
    }
  }

  // Routers: stateless, spread one per host; a lost or draining node's router is replaced.
  const schedulable = input.nodes.filter((n) => !n.unschedulable && !n.drain).length;
  const routerCount = spec.routerReplicas ?? Math.max(1, Math.min(DEFAULT_ROUTER_REPLICAS, schedulable));
  const routerNames = Array.from({ length: routerCount }, (_, i) => routerName(spec.name, i + 1));
  const routersToPlace: { name: string; from?: CurrentAssignment; why: ReasonRecord }[] = [];
  for (const r of routers) {
    if (!routerNames.includes(r.name)) changes.push({ kind: 'unassign', workload: 'router', name: r.name, node: r.node, modRevision: r.modRevision, reason: reason('scale-down', `${r.name} is beyond spec.proxy.router.replicas (${routerCount})`) });
  }
  for (const name of routerNames) {
    const r = routers.find((x) => x.name === name);
    if (r === undefined) routersToPlace.push({ name, why: reason('new-router', `${name} runs nowhere yet`) });
    else if (alive.get(r.node)?.drain === true) routersToPlace.push({ name, from: r, why: reason('node-draining', `node ${r.node} drains: ${name} moves off it`) });
    else if (!alive.has(r.node) && (input.lostForMs.get(r.node) ?? 0) >= input.nodeLostMs) routersToPlace.push({ name, from: r, why: reason('node-lost', `node ${r.node} of ${name} is gone: re-created on another node`) });
  }
  if (routersToPlace.length > 0) {
    const result = placeInstances({ nodes: placementNodes(), occupants, instances: routersToPlace.map((r) => routerInstance(spec.name, spec.namespace, r.name)) });
    for (const t of routersToPlace) {
      const p = result.placements.find((x) => x.member === t.name);
      if (p?.node === null || p === undefined) {
        // A router that cannot move stays where it is: better a router on a draining node than none.
        pending.push({ name: t.name, kind: 'router', reason: reason('unschedulable', `${t.why.message}, but no node accepts it: ${p === undefined ? 'not placed' : explain(p)}`) });
        continue;
      }
      load.set(p.node, (load.get(p.node) ?? 0) + 1);
      changes.push({ kind: 'assign', workload: 'router', name: t.name, node: p.node, ...(t.from === undefined ? {} : { from: { node: t.from.node, modRevision: t.from.modRevision } }), reason: reason(t.why.code, `${t.why.message}: placed on ${p.node}`) });
    }
  }

  const appliedConfig = planConfig(input, changes);
  planRollingRestart(input, changes, waiting, switchoverAsked, askSwitchover, syncHold);

  const ready = spec.members.filter((m) => isReady(obs.members.get(m.name))).length;
  return { changes, pending, waiting, desired: { members: spec.members.length, routers: routerCount }, ready, ...(appliedConfig === undefined ? {} : { appliedConfig }) };
}

/** One change in a line: `assign member app-4 → node-2`, `switchover app-1 → app-2`, `restart app-3`. */
export function describeChange(c: PlannedChange): string {
  switch (c.kind) {
    case 'assign':
      return `assign ${c.workload} ${c.name} → ${c.node}`;
    case 'unassign':
      return `unassign ${c.workload} ${c.name} from ${c.node}`;
    case 'switchover':
      return `switchover ${c.from} → ${c.candidate}`;
    case 'leaving':
      return `leaving: ${c.members.join(', ') || 'none'}`;
    case 'config':
      return 'config: the spec\'s dynamic configuration';
    case 'restart':
      return `restart ${c.member}`;
    case 'settings':
      return `settings ${c.member}: ${c.backups === undefined ? 'no backups' : `backups into ${c.backups.repos.join(', ')}`}${c.restarts ? ' (its agent restarts)' : ''}`;
  }
}

/** JSON with the keys of every object sorted: equal values, equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The dynamic configuration as the spec gives it, without `pause` (that is the operator's: `warden pause`). */
function specConfigText(config: DynamicConfig): string {
  const { pause: _pause, ...rest } = config;
  return canonicalJson(rest);
}

/**
 * The spec's dynamic configuration into the `config` key (docs/architecture.md, "Rolling changes"):
 * only when the spec's own configuration changed since the controller last made them match, so a
 * `warden edit-config` stays until the spec's configuration is changed and applied again; `pause`
 * is kept as it is. Nothing before the bootstrap wrote the key, nor on the pass that first sees
 * it. Returns what the status keeps.
 */
function planConfig(input: PlanInput, changes: PlannedChange[]): string | undefined {
  const current = input.observation.config;
  if (current === undefined) return input.appliedConfig;
  const wanted = specConfigText(input.spec.dynamicConfig);
  if (wanted === input.appliedConfig) return wanted;
  // No mark yet (the pass that first sees the key the bootstrap wrote from the spec, or a status an
  // older controller wrote): the key is taken as it is, so an earlier edit-config is not undone.
  if (input.appliedConfig === undefined) return wanted;
  if (specConfigText(current.value) !== wanted) {
    changes.push({
      kind: 'config',
      config: { ...input.spec.dynamicConfig, pause: current.value.pause },
      modRevision: current.modRevision,
      reason: reason('config-changed', `spec generation ${input.generation} changes the dynamic configuration: written to the config key (the agents apply it; parameters that need a restart are restarted one member at a time)`),
    });
  }
  return wanted;
}

/** What a change of spec.backups does to a member, in a few words. */
function backupsChangeText(from: AssignmentBackups | undefined, to: AssignmentBackups | undefined): string {
  if (from === undefined) return `archiving turned on, into ${to?.repos.join(', ') ?? 'nothing'}`;
  if (to === undefined) return 'archiving turned off (the repositories keep what they hold)';
  if (backupsChangeRestarts(from, to)) return `repositories ${from.repos.join(', ')} → ${to.repos.join(', ')}`;
  const keys = [...new Set([...Object.keys(from.global), ...Object.keys(to.global)])].filter((k) => from.global[k] !== to.global[k]).sort();
  return `pgBackRest options ${keys.join(', ')}`;
}

/**
 * A change that needs a restart, rolled out (docs/architecture.md, "Rolling changes"): a parameter
 * change PostgreSQL reports as pending a restart, or a change of spec.backups that turns archiving
 * on or off or changes the repositories (the member's node daemon restarts its agent with the
 * rewritten assignment). The replicas first, one at a time, each only while every member is ready
 * and nothing else is in flight; then one switchover away from the leader (to a replica that was
 * restarted); the old leader then restarts as a replica. A change that lowers a hot-standby
 * parameter restarts the primary in place first instead. A change of pgBackRest options alone
 * restarts nothing: every member's assignment is rewritten at once. One step per pass.
 */
function planRollingRestart(
  input: PlanInput,
  changes: PlannedChange[],
  waiting: ReasonRecord[],
  switchoverAsked: boolean,
  askSwitchover: (from: string, leaving: ReadonlySet<string>, why: string) => void,
  syncHold: (name: string) => ReasonRecord | undefined,
): void {
  const { spec, observation: obs } = input;
  const assigned = new Map(input.assignments.filter((a) => a.kind === 'member').map((a) => [a.name, a]));
  const placed = spec.members.map((m) => m.name).filter((n) => assigned.has(n));
  const wanted = assignmentBackupsOf(spec);
  const backupsOf = (n: string): AssignmentBackups | undefined => assigned.get(n)?.agent?.backups;
  const settings = (member: string, restarts: boolean, why: string): void => {
    const a = assigned.get(member);
    if (a === undefined) return;
    const code = restarts ? 'rolling-backups' : 'backups-options';
    changes.push({ kind: 'settings', member, node: a.node, modRevision: a.modRevision, backups: wanted, restarts, reason: reason(code, `spec generation ${input.generation} changes spec.backups (${backupsChangeText(backupsOf(member), wanted)}): ${why}`) });
  };
  const stale = placed.filter((n) => backupsFingerprint(backupsOf(n)) !== backupsFingerprint(wanted));
  const agentRestarts = stale.filter((n) => backupsChangeRestarts(backupsOf(n), wanted));
  // pgBackRest options alone: each member's files are rewritten, all at once; nothing restarts.
  for (const n of stale) if (!agentRestarts.includes(n)) settings(n, false, `${n}'s pgBackRest config is rewritten in place, nothing restarts`);
  // Assigned new settings, still running the former ones: its node daemon is restarting its agent.
  const inFlight = placed.filter((n) => {
    const running = input.runningBackups?.get(n);
    return running !== undefined && running !== backupsFingerprint(backupsOf(n));
  });
  const pendingRestart = placed.filter((n) => obs.members.get(n)?.pendingRestart === true);
  const needing = placed.filter((n) => agentRestarts.includes(n) || pendingRestart.includes(n));
  if (needing.length === 0 && inFlight.length === 0) return;
  const parts = [
    agentRestarts.length === 0 ? '' : `${agentRestarts.join(', ')} restart${agentRestarts.length === 1 ? 's' : ''} with the new spec.backups`,
    pendingRestart.length === 0 ? '' : `${pendingRestart.join(', ')} need${pendingRestart.length === 1 ? 's' : ''} a restart for a parameter change`,
    inFlight.length === 0 ? '' : `${inFlight.join(', ')} ${inFlight.length === 1 ? 'is' : 'are'} restarting with the new spec.backups`,
  ];
  const what = parts.filter((x) => x !== '').join('; ');
  const wait = (why: string): void => void waiting.push(reason('rolling-restart-waiting', `${what}; ${why}`));
  if (inFlight.length > 0) return wait('waiting until their node daemons have restarted them');
  if (switchoverAsked || obs.failoverPending) return wait('waiting for the switchover in flight');
  const moving = changes.find((c) => c.kind === 'config' || ((c.kind === 'assign' || c.kind === 'unassign') && c.workload === 'member'));
  if (moving !== undefined) return wait('waiting for this pass\'s other changes first');
  const notReady = placed.filter((n) => !isReady(obs.members.get(n)));
  if (notReady.length > 0) return wait(`waiting until every member is ready (${notReady.map((n) => `${n}: ${obs.members.get(n)?.state ?? 'no member key'}`).join(', ')})`);
  const busy = placed.filter((n) => obs.members.get(n)?.busy === true);
  if (busy.length > 0) return wait(`waiting for ${busy.join(', ')} (a restart or another operation in flight)`);
  /** One member's step: its agent restarted with the new backups settings, or its PostgreSQL restarted. */
  const restart = (member: string, why: string): void => {
    if (agentRestarts.includes(member)) return settings(member, true, `its node daemon restarts its agent with them (${why})`);
    const apiUrl = obs.members.get(member)?.apiUrl;
    if (apiUrl === undefined) return wait(`${member} publishes no REST API`);
    changes.push({ kind: 'restart', member, apiUrl, reason: reason('rolling-restart', `${member} restarts for a parameter change (${why})`) });
  };
  // A change that lowers a hot-standby parameter (max_connections, …) goes the other way: a standby
  // may not run below its primary, so the primary restarts in place first, then the replicas.
  const lowers = obs.leader === undefined || !pendingRestart.includes(obs.leader) ? [] : (obs.members.get(obs.leader)?.restartLowers ?? []);
  if (obs.leader !== undefined && lowers.length > 0) {
    const apiUrl = obs.members.get(obs.leader)?.apiUrl;
    if (apiUrl === undefined) return wait(`${obs.leader} publishes no REST API`);
    return void changes.push({ kind: 'restart', member: obs.leader, apiUrl, reason: reason('rolling-restart', `${obs.leader} restarts for a parameter change (it lowers ${lowers.join(', ')}, which no standby may run below its primary: the primary restarts in place first, then the replicas)`) });
  }
  // Replicas first, those outside the synchronous set before those in it.
  const replicas = needing.filter((n) => n !== obs.leader && obs.members.get(n)?.role === 'replica');
  const ordered = [...replicas.filter((n) => obs.syncMembers?.includes(n) !== true), ...replicas.filter((n) => obs.syncMembers?.includes(n) === true)];
  const replica = ordered[0];
  if (replica !== undefined) {
    const hold = syncHold(replica);
    if (hold !== undefined) return void waiting.push(hold);
    const after = needing.filter((n) => n !== replica);
    return restart(replica, `replicas first, one at a time${after.length === 0 ? '' : `; then ${after.join(', ')}`}`);
  }
  if (obs.leader === undefined || !needing.includes(obs.leader)) return;
  // A cluster of one has nobody to switch over to: its primary restarts in place (a short outage).
  if (placed.length === 1) return restart(obs.leader, 'the only member: it restarts in place');
  askSwitchover(obs.leader, new Set(needing), agentRestarts.includes(obs.leader) ? 'restarts with the new spec.backups (its replicas were restarted first)' : 'restarts for a parameter change (its replicas were restarted first)');
}

/** The one sentence a pass ends with (docs/architecture.md, invariant 7). */
export function summarizePlan(cluster: string, plan: Plan): string {
  const parts: string[] = [];
  if (plan.changes.length > 0) parts.push(plan.changes.map((c) => c.reason.message).join('; '));
  if (plan.pending.length > 0) parts.push(`pending: ${plan.pending.map((p) => p.name).join(', ')}`);
  if (plan.waiting.length > 0) parts.push(`waiting: ${plan.waiting.map((w) => w.message).join('; ')}`);
  return `${cluster}: ${parts.length === 0 ? `converged (${plan.ready}/${plan.desired.members} members ready)` : parts.join(' — ')}`;
}
