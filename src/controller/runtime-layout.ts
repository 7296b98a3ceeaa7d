import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeJson, list, num, obj, oneOf, optional, port, str, type Decoder } from '../core/decode.js';
import { WardenError } from '../core/errors.js';
import { CLOUD_STORAGE, type RepoConf } from '../backup/index.js';
import { writeFileAtomically } from './state-file.js';
import type { EtcdClusterSpec } from '../dcs/etcd-server.js';
import type { NetnsPlan } from '../core/netns.js';

/** One member of a local runtime: its ports and files, fixed at the first `up` and reused after. */
export interface RuntimeMember {
  readonly name: string;
  readonly host: string;
  readonly pgPort: number;
  readonly apiPort: number;
  /** DIR/members/<name>: owned by the PostgreSQL run user. */
  readonly memberDir: string;
  readonly dataDir: string;
  readonly configFile: string;
  readonly logFile: string;
  /**
   * The agent config as first written (YAML): the runtime's own record, from which a deleted
   * member directory is recreated. Absent in dirs made before it was recorded.
   */
  readonly agentConfig?: string;
  /** This member's pgBackRest files when the runtime archives (absent otherwise, and in older dirs). */
  readonly pgbackrest?: RuntimeMemberPgBackRest;
  /** Its Unix socket directory when not `run` in memberDir (a node daemon's member with a deep dir). */
  readonly socketDir?: string;
}

/** A member's own pgBackRest config (archive-push/get) and its lock, log and spool dirs. */
export interface RuntimeMemberPgBackRest {
  readonly configFile: string;
  /** The text of configFile as first written: a deleted member directory gets it back. */
  readonly configText: string;
  readonly lockPath: string;
  readonly logPath: string;
  readonly spoolPath: string;
}

/** The runtime's backup repository (spec.backups.pgbackrest): DIR/backup. */
export interface RuntimeBackup {
  readonly engine: 'pgbackrest';
  /** The pgBackRest stanza: the cluster's name. */
  readonly stanza: string;
  /** DIR/backup: the repositories, and the lock and log dirs of backup, expire, info and restore. */
  readonly dir: string;
  /** The repository-level pgbackrest.conf (no servers: each command names them). */
  readonly configFile: string;
  readonly lockPath: string;
  readonly logPath: string;
  /** Each repository: posix (its dir) or cloud (its storage, `path` the prefix in the bucket). */
  readonly repos: readonly RepoConf[];
  /** spec.backups.pgbackrest.repos[].schedules, as `warden up` publishes them in `backup/schedules` (absent: none). */
  readonly schedules?: readonly { readonly repo: string; readonly type: 'full' | 'diff' | 'incr'; readonly cron: string }[];
}

/** The local runtime's router: its ports, fixed at the first `up` and reused after. */
export interface RuntimeRouter {
  readonly host: string;
  readonly rwPort: number;
  readonly roPort: number;
  readonly adminPort: number;
  /** DIR/router: router.yaml and router.log. */
  readonly dir: string;
  readonly configFile: string;
  readonly logFile: string;
}

/** etcd credentials of a local runtime (paths of 0600 files in DIR/secrets). */
export interface RuntimeEtcdAuth {
  readonly username: string;
  readonly passwordFile: string;
  readonly rootPasswordFile: string;
}

/** One node daemon of a `warden up --nodes` runtime: DIR/nodes/<name>/ and its node.yaml. */
export interface RuntimeNode {
  readonly name: string;
  /** The node daemon's dir (its workloads, ports.json, moved-aside/). */
  readonly dir: string;
  /** DIR/nodes/<name>.yaml, the daemon's --config. */
  readonly configFile: string;
  readonly logFile: string;
  /** The daemon's stdout and stderr. */
  readonly outFile: string;
  /** `--netns`: the network namespace the daemon runs in (its address is in its node.yaml). */
  readonly netns?: string;
}

/** DIR/runtime.json: everything the supervisor needs to (re)start the same cluster. */
export interface RuntimeLayout {
  readonly cluster: string;
  readonly etcd: EtcdClusterSpec;
  readonly members: readonly RuntimeMember[];
  /**
   * `warden up --nodes`: the supervisor runs these node daemons instead of agents, and the
   * controller places the members (`members` is then empty, and there is no `router`).
   */
  readonly nodes?: readonly RuntimeNode[];
  /** `warden up --nodes --netns`: the network the node daemons run in (src/core/netns.ts); `down` removes it. */
  readonly netns?: NetnsPlan;
  /** Absent in dirs made before routers existed; `up` adds it. */
  readonly router?: RuntimeRouter;
  readonly restartDelaySeconds: number;
  /**
   * etcd authentication, turned on by the supervisor once etcd first answers: agents, the router and
   * the CLI authenticate as `username`; `rootPasswordFile` holds the password of etcd's root user.
   * Absent in dirs made before etcd had authentication (they run without).
   */
  readonly etcdAuth?: RuntimeEtcdAuth;
  /** Continuous archiving and backups; absent when the spec has no spec.backups.pgbackrest. */
  readonly backup?: RuntimeBackup;
  readonly superuser: string;
  readonly pgpassFile: string;
  readonly createdAt: string;
}

