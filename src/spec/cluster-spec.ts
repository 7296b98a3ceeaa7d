import { DEFAULT_DYNAMIC_CONFIG } from '../ha/dynamic-config.js';
import type { DynamicConfig } from '../ha/dynamic-config.js';
import { dnsLabelProblem } from './dns-label.js';
import { DynamicConfigDraft, readDynamicConfiguration } from './dynamic-config-reader.js';
import { sortSpecErrors } from './spec-error.js';
import type { SpecError, SpecNotice, SpecSite } from './spec-error.js';
import { NOT_APPLIED, SpecReader } from './spec-reader.js';
import { parseYamlTree } from './yaml-tree.js';
import type { YamlValue } from './yaml-tree.js';
import type { InstanceSetScheduling } from '../placement/index.js';
import { readAffinity, readLabels, readTolerations, readTopologySpreadConstraints } from './scheduling-reader.js';
import { readBackups, type BackupsSpec } from './backups-reader.js';
import { readDataSource, type DataSourceSpec } from './data-source-reader.js';

/** Kinds accepted: Warden's own and those of the Crunchy (PGO) and Ivory operators, whose manifests work as they are. */
export const CLUSTER_KINDS = ['Cluster', 'IvoryCluster', 'PostgresCluster'] as const;
export type ClusterKind = (typeof CLUSTER_KINDS)[number];

export const RECOMMENDED_API_VERSION = 'warden.dev/v1';
/** The only PostgreSQL major version the local runtime ships. */
export const LOCAL_POSTGRES_VERSION = 15;
/** Largest cluster the local runtime starts on one machine. */
export const MAX_LOCAL_MEMBERS = 9;
export const ETCD_MEMBER_COUNTS = [1, 3, 5] as const;
/** Most routers a cluster may ask for (spec.proxy.router.replicas). */
export const MAX_ROUTER_REPLICAS = 9;

/** One PostgreSQL instance to run, and the instance set (`spec.instances[]` entry) it comes from. */
export interface ClusterMember {
  readonly name: string;
  readonly instanceSet: string;
}

/** A validated cluster spec: what should exist, with every default filled in. */
export interface ClusterSpec {
  readonly name: string;
  readonly apiVersion: string;
  readonly kind: ClusterKind;
  readonly members: readonly ClusterMember[];
  readonly dynamicConfig: DynamicConfig;
  readonly etcdMembers: number;
  readonly restartDelaySeconds: number;
  /** `metadata.namespace` (default `default`): the namespace instances are in for pod affinity and spread. */
  readonly namespace: string;
  /** `spec.disableDefaultPodScheduling`: without it, the operators' two soft spread constraints apply. */
  readonly disableDefaultPodScheduling: boolean;
  /** Each instance set's scheduling fields, in spec order; used by placement, not by the local runtime. */
  readonly instanceSets: readonly InstanceSetScheduling[];
  /** spec.backups.pgbackrest: continuous archiving and backups; absent means none. */
  readonly backups?: BackupsSpec;
  /** spec.proxy.router.replicas: routers the controller places (spread over nodes); absent means its default. */
  readonly routerReplicas?: number;
  /** spec.dataSource.postgresCluster: the cluster starts from another cluster's backups instead of initdb. */
  readonly dataSource?: DataSourceSpec;
}

export type ParseClusterSpecResult =
  | { readonly ok: true; readonly spec: ClusterSpec; readonly notices: readonly SpecNotice[] }
  | { readonly ok: false; readonly errors: readonly SpecError[] };

const DEFAULT_ETCD_MEMBERS = 3;
const DEFAULT_RESTART_DELAY_SECONDS = 5;
const DEFAULT_NAMESPACE = 'default';
/** Fields placement reads but the local runtime, which runs every member on one machine, does not. */
const PLACEMENT_ONLY = 'used by `warden plan` for placement; not applied in the local runtime';
const ONE_LOCAL_ROUTER = 'used by the controller (`warden apply`); the local runtime runs one router';

/**
 * The notices that concern only the static local runtime (`warden up` without `--nodes`): placement
 * rules and router replicas, which the controller does apply. Dropped where the controller runs the
 * spec (`warden apply`, `warden up --nodes`): there they would say the opposite of what happens.
 */
export function noticesForController<T extends { readonly message: string }>(notices: readonly T[]): T[] {
  return notices.filter((n) => n.message !== PLACEMENT_ONLY && n.message !== ONE_LOCAL_ROUTER);
}

