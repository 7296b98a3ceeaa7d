// The data source of a cluster bootstrapped from another cluster's backups (spec.dataSource): the
// JSON file `warden up` writes and the agent's bootstrap reads (bootstrap.pgbackrest.data_source;
// docs/architecture.md, "Backups"). Decoded at the edge like every record from outside. Pure.
import { bool, decodeJson, num, obj, oneOf, optional, str } from '../core/decode.js';
import type { RestoreTarget } from './backup-repository.js';

/** Where the source's backups are and what to recover from them. */
export interface DataSourceRecord {
  /** The source cluster's name (for messages) and its pgBackRest stanza. */
  readonly sourceCluster: string;
  readonly stanza: string;
  /**
   * A pgbackrest.conf of the new cluster's own that names the source's repository (repoN-path)
   * and nothing the source runs with: its restore_command reads the source's archive, and nothing
   * of the new cluster ever pushes through it.
   */
  readonly configFile: string;
  /** pgBackRest's index of the source repository (`repo2` → 2). */
  readonly repo: number;
  /** The set to restore: the newest one that ended before the target, chosen by `warden up`. */
  readonly setLabel: string;
  readonly target: RestoreTarget;
  readonly targetTimeline?: number;
  /**
   * A copy of the source's superuser password: the restored data carry the source's roles until
   * the bootstrap sets the new cluster's. Absent (a repository given by its path, passwords not
   * known): the private postmaster trusts its superuser on a socket only PostgreSQL's user reaches.
   */
  readonly superuserPasswordFile?: string;
}

/** A restore target as JSON holds it (`kind` and the field it names). */
export const RESTORE_TARGET_JSON = obj({
  kind: oneOf('latest', 'time', 'lsn', 'xid', 'name'),
  time: optional(str),
  lsn: optional(str),
  xid: optional(str),
  name: optional(str),
  exclusive: optional(bool),
});

const RECORD = obj({
  sourceCluster: str,
  stanza: str,
  configFile: str,
  repo: num({ integer: true, min: 1, max: 256 }),
  setLabel: str,
  target: RESTORE_TARGET_JSON,
  targetTimeline: optional(num({ integer: true, min: 1 })),
  superuserPasswordFile: optional(str),
});

/** Reads a data source file's text; the error names what is wrong. */
export function decodeDataSourceRecord(text: string): { ok: true; value: DataSourceRecord } | { ok: false; error: string } {
  const d = decodeJson(RECORD, text);
  if (!d.ok) return d;
  const target = restoreTargetOf(d.value.target);
  if (typeof target === 'string') return { ok: false, error: target };
  const { targetTimeline, superuserPasswordFile, ...rest } = d.value;
  return { ok: true, value: { ...rest, target, ...(targetTimeline === undefined ? {} : { targetTimeline }), ...(superuserPasswordFile === undefined ? {} : { superuserPasswordFile }) } };
}

/** The RestoreTarget of a decoded RESTORE_TARGET_JSON, or why it is not one. */
export function restoreTargetOf(t: { kind: RestoreTarget['kind']; time?: string; lsn?: string; xid?: string; name?: string; exclusive?: boolean }): RestoreTarget | string {
  const ex = t.exclusive === true ? { exclusive: true } : {};
  if (t.kind === 'latest') return { kind: 'latest' };
  if (t.kind === 'time' && t.time !== undefined) return { kind: 'time', time: t.time, ...ex };
  if (t.kind === 'lsn' && t.lsn !== undefined) return { kind: 'lsn', lsn: t.lsn, ...ex };
  if (t.kind === 'xid' && t.xid !== undefined) return { kind: 'xid', xid: t.xid, ...ex };
  if (t.kind === 'name' && t.name !== undefined) return { kind: 'name', name: t.name };
  return `target: a ${t.kind} target needs its ${t.kind} field`;
}
