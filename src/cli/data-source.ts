// `warden up -f clone.yaml --source-dir SRC`: spec.dataSource is resolved against the source's
// runtime dir and its repository before anything is written (docs/architecture.md, "Backups"):
// the cluster, the repository, a backup that ends before the target. Any fault is a spec error at
// the field that names it (exit 2), and no runtime dir is made.
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isWardenOwnedOption, PgBackRestRepository, renderPgBackRestConf, unreachableTarget, type RepositoryInfo } from '../backup/index.js';
import type { DataSourcePlan } from '../controller/backup-runtime.js';
import type { StoredDataSource } from '../controller/records.js';
import { lookupRunUser, readLayout, type RuntimeLayout } from '../controller/runtime-layout.js';
import { describeError } from '../core/errors.js';
import type { ClusterSpec, DataSourceSpec, RepositoryDataSourceSpec, SpecError, SpecSite } from '../spec/index.js';
import { lastArchivedAtMsOf, openBackupRuntime, setFor } from './backup-commands.js';

const INFO_TIMEOUT_MS = 60_000;

/** The source's runtime dir, repository and backup set for `spec.dataSource`, or the errors that say why not. */
export async function resolveDataSource(
  spec: ClusterSpec & { readonly dataSource: DataSourceSpec },
  opts: { readonly dir: string; readonly sourceDir: string | undefined },
): Promise<{ ok: true; plan: DataSourcePlan } | { ok: false; errors: SpecError[] }> {
  const ds = spec.dataSource;
  if (ds.kind === 'repository') return resolveRepositorySource(ds, opts.sourceDir);
  const fail = (site: SpecSite, message: string): { ok: false; errors: SpecError[] } => ({ ok: false, errors: [{ ...site, message }] });
  if (opts.sourceDir === undefined) {
    return fail(ds.clusterNameSite, `the local runtime finds cluster "${ds.clusterName}" through its runtime dir: give it with --source-dir DIR (the --dir it was started with)`);
  }
  const sourceDir = resolve(opts.sourceDir);
  if (sourceDir === resolve(opts.dir)) return fail(ds.clusterNameSite, `--source-dir ${sourceDir} is the --dir of this new cluster: a clone needs a runtime dir (and a repository) of its own`);
  let layout: RuntimeLayout | undefined;
  try {
    layout = await readLayout(sourceDir);
  } catch (e) {
    return fail(ds.clusterNameSite, `cluster "${ds.clusterName}": ${describeError(e)}`);
  }
  if (layout === undefined) return fail(ds.clusterNameSite, `cluster "${ds.clusterName}": no local runtime in --source-dir ${sourceDir} (no runtime.json)`);
  if (layout.cluster !== ds.clusterName) return fail(ds.clusterNameSite, `--source-dir ${sourceDir} holds cluster "${layout.cluster}", not "${ds.clusterName}"`);
  // On node daemons the source's backups follow its stored spec (they may have been added later).
  const backup = layout.nodes === undefined ? layout.backup : await openBackupRuntime(sourceDir).then((rt) => rt.backup, () => layout.backup);
  if (backup === undefined) return fail(ds.clusterNameSite, `cluster "${ds.clusterName}" (${sourceDir}) runs without backups: it has no repository to start from`);
  const repo = backup.repos.find((r) => r.name === ds.repoName);
  if (repo === undefined) return fail(ds.repoNameSite, `cluster "${ds.clusterName}" has no repository ${ds.repoName} (it has ${backup.repos.map((r) => r.name).join(', ')})`);
  const passwordFile = join(sourceDir, 'secrets', 'superuser.password');
  if (!existsSync(passwordFile)) return fail(ds.clusterNameSite, `cluster "${ds.clusterName}": ${passwordFile} is missing (its restored roles need it)`);

  const identity = lookupRunUser();
  // Read-only: info lists the stanza's sets; nothing is written to the source's repository.
  const reader = new PgBackRestRepository({ stanza: backup.stanza, configFile: backup.configFile, ...(identity === undefined ? {} : { identity }) });
  let info: RepositoryInfo;
  try {
    info = await reader.info({ timeoutMs: INFO_TIMEOUT_MS });
  } catch (e) {
    return fail(ds.repoNameSite, `cannot read repository ${ds.repoName} of cluster "${ds.clusterName}": ${describeError(e)}`);
  }
  if (info.sets.length === 0) {
    return fail(ds.repoNameSite, `repository ${ds.repoName} of cluster "${ds.clusterName}" has no backup yet (stanza ${backup.stanza}): run \`warden backup --dir ${sourceDir} --wait\` first`);
  }
  // The source's leader says when its newest WAL reached the repository (a source that is down: not checked).
  const why = unreachableTarget(ds.target, info, { lastArchivedAtMs: await lastArchivedAtMsOf(sourceDir), nowMs: Date.now() });
  if (why !== undefined) return fail(ds.optionsSite, why.replace(/^--(time|lsn) /, '--target='));
  const set = ds.setLabel === undefined ? setFor(info, ds.target) : info.sets.find((s) => s.label === ds.setLabel);
  if (set === undefined) {
    return fail(ds.optionsSite, ds.setLabel === undefined ? 'no backup set ends before the target' : `--set=${ds.setLabel}: no such set in repository ${ds.repoName} (it has ${info.sets.map((s) => s.label).join(', ')})`);
  }
  return {
    ok: true,
    plan: {
      sourceCluster: layout.cluster,
      sourceDir,
      stanza: backup.stanza,
      repoName: repo.name,
      repoPath: repo.path,
      setLabel: set.label,
      target: ds.target,
      ...(ds.targetTimeline === undefined ? {} : { targetTimeline: ds.targetTimeline }),
      sourceSuperuserPasswordFile: passwordFile,
      // A cloud repository: its storage, and the options of the source's config that concern it (credentials, uri style, CA file).
      ...(repo.cloud === undefined ? {} : { repoCloud: repo.cloud, sourceOptions: repoOptionsOf(await readFile(backup.configFile, 'utf8'), repo.name) }),
    },
  };
}

