import { setPriority } from 'node:os';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { describeError } from '../core/errors.js';
import { EtcdClient } from '../dcs/etcd-client.js';
import { spawnEtcdMember, waitForEtcdHealth, type EtcdProcess } from '../dcs/etcd-server.js';
import { createLogger, type Logger } from '../agent/logger.js';
import { ensureMemberFiles, lookupRunUser, readLayout, supervisorPidPath, type RuntimeEtcdAuth, type RuntimeLayout, type RuntimeMember, type RuntimeNode } from './runtime-layout.js';
import { nodesState } from './local-nodes.js';
import { SupervisedRouter } from './router-runtime.js';
import { readStateFile, writeStateFile, type StateFile } from './state-file.js';
import { join } from 'node:path';
import { AGENT_NODE_FLAGS, isChildRunning, spawnWarden, stopChild, wardenArgv } from './warden-child.js';

// Re-exported: modules that started Warden children through the supervisor import them from here.
export { AGENT_NODE_FLAGS, wardenArgv };

const AGENT_STOP_GRACE_MS = 60_000;
/** A node daemon stops its agents (each up to 60 s) and routers before it exits. */
const NODE_STOP_GRACE_MS = 90_000;
const NODE_RESTART_DELAY_MS = 1_000;
/** How often a `--nodes` runtime's state.json is refreshed from etcd (members and routers move). */
const NODES_STATE_INTERVAL_MS = 2_000;
const ETCD_NICE = -5;

/**
 * The local runtime's supervisor (`warden supervise`, started detached by `warden up`): the parent
 * of every etcd member and agent of one runtime dir. It waits on its children (no zombies), starts a
 * dead agent again after restartDelaySeconds (longer than the TTL, so that a lost primary fails over
 * first and then rejoins), restarts a dead etcd member, and on SIGTERM stops agents then etcd.
 * With `warden up --nodes` it runs node daemons instead of agents and the router (they run the
 * members and routers the controller assigns), restarts a dead one after 1 s, and refreshes
 * state.json from etcd every 2 s.
 */
export async function runSupervisor(dir: string): Promise<void> {
  const layout = await readLayout(dir);
  if (layout === undefined) throw new Error(`no runtime.json in ${dir}: run warden up first`);
  const log = createLogger({ level: 'info', file: join(dir, 'supervisor.log'), name: 'supervisor' });
  await writeFile(supervisorPidPath(dir), `${process.pid}\n`);
  const sup = new Supervisor(dir, layout, log);
  process.on('SIGTERM', () => void sup.shutdown('SIGTERM'));
  process.on('SIGINT', () => void sup.shutdown('SIGINT'));
  process.on('SIGHUP', () => undefined);
  await sup.start();
}

class Supervisor {
  private readonly etcd = new Map<string, EtcdProcess>();
  private readonly agents = new Map<string, ChildProcess>();
  private readonly nodes = new Map<string, ChildProcess>();
  private nodesState: Pick<StateFile, 'members' | 'router' | 'routers' | 'nodes'> | undefined;
  private stateTimer: NodeJS.Timeout | undefined;
  private router: SupervisedRouter | undefined;
  private stopping = false;
  private readonly runUser = lookupRunUser();

  constructor(
    private readonly dir: string,
    private readonly layout: RuntimeLayout,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    for (const m of this.layout.etcd.members) this.startEtcd(m.name);
    await waitForEtcdHealth(this.layout.etcd.members.map((m) => m.clientUrl), 30_000, [...this.etcd.values()]);
    this.log.info({ endpoints: this.layout.etcd.members.map((m) => m.clientUrl) }, 'etcd is healthy');
    if (this.layout.etcdAuth !== undefined) await this.ensureEtcdAuthentication(this.layout.etcdAuth);
    for (const m of this.layout.members) this.startAgent(m);
    for (const n of this.layout.nodes ?? []) this.startNode(n);
    if (this.layout.nodes !== undefined) this.refreshNodesState();
    if (this.layout.router !== undefined) {
      this.router = new SupervisedRouter(this.layout.router, this.log, wardenArgv, () => void this.writeState());
      this.router.start();
    }
    await this.writeState();
  }