/** The spec `warden up` uses without a file: cluster "demo" with members demo-1..3 and default timings. */
export function defaultClusterSpec(): ClusterSpec {
  return {
    name: 'demo',
    apiVersion: RECOMMENDED_API_VERSION,
    kind: 'Cluster',
    members: memberList('demo', [{ name: 'instance1', replicas: 3 }]),
    dynamicConfig: DEFAULT_DYNAMIC_CONFIG,
    etcdMembers: DEFAULT_ETCD_MEMBERS,
    restartDelaySeconds: DEFAULT_RESTART_DELAY_SECONDS,
    namespace: DEFAULT_NAMESPACE,
    disableDefaultPodScheduling: false,
    instanceSets: [unscheduledSet('instance1')],
  };
}

function unscheduledSet(name: string): InstanceSetScheduling {
  return { name, labels: {}, tolerations: [], topologySpreadConstraints: [] };
}

const KUBERNETES_METADATA_FIELDS = [
  'labels',
  'annotations',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'managedFields',
  'finalizers',
  'ownerReferences',
  'generateName',
  'selfLink',
];

/** Instance-set fields that only mean something to a Kubernetes operator. */
const KUBERNETES_INSTANCE_FIELDS = [
  'dataVolumeClaimSpec',
  'walVolumeClaimSpec',
  'resources',
  'priorityClassName',
  'sidecars',
  'containers',
  'tablespaceVolumes',
  'volumes',
];

/** `spec` fields of the Crunchy and Ivory operators that the local runtime does not act on. */
const NOT_APPLIED_SPEC_FIELDS = [
  'image',
  'imagePullPolicy',
  'imagePullSecrets',
  'port',
  'users',
  'databases',
  'monitoring',
  'service',
  'replicaService',
  'standby',
  'openshift',
  'customTLSSecret',
  'customReplicationTLSSecret',
  'config',
  'shutdown',
  'userInterface',
  'metadata',
  'postGISVersion',
  'databaseInitSQL',
  'supplementalGroups',
  'authentication',
];

function notApplied(fields: readonly string[]): Record<string, string> {
  return Object.fromEntries(fields.map((f) => [f, NOT_APPLIED]));
}

interface InstanceSet {
  readonly name: string;
  readonly replicas: number;
  readonly scheduling: Omit<InstanceSetScheduling, 'name'>;
  /** Where the set's name was given (or the list item, for a defaulted name). */
  readonly site: SpecSite;
}

/**
 * Validates a cluster spec (Warden `Cluster`, Crunchy `PostgresCluster` or Ivory `IvoryCluster`
 * manifest). Every problem in the file is reported with file:line:col and the field's dotted path;
 * fields the local runtime accepts but does not apply come back as notices. Pure: no I/O.
 */
export function parseClusterSpec(text: string, file: string): ParseClusterSpecResult {
  const tree = parseYamlTree(text, file);
  if (!tree.ok) return { ok: false, errors: tree.errors };
  const reader = new SpecReader(file);
  reader.notices.push(...tree.warnings);
  const root = tree.root;
  if (root === undefined) {
    reader.error(reader.root({ line: 1, col: 1 }), 'the file is empty; a cluster spec needs kind, metadata.name and spec.instances');
    return { ok: false, errors: reader.errors };
  }
  const spec = readClusterSpec(reader, root);
  if (spec === undefined || reader.errors.length > 0) return { ok: false, errors: sortSpecErrors(reader.errors) };
  return { ok: true, spec, notices: sortSpecErrors(reader.notices) };
}

