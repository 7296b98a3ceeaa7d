/**
 * The planned-switchover pause announcement routers obey (docs/architecture.md, 'DCS keys', key `router/pause`).
 *
 * Protocol, written by the agents and read by every router:
 *
 *   key   /warden/<cluster>/router/pause
 *   value { "from": "<old leader>", "to": "<candidate>" | null, "untilMs": <epoch ms> }
 *
 * 1. Before the old leader stops PostgreSQL, the agent writes the key (no lease: `untilMs` bounds it).
 * 2. While the key is present, not expired, and the leader key still names `from` (or names nobody),
 *    routers hand out no new read-write connections: they hold them.
 * 3. As soon as the leader key names another member whose record says it is a running primary, the
 *    pause is over: held connections go to the new primary. Sessions to the old leader are dropped
 *    when the leader key changes (invariant 6), so a client sees one error on its old session and no
 *    failed connection attempt when it reconnects.
 * 4. The agent deletes the key when the switchover is over (or abandoned); a key left behind stops
 *    mattering at `untilMs`, so a crashed agent can never pause routers for long.
 */

/** The parsed value of `router/pause`. */
export interface SwitchoverPause {
  /** The leader being switched away from. */
  readonly from: string;
  /** The intended new leader, or null when any eligible member may win. */
  readonly to: string | null;
  /** Wall-clock end of the pause (epoch ms); the router ignores the key after it. */
  readonly untilMs: number;
}

/** The key under the cluster prefix. */
export const ROUTER_PAUSE_KEY = 'router/pause';

/** Parses the `router/pause` value; undefined when it is not a valid announcement (then it is ignored). */
export function parseSwitchoverPause(text: string): SwitchoverPause | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  const from = r['from'];
  const to = r['to'] ?? null;
  const untilMs = r['untilMs'];
  if (typeof from !== 'string' || from === '') return undefined;
  if (to !== null && typeof to !== 'string') return undefined;
  if (typeof untilMs !== 'number' || !Number.isFinite(untilMs)) return undefined;
  return { from, to, untilMs };
}

/** The JSON text of an announcement (what `parseSwitchoverPause` reads back). */
export function formatSwitchoverPause(p: SwitchoverPause): string {
  return JSON.stringify({ from: p.from, to: p.to, untilMs: p.untilMs });
}
