// spec.dataSource in the operators' shape (`postgresCluster`, Ivory's `ivoryCluster`, or Crunchy's
// `pgbackrest`): a new cluster made from pgBackRest backups — another cluster's, or any stanza in a
// repository given by its own settings — recovered to a target given as pgBackRest restore
// options. Pure: where the source cluster is (a runtime dir) is resolved by `warden up`.
import { isWardenOwnedOption, parseRestoreTarget, PGBACKREST_OPTION_NAME, type RestoreTarget } from '../backup/index.js';
import type { SpecSite } from './spec-error.js';
import { NOT_APPLIED, type SpecReader } from './spec-reader.js';
import type { YamlValue } from './yaml-tree.js';

/** spec.dataSource as the local runtime applies it: another cluster's backups, or a repository's. */
export type DataSourceSpec = ClusterDataSourceSpec | RepositoryDataSourceSpec;

/** spec.dataSource.postgresCluster (ivoryCluster): a cluster Warden runs, found by `warden up --source-dir`. */
export interface ClusterDataSourceSpec extends DataSourceCommon {
  readonly kind: 'cluster';
  /** The source cluster's name, and where it was given (errors about the source point there). */
  readonly clusterName: string;
  readonly clusterNameSite: SpecSite;
}

/**
 * spec.dataSource.pgbackrest (Crunchy's shape): a stanza in a posix repository given by its path
 * (`global.repoN-path`) — a repository of a cluster Warden does not run, on this machine or a
 * mounted path. Its restored roles are the source's: the bootstrap sets this cluster's passwords
 * without knowing the source's.
 */
export interface RepositoryDataSourceSpec extends DataSourceCommon {
  readonly kind: 'repository';
  readonly stanza: string;
  readonly stanzaSite: SpecSite;
  /** Absolute path of the repository (`global.<repoName>-path`). */
  readonly repoPath: string;
  readonly repoPathSite: SpecSite;
  /** The other `global` options, passed to pgBackRest as they are (e.g. `repo1-cipher-pass`). */
  readonly options: Readonly<Record<string, string>>;
}

/** Where errors about the source as a whole point: the source cluster's name, or the stanza. */
export function dataSourceSite(ds: DataSourceSpec): SpecSite {
  return ds.kind === 'cluster' ? ds.clusterNameSite : ds.stanzaSite;
}

interface DataSourceCommon {
  /** The source's repository (`repo1` … `repo4`). */
  readonly repoName: string;
  readonly repoNameSite: SpecSite;
  /** Where recovery stops (`latest` without --type). */
  readonly target: RestoreTarget;
  /** --set: restore this backup set (label) instead of the newest one that ended before the target. */
  readonly setLabel?: string;
  /** --target-timeline=N: recover along this timeline's history. */
  readonly targetTimeline?: number;
  /** The `options` list (or the postgresCluster mapping): errors about the target point there. */
  readonly optionsSite: SpecSite;
}

const REPO_NAME = /^repo[1-4]$/;
const TYPES = ['time', 'lsn', 'xid', 'name', 'default'] as const;

/** Reads spec.dataSource; undefined when it names no source (or has errors, which are reported). */
export function readDataSource(reader: SpecReader, value: YamlValue, site: SpecSite): DataSourceSpec | undefined {
  let result: DataSourceSpec | undefined;
  let seen = false;
  const source =
    (read: (r: SpecReader, v: YamlValue, s: SpecSite) => DataSourceSpec | undefined) =>
    (v: YamlValue, s: SpecSite): void => {
      if (seen) return void reader.error(s, 'give one source: postgresCluster, ivoryCluster or pgbackrest, not two');
      seen = true;
      result = read(reader, v, s);
    };
  reader.mapping(value, site, {
    read: { postgresCluster: source(readPostgresCluster), ivoryCluster: source(readPostgresCluster), pgbackrest: source(readPgBackRestSource) },
    ignored: { volumes: NOT_APPLIED },
  });
  return result;
}

