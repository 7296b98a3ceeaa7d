// `warden backup`, `warden backups` and `warden restore-drill` for the local runtime, where the
// repository is local (pgBackRest 2.45 runs backup and expire where the repository is).
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { chown, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import pg from 'pg';
import {
  ARCHIVER_QUERY,
  archiverStatusOfRow,
  BACKUP_TYPES,
  chooseBackupSource,
  PgBackRestRepository,
  recoveryPointOf,
  type BackupSet,
  type BackupType,
  type LastBackup,
  type PgServer,
  type RecoveryPoint,
  type RepositoryInfo,
  type SchedulesRecord,
  type RestoreTarget,
  type RestoreTargetOptions,
  parseRestoreTarget,
  targetTimeMs,
  unreachableTarget,
  type SlotRecord,
  decodeSlotRecord,
  describeRepo,
  OTHER_STATUS,
} from '../backup/index.js';
import { decode, decodeJson, list, num, obj, oneOf, port, str } from '../core/decode.js';
import { describeError, WardenError } from '../core/errors.js';
import { dnsLabelProblem } from '../spec/dns-label.js';
import { eventually } from '../core/deadline.js';
import { freePort } from '../core/free-port.js';
import { isProcessAlive } from '../core/process-info.js';
import { lagBytes, parseLsn } from '../core/lsn.js';
import { PG_BIN_DIR } from '../controller/local-up.js';
import { lookupRunUser, readLayout, type RunUser, type RuntimeBackup, type RuntimeLayout, type RuntimeMember } from '../controller/runtime-layout.js';
import { wardenArgv } from '../controller/warden-child.js';
import { memberSocketDir, workloadDir } from '../node/workload-files.js';
import { prepareBackup } from '../controller/backup-runtime.js';
import { CONTROL_PREFIX, parseControlSnapshot, specKey, STORED_SPEC, type NodeRecord, type StoredSpec } from '../controller/records.js';
import { formatSpecError, parseClusterSpec } from '../spec/index.js';
import { clusterPrefix, KEYS, slotNameFor, type ClusterView, type HistoryEntry } from '../ha/index.js';
import { LocalPostgres } from '../postgres/postgres-instance.js';
import { describeTarget, PGBACKREST_AUTO_CONF_KEYS, recoverToTarget } from './recover-to-target.js';
import { etcdClientFor, readClusterView, resolveTarget, type Target } from './target.js';

/** A full backup of a large database takes long; the default leaves room, --timeout-seconds changes it. */
const DEFAULT_BACKUP_TIMEOUT_S = 6 * 3600;
/** The `backup/running` key's lease: long enough to ride out a slow etcd, short enough that a crashed runner frees it soon. */
const BACKUP_LEASE_MS = 15_000;
const INFO_TIMEOUT_MS = 60_000;
/** pgBackRest's io-timeout for the info read of `warden backups` (seconds; its default is 60). */
const BACKUPS_IO_TIMEOUT_SECONDS = 5;
const PG_QUERY_TIMEOUT_MS = 5_000;
/** pgBackRest info's status code of a stanza the repository does not hold (yet). */
const MISSING_STANZA = 1;

/** The local runtime's backup setup: its layout, repository and a client for it. */
interface BackupRuntime {
  readonly dir: string;
  readonly target: Target;
  readonly layout: RuntimeLayout;
  readonly backup: RuntimeBackup;
  readonly repo: PgBackRestRepository;
  /** `--nodes`: the members are placed by the controller and run by node daemons. */
  readonly onNodes: boolean;
}

/**
 * Opens DIR's backup setup; a runtime without spec.backups.pgbackrest is told so. `cluster`: one of
 * the clusters a `--nodes` runtime runs (default its first, the runtime's own).
 */
export async function openBackupRuntime(dirArg: string, cluster?: string): Promise<BackupRuntime> {
  const dir = resolve(dirArg);
  const layout = await readLayout(dir);
  if (layout === undefined) throw new WardenError('not-found', `no local runtime in ${dir} (no runtime.json): run \`warden up --dir ${dir}\``);
  const name = cluster ?? layout.cluster;
  if (name !== layout.cluster && layout.nodes === undefined) {
    throw new WardenError('not-found', `--cluster ${name}: ${dir} runs cluster "${layout.cluster}" only (a static runtime); a --nodes runtime holds several`);
  }
  const target = await resolveTarget({ dir, cluster: name });
  const run = lookupRunUser();
  // On node daemons every cluster's backups follow its stored spec (they can be changed by `warden
  // apply`); a static runtime keeps what it was made with.
  const backup = layout.nodes === undefined ? layout.backup : await appliedClusterBackup(dir, target, run);
  if (backup === undefined) {
    throw new WardenError(
      'config-invalid',
      layout.nodes === undefined
        ? `cluster "${name}" in ${dir} was started without backups: set spec.backups.pgbackrest.repos (e.g. [{ name: repo1, volume: {} }]) in a new runtime dir`
        : `cluster "${name}" in ${dir} has no spec.backups: add spec.backups.pgbackrest.repos (e.g. [{ name: repo1, volume: {} }]) to its spec and \`warden apply -f FILE --dir ${dir}\``,
    );
  }
  const repo = new PgBackRestRepository({ stanza: backup.stanza, configFile: backup.configFile, ...(run === undefined ? {} : { identity: run }) });
  // `--nodes`: the controller placed the members; the node records say where each one's files are.
  const members = layout.nodes === undefined ? layout.members : await membersOnNodes(target);
  return { dir, target, layout: { ...layout, cluster: name, members }, backup, repo, onNodes: layout.nodes !== undefined };
}

/**
 * The repository setup of a cluster on a `--nodes` runtime (the runtime's own, or one applied later
 * with `warden apply --dir`): from its stored spec, in DIR/backup/<cluster> where the node daemons put its repositories
 * (written again each time: idempotent). Undefined when the spec has no backups.
 */
async function appliedClusterBackup(dir: string, t: Target, run: RunUser | undefined): Promise<RuntimeBackup | undefined> {
  const client = etcdClientFor(t, 5000);
  let stored: StoredSpec;
  try {
    const kv = await client.get(specKey(t.cluster), { timeoutMs: 5000 });
    if (kv === undefined) throw new WardenError('not-found', `no cluster "${t.cluster}" is stored in ${dir}'s etcd (\`warden get clusters --dir ${dir}\`)`);
    const decoded = decodeJson(STORED_SPEC, kv.value);
    if (!decoded.ok) throw new WardenError('config-invalid', `invalid record ${specKey(t.cluster)}: ${decoded.error}`);
    stored = decoded.value;
  } finally {
    client.close();
  }
  const parsed = parseClusterSpec(stored.text, stored.file);
  if (!parsed.ok) throw new WardenError('config-invalid', `the stored spec of ${t.cluster} no longer parses: ${parsed.errors.map(formatSpecError).join('; ')}`);
  const b = parsed.spec.backups;
  return b === undefined ? undefined : await prepareBackup(dir, t.cluster, b, run, join(dir, 'backup', t.cluster));
}

/**
 * The members of a cluster on a `--nodes` runtime as the backup commands reach them: each member
 * workload a node daemon publishes, in its node's directory (<node dir>/workloads/<cluster>/members/
 * <name>: its data, socket dir and the pgbackrest.conf its node daemon wrote), on the ports of its
 * workload.json and the node's address.
 */
async function membersOnNodes(t: Target): Promise<RuntimeMember[]> {
  const client = etcdClientFor(t, 5000);
  let records: NodeRecord[];
  try {
    const raw = await client.range(CONTROL_PREFIX, { timeoutMs: 5000 });
    records = [...parseControlSnapshot(raw.revision, raw.kvs).nodes.values()].map((n) => n.record);
  } finally {
    client.close();
  }
  const out: RuntimeMember[] = [];
  for (const r of records) {
    for (const w of r.workloads) {
      if (w.cluster !== t.cluster || w.kind !== 'member') continue;
      const memberDir = workloadDir(r.dir, w);
      const marker = decodeJson(MEMBER_PORTS, await readFile(join(memberDir, 'workload.json'), 'utf8').catch(() => '{}'));
      const [pgPort, apiPort] = marker.ok ? marker.value.ports : [];
      if (pgPort === undefined || apiPort === undefined) continue;
      out.push({
        name: w.name,
        host: r.addresses[0] ?? '127.0.0.1',
        pgPort,
        apiPort,
        memberDir,
        dataDir: join(memberDir, 'data'),
        configFile: join(memberDir, 'agent.yaml'),
        logFile: join(memberDir, 'agent.log'),
        socketDir: memberSocketDir(r.dir, memberDir, pgPort),
      });
    }
  }
  if (out.length === 0) throw new WardenError('not-found', `no member of cluster ${t.cluster} runs on a node of this runtime yet (\`warden get nodes --dir ${t.dir}\`)`);
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

const MEMBER_PORTS = obj({ ports: list(port) });

/** The server of a member as pgBackRest reaches it: data dir and unix socket. */
export function serverOf(m: RuntimeMember): PgServer {
  return { dataDir: m.dataDir, port: m.pgPort, socketDir: m.socketDir ?? join(m.memberDir, 'run') };
}

/** pgBackRest's index of a repository named in the spec (`repo2` → 2); an unknown name is bad input. */
function repoIndexOf(rt: BackupRuntime, name: string): number {
  if (!rt.backup.repos.some((r) => r.name === name)) {
    throw new WardenError('config-invalid', `--repo ${JSON.stringify(name)}: not a repository of cluster "${rt.layout.cluster}" (it has ${rt.backup.repos.map((r) => r.name).join(', ')})`);
  }
  return Number(name.slice('repo'.length));
}

function memberOf(layout: RuntimeLayout, name: string): RuntimeMember {
  const m = layout.members.find((x) => x.name === name);
  if (m === undefined) throw new WardenError('not-found', `member ${name} is not part of this runtime`);
  return m;
}

/** Creates the stanza for the leader's cluster (idempotent) and checks that WAL reaches the repository. */
export async function setUpStanza(dirArg: string, leader: string, out: (s: string) => void): Promise<void> {
  const rt = await openBackupRuntime(dirArg);
  const primary = serverOf(memberOf(rt.layout, leader));
  if (rt.onNodes) {
    // The leader's agent creates it (postgresql.archive.create_stanza): two stanza-creates at once,
    // under different lock paths, would write the same info files together.
    await eventually(async () => {
      const info = await rt.repo.info({ timeoutMs: INFO_TIMEOUT_MS }).catch(() => undefined);
      return info !== undefined && info.statusCode !== MISSING_STANZA ? true : undefined;
    }, { timeoutMs: 180_000, intervalMs: 1_000, what: `the leader's agent (${leader}) to create stanza ${rt.backup.stanza} (see its agent.log)` });
  } else {
    await rt.repo.createStanza(primary, { timeoutMs: 120_000 });
  }
  // check forces a WAL switch and waits for that segment in the repository: archiving works end to end.
  await rt.repo.check(primary, { timeoutMs: 180_000 });
  out(`backups: stanza ${rt.backup.stanza} ready; WAL is archived to ${rt.backup.repos.map(describeRepo).join(', ')}`);
  await publishSchedules(rt);
  for (const s of rt.backup.schedules ?? []) out(`backups: ${s.type} backup into ${s.repo} at "${s.cron}" (UTC), run by the leader's agent`);
}

/**
 * Writes the runtime's schedules to `backup/schedules` for the leader's agent to run (or removes
 * the key when there are none): the agent learns them from etcd, not from its own config, so the
 * member that leads next runs them too.
 */
async function publishSchedules(rt: BackupRuntime): Promise<void> {
  const client = etcdClientFor(rt.target, 5000);
  try {
    const key = `${clusterPrefix(rt.target.cluster)}${KEYS.backupSchedules}`;
    const schedules = rt.backup.schedules ?? [];
    if (schedules.length === 0) await client.delete(key, { timeoutMs: 5000 });
    else await client.put(key, JSON.stringify({ dir: rt.dir, schedules } satisfies SchedulesRecord), { timeoutMs: 5000 });
  } finally {
    client.close();
  }
}

// ---- the backup/running key -------------------------------------------------------------------

// `expire` holds the same key as a backup: pgBackRest 2.45's expire may delete a backup in progress.
const RUNNING_RECORD = obj({ type: oneOf(...BACKUP_TYPES, 'expire'), from: str, primary: str, startedAtMs: num({ min: 0 }), pid: num({ integer: true, min: 0 }) });
type RunningRecord = { readonly type: BackupType | 'expire'; readonly from: string; readonly primary: string; readonly startedAtMs: number; readonly pid: number };

async function readRunning(t: Target): Promise<RunningRecord | { invalid: string } | undefined> {
  const client = etcdClientFor(t, 3000);
  try {
    const kv = await client.get(`${clusterPrefix(t.cluster)}${KEYS.backupRunning}`, { timeoutMs: 3000 });
    if (kv === undefined) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(kv.value);
    } catch {
      return { invalid: 'not JSON' };
    }
    const d = decode(RUNNING_RECORD, parsed);
    return d.ok ? d.value : { invalid: d.error };
  } finally {
    client.close();
  }
}

function describeRunning(r: RunningRecord | { invalid: string }): string {
  if ('invalid' in r) return `the ${KEYS.backupRunning} key is held but unreadable (${r.invalid})`;
  if (r.type === 'expire') return `an expire of ${r.from} started at ${new Date(r.startedAtMs).toISOString()} (pid ${r.pid}) is running`;
  return `a ${r.type} backup from ${r.from} started at ${new Date(r.startedAtMs).toISOString()} (pid ${r.pid}) is running`;
}

/**
 * Runs `fn` while holding `backup/running` under a lease of our own: at most one backup per cluster.
 * If the lease is lost (etcd says it expired), `fn`'s signal aborts, since another backup may start.
 */
async function withBackupLock<T>(t: Target, record: RunningRecord, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const client = etcdClientFor(t, 5000);
  const key = `${clusterPrefix(t.cluster)}${KEYS.backupRunning}`;
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let leaseId: string | undefined;
  const onSignal = (): void => abort.abort(new WardenError('backup-command-failed', 'interrupted'));
  try {
    const lease = await client.grantLease(BACKUP_LEASE_MS, { timeoutMs: 5000 });
    leaseId = lease.id;
    if (!(await client.create(key, JSON.stringify(record), { leaseId, timeoutMs: 5000 }))) {
      const held = await readRunning(t);
      throw new WardenError('conflict', `another backup holds the cluster's backup lock: ${held === undefined ? 'it just ended; try again' : describeRunning(held)}`);
    }
    const id = leaseId;
    const renew = (): void => {
      timer = setTimeout(() => {
        client.keepAlive(id, { timeoutMs: 3000 }).then(renew, (e: unknown) => {
          if (e instanceof WardenError && e.code === 'lease-not-found') abort.abort(new WardenError('conflict', 'lost the backup lock (its lease expired)', { cause: e }));
          else renew(); // etcd briefly unreachable: the lease outlives a few missed renewals.
        });
      }, BACKUP_LEASE_MS / 4);
    };
    renew();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    return await fn(abort.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (timer !== undefined) clearTimeout(timer);
    if (leaseId !== undefined) {
      await client.revokeLease(leaseId, { timeoutMs: 5000 }).catch((e: unknown) => {
        process.stderr.write(`warden backup: could not release ${KEYS.backupRunning} (${describeError(e)}); it frees itself within ${BACKUP_LEASE_MS / 1000} s\n`);
      });
    }
    client.close();
  }
}

/**
 * Records the backup that just completed in `backup/last` for `warden list` and the leader's
 * /metrics. Best effort: the set is in the repository whatever etcd says, so a failed write is
 * reported and the backup still succeeds.
 */
async function recordLastBackup(t: Target, rec: LastBackup): Promise<void> {
  const client = etcdClientFor(t, 5000);
  try {
    await client.put(`${clusterPrefix(t.cluster)}${KEYS.backupLast}`, JSON.stringify(rec), { timeoutMs: 5000 });
  } catch (e) {
    process.stderr.write(`warden backup: the set is complete; could not record it in ${KEYS.backupLast} (${describeError(e)})\n`);
  } finally {
    client.close();
  }
}

// ---- warden backup ----------------------------------------------------------------------------

/** One backup set as `warden backup` and `warden backups` print it (JSON names are the contract). */
interface SetOutput {
  readonly label: string;
  readonly type: BackupType;
  readonly prior: string | null;
  readonly startedAt: string;
  readonly stoppedAt: string;
  readonly durationSeconds: number;
  readonly databaseBytes: number;
  readonly copiedBytes: number;
  readonly repositoryBytes: number;
  readonly walStart: string;
  readonly walStop: string;
}

function setOutput(s: BackupSet): SetOutput {
  return {
    label: s.label,
    type: s.type,
    prior: s.prior ?? null,
    startedAt: new Date(s.startedAtMs).toISOString(),
    stoppedAt: new Date(s.stoppedAtMs).toISOString(),
    durationSeconds: s.durationMs / 1000,
    databaseBytes: s.databaseBytes,
    copiedBytes: s.copiedBytes,
    repositoryBytes: s.repositoryBytes,
    walStart: s.walStart,
    walStop: s.walStop,
  };
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function healthOf(view: ClusterView): Parameters<typeof chooseBackupSource>[0] {
  const leaderName = view.leader?.name;
  const leaderPos = (leaderName === undefined ? undefined : view.members.get(leaderName)?.walPosition) ?? undefined;
  return [...view.members.values()].map((m) => ({
    name: m.name,
    isLeader: m.name === leaderName,
    role: m.role,
    state: m.state,
    timeline: m.timeline,
    lagBytes: leaderPos === undefined || m.walPosition === undefined ? undefined : lagBytes(parseLsn(leaderPos), parseLsn(m.walPosition)),
  }));
}

async function runBackup(o: { dir: string; cluster?: string; type: BackupType; repo?: string; wait: boolean; timeoutSeconds: number; format: string }): Promise<number> {
  const rt = await openBackupRuntime(o.dir, o.cluster);
  const repoIndex = o.repo === undefined ? undefined : repoIndexOf(rt, o.repo);
  if (!o.wait) {
    const held = await readRunning(rt.target);
    if (held !== undefined) throw new WardenError('conflict', describeRunning(held));
    const logFile = join(rt.backup.logPath, `warden-backup-${Date.now()}.log`);
    const { command, args } = wardenArgv(['backup', '--dir', rt.dir, '--cluster', rt.target.cluster, '--type', o.type, ...(o.repo === undefined ? [] : ['--repo', o.repo]), '--wait', '--timeout-seconds', String(o.timeoutSeconds)]);
    const fd = openSync(logFile, 'a');
    try {
      const child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd], env: process.env });
      child.unref();
      process.stdout.write(`${o.type} backup started in the background (pid ${child.pid ?? '?'}); its output: ${logFile}; \`warden backups\` lists it when done\n`);
    } finally {
      closeSync(fd);
    }
    return 0;
  }
  const view = await readClusterView(rt.target);
  const choice = chooseBackupSource(healthOf(view));
  if (!choice.ok) throw new WardenError('conflict', `cannot back up now: ${choice.reason}`);
  const from = choice.standby ?? choice.primary;
  const record: RunningRecord = { type: o.type, from, primary: choice.primary, startedAtMs: Date.now(), pid: process.pid };
  if (o.format !== 'json') process.stdout.write(`${choice.reason}\n`);
  if (choice.standby !== undefined) {
    const note = await alignStandbyControlFile(rt, memberOf(rt.layout, choice.primary), memberOf(rt.layout, choice.standby));
    if (note !== undefined && o.format !== 'json') process.stdout.write(`${note}\n`);
  }
  const set = await withBackupLock(rt.target, record, (signal) =>
    rt.repo.backup(
      { primary: serverOf(memberOf(rt.layout, choice.primary)), ...(choice.standby === undefined ? {} : { standby: serverOf(memberOf(rt.layout, choice.standby)) }) },
      o.type,
      { timeoutMs: o.timeoutSeconds * 1000, signal, ...(repoIndex === undefined ? {} : { repo: repoIndex }) },
    ),
  );
  await recordLastBackup(rt.target, { label: set.label, type: set.type, from, fromStandby: choice.standby !== undefined, databaseBytes: set.databaseBytes, repositoryBytes: set.repositoryBytes, durationSeconds: set.durationMs / 1000, finishedAtMs: set.stoppedAtMs });
  if (o.format === 'json') process.stdout.write(`${JSON.stringify({ from, primary: choice.primary, set: setOutput(set) }, null, 2)}\n`);
  else process.stdout.write(`${set.type} backup ${set.label} from ${from}: ${mb(set.databaseBytes)} in ${(set.durationMs / 1000).toFixed(0)} s (${mb(set.repositoryDeltaBytes)} added to the repository)\n`);
  return 0;
}

