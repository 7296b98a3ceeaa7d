// The Kubernetes scheduling vocabulary the placement engine speaks, as plain data: the field
// names are those of the Pod and Node APIs, so manifests written for operators map one to one.

/** Label key -> value, on nodes, instances and namespaces. */
export type Labels = Readonly<Record<string, string>>;

export const LABEL_SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;
export type LabelSelectorOperator = (typeof LABEL_SELECTOR_OPERATORS)[number];

export interface LabelSelectorRequirement {
  readonly key: string;
  readonly operator: LabelSelectorOperator;
  readonly values: readonly string[];
}

/** A metav1.LabelSelector: matchLabels and matchExpressions ANDed; `{}` selects everything. */
export interface LabelSelector {
  readonly matchLabels: Labels;
  readonly matchExpressions: readonly LabelSelectorRequirement[];
}

export const NODE_SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt'] as const;
export type NodeSelectorOperator = (typeof NODE_SELECTOR_OPERATORS)[number];

export interface NodeSelectorRequirement {
  readonly key: string;
  readonly operator: NodeSelectorOperator;
  readonly values: readonly string[];
}

/** One node selector term: expressions (on labels) and fields (only `metadata.name`) ANDed. */
export interface NodeSelectorTerm {
  readonly matchExpressions: readonly NodeSelectorRequirement[];
  readonly matchFields: readonly NodeSelectorRequirement[];
}

export interface PreferredSchedulingTerm {
  readonly weight: number;
  readonly preference: NodeSelectorTerm;
}

export interface NodeAffinity {
  /** Terms ORed; undefined means no requirement, an empty list matches no node. */
  readonly required?: readonly NodeSelectorTerm[];
  readonly preferred: readonly PreferredSchedulingTerm[];
}

export interface PodAffinityTerm {
  /** undefined selects no instance (as a nil selector does in Kubernetes). */
  readonly labelSelector?: LabelSelector;
  readonly namespaces: readonly string[];
  /** undefined: only `namespaces` (or the instance's own namespace when that is empty); `{}`: all. */
  readonly namespaceSelector?: LabelSelector;
  readonly topologyKey: string;
}

export interface WeightedPodAffinityTerm {
  readonly weight: number;
  readonly podAffinityTerm: PodAffinityTerm;
}

export interface PodAffinity {
  readonly required: readonly PodAffinityTerm[];
  readonly preferred: readonly WeightedPodAffinityTerm[];
}

export interface Affinity {
  readonly nodeAffinity?: NodeAffinity;
  readonly podAffinity?: PodAffinity;
  readonly podAntiAffinity?: PodAffinity;
}

export const TAINT_EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const;
export type TaintEffect = (typeof TAINT_EFFECTS)[number];

export interface Taint {
  readonly key: string;
  readonly value: string;
  readonly effect: TaintEffect;
}

export const TOLERATION_OPERATORS = ['Equal', 'Exists'] as const;
export type TolerationOperator = (typeof TOLERATION_OPERATORS)[number];

/** A toleration; an empty key with Exists tolerates every taint, no effect means every effect. */
export interface Toleration {
  readonly key: string;
  readonly operator: TolerationOperator;
  readonly value: string;
  readonly effect?: TaintEffect;
}

export const WHEN_UNSATISFIABLE = ['DoNotSchedule', 'ScheduleAnyway'] as const;
export type WhenUnsatisfiable = (typeof WHEN_UNSATISFIABLE)[number];
export const NODE_INCLUSION_POLICIES = ['Honor', 'Ignore'] as const;
export type NodeInclusionPolicy = (typeof NODE_INCLUSION_POLICIES)[number];

export interface TopologySpreadConstraint {
  readonly maxSkew: number;
  readonly topologyKey: string;
  readonly whenUnsatisfiable: WhenUnsatisfiable;
  /** undefined selects no instance. */
  readonly labelSelector?: LabelSelector;
  /** Defaults to 1; only meaningful with DoNotSchedule. */
  readonly minDomains?: number;
  /** Default Honor. */
  readonly nodeAffinityPolicy?: NodeInclusionPolicy;
  /** Default Ignore. */
  readonly nodeTaintsPolicy?: NodeInclusionPolicy;
  readonly matchLabelKeys: readonly string[];
}

/** A host instances can be placed on. */
export interface PlacementNode {
  readonly name: string;
  readonly labels: Labels;
  readonly taints: readonly Taint[];
  /** Cordoned (`spec.unschedulable` of a Kubernetes node). */
  readonly unschedulable: boolean;
}

/** Something already running on a node: another cluster's instance or another workload. */
export interface Occupant {
  readonly name: string;
  readonly node: string;
  readonly namespace: string;
  readonly labels: Labels;
  readonly affinity?: Affinity;
  /** Being deleted: not counted by topology spread (kube-scheduler skips terminating pods there). */
  readonly terminating: boolean;
}

/** One instance to place, with the scheduling fields of its pod template. */
export interface InstanceToPlace {
  readonly member: string;
  readonly instanceSet: string;
  readonly namespace: string;
  readonly labels: Labels;
  readonly nodeSelector: Labels;
  readonly affinity?: Affinity;
  readonly tolerations: readonly Toleration[];
  readonly topologySpreadConstraints: readonly TopologySpreadConstraint[];
}

export interface PlacementInput {
  readonly nodes: readonly PlacementNode[];
  readonly occupants: readonly Occupant[];
  /** Placed in this order; each one placed counts for the next. */
  readonly instances: readonly InstanceToPlace[];
  /** Labels of namespaces, for namespaceSelector; every namespace also has kubernetes.io/metadata.name. */
  readonly namespaceLabels?: Readonly<Record<string, Labels>>;
}

/** Filter plugins, in the order they run. */
export const FILTERS = ['NodeUnschedulable', 'TaintToleration', 'NodeAffinity', 'PodTopologySpread', 'InterPodAffinity'] as const;
export type FilterName = (typeof FILTERS)[number];

/** Score plugins with kube-scheduler's default weights. */
export const SCORE_WEIGHTS = { NodeAffinity: 2, InterPodAffinity: 2, PodTopologySpread: 2, TaintToleration: 3 } as const;
export type ScorerName = keyof typeof SCORE_WEIGHTS;

/** What one node meant for one instance. */
export type NodeVerdict =
  | {
      readonly node: string;
      readonly feasible: true;
      /** Weighted sum of `scores`. */
      readonly score: number;
      /** Each plugin's normalized score, 0..100. */
      readonly scores: Readonly<Record<ScorerName, number>>;
      readonly reason: string;
    }
  | { readonly node: string; readonly feasible: false; readonly rejectedBy: FilterName; readonly reason: string };

export interface Placement {
  readonly member: string;
  readonly instanceSet: string;
  /** null: Pending, no node passed every filter. */
  readonly node: string | null;
  /** One verdict per node, in the order the nodes were given. */
  readonly nodes: readonly NodeVerdict[];
}

export interface PlacementResult {
  readonly placements: readonly Placement[];
  /** Members left Pending, in placement order. */
  readonly pending: readonly string[];
}
