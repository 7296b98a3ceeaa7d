// The I/O around planArchiveContinuity: read a standby's pg_wal, ask the repository, rename the
// markers. Run just before promotion (invariant 9 in docs/architecture.md; the why is in
// archive-continuity.ts).
import { readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { within } from '../core/deadline.js';
import { describeError } from '../core/errors.js';
import { doneWalFiles, planArchiveContinuity } from './archive-continuity.js';
import type { BackupRepository } from './backup-repository.js';

/** What one run did. */
export interface ArchiveContinuityReport {
  /** Markers turned from `.done` back to `.ready`: the new primary archives these. */
  readonly markedReady: readonly string[];
  /** Marked done and already in the repository. */
  readonly archived: number;
  /** Why the repository could not be asked (then every `.done` file in pg_wal was marked ready), if it could not. */
  readonly repositoryError: string | undefined;
  readonly elapsedMs: number;
}

/**
 * Turns the `.done` markers of `dataDir`'s WAL files that the repository does not hold back to
 * `.ready`. The repository gets `timeoutMs` to answer; when it cannot, every marked file is pushed
 * again (a duplicate with the same checksum is accepted), so a slow or broken repository delays a
 * promotion by at most `timeoutMs` and never loses a segment. Must run while PostgreSQL is still a
 * standby: after promotion its checkpointer may remove `.done` files' segments.
 */
export async function markUnarchivedWalReady(dataDir: string, repo: Pick<BackupRepository, 'archivedWal'>, opts: { readonly timeoutMs: number }): Promise<ArchiveContinuityReport> {
  const started = Date.now();
  const walDir = join(dataDir, 'pg_wal');
  const statusDir = join(walDir, 'archive_status');
  const [statusFiles, walNames] = await Promise.all([readdir(statusDir), readdir(walDir)]);
  const walFiles = new Set(walNames);
  const candidates = doneWalFiles({ statusFiles, walFiles });
  let inRepository: ReadonlySet<string> | undefined;
  let repositoryError: string | undefined;
  if (candidates.length > 0) {
    // The promotion waits timeoutMs at most: a pgbackrest that ignores SIGTERM is left to be
    // killed in the background (the adapter's grace) while the promotion goes on.
    const abort = new AbortController();
    const asked = repo.archivedWal(candidates, { timeoutMs: opts.timeoutMs, signal: abort.signal });
    asked.catch(() => undefined);
    try {
      inRepository = await within(asked, opts.timeoutMs, 'the repository\'s answer');
    } catch (e) {
      abort.abort();
      repositoryError = describeError(e);
    }
  }
  const plan = planArchiveContinuity({ statusFiles, walFiles, inRepository: candidates.length === 0 ? new Set() : inRepository });
  const markedReady: string[] = [];
  for (const name of plan.toReady) {
    try {
      await rename(join(statusDir, `${name}.done`), join(statusDir, `${name}.ready`));
      markedReady.push(name);
    } catch (e) {
      // A restartpoint removed the segment and its marker meanwhile: it is not ours to push.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return { markedReady, archived: plan.archived.length, repositoryError, elapsedMs: Date.now() - started };
}
