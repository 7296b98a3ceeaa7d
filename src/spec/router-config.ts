import { Document } from 'yaml';
import { ENVIRONMENT, formatHostPort, LOG_LEVELS, normalizeEtcdUrl, parseHostPort, type HostPort, type LogLevel } from './agent-config.js';
import { dnsLabelProblem } from './dns-label.js';
import { sortSpecErrors } from './spec-error.js';
import type { SpecError, SpecNotice, SpecSite } from './spec-error.js';
import { describeNumberRule, SpecReader } from './spec-reader.js';
import type { FieldRead, NumberRule } from './spec-reader.js';
import { parseYamlTree } from './yaml-tree.js';
import type { YamlValue } from './yaml-tree.js';

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

/** Each file setting (dotted path) and the environment variable that overrides it. */
export const ROUTER_CONFIG_ENV = {
  cluster: 'WARDEN_ROUTER_CLUSTER',
  'etcd.endpoints': 'WARDEN_ROUTER_ETCD_ENDPOINTS',
  'etcd.username': 'WARDEN_ROUTER_ETCD_USERNAME',
  'etcd.password_file': 'WARDEN_ROUTER_ETCD_PASSWORD_FILE',
  'etcd.cacert': 'WARDEN_ROUTER_ETCD_CACERT',
  'etcd.cert': 'WARDEN_ROUTER_ETCD_CERT',
  'etcd.key': 'WARDEN_ROUTER_ETCD_KEY',
  'listen.rw': 'WARDEN_ROUTER_LISTEN_RW',
  'listen.ro': 'WARDEN_ROUTER_LISTEN_RO',
  'listen.admin': 'WARDEN_ROUTER_LISTEN_ADMIN',
  holdTimeoutMs: 'WARDEN_ROUTER_HOLD_TIMEOUT_MS',
  maxHeld: 'WARDEN_ROUTER_MAX_HELD',
  roMaxLagBytes: 'WARDEN_ROUTER_RO_MAX_LAG_BYTES',
  roFallbackToLeader: 'WARDEN_ROUTER_RO_FALLBACK_TO_LEADER',
  connectTimeoutMs: 'WARDEN_ROUTER_CONNECT_TIMEOUT_MS',
  'log.level': 'WARDEN_ROUTER_LOG_LEVEL',
  'log.file': 'WARDEN_ROUTER_LOG_FILE',
} as const;

type SettingPath = keyof typeof ROUTER_CONFIG_ENV;
type Raw = { readonly from: 'file'; readonly value: YamlValue; readonly site: SpecSite } | { readonly from: 'env'; readonly text: string; readonly site: SpecSite };

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
  const config = new RouterConfigReader(reader, env).read(tree.root);
  if (config === undefined || reader.errors.length > 0) return { ok: false, errors: sortSpecErrors(reader.errors) };
  return { ok: true, config, notices: sortSpecErrors(reader.notices) };
}

class RouterConfigReader {
  private readonly raw = new Map<SettingPath, Raw>();
  private readonly sections = new Map<string, SpecSite>();
  private rootSite: SpecSite;

  constructor(
    private readonly reader: SpecReader,
    private readonly env: Readonly<Record<string, string | undefined>>,
  ) {
    this.rootSite = reader.root({ line: 1, col: 1 });
  }

