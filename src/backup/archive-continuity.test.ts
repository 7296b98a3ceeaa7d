import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { doneWalFiles, planArchiveContinuity, repoDirsOf, walFileOf, walNameOfRepoEntry } from './archive-continuity.js';
import { currentArchiveId, parseRepoLs } from './pgbackrest-info.js';
import { repoIndexesOf } from './pgbackrest-config.js';

describe('WAL file names', () => {
  const cases: ReadonlyArray<readonly [string, string, ReturnType<typeof walFileOf>]> = [
    ['a segment', '00000002000000010000000A', { name: '00000002000000010000000A', kind: 'segment', timeline: 2, repoDir: '0000000200000001' }],
    ['a partial segment', '000000010000000000000005.partial', { name: '000000010000000000000005.partial', kind: 'partial', timeline: 1, repoDir: '0000000100000000' }],
    ['a backup history file', '000000010000000000000003.00000028.backup', { name: '000000010000000000000003.00000028.backup', kind: 'backup', timeline: 1, repoDir: '0000000100000000' }],
    ['a timeline history file', '0000000A.history', { name: '0000000A.history', kind: 'history', timeline: 10, repoDir: '' }],
    ['not a temporary file', 'xlogtemp.123', undefined],
    ['not RECOVERYXLOG', 'RECOVERYXLOG', undefined],
    ['not lower case hex', '00000001000000000000000a', undefined],
    ['not the archive_status dir', 'archive_status', undefined],
  ];
  for (const [what, name, expected] of cases) it(`reads ${what}`, () => assert.deepEqual(walFileOf(name), expected));

  const stored: ReadonlyArray<readonly [string, string | undefined]> = [
    ['000000010000000000000003-0123456789abcdef0123456789abcdef01234567.gz', '000000010000000000000003'],
    ['000000010000000000000003-0123456789abcdef0123456789abcdef01234567', '000000010000000000000003'],
    ['000000010000000000000005.partial-0123456789abcdef0123456789abcdef01234567.zst', '000000010000000000000005.partial'],
    ['000000010000000000000003.00000028.backup-0123456789abcdef0123456789abcdef01234567', '000000010000000000000003.00000028.backup'],
    ['00000002.history', '00000002.history'],
    ['00000002.history.gz', '00000002.history'],
    ['archive.info', undefined],
    ['000000010000000000000003-short.gz', undefined],
  ];
  for (const [entry, expected] of stored) it(`finds the WAL file of repository entry ${entry}`, () => assert.equal(walNameOfRepoEntry(entry), expected));

  it('lists each repository directory once: 256 segments per directory, history files at the top', () => {
    assert.deepEqual(repoDirsOf(['000000010000000000000003', '0000000100000000000000FF', '000000010000000100000000', '00000002.history', 'junk']), ['', '0000000100000000', '0000000100000001']);
  });
});

describe('the archive continuity plan before promotion', () => {
  const seg = (n: number, tl = 1): string => `${tl.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

  it('marks ready what the standby received but the repository does not hold; leaves the rest', () => {
    const plan = planArchiveContinuity({
      statusFiles: [`${seg(3)}.done`, `${seg(4)}.done`, `${seg(5)}.done`, `${seg(6)}.ready`, `${seg(2)}.done`, '00000001.history.done'],
      walFiles: new Set([seg(3), seg(4), seg(5), seg(6), '00000001.history', 'archive_status']),
      inRepository: new Set([seg(3)]),
    });
    assert.deepEqual(plan, { toReady: ['00000001.history', seg(4), seg(5)], archived: [seg(3)], gone: [seg(2)] });
  });

  it('marks every done file ready when the repository could not be asked (a duplicate push is accepted, a gap is not)', () => {
    const plan = planArchiveContinuity({ statusFiles: [`${seg(3)}.done`, `${seg(4)}.done`], walFiles: new Set([seg(3), seg(4)]), inRepository: undefined });
    assert.deepEqual(plan.toReady, [seg(3), seg(4)]);
  });

  it('keeps files of older timelines in the plan: an earlier failover may have left them unarchived', () => {
    const plan = planArchiveContinuity({ statusFiles: [`${seg(9, 1)}.done`, `${seg(10, 2)}.done`], walFiles: new Set([seg(9, 1), seg(10, 2)]), inRepository: new Set() });
    assert.deepEqual(plan.toReady, [seg(9, 1), seg(10, 2)]);
  });

  it('asks the repository only about done files still in pg_wal', () => {
    assert.deepEqual(doneWalFiles({ statusFiles: [`${seg(4)}.done`, `${seg(3)}.done`, `${seg(5)}.ready`, 'garbage.done'], walFiles: new Set([seg(3), seg(4), seg(5), 'garbage']) }), [seg(3), seg(4)]);
  });

  it('never marks ready a file that is missing from pg_wal or held by the repository, and misses no other done file (property)', () => {
    const name = fc.integer({ min: 1, max: 40 }).map((n) => seg(n));
    fc.assert(
      fc.property(fc.uniqueArray(name), fc.uniqueArray(name), fc.uniqueArray(name), fc.uniqueArray(name), (done, ready, present, archived) => {
        const statusFiles = [...done.map((n) => `${n}.done`), ...ready.map((n) => `${n}.ready`)];
        const plan = planArchiveContinuity({ statusFiles, walFiles: new Set(present), inRepository: new Set(archived) });
        for (const n of plan.toReady) assert.ok(present.includes(n) && !archived.includes(n) && done.includes(n));
        const expected = done.filter((n) => present.includes(n) && !archived.includes(n) && !ready.includes(n)).sort();
        assert.deepEqual([...plan.toReady], expected);
      }),
    );
  });
});

describe('pgbackrest repo-ls output and repository options', () => {
  it('reads the entries of a listing, without the listed path itself', () => {
    const r = parseRepoLs('{".":{"type":"path"},"15-1":{"type":"path"},"archive.info":{"type":"file","size":248,"time":1764633600}}');
    assert.deepEqual(r, { ok: true, value: [{ name: '15-1', type: 'path' }, { name: 'archive.info', type: 'file' }] });
  });

  it('refuses a listing that is not an object of typed entries', () => {
    const list = parseRepoLs('[1]');
    assert.ok(!list.ok && /must be an object/.test(list.error));
    const bad = parseRepoLs('{"x":{"type":"socket"}}');
    assert.ok(!bad.ok && /"x"/.test(bad.error));
  });

  it('takes the archive of the newest database (the highest db id)', () => {
    assert.equal(currentArchiveId(['15-1', '16-3', '15-2', 'archive.info']), '16-3');
    assert.equal(currentArchiveId(['archive.info']), undefined);
  });

  it('finds the repositories a pgbackrest.conf configures', () => {
    assert.deepEqual(repoIndexesOf('[global]\nrepo2-path=/b\nrepo1-path=/a\nrepo1-retention-full=2\nrepo3-type=s3\n'), [1, 2, 3]);
    assert.deepEqual(repoIndexesOf('[global]\nlock-path=/l\n'), [1]);
  });
});
