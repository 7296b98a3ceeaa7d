// `warden up --nodes`: the local runtime as etcd plus node daemons on one machine — the code path of
// a deployment across hosts (docs/architecture.md, "The local runtime", "Nodes on one machine").
// Preparing the dir, the node daemons' configs, and what state.json says about the nodes, their
// members and routers (read from etcd and from the workloads' marker files).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { decodeJson, list, obj, port } from '../core/decode.js';
import { WardenError } from '../core/errors.js';
import { NetnsNetwork, netnsToolsUnavailable } from '../core/netns.js';
import type { EtcdClient } from '../dcs/etcd-client.js';
import type { EtcdClusterSpec } from '../dcs/etcd-server.js';
import { clusterPrefix, parseClusterView } from '../ha/index.js';
import type { Labels, Taint } from '../placement/index.js';
import { parseNodeConfig, type ClusterSpec } from '../spec/index.js';
import { CONTROL_PREFIX, parseControlSnapshot, type ClusterSecrets } from './records.js';
import { checkEtcdPortsFree, portTaker, preflight, prepareLocalEtcd, writeRuntimeSecrets, PG_BIN_DIR, REST_USER } from './local-up.js';
import { lookupRunUser, readLayout, writeLayout, type RuntimeBackup, type RuntimeEtcdAuth, type RuntimeLayout, type RuntimeNode } from './runtime-layout.js';
import { checkPgBackRestInstalled, prepareBackup } from './backup-runtime.js';
import type { StateFile, StateMember, StateNode, StateRouterAt } from './state-file.js';

const HOST = '127.0.0.1';
export const DEFAULT_LOCAL_NODES = 3;
export const MAX_LOCAL_NODES = 9;

/** One node of `--nodes`: a count makes node-1..N, a nodes file (as `warden plan --nodes` reads) names them. */
export interface LocalNodeSpec {
  readonly name: string;
  readonly labels: Labels;
  readonly taints: readonly Taint[];
}

/** node-1..N with `kubernetes.io/hostname` and `topology.kubernetes.io/zone: zone-a|b|c|…`. */
export function defaultLocalNodes(count: number): LocalNodeSpec[] {
  return Array.from({ length: count }, (_, i) => {
    const name = `node-${i + 1}`;
    return { name, labels: { 'kubernetes.io/hostname': name, 'topology.kubernetes.io/zone': `zone-${String.fromCharCode(97 + i)}` }, taints: [] };
  });
}

/** The node.yaml of one local node daemon (its fields: README, "Nodes and a controller"). */
export function localNodeConfig(n: LocalNodeSpec, nodeDir: string, etcd: EtcdClusterSpec, auth: RuntimeEtcdAuth, restartDelaySeconds: number, address: string = HOST, backupRepoPath?: string): string {
  return stringify({
    name: n.name,
    dir: nodeDir,
    etcd: { endpoints: etcd.members.map((m) => m.clientUrl), username: auth.username, password_file: auth.passwordFile },
    address,
    labels: n.labels,
    taints: n.taints.map((t) => ({ key: t.key, ...(t.value === undefined ? {} : { value: t.value }), effect: t.effect })),
    restartDelaySeconds,
    pgBinDir: PG_BIN_DIR,
    log: { level: 'info', file: `${nodeDir}.log` },
    ...(backupRepoPath === undefined ? {} : { backups: { repo_path: backupRepoPath } }),
  });
}

/**
 * Writes the runtime dir for `--nodes` the first time (etcd ports, secrets, one node.yaml per node,
 * runtime.json with `nodes` and no static members), or returns the existing layout (ports and data
 * reused; its nodes stay as they were made). With `netns`, each node gets a network namespace and an
 * address of its own (10.213.N.1…) and etcd listens on the root namespace's address on their bridge;
 * the network itself is built by `ensureNodesNetwork` (here only named).
 */
