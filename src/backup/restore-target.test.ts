import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BackupSet, RepositoryInfo } from './backup-repository.js';
import { parseRestoreTarget, recoveryEndedShort, targetTimeMs, unreachableTarget } from './restore-target.js';

const at = (iso: string): number => Date.parse(iso);
const set = (over: Partial<BackupSet>): BackupSet => ({
  label: '20261202-010000F',
  type: 'full',
  prior: undefined,
  startedAtMs: at('2026-12-02T01:00:00Z'),
  stoppedAtMs: at('2026-12-02T01:00:10Z'),
  durationMs: 10_000,
  databaseBytes: 1,
  copiedBytes: 1,
  repositoryBytes: 1,
  repositoryDeltaBytes: 1,
  walStart: '000000010000000000000003',
  walStop: '000000010000000000000003',
  lsnStart: '0/3000028',
  lsnStop: '0/3000138',
  hadErrors: false,
  ...over,
});
const info = (sets: BackupSet[]): RepositoryInfo => ({ stanza: 's', statusCode: 0, statusMessage: 'ok', backupRunning: false, systemIds: ['1'], sets, archive: { min: '000000010000000000000001', max: '000000010000000000000009' } });

describe('restore targets', () => {
  const times: ReadonlyArray<readonly [string, number | undefined]> = [
    ['2026-12-02T03:04:05Z', at('2026-12-02T03:04:05Z')],
    ['2026-12-02 03:04:05.123456+00', at('2026-12-02T03:04:05.123Z')],
    ['2026-12-02 05:04:05+02', at('2026-12-02T03:04:05Z')],
    ['2026-12-02T03:04:05-0130', at('2026-12-02T04:34:05Z')],
    ['2026-12-02T03:04Z', at('2026-12-02T03:04:00Z')],
    ['2026-12-02 03:04:05', undefined], // no time zone: ambiguous
    ['2026-02-30T03:04:05Z', undefined],
    ['yesterday', undefined],
    ['2026-12-02T25:04:05Z', undefined],
  ];
  for (const [text, ms] of times) it(`reads ${JSON.stringify(text)} as ${ms === undefined ? 'no instant' : new Date(ms).toISOString()}`, () => assert.equal(targetTimeMs(text), ms));

  const bad: ReadonlyArray<readonly [string, Parameters<typeof parseRestoreTarget>[0], RegExp]> = [
    ['no target', {}, /give exactly one target: .* \(got none\)/],
    ['two targets', { time: '2026-12-02T03:04:05Z', latest: true }, /\(got --time and --latest\)/],
    ['a time without a zone', { time: '2026-12-02 03:04:05' }, /--time "2026-12-02 03:04:05": not an instant with a time zone/],
    ['a bad LSN', { lsn: '3000060' }, /--lsn "3000060": not an LSN/],
    ['a bad xid', { xid: 'x1' }, /--xid "x1": not a transaction id/],
    ['--exclusive with --latest', { latest: true, exclusive: true }, /--exclusive applies to --time, --lsn and --xid only/],
  ];
  for (const [what, o, re] of bad) {
    it(`refuses ${what}`, () => {
      const r = parseRestoreTarget(o);
      assert.ok(!r.ok && re.test(r.error), JSON.stringify(r));
    });
  }

  it('passes the time text on as given (microseconds and all)', () => {
    assert.deepEqual(parseRestoreTarget({ time: '2026-12-02 03:04:05.123456+00', exclusive: true }), { ok: true, value: { kind: 'time', time: '2026-12-02 03:04:05.123456+00', exclusive: true } });
  });

  const reach = { lastArchivedAtMs: at('2026-12-02T02:00:00Z'), nowMs: at('2026-12-02T02:00:30Z') };
  const unreachable: ReadonlyArray<readonly [string, Parameters<typeof unreachableTarget>[0], BackupSet[], RegExp | undefined]> = [
    ['a time before the end of the first backup', { kind: 'time', time: '2026-12-02T01:00:05Z' }, [set({})], /is before the end of the first backup \(20261202-010000F, 2026-12-02T01:00:10.000Z\)/],
    ['a time after the latest archived WAL', { kind: 'time', time: '2026-12-02T02:00:10Z' }, [set({})], /is after the latest WAL in the repository \(last archived 2026-12-02T02:00:00.000Z\)/],
    ['a time in the future', { kind: 'time', time: '2026-12-02T03:00:00Z' }, [set({})], /is in the future/],
    ['a time within the window', { kind: 'time', time: '2026-12-02T01:30:00Z' }, [set({})], undefined],
    ['an LSN before the end of the first backup', { kind: 'lsn', lsn: '0/3000000' }, [set({})], /--lsn 0\/3000000 is before the end of the first backup/],
    ['an LSN after the newest archived segment', { kind: 'lsn', lsn: '0/A000001' }, [set({})], /--lsn 0\/A000001 is after the latest WAL in the repository \(000000010000000000000009\)/],
    ['an LSN within the archive', { kind: 'lsn', lsn: '0/9FFFFFF' }, [set({})], undefined],
    ['anything without a backup', { kind: 'latest' }, [], /has no backup yet/],
  ];
  for (const [what, target, sets, re] of unreachable) {
    it(`${re === undefined ? 'accepts' : 'refuses'} ${what}`, () => {
      const why = unreachableTarget(target, info(sets), reach);
      if (re === undefined) assert.equal(why, undefined);
      else assert.match(why ?? '', re);
    });
  }
});

describe('a recovery that ended before its target', () => {
  it('reads the last replayed record and commit from PostgreSQL 15\'s log', () => {
    const log = [
      '2026-12-02 12:40:01.100 UTC [811] LOG:  starting point-in-time recovery to 2026-12-02 12:39:58.5+00',
      '2026-12-02 12:40:01.300 UTC [811] LOG:  redo starts at 0/5000028',
      '2026-12-02 12:40:01.900 UTC [811] LOG:  redo done at 0/7000060 system usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 0.60 s',
      '2026-12-02 12:40:01.900 UTC [811] LOG:  last completed transaction was at log time 2026-12-02 12:39:57.123456+00',
      '2026-12-02 12:40:01.901 UTC [811] FATAL:  recovery ended before configured recovery target was reached',
    ].join('\n');
    assert.deepEqual(recoveryEndedShort(log), { redoDoneLsn: '0/7000060', lastCommitAt: '2026-12-02 12:39:57.123456+00' });
  });

  it('is undefined for a log that does not say so, and keeps what it cannot read undefined', () => {
    assert.equal(recoveryEndedShort('LOG:  redo done at 0/7000060\nLOG:  database system is ready to accept connections'), undefined);
    assert.deepEqual(recoveryEndedShort('FATAL:  recovery ended before configured recovery target was reached'), { redoDoneLsn: undefined, lastCommitAt: undefined });
  });
});
