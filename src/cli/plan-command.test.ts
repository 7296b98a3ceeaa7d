import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// `warden plan` run as users run it: a child process, files on disk, exit code and output checked.

const BIN = fileURLToPath(new URL('./bin.ts', import.meta.url));

function warden(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', BIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

const SEED = `apiVersion: ivory-operator.ivorysql.org/v1beta1
kind: IvoryCluster
metadata:
  name: hippo
spec:
  instances:
    - name: instance1
      replicas: 5
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: my-node-label
          whenUnsatisfiable: DoNotSchedule
          labelSelector:
            matchLabels:
              ivory-operator.ivorysql.org/instance-set: instance1
`;

const ANTI = `apiVersion: postgres-operator.crunchydata.com/v1beta1
kind: PostgresCluster
metadata:
  name: hippo
spec:
  instances:
    - name: pgha1
      replicas: 3
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: kubernetes.io/hostname
              labelSelector:
                matchLabels:
                  postgres-operator.crunchydata.com/cluster: hippo
`;

const NODES = `nodes:
  - name: node1
    labels: { my-node-label: one }
  - name: node2
    labels: { my-node-label: two }
  - name: node3
    labels: { my-node-label: three }
    taints: [ { key: dedicated, value: other, effect: NoSchedule } ]
`;

const THREE_NODES = NODES.replace(/\n {4}taints: .*\n/, '\n');

describe('warden plan', { concurrency: true }, () => {
  let dir = '';
  const path = (name: string): string => join(dir, name);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warden-plan-'));
    await Promise.all([
      writeFile(path('seed.yaml'), SEED),
      writeFile(path('anti.yaml'), ANTI),
      writeFile(path('nodes.yaml'), NODES),
      writeFile(path('three.yaml'), THREE_NODES),
      writeFile(path('bad.yaml'), SEED.replace('maxSkew: 1', 'maxSkew: 0')),
      writeFile(path('bad-nodes.yaml'), 'nodes:\n  - name: node1\n    taints: [ { key: a, effect: Sometimes } ]\n'),
    ]);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('exits 0 and prints one row per instance when every instance is placed (the seed: 2/2/1)', async () => {
    const r = await warden(['plan', '-f', path('seed.yaml'), '--nodes', path('three.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('hippo-'));
    assert.equal(rows.length, 5);
    const perNode = ['node1', 'node2', 'node3'].map((x) => rows.filter((l) => l.includes(` ${x} `)).length);
    assert.deepEqual([...perNode].sort(), [1, 2, 2]);
  });

  it('exits 3 and prints each node\'s reason under a Pending instance', async () => {
    const r = await warden(['plan', '-f', path('anti.yaml'), '--nodes', path('nodes.yaml')]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /hippo-3 +pgha1 +Pending\n/);
    assert.match(r.stdout, /\n {4}node1: InterPodAffinity: hippo-1 in kubernetes\.io\/hostname=node1 matches the required pod anti-affinity/);
    assert.match(r.stdout, /\n {4}node3: TaintToleration: untolerated taint dedicated=other:NoSchedule\n/);
    assert.match(r.stdout, /1 instance\(s\) Pending: hippo-3/);
  });

  it('--format json has the documented shape', async () => {
    const r = await warden(['plan', '-f', path('anti.yaml'), '--nodes', path('nodes.yaml'), '--format', 'json']);
    assert.equal(r.code, 3, r.stderr);
    const plan = JSON.parse(r.stdout) as {
      cluster: string;
      placements: { member: string; instanceSet: string; node: string | null; nodes: Record<string, unknown>[] }[];
      pending: string[];
    };
    assert.equal(plan.cluster, 'hippo');
    assert.deepEqual(plan.pending, ['hippo-3']);
    assert.deepEqual(
      plan.placements.map((p) => [p.member, p.instanceSet, p.node]),
      [
        ['hippo-1', 'pgha1', 'node1'],
        ['hippo-2', 'pgha1', 'node2'],
        ['hippo-3', 'pgha1', null],
      ],
    );
    const first = plan.placements[0]?.nodes;
    assert.deepEqual(Object.keys(first?.[0] ?? {}), ['node', 'feasible', 'reason', 'score', 'scores']);
    assert.deepEqual(Object.keys(first?.[0]?.['scores'] ?? {}).sort(), ['InterPodAffinity', 'NodeAffinity', 'PodTopologySpread', 'TaintToleration']);
    assert.deepEqual(first?.[2], { node: 'node3', feasible: false, rejectedBy: 'TaintToleration', reason: 'untolerated taint dedicated=other:NoSchedule', score: null, scores: {} });
  });

  it('exits 2 with file:line:col and the field for an invalid spec', async () => {
    const r = await warden(['plan', '-f', path('bad.yaml'), '--nodes', path('three.yaml')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.yaml:10:11: spec\.instances\[0\]\.topologySpreadConstraints\[0\]\.maxSkew: must be an integer ≥ 1 \(got 0\)/);
    assert.equal(r.stdout, '');
  });

  it('exits 2 with file:line:col and the field for an invalid nodes file', async () => {
    const r = await warden(['plan', '-f', path('seed.yaml'), '--nodes', path('bad-nodes.yaml')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad-nodes\.yaml:3:25: nodes\[0\]\.taints\[0\]\.effect: must be one of NoSchedule, PreferNoSchedule, NoExecute \(got "Sometimes"\)/);
  });

  it('exits 2 without a nodes file', async () => {
    const r = await warden(['plan', '-f', path('seed.yaml')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--nodes/);
  });
});
