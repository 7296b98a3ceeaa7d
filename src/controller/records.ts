import { bool, decodeJson, list, nullable, num, obj, oneOf, optional, str, type Decoded, type Decoder } from '../core/decode.js';
import { CLOUD_STORAGE, cloudOptions, RESTORE_TARGET_JSON, restoreTargetOf, type CloudStorage, type RestoreTarget } from '../backup/index.js';
import type { Labels, Taint } from '../placement/index.js';
import { TAINT_EFFECTS } from '../placement/index.js';

// The control plane's records in etcd, outside any one cluster's prefix (docs/architecture.md,
// "DCS keys", the `/warden/_…` table). Each has one decoder; a record that fails it is reported
// with the key and the field, never half-used (invariant 10 in docs/architecture.md).

/** Key names of the control plane. Cluster names are DNS labels, so none can start with `_`. */
export const CONTROL_KEYS = {
  nodesDir: '/warden/_nodes/',
  nodeSettingsDir: '/warden/_node-settings/',
  specsDir: '/warden/_specs/',
  secretsDir: '/warden/_secrets/',
  dataSourcesDir: '/warden/_datasources/',
  assignmentsDir: '/warden/_assignments/',
  statusDir: '/warden/_status/',
  controller: '/warden/_controller',
} as const;

/** Everything the control plane keeps: one range read gives the controller one snapshot. */
export const CONTROL_PREFIX = '/warden/_';

export const nodeKey = (node: string): string => `${CONTROL_KEYS.nodesDir}${node}`;
export const nodeSettingsKey = (node: string): string => `${CONTROL_KEYS.nodeSettingsDir}${node}`;
export const specKey = (cluster: string): string => `${CONTROL_KEYS.specsDir}${cluster}`;
export const secretsKey = (cluster: string): string => `${CONTROL_KEYS.secretsDir}${cluster}`;
export const dataSourceKey = (cluster: string): string => `${CONTROL_KEYS.dataSourcesDir}${cluster}`;
export const statusKey = (cluster: string): string => `${CONTROL_KEYS.statusDir}${cluster}`;
/** Members and routers live in separate folders so that no member name can collide with a router's. */
export const assignmentKey = (cluster: string, kind: WorkloadKind, name: string): string => `${CONTROL_KEYS.assignmentsDir}${cluster}/${kind}s/${name}`;

export const WORKLOAD_KINDS = ['member', 'router'] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

export const WORKLOAD_STATES = ['starting', 'running', 'restarting', 'stopping', 'failed'] as const;
export type WorkloadState = (typeof WORKLOAD_STATES)[number];

/** What a node daemon runs, as it reports it in its node record. */
export interface WorkloadStatus {
  readonly cluster: string;
  readonly kind: WorkloadKind;
  readonly name: string;
  readonly state: WorkloadState;
  readonly pid: number | null;
  readonly restarts: number;
  /** Where clients reach it: the agent's REST API, or the router's read-write port. */
  readonly address?: string;
  readonly lastError?: string;
  /** A member's: backupsFingerprint of the settings its running agent was started with (or its files rewritten to). */
  readonly backups?: string;
}

/** `/warden/_nodes/<name>`: written by the node daemon under its own lease. */
export interface NodeRecord {
  readonly name: string;
  readonly labels: Labels;
  readonly taints: readonly Taint[];
  /** Addresses its workloads listen on (the first is used). */
  readonly addresses: readonly string[];
  /** At most this many workloads (members and routers) are placed on it. */
  readonly capacity: { readonly workloads: number };
  /** Warden version of the daemon. */
  readonly version: string;
  /** Identifies one daemon run: a second daemon with the same name sees a different one. */
  readonly daemonId: string;
  readonly pid: number;
  /** The daemon's directory, to tell its own stale record (after a crash) from another daemon's. */
  readonly dir: string;
  readonly startedAtMs: number;
  readonly workloads: readonly WorkloadStatus[];
}

/** `/warden/_node-settings/<name>`: written by `warden node cordon|uncordon|drain`. */
export interface NodeSettings {
  /** Cordoned: nothing new is placed on it. */
  readonly unschedulable: boolean;
  /** Draining: its members are moved off (a primary by switchover first); implies unschedulable. */
  readonly drain: boolean;
  readonly updatedAtMs: number;
}

