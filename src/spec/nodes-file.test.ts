import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSpecError, parseNodesFile } from './index.js';

function reject(text: string): string[] {
  const r = parseNodesFile(text, 'nodes.yaml');
  if (r.ok) assert.fail('expected errors, the nodes file parsed');
  return r.errors.map(formatSpecError);
}

describe('nodes file', () => {
  it('nodes get kubernetes.io/hostname unless their labels give one, and occupants default to namespace default', () => {
    const r = parseNodesFile(
      `nodes:
  - name: node1
    labels: { my-node-label: one, topology.kubernetes.io/zone: a }
    taints: [ { key: node.kubernetes.io/unschedulable, effect: NoSchedule } ]
  - name: node2
    labels: { kubernetes.io/hostname: host-2 }
    unschedulable: true
occupants:
  - { name: web-1, node: node1, labels: { app: web }, terminating: true }
namespaces:
  - { name: team-a, labels: { team: a } }
`,
      'nodes.yaml',
    );
    if (!r.ok) assert.fail(r.errors.map(formatSpecError).join('\n'));
    assert.deepEqual(r.file.nodes, [
      { name: 'node1', labels: { 'my-node-label': 'one', 'topology.kubernetes.io/zone': 'a', 'kubernetes.io/hostname': 'node1' }, taints: [{ key: 'node.kubernetes.io/unschedulable', value: '', effect: 'NoSchedule' }], unschedulable: false },
      { name: 'node2', labels: { 'kubernetes.io/hostname': 'host-2' }, taints: [], unschedulable: true },
    ]);
    assert.deepEqual(r.file.occupants, [{ name: 'web-1', node: 'node1', namespace: 'default', labels: { app: 'web' }, terminating: true }]);
    assert.deepEqual(r.file.namespaceLabels, { 'team-a': { team: 'a' } });
  });

  it('an occupant on a node that is not listed is an error at its node field', () => {
    assert.deepEqual(reject('nodes:\n  - name: node1\noccupants:\n  - { name: web-1, node: node9 }\n'), ['nodes.yaml:4:20: occupants[0].node: node "node9" is not in the list of nodes']);
  });

  it('duplicate node names are an error at the second one', () => {
    assert.deepEqual(reject('nodes:\n  - name: node1\n  - name: node1\n'), ['nodes.yaml:3:5: nodes[1]: duplicate node name "node1"']);
  });

  it('a missing nodes list, a node without a name and a taint without an effect are all reported', () => {
    assert.deepEqual(reject('occupants: []\n'), ['nodes.yaml:1:1: nodes: required: the list of nodes, e.g. "nodes: [{ name: node1, labels: { topology.kubernetes.io/zone: a } }]"']);
    assert.deepEqual(reject('nodes:\n  - labels: { a: b }\n    taints: [ { key: x } ]\n'), ['nodes.yaml:2:5: nodes[0].name: required: the node name', 'nodes.yaml:3:15: nodes[0].taints[0].effect: required: one of NoSchedule, PreferNoSchedule, NoExecute']);
  });

  it('an unknown field suggests the known one', () => {
    assert.deepEqual(reject('nodes:\n  - name: node1\n    lables: { a: b }\n'), ['nodes.yaml:3:5: nodes[0].lables: unknown field "lables"; did you mean "labels"?']);
  });
});
