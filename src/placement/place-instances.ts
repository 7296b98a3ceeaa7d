import { defaultNormalize, describeTaint, intolerablePreferNoSchedule, isDoNotScheduleTaint, nodeAffinityRejection, preferredNodeAffinityScore, tolerates, untoleratedTaint } from './node-rules.js';
import { describeSelector, isEmptySelector, labelOf, selectorMatches, withMatchLabelKeys } from './selectors.js';
import type {
  FilterName,
  InstanceToPlace,
  LabelSelector,
  Labels,
  NodeVerdict,
  Occupant,
  PlacementInput,
  PlacementNode,
  PlacementResult,
  Placement,
  PodAffinityTerm,
  ScorerName,
  Taint,
  TopologySpreadConstraint,
} from './types.js';
import { SCORE_WEIGHTS } from './types.js';

// kube-scheduler's filter and score plugins (NodeUnschedulable, TaintToleration, NodeAffinity,
// PodTopologySpread, InterPodAffinity), ported as pure functions over one snapshot: the nodes and
// every instance already on them. Each instance is placed against the snapshot left by the one
// before it, as the scheduler's cache assumes a pod once it is bound.

const MAX_NODE_SCORE = 100;
const HOSTNAME = 'kubernetes.io/hostname';
const UNSCHEDULABLE_TAINT: Taint = { key: 'node.kubernetes.io/unschedulable', value: '', effect: 'NoSchedule' };
/** kube-scheduler's default hardPodAffinityWeight: an existing pod's required affinity also attracts. */
const HARD_POD_AFFINITY_WEIGHT = 1;

/** A pod in the snapshot: an occupant, or an instance placed earlier in this run. */
interface Pod {
  readonly name: string;
  /** Position in the snapshot's pod list (-1 for the instance being placed): the key of match caches. */
  readonly index: number;
  readonly node: number;
  readonly namespace: string;
  readonly labels: Labels;
  readonly terminating: boolean;
  readonly requiredAffinity: readonly Term[];
  readonly requiredAntiAffinity: readonly Term[];
  readonly preferredAffinity: readonly WeightedTerm[];
  readonly preferredAntiAffinity: readonly WeightedTerm[];
}

/** A pod affinity term with its namespaces resolved against the namespace of the pod that owns it. */
interface Term {
  readonly selector: LabelSelector | undefined;
  readonly namespaces: ReadonlySet<string>;
  readonly namespaceSelector: LabelSelector | undefined;
  readonly topologyKey: string;
}

interface WeightedTerm {
  readonly weight: number;
  readonly term: Term;
}

/** A spread constraint with matchLabelKeys merged into its selector and its defaults filled in. */
interface Constraint {
  readonly maxSkew: number;
  readonly topologyKey: string;
  readonly selector: LabelSelector | undefined;
  readonly minDomains: number;
  readonly honorNodeAffinity: boolean;
  readonly honorTaints: boolean;
}

type Rejection = { readonly filter: FilterName; readonly reason: string };

/**
 * Places instances one at a time, in order, on the nodes of `input`, with kube-scheduler's
 * filters, scores and default weights; ties go to the node with the fewest instances, then the
 * name. Instances no node accepts are Pending, and every node's verdict says why.
 */
export function placeInstances(input: PlacementInput): PlacementResult {
  const snapshot = new Snapshot(input);
  const placements: Placement[] = [];
  const pending: string[] = [];
  for (const instance of input.instances) {
    const placement = snapshot.place(instance);
    placements.push(placement);
    if (placement.node === null) pending.push(instance.member);
  }
  return { placements, pending };
}

class Snapshot {
  private readonly nodes: readonly PlacementNode[];
  private readonly nodeIndex = new Map<string, number>();
  private readonly pods: Pod[] = [];
  private readonly podsByNode: Pod[][];
  private readonly namespaceLabels: Readonly<Record<string, Labels>>;

  constructor(input: PlacementInput) {
    this.nodes = input.nodes;
    this.namespaceLabels = input.namespaceLabels ?? {};
    this.podsByNode = input.nodes.map(() => []);
    input.nodes.forEach((n, i) => this.nodeIndex.set(n.name, i));
    for (const o of input.occupants) {
      const i = this.nodeIndex.get(o.node);
      // An occupant of a node that is not in the list cannot influence any candidate node.
      if (i !== undefined) this.add(podOf(o, i, this.pods.length));
    }
  }

