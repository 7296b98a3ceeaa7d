// spec.backups in the operators' shape (`pgbackrest` with `repos[]` and `global`), read into what the
// local runtime applies; the rest is validated where cheap and reported as a notice. Pure.
import { isWardenOwnedOption, parseCron, PGBACKREST_OPTION_NAME, SCHEDULE_TYPES, type BackupType } from '../backup/index.js';
import type { SpecSite } from './spec-error.js';
import { NOT_APPLIED, type SpecReader } from './spec-reader.js';
import type { YamlValue } from './yaml-tree.js';

/** One repository the local runtime runs: a `volume` repository becomes a posix repository in DIR/backup/<name>. */
export interface BackupRepoSpec {
  /** `repo1` … `repo4`. */
  readonly name: string;
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
const CLOUD_NOT_APPLIED = 'a cloud repository is not applied in the local runtime (it runs volume repositories only)';

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
  let cloudOnly = false;
  reader.mapping(value, site, {
    read: {
      repos: (rv, rs) => {
        reposSite = rs;
        reader.list(rv, rs, (item, is) => {
          const repo = readRepo(reader, item, is);
          if (repo === 'cloud') cloudOnly = true;
          if (repo === undefined || repo === 'cloud') return;
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
  if (reader.errors.length > before) return undefined;
  if (repos.length === 0 && cloudOnly) {
    reader.notice(reposSite ?? site, `${NOT_APPLIED}: no volume repository, so this cluster runs without backups`);
    return undefined;
  }
  if (repos.length === 0) {
    reader.error(reposSite ?? { ...site, field: `${site.field}.repos` }, 'required: at least one repository, e.g. "repos: [{ name: repo1, volume: {} }]"');
    return undefined;
  }
  return { repos, global };
}

/** A volume repository, 'cloud' for a cloud-only one (noticed, not run), undefined after an error. */
function readRepo(reader: SpecReader, value: YamlValue, site: SpecSite): BackupRepoSpec | 'cloud' | undefined {
  let name: string | undefined;
  const schedules: { type: BackupType; cron: string }[] = [];
  let hasVolume = false;
  let hasCloud = false;
  reader.mapping(value, site, {
    read: {
      name: (nv, ns) => {
        const n = reader.string(nv, ns);
        if (n === undefined) return;
        if (!REPO_NAME.test(n)) reader.error(ns, `must be repo1, repo2, repo3 or repo4 (got ${JSON.stringify(n)}): pgBackRest numbers its repositories`);
        else name = n;
      },
      volume: (_vv, vs) => {
        hasVolume = true;
        reader.notice(vs, 'the local runtime keeps this repository in DIR/backup/<name>; the volume claim is not applied');
      },
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
    ignored: { s3: CLOUD_NOT_APPLIED, gcs: CLOUD_NOT_APPLIED, azure: CLOUD_NOT_APPLIED },
  });
  if (value.kind === 'map') hasCloud = value.entries.some((e) => ['s3', 'gcs', 'azure'].includes(e.key));
  if (name === undefined) {
    if (value.kind === 'map' && !value.entries.some((e) => e.key === 'name')) reader.missing({ ...site, field: `${site.field}.name` }, 'required: repo1 … repo4');
    return undefined;
  }
  // A repository with only a name is the local runtime's kind too (the Ivory seed writes it so).
  if (!hasVolume && hasCloud) return 'cloud';
  return { name, schedules };
}
