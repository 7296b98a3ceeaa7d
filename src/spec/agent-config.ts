import { posix } from 'node:path';
import { DEFAULT_DYNAMIC_CONFIG } from '../ha/dynamic-config.js';
import type { DynamicConfig } from '../ha/dynamic-config.js';
import { formatHostPort } from './addresses.js';
import type { HostPort } from './addresses.js';
import { sortSpecErrors } from './spec-error.js';
import type { SpecError, SpecNotice, SpecSite } from './spec-error.js';
import { NOT_APPLIED, SpecReader } from './spec-reader.js';
import { readSettings, SettingsReader, stringifySettings, WILDCARD_HOSTS } from './settings-table.js';
import type { SettingSpec, SettingsInputOf, SettingsOf, SettingsTable } from './settings-table.js';
import { parseYamlTree } from './yaml-tree.js';

export { formatHostPort, normalizeEtcdUrl, parseHostPort } from './addresses.js';
export type { HostPort } from './addresses.js';
export { ENVIRONMENT } from './settings-table.js';

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Patroni-compatible member tags. */
export interface AgentTags {
  readonly nofailover: boolean;
  /** Higher wins ties in the leader race; 0 behaves like nofailover. */
  readonly failoverPriority: number;
  readonly nosync: boolean;
  readonly noloadbalance: boolean;
  /** Cascading replication: stream from this member instead of the leader while it streams itself. */
  readonly replicatefrom?: string;
  /** New replicas prefer to clone from this member rather than from the leader. */
  readonly clonefrom?: boolean;
}

/** The agent's validated settings (`warden agent --config FILE`, overridden by WARDEN_* variables). */
export interface AgentConfig {
  readonly name: string;
  readonly cluster: string;
  /** Normalized `http(s)://host:port` URLs. */
  readonly etcdEndpoints: readonly string[];
  /** etcd authentication (etcd.username + password or password_file). */
  readonly etcdAuth?: Credentials;
  /** TLS towards https:// etcd endpoints: PEM texts read at load (etcd.cacert, etcd.cert + etcd.key). */
  readonly etcdTls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
  readonly restApi: {
    readonly listen: HostPort;
    readonly connectAddress: HostPort;
    /** Basic auth for mutating endpoints; unset means they are open (loopback demos only). */
    readonly authentication?: Credentials;
    /** Addresses (IP or CIDR) allowed to call mutating endpoints; unset allows any (403 otherwise). */
    readonly allowlist?: readonly string[];
    /** HTTPS with these PEM texts (read at load); the agent also presents cert/key to its peers. */
    readonly tls?: RestApiTls;
  };
  readonly postgres: {
    readonly listen: HostPort;
    readonly connectAddress: HostPort;
    readonly dataDir: string;
    readonly binDir: string;
    readonly socketDir: string;
    /** OS user PostgreSQL runs as; unset means the agent's own user (see withRunAsUserDefault). */
    readonly runAsUser?: string;
    readonly superuser: Credentials;
    readonly replication: Credentials;
    /** Shell command run before a promotion; a non-zero exit blocks the promotion. */
    readonly prePromote?: string;
    /** Shell commands run after a role or state change, with (action, role, cluster) as arguments. */
    readonly callbacks: { readonly onStart?: string; readonly onStop?: string; readonly onRoleChange?: string };
    /** Continuous archiving through pgBackRest: this member's pgbackrest.conf and the stanza (postgresql.archive). */
    readonly archive?: { readonly pgbackrestConfig: string; readonly stanza: string; readonly createStanza?: boolean };
  };
  readonly tags: AgentTags;
  /** Written to the DCS `config` key only by the member that bootstraps the cluster. */
  readonly bootstrapDynamicConfig: DynamicConfig;
  /**
   * How the member that wins the bootstrap race makes the data directory: initdb, or (`pgbackrest`)
   * a restore of another cluster's backup recovered to a target, described by the JSON file the
   * local runtime writes (bootstrap.pgbackrest.data_source; docs/architecture.md, "Backups").
   */
  readonly bootstrapMethod: { readonly kind: 'initdb' } | { readonly kind: 'pgbackrest'; readonly dataSourceFile: string };
  readonly log: { readonly level: LogLevel; readonly file?: string };
}

