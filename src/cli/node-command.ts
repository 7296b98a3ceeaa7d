import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { createLogger } from '../agent/logger.js';
import { systemClock } from '../core/clock.js';
import { ControllerCandidate } from '../controller/controller.js';
import { describeError, isWardenError } from '../core/errors.js';
import { lookupRunUser } from '../controller/runtime-layout.js';
import { EtcdClient } from '../dcs/etcd-client.js';
import { NodeDaemon } from '../node/node-daemon.js';
import { formatSpecError, loadNodeConfig } from '../spec/index.js';
import { readEtcdFiles } from './etcd-files.js';
import { etcdOptionsFromEnv } from './target.js';
import { ctlTls } from './agent-client.js';
import type { ClientTls } from '../core/http-app.js';

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
  let files: ReturnType<typeof readEtcdFiles>;
  try {
    files = readEtcdFiles(cfg.etcd);
  } catch (e) {
    process.stderr.write(`warden node: ${configPath}: ${describeError(e)}\n`);
    return 2;
  }
  const dcs = new EtcdClient({ endpoints: cfg.etcd.endpoints, defaultTimeoutMs: 5_000, ...files });
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

/**
 * `warden controller --etcd URLS`: a controller candidate on its own, for those who run it apart
 * from the node daemons; it competes in the same election. Runs until SIGTERM or SIGINT.
 */
export async function runControllerCommand(o: { etcd: string; name?: string; ttlSeconds: number; nodeLostSeconds: number }): Promise<number> {
  const endpoints = o.etcd.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = endpoints.find((u) => !/^https?:\/\/[^/]+$/.test(u));
  if (bad !== undefined || endpoints.length === 0) {
    process.stderr.write(`warden controller: --etcd: not an http(s)://host:port URL: ${bad ?? o.etcd}\n`);
    return 2;
  }
  if (!Number.isFinite(o.ttlSeconds) || o.ttlSeconds < 2 || !Number.isFinite(o.nodeLostSeconds) || o.nodeLostSeconds < 1) {
    process.stderr.write('warden controller: --ttl must be at least 2 and --node-lost-seconds at least 1\n');
    return 2;
  }
  const name = o.name ?? hostname().toLowerCase();
  // Agents with HTTPS REST APIs: the CLI's WARDEN_CTL_CAFILE / _CERTFILE / _KEYFILE.
  let restTls: ClientTls | undefined;
  try {
    restTls = ctlTls();
  } catch (e) {
    process.stderr.write(`warden controller: ${describeError(e)}\n`);
    return 2;
  }
  const dcs = new EtcdClient({ endpoints, defaultTimeoutMs: 5_000, ...etcdOptionsFromEnv(process.env) });
  const log = createLogger({ level: 'info', name: `controller:${name}` });
  const c = new ControllerCandidate({ dcs, clock: systemClock, node: name, candidateId: randomBytes(8).toString('hex'), log, ttlMs: o.ttlSeconds * 1000, nodeLostMs: o.nodeLostSeconds * 1000, ...(restTls === undefined ? {} : { restTls }) });
  c.start();
  await new Promise<void>((resolve) => {
    const stop = (): void => void c.stop().finally(() => resolve());
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  dcs.close();
  return 0;
}
