import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { placeInstances } from './index.js';
import type {
  Affinity,
  FilterName,
  InstanceToPlace,
  LabelSelector,
  LabelSelectorRequirement,
  Labels,
  NodeSelectorRequirement,
  Occupant,
  PlacementNode,
  ScorerName,
  Taint,
  Toleration,
  TopologySpreadConstraint,
} from './index.js';

// Cases ported from kube-scheduler's plugin unit tests (pkg/scheduler/framework/plugins/
// {nodeaffinity,tainttoleration,podtopologyspread,interpodaffinity}): same nodes, pods and
// expectations, run through the whole engine. Nodes the Go tests pass as "failed" (in the snapshot
// but not candidates) are tainted here so that only the TaintToleration filter rejects them.

const FAILED: Taint = { key: 'failed', value: '', effect: 'NoSchedule' };

function n(name: string, labels: Labels = {}, taints: Taint[] = []): PlacementNode {
  return { name, labels, taints, unschedulable: false };
}

function failed(name: string, labels: Labels = {}): PlacementNode {
  return n(name, labels, [FAILED]);
}

let podCount = 0;
function pod(node: string, labels: Labels = {}, extra: Partial<Occupant> = {}): Occupant {
  podCount += 1;
  return { name: `p${podCount}`, node, namespace: 'default', labels, terminating: false, ...extra };
}

function instance(extra: Partial<InstanceToPlace> = {}): InstanceToPlace {
  return { member: 'p', instanceSet: 'set', namespace: 'default', labels: {}, nodeSelector: {}, tolerations: [], topologySpreadConstraints: [], ...extra };
}

const exists = (key: string): LabelSelectorRequirement => ({ key, operator: 'Exists', values: [] });
const expr = (key: string, operator: NodeSelectorRequirement['operator'], values: string[] = []): NodeSelectorRequirement => ({ key, operator, values });
const selector = (...matchExpressions: LabelSelectorRequirement[]): LabelSelector => ({ matchLabels: {}, matchExpressions });
const fooSelector = selector(exists('foo'));
const barSelector = selector(exists('bar'));

function spread(maxSkew: number, topologyKey: string, when: TopologySpreadConstraint['whenUnsatisfiable'], labelSelector: LabelSelector | undefined, extra: Partial<TopologySpreadConstraint> = {}): TopologySpreadConstraint {
  return { maxSkew, topologyKey, whenUnsatisfiable: when, ...(labelSelector === undefined ? {} : { labelSelector }), matchLabelKeys: [], ...extra };
}

function requiredNodeAffinity(...terms: NodeSelectorRequirement[][]): Affinity {
  return { nodeAffinity: { required: terms.map((matchExpressions) => ({ matchExpressions, matchFields: [] })), preferred: [] } };
}

/** Each node's verdict for one instance: 'ok' or the filter that rejected it. */
function verdicts(inst: InstanceToPlace, nodes: PlacementNode[], occupants: Occupant[] = []): Record<string, 'ok' | FilterName> {
  const result = placeInstances({ nodes, occupants, instances: [inst] });
  return Object.fromEntries((result.placements[0]?.nodes ?? []).map((v) => [v.node, v.feasible ? 'ok' : v.rejectedBy]));
}

/** One plugin's normalized score on each candidate node (failed nodes left out). */
function scores(plugin: ScorerName, inst: InstanceToPlace, nodes: PlacementNode[], occupants: Occupant[] = [], namespaceLabels: Record<string, Labels> = {}): Record<string, number> {
  const result = placeInstances({ nodes, occupants, instances: [inst], namespaceLabels });
  return Object.fromEntries((result.placements[0]?.nodes ?? []).flatMap((v) => (v.feasible ? [[v.node, v.scores[plugin]]] : [])));
}

interface FilterCase {
  readonly name: string;
  readonly inst: InstanceToPlace;
  readonly nodes: PlacementNode[];
  readonly occupants?: Occupant[];
  readonly want: Record<string, 'ok' | FilterName>;
}

function runFilterCases(cases: readonly FilterCase[]): void {
  for (const c of cases) it(c.name, () => assert.deepEqual(verdicts(c.inst, c.nodes, c.occupants ?? []), c.want));
}

