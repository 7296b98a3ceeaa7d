// The text of every file the agent writes into or next to a data directory: warden.conf, the
// include line of postgresql.conf, pg_hba.conf, the libpq password file and the connection strings
// for streaming and pg_rewind. Pure: LocalPostgres decides where and when to write them.
import { isIP } from 'node:net';
import { WardenError } from '../core/errors.js';
import type { Credentials, Endpoint, PostgresInstanceConfig, ReplicationRole, RuntimeSettings } from './postgres.js';
import { HOT_STANDBY_PARAMETERS, type HotStandbyParameter } from './server-status.js';

/** Name of the file Warden owns inside the data dir; postgresql.conf includes it. */
export const WARDEN_CONF = 'warden.conf';

/** The line that makes postgresql.conf read warden.conf last, so that Warden's settings win. */
export const INCLUDE_LINE = `include_if_exists = '${WARDEN_CONF}'`;

/** libpq connect timeout (seconds) for pg_basebackup, pg_rewind and primary_conninfo. */
export const LIBPQ_CONNECT_TIMEOUT_S = 2;

/** Physical replication slot names PostgreSQL accepts. */
export const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

/** Settings Warden needs for replication, rewind and its own connections; user parameters never override them. */
export const REQUIRED_NAMES: ReadonlySet<string> = new Set([
  'listen_addresses',
  'port',
  'unix_socket_directories',
  'wal_level',
  'hot_standby',
  'wal_log_hints',
  'password_encryption',
  'primary_conninfo',
  'synchronous_standby_names',
  'primary_slot_name',
  'recovery_target_timeline',
  'data_directory',
  'config_file',
  'hba_file',
  'ident_file',
]);

/** Settings Warden owns when continuous archiving is configured (PostgresInstanceConfig.archive). */
export const ARCHIVE_NAMES: ReadonlySet<string> = new Set(['archive_mode', 'archive_command', 'archive_library', 'restore_command']);

/**
 * With archiving: a segment is archived at least once a minute even when little is written, so
 * the recovery point stays bounded on a quiet cluster (a user may change it).
 */
const ARCHIVE_DEFAULTS: Readonly<Record<string, string>> = { archive_timeout: '60s' };

/** Floors that a user may raise but not lower. */
const MINIMUMS: Readonly<Record<string, number>> = { max_wal_senders: 10, max_replication_slots: 10 };

/** Defaults that a user may override. */
// wal_retrieve_retry_interval 250ms, not PostgreSQL's 5 s: a promotion ends the WAL senders of the
// replicas that re-pointed to the candidate a moment before it promoted (and a rejoining replica's
// slot may be created a moment after it connects); each then waits this long before streaming
// again, and in strict synchronous mode every commit waits for that replica (docs/architecture.md,
// "The router" and "Nodes and the controller": the write gap of a switchover).
const DEFAULTS: Readonly<Record<string, string>> = { wal_keep_size: '128MB', hot_standby_feedback: 'on', wal_retrieve_retry_interval: '250ms' };

/** One PostgreSQL setting's value as warden.conf holds it. */
export type SettingValue = string | number | boolean;

/** What `wardenSettings` needs to know about the instance and its role. */
export interface WardenSettingsInput {
  readonly config: Pick<PostgresInstanceConfig, 'name' | 'listen' | 'socketDir' | 'replication' | 'parameters' | 'archive'>;
  /** The runtime settings last given (their parameters replace the config's). */
  readonly runtime: RuntimeSettings;
  readonly role: ReplicationRole;
  /** The run user's libpq password file, named in primary_conninfo. */
  readonly pgpassPath: string;
  /** The hot-standby parameters as the data dir's pg_control holds them (DataDirState.controlSettings): a replica runs with at least these. */
  readonly controlSettings?: Readonly<Partial<Record<HotStandbyParameter, number>>>;
}

/** A hot-standby parameter a replica runs above its configured value, because pg_control holds a higher one. */
export interface RaisedSetting {
  readonly name: HotStandbyParameter;
  readonly configured: number;
  readonly control: number;
}

/** PostgreSQL 15's defaults of the hot-standby parameters, for one the configuration leaves unset. */
const HOT_STANDBY_DEFAULTS: Readonly<Record<HotStandbyParameter, number>> = {
  max_connections: 100,
  max_locks_per_transaction: 64,
  max_prepared_transactions: 0,
  max_wal_senders: 10,
  max_worker_processes: 8,
};

