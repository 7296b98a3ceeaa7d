/**
 * Hosts on one machine (`warden up --netns`, and the tests' multi-host cases): each a network
 * namespace with its own address on a private bridge that lives in a namespace of its own; the root
 * namespace (etcd, the CLI, the test process) reaches them through a veth, and a blackhole route
 * for the subnet in the root namespace keeps its traffic on the machine even when that veth goes
 * down. nftables inside a host's namespace makes partitions. Root only.
 *
 *   root ns:   <id>h 10.213.N.254/24 ──┐          blackhole 10.213.N.0/24 metric 4000
 *   <id>br:    bridge br0 ─────────────┴── one veth per host: 10.213.N.<suffix>
 *
 * destroySync() ends every process left in the hosts' namespaces (`ip netns pids`: only processes
 * their maker started live there), deletes the namespaces, the veth and the route. Idempotent.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** Why namespaces cannot be made here (root, `ip`, `nft`), or undefined when they can. */
export function netnsToolsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  for (const [cmd, args] of [['ip', ['netns', 'list']], ['nft', ['--version']]] as const) {
    const r = spawnSync(cmd, args, { stdio: 'ignore' });
    if (r.error !== undefined || r.status !== 0) return `\`${cmd} ${args.join(' ')}\` is not available (install iproute2 and nftables)`;
  }
  return undefined;
}

export interface NetnsHost {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
}

/** Everything that names one network: kept in runtime.json, so that `warden down` (or a new `up` after a reboot) finds it. */
export interface NetnsPlan {
  readonly subnet: string;
  readonly testerIp: string;
  readonly bridgeNs: string;
  readonly hostVeth: string;
  readonly hosts: readonly NetnsHost[];
}

const NFT_TABLE = 'warden_chaos';

export class NetnsNetwork {
  readonly subnet: string;
  /** The root namespace's address on the bridge: where the root namespace's processes are seen from. */
  readonly testerIp: string;
  readonly hosts: readonly NetnsHost[];
  private readonly bridgeNs: string;
  private readonly hostVeth: string;
  private readonly created: string[] = [];
  private routeAdded = false;
  private destroyed = false;
  private readonly onExit = (): void => this.destroySync();

  /** The network a plan names (as runtime.json keeps it): for build() again after a reboot, or destroySync(). */
  static fromPlan(plan: NetnsPlan, log: (s: string) => void = () => undefined): NetnsNetwork {
    const n = new NetnsNetwork([], log, plan);
    // What a plan names may exist from an earlier build: destroySync() removes it all.
    n.created.push(plan.bridgeNs, ...plan.hosts.map((h) => h.ns));
    n.routeAdded = true;
    return n;
  }

  /**
   * `hosts`: names and the last octet of each address (1-253). Builds nothing yet (see build()).
   * Names come from `plan` when given (fromPlan); otherwise a fresh id and a free subnet.
   */
  constructor(hosts: readonly { readonly name: string; readonly suffix: number }[], private readonly log: (s: string) => void = () => undefined, plan?: NetnsPlan) {
    if (plan !== undefined) {
      this.subnet = plan.subnet;
      this.testerIp = plan.testerIp;
      this.bridgeNs = plan.bridgeNs;
      this.hostVeth = plan.hostVeth;
      this.hosts = plan.hosts;
      return;
    }
    const id = `w${randomBytes(2).toString('hex')}`;
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
    this.bridgeNs = `${id}br`;
    this.hostVeth = `${id}h`;
    this.hosts = hosts.map((h) => ({ name: h.name, ns: `${id}${h.name}`.slice(0, 15), ip: `10.213.${octet}.${h.suffix}` }));
  }

  /** What runtime.json keeps of this network. */
  get plan(): NetnsPlan {
    return { subnet: this.subnet, testerIp: this.testerIp, bridgeNs: this.bridgeNs, hostVeth: this.hostVeth, hosts: this.hosts };
  }

  /** True when the bridge namespace exists (built and not yet destroyed, e.g. before a reboot). */
  exists(): boolean {
    const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    return r.stdout.split('\n').some((l) => l.split(' ')[0] === this.bridgeNs);
  }

