import { isProcessAlive, processCommandLine, signalPid, waitForExit } from '../core/process-info.js';
import type { RuntimeLayout } from './runtime-layout.js';
import type { StateFile } from './state-file.js';

/** A process of a runtime dir that outlived its supervisor (kill -9 of the supervisor orphans them). */
export interface Orphan {
  readonly pid: number;
  readonly what: string;
}

/**
 * The processes state.json records for this runtime that are still alive and are recognisably
 * ours: a PID is only taken when its command line names this dir's agent config, router config or
 * etcd member (a recycled PID belongs to someone else and is left alone).
 */
export async function findOrphans(layout: RuntimeLayout, state: StateFile | undefined): Promise<Orphan[]> {
  if (state === undefined) return [];
  const candidates: { pid: number | null | undefined; what: string; marker: string }[] = [
    ...layout.members.map((m) => ({ pid: state.members.find((s) => s.name === m.name)?.agentPid, what: `agent ${m.name}`, marker: m.configFile })),
    // `--nodes`: a node daemon stops its own agents and routers on SIGTERM.
    ...(layout.nodes ?? []).map((n) => ({ pid: state.nodes?.find((s) => s.name === n.name)?.pid, what: `node daemon ${n.name}`, marker: n.configFile })),
    ...(layout.router === undefined ? [] : [{ pid: state.router?.pid, what: 'router', marker: layout.router.configFile }]),
    ...layout.etcd.members.map((m, i) => ({ pid: state.etcdPids?.[i], what: `etcd ${m.name}`, marker: m.dataDir })),
  ];
  const found: Orphan[] = [];
  for (const c of candidates) {
    if (typeof c.pid !== 'number' || !(await isProcessAlive(c.pid))) continue;
    const argv = await processCommandLine(c.pid);
    if (argv?.some((a) => a === c.marker || a.includes(c.marker)) === true) found.push({ pid: c.pid, what: c.what });
  }
  return found;
}

/**
 * Stops orphans by PID in the order a supervisor would: agents first (a fast shutdown of their
 * PostgreSQL, lease revoked while etcd still runs), then the router, then etcd. Bounded: SIGKILL
 * after `graceMs`. Returns what was stopped.
 */
export async function stopOrphans(orphans: readonly Orphan[], graceMs = 30_000): Promise<Orphan[]> {
  const rank = (o: Orphan): number => (o.what.startsWith('agent') || o.what.startsWith('node daemon') ? 0 : o.what === 'router' ? 1 : 2);
  const stopped: Orphan[] = [];
  for (const r of [0, 1, 2]) {
    const group = orphans.filter((o) => rank(o) === r);
    await Promise.all(
      group.map(async (o) => {
        signalPid(o.pid, 'SIGCONT');
        signalPid(o.pid, 'SIGTERM');
        if (!(await waitForExit(o.pid, o.what.startsWith('node daemon') ? Math.max(graceMs, 90_000) : graceMs))) {
          signalPid(o.pid, 'SIGKILL');
          await waitForExit(o.pid, 5_000);
        }
        stopped.push(o);
      }),
    );
  }
  return stopped;
}
