import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { HoldOutcome, PortKind, ProxyObserver, ProxyStats } from './tcp-proxy.js';

/** What the metrics read at scrape time. */
export interface RouterMetricsSource {
  readonly cluster: string;
  stats(): ProxyStats;
  /** 1 when new rw connections go straight to a leader. */
  rwOpen(): boolean;
  /** Seconds since the send time of the last successful etcd read (NaN before the first). */
  confirmationAgeSeconds(): number;
  leaderChanges(): number;
}

/**
 * The router's Prometheus registry: per-backend connections, bytes and connect errors, the held
 * queue and how long connections waited in it, drops and refusals. Counters are read from the
 * proxy at scrape time; hold durations are observed as they happen (the returned observer).
 */
export function createRouterMetrics(src: RouterMetricsSource): { registry: Registry; observer: ProxyObserver } {
  const registry = new Registry();
  const cluster = src.cluster;
  const perBackend = (name: string, help: string, read: (s: ProxyStats['sessions'][number]) => number, kind: 'gauge' | 'counter'): void => {
    const opts = { name, help, labelNames: ['cluster', 'port', 'backend'] as const, registers: [registry] };
    const collect = function (this: Gauge | Counter): void {
      this.reset();
      for (const s of src.stats().sessions) {
        const v = read(s);
        const labels = { cluster, port: s.port, backend: s.backend.name };
        if (this instanceof Gauge) this.set(labels, v);
        else this.inc(labels, v);
      }
    };
    if (kind === 'gauge') new Gauge({ ...opts, collect });
    else new Counter({ ...opts, collect });
  };
  perBackend('warden_router_connections', 'open client sessions per backend', (s) => s.active, 'gauge');
  perBackend('warden_router_connections_total', 'client sessions started per backend', (s) => s.connectionsTotal, 'counter');
  perBackend('warden_router_connect_errors_total', 'failed TCP connects to a backend', (s) => s.connectErrors, 'counter');
  perBackend('warden_router_received_bytes_total', 'bytes received from clients, per backend', (s) => s.bytesFromClients, 'counter');
  perBackend('warden_router_sent_bytes_total', 'bytes sent to clients, per backend', (s) => s.bytesToClients, 'counter');

  new Gauge({
    name: 'warden_router_held_connections',
    help: 'connections waiting for a backend',
    labelNames: ['cluster', 'port'],
    registers: [registry],
    collect() {
      const h = src.stats().held;
      this.set({ cluster, port: 'rw' }, h.rw);
      this.set({ cluster, port: 'ro' }, h.ro);
    },
  });
  const hold = new Histogram({
    name: 'warden_router_hold_duration_seconds',
    help: 'how long connections were held before being routed, refused or abandoned',
    labelNames: ['cluster', 'port', 'outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [registry],
  });
  new Counter({
    name: 'warden_router_accepted_connections_total',
    help: 'client connections accepted',
    labelNames: ['cluster', 'port'],
    registers: [registry],
    collect() {
      this.reset();
      const a = src.stats().accepted;
      this.inc({ cluster, port: 'rw' }, a.rw);
      this.inc({ cluster, port: 'ro' }, a.ro);
    },
  });
  new Counter({
    name: 'warden_router_dropped_sessions_total',
    help: 'sessions the router closed because their backend left the routes',
    labelNames: ['cluster', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(src.stats().dropped)) this.inc({ cluster, reason }, n);
    },
  });
  new Counter({
    name: 'warden_router_refused_connections_total',
    help: 'connections refused (PostgreSQL error) or closed as garbage',
    labelNames: ['cluster', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(src.stats().refused)) this.inc({ cluster, reason }, n);
    },
  });
  new Gauge({
    name: 'warden_router_rw_open',
    help: '1 when new read-write connections go straight to a confirmed leader',
    labelNames: ['cluster'],
    registers: [registry],
    collect() {
      this.set({ cluster }, src.rwOpen() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'warden_router_etcd_confirmation_age_seconds',
    help: 'seconds since the last successful read of the cluster from etcd was sent',
    labelNames: ['cluster'],
    registers: [registry],
    collect() {
      this.set({ cluster }, src.confirmationAgeSeconds());
    },
  });
  new Counter({
    name: 'warden_router_leader_changes_total',
    help: 'changes of the read-write backend seen by this router',
    labelNames: ['cluster'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ cluster }, src.leaderChanges());
    },
  });
  const observer: ProxyObserver = {
    holdEnded(port: PortKind, outcome: HoldOutcome, heldMs: number) {
      hold.observe({ cluster, port, outcome }, heldMs / 1000);
    },
  };
  return { registry, observer };
}