/** The REST API's TLS settings (Patroni's restapi.certfile / keyfile / cafile / verify_client). */
export interface RestApiTls {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string;
  readonly verifyClient: 'none' | 'optional' | 'required';
}

/** Reads a password file; the loader passes one that touches the disk, tests a map. May throw. */
export type PasswordFileReader = (path: string) => string;

export interface ParseAgentConfigOptions {
  /** Needed only when a password_file is configured. */
  readonly readPasswordFile?: PasswordFileReader;
}

export type ParseAgentConfigResult =
  | { readonly ok: true; readonly config: AgentConfig; readonly notices: readonly SpecNotice[] }
  | { readonly ok: false; readonly errors: readonly SpecError[] };

export const DEFAULT_PG_BIN_DIR = '/usr/lib/postgresql/15/bin';
export const DEFAULT_RESTAPI_LISTEN = '127.0.0.1:8008';
export const DEFAULT_PG_LISTEN = '127.0.0.1:5432';

const NOT_IMPLEMENTED_TAG = 'known Patroni tag, not implemented by Warden yet; ignored';
const NOT_IMPLEMENTED_BOOTSTRAP = `known Patroni bootstrap setting, ${NOT_APPLIED}: Warden bootstraps with its own initdb settings`;

/** The three credentials of an agent config: a username, and a password inline or in a file (not both). */
function credentials<B extends string, E extends string>(base: B, envBase: E, defaultUser: string, who: string) {
  return [
    { key: `${base}.username`, env: `${envBase}_USERNAME`, type: { kind: 'text' }, default: defaultUser, describe: `${who}: user name` },
    { key: `${base}.password`, env: `${envBase}_PASSWORD`, type: { kind: 'secret' }, describe: `${who}: password; prefer password_file` },
    { key: `${base}.password_file`, env: `${envBase}_PASSWORD_FILE`, type: { kind: 'path' }, exclusiveWith: `${base}.password`, describe: `${who}: file holding the password, one trailing newline ignored` },
  ] as const;
}

/**
 * Every agent setting, in the order of the README's reference table. Defaults that depend on other
 * settings (connect addresses, socket_dir, run_as_user) are `derived` and filled by the resolver.
 */
