import type { Affinity, InstanceToPlace, Labels, Toleration, TopologySpreadConstraint } from './types.js';

/** Cluster kinds whose operators label their pods; Warden's own `Cluster` uses warden.dev. */
export type OperatorKind = 'Cluster' | 'IvoryCluster' | 'PostgresCluster';

/** The scheduling fields of one instance set (`spec.instances[]`), as the spec declares them. */
export interface InstanceSetScheduling {
  readonly name: string;
  readonly labels: Labels;
  readonly affinity?: Affinity;
  readonly tolerations: readonly Toleration[];
  readonly topologySpreadConstraints: readonly TopologySpreadConstraint[];
}

/** What placement needs of a cluster spec; a parsed ClusterSpec has this shape. */
export interface ClusterToPlace {
  readonly name: string;
  readonly kind: OperatorKind;
  readonly namespace: string;
  readonly disableDefaultPodScheduling: boolean;
  readonly members: readonly { readonly name: string; readonly instanceSet: string }[];
  readonly instanceSets: readonly InstanceSetScheduling[];
}

interface OperatorLabels {
  readonly prefix: string;
  /** Value of `<prefix>/data` on PostgreSQL instance pods. */
  readonly data: string;
}

const OPERATOR_LABELS: Readonly<Record<OperatorKind, OperatorLabels>> = {
  IvoryCluster: { prefix: 'ivory-operator.ivorysql.org', data: 'ivory' },
  PostgresCluster: { prefix: 'postgres-operator.crunchydata.com', data: 'postgres' },
  Cluster: { prefix: 'warden.dev', data: 'postgres' },
};

/** Labels the operator of `kind` puts on an instance pod, so selectors written for it work as they are. */
export function operatorLabels(kind: OperatorKind, cluster: string, instanceSet: string, member: string): Labels {
  const { prefix, data } = OPERATOR_LABELS[kind];
  return {
    [`${prefix}/cluster`]: cluster,
    [`${prefix}/instance-set`]: instanceSet,
    [`${prefix}/instance`]: member,
    [`${prefix}/data`]: data,
  };
}

/**
 * The two soft constraints the operators add to every instance pod unless
 * disableDefaultPodScheduling: spread the cluster's data pods (PostgreSQL and pgBackRest) over
 * hosts and zones, maxSkew 1, ScheduleAnyway.
 */
export function defaultSpreadConstraints(kind: OperatorKind, cluster: string): TopologySpreadConstraint[] {
  const { prefix, data } = OPERATOR_LABELS[kind];
  const labelSelector = {
    matchLabels: { [`${prefix}/cluster`]: cluster },
    matchExpressions: [{ key: `${prefix}/data`, operator: 'In' as const, values: [data, 'pgbackrest'] }],
  };
  return ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].map((topologyKey) => ({
    maxSkew: 1,
    topologyKey,
    whenUnsatisfiable: 'ScheduleAnyway' as const,
    labelSelector,
    matchLabelKeys: [],
  }));
}

/** The cluster's members as instances to place, in spec order, with operator labels and defaults applied. */
export function clusterInstances(cluster: ClusterToPlace): InstanceToPlace[] {
  const defaults = cluster.disableDefaultPodScheduling ? [] : defaultSpreadConstraints(cluster.kind, cluster.name);
  return cluster.members.map((m) => {
    const set = cluster.instanceSets.find((s) => s.name === m.instanceSet);
    return {
      member: m.name,
      instanceSet: m.instanceSet,
      namespace: cluster.namespace,
      // The operator's labels win over the user's, as the operators overwrite them on the pod.
      labels: { ...set?.labels, ...operatorLabels(cluster.kind, cluster.name, m.instanceSet, m.name) },
      nodeSelector: {},
      ...(set?.affinity === undefined ? {} : { affinity: set.affinity }),
      tolerations: set?.tolerations ?? [],
      topologySpreadConstraints: [...(set?.topologySpreadConstraints ?? []), ...defaults],
    };
  });
}
