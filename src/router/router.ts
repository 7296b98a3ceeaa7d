import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Clock } from '../core/clock.js';
import { WardenError } from '../core/errors.js';
import type { Dcs } from '../dcs/dcs.js';
import { clusterPrefix, parseClusterView, type ClusterView } from '../ha/index.js';
import { createAdminApi } from './admin-api.js';
import { ClusterSource, type RouterLogger } from './cluster-source.js';
import { computeRoutes, type Routes, type RouteSettings } from './route-table.js';
import { createRouterMetrics } from './router-metrics.js';
import { parseSwitchoverPause, ROUTER_PAUSE_KEY, type SwitchoverPause } from './switchover-pause.js';
import type { ListenAddress, RouterAddresses, RouterStatus } from './router-status.js';
import { TcpProxy } from './tcp-proxy.js';

/** What one router does. */
export interface RouterOptions extends RouteSettings {
  readonly cluster: string;
  readonly holdTimeoutMs: number;
  readonly maxHeld: number;
  readonly connectTimeoutMs: number;
  readonly listen: { readonly rw: ListenAddress; readonly ro?: ListenAddress; readonly admin?: ListenAddress };
  /** Shown in GET /status and in error messages. */
  readonly etcdEndpoints: readonly string[];
}

export interface RouterDeps {
  readonly dcs: Dcs;
  readonly clock: Clock;
  readonly log: RouterLogger;
}

/** Bounds on the etcd reads, derived from the lease ttl so that fail-closed never waits on a slow read. */
function readTimingFor(ttlMs: number): { intervalMs: number; timeoutMs: number } {
  const quarter = Math.round(ttlMs / 4);
  return { intervalMs: Math.min(1000, Math.max(100, quarter)), timeoutMs: Math.min(2000, Math.max(200, quarter)) };
}

/**
 * One router: the etcd source, the route computation and the TCP proxy, plus the admin HTTP API.
 * Routes are recomputed on every change the watch delivers, on every confirming read (or failed
 * one), and at the instant they would change by time alone (fail-closed, pause expiry).
 */
export class Router {
  readonly proxy: TcpProxy;
  readonly metrics: Registry;
  private readonly source: ClusterSource;
  private readonly prefix: string;
  private confirmedAtMs: number | undefined;
  private view: ClusterView | undefined;
  private viewRevision = -1;
  private pause: SwitchoverPause | undefined;
  private timer: NodeJS.Timeout | undefined;
  private leaderChanges = 0;
  private lastRw: string | undefined;
  private addresses: RouterAddresses | undefined;
  private admin: Server | undefined;
  private stopped = false;
  private waitingLogged = false;

  constructor(
    readonly opts: RouterOptions,
    private readonly deps: RouterDeps,
  ) {
    this.prefix = clusterPrefix(opts.cluster);
    const { registry, observer } = createRouterMetrics({
      cluster: opts.cluster,
      stats: () => this.proxy.stats(),
      rwOpen: () => this.proxy.currentRoutes().rwOpen,
      confirmationAgeSeconds: () => (this.confirmedAtMs === undefined ? Number.NaN : (this.deps.clock.nowMs() - this.confirmedAtMs) / 1000),
      leaderChanges: () => this.leaderChanges,
    });
    this.metrics = registry;
    this.proxy = new TcpProxy({
      cluster: opts.cluster,
      holdTimeoutMs: opts.holdTimeoutMs,
      maxHeld: opts.maxHeld,
      connectTimeoutMs: opts.connectTimeoutMs,
      log: deps.log,
      observer,
    });
    this.source = new ClusterSource(
      deps.dcs,
      this.prefix,
      {
        clock: deps.clock,
        log: deps.log,
        confirmIntervalMs: () => readTimingFor(this.ttlMs()).intervalMs,
        readTimeoutMs: () => readTimingFor(this.ttlMs()).timeoutMs,
      },
      {
        changed: () => this.recompute(),
        confirmed: (sentAtMs) => {
          this.confirmedAtMs = Math.max(this.confirmedAtMs ?? 0, sentAtMs);
          this.recompute();
        },
        readFailed: () => this.recompute(),
      },
    );
  }