describe('kube-scheduler NodeAffinity filter', () => {
  const node1 = (labels: Labels): PlacementNode[] => [n('node1', labels)];
  runFilterCases([
    { name: 'a nodeSelector the node lacks the label for rejects it', inst: instance({ nodeSelector: { foo: 'bar' } }), nodes: node1({}), want: { node1: 'NodeAffinity' } },
    { name: 'a nodeSelector with the same labels accepts the node', inst: instance({ nodeSelector: { foo: 'bar' } }), nodes: node1({ foo: 'bar' }), want: { node1: 'ok' } },
    { name: 'node labels that are a superset of the nodeSelector are accepted', inst: instance({ nodeSelector: { foo: 'bar' } }), nodes: node1({ foo: 'bar', baz: 'blah' }), want: { node1: 'ok' } },
    { name: 'node labels that are a subset of the nodeSelector are rejected', inst: instance({ nodeSelector: { foo: 'bar', baz: 'blah' } }), nodes: node1({ foo: 'bar' }), want: { node1: 'NodeAffinity' } },
    { name: 'In matches a node whose value is listed', inst: instance({ affinity: requiredNodeAffinity([expr('foo', 'In', ['bar', 'value2'])]) }), nodes: node1({ foo: 'bar' }), want: { node1: 'ok' } },
    { name: 'Gt compares as integers: 0206 > 0204', inst: instance({ affinity: requiredNodeAffinity([expr('kernel-version', 'Gt', ['0204'])]) }), nodes: node1({ 'kernel-version': '0206' }), want: { node1: 'ok' } },
    { name: 'Lt rejects a larger value', inst: instance({ affinity: requiredNodeAffinity([expr('cores', 'Lt', ['8'])]) }), nodes: node1({ cores: '16' }), want: { node1: 'NodeAffinity' } },
    { name: 'Gt against a value that is not an integer never matches', inst: instance({ affinity: requiredNodeAffinity([expr('cores', 'Gt', ['1'])]) }), nodes: node1({ cores: 'many' }), want: { node1: 'NodeAffinity' } },
    { name: 'NotIn matches a node whose value is not listed', inst: instance({ affinity: requiredNodeAffinity([expr('mem-type', 'NotIn', ['DDR', 'DDR2'])]) }), nodes: node1({ 'mem-type': 'DDR3' }), want: { node1: 'ok' } },
    { name: 'NotIn matches a node without the key', inst: instance({ affinity: requiredNodeAffinity([expr('mem-type', 'NotIn', ['DDR'])]) }), nodes: node1({}), want: { node1: 'ok' } },
    { name: 'DoesNotExist matches a node without the key', inst: instance({ affinity: requiredNodeAffinity([expr('gpu', 'DoesNotExist')]) }), nodes: node1({ foo: 'bar' }), want: { node1: 'ok' } },
    { name: 'Exists matches a node with the key', inst: instance({ affinity: requiredNodeAffinity([expr('GPU', 'Exists')]) }), nodes: node1({ GPU: 'NVIDIA-GRID-K1' }), want: { node1: 'ok' } },
    { name: 'an affinity whose values do not match the node rejects it', inst: instance({ affinity: requiredNodeAffinity([expr('foo', 'In', ['value1', 'value2'])]) }), nodes: node1({ foo: 'bar' }), want: { node1: 'NodeAffinity' } },
    { name: 'an empty list of node selector terms matches no node', inst: instance({ affinity: { nodeAffinity: { required: [], preferred: [] } } }), nodes: node1({ foo: 'bar' }), want: { node1: 'NodeAffinity' } },
    { name: 'a term with no expressions matches no node', inst: instance({ affinity: requiredNodeAffinity([]) }), nodes: node1({ foo: 'bar' }), want: { node1: 'NodeAffinity' } },
    { name: 'no affinity schedules onto any node', inst: instance(), nodes: node1({ foo: 'bar' }), want: { node1: 'ok' } },
    { name: 'an affinity with only preferences schedules onto any node', inst: instance({ affinity: { nodeAffinity: { preferred: [] } } }), nodes: node1({}), want: { node1: 'ok' } },
    {
      name: 'expressions of one term are ANDed: Exists and NotIn both hold',
      inst: instance({ affinity: requiredNodeAffinity([expr('GPU', 'Exists'), expr('GPU', 'NotIn', ['AMD', 'INTER'])]) }),
      nodes: node1({ GPU: 'NVIDIA-GRID-K1' }),
      want: { node1: 'ok' },
    },
    {
      name: 'expressions of one term are ANDed: Exists holds, In does not',
      inst: instance({ affinity: requiredNodeAffinity([expr('GPU', 'Exists'), expr('GPU', 'In', ['AMD', 'INTER'])]) }),
      nodes: node1({ GPU: 'NVIDIA-GRID-K1' }),
      want: { node1: 'NodeAffinity' },
    },
    {
      name: 'terms are ORed: one matching term is enough',
      inst: instance({ affinity: requiredNodeAffinity([expr('foo', 'In', ['bar', 'value2'])], [expr('diffkey', 'In', ['wrong', 'value2'])]) }),
      nodes: node1({ foo: 'bar' }),
      want: { node1: 'ok' },
    },
    {
      name: 'nodeSelector and affinity must both match',
      inst: instance({ nodeSelector: { foo: 'bar' }, affinity: requiredNodeAffinity([expr('foo', 'DoesNotExist')]) }),
      nodes: node1({ foo: 'bar' }),
      want: { node1: 'NodeAffinity' },
    },
    {
      name: 'matchFields on metadata.name picks the named node',
      inst: instance({ affinity: { nodeAffinity: { required: [{ matchExpressions: [], matchFields: [expr('metadata.name', 'In', ['node1'])] }], preferred: [] } } }),
      nodes: [n('node1'), n('node2')],
      want: { node1: 'ok', node2: 'NodeAffinity' },
    },
  ]);
});

describe('kube-scheduler NodeAffinity score', () => {
  const preferred = (weight: number, ...matchExpressions: NodeSelectorRequirement[]) => ({ weight, preference: { matchExpressions, matchFields: [] } });
  it('all nodes score 0 without preferences', () => {
    assert.deepEqual(scores('NodeAffinity', instance(), [n('node1', { foo: 'bar' }), n('node2')]), { node1: 0, node2: 0 });
  });
  it('only the node matching the preference gets 100', () => {
    const inst = instance({ affinity: { nodeAffinity: { preferred: [preferred(2, expr('foo', 'In', ['bar']))] } } });
    assert.deepEqual(scores('NodeAffinity', inst, [n('node1', { foo: 'bar' }), n('node2', { key: 'value' }), n('node3', { az: 'az1' })]), { node1: 100, node2: 0, node3: 0 });
  });
  it('weights add up per node and scale by the best node: 2, 4 and 11 of 11 give 18, 36 and 100', () => {
    const inst = instance({
      affinity: {
        nodeAffinity: {
          preferred: [preferred(2, expr('foo', 'In', ['bar'])), preferred(4, expr('key', 'In', ['value'])), preferred(5, expr('foo', 'In', ['bar']), expr('key', 'In', ['value']), expr('az', 'In', ['az1']))],
        },
      },
    });
    assert.deepEqual(scores('NodeAffinity', inst, [n('node1', { foo: 'bar' }), n('node5', { foo: 'bar', key: 'value', az: 'az1' }), n('node2', { key: 'value' })]), { node1: 18, node5: 100, node2: 36 });
  });
});