/**
 * The settings of warden.conf for `role`: Warden's defaults, then the user's parameters (the ones
 * Warden sets itself are left out and named in `ignored`; with `config.archive`, the archive settings
 * too), the floors, and Warden's required settings last. Throws 'config-invalid' for a replica slot name PostgreSQL would refuse.
 */
export function wardenSettings(input: WardenSettingsInput): { settings: Map<string, SettingValue>; ignored: string[]; raised: RaisedSetting[] } {
  const { config, runtime, role, pgpassPath } = input;
  const { listen, socketDir, name, replication } = config;
  const parameters = runtime.parameters ?? config.parameters;
  const settings = new Map<string, SettingValue>();
  const ignored: string[] = [];
  const archive = config.archive;
  for (const [k, v] of Object.entries(DEFAULTS)) settings.set(k, v);
  if (archive !== undefined) for (const [k, v] of Object.entries(ARCHIVE_DEFAULTS)) settings.set(k, v);
  for (const [k, v] of Object.entries(parameters)) {
    if (REQUIRED_NAMES.has(k) || (archive !== undefined && ARCHIVE_NAMES.has(k))) {
      ignored.push(k);
      continue;
    }
    settings.set(k, v);
  }
  for (const [k, floor] of Object.entries(MINIMUMS)) {
    const v = Number(settings.get(k));
    settings.set(k, Number.isFinite(v) && v > floor ? v : floor);
  }
  const raised = role.kind === 'replica' ? raiseToControl(settings, input.controlSettings ?? {}) : [];
  settings.set('listen_addresses', listen.host);
  settings.set('port', listen.port);
  settings.set('unix_socket_directories', socketDir);
  settings.set('wal_level', 'replica');
  settings.set('hot_standby', true);
  settings.set('wal_log_hints', true); // pg_rewind needs it (checksums are off)
  settings.set('password_encryption', 'scram-sha-256');
  settings.set('recovery_target_timeline', 'latest');
  settings.set('synchronous_standby_names', role.kind === 'primary' ? (runtime.synchronousStandbyNames ?? '') : '');
  if (archive !== undefined) {
    // `on`, not `always`: a replica must not archive (invariant 9 in docs/architecture.md: only the
    // leader archives); after a promotion the same setting makes the new primary archive.
    settings.set('archive_mode', 'on');
    settings.set('archive_command', archive.archiveCommand);
    settings.set('restore_command', archive.restoreCommand);
  }
  if (role.kind === 'replica' && role.upstream !== undefined) {
    settings.set('primary_conninfo', primaryConninfo({ upstream: role.upstream, user: replication.username, passfile: pgpassPath, applicationName: name }));
    if (role.slotName !== undefined) {
      if (!SLOT_NAME.test(role.slotName)) {
        throw new WardenError('config-invalid', `invalid replication slot name ${JSON.stringify(role.slotName)}: use 1-63 of [a-z0-9_]`);
      }
      settings.set('primary_slot_name', role.slotName);
    }
  }
  return { settings, ignored, raised };
}

/**
 * Raises each hot-standby parameter of `settings` to pg_control's value where that is higher (the
 * replica has not yet replayed its primary's lowering of it: hot standby refuses to start below it,
 * "insufficient parameter settings"). A later restart, once pg_control holds the lower value,
 * applies the configured one. Returns what it raised. A value that is not an integer is left alone.
 */
function raiseToControl(settings: Map<string, SettingValue>, control: Readonly<Partial<Record<HotStandbyParameter, number>>>): RaisedSetting[] {
  const raised: RaisedSetting[] = [];
  for (const name of HOT_STANDBY_PARAMETERS) {
    const floor = control[name];
    if (floor === undefined) continue;
    const set = settings.get(name);
    const configured = set === undefined ? HOT_STANDBY_DEFAULTS[name] : typeof set === 'number' ? set : /^\s*[0-9]+\s*$/.test(String(set)) ? Number(set) : undefined;
    if (configured === undefined || configured >= floor) continue;
    settings.set(name, floor);
    raised.push({ name, configured, control: floor });
  }
  return raised;
}

/** warden.conf: one `name = 'value'` per line, sorted by name; every value quoted, which PostgreSQL accepts for any type. */
export function renderWardenConf(settings: ReadonlyMap<string, SettingValue>): string {
  const lines = ['# Written by Warden (configure()); edits are overwritten. Set parameters in the cluster config.'];
  for (const [k, v] of [...settings].sort(([a], [b]) => a.localeCompare(b))) lines.push(`${k} = ${confValue(v)}`);
  return `${lines.join('\n')}\n`;
}

