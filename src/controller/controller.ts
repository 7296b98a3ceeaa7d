import type { Clock, TimerHandle } from '../core/clock.js';
import { decodeJson } from '../core/decode.js';
import { describeError, isWardenError } from '../core/errors.js';
import type { Dcs } from '../dcs/dcs.js';
import { clusterPrefix, KEYS, parseClusterView } from '../ha/index.js';
import type { ClusterSpec } from '../spec/index.js';
import { httpCall, type ClientTls } from '../core/http-app.js';
import { assignmentBackupsOf, DEFAULT_NODE_LOST_SECONDS, describeChange, planCluster, summarizePlan, type ClusterObservation, type Plan, type PlannedChange } from './plan.js';
import { observationOf, parseStoredSpecs, planInputFromSnapshot } from './snapshot-plan.js';
import { ASSIGNMENT, assignmentKey, CONTROL_KEYS, CONTROL_PREFIX, dataSourceKey, parseControlSnapshot, secretsKey, statusKey, type Assignment, type ClusterStatus, type ControlSnapshot, type StoredDataSource } from './records.js';

/** How the controller logs: one line per pass that did something, one per error. */
export interface ControllerLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface ControllerOptions {
  readonly dcs: Dcs;
  readonly clock: Clock;
  /** The node daemon this candidate runs in. */
  readonly node: string;
  /** Unique per candidate run. */
  readonly candidateId: string;
  readonly log: ControllerLog;
  /** The election lease: another candidate takes over within about this long after this one dies. */
  readonly ttlMs?: number;
  /** Time between passes (and between election attempts while not active). */
  readonly passIntervalMs?: number;
  /** nodeLostSeconds in ms. */
  readonly nodeLostMs?: number;
  /** Bound on each DCS call. */
  readonly callTimeoutMs?: number;
  /**
   * TLS towards the agents' REST API (https:// apiUrls): the CA that signs their certificates, and
   * a client certificate for agents that verify clients. Node daemons pass their node.yaml restapi files.
   */
  readonly restTls?: ClientTls;
}

/** What one pass did, for tests and the log. */
export interface PassResult {
  readonly active: boolean;
  readonly clusters: ReadonlyMap<string, { readonly plan?: Plan; readonly applied: number; readonly error: string | null; readonly summary: string }>;
}

const DEFAULT_TTL_MS = 10_000;
const DEFAULT_PASS_INTERVAL_MS = 1_000;
/**
 * How far ahead a rolling restart is scheduled: the agent refuses a time in its past, so this covers
 * the REST round trip and a small clock difference between hosts.
 */
const RESTART_LEAD_MS = 2_000;

/**
 * A controller candidate: every node daemon runs one; the one that creates `/warden/_controller`
 * under its lease is active and reconciles every stored spec each pass — plan (pure, plan.ts),
 * apply (create-only and compare-and-swap writes of assignments), status. It holds the key only
 * while its lease is valid by its own clock (deadline from the renewal's send time, as agents
 * do), and writes nothing once it is not. Failover never waits for it (invariant 8 in
 * docs/architecture.md): it only writes assignments, the failover key for a planned switchover,
 * and status.
 */
export class ControllerCandidate {
  private readonly ttlMs: number;
  private readonly passIntervalMs: number;
  private readonly nodeLostMs: number;
  private readonly timeoutMs: number;
  private leaseId: string | undefined;
  private deadlineMs = 0;
  private lastRenewMs = 0;
  private active = false;
  private stopped = false;
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private watchAbort: AbortController | undefined;
  /** When each node that assignments name was first seen missing (monotonic ms). */
  private readonly lostSince = new Map<string, number>();
  private readonly lastStatus = new Map<string, string>();

  constructor(private readonly o: ControllerOptions) {
    this.ttlMs = o.ttlMs ?? DEFAULT_TTL_MS;
    this.passIntervalMs = o.passIntervalMs ?? DEFAULT_PASS_INTERVAL_MS;
    this.nodeLostMs = o.nodeLostMs ?? DEFAULT_NODE_LOST_SECONDS * 1000;
    this.timeoutMs = o.callTimeoutMs ?? Math.max(500, Math.floor(this.ttlMs / 4));
  }

  /** True while this candidate holds the election key on a lease it believes valid. */
  isActive(): boolean {
    return this.active && this.hasValidLease();
  }