describe('kube-scheduler TaintToleration filter', () => {
  const tainted = (taints: Taint[]): PlacementNode[] => [n('nodeA', {}, taints)];
  const dedicated = (value: string, effect: Taint['effect'] = 'NoSchedule'): Taint => ({ key: 'dedicated', value, effect });
  const tol = (key: string, operator: Toleration['operator'], value: string, effect?: Toleration['effect']): Toleration => ({ key, operator, value, ...(effect === undefined ? {} : { effect }) });
  runFilterCases([
    { name: 'an instance without tolerations is kept off a NoSchedule taint', inst: instance(), nodes: tainted([dedicated('user1')]), want: { nodeA: 'TaintToleration' } },
    { name: 'a matching Equal toleration lets it onto the dedicated node', inst: instance({ tolerations: [tol('dedicated', 'Equal', 'user1', 'NoSchedule')] }), nodes: tainted([dedicated('user1')]), want: { nodeA: 'ok' } },
    { name: 'a toleration for another value does not', inst: instance({ tolerations: [tol('dedicated', 'Equal', 'user2', 'NoSchedule')] }), nodes: tainted([dedicated('user1')]), want: { nodeA: 'TaintToleration' } },
    { name: 'Exists tolerates any value of the key', inst: instance({ tolerations: [tol('foo', 'Exists', '', 'NoSchedule')] }), nodes: tainted([{ key: 'foo', value: 'bar', effect: 'NoSchedule' }]), want: { nodeA: 'ok' } },
    {
      name: 'several taints are all tolerated by several tolerations',
      inst: instance({ tolerations: [tol('dedicated', 'Equal', 'user2', 'NoSchedule'), tol('foo', 'Exists', '', 'NoSchedule')] }),
      nodes: tainted([dedicated('user2'), { key: 'foo', value: 'bar', effect: 'NoSchedule' }]),
      want: { nodeA: 'ok' },
    },
    { name: 'a toleration with another (non-empty) effect does not tolerate', inst: instance({ tolerations: [tol('foo', 'Equal', 'bar', 'PreferNoSchedule')] }), nodes: tainted([{ key: 'foo', value: 'bar', effect: 'NoSchedule' }]), want: { nodeA: 'TaintToleration' } },
    { name: 'a toleration with no effect tolerates every effect', inst: instance({ tolerations: [tol('foo', 'Equal', 'bar')] }), nodes: tainted([{ key: 'foo', value: 'bar', effect: 'NoSchedule' }]), want: { nodeA: 'ok' } },
    { name: 'PreferNoSchedule taints do not filter', inst: instance(), nodes: tainted([{ key: 'foo', value: 'bar', effect: 'PreferNoSchedule' }]), want: { nodeA: 'ok' } },
    { name: 'NoExecute taints filter like NoSchedule', inst: instance(), nodes: tainted([{ key: 'foo', value: 'bar', effect: 'NoExecute' }]), want: { nodeA: 'TaintToleration' } },
    { name: 'an empty key with Exists tolerates every taint', inst: instance({ tolerations: [tol('', 'Exists', '')] }), nodes: tainted([dedicated('x'), { key: 'y', value: '', effect: 'NoExecute' }]), want: { nodeA: 'ok' } },
  ]);
  it('a cordoned node is rejected by NodeUnschedulable before any taint is looked at', () => {
    assert.deepEqual(verdicts(instance(), [{ ...n('nodeA', {}, [dedicated('x')]), unschedulable: true }]), { nodeA: 'NodeUnschedulable' });
  });
  it('tolerating node.kubernetes.io/unschedulable lets an instance onto a cordoned node', () => {
    const inst = instance({ tolerations: [tol('node.kubernetes.io/unschedulable', 'Exists', '', 'NoSchedule')] });
    assert.deepEqual(verdicts(inst, [{ ...n('nodeA'), unschedulable: true }]), { nodeA: 'ok' });
  });
});

describe('kube-scheduler TaintToleration score', () => {
  const pns = (key: string, value: string): Taint => ({ key, value, effect: 'PreferNoSchedule' });
  it('a node whose taint is tolerated scores higher than one with an intolerable taint', () => {
    const inst = instance({ tolerations: [{ key: 'foo', operator: 'Equal', value: 'bar', effect: 'PreferNoSchedule' }] });
    assert.deepEqual(scores('TaintToleration', inst, [n('nodeA', {}, [pns('foo', 'bar')]), n('nodeB', {}, [pns('foo', 'blah')])]), { nodeA: 100, nodeB: 0 });
  });
  it('nodes whose taints are all tolerated score the same, however many they have', () => {
    const inst = instance({ tolerations: [{ key: 'foo', operator: 'Equal', value: 'bar', effect: 'PreferNoSchedule' }, { key: 'cpu-type', operator: 'Equal', value: 'arm64', effect: 'PreferNoSchedule' }] });
    assert.deepEqual(scores('TaintToleration', inst, [n('nodeA'), n('nodeB', {}, [pns('foo', 'bar')]), n('nodeC', {}, [pns('foo', 'bar'), pns('cpu-type', 'arm64')])]), { nodeA: 100, nodeB: 100, nodeC: 100 });
  });
  it('the more intolerable taints a node has, the lower it scores', () => {
    const inst = instance({ tolerations: [{ key: 'foo', operator: 'Equal', value: 'bar', effect: 'PreferNoSchedule' }] });
    assert.deepEqual(scores('TaintToleration', inst, [n('nodeA'), n('nodeB', {}, [pns('cpu-type', 'arm64')]), n('nodeC', {}, [pns('cpu-type', 'arm64'), pns('disk-type', 'ssd')])]), { nodeA: 100, nodeB: 50, nodeC: 0 });
  });
  it('only PreferNoSchedule taints and tolerations count for the score', () => {
    const inst = instance({ tolerations: [{ key: 'cpu-type', operator: 'Equal', value: 'arm64', effect: 'NoSchedule' }, { key: 'disk-type', operator: 'Equal', value: 'ssd' }] });
    const nodes = [n('nodeA'), n('nodeB', {}, [{ key: 'cpu-type', value: 'arm64', effect: 'NoSchedule' }]), n('nodeC', {}, [pns('cpu-type', 'arm64')])];
    assert.deepEqual(scores('TaintToleration', inst, nodes), { nodeA: 100, nodeB: 100, nodeC: 0 });
  });
  it('without tolerations the untainted node wins', () => {
    assert.deepEqual(scores('TaintToleration', instance(), [n('nodeA'), n('nodeB', {}, [pns('foo', 'bar')])]), { nodeA: 100, nodeB: 0 });
  });
});

