import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { WARDEN_VERSION } from '../agent/agent.js';
import { systemClock } from '../core/clock.js';
import { decodeJson } from '../core/decode.js';
import { sleep } from '../core/deadline.js';
import { describeError, isWardenError, WardenError } from '../core/errors.js';
import { isProcessAlive, processCommandLine } from '../core/process-info.js';
import { ControllerCandidate, type ControllerLog } from '../controller/controller.js';
import type { ClientTls } from '../core/http-app.js';
import { backupsChangeRestarts, backupsFingerprint, CONTROL_PREFIX, NODE_RECORD, nodeKey, parseControlSnapshot, type Assignment, type ClusterSecrets, type NodeRecord, type WorkloadState, type WorkloadStatus } from '../controller/records.js';
import type { RunUser } from '../controller/runtime-layout.js';
import { AGENT_NODE_FLAGS, isChildRunning, spawnWarden, stopChild, stopPid } from '../controller/warden-child.js';
import type { Dcs } from '../dcs/dcs.js';
import type { NodeConfig } from '../spec/index.js';
import { adoptableFiles, moveAside, prepareWorkload, workloadDir, workloadKey, type WorkloadFiles } from './workload-files.js';

/** How the node daemon logs. */
export type NodeLog = ControllerLog;

const PASS_INTERVAL_MS = 1_000;
const ROUTER_RESTART_DELAY_MS = 1_000;
const AGENT_STOP_GRACE_MS = 60_000;
const ROUTER_STOP_GRACE_MS = 10_000;
/** How long a workload of this kind gets to stop on SIGTERM before SIGKILL. */
const stopGraceMs = (kind: 'member' | 'router'): number => (kind === 'member' ? AGENT_STOP_GRACE_MS : ROUTER_STOP_GRACE_MS);

/** A workload process an earlier run of this daemon left running, found at start. */
interface Leftover {
  readonly pid: number;
  readonly dir: string;
  readonly kind: 'member' | 'router';
  readonly cluster: string;
  readonly name: string;
}

/** One workload this daemon runs. */
interface Workload {
  assignment: Assignment;
  child: ChildProcess | undefined;
  /** The PID of a process an earlier run of this daemon started and this one adopted (not our child). */
  adoptedPid: number | undefined;
  files: WorkloadFiles | undefined;
  state: WorkloadState;
  restarts: number;
  restartTimer: NodeJS.Timeout | undefined;
  lastError: string | undefined;
  /** Set once it is being removed: its exit is not restarted. */
  removing: boolean;
  /**
   * A member's: backupsFingerprint of the settings its running process was started with (or its
   * files rewritten to), published so that the controller rolls a spec.backups change one member
   * at a time. Undefined while no process runs (the next start takes the assignment's).
   */
  runningBackups: string | undefined;
  /** Set while its files are rewritten or its agent restarted for new backups settings. */
  reconfiguring: boolean;
  /** The backups settings (fingerprint) this node could not write the member's files for: not tried again each pass. */
  refusedBackups?: string | undefined;
}

/**
 * The node daemon (`warden node`): registers the node under its own lease, runs a controller
 * candidate, and runs the agents and routers the controller assigns to this node as its children —
 * it waits on them (nothing else reaps orphans), starts a dead one again after a delay, recreates a
 * workload whose directory vanished, moves aside (never deletes) a directory of another cluster or
 * of a workload no longer assigned here, and publishes each workload's state in its node record.
 * With etcd unreachable it keeps running what it runs (agents fence themselves) and retries. A
 * daemon that crashed left its workloads running; its next run adopts those still assigned here
 * (watching them through /proc, as they are no longer its children) instead of restarting them.
 */
export class NodeDaemon {
  private readonly workloads = new Map<string, Workload>();
  private readonly daemonId = randomBytes(8).toString('hex');
  private readonly startedAtMs = Date.now();
  private leaseId: string | undefined;
  private controller: ControllerCandidate | undefined;
  private passTimer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private lastPublished = '';
  private publishing: Promise<void> = Promise.resolve();
  private stopping = false;
  private passing: Promise<void> | undefined;
  /** The cluster passwords as last read from etcd: a restart after etcd went away still has them. */
  private secrets: ReadonlyMap<string, ClusterSecrets> = new Map();
  /** Removals in flight (an agent may take up to a minute to stop): a pass does not wait for them. */
  private readonly removals = new Set<Promise<void>>();
  /** Workloads of a crashed earlier run, by workload key, until the first pass adopts or stops them. */
  private readonly leftovers = new Map<string, Leftover>();