  /** Runs passes on the clock until stop(); a vanished election key wakes it at once. */
  start(): void {
    this.schedule(0);
    this.watchElection();
  }

  /** Stops passing; an active candidate revokes its lease, so another takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.o.clock.clearTimer(this.timer);
    this.watchAbort?.abort();
    await this.running;
    const id = this.leaseId;
    this.leaseId = undefined;
    this.active = false;
    // Unrevoked, the key expires with the lease and another candidate takes over within the ttl.
    if (id !== undefined) await this.o.dcs.revokeLease(id, { timeoutMs: this.timeoutMs }).catch((e: unknown) => this.o.log.warn({ err: describeError(e) }, 'could not revoke the controller lease; it expires within the ttl'));
  }

  /** Stops passing and renewing without revoking the lease: what a crash looks like to etcd (the key lingers until the ttl). */
  async halt(): Promise<void> {
    this.stopped = true;
    this.o.clock.clearTimer(this.timer);
    this.watchAbort?.abort();
    await this.running;
    this.active = false;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.o.clock.clearTimer(this.timer);
    this.timer = this.o.clock.setTimer(() => {
      this.running = this.tick().then(
        () => this.schedule(this.passIntervalMs),
        (e: unknown) => {
          this.o.log.error({ err: describeError(e) }, 'controller pass failed');
          this.schedule(this.passIntervalMs);
        },
      );
    }, delayMs);
  }

  private watchElection(): void {
    if (this.stopped) return;
    const abort = new AbortController();
    this.watchAbort = abort;
    const resume = (): void => {
      if (!abort.signal.aborted) this.o.clock.setTimer(() => this.watchElection(), this.passIntervalMs);
    };
    void this.o.dcs
      .range(CONTROL_KEYS.controller, { timeoutMs: this.timeoutMs })
      .then(async (snap) => {
        await this.o.dcs.watch(
          CONTROL_KEYS.controller,
          snap.revision + 1,
          (events) => {
            // The active controller's key went: try to take over now rather than at the next pass.
            if (!this.active && events.some((e) => e.type === 'delete' && e.kv.key === CONTROL_KEYS.controller)) this.schedule(0);
          },
          abort.signal,
        );
      })
      .then(resume, resume);
  }

  private hasValidLease(): boolean {
    return this.leaseId !== undefined && this.o.clock.monotonicMs() < this.deadlineMs - Math.min(400, this.ttlMs / 5);
  }

  /** One pass: hold or seek the election, and reconcile when active. */
  async tick(): Promise<PassResult> {
    await this.elect();
    if (!this.isActive()) return { active: false, clusters: new Map() };
    const clusters = await this.reconcile();
    return { active: this.isActive(), clusters };
  }

  private async elect(): Promise<void> {
    const { dcs, clock } = this.o;
    try {
      if (this.leaseId !== undefined && clock.monotonicMs() - this.lastRenewMs >= this.ttlMs / 4) {
        const sent = clock.monotonicMs();
        const r = await dcs.keepAlive(this.leaseId, { timeoutMs: this.timeoutMs });
        this.lastRenewMs = sent;
        this.deadlineMs = sent + r.ttlMs;
      }
    } catch (e) {
      if (isWardenError(e, 'lease-not-found')) {
        if (this.active) this.o.log.warn({}, 'controller lease lost: no longer active');
        this.leaseId = undefined;
        this.active = false;
      } else {
        this.o.log.warn({ err: describeError(e) }, 'controller lease renewal failed');
      }
    }
    if (this.active && !this.hasValidLease()) {
      this.o.log.warn({}, 'controller lease not renewed in time: no longer active');
      this.active = false;
    }
    if (this.active) return;
    try {
      if (this.leaseId === undefined || !this.hasValidLease()) {
        const sent = clock.monotonicMs();
        const g = await dcs.grantLease(this.ttlMs, { timeoutMs: this.timeoutMs });
        this.leaseId = g.id;
        this.lastRenewMs = sent;
        this.deadlineMs = sent + g.ttlMs;
      }
      const record = JSON.stringify({ node: this.o.node, candidateId: this.o.candidateId, sinceMs: clock.nowMs() });
      if (await dcs.create(CONTROL_KEYS.controller, record, { leaseId: this.leaseId, timeoutMs: this.timeoutMs })) {
        this.active = true;
        this.o.log.info({ node: this.o.node }, 'this controller is now active');
      }
    } catch (e) {
      this.o.log.warn({ err: describeError(e) }, 'controller election attempt failed; retrying');
    }
  }