describe('kube-scheduler PodTopologySpread filter (DoNotSchedule)', () => {
  const zones = (): PlacementNode[] => [n('node-a', { zone: 'zone1', node: 'node-a' }), n('node-b', { zone: 'zone1', node: 'node-b' }), n('node-x', { zone: 'zone2', node: 'node-x' }), n('node-y', { zone: 'zone2', node: 'node-y' })];
  const foo = { foo: '' };
  const onZone = (extra: Partial<TopologySpreadConstraint> = {}, maxSkew = 1): InstanceToPlace => instance({ labels: foo, topologySpreadConstraints: [spread(maxSkew, 'zone', 'DoNotSchedule', fooSelector, extra)] });
  const onNode = (maxSkew = 1, labels: Labels = foo): InstanceToPlace => instance({ labels, topologySpreadConstraints: [spread(maxSkew, 'node', 'DoNotSchedule', fooSelector)] });
  const spread2103 = (): Occupant[] => [pod('node-a', foo), pod('node-a', foo), pod('node-b', foo), pod('node-y', foo), pod('node-y', foo), pod('node-y', foo)];
  runFilterCases([
    { name: 'no existing pods: every node fits', inst: onZone(), nodes: zones(), want: { 'node-a': 'ok', 'node-b': 'ok', 'node-x': 'ok', 'node-y': 'ok' } },
    { name: 'an incoming pod that does not match itself fits everywhere', inst: instance({ topologySpreadConstraints: [spread(1, 'zone', 'DoNotSchedule', fooSelector)] }), nodes: zones(), occupants: [pod('node-a', foo)], want: { 'node-a': 'ok', 'node-b': 'ok', 'node-x': 'ok', 'node-y': 'ok' } },
    {
      name: 'existing pods in a different namespace do not count',
      inst: onZone(),
      nodes: zones(),
      occupants: [pod('node-a', foo, { namespace: 'ns1' }), pod('node-a', foo), pod('node-x', foo), pod('node-y', foo, { namespace: 'ns2' })],
      want: { 'node-a': 'ok', 'node-b': 'ok', 'node-x': 'ok', 'node-y': 'ok' },
    },
    {
      name: 'pods spread as 3/3 across zones: all nodes fit',
      inst: onZone(),
      nodes: zones(),
      occupants: [pod('node-a', foo), pod('node-a', foo), pod('node-b', foo), pod('node-x', foo), pod('node-y', foo), pod('node-y', foo)],
      want: { 'node-a': 'ok', 'node-b': 'ok', 'node-x': 'ok', 'node-y': 'ok' },
    },
    {
      name: 'a node without the zone label is not feasible, and its pods do not count',
      inst: onZone(),
      nodes: [n('node-a', { zone: 'zone1' }), n('node-b', { zon: 'zone1' }), n('node-x', { zone: 'zone2' }), n('node-y', { zone: 'zone2' })],
      occupants: [pod('node-a', foo), pod('node-b', foo), pod('node-x', foo), pod('node-y', foo), pod('node-y', foo)],
      want: { 'node-a': 'ok', 'node-b': 'PodTopologySpread', 'node-x': 'PodTopologySpread', 'node-y': 'PodTopologySpread' },
    },
    { name: 'no node has the topology key: none fits', inst: instance({ labels: foo, topologySpreadConstraints: [spread(1, 'rack', 'DoNotSchedule', fooSelector)] }), nodes: zones(), want: { 'node-a': 'PodTopologySpread', 'node-b': 'PodTopologySpread', 'node-x': 'PodTopologySpread', 'node-y': 'PodTopologySpread' } },
    { name: 'pods spread as 2/1/0/3 over nodes: only node-x fits', inst: onNode(), nodes: zones(), occupants: spread2103(), want: { 'node-a': 'PodTopologySpread', 'node-b': 'PodTopologySpread', 'node-x': 'ok', 'node-y': 'PodTopologySpread' } },
    { name: 'pods spread as 2/1/0/3 with maxSkew 2: node-b and node-x fit', inst: onNode(2), nodes: zones(), occupants: spread2103(), want: { 'node-a': 'PodTopologySpread', 'node-b': 'ok', 'node-x': 'ok', 'node-y': 'PodTopologySpread' } },
    { name: 'pods spread as 2/1/0/3 and the pod does not match itself: node-b and node-x fit', inst: onNode(1, { bar: '' }), nodes: zones(), occupants: spread2103(), want: { 'node-a': 'PodTopologySpread', 'node-b': 'ok', 'node-x': 'ok', 'node-y': 'PodTopologySpread' } },
    {
      name: 'terminating pods are not counted',
      inst: onNode(),
      nodes: zones().slice(0, 2),
      occupants: [pod('node-a', foo, { terminating: true }), pod('node-b', foo)],
      want: { 'node-a': 'ok', 'node-b': 'PodTopologySpread' },
    },
    {
      name: 'fewer domains than minDomains make the global minimum 0',
      inst: onZone({ minDomains: 3 }, 2),
      nodes: zones(),
      occupants: [pod('node-a', foo), pod('node-b', foo), pod('node-x', foo)],
      want: { 'node-a': 'PodTopologySpread', 'node-b': 'PodTopologySpread', 'node-x': 'ok', 'node-y': 'ok' },
    },
    {
      name: 'with as many domains as minDomains the real minimum applies',
      inst: onZone({ minDomains: 2 }, 2),
      nodes: zones(),
      occupants: [pod('node-a', foo), pod('node-b', foo), pod('node-x', foo)],
      want: { 'node-a': 'ok', 'node-b': 'ok', 'node-x': 'ok', 'node-y': 'ok' },
    },
    {
      name: 'nodeAffinityPolicy Honor leaves domains the pod cannot use out of the minimum',
      inst: instance({ labels: foo, affinity: requiredNodeAffinity([expr('zone', 'NotIn', ['zone3'])]), topologySpreadConstraints: [spread(1, 'zone', 'DoNotSchedule', fooSelector)] }),
      nodes: [...zones(), n('node-z', { zone: 'zone3', node: 'node-z' })],
      occupants: [pod('node-a', foo), pod('node-x', foo)],
      want: { 'node-a': 'ok', 'node-b': 'ok', 'node-x': 'ok', 'node-y': 'ok', 'node-z': 'NodeAffinity' },
    },
    {
      name: 'nodeAffinityPolicy Ignore counts the empty domain the pod cannot use',
      inst: instance({ labels: foo, affinity: requiredNodeAffinity([expr('zone', 'NotIn', ['zone3'])]), topologySpreadConstraints: [spread(1, 'zone', 'DoNotSchedule', fooSelector, { nodeAffinityPolicy: 'Ignore' })] }),
      nodes: [...zones(), n('node-z', { zone: 'zone3', node: 'node-z' })],
      occupants: [pod('node-a', foo), pod('node-x', foo)],
      want: { 'node-a': 'PodTopologySpread', 'node-b': 'PodTopologySpread', 'node-x': 'PodTopologySpread', 'node-y': 'PodTopologySpread', 'node-z': 'NodeAffinity' },
    },
    {
      name: 'nodeTaintsPolicy Honor leaves a tainted empty domain out of the minimum',
      inst: instance({ labels: foo, topologySpreadConstraints: [spread(1, 'zone', 'DoNotSchedule', fooSelector, { nodeTaintsPolicy: 'Honor' })] }),
      nodes: [n('node-a', { zone: 'zone1' }), n('node-x', { zone: 'zone2' }), n('node-z', { zone: 'zone3' }, [FAILED])],
      occupants: [pod('node-a', foo), pod('node-x', foo)],
      want: { 'node-a': 'ok', 'node-x': 'ok', 'node-z': 'TaintToleration' },
    },
    {
      name: 'nodeTaintsPolicy Ignore (the default) counts the tainted empty domain',
      inst: instance({ labels: foo, topologySpreadConstraints: [spread(1, 'zone', 'DoNotSchedule', fooSelector)] }),
      nodes: [n('node-a', { zone: 'zone1' }), n('node-x', { zone: 'zone2' }), n('node-z', { zone: 'zone3' }, [FAILED])],
      occupants: [pod('node-a', foo), pod('node-x', foo)],
      want: { 'node-a': 'PodTopologySpread', 'node-x': 'PodTopologySpread', 'node-z': 'TaintToleration' },
    },
    {
      name: 'matchLabelKeys narrows the selector to pods with the same value (another revision does not count)',
      inst: instance({ labels: { foo: '', rev: '2' }, topologySpreadConstraints: [spread(1, 'zone', 'DoNotSchedule', fooSelector, { matchLabelKeys: ['rev'] })] }),
      nodes: zones(),
      occupants: [pod('node-a', { foo: '', rev: '1' }), pod('node-b', { foo: '', rev: '1' }), pod('node-x', { foo: '', rev: '2' })],
      want: { 'node-a': 'ok', 'node-b': 'ok', 'node-x': 'PodTopologySpread', 'node-y': 'PodTopologySpread' },
    },
    {
      name: 'two constraints must both hold: zone spread 1/2 and node spread 1/0/2/0 leave node-b',
      inst: instance({ labels: foo, topologySpreadConstraints: [spread(1, 'zone', 'DoNotSchedule', fooSelector), spread(1, 'node', 'DoNotSchedule', fooSelector)] }),
      nodes: zones(),
      occupants: [pod('node-a', foo), pod('node-x', foo), pod('node-x', foo)],
      want: { 'node-a': 'PodTopologySpread', 'node-b': 'ok', 'node-x': 'PodTopologySpread', 'node-y': 'PodTopologySpread' },
    },
  ]);

  it('the rejection says which domain would have which skew', () => {
    const result = placeInstances({ nodes: zones(), occupants: spread2103(), instances: [onNode()] });
    const a = result.placements[0]?.nodes.find((v) => v.node === 'node-a');
    assert.equal(a?.reason, 'node=node-a would have skew 3 > maxSkew 1');
  });
});

