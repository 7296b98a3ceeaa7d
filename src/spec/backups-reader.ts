// spec.backups in the operators' shape (`pgbackrest` with `repos[]` and `global`), read into what the
// local runtime applies; the rest is validated where cheap and reported as a notice. Pure.
import { isWardenOwnedOption, parseCron, type CloudStorage, PGBACKREST_OPTION_NAME, SCHEDULE_TYPES, type BackupType } from '../backup/index.js';
import type { SpecSite } from './spec-error.js';
import { NOT_APPLIED, type SpecReader } from './spec-reader.js';
import type { YamlValue } from './yaml-tree.js';

/**
 * One repository: a `volume` repository (or one with only a name) becomes a posix repository (in
 * DIR/backup/<name>, or under a node's backups.repo_path); an `s3`, `gcs` or `azure` one is that
 * object store, at the prefix /warden/<cluster>/<name>.
 */
export interface BackupRepoSpec {
  /** `repo1` … `repo4`. */
  readonly name: string;
  readonly cloud?: CloudStorage;
  /** repos[].schedules: a backup of `type` at every minute the 5-field cron text names (UTC). */
  readonly schedules: readonly { readonly type: BackupType; readonly cron: string }[];
}

/** spec.backups.pgbackrest as the local runtime applies it. */
export interface BackupsSpec {
  readonly repos: readonly BackupRepoSpec[];
  /** pgBackRest options passed through (`repo1-retention-full: "2"`), as text. */
  readonly global: Readonly<Record<string, string>>;
}

const REPO_NAME = /^repo[1-4]$/;

/** The fields each cloud section needs (pgBackRest's required options for that repository type). */
const CLOUD_FIELDS = { s3: ['bucket', 'endpoint', 'region'], gcs: ['bucket'], azure: ['container'] } as const;
type CloudKind = keyof typeof CLOUD_FIELDS;

/**
 * The credentials a cloud repository needs, as pgBackRest options in global (the operators take
 * them from a Secret through `configuration`; here they are spec options): any one alternative.
 */
const CLOUD_CREDENTIALS: Readonly<Record<CloudKind, readonly (readonly string[])[]>> = {
  s3: [['s3-key', 's3-key-secret'], ['s3-key-type=auto'], ['s3-key-type=web-id']],
  gcs: [['gcs-key'], ['gcs-key-type=auto']],
  azure: [['azure-account', 'azure-key']],
};

/** Reads spec.backups; undefined when there is no pgbackrest section (or it has errors, which are reported). */
export function readBackups(reader: SpecReader, value: YamlValue, site: SpecSite): BackupsSpec | undefined {
  let result: BackupsSpec | undefined;
  reader.mapping(value, site, {
    read: {
      pgbackrest: (pv, ps) => {
        result = readPgBackRest(reader, pv, ps);
      },
    },
    ignored: { snapshots: NOT_APPLIED },
  });
  return result;
}

function readPgBackRest(reader: SpecReader, value: YamlValue, site: SpecSite): BackupsSpec | undefined {
  const before = reader.errors.length;
  const repos: BackupRepoSpec[] = [];
  const global: Record<string, string> = {};
  let reposSite: SpecSite | undefined;
  const cloudSites = new Map<string, { kind: CloudKind; site: SpecSite }>();
  reader.mapping(value, site, {
    read: {
      repos: (rv, rs) => {
        reposSite = rs;
        reader.list(rv, rs, (item, is) => {
          const read = readRepo(reader, item, is);
          if (read === undefined) return;
          const { repo, cloudSite } = read;
          if (repo.cloud !== undefined && cloudSite !== undefined) cloudSites.set(repo.name, { kind: repo.cloud.type, site: cloudSite });
          if (repos.some((r) => r.name === repo.name)) reader.error({ ...is, field: `${is.field}.name` }, `repository ${repo.name} is listed twice`);
          else repos.push(repo);
        });
      },
      global: (gv, gs) => {
        if (gv.kind === 'scalar' && gv.value === null) return;
        if (gv.kind !== 'map') return void reader.error(gs, 'must be a mapping of pgBackRest options to values');
        for (const entry of gv.entries) {
          const es: SpecSite = { ...gs, line: entry.keyPos.line, col: entry.keyPos.col, field: `${gs.field}.${entry.key}` };
          if (!PGBACKREST_OPTION_NAME.test(entry.key)) {
            reader.error(es, 'not a pgBackRest option name (lowercase words joined by -, e.g. repo1-retention-full)');
            continue;
          }
          if (isWardenOwnedOption(entry.key)) {
            reader.error(es, 'Warden sets this option itself (repository paths, servers, lock, log and spool paths, asynchronous archiving)');
            continue;
          }
          const v = entry.value;
          if (v.kind !== 'scalar' || v.value === null || (typeof v.value !== 'string' && typeof v.value !== 'number' && typeof v.value !== 'boolean')) {
            reader.error(es, 'must be a string, a number or true/false');
            continue;
          }
          // pgBackRest's booleans are y/n.
          global[entry.key] = typeof v.value === 'boolean' ? (v.value ? 'y' : 'n') : String(v.value);
        }
      },
    },
    ignored: Object.fromEntries(['image', 'configuration', 'manual', 'restore', 'repoHost', 'jobs', 'sidecars', 'metadata'].map((k) => [k, NOT_APPLIED])),
  });
  for (const [repo, { kind, site: cs }] of cloudSites) {
    const has = (o: string): boolean => {
      const [k, v] = o.split('=');
      return v === undefined ? global[`${repo}-${k}`] !== undefined : global[`${repo}-${k}`] === v;
    };
    if (!CLOUD_CREDENTIALS[kind].some((alt) => alt.every(has))) {
      const alts = CLOUD_CREDENTIALS[kind].map((alt) => alt.map((o) => `${repo}-${o.replace('=', ': ')}`).join(' and ')).join(', or ');
      reader.error(cs, `needs its credentials in spec.backups.pgbackrest.global: ${alts}`);
    }
  }
  if (reader.errors.length > before) return undefined;
  if (repos.length === 0) {
    reader.error(reposSite ?? { ...site, field: `${site.field}.repos` }, 'required: at least one repository, e.g. "repos: [{ name: repo1, volume: {} }]"');
    return undefined;
  }
  return { repos, global };
}