  constructor(
    private readonly cfg: NodeConfig,
    private readonly dcs: Dcs,
    private readonly log: NodeLog,
    private readonly runUser: RunUser | undefined,
  ) {}

  /** Registers (refusing a name another live daemon holds), finds leftovers of a crashed run, then runs. */
  async start(): Promise<void> {
    // Read before anything is registered: an unreadable certificate is a config error, said at once.
    const restTls = await restTlsOf(this.cfg);
    await mkdir(this.cfg.dir, { recursive: true, mode: 0o755 });
    await this.register();
    await writeFile(join(this.cfg.dir, 'node.pid'), `${process.pid}\n`);
    await this.findLeftovers();
    this.leaseTimer = setInterval(() => void this.renew(), Math.max(250, (this.cfg.leaseTtlSeconds * 1000) / 4));
    if (this.cfg.controller.enabled) {
      this.controller = new ControllerCandidate({
        ...(restTls === undefined ? {} : { restTls }),
        dcs: this.dcs,
        clock: systemClock,
        node: this.cfg.name,
        candidateId: this.daemonId,
        log: this.log,
        ttlMs: this.cfg.controller.ttlSeconds * 1000,
        nodeLostMs: this.cfg.controller.nodeLostSeconds * 1000,
      });
      this.controller.start();
    }
    this.schedulePass(0);
    this.log.info({ node: this.cfg.name, dir: this.cfg.dir, controller: this.cfg.controller.enabled }, 'node daemon running');
  }

  private record(): NodeRecord {
    return {
      name: this.cfg.name,
      labels: this.cfg.labels,
      taints: this.cfg.taints,
      addresses: [this.cfg.address],
      capacity: this.cfg.capacity,
      version: WARDEN_VERSION,
      daemonId: this.daemonId,
      pid: process.pid,
      dir: this.cfg.dir,
      startedAtMs: this.startedAtMs,
      workloads: [...this.workloads.values()].map((w) => this.statusOf(w)),
    };
  }

  private statusOf(w: Workload): WorkloadStatus {
    const a = w.assignment;
    return {
      cluster: a.cluster,
      kind: a.kind,
      name: a.name,
      state: w.state,
      pid: pidOf(w) ?? null,
      restarts: w.restarts,
      ...(w.files === undefined ? {} : { address: w.files.address }),
      ...(w.lastError === undefined ? {} : { lastError: w.lastError }),
      ...(w.runningBackups === undefined ? {} : { backups: w.runningBackups }),
    };
  }

  /**
   * Creates the node key under a fresh lease. A key left by this daemon's own earlier run (same dir,
   * its PID gone) is taken over; any other holder is waited on for one lease ttl (a dead daemon's key
   * expires by then) and, if it is still there, the start is refused.
   */
  private async register(): Promise<void> {
    const ttlMs = this.cfg.leaseTtlSeconds * 1000;
    const lease = await this.dcs.grantLease(ttlMs, { timeoutMs: 5_000 });
    this.leaseId = lease.id;
    const key = nodeKey(this.cfg.name);
    const deadline = Date.now() + ttlMs + 1_000;
    for (;;) {
      if (await this.dcs.create(key, JSON.stringify(this.record()), { leaseId: lease.id, timeoutMs: 5_000 })) {
        this.lastPublished = JSON.stringify(this.record().workloads);
        return;
      }
      const kv = await this.dcs.get(key, { timeoutMs: 5_000 });
      if (kv === undefined) continue;
      const held = decodeJson(NODE_RECORD, kv.value);
      if (held.ok && held.value.dir === this.cfg.dir && !(await this.isLiveNodeDaemon(held.value.pid))) {
        this.log.warn({ pid: held.value.pid }, 'the node key is left from an earlier run of this daemon: taking it over');
        // A lease that already expired is what we hoped for; the delete below is what must succeed.
        await this.dcs.revokeLease(kv.lease, { timeoutMs: 5_000 }).catch((e: unknown) => this.log.warn({ err: describeError(e) }, 'could not revoke the stale node lease'));
        await this.dcs.delete(key, { expectModRevision: kv.modRevision, timeoutMs: 5_000 });
        continue;
      }
      const who = held.ok ? `pid ${held.value.pid}, dir ${held.value.dir}, started ${new Date(held.value.startedAtMs).toISOString()}` : 'an unreadable record';
      const liveHere = held.ok && held.value.dir === this.cfg.dir;
      if (liveHere || Date.now() >= deadline) {
        // Unrevoked, the unused lease expires by itself within the ttl.
        await this.dcs.revokeLease(lease.id, { timeoutMs: 5_000 }).catch((e: unknown) => this.log.warn({ err: describeError(e) }, 'could not revoke the unused node lease'));
        throw new WardenError('conflict', `another live node daemon is registered as ${this.cfg.name} (${who}): refusing to start a second one with the same name`);
      }
      await sleep(500);
    }
  }

