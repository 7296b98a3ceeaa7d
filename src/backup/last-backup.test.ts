import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createAgentMetrics } from '../agent/metrics.js';
import type { AgentSnapshot } from '../agent/agent.js';
import { lastBackupReportOf } from '../cli/list.js';
import { decodeJson } from '../core/decode.js';
import { describeAge, describeLastBackup, LAST_BACKUP, type LastBackup } from './last-backup.js';

const LAST: LastBackup = { label: '20261202-003250F', type: 'full', from: 'bk-1', fromStandby: true, databaseBytes: 26_600_000, repositoryBytes: 3_500_000, durationSeconds: 4.2, finishedAtMs: Date.parse('2026-12-02T00:32:54Z') };

describe('the last backup record (backup/last)', () => {
  it('round-trips through its decoder and refuses what is not one', () => {
    assert.deepEqual(decodeJson(LAST_BACKUP, JSON.stringify(LAST)), { ok: true, value: LAST });
    const bad = decodeJson(LAST_BACKUP, JSON.stringify({ ...LAST, type: 'weekly' }));
    assert.equal(bad.ok, false);
    assert.match(bad.ok ? '' : bad.error, /type/);
    assert.equal(decodeJson(LAST_BACKUP, JSON.stringify({ ...LAST, databaseBytes: -1 })).ok, false);
  });

  it('says what, from where, how big, how long and how long ago', () => {
    assert.equal(
      describeLastBackup(LAST, LAST.finishedAtMs + 3 * 60_000),
      'last backup: 20261202-003250F full from bk-1 (a standby): 26.6 MB in 4 s, finished 2026-12-02T00:32:54Z (3 min ago)',
    );
    assert.match(describeLastBackup({ ...LAST, fromStandby: false, from: 'bk-2' }, LAST.finishedAtMs), /from bk-2 \(the primary\)/);
    assert.deepEqual([describeAge(5_000), describeAge(600_000), describeAge(3 * 3_600_000), describeAge(3 * 86_400_000), describeAge(-5)], ['5 s', '10 min', '3.0 h', '3.0 d', '0 s']);
  });

  it('is null in warden list without a key, an error for an invalid one, the line and age otherwise', () => {
    assert.equal(lastBackupReportOf(undefined, 0), null);
    const invalid = lastBackupReportOf('{"label":1}', 0);
    assert.ok(invalid !== null && 'error' in invalid && /^invalid record backup\/last: /.test(invalid.error), JSON.stringify(invalid));
    const r = lastBackupReportOf(JSON.stringify(LAST), LAST.finishedAtMs + 90_000);
    assert.ok(r !== null && !('error' in r));
    assert.equal(r.ageSeconds, 90);
    assert.match(r.line, /\(90 s ago\)$/);
  });

  it('is exported by /metrics: age, size, repository size and duration, only while known', async () => {
    const known: { last?: LastBackup } = {};
    // Only the backup gauges are collected here: the snapshot needs nothing but the labels.
    const snapshot = { identity: { cluster: 'bk', name: 'bk-1' } } as unknown as AgentSnapshot;
    const registry = createAgentMetrics(() => snapshot, () => undefined, () => known.last);
    const read = async (): Promise<string> =>
      (await Promise.all(['size_bytes', 'repository_bytes', 'duration_seconds', 'success_timestamp_seconds', 'age_seconds'].map((n) => registry.getSingleMetricAsString(`warden_backup_last_${n}`)))).join('\n');
    assert.doesNotMatch(await read(), /\{cluster="bk"/, 'no sample before a backup is known');
    known.last = LAST;
    const text = await read();
    assert.match(text, /warden_backup_last_size_bytes\{[^}]*\} 26600000/);
    assert.match(text, /warden_backup_last_repository_bytes\{[^}]*\} 3500000/);
    assert.match(text, /warden_backup_last_duration_seconds\{[^}]*\} 4\.2/);
    assert.match(text, new RegExp(`warden_backup_last_success_timestamp_seconds\\{[^}]*\\} ${LAST.finishedAtMs / 1000}`));
    assert.match(text, /warden_backup_last_age_seconds\{[^}]*\} \d+/);
  });

  it('shares the leader-only gauge with the archive: a sample for each known field, none for a null one', async () => {
    const snapshot = { identity: { cluster: 'bk', name: 'bk-1' } } as unknown as AgentSnapshot;
    const health = { member: 'bk-1', observedAtMs: 1, failing: true, failingSinceMs: 5000, failedCount: 3, lastArchivedWal: null, lastArchivedAtMs: null, lastFailedWal: '000000010000000000000005', lastFailedAtMs: 2, bytesNotArchived: 10, secondsNotArchived: 2 };
    const registry = createAgentMetrics(() => snapshot, () => health);
    const sample = async (name: string): Promise<string | undefined> => (await registry.getSingleMetricAsString(name)).split('\n').find((l) => l.startsWith(`${name}{`));
    assert.equal(await sample('warden_archive_failing'), 'warden_archive_failing{cluster="bk",member="bk-1"} 1');
    assert.equal(await sample('warden_archive_failing_since_timestamp_seconds'), 'warden_archive_failing_since_timestamp_seconds{cluster="bk",member="bk-1"} 5');
    assert.equal(await sample('warden_archive_recovery_point_bytes'), 'warden_archive_recovery_point_bytes{cluster="bk",member="bk-1"} 10');
    assert.equal(await sample('warden_archive_last_success_timestamp_seconds'), undefined, 'never archived: no sample');
    assert.equal(await sample('warden_backup_last_size_bytes'), undefined, 'no backup known: no sample');
  });
});
