// bootstrap.method pgbackrest (spec.dataSource): the member that wins the bootstrap race restores
// another cluster's backup into its empty data directory instead of running initdb, recovers it to
// the target in a private postmaster with archiving off, and hands it to the bootstrap stopped,
// promoted, with this cluster's passwords and archiving settings (docs/architecture.md, "Backups",
// "A new cluster from another cluster's backups").
import { chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { decodeDataSourceRecord, PgBackRestRepository, type RestoreRequest, type RunIdentity } from '../backup/index.js';
import type { BootstrapRestorer } from '../agent/executor.js';
import { describeError, WardenError } from '../core/errors.js';
import { freePort } from '../core/free-port.js';
import { LocalPostgres } from '../postgres/postgres-instance.js';
import type { AgentConfig } from '../spec/index.js';
import { describeTarget, PGBACKREST_AUTO_CONF_KEYS, recoverToTarget } from './recover-to-target.js';

/** A restore of a large database takes long; the bootstrap gives it this much. */
const BOOTSTRAP_RESTORE_TIMEOUT_MS = 6 * 3600_000;
const QUERY_TIMEOUT_MS = 5_000;

/** The BootstrapRestorer of an agent whose config says bootstrap.method pgbackrest. */
export function dataSourceRestorer(cfg: AgentConfig, dataSourceFile: string, identity: RunIdentity | undefined): BootstrapRestorer {
  return async (op) => {
    const text = await readFile(dataSourceFile, 'utf8').catch((e: unknown) => {
      throw new WardenError('config-invalid', `bootstrap.pgbackrest.data_source ${dataSourceFile}: ${describeError(e)}`);
    });
    const decoded = decodeDataSourceRecord(text);
    if (!decoded.ok) throw new WardenError('config-invalid', `bootstrap.pgbackrest.data_source ${dataSourceFile}: ${decoded.error}`);
    const src = decoded.value;
    // Without the source's password (a repository given by its path) its superuser is trusted on
    // the private socket instead, whose directory only PostgreSQL's user (and root) can enter.
    const sourcePassword = src.superuserPasswordFile === undefined ? undefined : (await readFile(src.superuserPasswordFile, 'utf8')).replace(/\r?\n$/, '');
    if (sourcePassword === undefined) await checkPrivateSocketDir(cfg.postgres.socketDir);
    const started = Date.now();
    const deadline = started + BOOTSTRAP_RESTORE_TIMEOUT_MS;
    const left = (): number => Math.max(1000, deadline - Date.now());
    const signal = op.signal;
    const call = (): { timeoutMs: number; signal?: AbortSignal } => ({ timeoutMs: left(), ...(signal === undefined ? {} : { signal }) });

    // Lock, log and socket of this restore, beside the data directory: pgBackRest's defaults are
    // shared by every process on the machine, the source's own are the source's.
    const scratch = join(dirname(cfg.postgres.dataDir), 'bootstrap-restore');
    await rm(scratch, { recursive: true, force: true });
    for (const d of [scratch, join(scratch, 'lock'), join(scratch, 'log')]) {
      await mkdir(d, { recursive: true, mode: 0o750 });
      if (identity !== undefined) await chown(d, identity.uid, identity.gid);
    }
    await mkdir(cfg.postgres.dataDir, { recursive: true, mode: 0o700 });
    if (identity !== undefined) await chown(cfg.postgres.dataDir, identity.uid, identity.gid);

    const repo = new PgBackRestRepository({ stanza: src.stanza, configFile: src.configFile, ...(identity === undefined ? {} : { identity }) });
    // archive-mode=off: recovery reads the source's archive, and the copy never pushes into it.
    const request: RestoreRequest = {
      dataDir: cfg.postgres.dataDir,
      target: src.target,
      setLabel: src.setLabel,
      repo: src.repo,
      archiveMode: 'off',
      lockPath: join(scratch, 'lock'),
      logPath: join(scratch, 'log'),
      ...(src.targetTimeline === undefined ? {} : { targetTimeline: src.targetTimeline }),
    };
    await repo.restore(request, call());
    const restoreMs = Date.now() - started;

    // The restored roles are the source's: the private postmaster is reached with its password,
    // on a port of its own that no router or member knows. Its socket goes in the member's socket
    // dir (the member's own postmaster is not running yet; the port tells the two apart): that dir
    // was chosen to fit the 107 bytes a socket path may have, a dir beside the data may not
    // (node daemons' workload paths are deep).
    const server = new LocalPostgres({
      name: `${cfg.name}-bootstrap`,
      dataDir: cfg.postgres.dataDir,
      binDir: cfg.postgres.binDir,
      listen: { host: '127.0.0.1', port: await freePort('127.0.0.1') },
      socketDir: cfg.postgres.socketDir,
      ...(cfg.postgres.runAsUser === undefined ? {} : { runAsUser: cfg.postgres.runAsUser }),
      superuser: { username: cfg.postgres.superuser.username, password: sourcePassword ?? cfg.postgres.superuser.password },
      ...(sourcePassword === undefined ? { trustSuperuserOnSocket: true } : {}),
      replication: cfg.postgres.replication,
      parameters: { ...cfg.bootstrapDynamicConfig.postgresql.parameters, archive_mode: 'off' },
    });
    let running = true;
    try {
      const recovered = await recoverToTarget(server, src.target, src.setLabel, `the new cluster was not created (its data directory is moved aside)`, left, (t) => repo.restore({ ...request, target: t, delta: true }, call()));
      const status = await server.status(QUERY_TIMEOUT_MS);
      // From here the copy is this cluster: no recovery settings of the restore, archiving as its
      // agent configures it (into its own repository), and its own passwords.
      for (const k of PGBACKREST_AUTO_CONF_KEYS) await server.query(`ALTER SYSTEM RESET ${k}`, [], QUERY_TIMEOUT_MS);
      const { superuser, replication } = cfg.postgres;
      // A source that is a Warden cluster has the replication role; another may not: made then.
      const replicationRole = `${pg.escapeIdentifier(replication.username)} WITH LOGIN REPLICATION PASSWORD ${pg.escapeLiteral(replication.password)}`;
      await server.query(
        `DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${pg.escapeLiteral(replication.username)}) THEN ALTER ROLE ${replicationRole}; ${sourcePassword === undefined ? `ELSE CREATE ROLE ${replicationRole};` : ''} END IF; END $$`,
        [],
        QUERY_TIMEOUT_MS,
      );
      // Last: every query opens its own connection with the source's password.
      await server.query(`ALTER ROLE ${pg.escapeIdentifier(superuser.username)} WITH LOGIN SUPERUSER PASSWORD ${pg.escapeLiteral(superuser.password)}`, [], QUERY_TIMEOUT_MS);
      await server.stop('fast', 60_000);
      running = false;
      // Archiving was off when the new timeline began, so PostgreSQL queued no history file for
      // it: queued now, it reaches this cluster's own repository once its stanza exists.
      const history = `${status.timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
      const ready = join(cfg.postgres.dataDir, 'pg_wal', 'archive_status', `${history}.ready`);
      await writeFile(ready, '', { mode: 0o600 });
      if (identity !== undefined) await chown(ready, identity.uid, identity.gid);
      await rm(scratch, { recursive: true, force: true });
      return {
        message: `restored ${src.setLabel} of ${sourcePassword === undefined ? 'stanza' : 'cluster'} ${src.sourceCluster} and recovered it to ${describeTarget(src.target)}${recovered.quiet === undefined ? '' : ` (a quiet period: to the last archived record, LSN ${recovered.quiet.lsn})`}, promoted onto timeline ${status.timeline}; archiving toward the source was off throughout`,
        fields: { source: src.sourceCluster, stanza: src.stanza, set: src.setLabel, timeline: status.timeline, restoreMs: restoreMs + recovered.restoreMs, recoveryMs: recovered.recoveryMs },
      };
    } finally {
      if (running) await server.stop('immediate', 10_000).catch(() => undefined);
    }
  };
}

/**
 * The socket directory a trusting private postmaster listens in must be PostgreSQL's user's alone
 * (0700): anyone else who could enter it would connect as the superuser without a password.
 */
async function checkPrivateSocketDir(dir: string): Promise<void> {
  const st = await stat(dir).catch((e: unknown) => {
    throw new WardenError('config-invalid', `postgresql.socket_dir ${dir}: ${describeError(e)}`);
  });
  if ((st.mode & 0o077) !== 0) {
    throw new WardenError('config-invalid', `postgresql.socket_dir ${dir} is open to others (mode ${(st.mode & 0o777).toString(8)}): a bootstrap from a repository whose passwords are not known trusts the superuser on that socket, so the directory must be 0700`);
  }
}
