// Recovery of a restored data directory to its target in a private postmaster, shared by `warden
// restore --into`, `warden restore --in-place` and the bootstrap of a cluster from another cluster's
// backups (spec.dataSource) — docs/architecture.md, "Backups" and "Point-in-time recovery".
import { readFile, stat } from 'node:fs/promises';
import { recoveryEndedShort, type RecoveryEndedShort, type RestoreTarget } from '../backup/index.js';
import { eventually } from '../core/deadline.js';
import { assertNever, WardenError } from '../core/errors.js';
import type { LocalPostgres } from '../postgres/postgres-instance.js';

const PG_QUERY_TIMEOUT_MS = 5_000;

/** The recovery settings pgBackRest's restore writes to postgresql.auto.conf; reset once the copy is promoted. */
export const PGBACKREST_AUTO_CONF_KEYS = [
  'archive_mode',
  'restore_command',
  'recovery_target',
  'recovery_target_time',
  'recovery_target_lsn',
  'recovery_target_xid',
  'recovery_target_name',
  'recovery_target_inclusive',
  'recovery_target_action',
  'recovery_target_timeline',
] as const;

/** A time target in a quiet period: recovered to the last archived record instead (`lsn`). */
export type QuietPeriod = { readonly lsn: string; readonly lastCommitAt: string | undefined };

/**
 * Recovers a server restored for `target` until it is promoted there. When recovery replays every
 * archived record without reaching the target and the target is a time the archive covers
 * (checked before), that is a quiet period — no commit after it anywhere in the archive — so the
 * end of the replayed WAL holds exactly what was committed by then: the set is restored again to
 * that very record (`restoreAgain`, an LSN target) and recovered, once (docs/architecture.md,
 * "Point-in-time recovery"). Any other target the WAL does not reach is a config-invalid error
 * ending with `consequence`. For `warden restore --into` and `--in-place` alike.
 */
export async function recoverToTarget(
  server: LocalPostgres,
  target: RestoreTarget,
  setLabel: string,
  consequence: string,
  left: () => number,
  restoreAgain: (t: RestoreTarget) => Promise<void>,
  onQuiet: (q: QuietPeriod) => void = () => undefined,
): Promise<{ recoveryMs: number; restoreMs: number; quiet: QuietPeriod | undefined }> {
  let recoveryMs = 0;
  let restoreMs = 0;
  let quiet: QuietPeriod | undefined;
  for (let attempt = 1; ; attempt++) {
    await server.configure({ kind: 'primary' });
    const t1 = Date.now();
    const outcome = await recoverScratch(server, left());
    recoveryMs += Date.now() - t1;
    if (outcome.kind === 'promoted') return { recoveryMs, restoreMs, quiet };
    if (attempt === 1 && target.kind === 'time' && outcome.ended.redoDoneLsn !== undefined) {
      quiet = { lsn: outcome.ended.redoDoneLsn, lastCommitAt: outcome.ended.lastCommitAt };
      onQuiet(quiet);
      const t2 = Date.now();
      await restoreAgain({ kind: 'lsn', lsn: quiet.lsn });
      restoreMs += Date.now() - t2;
      continue;
    }
    throw new WardenError(
      'config-invalid',
      `${describeTarget(target)} is not in the archived WAL after backup ${setLabel}: recovery replayed all of it${outcome.ended.redoDoneLsn === undefined ? '' : ` (up to LSN ${outcome.ended.redoDoneLsn})`} without reaching it; ${consequence}`,
    );
  }
}

/**
 * Waits until the scratch server has recovered to its target and promoted, or has stopped because
 * recovery replayed every archived record without reaching the target (PostgreSQL's FATAL
 * "recovery ended before configured recovery target was reached"). Any other stop is an error
 * with the log's tail; never waits past `timeoutMs`.
 */
async function recoverScratch(server: LocalPostgres, timeoutMs: number): Promise<{ kind: 'promoted' } | { kind: 'ended-short'; ended: RecoveryEndedShort }> {
  const logStart = await stat(server.logPath).then((s) => s.size, () => 0);
  const stopped = async (): Promise<{ kind: 'ended-short'; ended: RecoveryEndedShort }> => {
    const log = (await readFile(server.logPath, 'utf8').catch(() => '')).slice(logStart);
    const ended = recoveryEndedShort(log);
    if (ended !== undefined) return { kind: 'ended-short', ended };
    throw new WardenError('postgres-command-failed', `the restored copy stopped during recovery; log ${server.logPath}: ${log.trimEnd().split('\n').slice(-5).join(' | ')}`);
  };
  try {
    await server.start(timeoutMs);
  } catch (e) {
    if ((await server.processState()).kind !== 'running') return stopped();
    throw e;
  }
  const outcome = await eventually(async () => {
    if ((await server.processState()).kind !== 'running') return 'stopped' as const;
    const r = await server.query('SELECT pg_is_in_recovery() AS r', [], PG_QUERY_TIMEOUT_MS);
    return r[0]?.['r'] === false ? ('promoted' as const) : undefined;
  }, { timeoutMs, intervalMs: 200, what: 'the restored copy to reach its target and be promoted' });
  return outcome === 'promoted' ? { kind: 'promoted' } : stopped();
}

export function describeTarget(t: RestoreTarget): string {
  switch (t.kind) {
    case 'latest':
      return 'the latest archived WAL';
    case 'time':
      return `${t.exclusive === true ? 'just before' : ''}${t.time}`;
    case 'lsn':
      return `${t.exclusive === true ? 'just before ' : ''}LSN ${t.lsn}`;
    case 'xid':
      return `${t.exclusive === true ? 'just before ' : 'the commit of '}transaction ${t.xid}`;
    case 'name':
      return `restore point ${t.name}`;
    default:
      return assertNever(t);
  }
}