// ---- warden expire ----------------------------------------------------------------------------

/** What `warden expire --format json` prints (names are the contract). */
export interface ExpireOutput {
  readonly removed: readonly SetOutput[];
  readonly kept: readonly SetOutput[];
  /** The WAL archive's range before and after (null: empty). */
  readonly archiveBefore: { readonly min: string; readonly max: string } | null;
  readonly archiveAfter: { readonly min: string; readonly max: string } | null;
}

/**
 * `warden expire [--set LABEL] [--repo R]`: removes what the retention options no longer keep, or
 * one set (with the sets that depend on it) — under the cluster's one backup lock, so it never
 * runs beside a backup. The newest set is never removed by name: the recoverable window would
 * end before it.
 */
async function runExpire(o: { dir: string; cluster?: string; repo?: string; set?: string; format: string }): Promise<number> {
  const rt = await openBackupRuntime(o.dir, o.cluster);
  const repoIndex = o.repo === undefined ? undefined : repoIndexOf(rt, o.repo);
  const before = await rt.repo.info({ timeoutMs: INFO_TIMEOUT_MS });
  if (o.set !== undefined) {
    const labels = before.sets.map((x) => x.label);
    if (!labels.includes(o.set)) {
      throw new WardenError('config-invalid', `--set ${JSON.stringify(o.set)}: not a backup set of cluster "${rt.layout.cluster}" (${labels.length === 0 ? 'it has none' : `it has ${labels.join(', ')}`})`);
    }
    if (labels.at(-1) === o.set) throw new WardenError('config-invalid', `--set ${o.set} is the newest backup set; take another backup before removing it`);
  }
  const view = await readClusterView(rt.target).catch(() => undefined);
  const record: RunningRecord = { type: 'expire', from: o.set ?? 'retention', primary: view?.leader?.name ?? 'unknown', startedAtMs: Date.now(), pid: process.pid };
  await withBackupLock(rt.target, record, (signal) =>
    rt.repo.expire({ timeoutMs: INFO_TIMEOUT_MS * 5, signal, ...(repoIndex === undefined ? {} : { repo: repoIndex }), ...(o.set === undefined ? {} : { set: o.set }) }),
  );
  const after = await rt.repo.info({ timeoutMs: INFO_TIMEOUT_MS });
  const keptLabels = new Set(after.sets.map((x) => x.label));
  const out: ExpireOutput = {
    removed: before.sets.filter((x) => !keptLabels.has(x.label)).map(setOutput),
    kept: after.sets.map(setOutput),
    archiveBefore: before.archive ?? null,
    archiveAfter: after.archive ?? null,
  };
  if (o.format === 'json') {
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return 0;
  }
  const removedBytes = out.removed.reduce((n, x) => n + x.repositoryBytes, 0);
  process.stdout.write(
    out.removed.length === 0
      ? `nothing to expire: ${o.set === undefined ? 'the retention options keep' : 'kept'} all ${out.kept.length} set(s)\n`
      : `expired ${out.removed.length} set(s): ${out.removed.map((x) => x.label).join(', ')} (${mb(removedBytes)} in the repository); ${out.kept.length} kept\n`,
  );
  if (out.archiveAfter !== null && out.archiveBefore !== null && out.archiveAfter.min !== out.archiveBefore.min) {
    process.stdout.write(`WAL archive now starts at ${out.archiveAfter.min} (was ${out.archiveBefore.min})\n`);
  }
  return 0;
}