/** `/warden/_specs/<cluster>`: written by `warden apply` with compare-and-swap. */
export interface StoredSpec {
  readonly cluster: string;
  /** Bumped by every apply that changes the parsed spec; never by an unchanged one. */
  readonly generation: number;
  /** The spec's YAML as applied: the controller validates it with the same reader `apply` used. */
  readonly text: string;
  /** The file it came from, for messages. */
  readonly file: string;
  /** Set once at the first apply: a cluster deleted and applied again is another cluster (another uid). */
  readonly uid: string;
  readonly appliedAtMs: number;
}

/** `/warden/_secrets/<cluster>`: passwords every member of the cluster shares, created once by `warden apply`. */
export interface ClusterSecrets {
  readonly superuser: { readonly username: string; readonly password: string };
  readonly replication: { readonly username: string; readonly password: string };
  readonly restApi: { readonly username: string; readonly password: string };
}

/**
 * Where a cluster made from another cluster's backups (spec.dataSource) restores from: the source's
 * repository (a posix path every node reaches), the set and the target `warden up` resolved, and
 * the source's superuser password (the restored roles carry it until the bootstrap sets this
 * cluster's). The assignment's part of `/warden/_datasources/<cluster>`.
 */
export interface AssignmentDataSource {
  readonly sourceCluster: string;
  /** The source's stanza and the repository (repo1 … repo4) of its that holds the set. */
  readonly stanza: string;
  readonly repo: string;
  /** The repository's path: a posix dir, or with `repoCloud` the prefix in its bucket. */
  readonly repoPath: string;
  /** The source repository's storage when it is a cloud one (its credentials are in `sourceOptions`). */
  readonly repoCloud?: CloudStorage;
  readonly setLabel: string;
  readonly target: RestoreTarget;
  readonly targetTimeline?: number;
  /** Absent for a repository given by its path (spec.dataSource.pgbackrest): its passwords are not known. */
  readonly sourceSuperuserPassword?: string;
  /** Other pgBackRest options of the source repository (spec.dataSource.pgbackrest.global). */
  readonly sourceOptions?: Readonly<Record<string, string>>;
}

/** `/warden/_datasources/<cluster>`: created once, before the spec, by `warden up` for a spec with dataSource. */
export interface StoredDataSource extends AssignmentDataSource {
  readonly cluster: string;
}

/** `/warden/_assignments/<cluster>/members|routers/<name>`: written by the active controller (CAS). */
export interface Assignment {
  readonly cluster: string;
  readonly kind: WorkloadKind;
  readonly name: string;
  readonly node: string;
  /** The cluster's uid (StoredSpec.uid): a directory of another uid holds another cluster's data. */
  readonly clusterUid: string;
  /** The spec generation this assignment was written for. */
  readonly generation: number;
  /** The member's agent settings: written into its agent config by the node daemon. */
  readonly agent?: {
    readonly instanceSet: string;
    /** Bootstrap dynamic configuration (JSON of DynamicConfig), used by the member that bootstraps. */
    readonly bootstrapDynamicConfig: Readonly<Record<string, unknown>>;
    /**
     * spec.backups.pgbackrest of the cluster: the member archives through pgBackRest into these
     * posix repositories, which the node places under its `backups.repo_path`.
     */
    readonly backups?: AssignmentBackups;
    /** spec.dataSource: the member that bootstraps restores this instead of running initdb. */
    readonly dataSource?: AssignmentDataSource;
  };
  readonly reason: string;
}

/** The backups part of a member's assignment: the stanza (the cluster's name), repositories and pgBackRest options. */
export interface AssignmentBackups {
  readonly stanza: string;
  readonly repos: readonly string[];
  /** The repositories among `repos` that are cloud ones, with their storage (absent: all posix). */
  readonly cloud?: readonly { readonly repo: string; readonly storage: CloudStorage }[];
  readonly global: Readonly<Record<string, string>>;
}

/**
 * The backups part of an assignment as one comparable string ('none' without): the node daemon
 * reports the one its member runs with, and the plan compares it with the spec's.
 */
