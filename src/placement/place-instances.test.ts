import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clusterInstances, defaultSpreadConstraints, operatorLabels, placeInstances } from './index.js';
import type { Affinity, ClusterToPlace, LabelSelector, Labels, PlacementNode, Taint, TopologySpreadConstraint } from './index.js';

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


function cluster(extra: Partial<ClusterToPlace> & { replicas?: number } = {}): ClusterToPlace {
  const replicas = extra.replicas ?? 3;
  return {
    name: 'demo',
    kind: 'Cluster',
    namespace: 'default',
    disableDefaultPodScheduling: false,
    members: Array.from({ length: replicas }, (_, i) => ({ name: `demo-${i + 1}`, instanceSet: 'instance1' })),
    instanceSets: [{ name: 'instance1', labels: {}, tolerations: [], topologySpreadConstraints: [] }],
    ...extra,
  };
}

describe('placement: instances of a cluster spec', () => {
  it('each instance carries the operator labels of its kind, the set labels, and the two default soft constraints', () => {
    const [first] = clusterInstances(cluster({ instanceSets: [{ name: 'instance1', labels: { team: 'payments', 'warden.dev/cluster': 'spoofed' }, tolerations: [], topologySpreadConstraints: [] }] }));
    assert.deepEqual(first?.labels, { team: 'payments', ...operatorLabels('Cluster', 'demo', 'instance1', 'demo-1') });
    assert.deepEqual(first?.topologySpreadConstraints, defaultSpreadConstraints('Cluster', 'demo'));
    assert.deepEqual(
      first?.topologySpreadConstraints.map((c) => [c.topologyKey, c.whenUnsatisfiable, c.maxSkew]),
      [
        ['kubernetes.io/hostname', 'ScheduleAnyway', 1],
        ['topology.kubernetes.io/zone', 'ScheduleAnyway', 1],
      ],
    );
  });

  it('IvoryCluster and PostgresCluster use their operators\' label prefixes and data values', () => {
    assert.deepEqual(operatorLabels('IvoryCluster', 'hippo', 'instance1', 'hippo-1'), {
      'ivory-operator.ivorysql.org/cluster': 'hippo',
      'ivory-operator.ivorysql.org/instance-set': 'instance1',
      'ivory-operator.ivorysql.org/instance': 'hippo-1',
      'ivory-operator.ivorysql.org/data': 'ivory',
    });
    assert.equal(operatorLabels('PostgresCluster', 'hippo', 'pgha1', 'hippo-1')['postgres-operator.crunchydata.com/data'], 'postgres');
  });

  it('disableDefaultPodScheduling drops the default constraints', () => {
    const [first] = clusterInstances(cluster({ disableDefaultPodScheduling: true }));
    assert.deepEqual(first?.topologySpreadConstraints, []);
  });

  it('the default soft constraints spread a cluster over zones before doubling up in one', () => {
    const nodes = [node('a1', { 'topology.kubernetes.io/zone': 'a' }), node('a2', { 'topology.kubernetes.io/zone': 'a' }), node('b1', { 'topology.kubernetes.io/zone': 'b' }), node('c1', { 'topology.kubernetes.io/zone': 'c' })];
    const result = placeInstances({ nodes, occupants: [], instances: clusterInstances(cluster()) });
    const zones = result.placements.map((p) => nodes.find((n) => n.name === p.node)?.labels['topology.kubernetes.io/zone']);
    assert.deepEqual([...zones].sort(), ['a', 'b', 'c']);
  });

  it('without scores to tell nodes apart, the node with fewer instances wins, then the lower name', () => {
    const nodes = [node('n2'), node('n1'), node('n3')];
    const occupants = [{ name: 'web-1', node: 'n1', namespace: 'default', labels: { app: 'web' }, terminating: false }];
    const result = placeInstances({ nodes, occupants, instances: clusterInstances(cluster({ disableDefaultPodScheduling: true, replicas: 3 })) });
    assert.deepEqual(
      result.placements.map((p) => p.node),
      ['n2', 'n3', 'n1'],
    );
  });

  it('instance sets are placed in spec order and earlier ones count for later ones', () => {
    const anti: Affinity = { podAntiAffinity: { required: [{ labelSelector: sel({ 'warden.dev/cluster': 'demo' }), namespaces: [], topologyKey: 'kubernetes.io/hostname' }], preferred: [] } };
    const spec = cluster({
      members: [
        { name: 'demo-east-1', instanceSet: 'east' },
        { name: 'demo-west-1', instanceSet: 'west' },
      ],
      instanceSets: [
        { name: 'east', labels: {}, tolerations: [], topologySpreadConstraints: [] },
        { name: 'west', labels: {}, affinity: anti, tolerations: [], topologySpreadConstraints: [] },
      ],
    });
    const result = placeInstances({ nodes: [node('n1')], occupants: [], instances: clusterInstances(spec) });
    assert.deepEqual(
      result.placements.map((p) => [p.member, p.instanceSet, p.node]),
      [
        ['demo-east-1', 'east', 'n1'],
        ['demo-west-1', 'west', null],
      ],
    );
  });
});