function readClusterSpec(reader: SpecReader, root: YamlValue): ClusterSpec | undefined {
  const rootSite = reader.root(root);
  let apiVersion: string | undefined;
  let kind: ClusterKind | undefined;
  let name: { value: string; site: SpecSite } | undefined;
  let specSite: SpecSite | undefined;
  let patroniSite: SpecSite | undefined;
  let dynamicSite: SpecSite | undefined;
  let instanceSets: InstanceSet[] | undefined;
  let instancesSite: SpecSite | undefined;
  let etcdMembers = DEFAULT_ETCD_MEMBERS;
  let restartDelaySeconds = DEFAULT_RESTART_DELAY_SECONDS;
  let namespace = DEFAULT_NAMESPACE;
  let disableDefaultPodScheduling = false;
  let backups: BackupsSpec | undefined;
  let routerReplicas: number | undefined;
  let dataSource: DataSourceSpec | undefined;
  const draft = new DynamicConfigDraft(reader);

  const readPause = (v: YamlValue, s: SpecSite): void => {
    const b = reader.boolean(v, s);
    if (b !== undefined) draft.set('pause', b, s);
  };

  const isMapping = reader.mapping(root, { ...rootSite, field: '' }, {
    read: {
      apiVersion: (v, s) => (apiVersion = reader.string(v, s)),
      kind: (v, s) => (kind = reader.oneOf(v, s, CLUSTER_KINDS)),
      metadata: (v, s) => {
        const found = reader.mapping(v, s, {
          read: {
            name: (nv, ns) => {
              const n = reader.string(nv, ns);
              if (n === undefined) return;
              const problem = dnsLabelProblem(n);
              if (problem !== undefined) reader.error(ns, problem);
              else name = { value: n, site: ns };
            },
            namespace: (nv, ns) => {
              const n = reader.string(nv, ns);
              if (n === undefined) return;
              const problem = dnsLabelProblem(n);
              if (problem !== undefined) return reader.error(ns, problem);
              namespace = n;
              reader.notice(ns, PLACEMENT_ONLY);
            },
          },
          ignored: notApplied(KUBERNETES_METADATA_FIELDS),
        });
        if (found && !hasKey(v, 'name')) reader.missing({ ...s, field: 'metadata.name' }, 'required: the cluster name (lowercase letters, digits and -)');
      },
      spec: (v, s) => {
        specSite = s;
        const found = reader.mapping(v, s, {
          read: {
            postgresVersion: (pv, ps) => {
              const n = reader.number(pv, ps, { integer: true, min: 1 });
              if (n !== undefined && n !== LOCAL_POSTGRES_VERSION) {
                reader.error(ps, `only PostgreSQL ${LOCAL_POSTGRES_VERSION} is supported by the local runtime (got ${n})`);
              }
            },
            instances: (iv, is) => {
              instancesSite = is;
              instanceSets = readInstanceSets(reader, iv, is);
            },
            patroni: (pv, ps) => {
              patroniSite = ps;
              reader.mapping(pv, ps, {
                read: {
                  dynamicConfiguration: (dv, ds) => {
                    dynamicSite = ds;
                    readDynamicConfiguration(reader, dv, ds, draft);
                  },
                  // Crunchy's names for ttl and loop_wait.
                  leaderLeaseDurationSeconds: (lv, ls) => {
                    const n = reader.number(lv, ls, { gt: 0 });
                    if (n !== undefined) draft.set('ttl', n, ls);
                  },
                  syncPeriodSeconds: (lv, ls) => {
                    const n = reader.number(lv, ls, { gt: 0 });
                    if (n !== undefined) draft.set('loop_wait', n, ls);
                  },
                },
                ignored: notApplied(['port', 'switchover', 'logging']),
              });
            },
            disableDefaultPodScheduling: (dv, ds) => {
              const b = reader.boolean(dv, ds);
              if (b === undefined) return;
              disableDefaultPodScheduling = b;
              reader.notice(ds, PLACEMENT_ONLY);
            },
            backups: (bv, bs) => {
              backups = readBackups(reader, bv, bs);
            },
            dataSource: (dv, ds) => {
              dataSource = readDataSource(reader, dv, ds);
            },
            proxy: (pv, ps) => {
              reader.mapping(pv, ps, {
                read: {
                  router: (rv, rs) => {
                    reader.mapping(rv, rs, {
                      read: {
                        replicas: (nv, ns) => {
                          const n = reader.number(nv, ns, { integer: true, min: 0, max: MAX_ROUTER_REPLICAS });
                          if (n === undefined) return;
                          routerReplicas = n;
                          reader.notice(ns, ONE_LOCAL_ROUTER);
                        },
                      },
                    });
                  },
                },
                ignored: notApplied(['pgBouncer']),
              });
            },
            // Maintenance mode: nothing is started, stopped or promoted automatically.
            paused: readPause,
            pause: readPause,
            warden: (wv, ws) => {
              reader.mapping(wv, ws, {
                read: {
                  etcd: (ev, es) => {
                    reader.mapping(ev, es, {
                      read: {
                        members: (mv, ms) => {
                          const n = reader.number(mv, ms, { integer: true, min: 1 });
                          if (n === undefined) return;
                          if (!(ETCD_MEMBER_COUNTS as readonly number[]).includes(n)) {
                            reader.error(ms, `must be 1, 3 or 5 (got ${n}): etcd needs an odd number of members for a majority`);
                          } else {
                            etcdMembers = n;
                          }
                        },
                      },
                    });
                  },
                  restartDelaySeconds: (rv, rs) => {
                    const n = reader.number(rv, rs, { min: 0 });
                    if (n !== undefined) restartDelaySeconds = n;
                  },
                },
              });
            },
          },
          ignored: notApplied(NOT_APPLIED_SPEC_FIELDS),
        });
        if (found && !hasKey(v, 'instances')) {
          reader.missing({ ...s, field: 'spec.instances' }, 'required: at least one instance set, e.g. "instances: [{ name: instance1, replicas: 3 }]"');
        }
      },
    },
    ignored: { status: 'written by Kubernetes operators; ignored' },
  });
  if (!isMapping) return undefined;
  if (!hasKey(root, 'apiVersion')) reader.missing({ ...rootSite, field: 'apiVersion' }, `required (e.g. ${RECOMMENDED_API_VERSION})`);
  if (!hasKey(root, 'kind')) reader.missing({ ...rootSite, field: 'kind' }, `required: one of ${CLUSTER_KINDS.join(', ')}`);
  if (!hasKey(root, 'metadata')) reader.missing({ ...rootSite, field: 'metadata.name' }, 'required: the cluster name (lowercase letters, digits and -)');
  if (!hasKey(root, 'spec')) reader.missing({ ...rootSite, field: 'spec' }, 'required: spec.instances says how many PostgreSQL instances to run');

  const anchor = dynamicSite ?? draft.siteOf('loop_wait') ?? draft.siteOf('retry_timeout') ?? patroniSite ?? specSite ?? rootSite;
  const dynamicConfig = draft.build(anchor);

  if (name === undefined || instanceSets === undefined || instancesSite === undefined) return undefined;
  const members = checkMembers(reader, name, instanceSets, instancesSite);
  if (apiVersion === undefined || kind === undefined || dynamicConfig === undefined || members === undefined) return undefined;
  noteSynchronousLimits(reader, draft, dynamicConfig, members.length, anchor);
  const instanceSetScheduling = instanceSets.map((set) => ({ name: set.name, ...set.scheduling }));
  return {
    name: name.value,
    apiVersion,
    kind,
    members,
    dynamicConfig,
    etcdMembers,
    restartDelaySeconds,
    namespace,
    disableDefaultPodScheduling,
    instanceSets: instanceSetScheduling,
    ...(backups === undefined ? {} : { backups }),
    ...(routerReplicas === undefined ? {} : { routerReplicas }),
    ...(dataSource === undefined ? {} : { dataSource }),
  };
}

