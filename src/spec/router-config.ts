import { formatHostPort } from './addresses.js';
import type { HostPort } from './addresses.js';
import { LOG_LEVELS, type LogLevel } from './agent-config.js';
import { sortSpecErrors } from './spec-error.js';
import type { SpecError, SpecNotice } from './spec-error.js';
import { SpecReader } from './spec-reader.js';
import { SettingsReader, stringifySettings } from './settings-table.js';
import type { SettingSpec, SettingsOf, SettingsTable } from './settings-table.js';
import { parseYamlTree } from './yaml-tree.js';

/** The router's validated settings (`warden router --config FILE`, overridden by WARDEN_ROUTER_* variables). */
export interface RouterConfig {
  readonly cluster: string;
  /** Normalized `http(s)://host:port` URLs. */
  readonly etcdEndpoints: readonly string[];
  /**
   * How the router authenticates to etcd and checks its TLS: paths of files (absolute), read when
   * the router starts (`warden router` says which file it cannot read).
   */
  readonly etcdFiles?: {
    readonly username?: string;
    readonly passwordFile?: string;
    readonly cacert?: string;
    readonly cert?: string;
    readonly key?: string;
  };
  readonly listen: {
    /** Read-write port: the current leader. */
    readonly rw: HostPort;
    /** Read-only port: streaming replicas, least connections first. */
    readonly ro?: HostPort;
    /** HTTP: GET /status, /metrics, /health. */
    readonly admin?: HostPort;
  };
  /** How long a new connection waits for a backend before it is refused. */
  readonly holdTimeoutMs: number;
  /** How many connections may wait at once; more are refused at once. */
  readonly maxHeld: number;
  /** Replicas further behind the leader get no read-only connections. */
  readonly roMaxLagBytes: number;
  /** With no eligible replica, read-only connections go to the leader. */
  readonly roFallbackToLeader: boolean;
  /** Bound on one TCP connect to a backend. */
  readonly connectTimeoutMs: number;
  readonly log: { readonly level: LogLevel; readonly file?: string };
}

export const ROUTER_DEFAULTS = {
  holdTimeoutMs: 30_000,
  maxHeld: 1000,
  roMaxLagBytes: 1024 * 1024,
  roFallbackToLeader: false,
  connectTimeoutMs: 3000,
} as const;