  private async reconcile(): Promise<Map<string, { plan?: Plan; applied: number; error: string | null; summary: string }>> {
    const { dcs, clock } = this.o;
    const raw = await dcs.range(CONTROL_PREFIX, { timeoutMs: this.timeoutMs });
    const snap = parseControlSnapshot(raw.revision, raw.kvs);
    const holder = snap.controller;
    if (holder === undefined || holder.candidateId !== this.o.candidateId || holder.lease !== this.leaseId) {
      // Someone deleted or took the key while this lease lived: another controller may be active now.
      this.o.log.warn({ holder: holder?.node ?? null }, 'the election key is not this controller\'s: stepping down');
      this.active = false;
      return new Map();
    }
    for (const [key, why] of snap.invalid) this.o.log.warn({ key, why }, 'invalid control-plane record ignored');
    const now = clock.monotonicMs();
    const referenced = new Set([...snap.assignments.values()].flat().map((a) => a.node));
    for (const n of referenced) if (!snap.nodes.has(n) && !this.lostSince.has(n)) this.lostSince.set(n, now);
    for (const n of [...this.lostSince.keys()]) if (snap.nodes.has(n) || !referenced.has(n)) this.lostSince.delete(n);
    const lostForMs = new Map([...this.lostSince].map(([n, t]) => [n, now - t]));
    const specs = parseStoredSpecs(snap);
    const out = new Map<string, { plan?: Plan; applied: number; error: string | null; summary: string }>();
    // Not the data sources: `warden up` writes one just before its spec, and must not see it removed as a deleted cluster's.
    const clusters = new Set([...snap.specs.keys(), ...snap.assignments.keys(), ...snap.statuses.keys(), ...snap.secrets.keys()]);
    for (const cluster of [...clusters].sort()) {
      if (!this.isActive()) break;
      const entry = specs.get(cluster);
      try {
        if (entry === undefined) {
          out.set(cluster, await this.removeCluster(cluster, snap));
          continue;
        }
        const stored = snap.specs.get(cluster);
        if (entry.spec === undefined || stored === undefined) {
          await this.writeStatus(cluster, { generation: stored?.generation ?? 0, desired: 0, ready: 0, routers: { desired: 0, placed: 0 }, pending: [], inProgress: [], lastError: entry.error ?? 'no spec' });
          out.set(cluster, { applied: 0, error: entry.error ?? 'no spec', summary: `${cluster}: ${entry.error ?? 'no spec'}` });
          continue;
        }
        const view = await this.observe(cluster);
        const current = snap.assignments.get(cluster) ?? [];
        const plan = planCluster(planInputFromSnapshot(snap, specs, entry.spec, stored.generation, view, lostForMs, this.nodeLostMs));
        const { applied, errors, failed } = await this.apply(cluster, entry.spec, stored, plan.changes, snap.secrets.get(cluster)?.restApi, snap.dataSources.get(cluster));
        const error = errors.length === 0 ? null : errors.join('; ');
        // A config write that lost its race is planned again next pass: the status keeps the old mark.
        const appliedConfig = failed.has('config') ? snap.statuses.get(cluster)?.appliedConfig : plan.appliedConfig;
        const placedRouters = current.filter((a) => a.kind === 'router').length + plan.changes.filter((c) => c.kind === 'assign' && c.workload === 'router' && c.from === undefined).length;
        await this.writeStatus(cluster, {
          generation: stored.generation,
          desired: plan.desired.members,
          ready: plan.ready,
          routers: { desired: plan.desired.routers, placed: placedRouters },
          pending: plan.pending.map((p) => ({ name: p.name, reason: p.reason })),
          inProgress: [...plan.changes.map((c) => c.reason), ...plan.waiting],
          lastError: error,
          ...(appliedConfig === undefined ? {} : { appliedConfig }),
        });
        const summary = summarizePlan(cluster, plan);
        if (plan.changes.length > 0 || error !== null) this.o.log.info({ cluster, applied, error }, summary);
        out.set(cluster, { plan, applied, error, summary });
      } catch (e) {
        const error = describeError(e);
        this.o.log.error({ cluster, err: error }, 'controller pass over the cluster failed');
        out.set(cluster, { applied: 0, error, summary: `${cluster}: ${error}` });
      }
    }
    return out;
  }