export const AGENT_SETTINGS = [
  { key: 'name', env: 'WARDEN_NAME', type: { kind: 'name' }, required: true, describe: 'the member name, unique in the cluster' },
  { key: 'cluster', env: 'WARDEN_CLUSTER', type: { kind: 'name' }, required: true, describe: 'the cluster name' },
  { key: 'etcd.endpoints', env: 'WARDEN_ETCD_ENDPOINTS', type: { kind: 'etcd-urls' }, required: true, describe: 'the etcd client URLs, e.g. [http://127.0.0.1:2379]' },
  ...credentials('etcd', 'WARDEN_ETCD', 'root', 'etcd authentication'),
  { key: 'etcd.cacert', env: 'WARDEN_ETCD_CACERT', type: { kind: 'path' }, describe: 'PEM file of the CA that signs etcd\'s certificate (https:// endpoints only)' },
  { key: 'etcd.cert', env: 'WARDEN_ETCD_CERT', type: { kind: 'path' }, pairedWith: 'etcd.key', describe: "PEM client certificate for etcd, issued without a CommonName (etcd's JSON gateway refuses one that has it)" },
  { key: 'etcd.key', env: 'WARDEN_ETCD_KEY', type: { kind: 'path' }, describe: 'PEM private key of etcd.cert' },
  { key: 'restapi.listen', env: 'WARDEN_RESTAPI_LISTEN', type: { kind: 'host-port', wildcard: true }, default: { host: '127.0.0.1', port: 8008 }, describe: 'where the REST API listens' },
  { key: 'restapi.connect_address', env: 'WARDEN_RESTAPI_CONNECT_ADDRESS', type: { kind: 'host-port', wildcard: false }, derived: 'restapi.listen (required when that is a wildcard)', describe: 'the REST address other members and tools use' },
  ...credentials('restapi.authentication', 'WARDEN_RESTAPI', 'warden', 'basic auth of mutating REST calls'),
  { key: 'restapi.allowlist', env: 'WARDEN_RESTAPI_ALLOWLIST', type: { kind: 'ip-list' }, describe: 'addresses allowed to call mutating endpoints (others get 403); any when unset' },
  { key: 'restapi.certfile', env: 'WARDEN_RESTAPI_CERTFILE', type: { kind: 'path' }, pairedWith: 'restapi.keyfile', describe: 'PEM certificate: the REST API serves HTTPS, and presents it to peers' },
  { key: 'restapi.keyfile', env: 'WARDEN_RESTAPI_KEYFILE', type: { kind: 'path' }, describe: 'PEM private key of restapi.certfile' },
  { key: 'restapi.cafile', env: 'WARDEN_RESTAPI_CAFILE', type: { kind: 'path' }, describe: 'PEM CA that signs client certificates' },
  { key: 'restapi.verify_client', env: 'WARDEN_RESTAPI_VERIFY_CLIENT', type: { kind: 'enum', values: ['none', 'optional', 'required'] }, default: 'none', describe: 'client certificates: optional and required need restapi.cafile' },
  { key: 'postgresql.listen', env: 'WARDEN_PG_LISTEN', type: { kind: 'host-port', wildcard: true }, default: { host: '127.0.0.1', port: 5432 }, describe: 'where PostgreSQL listens' },
  { key: 'postgresql.connect_address', env: 'WARDEN_PG_CONNECT_ADDRESS', type: { kind: 'host-port', wildcard: false }, derived: 'postgresql.listen (required when that is a wildcard)', describe: 'the PostgreSQL address replicas and clients use' },
  { key: 'postgresql.data_dir', env: 'WARDEN_PG_DATA_DIR', type: { kind: 'path' }, required: true, describe: 'the PostgreSQL data directory' },
  { key: 'postgresql.bin_dir', env: 'WARDEN_PG_BIN_DIR', type: { kind: 'path' }, default: DEFAULT_PG_BIN_DIR, describe: 'directory of pg_ctl, initdb, pg_basebackup, pg_rewind' },
  { key: 'postgresql.socket_dir', env: 'WARDEN_PG_SOCKET_DIR', type: { kind: 'path' }, derived: '`run` beside data_dir', describe: 'Unix socket directory (the socket path must fit in 107 bytes)' },
  { key: 'postgresql.run_as_user', env: 'WARDEN_PG_RUN_AS_USER', type: { kind: 'os-user' }, derived: '`postgres` when the agent runs as root, else the agent\'s user', describe: 'OS user PostgreSQL runs as' },
  { key: 'postgresql.pre_promote', env: 'WARDEN_PG_PRE_PROMOTE', type: { kind: 'command' }, describe: 'run before a promotion; a non-zero exit blocks it' },
  { key: 'postgresql.callbacks.on_start', env: 'WARDEN_PG_CALLBACK_ON_START', type: { kind: 'command' }, describe: 'run after PostgreSQL starts, with (action, role, cluster)' },
  { key: 'postgresql.callbacks.on_stop', env: 'WARDEN_PG_CALLBACK_ON_STOP', type: { kind: 'command' }, describe: 'run after PostgreSQL stops, with (action, role, cluster)' },
  { key: 'postgresql.callbacks.on_role_change', env: 'WARDEN_PG_CALLBACK_ON_ROLE_CHANGE', type: { kind: 'command' }, describe: 'run after a promotion or demotion, with (action, role, cluster)' },
  ...credentials('postgresql.authentication.superuser', 'WARDEN_PG_SUPERUSER', 'postgres', 'PostgreSQL superuser (required)'),
  ...credentials('postgresql.authentication.replication', 'WARDEN_PG_REPLICATION', 'replicator', 'PostgreSQL replication user (required)'),
  { key: 'postgresql.archive.pgbackrest_config', env: 'WARDEN_PG_ARCHIVE_PGBACKREST_CONFIG', type: { kind: 'path' }, describe: "continuous archiving through pgBackRest: this member's own pgbackrest.conf (with stanza)" },
  { key: 'postgresql.archive.stanza', env: 'WARDEN_PG_ARCHIVE_STANZA', type: { kind: 'name' }, describe: 'the pgBackRest stanza (the cluster name)' },
  { key: 'postgresql.archive.create_stanza', env: 'WARDEN_PG_ARCHIVE_CREATE_STANZA', type: { kind: 'bool' }, default: false, describe: 'as the leader, create the stanza in the repositories when it is missing (node daemons set it; `warden up` creates it itself)' },
  { key: 'tags.nofailover', env: 'WARDEN_TAGS_NOFAILOVER', type: { kind: 'bool' }, default: false, describe: 'never promote this member' },
  { key: 'tags.failover_priority', env: 'WARDEN_TAGS_FAILOVER_PRIORITY', type: { kind: 'int', rule: { integer: true, min: 0 } }, default: 1, describe: 'higher wins ties in the leader race; 0 behaves like nofailover' },
  { key: 'tags.nosync', env: 'WARDEN_TAGS_NOSYNC', type: { kind: 'bool' }, default: false, describe: 'never a synchronous standby' },
  { key: 'tags.noloadbalance', env: 'WARDEN_TAGS_NOLOADBALANCE', type: { kind: 'bool' }, default: false, describe: 'no read-only connections from the router' },
  { key: 'tags.replicatefrom', env: 'WARDEN_TAGS_REPLICATEFROM', type: { kind: 'name' }, describe: 'cascading replication: stream from this member while it streams itself' },
  { key: 'tags.clonefrom', env: 'WARDEN_TAGS_CLONEFROM', type: { kind: 'bool' }, describe: 'new replicas prefer to clone from this member rather than from the leader' },
  { key: 'bootstrap.dcs', type: { kind: 'dynamic-config' }, default: DEFAULT_DYNAMIC_CONFIG, describe: 'the dynamic configuration written to etcd by the member that bootstraps the cluster' },
  { key: 'bootstrap.method', env: 'WARDEN_BOOTSTRAP_METHOD', type: { kind: 'enum', values: ['initdb', 'pgbackrest'] }, default: 'initdb', describe: "how the bootstrapping member makes the data directory: initdb, or pgbackrest (another cluster's backup, recovered to a target: spec.dataSource)" },
  { key: 'bootstrap.pgbackrest.data_source', env: 'WARDEN_BOOTSTRAP_PGBACKREST_DATA_SOURCE', type: { kind: 'path' }, describe: 'with method pgbackrest: the JSON file `warden up` writes (source stanza, repository config, set, target)' },
  { key: 'log.level', env: 'WARDEN_LOG_LEVEL', type: { kind: 'enum', values: LOG_LEVELS }, default: 'info', describe: 'log level' },
  { key: 'log.file', env: 'WARDEN_LOG_FILE', type: { kind: 'path' }, describe: 'log file (JSON lines); standard output when unset' },
] as const satisfies readonly SettingSpec[];

