import type { Command } from 'commander';
import { createLogger } from '../agent/logger.js';
import { systemClock } from '../core/clock.js';
import { describeError, WardenError } from '../core/errors.js';
import type { StateFile } from '../controller/state-file.js';
import { EtcdClient, type EtcdAuth, type EtcdTls } from '../dcs/etcd-client.js';
import { readEtcdFiles } from './etcd-files.js';
import { renderHaproxyConfig, Router, type HaproxyMember } from '../router/index.js';
import { formatHostPort, formatSpecError, loadRouterConfig } from '../spec/index.js';
import { readClusterView, resolveTarget, type TargetOptions } from './target.js';

/** Bound on each etcd call of the router (its reads are bounded tighter, by the lease ttl). */
const ROUTER_ETCD_TIMEOUT_MS = 2000;

/** Registers `warden router` and `warden haproxy-config`. */
export function registerRouterCommands(program: Command): void {
  program
    .command('router')
    .description('run a TCP router: a read-write port to the current leader, a read-only port to streaming replicas')
    .requiredOption('-c, --config <file>', 'router config (YAML); every setting may also come from WARDEN_ROUTER_* variables')
    .option('--wait-for-cluster', 'do not exit when etcd is unreachable or the cluster is not there yet: open the ports, hold connections and keep retrying, with log lines', false)
    .action(async (o: { config: string; waitForCluster: boolean }) => {
      process.exitCode = await runRouterCommand(o.config, o.waitForCluster);
    });

  program
    .command('haproxy-config')
    .description("print an HAProxy configuration that routes with the agents' /primary and /replica health checks")
    .option('--dir <dir>', 'runtime directory of `warden up`', '.warden')
    .option('--etcd <urls>', 'etcd endpoints, comma-separated (with --cluster)')
    .option('--cluster <name>', 'cluster name (with --etcd; with --dir, another cluster of that runtime\'s etcd)')
    .option('--bind <host>', 'address HAProxy listens on', '127.0.0.1')
    .option('--rw-port <port>', 'read-write (primary) port', '5000')
    .option('--ro-port <port>', 'read-only (replicas) port', '5001')
    .option('--stats-port <port>', 'also serve the HAProxy stats page on this port')
    .option('--maxconn <n>', 'connections per server', '1000')
    .action(async (o: TargetOptions & { bind: string; rwPort: string; roPort: string; statsPort?: string; maxconn: string }) => {
      const target = await resolveTarget(o);
      const view = await readClusterView(target);
      let members: HaproxyMember[] = [...view.members.values()].map((m) => ({ name: m.name, host: m.host, port: m.port, apiUrl: m.apiUrl }));
      // A member that is down has no key in etcd; the local runtime still knows it.
      for (const m of target.state?.members ?? []) {
        if (!members.some((x) => x.name === m.name)) members.push({ name: m.name, host: m.host, port: m.port, apiUrl: m.apiUrl });
      }
      members = members.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
      process.stdout.write(
        renderHaproxyConfig({
          cluster: target.cluster,
          members,
          bindHost: o.bind,
          rwPort: portOption('--rw-port', o.rwPort),
          roPort: portOption('--ro-port', o.roPort),
          ...(o.statsPort === undefined ? {} : { statsPort: portOption('--stats-port', o.statsPort) }),
          maxconn: positiveOption('--maxconn', o.maxconn),
        }),
      );
    });
}

function portOption(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new WardenError('config-invalid', `${name}: must be a port from 1 to 65535 (got ${JSON.stringify(text)})`);
  return n;
}

function positiveOption(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new WardenError('config-invalid', `${name}: must be a positive integer (got ${JSON.stringify(text)})`);
  return n;
}

/** `warden router --config FILE`: runs one router until SIGTERM/SIGINT. Returns the exit code. */
export async function runRouterCommand(configFile: string, waitForCluster: boolean): Promise<number> {
  const loaded = await loadRouterConfig(configFile, process.env);
  if (!loaded.ok) {
    for (const e of loaded.errors) process.stderr.write(`${formatSpecError(e)}\n`);
    return 2;
  }
  const cfg = loaded.config;
  const log = createLogger({ level: cfg.log.level, file: cfg.log.file, name: `router-${cfg.cluster}` });
  for (const n of loaded.notices) log.warn({}, formatSpecError(n));
  let etcdOpts: { tls?: EtcdTls; auth?: EtcdAuth };
  try {
    etcdOpts = readEtcdFiles(cfg.etcdFiles ?? {});
  } catch (e) {
    process.stderr.write(`${configFile}: ${describeError(e)}\n`);
    return 2;
  }
  const dcs = new EtcdClient({ endpoints: cfg.etcdEndpoints, defaultTimeoutMs: ROUTER_ETCD_TIMEOUT_MS, ...etcdOpts });
  const router = new Router(
    {
      cluster: cfg.cluster,
      holdTimeoutMs: cfg.holdTimeoutMs,
      maxHeld: cfg.maxHeld,
      connectTimeoutMs: cfg.connectTimeoutMs,
      roMaxLagBytes: cfg.roMaxLagBytes,
      roFallbackToLeader: cfg.roFallbackToLeader,
      listen: cfg.listen,
      etcdEndpoints: cfg.etcdEndpoints,
    },
    { dcs, clock: systemClock, log },
  );
  let addresses;
  try {
    addresses = await router.start(waitForCluster);
  } catch (e) {
    process.stderr.write(`warden router: ${describeError(e)}\n`);
    log.error({ err: describeError(e) }, 'router could not start');
    dcs.close();
    return 1;
  }
  const where = [`rw ${formatHostPort(addresses.rw)}`, ...(addresses.ro ? [`ro ${formatHostPort(addresses.ro)}`] : []), ...(addresses.admin ? [`admin http://${formatHostPort(addresses.admin)}`] : [])].join(', ');
  log.info({ cluster: cfg.cluster, listen: addresses, etcd: cfg.etcdEndpoints, waitForCluster }, `router started: ${where}`);
  process.stdout.write(`warden router for cluster ${cfg.cluster}: ${where}\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'router stopping: closing ports and sessions');
      void router
        .stop()
        .catch((e: unknown) => log.error({ err: describeError(e) }, 'router stop failed'))
        .finally(() => {
          dcs.close();
          resolve(0);
        });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

/**
 * Waits (bounded) until the local runtime's router sends read-write connections to a leader, and
 * returns the lines `warden up` prints about it; [] when the runtime has no router.
 */
export async function routerReport(state: StateFile, timeoutMs: number): Promise<string[]> {
  const r = state.router;
  if (r === null) return [];
  let open = false;
  if (r.admin !== undefined) {
    const url = `http://${formatHostPort(r.admin)}/status`;
    const deadline = Date.now() + timeoutMs;
    while (!open && Date.now() < deadline) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
        open = ((await res.json()) as { rw?: { open?: boolean } }).rw?.open === true;
      } catch {
        // not listening yet: poll again until the deadline
      }
      if (!open) await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const psql = (hp: { host: string; port: number }): string => `PGPASSFILE=${state.pgpassFile} psql "host=${hp.host} port=${hp.port} user=${state.superuser} dbname=postgres"`;
  return [
    `Through the router${open ? '' : ' (not routing yet: see its log)'} — follows the leader through failovers:`,
    `  ${psql(r.rw)}   # read-write: the leader`,
    `  ${psql(r.ro)}   # read-only: streaming replicas`,
    ...(r.admin === undefined ? [] : [`  router status: curl http://${formatHostPort(r.admin)}/status`]),
  ];
}
