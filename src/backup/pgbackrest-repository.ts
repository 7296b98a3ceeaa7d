import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertNever, WardenError } from '../core/errors.js';
import { repoDirsOf, walNameOfRepoEntry } from './archive-continuity.js';
import type { BackupCallOptions, BackupRepository, BackupSet, BackupSource, BackupType, PgServer, RepositoryInfo, RestoreRequest, RestoreTarget } from './backup-repository.js';
import { pgOptions, repoIndexesOf } from './pgbackrest-config.js';
import { currentArchiveId, parsePgBackRestInfo, parseRepoLs, type RepoLsEntry } from './pgbackrest-info.js';
import { runPgBackRest, type RunIdentity } from './run-pgbackrest.js';

/** What the pgBackRest adapter needs: the stanza and the repository-level config file. */
export interface PgBackRestRepositoryConfig {
  /** The stanza: the cluster's name. */
  readonly stanza: string;
  /** A pgbackrest.conf with the repositories, their options and this adapter's lock and log paths (no pg servers: each call names them). */
  readonly configFile: string;
  /** Run pgbackrest as this OS user (PostgreSQL's run user when Warden runs as root). */
  readonly identity?: RunIdentity;
  /** The pgbackrest binary (default: `pgbackrest` on PATH). */
  readonly binary?: string;
}

/**
 * The backup port on pgBackRest's CLI. The servers each call works on are passed as pgN-* options, so
 * one config file serves every member; backup and expire run here, where the repository is local
 * (a pgBackRest 2.45 rule).
 */
export class PgBackRestRepository implements BackupRepository {
  constructor(readonly config: PgBackRestRepositoryConfig) {}

  async createStanza(primary: PgServer, opts: BackupCallOptions): Promise<void> {
    await this.run('stanza-create', [...flags(pgOptions(1, primary))], opts);
  }

  async check(primary: PgServer, opts: BackupCallOptions): Promise<void> {
    await this.run('check', [...flags(pgOptions(1, primary))], opts);
  }

  async backup(source: BackupSource, type: BackupType, opts: BackupCallOptions & { readonly repo?: number }): Promise<BackupSet> {
    // With backup-standby, pgBackRest copies files from the standby and only starts and stops the
    // backup on the primary; it finds which of pg1/pg2 is which itself.
    const servers = source.standby === undefined ? [flags(pgOptions(1, source.primary))] : [flags(pgOptions(1, source.standby)), flags(pgOptions(2, source.primary)), ['--backup-standby']];
    const started = Date.now();
    await this.run('backup', [...servers.flat(), `--type=${type}`, ...(opts.repo === undefined ? [] : [`--repo=${opts.repo}`])], opts);
    // Only the repository backed up into is read (pgBackRest's default one is repo1): a second one, a bucket say, is not asked.
    const info = await this.info({ timeoutMs: Math.max(10_000, opts.timeoutMs - (Date.now() - started)), repo: opts.repo ?? 1, ...(opts.signal === undefined ? {} : { signal: opts.signal }) });
    // The repository lock was ours for the whole run: the newest set is the one just taken (its
    // start is pgBackRest's, in whole seconds). A diff or incr without a full became a full.
    const set = info.sets.at(-1);
    if (set === undefined || set.startedAtMs < Math.floor(started / 1000) * 1000 - 1000) {
      throw new WardenError('backup-command-failed', `pgbackrest backup succeeded but info lists no new ${type} set for stanza ${this.config.stanza}`);
    }
    return set;
  }

  async info(opts: BackupCallOptions & { readonly repo?: number; readonly ioTimeoutSeconds?: number }): Promise<RepositoryInfo> {
    const args = ['--output=json', ...(opts.repo === undefined ? [] : [`--repo=${opts.repo}`]), ...(opts.ioTimeoutSeconds === undefined ? [] : [`--io-timeout=${opts.ioTimeoutSeconds}`])];
    const out = await this.run('info', args, opts);
    const parsed = parsePgBackRestInfo(out.stdout, this.config.stanza);
    if (!parsed.ok) throw new WardenError('backup-command-failed', parsed.error);
    return parsed.value;
  }

  async restore(request: RestoreRequest, opts: BackupCallOptions): Promise<void> {
    const args = [
      `--pg1-path=${request.dataDir}`,
      ...(request.lockPath === undefined ? [] : [`--lock-path=${request.lockPath}`]),
      ...(request.logPath === undefined ? [] : [`--log-path=${request.logPath}`]),
      `--archive-mode=${request.archiveMode}`,
      ...(request.delta === true ? ['--delta'] : []),
      ...(request.setLabel === undefined ? [] : [`--set=${request.setLabel}`]),
      ...(request.repo === undefined ? [] : [`--repo=${request.repo}`]),
      ...(request.standby === true ? standbyFlags(request.target) : targetFlags(request.target)),
      ...(request.targetTimeline === undefined ? [] : [`--target-timeline=${request.targetTimeline}`]),
    ];
    await this.run('restore', args, opts);
  }

