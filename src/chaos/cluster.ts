/**
 * What the chaos runner needs from a cluster, as a port: where members and etcd run (with PIDs, read
 * afresh each time because restarts change them), and how healthy the cluster looks through the
 * agents' Patroni-compatible REST API. `localCluster` reads a `warden up` dir's state.json; the
 * network-namespace harness in test/chaos supplies its own.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readStateFile } from '../controller/state-file.js';
import { WardenError } from '../core/errors.js';

export interface ChaosMember {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly apiUrl: string;
  readonly dataDir: string;
  readonly agentPid: number | null;
}

export interface ChaosEtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly pid: number | null;
}

export interface ChaosCluster {
  readonly name: string;
  readonly user: string;
  readonly password: string;
  members(): Promise<readonly ChaosMember[]>;
  etcd(): Promise<readonly ChaosEtcdMember[]>;
  /** The router's PID when the cluster has a router this tool may restart. */
  routerPid(): Promise<number | undefined>;
  /** The router's read-write address, when the cluster has a router. */
  routerAddress?(): Promise<{ readonly host: string; readonly port: number } | undefined>;
}

/** A `warden up` runtime dir as a ChaosCluster (state.json + the superuser password file). */
export async function localCluster(dir: string): Promise<ChaosCluster> {
  const state = await readStateFile(dir);
  if (state === undefined) throw new WardenError('not-found', `no cluster found in ${dir} (no state.json): run \`warden up --dir ${dir}\` first`);
  const password = (await readFile(join(dir, 'secrets', 'superuser.password'), 'utf8')).trim();
  const read = async (): Promise<NonNullable<Awaited<ReturnType<typeof readStateFile>>>> => (await readStateFile(dir)) ?? state;
  return {
    name: state.cluster,
    user: state.superuser,
    password,
    async members() {
      return (await read()).members.map((m) => ({ name: m.name, host: m.host, port: m.port, apiUrl: m.apiUrl, dataDir: m.dataDir, agentPid: m.agentPid }));
    },
    async etcd() {
      const s = await read();
      return s.etcd.map((url, i) => ({ name: `etcd${i + 1}`, clientUrl: url, pid: s.etcdPids?.[i] ?? null }));
    },
    async routerPid() {
      const r = (await read()).router as { pid?: unknown } | null;
      return r !== null && typeof r.pid === 'number' ? r.pid : undefined;
    },
    async routerAddress() {
      const r = (await read()).router;
      return r === null ? undefined : { host: r.rw.host, port: r.rw.port };
    },
  };
}

/** The parts of GET /patroni the runner reads. */
export interface MemberStatus {
  readonly member: ChaosMember;
  readonly answered: boolean;
  readonly isLeader: boolean;
  readonly role: string | undefined;
  readonly state: string | undefined;
  readonly timeline: number | undefined;
}

/** GET <apiUrl><path> as JSON within timeoutMs; undefined when unreachable, slow or not JSON. */
export async function getJson<T>(apiUrl: string, path: string, timeoutMs = 1000): Promise<{ status: number; body: T } | undefined> {
  try {
    const res = await fetch(new URL(path, apiUrl), { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: (await res.json()) as T };
  } catch {
    return undefined;
  }
}

/** The /patroni fields read here; Warden adds `warden`, Patroni 3.0 says 'master' and may add replication_state. */
export interface PatroniBody {
  role?: string;
  state?: string;
  timeline?: number;
  replication_state?: string;
  /** Patroni's primary: its walsenders (application_name = member name). */
  replication?: readonly { application_name?: string; state?: string }[];
  warden?: { isLeader?: boolean; state?: string };
}

/**
 * Every member's /patroni, in parallel. Works for Warden and for Patroni: a Patroni member that runs
 * PostgreSQL as primary holds the leader lock (it demotes otherwise), and a Patroni replica counts as
 * streaming when the primary lists a streaming walsender for it (Patroni 3.0.2 reports no
 * replication state on the replica itself).
 */
export async function memberStatuses(members: readonly ChaosMember[], timeoutMs = 1000): Promise<MemberStatus[]> {
  const bodies = await Promise.all(members.map(async (member) => ({ member, body: (await getJson<PatroniBody>(member.apiUrl, '/patroni', timeoutMs))?.body })));
  return statusesFromBodies(bodies);
}

/** The pure part of memberStatuses: /patroni bodies (undefined: no answer) to statuses. */
export function statusesFromBodies(bodies: readonly { member: ChaosMember; body: PatroniBody | undefined }[]): MemberStatus[] {
  const walsenders = bodies.flatMap(({ body: b }) => (b?.warden === undefined && (b?.role === 'master' || b?.role === 'primary') ? (b.replication ?? []) : []));
  return bodies.map(({ member, body: b }) => {
    const role = b?.role === 'master' ? 'primary' : b?.role;
    const isLeader = b?.warden !== undefined ? b.warden.isLeader === true : role === 'primary' && b?.state === 'running';
    let state = b?.warden?.state ?? b?.state;
    if (b !== undefined && b.warden === undefined && role === 'replica' && b.state === 'running') {
      const streams = b.replication_state === 'streaming' || walsenders.some((w) => w.application_name === member.name && w.state === 'streaming');
      state = streams ? 'streaming' : 'running';
    }
    return { member, answered: b !== undefined, isLeader, role, state, timeline: b?.timeline };
  });
}

/** A healthy cluster: one running leader, every other member a streaming replica on its timeline. */
export interface Healthy {
  readonly leader: ChaosMember;
  readonly replicas: readonly ChaosMember[];
  readonly timeline: number;
}

/** The healthy shape of `statuses`, or a sentence saying what is not healthy. */
export function healthOf(statuses: readonly MemberStatus[]): Healthy | string {
  const leaders = statuses.filter((s) => s.isLeader && s.role === 'primary' && s.state === 'running');
  const lead = leaders[0];
  const describe = statuses.map((s) => `${s.member.name}: ${s.answered ? `${s.isLeader ? 'leader ' : ''}${s.role ?? '?'}/${s.state ?? '?'} tl ${s.timeline ?? '?'}` : 'no answer'}`).join('; ');
  if (leaders.length !== 1 || lead === undefined || lead.timeline === undefined) return describe;
  const others = statuses.filter((s) => s !== lead);
  if (!others.every((s) => s.role === 'replica' && s.state === 'streaming' && s.timeline === lead.timeline)) return describe;
  return { leader: lead.member, replicas: others.map((s) => s.member), timeline: lead.timeline };
}

/** True when every etcd member answers /health with health true. */
export async function etcdHealthy(members: readonly ChaosEtcdMember[], timeoutMs = 1000): Promise<boolean> {
  const ok = await Promise.all(
    members.map(async (m) => {
      const r = await getJson<{ health?: unknown }>(m.clientUrl, '/health', timeoutMs);
      return r !== undefined && (r.body.health === true || r.body.health === 'true');
    }),
  );
  return ok.every(Boolean);
}