export async function prepareNodesRuntime(dirArg: string, spec: ClusterSpec, nodes: readonly LocalNodeSpec[], opts: { netns?: boolean } = {}): Promise<RuntimeLayout> {
  const dir = resolve(dirArg);
  preflight();
  const existing = await readLayout(dir);
  if (existing !== undefined) {
    if (existing.nodes === undefined) throw new WardenError('conflict', `${dir} was set up without node daemons (\`warden up --static\`): use another --dir, or \`warden down --purge\` first`);
    // Its network first (gone after a reboot): etcd's ports are on it.
    ensureNodesNetwork(existing);
    await checkEtcdPortsFree(existing.etcd);
    return existing;
  }
  if (opts.netns === true) {
    const why = netnsToolsUnavailable();
    if (why !== undefined) throw new WardenError('config-invalid', `--netns: ${why}`);
  }
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const { etcdAuth, pgpassFile } = await writeRuntimeSecrets(dir);
  const take = await portTaker(spec.etcdMembers * 2);
  const network = opts.netns === true ? new NetnsNetwork(nodes.map((n, i) => ({ name: n.name, suffix: i + 1 }))).plan : undefined;
  const etcd = await prepareLocalEtcd(dir, spec, take, network?.testerIp ?? HOST);
  const backupRoot = join(dir, 'backup');
  await mkdir(backupRoot, { recursive: true, mode: 0o755 });
  const run = lookupRunUser();
  let backup: RuntimeBackup | undefined;
  if (spec.backups !== undefined) {
    checkPgBackRestInstalled();
    backup = await prepareBackup(dir, spec.name, spec.backups, run, join(backupRoot, spec.name));
  }
  const runtimeNodes: RuntimeNode[] = [];
  for (const n of nodes) {
    // 0755: the PostgreSQL run user traverses it to its members' directories.
    const nodeDir = join(dir, 'nodes', n.name);
    await mkdir(nodeDir, { recursive: true, mode: 0o755 });
    const configFile = `${nodeDir}.yaml`;
    const host = network?.hosts.find((h) => h.name === n.name);
    // One machine: every node reaches the same DIR/backup, where each cluster's repositories go.
    const text = localNodeConfig(n, nodeDir, etcd, etcdAuth, spec.restartDelaySeconds, host?.ip ?? HOST, backupRoot);
    // What the daemon would refuse (a --dir too deep for PostgreSQL's socket paths) is said here, before anything starts.
    const checked = parseNodeConfig(text, configFile);
    if (!checked.ok) throw new WardenError('config-invalid', `the node config for --dir ${dir}: ${checked.errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`);
    await writeFile(configFile, text, { mode: 0o600 });
    runtimeNodes.push({ name: n.name, dir: nodeDir, configFile, logFile: `${nodeDir}.log`, outFile: `${nodeDir}.out`, ...(host === undefined ? {} : { netns: host.ns }) });
  }
  const layout: RuntimeLayout = {
    cluster: spec.name,
    etcd,
    members: [],
    nodes: runtimeNodes,
    ...(network === undefined ? {} : { netns: network }),
    restartDelaySeconds: spec.restartDelaySeconds,
    etcdAuth,
    ...(backup === undefined ? {} : { backup }),
    superuser: 'postgres',
    pgpassFile,
    createdAt: new Date().toISOString(),
  };
  await writeLayout(dir, layout);
  return layout;
}

/**
 * Builds the runtime's network namespaces when the layout names some and they are not there (a new
 * dir, or after a reboot); a network left half-built is removed first. No-op without `--netns`.
 */
export function ensureNodesNetwork(layout: RuntimeLayout): void {
  if (layout.netns === undefined) return;
  const network = NetnsNetwork.fromPlan(layout.netns);
  if (network.exists()) return;
  const why = netnsToolsUnavailable();
  if (why !== undefined) throw new WardenError('config-invalid', `the runtime's nodes run in network namespaces: ${why}`);
  network.destroySync();
  network.build({ destroyOnExit: false });
}

