import pg from 'pg';

/** Where a test connects as a client: host, port and the user's password. */
export interface PgTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
}

/**
 * One short connection (2 s to connect, 3 s per statement) that runs `statements` in order and
 * returns the first row of the last; undefined when anything fails — for `eventually` loops
 * that wait for a router or a member to serve.
 */
export async function probe<T>(t: PgTarget, ...statements: readonly string[]): Promise<T | undefined> {
  const c = new pg.Client({ host: t.host, port: t.port, user: t.user, password: t.password, database: 'postgres', connectionTimeoutMillis: 2_000, query_timeout: 3_000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    let row: T | undefined;
    for (const sql of statements) row = (await c.query<T & pg.QueryResultRow>(sql)).rows[0];
    return row;
  } catch {
    return undefined;
  } finally {
    await c.end().catch(() => undefined);
  }
}
