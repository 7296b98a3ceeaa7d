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
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
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
import { PG_BIN_DIR } from '../support/pg.js';

/** Why the harness cannot run here, or undefined when it can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root (run the tests as root to include them)';
  for (const [cmd, args] of [['ip', ['netns', 'list']], ['nft', ['--version']]] as const) {
    const r = spawnSync(cmd, args, { stdio: 'ignore' });
    if (r.error !== undefined || r.status !== 0) return `\`${cmd} ${args.join(' ')}\` is not available (install iproute2 and nftables)`;
  }
  if (spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status !== 0) return 'etcd is not installed';
  if (!existsSync(join(PG_BIN_DIR, 'postgres'))) return `PostgreSQL 15 is not installed in ${PG_BIN_DIR}`;
  const id = spawnSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
  if (id.status !== 0) return 'the postgres OS user is missing (install postgresql-15)';
  return undefined;
}

interface Node {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
}

const NFT_TABLE = 'warden_chaos';

/** A 3-member Warden cluster and a 3-member etcd, each node in its own namespace. */
export class NetnsCluster implements ChaosCluster {
  readonly name = 'chaosns';
  readonly user = 'postgres';
  readonly password = randomBytes(18).toString('base64url');
  readonly testerIp: string;
  readonly subnet: string;
  private readonly bridgeNs: string;
  private readonly hostVeth: string;
  readonly pgNodes: Node[];
  readonly etcdNodes: Node[];
  private readonly agents = new Map<string, ChildProcess>();
  private readonly etcdProcs = new Map<string, EtcdProcess>();
  private etcdSpec: EtcdClusterSpec | undefined;
  private readonly created: string[] = [];
  private routeAdded = false;
  private destroyed = false;
  private readonly onExit = (): void => this.destroySync();

  private constructor(
    readonly dir: string,
    private readonly log: (s: string) => void,
  ) {
    const id = randomBytes(2).toString('hex');
    // A /24 nothing on this machine routes yet (10.213.N.0/24, N random).
    let octet = 0;
    for (let i = 0; i < 50 && octet === 0; i++) {
      const n = 1 + Math.floor(Math.random() * 250);
      const r = spawnSync('ip', ['route', 'show', `10.213.${n}.0/24`], { encoding: 'utf8' });
      if (r.stdout.trim() === '') octet = n;
    }
    if (octet === 0) throw new Error('no free 10.213.N.0/24 test subnet');
    this.subnet = `10.213.${octet}.0/24`;
    this.testerIp = `10.213.${octet}.254`;
    this.bridgeNs = `wc${id}br`;
    this.hostVeth = `wc${id}h`;
    this.pgNodes = [1, 2, 3].map((i) => ({ name: `m${i}`, ns: `wc${id}m${i}`, ip: `10.213.${octet}.${10 + i}` }));
    this.etcdNodes = [1, 2, 3].map((i) => ({ name: `e${i}`, ns: `wc${id}e${i}`, ip: `10.213.${octet}.${20 + i}` }));
  }