describe('kube-scheduler PodTopologySpread score (ScheduleAnyway)', () => {
  const HOST = 'kubernetes.io/hostname';
  const host = (name: string, extra: Labels = {}): PlacementNode => n(name, { [HOST]: name, ...extra });
  const foo = { foo: '' };
  const many = (node: string, count: number, labels: Labels = foo): Occupant[] => Array.from({ length: count }, () => pod(node, labels));
  const onHost = (maxSkew = 1, sel: LabelSelector | null = fooSelector): InstanceToPlace => instance({ labels: foo, topologySpreadConstraints: [spread(maxSkew, HOST, 'ScheduleAnyway', sel ?? undefined)] });
  const fourHosts = (): PlacementNode[] => ['node-a', 'node-b', 'node-c', 'node-d'].map((x) => host(x));
  it('one constraint on hostname, no existing pods: every node scores 100', () => {
    assert.deepEqual(scores('PodTopologySpread', onHost(), [host('node-a'), host('node-b')]), { 'node-a': 100, 'node-b': 100 });
  });
  it('one constraint on hostname, only one candidate: it scores 100', () => {
    assert.deepEqual(scores('PodTopologySpread', onHost(), [host('node-a'), failed('node-b', { [HOST]: 'node-b' })], [...many('node-a', 2), ...many('node-b', 1)]), { 'node-a': 100 });
  });
  it('one constraint on hostname, pods spread as 2/1/0/3: 20/60/100/0', () => {
    const occupants = [...many('node-a', 2), ...many('node-b', 1), ...many('node-d', 3)];
    assert.deepEqual(scores('PodTopologySpread', onHost(), fourHosts(), occupants), { 'node-a': 20, 'node-b': 60, 'node-c': 100, 'node-d': 0 });
  });
  it('one constraint on hostname with a nil selector: every node scores 100', () => {
    const occupants = [...many('node-a', 2), ...many('node-b', 1), ...many('node-d', 3)];
    assert.deepEqual(scores('PodTopologySpread', onHost(1, null), fourHosts(), occupants), { 'node-a': 100, 'node-b': 100, 'node-c': 100, 'node-d': 100 });
  });
  it('pods spread as 2/1/0/3 with maxSkew 2: 33/66/100/16', () => {
    const occupants = [...many('node-a', 2), ...many('node-b', 1), ...many('node-d', 3)];
    assert.deepEqual(scores('PodTopologySpread', onHost(2), fourHosts(), occupants), { 'node-a': 33, 'node-b': 66, 'node-c': 100, 'node-d': 16 });
  });
  it('pods spread as 4/3/2/1 with maxSkew 3: 44/66/77/100', () => {
    const occupants = [...many('node-a', 4), ...many('node-b', 3), ...many('node-c', 2), ...many('node-d', 1)];
    assert.deepEqual(scores('PodTopologySpread', onHost(3), fourHosts(), occupants), { 'node-a': 44, 'node-b': 66, 'node-c': 77, 'node-d': 100 });
  });
  it('pods spread as 4/2/1/~3~ (node-y not a candidate): 33/83/100', () => {
    const occupants = [...many('node-a', 4), ...many('node-b', 2), ...many('node-x', 1), ...many('node-y', 3)];
    assert.deepEqual(scores('PodTopologySpread', onHost(), [host('node-a'), host('node-b'), host('node-x'), failed('node-y', { [HOST]: 'node-y' })], occupants), { 'node-a': 33, 'node-b': 83, 'node-x': 100 });
  });
  it('a candidate without the topology key scores 0 and the others are normalized without it: 16/0/100', () => {
    const occupants = [...many('node-a', 4), ...many('node-b', 2), ...many('node-x', 1), ...many('node-y', 3)];
    const nodes = [host('node-a'), n('node-b', { n: 'node-b' }), host('node-x'), failed('node-y', { [HOST]: 'node-y' })];
    assert.deepEqual(scores('PodTopologySpread', onHost(), nodes, occupants), { 'node-a': 16, 'node-b': 0, 'node-x': 100 });
  });
  it('one constraint on zone with pods spread as 4/2/1/~3~: 75/75/100', () => {
    const occupants = [...many('node-a', 4), ...many('node-b', 2), ...many('node-x', 1), ...many('node-y', 3)];
    const inst = instance({ labels: foo, topologySpreadConstraints: [spread(1, 'zone', 'ScheduleAnyway', fooSelector)] });
    const nodes = [host('node-a', { zone: 'zone1' }), host('node-b', { zone: 'zone1' }), host('node-x', { zone: 'zone2' }), failed('node-y', { [HOST]: 'node-y', zone: 'zone2' })];
    assert.deepEqual(scores('PodTopologySpread', inst, nodes, occupants), { 'node-a': 75, 'node-b': 75, 'node-x': 100 });
  });
  it('two constraints on zone and hostname, 2 of 4 nodes candidates (2/~1~/2/~4~): 100/63', () => {
    const occupants = [...many('node-a', 2), ...many('node-b', 1), ...many('node-x', 2), ...many('node-y', 4)];
    const inst = instance({ labels: foo, topologySpreadConstraints: [spread(1, 'zone', 'ScheduleAnyway', fooSelector), spread(1, HOST, 'ScheduleAnyway', fooSelector)] });
    const nodes = [host('node-a', { zone: 'zone1' }), host('node-x', { zone: 'zone2' }), failed('node-b', { [HOST]: 'node-b', zone: 'zone1' }), failed('node-y', { [HOST]: 'node-y', zone: 'zone2' })];
    assert.deepEqual(scores('PodTopologySpread', inst, nodes, occupants), { 'node-a': 100, 'node-x': 63 });
  });
  it('two constraints with different selectors: 60/20/100/60', () => {
    const occupants = [pod('node-a', { foo: '' }), pod('node-b', { foo: '', bar: '' }), pod('node-y', { foo: '' }), pod('node-y', { bar: '' })];
    const inst = instance({ labels: { foo: '', bar: '' }, topologySpreadConstraints: [spread(1, 'zone', 'ScheduleAnyway', fooSelector), spread(1, HOST, 'ScheduleAnyway', barSelector)] });
    const nodes = [host('node-a', { zone: 'zone1' }), host('node-b', { zone: 'zone1' }), host('node-x', { zone: 'zone2' }), host('node-y', { zone: 'zone2' })];
    assert.deepEqual(scores('PodTopologySpread', inst, nodes, occupants), { 'node-a': 60, 'node-b': 20, 'node-x': 100, 'node-y': 60 });
  });
  it('two constraints with different selectors, some nodes with no pods: 100/60/40/0', () => {
    const occupants = [pod('node-b', { bar: '' }), pod('node-x', { foo: '' }), pod('node-y', { foo: '', bar: '' })];
    const inst = instance({ labels: { foo: '', bar: '' }, topologySpreadConstraints: [spread(1, 'zone', 'ScheduleAnyway', fooSelector), spread(1, HOST, 'ScheduleAnyway', barSelector)] });
    const nodes = [host('node-a', { zone: 'zone1' }), host('node-b', { zone: 'zone1' }), host('node-x', { zone: 'zone2' }), host('node-y', { zone: 'zone2' })];
    assert.deepEqual(scores('PodTopologySpread', inst, nodes, occupants), { 'node-a': 100, 'node-b': 60, 'node-x': 40, 'node-y': 0 });
  });
  it('two constraints with different selectors, 3 of 4 candidates: 50/25/100', () => {
    const occupants = [pod('node-a', { foo: '' }), pod('node-b', { foo: '', bar: '' }), pod('node-y', { foo: '' }), pod('node-y', { bar: '' })];
    const inst = instance({ labels: { foo: '', bar: '' }, topologySpreadConstraints: [spread(1, 'zone', 'ScheduleAnyway', fooSelector), spread(1, HOST, 'ScheduleAnyway', barSelector)] });
    const nodes = [host('node-a', { zone: 'zone1' }), host('node-b', { zone: 'zone1' }), host('node-x', { zone: 'zone2' }), failed('node-y', { [HOST]: 'node-y', zone: 'zone2' })];
    assert.deepEqual(scores('PodTopologySpread', inst, nodes, occupants), { 'node-a': 50, 'node-b': 25, 'node-x': 100 });
  });
  it('existing pods in a different namespace do not count: 100/33', () => {
    const occupants = [pod('node-a', foo, { namespace: 'ns1' }), pod('node-a', foo), pod('node-b', foo), pod('node-b', foo)];
    assert.deepEqual(scores('PodTopologySpread', onHost(), [host('node-a'), host('node-b')], occupants), { 'node-a': 100, 'node-b': 33 });
  });
  it('terminating pods are excluded: 100/0', () => {
    const occupants = [pod('node-a', foo, { terminating: true }), pod('node-b', foo)];
    assert.deepEqual(scores('PodTopologySpread', onHost(), [host('node-a'), host('node-b')], occupants), { 'node-a': 100, 'node-b': 0 });
  });
  it('NodeTaintsPolicy Ignore counts a tainted candidate\'s pods in its zone domain', () => {
    // Not a Go case: a tolerated PreferNoSchedule taint keeps the node a candidate either way.
    const inst = instance({ labels: foo, topologySpreadConstraints: [spread(1, 'zone', 'ScheduleAnyway', fooSelector)] });
    const nodes = [host('node-a', { zone: 'zone1' }), host('node-x', { zone: 'zone2' })];
    assert.deepEqual(scores('PodTopologySpread', inst, nodes, [pod('node-a', foo)]), { 'node-a': 0, 'node-x': 100 });
  });
});