describe('placement: every rejection is one sentence naming the rule', () => {
  const inst = (extra: Partial<ClusterToPlace['instanceSets'][number]> = {}) =>
    clusterInstances(cluster({ replicas: 1, disableDefaultPodScheduling: true, instanceSets: [{ name: 'instance1', labels: {}, tolerations: [], topologySpreadConstraints: [], ...extra }] }));
  const cases: { name: string; nodes: PlacementNode[]; instances: ReturnType<typeof inst>; want: string }[] = [
    { name: 'a cordoned node', nodes: [node('n1', {}, { unschedulable: true })], instances: inst(), want: 'n1: NodeUnschedulable: the node is cordoned (unschedulable) and the instance does not tolerate node.kubernetes.io/unschedulable:NoSchedule' },
    { name: 'an untolerated taint', nodes: [node('n1', {}, { taints: [{ key: 'dedicated', value: 'batch', effect: 'NoSchedule' }] })], instances: inst(), want: 'n1: TaintToleration: untolerated taint dedicated=batch:NoSchedule' },
    {
      name: 'required node affinity',
      nodes: [node('n1', { disk: 'hdd' })],
      instances: inst({ affinity: { nodeAffinity: { required: [{ matchExpressions: [{ key: 'disk', operator: 'In', values: ['ssd'] }], matchFields: [] }, { matchExpressions: [{ key: 'cores', operator: 'Gt', values: ['8'] }], matchFields: [] }], preferred: [] } } }),
      want: 'n1: NodeAffinity: matches none of the required node affinity terms: disk In (ssd) or cores > 8',
    },
    {
      name: 'a missing spread key',
      nodes: [node('n1')],
      instances: inst({ topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'zone', whenUnsatisfiable: 'DoNotSchedule', labelSelector: sel({ 'warden.dev/cluster': 'demo' }), matchLabelKeys: [] }] }),
      want: 'n1: PodTopologySpread: the node has no label zone, which a DoNotSchedule spread constraint needs',
    },
    {
      name: 'required pod affinity with nothing to join',
      nodes: [node('n1', { zone: 'a' })],
      instances: inst({ affinity: { podAffinity: { required: [{ labelSelector: sel({ app: 'cache' }), namespaces: [], topologyKey: 'zone' }], preferred: [] } } }),
      want: 'n1: InterPodAffinity: no instance matching the required pod affinity (app=cache) in zone=a',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const result = placeInstances({ nodes: c.nodes, occupants: [], instances: c.instances });
      const v = result.placements[0]?.nodes[0];
      assert.equal(v === undefined || v.feasible ? 'feasible' : `${v.node}: ${v.rejectedBy}: ${v.reason}`, c.want);
      assert.deepEqual(result.pending, ['demo-1']);
    });
  }

  it('an existing instance\'s anti-affinity names that instance', () => {
    const occupants = [{ name: 'other-1', node: 'n1', namespace: 'default', labels: {}, terminating: false, affinity: { podAntiAffinity: { required: [{ labelSelector: sel({ 'warden.dev/cluster': 'demo' }), namespaces: [], topologyKey: 'kubernetes.io/hostname' }], preferred: [] } } }];
    const result = placeInstances({ nodes: [node('n1')], occupants, instances: inst() });
    const v = result.placements[0]?.nodes[0];
    assert.equal(v?.feasible === false ? v.reason : '', 'the required pod anti-affinity of other-1 in kubernetes.io/hostname=n1 rejects this instance');
  });
});