  private async isLiveNodeDaemon(pid: number): Promise<boolean> {
    if (pid === process.pid || !(await isProcessAlive(pid))) return false;
    const argv = await processCommandLine(pid);
    return argv?.includes('node') === true;
  }

  /**
   * Workloads a crashed earlier run left behind: a PID file naming a live process whose command line
   * names the workload's directory. The first pass adopts those still assigned here and stops the rest.
   */
  private async findLeftovers(): Promise<void> {
    const root = join(this.cfg.dir, 'workloads');
    if (!existsSync(root)) return;
    for (const cluster of await readdir(root)) {
      for (const kind of ['member', 'router'] as const) {
        const kindDir = join(root, cluster, `${kind}s`);
        if (!existsSync(kindDir)) continue;
        for (const name of await readdir(kindDir)) {
          const dir = join(kindDir, name);
          const pid = Number((await readFile(join(dir, 'pid'), 'utf8').catch(() => '')).trim());
          if (!Number.isInteger(pid) || pid <= 0 || !(await runsIn(pid, dir))) continue;
          this.log.info({ pid, dir }, 'found a workload left running by an earlier run of this daemon');
          this.leftovers.set(workloadKey({ cluster, kind, name }), { pid, dir, kind, cluster, name });
        }
      }
    }
  }

  /**
   * A leftover whose assignment is still here is adopted when its directory's marker names this very
   * assignment (same cluster uid); otherwise it is stopped by PID and the workload started afresh.
   */
  private adoptOrStart(key: string, w: Workload, left: Leftover): void {
    // Set at once, so that a removal or a stop in the meantime stops this process too.
    w.adoptedPid = left.pid;
    void (async () => {
      const files = await adoptableFiles(this.cfg, w.assignment);
      if (files !== undefined && (await runsIn(left.pid, left.dir)) && !this.stopping && !w.removing) {
        w.files = files;
        w.state = 'running';
        if (w.assignment.kind === 'member') w.runningBackups = backupsFingerprint(files.backups);
        this.log.info({ workload: key, pid: left.pid }, `${w.assignment.kind} adopted: it keeps running, watched by its PID`);
        this.publishSoon();
        return;
      }
      if (this.stopping || w.removing) return;
      this.log.warn({ workload: key, pid: left.pid }, 'the workload left running does not match its assignment (another cluster uid, or its files are gone): stopping it and starting it afresh');
      await stopPid(left.pid, stopGraceMs(w.assignment.kind));
      w.adoptedPid = undefined;
      this.startWorkload(key, w);
    })().catch((e: unknown) => {
      w.state = 'failed';
      w.lastError = describeError(e);
      this.log.error({ workload: key, err: w.lastError }, 'could not adopt the workload left running; retrying the start after the delay');
      if (!this.stopping && !w.removing) w.restartTimer = setTimeout(() => this.startWorkload(key, w), this.restartDelayMs(w));
    });
  }

  /** An adopted workload is not our child: its death is seen here, every pass (etcd or not), and handled as an exit. */
  private async watchAdopted(): Promise<void> {
    for (const [key, w] of this.workloads) {
      const pid = w.adoptedPid;
      if (pid === undefined || w.files === undefined || w.removing || this.stopping) continue;
      if (await runsIn(pid, w.files.dir)) continue;
      w.adoptedPid = undefined;
      this.exited(key, w, `the adopted ${w.assignment.kind} (pid ${pid}) is gone`);
    }
  }

