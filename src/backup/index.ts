// The backup port and the pgBackRest adapter behind it (docs/architecture.md, "Backups").
export * from './backup-repository.js';
export { archiveCommand, CLOUD_STORAGE, isWardenOwnedOption, PGBACKREST_DEFAULTS, PGBACKREST_OPTION_NAME, pgOptions, cloudOptions, cloudRepoPath, describeRepo, renderPgBackRestConf, repoConf, repoIndexesOf, restoreCommand, shellQuote, type CloudStorage, type PgBackRestConfInput, type RepoConf } from './pgbackrest-config.js';
export { currentArchiveId, OTHER_STATUS, parsePgBackRestInfo, parseRepoLs, quoteSystemIds, type RepoLsEntry } from './pgbackrest-info.js';
export { pgBackRestErrorOf, pgBackRestFailure } from './pgbackrest-errors.js';
export { PgBackRestRepository, targetFlags, type PgBackRestRepositoryConfig } from './pgbackrest-repository.js';
export { recoveryPointOf, segmentEndLsn, WAL_SEGMENT_BYTES, type ArchiverStatus, type RecoveryPoint } from './recovery-point.js';
export { runPgBackRest, type RunIdentity } from './run-pgbackrest.js';
export { chooseBackupSource, type BackupSourceChoice, type MemberHealth } from './backup-source.js';
export { doneWalFiles, planArchiveContinuity, repoDirsOf, walFileOf, walNameOfRepoEntry, type ArchiveContinuityPlan, type ArchiveStatusInput, type WalFile, type WalFileKind } from './archive-continuity.js';
export { markUnarchivedWalReady, type ArchiveContinuityReport } from './mark-unarchived-wal.js';
export { ARCHIVE_HEALTH, ARCHIVE_HEALTH_STALE_MS, ARCHIVER_QUERY, archiverStatusOfRow, describeArchiveHealth, nextArchiveHealth, type ArchiveHealth } from './archive-health.js';
export { describeAge, describeLastBackup, LAST_BACKUP, type LastBackup } from './last-backup.js';
export { cronMatches, latestSlot, nextSlot, parseCron, type Cron, type CronError } from './cron.js';
export { abandonedOutcome, decodeSchedules, decodeSlotRecord, isAbandonedClaim, dueSlots, type SchedulesRecord, readSchedule, SCHEDULE_TYPES, slotDir, slotKey, slotKeysToPrune, SLOT_LOOK_BACK_MS, SLOT_RECORD, SLOTS_KEPT, type BackupSchedule, type SlotRecord } from './backup-schedule.js';
export { parseRestoreTarget, recoveryEndedShort, targetTimeMs, unreachableTarget, type ArchiveReach, type RecoveryEndedShort, type RestoreTargetOptions } from './restore-target.js';
export { seedReplicaFromRepository, seedVerdict, type SeedVerdict } from './replica-seed.js';
export { decodeDataSourceRecord, RESTORE_TARGET_JSON, restoreTargetOf, type DataSourceRecord } from './data-source-record.js';