export function backupsFingerprint(b: AssignmentBackups | undefined): string {
  if (b === undefined) return 'none';
  const global = Object.fromEntries(Object.entries(b.global).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
  const cloud = cloudOf(b);
  return JSON.stringify({ stanza: b.stanza, repos: [...b.repos].sort(), global, ...(cloud === '' ? {} : { cloud }) });
}

/** The cloud repositories of a backups setting as one comparable string ('' when there are none). */
function cloudOf(b: AssignmentBackups): string {
  const c = [...(b.cloud ?? [])].sort((x, y) => (x.repo < y.repo ? -1 : 1));
  return c.length === 0 ? '' : JSON.stringify(c.map((e) => [e.repo, cloudOptions(e.repo, e.storage)]));
}

/**
 * Whether a member must restart its agent to go from one backups setting to the other: archiving
 * turned on or off (archive_mode needs a PostgreSQL restart, and the agent wires its archive
 * hooks at start), or other repositories. pgBackRest options alone (`global`, e.g. retention) are
 * read by each pgBackRest run from the rewritten pgbackrest.conf: nothing restarts.
 */
export function backupsChangeRestarts(from: AssignmentBackups | undefined, to: AssignmentBackups | undefined): boolean {
  if (from === undefined || to === undefined) return from !== to;
  return from.stanza !== to.stanza || [...from.repos].sort().join(',') !== [...to.repos].sort().join(',') || cloudOf(from) !== cloudOf(to);
}

/** `/warden/_controller`: the active controller, create-only under its lease. */
export interface ControllerRecord {
  readonly node: string;
  readonly candidateId: string;
  readonly sinceMs: number;
}

/** A stable code and a sentence (docs/architecture.md, invariant 7). */
export interface ReasonRecord {
  readonly code: string;
  readonly message: string;
}

/** `/warden/_status/<cluster>`: written by the active controller after each pass over the cluster. */
export interface ClusterStatus {
  readonly cluster: string;
  readonly generation: number;
  /** Members the spec asks for / members whose agent reports running (primary, or a replica streaming). */
  readonly desired: number;
  readonly ready: number;
  readonly routers: { readonly desired: number; readonly placed: number };
  readonly pending: readonly { readonly name: string; readonly reason: ReasonRecord }[];
  /** Changes applied in the last pass, or waited on (a switchover before a removal). */
  readonly inProgress: readonly ReasonRecord[];
  readonly lastError: string | null;
  readonly controller: string;
  readonly updatedAtMs: number;
  /** The spec's dynamic configuration the `config` key was last made to match (canonical JSON, without `pause`). */
  readonly appliedConfig?: string;
}

export const LABEL_MAP: Decoder<Labels> = (v, p) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, path: p, problem: 'must be an object of label: value' };
  for (const [k, val] of Object.entries(v)) if (typeof val !== 'string') return { ok: false, path: `${p}.${k}`, problem: `must be a string, got ${typeof val}` };
  return { ok: true, value: v as Labels };
};

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const name: Decoder<string> = (v, p) => {
  const s = str(v, p);
  if (!s.ok) return s;
  return s.value.length <= 253 && NAME.test(s.value) ? s : { ok: false, path: p, problem: `${JSON.stringify(s.value)} is not a name (lowercase letters, digits, - and .)` };
};

const TAINT: Decoder<Taint> = obj({ key: str, value: str, effect: oneOf(...TAINT_EFFECTS) });

const WORKLOAD_STATUS: Decoder<WorkloadStatus> = obj({
  cluster: name,
  kind: oneOf(...WORKLOAD_KINDS),
  name,
  state: oneOf(...WORKLOAD_STATES),
  pid: nullable(num({ integer: true, min: 1 })),
  restarts: num({ integer: true, min: 0 }),
  address: optional(str),
  lastError: optional(str),
  backups: optional(str),
});

export const NODE_RECORD: Decoder<NodeRecord> = obj({
  name,
  labels: LABEL_MAP,
  taints: list(TAINT),
  addresses: list(str),
  capacity: obj({ workloads: num({ integer: true, min: 0 }) }),
  version: str,
  daemonId: str,
  pid: num({ integer: true, min: 1 }),
  dir: str,
  startedAtMs: num({ min: 0 }),
  workloads: list(WORKLOAD_STATUS),
});