// ---- warden backups ---------------------------------------------------------------------------

/**
 * A standby's pg_control names the timeline of its last restartpoint, so for a while after a
 * switchover or failover it still names the old one — and pgBackRest 2.45 then refuses to back up
 * from it ("WAL timeline 2 does not match pg_control timeline 1", error 58; a backup right after a
 * switchover failed this way in about one run in three). When that is so: a checkpoint on the
 * primary (a checkpoint record on the present timeline), the standby replaying past it, and a
 * checkpoint on the standby (a restartpoint there) bring its pg_control to the present timeline.
 * Returns what was done, or undefined when nothing was needed. Bounded: 60 s for the replay.
 */
async function alignStandbyControlFile(rt: BackupRuntime, primary: RuntimeMember, standby: RuntimeMember): Promise<string | undefined> {
  const password = (await readFile(join(rt.dir, 'secrets', 'superuser.password'), 'utf8')).trim();
  const connect = async (m: RuntimeMember): Promise<pg.Client> => {
    const c = new pg.Client({ host: m.host, port: m.pgPort, user: rt.layout.superuser, password, database: 'postgres', connectionTimeoutMillis: PG_QUERY_TIMEOUT_MS, query_timeout: PG_QUERY_TIMEOUT_MS * 6 });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  const p = await connect(primary);
  try {
    const s = await connect(standby);
    try {
      const timelineOf = async (c: pg.Client, sql: string): Promise<number> => Number((await c.query<{ tl: string }>(sql)).rows[0]?.tl ?? Number.NaN);
      const present = await timelineOf(p, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text AS tl");
      const control = await timelineOf(s, 'SELECT timeline_id::text AS tl FROM pg_control_checkpoint()');
      if (!Number.isFinite(present) || control >= present) return undefined;
      await p.query('CHECKPOINT');
      const lsn = (await p.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]?.l ?? '0/0';
      await eventually(async () => ((await s.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn])).rows[0]?.ok === true ? true : undefined), {
        timeoutMs: 60_000,
        intervalMs: 200,
        what: `${standby.name} to replay the primary's checkpoint at ${lsn}`,
      });
      await s.query('CHECKPOINT');
      const after = await timelineOf(s, 'SELECT timeline_id::text AS tl FROM pg_control_checkpoint()');
      return `${standby.name}'s control file named timeline ${control} (the cluster is on ${present}): checkpoint on ${primary.name}, restartpoint on ${standby.name}; it names ${after} now`;
    } finally {
      await s.end().catch(() => undefined);
    }
  } finally {
    await p.end().catch(() => undefined);
  }
}