  place(instance: InstanceToPlace): Placement {
    const ctx = this.prepare(instance);
    const feasible: number[] = [];
    const rejections: (Rejection | undefined)[] = [];
    for (let i = 0; i < this.nodes.length; i++) {
      const rejection = this.filter(ctx, this.node(i), i);
      rejections.push(rejection);
      if (rejection === undefined) feasible.push(i);
    }
    const scores = this.score(ctx, feasible);
    let best: number | undefined;
    for (const i of feasible) {
      if (best === undefined || this.isBetter(i, best, scores.totals)) best = i;
    }
    const verdicts: NodeVerdict[] = [];
    for (let i = 0; i < this.nodes.length; i++) {
      const node = this.node(i);
      const rejection = rejections[i];
      if (rejection !== undefined) {
        verdicts.push({ node: node.name, feasible: false, rejectedBy: rejection.filter, reason: rejection.reason });
        continue;
      }
      const total = scores.totals[i] ?? 0;
      const reason = i === best ? chosenReason(total, feasible.length) : 'feasible';
      verdicts.push({ node: node.name, feasible: true, score: total, scores: scores.records[i] ?? ZERO_SCORES, reason });
    }
    if (best === undefined) return { member: instance.member, instanceSet: instance.instanceSet, node: null, nodes: verdicts };
    this.add(podOf({ ...instance, name: instance.member, node: '', terminating: false }, best, this.pods.length));
    return { member: instance.member, instanceSet: instance.instanceSet, node: this.node(best).name, nodes: verdicts };
  }

  // Pods are only ever added, and selectors are immutable and shared by the instances of a set, so
  // each selector is matched against each pod once per run rather than once per instance placed.
  private readonly matchCache = new Map<LabelSelector, boolean[]>();
  private readonly countCache = new Map<LabelSelector, Map<string, { counts: Int32Array; seen: number }>>();

  /** Does the selector select this pod (by labels)? Cached per selector and pod. */
  private podMatches(sel: LabelSelector | undefined, pod: Pod): boolean {
    if (sel === undefined) return false;
    if (pod.index < 0) return selectorMatches(sel, pod.labels);
    let m = this.matchCache.get(sel);
    if (m === undefined) this.matchCache.set(sel, (m = []));
    let v = m[pod.index];
    if (v === undefined) m[pod.index] = v = selectorMatches(sel, pod.labels);
    return v;
  }

  /** Per node: pods in `namespace`, not terminating, that the selector selects; undefined when it counts none. */
  private countsFor(sel: LabelSelector | undefined, namespace: string): Int32Array | undefined {
    // An empty selector counts no pod, as in kube-scheduler's countPodsMatchSelector.
    if (sel === undefined || isEmptySelector(sel)) return undefined;
    let byNs = this.countCache.get(sel);
    if (byNs === undefined) this.countCache.set(sel, (byNs = new Map<string, { counts: Int32Array; seen: number }>()));
    let entry = byNs.get(namespace);
    if (entry === undefined) byNs.set(namespace, (entry = { counts: new Int32Array(this.nodes.length), seen: 0 }));
    for (; entry.seen < this.pods.length; entry.seen++) {
      const p = this.pods[entry.seen];
      if (p !== undefined && !p.terminating && p.namespace === namespace && this.podMatches(sel, p)) entry.counts[p.node] = (entry.counts[p.node] ?? 0) + 1;
    }
    return entry.counts;
  }

  /** Does the term select `pod` (by namespace, then labels)? */
  private selects(t: Term, pod: Pod, podNamespaceLabels: Labels): boolean {
    const inNamespace = t.namespaces.has(pod.namespace) || (t.namespaceSelector !== undefined && selectorMatches(t.namespaceSelector, podNamespaceLabels));
    return inNamespace && this.podMatches(t.selector, pod);
  }

  /** Required anti-affinity terms of pods in the snapshot, by selector (terms without one select nothing). */
  private readonly antiTermsBySelector = new Map<LabelSelector, { term: Term; pod: Pod }[]>();