const STANZA = /^[a-z0-9][a-z0-9.-]{0,62}$/;

/** spec.dataSource.pgbackrest: stanza, global (with the repository's path), repo, options. */
function readPgBackRestSource(reader: SpecReader, value: YamlValue, site: SpecSite): DataSourceSpec | undefined {
  const before = reader.errors.length;
  let stanza: { value: string; site: SpecSite } | undefined;
  let repoName: { value: string; site: SpecSite } | undefined;
  let repoSite: SpecSite | undefined;
  let globalSite: SpecSite | undefined;
  const global = new Map<string, { value: string; site: SpecSite }>();
  let options: { items: { text: string; site: SpecSite }[]; site: SpecSite } | undefined;
  const isMapping = reader.mapping(value, site, {
    read: {
      stanza: (v, s) => {
        const n = reader.string(v, s);
        if (n === undefined) return;
        if (!STANZA.test(n)) return void reader.error(s, `not a stanza name (lowercase letters, digits, . and -; got ${JSON.stringify(n)})`);
        stanza = { value: n, site: s };
      },
      global: (gv, gs) => {
        globalSite = gs;
        if (gv.kind === 'scalar' && gv.value === null) return;
        if (gv.kind !== 'map') return void reader.error(gs, 'must be a mapping of pgBackRest options to values');
        for (const entry of gv.entries) {
          const es: SpecSite = { ...gs, line: entry.keyPos.line, col: entry.keyPos.col, field: `${gs.field}.${entry.key}` };
          if (!PGBACKREST_OPTION_NAME.test(entry.key)) {
            reader.error(es, 'not a pgBackRest option name (lowercase words joined by -, e.g. repo1-path)');
            continue;
          }
          // The repository's path is the one owned option a source gives: where its backups are.
          if (isWardenOwnedOption(entry.key) && !/^repo\d+-path$/.test(entry.key)) {
            reader.error(es, 'Warden sets this option itself (servers, lock, log and spool paths, asynchronous archiving)');
            continue;
          }
          const v = entry.value;
          if (v.kind !== 'scalar' || v.value === null || (typeof v.value !== 'string' && typeof v.value !== 'number' && typeof v.value !== 'boolean')) {
            reader.error(es, 'must be a string, a number or true/false');
            continue;
          }
          global.set(entry.key, { value: typeof v.value === 'boolean' ? (v.value ? 'y' : 'n') : String(v.value), site: es });
        }
      },
      repo: (rv, rs) => {
        repoSite = rs;
        reader.mapping(rv, rs, {
          read: {
            name: (v, s) => {
              const n = reader.string(v, s);
              if (n === undefined) return;
              if (!REPO_NAME.test(n)) return void reader.error(s, `must be repo1, repo2, repo3 or repo4 (got ${JSON.stringify(n)})`);
              repoName = { value: n, site: s };
            },
            // A posix repository: its path is global.repoN-path (the volume itself is Kubernetes').
            volume: () => undefined,
            s3: (_v, s) => void reader.error(s, 'not supported here: only a posix repository (its path in global.repoN-path, on this machine or a mounted path)'),
            gcs: (_v, s) => void reader.error(s, 'not supported here: only a posix repository (its path in global.repoN-path, on this machine or a mounted path)'),
            azure: (_v, s) => void reader.error(s, 'not supported here: only a posix repository (its path in global.repoN-path, on this machine or a mounted path)'),
          },
        });
      },
      options: (v, s) => {
        const items: { text: string; site: SpecSite }[] = [];
        reader.list(v, s, (item, is) => {
          const t = reader.string(item, is);
          if (t !== undefined) items.push({ text: t, site: is });
        });
        options = { items, site: s };
      },
    },
    ignored: { configuration: `${NOT_APPLIED}: Kubernetes secrets; give pgBackRest options in global`, resources: NOT_APPLIED, affinity: NOT_APPLIED, tolerations: NOT_APPLIED, priorityClassName: NOT_APPLIED },
  });
  if (!isMapping) return undefined;
  if (stanza === undefined && reader.errors.length === before) reader.missing({ ...site, field: `${site.field}.stanza` }, 'required: the stanza whose backups this cluster starts from');
  if (repoName === undefined && reader.errors.length === before) reader.missing(repoSite === undefined ? { ...site, field: `${site.field}.repo` } : { ...repoSite, field: `${repoSite.field}.name` }, 'required: the repository (repo1 … repo4), e.g. "repo: { name: repo1 }"');
  let repoPath: { value: string; site: SpecSite } | undefined;
  if (repoName !== undefined && reader.errors.length === before) {
    repoPath = global.get(`${repoName.value}-path`);
    if (repoPath === undefined) {
      reader.missing(globalSite === undefined ? { ...site, field: `${site.field}.global.${repoName.value}-path` } : { ...globalSite, field: `${globalSite.field}.${repoName.value}-path` }, `required: where repository ${repoName.value} is (an absolute path on this machine, or a mounted one)`);
    } else if (!repoPath.value.startsWith('/')) {
      reader.error(repoPath.site, `must be an absolute path (got ${JSON.stringify(repoPath.value)})`);
    }
    for (const [k, o] of global) {
      const m = /^repo(\d+)-/.exec(k);
      if (m !== null && `repo${m[1] ?? ''}` !== repoName.value) reader.error(o.site, `an option of another repository than ${repoName.value}: only the repository named in repo.name is read`);
    }
  }
  const restore = readRestoreOptions(reader, options?.items ?? [], options?.site ?? site);
  if (reader.errors.length > before || stanza === undefined || repoName === undefined || repoPath === undefined || restore === undefined) return undefined;
  const pathKey = `${repoName.value}-path`;
  return {
    kind: 'repository',
    stanza: stanza.value,
    stanzaSite: stanza.site,
    repoName: repoName.value,
    repoNameSite: repoName.site,
    repoPath: repoPath.value,
    repoPathSite: repoPath.site,
    options: Object.fromEntries([...global].filter(([k]) => k !== pathKey).map(([k, o]) => [k, o.value])),
    optionsSite: options?.site ?? site,
    ...restore,
  };
}

