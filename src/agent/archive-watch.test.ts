import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { ArchiveWatch, type ArchiveWatchDeps } from './archive-watch.js';
import { silentLogger } from './logger.js';

const ROW = { lsn: '0/3000060', last_archived_wal: '000000010000000000000002', archived_ms: '1000', last_failed_wal: null, failed_ms: null, failed_count: '0', now_ms: '2000' };

/** A watch over a fake server and DCS; `leading` says whether this member leads. */
function watchWith(ensureStanza: () => Promise<void>): { watch: ArchiveWatch; leading: { value: boolean }; puts: string[] } {
  const leading = { value: true };
  const puts: string[] = [];
  const deps: ArchiveWatchDeps = {
    pg: { query: () => Promise.resolve([ROW]) },
    dcs: {
      put: (key: string) => {
        puts.push(key);
        return Promise.resolve(1);
      },
      get: () => Promise.resolve(undefined),
    },
    key: '/warden/app/backup/archive',
    member: 'app-1',
    isArchiving: () => leading.value,
    clock: new FakeClock(0),
    log: silentLogger,
    intervalMs: 5000,
    timeoutMs: 1000,
    ensureStanza,
  };
  return { watch: new ArchiveWatch(deps), leading, puts };
}

describe('ArchiveWatch: the stanza on node daemons (postgresql.archive.create_stanza)', () => {
  it('creates the stanza once per leadership, before the first look, and not on a replica', async () => {
    let calls = 0;
    const { watch, leading, puts } = watchWith(() => {
      calls += 1;
      return Promise.resolve();
    });
    leading.value = false;
    await watch.tick();
    assert.equal(calls, 0, 'a replica creates no stanza');
    leading.value = true;
    await watch.tick();
    await watch.tick();
    assert.equal(calls, 1, 'once while it leads');
    assert.equal(puts.length, 2, 'the archiver is still watched on each look');
    leading.value = false;
    await watch.tick();
    leading.value = true;
    await watch.tick();
    assert.equal(calls, 2, 'again in a new leadership (another repository may have been lost meanwhile)');
  });

  it('retries a failed stanza-create on each look and keeps watching the archiver meanwhile', async () => {
    let calls = 0;
    const { watch, puts } = watchWith(() => {
      calls += 1;
      return calls < 3 ? Promise.reject(new Error('unable to acquire lock [pgBackRest error 50]')) : Promise.resolve();
    });
    await watch.tick();
    await watch.tick();
    assert.equal(calls, 2);
    assert.equal(puts.length, 2, 'a failing stanza-create does not stop the archive health being published');
    assert.equal(watch.current()?.failing, false);
    await watch.tick();
    await watch.tick();
    assert.equal(calls, 3, 'done once it succeeded');
  });
});
