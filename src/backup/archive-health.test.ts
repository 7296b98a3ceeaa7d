import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decode } from '../core/decode.js';
import { parseLsn } from '../core/lsn.js';
import { ARCHIVE_HEALTH, archiverStatusOfRow, describeArchiveHealth, nextArchiveHealth } from './archive-health.js';
import type { ArchiverStatus } from './recovery-point.js';

const T0 = Date.parse('2026-12-02T02:40:00Z');
const status = (over: Partial<ArchiverStatus>): ArchiverStatus => ({
  currentLsn: parseLsn('0/6000000'),
  lastArchivedWal: '000000010000000000000004',
  lastArchivedAtMs: T0 - 60_000,
  lastFailedWal: undefined,
  lastFailedAtMs: undefined,
  failedCount: 0,
  nowMs: T0,
  ...over,
});

describe('archive health on the leader', () => {
  it('is ok when the last attempt succeeded, with the recovery point', () => {
    const h = nextArchiveHealth(undefined, 'm1', status({}));
    assert.equal(h.failing, false);
    assert.equal(h.failingSinceMs, null);
    assert.equal(h.bytesNotArchived, 0x6000000 - 0x5000000);
    assert.equal(h.secondsNotArchived, 60);
  });

  it('starts a failing spell at the first failure seen and keeps that start while it lasts', () => {
    const first = nextArchiveHealth(undefined, 'm1', status({ lastFailedWal: '000000010000000000000005', lastFailedAtMs: T0 - 5_000, failedCount: 3 }));
    assert.equal(first.failing, true);
    assert.equal(first.failingSinceMs, T0 - 5_000);
    const later = nextArchiveHealth(first, 'm1', status({ lastFailedWal: '000000010000000000000005', lastFailedAtMs: T0 + 20_000, failedCount: 9, nowMs: T0 + 25_000 }));
    assert.equal(later.failingSinceMs, T0 - 5_000);
    assert.equal(later.failedCount, 9);
  });

  it('ends the spell when an archive succeeds after the last failure', () => {
    const failing = nextArchiveHealth(undefined, 'm1', status({ lastFailedAtMs: T0 - 5_000, lastFailedWal: '000000010000000000000005' }));
    const ok = nextArchiveHealth(failing, 'm1', status({ lastFailedAtMs: T0 - 5_000, lastArchivedAtMs: T0 - 1_000, lastArchivedWal: '000000010000000000000005' }));
    assert.equal(ok.failing, false);
    assert.equal(ok.failingSinceMs, null);
  });

  it('does not carry a spell over from another member (a new leader starts its own)', () => {
    const other = nextArchiveHealth(undefined, 'm2', status({ lastFailedAtMs: T0 - 50_000, lastArchivedAtMs: T0 - 60_000 }));
    const mine = nextArchiveHealth(other, 'm1', status({ lastFailedAtMs: T0 - 1_000 }));
    assert.equal(mine.failingSinceMs, T0 - 1_000);
  });

  it('says so in one line, naming the member and whether it still leads', () => {
    const h = nextArchiveHealth(undefined, 'm1', status({ lastFailedWal: '000000010000000000000005', lastFailedAtMs: T0 - 5_000, failedCount: 3 }));
    assert.equal(
      describeArchiveHealth(h, T0, 'm1'),
      'archive: FAILING since 2026-12-02T02:39:55Z (3 failures, last 000000010000000000000005; last success 2026-12-02T02:39:00Z) — recovery point 60 s / 16777216 bytes not archived (on m1)',
    );
    assert.match(describeArchiveHealth(h, T0 + 60_000, 'm2'), /\(on m1, not the leader now, as of 2026-12-02T02:40:00Z\)$/);
    assert.match(describeArchiveHealth(nextArchiveHealth(undefined, 'm1', status({})), T0, 'm1'), /^archive: ok, last 000000010000000000000004 at 2026-12-02T02:39:00Z — recovery point 60 s/);
  });

  it('round-trips through the backup/archive key decoder and refuses a bad record', () => {
    const h = nextArchiveHealth(undefined, 'm1', status({}));
    assert.deepEqual(decode(ARCHIVE_HEALTH, JSON.parse(JSON.stringify(h))), { ok: true, value: h });
    const bad = decode(ARCHIVE_HEALTH, { ...h, failing: 'yes' });
    assert.ok(!bad.ok && /failing/.test(bad.error));
  });

  it('decodes the pg_stat_archiver row, and names a bad LSN', () => {
    const row = { lsn: '0/6000000', last_archived_wal: null, archived_ms: null, last_failed_wal: null, failed_ms: null, failed_count: '0', now_ms: String(T0) };
    const d = archiverStatusOfRow(row);
    assert.ok(d.ok && d.value.currentLsn === parseLsn('0/6000000') && d.value.lastArchivedWal === undefined);
    const bad = archiverStatusOfRow({ ...row, lsn: 'x' });
    assert.ok(!bad.ok && /lsn/.test(bad.error));
  });
});
