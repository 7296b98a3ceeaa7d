import { isAbsolute } from 'node:path/posix';
import type { Labels, Taint } from '../placement/index.js';
import { normalizeEtcdUrl } from './agent-config.js';
import { LOG_LEVELS, type LogLevel } from './agent-config.js';
import { sortSpecErrors } from './spec-error.js';
import type { SpecError, SpecNotice, SpecSite } from './spec-error.js';
import { SpecReader } from './spec-reader.js';
import { hasKey, readLabels, readStringList, readStringValue, readTaints } from './scheduling-reader.js';
import { parseYamlTree } from './yaml-tree.js';
import type { YamlValue } from './yaml-tree.js';

/** The node daemon's validated settings (`warden node --config node.yaml`). */
export interface NodeConfig {
  /** The node's name in etcd (a DNS subdomain); `kubernetes.io/hostname` defaults to it. */
  readonly name: string;
  /** Absolute: the daemon's own files and every workload's directory. */
  readonly dir: string;
  /**
   * etcd: endpoints, authentication (user + password file) and TLS (https:// endpoints only: the CA
   * of etcd's certificate, a client certificate and key). The daemon passes the same files to the
   * agents and routers it runs.
   */
  readonly etcd: {
    readonly endpoints: readonly string[];
    readonly username?: string;
    readonly passwordFile?: string;
    readonly cacert?: string;
    readonly cert?: string;
    readonly key?: string;
  };
  /** The address workloads listen on and are reached at. */
  readonly address: string;
  readonly labels: Labels;
  readonly taints: readonly Taint[];
  readonly capacity: { readonly workloads: number };
  /** The node record's lease: the controller sees the node gone this long after the daemon dies. */
  readonly leaseTtlSeconds: number;
  /** A dead agent is started again after this long (longer than the cluster's ttl: failover first). */
  readonly restartDelaySeconds: number;
  readonly controller: { readonly enabled: boolean; readonly nodeLostSeconds: number; readonly ttlSeconds: number };
  readonly pgBinDir: string;
  readonly log: { readonly level: LogLevel; readonly file?: string };
  /**
   * Continuous archiving for members of clusters with spec.backups (posix repositories): the
   * directory holding the repositories, `<repoPath>/<cluster>/<repoN>`. Every node that runs such
   * members needs it at the same path, on storage they share (one machine, or a mounted volume).
   */
  readonly backups?: { readonly repoPath: string };
  /**
   * TLS of the agents' REST API (certfile + keyfile: a certificate for `address`, given to every
   * agent of the node; cafile: the CA that signs the other nodes' certificates, which agents and the
   * controller verify them with, and clients' with verify_client).
   */
  readonly restApi?: { readonly certfile: string; readonly keyfile: string; readonly cafile?: string; readonly verifyClient: 'none' | 'optional' | 'required' };
}

export type ParseNodeConfigResult = { readonly ok: true; readonly config: NodeConfig; readonly notices: readonly SpecNotice[] } | { readonly ok: false; readonly errors: readonly SpecError[] };

export const NODE_CONFIG_DEFAULTS = {
  address: '127.0.0.1',
  capacityWorkloads: 20,
  leaseTtlSeconds: 10,
  restartDelaySeconds: 5,
  nodeLostSeconds: 30,
  controllerTtlSeconds: 10,
  pgBinDir: '/usr/lib/postgresql/15/bin',
} as const;

