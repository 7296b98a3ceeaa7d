import { spawnSync } from 'node:child_process';
import { setPriority } from 'node:os';
import { Agent } from '../agent/agent.js';
import { createLogger } from '../agent/logger.js';
import { createAgentMetrics } from '../agent/metrics.js';
import { commandHooks, withPrePromoteStep } from '../agent/hooks.js';
import type { Logger } from '../agent/logger.js';
import { ArchiveWatch } from '../agent/archive-watch.js';
import { BackupScheduler } from '../controller/backup-scheduler.js';
import { createRestApi, type PublishedSnapshot } from '../agent/rest-api.js';
import { clusterPrefix, KEYS } from '../ha/index.js';
import { systemClock } from '../core/clock.js';
import { describeError } from '../core/errors.js';
import { isPortInUse } from '../core/free-port.js';
import { EtcdClient } from '../dcs/etcd-client.js';
import { LocalPostgres } from '../postgres/postgres-instance.js';
import { archiveCommand, markUnarchivedWalReady, PgBackRestRepository, restoreCommand, seedReplicaFromRepository, type RunIdentity } from '../backup/index.js';
import type { ReplicaSeeder } from '../agent/executor.js';
import { chown, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isWardenError } from '../core/errors.js';
import { cancelledError } from '../postgres/progress.js';
import { formatSpecError, loadAgentConfig, type AgentConfig } from '../spec/index.js';
import { withRunAsUserDefault } from '../spec/agent-config.js';
import { dataSourceRestorer } from './data-source-bootstrap.js';

const AGENT_NICE = -5;

/**
 * How long a promotion waits for the repository to say which WAL it holds (archive continuity,
 * below): a failover or switchover is late by at most this much (a switchover's write gap should
 * stay under a second with a slow archive); past it every done segment is pushed again, which is
 * safe. A local repository answers in 80-160 ms (docs/benchmarks.md).
 */
const ARCHIVE_CONTINUITY_TIMEOUT_MS = 1_000;
/** How often the leader reads pg_stat_archiver for /metrics and `warden list`, and the bound of each read and write. */
const ARCHIVE_WATCH_INTERVAL_MS = 5_000;
const ARCHIVE_WATCH_TIMEOUT_MS = 2_000;
/** How often the leader looks for a due backup slot (a slot starts at most this late), and how long one scheduled backup may run. */
const SCHEDULER_INTERVAL_MS = 5_000;
const SCHEDULED_BACKUP_TIMEOUT_MS = 6 * 3600_000;