  /**
   * Turns on etcd's authentication the first time (root, and the runtime's user limited to
   * /warden/), before any agent starts; on later starts it only checks the user can authenticate.
   */
  private async ensureEtcdAuthentication(a: RuntimeEtcdAuth): Promise<void> {
    const endpoints = this.layout.etcd.members.map((m) => m.clientUrl);
    const user = { username: a.username, password: (await readFile(a.passwordFile, 'utf8')).trim() };
    const probe = new EtcdClient({ endpoints, defaultTimeoutMs: 5000, auth: user });
    try {
      await probe.get('/warden/', { timeoutMs: 5000 });
      return;
    } catch (e) {
      if (!/authentication is not enabled/.test(describeError(e))) throw e;
    } finally {
      probe.close();
    }
    const admin = new EtcdClient({ endpoints, defaultTimeoutMs: 5000 });
    try {
      await admin.enableAuthentication({ rootPassword: (await readFile(a.rootPasswordFile, 'utf8')).trim(), user, prefix: '/warden/' });
      this.log.info({ user: a.username }, 'etcd authentication enabled: the runtime user may read and write /warden/ only');
    } finally {
      admin.close();
    }
  }

  private startEtcd(name: string): void {
    const spec = this.layout.etcd.members.find((m) => m.name === name);
    if (spec === undefined || this.stopping) return;
    const state = existsSync(join(spec.dataDir, 'member')) ? 'existing' : 'new';
    const proc = spawnEtcdMember(spec, this.layout.etcd, { state });
    // Like the agents, etcd must answer lease renewals even when PostgreSQL and clients fill the cores.
    if (process.getuid?.() === 0) {
      try {
        setPriority(proc.pid, ETCD_NICE);
      } catch (e) {
        this.log.warn({ member: name, err: describeError(e) }, 'could not raise the etcd priority');
      }
    }
    this.etcd.set(name, proc);
    this.log.info({ member: name, pid: proc.pid, state }, 'etcd member started');
    void proc.exited.then(() => {
      if (this.stopping || this.etcd.get(name) !== proc) return;
      this.log.warn({ member: name, code: proc.child.exitCode, signal: proc.child.signalCode }, 'etcd member exited; restarting it in 1 s');
      setTimeout(() => {
        this.startEtcd(name);
        void this.writeState();
      }, 1000);
    });
  }

  /**
   * Starts (or restarts) one agent. Whatever goes wrong here — a member directory deleted under
   * it, a full disk — is logged and retried after the restart delay: it must never end the
   * supervisor, which is the parent of etcd and every other member.
   */
  private startAgent(m: RuntimeMember): void {
    if (this.stopping) return;
    void this.spawnAgent(m).catch((e: unknown) => {
      const delayMs = this.layout.restartDelaySeconds * 1000;
      this.log.error({ member: m.name, err: describeError(e), retryInMs: delayMs }, 'could not start the agent; retrying after the delay');
      setTimeout(() => this.startAgent(m), delayMs);
    });
  }

  private async spawnAgent(m: RuntimeMember): Promise<void> {
    const recreated = await ensureMemberFiles(m, this.runUser);
    if (recreated.length > 0) this.log.warn({ member: m.name, recreated }, 'member files were missing: recreated them from runtime.json');
    if (this.stopping) return;
    const child = spawnWarden(['agent', '--config', m.configFile], join(m.memberDir, 'agent.out'), { nodeFlags: AGENT_NODE_FLAGS });
    this.agents.set(m.name, child);
    this.log.info({ member: m.name, pid: child.pid }, 'agent started');
    void this.writeState();
    child.once('error', (e) => this.log.error({ member: m.name, err: describeError(e) }, 'agent failed to spawn'));
    child.once('exit', (code, signal) => {
      if (this.stopping || this.agents.get(m.name) !== child) return;
      const delayMs = this.layout.restartDelaySeconds * 1000;
      this.log.warn({ member: m.name, code, signal, restartInMs: delayMs }, 'agent exited; restarting it after the delay');
      void this.writeState();
      setTimeout(() => this.startAgent(m), delayMs);
    });
  }

  private startNode(n: RuntimeNode): void {
    if (this.stopping) return;
    const child = spawnWarden(['node', '--config', n.configFile], n.outFile, n.netns === undefined ? {} : { netns: n.netns });
    this.nodes.set(n.name, child);
    this.log.info({ node: n.name, pid: child.pid }, 'node daemon started');
    void this.writeState();
    child.once('error', (e) => this.log.error({ node: n.name, err: describeError(e) }, 'node daemon failed to spawn'));
    child.once('exit', (code, signal) => {
      if (this.stopping || this.nodes.get(n.name) !== child) return;
      this.log.warn({ node: n.name, code, signal, restartInMs: NODE_RESTART_DELAY_MS }, 'node daemon exited; restarting it');
      void this.writeState();
      setTimeout(() => this.startNode(n), NODE_RESTART_DELAY_MS);
    });
  }

