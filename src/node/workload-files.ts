import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { decodeJson, list, nullable, obj, oneOf, optional, port, str, type Decoder } from '../core/decode.js';
import { WardenError } from '../core/errors.js';
import { freePorts } from '../core/free-port.js';
import type { RunUser } from '../controller/runtime-layout.js';
import { writeFileAtomically } from '../controller/state-file.js';
import { writeDataSourceFiles } from '../controller/backup-runtime.js';
import { ASSIGNMENT_BACKUPS, type Assignment, type AssignmentBackups, type ClusterSecrets, type WorkloadKind } from '../controller/records.js';
import { renderPgBackRestConf, repoConf, type CloudStorage } from '../backup/index.js';
import { parseDynamicConfigJson } from '../ha/index.js';
import { ROUTER_DEFAULTS, stringifyAgentConfig, stringifyRouterConfig, type NodeConfig } from '../spec/index.js';

// The files of one workload a node daemon runs (docs/architecture.md, "Nodes and the controller"):
// DIR/workloads/<cluster>/<kind>s/<name>/ with workload.json (whose cluster, which uid, its ports),
// the agent or router config, the cluster's passwords (0600), logs, and for a member its data and
// socket dirs. Ports are kept in DIR/ports.json, so a workload whose directory was deleted comes
// back on the same ports.

/** DIR/workloads/<cluster>/<kind>s/<name>/workload.json: marks whose data the directory holds. */
export interface WorkloadMarker {
  readonly cluster: string;
  readonly clusterUid: string;
  readonly kind: WorkloadKind;
  readonly name: string;
  readonly ports: readonly number[];
  /** A member's: the backups settings its files were written with (null: none; absent: written before this was kept). */
  readonly backups?: AssignmentBackups | null;
}

const WORKLOAD_MARKER: Decoder<WorkloadMarker> = obj({ cluster: str, clusterUid: str, kind: oneOf('member', 'router'), name: str, ports: list(port), backups: optional(nullable(ASSIGNMENT_BACKUPS)) });

/** Where a workload's files are, and what the daemon needs to start it. */
export interface WorkloadFiles {
  readonly dir: string;
  readonly configFile: string;
  readonly outFile: string;
  readonly pidFile: string;
  /** Where clients reach it: the agent's REST API URL, or the router's read-write address. */
  readonly address: string;
  /** What was recreated or moved aside, for the log. */
  readonly notes: readonly string[];
  /** A member's: the backups settings (spec.backups) its agent config and pgbackrest.conf were written with. */
  readonly backups?: AssignmentBackups;
}

/** A workload's key in the daemon's maps and in ports.json. */
export function workloadKey(a: Pick<Assignment, 'cluster' | 'kind' | 'name'>): string {
  return `${a.cluster}/${a.kind}s/${a.name}`;
}

export function workloadDir(nodeDir: string, a: Pick<Assignment, 'cluster' | 'kind' | 'name'>): string {
  return join(nodeDir, 'workloads', a.cluster, `${a.kind}s`, a.name);
}

/**
 * The ports.json updates in flight, by file: a node daemon prepares every workload of a pass at
 * once, and two read-modify-writes of the file that overlap lose one workload's entry (it comes back
 * on other ports after its directory is deleted — a router no longer where its clients look) and
 * may hand the same free port to both. One chain per file makes them take turns.
 */
const portBookTurns = new Map<string, Promise<unknown>>();

/** Ports per workload, kept for the daemon's whole life in DIR/ports.json (one update at a time per file). */
async function portsFor(nodeDir: string, key: string, count: number, host: string): Promise<number[]> {
  const file = join(nodeDir, 'ports.json');
  const previous = portBookTurns.get(file) ?? Promise.resolve();
  const turn = previous.catch(() => undefined).then(() => updatePortBook(file, key, count, host));
  portBookTurns.set(file, turn);
  try {
    return await turn;
  } finally {
    // The last turn of a file leaves no entry behind.
    if (portBookTurns.get(file) === turn) portBookTurns.delete(file);
  }
}