  /** Stops a leftover that nothing assigns here any more, and retires its directory like any unassigned workload's. */
  private removeLeftover(key: string, left: Leftover): void {
    const grace = stopGraceMs(left.kind);
    this.log.info({ workload: key, pid: left.pid }, 'stopping a workload left running that is no longer assigned to this node');
    const p = stopPid(left.pid, grace)
      .then(() => this.retireDir(left.kind, left.dir, `${left.cluster}-${left.name}`, 'no longer assigned to this node'))
      .catch((e: unknown) => this.log.error({ workload: key, err: describeError(e) }, 'removing the workload left running failed; its directory is left in place'))
      .finally(() => this.removals.delete(p));
    this.removals.add(p);
  }

  private async renew(): Promise<void> {
    if (this.stopping || this.leaseId === undefined) return;
    try {
      await this.dcs.keepAlive(this.leaseId, { timeoutMs: Math.max(500, (this.cfg.leaseTtlSeconds * 1000) / 4) });
    } catch (e) {
      if (!isWardenError(e, 'lease-not-found')) {
        this.log.warn({ err: describeError(e) }, 'node lease renewal failed; retrying (workloads keep running)');
        return;
      }
      this.log.warn({}, 'node lease expired: registering again');
      this.leaseId = undefined;
      try {
        await this.register();
      } catch (err) {
        this.log.error({ err: describeError(err) }, 'registering the node again failed; retrying');
      }
    }
  }

  private schedulePass(delayMs: number): void {
    if (this.stopping) return;
    this.passTimer = setTimeout(() => {
      this.passing = this.pass()
        .catch((e: unknown) => this.log.warn({ err: describeError(e) }, 'node pass failed (etcd unreachable?); workloads keep running'))
        .finally(() => this.schedulePass(PASS_INTERVAL_MS));
    }, delayMs);
  }

  /** One pass: what is assigned here is started, what is not is stopped and moved aside, status published. */
  async pass(): Promise<void> {
    await this.watchAdopted();
    const raw = await this.dcs.range(CONTROL_PREFIX, { timeoutMs: 3_000 });
    const snap = parseControlSnapshot(raw.revision, raw.kvs);
    for (const [key, why] of snap.invalid) this.log.warn({ key, why }, 'invalid control-plane record ignored');
    this.secrets = snap.secrets;
    const mine = new Map<string, Assignment>();
    for (const list of snap.assignments.values()) for (const a of list) if (a.node === this.cfg.name) mine.set(workloadKey(a), a);
    for (const [key, a] of mine) {
      const w = this.workloads.get(key);
      if (w === undefined) {
        const fresh: Workload = { assignment: a, child: undefined, adoptedPid: undefined, files: undefined, state: 'starting', restarts: 0, restartTimer: undefined, lastError: undefined, removing: false, runningBackups: undefined, reconfiguring: false };
        this.workloads.set(key, fresh);
        const left = this.leftovers.get(key);
        this.leftovers.delete(key);
        if (left === undefined) this.startWorkload(key, fresh);
        else this.adoptOrStart(key, fresh, left);
      } else if (w.assignment.clusterUid !== a.clusterUid) {
        // The cluster was deleted and applied again: the running workload belongs to the old one.
        if (!w.removing) this.remove(key, w, 'its cluster was applied again under a new uid');
      } else {
        w.assignment = a;
        // A directory deleted under a running workload: stop it; its exit brings it back, recreated.
        if (pidOf(w) !== undefined && w.files !== undefined && !existsSync(w.files.dir)) {
          this.log.warn({ workload: key, dir: w.files.dir }, 'its directory vanished: stopping it so that it is recreated');
          void this.stopProcess(w);
        } else {
          this.followBackups(key, w);
        }
      }
    }
    for (const [key, w] of this.workloads) if (!mine.has(key) && !w.removing) this.remove(key, w, 'no longer assigned to this node');
    for (const [key, left] of this.leftovers) {
      this.leftovers.delete(key);
      this.removeLeftover(key, left);
    }
    await this.publish();
  }