  /** `--nodes`: members, routers and nodes as etcd and the node records say, every 2 s (a failed read keeps the last). */
  private refreshNodesState(): void {
    if (this.stopping) return;
    void (async () => {
      const a = this.layout.etcdAuth;
      const client = new EtcdClient({
        endpoints: this.layout.etcd.members.map((m) => m.clientUrl),
        defaultTimeoutMs: 3_000,
        ...(a === undefined ? {} : { auth: { username: a.username, password: (await readFile(a.passwordFile, 'utf8')).trim() } }),
      });
      try {
        const pids = new Map([...this.nodes].map(([name, child]) => [name, isChildRunning(child) ? (child.pid ?? null) : null]));
        const next = await nodesState(this.layout, client, pids);
        if (JSON.stringify(next) !== JSON.stringify(this.nodesState)) {
          this.nodesState = next;
          await this.writeState();
        }
      } finally {
        client.close();
      }
    })()
      .catch((e: unknown) => this.log.debug({ err: describeError(e) }, 'reading the nodes\' state from etcd failed; retrying'))
      .finally(() => {
        if (!this.stopping) this.stateTimer = setTimeout(() => this.refreshNodesState(), NODES_STATE_INTERVAL_MS);
      });
  }

  private async writeState(): Promise<void> {
    const prev = await readStateFile(this.dir).catch(() => undefined);
    const state: StateFile = {
      cluster: this.layout.cluster,
      etcd: this.layout.etcd.members.map((m) => m.clientUrl),
      superuser: this.layout.superuser,
      pgpassFile: this.layout.pgpassFile,
      members: this.layout.members.map((m) => {
        const child = this.agents.get(m.name);
        const alive = isChildRunning(child);
        return {
          name: m.name,
          apiUrl: `http://${m.host}:${m.apiPort}`,
          host: m.host,
          port: m.pgPort,
          dataDir: m.dataDir,
          agentPid: alive ? (child?.pid ?? null) : null,
        };
      }),
      router: this.router?.state() ?? prev?.router ?? null,
      ...(this.layout.nodes === undefined ? {} : this.nodesStateNow()),
      supervisorPid: this.stopping ? null : process.pid,
      etcdPids: this.layout.etcd.members.map((m) => this.etcd.get(m.name)?.pid ?? null),
      ...(this.layout.etcdAuth === undefined ? {} : { etcdAuth: { username: this.layout.etcdAuth.username, passwordFile: this.layout.etcdAuth.passwordFile } }),
    };
    await writeStateFile(this.dir, state).catch((e: unknown) => this.log.error({ err: describeError(e) }, 'writing state.json failed'));
  }

  /** The last nodes' state, with the node daemons' PIDs as they are now. */
  private nodesStateNow(): Pick<StateFile, 'members' | 'router' | 'routers' | 'nodes'> {
    const s = this.nodesState ?? { members: [], router: null, routers: [], nodes: [] };
    const nodes = (this.layout.nodes ?? []).map((n) => {
      const child = this.nodes.get(n.name);
      return { ...(s.nodes?.find((x) => x.name === n.name) ?? { name: n.name, labels: {}, dir: n.dir }), pid: isChildRunning(child) && !this.stopping ? (child.pid ?? null) : null };
    });
    return { ...s, nodes };
  }

  async shutdown(signal: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.stateTimer !== undefined) clearTimeout(this.stateTimer);
    this.log.info({ signal }, 'shutting down: agents (node daemons) first, then etcd');
    const exits = [...this.agents.values()].map((child) => stopChild(child, AGENT_STOP_GRACE_MS));
    exits.push(...[...this.nodes.values()].map((child) => stopChild(child, NODE_STOP_GRACE_MS)));
    await Promise.all([...exits, this.router?.stop(10_000)]);
    await Promise.all([...this.etcd.values()].map((p) => p.stop(10_000).catch(() => undefined)));
    await this.writeState();
    await rm(supervisorPidPath(this.dir), { force: true });
    this.log.info({}, 'stopped');
    // Give pino's async destination a moment to flush, then leave.
    setTimeout(() => process.exit(0), 100);
  }
}