/** pg_stat_archiver on the primary, decoded. */
async function archiverStatus(rt: BackupRuntime, host: string, port: number): Promise<{ point: RecoveryPoint; lastArchivedWal: string | null; lastArchivedAtMs: number | null; lastFailedWal: string | null; lastFailedAtMs: number | null; failedCount: number }> {
  const password = (await readFile(join(rt.dir, 'secrets', 'superuser.password'), 'utf8')).trim();
  const client = new pg.Client({ host, port, user: rt.layout.superuser, password, database: 'postgres', connectionTimeoutMillis: PG_QUERY_TIMEOUT_MS, query_timeout: PG_QUERY_TIMEOUT_MS });
  await client.connect();
  try {
    const r = await client.query(ARCHIVER_QUERY);
    const d = archiverStatusOfRow(r.rows[0]);
    if (!d.ok) throw new WardenError('postgres-command-failed', d.error);
    const a = d.value;
    return {
      point: recoveryPointOf(a),
      lastArchivedWal: a.lastArchivedWal ?? null,
      lastArchivedAtMs: a.lastArchivedAtMs ?? null,
      lastFailedWal: a.lastFailedWal ?? null,
      lastFailedAtMs: a.lastFailedAtMs ?? null,
      failedCount: a.failedCount,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/** `warden backups --format json` (names are the contract). */
export interface BackupsOutput {
  readonly cluster: string;
  readonly stanza: string;
  readonly status: { readonly code: number; readonly message: string };
  readonly running: string | null;
  readonly backups: readonly SetOutput[];
  readonly archive: { readonly min: string; readonly max: string } | null;
  /** Earliest: the end of the oldest backup; latest: when the newest WAL segment reached the repository. */
  readonly recoverableWindow: { readonly earliest: string | null; readonly latest: string | null };
  readonly recoveryPoint:
    | {
        readonly primary: string;
        readonly bytesNotArchived: number | null;
        readonly secondsNotArchived: number | null;
        readonly failing: boolean;
        readonly lastArchivedWal: string | null;
        readonly lastArchivedAt: string | null;
        readonly lastFailedWal: string | null;
        readonly lastFailedAt: string | null;
        readonly failedCount: number;
      }
    | { readonly primary: string | null; readonly error: string };
  /** The schedules' slots kept in etcd (newest 20 per schedule), oldest first; `claimed` whose member is gone means interrupted. */
  readonly slots: readonly { readonly key: string; readonly record: SlotRecord | null; readonly invalid: string | null }[] | { readonly error: string };
}

/** The slot records under `backup/slots/`, decoded (a bad one is listed with why). */
async function readSlots(t: Target): Promise<BackupsOutput['slots']> {
  const client = etcdClientFor(t, 3000);
  try {
    const prefix = `${clusterPrefix(t.cluster)}${KEYS.backupSlotsDir}`;
    const snap = await client.range(prefix, { timeoutMs: 3000 });
    return snap.kvs
      .map((kv) => {
        const d = decodeSlotRecord(kv.value);
        return { key: kv.key.slice(prefix.length), record: d.ok ? d.value : null, invalid: d.ok ? null : d.error };
      })
      .sort((a, b) => (a.record?.slotMs ?? 0) - (b.record?.slotMs ?? 0) || a.key.localeCompare(b.key));
  } catch (e) {
    return { error: describeError(e) };
  } finally {
    client.close();
  }
}

async function runBackups(o: { dir: string; cluster?: string; format: string }): Promise<number> {
  const rt = await openBackupRuntime(o.dir, o.cluster);
  // A repository that cannot be read (a bucket unreachable, say) must not hide the recovery point,
  // which the primary tells: it is said in the sets' place (status 99, pgBackRest's "other"), and
  // the command exits 1. pgBackRest retries each request until its io-timeout (60 s by default):
  // 5 s per request here, as info reads four files.
  const read = await rt.repo.info({ timeoutMs: INFO_TIMEOUT_MS, ioTimeoutSeconds: BACKUPS_IO_TIMEOUT_SECONDS }).then(
    (info) => ({ info, error: null }),
    (e: unknown) => ({ info: undefined, error: describeError(e) }),
  );
  const unreadable = read.error ?? (read.info?.statusCode === OTHER_STATUS ? read.info.statusMessage : null);
  const info: RepositoryInfo =
    read.info !== undefined && unreadable === null ? read.info : { stanza: rt.backup.stanza, statusCode: OTHER_STATUS, statusMessage: `the repository cannot be read: ${unreadable ?? ''}`, backupRunning: false, systemIds: [], sets: [], archive: undefined };
  // etcd being unreachable must not hide the repository's report: it is said in its place.
  const view = await readClusterView(rt.target).then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, why: describeError(e) }),
  );
  const leader = view.ok ? view.v.leader?.name : undefined;
  const leaderRecord = leader === undefined || !view.ok ? undefined : view.v.members.get(leader);
  let recoveryPoint: BackupsOutput['recoveryPoint'];
  let latestMs: number | null = null;
  if (!view.ok) {
    recoveryPoint = { primary: null, error: view.why };
  } else if (leaderRecord === undefined) {
    recoveryPoint = { primary: null, error: 'no leader: the recovery point is read from the primary' };
  } else {
    try {
      const a = await archiverStatus(rt, leaderRecord.host, leaderRecord.port);
      latestMs = a.lastArchivedAtMs;
      recoveryPoint = {
        primary: leaderRecord.name,
        bytesNotArchived: a.point.bytesNotArchived ?? null,
        secondsNotArchived: a.point.secondsNotArchived ?? null,
        failing: a.point.isFailing,
        lastArchivedWal: a.lastArchivedWal,
        lastArchivedAt: iso(a.lastArchivedAtMs),
        lastFailedWal: a.lastFailedWal,
        lastFailedAt: iso(a.lastFailedAtMs),
        failedCount: a.failedCount,
      };
    } catch (e) {
      recoveryPoint = { primary: leaderRecord.name, error: describeError(e) };
    }
  }
  const running = await readRunning(rt.target).then(
    (held) => (held === undefined ? null : describeRunning(held)),
    (e: unknown) => `unknown: cannot read ${KEYS.backupRunning} from etcd: ${describeError(e)}`,
  );
  const first = info.sets[0];
  const result: BackupsOutput = {
    cluster: rt.layout.cluster,
    stanza: info.stanza,
    status: { code: info.statusCode, message: info.statusMessage },
    running,
    backups: info.sets.map(setOutput),
    archive: info.archive ?? null,
    recoverableWindow: { earliest: iso(first?.stoppedAtMs), latest: first === undefined ? null : iso(latestMs) },
    recoveryPoint,
    slots: await readSlots(rt.target),
  };
  const rc = unreadable === null ? 0 : 1;
  if (o.format === 'json') {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return rc;
  }
  const lines = [`stanza ${result.stanza}: ${result.status.message}${result.running === null ? '' : `; ${result.running}`}`];
  if (result.backups.length === 0 && unreadable === null) lines.push('no backups yet: run `warden backup --wait`');
  for (const s of result.backups) lines.push(`  ${s.label.padEnd(34)} ${s.type.padEnd(4)} ${s.stoppedAt}  ${mb(s.databaseBytes).padStart(10)}  repo ${mb(s.repositoryBytes).padStart(10)}  ${s.durationSeconds.toFixed(0)} s`);
  lines.push(`recoverable window: ${result.recoverableWindow.earliest ?? '—'} … ${result.recoverableWindow.latest ?? '—'}${result.archive === null ? '' : ` (WAL ${result.archive.min} … ${result.archive.max})`}`);
  const rp = result.recoveryPoint;
  if ('error' in rp) lines.push(`recovery point: unknown (${rp.error})`);
  else lines.push(`recovery point now: ${rp.bytesNotArchived ?? '?'} bytes, ${rp.secondsNotArchived === null ? '?' : rp.secondsNotArchived.toFixed(0)} s of WAL not yet archived on ${rp.primary}${rp.failing ? ` — ARCHIVING IS FAILING (${rp.failedCount} failures, last ${rp.lastFailedWal ?? '?'} at ${rp.lastFailedAt ?? '?'})` : ''}`);
  const slots = result.slots;
  if ('error' in slots) lines.push(`schedule slots: unknown (${slots.error})`);
  else if (slots.length > 0) {
    lines.push('schedule slots (repo/type/slot: state, member, set):');
    for (const s of slots.slice(-10)) {
      const r = s.record;
      lines.push(`  ${s.key}: ${r === null ? `invalid (${s.invalid ?? '?'})` : `${r.state} by ${r.member}${r.label === null ? '' : `, ${r.label}`}${r.error === null ? '' : ` — ${r.error.split('\n')[0] ?? ''}`}`}`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return rc;
}

// ---- warden restore-drill ---------------------------------------------------------------------

/** `warden restore-drill --format json` (names are the contract). */
export interface RestoreDrillOutput {
  readonly label: string;
  readonly databaseBytes: number;
  readonly restoreSeconds: number;
  readonly megabytesPerSecond: number;
  /** From starting the restored copy until it finished recovery and accepted writes. */
  readonly recoverySeconds: number;
  readonly timeline: number;
  readonly check: { readonly sql: string; readonly value: string | null };
}

async function runRestoreDrill(o: { dir: string; cluster?: string; format: string; checkSql: string; timeoutSeconds: number }): Promise<number> {
  const rt = await openBackupRuntime(o.dir, o.cluster);
  const info = await rt.repo.info({ timeoutMs: INFO_TIMEOUT_MS });
  const set = info.sets.at(-1);
  if (set === undefined) throw new WardenError('not-found', 'no backup in the repository yet: run `warden backup --wait` first');
  const run = lookupRunUser();
  const scratch = join(rt.backup.dir, `drill-${Date.now()}`);
  const deadline = Date.now() + o.timeoutSeconds * 1000;
  const left = (): number => Math.max(1000, deadline - Date.now());
  await mkdir(scratch, { mode: 0o700 });
  if (run !== undefined) await chown(scratch, run.uid, run.gid);
  let server: LocalPostgres | undefined;
  try {
    const dataDir = join(scratch, 'data');
    const t0 = Date.now();
    // archive-mode=off: the drill's copy must push nothing into this cluster's repository.
    await rt.repo.restore({ dataDir, target: { kind: 'latest' }, setLabel: set.label, archiveMode: 'off', lockPath: join(scratch, 'lock'), logPath: join(scratch, 'log') }, { timeoutMs: left() });
    const restoreMs = Date.now() - t0;
    const password = (await readFile(join(rt.dir, 'secrets', 'superuser.password'), 'utf8')).trim();
    const replication = (await readFile(join(rt.dir, 'secrets', 'replication.password'), 'utf8')).trim();
    const port = await freePort('127.0.0.1');
    server = new LocalPostgres({
      name: `${rt.layout.cluster}-drill`,
      dataDir,
      binDir: PG_BIN_DIR,
      listen: { host: '127.0.0.1', port },
      socketDir: join(scratch, 'run'),
      ...(run === undefined ? {} : { runAsUser: 'postgres' }),
      superuser: { username: rt.layout.superuser, password },
      replication: { username: 'replicator', password: replication },
      // Also in postgresql.auto.conf (pgBackRest's --archive-mode=off); said twice on purpose.
      parameters: { archive_mode: 'off' },
    });
    const socketDir = join(scratch, 'run');
    await mkdir(socketDir, { mode: 0o700 });
    if (run !== undefined) await chown(socketDir, run.uid, run.gid);
    // Its own port and socket, no upstream, no standby.signal: a standalone server.
    await server.configure({ kind: 'primary' });
    const t1 = Date.now();
    await server.start(left());
    const drill = server;
    await eventually(async () => ((await drill.query('SELECT pg_is_in_recovery() AS r', [], PG_QUERY_TIMEOUT_MS))[0]?.['r'] === false ? true : undefined), { timeoutMs: left(), intervalMs: 200, what: 'the restored copy to finish recovery' });
    const recoveryMs = Date.now() - t1;
    const status = await drill.status(PG_QUERY_TIMEOUT_MS);
    const rows = await drill.query(o.checkSql, [], Math.min(left(), 60_000));
    const firstRow = rows[0];
    const firstValue = firstRow === undefined ? undefined : Object.values(firstRow)[0];
    const result: RestoreDrillOutput = {
      label: set.label,
      databaseBytes: set.databaseBytes,
      restoreSeconds: restoreMs / 1000,
      megabytesPerSecond: set.databaseBytes / 1e6 / Math.max(0.001, restoreMs / 1000),
      recoverySeconds: recoveryMs / 1000,
      timeline: status.timeline,
      check: { sql: o.checkSql, value: textOf(firstValue) },
    };
    if (o.format === 'json') process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      process.stdout.write(
        `restored ${set.label} (${mb(set.databaseBytes)}) in ${result.restoreSeconds.toFixed(1)} s (${result.megabytesPerSecond.toFixed(1)} MB/s); recovered and writable after ${result.recoverySeconds.toFixed(1)} s more, on timeline ${result.timeline}\n` +
          `check: ${o.checkSql} → ${result.check.value ?? 'no rows'}\n`,
      );
    }
    return 0;
  } finally {
    if (server !== undefined) await server.stop('fast', 60_000).catch((e: unknown) => process.stderr.write(`warden restore-drill: stopping the restored copy: ${describeError(e)}\n`));
    await rm(scratch, { recursive: true, force: true });
  }
}

/** A SQL value as text for the report (what psql would print, roughly). */
function textOf(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v);
}

// ---- warden restore ---------------------------------------------------------------------------

/** `warden restore --format json` (names are the contract). */
export interface RestoreOutput {
  readonly into: string;
  readonly dataDir: string;
  readonly label: string;
  readonly target: RestoreTarget;
  readonly restoreSeconds: number;
  /** From starting the restored copy until it reached the target and was promoted. */
  readonly recoverySeconds: number;
  readonly timeline: number;
  readonly check: { readonly sql: string; readonly value: string | null } | null;
  /**
   * A time target in a quiet period (no commit after it anywhere in the archive): recovered to the
   * end of the archived WAL instead — the same rows. `lsn`: the last record replayed.
   */
  readonly quietPeriod: { readonly lsn: string; readonly lastCommitAt: string | undefined } | null;
}

interface RestoreOptions extends RestoreTargetOptions {
  readonly dir: string;
  readonly cluster?: string;
  readonly into?: string;
  readonly inPlace: boolean;
  readonly repo?: string;
  readonly checkSql?: string;
  readonly format: string;
  readonly timeoutSeconds: number;
}

/**
 * When the newest WAL reached the repository, from the leader's pg_stat_archiver; undefined when
 * that cannot be asked (no leader, the cluster down): the target is then not checked against it.
 */
async function leaderLastArchivedAtMs(rt: BackupRuntime): Promise<number | undefined> {
  const view = await readClusterView(rt.target).catch(() => undefined);
  const leader = view?.leader === undefined ? undefined : view.members.get(view.leader.name);
  const archived = leader === undefined ? undefined : await archiverStatus(rt, leader.host, leader.port).catch(() => undefined);
  return archived?.lastArchivedAtMs ?? undefined;
}

/** leaderLastArchivedAtMs of the local runtime in `dir` (for spec.dataSource's source), undefined when unknown. */
export async function lastArchivedAtMsOf(dir: string): Promise<number | undefined> {
  const rt = await openBackupRuntime(dir).catch(() => undefined);
  return rt === undefined ? undefined : leaderLastArchivedAtMs(rt);
}

/** The newest set a restore to `target` can start from (it must have ended before the target). */
export function setFor(info: RepositoryInfo, target: RestoreTarget): BackupSet | undefined {
  const fits = (s: BackupSet): boolean => {
    if (target.kind === 'time') return s.stoppedAtMs <= (targetTimeMs(target.time) ?? 0);
    if (target.kind === 'lsn') return s.lsnStop === undefined || parseLsn(s.lsnStop) <= parseLsn(target.lsn);
    return true;
  };
  return [...info.sets].reverse().find(fits);
}

/**
 * `warden restore --into NEW`: checks the target against the repository (bad input: exit 2, nothing
 * changed), restores the newest fitting set into DIR/restores/NEW/data, recovers it to the target
 * in a private postmaster (own port and socket, archiving off: it pushes nothing into this
 * cluster's repository, and the running cluster is not touched), promotes it there, runs
 * --check-sql, and stops it: a consistent data directory on a timeline of its own.
 */
async function runRestore(o: RestoreOptions): Promise<number> {
  const rt = await openBackupRuntime(o.dir, o.cluster);
  const parsed = parseRestoreTarget(o);
  if (!parsed.ok) throw new WardenError('config-invalid', parsed.error);
  const target = parsed.value;
  if (o.inPlace && o.into !== undefined) throw new WardenError('config-invalid', 'give --into NEW or --in-place, not both');
  if (o.into === undefined && !o.inPlace) throw new WardenError('config-invalid', 'say where to restore: --into NEW (a new data directory in DIR/restores/NEW) or --in-place (the running cluster)');
  const into = o.into ?? '';
  if (!o.inPlace) {
    const bad = dnsLabelProblem(into);
    if (bad !== undefined) throw new WardenError('config-invalid', `--into ${JSON.stringify(into)}: ${bad}`);
  }
  const dest = join(rt.dir, 'restores', into);
  if (!o.inPlace && existsSync(dest)) throw new WardenError('config-invalid', `--into ${into}: ${dest} exists already; pick another name or remove it`);
  const repoIndex = o.repo === undefined ? undefined : repoIndexOf(rt, o.repo);
  const info = await rt.repo.info({ timeoutMs: INFO_TIMEOUT_MS });
  const why = unreachableTarget(target, info, { lastArchivedAtMs: await leaderLastArchivedAtMs(rt), nowMs: Date.now() });
  if (why !== undefined) throw new WardenError('config-invalid', why);
  const set = setFor(info, target);
  if (set === undefined) throw new WardenError('config-invalid', 'no backup set ends before the target');
  if (o.inPlace) return runRestoreInPlace(rt, o, target, set, repoIndex);

  const run = lookupRunUser();
  const deadline = Date.now() + o.timeoutSeconds * 1000;
  const left = (): number => Math.max(1000, deadline - Date.now());
  await mkdir(join(rt.dir, 'restores'), { recursive: true, mode: 0o755 });
  await mkdir(dest, { mode: 0o700 });
  if (run !== undefined) await chown(dest, run.uid, run.gid);
  let server: LocalPostgres | undefined;
  let done = false;
  try {
    const dataDir = join(dest, 'data');
    const socketDir = join(dest, 'run');
    await mkdir(socketDir, { mode: 0o700 });
    if (run !== undefined) await chown(socketDir, run.uid, run.gid);
    const restoreRequest = { dataDir, target, setLabel: set.label, archiveMode: 'off', lockPath: join(dest, 'lock'), logPath: join(dest, 'log'), ...(repoIndex === undefined ? {} : { repo: repoIndex }) } as const;
    const t0 = Date.now();
    await rt.repo.restore(restoreRequest, { timeoutMs: left() });
    const firstRestoreMs = Date.now() - t0;
    server = await scratchServer(rt, `${rt.layout.cluster}-${into}`, dataDir, socketDir, run !== undefined);
    const recovered = await recoverToTarget(server, target, set.label, 'nothing was restored', left, (t) => rt.repo.restore({ ...restoreRequest, target: t, delta: true }, { timeoutMs: left() }));
    const restoreMs = firstRestoreMs + recovered.restoreMs;
    const { recoveryMs, quiet } = recovered;
    const restored = server;
    const status = await restored.status(PG_QUERY_TIMEOUT_MS);
    let check: RestoreOutput['check'] = null;
    if (o.checkSql !== undefined) {
      const rows = await restored.query(o.checkSql, [], Math.min(left(), 60_000));
      const firstRow = rows[0];
      check = { sql: o.checkSql, value: textOf(firstRow === undefined ? undefined : Object.values(firstRow)[0]) };
    }
    const result: RestoreOutput = { into: into, dataDir, label: set.label, target, restoreSeconds: restoreMs / 1000, recoverySeconds: recoveryMs / 1000, timeline: status.timeline, check, quietPeriod: quiet ?? null };
    await restored.stop('fast', 60_000);
    server = undefined;
    done = true;
    if (o.format === 'json') process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      process.stdout.write(
        `restored ${set.label} into ${dataDir} and recovered it to ${describeTarget(target)}${quiet === undefined ? '' : ` (a quiet period: no commit after it in the archive${quiet.lastCommitAt === undefined ? '' : `, the last at ${quiet.lastCommitAt}`}; recovered to the end of the archived WAL, LSN ${quiet.lsn})`} (timeline ${result.timeline}) in ${result.restoreSeconds.toFixed(1)} + ${result.recoverySeconds.toFixed(1)} s; it is stopped, with archiving off\n` +
          (check === null ? '' : `check: ${check.sql} → ${check.value ?? 'no rows'}\n`),
      );
    }
    return 0;
  } finally {
    if (server !== undefined) await server.stop('fast', 60_000).catch((e: unknown) => process.stderr.write(`warden restore: stopping the restored copy: ${describeError(e)}\n`));
    // A restore that did not reach its target leaves nothing behind.
    if (!done) await rm(dest, { recursive: true, force: true });
  }
}

