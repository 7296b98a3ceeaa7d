import assert from 'node:assert/strict';
import { checkHistory, type AckedWrite } from '../../src/chaos/checker.js';
import { ChaosWriter, prepareTable, readFinalValues, type WriteTarget } from '../../src/chaos/writer.js';
import type { ListOutput } from '../../src/cli/list.js';
import type { ClusterSecrets, NodeRecord } from '../../src/controller/records.js';
import { eventually } from '../../src/core/deadline.js';

/** A chaos writer through a cluster's router on node daemons (src/chaos/writer.ts). */
export interface RouterWriter {
  readonly writer: ChaosWriter;
  /** Stops the writer; lost acknowledged writes and overlaps against the final leader's table. */
  readonly finish: () => Promise<{ acked: number; lost: number; overlaps: number }>;
  /** Stops the writer without checking (for an after hook). */
  readonly stop: () => Promise<void>;
}

export interface RouterWriterOptions {
  readonly cluster: string;
  readonly secrets: ClusterSecrets;
  /** The node records as they are now (the router's address is read from them every second). */
  readonly nodes: () => Promise<readonly NodeRecord[]>;
  /** `warden list --format json` of the cluster. */
  readonly list: () => Promise<ListOutput>;
}

/**
 * Starts a writer through the cluster's router (its address from the node records, re-read every
 * second, as are the members' addresses for naming who acknowledged); the checker
 * (src/chaos/checker.ts) compares its acknowledgements with the final leader's table.
 */
export async function startRouterWriter(o: RouterWriterOptions): Promise<RouterWriter> {
  const creds = { user: o.secrets.superuser.username, password: o.secrets.superuser.password };
  const routerAt = async (): Promise<WriteTarget | undefined> => {
    const w = (await o.nodes()).flatMap((n) => n.workloads).find((x) => x.cluster === o.cluster && x.kind === 'router' && x.state === 'running' && x.address !== undefined);
    const m = w?.address === undefined ? null : /^(.*):(\d+)$/.exec(w.address);
    return m?.[1] === undefined || m[2] === undefined ? undefined : { host: m[1], port: Number(m[2]) };
  };
  let target = await eventually(routerAt, { timeoutMs: 60_000, what: `${o.cluster}'s router` });
  let members = new Map<string, string>();
  const refresh = async (): Promise<void> => {
    members = new Map((await o.list()).members.map((m) => [`${m.host}:${m.port}`, m.name]));
    target = (await routerAt()) ?? target;
  };
  await refresh();
  const first = await eventually(() => prepareTable({ ...target, ...creds }), { timeoutMs: 60_000, what: `${o.cluster}: the writer's table through the router` });
  const writer = new ChaosWriter({ target: () => Promise.resolve(target), memberOf: (h, p) => members.get(`${h}:${p}`), ...creds, intervalMs: 10, statementTimeoutMs: 3_000 }, first);
  writer.start();
  // One refresh at a time (a CLI run each): on a loaded machine overlapping ones would pile up.
  let stopped = false;
  const refreshing = eventually(async () => (stopped ? true : void (await refresh().catch(() => undefined))), { timeoutMs: 900_000, intervalMs: 1_000, what: 'the writer stopped' });
  const stop = async (): Promise<void> => {
    stopped = true;
    await writer.stop();
    await refreshing.catch(() => undefined);
  };
  return {
    writer,
    stop,
    finish: async () => {
      await stop();
      const l = await eventually(async () => {
        const x = await o.list();
        return x.members.some((m) => m.role === 'leader' && m.state === 'running') ? x : undefined;
      }, { timeoutMs: 60_000, what: `${o.cluster}: a running leader to read the final table from` });
      const leader = l.members.find((m) => m.role === 'leader');
      assert.ok(leader !== undefined);
      const values = await readFinalValues({ host: leader.host, port: leader.port, ...creds }, first);
      const acks = writer.acks.filter((a) => a.lane === 'main');
      const report = checkHistory({ acks, failures: writer.failures, faults: [], recoveries: [], final: { primary: leader.name, values } }, { lossAllowed: false, maxLagBytes: 0 });
      return { acked: acks.length, lost: report.lostWrites.length, overlaps: report.overlaps.length };
    },
  };
}

/** The longest stretch (ms) without an acknowledgement from fromMs to toMs. */
export function longestGapMs(acks: readonly AckedWrite[], fromMs: number, toMs: number): number {
  const points = [fromMs, ...acks.map((a) => a.ackAtMs).filter((t) => t > fromMs && t < toMs).sort((a, b) => a - b), toMs];
  return Math.max(...points.slice(1).map((t, i) => t - (points[i] ?? t)));
}