  /**
   * Creates the route, the namespaces and the links; on failure removes what it made and throws.
   * `destroyOnExit` (the tests'): removed when this process exits; `warden up`'s network outlives it.
   */
  build(opts: { destroyOnExit?: boolean } = {}): void {
    this.destroyed = false;
    if (opts.destroyOnExit !== false) process.once('exit', this.onExit);
    try {
      // The blackhole first: from now on nothing addressed to the test subnet can leave the machine.
      ip(['route', 'add', 'blackhole', this.subnet, 'metric', '4000']);
      this.routeAdded = true;
      this.addNs(this.bridgeNs);
      ip(['-n', this.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge']);
      ip(['-n', this.bridgeNs, 'link', 'set', 'br0', 'up']);
      for (const [i, h] of this.hosts.entries()) {
        this.addNs(h.ns);
        const peer = `p${i}`;
        ip(['-n', h.ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', peer, 'netns', this.bridgeNs]);
        ip(['-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
        ip(['-n', h.ns, 'link', 'set', 'eth0', 'up']);
        ip(['-n', this.bridgeNs, 'link', 'set', peer, 'master', 'br0', 'up']);
      }
      ip(['link', 'add', this.hostVeth, 'type', 'veth', 'peer', 'name', 'ph', 'netns', this.bridgeNs]);
      ip(['addr', 'add', `${this.testerIp}/24`, 'dev', this.hostVeth]);
      ip(['link', 'set', this.hostVeth, 'up']);
      ip(['-n', this.bridgeNs, 'link', 'set', 'ph', 'master', 'br0', 'up']);
      this.log(`network: ${this.subnet} on bridge ns ${this.bridgeNs}; hosts ${this.hosts.map((h) => `${h.name}=${h.ip}`).join(' ')}`);
    } catch (e) {
      this.destroySync();
      throw e;
    }
  }

  private addNs(ns: string): void {
    ip(['netns', 'add', ns]);
    if (!this.created.includes(ns)) this.created.push(ns);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  }

  host(name: string): NetnsHost {
    const h = this.hosts.find((x) => x.name === name);
    if (h === undefined) throw new Error(`no host ${name}`);
    return h;
  }

  /** The command prefix that runs a program inside `name`'s namespace (`ip netns exec` execs it: the PID is the program's). */
  exec(name: string): string[] {
    return ['ip', 'netns', 'exec', this.host(name).ns];
  }

  /** The PIDs of every process in `name`'s namespace. */
  pids(name: string): number[] {
    const r = spawnSync('ip', ['netns', 'pids', this.host(name).ns], { encoding: 'utf8' });
    return r.stdout.split('\n').map((s) => Number(s.trim())).filter((p) => Number.isInteger(p) && p > 0);
  }

  /** Drops every packet of `name` except loopback (and, with `exceptTester`, the test process). */
  partition(name: string, opts: { exceptTester?: boolean } = {}): void {
    const tester = opts.exceptTester === true ? [`ip saddr ${this.testerIp} accept`] : [];
    const testerOut = opts.exceptTester === true ? [`ip daddr ${this.testerIp} accept`] : [];
    this.applyRules(name, [`iif "lo" accept`, ...tester], [`oif "lo" accept`, ...testerOut], 'drop');
  }

  /** Nftables rules inside `name`'s namespace (replacing its earlier ones). */
  applyRules(name: string, input: readonly string[], output: readonly string[], policy: 'accept' | 'drop'): void {
    const rules = [
      `table inet ${NFT_TABLE} {`,
      `  chain input { type filter hook input priority -10; policy ${policy}; ${input.join('; ')}; }`,
      `  chain output { type filter hook output priority -10; policy ${policy}; ${output.join('; ')}; }`,
      '}',
    ].join('\n');
    this.heal(name);
    execFileSync('ip', ['netns', 'exec', this.host(name).ns, 'nft', '-f', '-'], { input: rules, stdio: ['pipe', 'ignore', 'pipe'] });
  }

  /** Removes the rules of `name` (every host when omitted). */
  heal(name?: string): void {
    for (const h of name === undefined ? this.hosts : [this.host(name)]) {
      spawnSync('ip', ['netns', 'exec', h.ns, 'nft', 'delete', 'table', 'inet', NFT_TABLE], { stdio: 'ignore' });
    }
  }

  /** Ends every process still in the hosts' namespaces, then removes namespaces, veth and route. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.removeListener('exit', this.onExit);
    const left = this.hosts.filter((h) => this.created.includes(h.ns)).flatMap((h) => this.pids(h.name));
    for (const pid of left) kill(pid, 'SIGKILL');
    waitGone(left, 10_000);
    for (const ns of [...this.created].reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', this.hostVeth], { stdio: 'ignore' });
    if (this.routeAdded) spawnSync('ip', ['route', 'del', 'blackhole', this.subnet, 'metric', '4000'], { stdio: 'ignore' });
  }
}

function ip(args: readonly string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.status ?? r.signal ?? '?'}`}`);
}

/** SIGCONT then `sig` (a stopped process acts on it); a process already gone is fine. */
export function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, 'SIGCONT');
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Waits (bounded, synchronously: it also runs from an exit handler) until the PIDs are gone or zombies. */
export function waitGone(pids: readonly number[], timeoutMs: number): void {
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
