// Archive continuity across a failover (invariant 9 in docs/architecture.md: the WAL of the old
// timeline is complete in the repository after a failover). Pure: names in, a plan out.
//
// A standby marks every segment it received by streaming as archived (`archive_status/X.done`, with
// archive_mode = on). When the primary dies with an archive backlog, the segments it never pushed
// exist only on the standbys, already marked done: the new primary would never archive them and
// the repository would keep a gap for good (pgbackrest#2474, patroni#3227). Just before promotion,
// the markers of the files the repository does not hold go back to `.ready`, so the new primary's
// archiver pushes them; pgBackRest accepts a file it already has with the same checksum, so a
// marker turned back when the repository cannot be asked costs a duplicate push, never a failure.

/** The WAL files PostgreSQL archives: whole segments, a timeline's last `.partial` segment, `.history` and `.backup` files. */
export type WalFileKind = 'segment' | 'partial' | 'history' | 'backup';

/** One archivable WAL file, by its name in pg_wal. */
export interface WalFile {
  readonly name: string;
  readonly kind: WalFileKind;
  readonly timeline: number;
  /**
   * The repository directory of the archive that holds it: `TTTTTTTTXXXXXXXX` (the first 16 hex
   * digits) for segment-like files, '' for `.history` files, which pgBackRest keeps at the top.
   */
  readonly repoDir: string;
}

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})[0-9A-F]{8}$/;
const PARTIAL = /^([0-9A-F]{8})([0-9A-F]{8})[0-9A-F]{8}\.partial$/;
const BACKUP = /^([0-9A-F]{8})([0-9A-F]{8})[0-9A-F]{8}\.[0-9A-F]{8}\.backup$/;
const HISTORY = /^([0-9A-F]{8})\.history$/;

/** The WAL file named `name` (as in pg_wal), or undefined for anything else (temporary files, `RECOVERYXLOG`, …). */
export function walFileOf(name: string): WalFile | undefined {
  for (const [re, kind] of [[SEGMENT, 'segment'], [PARTIAL, 'partial'], [BACKUP, 'backup']] as const) {
    const m = re.exec(name);
    if (m?.[1] !== undefined && m[2] !== undefined) return { name, kind, timeline: parseInt(m[1], 16), repoDir: `${m[1]}${m[2]}` };
  }
  const h = HISTORY.exec(name);
  if (h?.[1] !== undefined) return { name, kind: 'history', timeline: parseInt(h[1], 16), repoDir: '' };
  return undefined;
}

/**
 * The WAL file a repository entry stores, or undefined for other entries. pgBackRest names a stored
 * segment (or `.partial`, `.backup`) `<name>-<sha1 of the content>` plus the compression extension;
 * a `.history` file keeps its name (plus the extension).
 */
export function walNameOfRepoEntry(entry: string): string | undefined {
  const stored = /^(.+?)-[0-9a-f]{40}(?:\.(?:gz|lz4|zst|bz2))?$/.exec(entry);
  if (stored?.[1] !== undefined) {
    const w = walFileOf(stored[1]);
    return w !== undefined && w.kind !== 'history' ? w.name : undefined;
  }
  const history = /^([0-9A-F]{8}\.history)(?:\.(?:gz|lz4|zst|bz2))?$/.exec(entry);
  return history?.[1];
}

/** The repository directories that hold `names` (each once, sorted). */
export function repoDirsOf(names: readonly string[]): string[] {
  const dirs = new Set<string>();
  for (const n of names) {
    const w = walFileOf(n);
    if (w !== undefined) dirs.add(w.repoDir);
  }
  return [...dirs].sort();
}

/** What the standby's archive_status and pg_wal hold just before promotion. */
export interface ArchiveStatusInput {
  /** Names in pg_wal/archive_status (`X.done`, `X.ready`). */
  readonly statusFiles: readonly string[];
  /** Names of the files in pg_wal. */
  readonly walFiles: ReadonlySet<string>;
  /**
   * The WAL files every repository holds, among those asked about; undefined when the repository
   * could not be asked (unreachable, too slow): then nothing counts as archived.
   */
  readonly inRepository: ReadonlySet<string> | undefined;
}

/** Which markers to turn back to `.ready`, and why the others stay. */
export interface ArchiveContinuityPlan {
  /** WAL files whose `.done` marker becomes `.ready`, oldest first. */
  readonly toReady: readonly string[];
  /** Marked done and held by the repository: nothing to do. */
  readonly archived: readonly string[];
  /** Marked done but no longer in pg_wal: nothing the new primary could push (an archiver would stall on a `.ready` without its file). */
  readonly gone: readonly string[];
}

/** The WAL files with a `.done` marker that are candidates for the repository question (present in pg_wal). */
export function doneWalFiles(input: Pick<ArchiveStatusInput, 'statusFiles' | 'walFiles'>): string[] {
  return input.statusFiles
    .filter((f) => f.endsWith('.done'))
    .map((f) => f.slice(0, -'.done'.length))
    .filter((n) => walFileOf(n) !== undefined && input.walFiles.has(n))
    .sort();
}

/**
 * The plan: every `.done` WAL file still in pg_wal that the repository does not hold goes back to
 * `.ready` (all of them when the repository could not be asked); `.ready` markers stay as they are.
 * Markers of every timeline count: the standby may hold old-timeline files from an earlier failover
 * that were never archived either.
 */
export function planArchiveContinuity(input: ArchiveStatusInput): ArchiveContinuityPlan {
  const toReady: string[] = [];
  const archived: string[] = [];
  const gone: string[] = [];
  const ready = new Set(input.statusFiles.filter((f) => f.endsWith('.ready')).map((f) => f.slice(0, -'.ready'.length)));
  for (const f of [...input.statusFiles].sort()) {
    if (!f.endsWith('.done')) continue;
    const name = f.slice(0, -'.done'.length);
    if (walFileOf(name) === undefined || ready.has(name)) continue;
    if (!input.walFiles.has(name)) gone.push(name);
    else if (input.inRepository?.has(name) === true) archived.push(name);
    else toReady.push(name);
  }
  return { toReady, archived, gone };
}
