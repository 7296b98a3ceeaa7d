import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { chown, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '../../src/core/free-port.js';
import { sleep } from '../../src/core/deadline.js';
import { LocalPostgres } from '../../src/postgres/postgres-instance.js';
import type { PostgresLogger } from '../../src/postgres/postgres-instance.js';
import type { PostgresInstanceConfig } from '../../src/postgres/postgres.js';

/** PostgreSQL binaries used by the tests; WARDEN_PG_BIN overrides the Debian default. */
export const PG_BIN_DIR = process.env['WARDEN_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';

/** The OS user that runs PostgreSQL in tests when they run as root (PostgreSQL refuses root). */
export const PG_RUN_USER = 'postgres';

const isRoot = process.getuid?.() === 0;

/** Small, fast settings for throwaway test servers (fsync off: only processes crash in tests, never the OS). */
export const TEST_PARAMETERS: Readonly<Record<string, string | number | boolean>> = {
  shared_buffers: '16MB',
  max_connections: 30,
  fsync: false,
  full_page_writes: true,
  log_min_messages: 'warning',
  // A replica whose upstream restarted reconnects within a second instead of five.
  wal_retrieve_retry_interval: '500ms',
};

/** A logger that writes to stderr when WARDEN_TEST_LOG is set, else stays silent. */
export const testLogger: PostgresLogger | undefined =
  process.env['WARDEN_TEST_LOG'] === undefined
    ? undefined
    : {
        info: (o, m) => console.error('INFO', m, JSON.stringify(o)),
        warn: (o, m) => console.error('WARN', m, JSON.stringify(o)),
        error: (o, m) => console.error('ERROR', m, JSON.stringify(o)),
      };

/**
 * A temp root for PostgreSQL test members, and the cleanup that stops every server started in it
 * (by PID, even when a test failed half-way) and removes the directory.
 */
export class PgSandbox {
  private readonly instances: LocalPostgres[] = [];

  private constructor(readonly root: string) {}

  /** Creates the root under the OS temp dir, owned by the run user so it can create member dirs. */
  static async create(): Promise<PgSandbox> {
    const root = await mkdtemp(join(tmpdir(), 'warden-pg-'));
    if (isRoot) {
      const uid = Number(execFileSync('id', ['-u', PG_RUN_USER], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', PG_RUN_USER], { encoding: 'utf8' }).trim());
      await chown(root, uid, gid);
    }
    return new PgSandbox(root);
  }

  /** Configs for members `names` with distinct free ports on 127.0.0.1 and fresh random passwords. */
  async configs(names: readonly string[], parameters: Readonly<Record<string, string | number | boolean>> = TEST_PARAMETERS): Promise<PostgresInstanceConfig[]> {
    const ports = await freePorts(names.length);
    const superuser = { username: 'postgres', password: `su-${randomBytes(9).toString('base64url')}` };
    const replication = { username: 'replicator', password: `re:${randomBytes(9).toString('base64url')}` };
    return names.map((name, i) => ({
      name,
      dataDir: join(this.root, name, 'data'),
      binDir: PG_BIN_DIR,
      listen: { host: '127.0.0.1', port: ports[i] ?? 0 },
      socketDir: join(this.root, name, 'run'),
      ...(isRoot ? { runAsUser: PG_RUN_USER } : {}),
      superuser,
      replication,
      parameters,
    }));
  }

  /** A LocalPostgres that cleanup() will stop. */
  instance(config: PostgresInstanceConfig): LocalPostgres {
    const pg = new LocalPostgres(config, testLogger);
    this.instances.push(pg);
    return pg;
  }

  /** Stops every server of this sandbox (tracked instances, then any postmaster.pid under the root) and removes the root. */
  async cleanup(): Promise<void> {
    const problems: string[] = [];
    for (const pg of this.instances) {
      try {
        await pg.stop('immediate', 10_000);
      } catch (e) {
        problems.push(`${pg.config.name}: ${String(e)}`);
      }
    }
    // Servers of moved-aside dirs or of instances created outside instance(): kill by PID.
    for (const pid of await postmasterPidsUnder(this.root)) await killAndWait(pid);
    await rm(this.root, { recursive: true, force: true });
    if (problems.length > 0) throw new Error(`PgSandbox cleanup: ${problems.join('; ')}`);
  }
}

async function postmasterPidsUnder(root: string): Promise<number[]> {
  const pids: number[] = [];
  const visit = async (dir: string, depth: number): Promise<void> => {
    if (depth > 3 || !existsSync(dir)) return;
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) await visit(p, depth + 1);
      else if (entry.name === 'postmaster.pid') {
        const pid = Number.parseInt((await readFile(p, 'utf8')).split('\n')[0] ?? '', 10);
        if (Number.isInteger(pid) && pid > 0 && runsIn(pid, dir)) pids.push(pid);
      }
    }
  };
  await visit(root, 0);
  return pids;
}

function isAlive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false; // no such process
  }
}

/** Only a process running in that data dir is a postmaster of it: a stale pid file may name a reused PID. */
function runsIn(pid: number, dataDir: string): boolean {
  try {
    return readlinkSync(`/proc/${pid}/cwd`) === realpathSync(dataDir);
  } catch {
    return false; // gone, or not readable
  }
}

async function killAndWait(pid: number): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return; // already gone
  }
  const deadline = Date.now() + 5_000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
}