/** One repository (posix or cloud) and where its cloud section is; undefined after an error. */
function readRepo(reader: SpecReader, value: YamlValue, site: SpecSite): { repo: BackupRepoSpec; cloudSite?: SpecSite } | undefined {
  let name: string | undefined;
  const schedules: { type: BackupType; cron: string }[] = [];
  let volumeSite: SpecSite | undefined;
  const clouds: { storage: CloudStorage | undefined; site: SpecSite }[] = [];
  const cloud = (kind: CloudKind) => (cv: YamlValue, cs: SpecSite) => {
    const fields: Record<string, string> = {};
    const found = reader.mapping(cv, cs, {
      read: Object.fromEntries(
        CLOUD_FIELDS[kind].map((f) => [
          f,
          (fv: YamlValue, fs: SpecSite) => {
            const t = reader.string(fv, fs);
            if (t === undefined) return;
            if (t.trim() === '' || /[\r\n]/.test(t)) return void reader.error(fs, 'must be a non-empty single line');
            fields[f] = t;
          },
        ]),
      ),
    });
    const missing = CLOUD_FIELDS[kind].filter((f) => fields[f] === undefined && !(cv.kind === 'map' && cv.entries.some((e) => e.key === f)));
    for (const f of missing) reader.missing({ ...cs, field: `${cs.field}.${f}` }, `required for this ${kind} repository`);
    const ok = found && CLOUD_FIELDS[kind].every((f) => fields[f] !== undefined);
    const storage: CloudStorage | undefined = !ok
      ? undefined
      : kind === 's3'
        ? { type: 's3', bucket: fields['bucket'] ?? '', endpoint: fields['endpoint'] ?? '', region: fields['region'] ?? '' }
        : kind === 'gcs'
          ? { type: 'gcs', bucket: fields['bucket'] ?? '' }
          : { type: 'azure', container: fields['container'] ?? '' };
    clouds.push({ storage, site: cs });
  };
  reader.mapping(value, site, {
    read: {
      name: (nv, ns) => {
        const n = reader.string(nv, ns);
        if (n === undefined) return;
        if (!REPO_NAME.test(n)) reader.error(ns, `must be repo1, repo2, repo3 or repo4 (got ${JSON.stringify(n)}): pgBackRest numbers its repositories`);
        else name = n;
      },
      volume: (_vv, vs) => {
        volumeSite = vs;
        reader.notice(vs, 'the local runtime keeps this repository in DIR/backup/<name>; the volume claim is not applied');
      },
      s3: cloud('s3'),
      gcs: cloud('gcs'),
      azure: cloud('azure'),
      schedules: (sv, ss) =>
        void reader.mapping(sv, ss, {
          read: Object.fromEntries(
            (Object.keys(SCHEDULE_TYPES) as (keyof typeof SCHEDULE_TYPES)[]).map((kind) => [
              kind,
              (cv: YamlValue, cs: SpecSite) => {
                const text = reader.string(cv, cs);
                if (text === undefined) return;
                const c = parseCron(text);
                // The column of the bad field inside the value (a quoted value starts one later).
                if (!c.ok) return void reader.error({ ...cs, line: cv.line, col: cv.col + c.error.col - 1 + (cv.kind === 'scalar' && cv.quoted === true ? 1 : 0) }, c.error.message);
                schedules.push({ type: SCHEDULE_TYPES[kind], cron: text });
              },
            ]),
          ),
        }),
    },
  });
  if (clouds.length + (volumeSite === undefined ? 0 : 1) > 1) {
    const second = clouds[volumeSite === undefined ? 1 : 0]?.site ?? site;
    reader.error(second, 'a repository is one of volume, s3, gcs or azure: give each its own repoN');
    return undefined;
  }
  if (name === undefined) {
    if (value.kind === 'map' && !value.entries.some((e) => e.key === 'name')) reader.missing({ ...site, field: `${site.field}.name` }, 'required: repo1 … repo4');
    return undefined;
  }
  // A repository with only a name is the local runtime's kind too (the Ivory seed writes it so).
  const c = clouds[0];
  if (c === undefined) return { repo: { name, schedules } };
  return c.storage === undefined ? undefined : { repo: { name, cloud: c.storage, schedules }, cloudSite: c.site };
}