  /**
   * Starts the router. Without `waitForCluster` the first read must succeed and find the cluster,
   * else it throws a clear error (unreachable etcd: 'dcs-unavailable'; unknown cluster: 'not-found')
   * before any port is opened. With it, the ports open at once (connections are held) and the
   * router logs, then keeps reading, until the cluster appears.
   */
  async start(waitForCluster = false): Promise<RouterAddresses> {
    if (!waitForCluster) {
      try {
        await this.source.read();
      } catch (e) {
        throw new WardenError('dcs-unavailable', `cannot read cluster "${this.opts.cluster}" from etcd at ${this.opts.etcdEndpoints.join(',')}`, { cause: e });
      }
      if (!this.clusterExists()) {
        throw new WardenError('not-found', `cluster "${this.opts.cluster}" not found in etcd at ${this.opts.etcdEndpoints.join(',')} (no ${this.prefix}initialize key and no members)`);
      }
    }
    try {
      const rw = await this.proxy.listen('rw', this.opts.listen.rw.host, this.opts.listen.rw.port);
      const ro = this.opts.listen.ro === undefined ? undefined : await this.proxy.listen('ro', this.opts.listen.ro.host, this.opts.listen.ro.port);
      const admin = this.opts.listen.admin === undefined ? undefined : await this.listenAdmin(this.opts.listen.admin);
      this.addresses = { rw: addr(rw), ...(ro === undefined ? {} : { ro: addr(ro) }), ...(admin === undefined ? {} : { admin }) };
    } catch (e) {
      await this.stop();
      const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
      const where = err.address === undefined ? '' : ` on ${err.address}:${err.port ?? '?'}`;
      const why = err.code === 'EADDRINUSE' ? 'the address is in use by another process' : err.message;
      throw new WardenError(err.code === 'EADDRINUSE' ? 'port-in-use' : 'internal', `router cannot listen${where}: ${why}`, { details: { code: err.code } });
    }
    this.source.start();
    this.recompute();
    return this.addresses;
  }

  /** Stops reading etcd, closes the ports and every session. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    await this.source.stop();
    await this.proxy.close();
    if (this.admin !== undefined) {
      const admin = this.admin;
      admin.closeAllConnections?.();
      await new Promise<void>((resolve) => admin.close(() => resolve()));
    }
  }

  status(): RouterStatus {
    const routes = this.proxy.currentRoutes();
    const stats = this.proxy.stats();
    const now = this.deps.clock.nowMs();
    return {
      cluster: this.opts.cluster,
      listen: this.addresses ?? null,
      etcd: {
        endpoints: this.opts.etcdEndpoints,
        revision: this.source.snapshot().revision,
        confirmedAgoMs: this.confirmedAtMs === undefined ? null : now - this.confirmedAtMs,
        ttlMs: this.view === undefined ? null : this.view.config.ttl * 1000,
      },
      leader: this.view?.leader?.name ?? null,
      rw: { backend: routes.rw ?? null, open: routes.rwOpen, held: routes.rwHeld ?? null },
      ro: routes.ro,
      pause: this.pause !== undefined && this.pause.untilMs > now ? this.pause : null,
      held: stats.held,
      backends: stats.sessions,
      dropped: stats.dropped,
      refused: stats.refused,
      accepted: stats.accepted,
      closedBeforeStartup: stats.closedBeforeStartup,
      awaitingStartup: stats.awaitingStartup,
      leaderChanges: this.leaderChanges,
      settings: {
        holdTimeoutMs: this.opts.holdTimeoutMs,
        maxHeld: this.opts.maxHeld,
        roMaxLagBytes: this.opts.roMaxLagBytes,
        roFallbackToLeader: this.opts.roFallbackToLeader,
      },
    };
  }

  /** True when the router can do its job: etcd confirmed the cluster within one ttl. */
  isHealthy(): boolean {
    const held = this.proxy.currentRoutes().rwHeld?.code;
    return this.confirmedAtMs !== undefined && held !== 'leader-unconfirmed' && held !== 'no-cluster-view';
  }

