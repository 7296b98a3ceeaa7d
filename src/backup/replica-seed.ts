// Replicas from the repository (docs/architecture.md, "Backups"): a new or re-seeded replica is
// restored from the latest backup as a standby and then replays the archive and streams, so the
// primary is not read for its base copy; pg_basebackup only when the repository cannot serve it.
import type { BackupCallOptions, BackupRepository, BackupSet, RestoreRequest } from './backup-repository.js';

/** Why the repository can seed this replica (with the set it will restore), or why it cannot. */
export type SeedVerdict = { readonly kind: 'restore'; readonly set: BackupSet } | { readonly kind: 'basebackup'; readonly why: string };

/**
 * Whether a repository whose `info` is `info` may seed a replica of the cluster with system
 * identifier `systemIdentifier`: the stanza must be healthy, belong to that system (a repository of
 * another cluster is never restored from), and hold a backup. Pure.
 */
export function seedVerdict(info: Awaited<ReturnType<BackupRepository['info']>>, systemIdentifier: string): SeedVerdict {
  if (info.statusCode !== 0 && info.sets.length === 0) return { kind: 'basebackup', why: `the repository has no backup yet (${info.statusMessage})` };
  if (!info.systemIds.includes(systemIdentifier)) {
    return { kind: 'basebackup', why: `stanza ${info.stanza} belongs to system ${info.systemIds.join(', ') || 'none'}, not to this cluster (${systemIdentifier})` };
  }
  const set = [...info.sets].reverse().find((s) => !s.hadErrors) ?? info.sets.at(-1);
  if (set === undefined) return { kind: 'basebackup', why: 'the repository has no backup yet' };
  return { kind: 'restore', set };
}

/**
 * Restores the newest usable backup into `dataDir` (empty or missing) as a standby of the running
 * cluster, archiving settings kept. Resolves with the set restored, or with why pg_basebackup is
 * needed instead; a restore that fails midway throws (the caller removes what it wrote).
 */
export async function seedReplicaFromRepository(
  repo: BackupRepository,
  req: { readonly dataDir: string; readonly systemIdentifier: string },
  opts: BackupCallOptions,
): Promise<SeedVerdict> {
  const started = Date.now();
  const verdict = seedVerdict(await repo.info(opts), req.systemIdentifier);
  if (verdict.kind !== 'restore') return verdict;
  const request: RestoreRequest = { dataDir: req.dataDir, target: { kind: 'latest' }, setLabel: verdict.set.label, standby: true, archiveMode: 'preserve' };
  await repo.restore(request, { ...opts, timeoutMs: Math.max(1000, opts.timeoutMs - (Date.now() - started)) });
  return verdict;
}