  /** Pods with pod affinity, or preferred anti-affinity, that scoring must read. */
  private readonly podsWithAffinity: Pod[] = [];
  private readonly matchLists = new Map<LabelSelector, { pods: Pod[]; seen: number }>();

  /** The pods a selector selects by labels (any namespace, terminating included), kept up to date as pods are added. */
  private matching(sel: LabelSelector | undefined): readonly Pod[] {
    if (sel === undefined) return [];
    let entry = this.matchLists.get(sel);
    if (entry === undefined) this.matchLists.set(sel, (entry = { pods: [], seen: 0 }));
    for (; entry.seen < this.pods.length; entry.seen++) {
      const p = this.pods[entry.seen];
      if (p !== undefined && this.podMatches(sel, p)) entry.pods.push(p);
    }
    return entry.pods;
  }

  private add(pod: Pod): void {
    if (pod.requiredAffinity.length > 0 || pod.preferredAffinity.length > 0 || pod.preferredAntiAffinity.length > 0) this.podsWithAffinity.push(pod);
    for (const term of pod.requiredAntiAffinity) {
      if (term.selector === undefined) continue;
      let holders = this.antiTermsBySelector.get(term.selector);
      if (holders === undefined) this.antiTermsBySelector.set(term.selector, (holders = []));
      holders.push({ term, pod });
    }
    this.pods.push(pod);
    this.podsByNode[pod.node]?.push(pod);
  }

  private isBetter(a: number, b: number, totals: Int32Array): boolean {
    const sa = totals[a] ?? 0;
    const sb = totals[b] ?? 0;
    if (sa !== sb) return sa > sb;
    const na = this.podsByNode[a]?.length ?? 0;
    const nb = this.podsByNode[b]?.length ?? 0;
    if (na !== nb) return na < nb;
    return (this.nodes[a]?.name ?? '') < (this.nodes[b]?.name ?? '');
  }

  private readonly nsLabelCache = new Map<string, Labels>();

  private nsLabels(ns: string): Labels {
    let labels = this.nsLabelCache.get(ns);
    if (labels === undefined) {
      const extra = Object.hasOwn(this.namespaceLabels, ns) ? this.namespaceLabels[ns] : undefined;
      labels = { ...extra, 'kubernetes.io/metadata.name': ns };
      this.nsLabelCache.set(ns, labels);
    }
    return labels;
  }

  // ---- PreFilter: everything that depends on the whole snapshot, computed once per instance.

  private prepare(instance: InstanceToPlace): Context {
    const self = podOf({ ...instance, name: instance.member, node: '', terminating: false }, -1, -1);
    const nsLabels = this.nsLabels(instance.namespace);
    const hard: Constraint[] = [];
    const soft: Constraint[] = [];
    for (const c of instance.topologySpreadConstraints) {
      (c.whenUnsatisfiable === 'DoNotSchedule' ? hard : soft).push(constraintOf(c, instance.labels));
    }
    const ctx: Context = {
      instance,
      self,
      nsLabels,
      hard,
      soft,
      // Node-only rules, evaluated once per node: the filters and both spread policies reuse them.
      nodeAffinityOk: this.nodes.map((node) => nodeAffinityRejection(instance, node) === undefined),
      taintsOk: this.nodes.map((node) => untoleratedTaint(node.taints, instance.tolerations, isDoNotScheduleTaint) === undefined),
      selfMatches: new Map(),
      spread: [],
      affinityCounts: self.requiredAffinity.map(() => new Map<string, number>()),
      affinityTotal: 0,
      antiAffinityHits: self.requiredAntiAffinity.map(() => new Map<string, string>()),
      existingAntiHits: new Map<string, Map<string, string>>(),
    };
    ctx.spread = hard.map((c) => this.spreadCounts(ctx, c, hard));
    this.interPodCounts(ctx);
    return ctx;
  }

