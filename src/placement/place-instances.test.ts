import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clusterInstances, placeInstances } from './index.js';
import type { Affinity, LabelSelector, Labels, PlacementNode, Taint, TopologySpreadConstraint } from './index.js';

function node(name: string, labels: Labels = {}, extra: { taints?: Taint[]; unschedulable?: boolean } = {}): PlacementNode {
  return { name, labels: { 'kubernetes.io/hostname': name, ...labels }, taints: extra.taints ?? [], unschedulable: extra.unschedulable ?? false };
}

function sel(matchLabels: Labels): LabelSelector {
  return { matchLabels, matchExpressions: [] };
}

const IVORY = 'ivory-operator.ivorysql.org';

describe('placement: the seed examples', () => {
  it('five instances spread with maxSkew 1 DoNotSchedule over my-node-label one/two/three land 2/2/1', () => {
    const nodes = [node('node1', { 'my-node-label': 'one' }), node('node2', { 'my-node-label': 'two' }), node('node3', { 'my-node-label': 'three' })];
    const spread: TopologySpreadConstraint = {
      maxSkew: 1,
      topologyKey: 'my-node-label',
      whenUnsatisfiable: 'DoNotSchedule',
      labelSelector: sel({ [`${IVORY}/cluster`]: 'hippo', [`${IVORY}/instance-set`]: 'instance1' }),
      matchLabelKeys: [],
    };
    const instances = clusterInstances({
      name: 'hippo',
      kind: 'IvoryCluster',
      namespace: 'ivory-operator',
      disableDefaultPodScheduling: false,
      members: [1, 2, 3, 4, 5].map((i) => ({ name: `hippo-${i}`, instanceSet: 'instance1' })),
      instanceSets: [{ name: 'instance1', labels: {}, tolerations: [], topologySpreadConstraints: [spread] }],
    });
    const result = placeInstances({ nodes, occupants: [], instances });
    assert.deepEqual(result.pending, []);
    const perNode = new Map<string, number>();
    for (const p of result.placements) perNode.set(p.node ?? 'Pending', (perNode.get(p.node ?? 'Pending') ?? 0) + 1);
    assert.deepEqual([...perNode.values()].sort(), [1, 2, 2]);
    assert.deepEqual(
      result.placements.map((p) => p.node),
      ['node1', 'node2', 'node3', 'node1', 'node2'],
    );
    // The fifth instance sees 2/1/1: the full domain is rejected with its skew.
    const rejected = result.placements[4]?.nodes.flatMap((v) => (v.feasible ? [] : [`${v.node}: ${v.rejectedBy}: ${v.reason}`]));
    assert.deepEqual(rejected, ['node1: PodTopologySpread: my-node-label=one would have skew 2 > maxSkew 1']);
  });

  it('required anti-affinity per host on too few nodes leaves the extra instances Pending, each node with its reason', () => {
    const nodes = [node('node1'), node('node2')];
    const affinity: Affinity = {
      podAntiAffinity: {
        required: [{ labelSelector: sel({ 'postgres-operator.crunchydata.com/cluster': 'hippo' }), namespaces: [], topologyKey: 'kubernetes.io/hostname' }],
        preferred: [],
      },
    };
    const instances = clusterInstances({
      name: 'hippo',
      kind: 'PostgresCluster',
      namespace: 'default',
      disableDefaultPodScheduling: false,
      members: [1, 2, 3, 4].map((i) => ({ name: `hippo-${i}`, instanceSet: 'pgha1' })),
      instanceSets: [{ name: 'pgha1', labels: {}, affinity, tolerations: [], topologySpreadConstraints: [] }],
    });
    const result = placeInstances({ nodes, occupants: [], instances });
    assert.deepEqual(
      result.placements.map((p) => p.node),
      ['node1', 'node2', null, null],
    );
    assert.deepEqual(result.pending, ['hippo-3', 'hippo-4']);
    const reasons = result.placements[2]?.nodes.map((v) => (v.feasible ? 'feasible' : `${v.node}: ${v.rejectedBy}: ${v.reason}`));
    assert.deepEqual(reasons, [
      'node1: InterPodAffinity: hippo-1 in kubernetes.io/hostname=node1 matches the required pod anti-affinity (postgres-operator.crunchydata.com/cluster=hippo)',
      'node2: InterPodAffinity: hippo-2 in kubernetes.io/hostname=node2 matches the required pod anti-affinity (postgres-operator.crunchydata.com/cluster=hippo)',
    ]);
  });
});

