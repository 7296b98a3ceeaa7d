import { spawnSync } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderPgBackRestConf, repoConf, type CloudStorage, type DataSourceRecord, type RestoreTarget } from '../backup/index.js';
import { WardenError } from '../core/errors.js';
import type { BackupsSpec } from '../spec/index.js';
import type { RunUser, RuntimeBackup, RuntimeMemberPgBackRest } from './runtime-layout.js';

/** Refuses to set up backups without the pgbackrest binary, naming the package. */
export function checkPgBackRestInstalled(): void {
  if (spawnSync('pgbackrest', ['version'], { stdio: 'ignore' }).status !== 0) {
    throw new WardenError('not-found', 'spec.backups.pgbackrest needs pgBackRest — install with: sudo apt-get install -y pgbackrest');
  }
}

/** mkdir -p of a dir the run user owns (pgBackRest runs as it and writes there). */
async function ownedDir(path: string, run: RunUser | undefined): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o750 });
  if (run !== undefined) await chown(path, run.uid, run.gid);
}

async function ownedFile(path: string, text: string, run: RunUser | undefined): Promise<void> {
  await writeFile(path, text, { mode: 0o640 });
  if (run !== undefined) await chown(path, run.uid, run.gid);
}

/**
 * DIR/backup for a new runtime dir: one posix repository per volume repo (DIR/backup/<name>; a cloud
 * repository is its bucket at /warden/<cluster>/<name>), the
 * lock and log dirs of the repository's own commands (backup, expire, info, restore), and their
 * pgbackrest.conf. A `--nodes` runtime keeps them in DIR/backup/<cluster> (`backupDir`), the place
 * its node daemons put that cluster's repositories (src/node/workload-files.ts, repoPathOf).
 */
export async function prepareBackup(dir: string, stanza: string, spec: BackupsSpec, run: RunUser | undefined, backupDir: string = join(dir, 'backup')): Promise<RuntimeBackup> {
  const backup: RuntimeBackup = {
    engine: 'pgbackrest',
    stanza,
    dir: backupDir,
    configFile: join(backupDir, 'pgbackrest.conf'),
    lockPath: join(backupDir, 'lock'),
    logPath: join(backupDir, 'log'),
    repos: spec.repos.map((r) => repoConf(stanza, r, join(backupDir, r.name))),
    ...(spec.repos.some((r) => r.schedules.length > 0) ? { schedules: spec.repos.flatMap((r) => r.schedules.map((s) => ({ repo: r.name, type: s.type, cron: s.cron }))) } : {}),
  };
  for (const d of [backupDir, backup.lockPath, backup.logPath, ...backup.repos.filter((r) => r.cloud === undefined).map((r) => r.path)]) await ownedDir(d, run);
  const { text } = renderPgBackRestConf({ stanza, repos: backup.repos, globalOptions: spec.global, lockPath: backup.lockPath, logPath: backup.logPath });
  await ownedFile(backup.configFile, text, run);
  return backup;
}

/**
 * A member's own pgBackRest files: its config (pg1 = its server, async archive-push with its own
 * spool) and lock, log and spool dirs under DIR/members/<name>/pgbackrest — per member, because
 * pgBackRest's default paths would be shared by every member on the machine.
 */
export function memberPgBackRest(backup: RuntimeBackup, spec: BackupsSpec, m: { memberDir: string; dataDir: string; pgPort: number }): RuntimeMemberPgBackRest {
  const base = join(m.memberDir, 'pgbackrest');
  const paths = { lockPath: join(base, 'lock'), logPath: join(base, 'log'), spoolPath: join(base, 'spool') };
  const { text } = renderPgBackRestConf({
    stanza: backup.stanza,
    repos: backup.repos,
    globalOptions: spec.global,
    lockPath: paths.lockPath,
    logPath: paths.logPath,
    member: { spoolPath: paths.spoolPath, server: { dataDir: m.dataDir, port: m.pgPort, socketDir: join(m.memberDir, 'run') } },
  });
  return { configFile: join(m.memberDir, 'pgbackrest.conf'), configText: text, ...paths };
}