  /** Matching pods per domain over the nodes a DoNotSchedule constraint counts, empty domains included. */
  private spreadCounts(ctx: Context, c: Constraint, all: readonly Constraint[]): SpreadState {
    const domains = this.topologyDomains(c.topologyKey);
    const others = all.map((a) => this.topologyDomains(a.topologyKey).ids);
    const counts = new Int32Array(domains.names.length);
    const present = new Uint8Array(domains.names.length);
    const perNode = this.countsFor(c.selector, ctx.instance.namespace);
    for (let i = 0; i < this.nodes.length; i++) {
      // Only nodes with every DoNotSchedule key count, and only those the inclusion policies admit.
      if (others.some((ids) => (ids[i] ?? -1) < 0) || !includes(ctx, c, i)) continue;
      const d = domains.ids[i] ?? -1;
      present[d] = 1;
      counts[d] = (counts[d] ?? 0) + (perNode?.[i] ?? 0);
    }
    let size = 0;
    let min = Number.POSITIVE_INFINITY;
    for (let d = 0; d < counts.length; d++) {
      if (present[d] !== 1) continue;
      size += 1;
      min = Math.min(min, counts[d] ?? 0);
    }
    // Fewer domains than minDomains: the global minimum is taken as 0, so pods cannot pile up.
    const belowMinDomains = size < c.minDomains;
    const selfMatch = selectorMatches(c.selector, ctx.instance.labels) ? 1 : 0;
    return { counts, domainIds: domains.ids, size, min: belowMinDomains || size === 0 ? 0 : min, belowMinDomains, selfMatch };
  }


  private interPodCounts(ctx: Context): void {
    const self = ctx.self;
    const affinity = self.requiredAffinity;
    const anti = self.requiredAntiAffinity;
    // Only pods the first term's selector selects can match all the terms.
    for (const pod of affinity.length > 0 ? this.matching(affinity[0]?.selector) : []) {
      const node = this.node(pod.node);
      const podNs = this.nsLabels(pod.namespace);
      if (affinity.every((t) => this.selects(t, pod, podNs))) {
        for (let k = 0; k < affinity.length; k++) {
          const t = affinity[k];
          const m = ctx.affinityCounts[k];
          const v = t === undefined ? undefined : labelOf(node.labels, t.topologyKey);
          if (v === undefined || m === undefined) continue;
          m.set(v, (m.get(v) ?? 0) + 1);
          ctx.affinityTotal += 1;
        }
      }
    }
    for (let k = 0; k < anti.length; k++) {
      const t = anti[k];
      const m = ctx.antiAffinityHits[k];
      if (t === undefined || m === undefined) continue;
      for (const pod of this.matching(t.selector)) {
        const v = labelOf(this.node(pod.node).labels, t.topologyKey);
        if (v === undefined || m.has(v) || !this.selects(t, pod, this.nsLabels(pod.namespace))) continue;
        m.set(v, pod.name);
      }
    }
    // Symmetry: an existing pod's required anti-affinity keeps the new instance out of its domain.
    // Terms are grouped by selector, so one match against the instance's labels covers them all.
    for (const [selector, holders] of this.antiTermsBySelector) {
      if (!selectorMatches(selector, self.labels)) continue;
      for (const { term: t, pod } of holders) {
        const v = labelOf(this.node(pod.node).labels, t.topologyKey);
        if (v === undefined || !selectsSelf(ctx, t)) continue;
        let byValue = ctx.existingAntiHits.get(t.topologyKey);
        if (byValue === undefined) ctx.existingAntiHits.set(t.topologyKey, (byValue = new Map<string, string>()));
        if (!byValue.has(v)) byValue.set(v, pod.name);
      }
    }
  }

  // ---- Filters, in kube-scheduler's order; the first that rejects is named.

  private filter(ctx: Context, node: PlacementNode, i: number): Rejection | undefined {
    const inst = ctx.instance;
    if (node.unschedulable && !tolerates(inst.tolerations, UNSCHEDULABLE_TAINT)) {
      return { filter: 'NodeUnschedulable', reason: 'the node is cordoned (unschedulable) and the instance does not tolerate node.kubernetes.io/unschedulable:NoSchedule' };
    }
    const taint = ctx.taintsOk[i] === true ? undefined : untoleratedTaint(node.taints, inst.tolerations, isDoNotScheduleTaint);
    if (taint !== undefined) return { filter: 'TaintToleration', reason: `untolerated taint ${describeTaint(taint)}` };
    const affinity = ctx.nodeAffinityOk[i] === true ? undefined : nodeAffinityRejection(inst, node);
    if (affinity !== undefined) return { filter: 'NodeAffinity', reason: affinity };
    const spread = this.spreadRejection(ctx, node, i);
    if (spread !== undefined) return { filter: 'PodTopologySpread', reason: spread };
    const interPod = interPodRejection(ctx, node);
    if (interPod !== undefined) return { filter: 'InterPodAffinity', reason: interPod };
    return undefined;
  }

