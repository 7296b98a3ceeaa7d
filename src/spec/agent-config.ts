import { isIP } from 'node:net';
import { posix } from 'node:path';
import { Document } from 'yaml';
import type { DynamicConfig } from '../ha/dynamic-config.js';
import { dnsLabelProblem } from './dns-label.js';
import { DynamicConfigDraft, readDynamicConfiguration } from './dynamic-config-reader.js';
import { sortSpecErrors } from './spec-error.js';
import type { SpecError, SpecNotice, SpecSite } from './spec-error.js';
import { describeNumberRule, NOT_APPLIED, SpecReader } from './spec-reader.js';
import type { FieldRead, NumberRule } from './spec-reader.js';
import { parseYamlTree } from './yaml-tree.js';
import type { YamlValue } from './yaml-tree.js';

/** A TCP address; `host` is an IP address or DNS name, IPv6 without brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

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
    readonly archive?: { readonly pgbackrestConfig: string; readonly stanza: string };
  };
  readonly tags: AgentTags;
  /** Written to the DCS `config` key only by the member that bootstraps the cluster. */
  readonly bootstrapDynamicConfig: DynamicConfig;
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
/** SpecError.file of problems with environment variables (their field is the variable's name). */
export const ENVIRONMENT = 'environment';

/** Each file setting (dotted path) and the environment variable that overrides it. */
export const AGENT_CONFIG_ENV = {
  name: 'WARDEN_NAME',
  cluster: 'WARDEN_CLUSTER',
  'etcd.endpoints': 'WARDEN_ETCD_ENDPOINTS',
  'etcd.username': 'WARDEN_ETCD_USERNAME',
  'etcd.password': 'WARDEN_ETCD_PASSWORD',
  'etcd.password_file': 'WARDEN_ETCD_PASSWORD_FILE',
  'etcd.cacert': 'WARDEN_ETCD_CACERT',
  'etcd.cert': 'WARDEN_ETCD_CERT',
  'etcd.key': 'WARDEN_ETCD_KEY',
  'restapi.listen': 'WARDEN_RESTAPI_LISTEN',
  'restapi.connect_address': 'WARDEN_RESTAPI_CONNECT_ADDRESS',
  'restapi.authentication.username': 'WARDEN_RESTAPI_USERNAME',
  'restapi.authentication.password': 'WARDEN_RESTAPI_PASSWORD',
  'restapi.authentication.password_file': 'WARDEN_RESTAPI_PASSWORD_FILE',
  'restapi.allowlist': 'WARDEN_RESTAPI_ALLOWLIST',
  'restapi.certfile': 'WARDEN_RESTAPI_CERTFILE',
  'restapi.keyfile': 'WARDEN_RESTAPI_KEYFILE',
  'restapi.cafile': 'WARDEN_RESTAPI_CAFILE',
  'restapi.verify_client': 'WARDEN_RESTAPI_VERIFY_CLIENT',
  'postgresql.pre_promote': 'WARDEN_PG_PRE_PROMOTE',
  'postgresql.callbacks.on_start': 'WARDEN_PG_CALLBACK_ON_START',
  'postgresql.callbacks.on_stop': 'WARDEN_PG_CALLBACK_ON_STOP',
  'postgresql.callbacks.on_role_change': 'WARDEN_PG_CALLBACK_ON_ROLE_CHANGE',
  'postgresql.archive.pgbackrest_config': 'WARDEN_PG_ARCHIVE_PGBACKREST_CONFIG',
  'postgresql.archive.stanza': 'WARDEN_PG_ARCHIVE_STANZA',
  'postgresql.listen': 'WARDEN_PG_LISTEN',
  'postgresql.connect_address': 'WARDEN_PG_CONNECT_ADDRESS',
  'postgresql.data_dir': 'WARDEN_PG_DATA_DIR',
  'postgresql.bin_dir': 'WARDEN_PG_BIN_DIR',
  'postgresql.socket_dir': 'WARDEN_PG_SOCKET_DIR',
  'postgresql.run_as_user': 'WARDEN_PG_RUN_AS_USER',
  'postgresql.authentication.superuser.username': 'WARDEN_PG_SUPERUSER_USERNAME',
  'postgresql.authentication.superuser.password': 'WARDEN_PG_SUPERUSER_PASSWORD',
  'postgresql.authentication.superuser.password_file': 'WARDEN_PG_SUPERUSER_PASSWORD_FILE',
  'postgresql.authentication.replication.username': 'WARDEN_PG_REPLICATION_USERNAME',
  'postgresql.authentication.replication.password': 'WARDEN_PG_REPLICATION_PASSWORD',
  'postgresql.authentication.replication.password_file': 'WARDEN_PG_REPLICATION_PASSWORD_FILE',
  'tags.nofailover': 'WARDEN_TAGS_NOFAILOVER',
  'tags.failover_priority': 'WARDEN_TAGS_FAILOVER_PRIORITY',
  'tags.nosync': 'WARDEN_TAGS_NOSYNC',
  'tags.noloadbalance': 'WARDEN_TAGS_NOLOADBALANCE',
  'tags.replicatefrom': 'WARDEN_TAGS_REPLICATEFROM',
  'tags.clonefrom': 'WARDEN_TAGS_CLONEFROM',
  'log.level': 'WARDEN_LOG_LEVEL',
  'log.file': 'WARDEN_LOG_FILE',
} as const;

