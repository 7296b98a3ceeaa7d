import type { Backend, RouteReason } from './route-table.js';
import type { SwitchoverPause } from './switchover-pause.js';
import type { ProxyStats } from './tcp-proxy.js';

/** A host and port to listen on (port 0: any free port). */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Where a started router listens. */
export interface RouterAddresses {
  readonly rw: ListenAddress;
  readonly ro?: ListenAddress;
  readonly admin?: ListenAddress;
}

/** GET /status. */
export interface RouterStatus {
  readonly cluster: string;
  readonly listen: RouterAddresses | null;
  readonly etcd: { readonly endpoints: readonly string[]; readonly revision: number; readonly confirmedAgoMs: number | null; readonly ttlMs: number | null };
  readonly leader: string | null;
  readonly rw: { readonly backend: Backend | null; readonly open: boolean; readonly held: RouteReason | null };
  readonly ro: readonly Backend[];
  readonly pause: SwitchoverPause | null;
  readonly held: ProxyStats['held'];
  readonly backends: ProxyStats['sessions'];
  readonly dropped: ProxyStats['dropped'];
  readonly refused: ProxyStats['refused'];
  readonly accepted: ProxyStats['accepted'];
  /** Sockets closed before their first packet (never given a backend): timed out, or evicted by newer ones. */
  readonly closedBeforeStartup: ProxyStats['closedBeforeStartup'];
  /** Sockets still waiting for their first packet. */
  readonly awaitingStartup: number;
  readonly leaderChanges: number;
  readonly settings: { readonly holdTimeoutMs: number; readonly maxHeld: number; readonly roMaxLagBytes: number; readonly roFallbackToLeader: boolean };
}
