import { describeRequirement, describeSelector, isEmptySelector, labelOf, selectorMatches, termMatches, withMatchLabelKeys } from './selectors.js';
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
  Toleration,
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
      if (best === undefined || this.isBetter(i, best, scores)) best = i;
    }
    const verdicts: NodeVerdict[] = [];
    for (let i = 0; i < this.nodes.length; i++) {
      const node = this.node(i);
      const rejection = rejections[i];
      if (rejection !== undefined) {
        verdicts.push({ node: node.name, feasible: false, rejectedBy: rejection.filter, reason: rejection.reason });
        continue;
      }
      const s = scores[i] ?? { total: 0, byPlugin: zeroScores() };
      const reason = i === best ? chosenReason(s.total, feasible.length) : 'feasible';
      verdicts.push({ node: node.name, feasible: true, score: s.total, scores: s.byPlugin, reason });
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

  private add(pod: Pod): void {
    this.pods.push(pod);
    this.podsByNode[pod.node]?.push(pod);
  }

  private isBetter(a: number, b: number, scores: readonly ({ total: number } | undefined)[]): boolean {
    const sa = scores[a]?.total ?? 0;
    const sb = scores[b]?.total ?? 0;
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
    const counts = new Map<string, number>();
    const perNode = this.countsFor(c.selector, ctx.instance.namespace);
    for (let i = 0; i < this.nodes.length; i++) {
      const node = this.node(i);
      if (!hasAllKeys(node, all) || !includes(ctx, c, i)) continue;
      const value = labelOf(node.labels, c.topologyKey) ?? '';
      counts.set(value, (counts.get(value) ?? 0) + (perNode?.[i] ?? 0));
    }
    let min = Number.POSITIVE_INFINITY;
    for (const n of counts.values()) min = Math.min(min, n);
    // Fewer domains than minDomains: the global minimum is taken as 0, so pods cannot pile up.
    const belowMinDomains = counts.size < c.minDomains;
    const selfMatch = selectorMatches(c.selector, ctx.instance.labels) ? 1 : 0;
    return { counts, min: belowMinDomains || counts.size === 0 ? 0 : min, belowMinDomains, selfMatch };
  }

  private interPodCounts(ctx: Context): void {
    const self = ctx.self;
    const affinity = self.requiredAffinity;
    const anti = self.requiredAntiAffinity;
    for (const pod of this.pods) {
      const node = this.nodes[pod.node];
      if (node === undefined) continue;
      const podNs = this.nsLabels(pod.namespace);
      if (affinity.length > 0 && affinity.every((t) => this.selects(t, pod, podNs))) {
        for (let k = 0; k < affinity.length; k++) {
          const t = affinity[k];
          const m = ctx.affinityCounts[k];
          const v = t === undefined ? undefined : labelOf(node.labels, t.topologyKey);
          if (v === undefined || m === undefined) continue;
          m.set(v, (m.get(v) ?? 0) + 1);
          ctx.affinityTotal += 1;
        }
      }
      for (let k = 0; k < anti.length; k++) {
        const t = anti[k];
        const m = ctx.antiAffinityHits[k];
        const v = t === undefined ? undefined : labelOf(node.labels, t.topologyKey);
        if (t === undefined || v === undefined || m === undefined || m.has(v) || !this.selects(t, pod, podNs)) continue;
        m.set(v, pod.name);
      }
      // Symmetry: an existing pod's required anti-affinity keeps the new instance out of its domain.
      for (const t of pod.requiredAntiAffinity) {
        const v = labelOf(node.labels, t.topologyKey);
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
    const spread = this.spreadRejection(ctx, node);
    if (spread !== undefined) return { filter: 'PodTopologySpread', reason: spread };
    const interPod = interPodRejection(ctx, node);
    if (interPod !== undefined) return { filter: 'InterPodAffinity', reason: interPod };
    return undefined;
  }

  private spreadRejection(ctx: Context, node: PlacementNode): string | undefined {
    for (let k = 0; k < ctx.hard.length; k++) {
      const c = ctx.hard[k];
      const state = ctx.spread[k];
      if (c === undefined || state === undefined) continue;
      const value = labelOf(node.labels, c.topologyKey);
      if (value === undefined) return `the node has no label ${c.topologyKey}, which a DoNotSchedule spread constraint needs`;
      const skew = (state.counts.get(value) ?? 0) + state.selfMatch - state.min;
      if (skew > c.maxSkew) {
        const why = state.belowMinDomains ? ` (only ${state.counts.size} domain(s), fewer than minDomains ${c.minDomains}, so the minimum counts as 0)` : '';
        return `${c.topologyKey}=${value} would have skew ${skew} > maxSkew ${c.maxSkew}${why}`;
      }
    }
    return undefined;
  }

  // ---- Scores over the feasible nodes, each normalized as its plugin does, then weighted.

  /** Scores indexed by node; only feasible nodes have one. */
  private score(ctx: Context, feasible: readonly number[]): ({ total: number; byPlugin: Record<ScorerName, number> } | undefined)[] {
    const nodeAffinity = defaultNormalize(feasible.map((i) => preferredNodeAffinityScore(ctx.instance, this.node(i))), false);
    const interPod = this.interPodScores(ctx, feasible);
    const spread = this.spreadScores(ctx, feasible);
    const taints = defaultNormalize(feasible.map((i) => intolerablePreferNoSchedule(this.node(i).taints, ctx.instance.tolerations)), true);
    const result: ({ total: number; byPlugin: Record<ScorerName, number> } | undefined)[] = [];
    for (let k = 0; k < feasible.length; k++) {
      const byPlugin: Record<ScorerName, number> = {
        NodeAffinity: nodeAffinity[k] ?? 0,
        InterPodAffinity: interPod[k] ?? 0,
        PodTopologySpread: spread[k] ?? 0,
        TaintToleration: taints[k] ?? 0,
      };
      const total =
        SCORE_WEIGHTS.NodeAffinity * byPlugin.NodeAffinity +
        SCORE_WEIGHTS.InterPodAffinity * byPlugin.InterPodAffinity +
        SCORE_WEIGHTS.PodTopologySpread * byPlugin.PodTopologySpread +
        SCORE_WEIGHTS.TaintToleration * byPlugin.TaintToleration;
      result[feasible[k] ?? -1] = { total, byPlugin };
    }
    return result;
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
    const values = constraints.map((c) => this.topologyValues(c.topologyKey));
    const hasAll = (i: number): boolean => values.every((v) => v[i] !== undefined);
    // Candidates without every key are ignored: they score 0 and take no part in normalizing.
    const ignored = feasible.map((i) => !hasAll(i));
    const scored = feasible.length - ignored.filter(Boolean).length;
    const pairCounts = constraints.map(() => new Map<string, number>());
    feasible.forEach((i, f) => {
      if (ignored[f] === true) return;
      constraints.forEach((c, k) => {
        if (c.topologyKey !== HOSTNAME) pairCounts[k]?.set(values[k]?.[i] ?? '', 0);
      });
    });
    const perNode = constraints.map((c) => this.countsFor(c.selector, ctx.instance.namespace));
    const weights = constraints.map((c, k) => Math.log((c.topologyKey === HOSTNAME ? scored : (pairCounts[k]?.size ?? 0)) + 2));
    for (let k = 0; k < constraints.length; k++) {
      const c = constraints[k];
      const m = pairCounts[k];
      const counts = perNode[k];
      const vs = values[k];
      if (c === undefined || m === undefined || counts === undefined || vs === undefined || m.size === 0) continue;
      for (let i = 0; i < this.nodes.length; i++) {
        const v = vs[i];
        const n = counts[i] ?? 0;
        if (n === 0 || v === undefined || !m.has(v) || !hasAll(i) || !includes(ctx, c, i)) continue;
        m.set(v, (m.get(v) ?? 0) + n);
      }
    }
    const raw = feasible.map((i, f) => {
      if (ignored[f] === true) return 0;
      let score = 0;
      for (let k = 0; k < constraints.length; k++) {
        const c = constraints[k];
        const v = values[k]?.[i];
        if (c === undefined || v === undefined) continue;
        const count = c.topologyKey === HOSTNAME ? (perNode[k]?.[i] ?? 0) : (pairCounts[k]?.get(v) ?? 0);
        score += count * (weights[k] ?? 0) + (c.maxSkew - 1);
      }
      return Math.round(score);
    });
    let min = Number.POSITIVE_INFINITY;
    let max = 0;
    raw.forEach((s, f) => {
      if (ignored[f] === true) return;
      min = Math.min(min, s);
      max = Math.max(max, s);
    });
    return raw.map((s, f) => {
      if (ignored[f] === true) return 0;
      if (max === 0) return MAX_NODE_SCORE;
      return Math.trunc((MAX_NODE_SCORE * (max + min - s)) / max);
    });
  }

  private readonly topologyCache = new Map<string, (string | undefined)[]>();

  /** Each node's value of a topology key (undefined: the node lacks it); nodes never change in a run. */
  private topologyValues(key: string): (string | undefined)[] {
    let v = this.topologyCache.get(key);
    if (v === undefined) this.topologyCache.set(key, (v = this.nodes.map((n) => labelOf(n.labels, key))));
    return v;
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
    for (const pod of this.pods) {
      const node = this.nodes[pod.node];
      if (node === undefined) continue;
      const podNs = this.nsLabels(pod.namespace);
      for (const w of self.preferredAffinity) if (this.selects(w.term, pod, podNs)) add(w.term, w.weight, node);
      for (const w of self.preferredAntiAffinity) if (this.selects(w.term, pod, podNs)) add(w.term, -w.weight, node);
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

interface SpreadState {
  readonly counts: ReadonlyMap<string, number>;
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

function hasAllKeys(node: PlacementNode, constraints: readonly Constraint[]): boolean {
  for (const c of constraints) if (labelOf(node.labels, c.topologyKey) === undefined) return false;
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

/** nodeSelector and required node affinity; undefined when the node passes. */
function nodeAffinityRejection(inst: InstanceToPlace, node: PlacementNode): string | undefined {
  for (const [k, v] of Object.entries(inst.nodeSelector)) {
    const actual = labelOf(node.labels, k);
    if (actual !== v) return `nodeSelector ${k}=${v} does not match (${actual === undefined ? `the node has no ${k}` : `the node has ${k}=${actual}`})`;
  }
  const required = inst.affinity?.nodeAffinity?.required;
  if (required === undefined) return undefined;
  if (required.some((t) => termMatches(t, node))) return undefined;
  if (required.length === 0) return 'required node affinity lists no terms, so no node matches';
  const terms = required.map((t) => {
    const parts = [...t.matchExpressions.map(describeRequirement), ...t.matchFields.map((r) => describeRequirement({ ...r, key: 'metadata.name' }))];
    return parts.length === 0 ? '(empty term)' : parts.join(' and ');
  });
  return `matches none of the required node affinity terms: ${terms.join(' or ')}`;
}

function preferredNodeAffinityScore(inst: InstanceToPlace, node: PlacementNode): number {
  let s = 0;
  for (const p of inst.affinity?.nodeAffinity?.preferred ?? []) if (termMatches(p.preference, node)) s += p.weight;
  return s;
}

function isDoNotScheduleTaint(t: Taint): boolean {
  return t.effect === 'NoSchedule' || t.effect === 'NoExecute';
}

/** The first taint passing `consider` that no toleration tolerates. */
export function untoleratedTaint(taints: readonly Taint[], tolerations: readonly Toleration[], consider: (t: Taint) => boolean): Taint | undefined {
  return taints.find((t) => consider(t) && !tolerates(tolerations, t));
}

function tolerates(tolerations: readonly Toleration[], taint: Taint): boolean {
  return tolerations.some((tol) => toleratesTaint(tol, taint));
}

/** kube's Toleration.ToleratesTaint: effect and key (empty matches all), then Equal or Exists. */
export function toleratesTaint(tol: Toleration, taint: Taint): boolean {
  if (tol.effect !== undefined && tol.effect !== taint.effect) return false;
  if (tol.key !== '' && tol.key !== taint.key) return false;
  switch (tol.operator) {
    case 'Exists':
      return true;
    case 'Equal':
      return tol.value === taint.value;
  }
}

/** TaintToleration's raw score: PreferNoSchedule taints not tolerated (by tolerations with no effect or PreferNoSchedule). */
function intolerablePreferNoSchedule(taints: readonly Taint[], tolerations: readonly Toleration[]): number {
  const relevant = tolerations.filter((t) => t.effect === undefined || t.effect === 'PreferNoSchedule');
  return taints.filter((t) => t.effect === 'PreferNoSchedule' && !tolerates(relevant, t)).length;
}

/** kube-scheduler's DefaultNormalizeScore: scale to 0..100 by the maximum (integer), optionally reversed. */
function defaultNormalize(raw: readonly number[], reverse: boolean): number[] {
  const max = raw.reduce((m, s) => Math.max(m, s), 0);
  if (max === 0) return raw.map(() => (reverse ? MAX_NODE_SCORE : 0));
  return raw.map((s) => {
    const scaled = Math.trunc((MAX_NODE_SCORE * s) / max);
    return reverse ? MAX_NODE_SCORE - scaled : scaled;
  });
}

function describeTaint(t: Taint): string {
  return `${t.key}${t.value === '' ? '' : `=${t.value}`}:${t.effect}`;
}

function zeroScores(): Record<ScorerName, number> {
  return { NodeAffinity: 0, InterPodAffinity: 0, PodTopologySpread: 0, TaintToleration: 0 };
}

function chosenReason(total: number, feasibleCount: number): string {
  return feasibleCount === 1 ? `chosen: the only feasible node (score ${total})` : `chosen: highest score ${total} of ${feasibleCount} feasible nodes (ties: fewest instances, then name)`;
}