function readInstanceSets(reader: SpecReader, value: YamlValue, site: SpecSite): InstanceSet[] | undefined {
  const sets: InstanceSet[] = [];
  let ok = true;
  const isList = reader.list(value, site, (item, itemSite, index) => {
    let name: string | undefined;
    let nameSite: SpecSite | undefined;
    let replicas = 1;
    let scheduling: InstanceSet['scheduling'] = { labels: {}, tolerations: [], topologySpreadConstraints: [] };
    const before = reader.errors.length;
    // Scheduling fields are validated as Kubernetes would, then noted: only placement uses them.
    const placementOnly = <T>(read: (v: YamlValue, s: SpecSite) => T | undefined, apply: (t: T) => void) => (v: YamlValue, s: SpecSite) => {
      const t = read(v, s);
      if (t === undefined) return;
      apply(t);
      reader.notice(s, PLACEMENT_ONLY);
    };
    reader.mapping(item, itemSite, {
      read: {
        name: (v, s) => {
          const n = reader.string(v, s);
          if (n === undefined) return;
          const problem = dnsLabelProblem(n);
          if (problem !== undefined) reader.error(s, problem);
          name = n;
          nameSite = s;
        },
        replicas: (v, s) => {
          const n = reader.number(v, s, { integer: true, min: 1 });
          if (n !== undefined) replicas = n;
        },
        minAvailable: (v, s) => {
          // Kubernetes PodDisruptionBudget semantics: a count or a percentage. Validated, then only reported.
          const ok2 = v.kind === 'scalar' && ((typeof v.value === 'number' && Number.isInteger(v.value) && v.value >= 0) || (typeof v.value === 'string' && /^\d{1,3}%$/.test(v.value)));
          if (!ok2) reader.error(s, 'must be an integer ≥ 0 or a percentage such as "50%"');
          else reader.notice(s, NOT_APPLIED);
        },
        affinity: placementOnly(
          (v, s) => readAffinity(reader, v, s),
          (affinity) => (scheduling = { ...scheduling, affinity }),
        ),
        tolerations: placementOnly(
          (v, s) => readTolerations(reader, v, s),
          (tolerations) => (scheduling = { ...scheduling, tolerations }),
        ),
        topologySpreadConstraints: placementOnly(
          (v, s) => readTopologySpreadConstraints(reader, v, s),
          (topologySpreadConstraints) => (scheduling = { ...scheduling, topologySpreadConstraints }),
        ),
        metadata: (v, s) => {
          reader.mapping(v, s, {
            read: {
              labels: placementOnly(
                (lv, ls) => readLabels(reader, lv, ls),
                (labels) => (scheduling = { ...scheduling, labels }),
              ),
            },
            ignored: { annotations: NOT_APPLIED },
          });
        },
      },
      ignored: notApplied(KUBERNETES_INSTANCE_FIELDS),
    });
    if (reader.errors.length > before) ok = false;
    sets.push({ name: name ?? `instance${index + 1}`, replicas, scheduling, site: nameSite ?? itemSite });
  });
  if (!isList || !ok) return undefined;
  if (sets.length === 0) {
    reader.error(site, 'must list at least one instance set');
    return undefined;
  }
  const seen = new Set<string>();
  for (const set of sets) {
    if (seen.has(set.name)) {
      reader.error(set.site, `duplicate instance set name ${JSON.stringify(set.name)}`);
      return undefined;
    }
    seen.add(set.name);
  }
  return sets;
}

