// The text of pgbackrest.conf files and of PostgreSQL's archive_command / restore_command for
// pgBackRest. Pure: the local runtime decides where the files go and writes them.
import type { PgServer } from './backup-repository.js';

/** A posix repository: pgBackRest's repoN-path on a local (or mounted) file system. */
export interface PosixRepo {
  /** `repo1` … `repo4`, as in spec.backups.pgbackrest.repos[].name. */
  readonly name: string;
  readonly path: string;
}

/** Everything one pgbackrest.conf says. */
export interface PgBackRestConfInput {
  readonly stanza: string;
  readonly repos: readonly PosixRepo[];
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
 * them), the PostgreSQL servers, lock/log/spool paths (per member), asynchronous archiving (push
 * only: async archive-get has a timeline race in pgBackRest 2.45) and the config file options.
 */
export function isWardenOwnedOption(name: string): boolean {
  return (
    /^repo\d+-path$/.test(name) ||
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
  for (const r of input.repos) global.set(`${r.name}-path`, r.path);
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
