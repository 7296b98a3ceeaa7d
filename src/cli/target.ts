import { resolve } from 'node:path';
import { WardenError } from '../core/errors.js';
import { readStateFile, type StateFile } from '../controller/state-file.js';
import { EtcdClient, type EtcdAuth, type EtcdTls } from '../dcs/etcd-client.js';
import { readEtcdFiles } from './etcd-files.js';
import { clusterPrefix, parseClusterView, type ClusterView } from '../ha/index.js';

/** Options every CLI command accepts to find a cluster. */
export interface TargetOptions {
  dir?: string;
  etcd?: string;
  cluster?: string;
}

/** A cluster to talk to: its etcd endpoints and name, and the local state file when there is one. */
export interface Target {
  readonly cluster: string;
  readonly etcd: readonly string[];
  readonly state: StateFile | undefined;
  readonly dir: string;
  /** Found through `--dir`: the runtime dir's secrets (DIR/secrets, shared by its clusters) apply. */
  readonly local: boolean;
  /** etcd TLS and credentials: from state.json with --dir, from WARDEN_ETCD_* variables with --etcd. */
  readonly etcdOptions: { readonly tls?: EtcdTls; readonly auth?: EtcdAuth };
}

/** A client for the target's etcd, with its TLS and credentials. */
export function etcdClientFor(t: Target, defaultTimeoutMs: number): EtcdClient {
  return new EtcdClient({ endpoints: t.etcd, defaultTimeoutMs, ...t.etcdOptions });
}

/** WARDEN_ETCD_USERNAME + WARDEN_ETCD_PASSWORD or _PASSWORD_FILE, WARDEN_ETCD_CACERT / _CERT / _KEY (paths), for --etcd. */
export function etcdOptionsFromEnv(env: NodeJS.ProcessEnv): Target['etcdOptions'] {
  const password = env.WARDEN_ETCD_PASSWORD;
  const passwordFile = env.WARDEN_ETCD_PASSWORD_FILE;
  if (password !== undefined && passwordFile !== undefined) throw new WardenError('config-invalid', 'set only one of WARDEN_ETCD_PASSWORD and WARDEN_ETCD_PASSWORD_FILE');
  const { tls, auth } = readEtcdFiles({
    ...(env.WARDEN_ETCD_USERNAME === undefined ? {} : { username: env.WARDEN_ETCD_USERNAME }),
    ...(passwordFile === undefined ? {} : { passwordFile }),
    ...(env.WARDEN_ETCD_CACERT === undefined ? {} : { cacert: env.WARDEN_ETCD_CACERT }),
    ...(env.WARDEN_ETCD_CERT === undefined ? {} : { cert: env.WARDEN_ETCD_CERT }),
    ...(env.WARDEN_ETCD_KEY === undefined ? {} : { key: env.WARDEN_ETCD_KEY }),
  });
  const user = env.WARDEN_ETCD_USERNAME;
  const withPassword = auth ?? (user !== undefined && password !== undefined ? { username: user, password } : undefined);
  if (user === undefined && (password ?? passwordFile) !== undefined) throw new WardenError('config-invalid', 'WARDEN_ETCD_PASSWORD(_FILE) needs WARDEN_ETCD_USERNAME');
  return { ...(tls === undefined ? {} : { tls }), ...(withPassword === undefined ? {} : { auth: withPassword }) };
}

/** Resolves `--etcd URLS --cluster NAME`, or else `--dir DIR` (default ./.warden) and its state.json (`--cluster` there: another cluster on its etcd). */
export async function resolveTarget(opts: TargetOptions): Promise<Target> {
  const dir = resolve(opts.dir ?? '.warden');
  if (opts.etcd !== undefined) {
    if (opts.cluster === undefined) {
      throw new WardenError('config-invalid', '--etcd needs --cluster NAME: give both, or use --dir');
    }
    const etcd = opts.etcd.split(',').map((s) => s.trim()).filter(Boolean);
    for (const u of etcd) {
      if (!/^https?:\/\/[^/]+$/.test(u)) throw new WardenError('config-invalid', `--etcd: not an http(s)://host:port URL: ${u}`);
    }
    return { cluster: opts.cluster, etcd, state: undefined, dir, local: false, etcdOptions: etcdOptionsFromEnv(process.env) };
  }
  const state = await readStateFile(dir);
  if (state === undefined) {
    throw new WardenError('not-found', `no cluster found in ${dir} (no state.json): run \`warden up --dir ${dir}\`, or pass --etcd URLS --cluster NAME`);
  }
  const a = state.etcdAuth;
  const etcdOptions = a === undefined ? {} : readEtcdFiles({ username: a.username, passwordFile: a.passwordFile });
  // `--dir D --cluster NAME`: another cluster on the same etcd (a `--nodes` runtime holds several);
  // state.json describes the runtime's first cluster only, so it is not handed on.
  if (opts.cluster !== undefined && opts.cluster !== state.cluster) return { cluster: opts.cluster, etcd: state.etcd, state: undefined, dir, local: true, etcdOptions };
  return { cluster: state.cluster, etcd: state.etcd, state, dir, local: true, etcdOptions };
}

/** Reads the cluster's keys once; a precise error when etcd cannot be reached. */
export async function readClusterView(t: Target, timeoutMs = 3000): Promise<ClusterView> {
  const client = etcdClientFor(t, timeoutMs);
  try {
    const prefix = clusterPrefix(t.cluster);
    const snap = await client.range(prefix, { timeoutMs });
    const view = parseClusterView(prefix, snap.revision, snap.kvs);
    if (view.initialize === undefined && view.members.size === 0) {
      throw new WardenError('not-found', `cluster "${t.cluster}" not found in etcd at ${t.etcd.join(',')}`);
    }
    return view;
  } catch (e) {
    if (e instanceof WardenError && e.code === 'not-found') throw e;
    throw new WardenError('dcs-unavailable', `cannot read cluster "${t.cluster}" from etcd at ${t.etcd.join(',')}`, { cause: e });
  } finally {
    client.close();
  }
}