  read(root: YamlValue | undefined): RouterConfig | undefined {
    if (root !== undefined) {
      this.rootSite = this.reader.root(root);
      if (!this.readFile(root)) return undefined;
    }
    const r = this.reader;
    const cluster = this.text('cluster', 'the cluster name', (v, s) => {
      const problem = dnsLabelProblem(v);
      return problem === undefined ? v : r.error(s, problem);
    });
    const etcdEndpoints = this.etcdEndpoints();
    const rw = this.pick('listen.rw') === undefined ? this.missing('listen.rw', 'the read-write listen address, e.g. 127.0.0.1:5000') : this.hostPort('listen.rw');
    const ro = this.hostPort('listen.ro');
    const admin = this.hostPort('listen.admin');
    const addresses = [['listen.rw', rw], ['listen.ro', ro], ['listen.admin', admin]] as const;
    for (let i = 0; i < addresses.length; i++) {
      for (let j = 0; j < i; j++) {
        const [pa, a] = addresses[i]!;
        const [pb, b] = addresses[j]!;
        if (a !== undefined && b !== undefined && a.host === b.host && a.port === b.port) r.error(this.siteFor(pa), `uses the same address as ${pb} (${formatHostPort(a)})`);
      }
    }
    const holdTimeoutMs = this.integer('holdTimeoutMs', { integer: true, min: 0, max: 24 * 3600 * 1000 }) ?? ROUTER_DEFAULTS.holdTimeoutMs;
    const maxHeld = this.integer('maxHeld', { integer: true, min: 0, max: 1_000_000 }) ?? ROUTER_DEFAULTS.maxHeld;
    const roMaxLagBytes = this.integer('roMaxLagBytes', { integer: true, min: 0 }) ?? ROUTER_DEFAULTS.roMaxLagBytes;
    const roFallbackToLeader = this.bool('roFallbackToLeader') ?? ROUTER_DEFAULTS.roFallbackToLeader;
    const connectTimeoutMs = this.integer('connectTimeoutMs', { integer: true, min: 10, max: 600_000 }) ?? ROUTER_DEFAULTS.connectTimeoutMs;
    const level = this.optional('log.level', (v, s) => LOG_LEVELS.find((l) => l === v) ?? r.error(s, `must be one of ${LOG_LEVELS.join(', ')} (got ${JSON.stringify(v)})`));
    const logFile = this.optional('log.file', (v, s) => (v.startsWith('/') ? v : r.error(s, `must be an absolute path (got ${JSON.stringify(v)})`)));
    const absolute = (v: string, s: SpecSite): string | undefined => (v.startsWith('/') ? v : r.error(s, `must be an absolute path (got ${JSON.stringify(v)})`));
    const username = this.optional('etcd.username', (v) => v);
    const passwordFile = this.optional('etcd.password_file', absolute);
    if ((username === undefined) !== (passwordFile === undefined)) r.error(this.siteFor(username === undefined ? 'etcd.password_file' : 'etcd.username'), 'etcd.username and etcd.password_file go together: set both or neither');
    const cacert = this.optional('etcd.cacert', absolute);
    const cert = this.optional('etcd.cert', absolute);
    const key = this.optional('etcd.key', absolute);
    if ((cert === undefined) !== (key === undefined)) r.error(this.siteFor(cert === undefined ? 'etcd.key' : 'etcd.cert'), 'etcd.cert and etcd.key go together: set both or neither');
    if ((cacert ?? cert) !== undefined && etcdEndpoints?.some((e) => !e.startsWith('https://')) === true) r.error(this.siteFor(cacert !== undefined ? 'etcd.cacert' : 'etcd.cert'), 'TLS settings need https:// etcd endpoints');
    const files = { ...(username === undefined ? {} : { username }), ...(passwordFile === undefined ? {} : { passwordFile }), ...(cacert === undefined ? {} : { cacert }), ...(cert === undefined ? {} : { cert }), ...(key === undefined ? {} : { key }) };
    if (cluster === undefined || etcdEndpoints === undefined || rw === undefined || r.errors.length > 0) return undefined;
    return {
      cluster,
      etcdEndpoints,
      ...(Object.keys(files).length === 0 ? {} : { etcdFiles: files }),
      listen: { rw, ...(ro === undefined ? {} : { ro }), ...(admin === undefined ? {} : { admin }) },
      holdTimeoutMs,
      maxHeld,
      roMaxLagBytes,
      roFallbackToLeader,
      connectTimeoutMs,
      log: { level: level ?? 'info', ...(logFile === undefined ? {} : { file: logFile }) },
    };
  }

  private readFile(root: YamlValue): boolean {
    const r = this.reader;
    const store =
      (path: SettingPath): FieldRead =>
      (value, site) =>
        this.raw.set(path, { from: 'file', value, site });
    const section =
      (path: string, read: Record<string, FieldRead>, hints?: Record<string, string>): FieldRead =>
      (value, site) => {
        this.sections.set(path, site);
        r.mapping(value, site, { read, ...(hints === undefined ? {} : { hints }) });
      };
    return r.mapping(root, this.rootSite, {
      read: {
        cluster: store('cluster'),
        etcd: section(
          'etcd',
          {
            endpoints: store('etcd.endpoints'),
            username: store('etcd.username'),
            password_file: store('etcd.password_file'),
            cacert: store('etcd.cacert'),
            cert: store('etcd.cert'),
            key: store('etcd.key'),
          },
          { hosts: 'endpoints', host: 'endpoints', user: 'username', password: 'password_file' },
        ),
        listen: section('listen', { rw: store('listen.rw'), ro: store('listen.ro'), admin: store('listen.admin') }, { primary: 'rw', replica: 'ro', replicas: 'ro', readwrite: 'rw', readonly: 'ro' }),
        holdTimeoutMs: store('holdTimeoutMs'),
        maxHeld: store('maxHeld'),
        roMaxLagBytes: store('roMaxLagBytes'),
        roFallbackToLeader: store('roFallbackToLeader'),
        connectTimeoutMs: store('connectTimeoutMs'),
        log: section('log', { level: store('log.level'), file: store('log.file') }),
      },
      hints: { scope: 'cluster', etcd3: 'etcd' },
    });
  }