  private async observe(cluster: string): Promise<ClusterObservation> {
    const prefix = clusterPrefix(cluster);
    const raw = await this.o.dcs.range(prefix, { timeoutMs: this.timeoutMs });
    return observationOf(parseClusterView(prefix, raw.revision, raw.kvs));
  }

  /** Writes the changes in order with their preconditions; a lost race is an error for status, not an exception. */
  private async apply(
    cluster: string,
    spec: ClusterSpec,
    stored: { generation: number; uid: string },
    changes: readonly PlannedChange[],
    restAuth: { readonly username: string; readonly password: string } | undefined,
    dataSource: StoredDataSource | undefined,
  ): Promise<{ applied: number; errors: string[]; failed: Set<PlannedChange['kind']> }> {
    const { dcs } = this.o;
    const errors: string[] = [];
    const failed = new Set<PlannedChange['kind']>();
    let applied = 0;
    for (const c of changes) {
      // Writing after the lease lapsed could undo what a newer controller decided.
      if (!this.isActive()) {
        errors.push('stopped applying: this controller is no longer active');
        break;
      }
      const opts = { timeoutMs: this.timeoutMs };
      let ok: boolean;
      switch (c.kind) {
        case 'assign': {
          const member = spec.members.find((m) => m.name === c.name);
          const record: Assignment = {
            cluster,
            kind: c.workload,
            name: c.name,
            node: c.node,
            clusterUid: stored.uid,
            generation: stored.generation,
            ...(c.workload === 'member' ? { agent: memberAgentSettings(spec, member?.instanceSet ?? '', dataSource) } : {}),
            reason: c.reason.message,
          };
          const key = assignmentKey(cluster, c.workload, c.name);
          ok = c.from === undefined ? await dcs.create(key, JSON.stringify(record), opts) : await dcs.compareAndSwap(key, JSON.stringify(record), c.from.modRevision, opts);
          break;
        }
        case 'unassign':
          ok = await dcs.delete(assignmentKey(cluster, c.workload, c.name), { ...opts, expectModRevision: c.modRevision });
          break;
        case 'leaving': {
          // Only the active controller writes it; a stale value costs a preference, never safety.
          const key = `${clusterPrefix(cluster)}${KEYS.leaving}`;
          if (c.members.length === 0) await dcs.delete(key, opts);
          else await dcs.put(key, JSON.stringify({ members: c.members }), opts);
          ok = true;
          break;
        }
        case 'switchover':
          ok = await dcs.create(`${clusterPrefix(cluster)}${KEYS.failover}`, JSON.stringify({ kind: 'switchover', leader: c.from, candidate: c.candidate, requestedAtMs: this.o.clock.nowMs() }), opts);
          break;
        case 'config':
          ok = await dcs.compareAndSwap(`${clusterPrefix(cluster)}${KEYS.config}`, JSON.stringify(c.config), c.modRevision, opts);
          break;
        case 'settings': {
          // The record as it is, with only its backups settings (and generation) replaced: its
          // bootstrap settings and data source stay what the member was made with.
          const key = assignmentKey(cluster, 'member', c.member);
          const kv = await dcs.get(key, opts);
          const current = kv === undefined || kv.modRevision !== c.modRevision ? undefined : decodeJson(ASSIGNMENT, kv.value);
          if (current?.ok !== true || current.value.agent === undefined) {
            ok = false;
            break;
          }
          const { backups: _old, ...agent } = current.value.agent;
          const record: Assignment = { ...current.value, generation: stored.generation, agent: { ...agent, ...(c.backups === undefined ? {} : { backups: c.backups }) }, reason: c.reason.message };
          ok = await dcs.compareAndSwap(key, JSON.stringify(record), c.modRevision, opts);
          break;
        }
        case 'restart': {
          const why = await this.requestRestart(c.member, c.apiUrl, restAuth);
          if (why !== undefined) {
            errors.push(`restart ${c.member}: ${why}; asked again next pass`);
            failed.add(c.kind);
            continue;
          }
          ok = true;
          break;
        }
      }
      if (ok) applied++;
      else {
        failed.add(c.kind);
        errors.push(`${describeChange(c)}: its key changed under the controller; planned again next pass`);
      }
    }
    return { applied, errors, failed };
  }

