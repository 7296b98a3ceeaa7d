/**
 * A 3-member Patroni 3.0.2 cluster (Debian's package) for the side-by-side chaos bench: its own
 * 3-member etcd (Patroni's built-in etcd3 client, v3 JSON gateway), its own data dirs and free
 * loopback ports, each Patroni run as the postgres OS user through setpriv (which execs, so the PID
 * we hold is Patroni's; PostgreSQL is Patroni's child). Exposed as a ChaosCluster, so that the same
 * writer, faults and checker run against it as against Warden.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { ChaosCluster, ChaosEtcdMember, ChaosMember } from '../src/chaos/cluster.js';
import { freePorts } from '../src/core/free-port.js';
import { startEtcdCluster, type EtcdClusterHandle } from '../src/dcs/etcd-server.js';
import { PG_BIN_DIR } from './support.js';

/** Patroni's dynamic timing settings (seconds). */
export interface PatroniTiming {
  readonly ttl: number;
  readonly loop_wait: number;
  readonly retry_timeout: number;
}

/** Patroni 3.0's defaults (patroni/config.py). */
export const PATRONI_DEFAULTS: PatroniTiming = { ttl: 30, loop_wait: 10, retry_timeout: 10 };

/** Why Patroni cannot run here, or undefined. */
export function patroniUnavailable(): string | undefined {
  const v = spawnSync('patroni', ['--version'], { encoding: 'utf8' });
  if (v.error !== undefined || v.status !== 0) return 'patroni is not installed (Debian 12: apt-get install -y patroni, which brings 3.0.2)';
  if (!/3\.0\.2/.test(v.stdout)) return `expected Patroni 3.0.2, found ${v.stdout.trim()}`;
  if (process.getuid?.() !== 0) return 'the bench starts Patroni as the postgres OS user, which needs root';
  if (!existsSync(join(PG_BIN_DIR, 'postgres'))) return `PostgreSQL 15 is missing in ${PG_BIN_DIR}`;
  return undefined;
}

export class PatroniCluster implements ChaosCluster {
  readonly name: string;
  readonly user = 'postgres';
  readonly password = randomBytes(18).toString('base64url');
  private readonly procs = new Map<string, ChildProcess>();
  private readonly nodes: { name: string; pgPort: number; apiPort: number; dir: string }[] = [];
  private etcdHandle: EtcdClusterHandle | undefined;
  private stopped = false;
  private readonly onExit = (): void => this.killAllSync();

  private constructor(
    readonly dir: string,
    readonly timing: PatroniTiming,
  ) {
    this.name = `cmp${randomBytes(3).toString('hex')}`;
  }

