import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assignmentKey, backupsChangeRestarts, backupsFingerprint, CONTROL_KEYS, dataSourceKey, nodeKey, parseControlKey, parseControlSnapshot, specKey, statusKey, type Assignment, type NodeRecord } from './records.js';

const node: NodeRecord = {
  name: 'node-1',
  labels: { 'kubernetes.io/hostname': 'node-1' },
  taints: [],
  addresses: ['127.0.0.1'],
  capacity: { workloads: 10 },
  version: '0.1.0',
  daemonId: 'd1',
  pid: 42,
  dir: '/var/lib/warden/node-1',
  startedAtMs: 1,
  workloads: [{ cluster: 'app', kind: 'member', name: 'app-1', state: 'running', pid: 43, restarts: 0 }],
};

const assignment: Assignment = {
  cluster: 'app',
  kind: 'member',
  name: 'app-1',
  node: 'node-1',
  clusterUid: 'u1',
  generation: 1,
  agent: { instanceSet: 'instance1', bootstrapDynamicConfig: { ttl: 10 } },
  reason: 'placed',
};

const kv = (key: string, value: unknown): { key: string; value: string; lease: string; modRevision: number } => ({ key, value: typeof value === 'string' ? value : JSON.stringify(value), lease: '0', modRevision: 5 });

