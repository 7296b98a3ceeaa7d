import { resolve } from 'node:path';
import { WardenError } from '../core/errors.js';
import { readStateFile, type StateFile } from '../controller/state-file.js';
import { EtcdClient } from '../dcs/etcd-client.js';
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
}

/** Resolves `--etcd URLS --cluster NAME`, or else `--dir DIR` (default ./.warden) and its state.json. */
export async function resolveTarget(opts: TargetOptions): Promise<Target> {
  const dir = resolve(opts.dir ?? '.warden');
  if (opts.etcd !== undefined || opts.cluster !== undefined) {
    if (opts.etcd === undefined || opts.cluster === undefined) {
      throw new WardenError('config-invalid', '--etcd and --cluster go together: give both, or use --dir');
    }
    const etcd = opts.etcd.split(',').map((s) => s.trim()).filter(Boolean);
    for (const u of etcd) {
      if (!/^https?:\/\/[^/]+$/.test(u)) throw new WardenError('config-invalid', `--etcd: not an http(s)://host:port URL: ${u}`);
    }
    return { cluster: opts.cluster, etcd, state: undefined, dir };
  }
  const state = await readStateFile(dir);
  if (state === undefined) {
    throw new WardenError('not-found', `no cluster found in ${dir} (no state.json): run \`warden up --dir ${dir}\`, or pass --etcd URLS --cluster NAME`);
  }
  return { cluster: state.cluster, etcd: state.etcd, state, dir };
}

/** Reads the cluster's keys once; a precise error when etcd cannot be reached. */
export async function readClusterView(t: Target, timeoutMs = 3000): Promise<ClusterView> {
  const client = new EtcdClient({ endpoints: [...t.etcd], defaultTimeoutMs: timeoutMs });
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