// ---- warden restore --in-place ----------------------------------------------------------------

/** `warden restore --in-place --format json` (names are the contract). */
export interface InPlaceRestoreOutput {
  readonly inPlace: true;
  readonly leader: string;
  readonly label: string;
  readonly target: RestoreTarget;
  /** The timeline the cluster ran on before, and the one it runs on now. */
  readonly fromTimeline: number;
  readonly timeline: number;
  /** From pausing the cluster until no member ran PostgreSQL. */
  readonly stopSeconds: number;
  /** The delta restore of the leader's data directory. */
  readonly restoreSeconds: number;
  /** From starting the private postmaster until it reached the target and was promoted. */
  readonly recoverySeconds: number;
  /** From resuming until the leader was writable and every replica streamed on the new timeline. */
  readonly rejoinSeconds: number;
  readonly totalSeconds: number;
  /** Where each replica's old data directory was moved (never deleted). */
  readonly replicas: readonly { readonly name: string; readonly movedTo: string }[];
  readonly check: { readonly sql: string; readonly value: string | null } | null;
}


/** Sets the dynamic config's `pause` by compare-and-swap on the config key's revision. */
async function setPause(t: Target, pause: boolean): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const view = await readClusterView(t);
    if (view.config.pause === pause) return;
    const client = etcdClientFor(t, 3000);
    try {
      const key = clusterPrefix(t.cluster) + KEYS.config;
      const next = JSON.stringify({ ...view.config, pause });
      const ok = view.configModRevision === undefined ? await client.create(key, next) : await client.compareAndSwap(key, next, view.configModRevision);
      if (ok) return;
    } finally {
      client.close();
    }
  }
  throw new WardenError('conflict', `could not ${pause ? 'pause' : 'resume'} cluster ${t.cluster}: its config key kept changing`);
}