/** `warden agent --config FILE`: runs one member's HA loop and REST API until SIGTERM/SIGINT. Returns the exit code. */
export async function runAgentCommand(configFile: string): Promise<number> {
  const loaded = await loadAgentConfig(configFile, process.env);
  if (!loaded.ok) {
    for (const e of loaded.errors) process.stderr.write(`${formatSpecError(e)}\n`);
    return 2;
  }
  const cfg = withRunAsUserDefault(loaded.config, process.getuid?.() === 0);
  const log = createLogger({ level: cfg.log.level, file: cfg.log.file, name: cfg.name });
  raisePriority(log);
  for (const n of loaded.notices) log.warn({}, formatSpecError(n));

  const { host: apiHost, port: apiPort } = cfg.restApi.listen;
  if (await isPortInUse(apiPort, apiHost)) {
    process.stderr.write(`REST API port ${apiHost}:${apiPort} is already in use (restapi.listen in ${configFile})\n`);
    return 1;
  }
  const dcs = new EtcdClient({
    endpoints: cfg.etcdEndpoints,
    defaultTimeoutMs: cfg.bootstrapDynamicConfig.retry_timeout * 1000,
    ...(cfg.etcdTls === undefined ? {} : { tls: cfg.etcdTls }),
    ...(cfg.etcdAuth === undefined ? {} : { auth: cfg.etcdAuth }),
  });
  const pg = new LocalPostgres(
    {
      name: cfg.name,
      dataDir: cfg.postgres.dataDir,
      binDir: cfg.postgres.binDir,
      listen: cfg.postgres.listen,
      socketDir: cfg.postgres.socketDir,
      ...(cfg.postgres.runAsUser === undefined ? {} : { runAsUser: cfg.postgres.runAsUser }),
      superuser: cfg.postgres.superuser,
      replication: cfg.postgres.replication,
      parameters: cfg.bootstrapDynamicConfig.postgresql.parameters,
      ...(cfg.postgres.archive === undefined
        ? {}
        : {
            archive: {
              archiveCommand: archiveCommand(cfg.postgres.archive.pgbackrestConfig, cfg.postgres.archive.stanza),
              restoreCommand: restoreCommand(cfg.postgres.archive.pgbackrestConfig, cfg.postgres.archive.stanza),
            },
          }),
    },
    log,
  );
  const agent = new Agent(
    {
      name: cfg.name,
      cluster: cfg.cluster,
      apiUrl: `${cfg.restApi.tls === undefined ? 'http' : 'https'}://${cfg.restApi.connectAddress.host}:${cfg.restApi.connectAddress.port}`,
      pgHost: cfg.postgres.connectAddress.host,
      pgPort: cfg.postgres.connectAddress.port,
      tags: cfg.tags,
      bootstrapConfig: cfg.bootstrapDynamicConfig,
    },
    {
      dcs,
      pg,
      clock: systemClock,
      log,
      hooks:
        cfg.postgres.archive === undefined
          ? commandHooks(cfg.postgres, cfg.cluster, log)
          : withPrePromoteStep(commandHooks(cfg.postgres, cfg.cluster, log), archiveContinuityStep(cfg.postgres.dataDir, cfg.postgres.archive, cfg.postgres.runAsUser, log)),
      ...(cfg.postgres.archive === undefined ? {} : { seedReplica: replicaSeeder(cfg.postgres.dataDir, cfg.postgres.archive, cfg.postgres.runAsUser) }),
      // Patroni's custom bootstrap: another cluster's backup instead of initdb (spec.dataSource).
      ...(cfg.bootstrapMethod.kind === 'pgbackrest'
        ? { restoreBootstrap: dataSourceRestorer(cfg, cfg.bootstrapMethod.dataSourceFile, cfg.postgres.runAsUser === undefined ? undefined : identityOf(cfg.postgres.runAsUser)) }
        : {}),
      ...(cfg.restApi.authentication === undefined ? {} : { restAuth: cfg.restApi.authentication }),
      // Calls to peers (leader race, failsafe) trust the same CA and present this member's certificate.
      ...(cfg.restApi.tls === undefined ? {} : { peerTls: { cert: cfg.restApi.tls.cert, key: cfg.restApi.tls.key, ...(cfg.restApi.tls.ca === undefined ? {} : { ca: cfg.restApi.tls.ca }) } }),
    },
  );
  // Beside the loop, never in it: a failing archive is reported and never causes a failover.
  const archiveWatch =
    cfg.postgres.archive === undefined
      ? undefined
      : new ArchiveWatch({
          pg,
          dcs,
          key: `${clusterPrefix(cfg.cluster)}${KEYS.backupArchive}`,
          lastBackupKey: `${clusterPrefix(cfg.cluster)}${KEYS.backupLast}`,
          member: cfg.name,
          isArchiving: () => {
            const s = agent.snapshot();
            return s.isLeader && s.status !== undefined && !s.status.inRecovery;
          },
          clock: systemClock,
          log,
          intervalMs: ARCHIVE_WATCH_INTERVAL_MS,
          timeoutMs: ARCHIVE_WATCH_TIMEOUT_MS,
          ...(cfg.postgres.archive.createStanza === true ? { ensureStanza: stanzaCreator(cfg.postgres, cfg.postgres.archive) } : {}),
        });
  // The leader's agent runs the backup schedules until a controller exists (docs/architecture.md, "Backups").
  const scheduler =
    cfg.postgres.archive === undefined
      ? undefined
      : new BackupScheduler({
          dcs,
          prefix: clusterPrefix(cfg.cluster),
          cluster: cfg.cluster,
          member: cfg.name,
          isLeader: () => {
            const s = agent.snapshot();
            return s.isLeader && s.status !== undefined && !s.status.inRecovery;
          },
          clock: systemClock,
          log,
          intervalMs: SCHEDULER_INTERVAL_MS,
          dcsTimeoutMs: ARCHIVE_WATCH_TIMEOUT_MS,
          backupTimeoutMs: SCHEDULED_BACKUP_TIMEOUT_MS,
        });
  const published = (): PublishedSnapshot => {
    const archive = archiveWatch?.current();
    return archive === undefined ? agent.snapshot() : { ...agent.snapshot(), archive };
  };
  const metrics = createAgentMetrics(() => agent.snapshot(), () => archiveWatch?.current(), () => archiveWatch?.lastBackup());
  const app = createRestApi(published, metrics, {
    snapshot: () => agent.snapshot(),
    requestOperation: (op, timeoutMs) => agent.requestOperation(op, timeoutMs),
    poke: () => agent.poke(),
    scheduleRestart: (s) => agent.scheduleRestart(s),
    cancelScheduledRestart: () => agent.cancelScheduledRestart(),
    dcs,
    cluster: cfg.cluster,
    ...(cfg.restApi.authentication === undefined ? {} : { auth: cfg.restApi.authentication }),
    ...(cfg.restApi.allowlist === undefined ? {} : { allowlist: cfg.restApi.allowlist }),
    requireClientCert: cfg.restApi.tls !== undefined && cfg.restApi.tls.verifyClient !== 'none',
  });
  const server = await app.listen(apiHost, apiPort, 'REST API', cfg.restApi.tls);
  log.info({ api: `http://${apiHost}:${apiPort}`, etcd: cfg.etcdEndpoints, dataDir: cfg.postgres.dataDir }, 'agent starting');
  try {
    await agent.start();
    archiveWatch?.start();
    scheduler?.start();
  } catch (e) {
    log.error({ err: describeError(e) }, 'agent could not start');
    process.stderr.write(`${describeError(e)}\n`);
    server.close();
    dcs.close();
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, 'stopping: PostgreSQL fast shutdown, then lease revoke');
      archiveWatch?.stop();
      scheduler?.stop();
      void agent
        .stop()
        .catch((e: unknown) => log.error({ err: describeError(e) }, 'stop failed'))
        .finally(() => {
          server.close();
          dcs.close();
          resolve(0);
        });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

/**
 * Before a standby is promoted, the WAL it received but the old primary never archived is marked
 * for archiving again (invariant 9 in docs/architecture.md; src/backup/archive-continuity.ts). It
 * never blocks the promotion: a broken repository is logged, the promotion goes on.
 */
function archiveContinuityStep(dataDir: string, archive: { pgbackrestConfig: string; stanza: string }, runAsUser: string | undefined, log: Logger): () => Promise<void> {
  const identity = runAsUser === undefined ? undefined : identityOf(runAsUser);
  const repo = new PgBackRestRepository({ stanza: archive.stanza, configFile: archive.pgbackrestConfig, ...(identity === undefined ? {} : { identity }) });
  return async () => {
    try {
      const r = await markUnarchivedWalReady(dataDir, repo, { timeoutMs: ARCHIVE_CONTINUITY_TIMEOUT_MS });
      const fields = { markedReady: r.markedReady, alreadyArchived: r.archived, elapsedMs: r.elapsedMs, ...(r.repositoryError === undefined ? {} : { repositoryError: r.repositoryError }) };
      if (r.repositoryError !== undefined) log.warn(fields, `archive continuity: the repository could not be asked; ${r.markedReady.length} received WAL files marked for archiving again`);
      else log.info(fields, `archive continuity: ${r.markedReady.length} received WAL files the repository lacks marked for archiving, ${r.archived} already archived`);
    } catch (e) {
      log.error({ err: describeError(e) }, 'archive continuity: could not mark unarchived WAL before promotion; the repository may miss old-timeline WAL');
    }
  };
}

/** How long seeding a replica from the repository may take (a large database). */
const REPLICA_SEED_TIMEOUT_MS = 6 * 3600_000;

/**
 * Replicas from the repository (docs/architecture.md, "Backups"): an empty or missing data
 * directory is restored from the newest backup of this system as a standby. When the repository
 * cannot serve it (no backup yet, another system's stanza, a failed restore) everything the
 * restore wrote is removed — the directory was empty — and the clone goes on with pg_basebackup.
 */
function replicaSeeder(dataDir: string, archive: { pgbackrestConfig: string; stanza: string }, runAsUser: string | undefined): ReplicaSeeder {
  const identity = runAsUser === undefined ? undefined : identityOf(runAsUser);
  const repo = new PgBackRestRepository({ stanza: archive.stanza, configFile: archive.pgbackrestConfig, ...(identity === undefined ? {} : { identity }) });
  return async ({ systemIdentifier }, op) => {
    const before = await readdir(dataDir).then(
      (entries) => (entries.length === 0 ? ('empty' as const) : ('files' as const)),
      () => 'missing' as const,
    );
    if (before === 'files') return { restored: false, why: `${dataDir} is not empty` };
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    if (identity !== undefined) await chown(dataDir, identity.uid, identity.gid);
    const removeWritten = async (): Promise<void> => {
      if (before === 'missing') await rm(dataDir, { recursive: true, force: true });
      else for (const e of await readdir(dataDir).catch(() => [] as string[])) await rm(join(dataDir, e), { recursive: true, force: true });
    };
    try {
      const v = await seedReplicaFromRepository(repo, { dataDir, systemIdentifier }, { timeoutMs: REPLICA_SEED_TIMEOUT_MS, ...(op.signal === undefined ? {} : { signal: op.signal }) });
      if (v.kind === 'restore') return { restored: true, label: v.set.label };
      await removeWritten();
      return { restored: false, why: v.why };
    } catch (e) {
      await removeWritten();
      if (isWardenError(e, 'operation-cancelled')) throw e;
      if (op.signal?.aborted === true) throw cancelledError('standby restore from the repository', op.signal);
      return { restored: false, why: `the standby restore failed: ${describeError(e)}` };
    }
  };
}

/** uid and gid of an OS user (pgBackRest runs as PostgreSQL's run user), or undefined when unknown. */
function identityOf(user: string): RunIdentity | undefined {
  const uid = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', user], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * The agent renews the lease: when both cores are busy (PostgreSQL, clients), a starved agent would
 * fence a healthy primary. As root it raises its own scheduling priority (nice −5); PostgreSQL,
 * started later as its child, resets to 0 (setpriv runs it at the default niceness).
 */
function raisePriority(log: { warn(obj: object, msg: string): void }): void {
  if (process.getuid?.() !== 0) return;
  try {
    setPriority(0, AGENT_NICE);
  } catch (e) {
    log.warn({ err: describeError(e) }, 'could not raise the agent priority');
  }
}

/** How long one stanza-create may take (it reads pg_control and writes the repositories' info files). */
const STANZA_CREATE_TIMEOUT_MS = 120_000;

/**
 * The leader's stanza-create (postgresql.archive.create_stanza, set by node daemons): this member's
 * server as pg1, through its own pgbackrest.conf. pgBackRest leaves an existing stanza of this
 * system as it is and refuses one made by another, naming both system ids.
 */
function stanzaCreator(pgCfg: AgentConfig['postgres'], archive: { pgbackrestConfig: string; stanza: string }): () => Promise<void> {
  const identity = pgCfg.runAsUser === undefined ? undefined : identityOf(pgCfg.runAsUser);
  const repo = new PgBackRestRepository({ stanza: archive.stanza, configFile: archive.pgbackrestConfig, ...(identity === undefined ? {} : { identity }) });
  return () => repo.createStanza({ dataDir: pgCfg.dataDir, port: pgCfg.listen.port, socketDir: pgCfg.socketDir }, { timeoutMs: STANZA_CREATE_TIMEOUT_MS });
}
