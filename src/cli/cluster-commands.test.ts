import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nodeKey, parseControlSnapshot, type NodeRecord } from '../controller/records.js';
import { workloadTroubles } from './cluster-commands.js';

const node = (workloads: NodeRecord['workloads']): NodeRecord => ({
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
  workloads,
});

describe('workloadTroubles', () => {
  it('names each workload that does not run or last ended with an error, with its restarts and last words', () => {
    const record = node([
      { cluster: 'app', kind: 'member', name: 'app-1', state: 'running', pid: 43, restarts: 0 },
      { cluster: 'app', kind: 'member', name: 'app-2', state: 'restarting', pid: null, restarts: 3, lastError: 'exited (code 2): agent.yaml:18:3: postgresql.socket_dir: too long' },
      { cluster: 'app', kind: 'router', name: 'app-router-1', state: 'running', pid: 44, restarts: 1, lastError: 'exited (SIGKILL)' },
      { cluster: 'other', kind: 'member', name: 'other-1', state: 'failed', pid: null, restarts: 0, lastError: 'node node-1 has no backups.repo_path' },
    ]);
    const snap = parseControlSnapshot(7, [{ key: nodeKey('node-1'), value: JSON.stringify(record), lease: '1', modRevision: 7 }]);
    assert.deepEqual(workloadTroubles(snap, 'app'), [
      'node-1: member app-2 restarting, 3 restart(s); last: exited (code 2): agent.yaml:18:3: postgresql.socket_dir: too long',
      'node-1: router app-router-1 running, 1 restart(s); last: exited (SIGKILL)',
    ]);
    assert.deepEqual(workloadTroubles(snap).at(-1), 'node-1: member other/other-1 failed, 0 restart(s); last: node node-1 has no backups.repo_path');
  });
});
