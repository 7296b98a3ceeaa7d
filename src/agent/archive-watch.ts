// Watches the WAL archive while this member is the leader: pg_stat_archiver every few seconds,
// kept for /metrics and GET /patroni, and written to the `backup/archive` key for `warden list`.
// Deliberately outside the HA loop: nothing here feeds decide(), so a failing archive is reported
// and never causes a failover or a demotion (docs/architecture.md, "Backups").
import { ARCHIVER_QUERY, archiverStatusOfRow, LAST_BACKUP, nextArchiveHealth, type ArchiveHealth, type LastBackup } from '../backup/index.js';
import { decodeJson } from '../core/decode.js';
import { runEvery, type Clock, type Periodic } from '../core/clock.js';
import { describeError } from '../core/errors.js';
import type { Dcs } from '../dcs/dcs.js';
import type { PostgresInstance } from '../postgres/postgres.js';
import type { Logger } from './logger.js';

/** What the watch needs: the local server, the DCS key it writes, and whether this member archives now. */
export interface ArchiveWatchDeps {
  readonly pg: Pick<PostgresInstance, 'query'>;
  readonly dcs: Pick<Dcs, 'put' | 'get'>;
  /** The full `backup/archive` key of this cluster. */
  readonly key: string;
  /** The full `backup/last` key of this cluster, read on each look for /metrics (the last backup's age, size, duration). */
  readonly lastBackupKey?: string;
  readonly member: string;
  /** True while this member holds the leader key and its PostgreSQL runs read-write (only the leader archives). */
  readonly isArchiving: () => boolean;
  readonly clock: Clock;
  readonly log: Logger;
  readonly intervalMs: number;
  /** Bound of the query and of the DCS write. */
  readonly timeoutMs: number;
  /**
   * Creates the stanza in the repositories (idempotent: pgBackRest accepts an existing stanza of
   * this cluster and refuses one of another). Given, it runs once per leadership before the first
   * look, and again each look until it succeeds — node daemons have no `warden up` that does it.
   */
  readonly ensureStanza?: () => Promise<void>;
}

/** Polls the archiver on the leader; `current()` is the last health seen (undefined on a replica). */
export class ArchiveWatch {
  private last: ArchiveHealth | undefined;
  private runner: Periodic | undefined;
  private lastError: string | undefined;
  private lastBackupSeen: LastBackup | undefined;
  private stanzaReady = false;
  private lastStanzaError: string | undefined;

  constructor(private readonly deps: ArchiveWatchDeps) {}

  /** The archive's health as last seen on this member while it was the leader. */
  current(): ArchiveHealth | undefined {
    return this.last;
  }

  /** The last completed backup as last read from `backup/last` while this member was the leader. */
  lastBackup(): LastBackup | undefined {
    return this.lastBackupSeen;
  }

  start(): void {
    this.runner = runEvery(this.deps.clock, this.deps.intervalMs, () => this.tick());
  }

  stop(): void {
    this.runner?.stop();
  }

  /** One look: query, remember, publish. Failures are logged once per distinct message and leave the last health in place, marked by its age. */
  async tick(): Promise<void> {
    const d = this.deps;
    if (!d.isArchiving()) {
      this.last = undefined;
      this.lastBackupSeen = undefined;
      this.stanzaReady = false;
      return;
    }
    if (d.ensureStanza !== undefined && !this.stanzaReady) await this.createStanza(d.ensureStanza);
    if (d.lastBackupKey !== undefined) await this.readLastBackup(d.lastBackupKey);
    try {
      const rows = await d.pg.query(ARCHIVER_QUERY, [], d.timeoutMs);
      const decoded = archiverStatusOfRow(rows[0]);
      if (!decoded.ok) throw new Error(decoded.error);
      const prevFailing = this.last?.failing === true;
      this.last = nextArchiveHealth(this.last, d.member, decoded.value);
      if (this.last.failing && !prevFailing) d.log.warn({ lastFailedWal: this.last.lastFailedWal, failedCount: this.last.failedCount, bytesNotArchived: this.last.bytesNotArchived }, 'archive: archive_command is failing (reported, never a reason to fail over)');
      else if (!this.last.failing && prevFailing) d.log.info({ lastArchivedWal: this.last.lastArchivedWal }, 'archive: archiving works again');
      await d.dcs.put(d.key, JSON.stringify(this.last), { timeoutMs: d.timeoutMs });
      this.lastError = undefined;
    } catch (e) {
      const why = describeError(e);
      if (why !== this.lastError) d.log.warn({ err: why }, 'archive: could not read or publish the archiver status');
      this.lastError = why;
    }
  }

  private async createStanza(ensure: () => Promise<void>): Promise<void> {
    const d = this.deps;
    try {
      await ensure();
      this.stanzaReady = true;
      this.lastStanzaError = undefined;
      d.log.info({}, 'archive: the stanza exists in the backup repositories');
    } catch (e) {
      const why = describeError(e);
      if (why !== this.lastStanzaError) d.log.error({ err: why }, 'archive: cannot create the stanza in the backup repositories: WAL is not archived until it exists (retried each look)');
      this.lastStanzaError = why;
    }
  }

  private async readLastBackup(key: string): Promise<void> {
    const d = this.deps;
    try {
      const kv = await d.dcs.get(key, { timeoutMs: d.timeoutMs });
      if (kv === undefined) {
        this.lastBackupSeen = undefined;
        return;
      }
      const decoded = decodeJson(LAST_BACKUP, kv.value);
      if (!decoded.ok) throw new Error(`invalid record ${key}: ${decoded.error}`);
      this.lastBackupSeen = decoded.value;
    } catch (e) {
      const why = describeError(e);
      if (why !== this.lastError) d.log.warn({ err: why }, 'backup: could not read the last backup record');
      this.lastError = why;
    }
  }
}
