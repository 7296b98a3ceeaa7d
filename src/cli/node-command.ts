import { createLogger } from '../agent/logger.js';
import { describeError, isWardenError } from '../core/errors.js';
import { lookupRunUser } from '../controller/runtime-layout.js';
import { EtcdClient } from '../dcs/etcd-client.js';
import { NodeDaemon } from '../node/node-daemon.js';
import { formatSpecError, loadNodeConfig } from '../spec/index.js';
import { readEtcdFiles } from './etcd-files.js';

/**
 * `warden node --config node.yaml`: runs the node daemon until SIGTERM or SIGINT, then stops its
 * workloads and leaves. Exit 2: invalid config; 1: it could not start (another live daemon has the
 * name, etcd unreachable at start).
 */
export async function runNodeCommand(configPath: string): Promise<number> {
  const loaded = await loadNodeConfig(configPath);
  if (!loaded.ok) {
    for (const e of loaded.errors) process.stderr.write(`${formatSpecError(e)}\n`);
    return 2;
  }
  for (const n of loaded.notices) process.stderr.write(`${formatSpecError(n)}\n`);
  const cfg = loaded.config;
  const { auth } = readEtcdFiles({ ...(cfg.etcd.username === undefined ? {} : { username: cfg.etcd.username }), ...(cfg.etcd.passwordFile === undefined ? {} : { passwordFile: cfg.etcd.passwordFile }) });
  const dcs = new EtcdClient({ endpoints: cfg.etcd.endpoints, defaultTimeoutMs: 5_000, ...(auth === undefined ? {} : { auth }) });
  const log = createLogger({ level: cfg.log.level, file: cfg.log.file, name: `node:${cfg.name}` });
  const daemon = new NodeDaemon(cfg, dcs, log, lookupRunUser());
  try {
    await daemon.start();
  } catch (e) {
    dcs.close();
    process.stderr.write(`warden node: ${describeError(e)}\n`);
    return isWardenError(e, 'config-invalid') ? 2 : 1;
  }
  process.stderr.write(`warden node ${cfg.name}: running (dir ${cfg.dir})\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      void daemon.stop().finally(() => {
        dcs.close();
        resolve();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.on('SIGHUP', () => undefined);
  });
  return 0;
}
