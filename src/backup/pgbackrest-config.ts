// The text of pgbackrest.conf files and of PostgreSQL's archive_command / restore_command for
// pgBackRest. Pure: the local runtime decides where the files go and writes them.
import { obj, oneOf, str, type Decoder } from '../core/decode.js';
import type { PgServer } from './backup-repository.js';

/**
 * A cloud repository's storage (spec.backups.pgbackrest.repos[].s3 / gcs / azure in the operators'
 * shape), passed to pgBackRest as its repoN-type and bucket options. Credentials and the other
 * storage options (uri style, port, CA file) come through spec.backups.pgbackrest.global.
 */
export type CloudStorage =
  | { readonly type: 's3'; readonly bucket: string; readonly endpoint: string; readonly region: string }
  | { readonly type: 'gcs'; readonly bucket: string }
  | { readonly type: 'azure'; readonly container: string };

const S3_STORAGE = obj({ type: oneOf('s3'), bucket: str, endpoint: str, region: str });
const GCS_STORAGE = obj({ type: oneOf('gcs'), bucket: str });
const AZURE_STORAGE = obj({ type: oneOf('azure'), container: str });

/** Decodes a CloudStorage record (in assignments, workload.json and runtime.json), by its `type`. */
export const CLOUD_STORAGE: Decoder<CloudStorage> = (v, p) => {
  const t = obj({ type: oneOf('s3', 'gcs', 'azure') })(v, p);
  if (!t.ok) return t;
  return t.value.type === 's3' ? S3_STORAGE(v, p) : t.value.type === 'gcs' ? GCS_STORAGE(v, p) : AZURE_STORAGE(v, p);
};

/**
 * One repository: posix (pgBackRest's repoN-path on a local or mounted file system) or, with
 * `cloud`, an object store where `path` is the prefix inside the bucket (`cloudRepoPath`).
 */
export interface RepoConf {
  /** `repo1` … `repo4`, as in spec.backups.pgbackrest.repos[].name. */
  readonly name: string;
  readonly path: string;
  readonly cloud?: CloudStorage;
}

/** The prefix of a cloud repository inside its bucket or container: one per cluster and repository. */
export function cloudRepoPath(stanza: string, repo: string): string {
  return `/warden/${stanza}/${repo}`;
}

/** A repository for `stanza` from its spec: a cloud one at `cloudRepoPath`, a posix one at `posixPath`. */
export function repoConf(stanza: string, repo: { readonly name: string; readonly cloud?: CloudStorage }, posixPath: string): RepoConf {
  return repo.cloud === undefined ? { name: repo.name, path: posixPath } : { name: repo.name, path: cloudRepoPath(stanza, repo.name), cloud: repo.cloud };
}

/** The pgBackRest options that say where a cloud repository is (Warden's: from the repository's spec). */
export function cloudOptions(repo: string, c: CloudStorage): Record<string, string> {
  switch (c.type) {
    case 's3':
      return { [`${repo}-type`]: 's3', [`${repo}-s3-bucket`]: c.bucket, [`${repo}-s3-endpoint`]: c.endpoint, [`${repo}-s3-region`]: c.region };
    case 'gcs':
      return { [`${repo}-type`]: 'gcs', [`${repo}-gcs-bucket`]: c.bucket };
    case 'azure':
      return { [`${repo}-type`]: 'azure', [`${repo}-azure-container`]: c.container };
  }
}

/** One line naming where a repository is, for messages: its path, or `s3://bucket/prefix`. */
export function describeRepo(r: RepoConf): string {
  if (r.cloud === undefined) return r.path;
  const where = r.cloud.type === 'azure' ? r.cloud.container : r.cloud.bucket;
  return `${r.cloud.type}://${where}${r.path}${r.cloud.type === 's3' ? ` (${r.cloud.endpoint})` : ''}`;
}

/** Everything one pgbackrest.conf says. */
export interface PgBackRestConfInput {
  readonly stanza: string;
  readonly repos: readonly RepoConf[];
  /** spec.backups.pgbackrest.global: pgBackRest options passed through, except those Warden sets itself. */
  readonly globalOptions: Readonly<Record<string, string>>;
  /**
   * Lock and log files of the processes that read this file. Per member (and one pair for the
   * repository's own commands): pgBackRest's defaults (/tmp/pgbackrest, /var/log/pgbackrest) would
   * make the members of one machine share locks and logs.
   */
  readonly lockPath: string;
  readonly logPath: string;
  /** A member's own file: its server (pg1) and the spool of its asynchronous archive-push. */
  readonly member?: { readonly spoolPath: string; readonly server: PgServer };
}

