import { Counter, Gauge, Registry } from 'prom-client';
import type { ArchiveHealth, LastBackup } from '../backup/index.js';
import type { AgentSnapshot } from './agent.js';

/** A Prometheus registry whose gauges are read from the agent's snapshot at scrape time. */
export function createAgentMetrics(snapshot: () => AgentSnapshot, archive: () => ArchiveHealth | undefined = () => undefined, lastBackup: () => LastBackup | undefined = () => undefined): Registry {
  const registry = new Registry();
  const labels = (): { cluster: string; member: string } => {
    const s = snapshot();
    return { cluster: s.identity.cluster, member: s.identity.name };
  };
  const gauge = (name: string, help: string, read: (s: AgentSnapshot) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['cluster', 'member'],
      registers: [registry],
      collect() {
        this.set(labels(), read(snapshot()));
      },
    });
  };
  gauge('warden_is_leader', '1 when this member holds the leader key', (s) => (s.isLeader ? 1 : 0));
  gauge('warden_postgres_running', '1 when the local PostgreSQL runs', (s) => (s.pg?.process === 'running' ? 1 : 0));
  gauge('warden_is_primary', '1 when the local PostgreSQL runs read-write', (s) => (s.status !== undefined && !s.status.inRecovery ? 1 : 0));
  gauge('warden_is_streaming', '1 when the local replica streams from the leader', (s) => (s.status?.streaming === true ? 1 : 0));
  gauge('warden_timeline', 'PostgreSQL timeline', (s) => s.status?.timeline ?? 0);
  gauge('warden_wal_position_bytes', 'flushed (primary) or received/replayed (replica) WAL position', (s) => Number(s.status?.walPosition ?? 0n));
  gauge('warden_replication_lag_bytes', 'bytes behind the leader position last published in the DCS', (s) => {
    const leaderLsn = s.view?.status?.lsn;
    const mine = s.status?.walPosition;
    return leaderLsn !== undefined && mine !== undefined && leaderLsn > mine ? Number(leaderLsn - mine) : 0;
  });
  gauge('warden_dcs_reachable', '1 when the last DCS read succeeded', (s) => (s.dcsError === undefined ? 1 : 0));
  gauge('warden_lease_remaining_seconds', 'time left before the local lease deadline', (s) =>
    s.leaseDeadlineMs === undefined ? 0 : Math.max(0, (s.leaseDeadlineMs - Date.now()) / 1000),
  );
  gauge('warden_loop_duration_seconds', 'duration of the last HA loop', (s) => s.loopDurationMs / 1000);
  gauge('warden_pending_restart', '1 when a changed parameter needs a restart', (s) => (s.status?.pendingRestart === true ? 1 : 0));
  gauge('warden_invalid_records', 'keys of this cluster in the DCS refused by their decoder (see warden list)', (s) => (s.view?.invalid.size ?? 0) + (s.configProblem === undefined ? 0 : 1));
  gauge('warden_moved_aside_data_dirs', 'data directories this member moved aside (Warden never deletes them)', (s) => s.movedAside?.length ?? 0);
  gauge('warden_lease_ttl_seconds', 'TTL of the lease this agent holds, as etcd granted it (what a ttl change has put in force)', (s) => (s.leaseTtlMs ?? 0) / 1000);
  /** A gauge read from something only the leader knows: no sample while `source()` is undefined (or `read` gives null). */
  const leaderGauge = <T>(source: () => T | undefined) => (name: string, help: string, read: (x: T) => number | null): void => {
    new Gauge({
      name,
      help,
      labelNames: ['cluster', 'member'],
      registers: [registry],
      collect() {
        this.reset();
        const x = source();
        const v = x === undefined ? null : read(x);
        if (v !== null) this.set(labels(), v);
      },
    });
  };
  // The WAL archive, on the leader only (a replica does not archive: these have no sample there).
  const archiveGauge = leaderGauge(archive);
  archiveGauge('warden_archive_failing', '1 while the last archive attempt failed after the last success (leader only; never a reason to fail over)', (h) => (h.failing ? 1 : 0));
  archiveGauge('warden_archive_failing_since_timestamp_seconds', 'first failure of the current failing spell (leader only)', (h) => (h.failingSinceMs === null ? null : h.failingSinceMs / 1000));
  archiveGauge('warden_archive_failed_count', 'pg_stat_archiver.failed_count on the leader', (h) => h.failedCount);
  archiveGauge('warden_archive_last_success_timestamp_seconds', 'when the leader last archived a WAL file', (h) => (h.lastArchivedAtMs === null ? null : h.lastArchivedAtMs / 1000));
  archiveGauge('warden_archive_recovery_point_bytes', 'WAL bytes written on the leader and not yet in the repository (the recovery point)', (h) => h.bytesNotArchived);
  archiveGauge('warden_archive_recovery_point_seconds', 'how long the WAL not yet in the repository has waited', (h) => h.secondsNotArchived);
  // The last completed backup (`backup/last`), on the leader only, like the archive.
  const backupGauge = leaderGauge(lastBackup);
  backupGauge('warden_backup_last_success_timestamp_seconds', 'when the last backup completed (leader only)', (b) => b.finishedAtMs / 1000);
  backupGauge('warden_backup_last_age_seconds', 'seconds since the last backup completed (leader only)', (b) => Math.max(0, (Date.now() - b.finishedAtMs) / 1000));
  backupGauge('warden_backup_last_size_bytes', 'size of the database when the last backup was taken (leader only)', (b) => b.databaseBytes);
  backupGauge('warden_backup_last_repository_bytes', 'size in the repository of the last backup with what it references (leader only)', (b) => b.repositoryBytes);
  backupGauge('warden_backup_last_duration_seconds', 'how long the last backup ran (leader only)', (b) => b.durationSeconds);
  new Counter({
    name: 'warden_decisions_total',
    help: 'HA loop decisions by reason code',
    labelNames: ['cluster', 'member', 'code'],
    registers: [registry],
    collect() {
      this.reset();
      const s = snapshot();
      for (const [code, n] of s.decisions) this.inc({ ...labels(), code }, n);
    },
  });
  return registry;
}