export const NODE_SETTINGS: Decoder<NodeSettings> = obj({ unschedulable: bool, drain: bool, updatedAtMs: num({ min: 0 }) });

export const STORED_SPEC: Decoder<StoredSpec> = obj({
  cluster: name,
  generation: num({ integer: true, min: 1 }),
  text: str,
  file: str,
  uid: str,
  appliedAtMs: num({ min: 0 }),
});

const CREDENTIALS = obj({ username: str, password: str });
export const CLUSTER_SECRETS: Decoder<ClusterSecrets> = obj({ superuser: CREDENTIALS, replication: CREDENTIALS, restApi: CREDENTIALS });

const JSON_OBJECT: Decoder<Readonly<Record<string, unknown>>> = (v, p) =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? { ok: true, value: v as Record<string, unknown> } : { ok: false, path: p, problem: 'must be an object' };

const REPO_NAME: Decoder<string> = (v, p) => (typeof v === 'string' && /^repo[1-4]$/.test(v) ? { ok: true, value: v } : { ok: false, path: p, problem: 'must be repo1 … repo4' });

const STRING_RECORD: Decoder<Readonly<Record<string, string>>> = (v, p) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, path: p, problem: 'must be an object' };
  for (const [k, x] of Object.entries(v)) if (typeof x !== 'string') return { ok: false, path: `${p}.${k}`, problem: 'must be a string' };
  return { ok: true, value: v as Record<string, string> };
};

const RESTORE_TARGET: Decoder<RestoreTarget> = (v, p) => {
  const r = RESTORE_TARGET_JSON(v, p);
  if (!r.ok) return r;
  const t = restoreTargetOf(r.value);
  return typeof t === 'string' ? { ok: false, path: p, problem: t.replace(/^target: /, '') } : { ok: true, value: t };
};

const DATA_SOURCE_FIELDS = {
  sourceCluster: name,
  stanza: name,
  repo: REPO_NAME,
  repoPath: str,
  repoCloud: optional(CLOUD_STORAGE),
  setLabel: str,
  target: RESTORE_TARGET,
  targetTimeline: optional(num({ integer: true, min: 1 })),
  sourceSuperuserPassword: optional(str),
  sourceOptions: optional(STRING_RECORD),
};
const ASSIGNMENT_DATA_SOURCE: Decoder<AssignmentDataSource> = obj(DATA_SOURCE_FIELDS);
/** The backups part of an assignment (also kept in a member's workload.json by its node daemon). */
export const ASSIGNMENT_BACKUPS: Decoder<AssignmentBackups> = obj({ stanza: name, repos: list(REPO_NAME), global: STRING_RECORD, cloud: optional(list(obj({ repo: REPO_NAME, storage: CLOUD_STORAGE }))) });
export const STORED_DATA_SOURCE: Decoder<StoredDataSource> = obj({ cluster: name, ...DATA_SOURCE_FIELDS });

export const ASSIGNMENT: Decoder<Assignment> = obj({
  cluster: name,
  kind: oneOf(...WORKLOAD_KINDS),
  name,
  node: name,
  clusterUid: str,
  generation: num({ integer: true, min: 1 }),
  agent: optional(obj({ instanceSet: str, bootstrapDynamicConfig: JSON_OBJECT, backups: optional(ASSIGNMENT_BACKUPS), dataSource: optional(ASSIGNMENT_DATA_SOURCE) })),
  reason: str,
});

export const CONTROLLER_RECORD: Decoder<ControllerRecord> = obj({ node: name, candidateId: str, sinceMs: num({ min: 0 }) });

const REASON: Decoder<ReasonRecord> = obj({ code: str, message: str });

export const CLUSTER_STATUS: Decoder<ClusterStatus> = obj({
  cluster: name,
  generation: num({ integer: true, min: 0 }),
  desired: num({ integer: true, min: 0 }),
  ready: num({ integer: true, min: 0 }),
  routers: obj({ desired: num({ integer: true, min: 0 }), placed: num({ integer: true, min: 0 }) }),
  pending: list(obj({ name: str, reason: REASON })),
  inProgress: list(REASON),
  lastError: nullable(str),
  controller: str,
  updatedAtMs: num({ min: 0 }),
  appliedConfig: optional(str),
});