describe('kube-scheduler InterPodAffinity filter', () => {
  const nodes = (): PlacementNode[] => [n('node1', { region: 'r1', zone: 'z11', hostname: 'node1' })];
  const term = (sel: LabelSelector | undefined, topologyKey: string, extra: { namespaces?: string[]; namespaceSelector?: LabelSelector } = {}) => ({
    ...(sel === undefined ? {} : { labelSelector: sel }),
    namespaces: extra.namespaces ?? [],
    ...(extra.namespaceSelector === undefined ? {} : { namespaceSelector: extra.namespaceSelector }),
    topologyKey,
  });
  const inSel = (key: string, ...values: string[]): LabelSelector => ({ matchLabels: {}, matchExpressions: [{ key, operator: 'In', values }] });
  const affinityTo = (...required: ReturnType<typeof term>[]): Affinity => ({ podAffinity: { required, preferred: [] } });
  const antiTo = (...required: ReturnType<typeof term>[]): Affinity => ({ podAntiAffinity: { required, preferred: [] } });
  const scan = { service: 'securityscan' };
  runFilterCases([
    { name: 'a pod without pod affinity schedules onto a node with no pods', inst: instance(), nodes: nodes(), want: { node1: 'ok' } },
    { name: 'required affinity with In is satisfied by an existing pod in the region', inst: instance({ affinity: affinityTo(term(inSel('service', 'securityscan', 'value2'), 'region')) }), nodes: nodes(), occupants: [pod('node1', scan)], want: { node1: 'ok' } },
    {
      name: 'required affinity with NotIn is satisfied by an existing pod in the region',
      inst: instance({ affinity: affinityTo(term({ matchLabels: {}, matchExpressions: [{ key: 'service', operator: 'NotIn', values: ['securityscan3', 'value3'] }] }, 'region')) }),
      nodes: nodes(),
      occupants: [pod('node1', scan)],
      want: { node1: 'ok' },
    },
    {
      name: 'required affinity restricted to another namespace is not satisfied',
      inst: instance({ affinity: affinityTo(term(inSel('service', 'securityscan', 'value2'), 'region', { namespaces: ['DiffNameSpace'] })) }),
      nodes: nodes(),
      occupants: [pod('node1', scan, { namespace: 'ns' })],
      want: { node1: 'InterPodAffinity' },
    },
    { name: 'required affinity whose selector matches no existing pod is not satisfied', inst: instance({ affinity: affinityTo(term(inSel('service', 'antivirusscan', 'value2'), 'region')) }), nodes: nodes(), occupants: [pod('node1', scan)], want: { node1: 'InterPodAffinity' } },
    {
      name: 'several required affinity terms must all be satisfied',
      inst: instance({ affinity: affinityTo(term(inSel('service', 'securityscan', 'value2'), 'region'), term({ matchLabels: {}, matchExpressions: [{ key: 'service', operator: 'Exists', values: [] }, { key: 'wrongkey', operator: 'DoesNotExist', values: [] }] }, 'region')) }),
      nodes: nodes(),
      occupants: [pod('node1', scan)],
      want: { node1: 'ok' },
    },
    {
      name: 'affinity satisfied but the pod anti-affinity is not',
      inst: instance({ affinity: { ...affinityTo(term(inSel('service', 'securityscan', 'value2'), 'region')), ...antiTo(term(inSel('service', 'securityscan'), 'zone')) } }),
      nodes: nodes(),
      occupants: [pod('node1', scan)],
      want: { node1: 'InterPodAffinity' },
    },
    {
      name: 'affinity and anti-affinity satisfied, but an existing pod\'s anti-affinity (symmetry) is not',
      inst: instance({ labels: { service: 'frontend' }, affinity: { ...affinityTo(term(inSel('service', 'securityscan', 'value2'), 'region')), ...antiTo(term(inSel('service', 'antivirusscan'), 'zone')) } }),
      nodes: nodes(),
      occupants: [pod('node1', scan, { affinity: antiTo(term(inSel('service', 'frontend'), 'zone')) })],
      want: { node1: 'InterPodAffinity' },
    },
    {
      name: 'an existing pod\'s anti-affinity holds even when the incoming pod has no affinity',
      inst: instance({ labels: { service: 'frontend' } }),
      nodes: nodes(),
      occupants: [pod('node1', scan, { affinity: antiTo(term(inSel('service', 'frontend'), 'hostname')) })],
      want: { node1: 'InterPodAffinity' },
    },
    {
      name: 'an existing pod\'s anti-affinity on a key the node lacks does not apply',
      inst: instance({ labels: { service: 'frontend' } }),
      nodes: nodes(),
      occupants: [pod('node1', scan, { affinity: antiTo(term(inSel('service', 'frontend'), 'rack')) })],
      want: { node1: 'ok' },
    },
    {
      name: 'the first pod of a group with affinity to itself may schedule anywhere',
      inst: instance({ labels: scan, affinity: affinityTo(term(inSel('service', 'securityscan'), 'region')) }),
      nodes: nodes(),
      want: { node1: 'ok' },
    },
    {
      name: 'a pod with affinity to itself waits if another matching pod exists elsewhere',
      inst: instance({ labels: scan, affinity: affinityTo(term(inSel('service', 'securityscan'), 'region')) }),
      nodes: [...nodes(), n('node2', { region: 'r2' })],
      occupants: [pod('node2', scan)],
      want: { node1: 'InterPodAffinity', node2: 'ok' },
    },
    {
      name: 'a node without the affinity topology key is rejected',
      inst: instance({ labels: scan, affinity: affinityTo(term(inSel('service', 'securityscan'), 'rack')) }),
      nodes: nodes(),
      want: { node1: 'InterPodAffinity' },
    },
    {
      name: 'a nil label selector selects no pod, so required affinity to it cannot be met',
      inst: instance({ affinity: affinityTo(term(undefined, 'region')) }),
      nodes: nodes(),
      occupants: [pod('node1', scan)],
      want: { node1: 'InterPodAffinity' },
    },
    {
      name: 'a namespaceSelector {} selects every namespace',
      inst: instance({ affinity: affinityTo(term(inSel('service', 'securityscan'), 'region', { namespaceSelector: { matchLabels: {}, matchExpressions: [] } })) }),
      nodes: nodes(),
      occupants: [pod('node1', scan, { namespace: 'other' })],
      want: { node1: 'ok' },
    },
    {
      name: 'a namespaceSelector on kubernetes.io/metadata.name selects that namespace',
      inst: instance({ affinity: antiTo(term(inSel('service', 'securityscan'), 'region', { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'other' }, matchExpressions: [] } })) }),
      nodes: nodes(),
      occupants: [pod('node1', scan, { namespace: 'other' })],
      want: { node1: 'InterPodAffinity' },
    },
  ]);

  it('anti-affinity is per topology domain: another host in the same zone is fine for a hostname term', () => {
    const hosts = [n('h1', { 'kubernetes.io/hostname': 'h1', zone: 'a' }), n('h2', { 'kubernetes.io/hostname': 'h2', zone: 'a' })];
    const inst = instance({ labels: scan, affinity: antiTo(term(inSel('service', 'securityscan'), 'kubernetes.io/hostname')) });
    assert.deepEqual(verdicts(inst, hosts, [pod('h1', scan)]), { h1: 'InterPodAffinity', h2: 'ok' });
  });

  it('namespaceSelector uses the labels given for namespaces', () => {
    const inst = instance({ affinity: antiTo(term(inSel('service', 'securityscan'), 'region', { namespaceSelector: { matchLabels: { team: 'team1' }, matchExpressions: [] } })) });
    const result = placeInstances({ nodes: nodes(), occupants: [pod('node1', scan, { namespace: 'subteam1' })], instances: [inst], namespaceLabels: { subteam1: { team: 'team1' } } });
    assert.equal(result.placements[0]?.node, null);
  });
});