  /**
   * Schedules a restart of `member` a few seconds ahead through its agent's REST API, on the
   * condition that a restart is still pending then (POST /restart with schedule and restart_pending,
   * as Patroni's): the schedule is published in the member key, so the next pass — of this
   * controller or the next one — sees the restart in flight and asks nothing more. Undefined when
   * the agent accepted it; otherwise why not.
   */
  private async requestRestart(member: string, apiUrl: string, auth: { readonly username: string; readonly password: string } | undefined): Promise<string | undefined> {
    if (auth === undefined) return 'the cluster has no secrets (no REST API credentials)';
    const body = JSON.stringify({ schedule: new Date(this.o.clock.nowMs() + RESTART_LEAD_MS).toISOString(), restart_pending: true });
    try {
      const res = await httpCall(new URL('/restart', apiUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` },
        body,
        timeoutMs: this.timeoutMs,
        ...(this.o.restTls === undefined ? {} : { tls: this.o.restTls }),
      });
      return res.status === 202 ? undefined : `the agent at ${apiUrl} answered ${res.status}: ${res.body.trim().slice(0, 200)}`;
    } catch (e) {
      return `the agent at ${apiUrl} did not answer: ${describeError(e)}`;
    }
  }

  /** A cluster whose spec was deleted: its assignments go first; once no agent of it is left, its keys. */
  private async removeCluster(cluster: string, snap: ControlSnapshot): Promise<{ applied: number; error: string | null; summary: string }> {
    const { dcs } = this.o;
    const opts = { timeoutMs: this.timeoutMs };
    const as = snap.assignments.get(cluster) ?? [];
    let applied = 0;
    for (const a of as) if (this.isActive() && (await dcs.delete(a.key, { ...opts, expectModRevision: a.modRevision }))) applied++;
    if (as.length > 0) return { applied, error: null, summary: `${cluster}: deleted; ${applied} assignment(s) removed` };
    const prefix = clusterPrefix(cluster);
    const keys = await dcs.range(prefix, opts);
    // Agents still running keep their member keys under their leases: wait until their node daemons stopped them.
    if (keys.kvs.some((kv) => kv.key.startsWith(`${prefix}${KEYS.membersDir}`))) return { applied: 0, error: null, summary: `${cluster}: deleted; waiting for its agents to stop` };
    for (const kv of keys.kvs) await dcs.delete(kv.key, opts);
    await dcs.delete(secretsKey(cluster), opts);
    await dcs.delete(dataSourceKey(cluster), opts);
    await dcs.delete(statusKey(cluster), opts);
    this.lastStatus.delete(cluster);
    this.o.log.info({ cluster, keys: keys.kvs.length }, `${cluster}: deleted; its keys are removed`);
    return { applied: keys.kvs.length, error: null, summary: `${cluster}: deleted; its keys are removed` };
  }

  private async writeStatus(cluster: string, s: Omit<ClusterStatus, 'cluster' | 'controller' | 'updatedAtMs'>): Promise<void> {
    const body = { cluster, ...s, controller: this.o.node };
    const fingerprint = JSON.stringify(body);
    if (this.lastStatus.get(cluster) === fingerprint) return;
    await this.o.dcs.put(statusKey(cluster), JSON.stringify({ ...body, updatedAtMs: this.o.clock.nowMs() } satisfies ClusterStatus), { timeoutMs: this.timeoutMs });
    this.lastStatus.set(cluster, fingerprint);
  }
}

/**
 * A member's agent settings in its assignment: its instance set, the bootstrap dynamic config,
 * with spec.backups the stanza (the cluster's name) and repositories it archives into, and while the
 * spec has spec.dataSource, what `warden up --source-dir` resolved for the bootstrap to restore.
 */
export function memberAgentSettings(spec: ClusterSpec, instanceSet: string, dataSource?: StoredDataSource): NonNullable<Assignment['agent']> {
  const backups = assignmentBackupsOf(spec);
  // The data source goes with the spec that asks for it: a later spec without one bootstraps nothing from it.
  const ds = spec.dataSource === undefined || dataSource === undefined ? undefined : (({ cluster: _c, ...rest }) => rest)(dataSource);
  return {
    instanceSet,
    bootstrapDynamicConfig: spec.dynamicConfig as unknown as Record<string, unknown>,
    ...(backups === undefined ? {} : { backups }),
    ...(ds === undefined ? {} : { dataSource: ds }),
  };
}
