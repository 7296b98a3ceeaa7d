import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWardenError } from '../core/errors.js';
import { dataDirStateFromControlData, isCleanShutdown, parseControlData } from './control-data.js';

/** The head of what pg_controldata 15 prints (the fields the agent reads, and some it does not). */
const CONTROLDATA_15 = `pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7710495906974059908
Database cluster state:               shut down in recovery
pg_control last modified:             Tue 01 Dec 2026 10:00:00 PM UTC
Latest checkpoint location:           0/3000028
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000020000000000000003
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   2
Latest checkpoint's full_page_writes: on
Latest checkpoint's NextXID:          0:735
Time of latest checkpoint:            Tue 01 Dec 2026 09:59:58 PM UTC
wal_level setting:                    replica
max_connections setting:              150
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
`;

describe('pg_controldata output', () => {
  const fieldCases: { name: string; text: string; field: string; want: string | undefined }[] = [
    { name: 'reads a value after the first colon, trimmed', text: CONTROLDATA_15, field: 'Database system identifier', want: '7710495906974059908' },
    { name: 'keeps the colons inside a value (times of day)', text: CONTROLDATA_15, field: 'pg_control last modified', want: 'Tue 01 Dec 2026 10:00:00 PM UTC' },
    { name: 'keeps apostrophes in field names', text: CONTROLDATA_15, field: "Latest checkpoint's TimeLineID", want: '2' },
    { name: 'skips lines without a colon', text: 'no colon here\nA: b\n', field: 'no colon here', want: undefined },
    { name: 'skips lines that start with a colon', text: ': orphan value\n', field: '', want: undefined },
    { name: 'reads an empty value as the empty string', text: 'Mock authentication nonce:\n', field: 'Mock authentication nonce', want: '' },
    { name: 'accepts CRLF line ends by trimming the value', text: 'Database cluster state: in production\r\n', field: 'Database cluster state', want: 'in production' },
  ];
  for (const c of fieldCases) {
    it(c.name, () => {
      assert.equal(parseControlData(c.text).get(c.field), c.want);
    });
  }

  it('turns the output of a standby shut down cleanly into an initialized data dir with its checkpoint', () => {
    assert.deepEqual(dataDirStateFromControlData(CONTROLDATA_15), {
      kind: 'initialized',
      checkpointLsn: 0x3000028n,
      systemIdentifier: '7710495906974059908',
      clusterState: 'shut down in recovery',
      timeline: 2,
      controlSettings: { max_connections: 150, max_locks_per_transaction: 64, max_prepared_transactions: 0, max_wal_senders: 10, max_worker_processes: 8 },
    });
  });

  it('leaves out a hot-standby value that is not an integer', () => {
    assert.deepEqual(dataDirStateFromControlData('max_connections setting: many\nmax_wal_senders setting: 12\n').controlSettings, { max_wal_senders: 12 });
  });

  it('leaves out the fields the output lacks', () => {
    assert.deepEqual(dataDirStateFromControlData('Database cluster state:  in production\n'), { kind: 'initialized', clusterState: 'in production' });
    assert.deepEqual(dataDirStateFromControlData(''), { kind: 'initialized' });
  });

  it('refuses a checkpoint location that is not an LSN', () => {
    assert.throws(() => dataDirStateFromControlData('Latest checkpoint location: nowhere\n'), (e: unknown) => isWardenError(e, 'internal'));
  });
});

describe('clean shutdown', () => {
  const cases: { state: string | undefined; clean: boolean }[] = [
    { state: 'shut down', clean: true },
    { state: 'shut down in recovery', clean: true },
    { state: 'in production', clean: false },
    { state: 'in archive recovery', clean: false },
    { state: 'in crash recovery', clean: false },
    { state: 'shutting down', clean: false },
    { state: undefined, clean: false },
  ];
  for (const c of cases) {
    it(`${c.clean ? 'counts' : 'does not count'} ${c.state === undefined ? 'an unknown state' : `"${c.state}"`} as a clean shutdown`, () => {
      assert.equal(isCleanShutdown(c.state), c.clean);
    });
  }
});
