import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSpecError, parseClusterSpec } from './index.js';

const header = `apiVersion: warden.dev/v1
kind: Cluster
metadata:
  name: demo
spec:
  instances:
    - name: db
      replicas: 3
`;

/** The spec with `fields` appended under the instance set (indented by 6). */
function withSet(fields: string): string {
  return `${header}${fields
    .split('\n')
    .map((l) => (l === '' ? l : `      ${l}`))
    .join('\n')}\n`;
}

describe('cluster spec: scheduling fields are read into the spec', () => {
  it('affinity, tolerations, spread constraints and labels of an instance set come out typed, with placement-only notices', () => {
    const r = parseClusterSpec(
      `${withSet(`metadata:
  labels: { team: payments }
  annotations: { a: b }
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{ key: disk, operator: In, values: [ssd] }, { key: cores, operator: Gt, values: ["4"] }]
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 10
        preference: { matchExpressions: [{ key: zone, operator: NotIn, values: [c] }] }
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector: { matchLabels: { warden.dev/cluster: demo } }
tolerations:
  - { key: dedicated, operator: Equal, value: db, effect: NoSchedule }
  - { operator: Exists }
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    minDomains: 3
    nodeTaintsPolicy: Honor
    matchLabelKeys: [warden.dev/instance-set]
    labelSelector: { matchExpressions: [{ key: warden.dev/data, operator: Exists }] }`)}  disableDefaultPodScheduling: true\n`,
      'cluster.yaml',
    );
    if (!r.ok) assert.fail(r.errors.map(formatSpecError).join('\n'));
    const set = r.spec.instanceSets[0];
    assert.equal(r.spec.disableDefaultPodScheduling, true);
    assert.equal(r.spec.namespace, 'default');
    assert.deepEqual(set?.labels, { team: 'payments' });
    assert.deepEqual(set?.affinity?.nodeAffinity?.required, [
      {
        matchExpressions: [
          { key: 'disk', operator: 'In', values: ['ssd'] },
          { key: 'cores', operator: 'Gt', values: ['4'] },
        ],
        matchFields: [],
      },
    ]);
    assert.equal(set?.affinity?.nodeAffinity?.preferred[0]?.weight, 10);
    assert.deepEqual(set?.affinity?.podAntiAffinity?.required, [
      { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { 'warden.dev/cluster': 'demo' }, matchExpressions: [] }, namespaces: [] },
    ]);
    assert.deepEqual(set?.tolerations, [
      { key: 'dedicated', operator: 'Equal', value: 'db', effect: 'NoSchedule' },
      { key: '', operator: 'Exists', value: '' },
    ]);
    assert.deepEqual(set?.topologySpreadConstraints, [
      {
        maxSkew: 1,
        topologyKey: 'topology.kubernetes.io/zone',
        whenUnsatisfiable: 'DoNotSchedule',
        minDomains: 3,
        nodeTaintsPolicy: 'Honor',
        matchLabelKeys: ['warden.dev/instance-set'],
        labelSelector: { matchLabels: {}, matchExpressions: [{ key: 'warden.dev/data', operator: 'Exists', values: [] }] },
      },
    ]);
    assert.deepEqual(r.notices.map(formatSpecError), [
      'cluster.yaml:10:9: spec.instances[0].metadata.labels: used by `warden plan` for placement; not applied in the local runtime',
      'cluster.yaml:11:9: spec.instances[0].metadata.annotations: not applied in the local runtime',
      'cluster.yaml:12:7: spec.instances[0].affinity: used by `warden plan` for placement; not applied in the local runtime',
      'cluster.yaml:24:7: spec.instances[0].tolerations: used by `warden plan` for placement; not applied in the local runtime',
      'cluster.yaml:27:7: spec.instances[0].topologySpreadConstraints: used by `warden plan` for placement; not applied in the local runtime',
      'cluster.yaml:35:3: spec.disableDefaultPodScheduling: used by `warden plan` for placement; not applied in the local runtime',
    ]);
  });
});