  private ttlMs(): number {
    return (this.view?.config.ttl ?? 2) * 1000;
  }

  private clusterExists(): boolean {
    this.refreshView();
    return this.view !== undefined && (this.view.initialize !== undefined || this.view.members.size > 0);
  }

  private loggedConfigError: string | undefined;
  private loggedInvalid: ReadonlyMap<string, string> = new Map();

  private refreshView(): void {
    const snap = this.source.snapshot();
    if (snap.revision === this.viewRevision || snap.revision === 0) return;
    this.viewRevision = snap.revision;
    const next = parseClusterView(this.prefix, snap.revision, snap.kvs);
    // A refused config key (written behind the API's back) must not move the router's timings to
    // the defaults, nor take it down: the last valid configuration stays in force.
    if (next.configError !== undefined && this.view !== undefined && next.configError !== this.loggedConfigError) {
      this.loggedConfigError = next.configError;
      this.deps.log.error({ error: next.configError }, 'config key refused; the last valid configuration stays in force');
    }
    for (const [key, why] of next.invalid) {
      if (this.loggedInvalid.get(key) !== why) this.deps.log.warn({ key, why }, 'invalid record in etcd ignored');
    }
    this.loggedInvalid = new Map(next.invalid);
    this.view = next.configError !== undefined && this.view !== undefined ? { ...next, config: this.view.config } : next;
    const pauseKv = snap.kvs.find((kv) => kv.key === this.prefix + ROUTER_PAUSE_KEY);
    this.pause = pauseKv === undefined ? undefined : parseSwitchoverPause(pauseKv.value);
  }

  private recompute(): void {
    if (this.stopped) return;
    this.refreshView();
    if (this.view !== undefined) {
      const exists = this.clusterExists();
      if (!exists && !this.waitingLogged) {
        this.waitingLogged = true;
        this.deps.log.warn({ cluster: this.opts.cluster, etcd: this.opts.etcdEndpoints }, `cluster ${this.opts.cluster} not found in etcd yet; holding connections until it appears`);
      } else if (exists && this.waitingLogged) {
        this.waitingLogged = false;
        this.deps.log.info({ cluster: this.opts.cluster }, `cluster ${this.opts.cluster} found in etcd`);
      }
    }
    const routes: Routes = computeRoutes({
      view: this.view,
      pause: this.pause,
      confirmedAtMs: this.confirmedAtMs,
      nowMs: this.deps.clock.nowMs(),
      settings: this.opts,
    });
    const rwName = routes.rw?.name;
    if (rwName !== undefined && this.lastRw !== undefined && rwName !== this.lastRw) this.leaderChanges++;
    if (rwName !== undefined) this.lastRw = rwName;
    this.proxy.setRoutes(routes);
    clearTimeout(this.timer);
    if (routes.recomputeAtMs !== undefined) {
      const delay = Math.max(0, routes.recomputeAtMs - this.deps.clock.nowMs());
      this.timer = setTimeout(() => this.recompute(), delay + 1);
    }
  }

  private async listenAdmin(at: ListenAddress): Promise<ListenAddress> {
    const app = createAdminApi({ status: () => this.status(), healthy: () => this.isHealthy(), metrics: this.metrics });
    const server = await app.listen(at.host, at.port, 'router admin');
    this.admin = server;
    return addr(server.address() as AddressInfo);
  }
}

function addr(a: AddressInfo): ListenAddress {
  return { host: a.address, port: a.port };
}