  private spreadRejection(ctx: Context, node: PlacementNode, i: number): string | undefined {
    for (let k = 0; k < ctx.hard.length; k++) {
      const c = ctx.hard[k];
      const state = ctx.spread[k];
      if (c === undefined || state === undefined) continue;
      const d = state.domainIds[i] ?? -1;
      if (d < 0) return `the node has no label ${c.topologyKey}, which a DoNotSchedule spread constraint needs`;
      const skew = (state.counts[d] ?? 0) + state.selfMatch - state.min;
      if (skew > c.maxSkew) {
        const why = state.belowMinDomains ? ` (only ${state.size} domain(s), fewer than minDomains ${c.minDomains}, so the minimum counts as 0)` : '';
        return `${c.topologyKey}=${labelOf(node.labels, c.topologyKey) ?? ''} would have skew ${skew} > maxSkew ${c.maxSkew}${why}`;
      }
    }
    return undefined;
  }


  // ---- Scores over the feasible nodes, each normalized as its plugin does, then weighted.

  // Most nodes share the same four plugin scores, and a run can hold a verdict per node per
  // instance: identical score records are one frozen object rather than hundreds of thousands.
  private readonly scoreRecords = new Map<number, Readonly<Record<ScorerName, number>>>();

  private scoreRecord(nodeAffinity: number, interPod: number, spread: number, taints: number): Readonly<Record<ScorerName, number>> {
    const key = ((nodeAffinity * 101 + interPod) * 101 + spread) * 101 + taints;
    let r = this.scoreRecords.get(key);
    if (r === undefined) {
      r = Object.freeze({ NodeAffinity: nodeAffinity, InterPodAffinity: interPod, PodTopologySpread: spread, TaintToleration: taints });
      this.scoreRecords.set(key, r);
    }
    return r;
  }

  /** Weighted totals and plugin scores indexed by node; only feasible nodes have them. */
  private score(ctx: Context, feasible: readonly number[]): NodeScores {
    const nodeAffinity = defaultNormalize(feasible.map((i) => preferredNodeAffinityScore(ctx.instance, this.node(i))), false);
    const interPod = this.interPodScores(ctx, feasible);
    const spread = this.spreadScores(ctx, feasible);
    const taints = defaultNormalize(feasible.map((i) => intolerablePreferNoSchedule(this.node(i).taints, ctx.instance.tolerations)), true);
    const totals = new Int32Array(this.nodes.length);
    const records: Readonly<Record<ScorerName, number>>[] = [];
    for (let k = 0; k < feasible.length; k++) {
      const i = feasible[k] ?? 0;
      const byPlugin = this.scoreRecord(nodeAffinity[k] ?? 0, interPod[k] ?? 0, spread[k] ?? 0, taints[k] ?? 0);
      totals[i] =
        SCORE_WEIGHTS.NodeAffinity * byPlugin.NodeAffinity +
        SCORE_WEIGHTS.InterPodAffinity * byPlugin.InterPodAffinity +
        SCORE_WEIGHTS.PodTopologySpread * byPlugin.PodTopologySpread +
        SCORE_WEIGHTS.TaintToleration * byPlugin.TaintToleration;
      records[i] = byPlugin;
    }
    return { totals, records };
  }


  private node(i: number): PlacementNode {
    const n = this.nodes[i];
    if (n === undefined) throw new RangeError(`node index ${i} out of range`);
    return n;
  }