/** Every router setting, in the order of the README's reference table. */
export const ROUTER_SETTINGS = [
  { key: 'cluster', env: 'WARDEN_ROUTER_CLUSTER', type: { kind: 'name' }, required: true, describe: 'the cluster name' },
  { key: 'etcd.endpoints', env: 'WARDEN_ROUTER_ETCD_ENDPOINTS', type: { kind: 'etcd-urls' }, required: true, describe: 'the etcd client URLs, e.g. [http://127.0.0.1:2379]' },
  { key: 'etcd.username', env: 'WARDEN_ROUTER_ETCD_USERNAME', type: { kind: 'text' }, pairedWith: 'etcd.password_file', describe: 'etcd authentication: user name' },
  { key: 'etcd.password_file', env: 'WARDEN_ROUTER_ETCD_PASSWORD_FILE', type: { kind: 'path' }, describe: 'etcd authentication: file holding the password (read at start)' },
  { key: 'etcd.cacert', env: 'WARDEN_ROUTER_ETCD_CACERT', type: { kind: 'path' }, describe: "PEM file of the CA that signs etcd's certificate (https:// endpoints only)" },
  { key: 'etcd.cert', env: 'WARDEN_ROUTER_ETCD_CERT', type: { kind: 'path' }, pairedWith: 'etcd.key', describe: 'PEM client certificate for etcd' },
  { key: 'etcd.key', env: 'WARDEN_ROUTER_ETCD_KEY', type: { kind: 'path' }, describe: 'PEM private key of etcd.cert' },
  { key: 'listen.rw', env: 'WARDEN_ROUTER_LISTEN_RW', type: { kind: 'host-port', wildcard: true }, required: true, describe: 'the read-write listen address, e.g. 127.0.0.1:5000' },
  { key: 'listen.ro', env: 'WARDEN_ROUTER_LISTEN_RO', type: { kind: 'host-port', wildcard: true }, describe: 'the read-only listen address (replicas)' },
  { key: 'listen.admin', env: 'WARDEN_ROUTER_LISTEN_ADMIN', type: { kind: 'host-port', wildcard: true }, describe: 'the admin HTTP address: /status, /metrics, /health' },
  { key: 'holdTimeoutMs', env: 'WARDEN_ROUTER_HOLD_TIMEOUT_MS', type: { kind: 'int', rule: { integer: true, min: 0, max: 24 * 3600 * 1000 }, unit: 'ms' }, default: ROUTER_DEFAULTS.holdTimeoutMs, describe: 'how long a new connection waits for a backend before it is refused' },
  { key: 'maxHeld', env: 'WARDEN_ROUTER_MAX_HELD', type: { kind: 'int', rule: { integer: true, min: 0, max: 1_000_000 } }, default: ROUTER_DEFAULTS.maxHeld, describe: 'how many connections may wait at once; more are refused at once' },
  { key: 'roMaxLagBytes', env: 'WARDEN_ROUTER_RO_MAX_LAG_BYTES', type: { kind: 'int', rule: { integer: true, min: 0 }, unit: 'bytes' }, default: ROUTER_DEFAULTS.roMaxLagBytes, describe: 'replicas further behind the leader get no read-only connections' },
  { key: 'roFallbackToLeader', env: 'WARDEN_ROUTER_RO_FALLBACK_TO_LEADER', type: { kind: 'bool' }, default: ROUTER_DEFAULTS.roFallbackToLeader, describe: 'with no eligible replica, read-only connections go to the leader' },
  { key: 'connectTimeoutMs', env: 'WARDEN_ROUTER_CONNECT_TIMEOUT_MS', type: { kind: 'int', rule: { integer: true, min: 10, max: 600_000 }, unit: 'ms' }, default: ROUTER_DEFAULTS.connectTimeoutMs, describe: 'bound on one TCP connect to a backend' },
  { key: 'log.level', env: 'WARDEN_ROUTER_LOG_LEVEL', type: { kind: 'enum', values: LOG_LEVELS }, default: 'info', describe: 'log level' },
  { key: 'log.file', env: 'WARDEN_ROUTER_LOG_FILE', type: { kind: 'path' }, describe: 'log file (JSON lines); standard output when unset' },
] as const satisfies readonly SettingSpec[];

/** The router config file's table: settings plus the spellings of other tools. */
export const ROUTER_CONFIG_TABLE: SettingsTable = {
  settings: ROUTER_SETTINGS,
  sections: {
    '': { hints: { scope: 'cluster', etcd3: 'etcd' } },
    etcd: { hints: { hosts: 'endpoints', host: 'endpoints', user: 'username', password: 'password_file' } },
    listen: { hints: { primary: 'rw', replica: 'ro', replicas: 'ro', readwrite: 'rw', readonly: 'ro' } },
  },
};

/** The settings of a router config file, keyed by their file path. */
export type RouterSettings = SettingsOf<typeof ROUTER_SETTINGS>;
export type RouterSettingKey = (typeof ROUTER_SETTINGS)[number]['key'];

/** Each file setting (dotted path) and the environment variable that overrides it. */
export const ROUTER_CONFIG_ENV: Readonly<Record<RouterSettingKey, string>> = Object.fromEntries(ROUTER_SETTINGS.map((s) => [s.key, s.env])) as Record<RouterSettingKey, string>;

export type ParseRouterConfigResult =
  | { readonly ok: true; readonly config: RouterConfig; readonly notices: readonly SpecNotice[] }
  | { readonly ok: false; readonly errors: readonly SpecError[] };

/**
 * Validates a router config file, WARDEN_ROUTER_* variables in `env` taking precedence (an empty
 * variable counts as unset). Problems come back located at file:line:col with the field, or naming
 * the variable. Pure.
 */
export function parseRouterConfig(text: string, file: string, env: Readonly<Record<string, string | undefined>>): ParseRouterConfigResult {
  const tree = parseYamlTree(text, file);
  if (!tree.ok) return { ok: false, errors: tree.errors };
  const reader = new SpecReader(file);
  reader.notices.push(...tree.warnings);
  const settings = new SettingsReader(ROUTER_CONFIG_TABLE, reader, env);
  if (!settings.readFile(tree.root)) return { ok: false, errors: sortSpecErrors(reader.errors) };
  const config = resolveRouterConfig(settings, settings.values());
  if (config === undefined || reader.errors.length > 0) return { ok: false, errors: sortSpecErrors(reader.errors) };
  return { ok: true, config, notices: sortSpecErrors(reader.notices) };
}