/** One key of the control plane as a typed record, or why it was refused. */
export type ControlRecord =
  | { readonly kind: 'node'; readonly node: NodeRecord; readonly lease: string; readonly modRevision: number }
  | { readonly kind: 'node-settings'; readonly node: string; readonly settings: NodeSettings; readonly modRevision: number }
  | { readonly kind: 'spec'; readonly spec: StoredSpec; readonly modRevision: number }
  | { readonly kind: 'secrets'; readonly cluster: string; readonly secrets: ClusterSecrets; readonly modRevision: number }
  | { readonly kind: 'data-source'; readonly dataSource: StoredDataSource; readonly modRevision: number }
  | { readonly kind: 'assignment'; readonly assignment: Assignment; readonly modRevision: number }
  | { readonly kind: 'status'; readonly status: ClusterStatus; readonly modRevision: number }
  | { readonly kind: 'controller'; readonly controller: ControllerRecord; readonly lease: string; readonly modRevision: number };

/** The control plane read at one revision; refused keys are in `invalid` (key → why). */
export interface ControlSnapshot {
  readonly revision: number;
  readonly nodes: ReadonlyMap<string, { readonly record: NodeRecord; readonly lease: string; readonly modRevision: number }>;
  readonly nodeSettings: ReadonlyMap<string, NodeSettings & { readonly modRevision: number }>;
  readonly specs: ReadonlyMap<string, StoredSpec & { readonly modRevision: number }>;
  readonly secrets: ReadonlyMap<string, ClusterSecrets>;
  readonly dataSources: ReadonlyMap<string, StoredDataSource>;
  /** By cluster, then by assignment key. */
  readonly assignments: ReadonlyMap<string, readonly (Assignment & { readonly modRevision: number; readonly key: string })[]>;
  readonly statuses: ReadonlyMap<string, ClusterStatus>;
  readonly controller?: ControllerRecord & { readonly lease: string; readonly modRevision: number };
  readonly invalid: ReadonlyMap<string, string>;
}

/** Decodes one control-plane key; the record's own name must match the key's. */
export function parseControlKey(kv: { key: string; value: string; lease: string; modRevision: number }): { ok: true; record: ControlRecord } | { ok: false; error: string } | undefined {
  const { key, value } = kv;
  const rest = (dir: string): string | undefined => (key.startsWith(dir) ? key.slice(dir.length) : undefined);
  const fail = (error: string): { ok: false; error: string } => ({ ok: false, error });
  const named = <T>(d: Decoder<T>, expect: string | undefined, field: (t: T) => string): Decoded<T> | { ok: false; error: string } => {
    const r = decodeJson(d, value);
    if (!r.ok) return fail(r.error);
    if (expect !== undefined && field(r.value) !== expect) return fail(`the record names ${JSON.stringify(field(r.value))}, the key ${JSON.stringify(expect)}`);
    return { ok: true, value: r.value };
  };
  let n: string | undefined;
  if ((n = rest(CONTROL_KEYS.nodesDir)) !== undefined) {
    const r = named(NODE_RECORD, n, (x) => x.name);
    return r.ok ? { ok: true, record: { kind: 'node', node: r.value, lease: kv.lease, modRevision: kv.modRevision } } : fail(errorOf(r));
  }
  if ((n = rest(CONTROL_KEYS.nodeSettingsDir)) !== undefined) {
    const r = decodeJson(NODE_SETTINGS, value);
    return r.ok ? { ok: true, record: { kind: 'node-settings', node: n, settings: r.value, modRevision: kv.modRevision } } : fail(r.error);
  }
  if ((n = rest(CONTROL_KEYS.specsDir)) !== undefined) {
    const r = named(STORED_SPEC, n, (x) => x.cluster);
    return r.ok ? { ok: true, record: { kind: 'spec', spec: r.value, modRevision: kv.modRevision } } : fail(errorOf(r));
  }
  if ((n = rest(CONTROL_KEYS.secretsDir)) !== undefined) {
    const r = decodeJson(CLUSTER_SECRETS, value);
    return r.ok ? { ok: true, record: { kind: 'secrets', cluster: n, secrets: r.value, modRevision: kv.modRevision } } : fail(r.error);
  }
  if ((n = rest(CONTROL_KEYS.dataSourcesDir)) !== undefined) {
    const r = named(STORED_DATA_SOURCE, n, (x) => x.cluster);
    return r.ok ? { ok: true, record: { kind: 'data-source', dataSource: r.value, modRevision: kv.modRevision } } : fail(errorOf(r));
  }
  if ((n = rest(CONTROL_KEYS.assignmentsDir)) !== undefined) {
    const r = decodeJson(ASSIGNMENT, value);
    if (!r.ok) return fail(r.error);
    const a = r.value;
    if (assignmentKey(a.cluster, a.kind, a.name) !== key) return fail(`the record is for ${assignmentKey(a.cluster, a.kind, a.name)}, not this key`);
    if (a.kind === 'member' && a.agent === undefined) return fail('agent: is missing (a member needs its agent settings)');
    return { ok: true, record: { kind: 'assignment', assignment: a, modRevision: kv.modRevision } };
  }
  if ((n = rest(CONTROL_KEYS.statusDir)) !== undefined) {
    const r = named(CLUSTER_STATUS, n, (x) => x.cluster);
    return r.ok ? { ok: true, record: { kind: 'status', status: r.value, modRevision: kv.modRevision } } : fail(errorOf(r));
  }
  if (key === CONTROL_KEYS.controller) {
    const r = decodeJson(CONTROLLER_RECORD, value);
    return r.ok ? { ok: true, record: { kind: 'controller', controller: r.value, lease: kv.lease, modRevision: kv.modRevision } } : fail(r.error);
  }
  return undefined;
}