function checkMembers(
  reader: SpecReader,
  name: { value: string; site: SpecSite },
  sets: readonly InstanceSet[],
  instancesSite: SpecSite,
): ClusterMember[] | undefined {
  const total = sets.reduce((sum, s) => sum + s.replicas, 0);
  if (total > MAX_LOCAL_MEMBERS) {
    reader.error(instancesSite, `the local runtime runs 1 to ${MAX_LOCAL_MEMBERS} members; these instance sets add up to ${total} replicas`);
    return undefined;
  }
  const members = memberList(name.value, sets);
  for (const m of members) {
    const problem = dnsLabelProblem(m.name);
    if (problem === undefined) continue;
    const set = sets.find((s) => s.name === m.instanceSet);
    const site = sets.length > 1 ? (set?.site ?? instancesSite) : name.site;
    reader.error(site, `member name ${JSON.stringify(m.name)} is not usable: ${problem}; shorten the cluster or instance set name`);
    return undefined;
  }
  return members;
}

/** Member names: `<cluster>-1..N` with one instance set, `<cluster>-<set>-1..N` with several. */
function memberList(cluster: string, sets: readonly Pick<InstanceSet, 'name' | 'replicas'>[]): ClusterMember[] {
  const single = sets.length === 1;
  return sets.flatMap((set) =>
    Array.from({ length: set.replicas }, (_, i) => ({
      name: single ? `${cluster}-${i + 1}` : `${cluster}-${set.name}-${i + 1}`,
      instanceSet: set.name,
    })),
  );
}

/** Synchronous settings a cluster of this size cannot honour: accepted (it may be scaled up), but said. */
function noteSynchronousLimits(reader: SpecReader, draft: DynamicConfigDraft, config: DynamicConfig, memberCount: number, anchor: SpecSite): void {
  if (config.synchronous_mode === 'off') return;
  const replicas = memberCount - 1;
  if (config.synchronous_mode_strict && replicas === 0) {
    reader.notice(draft.siteOf('synchronous_mode_strict') ?? anchor, 'with a single member and strict synchronous mode, every write waits for a standby that does not exist');
  } else if (config.synchronous_node_count > replicas) {
    reader.notice(
      draft.siteOf('synchronous_node_count') ?? draft.siteOf('synchronous_mode') ?? anchor,
      `synchronous_node_count is ${config.synchronous_node_count} but the cluster has ${replicas} replica(s); at most ${replicas} can be synchronous`,
    );
  }
}

function hasKey(value: YamlValue, key: string): boolean {
  return value.kind === 'map' && value.entries.some((e) => e.key === key);
}