/** Options Warden's defaults give; spec.backups.pgbackrest.global may override them. */
export const PGBACKREST_DEFAULTS: Readonly<Record<string, string>> = {
  'repo1-retention-full': '2',
  // A backup starts with an immediate checkpoint instead of waiting for the next one.
  'start-fast': 'y',
  'log-level-console': 'warn',
  'log-level-stderr': 'error',
  'log-level-file': 'info',
};

/**
 * True for options Warden sets itself and a spec may not: repository paths (the local runtime places
 * them), a repository's type and bucket (from its s3 / gcs / azure section), the PostgreSQL
 * servers, lock/log/spool paths (per member), asynchronous archiving (push
 * only: async archive-get has a timeline race in pgBackRest 2.45) and the config file options.
 */
export function isWardenOwnedOption(name: string): boolean {
  return (
    /^repo\d+-(path|type|s3-bucket|s3-endpoint|s3-region|gcs-bucket|azure-container)$/.test(name) ||
    /^pg\d+-/.test(name) ||
    ['lock-path', 'log-path', 'spool-path', 'archive-async', 'stanza', 'config', 'config-path', 'config-include-path'].includes(name)
  );
}

/** pgBackRest option names: lowercase words joined by '-'. */
export const PGBACKREST_OPTION_NAME = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;

/** The pgbackrest.conf text for `input`, options sorted in each section; also the user options it left out. */
export function renderPgBackRestConf(input: PgBackRestConfInput): { text: string; ignored: string[] } {
  const global = new Map<string, string>(Object.entries(PGBACKREST_DEFAULTS));
  const ignored: string[] = [];
  for (const [k, v] of Object.entries(input.globalOptions)) {
    if (isWardenOwnedOption(k) || !PGBACKREST_OPTION_NAME.test(k)) ignored.push(k);
    else global.set(k, v);
  }
  for (const r of input.repos) {
    global.set(`${r.name}-path`, r.path);
    if (r.cloud !== undefined) for (const [k, v] of Object.entries(cloudOptions(r.name, r.cloud))) global.set(k, v);
  }
  global.set('lock-path', input.lockPath);
  global.set('log-path', input.logPath);
  if (input.member !== undefined) global.set('spool-path', input.member.spoolPath);
  const lines = ['# Written by Warden; edits are overwritten. Set options in spec.backups.pgbackrest.global.', '[global]', ...section(global)];
  if (input.member !== undefined) {
    const s = input.member.server;
    lines.push('', '[global:archive-push]', 'archive-async=y');
    lines.push('', `[${input.stanza}]`, ...section(new Map(Object.entries(pgOptions(1, s)))));
  }
  return { text: `${lines.join('\n')}\n`, ignored };
}

function section(options: ReadonlyMap<string, string>): string[] {
  return [...options].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${oneLine(v)}`);
}

/** A value on one line: pgbackrest.conf has no quoting, so a line break would start another option. */
function oneLine(v: string): string {
  return v.replace(/[\r\n]+/g, ' ');
}

/** The pgN-* options that point pgBackRest at a local server (reached on its unix socket). */
export function pgOptions(index: number, s: PgServer): Record<string, string> {
  return { [`pg${index}-path`]: s.dataDir, [`pg${index}-port`]: String(s.port), [`pg${index}-socket-path`]: s.socketDir };
}

/** A word for /bin/sh in single quotes. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A PostgreSQL archive/restore command text: '%' that is not one of PostgreSQL's placeholders is doubled. */
function pgCommandText(s: string): string {
  return s.replace(/%/g, '%%');
}

/** archive_command: push the segment through pgBackRest (asynchronous, per the member's config file). */
export function archiveCommand(configPath: string, stanza: string): string {
  return `pgbackrest ${pgCommandText(shellQuote(`--config=${configPath}`))} ${pgCommandText(shellQuote(`--stanza=${stanza}`))} archive-push "%p"`;
}

/** restore_command: fetch a segment from the repository (synchronously) when streaming cannot serve it. */
export function restoreCommand(configPath: string, stanza: string): string {
  return `pgbackrest ${pgCommandText(shellQuote(`--config=${configPath}`))} ${pgCommandText(shellQuote(`--stanza=${stanza}`))} archive-get %f "%p"`;
}

/** The indexes of the repositories a pgbackrest.conf configures (`repoN-path`/`repoN-type` options), ascending; [1] when it names none (pgBackRest's default repository). */
export function repoIndexesOf(confText: string): number[] {
  const found = new Set<number>();
  for (const line of confText.split('\n')) {
    const m = /^\s*repo(\d+)-(?:path|type)\s*=/.exec(line);
    if (m?.[1] !== undefined) found.add(Number(m[1]));
  }
  return found.size === 0 ? [1] : [...found].sort((a, b) => a - b);
}
