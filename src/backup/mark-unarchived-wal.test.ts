import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { markUnarchivedWalReady } from './mark-unarchived-wal.js';

// The renames on a real directory; the repository's answer is given by hand (the adapter's answer
// against the real pgBackRest is in test/backup/archive-failover.test.ts).

const SEG = (n: number): string => `00000001000000000000000${n}`;

describe('marking unarchived WAL ready before promotion', () => {
  let root = '';
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'warden-mark-wal-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const dataDir = async (name: string): Promise<string> => {
    const d = join(root, name);
    await mkdir(join(d, 'pg_wal', 'archive_status'), { recursive: true });
    for (const n of [3, 4, 5]) {
      await writeFile(join(d, 'pg_wal', SEG(n)), '');
      await writeFile(join(d, 'pg_wal', 'archive_status', `${SEG(n)}.done`), '');
    }
    return d;
  };
  const status = async (d: string): Promise<string[]> => (await readdir(join(d, 'pg_wal', 'archive_status'))).sort();

  it('turns back to .ready only what the repository lacks', async () => {
    const d = await dataDir('some');
    const r = await markUnarchivedWalReady(d, { archivedWal: async (names) => new Set(names.filter((n) => n === SEG(3))) }, { timeoutMs: 1000 });
    assert.deepEqual(r.markedReady, [SEG(4), SEG(5)]);
    assert.equal(r.archived, 1);
    assert.equal(r.repositoryError, undefined);
    assert.deepEqual(await status(d), [`${SEG(3)}.done`, `${SEG(4)}.ready`, `${SEG(5)}.ready`]);
  });

  it('marks every done file ready, within the bound, when the repository does not answer', async () => {
    const d = await dataDir('hung');
    let aborted = false;
    const started = Date.now();
    const r = await markUnarchivedWalReady(
      d,
      {
        archivedWal: (_names, opts) =>
          new Promise((_resolve, reject) => {
            // A repository that never answers by itself: only the abort ends it.
            opts.signal?.addEventListener('abort', () => {
              aborted = true;
              reject(new Error('aborted'));
            });
          }),
      },
      { timeoutMs: 300 },
    );
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    assert.ok(aborted, 'the repository call was cancelled');
    assert.match(r.repositoryError ?? '', /did not happen within 300 ms/);
    assert.deepEqual(r.markedReady, [SEG(3), SEG(4), SEG(5)]);
  });

  it('marks every done file ready when the repository fails', async () => {
    const d = await dataDir('failing');
    const r = await markUnarchivedWalReady(d, { archivedWal: () => Promise.reject(new Error('repository unreachable')) }, { timeoutMs: 1000 });
    assert.match(r.repositoryError ?? '', /repository unreachable/);
    assert.deepEqual(await status(d), [`${SEG(3)}.ready`, `${SEG(4)}.ready`, `${SEG(5)}.ready`]);
  });
});
