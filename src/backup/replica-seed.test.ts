import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BackupSet, RepositoryInfo } from './backup-repository.js';
import { seedVerdict } from './replica-seed.js';

const set = (label: string, over: Partial<BackupSet> = {}): BackupSet => ({
  label,
  type: 'full',
  prior: undefined,
  startedAtMs: 1,
  stoppedAtMs: 2,
  durationMs: 1,
  databaseBytes: 10,
  copiedBytes: 10,
  repositoryBytes: 5,
  repositoryDeltaBytes: 5,
  walStart: '000000010000000000000002',
  walStop: '000000010000000000000002',
  lsnStart: '0/2000028',
  lsnStop: '0/2000100',
  hadErrors: false,
  ...over,
});
const info = (over: Partial<RepositoryInfo> = {}): RepositoryInfo => ({
  stanza: 'demo',
  statusCode: 0,
  statusMessage: 'ok',
  backupRunning: false,
  systemIds: ['7300000000000000001'],
  sets: [set('20261202-010000F'), set('20261202-020000F_20261202-030000I', { type: 'incr' })],
  archive: { min: '000000010000000000000001', max: '000000010000000000000009' },
  ...over,
});

describe('seedVerdict: may the repository seed a replica?', () => {
  it('restores the newest set of the same system', () => {
    assert.deepEqual(seedVerdict(info(), '7300000000000000001'), { kind: 'restore', set: set('20261202-020000F_20261202-030000I', { type: 'incr' }) });
  });

  it('skips a newest set that had copy errors when an older one is clean', () => {
    const v = seedVerdict(info({ sets: [set('A'), set('B', { hadErrors: true })] }), '7300000000000000001');
    assert.equal(v.kind === 'restore' ? v.set.label : v.why, 'A');
  });

  it("never restores another cluster's repository", () => {
    const v = seedVerdict(info({ systemIds: ['7399999999999999999'] }), '7300000000000000001');
    assert.equal(v.kind, 'basebackup');
    assert.match(v.kind === 'basebackup' ? v.why : '', /belongs to system 7399999999999999999, not to this cluster \(7300000000000000001\)/);
  });

  it('uses pg_basebackup when there is no backup yet', () => {
    const v = seedVerdict(info({ statusCode: 2, statusMessage: 'no valid backups', sets: [] }), '7300000000000000001');
    assert.deepEqual(v, { kind: 'basebackup', why: 'the repository has no backup yet (no valid backups)' });
  });
});
