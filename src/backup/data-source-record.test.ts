import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeDataSourceRecord, type DataSourceRecord } from './data-source-record.js';

const RECORD: DataSourceRecord = {
  sourceCluster: 'demo',
  stanza: 'demo',
  configFile: '/var/tmp/clone/bootstrap/source-pgbackrest.conf',
  repo: 1,
  setLabel: '20261202-100000F',
  target: { kind: 'time', time: '2026-12-02 10:00:00.123456+00', exclusive: true },
  superuserPasswordFile: '/var/tmp/clone/secrets/source-superuser.password',
};

describe('the data source record (bootstrap.pgbackrest.data_source)', () => {
  it('reads back what `warden up` writes, every target kind', () => {
    for (const target of [RECORD.target, { kind: 'latest' }, { kind: 'lsn', lsn: '0/3000060' }, { kind: 'xid', xid: '745' }, { kind: 'name', name: 'before-upgrade' }] as const) {
      const rec = { ...RECORD, target, targetTimeline: 2 };
      assert.deepEqual(decodeDataSourceRecord(JSON.stringify(rec)), { ok: true, value: rec });
    }
  });

  it('reads a record without the source\'s password (a repository given by its path: the bootstrap trusts its private socket)', () => {
    const { superuserPasswordFile: _p, ...rest } = RECORD;
    assert.deepEqual(decodeDataSourceRecord(JSON.stringify(rest)), { ok: true, value: rest });
  });

  it('names what is wrong with a bad record instead of using it', () => {
    const bad = (v: unknown): string => {
      const d = decodeDataSourceRecord(JSON.stringify(v));
      assert.ok(!d.ok);
      return d.error;
    };
    assert.match(bad({ ...RECORD, repo: 0 }), /repo/);
    assert.match(bad({ ...RECORD, target: { kind: 'time' } }), /a time target needs its time field/);
    assert.match(bad({ ...RECORD, target: { kind: 'immediate' } }), /kind/);
    assert.match(bad({ ...RECORD, stanza: undefined }), /stanza/);
    assert.ok(!decodeDataSourceRecord('{').ok);
  });
});
