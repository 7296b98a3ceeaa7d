// spec.dataSource in the operators' shape (`postgresCluster`, Ivory's `ivoryCluster`): a new
// cluster made from another cluster's pgBackRest backups, recovered to a target given as pgBackRest
// restore options. Pure: where the source cluster is (a runtime dir) is resolved by `warden up`.
import { parseRestoreTarget, type RestoreTarget } from '../backup/index.js';
import type { SpecSite } from './spec-error.js';
import { NOT_APPLIED, type SpecReader } from './spec-reader.js';
import type { YamlValue } from './yaml-tree.js';

/** spec.dataSource.postgresCluster as the local runtime applies it. */
export interface DataSourceSpec {
  /** The source cluster's name, and where it was given (errors about the source point there). */
  readonly clusterName: string;
  readonly clusterNameSite: SpecSite;
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

/** Reads spec.dataSource; undefined when it names no postgresCluster (or has errors, which are reported). */
export function readDataSource(reader: SpecReader, value: YamlValue, site: SpecSite): DataSourceSpec | undefined {
  let result: DataSourceSpec | undefined;
  let seen = false;
  const source = (v: YamlValue, s: SpecSite): void => {
    if (seen) return void reader.error(s, 'give one source: postgresCluster or ivoryCluster, not both');
    seen = true;
    result = readPostgresCluster(reader, v, s);
  };
  reader.mapping(value, site, {
    read: { postgresCluster: source, ivoryCluster: source },
    ignored: {
      pgbackrest: `${NOT_APPLIED}: a repository given by its cloud or volume settings; name the source cluster in postgresCluster (with \`warden up --source-dir\`)`,
      volumes: NOT_APPLIED,
    },
  });
  return result;
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
