import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError, WardenError } from '../core/errors.js';
import { freePorts, isPortInUse } from '../core/free-port.js';
import { ROUTER_DEFAULTS, stringifyRouterConfig } from '../spec/index.js';
import { writeLayout, type RuntimeLayout, type RuntimeRouter } from './runtime-layout.js';
import type { StateRouter } from './state-file.js';
import { isChildRunning, spawnWarden, stopChild } from './warden-child.js';

/** Ports the local runtime's router takes: read-write, read-only, admin. */
export const ROUTER_PORT_COUNT = 3;

/** The router of a runtime dir on the given ports (rw, ro, admin); writes DIR/router/router.yaml. */
export async function prepareRouter(dir: string, layout: Pick<RuntimeLayout, 'cluster' | 'etcd' | 'etcdAuth'>, host: string, ports: readonly number[]): Promise<RuntimeRouter> {
  const [rwPort, roPort, adminPort] = ports;
  if (rwPort === undefined || roPort === undefined || adminPort === undefined) throw new WardenError('internal', 'the router needs three ports');
  const routerDir = join(dir, 'router');
  await mkdir(routerDir, { recursive: true });
  const router: RuntimeRouter = { host, rwPort, roPort, adminPort, dir: routerDir, configFile: join(routerDir, 'router.yaml'), logFile: join(routerDir, 'router.log') };
  const yaml = stringifyRouterConfig({
    cluster: layout.cluster,
    etcdEndpoints: layout.etcd.members.map((m) => m.clientUrl),
    ...(layout.etcdAuth === undefined ? {} : { etcdFiles: { username: layout.etcdAuth.username, passwordFile: layout.etcdAuth.passwordFile } }),
    listen: { rw: { host, port: rwPort }, ro: { host, port: roPort }, admin: { host, port: adminPort } },
    holdTimeoutMs: ROUTER_DEFAULTS.holdTimeoutMs,
    maxHeld: ROUTER_DEFAULTS.maxHeld,
    roMaxLagBytes: ROUTER_DEFAULTS.roMaxLagBytes,
    roFallbackToLeader: ROUTER_DEFAULTS.roFallbackToLeader,
    connectTimeoutMs: ROUTER_DEFAULTS.connectTimeoutMs,
    log: { level: 'info', file: router.logFile },
  });
  await writeFile(router.configFile, yaml, { mode: 0o644 });
  return router;
}

/**
 * An existing runtime dir with its router: a dir made before routers existed gets one on fresh
 * ports (saved in runtime.json); otherwise its ports are checked to be free.
 */
export async function ensureRouter(dir: string, layout: RuntimeLayout): Promise<RuntimeLayout> {
  if (layout.router !== undefined) {
    const r = layout.router;
    for (const [what, port] of [['read-write', r.rwPort], ['read-only', r.roPort], ['admin', r.adminPort]] as const) {
      if (await isPortInUse(port, r.host)) throw new WardenError('port-in-use', `port ${r.host}:${port} (router ${what} port) is in use by another process`);
    }
    return layout;
  }
  const host = layout.members[0]?.host ?? '127.0.0.1';
  const taken = new Set<number>([
    ...layout.members.flatMap((m) => [m.pgPort, m.apiPort]),
    ...layout.etcd.members.flatMap((m) => [Number(new URL(m.clientUrl).port), Number(new URL(m.peerUrl).port)]),
  ]);
  const ports = (await freePorts(ROUTER_PORT_COUNT + taken.size, host)).filter((p) => !taken.has(p)).slice(0, ROUTER_PORT_COUNT);
  const next: RuntimeLayout = { ...layout, router: await prepareRouter(dir, layout, host, ports) };
  await writeLayout(dir, next);
  return next;
}

/** How the supervisor logs. */
interface SupervisorLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Pause before the supervisor starts a router that exited. */
const ROUTER_RESTART_DELAY_MS = 1000;

/**
 * The local runtime's router process under the supervisor: `warden router --config DIR/router/router.yaml
 * --wait-for-cluster`, started again ROUTER_RESTART_DELAY_MS after it exits until the runtime stops.
 */
export class SupervisedRouter {
  private child: ChildProcess | undefined;
  private stopping = false;

  constructor(
    private readonly router: RuntimeRouter,
    private readonly log: SupervisorLog,
    private readonly argv: (args: readonly string[], nodeFlags?: readonly string[]) => { command: string; args: string[] },
    private readonly changed: () => void,
  ) {}

  start(): void {
    if (this.stopping) return;
    // A session of its own (setsid): with Linux's autogroup scheduling the router then gets a CPU share
    // of its own instead of sharing one with every PostgreSQL backend under the supervisor.
    const child = spawnWarden(['router', '--config', this.router.configFile, '--wait-for-cluster'], join(this.router.dir, 'router.out'), { detached: true, argv: this.argv });
    this.child = child;
    this.log.info({ pid: child.pid, rw: this.router.rwPort, ro: this.router.roPort }, 'router started');
    child.once('error', (e) => this.log.error({ err: describeError(e) }, 'router failed to spawn'));
    child.once('exit', (code, signal) => {
      if (this.stopping || this.child !== child) return;
      this.log.warn({ code, signal, restartInMs: ROUTER_RESTART_DELAY_MS }, 'router exited; restarting it');
      this.changed();
      setTimeout(() => {
        this.start();
        this.changed();
      }, ROUTER_RESTART_DELAY_MS);
    });
  }

  /** The router as state.json records it. */
  state(): StateRouter {
    const c = this.child;
    const r = this.router;
    return { rw: { host: r.host, port: r.rwPort }, ro: { host: r.host, port: r.roPort }, admin: { host: r.host, port: r.adminPort }, pid: isChildRunning(c) ? (c.pid ?? null) : null };
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs: number): Promise<void> {
    this.stopping = true;
    return stopChild(this.child, graceMs);
  }
}