describe('control-plane records', () => {
  it('decodes a node record whose name matches its key', () => {
    const r = parseControlKey(kv(nodeKey('node-1'), node));
    assert.ok(r?.ok);
    assert.equal(r.record.kind, 'node');
  });

  it('refuses a node record filed under another node name', () => {
    const r = parseControlKey(kv(nodeKey('node-2'), node));
    assert.deepEqual(r, { ok: false, error: 'the record names "node-1", the key "node-2"' });
  });

  it('names the field of a bad workload state', () => {
    const bad = { ...node, workloads: [{ ...node.workloads[0], state: 'dancing' }] };
    const r = parseControlKey(kv(nodeKey('node-1'), bad));
    assert.equal(r?.ok, false);
    assert.match(r.ok ? '' : r.error, /^workloads\[0\]\.state: must be one of "starting", .*got "dancing"$/);
  });

  it('refuses a taint with an unknown effect and a label that is not a string', () => {
    const t = parseControlKey(kv(nodeKey('node-1'), { ...node, taints: [{ key: 'a', value: '', effect: 'NoWay' }] }));
    assert.match(t?.ok === false ? t.error : '', /^taints\[0\]\.effect: must be one of/);
    const l = parseControlKey(kv(nodeKey('node-1'), { ...node, labels: { zone: 3 } }));
    assert.deepEqual(l, { ok: false, error: 'labels.zone: must be a string, got number' });
  });

  it('decodes an assignment only under its own key, and a member only with its agent settings', () => {
    assert.ok(parseControlKey(kv(assignmentKey('app', 'member', 'app-1'), assignment))?.ok);
    const elsewhere = parseControlKey(kv(assignmentKey('app', 'router', 'app-1'), assignment));
    assert.deepEqual(elsewhere, { ok: false, error: 'the record is for /warden/_assignments/app/members/app-1, not this key' });
    const { agent: _agent, ...bare } = assignment;
    const noAgent = parseControlKey(kv(assignmentKey('app', 'member', 'app-1'), bare));
    assert.deepEqual(noAgent, { ok: false, error: 'agent: is missing (a member needs its agent settings)' });
  });

  it('decodes a data source under its cluster\'s key, in a member\'s assignment too, and names a bad target', () => {
    const ds = { sourceCluster: 'src', stanza: 'src', repo: 'repo1', repoPath: '/srv/backup/src/repo1', setLabel: '20261204-010101F', target: { kind: 'lsn', lsn: '0/3000028' }, targetTimeline: 1, sourceSuperuserPassword: 'pw' };
    const r = parseControlKey(kv(dataSourceKey('app'), { cluster: 'app', ...ds }));
    assert.ok(r?.ok === true && r.record.kind === 'data-source', JSON.stringify(r));
    assert.deepEqual(r.record.dataSource, { cluster: 'app', ...ds });
    assert.deepEqual(parseControlKey(kv(dataSourceKey('shop'), { cluster: 'app', ...ds })), { ok: false, error: 'the record names "app", the key "shop"' });
    const noLsn = parseControlKey(kv(dataSourceKey('app'), { cluster: 'app', ...ds, target: { kind: 'lsn' } }));
    assert.deepEqual(noLsn, { ok: false, error: 'target: a lsn target needs its lsn field' });
    const inAssignment = parseControlKey(kv(assignmentKey('app', 'member', 'app-1'), { ...assignment, agent: { ...assignment.agent, dataSource: ds } }));
    assert.ok(inAssignment?.ok === true && inAssignment.record.kind === 'assignment');
    assert.deepEqual(inAssignment.record.assignment.agent?.dataSource, ds);
    const snap = parseControlSnapshot(9, [kv(dataSourceKey('app'), { cluster: 'app', ...ds })]);
    assert.equal(snap.dataSources.get('app')?.setLabel, '20261204-010101F');
  });

  it('decodes a member\'s backups (stanza, repositories, options as text) and names a bad repository', () => {
    const withBackups = { ...assignment, agent: { ...assignment.agent, backups: { stanza: 'app', repos: ['repo1'], global: { 'repo1-retention-full': '2' } } } };
    const r = parseControlKey(kv(assignmentKey('app', 'member', 'app-1'), withBackups));
    assert.ok(r?.ok === true && r.record.kind === 'assignment', JSON.stringify(r));
    assert.deepEqual(r.record.assignment.agent?.backups, { stanza: 'app', repos: ['repo1'], global: { 'repo1-retention-full': '2' } });
    const badRepo = parseControlKey(kv(assignmentKey('app', 'member', 'app-1'), { ...withBackups, agent: { ...withBackups.agent, backups: { ...withBackups.agent.backups, repos: ['repo9'] } } }));
    assert.ok(badRepo?.ok === false && /agent\.backups\.repos\[0\]: must be repo1 … repo4/.test(badRepo.error), JSON.stringify(badRepo));
    const badOption = parseControlKey(kv(assignmentKey('app', 'member', 'app-1'), { ...withBackups, agent: { ...withBackups.agent, backups: { ...withBackups.agent.backups, global: { 'repo1-retention-full': 2 } } } }));
    assert.ok(badOption?.ok === false && /repo1-retention-full: must be a string/.test(badOption.error), JSON.stringify(badOption));
  });

  it('decodes a member\'s cloud repositories by their type, names a bad one, and a cloud change restarts while the posix fingerprint stays as before', () => {
    const storage = { type: 's3', bucket: 'bk', endpoint: 'e', region: 'r' } as const;
    const b = { stanza: 'app', repos: ['repo1', 'repo2'], global: {}, cloud: [{ repo: 'repo2', storage }] };
    const withCloud = { ...assignment, agent: { ...assignment.agent, backups: b } };
    const r = parseControlKey(kv(assignmentKey('app', 'member', 'app-1'), withCloud));
    assert.ok(r?.ok === true && r.record.kind === 'assignment', JSON.stringify(r));
    assert.deepEqual(r.record.assignment.agent?.backups, b);
    const bad = parseControlKey(kv(assignmentKey('app', 'member', 'app-1'), { ...withCloud, agent: { ...withCloud.agent, backups: { ...b, cloud: [{ repo: 'repo2', storage: { type: 'gcs' } }] } } }));
    assert.ok(bad?.ok === false && /agent\.backups\.cloud\[0\]\.storage\.bucket: is missing/.test(bad.error), JSON.stringify(bad));
    const posix = { stanza: 'app', repos: ['repo1'], global: {} };
    assert.equal(backupsFingerprint(posix), '{"stanza":"app","repos":["repo1"],"global":{}}', 'unchanged for clusters without cloud repositories');
    assert.equal(backupsChangeRestarts(b, { ...b, cloud: [{ repo: 'repo2', storage: { ...storage, bucket: 'other' } }] }), true);
    assert.equal(backupsChangeRestarts(b, { ...b, global: { 'repo2-s3-key': 'new' } }), false);
    assert.notEqual(backupsFingerprint(b), backupsFingerprint({ ...b, cloud: [] }));
  });

  it('reports JSON that does not parse with the key', () => {
    const snap = parseControlSnapshot(9, [kv(specKey('app'), '{oops'), kv(statusKey('app'), { cluster: 'app' })]);
    assert.match(snap.invalid.get(specKey('app')) ?? '', /^not valid JSON/);
    assert.equal(snap.invalid.get(statusKey('app')), 'generation: is missing');
    assert.equal(snap.specs.size, 0);
  });

  it('gathers one snapshot: nodes, specs, assignments by cluster, the controller', () => {
    const snap = parseControlSnapshot(9, [
      kv(nodeKey('node-1'), node),
      kv(specKey('app'), { cluster: 'app', generation: 2, text: 'x', file: 'app.yaml', uid: 'u1', appliedAtMs: 3 }),
      kv(assignmentKey('app', 'member', 'app-1'), assignment),
      kv(CONTROL_KEYS.controller, { node: 'node-1', candidateId: 'c', sinceMs: 1 }),
      kv('/warden/_unknown/x', 'ignored'),
    ]);
    assert.equal(snap.nodes.get('node-1')?.record.pid, 42);
    assert.equal(snap.specs.get('app')?.generation, 2);
    assert.equal(snap.assignments.get('app')?.[0]?.node, 'node-1');
    assert.equal(snap.controller?.node, 'node-1');
    assert.equal(snap.invalid.size, 0);
  });
});
