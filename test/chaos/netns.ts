/**
 * The network-namespace chaos harness: every PostgreSQL member (agent + its PostgreSQL) and every
 * etcd member runs in a network namespace of its own, with its own address on a private bridge that
 * lives in yet another namespace, so that a node can be partitioned or cut off from etcd for real
 * (nftables inside its namespace). The test process reaches the nodes through a veth from the root
 * namespace; a blackhole route for the test subnet in the root namespace keeps its traffic on the
 * machine even when that veth goes down. Root only.
 *
 *   root ns:  wc<id>h 10.213.N.254/24  ──┐        blackhole 10.213.N.0/24 metric 4000
 *   wc<id>br: bridge br0 ─────────────────┼── m1 10.213.N.11, m2 .12, m3 .13 (agent + PostgreSQL)
 *                                         └── e1 10.213.N.21, e2 .22, e3 .23 (etcd)
 *
 * Everything it creates (namespaces, veth, route, processes, temp dir) is removed by destroy(), which
 * also runs synchronously on process exit when a test dies half-way.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChaosCluster, ChaosEtcdMember, ChaosMember } from '../../src/chaos/cluster.js';
import { spawnEtcdMember, waitForEtcdHealth, type EtcdClusterSpec, type EtcdProcess } from '../../src/dcs/etcd-server.js';
import { DEFAULT_DYNAMIC_CONFIG } from '../../src/ha/dynamic-config.js';
import { stringifyAgentConfig } from '../../src/spec/agent-config.js';
import { WARDEN_BIN } from '../support/cli.js';
import { kill, NetnsNetwork, waitGone, type NetnsHost } from '../support/netns-network.js';
import { PG_BIN_DIR } from '../support/pg.js';

export { netnsUnavailable } from '../support/netns-network.js';

type Node = NetnsHost;

/** A 3-member Warden cluster and a 3-member etcd, each node in its own namespace. */
export class NetnsCluster implements ChaosCluster {
  readonly name = 'chaosns';
  readonly user = 'postgres';
  readonly password = randomBytes(18).toString('base64url');
  readonly testerIp: string;
  readonly subnet: string;
  private readonly net: NetnsNetwork;
  readonly pgNodes: Node[];
  readonly etcdNodes: Node[];
  private readonly agents = new Map<string, ChildProcess>();
  private readonly etcdProcs = new Map<string, EtcdProcess>();
  private etcdSpec: EtcdClusterSpec | undefined;
  private destroyed = false;
  private readonly onExit = (): void => this.destroySync();

  private constructor(
    readonly dir: string,
    private readonly log: (s: string) => void,
  ) {
    this.net = new NetnsNetwork([...[1, 2, 3].map((i) => ({ name: `m${i}`, suffix: 10 + i })), ...[1, 2, 3].map((i) => ({ name: `e${i}`, suffix: 20 + i }))], log);
    this.subnet = this.net.subnet;
    this.testerIp = this.net.testerIp;
    this.pgNodes = this.net.hosts.filter((h) => h.name.startsWith('m'));
    this.etcdNodes = this.net.hosts.filter((h) => h.name.startsWith('e'));
  }

