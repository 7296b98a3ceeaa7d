import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseLsn } from '../core/lsn.js';
import { recoveryPointOf, segmentEndLsn, type ArchiverStatus } from './recovery-point.js';

const NOW = Date.parse('2026-12-02T00:00:00Z');
const status = (over: Partial<ArchiverStatus>): ArchiverStatus => ({
  currentLsn: parseLsn('0/5000000'),
  lastArchivedWal: '000000010000000000000004',
  lastArchivedAtMs: NOW - 30_000,
  lastFailedWal: undefined,
  lastFailedAtMs: undefined,
  failedCount: 0,
  nowMs: NOW,
  ...over,
});

describe('WAL segment names', () => {
  const cases: ReadonlyArray<readonly [string, string, string | undefined]> = [
    ['the first segment ends at 16 MiB', '000000010000000000000001', '0/2000000'],
    ['the last segment of a log id ends at the next log id', '0000000100000000000000FF', '1/0'],
    ['a segment of a later log id and timeline', '000000030000000A00000010', 'A/11000000'],
    ['a .partial segment ends where its segment does', '000000010000000000000004.partial', '0/5000000'],
    ['a backup history file names its segment', '000000010000000000000003.00000028.backup', '0/4000000'],
    ['a timeline history file has no end', '00000002.history', undefined],
  ];
  for (const [name, file, end] of cases) {
    it(name, () => assert.equal(segmentEndLsn(file), end === undefined ? undefined : parseLsn(end)));
  }
});

describe('recovery point', () => {
  it('is zero when every byte of WAL up to now is in archived segments', () => {
    assert.deepEqual(recoveryPointOf(status({})), { bytesNotArchived: 0, secondsNotArchived: 0, isFailing: false });
  });

  it('counts the bytes past the newest archived segment and the time since it was archived', () => {
    assert.deepEqual(recoveryPointOf(status({ currentLsn: parseLsn('0/5000100') })), { bytesNotArchived: 256, secondsNotArchived: 30, isFailing: false });
  });

  it('says the archive is failing when the last failure is newer than the last success', () => {
    const p = recoveryPointOf(status({ currentLsn: parseLsn('0/7000000'), lastFailedWal: '000000010000000000000005', lastFailedAtMs: NOW - 1000, failedCount: 12 }));
    assert.equal(p.isFailing, true);
    assert.equal(p.bytesNotArchived, 2 * 16 * 1024 * 1024);
  });

  it('does not call an old failure that was followed by a success failing', () => {
    assert.equal(recoveryPointOf(status({ lastFailedWal: '000000010000000000000003', lastFailedAtMs: NOW - 60_000, failedCount: 1 })).isFailing, false);
  });

  it('counts from the oldest segment still waiting (.ready) when it is known: after a promotion the last one archived may be an older one', () => {
    // Archive continuity marked timeline 1's segment 2 again; pushed last, it is pg_stat_archiver's last_archived_wal.
    const afterPromotion = { currentLsn: parseLsn('0/B000100'), lastArchivedWal: '000000010000000000000002' };
    assert.equal(recoveryPointOf(status(afterPromotion)).bytesNotArchived, 0xb000100 - 0x3000000, 'without the .ready listing: a false 128 MB');
    assert.deepEqual(recoveryPointOf(status({ ...afterPromotion, oldestReadyWal: null })), { bytesNotArchived: 256, secondsNotArchived: 30, isFailing: false });
    // Segments waiting: from the start of the oldest of them.
    assert.equal(recoveryPointOf(status({ ...afterPromotion, oldestReadyWal: '00000002000000000000000A' })).bytesNotArchived, 0xb000100 - 0xa000000);
    // At a segment boundary with nothing waiting: nothing to lose.
    assert.deepEqual(recoveryPointOf(status({ currentLsn: parseLsn('0/C000000'), lastArchivedWal: undefined, lastArchivedAtMs: undefined, oldestReadyWal: null })), { bytesNotArchived: 0, secondsNotArchived: 0, isFailing: false });
  });

  it('does not guess the bytes when nothing was ever archived', () => {
    assert.deepEqual(recoveryPointOf(status({ lastArchivedWal: undefined, lastArchivedAtMs: undefined })), { bytesNotArchived: undefined, secondsNotArchived: undefined, isFailing: false });
  });
});
