import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from '../core/deadline.js';
import { WardenError } from '../core/errors.js';
import { freePorts } from '../core/free-port.js';
import { httpCall } from '../core/http-app.js';

/** Everything needed to (re)start one etcd member with the same identity. */
export interface EtcdMemberSpec {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
}

/** TLS of etcd's client port: PEM files; clientCertAuth makes etcd require a client certificate signed by caFile. */
export interface EtcdServerTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  readonly clientCertAuth: boolean;
}

/** The flags every member of one etcd cluster shares; save it to restart members later. */
export interface EtcdClusterSpec {
  readonly token: string;
  readonly members: readonly EtcdMemberSpec[];
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  /** TLS on the client URLs (which are then https://). */
  readonly tls?: EtcdServerTls;
}

/** A member this process started, with its PID. */
export interface EtcdMemberHandle extends EtcdMemberSpec {
  readonly pid: number;
}

/** A running etcd cluster started by `startEtcdCluster`. */
export interface EtcdClusterHandle {
  readonly endpoints: string[];
  readonly members: EtcdMemberHandle[];
  readonly cluster: EtcdClusterSpec;
  /** Stops one member (SIGTERM, then SIGKILL after a bound) and waits for it to exit. */
  stopMember(name: string): Promise<void>;
  /** Stops every member it started and waits for them to exit. */
  stop(): Promise<void>;
}

/** One etcd process; `exited` settles when it has been reaped. */
export interface EtcdProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 20_000;
const PORT_RACE_ATTEMPTS = 3;

/** The etcd argv for `member`: 'new' when bootstrapping the cluster, 'existing' when restarting a member later. */
export function etcdMemberArgs(member: EtcdMemberSpec, cluster: EtcdClusterSpec, state: 'new' | 'existing'): string[] {
  return [
    `--name=${member.name}`,
    `--data-dir=${member.dataDir}`,
    `--listen-client-urls=${member.clientUrl}`,
    `--advertise-client-urls=${member.clientUrl}`,
    `--listen-peer-urls=${member.peerUrl}`,
    `--initial-advertise-peer-urls=${member.peerUrl}`,
    `--initial-cluster=${cluster.members.map((m) => `${m.name}=${m.peerUrl}`).join(',')}`,
    `--initial-cluster-state=${state}`,
    `--initial-cluster-token=${cluster.token}`,
    ...(cluster.heartbeatMs === undefined ? [] : [`--heartbeat-interval=${cluster.heartbeatMs}`]),
    ...(cluster.electionMs === undefined ? [] : [`--election-timeout=${cluster.electionMs}`]),
    ...(cluster.tls === undefined
      ? []
      : [`--cert-file=${cluster.tls.certFile}`, `--key-file=${cluster.tls.keyFile}`, `--trusted-ca-file=${cluster.tls.caFile}`, ...(cluster.tls.clientCertAuth ? ['--client-cert-auth'] : [])]),
    '--logger=zap',
    '--log-level=warn',
  ];
}

/** Spawns one member, logging to its log file; the caller owns the returned process and must stop it. */
export function spawnEtcdMember(
  member: EtcdMemberSpec,
  cluster: EtcdClusterSpec,
  opts: {
    state: 'new' | 'existing';
    detached?: boolean;
    etcdBin?: string;
    /** argv run in front of etcd, e.g. ['ip', 'netns', 'exec', 'ns1'] (it must exec etcd, keeping the PID). */
    commandPrefix?: readonly string[];
  },
): EtcdProcess {
  const bin = opts.etcdBin ?? 'etcd';
  const [command, ...prefixArgs] = [...(opts.commandPrefix ?? []), bin];
  // Our flags must win over ETCD_* variables inherited from the environment.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
  const log = openSync(member.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command ?? bin, [...prefixArgs, ...etcdMemberArgs(member, cluster, opts.state)], {
      env,
      stdio: ['ignore', log, log],
      detached: opts.detached ?? false,
    });
  } finally {
    closeSync(log);
  }
  const pid = child.pid;
  if (pid === undefined) {
    child.once('error', () => undefined); // reported by the throw below
    throw new WardenError('internal', `could not spawn ${bin} for etcd member ${member.name}`, { details: { member: member.name } });
  }
  // Waiting on 'exit' reaps the child, so a stopped member never lingers as a zombie.
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  let running = true;
  if (opts.detached) {
    child.unref();
  } else {
    // An attached member must not outlive us, even if we exit without stopping it (a crashed test run).
    const killOnExit = (): void => signal(pid, 'SIGKILL');
    process.once('exit', killOnExit);
    void exited.then(() => process.removeListener('exit', killOnExit));
  }
  void exited.then(() => (running = false));
  return {
    pid,
    child,
    exited,
    async stop(graceMs = 5_000): Promise<void> {
      if (!running) return;
      signal(pid, 'SIGTERM');
      signal(pid, 'SIGCONT'); // a stopped (SIGSTOP) process only acts on SIGTERM once continued
      if (await settlesWithin(exited, graceMs)) return;
      signal(pid, 'SIGKILL');
      if (!(await settlesWithin(exited, 5_000))) {
        throw new WardenError('internal', `etcd member ${member.name} (pid ${pid}) did not exit after SIGKILL`);
      }
    },
  };
}