async function updatePortBook(file: string, key: string, count: number, host: string): Promise<number[]> {
  let all: Record<string, number[]> = {};
  try {
    all = JSON.parse(await readFile(file, 'utf8')) as Record<string, number[]>;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new WardenError('config-invalid', `cannot read ${file}`, { cause: e });
  }
  const known = all[key];
  if (Array.isArray(known) && known.length === count && known.every((p) => Number.isInteger(p))) return known;
  const taken = new Set(Object.values(all).flat());
  const fresh = (await freePorts(count + taken.size, host)).filter((p) => !taken.has(p)).slice(0, count);
  all[key] = fresh;
  await writeFileAtomically(file, `${JSON.stringify(all, null, 2)}\n`, 0o600);
  return fresh;
}

/** Moves a directory aside (never deletes it): DIR/moved-aside/<cluster>-<name>-<time>. Returns where it went. */
export async function moveAside(nodeDir: string, dir: string, label: string, why: string): Promise<string> {
  const target = join(nodeDir, 'moved-aside', `${label}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  await mkdir(join(nodeDir, 'moved-aside'), { recursive: true, mode: 0o755 });
  await rename(dir, target);
  // A note for the human who finds it; the move itself is what matters.
  await writeFile(join(target, 'MOVED-ASIDE.txt'), `${why}\n`);
  return target;
}

/**
 * The files of a workload that an earlier run of this daemon started and that still runs, read back
 * from its directory — for adopting it instead of restarting it. Undefined unless the directory's
 * marker names this very assignment (cluster, uid, kind, name, the ports it needs) and its config
 * file is there: anything else is not ours to adopt.
 */
export async function adoptableFiles(cfg: NodeConfig, a: Assignment): Promise<WorkloadFiles | undefined> {
  const dir = workloadDir(cfg.dir, a);
  const text = await readFile(join(dir, 'workload.json'), 'utf8').catch(() => undefined);
  const marker = text === undefined ? undefined : decodeJson(WORKLOAD_MARKER, text);
  if (marker?.ok !== true) return undefined;
  const m = marker.value;
  if (m.cluster !== a.cluster || m.clusterUid !== a.clusterUid || m.kind !== a.kind || m.name !== a.name) return undefined;
  if (m.ports.length !== (a.kind === 'router' ? 3 : 2)) return undefined;
  const files = filesAt(dir, a.kind, cfg.address, m.ports, []);
  if (!existsSync(files.configFile)) return undefined;
  // A marker written before it kept them: the files are taken to match the assignment.
  const backups = m.backups === undefined ? a.agent?.backups : (m.backups ?? undefined);
  return backups === undefined ? files : { ...files, backups };
}

/**
 * Where a workload's files are and where it is reached, from its ports (a router: rw, ro, admin —
 * clients reach rw; a member: PostgreSQL, REST API — the daemon reaches the API).
 */
function filesAt(dir: string, kind: WorkloadKind, host: string, ports: readonly number[], notes: readonly string[]): WorkloadFiles {
  const base = { dir, pidFile: join(dir, 'pid'), notes };
  if (kind === 'router') return { ...base, configFile: join(dir, 'router.yaml'), outFile: join(dir, 'router.out'), address: `${host}:${ports[0] ?? 0}` };
  return { ...base, configFile: join(dir, 'agent.yaml'), outFile: join(dir, 'agent.out'), address: `http://${host}:${ports[1] ?? 0}` };
}

/**
 * Makes sure the workload's directory and files exist for this assignment: a missing directory is
 * created (a member's agent then clones its data afresh), a directory of another cluster (another
 * uid: a cluster deleted and applied again under the same name) is moved aside first. Config files
 * are rewritten each time from the assignment and the node config, so they always match etcd.
 */
export async function prepareWorkload(cfg: NodeConfig, a: Assignment, secrets: ClusterSecrets | undefined, run: RunUser | undefined): Promise<WorkloadFiles> {
  const dir = workloadDir(cfg.dir, a);
  const notes: string[] = [];
  const markerFile = join(dir, 'workload.json');
  if (existsSync(dir)) {
    // No marker (or an unreadable one) is an answer too: files of unknown origin, moved aside below.
    const text = await readFile(markerFile, 'utf8').catch(() => undefined);
    const marker = text === undefined ? undefined : decodeJson(WORKLOAD_MARKER, text);
    if (marker?.ok === true && marker.value.clusterUid !== a.clusterUid) {
      const to = await moveAside(cfg.dir, dir, `${a.cluster}-${a.name}`, `held cluster ${marker.value.cluster} uid ${marker.value.clusterUid}; the assignment is for uid ${a.clusterUid}`);
      notes.push(`moved ${dir} aside to ${to}: it holds another cluster's data (uid ${marker.value.clusterUid})`);
    } else if (marker?.ok !== true && (await readdir(dir)).length > 0) {
      // Whose files these are cannot be told: keep them, out of the way.
      const to = await moveAside(cfg.dir, dir, `${a.cluster}-${a.name}`, `no readable workload.json${marker === undefined ? '' : ` (${marker.error})`}; the assignment is for uid ${a.clusterUid}`);
      notes.push(`moved ${dir} aside to ${to}: it holds files of unknown origin (no readable workload.json)`);
    }
  }
  if (!existsSync(dir)) {
    // Parents stay 0755 so that the PostgreSQL run user can traverse them.
    await mkdir(dir, { recursive: true, mode: 0o755 });
    notes.push(`created ${dir}`);
  }
  const key = workloadKey(a);
  const host = cfg.address;
  const etcdAuth = cfg.etcd.username !== undefined && cfg.etcd.passwordFile !== undefined ? { username: cfg.etcd.username, passwordFile: cfg.etcd.passwordFile } : undefined;
  // TLS towards etcd: the node's own files (paths, read by each workload when it starts).
  const etcdTls = { ...(cfg.etcd.cacert === undefined ? {} : { cacert: cfg.etcd.cacert }), ...(cfg.etcd.cert === undefined ? {} : { cert: cfg.etcd.cert }), ...(cfg.etcd.key === undefined ? {} : { key: cfg.etcd.key }) };
  const etcdFiles = { ...(etcdAuth ?? {}), ...etcdTls };
  if (a.kind === 'router') {
    const [rw, ro, admin] = await portsFor(cfg.dir, key, 3, host);
    if (rw === undefined || ro === undefined || admin === undefined) throw new WardenError('internal', 'no free ports for the router');
    const configFile = join(dir, 'router.yaml');
    await writeFile(markerFile, `${JSON.stringify({ cluster: a.cluster, clusterUid: a.clusterUid, kind: a.kind, name: a.name, ports: [rw, ro, admin] } satisfies WorkloadMarker)}\n`);
    await writeFile(
      configFile,
      stringifyRouterConfig({
        cluster: a.cluster,
        etcdEndpoints: cfg.etcd.endpoints,
        ...(Object.keys(etcdFiles).length === 0 ? {} : { etcdFiles }),
        listen: { rw: { host, port: rw }, ro: { host, port: ro }, admin: { host, port: admin } },
        holdTimeoutMs: ROUTER_DEFAULTS.holdTimeoutMs,
        maxHeld: ROUTER_DEFAULTS.maxHeld,
        roMaxLagBytes: ROUTER_DEFAULTS.roMaxLagBytes,
        roFallbackToLeader: ROUTER_DEFAULTS.roFallbackToLeader,
        connectTimeoutMs: ROUTER_DEFAULTS.connectTimeoutMs,
        log: { level: cfg.log.level, file: join(dir, 'router.log') },
      }),
      { mode: 0o644 },
    );
    return filesAt(dir, 'router', host, [rw, ro, admin], notes);
  }
  if (secrets === undefined) throw new WardenError('not-found', `no secrets for cluster ${a.cluster} in etcd (/warden/_secrets/${a.cluster}): \`warden apply\` creates them`);
  const agent = a.agent;
  if (agent === undefined) throw new WardenError('config-invalid', `assignment of ${a.name} has no agent settings`);
  const dynamic = parseDynamicConfigJson(JSON.stringify(agent.bootstrapDynamicConfig));
  if (typeof dynamic === 'string') throw new WardenError('config-invalid', `assignment of ${a.name}: bootstrapDynamicConfig: ${dynamic}`);
  const [pgPort, apiPort] = await portsFor(cfg.dir, key, 2, host);
  if (pgPort === undefined || apiPort === undefined) throw new WardenError('internal', 'no free ports for the member');
  await writeFile(markerFile, `${JSON.stringify({ cluster: a.cluster, clusterUid: a.clusterUid, kind: a.kind, name: a.name, ports: [pgPort, apiPort], backups: agent.backups ?? null } satisfies WorkloadMarker)}\n`);
  const secretsDir = join(dir, 'secrets');
  await mkdir(secretsDir, { recursive: true, mode: 0o700 });
  const pw = (name: string, value: string): Promise<string> => writeFile(join(secretsDir, name), `${value}\n`, { mode: 0o600 }).then(() => join(secretsDir, name));
  const superFile = await pw('superuser.password', secrets.superuser.password);
  const replFile = await pw('replication.password', secrets.replication.password);
  const restFile = await pw('restapi.password', secrets.restApi.password);
  const runDir = memberSocketDir(cfg.dir, dir, pgPort);
  if (!existsSync(runDir)) {
    // Its parent (DIR/sockets for a deep workload path) stays traversable for the run user.
    await mkdir(dirname(runDir), { recursive: true, mode: 0o755 });
    await mkdir(runDir, { mode: 0o700 });
  }
  if (run !== undefined) {
    await chown(dir, run.uid, run.gid);
    await chown(runDir, run.uid, run.gid);
  }
  const archive = agent.backups === undefined ? undefined : await prepareArchive(cfg, a, agent.backups, { dir, dataDir: join(dir, 'data'), pgPort, runDir }, run);
  // spec.dataSource: any member may win the bootstrap race, so each has the files to restore from.
  const ds = agent.dataSource;
  const dataSourceFile =
    ds === undefined ? undefined : await writeDataSourceFiles(join(dir, 'bootstrap'), { ...ds, repoName: ds.repo }, ds.sourceSuperuserPassword === undefined ? undefined : await pw('source-superuser.password', ds.sourceSuperuserPassword), run);
  const configFile = join(dir, 'agent.yaml');
  await writeFile(
    configFile,
    stringifyAgentConfig({
      name: a.name,
      cluster: a.cluster,
      'etcd.endpoints': [...cfg.etcd.endpoints],
      ...(etcdAuth === undefined ? {} : { 'etcd.username': etcdAuth.username, 'etcd.password_file': etcdAuth.passwordFile }),
      ...(etcdTls.cacert === undefined ? {} : { 'etcd.cacert': etcdTls.cacert }),
      ...(etcdTls.cert === undefined ? {} : { 'etcd.cert': etcdTls.cert }),
      ...(etcdTls.key === undefined ? {} : { 'etcd.key': etcdTls.key }),
      'restapi.listen': { host, port: apiPort },
      ...(cfg.restApi === undefined
        ? {}
        : {
            'restapi.certfile': cfg.restApi.certfile,
            'restapi.keyfile': cfg.restApi.keyfile,
            ...(cfg.restApi.cafile === undefined ? {} : { 'restapi.cafile': cfg.restApi.cafile }),
            'restapi.verify_client': cfg.restApi.verifyClient,
          }),
      'restapi.authentication.username': secrets.restApi.username,
      'restapi.authentication.password_file': restFile,
      'postgresql.listen': { host, port: pgPort },
      'postgresql.data_dir': join(dir, 'data'),
      'postgresql.bin_dir': cfg.pgBinDir,
      'postgresql.socket_dir': runDir,
      ...(run === undefined ? {} : { 'postgresql.run_as_user': 'postgres' }),
      'postgresql.authentication.superuser.username': secrets.superuser.username,
      'postgresql.authentication.superuser.password_file': superFile,
      'postgresql.authentication.replication.username': secrets.replication.username,
      'postgresql.authentication.replication.password_file': replFile,
      ...(archive === undefined ? {} : { 'postgresql.archive.pgbackrest_config': archive.configFile, 'postgresql.archive.stanza': archive.stanza, 'postgresql.archive.create_stanza': true }),
      'bootstrap.dcs': dynamic,
      ...(dataSourceFile === undefined ? {} : { 'bootstrap.method': 'pgbackrest' as const, 'bootstrap.pgbackrest.data_source': dataSourceFile }),
      'log.level': cfg.log.level,
      'log.file': join(dir, 'agent.log'),
    }),
    { mode: 0o600 },
  );
  const files = filesAt(dir, 'member', host, [pgPort, apiPort], notes);
  return agent.backups === undefined ? files : { ...files, backups: agent.backups };
}

/** The longest Unix socket path the OS takes (sun_path, 108 bytes with its NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/**
 * A member's Unix socket directory: `run` in its workload directory, unless the socket path there
 * would be longer than the OS allows (a deep node dir) — then DIR/sockets/<12 hex of the member's
 * directory>, which node.yaml's `dir` is checked to leave room for (src/spec/node-config.ts).
 * Pure: the backup commands compute the same path for a member they reach on its socket.
 */
export function memberSocketDir(nodeDir: string, memberDir: string, pgPort: number): string {
  const beside = join(memberDir, 'run');
  if (Buffer.byteLength(join(beside, `.s.PGSQL.${pgPort}`)) <= MAX_SOCKET_PATH_BYTES) return beside;
  return join(nodeDir, 'sockets', createHash('sha256').update(memberDir).digest('hex').slice(0, 12));
}

function cloudRepo(name: string, cloud: CloudStorage | undefined): { name: string; cloud?: CloudStorage } {
  return cloud === undefined ? { name } : { name, cloud };
}

/** Where a cluster's posix repository lives on a node: `<backups.repo_path>/<cluster>/<repoN>`. */
export function repoPathOf(repoRoot: string, cluster: string, repo: string): string {
  return join(repoRoot, cluster, repo);
}

/**
 * A member's pgBackRest files for continuous archiving (spec.backups): its pgbackrest.conf (pg1 = its
 * server, asynchronous archive-push) and its own lock, log and spool dirs in the workload's
 * directory (pgBackRest's defaults would be shared by every member of the node), and the
 * cluster's repositories under the node's backups.repo_path. A node without that setting cannot
 * run the member: archiving off would leave its WAL beyond recovery without anyone being told.
 */
async function prepareArchive(
  cfg: NodeConfig,
  a: Assignment,
  backups: AssignmentBackups,
  m: { dir: string; dataDir: string; pgPort: number; runDir: string },
  run: RunUser | undefined,
): Promise<{ configFile: string; stanza: string }> {
  const root = cfg.backups?.repoPath;
  const cloudOf = (name: string): CloudStorage | undefined => backups.cloud?.find((c) => c.repo === name)?.storage;
  const posix = backups.repos.filter((name) => cloudOf(name) === undefined);
  if (root === undefined && posix.length > 0) {
    throw new WardenError('config-invalid', `cluster ${a.cluster} has spec.backups, and node ${cfg.name} has no backups.repo_path in its node config: set it to the directory of the backup repositories (the same shared path on every node)`);
  }
  const base = join(m.dir, 'pgbackrest');
  const paths = { lockPath: join(base, 'lock'), logPath: join(base, 'log'), spoolPath: join(base, 'spool') };
  const repos = backups.repos.map((name) => repoConf(backups.stanza, cloudRepo(name, cloudOf(name)), root === undefined ? '' : repoPathOf(root, a.cluster, name)));
  // The repository dirs are pgBackRest's (it runs as the PostgreSQL run user); their parents stay traversable.
  if (root !== undefined && posix.length > 0) await mkdir(join(root, a.cluster), { recursive: true, mode: 0o755 });
  for (const d of [base, paths.lockPath, paths.logPath, paths.spoolPath, ...repos.filter((r) => r.cloud === undefined).map((r) => r.path)]) {
    await mkdir(d, { recursive: true, mode: 0o750 });
    if (run !== undefined) await chown(d, run.uid, run.gid);
  }
  const { text } = renderPgBackRestConf({
    stanza: backups.stanza,
    repos,
    globalOptions: backups.global,
    ...paths,
    member: { spoolPath: paths.spoolPath, server: { dataDir: m.dataDir, port: m.pgPort, socketDir: m.runDir } },
  });
  const configFile = join(m.dir, 'pgbackrest.conf');
  await writeFile(configFile, text, { mode: 0o640 });
  if (run !== undefined) await chown(configFile, run.uid, run.gid);
  return { configFile, stanza: backups.stanza };
}