const HOSTNAME = 'kubernetes.io/hostname';
/** 107 bytes of socket path less `/sockets/` + 12 hex + `/.s.PGSQL.65535`. */
const MAX_NODE_DIR_BYTES = 107 - '/sockets/'.length - 12 - '/.s.PGSQL.65535'.length;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Validates a node config file; problems come back as file:line:col with the field. Pure. */
export function parseNodeConfig(text: string, file: string): ParseNodeConfigResult {
  const tree = parseYamlTree(text, file);
  if (!tree.ok) return { ok: false, errors: tree.errors };
  const reader = new SpecReader(file);
  reader.notices.push(...tree.warnings);
  const root = tree.root;
  if (root === undefined) {
    reader.error(reader.root({ line: 1, col: 1 }), 'the file is empty; a node config needs name, dir and etcd.endpoints');
    return { ok: false, errors: reader.errors };
  }
  const d = NODE_CONFIG_DEFAULTS;
  let name: string | undefined;
  let dir: string | undefined;
  let endpoints: string[] | undefined;
  let username: string | undefined;
  let passwordFile: string | undefined;
  let cacert: string | undefined;
  let cert: string | undefined;
  let key: string | undefined;
  let address: string = d.address;
  let labels: Labels = {};
  let taints: Taint[] = [];
  let workloads: number = d.capacityWorkloads;
  let leaseTtlSeconds: number = d.leaseTtlSeconds;
  let restartDelaySeconds: number = d.restartDelaySeconds;
  let enabled = true;
  let nodeLostSeconds: number = d.nodeLostSeconds;
  let ttlSeconds: number = d.controllerTtlSeconds;
  let pgBinDir: string = d.pgBinDir;
  let level: LogLevel = 'info';
  let logFile: string | undefined;
  let repoPath: string | undefined;
  let restCert: string | undefined;
  let restKey: string | undefined;
  let restCa: string | undefined;
  let verifyClient = 'none' as 'none' | 'optional' | 'required';
  let verifySet = false;
  /** The restapi keys present, valid or not: one that is invalid is reported once, at its own line. */
  const restGiven = new Set<string>();
  const absolute = (v: YamlValue, s: SpecSite): string | undefined => {
    const p = readStringValue(reader, v, s);
    if (p === undefined) return undefined;
    return isAbsolute(p) ? p : reader.error(s, `must be an absolute path (got ${JSON.stringify(p)})`);
  };
  const rootSite = reader.root(root);
  const isMap = reader.mapping(root, rootSite, {
    read: {
      name: (v, s) => {
        const n = readStringValue(reader, v, s);
        if (n === undefined) return;
        if (n.length > 253 || !DNS_SUBDOMAIN.test(n)) return reader.error(s, `node name ${JSON.stringify(n)}: must be a lowercase DNS subdomain (letters, digits, - and .)`);
        name = n;
      },
      dir: (v, s) => {
        const p = absolute(v, s);
        // A member's socket may move to DIR/sockets/<12 hex>/.s.PGSQL.<port> (src/node/workload-files.ts): it must fit in 107 bytes.
        if (p !== undefined && Buffer.byteLength(p) > MAX_NODE_DIR_BYTES) {
          return reader.error(s, `${Buffer.byteLength(p)} bytes is too long: PostgreSQL's Unix socket paths under it would not fit the 107 bytes the OS allows; use a path of at most ${MAX_NODE_DIR_BYTES} bytes`);
        }
        dir = p;
      },
      etcd: (v, s) => {
        const found = reader.mapping(v, s, {
          read: {
            endpoints: (ev, es) => {
              const list = readStringList(reader, ev, es);
              if (list === undefined) return;
              if (list.length === 0) return reader.error(es, 'needs at least one endpoint, e.g. [http://127.0.0.1:2379]');
              const out: string[] = [];
              for (const e of list) {
                const u = normalizeEtcdUrl(e);
                if (u === undefined) return reader.error(es, `not an http(s)://host:port URL: ${JSON.stringify(e)}`);
                out.push(u);
              }
              endpoints = out;
            },
            username: (uv, us) => (username = readStringValue(reader, uv, us)),
            password_file: (pv, ps) => (passwordFile = absolute(pv, ps)),
            cacert: (tv, ts) => (cacert = absolute(tv, ts)),
            cert: (tv, ts) => (cert = absolute(tv, ts)),
            key: (tv, ts) => (key = absolute(tv, ts)),
          },
        });
        if (found && !hasKey(v, 'endpoints')) reader.missing({ ...s, field: 'etcd.endpoints' }, 'required: the etcd endpoints, e.g. [http://127.0.0.1:2379]');
      },
      address: (v, s) => (address = readStringValue(reader, v, s) ?? address),
      labels: (v, s) => (labels = readLabels(reader, v, s) ?? {}),
      taints: (v, s) => (taints = readTaints(reader, v, s) ?? []),
      capacity: (v, s) =>
        reader.mapping(v, s, { read: { workloads: (cv, cs) => (workloads = reader.number(cv, cs, { integer: true, min: 0, max: 1000 }) ?? workloads) } }),
      leaseTtlSeconds: (v, s) => (leaseTtlSeconds = reader.number(v, s, { integer: true, min: 2, max: 300 }) ?? leaseTtlSeconds),
      restartDelaySeconds: (v, s) => (restartDelaySeconds = reader.number(v, s, { min: 0, max: 3600 }) ?? restartDelaySeconds),
      controller: (v, s) =>
        reader.mapping(v, s, {
          read: {
            enabled: (cv, cs) => (enabled = reader.boolean(cv, cs) ?? enabled),
            nodeLostSeconds: (cv, cs) => (nodeLostSeconds = reader.number(cv, cs, { min: 1, max: 86_400 }) ?? nodeLostSeconds),
            ttlSeconds: (cv, cs) => (ttlSeconds = reader.number(cv, cs, { integer: true, min: 2, max: 300 }) ?? ttlSeconds),
          },
        }),
      pgBinDir: (v, s) => (pgBinDir = absolute(v, s) ?? pgBinDir),
      log: (v, s) =>
        reader.mapping(v, s, {
          read: {
            level: (lv, ls) => (level = reader.oneOf(lv, ls, LOG_LEVELS) ?? level),
            file: (fv, fs) => (logFile = absolute(fv, fs)),
          },
        }),
      restapi: (v, s) =>
        reader.mapping(v, s, {
          read: {
            certfile: (tv, ts) => {
              restGiven.add('certfile');
              restCert = absolute(tv, ts);
            },
            keyfile: (tv, ts) => {
              restGiven.add('keyfile');
              restKey = absolute(tv, ts);
            },
            cafile: (tv, ts) => {
              restGiven.add('cafile');
              restCa = absolute(tv, ts);
            },
            verify_client: (tv, ts) => {
              verifySet = true;
              verifyClient = reader.oneOf(tv, ts, ['none', 'optional', 'required'] as const) ?? verifyClient;
            },
          },
        }),
      backups: (v, s) => {
        const found = reader.mapping(v, s, { read: { repo_path: (bv, bs) => (repoPath = absolute(bv, bs)) } });
        if (found && !hasKey(v, 'repo_path')) reader.missing({ ...s, field: 'backups.repo_path' }, 'required: the absolute directory of the backup repositories, shared by the nodes (e.g. /var/lib/warden-backup)');
      },
    },
  });
  if (isMap) {
    if (!hasKey(root, 'name')) reader.missing({ ...rootSite, field: 'name' }, 'required: the node name (e.g. node-1)');
    if (!hasKey(root, 'dir')) reader.missing({ ...rootSite, field: 'dir' }, 'required: an absolute directory for the node\'s workloads (e.g. /var/lib/warden)');
    if (!hasKey(root, 'etcd')) reader.missing({ ...rootSite, field: 'etcd.endpoints' }, 'required: the etcd endpoints, e.g. [http://127.0.0.1:2379]');
  }
  if (username === undefined && passwordFile !== undefined) reader.error({ ...rootSite, field: 'etcd.password_file' }, 'needs etcd.username');
  if ((cert === undefined) !== (key === undefined)) reader.error({ ...rootSite, field: cert === undefined ? 'etcd.cert' : 'etcd.key' }, 'etcd.cert and etcd.key go together (a client certificate and its private key)');
  const tlsField = cacert !== undefined ? 'etcd.cacert' : cert !== undefined ? 'etcd.cert' : key !== undefined ? 'etcd.key' : undefined;
  if (tlsField !== undefined && endpoints?.some((e) => !e.startsWith('https://')) === true) reader.error({ ...rootSite, field: tlsField }, 'TLS settings need https:// etcd endpoints');
  if (restGiven.has('certfile') !== restGiven.has('keyfile')) reader.error({ ...rootSite, field: restGiven.has('certfile') ? 'restapi.keyfile' : 'restapi.certfile' }, 'restapi.certfile and restapi.keyfile go together (the agents\' certificate and its private key)');
  else if (!restGiven.has('certfile') && (restGiven.has('cafile') || verifySet)) reader.error({ ...rootSite, field: restGiven.has('cafile') ? 'restapi.cafile' : 'restapi.verify_client' }, 'needs restapi.certfile and restapi.keyfile (TLS)');
  else if (verifyClient !== 'none' && !restGiven.has('cafile')) reader.error({ ...rootSite, field: 'restapi.verify_client' }, `${verifyClient} needs restapi.cafile (the CA that signs client certificates)`);
  if (reader.errors.length > 0 || name === undefined || dir === undefined || endpoints === undefined) return { ok: false, errors: sortSpecErrors(reader.errors) };
  return {
    ok: true,
    config: {
      name,
      dir,
      etcd: {
        endpoints,
        ...(username === undefined ? {} : { username }),
        ...(passwordFile === undefined ? {} : { passwordFile }),
        ...(cacert === undefined ? {} : { cacert }),
        ...(cert === undefined ? {} : { cert }),
        ...(key === undefined ? {} : { key }),
      },
      address,
      labels: Object.hasOwn(labels, HOSTNAME) ? labels : { ...labels, [HOSTNAME]: name },
      taints,
      capacity: { workloads },
      leaseTtlSeconds,
      restartDelaySeconds,
      controller: { enabled, nodeLostSeconds, ttlSeconds },
      pgBinDir,
      log: { level, ...(logFile === undefined ? {} : { file: logFile }) },
      ...(repoPath === undefined ? {} : { backups: { repoPath } }),
      ...(restCert === undefined || restKey === undefined ? {} : { restApi: { certfile: restCert, keyfile: restKey, ...(restCa === undefined ? {} : { cafile: restCa }), verifyClient } }),
    },
    notices: sortSpecErrors(reader.notices),
  };
}