/** A postgresql.conf value: booleans as on/off, single-quoted with \ and ' escaped. */
export function confValue(v: SettingValue): string {
  const s = typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v);
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/**
 * postgresql.conf with the include line of warden.conf appended, or undefined when the file already
 * has it (on a line of its own) and needs no rewrite.
 */
export function withIncludeLine(conf: string): string | undefined {
  if (conf.split('\n').some((line) => line.trim() === INCLUDE_LINE)) return undefined;
  const sep = conf.length === 0 || conf.endsWith('\n') ? '' : '\n';
  return `${conf}${sep}\n# Added by Warden: its settings win over the lines above.\n${INCLUDE_LINE}\n`;
}

/** A libpq connection-string value, single-quoted with \ and ' escaped. */
export function conninfoValue(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** primary_conninfo of a replica streaming from `upstream` as the replication user. */
export function primaryConninfo(p: { upstream: Endpoint; user: string; passfile: string; applicationName: string }): string {
  return [
    `host=${conninfoValue(p.upstream.host)}`,
    `port=${p.upstream.port}`,
    `user=${conninfoValue(p.user)}`,
    `passfile=${conninfoValue(p.passfile)}`,
    `application_name=${conninfoValue(p.applicationName)}`,
    `connect_timeout=${LIBPQ_CONNECT_TIMEOUT_S}`,
  ].join(' ');
}

/** pg_rewind's --source-server: the source's postgres database as `user` (the password comes from PGPASSFILE). */
export function rewindSourceConninfo(source: Endpoint, user: string): string {
  return [`host=${conninfoValue(source.host)}`, `port=${source.port}`, `user=${conninfoValue(user)}`, 'dbname=postgres', `connect_timeout=${LIBPQ_CONNECT_TIMEOUT_S}`].join(' ');
}

/** The run user's libpq password file: the replication user first, then the superuser, for any host. */
export function renderPgpass(replication: Credentials, superuser: Credentials): string {
  const line = (c: Credentials): string => `*:*:*:${pgpassField(c.username)}:${pgpassField(c.password)}`;
  return `${line(replication)}\n${line(superuser)}\n`;
}

/** A field of a .pgpass line, with \ and : escaped. */
export function pgpassField(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

/** Loopback plus the listen address's /24 (IPv4) or /64 (IPv6); never "everywhere". */
export function hbaNetworks(host: string): string[] {
  const nets = ['127.0.0.0/8', '::1/128'];
  const family = isIP(host);
  if (family === 4 && !host.startsWith('127.') && host !== '0.0.0.0') {
    const [a, b, c] = host.split('.');
    nets.push(`${a}.${b}.${c}.0/24`);
  } else if (family === 6 && host !== '::' && host !== '::1') {
    nets.push(`${host}/64`);
  }
  return nets;
}

/**
 * pg_hba.conf: the superuser by peer on the unix socket, and scram-sha-256 over TCP for everyone
 * (the replication user alone for replication) from `hbaNetworks(listenHost)`.
 * `loopbackOnlyByName` is true when the listen host is a name or a wildcard, so that no network
 * beyond loopback could be derived from it (the caller says so in its log).
 */
export function renderHba(p: { superuser: string; replication: string; listenHost: string; socketMethod?: 'peer' | 'trust' }): { text: string; loopbackOnlyByName: boolean } {
  // trust: a private postmaster only (PostgresInstanceConfig.trustSuperuserOnSocket), its socket directory 0700.
  const method = p.socketMethod ?? 'peer';
  const lines = [
    '# Written by Warden (configure()); edits are overwritten.',
    '# TYPE  DATABASE     USER  ADDRESS  METHOD',
    `local   all          ${p.superuser}  ${method}`,
    `local   replication  ${p.superuser}  ${method}`,
  ];
  const host = p.listenHost;
  for (const net of hbaNetworks(host)) {
    lines.push(`host    all          all  ${net}  scram-sha-256`);
    lines.push(`host    replication  ${p.replication}  ${net}  scram-sha-256`);
  }
  const loopbackOnlyByName = (isIP(host) === 0 && host !== 'localhost') || host === '0.0.0.0' || host === '::';
  return { text: `${lines.join('\n')}\n`, loopbackOnlyByName };
}