  /** Builds the network, starts etcd and the agents, and returns once the cluster is up (bounded). */
  static async create(log: (s: string) => void = () => undefined): Promise<NetnsCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'wcns-'));
    chmodSync(dir, 0o755);
    const c = new NetnsCluster(dir, log);
    process.once('exit', c.onExit);
    try {
      c.buildNetwork();
      await c.startEtcd();
      c.writeAgentConfigs();
      for (const n of c.pgNodes) c.startAgent(n.name);
      return c;
    } catch (e) {
      c.destroySync();
      throw e;
    }
  }

  private buildNetwork(): void {
    // The blackhole first: from now on nothing addressed to the test subnet can leave the machine.
    ip(['route', 'add', 'blackhole', this.subnet, 'metric', '4000']);
    this.routeAdded = true;
    this.addNs(this.bridgeNs);
    ip(['-n', this.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', this.bridgeNs, 'link', 'set', 'br0', 'up']);
    for (const [i, n] of [...this.pgNodes, ...this.etcdNodes].entries()) {
      this.addNs(n.ns);
      const peer = `p${i}`;
      ip(['-n', n.ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', peer, 'netns', this.bridgeNs]);
      ip(['-n', n.ns, 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0']);
      ip(['-n', n.ns, 'link', 'set', 'eth0', 'up']);
      ip(['-n', this.bridgeNs, 'link', 'set', peer, 'master', 'br0', 'up']);
    }
    ip(['link', 'add', this.hostVeth, 'type', 'veth', 'peer', 'name', 'ph', 'netns', this.bridgeNs]);
    ip(['addr', 'add', `${this.testerIp}/24`, 'dev', this.hostVeth]);
    ip(['link', 'set', this.hostVeth, 'up']);
    ip(['-n', this.bridgeNs, 'link', 'set', 'ph', 'master', 'br0', 'up']);
    this.log(`network: ${this.subnet} on bridge ns ${this.bridgeNs}; nodes ${[...this.pgNodes, ...this.etcdNodes].map((n) => `${n.name}=${n.ip}`).join(' ')}`);
  }

  private addNs(ns: string): void {
    ip(['netns', 'add', ns]);
    this.created.push(ns);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
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
    const n = [...this.pgNodes, ...this.etcdNodes].find((x) => x.name === name);
    if (n === undefined) throw new Error(`no node ${name}`);
    return n;
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
    this.applyRules(name, [`iif "lo" accept`, `ip saddr ${this.testerIp} accept`], [`oif "lo" accept`, `ip daddr ${this.testerIp} accept`], 'drop');
  }

  /** Drops traffic between `name` and every etcd member; its peers and clients still reach it. */
  cutFromEtcd(name: string): void {
    const etcd = `{ ${this.etcdNodes.map((e) => e.ip).join(', ')} }`;
    this.applyRules(name, [`ip saddr ${etcd} drop`], [`ip daddr ${etcd} drop`], 'accept');
  }

  /** Isolates all but one etcd member: the survivor has no quorum, so etcd refuses every write. */
  loseQuorum(): string[] {
    const victims = this.etcdNodes.slice(1).map((e) => e.name);
    for (const v of victims) this.applyRules(v, [`iif "lo" accept`], [`oif "lo" accept`], 'drop');
    return victims;
  }

  /** Removes the fault rules of `name` (every node when omitted). */
  heal(name?: string): void {
    for (const n of name === undefined ? [...this.pgNodes, ...this.etcdNodes] : [this.node(name)]) {
      spawnSync('ip', ['netns', 'exec', n.ns, 'nft', 'delete', 'table', 'inet', NFT_TABLE], { stdio: 'ignore' });
    }
  }

  private applyRules(name: string, input: readonly string[], output: readonly string[], policy: 'accept' | 'drop'): void {
    const n = this.node(name);
    const rules = [
      `table inet ${NFT_TABLE} {`,
      `  chain input { type filter hook input priority -10; policy ${policy}; ${input.join('; ')}; }`,
      `  chain output { type filter hook output priority -10; policy ${policy}; ${output.join('; ')}; }`,
      '}',
    ].join('\n');
    this.heal(name);
    execFileSync('ip', ['netns', 'exec', n.ns, 'nft', '-f', '-'], { input: rules, stdio: ['pipe', 'ignore', 'pipe'] });
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
    this.heal();
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
    for (const ns of this.created.reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', this.hostVeth], { stdio: 'ignore' });
    if (this.routeAdded) spawnSync('ip', ['route', 'del', 'blackhole', this.subnet, 'metric', '4000'], { stdio: 'ignore' });
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

function ip(args: readonly string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.status ?? r.signal ?? '?'}`}`);
}

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, 'SIGCONT');
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Waits (bounded, synchronously: it also runs from an exit handler) until the PIDs are gone. */
function waitGone(pids: readonly number[], timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  const alive = (pid: number): boolean => {
    try {
      return !/^\S+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  while (Date.now() < deadline && pids.some((p) => p > 0 && alive(p))) spawnSync('sleep', ['0.05']);
}