/**
 * spec.dataSource.pgbackrest: the stanza in the repository at global.repoN-path, read (info only)
 * through a pgbackrest.conf of its own in a scratch dir, and the set for the target. Nothing is
 * written to the repository. The source's passwords are not known here: the bootstrap sets this
 * cluster's own without them.
 */
async function resolveRepositorySource(ds: RepositoryDataSourceSpec, sourceDir: string | undefined): Promise<{ ok: true; plan: DataSourcePlan } | { ok: false; errors: SpecError[] }> {
  const fail = (site: SpecSite, message: string): { ok: false; errors: SpecError[] } => ({ ok: false, errors: [{ ...site, message }] });
  if (sourceDir !== undefined) return fail(ds.stanzaSite, '--source-dir names a Warden runtime (spec.dataSource.postgresCluster); spec.dataSource.pgbackrest gives its repository in global.repoN-path');
  if (!existsSync(join(ds.repoPath, 'backup', ds.stanza))) {
    return fail(existsSync(ds.repoPath) ? ds.stanzaSite : ds.repoPathSite, existsSync(ds.repoPath) ? `no stanza ${ds.stanza} in the repository at ${ds.repoPath} (no backup/${ds.stanza} there)` : `no repository at ${ds.repoPath}`);
  }
  const identity = lookupRunUser();
  // 0755 with lock and log dirs of pgBackRest's user: it runs as PostgreSQL's user and reads the file.
  const scratch = await mkdtemp(join(tmpdir(), 'warden-source-'));
  try {
    await chmod(scratch, 0o755);
    for (const d of ['lock', 'log']) {
      await mkdir(join(scratch, d), { mode: 0o750 });
      if (identity !== undefined) await chown(join(scratch, d), identity.uid, identity.gid);
    }
    const configFile = join(scratch, 'pgbackrest.conf');
    const { text } = renderPgBackRestConf({ stanza: ds.stanza, repos: [{ name: ds.repoName, path: ds.repoPath }], globalOptions: ds.options, lockPath: join(scratch, 'lock'), logPath: join(scratch, 'log') });
    await writeFile(configFile, text, { mode: 0o644 });
    const reader = new PgBackRestRepository({ stanza: ds.stanza, configFile, ...(identity === undefined ? {} : { identity }) });
    let info: RepositoryInfo;
    try {
      info = await reader.info({ timeoutMs: INFO_TIMEOUT_MS });
    } catch (e) {
      return fail(ds.repoPathSite, `cannot read stanza ${ds.stanza} in the repository at ${ds.repoPath}: ${describeError(e)}`);
    }
    if (info.sets.length === 0) return fail(ds.stanzaSite, `stanza ${ds.stanza} in the repository at ${ds.repoPath} has no backup yet`);
    // No running source says when its newest WAL reached the repository: the archive's own end is checked at restore.
    const why = unreachableTarget(ds.target, info, { lastArchivedAtMs: undefined, nowMs: Date.now() });
    if (why !== undefined) return fail(ds.optionsSite, why.replace(/^--(time|lsn) /, '--target='));
    const set = ds.setLabel === undefined ? setFor(info, ds.target) : info.sets.find((x) => x.label === ds.setLabel);
    if (set === undefined) {
      return fail(ds.optionsSite, ds.setLabel === undefined ? 'no backup set ends before the target' : `--set=${ds.setLabel}: no such set in stanza ${ds.stanza} (it has ${info.sets.map((x) => x.label).join(', ')})`);
    }
    return {
      ok: true,
      plan: {
        sourceCluster: ds.stanza,
        stanza: ds.stanza,
        repoName: ds.repoName,
        repoPath: ds.repoPath,
        setLabel: set.label,
        target: ds.target,
        ...(ds.targetTimeline === undefined ? {} : { targetTimeline: ds.targetTimeline }),
        ...(Object.keys(ds.options).length === 0 ? {} : { sourceOptions: ds.options }),
      },
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * The options of pgbackrest.conf's [global] section that belong to repository `repo` (`repo2-…`),
 * except those Warden sets from the repository's spec (path, type, bucket): what a clone's config
 * needs to reach the source's cloud repository.
 */
export function repoOptionsOf(confText: string, repo: string): Record<string, string> {
  const out: Record<string, string> = {};
  let inGlobal = false;
  for (const line of confText.split('\n')) {
    const section = /^\s*\[([^\]]+)\]\s*$/.exec(line);
    if (section !== null) {
      inGlobal = section[1] === 'global';
      continue;
    }
    const m = /^\s*([a-z0-9-]+)=(.*)$/.exec(line);
    if (!inGlobal || m?.[1] === undefined || m[2] === undefined || !m[1].startsWith(`${repo}-`) || isWardenOwnedOption(m[1])) continue;
    out[m[1]] = m[2];
  }
  return out;
}

/** The record of `/warden/_datasources/<cluster>` for a resolved data source: its source's superuser password read from its file. */
export async function storedDataSource(cluster: string, p: DataSourcePlan): Promise<StoredDataSource> {
  return {
    cluster,
    sourceCluster: p.sourceCluster,
    stanza: p.stanza,
    repo: p.repoName,
    repoPath: p.repoPath,
    ...(p.repoCloud === undefined ? {} : { repoCloud: p.repoCloud }),
    setLabel: p.setLabel,
    target: p.target,
    ...(p.targetTimeline === undefined ? {} : { targetTimeline: p.targetTimeline }),
    ...(p.sourceSuperuserPasswordFile === undefined ? {} : { sourceSuperuserPassword: (await readFile(p.sourceSuperuserPasswordFile, 'utf8')).replace(/\r?\n$/, '') }),
    ...(p.sourceOptions === undefined ? {} : { sourceOptions: p.sourceOptions }),
  };
}