/** Waits (bounded) until every URL answers GET /health with health true (over TLS with `tls`'s files). */
export async function waitForEtcdHealth(clientUrls: readonly string[], timeoutMs: number, processes: readonly EtcdProcess[] = [], tls?: EtcdServerTls): Promise<void> {
  const pem = tls === undefined ? undefined : { ca: await readFile(tls.caFile, 'utf8'), cert: await readFile(tls.certFile, 'utf8'), key: await readFile(tls.keyFile, 'utf8') };
  const deadline = Date.now() + timeoutMs;
  const exitedEarly = new Set<number>();
  for (const p of processes) void p.exited.then(() => exitedEarly.add(p.pid));
  let pending = [...clientUrls];
  for (;;) {
    if (exitedEarly.size > 0) throw new WardenError('internal', `etcd exited during startup (pid ${[...exitedEarly].join(', ')})`);
    const health = await Promise.all(pending.map(async (url) => ((await isHealthy(url, pem)) ? undefined : url)));
    pending = health.filter((u): u is string => u !== undefined);
    if (pending.length === 0) return;
    if (Date.now() >= deadline) {
      throw new WardenError('dcs-unavailable', `etcd not healthy within ${timeoutMs} ms: ${pending.join(', ')}`, { retryable: true });
    }
    await sleep(100);
  }
}

/** Starts a new etcd cluster of `members` on free ports and waits until every member is healthy. */
export async function startEtcdCluster(opts: {
  dataDir: string;
  members: number;
  host?: string;
  detached?: boolean;
  logDir?: string;
  heartbeatMs?: number;
  electionMs?: number;
  etcdBin?: string;
  tls?: EtcdServerTls;
}): Promise<EtcdClusterHandle> {
  const host = opts.host ?? '127.0.0.1';
  const logDir = opts.logDir ?? opts.dataDir;
  await mkdir(opts.dataDir, { recursive: true });
  await mkdir(logDir, { recursive: true });
  const names = Array.from({ length: opts.members }, (_, i) => `e${i + 1}`);
  for (const name of names) {
    const entries = await readdir(join(opts.dataDir, name)).catch(() => []);
    if (entries.length > 0) {
      throw new WardenError('conflict', `etcd data dir ${join(opts.dataDir, name)} is not empty; restart its member instead`);
    }
  }
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(2 * opts.members, host);
    const cluster: EtcdClusterSpec = {
      token: `warden-${randomUUID()}`,
      members: names.map((name, i) => ({
        name,
        clientUrl: `${opts.tls === undefined ? 'http' : 'https'}://${host}:${ports[2 * i]!}`,
        peerUrl: `http://${host}:${ports[2 * i + 1]!}`,
        dataDir: join(opts.dataDir, name),
        logFile: join(logDir, `${name}.log`),
      })),
      ...(opts.heartbeatMs === undefined ? {} : { heartbeatMs: opts.heartbeatMs }),
      ...(opts.electionMs === undefined ? {} : { electionMs: opts.electionMs }),
      ...(opts.tls === undefined ? {} : { tls: opts.tls }),
    };
    const processes: EtcdProcess[] = [];
    try {
      for (const m of cluster.members) {
        processes.push(spawnEtcdMember(m, cluster, { state: 'new', detached: opts.detached ?? false, ...(opts.etcdBin ? { etcdBin: opts.etcdBin } : {}) }));
      }
      await waitForEtcdHealth(cluster.members.map((m) => m.clientUrl), STARTUP_TIMEOUT_MS, processes, opts.tls);
      return clusterHandle(cluster, processes);
    } catch (e) {
      await Promise.allSettled(processes.map((p) => p.stop(2_000)));
      const logs = await Promise.all(cluster.members.map(async (m) => `${m.name}: ${await tail(m.logFile)}`));
      // Another process may take a port between freePorts() and etcd's bind: try again on new ports.
      if (attempt < PORT_RACE_ATTEMPTS && logs.some((l) => l.includes('address already in use'))) {
        await Promise.all(cluster.members.map((m) => rm(m.dataDir, { recursive: true, force: true })));
        continue;
      }
      throw new WardenError('internal', `etcd cluster did not start: ${logs.join(' | ')}`, { cause: e });
    }
  }
}

function clusterHandle(cluster: EtcdClusterSpec, processes: readonly EtcdProcess[]): EtcdClusterHandle {
  const byName = new Map(cluster.members.map((m, i) => [m.name, processes[i]!]));
  return {
    endpoints: cluster.members.map((m) => m.clientUrl),
    members: cluster.members.map((m, i) => ({ ...m, pid: processes[i]!.pid })),
    cluster,
    async stopMember(name: string): Promise<void> {
      const p = byName.get(name);
      if (p === undefined) throw new WardenError('not-found', `no etcd member named ${name}`);
      await p.stop();
    },
    async stop(): Promise<void> {
      const results = await Promise.allSettled(processes.map((p) => p.stop()));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}

async function isHealthy(clientUrl: string, tls: { ca: string; cert: string; key: string } | undefined): Promise<boolean> {
  try {
    const res = await httpCall(`${clientUrl}/health`, { timeoutMs: 1_000, ...(tls === undefined ? {} : { tls }) });
    const body = JSON.parse(res.body) as { health?: unknown };
    return res.status === 200 && (body.health === 'true' || body.health === true);
  } catch {
    return false; // not listening yet, or no leader yet: the caller polls until its deadline
  }
}

/** Sends `sig`; a process that is already gone is fine. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}

async function settlesWithin(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function tail(file: string, bytes = 1_500): Promise<string> {
  try {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      const buf = Buffer.alloc(Math.min(size, bytes));
      await fh.read(buf, 0, buf.length, size - buf.length);
      return buf.toString('utf8').trim();
    } finally {
      await fh.close();
    }
  } catch {
    return '(no log)';
  }
}
