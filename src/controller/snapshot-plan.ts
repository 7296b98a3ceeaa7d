import type { ClusterView } from '../ha/index.js';
import type { Occupant } from '../placement/index.js';
import { parseClusterSpec, type ClusterSpec } from '../spec/index.js';
import { clusterOccupants, type ClusterObservation, type PlanInput, type PlanNode } from './plan.js';
import type { ControlSnapshot } from './records.js';

// From one control-plane snapshot to the plan's input: shared by the controller's passes and by
// `warden apply`, which shows the plan the controller will make. Pure.

/** Each stored spec validated with the same reader `warden apply` used, or why it does not validate. */
export type ParsedSpecs = ReadonlyMap<string, { readonly spec?: ClusterSpec; readonly error?: string }>;

export function parseStoredSpecs(snap: ControlSnapshot): ParsedSpecs {
  const out = new Map<string, { spec?: ClusterSpec; error?: string }>();
  for (const [name, stored] of snap.specs) {
    const r = parseClusterSpec(stored.text, stored.file);
    if (!r.ok) out.set(name, { error: `stored spec does not validate: ${r.errors.map((e) => e.message).join('; ')}` });
    else if (r.spec.name !== name) out.set(name, { error: `stored spec names cluster ${r.spec.name}, its key ${name}` });
    else out.set(name, { spec: r.spec });
  }
  return out;
}

/** The nodes as the plan sees them: registered ones, with their cordon and drain settings. */
export function planNodes(snap: ControlSnapshot): PlanNode[] {
  return [...snap.nodes.values()].map(({ record }) => {
    const s = snap.nodeSettings.get(record.name);
    return { name: record.name, labels: record.labels, taints: record.taints, unschedulable: s?.unschedulable === true || s?.drain === true, drain: s?.drain === true, capacity: record.capacity.workloads };
  });
}

/** Other clusters' workloads as occupants; a cluster without a valid spec still occupies its nodes. */
export function otherOccupants(snap: ControlSnapshot, specs: ParsedSpecs, cluster: string): Occupant[] {
  return [...snap.assignments]
    .filter(([c]) => c !== cluster)
    .flatMap(([c, as]) => {
      const spec = specs.get(c)?.spec;
      return spec === undefined ? as.map((a) => ({ name: a.name, node: a.node, namespace: 'default', labels: {}, terminating: false })) : clusterOccupants(spec, as);
    });
}

export function planInputFromSnapshot(
  snap: ControlSnapshot,
  specs: ParsedSpecs,
  spec: ClusterSpec,
  generation: number,
  observation: ClusterObservation,
  lostForMs: ReadonlyMap<string, number>,
  nodeLostMs: number,
): PlanInput {
  const appliedConfig = snap.statuses.get(spec.name)?.appliedConfig;
  const runningBackups = new Map<string, string>();
  for (const { record } of snap.nodes.values()) {
    for (const w of record.workloads) if (w.cluster === spec.name && w.kind === 'member' && w.backups !== undefined) runningBackups.set(w.name, w.backups);
  }
  return {
    spec,
    generation,
    nodes: planNodes(snap),
    lostForMs,
    assignments: snap.assignments.get(spec.name) ?? [],
    occupants: otherOccupants(snap, specs, spec.name),
    observation,
    nodeLostMs,
    ...(appliedConfig === undefined ? {} : { appliedConfig }),
    runningBackups,
  };
}

/** What the plan needs of the agents' view: the leader, each member's role and state, a pending switchover. */
export function observationOf(view: ClusterView): ClusterObservation {
  return {
    ...(view.leader === undefined ? {} : { leader: view.leader.name }),
    members: new Map(
      [...view.members].map(([n, m]) => [n, { role: m.role, state: m.state, pendingRestart: m.pendingRestart === true, ...(m.restartLowers === undefined ? {} : { restartLowers: m.restartLowers }), busy: m.scheduledRestart !== undefined || m.operation !== undefined, apiUrl: m.apiUrl }]),
    ),
    failoverPending: view.failover !== undefined,
    // The same test the leader applies to a switchover candidate (switchoverCandidate in src/ha).
    ...(view.config.synchronous_mode !== 'off' && view.sync !== undefined ? { syncMembers: view.sync.members } : {}),
    ...(view.leaving === undefined ? {} : { leaving: view.leaving.members }),
    ...(view.configModRevision === undefined ? {} : { config: { value: view.config, modRevision: view.configModRevision } }),
  };
}