/** The agent config file's table: settings plus the sections' ignored keys and hints. */
export const AGENT_CONFIG_TABLE: SettingsTable = {
  settings: AGENT_SETTINGS,
  sections: {
    '': { hints: { scope: 'cluster', etcd3: 'etcd' } },
    etcd: { hints: { hosts: 'endpoints', host: 'endpoints', user: 'username', ca_cert: 'cacert', cafile: 'cacert' } },
    tags: { ignored: { nostream: NOT_IMPLEMENTED_TAG } },
    bootstrap: { ignored: Object.fromEntries(['initdb', 'pg_hba', 'users', 'post_bootstrap', 'post_init'].map((k) => [k, NOT_IMPLEMENTED_BOOTSTRAP])) },
  },
};

/** The file-level settings of an agent config (paths, not the files' contents): what is read and written back. */
export type AgentSettings = SettingsOf<typeof AGENT_SETTINGS>;
/** What an agent config is written from: the required settings and any others. */
export type AgentSettingsInput = SettingsInputOf<typeof AGENT_SETTINGS>;
export type AgentSettingKey = (typeof AGENT_SETTINGS)[number]['key'];

/** Each file setting (dotted path) and the environment variable that overrides it. */
export const AGENT_CONFIG_ENV: Readonly<Partial<Record<AgentSettingKey, string>>> = Object.fromEntries(AGENT_SETTINGS.flatMap((s) => ('env' in s ? [[s.key, s.env]] : [])));

