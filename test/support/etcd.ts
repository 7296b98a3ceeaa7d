import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEtcdCluster } from '../../src/dcs/etcd-server.js';
import type { EtcdClusterHandle } from '../../src/dcs/etcd-server.js';

/** A real etcd cluster in a temp dir, and the cleanup that stops it and removes the dir. */
export interface TestEtcd {
  readonly etcd: EtcdClusterHandle;
  readonly dir: string;
  cleanup(): Promise<void>;
}

/** Starts a real etcd cluster (one member unless told) in a fresh temp dir; call `cleanup` in an after hook. */
export async function startTestEtcd(opts: { members?: number } = {}): Promise<TestEtcd> {
  const dir = await mkdtemp(join(tmpdir(), 'warden-etcd-'));
  try {
    const etcd = await startEtcdCluster({ dataDir: dir, members: opts.members ?? 1 });
    return {
      etcd,
      dir,
      async cleanup() {
        try {
          await etcd.stop();
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Runs `fn` against a fresh real etcd cluster and always cleans it up. */
export async function withEtcd<T>(fn: (etcd: EtcdClusterHandle) => Promise<T>, opts: { members?: number } = {}): Promise<T> {
  const t = await startTestEtcd(opts);
  try {
    return await fn(t.etcd);
  } finally {
    await t.cleanup();
  }
}