  /** PodTopologySpread's ScheduleAnyway score: fewer matching pods in the node's domains is better. */
  private spreadScores(ctx: Context, feasible: readonly number[]): number[] {
    const constraints = ctx.soft;
    if (constraints.length === 0) return feasible.map(() => 0);
    const domains = constraints.map((c) => this.topologyDomains(c.topologyKey));
    const hasAll = new Uint8Array(this.nodes.length);
    for (let i = 0; i < this.nodes.length; i++) hasAll[i] = domains.every((d) => (d.ids[i] ?? -1) >= 0) ? 1 : 0;
    // Candidates without every key are ignored: they score 0 and take no part in normalizing.
    let scored = 0;
    for (const i of feasible) scored += hasAll[i] ?? 0;
    const perNode = constraints.map((c) => this.countsFor(c.selector, ctx.instance.namespace));
    // Per constraint (except hostname, counted per node): matching pods per domain of a scored candidate, -1 for other domains.
    const pairCounts = constraints.map((c, k) => {
      const d = domains[k];
      const counts = new Int32Array(d?.names.length ?? 0).fill(-1);
      if (c.topologyKey === HOSTNAME || d === undefined) return counts;
      for (const i of feasible) if (hasAll[i] === 1) counts[d.ids[i] ?? 0] = 0;
      const matching = perNode[k];
      if (matching === undefined) return counts;
      for (let i = 0; i < this.nodes.length; i++) {
        const id = d.ids[i] ?? -1;
        const n = matching[i] ?? 0;
        if (n === 0 || id < 0 || (counts[id] ?? -1) < 0 || hasAll[i] !== 1 || !includes(ctx, c, i)) continue;
        counts[id] = (counts[id] ?? 0) + n;
      }
      return counts;
    });
    const weights = constraints.map((c, k) => {
      const size = c.topologyKey === HOSTNAME ? scored : (pairCounts[k]?.filter((n) => n >= 0).length ?? 0);
      return Math.log(size + 2);
    });
    const raw = feasible.map((i) => {
      if (hasAll[i] !== 1) return 0;
      let score = 0;
      for (let k = 0; k < constraints.length; k++) {
        const c = constraints[k];
        if (c === undefined) continue;
        const count = c.topologyKey === HOSTNAME ? (perNode[k]?.[i] ?? 0) : (pairCounts[k]?.[domains[k]?.ids[i] ?? 0] ?? 0);
        score += count * (weights[k] ?? 0) + (c.maxSkew - 1);
      }
      return Math.round(score);
    });
    let min = Number.POSITIVE_INFINITY;
    let max = 0;
    feasible.forEach((i, f) => {
      if (hasAll[i] !== 1) return;
      min = Math.min(min, raw[f] ?? 0);
      max = Math.max(max, raw[f] ?? 0);
    });
    return feasible.map((i, f) => {
      if (hasAll[i] !== 1) return 0;
      if (max === 0) return MAX_NODE_SCORE;
      return Math.trunc((MAX_NODE_SCORE * (max + min - (raw[f] ?? 0))) / max);
    });
  }


  private readonly domainCache = new Map<string, { ids: Int32Array; names: string[] }>();

  /** Each node's domain of a topology key as a small integer (-1: no such label), and the domains' values. */
  private topologyDomains(key: string): { ids: Int32Array; names: string[] } {
    let d = this.domainCache.get(key);
    if (d === undefined) {
      const byName = new Map<string, number>();
      const ids = new Int32Array(this.nodes.length);
      this.nodes.forEach((n, i) => {
        const v = labelOf(n.labels, key);
        let id = v === undefined ? -1 : byName.get(v);
        if (id === undefined) byName.set(v ?? '', (id = byName.size));
        ids[i] = id;
      });
      d = { ids, names: [...byName.keys()] };
      this.domainCache.set(key, d);
    }
    return d;
  }