/** Linux `sun_path` holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

/** The OS user PostgreSQL should run as when none is configured: `postgres` for a root agent (initdb refuses root). */
export function defaultRunAsUser(isRoot: boolean): string | undefined {
  return isRoot ? 'postgres' : undefined;
}

/** `config` with runAsUser filled from defaultRunAsUser when it was not configured. */
export function withRunAsUserDefault(config: AgentConfig, isRoot: boolean): AgentConfig {
  if (config.postgres.runAsUser !== undefined) return config;
  const user = defaultRunAsUser(isRoot);
  return user === undefined ? config : { ...config, postgres: { ...config.postgres, runAsUser: user } };
}

export type ReadAgentSettingsResult =
  | { readonly ok: true; readonly settings: AgentSettings; readonly notices: readonly SpecNotice[] }
  | { readonly ok: false; readonly errors: readonly SpecError[] };

/**
 * The file-level settings of an agent config file, WARDEN_* variables in `env` winning (an empty
 * variable counts as unset), checked setting by setting but without the cross-setting rules or the
 * files they name: stringifyAgentConfig writes these back to a file that reads back the same. Pure.
 */
export function readAgentSettings(text: string, file: string, env: Readonly<Record<string, string | undefined>>): ReadAgentSettingsResult {
  const r = readSettings(AGENT_CONFIG_TABLE, text, file, env);
  return r.ok ? { ok: true, settings: r.values as AgentSettings, notices: r.notices } : r;
}

/**
 * Validates an agent config file, with WARDEN_* variables from `env` taking precedence over the
 * file (an empty variable counts as unset). File problems are located at file:line:col; problems
 * with a variable name it (file "environment", field = variable). Pure apart from the optional
 * password-file reader.
 */
export function parseAgentConfig(
  text: string,
  file: string,
  env: Readonly<Record<string, string | undefined>>,
  options: ParseAgentConfigOptions = {},
): ParseAgentConfigResult {
  const tree = parseYamlTree(text, file);
  if (!tree.ok) return { ok: false, errors: tree.errors };
  const reader = new SpecReader(file);
  reader.notices.push(...tree.warnings);
  const settings = new SettingsReader(AGENT_CONFIG_TABLE, reader, env);
  if (!settings.readFile(tree.root)) return { ok: false, errors: sortSpecErrors(reader.errors) };
  const config = new AgentConfigResolver(settings, settings.values(), options).resolve();
  if (config === undefined || reader.errors.length > 0) return { ok: false, errors: sortSpecErrors(reader.errors) };
  return { ok: true, config, notices: sortSpecErrors(reader.notices) };
}

type CredentialsBase = 'postgresql.authentication.superuser' | 'postgresql.authentication.replication' | 'restapi.authentication' | 'etcd';
type PemSetting = 'restapi.certfile' | 'restapi.keyfile' | 'restapi.cafile' | 'etcd.cacert' | 'etcd.cert' | 'etcd.key';

/**
 * Turns checked settings into an AgentConfig: the rules that span settings (connect addresses,
 * socket path length, TLS needing https://, credentials) and the files that settings name
 * (password and PEM files). Values that failed their own check are absent and skipped quietly.
 */
class AgentConfigResolver {
  private readonly r: SpecReader;

  constructor(
    private readonly s: SettingsReader,
    private readonly v: Partial<AgentSettings>,
    private readonly options: ParseAgentConfigOptions,
  ) {
    this.r = s.reader;
  }