/** `warden down`: ends what is left in the runtime's namespaces and removes them, the veth and the route. */
export function removeNodesNetwork(layout: RuntimeLayout): string | undefined {
  if (layout.netns === undefined) return undefined;
  NetnsNetwork.fromPlan(layout.netns).destroySync();
  return `${layout.netns.subnet}: ${[layout.netns.bridgeNs, ...layout.netns.hosts.map((h) => h.ns)].join(', ')}`;
}

/**
 * The cluster's passwords from the dir's secret files: `warden apply` stores them in
 * `/warden/_secrets/<cluster>` with the spec (not before: the controller removes the keys of a
 * cluster without a spec), so the CLI's `--dir` and the agents agree.
 */
export async function localSecrets(dir: string): Promise<ClusterSecrets> {
  const read = async (name: string): Promise<string> => (await readFile(join(dir, 'secrets', name), 'utf8')).trim();
  return {
    superuser: { username: 'postgres', password: await read('superuser.password') },
    replication: { username: 'replicator', password: await read('replication.password') },
    restApi: { username: REST_USER, password: await read('restapi.password') },
  };
}

const ROUTER_MARKER = obj({ ports: list(port) });

/**
 * What state.json records of a `--nodes` runtime: each node (labels, daemon PID, dir), every
 * member of the cluster (from its member key, with the node and directory the node records give),
 * and its routers (ports from their workload.json). `nodePids` are the daemons the supervisor runs.
 */
export async function nodesState(
  layout: RuntimeLayout,
  client: EtcdClient,
  nodePids: ReadonlyMap<string, number | null>,
): Promise<Pick<StateFile, 'members' | 'router' | 'routers' | 'nodes'>> {
  const control = await client.range(CONTROL_PREFIX, { timeoutMs: 3_000 });
  const snap = parseControlSnapshot(control.revision, control.kvs);
  const prefix = clusterPrefix(layout.cluster);
  const raw = await client.range(prefix, { timeoutMs: 3_000 });
  const view = parseClusterView(prefix, raw.revision, raw.kvs);
  const records = [...snap.nodes.values()].map((n) => n.record);
  const nodes: StateNode[] = (layout.nodes ?? []).map((n) => ({
    name: n.name,
    labels: records.find((r) => r.name === n.name)?.labels ?? {},
    pid: nodePids.get(n.name) ?? null,
    dir: n.dir,
    address: layout.netns?.hosts.find((h) => h.name === n.name)?.ip ?? HOST,
  }));
  const placed = new Map<string, { node: string; dir: string; pid: number | null }>();
  const routers: StateRouterAt[] = [];
  for (const r of records) {
    const local = layout.nodes?.find((n) => n.name === r.name);
    if (local === undefined) continue;
    for (const w of r.workloads) {
      if (w.cluster !== layout.cluster) continue;
      const dir = join(local.dir, 'workloads', w.cluster, `${w.kind}s`, w.name);
      if (w.kind === 'member') {
        placed.set(w.name, { node: r.name, dir, pid: w.pid });
        continue;
      }
      const marker = decodeJson(ROUTER_MARKER, await readFile(join(dir, 'workload.json'), 'utf8').catch(() => '{}'));
      const [rw, ro, admin] = marker.ok ? marker.value.ports : [];
      if (rw === undefined || ro === undefined || admin === undefined) continue;
      const host = r.addresses[0] ?? HOST;
      routers.push({ rw: { host, port: rw }, ro: { host, port: ro }, admin: { host, port: admin }, pid: w.state === 'running' ? w.pid : null, node: r.name, dir });
    }
  }
  routers.sort((a, b) => a.dir.localeCompare(b.dir));
  const members: StateMember[] = [...view.members.values()]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m) => {
      const at = placed.get(m.name);
      return {
        name: m.name,
        apiUrl: m.apiUrl,
        host: m.host,
        port: m.port,
        dataDir: at === undefined ? '' : join(at.dir, 'data'),
        agentPid: at?.pid ?? m.agentPid ?? null,
        ...(at === undefined ? {} : { node: at.node, dir: at.dir }),
      };
    });
  const first = routers[0];
  return { nodes, members, routers, router: first === undefined ? null : first };
}