  /**
   * A member assigned other backups settings (spec.backups changed; the controller rewrites one
   * assignment at a time) while its agent runs with the former ones: pgBackRest options alone are
   * written into its files in place (each pgBackRest run reads them); anything else (archiving on
   * or off, other repositories) restarts its agent with the rewritten files — PostgreSQL stops
   * (fast) and starts again with them. Its published settings stay the former ones until then, so
   * the controller waits for it before it rolls on.
   */
  private followBackups(key: string, w: Workload): void {
    const a = w.assignment;
    const files = w.files;
    if (a.kind !== 'member' || files === undefined || w.reconfiguring || w.removing || this.stopping || pidOf(w) === undefined) return;
    if (backupsFingerprint(a.agent?.backups) === backupsFingerprint(files.backups)) return;
    const wanted = backupsFingerprint(a.agent?.backups);
    if (w.refusedBackups === wanted) return;
    w.reconfiguring = true;
    const restarts = backupsChangeRestarts(files.backups, a.agent?.backups);
    void (async () => {
      // Written first, with the agent still running: settings this node cannot run (no
      // backups.repo_path) leave the member as it runs, with the reason in the node record.
      let rewritten: WorkloadFiles;
      try {
        rewritten = await prepareWorkload(this.cfg, a, this.secrets.get(a.cluster), this.runUser);
      } catch (e) {
        w.refusedBackups = wanted;
        w.lastError = `the new spec.backups settings are not applied here (it keeps running with the former ones): ${describeError(e)}`;
        this.log.error({ workload: key, err: describeError(e) }, 'the new spec.backups settings cannot be applied on this node; the member keeps running with the former ones');
        this.publishSoon();
        return;
      }
      w.refusedBackups = undefined;
      if (!restarts) {
        w.files = rewritten;
        w.runningBackups = backupsFingerprint(rewritten.backups);
        this.log.info({ workload: key }, 'spec.backups options changed: the member\'s pgBackRest config is rewritten; nothing restarts');
        this.publishSoon();
        return;
      }
      this.log.info({ workload: key }, 'spec.backups changed (archiving turned on or off, or other repositories): restarting the agent with the rewritten files');
      // Taken off the workload first: its exit is this restart's, not a crash to restart after the delay.
      const child = w.child;
      const adopted = w.adoptedPid;
      w.child = undefined;
      w.adoptedPid = undefined;
      if (isChildRunning(child)) await stopChild(child, stopGraceMs('member'));
      else if (adopted !== undefined) await stopPid(adopted, stopGraceMs('member'));
      if (this.stopping || w.removing) return;
      w.state = 'starting';
      this.startWorkload(key, w);
    })()
      .catch((e: unknown) => this.log.error({ workload: key, err: describeError(e) }, 'following the new backups settings failed; the next pass tries again'))
      .finally(() => {
        w.reconfiguring = false;
      });
  }

  private restartDelayMs(w: Workload): number {
    return w.assignment.kind === 'member' ? this.cfg.restartDelaySeconds * 1000 : ROUTER_RESTART_DELAY_MS;
  }

  /** Stops the workload's process, our child or adopted; resolves once it has exited. */
  private stopProcess(w: Workload): Promise<void> {
    if (isChildRunning(w.child)) return stopChild(w.child, stopGraceMs(w.assignment.kind));
    return w.adoptedPid === undefined ? Promise.resolve() : stopPid(w.adoptedPid, stopGraceMs(w.assignment.kind));
  }

  /** A workload's process ended (our child's exit, or an adopted one gone): started again after the delay. */
  private exited(key: string, w: Workload, why: string): void {
    const delayMs = this.restartDelayMs(w);
    w.state = 'restarting';
    w.restarts++;
    w.lastError = why;
    w.runningBackups = undefined;
    this.log.warn({ workload: key, why, restartInMs: delayMs }, `${w.assignment.kind} ended; starting it again after the delay`);
    this.publishSoon();
    w.restartTimer = setTimeout(() => this.startWorkload(key, w), delayMs);
  }