  resolve(): AgentConfig | undefined {
    const { r, s, v } = this;
    const restListen = v['restapi.listen'];
    const restConnect = this.connectAddress('restapi', restListen);
    const pgListen = v['postgresql.listen'];
    const pgConnect = this.connectAddress('postgresql', pgListen);
    if (restListen !== undefined && pgListen !== undefined && restListen.port === pgListen.port && restListen.host === pgListen.host) {
      r.error(s.site('postgresql.listen'), `uses the same address as restapi.listen (${formatHostPort(pgListen)})`);
    }
    const dataDir = v['postgresql.data_dir'];
    // Default: a `run` directory beside the data directory, so members on one host never share one.
    const socketDir = s.isSet('postgresql.socket_dir') ? v['postgresql.socket_dir'] : dataDir === undefined ? undefined : posix.join(posix.dirname(dataDir), 'run');
    if (socketDir !== undefined && pgListen !== undefined) {
      const socketPath = posix.join(socketDir, `.s.PGSQL.${pgListen.port}`);
      const bytes = Buffer.byteLength(socketPath);
      if (bytes > MAX_SOCKET_PATH_BYTES) {
        r.error(
          s.site(s.isSet('postgresql.socket_dir') ? 'postgresql.socket_dir' : 'postgresql.data_dir'),
          `the Unix socket path ${socketPath} is ${bytes} bytes, longer than the ${MAX_SOCKET_PATH_BYTES} the OS allows; set postgresql.socket_dir to a shorter directory`,
        );
      }
    }
    const superuser = this.credentials('postgresql.authentication.superuser', true);
    const replication = this.credentials('postgresql.authentication.replication', true);
    const restAuth = this.credentials('restapi.authentication', false);
    const etcdAuth = this.credentials('etcd', false);
    const etcdTls = this.etcdTls(v['etcd.endpoints']);
    const restTls = this.restApiTls();
    const archive = this.archive();
    const allowlist = v['restapi.allowlist'];
    const runAsUser = v['postgresql.run_as_user'];
    const prePromote = v['postgresql.pre_promote'];
    const onStart = v['postgresql.callbacks.on_start'];
    const onStop = v['postgresql.callbacks.on_stop'];
    const onRoleChange = v['postgresql.callbacks.on_role_change'];
    const replicatefrom = v['tags.replicatefrom'];
    const clonefrom = v['tags.clonefrom'];
    const logFile = v['log.file'];
    const { name, cluster } = v;
    const etcdEndpoints = v['etcd.endpoints'];
    const bootstrapDynamicConfig = v['bootstrap.dcs'];
    const binDir = v['postgresql.bin_dir'];
    const bootstrapMethod = this.bootstrapMethod();
    if (
      name === undefined ||
      cluster === undefined ||
      etcdEndpoints === undefined ||
      restListen === undefined ||
      restConnect === undefined ||
      pgListen === undefined ||
      pgConnect === undefined ||
      dataDir === undefined ||
      binDir === undefined ||
      socketDir === undefined ||
      superuser === undefined ||
      replication === undefined ||
      bootstrapDynamicConfig === undefined
    ) {
      return undefined;
    }
    return {
      name,
      cluster,
      etcdEndpoints,
      ...(etcdAuth === undefined ? {} : { etcdAuth }),
      ...(etcdTls === undefined ? {} : { etcdTls }),
      restApi: {
        listen: restListen,
        connectAddress: restConnect,
        ...(restAuth === undefined ? {} : { authentication: restAuth }),
        ...(allowlist === undefined ? {} : { allowlist }),
        ...(restTls === undefined ? {} : { tls: restTls }),
      },
      postgres: {
        listen: pgListen,
        connectAddress: pgConnect,
        dataDir,
        binDir,
        socketDir,
        ...(runAsUser === undefined ? {} : { runAsUser }),
        superuser,
        replication,
        ...(prePromote === undefined ? {} : { prePromote }),
        callbacks: {
          ...(onStart === undefined ? {} : { onStart }),
          ...(onStop === undefined ? {} : { onStop }),
          ...(onRoleChange === undefined ? {} : { onRoleChange }),
        },
        ...(archive === undefined ? {} : { archive }),
      },
      tags: {
        nofailover: v['tags.nofailover'] ?? false,
        failoverPriority: v['tags.failover_priority'] ?? 1,
        nosync: v['tags.nosync'] ?? false,
        noloadbalance: v['tags.noloadbalance'] ?? false,
        ...(replicatefrom === undefined ? {} : { replicatefrom }),
        ...(clonefrom === undefined ? {} : { clonefrom }),
      },
      bootstrapDynamicConfig,
      bootstrapMethod,
      log: { level: v['log.level'] ?? 'info', ...(logFile === undefined ? {} : { file: logFile }) },
    };
  }

