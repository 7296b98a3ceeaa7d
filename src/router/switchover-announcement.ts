import type { CallOptions, Dcs } from '../dcs/dcs.js';
import { clusterPrefix } from '../ha/index.js';
import { formatSwitchoverPause, ROUTER_PAUSE_KEY } from './switchover-pause.js';

/** The full etcd key of a cluster's switchover pause announcement. */
export function switchoverPauseKey(cluster: string): string {
  return `${clusterPrefix(cluster)}${ROUTER_PAUSE_KEY}`;
}

/**
 * Tells every router of `cluster` that a planned switchover away from `from` begins: until the
 * leader key names another running primary (or `untilMs` passes), routers hold new read-write
 * connections instead of sending them to the leader that is about to stop. The protocol is
 * described in switchover-pause.ts. Returns the store revision of the write.
 */
export function announceSwitchover(dcs: Dcs, cluster: string, from: string, to: string | null, untilMs: number, opts?: CallOptions): Promise<number> {
  return dcs.put(switchoverPauseKey(cluster), formatSwitchoverPause({ from, to, untilMs }), opts);
}

/** Ends the announcement (switchover done or abandoned); true when a key was deleted. */
export function clearSwitchover(dcs: Dcs, cluster: string, opts?: CallOptions): Promise<boolean> {
  return dcs.delete(switchoverPauseKey(cluster), opts);
}