  private startWorkload(key: string, w: Workload): void {
    if (this.stopping || w.removing) return;
    w.restartTimer = undefined;
    w.adoptedPid = undefined;
    void (async () => {
      const files = await prepareWorkload(this.cfg, w.assignment, this.secrets.get(w.assignment.cluster), this.runUser);
      for (const note of files.notes) this.log.warn({ workload: key }, note);
      if (this.stopping || w.removing) return;
      const a = w.assignment;
      const child =
        a.kind === 'member'
          ? spawnWarden(['agent', '--config', files.configFile], files.outFile, { nodeFlags: AGENT_NODE_FLAGS })
          : spawnWarden(['router', '--config', files.configFile, '--wait-for-cluster'], files.outFile, { detached: true });
      w.child = child;
      w.files = files;
      w.state = 'running';
      if (a.kind === 'member') w.runningBackups = backupsFingerprint(files.backups);
      // lastError stays: with `restarts`, it tells why the workload last ended.
      if (child.pid !== undefined) await writeFile(files.pidFile, `${child.pid}\n`);
      this.log.info({ workload: key, pid: child.pid }, `${a.kind} started`);
      child.once('error', (e) => this.log.error({ workload: key, err: describeError(e) }, `${a.kind} failed to spawn`));
      child.once('exit', (code, signal) => {
        if (this.stopping || w.removing || w.child !== child) return;
        const why = `exited (${signal ?? `code ${code}`})`;
        // Its last word (an invalid config, a refused data directory) goes with the exit into the
        // node record, where `warden get nodes` and `apply --wait` show it.
        void lastOutputLine(files.outFile).then((line) => {
          if (this.stopping || w.removing || w.child !== child) return;
          this.exited(key, w, line === undefined ? why : `${why}: ${line}`);
        });
      });
      this.publishSoon();
    })().catch((e: unknown) => {
      // Whatever goes wrong (a full disk, missing secrets) is retried on a later pass; it never ends the daemon.
      w.state = 'failed';
      w.lastError = describeError(e);
      w.runningBackups = undefined;
      const delayMs = this.restartDelayMs(w);
      this.log.error({ workload: key, err: w.lastError, retryInMs: delayMs }, 'could not start the workload; retrying after the delay');
      if (!this.stopping && !w.removing) w.restartTimer = setTimeout(() => this.startWorkload(key, w), delayMs);
    });
  }

  private remove(key: string, w: Workload, why: string): void {
    const p = this.removeWorkload(key, w, why)
      .catch((e: unknown) => {
        this.workloads.delete(key);
        this.log.error({ workload: key, err: describeError(e) }, 'removing the workload failed; its directory is left in place');
      })
      .finally(() => this.removals.delete(p));
    this.removals.add(p);
  }

  private async removeWorkload(key: string, w: Workload, why: string): Promise<void> {
    w.removing = true;
    clearTimeout(w.restartTimer);
    w.state = 'stopping';
    this.log.info({ workload: key, why }, 'stopping a workload');
    await this.stopProcess(w);
    await this.retireDir(w.assignment.kind, w.files?.dir ?? workloadDir(this.cfg.dir, w.assignment), `${w.assignment.cluster}-${w.assignment.name}`, why);
    this.workloads.delete(key);
  }

  /** The directory of a workload no longer run here: a member's is moved aside, a router's (no data) removed. */
  private async retireDir(kind: 'member' | 'router', dir: string, label: string, why: string): Promise<void> {
    if (!existsSync(dir)) return;
    if (kind === 'router') {
      await rm(dir, { recursive: true, force: true });
      return;
    }
    // Data is moved aside, never deleted (invariant 5 in docs/architecture.md).
    const to = await moveAside(this.cfg.dir, dir, label, why);
    this.log.info({ dir, to }, 'moved its directory aside');
  }

  /** Publishes a state change now; a failure is logged and the next pass publishes again. */
  private publishSoon(): void {
    void this.publish().catch((e: unknown) => this.log.warn({ err: describeError(e) }, 'publishing the node record failed; the next pass tries again'));
  }

  /**
   * One publish at a time, each computing the record when its turn comes. Two puts in flight at
   * once could be applied in one order and answered in the other: etcd would keep the older record
   * while lastPublished names the newer one, and nothing would correct it (a router left
   * `starting` in the record for good).
   */
  private publish(): Promise<void> {
    const next = this.publishing.then(() => this.publishNow());
    this.publishing = next.catch(() => undefined);
    return next;
  }