  /** Starts etcd and three Patroni members in `dir` (created; must be traversable by postgres). */
  static async start(dir: string, timing: PatroniTiming, log: (s: string) => void): Promise<PatroniCluster> {
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o755);
    const c = new PatroniCluster(dir, timing);
    process.once('exit', c.onExit);
    c.etcdHandle = await startEtcdCluster({ dataDir: join(dir, 'etcd'), members: 3 });
    log(`patroni: etcd at ${c.etcdHandle.endpoints.join(',')}`);
    const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    const ports = await freePorts(6);
    const replPassword = randomBytes(18).toString('base64url');
    for (let i = 1; i <= 3; i++) {
      const name = `p${i}`;
      const ndir = join(dir, name);
      mkdirSync(join(ndir, 'run'), { recursive: true });
      chownSync(ndir, uid, gid);
      chownSync(join(ndir, 'run'), uid, gid);
      const node = { name, pgPort: ports[2 * i - 2] ?? 0, apiPort: ports[2 * i - 1] ?? 0, dir: ndir };
      c.nodes.push(node);
      const config = {
        scope: c.name,
        name,
        log: { level: 'INFO', dir: ndir },
        restapi: { listen: `127.0.0.1:${node.apiPort}`, connect_address: `127.0.0.1:${node.apiPort}` },
        etcd3: { hosts: c.etcdHandle.endpoints.map((u) => new URL(u).host) },
        bootstrap: {
          dcs: {
            ttl: timing.ttl,
            loop_wait: timing.loop_wait,
            retry_timeout: timing.retry_timeout,
            maximum_lag_on_failover: 1048576,
            postgresql: { use_pg_rewind: true, use_slots: true, parameters: { wal_log_hints: 'on', max_connections: 50, shared_buffers: '16MB', fsync: 'off' } },
          },
          initdb: [{ encoding: 'UTF8' }],
        },
        postgresql: {
          listen: `127.0.0.1:${node.pgPort}`,
          connect_address: `127.0.0.1:${node.pgPort}`,
          data_dir: join(ndir, 'data'),
          bin_dir: PG_BIN_DIR,
          pgpass: join(ndir, 'pgpass'),
          authentication: { superuser: { username: 'postgres', password: c.password }, replication: { username: 'replicator', password: replPassword } },
          parameters: { unix_socket_directories: join(ndir, 'run') },
          pg_hba: ['local all all trust', 'host all all 127.0.0.1/32 scram-sha-256', 'host replication replicator 127.0.0.1/32 scram-sha-256'],
        },
      };
      const file = join(ndir, 'patroni.yml');
      writeFileSync(file, stringify(config), { mode: 0o600 });
      chownSync(file, uid, gid);
      c.startNode(name);
    }
    return c;
  }

  private startNode(name: string): void {
    const n = this.nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no Patroni node ${name}`);
    const out = openSync(join(n.dir, 'patroni.out'), 'a');
    try {
      // setpriv execs Patroni: the child PID is Patroni's own.
      const child = spawn('setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', 'patroni', join(n.dir, 'patroni.yml')], {
        cwd: n.dir,
        stdio: ['ignore', out, out],
        env: { ...process.env, HOME: n.dir },
      });
      child.once('error', () => undefined);
      this.procs.set(name, child);
    } finally {
      closeSync(out);
    }
  }

  async members(): Promise<readonly ChaosMember[]> {
    return this.nodes.map((n) => {
      const p = this.procs.get(n.name);
      const alive = p !== undefined && p.exitCode === null && p.signalCode === null;
      return { name: n.name, host: '127.0.0.1', port: n.pgPort, apiUrl: `http://127.0.0.1:${n.apiPort}`, dataDir: join(n.dir, 'data'), agentPid: alive ? (p.pid ?? null) : null };
    });
  }

  async etcd(): Promise<readonly ChaosEtcdMember[]> {
    return (this.etcdHandle?.members ?? []).map((m) => ({ name: m.name, clientUrl: m.clientUrl, pid: m.pid }));
  }

  async routerPid(): Promise<number | undefined> {
    return undefined;
  }

  /** Stops Patroni (SIGTERM: it stops PostgreSQL), then anything left by PID, etcd, and the dir. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const exits = [...this.procs.values()].map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return resolve();
          const t = setTimeout(() => {
            signal(p.pid ?? 0, 'SIGKILL');
            resolve();
          }, 30_000);
          p.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          signal(p.pid, 'SIGCONT');
          signal(p.pid, 'SIGTERM');
        }),
    );
    await Promise.all(exits);
    this.killAllSync();
    await this.etcdHandle?.stop().catch(() => undefined);
    process.removeListener('exit', this.onExit);
    // WARDEN_CHAOS_KEEP_LOGS=DIR keeps Patroni's and PostgreSQL's logs (not the data).
    const keep = process.env['WARDEN_CHAOS_KEEP_LOGS'];
    if (keep !== undefined && keep !== '') {
      cpSync(this.dir, join(keep, `${this.name}-${Date.now()}`), { recursive: true, filter: (src) => !/\/(data|run|etcd)(\/|$)/.test(src) || /\/data\/log(\/|$)/.test(src) || /\/data$/.test(src) });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private killAllSync(): void {
    for (const p of this.procs.values()) if (p.pid !== undefined && p.exitCode === null) signal(p.pid, 'SIGKILL');
    for (const n of this.nodes) {
      try {
        const pid = Number(readFileSync(join(n.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
        if (Number.isInteger(pid) && pid > 0) {
          signal(pid, 'SIGCONT');
          signal(pid, 'SIGKILL');
        }
      } catch {
        // no server there
      }
    }
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}
