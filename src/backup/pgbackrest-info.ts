// Decodes `pgbackrest info --output=json` into Warden's RepositoryInfo. Pure: the text in, a typed
// value or a sentence naming the field out (invariant 10 in docs/architecture.md).
import { bool, decode, list, nullable, num, obj, oneOf, optional, str, type Decoder } from '../core/decode.js';
import { BACKUP_TYPES, type BackupSet, type RepositoryInfo } from './backup-repository.js';

const count = num({ min: 0, integer: true });

const BACKUP_SET = obj({
  label: str,
  type: oneOf(...BACKUP_TYPES),
  prior: optional(nullable(str)),
  timestamp: obj({ start: count, stop: count }),
  info: obj({ size: count, delta: count, repository: obj({ size: count, delta: count }) }),
  archive: obj({ start: nullable(str), stop: nullable(str) }),
  lsn: optional(obj({ start: str, stop: str })),
  error: optional(bool),
});

const STANZA = obj({
  name: str,
  status: obj({ code: count, message: str, lock: optional(obj({ backup: optional(obj({ held: bool })) })) }),
  // system-id arrives as a quoted string: see quoteSystemIds.
  db: optional(list(obj({ id: count, 'system-id': str, version: str }))),
  // Per repository: its own status, where pgBackRest says why a repository could not be read.
  repo: optional(list(obj({ key: count, status: obj({ code: count, message: str }) }))),
  archive: optional(list(obj({ database: obj({ id: count }), id: str, min: nullable(str), max: nullable(str) }))),
  backup: optional(list(BACKUP_SET)),
});

const INFO: Decoder<Array<typeof STANZA extends Decoder<infer T> ? T : never>> = list(STANZA);

/**
 * pgBackRest prints the system identifier as a bare JSON number, which JSON.parse rounds (it is a
 * 64-bit value): quote it before parsing so the identifier is kept exactly.
 */
export function quoteSystemIds(text: string): string {
  return text.replace(/"system-id"\s*:\s*(\d+)/g, '"system-id":"$1"');
}

/** pgBackRest info's status code for an error it has no code of its own for (a repository that cannot be read, say). */
export const OTHER_STATUS = 99;

/**
 * The info of `stanza` from pgbackrest's JSON, or why it cannot be read. A stanza missing from the
 * output is reported as such (pgBackRest lists a stanza it cannot find with status code 1).
 */
export function parsePgBackRestInfo(text: string, stanza: string): { ok: true; value: RepositoryInfo } | { ok: false; error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(quoteSystemIds(text));
  } catch (e) {
    return { ok: false, error: `pgbackrest info: not valid JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  const decoded = decode(INFO, parsed);
  if (!decoded.ok) return { ok: false, error: `pgbackrest info: ${decoded.error}` };
  const entry = decoded.value.find((s) => s.name === stanza);
  if (entry === undefined) return { ok: false, error: `pgbackrest info: stanza "${stanza}" is not in the output` };
  const dbs = entry.db ?? [];
  // The current database is the newest one (a stanza-upgrade after a major upgrade adds one).
  const current = dbs.reduce<(typeof dbs)[number] | undefined>((a, d) => (a === undefined || d.id > a.id ? d : a), undefined);
  const archive = (entry.archive ?? []).find((a) => current === undefined || a.database.id === current.id);
  const sets: BackupSet[] = (entry.backup ?? []).map((b) => ({
    label: b.label,
    type: b.type,
    prior: b.prior ?? undefined,
    startedAtMs: b.timestamp.start * 1000,
    stoppedAtMs: b.timestamp.stop * 1000,
    durationMs: (b.timestamp.stop - b.timestamp.start) * 1000,
    databaseBytes: b.info.size,
    copiedBytes: b.info.delta,
    repositoryBytes: b.info.repository.size,
    repositoryDeltaBytes: b.info.repository.delta,
    walStart: b.archive.start ?? '',
    walStop: b.archive.stop ?? '',
    lsnStart: b.lsn?.start,
    lsnStop: b.lsn?.stop,
    hadErrors: b.error ?? false,
  }));
  sets.sort((a, b) => a.stoppedAtMs - b.stoppedAtMs || a.label.localeCompare(b.label));
  return {
    ok: true,
    value: {
      stanza: entry.name,
      statusCode: entry.status.code,
      // "other" alone says nothing: the repositories' own messages say what failed.
      statusMessage:
        entry.status.code === OTHER_STATUS && (entry.repo ?? []).some((r) => r.status.code !== 0)
          ? `${entry.status.message}: ${(entry.repo ?? [])
              .filter((r) => r.status.code !== 0)
              .map((r) => `repo${r.key}: ${r.status.message}`)
              .join('; ')}`
          : entry.status.message,
      backupRunning: entry.status.lock?.backup?.held ?? false,
      systemIds: dbs.map((d) => d['system-id']),
      sets,
      archive: archive !== undefined && archive.min !== null && archive.max !== null ? { min: archive.min, max: archive.max } : undefined,
    },
  };
}

/** One entry of `pgbackrest repo-ls --output=json`: its name (relative to the listed path) and type. */
export interface RepoLsEntry {
  readonly name: string;
  readonly type: 'file' | 'path' | 'link' | 'special';
}

const REPO_LS_ENTRY = obj({ type: oneOf('file', 'path', 'link', 'special') });

/** The entries of `pgbackrest repo-ls --output=json` (an object keyed by name; `.` is the listed path itself, left out), or why not. */
export function parseRepoLs(text: string): { ok: true; value: RepoLsEntry[] } | { ok: false; error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `pgbackrest repo-ls: not valid JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { ok: false, error: 'pgbackrest repo-ls: must be an object keyed by name' };
  const entries: RepoLsEntry[] = [];
  for (const [name, v] of Object.entries(parsed)) {
    if (name === '.') continue;
    const d = decode(REPO_LS_ENTRY, v);
    if (!d.ok) return { ok: false, error: `pgbackrest repo-ls: ${JSON.stringify(name)}: ${d.error}` };
    entries.push({ name, type: d.value.type });
  }
  return { ok: true, value: entries };
}

/** The current database's archive id among a stanza's archive dirs (`<pg version>-<db id>`, the highest db id), if any. */
export function currentArchiveId(dirNames: readonly string[]): string | undefined {
  let best: { id: string; db: number } | undefined;
  for (const n of dirNames) {
    const m = /^\d+-(\d+)$/.exec(n);
    if (m?.[1] === undefined) continue;
    const db = Number(m[1]);
    if (best === undefined || db > best.db) best = { id: n, db };
  }
  return best?.id;
}