function errorOf(r: { ok: false; error: string } | { ok: false; path: string; problem: string }): string {
  return 'error' in r ? r.error : `${r.path}: ${r.problem}`;
}

/** Builds the control snapshot from one range read of CONTROL_PREFIX; keys of no known kind are ignored. */
export function parseControlSnapshot(revision: number, kvs: readonly { key: string; value: string; lease: string; modRevision: number }[]): ControlSnapshot {
  const nodes = new Map<string, { record: NodeRecord; lease: string; modRevision: number }>();
  const nodeSettings = new Map<string, NodeSettings & { modRevision: number }>();
  const specs = new Map<string, StoredSpec & { modRevision: number }>();
  const secrets = new Map<string, ClusterSecrets>();
  const dataSources = new Map<string, StoredDataSource>();
  const assignments = new Map<string, (Assignment & { modRevision: number; key: string })[]>();
  const statuses = new Map<string, ClusterStatus>();
  const invalid = new Map<string, string>();
  let controller: (ControllerRecord & { lease: string; modRevision: number }) | undefined;
  for (const kv of kvs) {
    const r = parseControlKey(kv);
    if (r === undefined) continue;
    if (!r.ok) {
      invalid.set(kv.key, r.error);
      continue;
    }
    const rec = r.record;
    switch (rec.kind) {
      case 'node':
        nodes.set(rec.node.name, { record: rec.node, lease: rec.lease, modRevision: rec.modRevision });
        break;
      case 'node-settings':
        nodeSettings.set(rec.node, { ...rec.settings, modRevision: rec.modRevision });
        break;
      case 'spec':
        specs.set(rec.spec.cluster, { ...rec.spec, modRevision: rec.modRevision });
        break;
      case 'secrets':
        secrets.set(rec.cluster, rec.secrets);
        break;
      case 'data-source':
        dataSources.set(rec.dataSource.cluster, rec.dataSource);
        break;
      case 'assignment': {
        const list = assignments.get(rec.assignment.cluster) ?? [];
        list.push({ ...rec.assignment, modRevision: rec.modRevision, key: kv.key });
        assignments.set(rec.assignment.cluster, list);
        break;
      }
      case 'status':
        statuses.set(rec.status.cluster, rec.status);
        break;
      case 'controller':
        controller = { ...rec.controller, lease: rec.lease, modRevision: rec.modRevision };
        break;
    }
  }
  return { revision, nodes, nodeSettings, specs, secrets, dataSources, assignments, statuses, ...(controller === undefined ? {} : { controller }), invalid };
}