/** Each case: the instance-set fields, and the first error as file:line:col: field, plus its message. */
const errorCases: { name: string; fields: string; at: string; message: RegExp }[] = [
  {
    name: 'an unknown operator in a node selector lists the operators',
    fields: `affinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n      nodeSelectorTerms:\n        - matchExpressions:\n            - { key: disk, operator: Equals, values: [ssd] }`,
    at: 'cluster.yaml:14:34: spec.instances[0].affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator',
    message: /^must be one of In, NotIn, Exists, DoesNotExist, Gt, Lt \(got "Equals"\)$/,
  },
  {
    name: 'Gt is not a label selector operator',
    fields: `topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector: { matchExpressions: [{ key: n, operator: Gt, values: ["1"] }] }`,
    at: 'cluster.yaml:13:57: spec.instances[0].topologySpreadConstraints[0].labelSelector.matchExpressions[0].operator',
    message: /^must be one of In, NotIn, Exists, DoesNotExist \(got "Gt"\)$/,
  },
  {
    name: 'maxSkew 0 is rejected',
    fields: `topologySpreadConstraints:\n  - maxSkew: 0\n    topologyKey: zone\n    whenUnsatisfiable: DoNotSchedule`,
    at: 'cluster.yaml:10:11: spec.instances[0].topologySpreadConstraints[0].maxSkew',
    message: /^must be an integer ≥ 1 \(got 0\)$/,
  },
  {
    name: 'a spread constraint without topologyKey is rejected at the constraint',
    fields: `topologySpreadConstraints:\n  - maxSkew: 1\n    whenUnsatisfiable: ScheduleAnyway`,
    at: 'cluster.yaml:10:11: spec.instances[0].topologySpreadConstraints[0].topologyKey',
    message: /^required: the node label/,
  },
  {
    name: 'a pod affinity term without topologyKey is rejected',
    fields: `affinity:\n  podAntiAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: { matchLabels: { app: db } }`,
    at: 'cluster.yaml:12:15: spec.instances[0].affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey',
    message: /^required: the node label/,
  },
  {
    name: 'a selector with In and no values cannot parse',
    fields: `affinity:\n  podAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: zone\n        labelSelector: { matchExpressions: [{ key: app, operator: In }] }`,
    at: 'cluster.yaml:13:51: spec.instances[0].affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0]',
    message: /^operator In needs at least one value$/,
  },
  {
    name: 'a selector with an invalid label key cannot parse',
    fields: `topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector: { matchLabels: { "bad key!": x } }`,
    at: 'cluster.yaml:13:43: spec.instances[0].topologySpreadConstraints[0].labelSelector.matchLabels["bad key!"]',
    message: /^label key "bad key!": the name must be/,
  },
  {
    name: 'Gt with a value that is not an integer is rejected',
    fields: `affinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n      nodeSelectorTerms: [{ matchExpressions: [{ key: cores, operator: Gt, values: [four] }] }]`,
    at: 'cluster.yaml:12:82: spec.instances[0].affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values',
    message: /^operator Gt needs exactly one integer value/,
  },
  {
    name: 'Exists with values is rejected',
    fields: `tolerations:\n  - { key: a, operator: Exists, value: b }`,
    at: 'cluster.yaml:10:39: spec.instances[0].tolerations[0].value',
    message: /^must be empty when operator is Exists$/,
  },
  {
    name: 'an unknown toleration operator lists Equal and Exists',
    fields: `tolerations:\n  - { key: a, operator: In, value: b }`,
    at: 'cluster.yaml:10:21: spec.instances[0].tolerations[0].operator',
    message: /^must be one of Equal, Exists \(got "In"\)$/,
  },
  {
    name: 'an unknown whenUnsatisfiable lists the two actions',
    fields: `topologySpreadConstraints:\n  - { maxSkew: 1, topologyKey: zone, whenUnsatisfiable: Never }`,
    at: 'cluster.yaml:10:44: spec.instances[0].topologySpreadConstraints[0].whenUnsatisfiable',
    message: /^must be one of DoNotSchedule, ScheduleAnyway \(got "Never"\)$/,
  },
  {
    name: 'minDomains with ScheduleAnyway is rejected',
    fields: `topologySpreadConstraints:\n  - { maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, minDomains: 2 }`,
    at: 'cluster.yaml:10:79: spec.instances[0].topologySpreadConstraints[0].minDomains',
    message: /^minDomains can only be set with whenUnsatisfiable: DoNotSchedule$/,
  },
  {
    name: 'a label value given as a number must be quoted',
    fields: `metadata:\n  labels: { tier: 1 }`,
    at: 'cluster.yaml:10:19: spec.instances[0].metadata.labels.tier',
    message: /^must be a string \(got 1\); quote it$/,
  },
];

describe('cluster spec: invalid scheduling fields', () => {
  for (const c of errorCases) {
    it(c.name, () => {
      const r = parseClusterSpec(withSet(c.fields), 'cluster.yaml');
      if (r.ok) assert.fail('expected errors, the spec parsed');
      const first = r.errors[0];
      assert.ok(first !== undefined);
      assert.equal(`${first.file}:${first.line}:${first.col}: ${first.field}`, c.at, formatSpecError(first));
      assert.match(first.message, c.message);
    });
  }
});