type SettingPath = keyof typeof AGENT_CONFIG_ENV;

/** A setting's raw value: from the file (a YAML value) or from the environment (text), with where. */
type Raw = { readonly from: 'file'; readonly value: YamlValue; readonly site: SpecSite } | { readonly from: 'env'; readonly text: string; readonly site: SpecSite };

/** Linux `sun_path` holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;
const WILDCARD_HOSTS = new Set(['*', '0.0.0.0', '::']);
const OS_USER = /^[a-z_][a-z0-9_-]{0,31}$/;

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
  const config = new AgentConfigReader(reader, env, options).read(tree.root);
  if (config === undefined || reader.errors.length > 0) return { ok: false, errors: sortSpecErrors(reader.errors) };
  return { ok: true, config, notices: sortSpecErrors(reader.notices) };
}

class AgentConfigReader {
  private readonly raw = new Map<SettingPath, Raw>();
  /** Sites of mappings, so that a missing setting is reported at its parent. */
  private readonly sections = new Map<string, SpecSite>();
  private rootSite: SpecSite;
  private bootstrapDcsSite: SpecSite | undefined;
  private readonly draft: DynamicConfigDraft;

  constructor(
    private readonly reader: SpecReader,
    private readonly env: Readonly<Record<string, string | undefined>>,
    private readonly options: ParseAgentConfigOptions,
  ) {
    this.rootSite = reader.root({ line: 1, col: 1 });
    this.draft = new DynamicConfigDraft(reader);
  }

  read(root: YamlValue | undefined): AgentConfig | undefined {
    if (root !== undefined) {
      this.rootSite = this.reader.root(root);
      if (!this.readFile(root)) return undefined;
    }
    const r = this.reader;

    const name = this.text('name', 'the member name, unique in the cluster', (v, s) => this.dnsLabel(v, s));
    const cluster = this.text('cluster', 'the cluster name', (v, s) => this.dnsLabel(v, s));
    const etcdEndpoints = this.etcdEndpoints();

    const restListen = this.hostPort('restapi.listen', DEFAULT_RESTAPI_LISTEN, true);
    const restConnect = this.connectAddress('restapi', restListen);
    const pgListen = this.hostPort('postgresql.listen', DEFAULT_PG_LISTEN, true);
    const pgConnect = this.connectAddress('postgresql', pgListen);
    if (restListen !== undefined && pgListen !== undefined && restListen.port === pgListen.port && restListen.host === pgListen.host) {
      r.error(this.siteFor('postgresql.listen'), `uses the same address as restapi.listen (${formatHostPort(pgListen)})`);
    }

    const dataDir = this.text('postgresql.data_dir', 'the PostgreSQL data directory', (v, s) => this.absolutePath(v, s));
    const binDir = this.optional('postgresql.bin_dir', (v, s) => this.absolutePath(v, s)) ?? DEFAULT_PG_BIN_DIR;
    const socketDirSet = this.optional('postgresql.socket_dir', (v, s) => this.absolutePath(v, s));
    // Default: a `run` directory beside the data directory, so members on one host never share one.
    const socketDir = socketDirSet ?? (dataDir === undefined ? undefined : posix.join(posix.dirname(dataDir), 'run'));
    if (socketDir !== undefined && pgListen !== undefined) {
      const socketPath = posix.join(socketDir, `.s.PGSQL.${pgListen.port}`);
      const bytes = Buffer.byteLength(socketPath);
      if (bytes > MAX_SOCKET_PATH_BYTES) {
        const where = this.raw.has('postgresql.socket_dir') ? 'postgresql.socket_dir' : 'postgresql.data_dir';
        r.error(
          this.siteFor(where),
          `the Unix socket path ${socketPath} is ${bytes} bytes, longer than the ${MAX_SOCKET_PATH_BYTES} the OS allows; set postgresql.socket_dir to a shorter directory`,
        );
      }
    }
    const runAsUser = this.optional('postgresql.run_as_user', (v, s) => (OS_USER.test(v) ? v : r.error(s, `must be an OS user name (got ${JSON.stringify(v)})`)));
    const superuser = this.credentials('postgresql.authentication.superuser', 'postgres', true);
    const replication = this.credentials('postgresql.authentication.replication', 'replicator', true);
    const restAuth = this.credentials('restapi.authentication', 'warden', false);
    const etcdAuth = this.credentials('etcd', 'root', false);
    const etcdTls = this.etcdTls(etcdEndpoints);
    const allowlist = this.allowlist();
    const restTls = this.restApiTls();
    const command = (path: 'postgresql.pre_promote' | `postgresql.callbacks.${'on_start' | 'on_stop' | 'on_role_change'}`): string | undefined =>
      this.optional(path, (v, s) => (v.trim() === '' ? r.error(s, 'must be a non-empty shell command') : v));
    const prePromote = command('postgresql.pre_promote');
    const onStart = command('postgresql.callbacks.on_start');
    const onStop = command('postgresql.callbacks.on_stop');
    const onRoleChange = command('postgresql.callbacks.on_role_change');
    const archive = this.archive();

    const tags: AgentTags = {
      nofailover: this.bool('tags.nofailover') ?? false,
      failoverPriority: this.integer('tags.failover_priority', { integer: true, min: 0 }) ?? 1,
      nosync: this.bool('tags.nosync') ?? false,
      noloadbalance: this.bool('tags.noloadbalance') ?? false,
      ...optionalTag('replicatefrom', this.optional('tags.replicatefrom', (v, s) => this.dnsLabel(v, s))),
      ...optionalTag('clonefrom', this.bool('tags.clonefrom')),
    };
    const level = this.optional('log.level', (v, s) => {
      const hit = LOG_LEVELS.find((l) => l === v);
      return hit ?? r.error(s, `must be one of ${LOG_LEVELS.join(', ')} (got ${JSON.stringify(v)})`);
    });
    const logFile = this.optional('log.file', (v, s) => this.absolutePath(v, s));
    const bootstrapDynamicConfig = this.draft.build(this.bootstrapDcsSite ?? this.rootSite);

    if (
      name === undefined ||
      cluster === undefined ||
      etcdEndpoints === undefined ||
      restListen === undefined ||
      restConnect === undefined ||
      pgListen === undefined ||
      pgConnect === undefined ||
      dataDir === undefined ||
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
      tags,
      bootstrapDynamicConfig,
      log: { level: level ?? 'info', ...(logFile === undefined ? {} : { file: logFile }) },
    };
  }

  // ---- the file: structure and unknown keys; values are only recorded here -------------------

  private readFile(root: YamlValue): boolean {
    const r = this.reader;
    const store =
      (path: SettingPath): FieldRead =>
      (value, site) =>
        this.raw.set(path, { from: 'file', value, site });
    const section =
      (path: string, read: Record<string, FieldRead>, extra: { ignored?: Record<string, string>; hints?: Record<string, string> } = {}): FieldRead =>
      (value, site) => {
        this.sections.set(path, site);
        r.mapping(value, site, { read, ...extra });
      };
    const credentials = (role: 'superuser' | 'replication'): FieldRead =>
      section(`postgresql.authentication.${role}`, {
        username: store(`postgresql.authentication.${role}.username`),
        password: store(`postgresql.authentication.${role}.password`),
        password_file: store(`postgresql.authentication.${role}.password_file`),
      });
    return r.mapping(root, this.rootSite, {
      read: {
        name: store('name'),
        cluster: store('cluster'),
        etcd: section(
          'etcd',
          {
            endpoints: store('etcd.endpoints'),
            username: store('etcd.username'),
            password: store('etcd.password'),
            password_file: store('etcd.password_file'),
            cacert: store('etcd.cacert'),
            cert: store('etcd.cert'),
            key: store('etcd.key'),
          },
          { hints: { hosts: 'endpoints', host: 'endpoints', user: 'username', ca_cert: 'cacert', cafile: 'cacert' } },
        ),
        restapi: section('restapi', {
          listen: store('restapi.listen'),
          connect_address: store('restapi.connect_address'),
          allowlist: store('restapi.allowlist'),
          certfile: store('restapi.certfile'),
          keyfile: store('restapi.keyfile'),
          cafile: store('restapi.cafile'),
          verify_client: store('restapi.verify_client'),
          authentication: section('restapi.authentication', {
            username: store('restapi.authentication.username'),
            password: store('restapi.authentication.password'),
            password_file: store('restapi.authentication.password_file'),
          }),
        }),
        postgresql: section('postgresql', {
          listen: store('postgresql.listen'),
          connect_address: store('postgresql.connect_address'),
          data_dir: store('postgresql.data_dir'),
          bin_dir: store('postgresql.bin_dir'),
          socket_dir: store('postgresql.socket_dir'),
          run_as_user: store('postgresql.run_as_user'),
          pre_promote: store('postgresql.pre_promote'),
          callbacks: section('postgresql.callbacks', {
            on_start: store('postgresql.callbacks.on_start'),
            on_stop: store('postgresql.callbacks.on_stop'),
            on_role_change: store('postgresql.callbacks.on_role_change'),
          }),
          authentication: section('postgresql.authentication', { superuser: credentials('superuser'), replication: credentials('replication') }),
          archive: section('postgresql.archive', { pgbackrest_config: store('postgresql.archive.pgbackrest_config'), stanza: store('postgresql.archive.stanza') }),
        }),
        tags: section(
          'tags',
          {
            nofailover: store('tags.nofailover'),
            failover_priority: store('tags.failover_priority'),
            nosync: store('tags.nosync'),
            noloadbalance: store('tags.noloadbalance'),
            replicatefrom: store('tags.replicatefrom'),
            clonefrom: store('tags.clonefrom'),
          },
          { ignored: { nostream: NOT_IMPLEMENTED_TAG } },
        ),
        bootstrap: section(
          'bootstrap',
          {
            dcs: (value, site) => {
              this.bootstrapDcsSite = site;
              readDynamicConfiguration(r, value, site, this.draft);
            },
          },
          { ignored: Object.fromEntries(['initdb', 'pg_hba', 'users', 'method', 'post_bootstrap', 'post_init'].map((k) => [k, NOT_IMPLEMENTED_BOOTSTRAP])) },
        ),
        log: section('log', { level: store('log.level'), file: store('log.file') }),
      },
      hints: { scope: 'cluster', etcd3: 'etcd' },
    });
  }

  /** postgresql.archive: both settings or neither (a config file without a stanza cannot archive). */
  private archive(): { pgbackrestConfig: string; stanza: string } | undefined {
    const config = this.optional('postgresql.archive.pgbackrest_config', (v, s) => this.absolutePath(v, s));
    const stanza = this.optional('postgresql.archive.stanza', (v, s) => this.dnsLabel(v, s));
    const given = this.pick('postgresql.archive.pgbackrest_config') !== undefined || this.pick('postgresql.archive.stanza') !== undefined;
    if (!given) return undefined;
    if (this.pick('postgresql.archive.pgbackrest_config') === undefined) return this.missing('postgresql.archive.pgbackrest_config', 'the pgbackrest.conf of this member');
    if (this.pick('postgresql.archive.stanza') === undefined) return this.missing('postgresql.archive.stanza', 'the pgBackRest stanza (the cluster name)');
    return config === undefined || stanza === undefined ? undefined : { pgbackrestConfig: config, stanza };
  }

  // ---- settings: environment first, then the file --------------------------------------------

  /** The raw value of a setting, the environment winning over the file. */
  private pick(path: SettingPath): Raw | undefined {
    const variable = AGENT_CONFIG_ENV[path];
    const text = this.env[variable];
    if (text !== undefined && text !== '') return { from: 'env', text, site: envSite(variable) };
    return this.raw.get(path);
  }

  /** Where a missing setting is reported: its parent section, or the document. */
  private siteFor(path: SettingPath): SpecSite {
    const raw = this.pick(path);
    if (raw !== undefined) return raw.site;
    const parts = path.split('.');
    for (let i = parts.length - 1; i > 0; i--) {
      const s = this.sections.get(parts.slice(0, i).join('.'));
      if (s !== undefined) return { ...s, field: path };
    }
    return { ...this.rootSite, field: path };
  }

  private missing(path: SettingPath, what: string): undefined {
    return this.reader.missing(this.siteFor(path), `required: ${what}; set ${path} in ${this.reader.file} or ${AGENT_CONFIG_ENV[path]} in the environment`);
  }

  /** A string setting, checked by `check`; absent -> undefined. */
  private optional<T>(path: SettingPath, check: (v: string, site: SpecSite) => T | undefined): T | undefined {
    const raw = this.pick(path);
    if (raw === undefined) return undefined;
    const v = raw.from === 'env' ? raw.text : this.reader.string(raw.value, raw.site);
    return v === undefined ? undefined : check(v, raw.site);
  }

  /** A required string setting. */
  private text<T>(path: SettingPath, what: string, check: (v: string, site: SpecSite) => T | undefined): T | undefined {
    if (this.pick(path) === undefined) return this.missing(path, what);
    return this.optional(path, check);
  }

  private bool(path: SettingPath): boolean | undefined {
    const raw = this.pick(path);
    if (raw === undefined) return undefined;
    if (raw.from === 'file') return this.reader.boolean(raw.value, raw.site);
    const t = raw.text.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(t)) return true;
    if (['false', '0', 'no', 'off'].includes(t)) return false;
    return this.reader.error(raw.site, `must be true or false (got ${JSON.stringify(raw.text)})`);
  }

  private integer(path: SettingPath, rule: NumberRule): number | undefined {
    const raw = this.pick(path);
    if (raw === undefined) return undefined;
    if (raw.from === 'file') return this.reader.number(raw.value, raw.site, rule);
    const n = /^-?\d+$/.test(raw.text.trim()) ? Number(raw.text.trim()) : Number.NaN;
    const fits = Number.isSafeInteger(n) && (rule.min === undefined || n >= rule.min) && (rule.max === undefined || n <= rule.max);
    return fits ? n : this.reader.error(raw.site, `must be ${describeNumberRule(rule)} (got ${JSON.stringify(raw.text)})`);
  }

  private dnsLabel(v: string, site: SpecSite): string | undefined {
    const problem = dnsLabelProblem(v);
    return problem === undefined ? v : this.reader.error(site, problem);
  }

  private absolutePath(v: string, site: SpecSite): string | undefined {
    return posix.isAbsolute(v) ? posix.normalize(v) : this.reader.error(site, `must be an absolute path (got ${JSON.stringify(v)})`);
  }

  private hostPort(path: SettingPath, fallback: string, wildcardOk: boolean): HostPort | undefined {
    if (this.pick(path) === undefined) return parseHostPort(fallback);
    return this.optional(path, (v, site) => {
      const hp = parseHostPort(v);
      if (hp === undefined) return this.reader.error(site, `must be host:port with a port from 1 to 65535 (got ${JSON.stringify(v)})`);
      if (!wildcardOk && WILDCARD_HOSTS.has(hp.host)) {
        return this.reader.error(site, `must be an address other members can connect to, not the wildcard ${hp.host}`);
      }
      return hp;
    });
  }

  /** connect_address defaults to listen, which only works when listen names one reachable address. */
  private connectAddress(section: 'restapi' | 'postgresql', listen: HostPort | undefined): HostPort | undefined {
    const path = `${section}.connect_address` as const;
    if (this.pick(path) !== undefined) return this.hostPort(path, '', false);
    if (listen === undefined) return undefined;
    if (WILDCARD_HOSTS.has(listen.host)) {
      return this.reader.error(
        this.siteFor(path),
        `required when ${section}.listen is the wildcard ${listen.host}: other members need an address to connect to (or set ${AGENT_CONFIG_ENV[path]})`,
      );
    }
    return listen;
  }

  /** The items of a list setting, each with its site: a YAML list, or a comma-separated string (file or variable). */
  private listEntries(raw: Raw): { text: string; site: SpecSite }[] | undefined {
    const r = this.reader;
    const entries: { text: string; site: SpecSite }[] = [];
    if (raw.from === 'env') {
      for (const part of raw.text.split(',')) entries.push({ text: part.trim(), site: raw.site });
    } else if (raw.value.kind === 'list') {
      r.list(raw.value, raw.site, (item, site) => {
        const t = r.string(item, site);
        if (t !== undefined) entries.push({ text: t, site });
      });
    } else {
      const t = r.string(raw.value, raw.site);
      if (t === undefined) return undefined;
      for (const part of t.split(',')) entries.push({ text: part.trim(), site: raw.site });
    }
    return entries;
  }

  /** restapi.allowlist: IPv4/IPv6 addresses or CIDR blocks, from a YAML list or a comma-separated string. */
  private allowlist(): string[] | undefined {
    const raw = this.pick('restapi.allowlist');
    if (raw === undefined) return undefined;
    const r = this.reader;
    const entries = this.listEntries(raw);
    if (entries === undefined) return undefined;
    const before = r.errors.length;
    for (const { text, site } of entries) {
      const [addr, bits, extra] = text.split('/');
      const family = isIP(addr ?? '');
      const maxBits = family === 6 ? 128 : 32;
      const bitsOk = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= maxBits);
      if (family === 0 || !bitsOk || extra !== undefined) r.error(site, `must be an IP address or CIDR block, e.g. 10.0.0.0/8 (got ${JSON.stringify(text)})`);
    }
    return r.errors.length > before ? undefined : entries.map((e) => e.text);
  }

  private etcdEndpoints(): string[] | undefined {
    const raw = this.pick('etcd.endpoints');
    if (raw === undefined) return this.missing('etcd.endpoints', 'the etcd client URLs, e.g. [http://127.0.0.1:2379]');
    const r = this.reader;
    const entries = this.listEntries(raw);
    if (entries === undefined) return undefined;
    const before = r.errors.length;
    const urls = entries.map(({ text, site }) => normalizeEtcdUrl(text) ?? r.error(site, `must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:2379 (got ${JSON.stringify(text)})`));
    if (r.errors.length > before) return undefined;
    if (urls.length === 0) return r.error(raw.site, 'must list at least one etcd URL');
    return urls.filter((u): u is string => u !== undefined);
  }

  /** restapi.certfile + keyfile (both or neither), cafile, verify_client (needs cafile unless none). */
  private restApiTls(): RestApiTls | undefined {
    const r = this.reader;
    const cert = this.pemFile('restapi.certfile', 'CERTIFICATE');
    const key = this.pemFile('restapi.keyfile', 'PRIVATE KEY');
    const ca = this.pemFile('restapi.cafile', 'CERTIFICATE');
    const verifyClient = this.optional('restapi.verify_client', (v, s) =>
      v === 'none' || v === 'optional' || v === 'required' ? v : r.error(s, `must be none, optional or required (got ${JSON.stringify(v)})`),
    );
    const certSet = this.pick('restapi.certfile') !== undefined;
    const keySet = this.pick('restapi.keyfile') !== undefined;
    if (certSet !== keySet) return r.error(this.siteFor(certSet ? 'restapi.keyfile' : 'restapi.certfile'), 'restapi.certfile and restapi.keyfile go together: set both or neither');
    if (!certSet) {
      if (verifyClient !== undefined || this.pick('restapi.cafile') !== undefined) return r.error(this.siteFor(verifyClient !== undefined ? 'restapi.verify_client' : 'restapi.cafile'), 'needs restapi.certfile and restapi.keyfile (TLS)');
      return undefined;
    }
    if (verifyClient !== undefined && verifyClient !== 'none' && this.pick('restapi.cafile') === undefined) {
      return r.error(this.siteFor('restapi.verify_client'), `verify_client ${verifyClient} needs restapi.cafile (the CA that signs client certificates)`);
    }
    if (cert === undefined || key === undefined) return undefined;
    return { cert, key, ...(ca === undefined ? {} : { ca }), verifyClient: verifyClient ?? 'none' };
  }

  /** The PEM text of the file a setting names, checked to hold a `block` (CERTIFICATE, PRIVATE KEY). */
  private pemFile(path: 'restapi.certfile' | 'restapi.keyfile' | 'restapi.cafile' | 'etcd.cacert' | 'etcd.cert' | 'etcd.key', block: 'CERTIFICATE' | 'PRIVATE KEY'): string | undefined {
    const marker = block === 'CERTIFICATE' ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
    return this.optional(path, (v, s) => {
      const file = this.absolutePath(v, s);
      if (file === undefined) return undefined;
      const text = this.readFileText(file, s, 'file');
      if (text === undefined) return undefined;
      return marker.test(text) ? text : this.reader.error(s, `${file} is not a PEM file with a ${block} (no "-----BEGIN ${block}-----" line)`);
    });
  }

  /** etcd.cacert, etcd.cert + etcd.key (both or neither): only with https:// endpoints. */
  private etcdTls(endpoints: readonly string[] | undefined): { ca?: string; cert?: string; key?: string } | undefined {
    const r = this.reader;
    const paths = ['etcd.cacert', 'etcd.cert', 'etcd.key'] as const;
    const set = paths.filter((p) => this.pick(p) !== undefined);
    if (set.length === 0) return undefined;
    if (endpoints !== undefined && endpoints.some((e) => !e.startsWith('https://'))) {
      return r.error(this.siteFor(set[0]!), 'TLS settings need https:// etcd endpoints');
    }
    if ((this.pick('etcd.cert') === undefined) !== (this.pick('etcd.key') === undefined)) {
      return r.error(this.siteFor(this.pick('etcd.cert') === undefined ? 'etcd.key' : 'etcd.cert'), 'etcd.cert and etcd.key go together: set both or neither');
    }
    const ca = this.pemFile('etcd.cacert', 'CERTIFICATE');
    const cert = this.pemFile('etcd.cert', 'CERTIFICATE');
    const key = this.pemFile('etcd.key', 'PRIVATE KEY');
    return { ...(ca === undefined ? {} : { ca }), ...(cert === undefined ? {} : { cert }), ...(key === undefined ? {} : { key }) };
  }

  private credentials(
    base: 'postgresql.authentication.superuser' | 'postgresql.authentication.replication' | 'restapi.authentication' | 'etcd',
    defaultUser: string,
    required: boolean,
  ): Credentials | undefined {
    const username = this.optional(`${base}.username`, (v) => v) ?? defaultUser;
    const passwordEnv = AGENT_CONFIG_ENV[`${base}.password`];
    const fileEnv = AGENT_CONFIG_ENV[`${base}.password_file`];
    const r = this.reader;
    const fromEnv = (v: string): boolean => this.env[v] !== undefined && this.env[v] !== '';
    if (fromEnv(passwordEnv) && fromEnv(fileEnv)) return r.error(envSite(fileEnv), `set only one of ${passwordEnv} and ${fileEnv}`);
    // The environment replaces the file's password source as a whole.
    const password = fromEnv(fileEnv) ? undefined : this.pick(`${base}.password`);
    const passwordFile = fromEnv(passwordEnv) ? undefined : this.pick(`${base}.password_file`);
    if (password !== undefined && passwordFile !== undefined) {
      return r.error(passwordFile.site, `set either ${base}.password or ${base}.password_file, not both`);
    }
    if (password !== undefined) {
      const p = password.from === 'env' ? password.text : r.string(password.value, password.site);
      return p === undefined ? undefined : { username, password: p };
    }
    if (passwordFile !== undefined) {
      const path = this.optional(`${base}.password_file`, (v, s) => this.absolutePath(v, s));
      if (path === undefined) return undefined;
      const p = this.readPasswordFile(path, passwordFile.site);
      return p === undefined ? undefined : { username, password: p };
    }
    if (!required && this.pick(`${base}.username`) === undefined) return undefined;
    return r.missing(
      { ...this.siteFor(`${base}.password`), field: `${base}.password` },
      `required: set ${base}.password or ${base}.password_file in ${r.file}, or ${passwordEnv} or ${fileEnv} in the environment`,
    );
  }

  /** A file's text through the loader's reader; a SpecError naming the file otherwise. */
  private readFileText(path: string, site: SpecSite, what: string): string | undefined {
    const read = this.options.readPasswordFile;
    if (read === undefined) return this.reader.error(site, `cannot read ${what} ${path}: no file reader given (use loadAgentConfig)`);
    try {
      return read(path);
    } catch (e) {
      return this.reader.error(site, `cannot read ${what} ${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private readPasswordFile(path: string, site: SpecSite): string | undefined {
    const content = this.readFileText(path, site, 'password file');
    if (content === undefined) return undefined;
    // One trailing newline is how editors and `echo` end files; it is not part of the password.
    const password = content.replace(/\r?\n$/, '');
    if (password === '') return this.reader.error(site, `password file ${path} is empty`);
    return password;
  }
}

function optionalTag<K extends string, V>(key: K, v: V | undefined): Partial<Record<K, V>> {
  return v === undefined ? {} : ({ [key]: v } as Partial<Record<K, V>>);
}

const NOT_IMPLEMENTED_TAG = 'known Patroni tag, not implemented by Warden yet; ignored';
const NOT_IMPLEMENTED_BOOTSTRAP = `known Patroni bootstrap setting, ${NOT_APPLIED}: Warden bootstraps with its own initdb settings`;

function envSite(variable: string): SpecSite {
  return { file: ENVIRONMENT, line: 0, col: 0, field: variable };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

/** Parses `host:port`, `[v6]:port` or `*:port`; undefined when malformed or the port is outside 1..65535. */
export function parseHostPort(text: string): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (!(port >= 1 && port <= 65535)) return undefined;
  const v6 = m[1];
  if (v6 !== undefined) return IPV6.test(v6) && v6.includes(':') ? { host: v6, port } : undefined;
  const host = m[2] ?? '';
  if (host === '*' || IPV4.test(host) || (HOSTNAME.test(host) && !/^[\d.]+$/.test(host))) return { host, port };
  return undefined;
}

/** `host:port`, with brackets around IPv6 hosts. */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** An etcd client URL as `scheme://host:port`, or undefined when it is not a plain http(s) URL. */
export function normalizeEtcdUrl(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined; // not a URL: reported by the caller with the offending text
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (url.hostname === '' || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return undefined;
  if (url.pathname !== '/' && url.pathname !== '') return undefined;
  return `${url.protocol}//${url.host}`;
}

type DynamicConfigInput = { readonly [K in Exclude<keyof DynamicConfig, 'postgresql'>]?: DynamicConfig[K] } & {
  readonly postgresql?: { readonly use_pg_rewind?: boolean; readonly parameters?: Readonly<Record<string, string | number | boolean>> };
};

/** What the local runtime knows about a member when it writes that member's agent config file. */
export interface AgentConfigFileInput {
  readonly name: string;
  readonly cluster: string;
  readonly etcdEndpoints: readonly string[];
  readonly etcdAuth?: { readonly username: string; readonly passwordFile: string };
  /** Paths of PEM files. */
  readonly etcdTls?: { readonly cacert?: string; readonly cert?: string; readonly key?: string };
  readonly restApi: {
    readonly listen: HostPort;
    readonly connectAddress?: HostPort;
    readonly authentication?: { readonly username: string; readonly passwordFile: string };
  };
  readonly postgres: {
    readonly listen: HostPort;
    readonly connectAddress?: HostPort;
    readonly dataDir: string;
    readonly binDir?: string;
    readonly socketDir?: string;
    readonly runAsUser?: string;
    readonly superuser: { readonly username: string; readonly passwordFile: string };
    readonly replication: { readonly username: string; readonly passwordFile: string };
    readonly archive?: { readonly pgbackrestConfig: string; readonly stanza: string };
  };
  readonly tags?: Partial<AgentTags>;
  /** Written as bootstrap.dcs; a full DynamicConfig (e.g. a ClusterSpec's) fits. */
  readonly bootstrapDynamicConfig?: DynamicConfigInput;
  readonly log?: { readonly level?: LogLevel; readonly file?: string };
}

/**
 * The YAML text of an agent config file that parseAgentConfig reads back to the same settings.
 * Passwords are never written, only the paths of files holding them.
 */
export function stringifyAgentConfig(input: AgentConfigFileInput): string {
  const p = input.postgres;
  const tags = input.tags ?? {};
  const file = {
    name: input.name,
    cluster: input.cluster,
    etcd: {
      endpoints: [...input.etcdEndpoints],
      ...(input.etcdAuth === undefined ? {} : { username: input.etcdAuth.username, password_file: input.etcdAuth.passwordFile }),
      ...(input.etcdTls?.cacert === undefined ? {} : { cacert: input.etcdTls.cacert }),
      ...(input.etcdTls?.cert === undefined ? {} : { cert: input.etcdTls.cert }),
      ...(input.etcdTls?.key === undefined ? {} : { key: input.etcdTls.key }),
    },
    restapi: {
      listen: formatHostPort(input.restApi.listen),
      ...(input.restApi.connectAddress === undefined ? {} : { connect_address: formatHostPort(input.restApi.connectAddress) }),
      ...(input.restApi.authentication === undefined
        ? {}
        : { authentication: { username: input.restApi.authentication.username, password_file: input.restApi.authentication.passwordFile } }),
    },
    postgresql: {
      listen: formatHostPort(p.listen),
      ...(p.connectAddress === undefined ? {} : { connect_address: formatHostPort(p.connectAddress) }),
      data_dir: p.dataDir,
      ...(p.binDir === undefined ? {} : { bin_dir: p.binDir }),
      ...(p.socketDir === undefined ? {} : { socket_dir: p.socketDir }),
      ...(p.runAsUser === undefined ? {} : { run_as_user: p.runAsUser }),
      authentication: {
        superuser: { username: p.superuser.username, password_file: p.superuser.passwordFile },
        replication: { username: p.replication.username, password_file: p.replication.passwordFile },
      },
      ...(p.archive === undefined ? {} : { archive: { pgbackrest_config: p.archive.pgbackrestConfig, stanza: p.archive.stanza } }),
    },
    ...(input.tags === undefined
      ? {}
      : {
          tags: {
            ...(tags.nofailover === undefined ? {} : { nofailover: tags.nofailover }),
            ...(tags.failoverPriority === undefined ? {} : { failover_priority: tags.failoverPriority }),
            ...(tags.nosync === undefined ? {} : { nosync: tags.nosync }),
            ...(tags.noloadbalance === undefined ? {} : { noloadbalance: tags.noloadbalance }),
            ...(tags.replicatefrom === undefined ? {} : { replicatefrom: tags.replicatefrom }),
            ...(tags.clonefrom === undefined ? {} : { clonefrom: tags.clonefrom }),
          },
        }),
    ...(input.bootstrapDynamicConfig === undefined ? {} : { bootstrap: { dcs: input.bootstrapDynamicConfig } }),
    ...(input.log === undefined ? {} : { log: input.log }),
  };
  const doc = new Document(file);
  doc.commentBefore = ` Warden agent config for member ${input.name} of cluster ${input.cluster}.\n Every setting can be overridden by a WARDEN_* environment variable.`;
  return doc.toString();
}
