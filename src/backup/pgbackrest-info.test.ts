import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePgBackRestInfo, quoteSystemIds } from './pgbackrest-info.js';

// What pgBackRest 2.45 printed for one full backup of a small database (`info --output=json`).
const ONE_FULL = `[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000003","min":"000000010000000000000001"}],"backup":[{"archive":{"start":"000000010000000000000003","stop":"000000010000000000000003"},"backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},"error":false,"info":{"delta":23033274,"repository":{"delta":3048631,"size":3048631},"size":23033274},"label":"20261202-001450F","lsn":{"start":"0/3000028","stop":"0/3000100"},"prior":null,"reference":null,"timestamp":{"start":1796170490,"stop":1796170494},"type":"full"}],"cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7714493499326983194,"version":"15"}],"name":"t","repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]`;

// A stanza that was never created: pgBackRest lists it with status 1 and no db, archive or backup.
const MISSING = `[{"archive":[],"backup":[],"cipher":"none","db":[],"name":"t","repo":[{"cipher":"none","key":1,"status":{"code":1,"message":"missing stanza path"}}],"status":{"code":1,"lock":{"backup":{"held":false}},"message":"missing stanza path"}}]`;

function withBackups(backups: readonly object[]): string {
  const base = JSON.parse(quoteSystemIds(ONE_FULL)) as [Record<string, unknown>];
  base[0].backup = backups;
  return JSON.stringify(base);
}

const INCR = {
  archive: { start: '000000010000000000000005', stop: '000000010000000000000005' },
  info: { delta: 8192, repository: { delta: 512, size: 3049143 }, size: 23033274 },
  label: '20261202-001450F_20261202-002000I',
  prior: '20261202-001450F',
  timestamp: { start: 1796170800, stop: 1796170801 },
  type: 'incr',
};

describe('pgbackrest info JSON', () => {
  it('turns a full backup into a set with sizes, duration and WAL range', () => {
    const r = parsePgBackRestInfo(ONE_FULL, 't');
    assert.ok(r.ok, r.ok ? '' : r.error);
    assert.equal(r.value.statusCode, 0);
    assert.equal(r.value.backupRunning, false);
    assert.deepEqual(r.value.archive, { min: '000000010000000000000001', max: '000000010000000000000003' });
    assert.deepEqual(r.value.sets, [
      {
        label: '20261202-001450F',
        type: 'full',
        prior: undefined,
        startedAtMs: 1796170490000,
        stoppedAtMs: 1796170494000,
        durationMs: 4000,
        databaseBytes: 23033274,
        copiedBytes: 23033274,
        repositoryBytes: 3048631,
        repositoryDeltaBytes: 3048631,
        walStart: '000000010000000000000003',
        walStop: '000000010000000000000003',
        lsnStart: '0/3000028',
        lsnStop: '0/3000100',
        hadErrors: false,
      },
    ]);
  });

  it('keeps the 64-bit system identifier exactly, which JSON.parse alone would round', () => {
    const r = parsePgBackRestInfo(ONE_FULL, 't');
    assert.ok(r.ok);
    assert.deepEqual(r.value.systemIds, ['7714493499326983194']);
  });

  it('lists sets oldest first and names the set an incremental depends on', () => {
    const full = (JSON.parse(quoteSystemIds(ONE_FULL)) as [{ backup: object[] }])[0].backup[0] ?? {};
    const r = parsePgBackRestInfo(withBackups([INCR, full]), 't');
    assert.ok(r.ok, r.ok ? '' : r.error);
    assert.deepEqual(
      r.value.sets.map((s) => [s.label, s.type, s.prior, s.lsnStart]),
      [
        ['20261202-001450F', 'full', undefined, '0/3000028'],
        ['20261202-001450F_20261202-002000I', 'incr', '20261202-001450F', undefined],
      ],
    );
  });

  it('reports a stanza that was never created with its status and no sets', () => {
    const r = parsePgBackRestInfo(MISSING, 't');
    assert.ok(r.ok, r.ok ? '' : r.error);
    assert.equal(r.value.statusCode, 1);
    assert.equal(r.value.statusMessage, 'missing stanza path');
    assert.deepEqual(r.value.sets, []);
    assert.equal(r.value.archive, undefined);
  });

  it('says why a repository could not be read: "other" with the repositories\' own messages', () => {
    const text = JSON.stringify([
      {
        name: 't',
        status: { code: 99, message: 'other' },
        repo: [
          { key: 1, cipher: 'none', status: { code: 0, message: 'ok' } },
          { key: 2, cipher: 'none', status: { code: 99, message: "[HostConnectError] unable to connect to 'localhost:9': [111] Connection refused" } },
        ],
        db: [],
        backup: [],
        archive: [],
      },
    ]);
    const r = parsePgBackRestInfo(text, 't');
    assert.ok(r.ok, r.ok ? '' : r.error);
    assert.equal(r.value.statusCode, 99);
    assert.equal(r.value.statusMessage, "other: repo2: [HostConnectError] unable to connect to 'localhost:9': [111] Connection refused");
  });

  it('says when the backup lock is held (a backup or expire is running)', () => {
    const r = parsePgBackRestInfo(ONE_FULL.replace('"held":false', '"held":true'), 't');
    assert.ok(r.ok);
    assert.equal(r.value.backupRunning, true);
  });

  const bad: ReadonlyArray<readonly [string, string, RegExp]> = [
    ['refuses text that is not JSON', 'ERROR: [055]: unable to load info file', /not valid JSON/],
    ['refuses an unknown backup type, naming the field', withBackups([{ ...INCR, type: 'snapshot' }]), /\[0\]\.backup\[0\]\.type: must be one of "full", "diff", "incr"/],
    ['refuses a negative size, naming the field', withBackups([{ ...INCR, info: { ...INCR.info, size: -1 } }]), /backup\[0\]\.info\.size: must be ≥ 0/],
    ['refuses a set without timestamps', withBackups([{ ...INCR, timestamp: undefined }]), /backup\[0\]\.timestamp: is missing/],
    ['says so when the stanza is not in the output', ONE_FULL.replace('"name":"t"', '"name":"other"'), /stanza "t" is not in the output/],
  ];
  for (const [name, text, error] of bad) {
    it(name, () => {
      const r = parsePgBackRestInfo(text, 't');
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.error, error);
    });
  }
});
