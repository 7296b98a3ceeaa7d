import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import type { ListOutput } from '../../src/cli/list.js';
import type { StateFile } from '../../src/controller/state-file.js';
import { runWarden } from './cli.js';

/** Reads DIR/state.json. */
export async function readState(dir: string): Promise<StateFile> {
  return JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as StateFile;
}

/** GET <apiUrl><path> with a short timeout; undefined when unreachable. */
export async function api(apiUrl: string, path: string, method = 'GET'): Promise<{ status: number; body: string } | undefined> {
  try {
    const res = await fetch(new URL(path, apiUrl), { method, signal: AbortSignal.timeout(1500) });
    return { status: res.status, body: method === 'HEAD' ? '' : await res.text() };
  } catch {
    return undefined;
  }
}

/** The /patroni JSON of a member, or undefined. */
export async function patroni(apiUrl: string): Promise<Record<string, unknown> & { role?: string; state?: string; timeline?: number; warden?: { isLeader?: boolean; state?: string } } | undefined> {
  const r = await api(apiUrl, '/patroni');
  return r === undefined ? undefined : (JSON.parse(r.body) as Record<string, unknown>);
}

/** Runs one SQL statement as the superuser on host:port with a fresh connection (short timeouts). */
export async function sql(dir: string, host: string, port: number, text: string, params: unknown[] = []): Promise<pg.QueryResult<Record<string, unknown>>> {
  const password = (await readFile(join(dir, 'secrets', 'superuser.password'), 'utf8')).trim();
  const client = new pg.Client({ host, port, user: 'postgres', password, database: 'postgres', connectionTimeoutMillis: 1500, query_timeout: 3000 });
  // A server stopped between the query and end() (57P01) emits 'error' on the idle client; the
  // query's own failure still rejects below. Unhandled, it would end the whole test file.
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await client.query<Record<string, unknown>>(text, params);
  } finally {
    await client.end().catch(() => undefined);
  }
}

// Process trees and postmaster PIDs are read the same way the chaos faults read them.
export { postmasterPid, processTree } from '../../src/chaos/processes.js';

/** `warden list --dir DIR --format json`, asserting it succeeds. */
export async function listCluster(dir: string, timeoutMs = 20_000): Promise<ListOutput> {
  const r = await runWarden(['list', '--dir', dir, '--format', 'json'], { timeoutMs });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ListOutput;
}