  /** Builds the network, starts etcd and the agents, and returns once the cluster is up (bounded). */
  static async create(log: (s: string) => void = () => undefined): Promise<NetnsCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'wcns-'));
    chmodSync(dir, 0o755);
    const c = new NetnsCluster(dir, log);
    process.once('exit', c.onExit);
    try {
      c.net.build();
      await c.startEtcd();
      c.writeAgentConfigs();
      for (const n of c.pgNodes) c.startAgent(n.name);
      return c;
    } catch (e) {
      c.destroySync();
      throw e;
    }
  }

  private async startEtcd(): Promise<void> {
    const spec: EtcdClusterSpec = {
      token: `wcns-${randomBytes(4).toString('hex')}`,
      members: this.etcdNodes.map((n) => {
        const d = join(this.dir, 'etcd', n.name);
        mkdirSync(d, { recursive: true });
        return { name: n.name, clientUrl: `http://${n.ip}:2379`, peerUrl: `http://${n.ip}:2380`, dataDir: join(d, 'data'), logFile: join(d, 'etcd.log') };
      }),
    };
    this.etcdSpec = spec;
    for (const [i, m] of spec.members.entries()) {
      const ns = this.etcdNodes[i]?.ns ?? '';
      this.etcdProcs.set(m.name, spawnEtcdMember(m, spec, { state: 'new', commandPrefix: ['ip', 'netns', 'exec', ns] }));
    }
    await waitForEtcdHealth(spec.members.map((m) => m.clientUrl), 30_000, [...this.etcdProcs.values()]);
    this.log('etcd is healthy');
  }

  private writeAgentConfigs(): void {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    const secrets = join(this.dir, 'secrets');
    mkdirSync(secrets, { mode: 0o700 });
    writeFileSync(join(secrets, 'superuser'), `${this.password}\n`, { mode: 0o600 });
    writeFileSync(join(secrets, 'replication'), `${randomBytes(18).toString('base64url')}\n`, { mode: 0o600 });
    for (const n of this.pgNodes) {
      const md = join(this.dir, n.name);
      mkdirSync(join(md, 'run'), { recursive: true });
      chmodSync(md, 0o755);
      chownSync(md, uid, gid);
      chownSync(join(md, 'run'), uid, gid);
      const yaml = stringifyAgentConfig({
        name: n.name,
        cluster: this.name,
        'etcd.endpoints': this.etcdNodes.map((e) => `http://${e.ip}:2379`),
        'restapi.listen': { host: n.ip, port: 8008 },
        'postgresql.listen': { host: n.ip, port: 5432 },
        'postgresql.data_dir': join(md, 'data'),
        'postgresql.bin_dir': PG_BIN_DIR,
        'postgresql.socket_dir': join(md, 'run'),
        'postgresql.run_as_user': 'postgres',
        'postgresql.authentication.superuser.username': 'postgres',
        'postgresql.authentication.superuser.password_file': join(secrets, 'superuser'),
        'postgresql.authentication.replication.username': 'replicator',
        'postgresql.authentication.replication.password_file': join(secrets, 'replication'),
        'bootstrap.dcs': { ...DEFAULT_DYNAMIC_CONFIG, postgresql: { use_pg_rewind: true, parameters: { shared_buffers: '16MB', max_connections: 50, fsync: false } } },
        'log.level': 'info',
        'log.file': join(md, 'agent.log'),
      });
      writeFileSync(join(md, 'agent.yaml'), yaml, { mode: 0o600 });
    }
  }

  /** Starts (or restarts) one member's agent inside its namespace. */
  startAgent(name: string): void {
    const n = this.node(name);
    const md = join(this.dir, n.name);
    const out = openSync(join(md, 'agent.out'), 'a');
    try {
      // `ip netns exec` execs the command: the child's PID is the agent's.
      const child = spawn('ip', ['netns', 'exec', n.ns, process.execPath, WARDEN_BIN, 'agent', '--config', join(md, 'agent.yaml')], { stdio: ['ignore', out, out] });
      child.once('error', (e) => this.log(`agent ${name}: ${e.message}`));
      this.agents.set(name, child);
    } finally {
      closeSync(out);
    }
  }

  private node(name: string): Node {
    return this.net.host(name);
  }

  nodeOfMember(name: string): Node {
    return this.node(name);
  }

  // ---- ChaosCluster

  async members(): Promise<readonly ChaosMember[]> {
    return this.pgNodes.map((n) => {
      const child = this.agents.get(n.name);
      const alive = child !== undefined && child.exitCode === null && child.signalCode === null;
      return { name: n.name, host: n.ip, port: 5432, apiUrl: `http://${n.ip}:8008`, dataDir: join(this.dir, n.name, 'data'), agentPid: alive ? (child.pid ?? null) : null };
    });
  }

  async etcd(): Promise<readonly ChaosEtcdMember[]> {
    return this.etcdNodes.map((n) => ({ name: n.name, clientUrl: `http://${n.ip}:2379`, pid: this.etcdProcs.get(n.name)?.pid ?? null }));
  }

  async routerPid(): Promise<number | undefined> {
    return undefined;
  }

  // ---- faults

  /** Drops every packet of `name` except loopback and the test process (clients still reach it). */
  partition(name: string): void {
    this.net.partition(name, { exceptTester: true });
  }

  /** Drops traffic between `name` and every etcd member; its peers and clients still reach it. */
  cutFromEtcd(name: string): void {
    const etcd = `{ ${this.etcdNodes.map((e) => e.ip).join(', ')} }`;
    this.net.applyRules(name, [`ip saddr ${etcd} drop`], [`ip daddr ${etcd} drop`], 'accept');
  }

  /** Isolates all but one etcd member: the survivor has no quorum, so etcd refuses every write. */
  loseQuorum(): string[] {
    const victims = this.etcdNodes.slice(1).map((e) => e.name);
    for (const v of victims) this.net.partition(v);
    return victims;
  }

  /** Removes the fault rules of `name` (every node when omitted). */
  heal(name?: string): void {
    this.net.heal(name);
  }

  // ---- cleanup

  /** Stops every process (by PID), deletes namespaces, veth, route and the temp dir. Idempotent. */
  async destroy(): Promise<void> {
    this.destroySync();
  }

  private destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.removeListener('exit', this.onExit);
    this.net.heal();
    // Agents first (SIGKILL: their PostgreSQL dies with them, parent-death signal), then any postmaster
    // left behind (by its pid file), then etcd.
    for (const child of this.agents.values()) if (child.pid !== undefined && child.exitCode === null) kill(child.pid, 'SIGKILL');
    for (const n of this.pgNodes) {
      const pidFile = join(this.dir, n.name, 'data', 'postmaster.pid');
      try {
        const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
        if (Number.isInteger(pid) && pid > 0) kill(pid, 'SIGKILL');
      } catch {
        // no server running there
      }
    }
    for (const p of this.etcdProcs.values()) kill(p.pid, 'SIGKILL');
    waitGone([...[...this.agents.values()].map((c) => c.pid ?? 0), ...[...this.etcdProcs.values()].map((p) => p.pid)], 10_000);
    this.net.destroySync();
    // WARDEN_CHAOS_KEEP_LOGS=DIR keeps the agents', PostgreSQL's and etcd's logs (not the data).
    const keep = process.env['WARDEN_CHAOS_KEEP_LOGS'];
    if (keep !== undefined && keep !== '') {
      try {
        cpSync(this.dir, join(keep, `netns-${Date.now()}`), { recursive: true, filter: (src) => !/\/(data|run|secrets)(\/|$)/.test(src) });
      } catch (e) {
        process.stderr.write(`keeping netns logs: ${String(e)}\n`);
      }
    }
    if (this.etcdSpec !== undefined || existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
  }
}