/** Appends the in-place restore's timeline switch to the `history` key (what `warden history` shows). */
async function appendHistory(t: Target, entry: HistoryEntry): Promise<void> {
  const client = etcdClientFor(t, 3000);
  const key = clusterPrefix(t.cluster) + KEYS.history;
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await client.get(key);
      const list: HistoryEntry[] = cur === undefined ? [] : (JSON.parse(cur.value) as HistoryEntry[]);
      if (list.some((h) => h.timeline === entry.timeline)) return;
      const next = JSON.stringify([...list, entry]);
      if (cur === undefined ? await client.create(key, next) : await client.compareAndSwap(key, next, cur.modRevision)) return;
    }
  } finally {
    client.close();
  }
  throw new WardenError('conflict', 'could not append to the history key after 5 attempts');
}

/** The postmaster PID in DATA/postmaster.pid, if the file is there. */
async function postmasterPidOf(dataDir: string): Promise<number | undefined> {
  const text = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const pid = Number(text?.split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Fast shutdown of the postmaster on `dataDir` (started by its agent, which reaps it): SIGINT,
 * then wait until the process is gone and postmaster.pid removed (a clean shutdown checkpoint).
 */
async function stopPostmaster(dataDir: string, what: string, timeoutMs: number): Promise<void> {
  const pid = await postmasterPidOf(dataDir);
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGINT');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
  await eventually(async () => ((await isProcessAlive(pid)) || existsSync(join(dataDir, 'postmaster.pid')) ? undefined : true), { timeoutMs, intervalMs: 200, what: `${what}'s PostgreSQL (pid ${pid}) to stop` });
}

/**
 * `warden restore --in-place`: point-in-time recovery of the running cluster, outside the HA loop
 * (docs/architecture.md, "Backups", `warden restore --in-place`). The target was checked already (exit 2, nothing
 * changed). Then: pause (no agent starts, stops or promotes anything), stop the leader's
 * PostgreSQL and then every replica's (from here until the resume no member runs it, so no
 * second writable primary can exist), delta-restore the leader's data directory along the
 * cluster's current timeline and recover it in a private postmaster (own port and socket,
 * archiving off) that promotes at the target onto a new timeline, reset pgBackRest's recovery
 * settings, stop it cleanly and push the new timeline's history file into the repository; move
 * each replica's data directory aside, so its agent re-creates it (from the repository or the
 * leader) on the new timeline; resume. The leader's agent keeps the leader key all along and
 * starts its PostgreSQL in place. A failure leaves the cluster paused, with the reason.
 */
async function runRestoreInPlace(rt: BackupRuntime, o: RestoreOptions, target: RestoreTarget, set: BackupSet, repoIndex: number | undefined): Promise<number> {
  const json = o.format === 'json';
  const say = (line: string): void => {
    (json ? process.stderr : process.stdout).write(`${line}\n`);
  };
  const started = Date.now();
  const deadline = started + o.timeoutSeconds * 1000;
  const left = (): number => Math.max(1000, deadline - Date.now());
  const view = await readClusterView(rt.target);
  if (view.config.pause) throw new WardenError('conflict', `cluster ${rt.target.cluster} is paused: an in-place restore pauses and resumes it itself; run \`warden resume\` first`);
  const leaderName = view.leader?.name;
  const leaderRecord = leaderName === undefined ? undefined : view.members.get(leaderName);
  if (leaderName === undefined || leaderRecord === undefined || leaderRecord.role !== 'primary' || leaderRecord.timeline === undefined) {
    throw new WardenError('conflict', 'an in-place restore needs a running leader (its timeline names the history to recover along): none now');
  }
  const fromTimeline = leaderRecord.timeline;
  const leader = memberOf(rt.layout, leaderName);
  const replicas = rt.layout.members.filter((m) => m.name !== leaderName);
  const stamp = new Date(started).toISOString().replace(/[-:]/g, '').replace(/\..*$/, 'Z');
  const scratch = join(rt.dir, 'restores', `in-place-${stamp}`);
  const run = lookupRunUser();
  let step = 'pausing the cluster';
  let server: LocalPostgres | undefined;
  try {
    say(`in-place restore of cluster ${rt.target.cluster} to ${describeTarget(target)} from ${set.label}, along timeline ${fromTimeline} (leader ${leaderName})`);
    await setPause(rt.target, true);
    await eventually(async () => {
      const v = await readClusterView(rt.target);
      return [...v.members.values()].every((m) => m.reason?.code === 'paused') ? true : undefined;
    }, { timeoutMs: Math.min(left(), 60_000), intervalMs: 300, what: 'every agent to enter maintenance mode' });
    say('paused: no agent starts, stops or promotes PostgreSQL');
    // The leader first: once it is down nothing is writable, and in pause no replica promotes.
    step = `stopping ${leaderName}'s PostgreSQL`;
    await stopPostmaster(leader.dataDir, leaderName, Math.min(left(), 120_000));
    for (const m of replicas) {
      step = `stopping ${m.name}'s PostgreSQL`;
      await stopPostmaster(m.dataDir, m.name, Math.min(left(), 120_000));
    }
    const stopMs = Date.now() - started;
    say(`stopped PostgreSQL on ${[leaderName, ...replicas.map((m) => m.name)].join(', ')} in ${(stopMs / 1000).toFixed(1)} s`);

    step = `restoring ${set.label} into ${leaderName}'s data directory`;
    await mkdir(join(rt.dir, 'restores'), { recursive: true, mode: 0o755 });
    await mkdir(scratch, { mode: 0o755 });
    const socketDir = join(scratch, 'run');
    await mkdir(socketDir, { mode: 0o700 });
    if (run !== undefined) await chown(socketDir, run.uid, run.gid);
    for (const d of ['lock', 'log']) {
      await mkdir(join(scratch, d), { mode: 0o700 });
      if (run !== undefined) await chown(join(scratch, d), run.uid, run.gid);
    }
    const request = {
      dataDir: leader.dataDir,
      target,
      setLabel: set.label,
      delta: true,
      archiveMode: 'off',
      targetTimeline: fromTimeline,
      lockPath: join(scratch, 'lock'),
      logPath: join(scratch, 'log'),
      ...(repoIndex === undefined ? {} : { repo: repoIndex }),
    } as const;
    const t0 = Date.now();
    await rt.repo.restore(request, { timeoutMs: left() });
    let restoreMs = Date.now() - t0;
    say(`restored ${set.label} (delta) into ${leader.dataDir} in ${(restoreMs / 1000).toFixed(1)} s`);

    step = 'recovering to the target in a private postmaster';
    server = await scratchServer(rt, `${rt.layout.cluster}-in-place`, leader.dataDir, socketDir, run !== undefined);
    const recovered = await recoverToTarget(server, target, set.label, 'the cluster stays paused and stopped', left, (t) => rt.repo.restore({ ...request, target: t }, { timeoutMs: left() }), (q) =>
      say(`${describeTarget(target)} is in a quiet period (no commit after it in the archive${q.lastCommitAt === undefined ? '' : `, the last at ${q.lastCommitAt}`}): recovering to the last archived record, LSN ${q.lsn}`),
    );
    restoreMs += recovered.restoreMs;
    const recoveryMs = recovered.recoveryMs;
    const restored = server;
    const status = await restored.status(PG_QUERY_TIMEOUT_MS);
    const newTimeline = status.timeline;
    // Handed back to the agent, the server archives again and must not recover to the target
    // a second time should it ever start as a standby.
    for (const k of PGBACKREST_AUTO_CONF_KEYS) await restored.query(`ALTER SYSTEM RESET ${k}`, [], PG_QUERY_TIMEOUT_MS);
    const switchLsn = textOf((await restored.query('SELECT pg_current_wal_lsn()::text AS l', [], PG_QUERY_TIMEOUT_MS))[0]?.['l']) ?? '0/0';
    // The replicas' slots: a backup holds none, and the leader's agent, which restarts in place,
    // creates them only when the membership changes.
    for (const m of replicas) await restored.query('SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)', [slotNameFor(m.name)], PG_QUERY_TIMEOUT_MS);
    // The new timeline's first segment holds the switch from the old one: a replica restored from
    // the repository that finds only the old timeline's copy of it replays past the target and
    // can never follow. Completed here, it is pushed below with the history file.
    const firstSegment = textOf((await restored.query('SELECT pg_walfile_name(pg_switch_wal()) AS w', [], PG_QUERY_TIMEOUT_MS))[0]?.['w']);
    if (firstSegment === null) throw new WardenError('postgres-command-failed', 'pg_switch_wal() on the restored leader returned no segment');
    let check: InPlaceRestoreOutput['check'] = null;
    if (o.checkSql !== undefined) {
      const rows = await restored.query(o.checkSql, [], Math.min(left(), 60_000));
      const firstRow = rows[0];
      check = { sql: o.checkSql, value: textOf(firstRow === undefined ? undefined : Object.values(firstRow)[0]) };
    }
    await restored.stop('fast', 60_000);
    server = undefined;
    say(`recovered to the target and promoted onto timeline ${newTimeline} in ${(recoveryMs / 1000).toFixed(1)} s (private postmaster, archiving off); stopped it`);

    // Archiving was off when the new timeline began, so PostgreSQL did not queue its history
    // file: push it now, before any replica or later restore looks for the timeline.
    step = `pushing timeline ${newTimeline}'s history file into the repository`;
    const historyFile = `${newTimeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
    for (const f of [historyFile, firstSegment]) {
      await rt.repo.pushWal(leader.dataDir, f, { timeoutMs: Math.min(left(), 120_000), lockPath: join(scratch, 'lock'), logPath: join(scratch, 'log') });
      // Archived: PostgreSQL, archiving again once its agent starts it, need not push it again.
      await writeFile(join(leader.dataDir, 'pg_wal', 'archive_status', `${f}.done`), '', { mode: 0o600 });
      if (run !== undefined) await chown(join(leader.dataDir, 'pg_wal', 'archive_status', `${f}.done`), run.uid, run.gid);
    }
    await appendHistory(rt.target, { timeline: newTimeline, lsn: switchLsn, reason: `in-place restore to ${describeTarget(target)}`, timeMs: Date.now(), leader: leaderName });
    say(`pushed ${historyFile} and ${firstSegment} (the new timeline's first segment) into the repository`);

    // The replicas hold WAL past the target on the old timeline: they are re-created. Moved
    // aside, never deleted (like `warden reinit`).
    const moved: { name: string; movedTo: string }[] = [];
    for (const m of replicas) {
      step = `moving ${m.name}'s data directory aside`;
      const movedTo = `${m.dataDir}.before-restore-${stamp}`;
      if (existsSync(m.dataDir)) await rename(m.dataDir, movedTo);
      moved.push({ name: m.name, movedTo });
      say(`${m.name}: old data directory moved to ${movedTo}; its agent re-creates it on timeline ${newTimeline}`);
    }

    step = 'resuming the cluster';
    const t2 = Date.now();
    await setPause(rt.target, false);
    say(`resumed: ${leaderName} starts as primary on timeline ${newTimeline}, the replicas are re-created`);
    step = `waiting for every member to run on timeline ${newTimeline}`;
    await eventually(async () => {
      const v = await readClusterView(rt.target);
      const l = v.members.get(leaderName);
      if (v.leader?.name !== leaderName || l?.role !== 'primary' || l.state !== 'running' || l.timeline !== newTimeline) return undefined;
      return replicas.every((m) => {
        const r = v.members.get(m.name);
        return r?.role === 'replica' && r.state === 'streaming' && r.timeline === newTimeline;
      }) ? true : undefined;
    }, { timeoutMs: left(), intervalMs: 500, what: `the leader to run and every replica to stream on timeline ${newTimeline}` });
    const rejoinMs = Date.now() - t2;
    await rm(scratch, { recursive: true, force: true });
    const result: InPlaceRestoreOutput = {
      inPlace: true,
      leader: leaderName,
      label: set.label,
      target,
      fromTimeline,
      timeline: newTimeline,
      stopSeconds: stopMs / 1000,
      restoreSeconds: restoreMs / 1000,
      recoverySeconds: recoveryMs / 1000,
      rejoinSeconds: rejoinMs / 1000,
      totalSeconds: (Date.now() - started) / 1000,
      replicas: moved,
      check,
    };
    if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      process.stdout.write(
        `cluster ${rt.target.cluster} restored in place to ${describeTarget(target)}: timeline ${fromTimeline} → ${newTimeline}, ${leaderName} primary, ${replicas.length} replica(s) streaming, in ${result.totalSeconds.toFixed(1)} s (stop ${result.stopSeconds.toFixed(1)}, restore ${result.restoreSeconds.toFixed(1)}, recovery ${result.recoverySeconds.toFixed(1)}, rejoin ${result.rejoinSeconds.toFixed(1)})\n` +
          (check === null ? '' : `check: ${check.sql} → ${check.value ?? 'no rows'}\n`),
      );
    }
    return 0;
  } catch (e) {
    if (server !== undefined) await server.stop('fast', 60_000).catch((err: unknown) => process.stderr.write(`warden restore: stopping the private postmaster: ${describeError(err)}\n`));
    throw new WardenError('backup-command-failed', `in-place restore failed while ${step}: ${describeError(e)}; the cluster is left paused (nothing starts or promotes by itself): fix the cause and run the restore again, or \`warden resume\``, { cause: e });
  }
}

/** A standalone server on a restored data dir: its own port and socket, no upstream, archiving off. */
async function scratchServer(rt: BackupRuntime, name: string, dataDir: string, socketDir: string, asPostgres: boolean): Promise<LocalPostgres> {
  const password = (await readFile(join(rt.dir, 'secrets', 'superuser.password'), 'utf8')).trim();
  const replication = (await readFile(join(rt.dir, 'secrets', 'replication.password'), 'utf8')).trim();
  const port = await freePort('127.0.0.1');
  return new LocalPostgres({
    name,
    dataDir,
    binDir: PG_BIN_DIR,
    listen: { host: '127.0.0.1', port },
    socketDir,
    ...(asPostgres ? { runAsUser: 'postgres' } : {}),
    superuser: { username: rt.layout.superuser, password },
    replication: { username: 'replicator', password: replication },
    // Also in postgresql.auto.conf (pgBackRest's --archive-mode=off); said twice on purpose.
    parameters: { archive_mode: 'off' },
  });
}

// ---- registration -----------------------------------------------------------------------------

function formatOption(): Option {
  return new Option('--format <format>', 'output format').choices(['pretty', 'json']).default('pretty');
}

function positiveSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new WardenError('config-invalid', `--timeout-seconds: must be a positive number of seconds (got ${JSON.stringify(v)})`);
  return n;
}

/** Registers `backup`, `backups` and `restore-drill`. */
export function registerBackupCommands(program: Command): void {
  program
    .command('backup')
    .description('take a backup (from a healthy standby, else the primary; one at a time per cluster)')
    .option('--dir <dir>', 'runtime directory of `warden up`', '.warden')
    .option('--cluster <name>', 'one of the clusters of a `warden up --nodes` dir (default: the one it was made with)')
    .addOption(new Option('--type <type>', 'full copy, or changes since the last full (diff) or the last backup (incr)').choices([...BACKUP_TYPES]).default('full'))
    .option('--repo <repo>', 'the repository (repo1 … repo4, one of the spec\'s; default the first)')
    .option('--wait', 'run in the foreground and print the set when it is complete', false)
    .option('--timeout-seconds <s>', 'give up (and stop pgBackRest) after this long', positiveSeconds, DEFAULT_BACKUP_TIMEOUT_S)
    .addOption(formatOption())
    .action(async (o: { dir: string; type: BackupType; repo?: string; wait: boolean; timeoutSeconds: number; format: string }) => {
      process.exitCode = await runBackup(o);
    });

  program
    .command('expire')
    .description('remove the backup sets (and their WAL) the retention options no longer keep, or one set with --set; never beside a backup')
    .option('--dir <dir>', 'runtime directory of `warden up`', '.warden')
    .option('--cluster <name>', 'one of the clusters of a `warden up --nodes` dir (default: the one it was made with)')
    .option('--set <label>', 'remove this set and the sets that depend on it (never the newest)')
    .option('--repo <repo>', 'the repository (repo1 … repo4, one of the spec\'s; default every one)')
    .addOption(formatOption())
    .action(async (o: { dir: string; set?: string; repo?: string; format: string }) => {
      process.exitCode = await runExpire(o);
    });

  program
    .command('backups')
    .description('backup sets, the recoverable window and the recovery point now (WAL not yet archived)')
    .option('--dir <dir>', 'runtime directory of `warden up`', '.warden')
    .option('--cluster <name>', 'one of the clusters of a `warden up --nodes` dir (default: the one it was made with)')
    .addOption(formatOption())
    .action(async (o: { dir: string; format: string }) => {
      process.exitCode = await runBackups(o);
    });

  program
    .command('restore')
    .description('point-in-time recovery into a new data directory (DIR/restores/NEW), or of the running cluster itself (--in-place)')
    .option('--dir <dir>', 'runtime directory of `warden up`', '.warden')
    .option('--cluster <name>', 'one of the clusters of a `warden up --nodes` dir (default: the one it was made with)')
    .option('--time <t>', 'recover to this instant (with a time zone: 2026-12-02T03:04:05Z, "2026-12-02 03:04:05.123456+00")')
    .option('--lsn <lsn>', 'recover to this WAL position')
    .option('--xid <xid>', 'recover to the commit of this transaction')
    .option('--name <name>', 'recover to this restore point (pg_create_restore_point)')
    .option('--latest', 'recover every archived WAL', false)
    .option('--exclusive', 'stop just before the target (--time, --lsn, --xid) instead of just after', false)
    .option('--into <new>', 'the name of the new data directory: DIR/restores/<new>/data')
    .option('--in-place', 'restore the running cluster itself: paused, every member stopped, the leader recovered privately to the target, the replicas re-seeded, resumed on a new timeline', false)
    .option('--repo <repo>', 'the repository (repo1 … repo4, default the first)')
    .option('--check-sql <sql>', 'a query run on the recovered copy before it is stopped; its first value is reported')
    .option('--timeout-seconds <s>', 'give up after this long', positiveSeconds, 3600)
    .addOption(formatOption())
    .action(async (o: RestoreOptions) => {
      process.exitCode = await runRestore(o);
    });

  program
    .command('restore-drill')
    .description('restore the latest backup into scratch space, start it standalone, check it, report restore time and MB/s, remove it')
    .option('--dir <dir>', 'runtime directory of `warden up`', '.warden')
    .option('--cluster <name>', 'one of the clusters of a `warden up --nodes` dir (default: the one it was made with)')
    .option('--check-sql <sql>', 'a query run on the restored copy; its first value is reported', 'SELECT count(*) FROM pg_database')
    .option('--timeout-seconds <s>', 'give up after this long', positiveSeconds, 3600)
    .addOption(formatOption())
    .action(async (o: { dir: string; format: string; checkSql: string; timeoutSeconds: number }) => {
      process.exitCode = await runRestoreDrill(o);
    });
}