function readPostgresCluster(reader: SpecReader, value: YamlValue, site: SpecSite): DataSourceSpec | undefined {
  const before = reader.errors.length;
  let clusterName: { value: string; site: SpecSite } | undefined;
  let repoName: { value: string; site: SpecSite } | undefined;
  let options: { items: { text: string; site: SpecSite }[]; site: SpecSite } | undefined;
  const isMapping = reader.mapping(value, site, {
    read: {
      clusterName: (v, s) => {
        const n = reader.string(v, s);
        if (n !== undefined) clusterName = { value: n, site: s };
      },
      repoName: (v, s) => {
        const n = reader.string(v, s);
        if (n === undefined) return;
        if (!REPO_NAME.test(n)) return void reader.error(s, `must be repo1, repo2, repo3 or repo4 (got ${JSON.stringify(n)})`);
        repoName = { value: n, site: s };
      },
      options: (v, s) => {
        const items: { text: string; site: SpecSite }[] = [];
        reader.list(v, s, (item, is) => {
          const t = reader.string(item, is);
          if (t !== undefined) items.push({ text: t, site: is });
        });
        options = { items, site: s };
      },
    },
    ignored: { clusterNamespace: 'placement only: the local runtime finds the source by --source-dir', resources: NOT_APPLIED, affinity: NOT_APPLIED, tolerations: NOT_APPLIED, priorityClassName: NOT_APPLIED },
  });
  if (!isMapping) return undefined;
  if (clusterName === undefined && reader.errors.length === before) reader.missing({ ...site, field: `${site.field}.clusterName` }, 'required: the name of the cluster whose backups this cluster starts from');
  if (repoName === undefined && reader.errors.length === before) reader.missing({ ...site, field: `${site.field}.repoName` }, 'required: the source cluster\'s repository (repo1 … repo4)');
  const restore = readRestoreOptions(reader, options?.items ?? [], options?.site ?? site);
  if (reader.errors.length > before || clusterName === undefined || repoName === undefined || restore === undefined) return undefined;
  return {
    kind: 'cluster',
    clusterName: clusterName.value,
    clusterNameSite: clusterName.site,
    repoName: repoName.value,
    repoNameSite: repoName.site,
    optionsSite: options?.site ?? site,
    ...restore,
  };
}