  /** InterPodAffinity's score: preferred terms both ways and existing pods' required affinity. */
  private interPodScores(ctx: Context, feasible: readonly number[]): number[] {
    const self = ctx.self;
    const byTopology = new Map<string, Map<string, number>>();
    const add = (t: Term, weight: number, node: PlacementNode): void => {
      const v = labelOf(node.labels, t.topologyKey);
      if (v === undefined) return;
      let m = byTopology.get(t.topologyKey);
      if (m === undefined) byTopology.set(t.topologyKey, (m = new Map<string, number>()));
      m.set(v, (m.get(v) ?? 0) + weight);
    };
    for (const [terms, sign] of [
      [self.preferredAffinity, 1],
      [self.preferredAntiAffinity, -1],
    ] as const) {
      for (const w of terms) {
        for (const pod of this.matching(w.term.selector)) {
          if (this.selects(w.term, pod, this.nsLabels(pod.namespace))) add(w.term, sign * w.weight, this.node(pod.node));
        }
      }
    }
    // Existing pods' terms about the instance: only pods that have such terms need a look.
    for (const pod of this.podsWithAffinity) {
      const node = this.node(pod.node);
      for (const t of pod.requiredAffinity) if (selectsSelf(ctx, t)) add(t, HARD_POD_AFFINITY_WEIGHT, node);
      for (const w of pod.preferredAffinity) if (selectsSelf(ctx, w.term)) add(w.term, w.weight, node);
      for (const w of pod.preferredAntiAffinity) if (selectsSelf(ctx, w.term)) add(w.term, -w.weight, node);
    }
    if (byTopology.size === 0) return feasible.map(() => 0);
    const raw = feasible.map((i) => {
      const labels = this.node(i).labels;
      let s = 0;
      for (const [key, values] of byTopology) {
        const v = labelOf(labels, key);
        if (v !== undefined) s += values.get(v) ?? 0;
      }
      return s;
    });
    const min = Math.min(...raw);
    const max = Math.max(...raw);
    return raw.map((s) => (max - min > 0 ? Math.trunc(MAX_NODE_SCORE * ((s - min) / (max - min))) : 0));
  }
}

interface NodeScores {
  readonly totals: Int32Array;
  readonly records: readonly (Readonly<Record<ScorerName, number>> | undefined)[];
}

interface SpreadState {
  /** Matching pods per domain id (see topologyDomains); only domains of counted nodes are meaningful. */
  readonly counts: Int32Array;
  /** Domain id per node index, -1 when the node lacks the key. */
  readonly domainIds: Int32Array;
  /** Number of domains counted (empty ones included). */
  readonly size: number;
  readonly min: number;
  readonly belowMinDomains: boolean;
  /** 1 when the instance's own labels match the selector: placing it adds to the domain. */
  readonly selfMatch: number;
}

interface Context {
  readonly instance: InstanceToPlace;
  readonly self: Pod;
  readonly nsLabels: Labels;
  readonly hard: readonly Constraint[];
  readonly soft: readonly Constraint[];
  /** Per node index: passes nodeSelector and required node affinity. */
  readonly nodeAffinityOk: readonly boolean[];
  /** Per node index: every NoSchedule / NoExecute taint tolerated. */
  readonly taintsOk: readonly boolean[];
  /** Selector -> whether it selects the instance's labels, filled as existing pods' terms are read. */
  readonly selfMatches: Map<LabelSelector, boolean>;
  spread: readonly SpreadState[];
  /** Per required affinity term: domain value -> pods matching all the terms there. */
  readonly affinityCounts: readonly Map<string, number>[];
  affinityTotal: number;
  /** Per required anti-affinity term: domain value -> the first pod there it selects. */
  readonly antiAffinityHits: readonly Map<string, string>[];
  /** topology key -> value -> the first existing pod whose required anti-affinity selects the instance. */
  readonly existingAntiHits: Map<string, Map<string, string>>;
}

/** nodeAffinityPolicy / nodeTaintsPolicy: whether a node's domain counts for a constraint. */
function includes(ctx: Context, c: Constraint, i: number): boolean {
  if (c.honorNodeAffinity && ctx.nodeAffinityOk[i] !== true) return false;
  if (c.honorTaints && ctx.taintsOk[i] !== true) return false;
  return true;
}


