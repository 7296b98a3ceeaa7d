import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { WardenError } from '../core/errors.js';
import { freePorts, isPortInUse } from '../core/free-port.js';
import { isProcessAlive, processCommandLine } from '../core/process-info.js';
import type { EtcdClusterSpec } from '../dcs/etcd-server.js';
import type { ClusterSpec } from '../spec/index.js';
import { stringifyAgentConfig } from '../spec/agent-config.js';
import { ensureMemberFiles, layoutPath, readLayout, supervisorPidPath, writeLayout, type RunUser, type RuntimeEtcdAuth, type RuntimeLayout, type RuntimeMember } from './runtime-layout.js';
import { ensureRouter, prepareRouter, ROUTER_PORT_COUNT } from './router-runtime.js';
import { checkPgBackRestInstalled, memberPgBackRest, prepareBackup, prepareDataSource, type DataSourcePlan } from './backup-runtime.js';
import { wardenArgv } from './warden-child.js';

export const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';
const HOST = '127.0.0.1';
/** The REST API user `warden up` configures; its password is DIR/secrets/restapi.password. */
export const REST_USER = 'warden';
/** The etcd user agents, routers and the CLI of a local runtime use; its role reaches /warden/ only. */
export const ETCD_USER = 'warden';

/** The PID of the runtime dir's supervisor when it is alive, else undefined. */
export async function runningSupervisor(dir: string): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number((await readFile(supervisorPidPath(dir), 'utf8')).trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !(await isProcessAlive(pid))) return undefined;
  // A recycled PID must not be mistaken for ours: check that it is a warden supervisor.
  const argv = await processCommandLine(pid);
  return argv?.includes('supervise') ? pid : undefined;
}

