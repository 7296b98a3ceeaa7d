import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { postgresContract } from '../../src/postgres/postgres-contract.js';
import type { PostgresInstance, PostgresInstanceConfig } from '../../src/postgres/postgres.js';
import { PG_BIN_DIR, PgSandbox } from '../support/pg.js';

const run = promisify(execFile);

/**
 * The contract suite against LocalPostgres and a real PostgreSQL 15. Each instance gets a binDir of
 * its own: links to the real binaries, except `postgres`, a wrapper that stops itself (SIGSTOP)
 * before it becomes the postmaster while a flag file exists — a start that never accepts
 * connections, frozen exactly as a postmaster stuck on its disk, with no race against the real one.
 */
postgresContract('LocalPostgres with PostgreSQL 15', async () => {
  const sandbox = await PgSandbox.create();
  let base: PostgresInstanceConfig | undefined;
  const flags = new Map<string, string>();

  const flagOf = (pg: PostgresInstance): string => {
    const f = flags.get(pg.config.name);
    if (f === undefined) throw new Error(`no wrapper for ${pg.config.name}`);
    return f;
  };

  const wrapperBinDir = async (name: string): Promise<string> => {
    const dir = join(sandbox.root, `bin-${name}`);
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o755);
    for (const entry of await readdir(PG_BIN_DIR)) {
      if (entry !== 'postgres') await symlink(join(PG_BIN_DIR, entry), join(dir, entry));
    }
    const flag = join(dir, 'frozen');
    flags.set(name, flag);
    // Only a postmaster (`postgres -D …`) freezes; single-user crash recovery (`--single`) does not.
    const script = ['#!/bin/sh', `if [ "$1" = "-D" ] && [ -e ${flag} ]; then kill -STOP $$; fi`, `exec ${join(PG_BIN_DIR, 'postgres')} "$@"`, ''].join('\n');
    await writeFile(join(dir, 'postgres'), script, { mode: 0o755 });
    return dir;
  };

  return {
    instance: async (name) => {
      const [made] = await sandbox.configs([name]);
      if (made === undefined) throw new Error('no config');
      // One set of credentials for the whole suite: a replica logs in to its upstream with them.
      base ??= made;
      return sandbox.instance({ ...made, superuser: base.superuser, replication: base.replication, binDir: await wrapperBinDir(name) });
    },
    write: async (pg) => {
      await pg.query('CREATE TABLE IF NOT EXISTS contract_writes (id serial PRIMARY KEY, note text)', [], 10_000);
      await pg.query("INSERT INTO contract_writes (note) SELECT 'row ' || g FROM generate_series(1, 1000) g", [], 10_000);
    },
    crash: async (pg) => {
      const p = await pg.processState();
      if (p.kind !== 'running') throw new Error(`${pg.config.name} is not running (${p.kind})`);
      process.kill(p.pid, 'SIGKILL');
    },
    freezeStarts: async (pg) => {
      const flag = flagOf(pg);
      await writeFile(flag, '');
      return async () => rm(flag, { force: true });
    },
    makeLarge: async (pg) => {
      // pgbench scale 20: about 300 MB, enough that pg_basebackup runs for seconds.
      const { host, port } = pg.config.listen;
      await run(join(PG_BIN_DIR, 'pgbench'), ['-i', '-s', '20', '-q', '-h', host, '-p', String(port), '-U', pg.config.superuser.username, 'postgres'], {
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', PGPASSWORD: pg.config.superuser.password },
        timeout: 180_000,
      });
    },
    plantDataDir: async (pg, kind) => {
      await mkdir(pg.config.dataDir, { recursive: true });
      if (kind === 'foreign') await writeFile(join(pg.config.dataDir, 'precious.txt'), 'not a cluster');
    },
    holdsCluster: async (_pg, path) => existsSync(join(path, 'PG_VERSION')) && existsSync(join(path, 'global', 'pg_control')),
    leftoverCommands: (pg) => commandsNaming(pg.config.dataDir),
    cleanup: () => sandbox.cleanup(),
  };
});

/** Command lines of live processes that name `dataDir` as an argument (a pg_basebackup -D, a postgres -D). */
async function commandsNaming(dataDir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const args = argv.split('\0');
    if (args.includes(dataDir)) found.push(`${entry}: ${args.join(' ').trim()}`);
  }
  return found;
}