  private async publishNow(): Promise<void> {
    if (this.leaseId === undefined || this.stopping) return;
    const record = this.record();
    const fingerprint = JSON.stringify(record.workloads);
    if (fingerprint === this.lastPublished) return;
    await this.dcs.put(nodeKey(this.cfg.name), JSON.stringify(record), { leaseId: this.leaseId, timeoutMs: 3_000 });
    this.lastPublished = fingerprint;
  }

  /** What this daemon runs, for tests. */
  running(): { key: string; pid: number | undefined; state: WorkloadState; dir: string | undefined }[] {
    return [...this.workloads].map(([key, w]) => ({ key, pid: pidOf(w), state: w.state, dir: w.files?.dir }));
  }

  /** Stops the controller candidate (handing over at once), every workload, then the node lease. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.passTimer);
    clearInterval(this.leaseTimer);
    await this.passing;
    await this.controller?.stop();
    for (const w of this.workloads.values()) clearTimeout(w.restartTimer);
    await Promise.all([...this.removals]);
    await Promise.all([
      ...[...this.workloads.values()].map((w) => this.stopProcess(w)),
      // Found at start but not yet adopted (no pass ran): a stop stops them as well.
      ...[...this.leftovers.values()].map((l) => stopPid(l.pid, stopGraceMs(l.kind))),
    ]);
    // Revoked, the node key goes at once; otherwise it expires within the lease ttl.
    if (this.leaseId !== undefined) await this.dcs.revokeLease(this.leaseId, { timeoutMs: 3_000 }).catch((e: unknown) => this.log.warn({ err: describeError(e) }, 'could not revoke the node lease; the node key expires with it'));
    await rm(join(this.cfg.dir, 'node.pid'), { force: true });
    this.log.info({}, 'node daemon stopped');
  }
}

/** The workload's process: our child while it runs, else the adopted one's PID. */
function pidOf(w: Workload): number | undefined {
  return isChildRunning(w.child) ? w.child.pid : w.adoptedPid;
}

/** True while `pid` is alive and its command line names a file under `dir` (a reused PID does not). */
async function runsIn(pid: number, dir: string): Promise<boolean> {
  if (!(await isProcessAlive(pid))) return false;
  const argv = await processCommandLine(pid);
  return argv?.some((x) => x.startsWith(`${dir}/`)) === true;
}

/** How much of a workload's output is read for its last line. */
const OUTPUT_TAIL_BYTES = 4096;

/**
 * The last line a workload wrote to its output before it exited (Node's own warnings left out,
 * at most 300 characters), or undefined when there is none or it cannot be read.
 */
export async function lastOutputLine(file: string): Promise<string | undefined> {
  let fd: FileHandle | undefined;
  try {
    fd = await open(file, 'r');
    const size = (await fd.stat()).size;
    const start = Math.max(0, size - OUTPUT_TAIL_BYTES);
    const buf = Buffer.alloc(size - start);
    await fd.read(buf, 0, buf.length, start);
    const lines = buf.toString('utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('Warning: ') && !l.startsWith('(Use `node --trace') && !l.startsWith('Node.js v'));
    const last = lines.at(-1);
    return last === undefined ? undefined : last.length > 300 ? `${last.slice(0, 297)}...` : last;
  } catch {
    return undefined;
  } finally {
    await fd?.close().catch(() => undefined);
  }
}

/**
 * The controller's TLS towards the agents, from node.yaml's restapi files: their CA, and the
 * node's certificate as a client certificate (agents with verify_client ask for one). A file that
 * cannot be read is a config error naming it.
 */
async function restTlsOf(cfg: NodeConfig): Promise<ClientTls | undefined> {
  const r = cfg.restApi;
  if (r === undefined) return undefined;
  const read = async (field: string, path: string): Promise<string> => {
    try {
      return await readFile(path, 'utf8');
    } catch (e) {
      throw new WardenError('config-invalid', `node config restapi.${field} ${path}: ${describeError(e)}`);
    }
  };
  return { cert: await read('certfile', r.certfile), key: await read('keyfile', r.keyfile), ...(r.cafile === undefined ? {} : { ca: await read('cafile', r.cafile) }) };
}