  async pushWal(dataDir: string, fileName: string, opts: BackupCallOptions & { readonly lockPath?: string; readonly logPath?: string }): Promise<void> {
    if (!/^[0-9A-F]{8}(\.history|[0-9A-F]{16}(\.partial)?)$/.test(fileName)) throw new WardenError('config-invalid', `not a WAL or history file name: ${JSON.stringify(fileName)}`);
    const args = [
      `--pg1-path=${dataDir}`,
      '--no-archive-async',
      ...(opts.lockPath === undefined ? [] : [`--lock-path=${opts.lockPath}`]),
      ...(opts.logPath === undefined ? [] : [`--log-path=${opts.logPath}`]),
    ];
    await this.run('archive-push', args, opts, [join(dataDir, 'pg_wal', fileName)]);
  }

  async expire(opts: BackupCallOptions & { readonly repo?: number; readonly set?: string }): Promise<void> {
    const args = [...(opts.repo === undefined ? [] : [`--repo=${opts.repo}`]), ...(opts.set === undefined ? [] : [`--set=${opts.set}`])];
    await this.run('expire', args, { timeoutMs: opts.timeoutMs, ...(opts.signal === undefined ? {} : { signal: opts.signal }) });
  }

  async archivedWal(names: readonly string[], opts: BackupCallOptions): Promise<ReadonlySet<string>> {
    const wanted = new Set(names);
    if (wanted.size === 0) return new Set();
    const deadline = Date.now() + opts.timeoutMs;
    const left = (): BackupCallOptions => ({ timeoutMs: Math.max(1, deadline - Date.now()), ...(opts.signal === undefined ? {} : { signal: opts.signal }) });
    // A file counts as archived only when every repository has it: archive-push writes to each.
    let held: Set<string> | undefined;
    for (const repo of repoIndexesOf(await readFile(this.config.configFile, 'utf8'))) {
      const top = `archive/${this.config.stanza}`;
      const archiveId = currentArchiveId((await this.repoLs(repo, top, left())).filter((e) => e.type === 'path').map((e) => e.name));
      const inThis = new Set<string>();
      if (archiveId !== undefined) {
        // One listing per directory of 256 segments (and the top one for .history files): a few
        // calls, however long the archive is.
        for (const dir of repoDirsOf([...wanted])) {
          for (const e of await this.repoLs(repo, dir === '' ? `${top}/${archiveId}` : `${top}/${archiveId}/${dir}`, left())) {
            const wal = e.type === 'file' ? walNameOfRepoEntry(e.name) : undefined;
            if (wal !== undefined && wanted.has(wal)) inThis.add(wal);
          }
        }
      }
      held = held === undefined ? inThis : new Set([...held].filter((n) => inThis.has(n)));
    }
    return held ?? new Set();
  }

  /** The entries of `path` in repository `repo`; a path that does not exist (yet) has none. */
  private async repoLs(repo: number, path: string, opts: BackupCallOptions): Promise<RepoLsEntry[]> {
    const out = await this.run('repo-ls', [`--repo=${repo}`, '--output=json'], opts, [path]);
    const parsed = parseRepoLs(out.stdout);
    if (!parsed.ok) throw new WardenError('backup-command-failed', parsed.error);
    return parsed.value;
  }

  /** `pgbackrest <options> <command> <params>`: pgBackRest reads the first word as the command and the words after it as its parameters. */
  private async run(command: string, args: readonly string[], opts: BackupCallOptions, params: readonly string[] = []): Promise<{ stdout: string }> {
    return runPgBackRest([`--config=${this.config.configFile}`, `--stanza=${this.config.stanza}`, ...args, command, ...params], {
      what: `${command} (stanza ${this.config.stanza})`,
      timeoutMs: opts.timeoutMs,
      ...(opts.signal === undefined ? {} : { signal: opts.signal }),
      ...(this.config.identity === undefined ? {} : { identity: this.config.identity }),
      ...(this.config.binary === undefined ? {} : { binary: this.config.binary }),
    });
  }
}

function flags(options: Readonly<Record<string, string>>): string[] {
  return Object.entries(options).map(([k, v]) => `--${k}=${v}`);
}

/** A standby restore follows the archive to its end: it has no other target. */
function standbyFlags(t: RestoreTarget): string[] {
  if (t.kind !== 'latest') throw new WardenError('config-invalid', `a standby restore recovers to the end of the archive; target ${t.kind} is not possible`);
  return ['--type=standby'];
}

/** restore's --type/--target options; a target other than `latest` ends recovery by promoting (the copy becomes writable). */
export function targetFlags(t: RestoreTarget): string[] {
  const exclusive = (e: boolean | undefined): string[] => (e === true ? ['--target-exclusive'] : []);
  switch (t.kind) {
    case 'latest':
      return [];
    case 'time':
      return ['--type=time', `--target=${t.time}`, ...exclusive(t.exclusive), '--target-action=promote'];
    case 'lsn':
      return ['--type=lsn', `--target=${t.lsn}`, ...exclusive(t.exclusive), '--target-action=promote'];
    case 'xid':
      return ['--type=xid', `--target=${t.xid}`, ...exclusive(t.exclusive), '--target-action=promote'];
    case 'name':
      return ['--type=name', `--target=${t.name}`, '--target-action=promote'];
    default:
      return assertNever(t);
  }
}