/** Checks what the local runtime needs before anything is written: binaries and the run user. */
export function preflight(): { runAsUser: string | undefined; uid: number | undefined; gid: number | undefined } {
  const missing: string[] = [];
  if (!existsSync(join(PG_BIN_DIR, 'postgres'))) missing.push('postgresql-15');
  if (spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status !== 0) missing.push('etcd-server');
  if (missing.length > 0) {
    throw new WardenError('not-found', `missing: ${missing.join(', ')} — install with: sudo apt-get install -y ${missing.join(' ')}`);
  }
  if (process.getuid?.() !== 0) return { runAsUser: undefined, uid: undefined, gid: undefined };
  const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (id.status !== 0) throw new WardenError('not-found', 'running as root needs the `postgres` OS user (PostgreSQL refuses to run as root); install postgresql-15, which creates it');
  return { runAsUser: 'postgres', uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Writes the runtime dir for `spec` the first time (ports, secrets, agent configs, runtime.json), or
 * returns the existing layout when the dir was set up before (its ports and data are reused).
 */
export async function prepareRuntimeDir(dirArg: string, spec: ClusterSpec, specGiven: boolean, dataSource?: DataSourcePlan): Promise<RuntimeLayout> {
  const dir = resolve(dirArg);
  const run = preflight();
  const existing = await readLayout(dir);
  if (existing !== undefined) {
    if (specGiven && existing.cluster !== spec.name) {
      throw new WardenError('conflict', `${dir} holds cluster "${existing.cluster}", but the spec names "${spec.name}": use another --dir, or \`warden down --purge\` first`);
    }
    const lostEtcd = existing.etcd.members.filter((m) => !existsSync(m.dataDir));
    if (lostEtcd.length === existing.etcd.members.length && existing.members.some((m) => existsSync(join(m.dataDir, 'PG_VERSION')))) {
      throw new WardenError(
        'conflict',
        `etcd's state (${lostEtcd[0]?.dataDir ?? 'in memory'}) is gone — a reboot clears /dev/shm — while PostgreSQL data remains in ${dir}; Warden will not guess which member was the primary: copy the data you need, then \`warden down --dir ${dir} --purge\` and \`warden up\` again`,
      );
    }
    for (const m of existing.members) {
      for (const [what, port] of [['PostgreSQL', m.pgPort], ['REST API', m.apiPort]] as const) {
        if (await isPortInUse(port, m.host)) throw new WardenError('port-in-use', `port ${m.host}:${port} (${what} of ${m.name}) is in use by another process`);
      }
    }
    await checkEtcdPortsFree(existing.etcd);
    // A member directory deleted while the runtime was down is recreated from the runtime's record.
    for (const m of existing.members) await ensureMemberFiles(m, runUserOf(run));
    return ensureRouter(dir, existing);
  }
  if (spec.backups !== undefined) checkPgBackRestInstalled();
  await mkdir(dir, { recursive: true });
  const { superFile, replFile, restFile, etcdAuth, pgpassFile } = await writeRuntimeSecrets(dir);
  const take = await portTaker(spec.etcdMembers * 2 + spec.members.length * 2 + ROUTER_PORT_COUNT);
  const etcd = await prepareLocalEtcd(dir, spec, take);

  const backups = spec.backups;
  const backup = backups === undefined ? undefined : await prepareBackup(dir, spec.name, backups, runUserOf(run));
  // spec.dataSource: every member may win the bootstrap race, so every member's config says how.
  const bootstrapFrom = dataSource === undefined ? undefined : await prepareDataSource(dir, dataSource, runUserOf(run));
  const members: RuntimeMember[] = [];
  for (const sm of spec.members) {
    const memberDir = join(dir, 'members', sm.name);
    const base = {
      name: sm.name,
      host: HOST,
      pgPort: take(),
      apiPort: take(),
      memberDir,
      dataDir: join(memberDir, 'data'),
      configFile: join(memberDir, 'agent.yaml'),
      logFile: join(memberDir, 'agent.log'),
    };
    const pgbackrest = backup === undefined || backups === undefined ? undefined : memberPgBackRest(backup, backups, base);
    const m: RuntimeMember = { ...base, ...(pgbackrest === undefined ? {} : { pgbackrest }), agentConfig: stringifyAgentConfig({
      name: base.name,
      cluster: spec.name,
      'etcd.endpoints': etcd.members.map((e) => e.clientUrl),
      'etcd.username': etcdAuth.username,
      'etcd.password_file': etcdAuth.passwordFile,
      'restapi.listen': { host: HOST, port: base.apiPort },
      // Mutating REST calls (switchover, restart, config) need the generated password (CLI: --dir reads it).
      'restapi.authentication.username': REST_USER,
      'restapi.authentication.password_file': restFile,
      'postgresql.listen': { host: HOST, port: base.pgPort },
      'postgresql.data_dir': base.dataDir,
      'postgresql.bin_dir': PG_BIN_DIR,
      'postgresql.socket_dir': join(memberDir, 'run'),
      ...(run.runAsUser === undefined ? {} : { 'postgresql.run_as_user': run.runAsUser }),
      'postgresql.authentication.superuser.username': 'postgres',
      'postgresql.authentication.superuser.password_file': superFile,
      'postgresql.authentication.replication.username': 'replicator',
      'postgresql.authentication.replication.password_file': replFile,
      // Continuous archiving from the first minute: every member is bootstrapped with it.
      ...(pgbackrest === undefined ? {} : { 'postgresql.archive.pgbackrest_config': pgbackrest.configFile, 'postgresql.archive.stanza': spec.name }),
      'bootstrap.dcs': spec.dynamicConfig,
      ...(bootstrapFrom === undefined ? {} : { 'bootstrap.method': 'pgbackrest' as const, 'bootstrap.pgbackrest.data_source': bootstrapFrom }),
      'log.level': 'info',
      'log.file': base.logFile,
    }) };
    await ensureMemberFiles(m, runUserOf(run));
    members.push(m);
  }
  if (run.runAsUser !== undefined) checkReachableByRunUser(run.runAsUser, members[0]?.memberDir ?? dir);
  const router = await prepareRouter(dir, { cluster: spec.name, etcd, etcdAuth }, HOST, [take(), take(), take()]);
  const layout: RuntimeLayout = {
    cluster: spec.name,
    etcd,
    members,
    router,
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

/** The secret files of a runtime dir (each 0600 under DIR/secrets, 0700). */
export interface RuntimeSecretFiles {
  readonly superFile: string;
  readonly replFile: string;
  readonly restFile: string;
  readonly etcdAuth: RuntimeEtcdAuth;
  readonly pgpassFile: string;
}

/**
 * Generates the passwords of a new runtime dir, the same for `warden up` and `warden up --nodes`:
 * superuser, replication, REST API, etcd's user and root (etcd runs with authentication — the
 * supervisor turns it on once etcd first answers — so a local user who can reach etcd's port
 * cannot rewrite the cluster's keys behind the REST API's back), and DIR/pgpass for the CLI.
 */
export async function writeRuntimeSecrets(dir: string): Promise<RuntimeSecretFiles> {
  await mkdir(join(dir, 'secrets'), { recursive: true, mode: 0o700 });
  const secret = (): string => randomBytes(18).toString('base64url');
  const file = (name: string): string => join(dir, 'secrets', name);
  const superPw = secret();
  const files = { superFile: file('superuser.password'), replFile: file('replication.password'), restFile: file('restapi.password') };
  const etcdAuth: RuntimeEtcdAuth = { username: ETCD_USER, passwordFile: file('etcd.password'), rootPasswordFile: file('etcd-root.password') };
  for (const [path, value] of [[files.superFile, superPw], [files.replFile, secret()], [files.restFile, secret()], [etcdAuth.passwordFile, secret()], [etcdAuth.rootPasswordFile, secret()]] as const) {
    await writeFile(path, `${value}\n`, { mode: 0o600 });
  }
  const pgpassFile = join(dir, 'pgpass');
  await writeFile(pgpassFile, `${HOST}:*:*:postgres:${superPw}\nlocalhost:*:*:postgres:${superPw}\n`, { mode: 0o600 });
  return { ...files, etcdAuth, pgpassFile };
}

/**
 * The local etcd members of a new runtime dir, on ports from `take`, their log dirs created. Their
 * data lives in memory (/dev/shm) on one machine: PostgreSQL's own writes on the same disk stalled
 * etcd's fsync for over 2 s under pgbench, longer than the 2 s lease, and every agent lost its
 * lease at once. A reboot loses this state (warden up then says so); the logs stay in DIR/etcd.
 */
export async function prepareLocalEtcd(dir: string, spec: Pick<ClusterSpec, 'name' | 'etcdMembers'>, take: () => number, host: string = HOST): Promise<EtcdClusterSpec> {
  const etcdDataRoot = existsSync('/dev/shm') ? join('/dev/shm', `warden-etcd-${spec.name}-${randomBytes(4).toString('hex')}`) : join(dir, 'etcd', 'data');
  const etcd: EtcdClusterSpec = {
    token: `warden-${spec.name}-${randomBytes(4).toString('hex')}`,
    members: Array.from({ length: spec.etcdMembers }, (_, i) => {
      const name = `etcd${i + 1}`;
      return { name, clientUrl: `http://${host}:${take()}`, peerUrl: `http://${host}:${take()}`, dataDir: join(etcdDataRoot, name), logFile: join(dir, 'etcd', name, 'etcd.log') };
    }),
  };
  for (const m of etcd.members) {
    await mkdir(join(m.logFile, '..'), { recursive: true });
    await mkdir(join(m.dataDir, '..'), { recursive: true, mode: 0o700 });
  }
  return etcd;
}

/** `count` free loopback ports, handed out one by one. */
export async function portTaker(count: number): Promise<() => number> {
  const ports = await freePorts(count);
  return () => {
    const p = ports.shift();
    if (p === undefined) throw new WardenError('internal', 'ran out of free ports');
    return p;
  };
}

/** An existing runtime dir starts again only when no other process holds its etcd ports. */
export async function checkEtcdPortsFree(etcd: EtcdClusterSpec): Promise<void> {
  for (const m of etcd.members) {
    for (const url of [m.clientUrl, m.peerUrl]) {
      const u = new URL(url);
      if (await isPortInUse(Number(u.port), u.hostname)) throw new WardenError('port-in-use', `port ${u.host} (etcd ${m.name}) is in use by another process`);
    }
  }
}

/** The run user's ids, when `warden up` runs as root. */
export function runUserOf(run: { uid: number | undefined; gid: number | undefined }): RunUser | undefined {
  return run.uid === undefined || run.gid === undefined ? undefined : { uid: run.uid, gid: run.gid };
}

/** PostgreSQL runs as another user: every parent of its directories must be traversable by it. */
function checkReachableByRunUser(user: string, path: string): void {
  const r = spawnSync('setpriv', [`--reuid=${user}`, `--regid=${user}`, '--init-groups', 'test', '-w', path], { stdio: 'ignore' });
  if (r.status !== 0) {
    throw new WardenError('config-invalid', `the ${user} OS user cannot write to ${path}: a parent directory is not traversable by it; choose a --dir under a world-traversable path (e.g. /var/tmp/warden)`);
  }
}

/** Starts the detached supervisor for a prepared dir; returns its PID. */
export function startSupervisor(dir: string): number {
  const { command, args } = wardenArgv(['supervise', '--dir', dir]);
  const out = openSync(join(dir, 'supervisor.out'), 'a');
  try {
    const child = spawn(command, args, { detached: true, stdio: ['ignore', out, out], env: process.env });
    child.unref();
    if (child.pid === undefined) throw new WardenError('internal', 'could not start the supervisor');
    return child.pid;
  } finally {
    closeSync(out);
  }
}

export { layoutPath };
