import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerStatus } from './postgres.js';
import { primaryStatus, standbyStatus, timelineOfWalFile, type BaseStatusRow, type RecoveryStatusRow, type ReplicationRow } from './server-status.js';

const BASE: BaseStatusRow = { in_recovery: false, system_identifier: '7710495906974059908', pending_restart: false };
const STANDBY_BASE: BaseStatusRow = { ...BASE, in_recovery: true };

describe('timeline of a WAL file name', () => {
  const cases: { walfile: string; timeline: number }[] = [
    { walfile: '000000010000000000000003', timeline: 1 },
    { walfile: '0000000A0000000000000003', timeline: 10 },
    { walfile: '000001000000000200000010', timeline: 256 },
  ];
  for (const c of cases) {
    it(`reads timeline ${c.timeline} from ${c.walfile}`, () => {
      assert.equal(timelineOfWalFile(c.walfile), c.timeline);
    });
  }
});

describe('status of a primary', () => {
  it('takes the timeline from the WAL file being written and the position from the flushed LSN', () => {
    const s = primaryStatus({ ...BASE, pending_restart: true }, { flush: '0/3000148', walfile: '000000020000000000000003' }, []);
    assert.deepEqual(s, {
      systemIdentifier: '7710495906974059908',
      pendingRestart: true,
      inRecovery: false,
      timeline: 2,
      walPosition: 0x3000148n,
      replicas: [],
    } satisfies ServerStatus);
  });

  const replicaCases: { name: string; row: ReplicationRow; want: NonNullable<ServerStatus['replicas']>[number] }[] = [
    {
      name: 'lists a streaming standby with its flushed position',
      row: { application_name: 'demo-3', flush_lsn: '0/3000060', state: 'streaming', sync_state: 'sync' },
      want: { applicationName: 'demo-3', flushLsn: 0x3000060n, state: 'streaming', syncState: 'sync' },
    },
    {
      name: 'lists a standby that has flushed nothing yet without a position',
      row: { application_name: 'demo-1', flush_lsn: null, state: 'startup', sync_state: 'async' },
      want: { applicationName: 'demo-1', state: 'startup', syncState: 'async' },
    },
  ];
  for (const c of replicaCases) {
    it(c.name, () => {
      const s = primaryStatus(BASE, { flush: '0/3000148', walfile: '000000010000000000000003' }, [c.row]);
      assert.deepEqual(s.replicas, [c.want]);
    });
  }

  it('keeps the standbys in the order of the query', () => {
    const row = (n: string): ReplicationRow => ({ application_name: n, flush_lsn: null, state: 'streaming', sync_state: 'async' });
    const s = primaryStatus(BASE, { flush: '0/1', walfile: '000000010000000000000001' }, [row('a'), row('b'), row('c')]);
    assert.deepEqual(s.replicas?.map((r) => r.applicationName), ['a', 'b', 'c']);
  });
});

describe('status of a standby', () => {
  const row = (over: Partial<RecoveryStatusRow>): RecoveryStatusRow => ({
    receive: '0/3000100',
    replay: '0/3000080',
    wr_status: 'streaming',
    received_tli: 2,
    checkpoint_tli: 1,
    history_tli: 2,
    ...over,
  });

  const cases: { name: string; row: RecoveryStatusRow; want: Partial<ServerStatus>; absent?: (keyof ServerStatus)[] }[] = [
    {
      name: 'streams: the position is the greater of received and replayed, the timeline the newest seen',
      row: row({}),
      want: { walPosition: 0x3000100n, receiveLsn: 0x3000100n, replayLsn: 0x3000080n, timeline: 2, streaming: true, receivedTimeline: 2 },
    },
    {
      name: 'replays ahead of what it received (WAL restored from pg_wal): the replay position counts',
      row: row({ receive: '0/2000000', replay: '0/3000000' }),
      want: { walPosition: 0x3000000n, receiveLsn: 0x2000000n, replayLsn: 0x3000000n },
    },
    {
      name: 'never received WAL: no receive position, the replay position counts',
      row: row({ receive: null, wr_status: null, received_tli: null }),
      want: { walPosition: 0x3000080n, replayLsn: 0x3000080n, streaming: false, timeline: 2 },
      absent: ['receiveLsn', 'receivedTimeline'],
    },
    {
      name: 'knows no position at all: position zero',
      row: row({ receive: null, replay: null, wr_status: null, received_tli: null, history_tli: null }),
      want: { walPosition: 0n, timeline: 1, streaming: false },
      absent: ['receiveLsn', 'replayLsn', 'receivedTimeline'],
    },
    {
      name: 'lost its WAL receiver with the leader: the newest history file still gives the timeline',
      row: row({ wr_status: null, received_tli: null, checkpoint_tli: 1, history_tli: 3 }),
      want: { timeline: 3, streaming: false },
    },
    {
      name: 'checkpointed on a newer timeline than any history file in pg_wal: the checkpoint gives it',
      row: row({ received_tli: null, checkpoint_tli: 4, history_tli: 2 }),
      want: { timeline: 4 },
    },
    {
      name: 'has a WAL receiver that is not streaming yet',
      row: row({ wr_status: 'starting' }),
      want: { streaming: false, receivedTimeline: 2 },
    },
    {
      name: 'reports a received timeline of 0 as none',
      row: row({ received_tli: 0 }),
      want: {},
      absent: ['receivedTimeline'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = standbyStatus(STANDBY_BASE, c.row);
      assert.equal(s.inRecovery, true);
      assert.equal(s.systemIdentifier, '7710495906974059908');
      assert.equal(s.replicas, undefined);
      for (const [k, v] of Object.entries(c.want)) assert.deepEqual(s[k as keyof ServerStatus], v, k);
      for (const k of c.absent ?? []) assert.equal(k in s, false, `${k} should be absent`);
    });
  }
});