/**
 * pgBackRest restore options that choose what is recovered: --type, --target, --target-exclusive,
 * --target-timeline and --set. Everything else is refused: --target-action is Warden's (the clone
 * must promote at the target), and paths, repositories and archive settings are the runtime's.
 */
export function readRestoreOptions(
  reader: SpecReader,
  items: readonly { text: string; site: SpecSite }[],
  listSite: SpecSite,
): { target: RestoreTarget; setLabel?: string; targetTimeline?: number } | undefined {
  const before = reader.errors.length;
  const given = new Map<string, { value: string | undefined; site: SpecSite }>();
  for (const { text, site } of items) {
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(text);
    const name = m?.[1];
    if (m === null || name === undefined) {
      reader.error(site, `not a pgBackRest option (--name or --name=value): ${JSON.stringify(text)}`);
      continue;
    }
    if (name === 'target-action') {
      reader.error(site, '--target-action is set by Warden: the new cluster is promoted at the target (it becomes its own system)');
      continue;
    }
    if (!['type', 'target', 'target-exclusive', 'target-timeline', 'set'].includes(name)) {
      reader.error(site, `--${name}: not accepted here; only --type, --target, --target-exclusive, --target-timeline and --set choose what is restored (paths, repositories and archive settings are the runtime's)`);
      continue;
    }
    if (given.has(name)) {
      reader.error(site, `--${name} is given twice`);
      continue;
    }
    const value = m[2];
    if (name === 'target-exclusive' ? value !== undefined && value !== 'y' && value !== 'n' : value === undefined || value === '') {
      reader.error(site, name === 'target-exclusive' ? '--target-exclusive takes no value (or =y/=n)' : `--${name} needs a value (--${name}=...)`);
      continue;
    }
    given.set(name, { value, site });
  }
  if (reader.errors.length > before) return undefined;
  const type = given.get('type');
  const targetOpt = given.get('target');
  const kind = type?.value ?? 'default';
  if (!(TYPES as readonly string[]).includes(kind)) {
    return reader.error(type?.site ?? listSite, `--type=${kind}: must be one of ${TYPES.join(', ')} (immediate, preserve and standby do not make a new cluster at a point in time)`);
  }
  if (kind === 'default' && targetOpt !== undefined) return reader.error(targetOpt.site, '--target needs --type=time, lsn, xid or name');
  if (kind !== 'default' && targetOpt === undefined) return reader.error(type?.site ?? listSite, `--type=${kind} needs --target=...`);
  const exclusive = given.get('target-exclusive');
  const parsed = parseRestoreTarget({
    ...(kind === 'default' ? { latest: true } : { [kind]: targetOpt?.value ?? '' }),
    exclusive: exclusive !== undefined && exclusive.value !== 'n',
  });
  if (!parsed.ok) return reader.error(targetOpt?.site ?? exclusive?.site ?? listSite, parsed.error.replace(`--${kind}`, '--target'));
  const timeline = given.get('target-timeline');
  let targetTimeline: number | undefined;
  if (timeline !== undefined) {
    targetTimeline = Number(timeline.value);
    if (!/^\d{1,9}$/.test(timeline.value ?? '') || targetTimeline < 1) return reader.error(timeline.site, `--target-timeline=${timeline.value ?? ''}: must be a timeline number (1 or more)`);
  }
  const set = given.get('set')?.value;
  return { target: parsed.value, ...(set === undefined ? {} : { setLabel: set }), ...(targetTimeline === undefined ? {} : { targetTimeline }) };
}