/** Path of the layout file in a runtime dir. */
export function layoutPath(dir: string): string {
  return join(dir, 'runtime.json');
}

/** Reads DIR/runtime.json; undefined when the dir was never set up. */
export async function readLayout(dir: string): Promise<RuntimeLayout | undefined> {
  let text: string;
  try {
    text = await readFile(layoutPath(dir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new WardenError('config-invalid', `cannot read ${layoutPath(dir)}`, { cause: e });
  }
  const decoded = decodeJson(RUNTIME_LAYOUT, text);
  if (!decoded.ok) throw new WardenError('config-invalid', `${layoutPath(dir)}: ${decoded.error}`);
  return decoded.value;
}

const RUNTIME_LAYOUT: Decoder<RuntimeLayout> = obj({
  cluster: str,
  etcd: obj({
    token: str,
    members: list(obj({ name: str, clientUrl: str, peerUrl: str, dataDir: str, logFile: str })),
    heartbeatMs: optional(num({ min: 1 })),
    electionMs: optional(num({ min: 1 })),
  }),
  members: list(
    obj({
      name: str,
      host: str,
      pgPort: port,
      apiPort: port,
      memberDir: str,
      dataDir: str,
      configFile: str,
      logFile: str,
      agentConfig: optional(str),
      pgbackrest: optional(obj({ configFile: str, configText: str, lockPath: str, logPath: str, spoolPath: str })),
    }),
  ),
  nodes: optional(list(obj({ name: str, dir: str, configFile: str, logFile: str, outFile: str, netns: optional(str) }))),
  netns: optional(obj({ subnet: str, testerIp: str, bridgeNs: str, hostVeth: str, hosts: list(obj({ name: str, ns: str, ip: str })) })),
  router: optional(obj({ host: str, rwPort: port, roPort: port, adminPort: port, dir: str, configFile: str, logFile: str })),
  restartDelaySeconds: num({ min: 0 }),
  etcdAuth: optional(obj({ username: str, passwordFile: str, rootPasswordFile: str })),
  backup: optional(obj({ engine: oneOf('pgbackrest'), stanza: str, dir: str, configFile: str, lockPath: str, logPath: str, repos: list(obj({ name: str, path: str, cloud: optional(CLOUD_STORAGE) })), schedules: optional(list(obj({ repo: str, type: oneOf('full', 'diff', 'incr'), cron: str }))) })),
  superuser: str,
  pgpassFile: str,
  createdAt: str,
});

/** Writes DIR/runtime.json atomically. */
export async function writeLayout(dir: string, layout: RuntimeLayout): Promise<void> {
  await writeFileAtomically(layoutPath(dir), `${JSON.stringify(layout, null, 2)}\n`, 0o600);
}

/** The OS user PostgreSQL runs as (root cannot run it), with its ids; undefined when not root. */
export interface RunUser {
  readonly uid: number;
  readonly gid: number;
}

/** The `postgres` OS user's ids when this process runs as root (PostgreSQL then runs as it), else undefined. */
export function lookupRunUser(): RunUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Makes sure a member's directory, its socket dir and its agent config exist, recreating what
 * vanished from the runtime's own record (a deleted member directory must not stop its agent from
 * ever starting again). The data directory is the agent's business: it clones a missing one.
 * Returns what it recreated, for the log.
 */
export async function ensureMemberFiles(m: RuntimeMember, run: RunUser | undefined): Promise<string[]> {
  const made: string[] = [];
  if (!existsSync(m.memberDir)) {
    // Parents stay 0755 so that the run user can traverse them; its own dirs are 0700.
    await mkdir(m.memberDir, { recursive: true, mode: 0o755 });
    made.push(m.memberDir);
  }
  const runDir = join(m.memberDir, 'run');
  if (!existsSync(runDir)) {
    await mkdir(runDir, { mode: 0o700 });
    made.push(runDir);
  }
  if (run !== undefined) {
    await chown(m.memberDir, run.uid, run.gid);
    await chown(runDir, run.uid, run.gid);
  }
  const b = m.pgbackrest;
  if (b !== undefined) {
    for (const d of [join(m.memberDir, 'pgbackrest'), b.lockPath, b.logPath, b.spoolPath]) {
      if (existsSync(d)) continue;
      await mkdir(d, { recursive: true, mode: 0o750 });
      if (run !== undefined) await chown(d, run.uid, run.gid);
      made.push(d);
    }
    if (!existsSync(b.configFile)) {
      await writeFile(b.configFile, b.configText, { mode: 0o640 });
      if (run !== undefined) await chown(b.configFile, run.uid, run.gid);
      made.push(b.configFile);
    }
  }
  if (!existsSync(m.configFile)) {
    if (m.agentConfig === undefined) throw new WardenError('not-found', `${m.configFile} is missing and this runtime dir keeps no copy of it (made by an older warden): \`warden down --purge\` and \`warden up\` again`);
    await writeFile(m.configFile, m.agentConfig, { mode: 0o600 });
    made.push(m.configFile);
  }
  return made;
}

/** Path of the supervisor's PID file. */
export function supervisorPidPath(dir: string): string {
  return join(dir, 'supervisor.pid');
}
