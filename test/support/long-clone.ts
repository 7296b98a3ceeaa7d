/**
 * The long-clone scenario of "Agent shell" (shared by test/cluster/long-clone.test.ts and
 * bench/long-clone.ts): fill the leader with `sizeMb` of incompressible-enough rows, reinitialize
 * a replica (its data moved aside, a fresh pg_basebackup from the leader), and sample the
 * replica's /liveness and `warden list` until it streams again. A clone runs beside the HA loop,
 * so /liveness must stay 200 throughout and the list must show the operation and its progress.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { runWarden } from './cli.js';
import { api, listCluster } from './cluster.js';
import type { ListOperation, ListOutput } from '../../src/cli/list.js';

export interface LongCloneResult {
  readonly cloneSeconds: number;
  readonly livenessSamples: number;
  readonly livenessNot200: number;
  readonly listSamples: number;
  /** Samples of the replica's operation while it was being cloned, in order. */
  readonly operations: readonly ListOperation[];
}

/**
 * Fills the database with ~`sizeMb` of rows of ~1.8 kB, which stay inline and uncompressed
 * (PostgreSQL compresses only tuples above ~2 kB); returns pg_database_size.
 */
export async function fillDatabase(dir: string, host: string, port: number, sizeMb: number): Promise<number> {
  const password = (await readFile(join(dir, 'secrets', 'superuser.password'), 'utf8')).trim();
  const client = new pg.Client({ host, port, user: 'postgres', password, database: 'postgres', connectionTimeoutMillis: 5000, statement_timeout: 600_000 });
  await client.connect();
  try {
    await client.query('CREATE TABLE IF NOT EXISTS filler (id int, v text)');
    const batchRows = 20_000;
    const rows = Math.ceil((sizeMb * 1024 * 1024) / 2048);
    for (let done = 0; done < rows; done += batchRows) {
      await client.query(`INSERT INTO filler SELECT g, repeat(md5(g::text), 56) FROM generate_series(${done + 1}, ${Math.min(rows, done + batchRows)}) g`);
    }
    const r = await client.query<{ b: string }>('SELECT pg_database_size(current_database())::text AS b');
    return Number(r.rows[0]?.b);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Reinitializes `replica` and samples until it streams again (bounded by `timeoutMs`). */
export async function reinitAndWatch(dir: string, replica: { name: string; apiUrl: string }, timeoutMs: number): Promise<LongCloneResult & { finalList: ListOutput }> {
  let livenessSamples = 0;
  let livenessNot200 = 0;
  let listSamples = 0;
  const operations: ListOperation[] = [];
  let done = false;
  const started = performance.now();
  const reinit = runWarden(['reinit', replica.name, '--dir', dir, '--wait'], { timeoutMs }).finally(() => (done = true));
  const liveness = (async () => {
    while (!done && performance.now() - started < timeoutMs) {
      const r = await api(replica.apiUrl, '/liveness');
      livenessSamples++;
      if (r?.status !== 200) livenessNot200++;
      await pause(200);
    }
  })();
  let finalList: ListOutput | undefined;
  const lists = (async () => {
    while (performance.now() - started < timeoutMs) {
      const l = await listCluster(dir);
      listSamples++;
      const m = l.members.find((x) => x.name === replica.name);
      if (m?.operation !== null && m?.operation !== undefined) operations.push(m.operation);
      if (done && operations.some((o) => o.kind === 'clone') && m?.state === 'streaming' && m.operation === null) {
        finalList = l;
        return;
      }
      await pause(300);
    }
  })();
  const r = await reinit;
  if (r.code !== 0) throw new Error(`warden reinit ${replica.name} failed (${r.code}): ${r.stdout}\n${r.stderr}`);
  const cloneSeconds = (performance.now() - started) / 1000;
  await Promise.all([liveness, lists]);
  if (finalList === undefined) throw new Error(`${replica.name} did not stream again within ${timeoutMs} ms`);
  return { cloneSeconds, livenessSamples, livenessNot200, listSamples, operations, finalList };
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