function interPodRejection(ctx: Context, node: PlacementNode): string | undefined {
  const terms = ctx.self.requiredAffinity;
  let podsExist = true;
  for (let k = 0; k < terms.length; k++) {
    const t = terms[k];
    if (t === undefined) continue;
    const v = labelOf(node.labels, t.topologyKey);
    if (v === undefined) return `the node has no label ${t.topologyKey}, the topology key of a required pod affinity term`;
    if ((ctx.affinityCounts[k]?.get(v) ?? 0) <= 0) podsExist = false;
  }
  // The first of a group that is attracted to itself may go anywhere, or it would wait forever.
  if (!podsExist && !(ctx.affinityTotal === 0 && terms.every((t) => selectsSelf(ctx, t)))) {
    const missing = terms.find((t, k) => (ctx.affinityCounts[k]?.get(labelOf(node.labels, t.topologyKey) ?? '') ?? 0) <= 0) ?? terms[0];
    const where = missing === undefined ? '' : ` in ${missing.topologyKey}=${labelOf(node.labels, missing.topologyKey) ?? ''}`;
    return `no instance matching the required pod affinity (${terms.map((t) => describeSelector(t.selector)).join('; ')})${where}`;
  }
  const anti = ctx.self.requiredAntiAffinity;
  for (let k = 0; k < anti.length; k++) {
    const t = anti[k];
    if (t === undefined) continue;
    const v = labelOf(node.labels, t.topologyKey);
    const hit = v === undefined ? undefined : ctx.antiAffinityHits[k]?.get(v);
    if (hit !== undefined) return `${hit} in ${t.topologyKey}=${v ?? ''} matches the required pod anti-affinity (${describeSelector(t.selector)})`;
  }
  for (const [key, byValue] of ctx.existingAntiHits) {
    const v = labelOf(node.labels, key);
    const hit = v === undefined ? undefined : byValue.get(v);
    if (hit !== undefined) return `the required pod anti-affinity of ${hit} in ${key}=${v ?? ''} rejects this instance`;
  }
  return undefined;
}

function podOf(o: Occupant | (InstanceToPlace & { name: string; node: string; terminating: boolean }), node: number, index: number): Pod {
  const ns = o.namespace;
  const pa = o.affinity?.podAffinity;
  const anti = o.affinity?.podAntiAffinity;
  return {
    name: o.name,
    index,
    node,
    namespace: ns,
    labels: o.labels,
    terminating: o.terminating,
    requiredAffinity: (pa?.required ?? []).map((t) => termOf(t, ns)),
    requiredAntiAffinity: (anti?.required ?? []).map((t) => termOf(t, ns)),
    preferredAffinity: (pa?.preferred ?? []).map((w) => ({ weight: w.weight, term: termOf(w.podAffinityTerm, ns) })),
    preferredAntiAffinity: (anti?.preferred ?? []).map((w) => ({ weight: w.weight, term: termOf(w.podAffinityTerm, ns) })),
  };
}

function termOf(t: PodAffinityTerm, ownerNamespace: string): Term {
  // No namespaces and no namespaceSelector: the term is about the owner's own namespace.
  const own = t.namespaces.length === 0 && t.namespaceSelector === undefined;
  return {
    selector: t.labelSelector,
    namespaces: new Set(own ? [ownerNamespace] : t.namespaces),
    namespaceSelector: t.namespaceSelector,
    topologyKey: t.topologyKey,
  };
}

/** Does the term select the instance being placed? Selector results are memoized for the step. */
function selectsSelf(ctx: Context, t: Term): boolean {
  const self = ctx.self;
  const inNamespace = t.namespaces.has(self.namespace) || (t.namespaceSelector !== undefined && selectorMatches(t.namespaceSelector, ctx.nsLabels));
  if (!inNamespace || t.selector === undefined) return false;
  let v = ctx.selfMatches.get(t.selector);
  if (v === undefined) ctx.selfMatches.set(t.selector, (v = selectorMatches(t.selector, self.labels)));
  return v;
}

function constraintOf(c: TopologySpreadConstraint, labels: Labels): Constraint {
  return {
    maxSkew: c.maxSkew,
    topologyKey: c.topologyKey,
    selector: withMatchLabelKeys(c.labelSelector, c.matchLabelKeys, labels),
    minDomains: c.minDomains ?? 1,
    honorNodeAffinity: (c.nodeAffinityPolicy ?? 'Honor') === 'Honor',
    honorTaints: (c.nodeTaintsPolicy ?? 'Ignore') === 'Honor',
  };
}

const ZERO_SCORES: Readonly<Record<ScorerName, number>> = Object.freeze({ NodeAffinity: 0, InterPodAffinity: 0, PodTopologySpread: 0, TaintToleration: 0 });

function chosenReason(total: number, feasibleCount: number): string {
  return feasibleCount === 1 ? `chosen: the only feasible node (score ${total})` : `chosen: highest score ${total} of ${feasibleCount} feasible nodes (ties: fewest instances, then name)`;
}