  private pick(path: SettingPath): Raw | undefined {
    const variable = ROUTER_CONFIG_ENV[path];
    const text = this.env[variable];
    if (text !== undefined && text !== '') return { from: 'env', text, site: { file: ENVIRONMENT, line: 0, col: 0, field: variable } };
    return this.raw.get(path);
  }

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
    return this.reader.missing(this.siteFor(path), `required: ${what}; set ${path} in ${this.reader.file} or ${ROUTER_CONFIG_ENV[path]} in the environment`);
  }

  private optional<T>(path: SettingPath, check: (v: string, site: SpecSite) => T | undefined): T | undefined {
    const raw = this.pick(path);
    if (raw === undefined) return undefined;
    const v = raw.from === 'env' ? raw.text : this.reader.string(raw.value, raw.site);
    return v === undefined ? undefined : check(v, raw.site);
  }

  private text<T>(path: SettingPath, what: string, check: (v: string, site: SpecSite) => T | undefined): T | undefined {
    if (this.pick(path) === undefined) return this.missing(path, what);
    return this.optional(path, check);
  }

  private hostPort(path: SettingPath): HostPort | undefined {
    return this.optional(path, (v, site) => parseHostPort(v) ?? this.reader.error(site, `must be host:port with a port from 1 to 65535 (got ${JSON.stringify(v)})`));
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

  private etcdEndpoints(): string[] | undefined {
    const raw = this.pick('etcd.endpoints');
    if (raw === undefined) return this.missing('etcd.endpoints', 'the etcd client URLs, e.g. [http://127.0.0.1:2379]');
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
    const before = r.errors.length;
    const urls = entries.map(({ text, site }) => normalizeEtcdUrl(text) ?? r.error(site, `must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:2379 (got ${JSON.stringify(text)})`));
    if (r.errors.length > before) return undefined;
    if (urls.length === 0) return r.error(raw.site, 'must list at least one etcd URL');
    return urls.filter((u): u is string => u !== undefined);
  }
}

/** The YAML text of a router config file that parseRouterConfig reads back to the same settings. */
export function stringifyRouterConfig(c: RouterConfig): string {
  const doc = new Document({
    cluster: c.cluster,
    etcd: {
      endpoints: [...c.etcdEndpoints],
      ...(c.etcdFiles?.username === undefined ? {} : { username: c.etcdFiles.username }),
      ...(c.etcdFiles?.passwordFile === undefined ? {} : { password_file: c.etcdFiles.passwordFile }),
      ...(c.etcdFiles?.cacert === undefined ? {} : { cacert: c.etcdFiles.cacert }),
      ...(c.etcdFiles?.cert === undefined ? {} : { cert: c.etcdFiles.cert }),
      ...(c.etcdFiles?.key === undefined ? {} : { key: c.etcdFiles.key }),
    },
    listen: {
      rw: formatHostPort(c.listen.rw),
      ...(c.listen.ro === undefined ? {} : { ro: formatHostPort(c.listen.ro) }),
      ...(c.listen.admin === undefined ? {} : { admin: formatHostPort(c.listen.admin) }),
    },
    holdTimeoutMs: c.holdTimeoutMs,
    maxHeld: c.maxHeld,
    roMaxLagBytes: c.roMaxLagBytes,
    roFallbackToLeader: c.roFallbackToLeader,
    connectTimeoutMs: c.connectTimeoutMs,
    log: { level: c.log.level, ...(c.log.file === undefined ? {} : { file: c.log.file }) },
  });
  doc.commentBefore = ` Warden router config for cluster ${c.cluster}.\n Every setting can be overridden by a WARDEN_ROUTER_* environment variable.`;
  return doc.toString();
}