/** The rules that span settings (distinct listen addresses, TLS needing https://), then the typed config. */
function resolveRouterConfig(s: SettingsReader, v: Partial<RouterSettings>): RouterConfig | undefined {
  const r = s.reader;
  const addresses = [['listen.rw', v['listen.rw']], ['listen.ro', v['listen.ro']], ['listen.admin', v['listen.admin']]] as const;
  for (let i = 0; i < addresses.length; i++) {
    for (let j = 0; j < i; j++) {
      const [pa, a] = addresses[i]!;
      const [pb, b] = addresses[j]!;
      if (a !== undefined && b !== undefined && a.host === b.host && a.port === b.port) r.error(s.site(pa), `uses the same address as ${pb} (${formatHostPort(a)})`);
    }
  }
  const tlsSet = s.isSet('etcd.cacert') ? 'etcd.cacert' : s.isSet('etcd.cert') ? 'etcd.cert' : undefined;
  if (tlsSet !== undefined && v['etcd.endpoints']?.some((e) => !e.startsWith('https://')) === true) r.error(s.site(tlsSet), 'TLS settings need https:// etcd endpoints');
  const { cluster } = v;
  const etcdEndpoints = v['etcd.endpoints'];
  const rw = v['listen.rw'];
  const { holdTimeoutMs, maxHeld, roMaxLagBytes, roFallbackToLeader, connectTimeoutMs } = v;
  const level = v['log.level'];
  if (cluster === undefined || etcdEndpoints === undefined || rw === undefined || r.errors.length > 0) return undefined;
  if (holdTimeoutMs === undefined || maxHeld === undefined || roMaxLagBytes === undefined || roFallbackToLeader === undefined || connectTimeoutMs === undefined || level === undefined) return undefined;
  const files = {
    ...optional('username', v['etcd.username']),
    ...optional('passwordFile', v['etcd.password_file']),
    ...optional('cacert', v['etcd.cacert']),
    ...optional('cert', v['etcd.cert']),
    ...optional('key', v['etcd.key']),
  };
  return {
    cluster,
    etcdEndpoints,
    ...(Object.keys(files).length === 0 ? {} : { etcdFiles: files }),
    listen: { rw, ...optional('ro', v['listen.ro']), ...optional('admin', v['listen.admin']) },
    holdTimeoutMs,
    maxHeld,
    roMaxLagBytes,
    roFallbackToLeader,
    connectTimeoutMs,
    log: { level, ...optional('file', v['log.file']) },
  };
}

function optional<K extends string, V>(key: K, v: V | undefined): Partial<Record<K, V>> {
  return v === undefined ? {} : ({ [key]: v } as Partial<Record<K, V>>);
}

/** The settings of a RouterConfig, keyed by file path: the inverse of reading them. */
export function routerSettings(c: RouterConfig): RouterSettings {
  const f = c.etcdFiles;
  return {
    cluster: c.cluster,
    'etcd.endpoints': c.etcdEndpoints,
    ...optional('etcd.username', f?.username),
    ...optional('etcd.password_file', f?.passwordFile),
    ...optional('etcd.cacert', f?.cacert),
    ...optional('etcd.cert', f?.cert),
    ...optional('etcd.key', f?.key),
    'listen.rw': c.listen.rw,
    ...optional('listen.ro', c.listen.ro),
    ...optional('listen.admin', c.listen.admin),
    holdTimeoutMs: c.holdTimeoutMs,
    maxHeld: c.maxHeld,
    roMaxLagBytes: c.roMaxLagBytes,
    roFallbackToLeader: c.roFallbackToLeader,
    connectTimeoutMs: c.connectTimeoutMs,
    'log.level': c.log.level,
    ...optional('log.file', c.log.file),
  };
}

/** The YAML text of a router config file that parseRouterConfig reads back to the same settings. */
export function stringifyRouterConfig(c: RouterConfig): string {
  return stringifySettings(ROUTER_CONFIG_TABLE, routerSettings(c), ` Warden router config for cluster ${c.cluster}.\n Every setting can be overridden by a WARDEN_ROUTER_* environment variable.`);
}