/** What `warden up` resolved from spec.dataSource and the source's runtime dir (src/cli/data-source.ts). */
export interface DataSourcePlan {
  /** The source cluster's name (spec.dataSource.pgbackrest: its stanza), for messages. */
  readonly sourceCluster: string;
  /** The source's runtime dir (postgresCluster); absent for a repository given by its path. */
  readonly sourceDir?: string;
  readonly stanza: string;
  readonly repoName: string;
  readonly repoPath: string;
  /** The source repository's storage when it is a cloud one (its credentials then in `sourceOptions`). */
  readonly repoCloud?: CloudStorage;
  readonly setLabel: string;
  readonly target: RestoreTarget;
  readonly targetTimeline?: number;
  /**
   * The source's superuser password file: copied, since the restored roles carry its password.
   * Absent (a repository given by its path): the bootstrap sets this cluster's passwords over a
   * private socket it trusts instead.
   */
  readonly sourceSuperuserPasswordFile?: string;
  /** Other pgBackRest options of the source repository (spec.dataSource.pgbackrest.global). */
  readonly sourceOptions?: Readonly<Record<string, string>>;
}

/**
 * DIR/bootstrap for a cluster made from another cluster's backups (the static runtime): the files
 * of `writeDataSourceFiles`, with a copy of the source's superuser password in DIR/secrets.
 * Returns the data source file's path.
 */
export async function prepareDataSource(dir: string, plan: DataSourcePlan, run: RunUser | undefined): Promise<string> {
  if (plan.sourceSuperuserPasswordFile === undefined) return writeDataSourceFiles(join(dir, 'bootstrap'), plan, undefined, run);
  const superuserPasswordFile = join(dir, 'secrets', 'source-superuser.password');
  await copyFile(plan.sourceSuperuserPasswordFile, superuserPasswordFile);
  await chmod(superuserPasswordFile, 0o600);
  return writeDataSourceFiles(join(dir, 'bootstrap'), plan, superuserPasswordFile, run);
}

/**
 * The files an agent's bootstrap from a data source reads (bootstrap.pgbackrest.data_source), in
 * `base`: a pgbackrest.conf that names only the source's repository (no server, nothing the source
 * runs with; the restore's lock and log are in `base`), and the data source file. The node daemon
 * writes them per member (src/node/workload-files.ts), `warden up --static` once per runtime.
 * Returns the data source file's path.
 */
export async function writeDataSourceFiles(
  base: string,
  plan: Pick<DataSourcePlan, 'sourceCluster' | 'stanza' | 'repoName' | 'repoPath' | 'repoCloud' | 'setLabel' | 'target' | 'targetTimeline' | 'sourceOptions'>,
  superuserPasswordFile: string | undefined,
  run: RunUser | undefined,
): Promise<string> {
  for (const d of [base, join(base, 'lock'), join(base, 'log')]) await ownedDir(d, run);
  const configFile = join(base, 'source-pgbackrest.conf');
  const { text } = renderPgBackRestConf({ stanza: plan.stanza, repos: [{ name: plan.repoName, path: plan.repoPath, ...(plan.repoCloud === undefined ? {} : { cloud: plan.repoCloud }) }], globalOptions: plan.sourceOptions ?? {}, lockPath: join(base, 'lock'), logPath: join(base, 'log') });
  await ownedFile(configFile, text, run);
  const record: DataSourceRecord = {
    sourceCluster: plan.sourceCluster,
    stanza: plan.stanza,
    configFile,
    repo: Number(plan.repoName.slice('repo'.length)),
    setLabel: plan.setLabel,
    target: plan.target,
    ...(plan.targetTimeline === undefined ? {} : { targetTimeline: plan.targetTimeline }),
    ...(superuserPasswordFile === undefined ? {} : { superuserPasswordFile }),
  };
  const file = join(base, 'data-source.json');
  await writeFile(file, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  return file;
}
