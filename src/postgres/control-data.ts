// What pg_controldata prints about a data directory, read into the fields the agent uses. Pure:
// LocalPostgres runs the command.
import { parseLsn } from '../core/lsn.js';
import type { DataDirState } from './postgres.js';
import type { HotStandbyParameter } from './server-status.js';

/** pg_controldata's line for each hot-standby parameter: the value the primary last ran with, as this directory has replayed it. */
const CONTROL_SETTING_LINES: Readonly<Record<HotStandbyParameter, string>> = {
  max_connections: 'max_connections setting',
  max_locks_per_transaction: 'max_locks_per_xact setting',
  max_prepared_transactions: 'max_prepared_xacts setting',
  max_wal_senders: 'max_wal_senders setting',
  max_worker_processes: 'max_worker_processes setting',
};

/** pg_controldata's `Name: value` lines as a map (names and values trimmed; lines without a colon skipped). */
export function parseControlData(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return fields;
}

/**
 * The state of an initialized data directory from pg_controldata's output: system identifier,
 * cluster state, the latest checkpoint's timeline and location; a field the output lacks is left
 * out. Throws (WardenError 'internal') when the checkpoint location is not an LSN.
 */
export function dataDirStateFromControlData(text: string): DataDirState {
  const fields = parseControlData(text);
  const sysid = fields.get('Database system identifier');
  const clusterState = fields.get('Database cluster state');
  const tli = fields.get("Latest checkpoint's TimeLineID");
  const checkpoint = fields.get('Latest checkpoint location');
  const controlSettings = hotStandbySettings(fields);
  return {
    kind: 'initialized',
    ...(checkpoint === undefined ? {} : { checkpointLsn: parseLsn(checkpoint) }),
    ...(sysid === undefined ? {} : { systemIdentifier: sysid }),
    ...(clusterState === undefined ? {} : { clusterState }),
    ...(tli === undefined ? {} : { timeline: Number.parseInt(tli, 10) }),
    ...(controlSettings === undefined ? {} : { controlSettings }),
  };
}

/** The hot-standby parameters' values pg_control holds; undefined when the output names none of them (a value that is not an integer is left out). */
function hotStandbySettings(fields: ReadonlyMap<string, string>): Partial<Record<HotStandbyParameter, number>> | undefined {
  const out: Partial<Record<HotStandbyParameter, number>> = {};
  let any = false;
  for (const [name, line] of Object.entries(CONTROL_SETTING_LINES) as [HotStandbyParameter, string][]) {
    const v = fields.get(line);
    if (v === undefined || !/^[0-9]+$/.test(v)) continue;
    out[name] = Number.parseInt(v, 10);
    any = true;
  }
  return any ? out : undefined;
}

/** True when the cluster state says the server was shut down cleanly (as a primary or in recovery). */
export function isCleanShutdown(clusterState: string | undefined): boolean {
  return clusterState === 'shut down' || clusterState === 'shut down in recovery';
}