  /** connect_address defaults to listen, which only works when listen names one reachable address. */
  private connectAddress(section: 'restapi' | 'postgresql', listen: HostPort | undefined): HostPort | undefined {
    const key = `${section}.connect_address` as const;
    if (this.s.isSet(key)) return this.v[key];
    if (listen === undefined) return undefined;
    if (WILDCARD_HOSTS.has(listen.host)) {
      return this.r.error(
        this.s.site(key),
        `required when ${section}.listen is the wildcard ${listen.host}: other members need an address to connect to (or set ${AGENT_CONFIG_ENV[key] ?? ''})`,
      );
    }
    return listen;
  }

  /** bootstrap.method pgbackrest needs bootstrap.pgbackrest.data_source (and nothing else uses it). */
  private bootstrapMethod(): AgentConfig['bootstrapMethod'] {
    const { r, s, v } = this;
    const file = v['bootstrap.pgbackrest.data_source'];
    if (v['bootstrap.method'] !== 'pgbackrest') {
      if (file !== undefined) r.error(s.site('bootstrap.pgbackrest.data_source'), 'only with bootstrap.method: pgbackrest');
      return { kind: 'initdb' };
    }
    if (file === undefined) {
      s.missing('bootstrap.pgbackrest.data_source', 'the data source file of bootstrap.method pgbackrest');
      return { kind: 'initdb' };
    }
    return { kind: 'pgbackrest', dataSourceFile: file };
  }

  /** postgresql.archive: both settings or neither (a config file without a stanza cannot archive). */
  private archive(): { pgbackrestConfig: string; stanza: string } | undefined {
    const { s, v } = this;
    if (!s.isSet('postgresql.archive.pgbackrest_config') && !s.isSet('postgresql.archive.stanza')) {
      if (v['postgresql.archive.create_stanza'] === true) s.missing('postgresql.archive.pgbackrest_config', 'create_stanza needs the pgbackrest.conf of this member');
      return undefined;
    }
    if (!s.isSet('postgresql.archive.pgbackrest_config')) return s.missing('postgresql.archive.pgbackrest_config', 'the pgbackrest.conf of this member');
    if (!s.isSet('postgresql.archive.stanza')) return s.missing('postgresql.archive.stanza');
    const config = v['postgresql.archive.pgbackrest_config'];
    const stanza = v['postgresql.archive.stanza'];
    const create = v['postgresql.archive.create_stanza'] === true;
    return config === undefined || stanza === undefined ? undefined : { pgbackrestConfig: config, stanza, ...(create ? { createStanza: true } : {}) };
  }

  /** restapi.certfile + keyfile (both or neither: the table checks it), cafile, verify_client (needs cafile unless none). */
  private restApiTls(): RestApiTls | undefined {
    const { r, s, v } = this;
    if (!s.isSet('restapi.certfile') && !s.isSet('restapi.keyfile')) {
      if (s.isSet('restapi.verify_client') || s.isSet('restapi.cafile')) return r.error(s.site(s.isSet('restapi.verify_client') ? 'restapi.verify_client' : 'restapi.cafile'), 'needs restapi.certfile and restapi.keyfile (TLS)');
      return undefined;
    }
    const cert = this.pemFile('restapi.certfile', 'CERTIFICATE');
    const key = this.pemFile('restapi.keyfile', 'PRIVATE KEY');
    const ca = this.pemFile('restapi.cafile', 'CERTIFICATE');
    const verifyClient = v['restapi.verify_client'];
    if (verifyClient !== undefined && verifyClient !== 'none' && !s.isSet('restapi.cafile')) {
      return r.error(s.site('restapi.verify_client'), `verify_client ${verifyClient} needs restapi.cafile (the CA that signs client certificates)`);
    }
    if (cert === undefined || key === undefined || verifyClient === undefined) return undefined;
    return { cert, key, ...(ca === undefined ? {} : { ca }), verifyClient };
  }