describe('kube-scheduler InterPodAffinity score', () => {
  const S1 = { security: 'S1' };
  const S2 = { security: 'S2' };
  const china = { region: 'China' };
  const india = { region: 'India' };
  const az1 = { az: 'az1' };
  const az2 = { az: 'az2' };
  const preferredTerm = (weight: number, values: string[], topologyKey: string, extra: { namespaces?: string[]; namespaceSelector?: LabelSelector } = {}) => ({
    weight,
    podAffinityTerm: { labelSelector: { matchLabels: {}, matchExpressions: [{ key: 'security', operator: 'In' as const, values }] }, namespaces: extra.namespaces ?? [], ...(extra.namespaceSelector === undefined ? {} : { namespaceSelector: extra.namespaceSelector }), topologyKey },
  });
  const stayWithS1InRegion: Affinity = { podAffinity: { required: [], preferred: [preferredTerm(5, ['S1'], 'region')] } };
  const stayWithS2InRegion: Affinity = { podAffinity: { required: [], preferred: [preferredTerm(6, ['S2'], 'region')] } };
  const awayFromS1InAz: Affinity = { podAntiAffinity: { required: [], preferred: [preferredTerm(5, ['S1'], 'az')] } };
  const awayFromS2InAz: Affinity = { podAntiAffinity: { required: [], preferred: [preferredTerm(5, ['S2'], 'az')] } };
  const hardAffinity: Affinity = {
    podAffinity: {
      required: [
        { labelSelector: { matchLabels: {}, matchExpressions: [{ key: 'security', operator: 'In', values: ['S1', 'value2'] }] }, namespaces: [], topologyKey: 'region' },
        { labelSelector: { matchLabels: {}, matchExpressions: [exists('security'), { key: 'wrongkey', operator: 'DoesNotExist', values: [] }] }, namespaces: [], topologyKey: 'region' },
      ],
      preferred: [],
    },
  };
  const teamSelector: LabelSelector = { matchLabels: {}, matchExpressions: [{ key: 'team', operator: 'In', values: ['team1'] }] };
  const namespaces = { 'subteam1.team1': { team: 'team1' }, 'subteam2.team1': { team: 'team1' }, 'subteam1.team2': { team: 'team2' }, 'subteam2.team2': { team: 'team2' } };
  const three = (): PlacementNode[] => [n('node1', china), n('node2', india), n('node3', az1)];

  it('without any affinity every node scores 0', () => {
    assert.deepEqual(scores('InterPodAffinity', instance({ labels: S1 }), three()), { node1: 0, node2: 0, node3: 0 });
  });
  it('preferred affinity: the node in the topology of a matching pod gets 100', () => {
    const occupants = [pod('node1', S1), pod('node2', S2), pod('node3', S1)];
    assert.deepEqual(scores('InterPodAffinity', instance({ labels: S1, affinity: stayWithS1InRegion }), three(), occupants), { node1: 100, node2: 0, node3: 0 });
  });
  it('every node in the same domain as a matching pod gets the same score', () => {
    const nodes = [n('node1', china), n('node2', { ...china, ...az1 }), n('node3', india)];
    assert.deepEqual(scores('InterPodAffinity', instance({ affinity: stayWithS1InRegion }), nodes, [pod('node1', S1)]), { node1: 100, node2: 100, node3: 0 });
  });
  it('the region with more matching pods scores higher', () => {
    const nodes = [n('node1', china), n('node2', india), n('node3', china), n('node4', china), n('node5', india)];
    const occupants = [pod('node1', S2), pod('node1', S2), pod('node2', S2), pod('node3', S2), pod('node4', S2), pod('node5', S2)];
    assert.deepEqual(scores('InterPodAffinity', instance({ labels: S1, affinity: stayWithS2InRegion }), nodes, occupants), { node1: 100, node2: 0, node3: 100, node4: 100, node5: 0 });
  });
  it('symmetry: an existing pod\'s preferred affinity for the incoming pod attracts it', () => {
    const occupants = [pod('node1', S1, { affinity: stayWithS1InRegion }), pod('node2', S2, { affinity: stayWithS2InRegion })];
    assert.deepEqual(scores('InterPodAffinity', instance({ labels: S2 }), three(), occupants), { node1: 0, node2: 100, node3: 0 });
  });
  it('symmetry with a namespaceSelector: the existing pod selects the incoming pod\'s namespace by label', () => {
    const affinityNamespaceSelector: Affinity = { podAffinity: { required: [], preferred: [preferredTerm(5, ['S1'], 'region', { namespaces: ['subteam2.team2'], namespaceSelector: teamSelector })] } };
    const occupants = [pod('node1', S1, { affinity: affinityNamespaceSelector }), pod('node2', S2, { affinity: stayWithS2InRegion })];
    assert.deepEqual(scores('InterPodAffinity', instance({ namespace: 'subteam1.team1', labels: S1 }), three(), occupants, namespaces), { node1: 100, node2: 0, node3: 0 });
  });
  it('anti-affinity symmetry with a namespaceSelector pushes the incoming pod away', () => {
    const antiAffinityNamespaceSelector: Affinity = { podAntiAffinity: { required: [], preferred: [preferredTerm(5, ['S1'], 'region', { namespaces: ['subteam2.team2'], namespaceSelector: teamSelector })] } };
    const occupants = [pod('node1', S1, { affinity: antiAffinityNamespaceSelector }), pod('node2', S2, { affinity: stayWithS2InRegion })];
    assert.deepEqual(scores('InterPodAffinity', instance({ namespace: 'subteam1.team1', labels: S1 }), three(), occupants, namespaces), { node1: 0, node2: 100, node3: 100 });
  });
  it('symmetry: existing pods\' required affinity attracts with hardPodAffinityWeight 1', () => {
    const occupants = [pod('node1', S1, { affinity: hardAffinity }), pod('node2', S2, { affinity: hardAffinity })];
    assert.deepEqual(scores('InterPodAffinity', instance({ labels: S1 }), three(), occupants), { node1: 100, node2: 100, node3: 0 });
  });
  it('preferred anti-affinity: the node without matching pods gets 100', () => {
    const occupants = [pod('node1', S1), pod('node2', S2)];
    assert.deepEqual(scores('InterPodAffinity', instance({ labels: S1, affinity: awayFromS1InAz }), [n('node1', az1), n('node2', china)], occupants), { node1: 0, node2: 100 });
  });
  it('preferred anti-affinity: a node without the topology key is not pushed away', () => {
    const occupants = [pod('node1', S1), pod('node2', S1)];
    assert.deepEqual(scores('InterPodAffinity', instance({ labels: S1, affinity: awayFromS1InAz }), [n('node1', az1), n('node2', china)], occupants), { node1: 0, node2: 100 });
  });
  it('anti-affinity symmetry: the node whose pod dislikes the incoming pod scores 0', () => {
    const occupants = [pod('node1', S1, { affinity: awayFromS2InAz }), pod('node2', S2, { affinity: awayFromS1InAz })];
    assert.deepEqual(scores('InterPodAffinity', instance({ labels: S2 }), [n('node1', az1), n('node2', az2)], occupants), { node1: 0, node2: 100 });
  });
});
