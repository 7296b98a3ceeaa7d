/**
 * Faults that need no network namespaces, injected by PID into a running cluster: each returns who
 * it hit, how to undo it (freeze), and a check that says when its effect is over (a new PID, etcd
 * healthy again), so that recovery is never measured before the fault took hold.
 */
import { assertNever } from '../core/errors.js';
import { isProcessAlive, signalPid } from '../core/process-info.js';
import { etcdHealthy, type ChaosCluster, type Healthy } from './cluster.js';
import { postmasterPid, processTree } from './processes.js';
import type { Random } from './random.js';

export const LOCAL_FAULTS = ['kill', 'freeze', 'crash-postgres', 'kill-replica', 'kill-etcd-member', 'router-restart'] as const;
/** Faults of the network-namespace harness (test/chaos/netns.ts); `warden chaos run` cannot inject them. */
export const NAMESPACE_FAULTS = ['partition', 'cut-etcd', 'lose-quorum'] as const;

export type LocalFault = (typeof LOCAL_FAULTS)[number];

/** Parses --faults; unknown names and namespace-only faults are errors that say why. */
export function parseFaults(text: string): { ok: true; faults: LocalFault[] } | { ok: false; message: string } {
  const names = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) return { ok: false, message: '--faults: name at least one fault' };
  const out: LocalFault[] = [];
  for (const n of names) {
    const hit = LOCAL_FAULTS.find((f) => f === n);
    if (hit !== undefined) out.push(hit);
    else if ((NAMESPACE_FAULTS as readonly string[]).includes(n)) {
      return { ok: false, message: `--faults: ${n} needs each node in its own network namespace (the harness in test/chaos/netns.ts, root only); a \`warden up\` cluster shares one network: use ${LOCAL_FAULTS.join(', ')}` };
    } else return { ok: false, message: `--faults: unknown fault ${JSON.stringify(n)}; known: ${LOCAL_FAULTS.join(', ')}` };
  }
  return { ok: true, faults: out };
}

/** An injected fault. */
export interface Injected {
  readonly target: string;
  /** Set when the fault could not be injected here (e.g. no router): the round is reported as skipped. */
  readonly skipped?: string;
  /** How long to leave it in place before heal() (0 for one-shot faults). */
  readonly holdMs: number;
  heal(): Promise<void>;
  /** True once the fault's own effect is over (new PID, etcd healthy); health is checked separately. */
  isCleared(): Promise<boolean>;
}

export interface FaultTiming {
  /** Lease TTL in ms: a freeze lasts between 1.5 and 4 TTLs (plus a second) so that it outlives the lease. */
  readonly ttlMs: number;
  /** Overrides the freeze duration range, in TTLs (each plus a second): [lo, hi). */
  readonly freezeTtls?: readonly [number, number];
}

/** Stops (SIGSTOP) a set of processes; thaw() continues them, also on process exit. */
export class Freeze {
  private readonly pids: number[] = [];
  private readonly onExit = (): void => this.thawNow();

  /** Stops the roots first (a stopped postmaster forks nothing new), then their trees until stable. */
  async freeze(roots: readonly number[]): Promise<readonly number[]> {
    process.once('exit', this.onExit);
    const seen = new Set<number>();
    const stop = (pid: number): void => {
      if (seen.has(pid)) return;
      seen.add(pid);
      signalPid(pid, 'SIGSTOP');
      this.pids.push(pid);
    };
    for (const r of roots) stop(r);
    for (let pass = 0; pass < 10; pass++) {
      const before = seen.size;
      for (const r of roots) for (const pid of await processTree(r)) stop(pid);
      if (seen.size === before) break;
    }
    return this.pids;
  }

  thawNow(): void {
    for (const pid of this.pids) signalPid(pid, 'SIGCONT');
    this.pids.length = 0;
    process.removeListener('exit', this.onExit);
  }
}

const noop = async (): Promise<void> => undefined;

/** Injects `kind` into the cluster whose healthy shape is `health`. */
export async function injectFault(kind: LocalFault, cluster: ChaosCluster, health: Healthy, rng: Random, timing: FaultTiming): Promise<Injected> {
  const members = await cluster.members();
  const current = (name: string) => members.find((m) => m.name === name);
  const agentRestarted = (name: string, oldPid: number) => async () => {
    const now = (await cluster.members()).find((m) => m.name === name)?.agentPid;
    return now !== null && now !== undefined && now !== oldPid && (await isProcessAlive(now));
  };
  switch (kind) {
    case 'kill':
    case 'kill-replica': {
      const victim = kind === 'kill' ? health.leader : rng.pick(health.replicas);
      const pid = current(victim.name)?.agentPid;
      if (pid === null || pid === undefined) return skipped(victim.name, 'its agent PID is not recorded in state.json');
      // PostgreSQL dies with its agent (parent-death signal): this is a node crash.
      signalPid(pid, 'SIGKILL');
      return { target: victim.name, holdMs: 0, heal: noop, isCleared: agentRestarted(victim.name, pid) };
    }
    case 'freeze': {
      const victim = current(health.leader.name);
      const agentPid = victim?.agentPid;
      if (victim === undefined || agentPid === null || agentPid === undefined) return skipped(health.leader.name, 'its agent PID is not recorded in state.json');
      const pm = await postmasterPid(victim.dataDir);
      const f = new Freeze();
      await f.freeze(pm === undefined ? [agentPid] : [agentPid, pm]);
      const [lo, hi] = timing.freezeTtls ?? [1.5, 4];
      const holdMs = Math.round(rng.between(lo * timing.ttlMs + 1000, hi * timing.ttlMs + 1000));
      return { target: victim.name, holdMs, heal: async () => f.thawNow(), isCleared: async () => true };
    }
    case 'crash-postgres': {
      const victim = current(health.leader.name);
      const pm = victim === undefined ? undefined : await postmasterPid(victim.dataDir);
      if (victim === undefined || pm === undefined) return skipped(health.leader.name, 'no postmaster.pid in its data directory');
      signalPid(pm, 'SIGKILL');
      return {
        target: victim.name,
        holdMs: 0,
        heal: noop,
        isCleared: async () => {
          const now = await postmasterPid(victim.dataDir);
          return now !== undefined && now !== pm && (await isProcessAlive(now));
        },
      };
    }
    case 'kill-etcd-member': {
      const etcd = (await cluster.etcd()).filter((e) => e.pid !== null);
      if (etcd.length === 0) return skipped('etcd', 'no etcd PIDs in state.json (etcdPids)');
      const victim = rng.pick(etcd);
      const pid = victim.pid ?? 0;
      signalPid(pid, 'SIGKILL');
      return {
        target: victim.name,
        holdMs: 0,
        heal: noop,
        isCleared: async () => {
          const now = (await cluster.etcd()).find((e) => e.name === victim.name)?.pid;
          return now !== null && now !== undefined && now !== pid && (await etcdHealthy(await cluster.etcd()));
        },
      };
    }
    case 'router-restart': {
      const pid = await cluster.routerPid();
      if (pid === undefined) return skipped('router', 'the cluster has no router with a PID in state.json');
      signalPid(pid, 'SIGKILL');
      return {
        target: 'router',
        holdMs: 0,
        heal: noop,
        isCleared: async () => {
          const now = await cluster.routerPid();
          return now !== undefined && now !== pid && (await isProcessAlive(now));
        },
      };
    }
    default:
      return assertNever(kind);
  }
}

function skipped(target: string, why: string): Injected {
  return { target, skipped: why, holdMs: 0, heal: noop, isCleared: async () => true };
}