  /** etcd.cacert, etcd.cert + etcd.key (both or neither: the table checks it): only with https:// endpoints. */
  private etcdTls(endpoints: readonly string[] | undefined): { ca?: string; cert?: string; key?: string } | undefined {
    const set = (['etcd.cacert', 'etcd.cert', 'etcd.key'] as const).filter((p) => this.s.isSet(p));
    const first = set[0];
    if (first === undefined) return undefined;
    if (endpoints !== undefined && endpoints.some((e) => !e.startsWith('https://'))) {
      return this.r.error(this.s.site(first), 'TLS settings need https:// etcd endpoints');
    }
    const ca = this.pemFile('etcd.cacert', 'CERTIFICATE');
    const cert = this.pemFile('etcd.cert', 'CERTIFICATE');
    const key = this.pemFile('etcd.key', 'PRIVATE KEY');
    return { ...(ca === undefined ? {} : { ca }), ...(cert === undefined ? {} : { cert }), ...(key === undefined ? {} : { key }) };
  }

  /** The PEM text of the file a setting names, checked to hold a `block` (CERTIFICATE, PRIVATE KEY). */
  private pemFile(key: PemSetting, block: 'CERTIFICATE' | 'PRIVATE KEY'): string | undefined {
    const file = this.v[key];
    if (file === undefined) return undefined;
    const site = this.s.site(key);
    const text = this.readFileText(file, site, 'file');
    if (text === undefined) return undefined;
    const marker = block === 'CERTIFICATE' ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
    return marker.test(text) ? text : this.r.error(site, `${file} is not a PEM file with a ${block} (no "-----BEGIN ${block}-----" line)`);
  }

  /** A username with a password inline or from a file; the table already refused both at once. */
  private credentials(base: CredentialsBase, required: boolean): Credentials | undefined {
    const { r, s, v } = this;
    const username = v[`${base}.username`];
    const passwordKey = `${base}.password` as const;
    const fileKey = `${base}.password_file` as const;
    if (s.isSet(passwordKey) && s.isSet(fileKey)) return undefined;
    if (s.isSet(passwordKey)) {
      const password = v[passwordKey];
      return password === undefined || username === undefined ? undefined : { username, password };
    }
    if (s.isSet(fileKey)) {
      const path = v[fileKey];
      const password = path === undefined ? undefined : this.readPasswordFile(path, s.site(fileKey));
      return password === undefined || username === undefined ? undefined : { username, password };
    }
    if (!required && !s.isSet(`${base}.username`)) return undefined;
    return r.missing(
      { ...s.site(passwordKey), field: passwordKey },
      `required: set ${passwordKey} or ${fileKey} in ${r.file}, or ${AGENT_CONFIG_ENV[passwordKey] ?? ''} or ${AGENT_CONFIG_ENV[fileKey] ?? ''} in the environment`,
    );
  }

  /** A file's text through the loader's reader; a SpecError naming the file otherwise. */
  private readFileText(path: string, site: SpecSite, what: string): string | undefined {
    const read = this.options.readPasswordFile;
    if (read === undefined) return this.r.error(site, `cannot read ${what} ${path}: no file reader given (use loadAgentConfig)`);
    try {
      return read(path);
    } catch (e) {
      return this.r.error(site, `cannot read ${what} ${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private readPasswordFile(path: string, site: SpecSite): string | undefined {
    const content = this.readFileText(path, site, 'password file');
    if (content === undefined) return undefined;
    // One trailing newline is how editors and `echo` end files; it is not part of the password.
    const password = content.replace(/\r?\n$/, '');
    if (password === '') return this.r.error(site, `password file ${path} is empty`);
    return password;
  }
}

/**
 * The YAML text of an agent config file that readAgentSettings reads back to the same settings,
 * every setting kept (tags, TLS, callbacks, allowlist, …); settings equal to their default are left
 * out. The local runtime passes password files, never passwords.
 */
export function stringifyAgentConfig(settings: AgentSettingsInput): string {
  return stringifySettings(
    AGENT_CONFIG_TABLE,
    settings,
    ` Warden agent config for member ${settings.name} of cluster ${settings.cluster}.\n Every setting can be overridden by a WARDEN_* environment variable.`,
  );
}
